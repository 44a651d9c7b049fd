//! Rolling deploys by digest, with automatic rollback.
//!
//! - [`docker`]: one host, N replicas behind an HAProxy the deployer runs,
//!   replaced one at a time (start, health check, add to the proxy, drain
//!   and stop an old one);
//! - [`kubernetes`]: a Deployment's container image set to the digest, the
//!   rollout followed as `kubectl rollout status` does, then a soak window.
//!
//! Both refuse anything but `REPO@sha256:...` and, when the new digest
//! fails, restore the previous one the same way they rolled forward.

pub mod docker;
mod error;
pub mod kubernetes;
mod report;

pub use docker::{DockerDeployer, DockerTarget};
pub use error::DeployError;
pub use kubernetes::{KubeDeployer, KubernetesTarget};
pub use report::DeployReport;

use crate::flow::Progress;
use crate::reference::Pinned;

/// The deployer of one environment's target.
#[derive(Debug, Clone)]
pub enum Deployer {
    Docker(DockerDeployer),
    Kubernetes(KubeDeployer),
}

impl Deployer {
    /// Rolls the target onto `image`; on failure restores `previous` the
    /// same way and says why ([`DeployError::RolledBack`]).
    pub async fn deploy(
        &self,
        image: &Pinned,
        previous: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<DeployReport, DeployError> {
        match self {
            Deployer::Docker(d) => d.deploy(image, previous, progress).await,
            Deployer::Kubernetes(k) => k.deploy(image, previous, progress).await,
        }
    }

    /// After a deployer died mid-way: what is live once the target is
    /// either fully on `pending` or back on `recorded`.
    pub async fn reconcile(
        &self,
        recorded: Option<&Pinned>,
        pending: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<Option<Pinned>, DeployError> {
        match self {
            Deployer::Docker(d) => d.reconcile(recorded, pending, progress).await,
            Deployer::Kubernetes(k) => k.reconcile(recorded, pending, progress).await,
        }
    }
}
