//! `pipeline`: supply-chain steps for container images. See `pipeline --help`.

use std::process::ExitCode;

use clap::Parser;

/// Builds, describes, scans, signs, verifies and rolls out container images.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    eprintln!("pipeline: no command yet; see `pipeline --help`");
    ExitCode::from(2)
}
