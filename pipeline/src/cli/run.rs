//! `pipeline run`: build → push → sbom → scan → sign → attest for one image,
//! with a summary of each step, for CI. The flow is library code
//! ([`pipeline::flow`]); this file turns arguments into a request and prints
//! the report. Nothing is signed unless the scan passes the policy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pipeline::flow::{FlowFailure, RunPlan, RunReport, RunRequest};
use pipeline::scan::GrypeOptions;

use super::Failure;
use super::registry::RegistryArgs;
use super::sign::load_signer;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub what: super::build::BuildFlags,
    /// Private key to sign and attest with (password from COSIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Scan policy.
    #[arg(long, default_value = "policies/scan.yaml", value_name = "FILE")]
    pub policy: PathBuf,
    /// OpenVEX documents applied to the scan; repeatable.
    #[arg(long, value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// The grype binary (default: PIPELINE_GRYPE, else `grype` on PATH).
    #[arg(long, value_name = "PATH")]
    pub grype: Option<PathBuf>,
    /// Where the SBOM, scan reports (JSON, SARIF) and provenance are written.
    #[arg(long, default_value = "pipeline-out", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let request = RunRequest {
        build: args.what.request()?,
        signer: Arc::new(load_signer(&args.key)?),
        policy: args.policy.clone(),
        vex: args.vex.clone(),
        grype: GrypeOptions {
            program: args
                .grype
                .clone()
                .unwrap_or_else(pipeline::scan::grype::default_program),
            ..Default::default()
        },
        output_dir: args.output_dir.clone(),
        insecure_registries: args.registry.insecure(),
    };
    // Inputs are checked before the engine is needed, and before a build.
    let plan = RunPlan::validate(request)?;
    let docker = super::connect().await?;
    let progress = |line: &str| eprintln!("{line}");
    match plan.execute(&docker, &progress).await {
        Ok(report) => {
            print_summary(&report, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let FlowFailure { report, error } = *failure;
            print_summary(&report, args.json);
            Err(error.into())
        }
    }
}

pub fn print_summary(report: &RunReport, json: bool) {
    if json {
        let rows: Vec<_> = report
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.step.name(),
                    "seconds": (s.seconds * 100.0).round() / 100.0,
                    "outcome": s.outcome,
                })
            })
            .collect();
        let finished = report.steps.iter().all(|s| s.ok);
        let image = report.image.as_deref().filter(|_| finished);
        println!("{}", serde_json::json!({"image": image, "steps": rows}));
        return;
    }
    println!("{:<8} {:>8}  outcome", "step", "seconds");
    for s in &report.steps {
        println!("{:<8} {:>8.2}  {}", s.step.name(), s.seconds, s.outcome);
    }
    if let Some(image) = report.image.as_deref()
        && report.steps.iter().all(|s| s.ok)
    {
        println!("image: {image}");
    }
}
