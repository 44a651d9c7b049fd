//! Expression grammar, from loosest to tightest binding (GitHub's order):
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := eq ( "&&" eq )*
//! eq      := unary ( ("==" | "!=") unary )*
//! unary   := "!" unary | primary
//! primary := number | 'string' | true | false | null
//!          | status-function "(" ")" | name ( "." field | "[" 'field' "]" )*
//!          | "(" or ")"
//! ```

use super::lexer::{Tok, Token, tokenize};
use super::value::Value;
use super::{Expr, ExprError, GithubField, MatrixScope, Ref, Scope, StatusFn};
use crate::workflow::suggest::did_you_mean;

/// How deep parentheses and `!` may nest: deeper is refused rather than
/// risking the parser's stack on an untrusted file.
const MAX_DEPTH: usize = 32;

/// How many operators (`||`, `&&`, `==`, `!=`, `!`) one expression may hold.
/// A flat chain (`a || a || …`) nests no parentheses but still builds a
/// tree as deep as it is long, which evaluation, `Drop` and every visitor
/// walk recursively: on a worker thread's stack, an untrusted workflow could
/// overflow it.
pub const MAX_OPERATORS: usize = 1000;

/// The longest expression accepted, in characters (GitHub's own limit):
/// checked before tokenizing, whose memory grows with the text (the
/// `workflow_expr` fuzz campaign built a 27 MB chain of chains, and the
/// tokens alone went past 512 MB before the operator bound could refuse it).
pub const MAX_CHARS: usize = 21_000;

const CONTEXTS: &str = "github, env, matrix, secrets and needs";

/// Parses `src` (the text between `${{` and `}}`, or a whole `if`), whose
/// first character sits at `base` in its scalar.
pub fn parse(src: &str, base: usize, scope: &Scope<'_>) -> Result<Expr, ExprError> {
    if src.len() > MAX_CHARS && src.chars().count() > MAX_CHARS {
        return Err(ExprError::new(
            base,
            format!(
                "the expression is longer than {MAX_CHARS} characters: split it, or compute the value in a step"
            ),
        ));
    }
    let toks = tokenize(src, base)?;
    if toks.is_empty() {
        return Err(ExprError::new(
            base,
            "the expression is empty: write a condition or a value",
        ));
    }
    let mut p = P {
        toks,
        i: 0,
        scope,
        end: base + src.chars().count(),
        depth: 0,
        operators: 0,
    };
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(ExprError::new(
            t.offset,
            format!(
                "unexpected {} after a complete expression: join conditions with `&&` or `||`",
                describe(&t.tok)
            ),
        ));
    }
    Ok(e)
}

struct P<'s> {
    toks: Vec<Token>,
    i: usize,
    scope: &'s Scope<'s>,
    end: usize,
    depth: usize,
    operators: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Not => "`!`".into(),
        Tok::Eq => "`==`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
        Tok::Str(s) => format!("the string '{s}'"),
        Tok::Num(_) => "a number".into(),
        Tok::Ident(s) => format!("`{s}`"),
    }
}

