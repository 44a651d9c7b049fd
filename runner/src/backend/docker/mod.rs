//! [`JobBackend`] on one machine's Docker engine: a job is the set of
//! containers labelled with its id, a sandbox is a container (fresh, or
//! taken from the warm pool), removed in the background once it is done.
//!
//! - [`engine`]: the container operations this backend needs (a seam for
//!   the pool and reaper tests); [`client`]: them on the Docker Engine API,
//!   with the isolation contract fixed in the create body.
//! - [`pool`]: started containers kept ready; [`reaper`]: creations and
//!   removals off the job's critical path; [`labels`]: job, owner, deadline.
//! - [`gc`]: collecting what crashed runners left behind.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tracing::debug;

pub mod client;
pub mod engine;
pub mod gc;
pub mod labels;
pub mod pool;
pub mod reaper;

use super::driver::{self, Ended, Probe, StepId};
use super::orphans::Owner;
use super::protocol::Step;
use super::uids::{UidAllocator, UidLease};
use super::{
    BackendError, BackendStats, CollectReport, ImageCheck, JobBackend, JobScope, JobSpec,
    OrphanScope, OutputSink, PoolTarget, SandboxHandle, SandboxSpec, SeccompProfile, StepOutcome,
};
use crate::limits::StageLimits;
use engine::{ContainerEngine, ContainerSpec, Tmpfs};
use pool::WarmPool;
use reaper::Reaper;

/// Jobs as labelled containers of one Docker engine.
#[derive(Debug)]
pub struct DockerBackend {
    engine: Arc<dyn ContainerEngine>,
    reaper: Arc<Reaper>,
    uids: Arc<UidAllocator>,
    stats: Arc<BackendStats>,
    pool: OnceLock<Arc<WarmPool>>,
    owner: Owner,
    /// Labels every container this backend makes (one per process or test).
    instance: String,
}

impl DockerBackend {
    /// A backend over `engine`, leasing sandbox uids from `uids`.
    pub fn new(engine: Arc<dyn ContainerEngine>, uids: Arc<UidAllocator>) -> DockerBackend {
        let stats = Arc::new(BackendStats::default());
        DockerBackend {
            reaper: Arc::new(Reaper::start(Arc::clone(&engine), Arc::clone(&stats))),
            engine,
            uids,
            stats,
            pool: OnceLock::new(),
            owner: Owner::current(),
            instance: crate::sandbox::new_job_id(),
        }
    }

    /// Connects to the engine at `DOCKER_HOST` or the local socket.
    pub async fn connect(uids: Arc<UidAllocator>) -> Result<DockerBackend, BackendError> {
        let engine = client::DockerEngine::connect().await?;
        Ok(Self::new(Arc::new(engine), uids))
    }

    pub fn engine(&self) -> &Arc<dyn ContainerEngine> {
        &self.engine
    }

    /// The value of the `io.runner.instance` label on this backend's containers.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Creates a container for `spec` as a uid leased for it alone (see
    /// [`Reaper::create`]: a cancelled start never leaves one behind).
    async fn create(
        &self,
        job: &str,
        mut spec: ContainerSpec,
    ) -> Result<(String, UidLease), BackendError> {
        let lease = self.uids.lease().map_err(|source| BackendError::Uid {
            job: job.to_owned(),
            source,
        })?;
        run_as(&mut spec, &lease);
        let created = self.reaper.create(&self.engine, spec, Some(lease)).await;
        let (id, lease) = created.map_err(|e| {
            self.stats.start_failures.fetch_add(1, Ordering::Relaxed);
            BackendError::from(e)
        })?;
        self.stats.sandboxes_started.fetch_add(1, Ordering::Relaxed);
        Ok((id, lease.expect("the lease comes back with the container")))
    }

