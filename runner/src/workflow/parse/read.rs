//! Reading typed values out of positioned YAML, reporting what is wrong
//! where it is.

use crate::workflow::error::{ErrorClass, Errors};
use crate::workflow::expr::{Condition, Scope, Template};
use crate::workflow::model::EnvVar;
use crate::workflow::suggest::did_you_mean;
use crate::workflow::yaml::{Node, Resolved, Scalar};

pub(super) type Entries<'n> = &'n [(Scalar, Node)];

/// At most this many variables in one `env` mapping.
pub const MAX_ENV_VARS: usize = 100;

pub(super) fn map<'n>(errs: &mut Errors, node: &'n Node, what: &str) -> Option<Entries<'n>> {
    let m = node.as_map();
    if m.is_none() {
        errs.push(
            node.pos,
            ErrorClass::WrongType,
            format!(
                "{what} must be a mapping (`key: value` lines), found {}",
                node.describe()
            ),
        );
    }
    m
}

pub(super) fn get<'n>(entries: Entries<'n>, key: &str) -> Option<&'n (Scalar, Node)> {
    entries.iter().find(|(k, _)| k.text == key)
}

/// Reports keys not in `allowed`: a GitHub key this runner does not support
/// with why, anything else with the closest allowed key.
pub(super) fn check_keys(
    errs: &mut Errors,
    entries: Entries<'_>,
    place: &str,
    allowed: &[&str],
    unsupported: &[(&str, &str)],
) {
    for (k, _) in entries {
        let key = k.text.as_str();
        if allowed.contains(&key) {
            continue;
        }
        if let Some((_, why)) = unsupported.iter().find(|(u, _)| *u == key) {
            errs.push(
                k.pos,
                ErrorClass::Unsupported,
                format!("`{key}` in {place} is not supported: {why}"),
            );
            continue;
        }
        let hint = did_you_mean(key, allowed.iter().copied());
        let message = if hint.is_empty() {
            format!(
                "unknown key `{key}` in {place}: remove it (the keys here are {})",
                allowed.join(", ")
            )
        } else {
            format!("unknown key `{key}` in {place}{hint}")
        };
        errs.push(k.pos, ErrorClass::UnknownKey, message);
    }
}

/// A scalar with a value (not empty, not a list or mapping).
pub(super) fn text<'n>(errs: &mut Errors, node: &'n Node, what: &str) -> Option<&'n Scalar> {
    match node.as_scalar() {
        Some(s) if !s.is_null() => Some(s),
        Some(_) => {
            errs.push(
                node.pos,
                ErrorClass::MissingKey,
                format!("{what} needs a value"),
            );
            None
        }
        None => {
            errs.push(
                node.pos,
                ErrorClass::WrongType,
                format!("{what} must be text, found {}", node.describe()),
            );
            None
        }
    }
}

pub(super) fn boolean(errs: &mut Errors, node: &Node, what: &str) -> Option<bool> {
    match node.as_scalar().map(Scalar::resolve) {
        Some(Resolved::Bool(b)) => Some(b),
        _ => {
            errs.push(
                node.pos,
                ErrorClass::WrongType,
                format!("{what} must be true or false, found {}", node.describe()),
            );
            None
        }
    }
}

pub(super) fn number(errs: &mut Errors, node: &Node, what: &str) -> Option<f64> {
    match node.as_scalar().map(Scalar::resolve) {
        Some(Resolved::Number(n)) if n.is_finite() => Some(n),
        _ => {
            errs.push(
                node.pos,
                ErrorClass::WrongType,
                format!("{what} must be a number, found {}", node.describe()),
            );
            None
        }
    }
}

/// One scalar or a list of scalars (`needs: build`, `needs: [a, b]`).
pub(super) fn one_or_list<'n>(errs: &mut Errors, node: &'n Node, what: &str) -> Vec<&'n Scalar> {
    if let Some(s) = node.as_seq() {
        return s.iter().filter_map(|n| text(errs, n, what)).collect();
    }
    text(errs, node, what).into_iter().collect()
}

pub(super) fn template(errs: &mut Errors, s: &Scalar, scope: &Scope<'_>) -> Option<Template> {
    Template::parse(&s.text, scope)
        .map_err(|e| errs.push(s.pos_at(e.offset), ErrorClass::Expression, e.message))
        .ok()
}

pub(super) fn condition(errs: &mut Errors, s: &Scalar, scope: &Scope<'_>) -> Option<Condition> {
    Condition::parse(&s.text, scope)
        .map_err(|e| errs.push(s.pos_at(e.offset), ErrorClass::Expression, e.message))
        .ok()
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a shell accepts as a variable name.
pub(super) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An `env` mapping; empty values are empty text.
pub(super) fn env(errs: &mut Errors, node: &Node, place: &str, scope: &Scope<'_>) -> Vec<EnvVar> {
    let Some(entries) = map(errs, node, &format!("`env` of {place}")) else {
        return Vec::new();
    };
    if entries.len() > MAX_ENV_VARS {
        errs.push(
            node.pos,
            ErrorClass::Limit,
            format!(
                "`env` of {place} sets {} variables; at most {MAX_ENV_VARS} are allowed",
                entries.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in entries {
        if !is_env_name(&k.text) {
            errs.push(
                k.pos,
                ErrorClass::InvalidValue,
                format!(
                    "`{}` is not a variable name: use letters, digits and `_`, not starting with a digit",
                    k.text
                ),
            );
            continue;
        }
        let value = match v.as_scalar() {
            Some(s) if s.is_null() => Some(Template::literal("")),
            Some(s) => template(errs, s, scope),
            None => {
                errs.push(
                    v.pos,
                    ErrorClass::WrongType,
                    format!(
                        "`{}` in `env` of {place} must be text, found {}",
                        k.text,
                        v.describe()
                    ),
                );
                None
            }
        };
        if let Some(value) = value {
            out.push(EnvVar {
                name: k.text.clone(),
                value,
            });
        }
    }
    out
}
