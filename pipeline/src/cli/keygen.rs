//! `pipeline keygen`: an ECDSA P-256 key pair in cosign's format.

use std::path::PathBuf;
use std::process::ExitCode;

use pipeline::cosign::keys;

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key (encrypted with COSIGN_PASSWORD, mode 0600) and PREFIX.pub.
    #[arg(long, default_value = "cosign", value_name = "PREFIX")]
    pub output_key_prefix: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: KeygenArgs) -> Result<ExitCode, Failure> {
    let password = keys::password_from_env()?;
    let key = keys::generate();
    let (private, public) = keys::write_pair(&args.output_key_prefix, &key, &password, args.force)?;
    eprintln!(
        "private key written to {} (encrypted with COSIGN_PASSWORD)",
        private.display()
    );
    eprintln!("public key written to {}", public.display());
    println!("{}", keys::key_id(key.verifying_key()));
    Ok(ExitCode::SUCCESS)
}