impl P<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ExprError> {
        if self.eat(tok) {
            Ok(())
        } else {
            let found = self
                .peek()
                .map_or("the end of the expression".into(), |t| describe(&t.tok));
            Err(ExprError::new(
                self.here(),
                format!("expected {what}, found {found}"),
            ))
        }
    }

    fn nest(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                self.here(),
                format!("the expression nests deeper than {MAX_DEPTH} levels: simplify it"),
            ));
        }
        Ok(())
    }

    /// Counts an operator just read; refuses the expression past the bound.
    fn operator(&mut self) -> Result<(), ExprError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ExprError::new(
                self.here(),
                format!(
                    "the expression has more than {MAX_OPERATORS} operators: split it, or compute the value in a step"
                ),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.and()?;
        while self.eat(&Tok::Or) {
            self.operator()?;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.eq()?;
        while self.eat(&Tok::And) {
            self.operator()?;
            e = Expr::And(Box::new(e), Box::new(self.eq()?));
        }
        Ok(e)
    }

    fn eq(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        loop {
            if self.eat(&Tok::Eq) {
                self.operator()?;
                e = Expr::Eq(Box::new(e), Box::new(self.unary()?));
            } else if self.eat(&Tok::Ne) {
                self.operator()?;
                e = Expr::Ne(Box::new(e), Box::new(self.unary()?));
            } else {
                return Ok(e);
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat(&Tok::Not) {
            self.operator()?;
            self.nest()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let offset = self.here();
        let Some(t) = self.next() else {
            return Err(ExprError::new(
                offset,
                "the expression ends where a value is expected",
            ));
        };
        match t.tok {
            Tok::Num(n) => Ok(Expr::Lit(Value::Number(n))),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::LParen => {
                self.nest()?;
                let e = self.or()?;
                self.expect(&Tok::RParen, "`)`")?;
                self.depth -= 1;
                Ok(e)
            }
            Tok::Ident(name) if self.peek().is_some_and(|t| t.tok == Tok::LParen) => {
                self.call(&name, offset)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ => {
                    let path = self.path()?;
                    resolve(&name, &path, offset, self.scope).map(Expr::Ref)
                }
            },
            other => Err(ExprError::new(
                offset,
                format!("expected a value, found {}", describe(&other)),
            )),
        }
    }

    fn call(&mut self, name: &str, offset: usize) -> Result<Expr, ExprError> {
        let f = match name.to_ascii_lowercase().as_str() {
            "success" => StatusFn::Success,
            "failure" => StatusFn::Failure,
            "always" => StatusFn::Always,
            "cancelled" => StatusFn::Cancelled,
            _ => {
                return Err(ExprError::new(
                    offset,
                    format!(
                        "the function `{name}()` is not supported: the functions here are success(), failure(), always() and cancelled()"
                    ),
                ));
            }
        };
        if !self.scope.status {
            return Err(ExprError::new(
                offset,
                format!(
                    "`{name}()` only works in `if` conditions, not in {}",
                    self.scope.place
                ),
            ));
        }
        self.expect(&Tok::LParen, "`(`")?;
        self.expect(&Tok::RParen, &format!("`)`: `{name}()` takes no arguments"))?;
        Ok(Expr::Status(f))
    }

    /// The fields after a context name: `.name` or `['name']`.
    fn path(&mut self) -> Result<Vec<(String, usize)>, ExprError> {
        let mut path = Vec::new();
        loop {
            if self.eat(&Tok::Dot) {
                let at = self.here();
                match self.next() {
                    Some(Token {
                        tok: Tok::Ident(f), ..
                    }) => path.push((f, at)),
                    _ => return Err(ExprError::new(at, "expected a field name after `.`")),
                }
            } else if self.eat(&Tok::LBracket) {
                let at = self.here();
                match self.next() {
                    Some(Token {
                        tok: Tok::Str(f), ..
                    }) => path.push((f, at)),
                    _ => {
                        return Err(ExprError::new(
                            at,
                            "only a quoted field name can go between `[` `]` (like matrix['os']): computed names are not supported",
                        ));
                    }
                }
                self.expect(&Tok::RBracket, "`]`")?;
            } else {
                return Ok(path);
            }
        }
    }
}

/// Checks a context name and its fields against what the place may read.
fn resolve(
    name: &str,
    path: &[(String, usize)],
    offset: usize,
    scope: &Scope<'_>,
) -> Result<Ref, ExprError> {
    let place = scope.place;
    let end_of = |i: usize| path.get(i).map_or(offset, |(_, o)| *o);
    let only_one = |ctx: &str, example: &str| -> Result<&str, ExprError> {
        match path {
            [(f, _)] => Ok(f.as_str()),
            [] => Err(ExprError::new(
                offset,
                format!("`{ctx}` needs a field: write {example}"),
            )),
            [_, (extra, at), ..] => Err(ExprError::new(
                *at,
                format!("`{ctx}.{}` has no field `{extra}`", path[0].0),
            )),
        }
    };
    match name.to_ascii_lowercase().as_str() {
        "github" => {
            let f = only_one("github", "github.sha")?;
            GithubField::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(f))
                .map(|(_, g)| Ref::Github(*g))
                .ok_or_else(|| {
                    let names = GithubField::ALL.iter().map(|(n, _)| *n);
                    ExprError::new(
                        end_of(0),
                        format!(
                            "`github.{f}` is not supported: the github context here has sha, ref, ref_name, repository and event_name{}",
                            did_you_mean(f, names)
                        ),
                    )
                })
        }
        "env" if !scope.env => Err(ExprError::new(
            offset,
            format!("`env` cannot be read in {place}"),
        )),
        "env" => only_one("env", "env.NAME").map(|f| Ref::Env(f.to_owned())),
        "secrets" if !scope.secrets => Err(ExprError::new(
            offset,
            format!(
                "`secrets` cannot be read in {place}: GitHub Actions refuses it there too; pass the secret through `env` and test `env.NAME`"
            ),
        )),
        "secrets" => {
            let f = only_one("secrets", "secrets.NAME")?;
            if !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ExprError::new(
                    end_of(0),
                    format!("`{f}` is not a secret name: use letters, digits and `_`"),
                ));
            }
            Ok(Ref::Secret(f.to_owned()))
        }
        "matrix" => resolve_matrix(path, offset, scope),
        "needs" => resolve_needs(path, offset, scope),
        ctx @ ("steps" | "job" | "jobs" | "runner" | "strategy" | "inputs" | "vars") => {
            Err(ExprError::new(
                offset,
                format!(
                    "the `{ctx}` context is not supported: expressions here can read {CONTEXTS}"
                ),
            ))
        }
        _ => Err(ExprError::new(
            offset,
            format!(
                "unknown name `{name}`: expressions can read {CONTEXTS}{}; text must be quoted: '{name}'",
                did_you_mean(name, ["github", "env", "matrix", "secrets", "needs"])
            ),
        )),
    }
}

