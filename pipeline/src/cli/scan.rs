//! `pipeline scan`: runs Grype on an SBOM (or reads a Grype report made
//! elsewhere) and applies the scan policy gate (`policies/scan.yaml`, see
//! [`pipeline::scan`] for its schema).
//!
//! Standard output gets the table of failing, ignored and suppressed
//! findings, expired ignore rules and the verdict line; `--json` and
//! `--sarif` files are written whatever the verdict, so a failing gate can
//! still be uploaded to code scanning.
//!
//! Exit codes:
//! - 0: the gate passed (nothing at or above `fail_on` remains);
//! - 2: usage or input error: bad arguments, an unreadable or malformed
//!   policy, Grype report, VEX document, or SBOM path;
//! - 3: Grype ran but failed: a non-zero exit (its stderr tail is in the
//!   message; we never pass `--fail-on`, so its exit 2 is a failure too),
//!   output that is not a report, or past `--grype-timeout`;
//! - 5: the gate failed: a finding at or above `fail_on` remains;
//! - 6: Grype is not installed (or not at `--grype`/`PIPELINE_GRYPE`); the
//!   message says how to install it, or to pass `--grype-report`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use pipeline::scan::sarif::SarifContext;
use pipeline::scan::{
    self, GrypeOptions, MAX_REPORT_BYTES, ScanError, ScanPolicy, VexDocument, evaluate_for_image,
};

use super::{Failure, infra, usage};

const DEFAULT_POLICY: &str = "policies/scan.yaml";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["sbom", "grype_report"])))]
pub struct ScanArgs {
    /// The SBOM to scan: runs `grype sbom:FILE -o json`.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// Evaluate a Grype JSON report (`grype ... -o json`) made elsewhere
    /// instead of running Grype; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub grype_report: Option<PathBuf>,
    /// The scan policy [default: policies/scan.yaml].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// An OpenVEX document to apply besides the policy's (repeatable).
    #[arg(long = "vex", value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// The scanned image's manifest digest, so that VEX statements about
    /// the image (pkg:oci/...@sha256:...) apply to an SBOM scan.
    #[arg(long, value_name = "sha256:HEX", value_parser = pipeline::digest::parse)]
    pub image_digest: Option<String>,
    /// Write the evaluation as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write SARIF 2.1.0 (for code-scanning upload) to FILE.
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
    /// The Dockerfile the image was built from: SARIF attaches findings to
    /// it (code scanning shows only results located in a repository file).
    #[arg(long, value_name = "FILE", requires = "sarif")]
    pub dockerfile: Option<PathBuf>,
    /// The Grype executable [default: $PIPELINE_GRYPE, else grype on PATH].
    #[arg(long, value_name = "PATH", conflicts_with = "grype_report")]
    pub grype: Option<PathBuf>,
    /// Grype's database directory (GRYPE_DB_CACHE_DIR).
    #[arg(long, value_name = "DIR", conflicts_with = "grype_report")]
    pub db_cache_dir: Option<PathBuf>,
    /// Whether Grype may download a newer database (GRYPE_DB_AUTO_UPDATE).
    #[arg(long, value_name = "true|false", conflicts_with = "grype_report")]
    pub db_auto_update: Option<bool>,
    /// The oldest database Grype accepts, in hours
    /// (GRYPE_DB_MAX_ALLOWED_BUILT_AGE; Grype's default is 120).
    #[arg(long, value_name = "HOURS", conflicts_with_all = ["no_db_age_check", "grype_report"],
          value_parser = clap::value_parser!(u64).range(1..))]
    pub db_max_age: Option<u64>,
    /// Accept a database of any age (GRYPE_DB_VALIDATE_AGE=false), e.g. one
    /// imported for an offline run.
    #[arg(long, conflicts_with = "grype_report")]
    pub no_db_age_check: bool,
    /// Stop Grype if it runs longer than this (e.g. a stuck database download).
    #[arg(long, value_name = "SECONDS", conflicts_with = "grype_report",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grype_timeout: Option<u64>,
}

