//! The environment policy as written: strict serde types (unknown keys are
//! errors), checked into [`super::EnvironmentPolicy`] by [`super::checks`].

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default)]
    pub environment: Vec<EnvironmentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvironmentFile {
    pub name: String,
    #[serde(default)]
    pub automatic: bool,
    pub branches: Option<Vec<String>>,
    pub approvals: Option<u32>,
    pub approver_role: Option<String>,
    pub soak_in_previous: Option<String>,
    pub verify: VerifyFile,
    pub target: TargetFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyFile {
    pub keys: Vec<String>,
    pub attestations: Vec<String>,
    pub scan_policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum TargetFile {
    Docker(DockerFile),
    Kubernetes(KubernetesFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DockerFile {
    pub service: String,
    pub replicas: u32,
    pub port: u16,
    pub health_path: String,
    pub listen: String,
    pub health_timeout: Option<String>,
    pub drain_timeout: Option<String>,
    pub soak_window: Option<String>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KubernetesFile {
    pub context: String,
    pub kubeconfig: Option<String>,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    pub progress_timeout: Option<String>,
    pub soak_window: Option<String>,
}
