//! `runner gc`: collect sandboxes nobody will remove.

use std::process::ExitCode;

use runner::backend::OrphanScope;
use runner::backend::docker::client::short_id;
use runner::service::config::ConfigFile;

use super::{Context, Failure, Global, infra, usage};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Remove every sandbox container, including those of running jobs.
    #[arg(long)]
    all: bool,
    /// Only list what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// The server's configuration file: its `backend` decides what is
    /// collected (containers on Docker, job namespaces on Kubernetes).
    #[arg(long, env = "RUNNER_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

pub async fn run(global: &Global, args: GcArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::load(global)?;
    let config = match &args.config {
        Some(p) => ConfigFile::read(p).map_err(usage)?,
        None => ConfigFile::default(),
    }
    .validate()
    .map_err(usage)?;
    let backend = super::backend(&config.backend, &ctx.policy).await?;
    let scope = if args.all {
        OrphanScope::All
    } else {
        OrphanScope::Orphans
    };
    let report = backend
        .collect_orphans(scope, args.dry_run)
        .await
        .map_err(infra)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for id in &report.removed {
        println!("{verb} {}", short_id(id));
    }
    println!(
        "{verb} {} sandbox(es); kept {} that belong to running jobs",
        report.removed.len(),
        report.kept
    );
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (id, e) in &report.failed {
        eprintln!("runner: could not remove {}: {e}", short_id(id));
    }
    Err(infra(anyhow::anyhow!(
        "{} sandbox(es) could not be removed",
        report.failed.len()
    )))
}
