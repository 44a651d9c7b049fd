//! Registry options shared by the commands that talk to a registry.

use pipeline::reference::Reference;
use pipeline::registry::Client;

use super::{Failure, usage};

/// Extra registries reached over plain HTTP, comma-separated.
pub const INSECURE_ENV: &str = "PIPELINE_INSECURE_REGISTRIES";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// A registry (HOST:PORT) to reach over plain HTTP; loopback ones always are.
    /// Repeatable; also PIPELINE_INSECURE_REGISTRIES=HOST:PORT,...
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// The flag's registries and the environment's.
    pub fn insecure(&self) -> Vec<String> {
        let mut all = self.insecure_registries.clone();
        if let Ok(list) = std::env::var(INSECURE_ENV) {
            all.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        all
    }

    /// A client for the reference's repository, with the credentials found
    /// for its registry.
    pub fn client(&self, reference: &Reference) -> Result<Client, Failure> {
        let credentials = pipeline::credentials::for_registry(&reference.registry)?;
        Ok(Client::new(reference, &self.insecure(), credentials))
    }
}

/// Parses `REPO@sha256:...`: signing and attesting address images by digest
/// only, never by a tag that can move.
pub fn by_digest(image: &str) -> Result<(Reference, String), Failure> {
    let r = Reference::parse(image)?;
    match r.digest.clone() {
        Some(d) => Ok((r, d)),
        None => Err(usage(anyhow::anyhow!(
            "{image} names a tag, which can move to another image; give the digest: REPO@sha256:... (as `pipeline push` prints it)"
        ))),
    }
}
