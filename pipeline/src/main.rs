//! `pipeline`: supply-chain steps for container images. See `pipeline --help`.
//!
//! Exit codes:
//! - 0: done (an SBOM with warnings is still a success: they are on stderr
//!   and in the SBOM);
//! - 2: usage or input error (bad arguments, a dirty work tree, no such
//!   image, unreadable input, credentials refused by the registry);
//! - 3: infrastructure error (Docker or the registry unreachable or failing);
//! - 4: the build itself failed (a Dockerfile step failed);
//! - 5: `scan` (or `run`): the scan fails the policy;
//! - 6: `scan` (or `run`): grype is not installed;
//! - 7: `promote`, `release`: a check the environment requires failed
//!   (signature, attestation, scan, provenance);
//! - 8: `promote`, `release`: the deploy failed and the previous image
//!   serves again (rolled back);
//! - 9: `promote`, `release`: the deploy failed and so did the rollback;
//! - 10-15: `verify`: unsigned (10), another key (11), tampered signature,
//!   payload or attestation (12), signed for another digest (13), a required
//!   attestation missing (14), the scan attestation fails the policy (15).

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipeline: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_INFRA);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("pipeline: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
