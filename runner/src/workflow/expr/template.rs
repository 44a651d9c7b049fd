//! Text with `${{ }}` expressions inside (`run`, `env` values, `name`,
//! `working-directory`), and `if` conditions.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::eval::{EvalContext, EvalError, evaluate};
use super::value::Value;
use super::{Expr, ExprError, MatrixScope, Ref, Scope, StatusFn, parse};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

/// Text with expressions, parsed once; rendered when the values are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Where each `${{ … }}` sits in `text`: (start of `${{`, start of the
/// expression, end of the expression, end after `}}`), in characters.
fn spans(text: &str) -> Result<Vec<(usize, usize, usize, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < chars.len() {
        if chars[i] == '$' && chars[i + 1] == '{' && chars[i + 2] == '{' {
            let open = i;
            let mut j = i + 3;
            let mut quoted = false;
            let close = loop {
                match chars.get(j) {
                    None => {
                        return Err(ExprError::new(
                            open,
                            "this `${{` has no closing `}}`: end the expression with `}}`",
                        ));
                    }
                    Some('\'') => quoted = !quoted,
                    Some('}') if !quoted && chars.get(j + 1) == Some(&'}') => break j,
                    Some(_) => {}
                }
                j += 1;
            };
            out.push((open, open + 3, close, close + 2));
            i = close + 2;
        } else {
            i += 1;
        }
    }
    Ok(out)
}

impl Template {
    /// Parses `text`; expression offsets count from its first character.
    pub fn parse(text: &str, scope: &Scope<'_>) -> Result<Template, ExprError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut last = 0;
        for (open, start, end, after) in spans(text)? {
            if open > last {
                parts.push(Part::Text(chars[last..open].iter().collect()));
            }
            let src: String = chars[start..end].iter().collect();
            parts.push(Part::Expr(parse(&src, start, scope)?));
            last = after;
        }
        if last < chars.len() {
            parts.push(Part::Text(chars[last..].iter().collect()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// Text without expressions.
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_owned(),
            parts: if text.is_empty() {
                Vec::new()
            } else {
                vec![Part::Text(text.to_owned())]
            },
        }
    }

    /// The text as written in the workflow.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }

    /// The text with every expression replaced by its value.
    pub fn render(&self, cx: &EvalContext<'_>) -> Result<String, EvalError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&evaluate(e, cx)?.render()),
            }
        }
        Ok(out)
    }

    /// The value of a template that is a single expression (to keep its
    /// type: `continue-on-error: ${{ matrix.experimental }}`), else its text.
    pub fn value(&self, cx: &EvalContext<'_>) -> Result<Value, EvalError> {
        match self.parts.as_slice() {
            [Part::Expr(e)] => evaluate(e, cx),
            _ => self.render(cx).map(Value::String),
        }
    }

    /// Every `secrets.*` name the template reads.
    pub fn secrets(&self, out: &mut BTreeSet<String>) {
        for p in &self.parts {
            if let Part::Expr(e) = p {
                e.secrets(out);
            }
        }
    }

    pub fn visit_refs(&self, f: &mut impl FnMut(&Ref)) {
        for p in &self.parts {
            if let Part::Expr(e) = p {
                e.visit_refs(f);
            }
        }
    }
}

