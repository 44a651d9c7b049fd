//! Running a learner's submission: a compile stage when the language has
//! one, then a run stage, each in a fresh sandbox of one job of the job
//! backend (containers on Docker, pods of one namespace on Kubernetes),
//! removed afterwards.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

pub mod pool;
pub mod spec;

use crate::backend::driver::{COLLECT_GRACE, REPORT_GRACE};
use crate::backend::protocol::{ArchiveKind, PROTOCOL_VERSION, Step};
use crate::backend::{
    BackendError, ImageCheck, JobBackend, JobKind, JobScope, JobSpec, StepOutcome,
};
use crate::language::{Catalog, Language, LookupError};
use crate::limits::{LimitError, Limits, LimitsRequest, StageLimits};
use crate::policy::SandboxPolicy;
use crate::submission::{self, SubmissionError, SubmissionFile};
use crate::verdict::{RunResult, StageResult, Status, verdict};

/// What a run reports while it runs, for live views (server-sent events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxEvent {
    StageStarted(StageKind),
    Output {
        stage: StageKind,
        stream: OutputStream,
        text: String,
    },
    StageFinished {
        stage: StageKind,
        result: StageResult,
    },
}

pub use crate::backend::OutputStream;

/// Where [`SandboxEvent`]s go.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<SandboxEvent>;

/// Label every sandbox image carries with the protocol its sandbox-init speaks.
pub const PROTOCOL_LABEL: &str = "io.runner.sandbox.protocol";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    Compile,
    Run,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Compile => "compile",
            StageKind::Run => "run",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A submission as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub language: String,
    /// Version selector (`*`, `3`, `3.11.2`); `None` takes the only version.
    pub version: Option<String>,
    pub files: Vec<SubmissionFile>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub limits: LimitsRequest,
}

/// Why a request was refused before anything ran. The client's to fix.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Language(#[from] LookupError),
    #[error(transparent)]
    Submission(#[from] SubmissionError),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// A request that passed every check, with the limits it will run under.
#[derive(Debug, Clone)]
pub struct PreparedRun {
    pub id: String,
    pub language: Arc<Language>,
    pub files: Vec<SubmissionFile>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub limits: Limits,
}

/// Why a run could not produce a verdict. Never the submission's fault.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "sandbox image {image} is not built; run `runner images build` (or pass --build to `runner exec`)"
    )]
    ImageMissing { image: String },
    #[error(
        "sandbox image {image} speaks sandbox protocol {found:?}, this runner speaks {PROTOCOL_VERSION}; rebuild it with `runner images build`"
    )]
    ImageProtocol {
        image: String,
        found: Option<String>,
    },
    #[error("cannot check sandbox image {image}: {source}")]
    ImageCheck {
        image: String,
        #[source]
        source: BackendError,
    },
    #[error("job {job}, {stage} stage: {source}")]
    Backend {
        job: String,
        stage: &'static str,
        #[source]
        source: BackendError,
    },
}

impl SandboxError {
    fn backend(job: &str, stage: &'static str, source: BackendError) -> SandboxError {
        match source {
            BackendError::ImageMissing { image, .. } => SandboxError::ImageMissing { image },
            source => SandboxError::Backend {
                job: job.to_owned(),
                stage,
                source,
            },
        }
    }
}

/// Runs submissions through a job backend under a policy.
#[derive(Debug)]
pub struct Sandbox {
    backend: Arc<dyn JobBackend>,
    policy: Arc<SandboxPolicy>,
    catalog: Arc<Catalog>,
    /// Images whose protocol label was checked in this process.
    checked_images: Mutex<HashSet<String>>,
}

/// Removes whatever exists of a job when dropped while armed: a run whose
/// future is dropped (a cancellation, Ctrl-C) leaves nothing behind.
struct JobGuard {
    backend: Arc<dyn JobBackend>,
    id: Option<String>,
}

impl JobGuard {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let backend = Arc::clone(&self.backend);
            rt.spawn(async move {
                if let Err(e) = backend.remove_job(&id).await {
                    warn!(job.id = %id, error = %e, "removing a cancelled job failed; garbage collection will");
                }
            });
        }
    }
}

impl Sandbox {
    pub fn new(
        backend: Arc<dyn JobBackend>,
        policy: Arc<SandboxPolicy>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Sandbox {
            backend,
            policy,
            catalog,
            checked_images: Mutex::new(HashSet::new()),
        }
    }

    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn backend(&self) -> &Arc<dyn JobBackend> {
        &self.backend
    }

