//! `runner workflow run`: a local repository's workflow, through the same
//! code the service runs pushes with (like `act`, but every job in its own
//! non-root, resource-limited sandbox with no network), each job's log live.
//!
//! Exit codes: 0 the run succeeded; 1 it failed (a job failed, timed out or
//! was cancelled); 2 usage (no such repository, commit, workflow or job;
//! errors in a workflow file); 3 infrastructure.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use runner::backend::OutputStream;
use runner::images::jobs::JobImages;
use runner::workflow::exec::prepare::checkout;
use runner::workflow::exec::{JobRecord, RunContext, RunObserver, State, StepRecord, run_plan};
use runner::workflow::plan::{Outcome, Plan};
use runner::workflow::policy::WorkflowPolicy;
use runner::workflow::source::GitSource;
use runner::workflow::trigger::Push;

use super::{Context, Failure, Global, infra, usage};

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Run a local repository's workflows at a commit, each job isolated.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The repository (a directory holding `.git`, or a bare repository).
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// The commit to run (default: HEAD).
    #[arg(long, value_name = "SHA")]
    commit: Option<String>,
    /// Only this workflow file (a path from the repository root, or a file
    /// name in the workflow directory).
    #[arg(long, value_name = "FILE")]
    workflow: Option<String>,
    /// Only this job (its id in the workflow; every matrix cell of it). Its
    /// `needs` are taken as succeeded.
    #[arg(long, value_name = "ID")]
    job: Option<String>,
    /// A secret for the workflow, its value read from the environment
    /// variable of that name (never from the command line). Repeatable.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// The server's workflow policy (default: policies/workflows.toml built
    /// into runner).
    #[arg(long, value_name = "FILE")]
    workflow_policy: Option<PathBuf>,
    /// Jobs running at once (default: 2).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
}

pub async fn run(global: &Global, cmd: WorkflowCommand) -> Result<ExitCode, Failure> {
    match cmd {
        WorkflowCommand::Run(args) => run_local(global, args).await,
    }
}

/// `NAME` → its value from the environment, each one asked for.
fn secrets(names: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    names
        .iter()
        .map(|n| match std::env::var(n) {
            Ok(v) => Ok((n.clone(), v)),
            Err(_) => Err(usage(anyhow!(
                "--secret {n}: the environment variable {n} is not set; export it with the secret's value"
            ))),
        })
        .collect()
}

