//! One planned job (or matrix cell): its own job on the backend (a
//! container, or a namespace with a pod), the commit's files unpacked into
//! `/work`, then its steps in order in that one sandbox, each with its own
//! environment and time limit, output masked and capped, and the sandbox
//! removed at the end whatever happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::mask::Masker;
use super::observer::RunObserver;
use super::state::{JobRecord, State, StepRecord};
use crate::backend::protocol::{ArchiveKind, Step};
use crate::backend::{
    BackendError, JobBackend, JobKind, JobScope, JobSpec, OutputStream, SandboxHandle, SandboxSpec,
    Scratch, SeccompProfile, StepOutcome,
};
use crate::limits::StageLimits;
use crate::policy::{SandboxPolicy, Seccomp};
use crate::verdict::LimitHit;
use crate::workflow::expr::{JobResult, Secrets};
use crate::workflow::plan::{Plan, PlannedJob};
use crate::workflow::render::{RenderedAction, RenderedStep, StepState};

/// The workspace inside the sandbox.
pub const WORKSPACE: &str = "/work";
/// Time the set-up step may take to unpack the commit.
const SETUP_WALL: Duration = Duration::from_secs(300);
/// Open files per process in a job's sandbox.
const JOB_NOFILE: u64 = 4096;
/// /dev/shm of a job's sandbox.
const JOB_SHM: u64 = 64 << 20;

/// What every job of a run shares.
#[derive(Clone)]
pub struct RunContext {
    pub backend: Arc<dyn JobBackend>,
    /// The sandbox policy: its seccomp profile applies to jobs too.
    pub sandbox_policy: Arc<SandboxPolicy>,
    pub plan: Arc<Plan>,
    /// Names the run's jobs on the backend: `<run>-<n>` (lowercase hex).
    pub run_id: String,
    /// The commit's files, as `git archive` made them.
    pub source: Arc<Vec<u8>>,
    /// The secrets the repository may use, by name. Only the ones a step
    /// reads are given to it; all are masked in every job's output.
    pub secrets: Arc<BTreeMap<String, String>>,
    pub tenant: Option<String>,
    /// The egress grant of the repository's server-side policy, if any.
    pub egress: Option<String>,
    pub observer: Arc<dyn RunObserver>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("run_id", &self.run_id)
            .field("workflow", &self.plan.workflow)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// One job to run now.
#[derive(Debug)]
pub struct JobTicket<'a> {
    /// Position in the plan: names the job on the backend.
    pub number: usize,
    pub job: &'a PlannedJob,
    /// Results of the workflow jobs it needs (`needs.<id>.result`).
    pub needs: BTreeMap<String, JobResult>,
}

/// How the steps loop ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    JobTimedOut,
}

