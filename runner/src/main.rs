//! `runner`: runs submissions in sandboxes. See `runner --help`.
//!
//! Exit codes:
//! - 0: done (for `exec`: a verdict was produced, whichever it is);
//! - 2: usage or input error (bad arguments, unreadable or invalid submission,
//!   a limit over the policy's maximum, an invalid policy file);
//! - 3: infrastructure error (Docker unreachable, an image build failed, the
//!   sandbox itself failed: the `internal_error` verdict);
//! - 1: `audit verify` found the audit log tampered with;
//! - for `release`: 2 when the server refused the request (its message says
//!   why), 3 when it could not be reached or failed;
//! - 130: interrupted (Ctrl-C or SIGTERM); containers of the job are removed.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runner: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_INFRA);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("runner: {:#}", failure.error());
            ExitCode::from(failure.code())
        }
    }
}