/// Runs git in the user's repository to learn HEAD and its branch.
fn git_text(repo: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run_local(global: &Global, args: RunArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::load(global)?;
    let policy = match &args.workflow_policy {
        Some(p) => WorkflowPolicy::load(p),
        None => WorkflowPolicy::embedded(),
    }
    .map_err(usage)?;
    let secrets = secrets(&args.secrets)?;
    let repo = args
        .repo
        .canonicalize()
        .with_context(|| format!("--repo {}", args.repo.display()))
        .map_err(usage)?;
    let rev = args.commit.as_deref().unwrap_or("HEAD");
    let sha = git_text(
        &repo,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .ok_or_else(|| usage(anyhow!("{rev} is not a commit of {}", repo.display())))?;
    let git_ref = git_text(&repo, &["symbolic-ref", "-q", "HEAD"])
        .filter(|_| args.commit.is_none())
        .unwrap_or_else(|| "refs/heads/local".to_owned());
    let name = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repository".into());
    let push = Push {
        git_ref,
        sha: sha.clone(),
        repository: format!("local/{name}"),
        changed_paths: None,
    };
    let cache = std::env::temp_dir().join(format!("runner-git-cache-{}", nix_uid()));
    let source = GitSource::new(&cache, policy.source.clone()).map_err(infra)?;
    let images = JobImages::load(&ctx.sources).map_err(usage)?;
    let url = format!("file://{}", repo.display());
    let checkout = checkout(&source, &url, &push, &policy, &images)
        .await
        .map_err(usage)?;
    let plans = select(
        checkout.plans,
        args.workflow.as_deref(),
        args.job.as_deref(),
        &policy,
    )?;
    let backend: Arc<dyn runner::backend::JobBackend> = super::docker(&ctx.policy).await?;
    let archive = Arc::new(checkout.archive);
    let mut failed = false;
    for plan in plans {
        eprintln!(
            "runner: workflow {} ({}) at {}",
            plan.name,
            plan.workflow,
            &sha[..12]
        );
        let run_id = runner::sandbox::new_job_id()[..16].to_owned();
        let rctx = RunContext {
            backend: Arc::clone(&backend),
            sandbox_policy: Arc::clone(&ctx.policy),
            plan: Arc::new(plan),
            run_id,
            source: Arc::clone(&archive),
            secrets: Arc::new(secrets.clone()),
            tenant: None,
            egress: None,
            observer: Arc::new(Printer),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let run = run_plan(&rctx, stop_rx, args.concurrency);
        tokio::pin!(run);
        let record = tokio::select! {
            r = &mut run => r,
            () = super::interrupted() => {
                eprintln!("runner: interrupted; cancelling the run");
                let _ = stop_tx.send(true);
                run.await
            }
        };
        backend.settle().await;
        eprintln!("runner: {} {}", rctx.plan.name, record.state);
        for j in &record.jobs {
            eprintln!("  {:<40} {}", j.id, j.state);
        }
        failed |= record.state != State::Success;
        if record.state == State::Cancelled {
            return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// This user's id, for a private cache directory.
fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

/// The plans to run: the chosen workflow's (errors in it are usage
/// errors), narrowed to the chosen job.
fn select(
    plans: Vec<runner::workflow::plan::FilePlan>,
    workflow: Option<&str>,
    job: Option<&str>,
    policy: &WorkflowPolicy,
) -> Result<Vec<Plan>, Failure> {
    let wanted = |path: &str| {
        workflow.is_none_or(|w| path == w || path == format!("{}/{w}", policy.directory))
    };
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for p in plans {
        seen.push(p.path.clone());
        if !wanted(&p.path) {
            continue;
        }
        match p.result {
            Err(errors) => return Err(usage(anyhow!("{errors}"))),
            Ok(Outcome::Skipped(why)) if workflow.is_some() => {
                return Err(usage(anyhow!(
                    "{} does not run for this commit ({why:?}); check its `on.push` filters",
                    p.path
                )));
            }
            Ok(Outcome::Skipped(_)) => {}
            Ok(Outcome::Planned(mut plan)) => {
                if let Some(job) = job {
                    narrow(&mut plan, job)?;
                }
                out.push(plan);
            }
        }
    }
    if out.is_empty() {
        return Err(usage(anyhow!(
            "no workflow to run{} (workflow files: {})",
            workflow.map(|w| format!(" named {w}")).unwrap_or_default(),
            if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            }
        )));
    }
    Ok(out)
}

/// Keeps only `job`'s cells; what it needs is taken as done.
fn narrow(plan: &mut Plan, job: &str) -> Result<(), Failure> {
    let known: Vec<String> = plan.jobs.iter().map(|j| j.job_id.clone()).collect();
    plan.jobs.retain(|j| j.job_id == job);
    if plan.jobs.is_empty() {
        return Err(usage(anyhow!(
            "{} has no job {job:?}; its jobs: {}",
            plan.workflow,
            known.join(", ")
        )));
    }
    for j in &mut plan.jobs {
        j.needs.clear();
    }
    Ok(())
}

/// Prints each job's log live, lines prefixed with the job.
struct Printer;

impl RunObserver for Printer {
    fn job_state(&self, job: &str, _name: &str, state: State) {
        eprintln!("[{job}] {state}");
    }

    fn step_started(&self, job: &str, _index: i64, name: &str) {
        eprintln!("[{job}] ▶ {name}");
    }

    fn output(&self, job: &str, _index: i64, stream: OutputStream, text: &str) {
        let mut out = std::io::stdout().lock();
        for line in text.lines() {
            let _ = match stream {
                OutputStream::Stdout => writeln!(out, "[{job}] | {line}"),
                OutputStream::Stderr => writeln!(out, "[{job}] ! {line}"),
            };
        }
    }

    fn step_finished(&self, job: &str, step: &StepRecord) {
        eprintln!(
            "[{job}] {} {} ({} ms){}",
            if step.state == State::Success {
                "✓"
            } else {
                "✗"
            },
            step.name,
            step.duration_ms,
            step.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }

    fn job_finished(&self, job: &JobRecord) {
        eprintln!(
            "[{}] {}{}",
            job.id,
            job.state,
            job.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
}
