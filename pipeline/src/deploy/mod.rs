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
