//! `strategy.matrix`: expanding a matrix into cells, with GitHub's
//! semantics for `include` and `exclude`.
//!
//! 1. The product of every key's list, the first key varying slowest.
//! 2. `exclude` removes each cell that matches one of its entries on every
//!    key the entry names (a partial match is enough).
//! 3. `include`, entry by entry: the entry extends every original cell whose
//!    original values it does not contradict (values added by an earlier
//!    entry may be overwritten); an entry that extends no original cell
//!    becomes a cell of its own.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::expr::Value;

/// At most this many cells may a matrix expand to (GitHub's bound too).
pub const MAX_CELLS: usize = 256;
/// At most this many combinations may the product of the keys' lists hold
/// before `exclude`: it is materialized, so it is bounded as well.
pub const MAX_PRODUCT: usize = 4096;

/// One combination of matrix values, keys in the order they were written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell(pub Vec<(String, Value)>);

impl Cell {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// `3.11, linux`: the values as GitHub lists them in a job's name.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(_, v)| match v {
                Value::Array(_) | Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
                v => v.render(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A job's `strategy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    pub cells: Vec<Cell>,
    /// Every key of any cell: what `matrix.<key>` may name.
    pub keys: BTreeSet<String>,
    /// Cancel the other cells when one fails (default true).
    pub fail_fast: bool,
    /// At most this many cells at once; `None`: as many as the runner can.
    pub max_parallel: Option<u32>,
}

/// Why a matrix cannot be expanded; the parser places it in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    TooManyCombinations(usize),
    TooManyCells(usize),
    Empty,
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::TooManyCombinations(n) => write!(
                f,
                "the matrix has {n} combinations before `exclude`; at most {MAX_PRODUCT} are allowed: split the job"
            ),
            ExpandError::TooManyCells(n) => write!(
                f,
                "the matrix expands to {n} jobs; at most {MAX_CELLS} are allowed: remove values or add `exclude` entries"
            ),
            ExpandError::Empty => write!(
                f,
                "the matrix expands to no job: every combination is excluded"
            ),
        }
    }
}

/// One `include` or `exclude` entry.
pub type Entry = Vec<(String, Value)>;