    /// A handle that, dropped unstopped, queues the container's removal.
    fn handle(
        &self,
        scope: &JobScope,
        sandbox: &SandboxSpec,
        id: String,
        attachment: super::Attachment,
        lease: UidLease,
    ) -> SandboxHandle {
        let reaper = Arc::clone(&self.reaper);
        let cid = id.clone();
        SandboxHandle::new(
            scope.id(),
            &sandbox.role,
            id,
            lease.uid(),
            attachment,
            Some(lease),
            Some(Box::new(move |lease| reaper.remove(cid, lease))),
        )
    }
}

/// Makes the container run as the leased uid (and gid); its tmpfs mounts
/// are owned by them, and a label says which uid it holds.
pub fn run_as(spec: &mut ContainerSpec, lease: &UidLease) {
    spec.user = lease.user();
    spec.labels
        .insert(labels::UID.to_owned(), lease.uid().to_string());
}

/// The container of a sandbox (its user comes from the lease, see [`run_as`]).
pub fn container_spec(
    sandbox: &SandboxSpec,
    labels: std::collections::BTreeMap<String, String>,
    egress: Option<&str>,
) -> ContainerSpec {
    ContainerSpec {
        image: sandbox.image.clone(),
        labels,
        user: String::new(),
        memory_bytes: sandbox.memory_bytes,
        nano_cpus: sandbox.nano_cpus,
        pids: sandbox.pids,
        tmpfs: sandbox
            .scratch
            .iter()
            .map(|s| Tmpfs {
                path: s.path.clone(),
                size_bytes: s.size_bytes,
                exec: s.exec,
                mode: s.mode,
            })
            .collect(),
        shm_bytes: sandbox.shm_bytes,
        nofile: sandbox.nofile,
        seccomp: match &sandbox.seccomp {
            SeccompProfile::EngineDefault => None,
            SeccompProfile::Runner(json) => Some(json.clone()),
        },
        egress: egress.map(str::to_owned),
    }
}

fn remaining(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// The container of a running step, as the driver sees it.
struct ContainerProbe<'a> {
    engine: &'a dyn ContainerEngine,
    id: &'a str,
}

#[async_trait::async_trait]
impl Probe for ContainerProbe<'_> {
    async fn kill(&self) -> Result<(), BackendError> {
        Ok(self.engine.kill(self.id).await?)
    }

    async fn ended(&self, wait: Duration) -> Result<Ended, BackendError> {
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, self.engine.wait(self.id)).await;
        }
        let state = self.engine.inspect(self.id).await?;
        Ok(Ended {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed,
        })
    }
}

