//! The job backend: the one seam between the runner and whatever runs its
//! jobs. A job (a learner's submission stage, a developer's workflow job) is
//! opened as an isolated scope, runs sandboxes in it, each running steps,
//! and is closed; whatever a crash leaves behind is collected.
//!
//! | backend | a job is | a sandbox is |
//! |---|---|---|
//! | [`docker`] (one machine) | containers labelled with the job | a container |
//! | [`kubernetes`] (a cluster) | a namespace with quota, limits, network policy | a pod |
//! | [`fake`] (tests) | a scripted record | a script |
//!
//! Both real backends speak the same sandbox-init protocol to the sandbox
//! over its attached stdin/stdout ([`driver`]), so verdicts are identical.
//! The isolation contract is each backend's own code, not a field of a spec:
//! [`spec`] only carries what policy may tune.

use std::fmt;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWrite;

pub mod driver;
pub mod fake;
pub mod kubernetes;
pub mod spec;

pub use spec::{JobKind, JobSpec, Resources, SandboxSpec, Scratch, SeccompProfile};

use crate::sandbox::protocol::{Job, ProtocolError};
use crate::verdict::StageResult;

/// Which stream of the program a piece of output came from.
pub use crate::verdict::Stream as OutputStream;

/// Where a step's output goes as it is produced (live views).
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<(OutputStream, String)>;

/// Raw output of a sandbox's main process (sandbox-init's frames on stdout,
/// its own diagnostics on stderr), as the backend delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A sandbox's stdio while attached.
pub struct Attachment {
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub output: BoxStream<'static, Result<Output, BackendError>>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment").finish_non_exhaustive()
    }
}

/// What a step produced.
#[derive(Debug)]
pub struct StepOutcome {
    pub result: StageResult,
    /// `/work` after the step, as a tar archive, when collection was asked
    /// for and the step succeeded.
    pub archive: Option<Vec<u8>>,
}

/// An open job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobScope {
    pub spec: JobSpec,
    /// Where the job lives: its namespace (Kubernetes), or its id (Docker).
    pub location: String,
    pub deadline: SystemTime,
}

impl JobScope {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// A started sandbox of an open job, attached and waiting for its step.
#[derive(Debug)]
pub struct SandboxHandle {
    pub job: String,
    pub role: String,
    /// The backend's name for it (a container id, a pod name).
    pub name: String,
    pub(crate) attachment: Option<Attachment>,
}

impl SandboxHandle {
    /// Takes the attachment for running a step (once).
    pub fn take_attachment(&mut self) -> Option<Attachment> {
        self.attachment.take()
    }
}

/// Which leftovers to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanScope {
    /// What no live runner owns, or what is past its deadline.
    Orphans,
    /// Everything the runner made, including running jobs.
    All,
}

/// What a collection did.
#[derive(Debug, Default)]
pub struct CollectReport {
    /// Names of what was removed (containers, namespaces).
    pub removed: Vec<String>,
    pub kept: usize,
    pub failed: Vec<(String, BackendError)>,
}

/// Why a backend operation failed. Never the submission's fault.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot reach {backend}: {message}")]
    Unreachable {
        backend: &'static str,
        message: String,
    },
    #[error("image {image} is not available: {message}")]
    ImageMissing { image: String, message: String },
    #[error("job {job}: {action} failed: {message}")]
    Call {
        job: String,
        action: String,
        message: String,
    },
    #[error(
        "job {job}: {action} was refused ({message}); check the job's quota and the namespace policy"
    )]
    Refused {
        job: String,
        action: String,
        message: String,
    },
    #[error("job {job}, sandbox {sandbox}: did not start within {waited_secs} s: {detail}")]
    StartTimeout {
        job: String,
        sandbox: String,
        waited_secs: u64,
        detail: String,
    },
    #[error("job {job}, sandbox {sandbox}: cannot start: {reason}")]
    StartFailed {
        job: String,
        sandbox: String,
        reason: String,
    },
    #[error("job {job}, sandbox {sandbox}: {source}")]
    Protocol {
        job: String,
        sandbox: String,
        #[source]
        source: ProtocolError,
    },
    #[error("job {job}, sandbox {sandbox}: sandbox-init failed: {message}")]
    Init {
        job: String,
        sandbox: String,
        message: String,
    },
    #[error("job {job}, sandbox {sandbox}: the sandbox stopped without reporting a result (exit code {exit_code:?}){}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    NoResult {
        job: String,
        sandbox: String,
        exit_code: Option<i64>,
        detail: String,
    },
    #[error("{cause}; cleaning up also failed: {cleanup}")]
    Cleanup {
        cause: Box<BackendError>,
        cleanup: Box<BackendError>,
    },
}

impl BackendError {
    /// `cause`, or both when cleaning up after it failed too.
    pub fn with_cleanup(cause: BackendError, cleanup: Result<(), BackendError>) -> BackendError {
        match cleanup {
            Ok(()) => cause,
            Err(c) => BackendError::Cleanup {
                cause: Box::new(cause),
                cleanup: Box::new(c),
            },
        }
    }
}

/// Runs jobs: one implementation per platform, and a scripted fake.
#[async_trait::async_trait]
pub trait JobBackend: Send + Sync + fmt::Debug {
    /// `docker`, `kubernetes`, `fake`: for logs and readiness.
    fn name(&self) -> &'static str;

    /// Checks that the platform answers.
    async fn ping(&self) -> Result<(), BackendError>;

    /// Opens a job: its isolated scope, empty.
    async fn open_job(&self, job: &JobSpec) -> Result<JobScope, BackendError>;

    /// Starts a sandbox in an open job, attached, its sandbox-init waiting
    /// for a step.
    async fn start_sandbox(
        &self,
        scope: &JobScope,
        sandbox: &SandboxSpec,
    ) -> Result<SandboxHandle, BackendError>;

    /// Runs one step in a started sandbox, to its result.
    async fn run_step(
        &self,
        sandbox: &mut SandboxHandle,
        step: &Job<'_>,
        limits: &crate::limits::StageLimits,
        output: Option<&OutputSink>,
    ) -> Result<StepOutcome, BackendError>;

    /// Stops and removes a sandbox (in the background where the platform
    /// allows: the step's result does not wait for it).
    async fn stop_sandbox(&self, sandbox: SandboxHandle) -> Result<(), BackendError>;

    /// Closes a job: everything in its scope is removed.
    async fn close_job(&self, scope: JobScope) -> Result<(), BackendError>;

    /// Removes whatever exists of a job, by id alone: for cancellation from
    /// another task and for recovery after a crash. Nothing left is success.
    async fn remove_job(&self, job_id: &str) -> Result<(), BackendError>;

    /// Removes what crashed runners left behind (or only lists it).
    async fn collect_orphans(
        &self,
        scope: OrphanScope,
        dry_run: bool,
    ) -> Result<CollectReport, BackendError>;
}
