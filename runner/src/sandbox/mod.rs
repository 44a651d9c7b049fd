//! Running a submission: a compile stage when the language has one, then a
//! run stage, each in a fresh container that is removed afterwards.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing::{Instrument, info, info_span};

pub mod labels;
pub mod pool;
pub mod protocol;
mod reaper;
pub mod spec;
mod stage;
pub mod uids;

use crate::engine::{ContainerEngine, EngineError};
use crate::language::{Catalog, Language, LookupError};
use crate::limits::{LimitError, Limits, LimitsRequest, StageLimits};
use crate::policy::SandboxPolicy;
use crate::submission::{self, SubmissionError, SubmissionFile};
use crate::verdict::{RunResult, StageResult, Status, verdict};
use labels::Owner;
use protocol::{ArchiveKind, Job, PROTOCOL_VERSION, ProtocolError};
use stage::{COLLECT_GRACE, REPORT_GRACE, StageRun};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// Where [`SandboxEvent`]s go.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<SandboxEvent>;

/// Counters of engine operations, for metrics.
#[derive(Debug, Default)]
pub struct SandboxStats {
    pub containers_created: AtomicU64,
    pub create_failures: AtomicU64,
    pub remove_failures: AtomicU64,
}

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
    #[error("job {job}, {stage} stage: {source}")]
    Engine {
        job: String,
        stage: StageKind,
        #[source]
        source: EngineError,
    },
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
    #[error("job {job}, {stage} stage: {source}")]
    Protocol {
        job: String,
        stage: StageKind,
        #[source]
        source: ProtocolError,
    },
    #[error("job {job}, {stage} stage: sandbox-init failed: {message}")]
    Init {
        job: String,
        stage: StageKind,
        message: String,
    },
    #[error("job {job}, {stage} stage: the sandbox stopped without reporting a result (exit code {exit_code:?}){}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    NoResult {
        job: String,
        stage: StageKind,
        exit_code: Option<i64>,
        detail: String,
    },
    #[error("{cause}; removing its container also failed: {cleanup}")]
    Cleanup {
        cause: Box<SandboxError>,
        cleanup: EngineError,
    },
    #[error("job {job}, {stage} stage: {source}")]
    Uid {
        job: String,
        stage: StageKind,
        #[source]
        source: uids::UidError,
    },
    #[error("cannot check sandbox image {image}: {source}")]
    ImageCheck {
        image: String,
        #[source]
        source: EngineError,
    },
}

/// Runs submissions on a container engine under a policy.
#[derive(Debug)]
pub struct Sandbox {
    engine: Arc<dyn ContainerEngine>,
    policy: Arc<SandboxPolicy>,
    catalog: Arc<Catalog>,
    owner: Owner,
    /// Images whose protocol label was checked in this process.
    checked_images: Mutex<HashSet<String>>,
    stats: Arc<SandboxStats>,
    reaper: Arc<reaper::Reaper>,
    /// A uid of its own for every sandbox alive at once.
    uids: Arc<uids::UidAllocator>,
    pool: OnceLock<Arc<pool::WarmPool>>,
    /// Labels every container this sandbox makes.
    instance: String,
}