pub async fn run(args: ScanArgs) -> Result<ExitCode, Failure> {
    // Inputs are checked before Grype runs: a typo in the policy should not
    // cost a scan.
    let policy = load_policy(args.policy.as_deref())?;
    let extra_vex = args
        .vex
        .iter()
        .map(|p| scan::load_vex(p))
        .collect::<Result<Vec<VexDocument>, _>>()
        .map_err(usage)?;

    let report = match (&args.sbom, &args.grype_report) {
        (Some(sbom), _) => {
            let opts = GrypeOptions {
                program: args
                    .grype
                    .clone()
                    .unwrap_or_else(scan::grype::default_program),
                db_cache_dir: args.db_cache_dir.clone(),
                db_auto_update: args.db_auto_update,
                db_max_age_hours: args.db_max_age,
                no_db_age_check: args.no_db_age_check,
                timeout: args.grype_timeout.map(Duration::from_secs),
                max_report_bytes: MAX_REPORT_BYTES,
            };
            eprintln!(
                "pipeline: running {} sbom:{} -o json",
                opts.program.display(),
                sbom.display()
            );
            let sbom_path = sbom.clone();
            let bytes = tokio::task::spawn_blocking(move || scan::run_grype(&sbom_path, &opts))
                .await
                .context("the task running grype failed")
                .map_err(infra)??;
            // Grype exited 0 but wrote something that is not a report: its fault.
            let origin = format!("from grype for sbom:{}", sbom.display());
            scan::parse_report(&bytes, &origin).map_err(infra)?
        }
        (None, Some(path)) => {
            let (bytes, origin) = read_report(path)?;
            scan::parse_report(&bytes, &origin).map_err(usage)?
        }
        (None, None) => return Err(usage(anyhow!("give --sbom FILE or --grype-report FILE"))),
    };

    let today = time::OffsetDateTime::now_utc().date();
    let digests: Vec<String> = args.image_digest.into_iter().collect();
    let evaluation = evaluate_for_image(&report, &policy, &extra_vex, today, &digests);

    if let Some(path) = &args.json {
        write_json(path, &evaluation.to_json())?;
    }
    if let Some(path) = &args.sarif {
        let context = sarif_context(args.policy.as_deref(), args.dockerfile.clone());
        write_json(path, &evaluation.to_sarif(&context))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(evaluation.table().as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the result to standard output")
        .map_err(infra)?;
    Ok(if evaluation.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_POLICY_FAILED)
    })
}

fn load_policy(path: Option<&Path>) -> Result<ScanPolicy, Failure> {
    let given = path.is_some();
    let path = path.unwrap_or(Path::new(DEFAULT_POLICY));
    ScanPolicy::load(path).map_err(|e| match &e {
        ScanError::Read { source, .. } if !given && source.kind() == std::io::ErrorKind::NotFound => {
            usage(anyhow!(
                "no scan policy at {DEFAULT_POLICY} (the default): run from the repository root or pass --policy FILE"
            ))
        }
        _ => usage(e),
    })
}

/// SARIF paths are relative to the repository the command runs in (where
/// code scanning's upload runs), else to the one holding the policy.
fn sarif_context(policy: Option<&Path>, dockerfile: Option<PathBuf>) -> SarifContext {
    let mut context = SarifContext::discover(Path::new("."));
    if context.repository_root.is_none() {
        let policy = policy.unwrap_or(Path::new(DEFAULT_POLICY));
        if let Some(dir) = policy.parent() {
            context = SarifContext::discover(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            });
        }
    }
    context.dockerfile = dockerfile;
    context
}

/// A report file, or standard input for `-`, with its name for messages.
fn read_report(path: &Path) -> Result<(Vec<u8>, String), Failure> {
    if path == Path::new("-") {
        let bytes = scan::read::read_limited(std::io::stdin().lock(), MAX_REPORT_BYTES)
            .context("cannot read the Grype report from standard input")
            .map_err(usage)?
            .ok_or_else(|| {
                usage(anyhow!(
                    "the Grype report on standard input is larger than {MAX_REPORT_BYTES} bytes"
                ))
            })?;
        return Ok((bytes, "on standard input".to_owned()));
    }
    let bytes = scan::read::read_bounded(path, MAX_REPORT_BYTES, "Grype report").map_err(usage)?;
    Ok((bytes, path.display().to_string()))
}

/// Writes a JSON result (atomically, see [`pipeline::output::write_atomically`]).
fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), Failure> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .context("cannot serialize the result")
        .map_err(infra)?;
    bytes.push(b'\n');
    Ok(pipeline::output::write_atomically(path, &bytes)?)
}
