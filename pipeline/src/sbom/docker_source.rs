//! `docker:IMAGE`: the image as the engine has it, exported with the save
//! API into an unnamed temporary file (so memory stays bounded whatever the
//! image's size) and read as a `docker save` archive.

use std::io::Write;

use bollard::Docker;
use futures_util::StreamExt;

use super::SbomError;
use super::archive::{self, ArchiveImage};
use crate::engine::{describe, is_not_found};
use crate::reference::Reference;
use crate::registry::manifest::Platform;

pub async fn read(docker: &Docker, image: &str) -> Result<ArchiveImage, SbomError> {
    let engine = |message: String| SbomError::Engine {
        image: image.to_owned(),
        message,
    };
    let inspect = match docker.inspect_image(image).await {
        Ok(i) => i,
        Err(e) if is_not_found(&e) => {
            return Err(SbomError::Input {
                input: format!("docker:{image}"),
                message: "the engine has no such image; build or pull it first (`docker images` lists what it has)".into(),
            });
        }
        Err(e) => return Err(engine(describe(&e))),
    };
    let spool =
        tempfile::tempfile().map_err(|e| engine(format!("cannot create a temporary file: {e}")))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, spool);
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| engine(format!("exporting the image failed: {}", describe(&e))))?;
        writer
            .write_all(&chunk)
            .map_err(|e| engine(format!("cannot write the temporary file: {e}")))?;
    }
    let spool = writer
        .into_inner()
        .map_err(|e| engine(format!("cannot write the temporary file: {}", e.error())))?;
    let label = image.to_owned();
    let mut img = tokio::task::spawn_blocking(move || archive::read(spool, &Platform::host()))
        .await?
        .map_err(|source| SbomError::Archive {
            input: format!("docker:{label} (the engine's export)"),
            source,
        })?;
    let mut repo_digests = inspect.repo_digests.unwrap_or_default();
    repo_digests.sort();
    img.meta.manifest_digest = manifest_digest(image, &repo_digests);
    img.meta.repo_digests = repo_digests;
    Ok(img)
}

/// The registry manifest digest of `image`: its own digest when it names
/// one, else that of the repo digest of the same repository.
fn manifest_digest(image: &str, repo_digests: &[String]) -> Option<String> {
    let wanted = Reference::parse(image).ok()?;
    if let Some(d) = &wanted.digest {
        return Some(d.clone());
    }
    repo_digests.iter().find_map(|rd| {
        let r = Reference::parse(rd).ok()?;
        (r.name() == wanted.name()).then_some(r.digest).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digest_from_repo_digests() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let repo_digests = vec![format!("127.0.0.1:5000/app@{d1}"), format!("debian@{d2}")];
        assert_eq!(
            manifest_digest("127.0.0.1:5000/app:v1", &repo_digests),
            Some(d1.clone())
        );
        assert_eq!(
            manifest_digest("debian:bookworm-slim", &repo_digests),
            Some(d2.clone())
        );
        assert_eq!(manifest_digest("other:1", &repo_digests), None);
        assert_eq!(
            manifest_digest(&format!("x/y@{d2}"), &repo_digests),
            Some(d2)
        );
    }
}
