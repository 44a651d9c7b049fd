//! Command-line interface: arguments, and one small file per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use runner::backend::JobBackend;
use runner::backend::docker::DockerBackend;
use runner::backend::kubernetes::{KubernetesBackend, NamespacePolicy};
use runner::backend::uids::UidAllocator;
use runner::images::engine::DockerImages;
use runner::images::sources::ImageSources;
use runner::language::Catalog;
use runner::policy::SandboxPolicy;
use runner::service::config::BackendConfig;

mod admin;
mod audit;
mod exec;
mod gc;
mod images;
mod release;
mod serve;
mod summary;
mod workflow;

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INFRA: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Runs untrusted code in ephemeral, resource-limited, non-root sandboxes"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// Sandbox policy file (default: the policies/sandbox.toml built into runner).
    #[arg(long, global = true, env = "RUNNER_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Directory of sandbox image sources (default: the sandbox-images/ built into runner).
    #[arg(long, global = true, env = "RUNNER_IMAGES_DIR", value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// Log filter for diagnostics on stderr (error, warn, info, debug, or a tracing filter).
    #[arg(
        long,
        global = true,
        env = "RUNNER_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one submission in a sandbox and print its result.
    Exec(Box<exec::ExecArgs>),
    /// Build or list the sandbox images.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Remove sandbox containers left behind by a runner that crashed or was killed.
    Gc(gc::GcArgs),
    /// Serve the HTTP API (runs, Piston compatibility, metrics).
    Serve(Box<serve::ServeArgs>),
    /// Manage tenants and API keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run a repository's workflows (GitHub Actions' format), each job in
    /// its own sandbox.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Request, approve and follow promotions through a running server.
    Release(release::ReleaseArgs),
}

/// A failed command: its message and its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The user's to fix (exit 2).
    Usage(anyhow::Error),
    /// The machine's or the engine's (exit 3).
    Infra(anyhow::Error),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Infra(_) => EXIT_INFRA,
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Usage(e) | Failure::Infra(e) => e,
        }
    }
}

pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

pub fn infra(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Infra(e.into())
}

/// Commands log to stderr for people; `serve` logs JSON lines to stdout for
/// collectors, at `info` unless `--log` says otherwise.
pub fn init_logging(cli: &Cli) {
    let serve = matches!(cli.command, Command::Serve(_));
    let level = if serve && cli.global.log == "warn" {
        "info"
    } else {
        cli.global.log.as_str()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if serve {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
    }
}

/// What most commands need: the policy, the image sources and languages, and
/// the engine.
pub struct Context {
    pub policy: Arc<SandboxPolicy>,
    pub sources: ImageSources,
    pub catalog: Arc<Catalog>,
}

impl Context {
    pub fn load(global: &Global) -> Result<Context, Failure> {
        let policy = match &global.policy {
            Some(p) => SandboxPolicy::load(p),
            None => SandboxPolicy::embedded(),
        }
        .map_err(usage)?;
        let sources = match &global.images_dir {
            Some(d) => ImageSources::from_dir(d).map_err(usage)?,
            None => ImageSources::embedded(),
        };
        let catalog = Catalog::load(&sources).map_err(usage)?;
        Ok(Context {
            policy: Arc::new(policy),
            sources,
            catalog: Arc::new(catalog),
        })
    }
}

/// The uids sandboxes run as, leased from the policy's range.
pub fn uids(policy: &SandboxPolicy) -> Arc<UidAllocator> {
    Arc::new(UidAllocator::new(
        policy.container.uids,
        UidAllocator::default_dir(),
    ))
}

/// The Docker job backend (the embedded default).
pub async fn docker(policy: &SandboxPolicy) -> Result<Arc<DockerBackend>, Failure> {
    DockerBackend::connect(uids(policy))
        .await
        .map(Arc::new)
        .context("Docker is needed to run sandboxes")
        .map_err(infra)
}

/// The job backend the server configuration names.
pub async fn backend(
    config: &BackendConfig,
    policy: &SandboxPolicy,
) -> Result<Arc<dyn JobBackend>, Failure> {
    match config {
        BackendConfig::Docker => Ok(docker(policy).await?),
        BackendConfig::Kubernetes {
            kubeconfig,
            context,
            policy: namespace_policy,
        } => {
            let namespaces = match namespace_policy {
                Some(p) => NamespacePolicy::load(p),
                None => NamespacePolicy::embedded(),
            }
            .map_err(usage)?;
            let backend = KubernetesBackend::connect(
                kubeconfig.as_deref(),
                context.as_deref(),
                Arc::new(namespaces),
                uids(policy),
            )
            .await
            .context("the Kubernetes backend needs its cluster")
            .map_err(infra)?;
            Ok(Arc::new(backend))
        }
    }
}

/// The engine sandbox images are built with.
pub async fn images_engine() -> Result<DockerImages, Failure> {
    DockerImages::connect()
        .await
        .context("Docker is needed to build sandbox images")
        .map_err(infra)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Exec(args) => exec::run(&cli.global, *args).await,
        Command::Images(cmd) => images::run(&cli.global, cmd).await,
        Command::Gc(args) => gc::run(&cli.global, args).await,
        Command::Serve(args) => serve::run(&cli.global, *args).await,
        Command::Admin(cmd) => admin::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Workflow(cmd) => workflow::run(&cli.global, cmd).await,
        Command::Release(args) => release::run(args).await,
    }
}
