//! What can go wrong while scanning or evaluating, with enough context (file,
//! field) for the message to say what to fix.

use std::path::PathBuf;

use super::grype::INSTALL_HINT;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is larger than {limit} bytes, the most this command reads")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        limit: u64,
    },
    /// A Grype JSON report that is not one, or holds values we cannot rank.
    #[error("Grype report {origin}: {}", at(.field, .problem))]
    Report {
        origin: String,
        field: String,
        problem: String,
    },
    /// A scan policy file that is malformed or breaks a rule of the schema.
    #[error("scan policy {origin}: {}", at(.field, .problem))]
    Policy {
        origin: String,
        field: String,
        problem: String,
    },
    /// An OpenVEX document that is malformed or breaks a rule of the spec
    /// we rely on.
    #[error("VEX document {origin}: {}", at(.field, .problem))]
    Vex {
        origin: String,
        field: String,
        problem: String,
    },
    #[error("grype was not found (tried to run {program:?}). {INSTALL_HINT}")]
    GrypeNotFound { program: String },
    #[error("cannot start grype ({program}): {source}")]
    GrypeStart {
        program: String,
        source: std::io::Error,
    },
    #[error("grype ({program}) failed: {status}{}", tail(.stderr_tail))]
    GrypeFailed {
        program: String,
        status: String,
        stderr_tail: String,
    },
}

impl ScanError {
    /// Whether the user can fix it by changing an input or an argument
    /// (exit 2), rather than Grype being missing or failing.
    pub fn is_usage(&self) -> bool {
        match self {
            ScanError::Read { .. }
            | ScanError::TooLarge { .. }
            | ScanError::Report { .. }
            | ScanError::Policy { .. }
            | ScanError::Vex { .. } => true,
            ScanError::GrypeNotFound { .. }
            | ScanError::GrypeStart { .. }
            | ScanError::GrypeFailed { .. } => false,
        }
    }

    pub fn is_grype_not_found(&self) -> bool {
        matches!(self, ScanError::GrypeNotFound { .. })
    }
}

/// What is wrong with one field of an input document (a policy, a VEX
/// document), before the document itself is named: `field` is a path such
/// as `statements[2].products[0]`, empty for the whole document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", at(.field, .problem))]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same problem, its field placed under `prefix`
    /// (`products[0]` + `.subcomponents[1]`).
    pub fn under(self, prefix: &str) -> FieldProblem {
        FieldProblem {
            field: format!("{prefix}{}", self.field),
            problem: self.problem,
        }
    }
}

/// `field: problem`, or just the problem when it is about the whole file.
fn at(field: &str, problem: &str) -> String {
    if field.is_empty() || field == "." {
        problem.to_owned()
    } else {
        format!("{field}: {problem}")
    }
}

fn tail(stderr: &str) -> String {
    let stderr = stderr.trim_end();
    if stderr.is_empty() {
        " (it wrote nothing on stderr)".to_owned()
    } else {
        format!("; the end of its stderr:\n{stderr}")
    }
}
