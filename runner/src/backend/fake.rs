//! A scripted [`JobBackend`]: no engine, no cluster. Service, scheduler and
//! pool tests run against it; each test says what a step does (print, exit,
//! hang until cancelled, fail) and reads back what was asked of the backend
//! (the journal), like youki's test `Syscall`.
//!
//! It is a fake of the *platform*, not of the runner: the runner's own code
//! (scheduler, store, API, verdicts) runs unchanged on top of it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use std::collections::BTreeMap;

use super::{
    BackendError, BackendStats, CollectReport, ImageCheck, JobBackend, JobScope, JobSpec,
    OrphanScope, OutputSink, OutputStream, SandboxHandle, SandboxSpec, StepOutcome,
};
use crate::backend::protocol::Step;
use crate::limits::StageLimits;
use crate::verdict::{LimitHit, OutputOrder, StageResult};

/// Which steps a rule applies to. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct When {
    /// The step's program (`argv[0]`) is this.
    pub program: Option<String>,
    /// The sandbox's role (`compile`, `run`, `job`).
    pub role: Option<String>,
    /// The step's input archive (the submitted files) contains these bytes.
    pub input_contains: Option<Vec<u8>>,
    /// An entry of the step's environment (`NAME=value`) contains this:
    /// what a workflow step was given (its secrets) decides its reply.
    pub env_contains: Option<String>,
}

impl When {
    pub fn program(p: &str) -> When {
        When {
            program: Some(p.to_owned()),
            ..When::default()
        }
    }

    pub fn role(r: &str) -> When {
        When {
            role: Some(r.to_owned()),
            ..When::default()
        }
    }

    pub fn input(bytes: &[u8]) -> When {
        When {
            input_contains: Some(bytes.to_vec()),
            ..When::default()
        }
    }

    pub fn env(needle: &str) -> When {
        When {
            env_contains: Some(needle.to_owned()),
            ..When::default()
        }
    }

    fn matches(&self, role: &str, step: &Step<'_>) -> bool {
        self.program
            .as_deref()
            .is_none_or(|p| step.argv.first().is_some_and(|a| a == p))
            && self.role.as_deref().is_none_or(|r| r == role)
            && self.input_contains.as_deref().is_none_or(|needle| {
                needle.is_empty() || step.archive.windows(needle.len()).any(|w| w == needle)
            })
            && self
                .env_contains
                .as_deref()
                .is_none_or(|needle| step.env.iter().any(|e| e.contains(needle)))
    }
}

/// What a matching step does.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes `output` (live, in order), then exits with `exit_code`.
    Exit {
        output: Vec<(OutputStream, String)>,
        exit_code: i32,
        /// `/work` afterwards, when the step asked for it (a compile stage).
        archive: Option<Vec<u8>>,
    },
    /// Writes `output`, then runs until the job is removed or its wall-clock
    /// limit passes (then: a time-limit result, as a real sandbox gives).
    Hang { output: Vec<(OutputStream, String)> },
    /// Killed by the kernel for memory.
    OutOfMemory,
    /// The platform fails while running the step.
    Fail(String),
    /// The sandbox cannot start.
    NoStart(String),
}

impl Reply {
    /// Prints `stdout` and exits 0.
    pub fn ok(stdout: &str) -> Reply {
        Reply::Exit {
            output: vec![(OutputStream::Stdout, stdout.to_owned())],
            exit_code: 0,
            archive: None,
        }
    }
}

/// One thing the runner asked of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Open {
        job: String,
    },
    Start {
        job: String,
        role: String,
        image: String,
    },
    Step {
        job: String,
        role: String,
        argv: Vec<String>,
    },
    Stop {
        job: String,
        role: String,
    },
    Close {
        job: String,
    },
    Remove {
        job: String,
    },
    Collect,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<(When, Reply)>,
    journal: Vec<Call>,
    open: HashSet<String>,
    removed: HashSet<String>,
    steps_started: u64,
    /// Each opened job's egress grant, in order.
    egress: Vec<(String, Option<String>)>,
}

