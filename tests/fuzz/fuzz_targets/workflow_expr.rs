//! Workflow expressions (`${{ … }}` and `if:`), from structured syntax
//! trees printed as text (long operator chains, deep nesting, every context)
//! or from raw text: parsed by [`expr::parse`], [`Template::parse`] and
//! [`Condition::parse`], then evaluated and rendered as a run would.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use runner::workflow::expr::{
    self, Condition, EvalContext, Expr, GithubContext, JobResult, MatrixScope, Scope, Secrets,
    Status, Template, Value,
};

/// Operators one expression may hold (the parser's bound).
const MAX_OPERATORS: usize = 1000;

/// Text the printer writes at most: three times the parser's 21,000-character
/// bound, so refusing long text stays exercised. Without it a chain of
/// chains prints `3001^depth` copies: 27 MB from a 21-byte input, which an
/// unoptimised (CI smoke) build took over 10 s just to print.
const MAX_TEXT: usize = 64 * 1024;

#[derive(Debug, Arbitrary)]
enum Ast {
    Num(i32),
    Str(String),
    Bool(bool),
    Null,
    Github(u8),
    Env(String),
    Matrix(Vec<String>),
    Secret(String),
    Needs,
    Status(u8),
    Not(Box<Ast>),
    Paren(Box<Ast>),
    Bin(u8, Box<Ast>, Box<Ast>),
    /// `x OP x OP x …`, `n` times: long flat chains.
    Chain(u8, u16, Box<Ast>),
    /// `!!!…x` or `((…x…))`, `n` deep.
    Deep(bool, u8, Box<Ast>),
}

const OPS: [&str; 4] = ["||", "&&", "==", "!="];

fn print(a: &Ast, out: &mut String, budget: &mut usize) {
    if out.len() >= MAX_TEXT {
        return;
    }
    if *budget == 0 {
        out.push('1');
        return;
    }
    *budget -= 1;
    match a {
        Ast::Num(n) => out.push_str(&n.to_string()),
        Ast::Str(s) => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Ast::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Ast::Null => out.push_str("null"),
        Ast::Github(i) => {
            let f = ["sha", "ref", "ref_name", "repository", "event_name", "nope"];
            out.push_str("github.");
            out.push_str(f[usize::from(*i) % f.len()]);
        }
        Ast::Env(k) => {
            out.push_str("env.");
            out.push_str(if k.is_empty() { "A" } else { k });
        }
        Ast::Matrix(path) => {
            out.push_str("matrix");
            for p in path.iter().take(4) {
                out.push('.');
                out.push_str(p);
            }
        }
        Ast::Secret(k) => {
            out.push_str("secrets.");
            out.push_str(if k.is_empty() { "TOKEN" } else { k });
        }
        Ast::Needs => out.push_str("needs.build.result"),
        Ast::Status(i) => {
            let f = [
                "success()",
                "failure()",
                "always()",
                "cancelled()",
                "nope()",
            ];
            out.push_str(f[usize::from(*i) % f.len()]);
        }
        Ast::Not(e) => {
            out.push('!');
            print(e, out, budget);
        }
        Ast::Paren(e) => {
            out.push('(');
            print(e, out, budget);
            out.push(')');
        }
        Ast::Bin(op, a, b) => {
            print(a, out, budget);
            out.push_str(OPS[usize::from(*op) % 4]);
            print(b, out, budget);
        }
        Ast::Chain(op, n, e) => {
            let mut one = String::new();
            print(e, &mut one, budget);
            let op = OPS[usize::from(*op) % 4];
            out.push_str(&one);
            for _ in 0..usize::from(*n).min(3000) {
                if out.len() >= MAX_TEXT {
                    break;
                }
                out.push_str(op);
                out.push_str(&one);
            }
        }
        Ast::Deep(paren, n, e) => {
            let n = usize::from(*n);
            for _ in 0..n {
                out.push(if *paren { '(' } else { '!' });
            }
            print(e, out, budget);
            if *paren {
                out.extend(std::iter::repeat_n(')', n));
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Input {
    Tree(Ast),
    Text(String),
    /// Text with `${{ }}` around printed trees.
    Template(Vec<(String, Ast)>),
}

/// Operators in a parsed expression, counted without recursion (the tree
/// may be as deep as it is long).
fn operators(e: &Expr) -> usize {
    let mut n = 0;
    let mut todo = vec![e];
    while let Some(e) = todo.pop() {
        match e {
            Expr::Not(a) => {
                n += 1;
                todo.push(a);
            }
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Eq(a, b) | Expr::Ne(a, b) => {
                n += 1;
                todo.push(a);
                todo.push(b);
            }
            Expr::Lit(_) | Expr::Ref(_) | Expr::Status(_) => {}
        }
    }
    n
}

fuzz_target!(|input: Input| {
    let keys: std::collections::BTreeSet<String> = ["os".to_owned(), "v".to_owned()].into();
    let needs = ["build".to_owned()];
    let scope = Scope {
        place: "a step's `if`",
        env: true,
        secrets: true,
        status: true,
        matrix: MatrixScope::Keys(&keys),
        needs: Some(&needs),
    };
    let github = GithubContext {
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        git_ref: "refs/heads/main".into(),
        ref_name: "main".into(),
        repository: "o/r".into(),
        event_name: "push".into(),
    };
    let env: BTreeMap<String, String> = [("A".to_owned(), "1".to_owned())].into();
    let matrix = vec![
        ("os".to_owned(), Value::String("linux".into())),
        ("v".to_owned(), Value::Number(3.0)),
    ];
    let need_results: BTreeMap<String, JobResult> =
        [("build".to_owned(), JobResult::Failure)].into();
    let cx = EvalContext {
        github: &github,
        env: Some(&env),
        matrix: Some(&matrix),
        needs: Some(&need_results),
        secrets: Secrets::Masked,
        status: Some(Status::for_step(false, false)),
    };

    let text = match &input {
        Input::Tree(a) => {
            let mut s = String::new();
            print(a, &mut s, &mut 256);
            s
        }
        Input::Text(s) => s.clone(),
        Input::Template(parts) => {
            let mut s = String::new();
            let mut budget = 256;
            for (lit, a) in parts.iter().take(16) {
                s.push_str(lit);
                s.push_str("${{ ");
                print(a, &mut s, &mut budget);
                s.push_str(" }}");
            }
            let _ = Template::parse(&s, &scope).map(|t| {
                if let Ok(out) = t.render(&cx) {
                    assert!(
                        !out.contains("s3cr3t-value"),
                        "a masked render shows a secret"
                    );
                }
            });
            return;
        }
    };
    if let Ok(e) = expr::parse(&text, 0, &scope) {
        assert!(
            operators(&e) <= MAX_OPERATORS,
            "accepted an expression with {} operators",
            operators(&e)
        );
        let _ = expr::eval::evaluate(&e, &cx);
    }
    if let Ok(c) = Condition::parse(&text, &scope) {
        let _ = c.evaluate(&cx);
    }
    if let Ok(t) = Template::parse(&text, &scope) {
        let _ = t.render(&cx);
    }
});