impl Sandbox {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        policy: Arc<SandboxPolicy>,
        catalog: Arc<Catalog>,
    ) -> Self {
        let stats = Arc::new(SandboxStats::default());
        let uids =
            uids::UidAllocator::new(policy.container.uids, uids::UidAllocator::default_dir());
        Sandbox {
            uids: Arc::new(uids),
            reaper: Arc::new(reaper::Reaper::start(
                Arc::clone(&engine),
                Arc::clone(&stats),
            )),
            engine,
            policy,
            catalog,
            owner: Owner::current(),
            checked_images: Mutex::new(HashSet::new()),
            stats,
            pool: OnceLock::new(),
            instance: new_job_id(),
        }
    }

    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn engine(&self) -> &Arc<dyn ContainerEngine> {
        &self.engine
    }

    pub fn stats(&self) -> &SandboxStats {
        &self.stats
    }

    /// Keeps warm containers ready for jobs under the policy's default
    /// limits (see [`pool`]). `permits` is the global concurrency bound the
    /// refill shares with running jobs.
    pub fn start_pool(
        &self,
        config: &pool::PoolConfig,
        permits: Arc<tokio::sync::Semaphore>,
    ) -> Arc<pool::WarmPool> {
        let defaults = LimitsRequest::default()
            .resolve(&self.policy)
            .expect("the policy's defaults are within its maxima");
        let mut targets = Vec::new();
        for lang in self.catalog.languages() {
            let size = config
                .sizes
                .get(&lang.name)
                .copied()
                .unwrap_or(config.default_size);
            let mut stages = vec![(StageKind::Run, &defaults.run)];
            if lang.compile.is_some() {
                stages.push((StageKind::Compile, &defaults.compile));
            }
            for (stage, limits) in stages {
                targets.push(pool::Target {
                    language: lang.name.clone(),
                    stage,
                    size,
                    spec: spec::stage_spec(&self.policy, &lang.image, Default::default(), limits),
                });
            }
        }
        let pool = self.pool.get_or_init(|| {
            pool::WarmPool::new(
                Arc::clone(&self.engine),
                self.reaper_handle(),
                Arc::clone(&self.uids),
                self.instance.clone(),
                targets,
                config.idle_lifetime,
                permits,
            )
        });
        pool.start();
        Arc::clone(pool)
    }

    pub fn pool(&self) -> Option<&Arc<pool::WarmPool>> {
        self.pool.get()
    }

    fn reaper_handle(&self) -> Arc<reaper::Reaper> {
        Arc::clone(&self.reaper)
    }

    /// The value of the `io.runner.instance` label on this sandbox's containers.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Waits until the used containers queued for removal are gone.
    pub async fn flush_removals(&self) {
        self.reaper.flush().await;
    }

    /// Stops the warm pool and waits until every used container is removed.
    pub async fn shutdown(&self) {
        if let Some(p) = self.pool.get() {
            p.close();
        }
        self.reaper.flush().await;
    }

    /// Checks a request completely, without touching the engine.
    pub fn prepare(&self, req: RunRequest) -> Result<PreparedRun, RequestError> {
        self.prepare_as(new_job_id(), req)
    }

    /// Like [`Sandbox::prepare`], under a job id of the caller's (the
    /// service's run id, so its containers can be found by it).
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
            let lang = &run.language;
            let c = &self.policy.container;
            // Owner fields of the archive are not used: sandbox-init
            // creates the files as the sandbox's own uid.
            let mut archive = submission::archive(&run.files, c.uids.first, c.uids.first);
            let mut archive_kind = ArchiveKind::Files;

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
                    let outcome = self.stage(run, plan, events).await?;
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
            let outcome = self.stage(run, plan, events).await?;
            Ok(self.finish(run, compile, Some(outcome.result)))
        }
        .instrument(span)
        .await
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
        let outcome = self.stage(&run, plan, None).await?;
        Ok(outcome.result)
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

    async fn stage(
        &self,
        run: &PreparedRun,
        plan: StagePlan<'_>,
        events: Option<&EventSink>,
    ) -> Result<stage::StageOutcome, SandboxError> {
        let StagePlan {
            kind,
            argv,
            env,
            limits,
            archive,
            archive_kind,
            stdin,
            collect,
        } = plan;
        let c = &self.policy.container;
        let lifetime = Duration::from_millis(limits.wall_time_ms)
            + REPORT_GRACE
            + COLLECT_GRACE
            + Duration::from_secs(60);
        let labels = labels::for_stage(
            &self.owner,
            &self.instance,
            &run.id,
            kind.as_str(),
            &run.language.name,
            lifetime,
        );
        let container = spec::stage_spec(&self.policy, &run.language.image, labels, limits);
        let warm = self
            .pool
            .get()
            .and_then(|p| p.take(&run.language.name, kind, &container));
        StageRun {
            engine: &self.engine,
            reaper: &self.reaper,
            uids: &self.uids,
            stats: &self.stats,
            events,
            job_id: &run.id,
            kind,
            spec: container,
            job: Job {
                argv,
                env,
                cwd: spec::WORK_DIR,
                wall_ms: limits.wall_time_ms,
                cpu_ms: limits.cpu_time_ms,
                stdout_max: limits.stdout_max_bytes,
                stderr_max: limits.stderr_max_bytes,
                fsize_max: c.work_tmpfs_bytes,
                nofile: c.nofile,
                // tar's headers and padding on top of the tmpfs contents.
                collect_max: if collect {
                    c.work_tmpfs_bytes + (4 << 20)
                } else {
                    0
                },
                archive,
                archive_kind,
                stdin,
            },
            limits,
        }
        .run(warm)
        .await
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
        let labels = self
            .engine
            .image_labels(image)
            .await
            .map_err(|source| SandboxError::ImageCheck {
                image: image.to_owned(),
                source,
            })?
            .ok_or_else(|| SandboxError::ImageMissing {
                image: image.to_owned(),
            })?;
        let found = labels.get(PROTOCOL_LABEL).cloned();
        if found.as_deref() != Some(PROTOCOL_VERSION) {
            return Err(SandboxError::ImageProtocol {
                image: image.to_owned(),
                found,
            });
        }
        self.checked_images
            .lock()
            .expect("lock poisoned")
            .insert(image.to_owned());
        Ok(())
    }
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
