//! `jobs.<id>`.

use std::time::Duration;

use super::read::{self, check_keys, condition, get, map, number, one_or_list, template, text};
use super::{MAX_STEPS, step, strategy};
use crate::workflow::error::{ErrorClass, Errors, Pos};
use crate::workflow::expr::{Condition, MatrixScope, Scope};
use crate::workflow::model::{Flag, Job, Located};
use crate::workflow::yaml::{Node, Resolved, Scalar};

const JOB_KEYS: &[&str] = &[
    "name",
    "runs-on",
    "container",
    "needs",
    "if",
    "env",
    "timeout-minutes",
    "strategy",
    "continue-on-error",
    "steps",
];
const JOB_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "permissions",
        "jobs here get no GitHub token, so there is nothing to grant; remove it",
    ),
    ("concurrency", "every push runs; remove it"),
    (
        "defaults",
        "set `shell` and `working-directory` on each step instead",
    ),
    (
        "services",
        "service containers are not supported: start what the job needs from its steps",
    ),
    (
        "outputs",
        "jobs here have no outputs; dependants can read `needs.<job>.result` only",
    ),
    (
        "environment",
        "deployment environments are not supported; remove it",
    ),
    (
        "uses",
        "reusable workflows are not supported: write the job's steps here",
    ),
    (
        "with",
        "reusable workflows are not supported, so `with` has nothing to pass; remove it",
    ),
    (
        "secrets",
        "reusable workflows are not supported; steps read secrets with `${{ secrets.NAME }}`",
    ),
];
const CONTAINER_KEYS: &[&str] = &["image"];
const CONTAINER_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "credentials",
        "images come from the runner's engine, never from a registry login; remove it",
    ),
    ("env", "set `env` on the job instead"),
    ("ports", "jobs have no published ports; remove it"),
    ("volumes", "jobs get only their own workspace; remove it"),
    ("options", "container options are server policy; remove it"),
];

/// The longest `timeout-minutes` the parser accepts (a week); the server's
/// policy usually allows much less.
pub const MAX_TIMEOUT_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// What expressions may read at each place of a job.
pub(super) struct Scopes<'a> {
    pub matrix: MatrixScope<'a>,
    pub needs: &'a [String],
}

impl<'a> Scopes<'a> {
    /// `name`, `runs-on`, `container`, `continue-on-error` of a job: read
    /// when the run is planned, so only `github` and `matrix`.
    pub fn planned(&self, place: &'a str) -> Scope<'a> {
        Scope {
            place,
            matrix: self.matrix,
            ..Scope::GITHUB_ONLY
        }
    }

    /// A job's `if`: no `matrix` (GitHub evaluates it before expanding).
    pub fn job_if(&self) -> Scope<'a> {
        Scope {
            place: "a job's `if`",
            status: true,
            needs: Some(self.needs),
            ..Scope::GITHUB_ONLY
        }
    }

