//! `pipeline sign`: a cosign-compatible signature of an image digest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use pipeline::cosign::{keys, publish, signer::KeySigner};

use super::registry::{RegistryArgs, by_digest};
use super::{Failure, usage};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The image, by digest: REPO@sha256:...
    #[arg(long, value_name = "REPO@DIGEST")]
    pub image: String,
    /// Private key in cosign's format; its password comes from COSIGN_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// KEY=VALUE placed in the payload's "optional" section; repeatable.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn load_signer(path: &std::path::Path) -> Result<KeySigner, Failure> {
    let password = keys::password_from_env()?;
    Ok(KeySigner::new(keys::read_private(path, &password)?))
}

pub async fn run(args: SignArgs) -> Result<ExitCode, Failure> {
    let (reference, digest) = by_digest(&args.image)?;
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| usage(anyhow!("--annotation {a:?} is not KEY=VALUE")))?;
        annotations.insert(k.to_owned(), v.to_owned());
    }
    let signer = load_signer(&args.key)?;
    let client = args.registry.client(&reference)?;
    let stored = tokio::task::spawn_blocking(move || {
        publish::sign_image(&client, &reference.name(), &digest, &signer, &annotations)
    })
    .await
    .map_err(super::infra)??;
    eprintln!("signed; signature stored under {}", stored.tag);
    println!("{}", stored.manifest_digest);
    Ok(ExitCode::SUCCESS)
}
