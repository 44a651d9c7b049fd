//! Evaluating expressions against the contexts of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::value::Value;
use super::{Expr, GithubField, Ref, StatusFn};

/// The `github` context: what the push is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubContext {
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub ref_name: String,
    /// `owner/name`.
    pub repository: String,
    pub event_name: String,
}

impl GithubContext {
    fn field(&self, f: GithubField) -> &str {
        match f {
            GithubField::Sha => &self.sha,
            GithubField::Ref => &self.git_ref,
            GithubField::RefName => &self.ref_name,
            GithubField::Repository => &self.repository,
            GithubField::EventName => &self.event_name,
        }
    }
}

/// How a job ended, as `needs.<id>.result` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "success",
            JobResult::Failure => "failure",
            JobResult::Cancelled => "cancelled",
            JobResult::Skipped => "skipped",
        }
    }

    /// The result of a job with a matrix, from its cells' results (each
    /// already counting `continue-on-error` as success): a failure wins, then
    /// a cancellation; all skipped is skipped; otherwise success.
    pub fn aggregate(cells: &[JobResult]) -> JobResult {
        if cells.contains(&JobResult::Failure) {
            JobResult::Failure
        } else if cells.contains(&JobResult::Cancelled) {
            JobResult::Cancelled
        } else if !cells.is_empty() && cells.iter().all(|r| *r == JobResult::Skipped) {
            JobResult::Skipped
        } else {
            JobResult::Success
        }
    }
}

/// What `success()`, `failure()` and `cancelled()` return where an `if` is
/// evaluated. `always()` is always true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub success: bool,
    pub failure: bool,
    pub cancelled: bool,
}

impl Status {
    /// For a job's `if`: `success()` when every job it needs succeeded;
    /// `failure()` when any job it needs, directly or through others,
    /// failed; `cancelled()` when the run is being cancelled.
    pub fn for_job(needs: &[JobResult], ancestors: &[JobResult], cancelled: bool) -> Status {
        Status {
            success: !cancelled && needs.iter().all(|r| *r == JobResult::Success),
            failure: !cancelled
                && (needs.contains(&JobResult::Failure) || ancestors.contains(&JobResult::Failure)),
            cancelled,
        }
    }

    /// For a step's `if`: `failure()` once an earlier step failed (not
    /// counting steps with `continue-on-error`).
    pub fn for_step(job_failed: bool, cancelled: bool) -> Status {
        Status {
            success: !cancelled && !job_failed,
            failure: !cancelled && job_failed,
            cancelled,
        }
    }
}

/// The values `secrets.*` evaluate to.
#[derive(Clone, Copy)]
pub enum Secrets<'a> {
    /// Not available: reading one is an error (a place that cannot read
    /// secrets, or evaluation before run time).
    Unavailable,
    /// Every secret renders as `***`: for what is shown or stored.
    Masked,
    /// The values, for what the step runs with and nothing else. A secret
    /// missing from the map is empty, as on GitHub.
    Real(&'a BTreeMap<String, String>),
}

impl std::fmt::Debug for Secrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print values.
        match self {
            Secrets::Unavailable => f.write_str("Unavailable"),
            Secrets::Masked => f.write_str("Masked"),
            Secrets::Real(m) => write!(f, "Real({} secrets)", m.len()),
        }
    }
}

/// The text a masked secret renders as.
pub const MASK: &str = "***";

/// The contexts an expression is evaluated with; `None` where a context
/// does not exist (the parser's scope check keeps expressions from reading
/// it, so meeting one here is the caller's mistake).
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    pub github: &'a GithubContext,
    pub env: Option<&'a BTreeMap<String, String>>,
    pub matrix: Option<&'a [(String, Value)]>,
    pub needs: Option<&'a BTreeMap<String, JobResult>>,
    pub secrets: Secrets<'a>,
    pub status: Option<Status>,
}

