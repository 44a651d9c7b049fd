//! Software bills of materials: what is installed in an image (or a root
//! file system directory), as CycloneDX 1.5 JSON.

use std::path::PathBuf;

use crate::credentials::{self, CredentialsError};
use crate::reference::{Reference, ReferenceError};
use crate::registry::manifest::Platform;
use crate::registry::{Client, RegistryError};

pub mod archive;
pub mod catalog;
pub mod cyclonedx;
pub mod dir;
pub mod docker_source;
pub mod layer;
pub mod purl;
pub mod registry_source;
pub mod rootfs;
pub mod warning;

pub use cyclonedx::{ImageMeta, Subject};
pub use warning::Warning;

/// What to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `docker:IMAGE`: an image in the Docker engine.
    Docker(String),
    /// `registry:REF`: an image in a registry, pulled without the engine.
    Registry(Reference),
    /// `docker-archive:PATH`: a `docker save` tarball.
    DockerArchive(PathBuf),
    /// `dir:PATH`: a root file system in a directory.
    Dir(PathBuf),
}

/// A source argument that names nothing readable.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{given:?} has no scheme: use docker:IMAGE, registry:REF, docker-archive:PATH or dir:PATH"
    )]
    NoScheme { given: String },
    #[error("{given:?}: nothing after `{scheme}:`")]
    Empty { given: String, scheme: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "unknown source scheme {scheme:?}: use docker:IMAGE, registry:REF, docker-archive:PATH or dir:PATH"
    )]
    UnknownScheme { scheme: String },
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, SourceError> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| SourceError::NoScheme {
            given: s.to_owned(),
        })?;
        if rest.is_empty() {
            return Err(SourceError::Empty {
                given: s.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        match scheme {
            "docker" => Ok(Source::Docker(rest.to_owned())),
            "registry" => Ok(Source::Registry(Reference::parse(rest)?)),
            "docker-archive" => Ok(Source::DockerArchive(PathBuf::from(rest))),
            "dir" => Ok(Source::Dir(PathBuf::from(rest))),
            other => Err(SourceError::UnknownScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    /// The name the SBOM gives the subject: the reference or path as given.
    pub fn subject_name(&self) -> String {
        match self {
            Source::Docker(i) => i.clone(),
            Source::Registry(r) => r.to_string(),
            Source::DockerArchive(p) | Source::Dir(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `SOURCE_DATE_EPOCH`, for the timestamp.
    pub source_date_epoch: Option<i64>,
    /// Registries (`host:port`) reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Which image of a multi-platform index to describe.
    pub platform: Platform,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source_date_epoch: None,
            insecure_registries: Vec::new(),
            platform: Platform::host(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("{input}: {message}")]
    Input { input: String, message: String },
    #[error("{input}: cannot open: {source}")]
    Open {
        input: String,
        source: std::io::Error,
    },
    #[error("{input}: {source}")]
    Archive {
        input: String,
        source: archive::ArchiveError,
    },
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    #[error("Docker engine, image {image}: {message}")]
    Engine { image: String, message: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("internal error: a worker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("internal error: {0}")]
    Render(#[from] cyclonedx::RenderError),
}

impl SbomError {
    /// Whether the user can fix it (exit 2) rather than the machine (3).
    pub fn is_usage(&self) -> bool {
        match self {
            SbomError::Input { .. }
            | SbomError::Open { .. }
            | SbomError::Archive { .. }
            | SbomError::Dir(_)
            | SbomError::Credentials(_) => true,
            SbomError::Registry(e) => e.is_usage(),
            SbomError::Engine { .. } | SbomError::Task(_) | SbomError::Render(_) => false,
        }
    }
}

/// A finished SBOM.
#[derive(Debug, Clone)]
pub struct Report {
    /// The CycloneDX document.
    pub json: Vec<u8>,
    pub subject: Subject,
    pub components: usize,
    pub warnings: Vec<Warning>,
}

/// Reads the source, catalogs it and renders the SBOM.
pub async fn generate(source: &Source, options: &Options) -> Result<Report, SbomError> {
    let (fs, image) = read_source(source, options).await?;
    let layers = image.as_ref().map(|i| i.layers.clone()).unwrap_or_default();
    let inventory = tokio::task::spawn_blocking(move || catalog::assemble(fs, &layers)).await?;
    let subject = Subject {
        name: source.subject_name(),
        image,
    };
    let components = inventory.packages.len() + usize::from(inventory.distro.is_some());
    let (json, warnings) = cyclonedx::render(&inventory, &subject, options.source_date_epoch)?;
    Ok(Report {
        json,
        subject,
        components,
        warnings,
    })
}

/// The file system of the source, and the image's metadata when it is one.
async fn read_source(
    source: &Source,
    options: &Options,
) -> Result<(rootfs::RootFs, Option<ImageMeta>), SbomError> {
    match source {
        Source::Docker(image) => {
            let docker = crate::engine::connect()
                .await
                .map_err(|e| SbomError::Engine {
                    image: image.clone(),
                    message: e.message,
                })?;
            let img = docker_source::read(&docker, image).await?;
            Ok((img.fs, Some(img.meta)))
        }
        Source::Registry(reference) => {
            let reference = reference.clone();
            let platform = options.platform.clone();
            let creds = credentials::for_registry(&reference.registry)?;
            let client = Client::new(&reference, &options.insecure_registries, creds);
            let (fs, meta) = tokio::task::spawn_blocking(move || {
                registry_source::read(&reference, &client, &platform)
            })
            .await??;
            Ok((fs, Some(meta)))
        }
        Source::DockerArchive(path) => {
            let path = path.clone();
            let platform = options.platform.clone();
            let img = tokio::task::spawn_blocking(move || {
                let input = format!("docker-archive:{}", path.display());
                let file = std::fs::File::open(&path).map_err(|source| SbomError::Open {
                    input: input.clone(),
                    source,
                })?;
                archive::read(file, &platform)
                    .map_err(|source| SbomError::Archive { input, source })
            })
            .await??;
            Ok((img.fs, Some(img.meta)))
        }
        Source::Dir(path) => {
            let path = path.clone();
            let fs = tokio::task::spawn_blocking(move || dir::read(&path)).await??;
            Ok((fs, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            Source::parse("docker:app:1").unwrap(),
            Source::Docker("app:1".into())
        );
        assert!(matches!(
            Source::parse("registry:127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap(),
            Source::Registry(r) if r.registry == "127.0.0.1:5000"
        ));
        assert_eq!(
            Source::parse("dir:/x").unwrap(),
            Source::Dir(PathBuf::from("/x"))
        );
        assert!(
            Source::parse("app:1")
                .unwrap_err()
                .to_string()
                .contains("unknown source scheme")
        );
        assert!(
            Source::parse("nothing")
                .unwrap_err()
                .to_string()
                .contains("no scheme")
        );
        assert!(Source::parse("dir:").is_err());
        assert!(Source::parse("registry:BAD").is_err());
    }
}