/// Expands `dims` (each key and its values) with `exclude` then `include`.
pub fn expand(
    dims: &[(String, Vec<Value>)],
    include: &[Entry],
    exclude: &[Entry],
) -> Result<Vec<Cell>, ExpandError> {
    let product = dims
        .iter()
        .try_fold(1usize, |n, (_, vals)| n.checked_mul(vals.len()))
        .unwrap_or(usize::MAX);
    if !dims.is_empty() && product > MAX_PRODUCT {
        return Err(ExpandError::TooManyCombinations(product));
    }
    let mut original: Vec<Cell> = if dims.is_empty() {
        Vec::new()
    } else {
        let mut cells = vec![Cell(Vec::new())];
        for (key, vals) in dims {
            cells = cells
                .into_iter()
                .flat_map(|c| {
                    vals.iter().map(move |v| {
                        let mut c = c.clone();
                        c.0.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        cells
    };
    original.retain(|c| {
        !exclude
            .iter()
            .any(|e| e.iter().all(|(k, v)| c.get(k) == Some(v)))
    });

    let dim_keys: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
    let mut added: Vec<Cell> = Vec::new();
    for entry in include {
        let mut extended = false;
        for cell in original.iter_mut() {
            // The entry may not change an original value; values an earlier
            // entry added may be overwritten.
            let fits = entry
                .iter()
                .filter(|(k, _)| dim_keys.contains(&k.as_str()))
                .all(|(k, v)| cell.get(k) == Some(v));
            if fits {
                for (k, v) in entry {
                    cell.set(k, v.clone());
                }
                extended = true;
            }
        }
        if !extended {
            added.push(Cell(entry.clone()));
        }
    }
    original.extend(added);
    if original.is_empty() {
        return Err(ExpandError::Empty);
    }
    if original.len() > MAX_CELLS {
        return Err(ExpandError::TooManyCells(original.len()));
    }
    Ok(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn n(v: f64) -> Value {
        Value::Number(v)
    }

    fn dim(key: &str, vals: Vec<Value>) -> (String, Vec<Value>) {
        (key.into(), vals)
    }

    fn entry(pairs: &[(&str, Value)]) -> Entry {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn labels(cells: &[Cell]) -> Vec<String> {
        cells
            .iter()
            .map(|c| {
                c.0.iter()
                    .map(|(k, v)| format!("{k}={}", v.render()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn product_varies_the_first_key_slowest() {
        let cells = expand(
            &[
                dim("os", vec![s("a"), s("b")]),
                dim("v", vec![n(1.0), n(2.0)]),
            ],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            labels(&cells),
            ["os=a v=1", "os=a v=2", "os=b v=1", "os=b v=2"]
        );
        assert_eq!(cells[1].label(), "a, 2");
    }

    /// GitHub's documented example "Expanding or adding matrix
    /// configurations" (fruit, animal, include).
    #[test]
    fn include_extends_or_adds_as_github_documents() {
        let dims = [
            dim("fruit", vec![s("apple"), s("pear")]),
            dim("animal", vec![s("cat"), s("dog")]),
        ];
        let include = [
            entry(&[("color", s("green"))]),
            entry(&[("color", s("pink")), ("animal", s("cat"))]),
            entry(&[("fruit", s("apple")), ("shape", s("circle"))]),
            entry(&[("fruit", s("banana"))]),
            entry(&[("fruit", s("banana")), ("animal", s("cat"))]),
        ];
        let cells = expand(&dims, &include, &[]).unwrap();
        assert_eq!(
            labels(&cells),
            [
                "fruit=apple animal=cat color=pink shape=circle",
                "fruit=apple animal=dog color=green shape=circle",
                "fruit=pear animal=cat color=pink",
                "fruit=pear animal=dog color=green",
                "fruit=banana",
                "fruit=banana animal=cat",
            ]
        );
    }

    /// GitHub's example: include adds `npm: 6` to one existing cell.
    #[test]
    fn include_matching_one_cell_extends_only_it() {
        let dims = [
            dim("os", vec![s("windows-latest"), s("ubuntu-latest")]),
            dim("node", vec![n(14.0), n(16.0)]),
        ];
        let include = [entry(&[
            ("os", s("windows-latest")),
            ("node", n(16.0)),
            ("npm", n(6.0)),
        ])];
        let cells = expand(&dims, &include, &[]).unwrap();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[1].get("npm"), Some(&n(6.0)));
        assert_eq!(cells.iter().filter(|c| c.get("npm").is_some()).count(), 1);
    }

    /// GitHub's example "Excluding matrix configurations": 12 combinations,
    /// one full and one partial exclude leave 9 (the partial one removes 2).
    #[test]
    fn exclude_removes_full_and_partial_matches() {
        let dims = [
            dim("os", vec![s("macos-latest"), s("windows-latest")]),
            dim("version", vec![n(12.0), n(14.0), n(16.0)]),
            dim("environment", vec![s("staging"), s("production")]),
        ];
        let exclude = [
            entry(&[
                ("os", s("macos-latest")),
                ("version", n(12.0)),
                ("environment", s("production")),
            ]),
            entry(&[("os", s("windows-latest")), ("version", n(16.0))]),
        ];
        let cells = expand(&dims, &[], &exclude).unwrap();
        assert_eq!(cells.len(), 9);
        assert!(
            !labels(&cells)
                .contains(&"os=windows-latest version=16 environment=staging".to_string())
        );
    }

    #[test]
    fn include_runs_after_exclude_and_can_add_back() {
        let dims = [dim("os", vec![s("a"), s("b")])];
        let exclude = [entry(&[("os", s("b"))])];
        let include = [entry(&[("os", s("b")), ("extra", Value::Bool(true))])];
        let cells = expand(&dims, &include, &exclude).unwrap();
        assert_eq!(labels(&cells), ["os=a", "os=b extra=true"]);
    }

    #[test]
    fn only_include_makes_one_cell_per_entry() {
        let include = [entry(&[("site", s("prod"))]), entry(&[("site", s("dev"))])];
        let cells = expand(&[], &include, &[]).unwrap();
        assert_eq!(labels(&cells), ["site=prod", "site=dev"]);
    }

    #[test]
    fn bounds_and_emptiness_are_errors() {
        let big: Vec<Value> = (0..17).map(|i| n(f64::from(i))).collect();
        let dims = [dim("a", big.clone()), dim("b", big.clone())];
        assert_eq!(expand(&dims, &[], &[]), Err(ExpandError::TooManyCells(289)));
        let dims = [dim("a", big.clone()), dim("b", big.clone()), dim("c", big)];
        assert_eq!(
            expand(&dims, &[], &[]),
            Err(ExpandError::TooManyCombinations(4913))
        );
        let dims = [dim("a", vec![s("x")])];
        assert_eq!(
            expand(&dims, &[], &[entry(&[("a", s("x"))])]),
            Err(ExpandError::Empty)
        );
    }
}
