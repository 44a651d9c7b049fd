//! Workflow runs in the service: triggers (pushes, API calls) are planned
//! into runs — one per workflow file of the commit — and run through the
//! job backend, a bounded number at once; progress is stored (job states,
//! steps, masked logs) and published for live views; cancellation stops a
//! run's jobs and removes their sandboxes; after a crash, runs that were
//! running end as failures with why.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::{Instrument, error, info, info_span, warn};

mod live;

pub use live::Follow;
use live::Live;

use super::secrets::SecretBox;
use super::store::repos::Repo;
use super::store::workflows::{NewWorkflowRun, TriggerRecord};
use super::store::{Store, StoreError};
use crate::backend::{JobBackend, OutputStream};
use crate::images::jobs::JobImages;
use crate::policy::SandboxPolicy;
use crate::workflow::exec::prepare::checkout;
use crate::workflow::exec::{JobRecord, RunContext, RunObserver, State, StepRecord, run_plan};
use crate::workflow::plan::{Outcome, Plan};
use crate::workflow::policy::WorkflowPolicy;
use crate::workflow::source::GitSource;
use crate::workflow::trigger::Push;

/// How the service runs workflows (from its configuration).
#[derive(Debug, Clone)]
pub struct WorkflowSettings {
    pub policy: Arc<WorkflowPolicy>,
    /// Bare cache repositories of the fetched commits.
    pub cache_dir: PathBuf,
    /// A directory of secret files mounted by the platform (Key Vault,
    /// a CSI driver): `<dir>/<repository id>/<NAME>`.
    pub secrets_dir: Option<PathBuf>,
    /// Workflow runs at once, over all tenants.
    pub concurrency: usize,
    /// Jobs of one run at once.
    pub jobs_per_run: usize,
}

/// A run's progress, for live views. Texts are masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowEvent {
    Job {
        job: String,
        state: State,
    },
    StepStarted {
        job: String,
        index: i64,
        name: String,
    },
    Output {
        job: String,
        index: i64,
        stream: OutputStream,
        text: String,
    },
    StepFinished {
        job: String,
        step: StepRecord,
    },
    JobFinished(Box<JobRecord>),
    Finished {
        state: State,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot prepare the git cache {path}: {message}")]
    Cache { path: String, message: String },
}

/// The service's workflow runs.
#[derive(Debug)]
pub struct Workflows {
    store: Store,
    backend: Arc<dyn JobBackend>,
    sandbox_policy: Arc<SandboxPolicy>,
    settings: WorkflowSettings,
    images: Arc<JobImages>,
    source: GitSource,
    secrets: SecretBox,
    wake: Notify,
    runs: Arc<Semaphore>,
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    channels: Mutex<HashMap<String, Live>>,
}

/// Why runs that were running when the previous process died ended.
const INTERRUPTED: &str = "the runner stopped while this job was running (it crashed or was killed); the job was not retried";

