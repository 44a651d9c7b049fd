//! What can stop a deploy, and what state it left the environment in.

use std::path::PathBuf;

use super::docker::ProxyError;
use crate::error::{Blame, Classify};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("Docker: cannot {action}: {message}")]
    Docker { action: String, message: String },
    #[error("cannot get the image {image}: {message}")]
    ImageUnavailable { image: String, message: String },
    #[error("the new replica {replica} failed its health check: {reason}")]
    Unhealthy { replica: String, reason: String },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("during the soak window ({seconds} s): {reason}")]
    Soak { seconds: u64, reason: String },
    #[error("Kubernetes: cannot {action}: {message}")]
    Kube { action: String, message: String },
    #[error("the rollout of {image} failed: {reason}")]
    Rollout { image: String, reason: String },
    #[error("another deploy to {what} is running (it holds {}); wait for it to end", .lock.display())]
    Busy { what: String, lock: PathBuf },
    #[error("cannot use the deploy state directory {}: {source}", .path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{first}; cleaning up after it failed too: {cleanup}")]
    Cleanup {
        first: Box<DeployError>,
        cleanup: Box<DeployError>,
    },
    /// The new image failed and the previous one serves again (or, on a
    /// first deploy, the new one's replicas were removed).
    #[error("{image} was not deployed: {cause}; {}", match .restored {
        Some(r) => format!("rolled back to {r}, which serves again"),
        None => "nothing was live before, and its replicas were removed".to_owned(),
    })]
    RolledBack {
        image: String,
        cause: Box<DeployError>,
        restored: Option<String>,
    },
    /// The new image failed and restoring the previous one failed too: the
    /// environment needs a person.
    #[error(
        "{image} was not deployed: {cause}; and the rollback to {restoring} failed: {rollback}"
    )]
    RollbackFailed {
        image: String,
        cause: Box<DeployError>,
        restoring: String,
        rollback: Box<DeployError>,
    },
}

impl DeployError {
    /// `first`, with the failure of the cleanup after it.
    pub fn with_cleanup(first: DeployError, cleanup: DeployError) -> DeployError {
        DeployError::Cleanup {
            first: Box::new(first),
            cleanup: Box::new(cleanup),
        }
    }
}

impl Classify for DeployError {
    fn blame(&self) -> Blame {
        match self {
            DeployError::RolledBack { .. } => Blame::RolledBack,
            DeployError::RollbackFailed { .. } => Blame::Degraded,
            DeployError::Busy { .. } | DeployError::ImageUnavailable { .. } => Blame::Usage,
            DeployError::Unhealthy { .. }
            | DeployError::Soak { .. }
            | DeployError::Rollout { .. } => Blame::RolledBack,
            DeployError::Cleanup { first, .. } => first.blame(),
            DeployError::Docker { .. }
            | DeployError::Proxy(_)
            | DeployError::Kube { .. }
            | DeployError::StateDir { .. } => Blame::Infra,
        }
    }
}
