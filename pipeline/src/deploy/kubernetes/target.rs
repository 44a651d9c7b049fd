//! What a Kubernetes environment is: one container of one Deployment.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesTarget {
    /// A context of the kubeconfig.
    pub context: String,
    /// The kubeconfig file; `None`: `$KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub deployment: String,
    /// The container of the pod template whose image is set.
    pub container: String,
    /// The rollout must complete within this (besides the Deployment's own
    /// `progressDeadlineSeconds`, which the API server enforces).
    pub progress_timeout: Duration,
    /// After the rollout completes it must stay complete this long.
    pub soak_window: Duration,
}

impl KubernetesTarget {
    pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(600);
    pub const DEFAULT_SOAK_WINDOW: Duration = Duration::from_secs(60);
}
