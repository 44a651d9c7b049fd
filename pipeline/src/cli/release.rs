//! `pipeline release`: a commit given by hand through the whole supply
//! chain (built from a temporary clone, tagged with its SHA, pushed,
//! described, scanned, signed, attested), then promoted into the automatic
//! environment when the commit is on one of its branches.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pipeline::build;
use pipeline::release::build::{CommitBuildRequest, CommitRelease, ReleaseError, release_commit};
use pipeline::scan::GrypeOptions;

use super::Failure;
use super::environments_args::{EnvironmentArgs, requester};
use super::sign::load_signer;

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The git repository (its work tree is not touched: the commit is
    /// checked out in a temporary clone).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// The commit: a SHA, or a branch or tag name (resolved once).
    #[arg(long, default_value = "HEAD", value_name = "REV")]
    pub commit: String,
    /// The build context, relative to the repository's top directory.
    #[arg(long, default_value = ".", value_name = "PATH")]
    pub context: PathBuf,
    /// The Dockerfile, relative to the context.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Repository to push to, without tag: the tag is the commit SHA.
    #[arg(long, value_name = "REPO")]
    pub image: String,
    /// A build argument, KEY=VALUE (or KEY, taken from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = build::parse_build_arg)]
    pub build_args: Vec<(String, String)>,
    /// Private key to sign and attest with (password from COSIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The scan policy of the build's gate.
    #[arg(long, default_value = "policies/scan.yaml", value_name = "FILE")]
    pub scan_policy: PathBuf,
    /// OpenVEX documents applied to the scan; repeatable.
    #[arg(long, value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// The grype binary (default: PIPELINE_GRYPE, else `grype` on PATH).
    #[arg(long, value_name = "PATH")]
    pub grype: Option<PathBuf>,
    /// Where the SBOM, scan reports and provenance are written.
    #[arg(long, default_value = "pipeline-out", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Build, sign and attest only; do not promote.
    #[arg(long)]
    pub no_promote: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub env: EnvironmentArgs,
}

pub async fn run(args: ReleaseArgs) -> Result<ExitCode, Failure> {
    // The policy is checked before minutes of building.
    let releaser = args.env.releaser()?;
    let request = CommitBuildRequest {
        repository: args.repo.clone(),
        source: None,
        commit: args.commit.clone(),
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        image: args.image.clone(),
        build_args: args.build_args.clone(),
        signer: Arc::new(load_signer(&args.key)?),
        scan_policy: args.scan_policy.clone(),
        vex: args.vex.clone(),
        grype: GrypeOptions {
            program: args
                .grype
                .clone()
                .unwrap_or_else(pipeline::scan::grype::default_program),
            ..Default::default()
        },
        output_dir: args.output_dir.clone(),
        insecure_registries: args.env.registry.insecure(),
        source_date_epoch: super::source_date_epoch()?,
    };
    let docker = super::connect().await?;
    let progress = |line: &str| eprintln!("{line}");
    let outcome = if args.no_promote {
        pipeline::release::build_for_commit(request, &docker, &progress)
            .await
            .map(|build| CommitRelease {
                build,
                promotion: None,
                not_promoted: Some("--no-promote".into()),
            })
    } else {
        release_commit(&releaser, request.clone(), &docker, &requester(), &progress).await
    };
    match outcome {
        Ok(r) => {
            print_release(&r, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(ReleaseError::Flow(failure)) => {
            super::run::print_summary(&failure.report, args.json);
            Err(ReleaseError::Flow(failure).into())
        }
        Err(ReleaseError::Promotion { image, source }) => {
            super::promote::print_refusal(&source, args.json);
            eprintln!("pipeline: built {image}");
            Err((*source).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn print_release(r: &CommitRelease, json: bool) {
    if json {
        let out = serde_json::json!({
            "commit": r.build.commit,
            "tag": r.build.tag,
            "image": r.build.image.to_string(),
            "branches": r.build.branches,
            "promoted_to": r.promotion.as_ref().map(|p| &p.environment),
            "not_promoted": r.not_promoted,
        });
        println!("{out}");
        return;
    }
    super::run::print_summary(&r.build.report, false);
    println!("commit: {} (tag {})", r.build.commit, r.build.tag);
    match (&r.promotion, &r.not_promoted) {
        (Some(p), _) => super::promote::print_promotion(p, false),
        (None, Some(why)) => println!("not promoted: {why}"),
        (None, None) => {}
    }
}