/// Runs one job to its record. `cancel` turning true stops it.
pub async fn run_job(
    ctx: &RunContext,
    t: JobTicket<'_>,
    mut cancel: watch::Receiver<bool>,
) -> JobRecord {
    let job = t.job;
    let started = Instant::now();
    let masker = Masker::new(ctx.secrets.values().map(String::as_str));
    ctx.observer.job_state(&job.id, &job.name, State::Running);
    let spec = job_spec(ctx, &t);
    let mut record = JobRecord {
        id: job.id.clone(),
        name: job.name.clone(),
        state: State::Running,
        steps: Vec::new(),
        duration_ms: 0,
        message: None,
        continued_on_error: false,
    };
    let outcome = tokio::select! {
        r = open_and_run(ctx, &spec, &t, &masker, &mut record) => r,
        _ = cancel.wait_for(|c| *c) => Err(JobEnd::Stopped(Stop::Cancelled)),
    };
    // Whatever happened, nothing of the job is left.
    if let Err(e) = ctx.backend.remove_job(&spec.id).await {
        warn!(job.id = %spec.id, error = %e, "removing a workflow job's sandbox failed; garbage collection will");
    }
    finish(&mut record, outcome, &masker);
    if record.state == State::Failure && job.continue_on_error {
        record.continued_on_error = true;
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    info!(job = %job.id, state = %record.state, "workflow job finished");
    ctx.observer.job_finished(&record);
    record
}

/// How a job ended, when not by its steps alone.
#[derive(Debug)]
enum JobEnd {
    Stopped(Stop),
    Backend(BackendError),
}

fn finish(record: &mut JobRecord, outcome: Result<(), JobEnd>, masker: &Masker) {
    match outcome {
        Ok(()) => {
            let failed = record.steps.iter().any(|s| {
                matches!(s.state, State::Failure | State::TimedOut)
                    && !s
                        .message
                        .as_deref()
                        .is_some_and(|m| m.starts_with(CONTINUED))
            });
            record.state = if failed {
                State::Failure
            } else {
                State::Success
            };
        }
        Err(JobEnd::Stopped(Stop::Cancelled)) => {
            record.state = State::Cancelled;
            record.message = Some("the run was cancelled".into());
        }
        Err(JobEnd::Stopped(Stop::JobTimedOut)) => {
            record.state = State::TimedOut;
            record.message =
                Some("the job ran past its time limit (timeout-minutes) and was stopped".into());
        }
        Err(JobEnd::Backend(e)) => {
            record.state = State::Failure;
            // The platform's words can hold a secret a step printed into
            // an error (a file name, say): masked like the output.
            record.message = Some(masker.mask(&format!("the job's sandbox failed: {e}")));
        }
    }
}

/// Marks a failed step whose `continue-on-error` kept the job going.
const CONTINUED: &str = "continue-on-error: ";

fn job_spec(ctx: &RunContext, t: &JobTicket<'_>) -> JobSpec {
    let limits = &t.job.limits;
    JobSpec {
        id: format!("{}-{}", ctx.run_id, t.number),
        kind: JobKind::Workflow,
        tenant: ctx.tenant.clone(),
        egress: ctx.egress.clone(),
        lifetime: limits.wall_time + SETUP_WALL + Duration::from_secs(120),
        largest: sandbox_spec(ctx, t.job).resources(),
    }
}

/// The one sandbox a job's steps run in.
fn sandbox_spec(ctx: &RunContext, job: &PlannedJob) -> SandboxSpec {
    let l = &job.limits;
    SandboxSpec {
        role: "job".into(),
        image: job.image.clone(),
        memory_bytes: l.memory_bytes,
        nano_cpus: l.nano_cpus,
        pids: u32::try_from(l.pids).unwrap_or(u32::MAX),
        scratch: vec![
            Scratch {
                path: WORKSPACE.into(),
                size_bytes: l.workspace_bytes,
                exec: true,
                mode: 0o700,
            },
            // Build tools run what they write to /tmp: executable here,
            // unlike a learner's sandbox.
            Scratch {
                path: "/tmp".into(),
                size_bytes: (l.workspace_bytes / 2).max(64 << 20),
                exec: true,
                mode: 0o1777,
            },
        ],
        shm_bytes: JOB_SHM,
        nofile: JOB_NOFILE,
        seccomp: match &ctx.sandbox_policy.container.seccomp {
            Seccomp::EngineDefault => SeccompProfile::EngineDefault,
            Seccomp::Profile { json, .. } => SeccompProfile::Runner(json.clone()),
        },
        labels: BTreeMap::from([("workflow-job".into(), job.job_id.clone())]),
    }
}

async fn open_and_run(
    ctx: &RunContext,
    spec: &JobSpec,
    t: &JobTicket<'_>,
    masker: &Masker,
    record: &mut JobRecord,
) -> Result<(), JobEnd> {
    let backend = &ctx.backend;
    let scope = backend.open_job(spec).await.map_err(JobEnd::Backend)?;
    let sandbox = sandbox_spec(ctx, t.job);
    let mut handle = match backend.start_sandbox(&scope, &sandbox).await {
        Ok(h) => h,
        Err(e) => {
            let _ = backend.close_job(scope).await;
            return Err(JobEnd::Backend(e));
        }
    };
    let ran = Steps {
        ctx,
        ticket: t,
        masker,
        deadline: Instant::now() + t.job.limits.wall_time,
        log_left: t.job.limits.log_bytes,
    }
    .run(&mut handle, &scope, record)
    .await;
    let stopped = backend.stop_sandbox(handle).await;
    let closed = backend.close_job(scope).await;
    if let Err(e) = stopped.and(closed) {
        warn!(job.id = %spec.id, error = %e, "cleaning up a workflow job failed; garbage collection will");
    }
    ran
}

/// The steps of one job, in its sandbox.
struct Steps<'a> {
    ctx: &'a RunContext,
    ticket: &'a JobTicket<'a>,
    masker: &'a Masker,
    deadline: Instant,
    /// Bytes of log the job may still write.
    log_left: u64,
}

