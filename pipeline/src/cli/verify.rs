//! `pipeline verify`: the image's signature, the digest it claims, each
//! required attestation, and that the scan it carries passes the current
//! policy.
//!
//! Exit codes beyond the common ones: 10 unsigned, 11 signed with another
//! key, 12 tampered signature, payload or attestation, 13 the signature or an
//! attestation is for another digest, 14 a required attestation is missing,
//! 15 the scan attestation fails the current policy.

use std::path::PathBuf;
use std::process::ExitCode;

use pipeline::cosign::verify::{self, Verified, VerifyError};
use pipeline::cosign::{PredicateKind, keys};
use pipeline::reference::Reference;

use super::registry::RegistryArgs;
use super::{Failure, infra};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The image: REPO@sha256:..., or REPO:TAG (resolved to the digest it points to now).
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// The public key (PEM) signatures must verify with.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Attestations that must be present, comma-separated: cyclonedx, vuln, slsaprovenance.
    #[arg(long, value_delimiter = ',', value_parser = PredicateKind::parse, value_name = "TYPES")]
    pub require: Vec<PredicateKind>,
    /// Scan policy the vuln attestation is re-evaluated against.
    #[arg(long, default_value = "policies/scan.yaml", value_name = "FILE")]
    pub policy: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let reference = Reference::parse(&args.image)?;
    let key = keys::read_public(&args.key)?;
    let policy = if args.require.contains(&PredicateKind::Vuln) {
        Some(pipeline::scan::ScanPolicy::load(&args.policy)?)
    } else {
        None
    };
    let client = args.registry.client(&reference)?;
    let required = args.require.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        verify::verify_reference(&client, &reference, &key, &required, policy.as_ref())
    })
    .await
    .map_err(infra)?;
    match outcome {
        Ok(v) => {
            print_verified(&args, &v);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(refused(&args, e)),
    }
}

fn print_verified(args: &VerifyArgs, v: &Verified) {
    if args.json {
        let kinds: Vec<&str> = v.attestations.iter().map(|k| k.name()).collect();
        println!(
            "{}",
            serde_json::json!({"verified": true, "image": args.image, "digest": v.digest, "signatures": v.signatures, "attestations": kinds})
        );
        return;
    }
    println!(
        "verified {}@{}",
        args.image.split('@').next().unwrap_or(""),
        v.digest
    );
    println!("  signature: {} valid with the given key", v.signatures);
    for k in &v.attestations {
        let scan = if *k == PredicateKind::Vuln {
            ", scan passes the current policy"
        } else {
            ""
        };
        println!("  attestation: {} valid{scan}", k.name());
    }
}

/// A verification that did not pass: its own exit code (10-15), or the
/// registry's failure as usage or infrastructure.
fn refused(args: &VerifyArgs, e: VerifyError) -> Failure {
    match e.exit_code() {
        Some(code) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "image": args.image, "reason": e.to_string(), "exit_code": code})
                );
            }
            Failure {
                code,
                error: e.into(),
            }
        }
        None => match e {
            VerifyError::Registry(r) => r.into(),
            other => infra(other),
        },
    }
}
