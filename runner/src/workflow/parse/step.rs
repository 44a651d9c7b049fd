//! `steps[*]`.

use super::job::{Scopes, condition_of, flag, is_id, timeout};
use super::read::{self, check_keys, get, map, template, text};
use crate::workflow::error::{ErrorClass, Errors};
use crate::workflow::expr::Condition;
use crate::workflow::model::{Action, Flag, Shell, Step};
use crate::workflow::yaml::{Node, Scalar};

/// `with` is checked against the step's action (see `misplaced_keys`).
const STEP_ACCEPTED: &[&str] = &[
    "id",
    "name",
    "run",
    "uses",
    "shell",
    "env",
    "working-directory",
    "if",
    "continue-on-error",
    "timeout-minutes",
    "with",
];

/// The actions `uses:` may name: only checkout, which needs no work.
const CHECKOUT: &str = "actions/checkout";

pub(super) fn read(
    errs: &mut Errors,
    node: &Node,
    index: usize,
    job_id: &str,
    scopes: &Scopes<'_>,
    ids: &mut Vec<String>,
) -> Option<Step> {
    let place = format!("step {} of job `{job_id}`", index + 1);
    let entries = map(errs, node, &place)?;
    check_keys(errs, entries, &place, STEP_ACCEPTED, &[]);
    let id = get(entries, "id").and_then(|(_, n)| step_id(errs, n, ids));
    let text_scope = scopes.step_text("a step");
    let name = get(entries, "name")
        .and_then(|(_, n)| text(errs, n, "a step's `name`"))
        .and_then(|s| template(errs, s, &text_scope));
    let action = action(errs, node, entries, &place, scopes);
    let env = get(entries, "env")
        .map(|(_, n)| read::env(errs, n, &place, &text_scope))
        .unwrap_or_default();
    let working_directory = get(entries, "working-directory")
        .and_then(|(_, n)| text(errs, n, "`working-directory`"))
        .and_then(|s| working_directory(errs, s, scopes));
    let if_ = get(entries, "if")
        .map(|(_, n)| condition_of(errs, n, &scopes.step_if("a step's `if`", true)));
    let continue_on_error = get(entries, "continue-on-error").map(|(_, n)| {
        flag(
            errs,
            n,
            &scopes.step_if("a step's `continue-on-error`", false),
        )
    });
    let timeout = get(entries, "timeout-minutes").map(|(_, n)| timeout(errs, n));
    if let Some(Some(a)) = &action {
        misplaced_keys(errs, entries, a, &place);
    }
    Some(Step {
        index,
        pos: node.pos,
        id,
        name,
        action: action??,
        env,
        working_directory,
        condition: if_.unwrap_or_else(|| Some(Condition::success()))?,
        continue_on_error: continue_on_error.unwrap_or(Some(Flag::Fixed(false)))?,
        timeout: timeout.unwrap_or(Some(None))?.map(|t| t.value),
    })
}

/// `working-directory` on a checkout, `with` anywhere (checkout has nothing
/// to configure; a refused action was reported already).
fn misplaced_keys(errs: &mut Errors, entries: read::Entries<'_>, action: &Action, place: &str) {
    let checkout = matches!(action, Action::Checkout { .. });
    if let (true, Some((k, _))) = (checkout, get(entries, "working-directory")) {
        errs.push(
            k.pos,
            ErrorClass::InvalidValue,
            "`working-directory` only applies to `run` steps: remove it from this `uses` step",
        );
    }
    if let Some((k, _)) = get(entries, "with") {
        let (class, message) = if checkout {
            (
                ErrorClass::Unsupported,
                format!(
                    "`with` in {place} is not supported: `actions/checkout` is a no-op here (the workspace already holds the commit), so `with` has nothing to configure; remove it"
                ),
            )
        } else {
            (
                ErrorClass::InvalidValue,
                format!("`with` in {place} only goes with `uses`: remove it"),
            )
        };
        errs.push(k.pos, class, message);
    }
}

