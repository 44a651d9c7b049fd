//! `on`: only `push`, with its branch, tag and path filters.

use super::read::{Entries, check_keys, get, map, one_or_list};
use crate::workflow::error::{ErrorClass, Errors};
use crate::workflow::filter::{Filter, MAX_PATTERNS, Pattern};
use crate::workflow::suggest::did_you_mean;
use crate::workflow::trigger::PushTrigger;
use crate::workflow::yaml::{Node, Scalar};

/// GitHub's other events: named as unsupported rather than unknown.
const OTHER_EVENTS: &[&str] = &[
    "pull_request",
    "pull_request_target",
    "workflow_dispatch",
    "workflow_call",
    "workflow_run",
    "schedule",
    "release",
    "create",
    "delete",
    "issues",
    "issue_comment",
    "merge_group",
    "repository_dispatch",
    "deployment",
    "page_build",
    "registry_package",
    "status",
    "check_run",
    "check_suite",
    "discussion",
    "fork",
    "gollum",
    "label",
    "milestone",
    "project",
    "public",
    "watch",
];

const PUSH_KEYS: &[&str] = &["branches", "branches-ignore", "tags", "paths"];
const PUSH_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "tags-ignore",
        "use `tags` with `!` patterns, such as ['**', '!nightly*']",
    ),
    (
        "paths-ignore",
        "use `paths` with `!` patterns, such as ['**', '!docs/**']",
    ),
];

pub(super) fn read(errs: &mut Errors, node: &Node) -> Option<PushTrigger> {
    let before = errs.len();
    let trigger = read_events(errs, node);
    if trigger.is_none() && errs.len() == before {
        errs.push(
            node.pos,
            ErrorClass::MissingKey,
            "`on` names no event: write `on: push`",
        );
    }
    trigger
}

fn read_events(errs: &mut Errors, node: &Node) -> Option<PushTrigger> {
    if node.is_null() {
        return None;
    }
    if let Some(s) = node.as_scalar() {
        return event(errs, s).then(PushTrigger::default);
    }
    if let Some(list) = node.as_seq() {
        let mut push = false;
        for n in list {
            match n.as_scalar() {
                Some(s) => push |= event(errs, s),
                None => errs.push(
                    n.pos,
                    ErrorClass::WrongType,
                    format!("events in `on` are names, found {}", n.describe()),
                ),
            }
        }
        return push.then(PushTrigger::default);
    }
    let entries = map(errs, node, "`on`")?;
    let mut trigger = None;
    for (k, v) in entries {
        if !event(errs, k) {
            continue;
        }
        trigger = if v.is_null() {
            Some(PushTrigger::default())
        } else {
            push_filters(errs, v)
        };
    }
    trigger
}

/// Whether `s` names `push`; reports anything else.
fn event(errs: &mut Errors, s: &Scalar) -> bool {
    let name = s.text.as_str();
    if name == "push" {
        return true;
    }
    if OTHER_EVENTS.contains(&name) {
        errs.push(
            s.pos,
            ErrorClass::Unsupported,
            format!("the event `{name}` is not supported: this runner runs workflows on `push` only; remove it"),
        );
    } else {
        errs.push(
            s.pos,
            ErrorClass::InvalidValue,
            format!(
                "unknown event `{name}`{}: this runner runs workflows on `push`",
                did_you_mean(name, ["push"])
            ),
        );
    }
    false
}

fn push_filters(errs: &mut Errors, node: &Node) -> Option<PushTrigger> {
    let entries = map(errs, node, "`on.push`")?;
    check_keys(errs, entries, "`on.push`", PUSH_KEYS, PUSH_UNSUPPORTED);
    if let (Some(_), Some((k, _))) = (get(entries, "branches"), get(entries, "branches-ignore")) {
        errs.push(
            k.pos,
            ErrorClass::InvalidValue,
            "`branches` and `branches-ignore` cannot both filter on.push: keep `branches` and exclude with `!` patterns",
        );
    }
    Some(PushTrigger {
        branches: filter(errs, entries, "branches", Negation::NeedsPositive),
        branches_ignore: filter(errs, entries, "branches-ignore", Negation::Refused),
        tags: filter(errs, entries, "tags", Negation::NeedsPositive),
        paths: filter(errs, entries, "paths", Negation::NeedsPositive),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Negation {
    /// `!` patterns allowed, with at least one pattern without `!`.
    NeedsPositive,
    /// No `!` (an ignore list with exceptions is a `branches` list).
    Refused,
}

fn filter(
    errs: &mut Errors,
    entries: Entries<'_>,
    key: &str,
    negation: Negation,
) -> Option<Filter> {
    let (k, node) = get(entries, key)?;
    let before = errs.len();
    let what = format!("a pattern of on.push.{key}");
    let list = one_or_list(errs, node, &what);
    if list.len() > MAX_PATTERNS {
        errs.push(
            node.pos,
            ErrorClass::Limit,
            format!(
                "on.push.{key} has {} patterns; at most {MAX_PATTERNS} are allowed",
                list.len()
            ),
        );
        return None;
    }
    let mut patterns = Vec::new();
    for s in list {
        match Pattern::parse(&s.text) {
            Ok(p) if p.is_negated() && negation == Negation::Refused => errs.push(
                s.pos,
                ErrorClass::InvalidValue,
                format!("`!` patterns are not allowed in on.push.{key}: list the branches to run in `branches`, with `!` exceptions"),
            ),
            Ok(p) => patterns.push(p),
            Err(e) => errs.push(
                s.pos_at(e.offset),
                ErrorClass::InvalidValue,
                format!("`{}` is not a valid pattern: {}", s.text, e.message),
            ),
        }
    }
    if patterns.is_empty() {
        if errs.len() == before {
            errs.push(
                node.pos,
                ErrorClass::InvalidValue,
                format!("on.push.{key} lists no pattern: add one, or remove `{key}`"),
            );
        }
        return None;
    }
    if patterns.iter().all(Pattern::is_negated) {
        errs.push(
            k.pos,
            ErrorClass::InvalidValue,
            format!("every pattern of on.push.{key} starts with `!`, so nothing is selected: add a pattern such as '**' before them"),
        );
    }
    Some(Filter::new(patterns))
}