    /// Keeps started sandboxes ready for stages under the policy's default
    /// limits, where the backend can (see [`pool`]). `permits` is the
    /// global concurrency bound the refill shares with running jobs.
    pub fn start_pool(
        &self,
        config: &pool::PoolConfig,
        permits: Arc<tokio::sync::Semaphore>,
    ) -> bool {
        let targets = pool::targets(&self.policy, &self.catalog, config);
        self.backend
            .start_pool(targets, config.idle_lifetime, permits)
    }

    /// Waits until the backend's background work (removals) is done.
    pub async fn flush_removals(&self) {
        self.backend.settle().await;
    }

    /// Stops the warm pool and waits until every used sandbox is removed.
    pub async fn shutdown(&self) {
        self.backend.shutdown().await;
    }

    /// Checks a request completely, without touching the backend.
    pub fn prepare(&self, req: RunRequest) -> Result<PreparedRun, RequestError> {
        self.prepare_as(new_job_id(), req)
    }

    /// Like [`Sandbox::prepare`], under a job id of the caller's (the
    /// service's run id, so its sandboxes can be found by it).
    pub fn prepare_as(&self, id: String, req: RunRequest) -> Result<PreparedRun, RequestError> {
        let language = self.catalog.find(&req.language, req.version.as_deref())?;
        submission::validate(&req.files, &req.stdin, &req.args, &self.policy.input)?;
        let limits = req.limits.resolve(&self.policy)?;
        Ok(PreparedRun {
            id,
            language,
            files: req.files,
            stdin: req.stdin,
            args: req.args,
            limits,
        })
    }

    /// Runs a prepared submission to its verdict.
    pub async fn execute(&self, run: &PreparedRun) -> Result<RunResult, SandboxError> {
        self.execute_observed(run, None).await
    }

    /// Like [`Sandbox::execute`], reporting progress and output to `events`.
    pub async fn execute_observed(
        &self,
        run: &PreparedRun,
        events: Option<&EventSink>,
    ) -> Result<RunResult, SandboxError> {
        let span = info_span!("job", job.id = %run.id, language = %run.language.name, image = %run.language.image);
        async {
            self.check_image(&run.language.image).await?;
            let stages = self.run_stages(run, events);
            stages.await
        }
        .instrument(span)
        .await
    }

    /// The job of a run: its stages' sandboxes, one after the other.
    fn job_spec(&self, run: &PreparedRun) -> JobSpec {
        let lang = &run.language;
        let mut lifetime = stage_lifetime(&run.limits.run);
        let mut largest = self
            .stage_sandbox(lang, StageKind::Run, &run.limits.run)
            .resources();
        if lang.compile.is_some() {
            lifetime += stage_lifetime(&run.limits.compile);
            largest = largest.max(
                self.stage_sandbox(lang, StageKind::Compile, &run.limits.compile)
                    .resources(),
            );
        }
        JobSpec {
            id: run.id.clone(),
            kind: JobKind::Submission,
            tenant: None,
            egress: None,
            lifetime,
            largest,
        }
    }

    fn stage_sandbox(
        &self,
        lang: &Language,
        kind: StageKind,
        limits: &StageLimits,
    ) -> crate::backend::SandboxSpec {
        spec::stage_sandbox(&self.policy, &lang.image, &lang.name, kind.as_str(), limits)
    }