/// Where a stored template or condition is read back: its names were
/// checked when the workflow was parsed, so every context is allowed.
const STORED: Scope<'static> = Scope {
    place: "a stored job",
    env: true,
    secrets: true,
    status: true,
    matrix: MatrixScope::Any,
    needs: None,
};

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Template::parse(&text, &STORED).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// An `if`: an expression, with or without `${{ }}` around it. Without a
/// status function it means `success() && (…)`, as on GitHub.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Condition {
    /// The condition of a job or step without `if`.
    pub fn success() -> Condition {
        Condition {
            source: "success()".into(),
            expr: Expr::Status(StatusFn::Success),
        }
    }

    pub fn parse(text: &str, scope: &Scope<'_>) -> Result<Condition, ExprError> {
        let found = spans(text)?;
        let (src, base) = match found.as_slice() {
            [] => (text.to_owned(), 0),
            [(open, start, end, after)]
                if text.chars().take(*open).all(char::is_whitespace)
                    && text.chars().skip(*after).all(char::is_whitespace) =>
            {
                (
                    text.chars().skip(*start).take(end - start).collect(),
                    *start,
                )
            }
            [(open, ..), ..] => {
                return Err(ExprError::new(
                    *open,
                    "this `if` mixes `${{ }}` with other text, which GitHub reads as always true: write the whole condition as one expression, with or without `${{ }}`",
                ));
            }
        };
        let mut expr = parse(&src, base, scope)?;
        if !expr.has_status_fn() {
            expr = Expr::And(Box::new(Expr::Status(StatusFn::Success)), Box::new(expr));
        }
        Ok(Condition {
            source: text.to_owned(),
            expr,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn evaluate(&self, cx: &EvalContext<'_>) -> Result<bool, EvalError> {
        evaluate(&self.expr, cx).map(|v| v.truthy())
    }

    pub fn visit_refs(&self, f: &mut impl FnMut(&Ref)) {
        self.expr.visit_refs(f);
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Condition::parse(&text, &STORED).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::eval::{GithubContext, Secrets, Status};
    use super::*;

    const ALL: Scope<'static> = STORED;

    fn github() -> GithubContext {
        GithubContext {
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            git_ref: "refs/heads/main".into(),
            ref_name: "main".into(),
            repository: "acme/app".into(),
            event_name: "push".into(),
        }
    }

    #[test]
    fn renders_text_and_expressions() {
        let g = github();
        let env: BTreeMap<String, String> = [("N".to_string(), "3".to_string())].into();
        let mut cx = EvalContext::new(&g);
        cx.env = Some(&env);
        let t =
            Template::parse("on ${{ github.ref_name }} x${{env.N}}y ${{ '}}' }}", &ALL).unwrap();
        assert_eq!(t.render(&cx).unwrap(), "on main x3y }}");
        assert!(t.has_expressions());
        assert!(
            !Template::parse("plain $HOME ${ x }", &ALL)
                .unwrap()
                .has_expressions()
        );
    }

    #[test]
    fn secrets_render_masked_or_real_and_are_listed() {
        let g = github();
        let t = Template::parse(
            "curl -H 'auth: ${{ secrets.TOKEN }}' ${{ secrets.URL }}",
            &ALL,
        )
        .unwrap();
        let mut names = BTreeSet::new();
        t.secrets(&mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["TOKEN", "URL"]);
        let mut cx = EvalContext::new(&g);
        cx.secrets = Secrets::Masked;
        assert_eq!(t.render(&cx).unwrap(), "curl -H 'auth: ***' ***");
        let values: BTreeMap<String, String> = [("TOKEN".to_string(), "t0k".to_string())].into();
        cx.secrets = Secrets::Real(&values);
        assert_eq!(t.render(&cx).unwrap(), "curl -H 'auth: t0k' ");
    }

    #[test]
    fn unclosed_expressions_point_at_their_start() {
        let e = Template::parse("echo ${{ github.sha", &ALL).unwrap_err();
        assert_eq!(e.offset, 5);
        let e = Template::parse("echo ${{ github.nope }}", &ALL).unwrap_err();
        assert_eq!(e.offset, 16);
    }

    #[test]
    fn conditions_with_and_without_braces() {
        let g = github();
        let mut cx = EvalContext::new(&g);
        cx.status = Some(Status::for_step(false, false));
        for src in [
            "github.ref == 'refs/heads/main'",
            "${{ github.ref == 'refs/heads/main' }}",
            "  ${{ github.ref_name == 'main' }} ",
        ] {
            assert!(
                Condition::parse(src, &ALL).unwrap().evaluate(&cx).unwrap(),
                "{src}"
            );
        }
        // Without a status function, `success() &&` is implied.
        cx.status = Some(Status::for_step(true, false));
        assert!(
            !Condition::parse("true", &ALL)
                .unwrap()
                .evaluate(&cx)
                .unwrap()
        );
        assert!(
            Condition::parse("always() && true", &ALL)
                .unwrap()
                .evaluate(&cx)
                .unwrap()
        );
        assert!(!Condition::success().evaluate(&cx).unwrap());
        let e = Condition::parse("${{ github.ref }} == 'x'", &ALL).unwrap_err();
        assert!(e.message.contains("mixes"), "{}", e.message);
    }

    #[test]
    fn templates_and_conditions_round_trip_through_serde() {
        let t = Template::parse("a ${{ matrix.os }} b", &ALL).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"a ${{ matrix.os }} b\"");
        assert_eq!(serde_json::from_str::<Template>(&json).unwrap(), t);
        let c = Condition::parse("failure()", &ALL).unwrap();
        let back: Condition = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