#[async_trait::async_trait]
impl JobBackend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(self.engine.ping().await?)
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageCheck, BackendError> {
        Ok(match self.engine.image_labels(image).await? {
            Some(labels) => ImageCheck::Present(labels),
            None => ImageCheck::Missing,
        })
    }

    fn stats(&self) -> &BackendStats {
        &self.stats
    }

    async fn open_job(&self, job: &JobSpec) -> Result<JobScope, BackendError> {
        // Docker has no object for a job: its containers carry its id.
        Ok(JobScope {
            spec: job.clone(),
            location: job.id.clone(),
            deadline: SystemTime::now() + job.lifetime,
        })
    }

    async fn start_sandbox(
        &self,
        scope: &JobScope,
        sandbox: &SandboxSpec,
    ) -> Result<SandboxHandle, BackendError> {
        let language = sandbox.labels.get("language").map_or("-", String::as_str);
        let labels = labels::for_stage(
            &self.owner,
            &self.instance,
            scope.id(),
            &sandbox.role,
            language,
            remaining(scope.deadline) + Duration::from_secs(60),
        );
        let spec = container_spec(sandbox, labels, scope.spec.egress.as_deref());
        if let Some(warm) = self.pool.get().and_then(|p| p.take(&spec)) {
            debug!(container = %warm.id, job.id = %scope.id(), "warm sandbox taken");
            return Ok(self.handle(scope, sandbox, warm.id, warm.attachment, warm.lease));
        }
        let (id, lease) = self.create(scope.id(), spec).await?;
        // From here on, dropping the start removes the container.
        let guard = RemoveOnDrop {
            reaper: &self.reaper,
            id: Some(id.clone()),
            lease: Some(lease),
        };
        // Attaching and starting are independent: one round trip instead of
        // two. Nothing is lost: sandbox-init writes only after it has read
        // its step.
        let (attached, started) = tokio::join!(self.engine.attach(&id), self.engine.start(&id));
        let attachment = match (attached, started) {
            (Ok(a), Ok(())) => a,
            (Err(e), _) | (_, Err(e)) => {
                let cause = BackendError::from(e);
                let cleanup = self.engine.remove(&id).await.map_err(BackendError::from);
                let lease = guard.disarm();
                drop(lease);
                return Err(BackendError::with_cleanup(cause, cleanup));
            }
        };
        let lease = guard.disarm().expect("armed with a lease");
        debug!(container = %id, job.id = %scope.id(), role = %sandbox.role, "sandbox ready");
        Ok(self.handle(scope, sandbox, id, attachment, lease))
    }

    async fn run_step(
        &self,
        sandbox: &mut SandboxHandle,
        step: &Step<'_>,
        limits: &StageLimits,
        output: Option<&OutputSink>,
    ) -> Result<StepOutcome, BackendError> {
        let probe = ContainerProbe {
            engine: self.engine.as_ref(),
            id: &sandbox.name,
        };
        let id = StepId {
            job: &sandbox.job,
            sandbox: &sandbox.role,
        };
        driver::drive(id, &mut sandbox.attachment, step, limits, output, &probe).await
    }

    async fn stop_sandbox(&self, sandbox: SandboxHandle) -> Result<(), BackendError> {
        let id = sandbox.name.clone();
        let lease = sandbox.disarm();
        // Off the critical path: the result does not wait for the engine.
        self.reaper.remove(id, lease);
        Ok(())
    }

    async fn close_job(&self, _scope: JobScope) -> Result<(), BackendError> {
        // Every sandbox was stopped (or its dropped handle queued its
        // removal): nothing else of a job exists on Docker.
        Ok(())
    }

    async fn remove_job(&self, job_id: &str) -> Result<(), BackendError> {
        gc::remove_job(self.engine.as_ref(), job_id).await?;
        Ok(())
    }

    async fn collect_orphans(
        &self,
        scope: OrphanScope,
        dry_run: bool,
    ) -> Result<CollectReport, BackendError> {
        Ok(gc::collect(self.engine.as_ref(), scope, dry_run).await?)
    }

    fn start_pool(
        &self,
        targets: Vec<PoolTarget>,
        idle_lifetime: Duration,
        permits: Arc<Semaphore>,
    ) -> bool {
        let targets = targets
            .into_iter()
            .map(|t| pool::Target {
                language: t
                    .sandbox
                    .labels
                    .get("language")
                    .cloned()
                    .unwrap_or_default(),
                spec: container_spec(&t.sandbox, Default::default(), None),
                key: t.key,
                size: t.size,
            })
            .collect();
        let pool = self.pool.get_or_init(|| {
            WarmPool::new(
                Arc::clone(&self.engine),
                Arc::clone(&self.reaper),
                Arc::clone(&self.uids),
                self.instance.clone(),
                targets,
                idle_lifetime,
                permits,
            )
        });
        pool.start();
        true
    }

    fn pool(&self) -> Option<Arc<WarmPool>> {
        self.pool.get().cloned()
    }

    async fn settle(&self) {
        self.reaper.flush().await;
    }

    async fn shutdown(&self) {
        if let Some(p) = self.pool.get() {
            p.close();
        }
        self.reaper.flush().await;
    }
}

/// Queues a container for removal when dropped while still armed: a start
/// cancelled between creating and attaching leaves nothing behind.
struct RemoveOnDrop<'a> {
    reaper: &'a Reaper,
    id: Option<String>,
    lease: Option<UidLease>,
}

impl RemoveOnDrop<'_> {
    fn disarm(mut self) -> Option<UidLease> {
        self.id = None;
        self.lease.take()
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.reaper.remove(id, self.lease.take());
        }
    }
}