    async fn run_stages(
        &self,
        run: &PreparedRun,
        events: Option<&EventSink>,
    ) -> Result<RunResult, SandboxError> {
        let lang = &run.language;
        let c = &self.policy.container;
        let job = self.job_spec(run);
        let scope = self
            .backend
            .open_job(&job)
            .await
            .map_err(|e| SandboxError::backend(&run.id, "open", e))?;
        let guard = JobGuard {
            backend: Arc::clone(&self.backend),
            id: Some(run.id.clone()),
        };
        // Owner fields of the archive are not used: sandbox-init creates
        // the files as the sandbox's own uid.
        let mut archive = submission::archive(&run.files, c.uids.first, c.uids.first);
        let mut archive_kind = ArchiveKind::Files;
        let outcome = async {
            let compile = match &lang.compile {
                Some(stage) => {
                    let argv = lang.command(stage, &run.files, &[]);
                    let env = spec::environment(&stage.env);
                    let plan = StagePlan {
                        kind: StageKind::Compile,
                        argv: &argv,
                        env: &env,
                        limits: &run.limits.compile,
                        archive: &archive,
                        archive_kind,
                        stdin: &[],
                        collect: true,
                    };
                    let outcome = self.stage(&scope, run, plan, events).await?;
                    match outcome.archive {
                        Some(a) if outcome.result.succeeded() => {
                            archive = a;
                            archive_kind = ArchiveKind::Tar;
                        }
                        _ => return Ok(self.finish(run, Some(outcome.result), None)),
                    }
                    Some(outcome.result)
                }
                None => None,
            };
            let argv = lang.command(&lang.run, &run.files, &run.args);
            let env = spec::environment(&lang.run.env);
            let plan = StagePlan {
                kind: StageKind::Run,
                argv: &argv,
                env: &env,
                limits: &run.limits.run,
                archive: &archive,
                archive_kind,
                stdin: &run.stdin,
                collect: false,
            };
            let outcome = self.stage(&scope, run, plan, events).await?;
            Ok(self.finish(run, compile, Some(outcome.result)))
        }
        .await;
        let closed = self.backend.close_job(scope).await;
        guard.disarm();
        match (outcome, closed) {
            (Ok(r), Ok(())) => Ok(r),
            (Ok(r), Err(e)) => {
                warn!(job.id = %run.id, error = %e, "closing the job failed; garbage collection will");
                Ok(r)
            }
            (Err(SandboxError::Backend { job, stage, source }), closed) => {
                Err(SandboxError::Backend {
                    job,
                    stage,
                    source: BackendError::with_cleanup(source, closed),
                })
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Runs one command in a language's image under the run-stage limits,
    /// with no submission: for checking images (toolchain versions).
    pub async fn run_command(
        &self,
        language: &Arc<Language>,
        argv: &[String],
    ) -> Result<StageResult, SandboxError> {
        self.check_image(&language.image).await?;
        let run = PreparedRun {
            id: new_job_id(),
            language: Arc::clone(language),
            files: Vec::new(),
            stdin: Vec::new(),
            args: Vec::new(),
            limits: LimitsRequest::default()
                .resolve(&self.policy)
                .expect("the policy's defaults are within its maxima"),
        };
        let env = spec::environment(&language.run.env);
        let first = self.policy.container.uids.first;
        let archive = submission::archive(&[], first, first);
        let mut job = self.job_spec(&run);
        job.lifetime = stage_lifetime(&run.limits.run);
        let scope = self
            .backend
            .open_job(&job)
            .await
            .map_err(|e| SandboxError::backend(&run.id, "open", e))?;
        let guard = JobGuard {
            backend: Arc::clone(&self.backend),
            id: Some(run.id.clone()),
        };
        let plan = StagePlan {
            kind: StageKind::Run,
            argv,
            env: &env,
            limits: &run.limits.run,
            archive: &archive,
            archive_kind: ArchiveKind::Files,
            stdin: &[],
            collect: false,
        };
        let outcome = self.stage(&scope, &run, plan, None).await;
        let _ = self.backend.close_job(scope).await;
        guard.disarm();
        Ok(outcome?.result)
    }

    fn finish(
        &self,
        run: &PreparedRun,
        compile: Option<StageResult>,
        run_stage: Option<StageResult>,
    ) -> RunResult {
        let status = verdict(compile.as_ref(), run_stage.as_ref());
        info!(status = %status, "finished");
        RunResult {
            status,
            language: run.language.name.clone(),
            version: run.language.version.clone(),
            compile,
            run: run_stage,
            message: None,
        }
    }

    /// One stage: a fresh sandbox of the job, one step, stopped.
    async fn stage(
        &self,
        scope: &JobScope,
        run: &PreparedRun,
        plan: StagePlan<'_>,
        events: Option<&EventSink>,
    ) -> Result<StepOutcome, SandboxError> {
        let kind = plan.kind;
        let err = |e| SandboxError::backend(&run.id, kind.as_str(), e);
        let c = &self.policy.container;
        let sandbox = self.stage_sandbox(&run.language, kind, plan.limits);
        let mut handle = self
            .backend
            .start_sandbox(scope, &sandbox)
            .await
            .map_err(err)?;
        let step = Step {
            argv: plan.argv,
            env: plan.env,
            cwd: spec::WORK_DIR,
            wall_ms: plan.limits.wall_time_ms,
            cpu_ms: plan.limits.cpu_time_ms,
            stdout_max: plan.limits.stdout_max_bytes,
            stderr_max: plan.limits.stderr_max_bytes,
            fsize_max: c.work_tmpfs_bytes,
            nofile: c.nofile,
            // tar's headers and padding on top of the tmpfs contents.
            collect_max: if plan.collect {
                c.work_tmpfs_bytes + (4 << 20)
            } else {
                0
            },
            archive: plan.archive,
            archive_kind: plan.archive_kind,
            tmp_files: &[],
            stdin: plan.stdin,
        };
        if let Some(events) = events {
            let _ = events.send(SandboxEvent::StageStarted(kind));
        }
        let outcome = match events {
            None => {
                self.backend
                    .run_step(&mut handle, &step, plan.limits, None)
                    .await
            }
            Some(events) => {
                // The backend's output, as this stage's events, in order.
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let forward = {
                    let events = events.clone();
                    tokio::spawn(async move {
                        while let Some((stream, text)) = rx.recv().await {
                            let _ = events.send(SandboxEvent::Output {
                                stage: kind,
                                stream,
                                text,
                            });
                        }
                    })
                };
                let outcome = self
                    .backend
                    .run_step(&mut handle, &step, plan.limits, Some(&tx))
                    .await;
                drop(tx);
                let _ = forward.await;
                outcome
            }
        };
        match outcome {
            Ok(o) => {
                if let Err(e) = self.backend.stop_sandbox(handle).await {
                    warn!(job.id = %run.id, error = %e, "stopping a sandbox failed; garbage collection will");
                }
                if let Some(events) = events {
                    let _ = events.send(SandboxEvent::StageFinished {
                        stage: kind,
                        result: o.result.clone(),
                    });
                }
                Ok(o)
            }
            Err(cause) => {
                // Removed now, so a failed removal is reported with the cause.
                let cleanup = self.backend.stop_sandbox(handle).await;
                Err(err(BackendError::with_cleanup(cause, cleanup)))
            }
        }
    }

    /// Checks once per process that the image exists and speaks our protocol.
    async fn check_image(&self, image: &str) -> Result<(), SandboxError> {
        if self
            .checked_images
            .lock()
            .expect("lock poisoned")
            .contains(image)
        {
            return Ok(());
        }
        let check =
            self.backend
                .inspect_image(image)
                .await
                .map_err(|source| SandboxError::ImageCheck {
                    image: image.to_owned(),
                    source,
                })?;
        match check {
            ImageCheck::Missing => {
                return Err(SandboxError::ImageMissing {
                    image: image.to_owned(),
                });
            }
            ImageCheck::Present(labels) => {
                let found = labels.get(PROTOCOL_LABEL).cloned();
                if found.as_deref() != Some(PROTOCOL_VERSION) {
                    return Err(SandboxError::ImageProtocol {
                        image: image.to_owned(),
                        found,
                    });
                }
            }
            // The platform pulls images where sandboxes run: a wrong one
            // shows as a sandbox-init failure when its sandbox starts.
            ImageCheck::Unknown => {}
        }
        self.checked_images
            .lock()
            .expect("lock poisoned")
            .insert(image.to_owned());
        Ok(())
    }
}

/// How long a stage may hold its sandbox, all graces included.
fn stage_lifetime(limits: &StageLimits) -> Duration {
    Duration::from_millis(limits.wall_time_ms)
        + REPORT_GRACE
        + COLLECT_GRACE
        + Duration::from_secs(60)
}

/// A run that could not produce a verdict, as a result clients can read.
pub fn internal_error(language: &Language, message: String) -> RunResult {
    RunResult {
        status: Status::InternalError,
        language: language.name.clone(),
        version: language.version.clone(),
        compile: None,
        run: None,
        message: Some(message),
    }
}

/// What one stage runs.
struct StagePlan<'a> {
    kind: StageKind,
    argv: &'a [String],
    env: &'a [String],
    limits: &'a StageLimits,
    archive: &'a [u8],
    archive_kind: ArchiveKind,
    stdin: &'a [u8],
    collect: bool,
}

/// A fresh job id: 128 random bits, hex.
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
