//! The Docker backend's own seam: the container operations it needs, so the
//! pool and the reaper can be tested without an engine.
//!
//! [`ContainerEngine`] is deliberately small: what a sandbox needs to run and
//! what garbage collection needs to clean up. The isolation contract is not
//! a set of options here: an engine creates *sandbox* containers, and every
//! implementation must drop all capabilities, forbid privilege escalation,
//! give no network, mount nothing from the host and keep the root filesystem
//! read-only. [`ContainerSpec`] only carries what policy may tune.

use std::collections::BTreeMap;

use crate::backend::Attachment;

/// What policy and the job decide about one sandbox container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `uid:gid`, never root (checked when the policy loads).
    pub user: String,
    pub memory_bytes: u64,
    pub nano_cpus: i64,
    pub pids: u32,
    /// Writable tmpfs mounts: path → size in bytes. Everything else is read-only.
    pub tmpfs: Vec<Tmpfs>,
    pub shm_bytes: u64,
    pub nofile: u64,
    /// Seccomp profile JSON, or `None` for the engine's default profile.
    pub seccomp: Option<String>,
    /// `None`: no network at all (only `lo`). `Some(grant)`: the server's
    /// policy granted egress, given on Docker by its default bridge network
    /// (Docker cannot limit destinations the way a Kubernetes
    /// NetworkPolicy does; see the README).
    pub egress: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub path: String,
    pub size_bytes: u64,
    /// Whether programs may be executed from it (compiled binaries in /work).
    pub exec: bool,
    /// Octal mode of its root.
    pub mode: u32,
}

/// State of a container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    pub exit_code: Option<i64>,
    /// The engine saw the container's memory cgroup run out.
    pub oom_killed: bool,
}

/// A container the engine lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the container engine: {0}")]
    Unreachable(String),
    #[error("image {image} is not present in the container engine")]
    ImageMissing { image: String },
    #[error("container engine failed to {action} (container {container}): {message}")]
    Container {
        action: &'static str,
        container: String,
        message: String,
    },
    #[error("container engine failed to {action}: {message}")]
    Other {
        action: &'static str,
        message: String,
    },
}

#[async_trait::async_trait]
pub trait ContainerEngine: Send + Sync + std::fmt::Debug {
    /// Checks that the engine answers.
    async fn ping(&self) -> Result<(), EngineError>;
    /// Labels of an image, or `None` when the image is not present.
    async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError>;
    /// Creates (does not start) a sandbox container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    /// Attaches to stdin, stdout and stderr. Attach before start to miss nothing.
    async fn attach(&self, id: &str) -> Result<Attachment, EngineError>;
    async fn start(&self, id: &str) -> Result<(), EngineError>;
    async fn inspect(&self, id: &str) -> Result<ContainerState, EngineError>;
    /// Waits for the container to stop; returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64, EngineError>;
    async fn kill(&self, id: &str) -> Result<(), EngineError>;
    /// Removes the container, killing it if needed. Already gone is success.
    async fn remove(&self, id: &str) -> Result<(), EngineError>;
    /// Containers (running or not) carrying `label=value`.
    async fn list(&self, label: &str, value: &str) -> Result<Vec<ContainerInfo>, EngineError>;
}

impl From<EngineError> for crate::backend::BackendError {
    fn from(e: EngineError) -> Self {
        use crate::backend::BackendError;
        match e {
            EngineError::Unreachable(message) => BackendError::Unreachable {
                backend: "Docker",
                message,
            },
            EngineError::ImageMissing { image } => BackendError::ImageMissing {
                image,
                message: "it is not in the Docker engine; build it with `runner images build`"
                    .into(),
            },
            EngineError::Container {
                action,
                container,
                message,
            } => BackendError::Platform {
                action: format!("{action} container {container}"),
                message,
            },
            EngineError::Other { action, message } => BackendError::Platform {
                action: action.to_owned(),
                message,
            },
        }
    }
}
