//! `strategy`: the matrix (expanded here, so its size and keys are known
//! while the rest of the job is read), `fail-fast` and `max-parallel`.

use std::collections::{BTreeMap, BTreeSet};

use super::read::{boolean, check_keys, get, map, number};
use crate::workflow::error::{ErrorClass, Errors, Pos};
use crate::workflow::expr::Value;
use crate::workflow::matrix::{Cell, Entry, ExpandError, Strategy, expand};
use crate::workflow::yaml::{Node, NodeKind, Resolved, Scalar};

const STRATEGY_KEYS: &[&str] = &["matrix", "fail-fast", "max-parallel"];

pub(super) fn read(errs: &mut Errors, node: &Node, job: &str) -> Option<Strategy> {
    let place = format!("the `strategy` of job `{job}`");
    let entries = map(errs, node, &format!("`strategy` of job `{job}`"))?;
    check_keys(errs, entries, &place, STRATEGY_KEYS, &[]);
    let fail_fast =
        get(entries, "fail-fast").map_or(Some(true), |(_, n)| boolean(errs, n, "`fail-fast`"));
    let max_parallel = match get(entries, "max-parallel") {
        None => Some(None),
        Some((_, n)) => match number(errs, n, "`max-parallel`") {
            Some(v) if v >= 1.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => {
                Some(Some(v as u32))
            }
            Some(_) => {
                errs.push(
                    n.pos,
                    ErrorClass::InvalidValue,
                    "`max-parallel` must be a whole number of at least 1",
                );
                None
            }
            None => None,
        },
    };
    let Some((k, m)) = get(entries, "matrix") else {
        errs.push(
            node.pos,
            ErrorClass::MissingKey,
            format!("{place} has no `matrix`: add one, or remove `strategy`"),
        );
        return None;
    };
    let cells = matrix(errs, k.pos, m, job)?;
    let keys: BTreeSet<String> = cells
        .iter()
        .flat_map(|c| c.0.iter().map(|(k, _)| k.clone()))
        .collect();
    Some(Strategy {
        cells,
        keys,
        fail_fast: fail_fast?,
        max_parallel: max_parallel?,
    })
}

fn matrix(errs: &mut Errors, key_pos: Pos, node: &Node, job: &str) -> Option<Vec<Cell>> {
    if node.as_scalar().is_some_and(|s| s.text.contains("${{")) {
        errs.push(
            node.pos,
            ErrorClass::Unsupported,
            "a matrix computed by an expression is not supported: list its keys and values",
        );
        return None;
    }
    let entries = map(errs, node, &format!("`matrix` of job `{job}`"))?;
    let before = errs.len();
    let (dims, include, exclude) = read_matrix(errs, entries);
    check_exclude(errs, entries, &dims, &exclude, node.pos);
    if errs.len() > before {
        return None;
    }
    if dims.is_empty() && include.is_empty() {
        errs.push(
            node.pos,
            ErrorClass::InvalidValue,
            format!("the matrix of job `{job}` has no keys: add `key: [values]` or `include`"),
        );
        return None;
    }
    let cells = match expand(&dims, &include, &exclude) {
        Ok(cells) => cells,
        Err(e) => {
            let class = match e {
                ExpandError::Empty => ErrorClass::InvalidValue,
                ExpandError::TooManyCells(_) | ExpandError::TooManyCombinations(_) => {
                    ErrorClass::Limit
                }
            };
            errs.push(key_pos, class, e.to_string());
            return None;
        }
    };
    let mut seen = BTreeSet::new();
    for c in &cells {
        if !seen.insert(c.label()) {
            errs.push(
                key_pos,
                ErrorClass::InvalidValue,
                format!(
                    "the matrix holds the combination ({}) twice: remove one",
                    c.label()
                ),
            );
            return None;
        }
    }
    Some(cells)
}

type Dims = Vec<(String, Vec<Value>)>;

/// The keys with their values, and the `include` and `exclude` entries.
fn read_matrix(errs: &mut Errors, entries: &[(Scalar, Node)]) -> (Dims, Vec<Entry>, Vec<Entry>) {
    let mut dims = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (k, v) in entries {
        match k.text.as_str() {
            "include" => include = entries_of(errs, v, "include"),
            "exclude" => exclude = entries_of(errs, v, "exclude"),
            key => match v.as_seq() {
                Some([]) => errs.push(
                    v.pos,
                    ErrorClass::InvalidValue,
                    format!("matrix key `{key}` lists no value: add values or remove it"),
                ),
                Some(items) => {
                    let vals: Vec<Value> = items.iter().filter_map(|n| value(errs, n)).collect();
                    dims.push((key.to_owned(), vals));
                }
                None => errs.push(
                    v.pos,
                    ErrorClass::WrongType,
                    format!(
                        "matrix key `{key}` must list its values (`{key}: [a, b]`), found {}",
                        v.describe()
                    ),
                ),
            },
        }
    }
    (dims, include, exclude)
}

/// GitHub refuses `exclude` entries naming keys the matrix does not have.
fn check_exclude(
    errs: &mut Errors,
    entries: &[(Scalar, Node)],
    dims: &Dims,
    exclude: &[Entry],
    fallback: Pos,
) {
    for (i, e) in exclude.iter().enumerate() {
        for (k, _) in e {
            if !dims.iter().any(|(d, _)| d == k) {
                let pos = exclude_pos(entries, i).unwrap_or(fallback);
                let keys: Vec<&str> = dims.iter().map(|(d, _)| d.as_str()).collect();
                errs.push(
                    pos,
                    ErrorClass::InvalidValue,
                    format!(
                        "`exclude` names `{k}`, which is not a key of the matrix (its keys: {})",
                        keys.join(", ")
                    ),
                );
            }
        }
    }
}

fn exclude_pos(entries: &[(Scalar, Node)], i: usize) -> Option<Pos> {
    let (_, n) = get(entries, "exclude")?;
    n.as_seq()?.get(i).map(|e| e.pos)
}

/// The mappings listed under `include` or `exclude`.
fn entries_of(errs: &mut Errors, node: &Node, key: &str) -> Vec<Entry> {
    let Some(items) = node.as_seq() else {
        errs.push(
            node.pos,
            ErrorClass::WrongType,
            format!(
                "`{key}` must be a list of mappings, found {}",
                node.describe()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_map() {
            Some([]) | None => errs.push(
                item.pos,
                ErrorClass::WrongType,
                format!(
                    "each `{key}` entry must be a mapping of matrix keys to values, found {}",
                    item.describe()
                ),
            ),
            Some(m) => out.push(
                m.iter()
                    .filter_map(|(k, v)| Some((k.text.clone(), value(errs, v)?)))
                    .collect(),
            ),
        }
    }
    out
}

/// A matrix value: typed scalars, lists and mappings.
fn value(errs: &mut Errors, node: &Node) -> Option<Value> {
    Some(match &node.kind {
        NodeKind::Scalar(s) if s.text.contains("${{") => {
            errs.push(
                s.pos,
                ErrorClass::Unsupported,
                "expressions in matrix values are not supported: write the value itself",
            );
            return None;
        }
        NodeKind::Scalar(s) => match s.resolve() {
            Resolved::Null => Value::Null,
            Resolved::Bool(b) => Value::Bool(b),
            Resolved::Number(n) => Value::Number(n),
            Resolved::Str => Value::String(s.text.clone()),
        },
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .map(|n| value(errs, n))
                .collect::<Option<_>>()?,
        ),
        NodeKind::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Some((k.text.clone(), value(errs, v)?)))
                .collect::<Option<BTreeMap<_, _>>>()?,
        ),
    })
}