impl Workflows {
    pub fn new(
        store: Store,
        backend: Arc<dyn JobBackend>,
        sandbox_policy: Arc<SandboxPolicy>,
        images: Arc<JobImages>,
        settings: WorkflowSettings,
        secrets: SecretBox,
    ) -> Result<Arc<Workflows>, WorkflowsError> {
        let source =
            GitSource::new(&settings.cache_dir, settings.policy.source.clone()).map_err(|e| {
                WorkflowsError::Cache {
                    path: settings.cache_dir.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        Ok(Arc::new(Workflows {
            runs: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            store,
            backend,
            sandbox_policy,
            images,
            source,
            secrets,
            settings,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        }))
    }

    /// The cache of fetched repositories (release builds read commits
    /// from it too).
    pub fn source(&self) -> &GitSource {
        &self.source
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub fn policy(&self) -> &WorkflowPolicy {
        &self.settings.policy
    }

    /// Ends runs a previous process left running, and removes their jobs'
    /// sandboxes. Call once, before [`Workflows::start`].
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let ended = self
            .store
            .call(|s| s.workflow_queue().recover(INTERRUPTED))
            .await?;
        for (run, positions) in &ended {
            for p in positions {
                let job = format!("{}-{p}", backend_run_id(run));
                if let Err(e) = self.backend.remove_job(&job).await {
                    warn!(workflow_run = %run, error = %e, "could not remove an interrupted job's sandbox");
                }
            }
            warn!(workflow_run = %run, "ended a workflow run interrupted by the previous process as failure");
        }
        Ok(ended.len())
    }

    /// A trigger (or a cancellation) was recorded.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts planning triggers and running runs.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.dispatch().await {
                    error!(error = %e, "dispatching workflow runs failed");
                }
                tokio::select! {
                    () = me.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    /// Plans every waiting trigger, then starts runs while slots are free.
    async fn dispatch(self: &Arc<Self>) -> Result<(), StoreError> {
        while let Some(t) = self
            .store
            .call(|s| s.workflow_queue().next_trigger())
            .await?
        {
            self.plan(t).await?;
        }
        self.signal_cancellations().await?;
        loop {
            let Ok(permit) = Arc::clone(&self.runs).try_acquire_owned() else {
                return Ok(());
            };
            let Some(claimed) = self.store.call(|s| s.workflow_queue().claim_run()).await? else {
                return Ok(());
            };
            let me = Arc::clone(self);
            let span = info_span!("workflow_run", run.id = %claimed.record.id, workflow = %claimed.record.workflow);
            tokio::spawn(
                async move {
                    me.execute(claimed.record, claimed.plan).await;
                    drop(permit);
                    me.wake.notify_one();
                }
                .instrument(span),
            );
        }
    }

    /// Plans a trigger: its commit fetched, each workflow file planned.
    async fn plan(&self, t: TriggerRecord) -> Result<(), StoreError> {
        let repo_id = t.repo_id.clone();
        let Some(repo) = self.store.call(move |s| s.repo_by_id(&repo_id)).await? else {
            let id = t.id.clone();
            return self
                .store
                .call(move |s| {
                    s.workflow_queue()
                        .fail_trigger(&id, "the repository was removed")
                })
                .await;
        };
        let push = Push {
            git_ref: t.git_ref.clone(),
            sha: t.commit.clone(),
            repository: repo.name.clone(),
            changed_paths: t.changed_paths.clone(),
        };
        let checked = checkout(
            &self.source,
            &repo.url,
            &push,
            &self.settings.policy,
            &self.images,
        )
        .await;
        let runs = match checked {
            Err(e) => {
                let (id, message) = (t.id.clone(), e.to_string());
                info!(trigger = %t.id, error = %message, "trigger not planned");
                return self
                    .store
                    .call(move |s| s.workflow_queue().fail_trigger(&id, &message))
                    .await;
            }
            Ok(co) => co
                .plans
                .into_iter()
                .filter_map(|p| match p.result {
                    Ok(Outcome::Skipped(_)) => None,
                    Ok(Outcome::Planned(plan)) => Some(NewWorkflowRun {
                        workflow: p.path,
                        name: plan.name.clone(),
                        jobs: plan
                            .jobs
                            .iter()
                            .map(|j| (j.id.clone(), j.name.clone()))
                            .collect(),
                        plan: serde_json::to_string(&plan).expect("plans serialize"),
                        failed: None,
                    }),
                    Err(errors) => Some(NewWorkflowRun {
                        workflow: p.path.clone(),
                        name: p.path,
                        jobs: Vec::new(),
                        plan: String::new(),
                        failed: Some(errors.to_string()),
                    }),
                })
                .collect::<Vec<_>>(),
        };
        let trigger = t.clone();
        let ids = self
            .store
            .call(move |s| s.workflow_queue().plan_trigger(&trigger, &runs))
            .await?;
        info!(trigger = %t.id, runs = ids.len(), "trigger planned");
        Ok(())
    }

    /// Tells running runs whose cancellation was recorded (by this process
    /// or another reading the same store) to stop.
    async fn signal_cancellations(&self) -> Result<(), StoreError> {
        let running: Vec<String> = self
            .running
            .lock()
            .expect("workflows lock")
            .keys()
            .cloned()
            .collect();
        for id in running {
            let rid = id.clone();
            if self
                .store
                .call(move |s| s.workflow_queue().cancel_requested(&rid))
                .await?
            {
                self.cancel(&id);
            }
        }
        Ok(())
    }

    /// Stops a running run (its record already says cancel was requested).
    pub fn cancel(&self, id: &str) -> bool {
        self.running
            .lock()
            .expect("workflows lock")
            .get(id)
            .is_some_and(|tx| tx.send(true).is_ok())
    }

    /// Runs a claimed run to its end and records it.
    async fn execute(
        self: &Arc<Self>,
        run: super::store::workflows::WorkflowRunRecord,
        plan: String,
    ) {
        let plan: Plan = match serde_json::from_str(&plan) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "a stored plan cannot be read");
                self.end(
                    &run.id,
                    State::Failure,
                    Some("the stored plan cannot be read; the operator's log has the details"),
                )
                .await;
                return;
            }
        };
        let repo_id = run.repo_id.clone();
        let repo = match self.store.call(move |s| s.repo_by_id(&repo_id)).await {
            Ok(Some(r)) => r,
            _ => {
                self.end(&run.id, State::Failure, Some("the repository was removed"))
                    .await;
                return;
            }
        };
        let push = Push {
            git_ref: run.git_ref.clone(),
            sha: run.commit.clone(),
            repository: repo.name.clone(),
            changed_paths: None,
        };
        let archive = match checkout(
            &self.source,
            &repo.url,
            &push,
            &self.settings.policy,
            &self.images,
        )
        .await
        {
            Ok(co) => co.archive,
            Err(e) => {
                self.end(
                    &run.id,
                    State::Failure,
                    Some(&format!("fetching the commit failed: {e}")),
                )
                .await;
                return;
            }
        };
        let secrets = match self.secret_values(&repo).await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "reading the repository's secrets failed");
                self.end(&run.id, State::Failure, Some("the repository's secrets cannot be read; the operator's log has the details")).await;
                return;
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        self.running
            .lock()
            .expect("workflows lock")
            .insert(run.id.clone(), stop_tx);
        let channel = self.channel(&run.id);
        let (events_tx, writer) = self.writer(
            &run.id,
            plan.jobs
                .iter()
                .map(|j| j.limits.log_bytes)
                .max()
                .unwrap_or(1 << 24),
        );
        let ctx = RunContext {
            backend: Arc::clone(&self.backend),
            sandbox_policy: Arc::clone(&self.sandbox_policy),
            plan: Arc::new(plan),
            run_id: backend_run_id(&run.id),
            source: Arc::new(archive),
            secrets: Arc::new(secrets),
            tenant: Some(run.tenant.to_string()),
            egress: repo.egress.clone(),
            observer: Arc::new(Publisher {
                events: events_tx,
                channel: channel.clone(),
            }),
        };
        let record = run_plan(&ctx, stop_rx, self.settings.jobs_per_run).await;
        drop(ctx);
        let _ = writer.await;
        self.running.lock().expect("workflows lock").remove(&run.id);
        self.end(&run.id, record.state, None).await;
        channel.publish(WorkflowEvent::Finished {
            state: record.state,
        });
        info!(state = %record.state, "workflow run finished");
    }

    async fn end(&self, run: &str, state: State, message: Option<&str>) {
        let (id, msg) = (run.to_owned(), message.map(str::to_owned));
        if let Err(e) = self
            .store
            .call(move |s| {
                s.workflow_queue()
                    .finish_run(&id, state.as_str(), msg.as_deref())
            })
            .await
        {
            error!(error = %e, "recording a workflow run's end failed");
        }
    }

    /// The secrets a repository's jobs may read: stored ones, then files
    /// the platform mounted (which win).
    async fn secret_values(&self, repo: &Repo) -> Result<BTreeMap<String, String>, StoreError> {
        let (r, sb) = (repo.clone(), self.secrets.clone());
        let mut values: BTreeMap<String, String> = self
            .store
            .call(move |s| s.repo_secret_values(&r, &sb))
            .await?
            .into_iter()
            .collect();
        if let Some(dir) = &self.settings.secrets_dir {
            for name in &repo.secrets_allowed {
                let path = dir.join(&repo.id).join(name);
                if let Ok(v) = std::fs::read_to_string(&path) {
                    values.insert(name.clone(), v.trim_end_matches('\n').to_owned());
                }
            }
        }
        Ok(values)
    }

    fn channel(&self, id: &str) -> Live {
        self.channels
            .lock()
            .expect("workflows lock")
            .entry(id.to_owned())
            .or_insert_with(Live::new)
            .clone()
    }

    /// Follows a run: its output so far, then its live events (follow, then
    /// read its state).
    pub fn subscribe(&self, id: &str) -> Follow {
        let mut channels = self.channels.lock().expect("workflows lock");
        let running = self.running.lock().expect("workflows lock");
        channels.retain(|k, ch| running.contains_key(k) || ch.followers() > 0);
        channels
            .entry(id.to_owned())
            .or_insert_with(Live::new)
            .follow()
    }

    /// A task writing a run's progress to the store: job states, step
    /// records, and logs in batches (not a write per line).
    fn writer(
        &self,
        run: &str,
        cap: u64,
    ) -> (
        mpsc::UnboundedSender<WorkflowEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<WorkflowEvent>();
        let store = self.store.clone();
        let run = run.to_owned();
        let task = tokio::spawn(async move {
            let mut logs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tick.tick() => {
                        flush(&store, &run, &mut logs, cap).await;
                        continue;
                    }
                };
                let Some(ev) = ev else { break };
                match ev {
                    WorkflowEvent::Output { job, text, .. } => {
                        logs.entry(job)
                            .or_default()
                            .extend_from_slice(text.as_bytes());
                    }
                    WorkflowEvent::Job {
                        job,
                        state: State::Running,
                    } => {
                        let (r, j) = (run.clone(), job);
                        let _ = store
                            .call(move |s| s.workflow_queue().job_started(&r, &j))
                            .await;
                    }
                    WorkflowEvent::JobFinished(record) => {
                        flush(&store, &run, &mut logs, cap).await;
                        let steps = serde_json::to_string(&record.steps).expect("steps serialize");
                        let r = run.clone();
                        let _ = store
                            .call(move |s| {
                                s.workflow_queue().job_finished(
                                    &r,
                                    &record.id,
                                    record.state.as_str(),
                                    &steps,
                                    record.message.as_deref(),
                                )
                            })
                            .await;
                    }
                    _ => {}
                }
            }
            flush(&store, &run, &mut logs, cap).await;
        });
        (tx, task)
    }
}

