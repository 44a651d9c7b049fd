//! `pipeline attest`: a signed in-toto attestation about an image digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipeline::cosign::{PredicateKind, publish};

use super::registry::{RegistryArgs, by_digest};
use super::sign::load_signer;
use super::{Failure, infra, usage};

#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// The image, by digest: REPO@sha256:...
    #[arg(long, value_name = "REPO@DIGEST")]
    pub image: String,
    /// Private key in cosign's format; its password comes from COSIGN_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// cyclonedx (an SBOM), vuln (a Grype report, or cosign's vuln predicate) or slsaprovenance (SLSA v1).
    #[arg(long = "type", value_name = "TYPE", value_parser = PredicateKind::parse)]
    pub kind: PredicateKind,
    /// The predicate, a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Reads a predicate and checks it is of its kind; a raw Grype report is
/// wrapped into cosign's vuln predicate.
pub fn read_predicate(
    kind: PredicateKind,
    path: &std::path::Path,
) -> Result<serde_json::Value, Failure> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(usage)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))
        .map_err(usage)?;
    check_predicate(kind, value).map_err(|m| usage(anyhow::anyhow!("{}: {m}", path.display())))
}

pub fn check_predicate(
    kind: PredicateKind,
    value: serde_json::Value,
) -> Result<serde_json::Value, String> {
    match kind {
        PredicateKind::CycloneDx if value.get("bomFormat").and_then(|v| v.as_str()) == Some("CycloneDX") => Ok(value),
        PredicateKind::CycloneDx => Err("not a CycloneDX SBOM (no \"bomFormat\": \"CycloneDX\")".into()),
        PredicateKind::Vuln if value.pointer("/scanner/result").is_some() => Ok(value),
        PredicateKind::Vuln if value.get("matches").is_some() => Ok(vuln_predicate(value, None, None)),
        PredicateKind::Vuln => Err("neither a Grype JSON report (\"matches\") nor a vuln predicate (\"scanner\".\"result\")".into()),
        PredicateKind::SlsaProvenance if value.get("buildDefinition").is_some() && value.get("runDetails").is_some() => Ok(value),
        PredicateKind::SlsaProvenance => Err("not a SLSA v1 provenance predicate (buildDefinition, runDetails)".into()),
    }
}

/// cosign's vuln predicate around a Grype report.
pub fn vuln_predicate(
    report: serde_json::Value,
    started: Option<String>,
    finished: Option<String>,
) -> serde_json::Value {
    let version = report
        .pointer("/descriptor/version")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let db = report
        .pointer("/descriptor/db")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "invocation": { "parameters": null, "uri": "", "event_id": "", "builder.id": "" },
        "scanner": {
            "uri": format!("pkg:github/anchore/grype@{version}"),
            "version": version,
            "db": { "uri": "", "version": db.get("schemaVersion").map(ToString::to_string).unwrap_or_default() },
            "result": report,
        },
        "metadata": {
            "scanStartedOn": started.unwrap_or_else(|| now.clone()),
            "scanFinishedOn": finished.unwrap_or(now),
        },
    })
}

pub async fn run(args: AttestArgs) -> Result<ExitCode, Failure> {
    let (reference, digest) = by_digest(&args.image)?;
    let predicate = read_predicate(args.kind, &args.predicate)?;
    let signer = load_signer(&args.key)?;
    let client = args.registry.client(&reference)?;
    let kind = args.kind;
    let stored = tokio::task::spawn_blocking(move || {
        publish::attest_image(
            &client,
            &reference.name(),
            &digest,
            &signer,
            kind.uri(),
            predicate,
        )
    })
    .await
    .map_err(infra)?
    .map_err(|e| if e.is_usage() { usage(e) } else { infra(e) })?;
    eprintln!(
        "{} attestation stored under {}",
        args.kind.name(),
        stored.tag
    );
    println!("{}", stored.manifest_digest);
    Ok(ExitCode::SUCCESS)
}