impl Steps<'_> {
    async fn run(
        &mut self,
        handle: &mut SandboxHandle,
        scope: &JobScope,
        record: &mut JobRecord,
    ) -> Result<(), JobEnd> {
        self.set_up(handle, record).await?;
        let job = self.ticket.job;
        let mut job_failed = false;
        for index in 0..job.steps.len() {
            if Instant::now() >= self.deadline {
                return Err(JobEnd::Stopped(Stop::JobTimedOut));
            }
            let state = StepState {
                needs: &self.ticket.needs,
                job_failed,
                cancelled: false,
            };
            let step = self.step(index, handle, scope, state).await?;
            if matches!(step.state, State::Failure | State::TimedOut)
                && !step
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(CONTINUED))
            {
                job_failed = true;
            }
            let timed_out_job = step.state == State::TimedOut && Instant::now() >= self.deadline;
            self.ctx.observer.step_finished(&job.id, &step);
            record.steps.push(step);
            if timed_out_job {
                return Err(JobEnd::Stopped(Stop::JobTimedOut));
            }
        }
        Ok(())
    }

    /// Unpacks the commit into the workspace.
    async fn set_up(
        &mut self,
        handle: &mut SandboxHandle,
        record: &mut JobRecord,
    ) -> Result<(), JobEnd> {
        let job = self.ticket.job;
        let name = "Set up job";
        self.ctx.observer.step_started(&job.id, -1, name);
        let started = Instant::now();
        let argv = vec!["true".to_owned()];
        let env = base_env(&self.ctx.plan, &self.ctx.run_id);
        let limits = self.limits(SETUP_WALL);
        let step = Step {
            argv: &argv,
            env: &env,
            cwd: WORKSPACE,
            wall_ms: limits.wall_time_ms,
            cpu_ms: limits.cpu_time_ms,
            stdout_max: limits.stdout_max_bytes,
            stderr_max: limits.stderr_max_bytes,
            fsize_max: job.limits.workspace_bytes,
            nofile: JOB_NOFILE,
            collect_max: 0,
            archive: &self.ctx.source,
            archive_kind: ArchiveKind::Tar,
            tmp_files: &[],
            stdin: &[],
        };
        let outcome = self
            .ctx
            .backend
            .run_step(handle, &step, &limits, None)
            .await
            .map_err(JobEnd::Backend)?;
        let ok = outcome.result.succeeded();
        let rec = StepRecord {
            index: -1,
            name: name.into(),
            state: if ok { State::Success } else { State::Failure },
            exit_code: outcome.result.exit_code,
            duration_ms: started.elapsed().as_millis() as u64,
            message: (!ok).then(|| {
                format!(
                    "unpacking the commit into {WORKSPACE} failed: {}",
                    outcome.result.message.clone().unwrap_or_default()
                )
            }),
        };
        self.ctx.observer.step_finished(&job.id, &rec);
        record.steps.push(rec);
        if ok {
            Ok(())
        } else {
            Err(JobEnd::Backend(BackendError::Platform {
                action: "unpack the commit into the workspace".into(),
                message: outcome.result.message.unwrap_or_default(),
            }))
        }
    }

    /// Runs (or skips) step `index`.
    async fn step(
        &mut self,
        index: usize,
        handle: &mut SandboxHandle,
        _scope: &JobScope,
        state: StepState<'_>,
    ) -> Result<StepRecord, JobEnd> {
        let job = self.ticket.job;
        let plan = &self.ctx.plan;
        // Only the secrets this step reads are given to it.
        let wanted = job.step_secrets(plan, index);
        let given: BTreeMap<String, String> = self
            .ctx
            .secrets
            .iter()
            .filter(|(k, _)| wanted.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let shown = job.render_step(plan, index, state, Secrets::Masked);
        let real = job.render_step(plan, index, state, Secrets::Real(&given));
        let (shown, real) = match (shown, real) {
            (Ok(Some(s)), Ok(Some(r))) => (s, r),
            (Ok(None), _) | (_, Ok(None)) => {
                return Ok(self.skipped(index));
            }
            (Err(e), _) | (_, Err(e)) => {
                return Ok(StepRecord {
                    index: index as i64,
                    name: format!("step {}", index + 1),
                    state: State::Failure,
                    exit_code: None,
                    duration_ms: 0,
                    message: Some(self.masker.mask(&format!(
                        "its expressions cannot be evaluated: {}",
                        e.message
                    ))),
                });
            }
        };
        self.ctx
            .observer
            .step_started(&job.id, index as i64, &shown.name);
        let started = Instant::now();
        let mut rec = match &real.action {
            RenderedAction::Checkout => {
                let text = format!(
                    "the workspace already holds {} at {}\n",
                    plan.github.repository, plan.github.sha
                );
                self.ctx
                    .observer
                    .output(&job.id, index as i64, OutputStream::Stdout, &text);
                StepRecord {
                    index: index as i64,
                    name: shown.name.clone(),
                    state: State::Success,
                    exit_code: Some(0),
                    duration_ms: 0,
                    message: None,
                }
            }
            RenderedAction::Run { script, shell } => {
                self.run_script(index, handle, &real, &shown.name, script, *shell)
                    .await?
            }
        };
        rec.duration_ms = started.elapsed().as_millis() as u64;
        if matches!(rec.state, State::Failure | State::TimedOut) && real.continue_on_error {
            let why = rec
                .message
                .take()
                .unwrap_or_else(|| "the step failed".into());
            rec.message = Some(format!("{CONTINUED}{why}"));
        }
        Ok(rec)
    }

    fn skipped(&self, index: usize) -> StepRecord {
        let job = self.ticket.job;
        let name = job.steps[index]
            .name
            .as_ref()
            .map(|t| t.source().to_owned())
            .unwrap_or_else(|| format!("step {}", index + 1));

        StepRecord {
            index: index as i64,
            name,
            state: State::Skipped,
            exit_code: None,
            duration_ms: 0,
            message: Some("its `if` is false".into()),
        }
    }

    async fn run_script(
        &mut self,
        index: usize,
        handle: &mut SandboxHandle,
        real: &RenderedStep,
        name: &str,
        script: &str,
        shell: crate::workflow::model::Shell,
    ) -> Result<StepRecord, JobEnd> {
        let job = self.ticket.job;
        let fail = |message: String| StepRecord {
            index: index as i64,
            name: name.to_owned(),
            state: State::Failure,
            exit_code: None,
            duration_ms: 0,
            message: Some(message),
        };
        let cwd = match working_dir(real.working_directory.as_deref()) {
            Ok(c) => c,
            Err(e) => return Ok(fail(e.to_string())),
        };
        if self.log_left == 0 {
            return Ok(fail(format!(
                "the job's log reached its limit of {} bytes; no further step runs",
                job.limits.log_bytes
            )));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let step_limit = real.timeout.map_or(left, |t| t.min(left));
        let limits = self.limits(step_limit);
        let file = format!("runner-step-{index}.sh");
        let tmp_files = [(file.clone(), script.as_bytes().to_vec())];
        let argv = shell.command(&format!("/tmp/{file}"));
        let env = step_env(&self.ctx.plan, &self.ctx.run_id, &real.env);
        let step = Step {
            argv: &argv,
            env: &env,
            cwd: &cwd,
            wall_ms: limits.wall_time_ms,
            cpu_ms: limits.cpu_time_ms,
            stdout_max: limits.stdout_max_bytes,
            stderr_max: limits.stderr_max_bytes,
            fsize_max: job.limits.workspace_bytes,
            nofile: JOB_NOFILE,
            collect_max: 0,
            archive: &[],
            archive_kind: ArchiveKind::Files,
            tmp_files: &tmp_files,
            stdin: &[],
        };
        let outcome = self.observed_step(index, handle, &step, &limits).await?;
        let r = &outcome.result;
        let written = (r.stdout.len() + r.stderr.len()) as u64;
        // Each stream may take what is left, so together they can pass it:
        // the store keeps the cap, and the step says output was dropped.
        let dropped = written > self.log_left || r.stdout_truncated || r.stderr_truncated;
        self.log_left = self.log_left.saturating_sub(written);
        let (state, mut message) = step_verdict(r, step_limit, job);
        if dropped && message.is_none() {
            message = Some(format!(
                "the job's log reached its limit of {} bytes; output past it was dropped",
                job.limits.log_bytes
            ));
        }
        Ok(StepRecord {
            index: index as i64,
            name: name.to_owned(),
            state,
            exit_code: r.exit_code,
            duration_ms: 0,
            message,
        })
    }

    /// Runs a step with its output masked and forwarded as it comes.
    async fn observed_step(
        &self,
        index: usize,
        handle: &mut SandboxHandle,
        step: &Step<'_>,
        limits: &StageLimits,
    ) -> Result<StepOutcome, JobEnd> {
        let job_id = self.ticket.job.id.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(OutputStream, String)>();
        let observer = Arc::clone(&self.ctx.observer);
        let mut out_mask = self.masker.clone();
        let mut err_mask = self.masker.clone();
        let forward = tokio::spawn(async move {
            while let Some((stream, text)) = rx.recv().await {
                let masked = match stream {
                    OutputStream::Stdout => out_mask.feed(&text),
                    OutputStream::Stderr => err_mask.feed(&text),
                };
                if !masked.is_empty() {
                    observer.output(&job_id, index as i64, stream, &masked);
                }
            }
            for (stream, m) in [
                (OutputStream::Stdout, &mut out_mask),
                (OutputStream::Stderr, &mut err_mask),
            ] {
                let rest = m.finish();
                if !rest.is_empty() {
                    observer.output(&job_id, index as i64, stream, &rest);
                }
            }
        });
        let outcome = self
            .ctx
            .backend
            .run_step(handle, step, limits, Some(&tx))
            .await;
        drop(tx);
        let _ = forward.await;
        outcome.map_err(JobEnd::Backend)
    }

    /// A step's limits: `wall`, CPU for every CPU of the job, the log left.
    fn limits(&self, wall: Duration) -> StageLimits {
        let l = &self.ticket.job.limits;
        let wall_ms = wall.as_millis().max(1) as u64;
        let cpus = (l.nano_cpus.max(1) as u64).div_ceil(1_000_000_000);
        StageLimits {
            wall_time_ms: wall_ms,
            cpu_time_ms: wall_ms.saturating_mul(cpus),
            memory_bytes: l.memory_bytes,
            pids: u32::try_from(l.pids).unwrap_or(u32::MAX),
            stdout_max_bytes: self.log_left.max(1),
            stderr_max_bytes: self.log_left.max(1),
        }
    }
}

/// The state a finished step ends in, and why when it is not a success.
fn step_verdict(
    r: &crate::verdict::StageResult,
    step_limit: Duration,
    job: &PlannedJob,
) -> (State, Option<String>) {
    match r.limit {
        None if r.succeeded() => (State::Success, None),
        None => (
            State::Failure,
            Some(match (r.exit_code, &r.signal) {
                (Some(c), _) => format!("the step exited with code {c}"),
                (None, Some(s)) => format!("the step was killed by {s}"),
                _ => "the step failed".into(),
            }),
        ),
        Some(LimitHit::WallTime) => (
            State::TimedOut,
            Some(format!(
                "the step ran past its time limit of {} s and was stopped",
                step_limit.as_secs()
            )),
        ),
        Some(LimitHit::CpuTime) => (State::TimedOut, r.message.clone()),
        Some(LimitHit::Memory) => (
            State::Failure,
            Some(format!(
                "the job reached its memory limit of {} MiB",
                job.limits.memory_bytes >> 20
            )),
        ),
        Some(LimitHit::Output) => (
            State::Failure,
            Some(format!(
                "the job's log reached its limit of {} bytes; the step was stopped",
                job.limits.log_bytes
            )),
        ),
    }
}

/// A step's environment: what every step starts with, the step's own
/// `env` on top.
fn step_env(plan: &Plan, run_id: &str, step_env: &BTreeMap<String, String>) -> Vec<String> {
    let mut env: BTreeMap<String, String> = base_env(plan, run_id)
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    env.extend(step_env.clone());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A step's `working-directory` that would leave the workspace; the step
/// fails with this message.
#[derive(Debug, thiserror::Error)]
#[error("working-directory {dir:?} must be a path inside the workspace, relative and without `..`")]
struct OutsideWorkspace {
    dir: String,
}

/// `/work`, or a directory under it; never outside.
fn working_dir(dir: Option<&str>) -> Result<String, OutsideWorkspace> {
    let Some(dir) = dir.filter(|d| !d.is_empty() && *d != ".") else {
        return Ok(WORKSPACE.to_owned());
    };
    if dir.starts_with('/') || dir.split('/').any(|c| c == "..") {
        return Err(OutsideWorkspace {
            dir: dir.to_owned(),
        });
    }
    Ok(format!("{WORKSPACE}/{}", dir.trim_end_matches('/')))
}

/// What every step's environment starts with (the workflow's `env` goes
/// on top).
fn base_env(plan: &Plan, run_id: &str) -> Vec<String> {
    let g = &plan.github;
    [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("CI", "true"),
        ("TMPDIR", "/tmp"),
        ("RUNNER_OS", "Linux"),
        ("RUNNER_TEMP", "/tmp"),
        ("GITHUB_WORKSPACE", WORKSPACE),
        ("GITHUB_SHA", &g.sha),
        ("GITHUB_REF", &g.git_ref),
        ("GITHUB_REF_NAME", &g.ref_name),
        ("GITHUB_REPOSITORY", &g.repository),
        ("GITHUB_EVENT_NAME", &g.event_name),
        ("GITHUB_RUN_ID", run_id),
        ("GITHUB_WORKFLOW", &plan.name),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories_stay_in_the_workspace() {
        assert_eq!(working_dir(None).unwrap(), "/work");
        assert_eq!(working_dir(Some("app/")).unwrap(), "/work/app");
        assert!(working_dir(Some("/etc")).is_err());
        assert!(working_dir(Some("a/../../etc")).is_err());
    }
}
