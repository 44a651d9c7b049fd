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

use pipeline::cosign::verify::{self, VerifyError};
use pipeline::cosign::{PredicateKind, keys};
use pipeline::reference::Reference;

use super::registry::RegistryArgs;
use super::{Failure, infra, usage};

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
    let reference = Reference::parse(&args.image).map_err(usage)?;
    let key = keys::read_public(&args.key).map_err(usage)?;
    let policy = if args.require.contains(&PredicateKind::Vuln) {
        Some(pipeline::scan::ScanPolicy::load(&args.policy).map_err(usage)?)
    } else {
        None
    };
    let client = args.registry.client(&reference)?;
    let image = reference.to_string();
    let required = args.require.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // The digest to verify: the one named, or the one the tag names now.
        // When both are given they must agree.
        let digest = match (&reference.tag, &reference.digest) {
            (Some(tag), Some(d)) => {
                let (_, _, now) = client.manifest(tag)?;
                if &now != d {
                    return Err(VerifyError::DigestMismatch {
                        image: image.clone(),
                        what: format!("tag {tag}"),
                        signed: d.clone(),
                        actual: now,
                    });
                }
                d.clone()
            }
            (_, Some(d)) => d.clone(),
            (tag, None) => client.manifest(tag.as_deref().unwrap_or("latest"))?.2,
        };
        let today = time::OffsetDateTime::now_utc().date();
        let check = |report: &[u8]| -> Result<(), String> {
            let Some(policy) = &policy else { return Ok(()) };
            let report = pipeline::scan::parse_report(report, "the scan attestation")
                .map_err(|e| e.to_string())?;
            let eval = pipeline::scan::evaluate(&report, policy, &[], today);
            if eval.passed() {
                Ok(())
            } else {
                Err(eval.summary())
            }
        };
        verify::verify(&client, &image, &digest, &key, &required, Some(&check))
    })
    .await
    .map_err(infra)?;
    match outcome {
        Ok(v) => {
            if args.json {
                let kinds: Vec<&str> = v.attestations.iter().map(|k| k.name()).collect();
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "image": args.image, "digest": v.digest, "signatures": v.signatures, "attestations": kinds})
                );
            } else {
                println!(
                    "verified {}@{}",
                    args.image.split('@').next().unwrap_or(""),
                    v.digest
                );
                println!("  signature: {} valid with the given key", v.signatures);
                for k in &v.attestations {
                    println!(
                        "  attestation: {} valid{}",
                        k.name(),
                        if *k == PredicateKind::Vuln {
                            ", scan passes the current policy"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.exit_code() {
            Some(code) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"verified": false, "image": args.image, "reason": e.to_string(), "exit_code": code})
                    );
                }
                Err(Failure {
                    code,
                    error: e.into(),
                })
            }
            None => match e {
                VerifyError::Registry(r) if r.is_usage() => Err(usage(r)),
                other => Err(infra(other)),
            },
        },
    }
}