fn resolve_matrix(
    path: &[(String, usize)],
    offset: usize,
    scope: &Scope<'_>,
) -> Result<Ref, ExprError> {
    let keys = match scope.matrix {
        MatrixScope::Keys(k) => k,
        MatrixScope::Any => {
            let out: Vec<String> = path.iter().map(|(f, _)| f.clone()).collect();
            if out.is_empty() {
                return Err(ExprError::new(
                    offset,
                    "`matrix` needs a field: write matrix.KEY",
                ));
            }
            return Ok(Ref::Matrix(out));
        }
        MatrixScope::NoMatrix => {
            return Err(ExprError::new(
                offset,
                "`matrix` is read but this job has no `strategy.matrix`",
            ));
        }
        MatrixScope::NotHere => {
            return Err(ExprError::new(
                offset,
                format!(
                    "`matrix` cannot be read in {}: GitHub evaluates it before the matrix expands",
                    scope.place
                ),
            ));
        }
    };
    let Some((first, at)) = path.first() else {
        return Err(ExprError::new(
            offset,
            "`matrix` needs a field: write matrix.KEY",
        ));
    };
    let key = keys
        .iter()
        .find(|k| *k == first)
        .or_else(|| keys.iter().find(|k| k.eq_ignore_ascii_case(first)))
        .ok_or_else(|| {
            let list = keys
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            ExprError::new(
                *at,
                format!(
                    "the matrix has no key `{first}` (its keys: {list}){}",
                    did_you_mean(first, keys.iter().map(String::as_str))
                ),
            )
        })?;
    let mut out = vec![key.clone()];
    out.extend(path[1..].iter().map(|(f, _)| f.clone()));
    Ok(Ref::Matrix(out))
}

