//! Command-line interface: arguments, exit codes, and one small file per
//! subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline::error::{Blame, Classify};

mod attest;
mod build;
mod environments;
mod environments_args;
mod keygen;
mod promote;
mod push;
mod registry;
mod release;
mod run;
mod sbom;
mod scan;
mod sign;
mod verify;

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INFRA: u8 = 3;
pub const EXIT_BUILD_FAILED: u8 = 4;
/// The gate failed: a finding at or above the policy's threshold remains.
pub const EXIT_POLICY_FAILED: u8 = 5;
/// Grype is not installed.
pub const EXIT_GRYPE_MISSING: u8 = 6;
/// `promote`, `release`: a check the environment requires failed.
pub const EXIT_REJECTED: u8 = 7;
/// `promote`, `release`: the deploy failed and the previous image serves again.
pub const EXIT_ROLLED_BACK: u8 = 8;
/// `promote`, `release`: the deploy failed and so did the rollback.
pub const EXIT_DEGRADED: u8 = 9;

#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Builds container images tagged with the commit SHA, describes (SBOM), scans, signs, verifies and deploys them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a git work tree, tagged REPO:<commit sha>.
    Build(build::BuildArgs),
    /// Push a built image and print its manifest digest.
    Push(push::PushArgs),
    /// Describe an image or a root file system as a CycloneDX 1.5 SBOM.
    Sbom(sbom::SbomArgs),
    /// Scan an SBOM with Grype (or read a Grype report) and apply the policy gate.
    Scan(scan::ScanArgs),
    /// Make an ECDSA P-256 key pair in cosign's format.
    Keygen(keygen::KeygenArgs),
    /// Sign an image digest, stored as cosign stores signatures.
    Sign(sign::SignArgs),
    /// Attach a signed attestation (SBOM, scan, provenance) to an image digest.
    Attest(attest::AttestArgs),
    /// Check an image's signature, claimed digest, attestations and scan.
    Verify(verify::VerifyArgs),
    /// build → push → sbom → scan → sign → attest, with a summary of each step.
    Run(Box<run::RunArgs>),
    /// A commit through the supply chain (from a temporary clone), then into
    /// the automatic environment when it is on a branch the policy names.
    Release(Box<release::ReleaseArgs>),
    /// Verify an image by digest for an environment and deploy it there.
    Promote(promote::PromoteArgs),
    /// What runs where; `--reconcile ENV` resolves a half-done deploy.
    Environments(environments::EnvironmentsArgs),
}

/// A failed command: its message and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

/// The exit code of each kind of failure: the one place the library's
/// [`Blame`] becomes a number.
pub fn exit_code(blame: Blame) -> u8 {
    match blame {
        Blame::Usage => EXIT_USAGE,
        Blame::Infra => EXIT_INFRA,
        Blame::BuildFailed => EXIT_BUILD_FAILED,
        Blame::PolicyFailed => EXIT_POLICY_FAILED,
        Blame::GrypeMissing => EXIT_GRYPE_MISSING,
        Blame::Rejected => EXIT_REJECTED,
        Blame::RolledBack => EXIT_ROLLED_BACK,
        Blame::Degraded => EXIT_DEGRADED,
    }
}

/// Every library error that knows whose problem it is becomes a failure
/// with the matching exit code, so commands use `?`.
impl<E> From<E> for Failure
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Failure {
        Failure {
            code: exit_code(e.blame()),
            error: e.into(),
        }
    }
}

pub fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: e.into(),
    }
}

pub fn infra(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_INFRA,
        error: e.into(),
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), when set.
pub fn source_date_epoch() -> Result<Option<i64>, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            usage(anyhow::anyhow!(
                "SOURCE_DATE_EPOCH={v:?} is not a Unix time in seconds"
            ))
        }),
        Err(_) => Ok(None),
    }
}

pub async fn connect() -> Result<bollard::Docker, Failure> {
    Ok(pipeline::engine::connect().await?)
}

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Build(args) => build::run(args).await,
        Command::Push(args) => push::run(args).await,
        Command::Sbom(args) => sbom::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Keygen(args) => keygen::run(args).await,
        Command::Sign(args) => sign::run(args).await,
        Command::Attest(args) => attest::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Run(args) => run::run(*args).await,
        Command::Release(args) => release::run(*args).await,
        Command::Promote(args) => promote::run(args).await,
        Command::Environments(args) => environments::run(args).await,
    }
}
