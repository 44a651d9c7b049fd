//! `pipeline environments`: what runs where (from the local state), with
//! each environment's target and recent history; `--reconcile ENV`
//! resolves a deploy a dead deployer left half-done.

use std::process::ExitCode;

use super::Failure;
use super::environments_args::EnvironmentArgs;

#[derive(Debug, clap::Args)]
pub struct EnvironmentsArgs {
    /// Resolve a half-done deploy to this environment first.
    #[arg(long, value_name = "NAME")]
    pub reconcile: Option<String>,
    /// History entries shown per environment.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub history: usize,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub env: EnvironmentArgs,
}

pub async fn run(args: EnvironmentsArgs) -> Result<ExitCode, Failure> {
    let releaser = args.env.releaser()?;
    if let Some(name) = &args.reconcile {
        let progress = |line: &str| eprintln!("{line}");
        let r = releaser.reconcile(name, &progress).await?;
        let live = r.live.as_deref().unwrap_or("nothing");
        match r.pending {
            Some(p) => eprintln!("{name}: {p} had been left half-done; live now: {live}"),
            None => eprintln!("{name}: nothing was half-done; live: {live}"),
        }
    }
    let views = releaser.environments(args.history)?;
    if args.json {
        let json = serde_json::to_string(&views).map_err(super::infra)?;
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    for v in &views {
        println!("{} — {}", v.name, v.target);
        match &v.live {
            Some(r) => println!(
                "  live: {} since {} (commit {}; {}; scan: {})",
                r.image,
                r.since,
                r.commit.as_deref().unwrap_or("?"),
                r.sbom.as_ref().map_or("no SBOM".to_owned(), |s| format!(
                    "{} components",
                    s.components
                )),
                r.scan.as_ref().map_or("none", |s| s.summary.as_str())
            ),
            None => println!("  live: nothing"),
        }
        if let Some(p) = &v.pending {
            println!(
                "  HALF-DONE: the deploy of {} started {} by pid {} on {} did not finish; run with --reconcile {}",
                p.image, p.started, p.pid, p.host, v.name
            );
        }
        for e in &v.history {
            let reason = e
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("  {} {:?} {}{reason}", e.at, e.kind, e.image);
        }
    }
    Ok(ExitCode::SUCCESS)
}
