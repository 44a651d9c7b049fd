//! `pipeline attest`: a signed in-toto attestation about an image digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipeline::cosign::{PredicateKind, predicate, publish};

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
    predicate::check(kind, value)
        .with_context(|| path.display().to_string())
        .map_err(usage)
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
    .map_err(infra)??;
    eprintln!(
        "{} attestation stored under {}",
        args.kind.name(),
        stored.tag
    );
    println!("{}", stored.manifest_digest);
    Ok(ExitCode::SUCCESS)
}
