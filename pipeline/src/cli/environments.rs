//! `pipeline environments`: what runs where (from the local state), with
//! each environment's target and recent history; `--reconcile ENV`
//! resolves a deploy a dead deployer left half-done.

use std::process::ExitCode;

use pipeline::release::Releaser;

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
        match releaser.reconcile(name, &progress).await? {
            Some(r) => eprintln!(
                "{name}: {} was left half-done; live now: {}",
                r.pending,
                r.live.as_deref().unwrap_or("nothing")
            ),
            None => eprintln!("{name}: nothing to reconcile"),
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::Value::Array(views(&releaser, args.history)?)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for env in releaser.policy().environments() {
        let state = releaser.state().read(&env.name)?;
        println!("{} — {}", env.name, env.target.describe());
        match &state.live {
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
        if let Some(p) = &state.pending {
            println!(
                "  HALF-DONE: the deploy of {} started {} by pid {} on {} did not finish; run with --reconcile {}",
                p.image, p.started, p.pid, p.host, env.name
            );
        }
        let skip = state.history.len().saturating_sub(args.history);
        for e in &state.history[skip..] {
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

/// Each environment with its target, live release, pending deploy and
/// last `history` events.
fn views(releaser: &Releaser, history: usize) -> Result<Vec<serde_json::Value>, Failure> {
    let mut out = Vec::new();
    for env in releaser.policy().environments() {
        let state = releaser.state().read(&env.name)?;
        let skip = state.history.len().saturating_sub(history);
        out.push(serde_json::json!({
            "name": env.name,
            "target": env.target.describe(),
            "approvals": env.approvals,
            "approver_role": env.approver_role,
            "automatic": env.is_automatic(),
            "live": state.live,
            "pending": state.pending,
            "history": &state.history[skip..],
        }));
    }
    Ok(out)
}