/// The scripted backend. Unmatched steps print nothing and exit 0.
#[derive(Debug, Default)]
pub struct ScriptedBackend {
    state: Mutex<State>,
    changed: Notify,
    /// Time each step takes before its reply (keeps concurrency visible).
    pub step_delay: Mutex<Duration>,
    stats: BackendStats,
}

impl ScriptedBackend {
    pub fn new() -> Arc<ScriptedBackend> {
        Arc::new(ScriptedBackend::default())
    }

    /// Adds a rule; earlier rules win.
    pub fn on(&self, when: When, reply: Reply) -> &Self {
        self.state
            .lock()
            .expect("fake lock")
            .rules
            .push((when, reply));
        self
    }

    /// Everything asked so far, in order.
    pub fn journal(&self) -> Vec<Call> {
        self.state.lock().expect("fake lock").journal.clone()
    }

    /// Jobs opened and neither closed nor removed: what a real platform
    /// would still hold (containers, namespaces).
    pub fn open_jobs(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .state
            .lock()
            .expect("fake lock")
            .open
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The egress grant each job was opened with, in order: what network
    /// a real platform would have given it.
    pub fn egress_of_opened(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().expect("fake lock").egress.clone()
    }

    /// Steps that started so far.
    pub fn steps_started(&self) -> u64 {
        self.state.lock().expect("fake lock").steps_started
    }

    /// Waits until `n` steps have started (for tests that act mid-run).
    pub async fn until_steps_started(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let changed = self.changed.notified();
            if self.steps_started() >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{n} steps never started");
            let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
        }
    }

    fn record(&self, call: Call) {
        self.state.lock().expect("fake lock").journal.push(call);
        self.changed.notify_waiters();
    }

    fn reply_for(&self, role: &str, step: &Step<'_>) -> Reply {
        let st = self.state.lock().expect("fake lock");
        st.rules
            .iter()
            .find(|(w, _)| w.matches(role, step))
            .map(|(_, r)| r.clone())
            .unwrap_or(Reply::Exit {
                output: vec![],
                exit_code: 0,
                archive: None,
            })
    }

    fn is_removed(&self, job: &str) -> bool {
        self.state.lock().expect("fake lock").removed.contains(job)
    }
}

fn result(
    output: &[(OutputStream, String)],
    exit_code: Option<i32>,
    limit: Option<LimitHit>,
    started: Instant,
    limits: &StageLimits,
) -> StageResult {
    let pick = |s: OutputStream| -> String {
        output
            .iter()
            .filter(|(o, _)| *o == s)
            .map(|(_, t)| t.as_str())
            .collect()
    };
    let mut order = OutputOrder::default();
    for (stream, text) in output {
        order.push(*stream, text.len());
    }
    StageResult {
        stdout: pick(OutputStream::Stdout),
        stderr: pick(OutputStream::Stderr),
        order,
        stdout_truncated: false,
        stderr_truncated: false,
        exit_code,
        signal: exit_code.is_none().then(|| "SIGKILL".to_owned()),
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: 1,
        memory_peak_bytes: 4 << 20,
        limit,
        message: match limit {
            Some(LimitHit::WallTime) => Some(format!(
                "stopped after the wall-clock limit of {} ms",
                limits.wall_time_ms
            )),
            Some(LimitHit::Memory) => Some(format!(
                "the kernel killed a process: the container reached its memory limit of {} MiB",
                limits.memory_bytes >> 20
            )),
            _ => None,
        },
    }
}