fn step_id(errs: &mut Errors, node: &Node, ids: &mut Vec<String>) -> Option<String> {
    let s = text(errs, node, "a step's `id`")?;
    if !is_id(&s.text) {
        errs.push(
            s.pos,
            ErrorClass::InvalidValue,
            format!("`{}` is not a step id: use letters, digits, `-` and `_`, starting with a letter or `_`", s.text),
        );
        return None;
    }
    if ids.contains(&s.text) {
        errs.push(
            s.pos,
            ErrorClass::InvalidValue,
            format!(
                "step id `{}` is used twice in this job: make it unique",
                s.text
            ),
        );
        return None;
    }
    ids.push(s.text.clone());
    Some(s.text.clone())
}

/// `run` (with `shell`) or `uses: actions/checkout@REF`. The outer `None`
/// means an error was reported.
fn action(
    errs: &mut Errors,
    node: &Node,
    entries: read::Entries<'_>,
    place: &str,
    scopes: &Scopes<'_>,
) -> Option<Option<Action>> {
    let shell = get(entries, "shell");
    match (get(entries, "run"), get(entries, "uses")) {
        (Some((_, run)), None) => {
            let script = text(errs, run, "`run`")?;
            let shell = match shell {
                None => Shell::Default,
                Some((_, n)) => shell_of(errs, n)?,
            };
            Some(Some(Action::Run {
                script: template(errs, script, &scopes.step_text("a step's `run`"))?,
                shell,
            }))
        }
        (None, Some((_, uses))) => {
            if let Some((k, _)) = shell {
                errs.push(
                    k.pos,
                    ErrorClass::InvalidValue,
                    "`shell` only applies to `run` steps: remove it from this `uses` step",
                );
            }
            let uses = text(errs, uses, "`uses`")?;
            checkout(errs, uses).map(Some)
        }
        (Some(_), Some((k, _))) => {
            errs.push(
                k.pos,
                ErrorClass::InvalidValue,
                format!("{place} has both `run` and `uses`: split it into two steps"),
            );
            None
        }
        (None, None) => {
            errs.push(
                node.pos,
                ErrorClass::MissingKey,
                format!("{place} has neither `run` nor `uses`: add `run: COMMAND`"),
            );
            None
        }
    }
}

fn shell_of(errs: &mut Errors, node: &Node) -> Option<Shell> {
    let s = text(errs, node, "`shell`")?;
    match s.text.as_str() {
        "bash" => Some(Shell::Bash),
        "sh" => Some(Shell::Sh),
        other => {
            errs.push(
                s.pos,
                ErrorClass::Unsupported,
                format!("`shell: {other}` is not supported: use `bash` or `sh` (and call other interpreters from the script)"),
            );
            None
        }
    }
}

fn checkout(errs: &mut Errors, uses: &Scalar) -> Option<Action> {
    let (action, reference) = uses
        .text
        .split_once('@')
        .unwrap_or((uses.text.as_str(), ""));
    if !action.eq_ignore_ascii_case(CHECKOUT) {
        errs.push(
            uses.pos,
            ErrorClass::Unsupported,
            format!(
                "`uses: {}` is not supported: only `{CHECKOUT}` is accepted (the workspace already holds the commit); install tools with `run` steps or pick a job image that has them",
                uses.text
            ),
        );
        return None;
    }
    if reference.is_empty() || reference.contains(char::is_whitespace) {
        errs.push(
            uses.pos,
            ErrorClass::InvalidValue,
            format!(
                "`uses: {}` names no version: write `{CHECKOUT}@v4`",
                uses.text
            ),
        );
        return None;
    }
    Some(Action::Checkout {
        reference: reference.to_owned(),
    })
}

/// Resolved inside the job's container, relative to the workspace.
fn working_directory(
    errs: &mut Errors,
    s: &Scalar,
    scopes: &Scopes<'_>,
) -> Option<crate::workflow::expr::Template> {
    template(errs, s, &scopes.step_text("`working-directory`"))
}
