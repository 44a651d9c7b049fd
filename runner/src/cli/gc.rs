//! `runner gc`: collect sandbox containers nobody will remove.

use std::process::ExitCode;

use runner::gc::{Scope, collect};

use super::{Failure, infra};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Remove every sandbox container, including those of running jobs.
    #[arg(long)]
    all: bool,
    /// Only list what would be removed.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: GcArgs) -> Result<ExitCode, Failure> {
    let engine = super::connect().await?;
    let scope = if args.all { Scope::All } else { Scope::Orphans };
    let report = collect(&engine, scope, args.dry_run).await.map_err(infra)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for id in &report.removed {
        println!("{verb} {}", runner::engine::docker::short_id(id));
    }
    println!(
        "{verb} {} container(s); kept {} that belong to running jobs",
        report.removed.len(),
        report.kept
    );
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (id, e) in &report.failed {
        eprintln!(
            "runner: could not remove {}: {e}",
            runner::engine::docker::short_id(id)
        );
    }
    Err(infra(anyhow::anyhow!(
        "{} container(s) could not be removed",
        report.failed.len()
    )))
}