impl<'a> EvalContext<'a> {
    pub fn new(github: &'a GithubContext) -> Self {
        EvalContext {
            github,
            env: None,
            matrix: None,
            needs: None,
            secrets: Secrets::Unavailable,
            status: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

fn missing(what: &str) -> EvalError {
    EvalError {
        message: format!("{what} is not available where this expression is evaluated"),
    }
}

/// Evaluates `e`. `&&` and `||` return one of their operands, as GitHub's do.
pub fn evaluate(e: &Expr, cx: &EvalContext<'_>) -> Result<Value, EvalError> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Ref(r) => lookup(r, cx)?,
        Expr::Not(e) => Value::Bool(!evaluate(e, cx)?.truthy()),
        Expr::And(a, b) => {
            let a = evaluate(a, cx)?;
            if a.truthy() { evaluate(b, cx)? } else { a }
        }
        Expr::Or(a, b) => {
            let a = evaluate(a, cx)?;
            if a.truthy() { a } else { evaluate(b, cx)? }
        }
        Expr::Eq(a, b) => Value::Bool(evaluate(a, cx)?.loose_eq(&evaluate(b, cx)?)),
        Expr::Ne(a, b) => Value::Bool(!evaluate(a, cx)?.loose_eq(&evaluate(b, cx)?)),
        Expr::Status(f) => {
            let s = cx.status.ok_or_else(|| missing("the job status"))?;
            Value::Bool(match f {
                StatusFn::Success => s.success,
                StatusFn::Failure => s.failure,
                StatusFn::Cancelled => s.cancelled,
                StatusFn::Always => true,
            })
        }
    })
}

fn lookup(r: &Ref, cx: &EvalContext<'_>) -> Result<Value, EvalError> {
    Ok(match r {
        Ref::Github(f) => Value::String(cx.github.field(*f).to_owned()),
        Ref::Env(name) => {
            let env = cx.env.ok_or_else(|| missing("env"))?;
            env.get(name)
                .map(|v| Value::String(v.clone()))
                .unwrap_or(Value::Null)
        }
        Ref::Matrix(path) => {
            let cell = cx.matrix.ok_or_else(|| missing("matrix"))?;
            let mut v = cell
                .iter()
                .find(|(k, _)| *k == path[0])
                .or_else(|| cell.iter().find(|(k, _)| k.eq_ignore_ascii_case(&path[0])))
                .map_or(Value::Null, |(_, v)| v.clone());
            for f in &path[1..] {
                v = v.get(f);
            }
            v
        }
        Ref::Secret(name) => match cx.secrets {
            Secrets::Unavailable => return Err(missing("secrets")),
            Secrets::Masked => Value::String(MASK.into()),
            Secrets::Real(map) => Value::String(
                map.get(name)
                    .or_else(|| {
                        map.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v)
                    })
                    .cloned()
                    .unwrap_or_default(),
            ),
        },
        Ref::NeedResult(id) => {
            let needs = cx.needs.ok_or_else(|| missing("needs"))?;
            needs
                .get(id)
                .or_else(|| {
                    needs
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(id))
                        .map(|(_, r)| r)
                })
                .map_or(Value::Null, |r| Value::String(r.as_str().into()))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{MatrixScope, Scope, parse};
    use super::*;

    fn github() -> GithubContext {
        GithubContext {
            sha: "a".repeat(40),
            git_ref: "refs/heads/main".into(),
            ref_name: "main".into(),
            repository: "acme/app".into(),
            event_name: "push".into(),
        }
    }

    fn eval_with(src: &str, cx: &EvalContext<'_>) -> Value {
        let keys: BTreeSet<String> = ["os".to_string(), "cfg".to_string()].into();
        let needs = ["build".to_string()];
        let scope = Scope {
            place: "test",
            env: true,
            secrets: true,
            status: true,
            matrix: MatrixScope::Keys(&keys),
            needs: Some(&needs),
        };
        evaluate(&parse(src, 0, &scope).unwrap(), cx).unwrap()
    }

    fn eval(src: &str) -> Value {
        let g = github();
        let mut cx = EvalContext::new(&g);
        cx.status = Some(Status::for_step(false, false));
        eval_with(src, &cx)
    }

    #[test]
    fn precedence_and_short_circuit_values() {
        assert_eq!(eval("true || false && false"), Value::Bool(true));
        assert_eq!(eval("(true || false) && false"), Value::Bool(false));
        assert_eq!(eval("!false && 'x'"), Value::String("x".into()));
        assert_eq!(eval("'' || 'fallback'"), Value::String("fallback".into()));
        assert_eq!(eval("0 && 'never'"), Value::Number(0.0));
        assert_eq!(eval("!!'text'"), Value::Bool(true));
        assert_eq!(eval("null == 0 && 1 == true"), Value::Bool(true));
    }

    #[test]
    fn equality_coerces_like_github() {
        assert_eq!(eval("github.ref == 'REFS/HEADS/MAIN'"), Value::Bool(true));
        assert_eq!(eval("'1' == 1"), Value::Bool(true));
        assert_eq!(eval("'' == false"), Value::Bool(true));
        assert_eq!(eval("'true' == true"), Value::Bool(false));
        assert_eq!(eval("null != ''"), Value::Bool(false));
        assert_eq!(eval("0x10 == 16"), Value::Bool(true));
        assert_eq!(eval("'it''s' == 'IT''S'"), Value::Bool(true));
    }

    #[test]
    fn status_functions_read_the_status() {
        let g = github();
        let mut cx = EvalContext::new(&g);
        cx.status = Some(Status::for_step(true, false));
        assert_eq!(eval_with("failure()", &cx), Value::Bool(true));
        assert_eq!(eval_with("success()", &cx), Value::Bool(false));
        assert_eq!(eval_with("always()", &cx), Value::Bool(true));
        assert_eq!(eval_with("cancelled()", &cx), Value::Bool(false));
        cx.status = Some(Status::for_step(false, true));
        assert_eq!(
            eval_with("cancelled() && !success() && !failure()", &cx),
            Value::Bool(true)
        );
    }

    #[test]
    fn job_status_follows_needs_and_ancestors() {
        use JobResult::*;
        let s = Status::for_job(&[Success, Success], &[Success], false);
        assert!(s.success && !s.failure && !s.cancelled);
        // A skipped need (itself skipped because an ancestor failed):
        // `success()` is false and `failure()` true, as on GitHub.
        let s = Status::for_job(&[Skipped], &[Failure, Skipped], false);
        assert!(!s.success && s.failure);
        let s = Status::for_job(&[Success], &[], true);
        assert!(!s.success && !s.failure && s.cancelled);
        assert_eq!(
            JobResult::aggregate(&[Success, Failure, Cancelled]),
            Failure
        );
        assert_eq!(JobResult::aggregate(&[Success, Skipped]), Success);
        assert_eq!(JobResult::aggregate(&[Skipped, Skipped]), Skipped);
    }

    #[test]
    fn contexts_read_their_values() {
        let g = github();
        let env: BTreeMap<String, String> = [("CC".to_string(), "gcc".to_string())].into();
        let mut inner = BTreeMap::new();
        inner.insert("name".to_string(), Value::String("fast".into()));
        let cell = vec![
            ("os".to_string(), Value::String("linux".into())),
            ("cfg".to_string(), Value::Object(inner)),
        ];
        let needs: BTreeMap<String, JobResult> = [("build".to_string(), JobResult::Skipped)].into();
        let secrets: BTreeMap<String, String> =
            [("TOKEN".to_string(), "s3cr3t".to_string())].into();
        let mut cx = EvalContext::new(&g);
        cx.env = Some(&env);
        cx.matrix = Some(&cell);
        cx.needs = Some(&needs);
        cx.secrets = Secrets::Real(&secrets);
        assert_eq!(eval_with("env.CC", &cx), Value::String("gcc".into()));
        assert_eq!(eval_with("env.MISSING", &cx), Value::Null);
        assert_eq!(
            eval_with("matrix.cfg.name", &cx),
            Value::String("fast".into())
        );
        assert_eq!(
            eval_with("needs.build.result == 'skipped'", &cx),
            Value::Bool(true)
        );
        assert_eq!(
            eval_with("secrets.token", &cx),
            Value::String("s3cr3t".into())
        );
        assert_eq!(
            eval_with("github.repository", &cx),
            Value::String("acme/app".into())
        );
        cx.secrets = Secrets::Masked;
        assert_eq!(eval_with("secrets.TOKEN", &cx), Value::String(MASK.into()));
        cx.secrets = Secrets::Unavailable;
        let keys = BTreeSet::new();
        let scope = Scope {
            place: "t",
            env: true,
            secrets: true,
            status: false,
            matrix: MatrixScope::Keys(&keys),
            needs: None,
        };
        let e = parse("secrets.TOKEN", 0, &scope).unwrap();
        assert!(evaluate(&e, &cx).is_err());
    }
}
