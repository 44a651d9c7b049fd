//! Errors in a workflow file: each names the file, line and column, what is
//! wrong and what to change.

use std::fmt;

/// A position in a workflow file, 1-based like editors show it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }

    /// The position `n` characters to the right on the same line.
    pub fn right(self, n: usize) -> Self {
        Pos {
            line: self.line,
            col: self
                .col
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// What kind of mistake an error reports; the documentation
/// (`runner/docs/workflows.md`) lists each with examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Not valid YAML, or YAML features workflows do not use (tags,
    /// several documents).
    Syntax,
    /// Over a bound on size, depth, jobs, steps or matrix cells.
    Limit,
    /// A key this subset does not know (often a typo).
    UnknownKey,
    /// A key GitHub Actions knows but this runner does not support.
    Unsupported,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong type (a list where text was expected, ...).
    WrongType,
    /// A value of the right type that is not acceptable.
    InvalidValue,
    /// `needs` names an unknown job or forms a cycle.
    Dependency,
    /// An expression `${{ }}` that does not parse, names something unknown,
    /// or fails to evaluate.
    Expression,
    /// Refused by the server's workflow policy (unknown `runs-on` label,
    /// image not allowed, limit above the maximum).
    Policy,
}

/// One error, located in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {message}")]
pub struct WorkflowError {
    pub file: String,
    pub pos: Pos,
    pub class: ErrorClass,
    pub message: String,
}

/// At most this many errors are collected from one file: past it, the rest
/// are more likely consequences of the first ones than news.
pub const MAX_ERRORS: usize = 50;

/// Every error found in a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowErrors(pub Vec<WorkflowError>);

impl WorkflowErrors {
    pub fn first(&self) -> &WorkflowError {
        // Never empty: built only by `Errors::finish` with at least one error.
        &self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &WorkflowError> {
        self.0.iter()
    }
}

impl From<WorkflowError> for WorkflowErrors {
    fn from(e: WorkflowError) -> Self {
        WorkflowErrors(vec![e])
    }
}

impl fmt::Display for WorkflowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WorkflowErrors {}

/// Collects errors while a file is read, so one pass reports them all.
#[derive(Debug)]
pub(crate) struct Errors {
    file: String,
    list: Vec<WorkflowError>,
}

impl Errors {
    pub(crate) fn new(file: &str) -> Self {
        Errors {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    pub(crate) fn push(&mut self, pos: Pos, class: ErrorClass, message: impl Into<String>) {
        if self.list.len() < MAX_ERRORS {
            self.list.push(self.error(pos, class, message));
        }
    }

    pub(crate) fn error(
        &self,
        pos: Pos,
        class: ErrorClass,
        message: impl Into<String>,
    ) -> WorkflowError {
        WorkflowError {
            file: self.file.clone(),
            pos,
            class,
            message: message.into(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// `Ok(value)` when nothing was reported, else every error sorted by
    /// position.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, WorkflowErrors> {
        if self.list.is_empty() {
            return Ok(value);
        }
        self.list.sort_by_key(|e| e.pos);
        self.list.dedup();
        Err(WorkflowErrors(self.list))
    }
}