async fn flush(store: &Store, run: &str, logs: &mut BTreeMap<String, Vec<u8>>, cap: u64) {
    for (job, bytes) in std::mem::take(logs) {
        if bytes.is_empty() {
            continue;
        }
        let (s, r) = (store.clone(), run.to_owned());
        if let Err(e) = s
            .call(move |st| st.workflow_queue().append_log(&r, &job, &bytes, cap))
            .await
        {
            warn!(error = %e, "storing a job's log failed");
        }
    }
}

/// The backend job names of a run: `<16 hex>-<job position>`.
fn backend_run_id(run: &str) -> String {
    let hex: String = run.chars().filter(char::is_ascii_hexdigit).collect();
    hex.chars()
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Publishes a run's progress to its live channel and its store writer.
struct Publisher {
    events: mpsc::UnboundedSender<WorkflowEvent>,
    channel: Live,
}

impl Publisher {
    fn send(&self, ev: WorkflowEvent) {
        self.channel.publish(ev.clone());
        let _ = self.events.send(ev);
    }
}

impl RunObserver for Publisher {
    fn job_state(&self, job: &str, _name: &str, state: State) {
        self.send(WorkflowEvent::Job {
            job: job.to_owned(),
            state,
        });
    }

    fn step_started(&self, job: &str, index: i64, name: &str) {
        self.send(WorkflowEvent::StepStarted {
            job: job.to_owned(),
            index,
            name: name.to_owned(),
        });
    }

    fn output(&self, job: &str, index: i64, stream: OutputStream, text: &str) {
        self.send(WorkflowEvent::Output {
            job: job.to_owned(),
            index,
            stream,
            text: text.to_owned(),
        });
    }

    fn step_finished(&self, job: &str, step: &StepRecord) {
        self.send(WorkflowEvent::StepFinished {
            job: job.to_owned(),
            step: step.clone(),
        });
    }

    fn job_finished(&self, job: &JobRecord) {
        self.send(WorkflowEvent::JobFinished(Box::new(job.clone())));
    }
}