    pub fn job_env(&self) -> Scope<'a> {
        Scope {
            place: "a job's `env`",
            secrets: true,
            matrix: self.matrix,
            needs: Some(self.needs),
            ..Scope::GITHUB_ONLY
        }
    }

    /// A step's `run`, `env`, `name`, `working-directory`.
    pub fn step_text(&self, place: &'a str) -> Scope<'a> {
        Scope {
            place,
            env: true,
            secrets: true,
            matrix: self.matrix,
            needs: Some(self.needs),
            status: false,
        }
    }

    /// A step's `if` (no secrets, as on GitHub) and `continue-on-error`.
    pub fn step_if(&self, place: &'a str, status: bool) -> Scope<'a> {
        Scope {
            place,
            env: true,
            secrets: false,
            matrix: self.matrix,
            needs: Some(self.needs),
            status,
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: GitHub's rule for job and step ids.
pub(super) fn is_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn read(errs: &mut Errors, id: &Scalar, node: &Node) -> Option<Job> {
    let job_id = id.text.as_str();
    if !is_id(job_id) {
        errs.push(
            id.pos,
            ErrorClass::InvalidValue,
            format!("`{job_id}` is not a job id: use letters, digits, `-` and `_`, starting with a letter or `_`"),
        );
    }
    let place = format!("job `{job_id}`");
    let entries = map(errs, node, &format!("job `{job_id}`"))?;
    check_keys(errs, entries, &place, JOB_KEYS, JOB_UNSUPPORTED);

    let strategy = get(entries, "strategy").map(|(_, n)| strategy::read(errs, n, job_id));
    let matrix = match &strategy {
        Some(Some(s)) => MatrixScope::Keys(&s.keys),
        // A broken strategy was reported; do not add errors for each use.
        Some(None) => MatrixScope::Any,
        None => MatrixScope::NoMatrix,
    };
    let needs = get(entries, "needs")
        .map(|(_, n)| needs(errs, n))
        .unwrap_or_default();
    let scopes = Scopes {
        matrix,
        needs: &needs,
    };

    let name = get(entries, "name")
        .and_then(|(_, n)| text(errs, n, "a job's `name`"))
        .and_then(|s| template(errs, s, &scopes.planned("a job's `name`")));
    let runs_on = runs_on(errs, entries, id, &scopes);
    let container_image = get(entries, "container").and_then(|(_, n)| container(errs, n, &scopes));
    let if_ = get(entries, "if").map(|(_, n)| condition_of(errs, n, &scopes.job_if()));
    let env = get(entries, "env")
        .map(|(_, n)| read::env(errs, n, &place, &scopes.job_env()))
        .unwrap_or_default();
    let timeout = get(entries, "timeout-minutes").map(|(_, n)| timeout(errs, n));
    let continue_on_error = get(entries, "continue-on-error")
        .map(|(_, n)| flag(errs, n, &scopes.planned("a job's `continue-on-error`")));
    let steps = match get(entries, "steps") {
        Some((k, n)) => steps(errs, k.pos, n, job_id, &scopes),
        None => {
            errs.push(
                id.pos,
                ErrorClass::MissingKey,
                format!("job `{job_id}` has no `steps`: add a list of steps"),
            );
            None
        }
    };
    Some(Job {
        id: job_id.to_owned(),
        pos: id.pos,
        name,
        runs_on: runs_on?,
        container_image,
        condition: if_.unwrap_or_else(|| Some(Condition::success()))?,
        env,
        timeout: timeout.unwrap_or(Some(None))?,
        strategy: match strategy {
            None => None,
            Some(s) => Some(s?),
        },
        continue_on_error: continue_on_error.unwrap_or(Some(Flag::Fixed(false)))?,
        steps: steps?,
        needs,
    })
}

fn needs(errs: &mut Errors, node: &Node) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in one_or_list(errs, node, "a job in `needs`") {
        if out.contains(&s.text) {
            errs.push(
                s.pos,
                ErrorClass::InvalidValue,
                format!("`needs` names `{}` twice: remove one", s.text),
            );
        } else {
            out.push(s.text.clone());
        }
    }
    out
}

fn runs_on(
    errs: &mut Errors,
    entries: read::Entries<'_>,
    id: &Scalar,
    scopes: &Scopes<'_>,
) -> Option<Located<crate::workflow::expr::Template>> {
    let Some((_, node)) = get(entries, "runs-on") else {
        errs.push(
            id.pos,
            ErrorClass::MissingKey,
            format!("job `{}` has no `runs-on`: add `runs-on: LABEL` with a label of the server's workflow policy", id.text),
        );
        return None;
    };
    let label = match (node.as_seq(), node.as_map()) {
        (Some([one]), _) => text(errs, one, "`runs-on`")?,
        (Some(list), _) => {
            errs.push(
                node.pos,
                ErrorClass::InvalidValue,
                format!("`runs-on` lists {} labels: give one label, which the server maps to a job image", list.len()),
            );
            return None;
        }
        (_, Some(_)) => {
            errs.push(
                node.pos,
                ErrorClass::Unsupported,
                "runner groups are not supported: give one label, such as `runs-on: debian`",
            );
            return None;
        }
        _ => text(errs, node, "`runs-on`")?,
    };
    Some(Located {
        value: template(errs, label, &scopes.planned("`runs-on`"))?,
        pos: label.pos,
    })
}

fn container(
    errs: &mut Errors,
    node: &Node,
    scopes: &Scopes<'_>,
) -> Option<Located<crate::workflow::expr::Template>> {
    let image = if let Some(entries) = node.as_map() {
        check_keys(
            errs,
            entries,
            "`container`",
            CONTAINER_KEYS,
            CONTAINER_UNSUPPORTED,
        );
        let Some((_, n)) = get(entries, "image") else {
            errs.push(
                node.pos,
                ErrorClass::MissingKey,
                "`container` has no `image`: add `image: NAME`",
            );
            return None;
        };
        text(errs, n, "`container.image`")?
    } else {
        text(errs, node, "`container`")?
    };
    Some(Located {
        value: template(errs, image, &scopes.planned("`container.image`"))?,
        pos: image.pos,
    })
}

pub(super) fn condition_of(errs: &mut Errors, node: &Node, scope: &Scope<'_>) -> Option<Condition> {
    // `if: true` and `if: 1` are expressions too: read the scalar's text.
    let s = node.as_scalar().filter(|s| !s.is_null());
    match s {
        Some(s) => condition(errs, s, scope),
        None => {
            errs.push(
                node.pos,
                ErrorClass::WrongType,
                format!("`if` must be a condition, found {}", node.describe()),
            );
            None
        }
    }
}

pub(super) fn timeout(errs: &mut Errors, node: &Node) -> Option<Option<Located<Duration>>> {
    let minutes = number(errs, node, "`timeout-minutes`")?;
    if minutes <= 0.0 || minutes > MAX_TIMEOUT_MINUTES {
        errs.push(
            node.pos,
            ErrorClass::InvalidValue,
            format!("`timeout-minutes` is {minutes}; it must be above 0 and at most {MAX_TIMEOUT_MINUTES}"),
        );
        return None;
    }
    Some(Some(Located {
        value: Duration::from_secs_f64(minutes * 60.0),
        pos: node.pos,
    }))
}

/// `continue-on-error`: true, false or an expression.
pub(super) fn flag(errs: &mut Errors, node: &Node, scope: &Scope<'_>) -> Option<Flag> {
    match node.as_scalar() {
        Some(s) if s.resolve() == Resolved::Bool(true) => Some(Flag::Fixed(true)),
        Some(s) if s.resolve() == Resolved::Bool(false) => Some(Flag::Fixed(false)),
        Some(s) if s.text.contains("${{") => template(errs, s, scope).map(Flag::Expr),
        _ => {
            errs.push(
                node.pos,
                ErrorClass::WrongType,
                format!("`continue-on-error` must be true, false or a `${{{{ }}}}` expression, found {}", node.describe()),
            );
            None
        }
    }
}

fn steps(
    errs: &mut Errors,
    key_pos: Pos,
    node: &Node,
    job_id: &str,
    scopes: &Scopes<'_>,
) -> Option<Vec<crate::workflow::model::Step>> {
    let Some(items) = node.as_seq() else {
        errs.push(
            node.pos,
            ErrorClass::WrongType,
            format!(
                "`steps` of job `{job_id}` must be a list, found {}",
                node.describe()
            ),
        );
        return None;
    };
    if items.is_empty() {
        errs.push(
            key_pos,
            ErrorClass::MissingKey,
            format!("job `{job_id}` has no steps: add at least one"),
        );
        return None;
    }
    if items.len() > MAX_STEPS {
        errs.push(
            key_pos,
            ErrorClass::Limit,
            format!("job `{job_id}` has {} steps; at most {MAX_STEPS} are allowed: split it into several jobs", items.len()),
        );
        return None;
    }
    let mut ids = Vec::new();
    let steps: Vec<_> = items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| step::read(errs, n, i, job_id, scopes, &mut ids))
        .collect();
    (steps.len() == items.len()).then_some(steps)
}
