//! `pipeline promote`: verify an image by digest for an environment and
//! deploy it there, in the direct form (this machine's Docker or the
//! environment's cluster, recorded in the local state directory). Only the
//! automatic environment can be reached this way: the others need
//! approvals, which the runner service records.

use std::process::ExitCode;

use pipeline::release::{PromotionError, PromotionReport, PromotionRequest};

use super::Failure;
use super::environments_args::{EnvironmentArgs, print_checks, requester};

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The image, by digest: REPO@sha256:... (a tag is refused).
    #[arg(long, value_name = "REPO@sha256:...")]
    pub image: String,
    /// The environment to deploy to (see `pipeline environments`).
    #[arg(long, value_name = "NAME")]
    pub environment: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub env: EnvironmentArgs,
}

pub async fn run(args: PromoteArgs) -> Result<ExitCode, Failure> {
    let releaser = args.env.releaser()?;
    let request = PromotionRequest {
        image: args.image.clone(),
        environment: args.environment.clone(),
        requested_by: requester(),
        approvals: Vec::new(),
    };
    let progress = |line: &str| eprintln!("{line}");
    match releaser.promote(request, &progress).await {
        Ok(report) => {
            print_promotion(&report, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print_refusal(&e, args.json);
            Err(e.into())
        }
    }
}

pub fn print_promotion(r: &PromotionReport, json: bool) {
    if json {
        let out = serde_json::json!({
            "promoted": true,
            "environment": r.environment,
            "image": r.image,
            "previous": r.previous,
            "commit": r.verification.commit,
            "verification": r.verification,
            "deploy_seconds": (r.deploy.seconds * 100.0).round() / 100.0,
            "reconciled": r.reconciled,
        });
        println!("{out}");
        return;
    }
    if let Some(rec) = &r.reconciled {
        println!(
            "reconciled first: {} had been left mid-deploy of {}; live: {}",
            rec.environment,
            rec.pending.as_deref().unwrap_or("?"),
            rec.live.as_deref().unwrap_or("nothing")
        );
    }
    print_checks(&r.verification);
    println!(
        "promoted {} to {} in {:.2} s (commit {}; before: {})",
        r.image,
        r.environment,
        r.deploy.seconds,
        r.verification.commit.as_deref().unwrap_or("?"),
        r.previous.as_deref().unwrap_or("nothing")
    );
}

/// A refusal with a report says which checks failed.
pub fn print_refusal(e: &PromotionError, json: bool) {
    let PromotionError::Rejected { report } = e else {
        if json {
            println!(
                "{}",
                serde_json::json!({"promoted": false, "reason": e.to_string()})
            );
        }
        return;
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"promoted": false, "reason": e.to_string(), "verification": report})
        );
    } else {
        print_checks(report);
    }
}
