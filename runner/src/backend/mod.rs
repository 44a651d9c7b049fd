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

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWrite;

pub mod docker;
pub mod driver;
pub mod fake;
pub mod kubernetes;
pub mod orphans;
pub mod protocol;
pub mod spec;
pub mod uids;

pub use spec::{JobKind, JobSpec, Resources, SandboxSpec, Scratch, SeccompProfile};

use crate::limits::StageLimits;
use crate::verdict::StageResult;
use protocol::{ProtocolError, Step};
use uids::UidLease;

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

impl Attachment {
    /// An attachment to nothing: input goes nowhere, output ends at once
    /// (a sandbox the backend runs without stdio, such as the fake's).
    pub fn detached() -> Attachment {
        Attachment {
            input: Box::pin(tokio::io::sink()),
            output: Box::pin(futures_util::stream::empty()),
        }
    }
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

/// What removes a sandbox whose handle is dropped without
/// [`JobBackend::stop_sandbox`] (a cancelled job): given the uid lease, to
/// release once the sandbox is gone.
pub type OnDrop = Box<dyn FnOnce(Option<UidLease>) + Send + Sync>;

/// A started sandbox of an open job, attached, its sandbox-init waiting for
/// a step. Dropped without being stopped, it removes its sandbox.
pub struct SandboxHandle {
    pub job: String,
    pub role: String,
    /// The backend's name for it (a container id, `namespace/pod`).
    pub name: String,
    /// The uid (and gid) it runs as.
    pub uid: u32,
    pub(crate) attachment: Attachment,
    lease: Option<UidLease>,
    on_drop: Option<OnDrop>,
}

impl fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("job", &self.job)
            .field("role", &self.role)
            .field("name", &self.name)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl SandboxHandle {
    pub fn new(
        job: &str,
        role: &str,
        name: String,
        uid: u32,
        attachment: Attachment,
        lease: Option<UidLease>,
        on_drop: Option<OnDrop>,
    ) -> SandboxHandle {
        SandboxHandle {
            job: job.to_owned(),
            role: role.to_owned(),
            name,
            uid,
            attachment,
            lease,
            on_drop,
        }
    }

    /// Ends the handle's duty to remove its sandbox (the backend is
    /// removing it); returns the uid lease to release once it is gone.
    pub fn disarm(mut self) -> Option<UidLease> {
        self.on_drop = None;
        self.lease.take()
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f(self.lease.take());
        }
    }
}

/// Whether an image is there to run, and what it says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCheck {
    /// Present, with its labels (the sandbox protocol it speaks among them).
    Present(BTreeMap<String, String>),
    Missing,
    /// The platform cannot tell before running it (a cluster pulls images
    /// on its nodes): a wrong image shows when its sandbox starts.
    Unknown,
}

/// Counters of platform operations, for metrics.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub sandboxes_started: AtomicU64,
    pub start_failures: AtomicU64,
    pub remove_failures: AtomicU64,
}

/// What a warm pool keeps ready (backends that have one).
#[derive(Debug, Clone)]
pub struct PoolTarget {
    /// `language/stage`, for metrics and labels.
    pub key: String,
    pub sandbox: SandboxSpec,
    pub size: usize,
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
    #[error("the platform failed to {action}: {message}")]
    Platform { action: String, message: String },
    #[error("job {job}: no uid is free for another sandbox: {source}")]
    Uid {
        job: String,
        #[source]
        source: uids::UidError,
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

    /// Whether an image can run, and its labels.
    async fn inspect_image(&self, image: &str) -> Result<ImageCheck, BackendError>;

    /// Counters for metrics.
    fn stats(&self) -> &BackendStats;

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
        step: &Step<'_>,
        limits: &StageLimits,
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

    /// Keeps started sandboxes ready for steps under the given specs (a
    /// backend that can: Docker). `permits` is the concurrency bound the
    /// refill shares with running jobs. Returns whether a pool runs.
    fn start_pool(
        &self,
        _targets: Vec<PoolTarget>,
        _idle_lifetime: Duration,
        _permits: Arc<tokio::sync::Semaphore>,
    ) -> bool {
        false
    }

    /// The warm pool, if one runs (for metrics and tests).
    fn pool(&self) -> Option<Arc<docker::pool::WarmPool>> {
        None
    }

    /// Waits for work the backend does in the background (removals,
    /// creations under way).
    async fn settle(&self) {}

    /// Stops background work (the pool) and waits for what is under way.
    async fn shutdown(&self) {
        self.settle().await;
    }
}