fn resolve_needs(
    path: &[(String, usize)],
    offset: usize,
    scope: &Scope<'_>,
) -> Result<Ref, ExprError> {
    let Some(needs) = scope.needs else {
        if matches!(scope.matrix, MatrixScope::Any) {
            // Reading back a stored job: checked when it was parsed.
            return match path {
                [(id, _), (f, _)] if f.eq_ignore_ascii_case("result") => {
                    Ok(Ref::NeedResult(id.clone()))
                }
                _ => Err(ExprError::new(offset, "write needs.JOB.result")),
            };
        }
        return Err(ExprError::new(
            offset,
            format!("`needs` cannot be read in {}", scope.place),
        ));
    };
    let Some((id, at)) = path.first() else {
        return Err(ExprError::new(
            offset,
            "`needs` needs a job: write needs.JOB.result",
        ));
    };
    let Some(known) = needs.iter().find(|n| n.eq_ignore_ascii_case(id)) else {
        let hint = if needs.is_empty() {
            "this job has no `needs`".to_owned()
        } else {
            format!("its needs are {}", needs.join(", "))
        };
        return Err(ExprError::new(
            *at,
            format!(
                "job `{id}` is not in this job's `needs` ({hint}): add it to `needs` to read its result"
            ),
        ));
    };
    match path.get(1) {
        Some((f, _)) if f.eq_ignore_ascii_case("result") && path.len() == 2 => {
            Ok(Ref::NeedResult(known.clone()))
        }
        Some((f, at)) if f.eq_ignore_ascii_case("outputs") => Err(ExprError::new(
            *at,
            "`needs.<job>.outputs` is not supported: jobs here have no outputs; only `needs.<job>.result` can be read",
        )),
        Some((f, at)) => Err(ExprError::new(
            *at,
            format!("`needs.{id}.{f}` is not supported: write needs.{id}.result"),
        )),
        None => Err(ExprError::new(offset, format!("write needs.{id}.result"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn scope<'a>(keys: &'a BTreeSet<String>, needs: &'a [String]) -> Scope<'a> {
        Scope {
            place: "a step's `run`",
            env: true,
            secrets: true,
            status: true,
            matrix: MatrixScope::Keys(keys),
            needs: Some(needs),
        }
    }

    fn p(src: &str) -> Result<Expr, ExprError> {
        let keys: BTreeSet<String> = ["os".to_string(), "python".to_string()].into();
        let needs = ["build".to_string()];
        parse(src, 0, &scope(&keys, &needs))
    }

    fn lit_b(b: bool) -> Box<Expr> {
        Box::new(Expr::Lit(Value::Bool(b)))
    }

    /// Found by the `workflow_expr` fuzz target: a long flat chain parsed
    /// into a tree as deep as the chain, and evaluating (or dropping) it
    /// overflowed the stack.
    #[test]
    fn operators_are_bounded() {
        let chain = |n: usize| vec!["true"; n + 1].join(" || ");
        assert!(p(&chain(MAX_OPERATORS)).is_ok());
        let e = p(&chain(MAX_OPERATORS + 1)).unwrap_err();
        assert!(e.message.contains("more than 1000 operators"), "{e:?}");
        let e = p(&vec!["1 == 1"; 2_000].join(" && ")).unwrap_err();
        assert!(e.message.contains("operators"), "{e:?}");
    }

    /// Found by the `workflow_expr` campaign: a chain of chains (27 MB of
    /// text) went past 512 MB while tokenizing, before the operator bound.
    #[test]
    fn expressions_are_bounded_in_length_before_tokenizing() {
        let long = format!("'{}'", "x".repeat(MAX_CHARS - 2));
        assert!(p(&long).is_ok());
        let e = p(&format!("'{}'", "x".repeat(MAX_CHARS - 1))).unwrap_err();
        assert!(e.message.contains("longer than 21000 characters"), "{e:?}");
        // Characters, not bytes: 21,000 two-byte characters are accepted.
        assert!(p(&format!("'{}'", "é".repeat(MAX_CHARS - 2))).is_ok());
        let chain_of_chains = vec![vec!["0"; 3001].join("=="); 3001].join("==");
        let e = p(&chain_of_chains).unwrap_err();
        assert!(e.message.contains("characters"), "{e:?}");
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tightest() {
        assert_eq!(
            p("true || false && !true").unwrap(),
            Expr::Or(
                lit_b(true),
                Box::new(Expr::And(lit_b(false), Box::new(Expr::Not(lit_b(true)))))
            )
        );
        assert_eq!(
            p("(true || false) && true").unwrap(),
            Expr::And(Box::new(Expr::Or(lit_b(true), lit_b(false))), lit_b(true))
        );
        // `==` binds tighter than `&&`.
        assert!(
            matches!(p("1 == 1 && 2 != 3").unwrap(), Expr::And(a, b) if matches!(*a, Expr::Eq(..)) && matches!(*b, Expr::Ne(..)))
        );
    }

    #[test]
    fn names_resolve_to_references() {
        assert_eq!(
            p("github.ref_name").unwrap(),
            Expr::Ref(Ref::Github(GithubField::RefName))
        );
        assert_eq!(
            p("GITHUB.SHA").unwrap(),
            Expr::Ref(Ref::Github(GithubField::Sha))
        );
        assert_eq!(
            p("matrix['OS']").unwrap(),
            Expr::Ref(Ref::Matrix(vec!["os".into()]))
        );
        assert_eq!(
            p("needs.build.result").unwrap(),
            Expr::Ref(Ref::NeedResult("build".into()))
        );
        assert_eq!(
            p("secrets.TOKEN").unwrap(),
            Expr::Ref(Ref::Secret("TOKEN".into()))
        );
        assert_eq!(p("env.HOME").unwrap(), Expr::Ref(Ref::Env("HOME".into())));
        assert_eq!(p("failure()").unwrap(), Expr::Status(StatusFn::Failure));
    }

    #[test]
    fn unknown_names_are_errors_with_a_hint() {
        let e = p("github.actor").unwrap_err();
        assert!(
            e.message.contains("`github.actor` is not supported"),
            "{}",
            e.message
        );
        assert_eq!(e.offset, 7);
        assert!(
            p("gihub.sha")
                .unwrap_err()
                .message
                .contains("did you mean `github`")
        );
        assert!(
            p("main")
                .unwrap_err()
                .message
                .contains("text must be quoted: 'main'")
        );
        assert!(
            p("matrix.pyhton")
                .unwrap_err()
                .message
                .contains("did you mean `python`")
        );
        assert!(
            p("needs.test.result")
                .unwrap_err()
                .message
                .contains("not in this job's `needs`")
        );
        assert!(
            p("needs.build.outputs.x")
                .unwrap_err()
                .message
                .contains("outputs` is not supported")
        );
        assert!(
            p("steps.a.outputs")
                .unwrap_err()
                .message
                .contains("`steps` context is not supported")
        );
        assert!(
            p("contains(github.ref, 'x')")
                .unwrap_err()
                .message
                .contains("`contains()` is not supported")
        );
        assert!(
            p("matrix[env.X]")
                .unwrap_err()
                .message
                .contains("computed names")
        );
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let e = p("github.sha ==").unwrap_err();
        assert!(e.message.contains("ends where a value"), "{}", e.message);
        let e = p("(true").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{}", e.message);
        let e = p("true false").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(
            p("success(1)")
                .unwrap_err()
                .message
                .contains("takes no arguments")
        );
        assert!(p("").unwrap_err().message.contains("empty"));
        assert!(
            p(&"!".repeat(100))
                .unwrap_err()
                .message
                .contains("nests deeper")
        );
        assert!(
            p(&format!("{}true{}", "(".repeat(100), ")".repeat(100)))
                .unwrap_err()
                .message
                .contains("nests deeper")
        );
    }

    #[test]
    fn scopes_refuse_what_a_place_cannot_read() {
        let mut s = Scope::GITHUB_ONLY;
        s.place = "a step's `if`";
        assert!(
            parse("secrets.X", 0, &s)
                .unwrap_err()
                .message
                .contains("cannot be read in a step's `if`")
        );
        assert!(
            parse("success()", 0, &s)
                .unwrap_err()
                .message
                .contains("only works in `if`")
        );
        assert!(
            parse("matrix.os", 0, &s)
                .unwrap_err()
                .message
                .contains("before the matrix expands")
        );
        s.matrix = MatrixScope::NoMatrix;
        assert!(
            parse("matrix.os", 0, &s)
                .unwrap_err()
                .message
                .contains("no `strategy.matrix`")
        );
        assert!(
            parse("needs.a.result", 0, &s)
                .unwrap_err()
                .message
                .contains("`needs` cannot be read")
        );
        assert!(
            parse("env.A", 0, &s)
                .unwrap_err()
                .message
                .contains("`env` cannot be read")
        );
    }
}
