//! What can stop a run, and whose problem it is.

use std::path::PathBuf;

use super::report::RunReport;
use crate::build::BuildError;
use crate::credentials::CredentialsError;
use crate::engine::EngineUnreachable;
use crate::error::{Blame, Classify};
use crate::output::OutputError;
use crate::push::PushError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::sbom::SbomError;
use crate::scan::ScanError;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The policy or a VEX document is unreadable or malformed.
    #[error(transparent)]
    Input(ScanError),
    #[error("cannot create the output directory {}: {source}", .path.display())]
    OutputDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Engine(#[from] EngineUnreachable),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("the push gave {reference}, which is not a usable reference: {source}")]
    Reference {
        reference: String,
        source: ReferenceError,
    },
    #[error(transparent)]
    Sbom(#[from] SbomError),
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Grype is missing, failed, or its output is unusable.
    #[error(transparent)]
    Grype(ScanError),
    #[error("grype's output is not a report: {0}")]
    GrypeOutput(ScanError),
    #[error("the scan fails the policy {policy}: {summary}")]
    PolicyFailed { policy: String, summary: String },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("signing {image}: {source}")]
    Sign {
        image: String,
        source: Box<RegistryError>,
    },
    #[error("attesting {kind} for {image}: {source}")]
    Attest {
        image: String,
        kind: &'static str,
        source: Box<RegistryError>,
    },
    #[error("internal error: cannot serialize {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("internal error: a worker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Classify for FlowError {
    fn blame(&self) -> Blame {
        match self {
            FlowError::Input(e) | FlowError::Grype(e) => e.blame(),
            FlowError::Build(e) => e.blame(),
            FlowError::Push(e) => e.blame(),
            FlowError::Sbom(e) => e.blame(),
            FlowError::Sign { source, .. } | FlowError::Attest { source, .. } => source.blame(),
            FlowError::OutputDir { .. } | FlowError::Output(_) | FlowError::Credentials(_) => {
                Blame::Usage
            }
            FlowError::PolicyFailed { .. } => Blame::PolicyFailed,
            FlowError::Engine(_)
            | FlowError::Reference { .. }
            | FlowError::GrypeOutput(_)
            | FlowError::Json { .. }
            | FlowError::Task(_) => Blame::Infra,
        }
    }
}

/// A run that stopped: why, and what the steps before had done.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct FlowFailure {
    pub report: RunReport,
    #[source]
    pub error: FlowError,
}

impl Classify for FlowFailure {
    fn blame(&self) -> Blame {
        self.error.blame()
    }
}