#[async_trait::async_trait]
impl JobBackend for ScriptedBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn inspect_image(&self, _image: &str) -> Result<ImageCheck, BackendError> {
        Ok(ImageCheck::Present(BTreeMap::from([(
            crate::sandbox::PROTOCOL_LABEL.to_owned(),
            super::protocol::PROTOCOL_VERSION.to_owned(),
        )])))
    }

    fn stats(&self) -> &BackendStats {
        &self.stats
    }

    async fn open_job(&self, job: &JobSpec) -> Result<JobScope, BackendError> {
        self.record(Call::Open {
            job: job.id.clone(),
        });
        let mut st = self.state.lock().expect("fake lock");
        st.open.insert(job.id.clone());
        st.removed.remove(&job.id);
        st.egress.push((job.id.clone(), job.egress.clone()));
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
        self.record(Call::Start {
            job: scope.id().to_owned(),
            role: sandbox.role.clone(),
            image: sandbox.image.clone(),
        });
        let refusal =
            self.state
                .lock()
                .expect("fake lock")
                .rules
                .iter()
                .find_map(|(w, r)| match r {
                    Reply::NoStart(why) if w.role.as_deref().is_none_or(|x| x == sandbox.role) => {
                        Some(why.clone())
                    }
                    _ => None,
                });
        if let Some(reason) = refusal {
            return Err(BackendError::StartFailed {
                job: scope.id().to_owned(),
                sandbox: sandbox.role.clone(),
                reason,
            });
        }
        Ok(SandboxHandle::new(
            scope.id(),
            &sandbox.role,
            format!("{}/{}", scope.id(), sandbox.role),
            20000,
            super::Attachment::detached(),
            None,
            None,
        ))
    }

    async fn run_step(
        &self,
        sandbox: &mut SandboxHandle,
        step: &Step<'_>,
        limits: &StageLimits,
        output: Option<&OutputSink>,
    ) -> Result<StepOutcome, BackendError> {
        self.record(Call::Step {
            job: sandbox.job.clone(),
            role: sandbox.role.clone(),
            argv: step.argv.to_vec(),
        });
        self.state.lock().expect("fake lock").steps_started += 1;
        self.changed.notify_waiters();
        let started = Instant::now();
        let delay = *self.step_delay.lock().expect("fake lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let send = |chunks: &[(OutputStream, String)]| {
            if let Some(sink) = output {
                for (s, t) in chunks {
                    let _ = sink.send((*s, t.clone()));
                }
            }
        };
        match self.reply_for(&sandbox.role, step) {
            Reply::Exit {
                output: chunks,
                exit_code,
                archive,
            } => {
                send(&chunks);
                Ok(StepOutcome {
                    result: result(&chunks, Some(exit_code), None, started, limits),
                    archive: (step.collect_max > 0 && exit_code == 0)
                        .then(|| archive.unwrap_or_default()),
                })
            }
            Reply::Hang { output: chunks } => {
                send(&chunks);
                let deadline = started + Duration::from_millis(step.wall_ms);
                loop {
                    let changed = self.changed.notified();
                    if self.is_removed(&sandbox.job) {
                        return Err(BackendError::Call {
                            job: sandbox.job.clone(),
                            action: "running a step".into(),
                            message: "the job was removed while the step ran".into(),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Ok(StepOutcome {
                            result: result(
                                &chunks,
                                None,
                                Some(LimitHit::WallTime),
                                started,
                                limits,
                            ),
                            archive: None,
                        });
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
                }
            }
            Reply::OutOfMemory => Ok(StepOutcome {
                result: result(&[], None, Some(LimitHit::Memory), started, limits),
                archive: None,
            }),
            Reply::Fail(message) => Err(BackendError::Call {
                job: sandbox.job.clone(),
                action: "running a step".into(),
                message,
            }),
            Reply::NoStart(reason) => Err(BackendError::StartFailed {
                job: sandbox.job.clone(),
                sandbox: sandbox.role.clone(),
                reason,
            }),
        }
    }

    async fn stop_sandbox(&self, sandbox: SandboxHandle) -> Result<(), BackendError> {
        self.record(Call::Stop {
            job: sandbox.job.clone(),
            role: sandbox.role.clone(),
        });
        Ok(())
    }

    async fn close_job(&self, scope: JobScope) -> Result<(), BackendError> {
        self.record(Call::Close {
            job: scope.id().to_owned(),
        });
        self.state
            .lock()
            .expect("fake lock")
            .open
            .remove(scope.id());
        Ok(())
    }

    async fn remove_job(&self, job_id: &str) -> Result<(), BackendError> {
        self.record(Call::Remove {
            job: job_id.to_owned(),
        });
        let mut st = self.state.lock().expect("fake lock");
        st.open.remove(job_id);
        st.removed.insert(job_id.to_owned());
        drop(st);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn collect_orphans(
        &self,
        _scope: OrphanScope,
        _dry_run: bool,
    ) -> Result<CollectReport, BackendError> {
        self.record(Call::Collect);
        Ok(CollectReport::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::protocol::ArchiveKind;
    use crate::backend::{JobKind, Resources, SeccompProfile};

    fn job() -> JobSpec {
        JobSpec {
            id: "j1".into(),
            kind: JobKind::Submission,
            tenant: None,
            egress: None,
            lifetime: Duration::from_secs(60),
            largest: Resources::default(),
        }
    }

    fn sandbox(role: &str) -> SandboxSpec {
        SandboxSpec {
            role: role.into(),
            image: "img".into(),
            memory_bytes: 64 << 20,
            nano_cpus: 1,
            pids: 8,
            scratch: vec![],
            shm_bytes: 0,
            nofile: 8,
            seccomp: SeccompProfile::EngineDefault,
            labels: Default::default(),
        }
    }

    fn limits() -> StageLimits {
        StageLimits {
            wall_time_ms: 200,
            cpu_time_ms: 200,
            memory_bytes: 64 << 20,
            pids: 8,
            stdout_max_bytes: 100,
            stderr_max_bytes: 100,
        }
    }

    fn step<'a>(argv: &'a [String], archive: &'a [u8]) -> Step<'a> {
        Step {
            argv,
            env: &[],
            cwd: "/work",
            wall_ms: 200,
            cpu_ms: 200,
            stdout_max: 100,
            stderr_max: 100,
            fsize_max: 100,
            nofile: 8,
            collect_max: 0,
            archive,
            archive_kind: ArchiveKind::Files,
            tmp_files: &[],
            stdin: b"",
        }
    }

    #[tokio::test]
    async fn rules_pick_replies_and_the_journal_records_calls() {
        let b = ScriptedBackend::new();
        b.on(When::input(b"print(42)"), Reply::ok("42\n")).on(
            When::program("gcc"),
            Reply::Exit {
                output: vec![(OutputStream::Stderr, "error: x\n".into())],
                exit_code: 1,
                archive: None,
            },
        );
        let scope = b.open_job(&job()).await.unwrap();
        let mut sb = b.start_sandbox(&scope, &sandbox("run")).await.unwrap();
        let argv = ["python3".to_string()];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = b
            .run_step(
                &mut sb,
                &step(&argv, b"..print(42).."),
                &limits(),
                Some(&tx),
            )
            .await
            .unwrap();
        assert_eq!(out.result.stdout, "42\n");
        assert_eq!(rx.recv().await, Some((OutputStream::Stdout, "42\n".into())));
        let gcc = ["gcc".to_string()];
        let out = b
            .run_step(&mut sb, &step(&gcc, b""), &limits(), None)
            .await
            .unwrap();
        assert_eq!(out.result.exit_code, Some(1));
        assert_eq!(out.result.stderr, "error: x\n");
        assert_eq!(b.open_jobs(), ["j1"]);
        b.stop_sandbox(sb).await.unwrap();
        b.close_job(scope).await.unwrap();
        assert!(b.open_jobs().is_empty());
        assert_eq!(b.journal().len(), 6);
    }

    #[tokio::test]
    async fn a_hanging_step_ends_at_its_limit_or_when_its_job_is_removed() {
        let b = ScriptedBackend::new();
        b.on(When::default(), Reply::Hang { output: vec![] });
        let scope = b.open_job(&job()).await.unwrap();
        let mut sb = b.start_sandbox(&scope, &sandbox("run")).await.unwrap();
        let argv = ["sleep".to_string()];
        let out = b
            .run_step(&mut sb, &step(&argv, b""), &limits(), None)
            .await
            .unwrap();
        assert_eq!(out.result.limit, Some(LimitHit::WallTime));

        let b2 = Arc::clone(&b);
        let remover = tokio::spawn(async move {
            b2.until_steps_started(2).await;
            b2.remove_job("j1").await.unwrap();
        });
        let mut long = step(&argv, b"");
        long.wall_ms = 60_000;
        let err = b
            .run_step(&mut sb, &long, &limits(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
        remover.await.unwrap();
        assert!(b.open_jobs().is_empty());
    }
}
