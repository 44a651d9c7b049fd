//! `pipeline push`: the engine pushes a tagged image, with credentials from
//! the environment or the Docker config (see [`crate::credentials`]), and
//! the manifest digest comes back: later steps address the image by it.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptionsBuilder;
use futures_util::StreamExt;

use crate::credentials::{self, Credentials, CredentialsError};
use crate::digest::is_sha256_digest;
use crate::engine::{describe, is_not_found};
use crate::reference::Reference;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `REPO:TAG` as given.
    pub image: String,
    /// `sha256:...` of the manifest in the registry.
    pub digest: String,
    /// `REPO@sha256:...`.
    pub reference: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid --image {input:?}: {reason}")]
    Image { input: String, reason: String },
    #[error("the engine has no image {image}; build it first (`pipeline build`)")]
    Missing { image: String },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("registry {registry} refused the push of {image}: {message}")]
    Denied {
        image: String,
        registry: String,
        message: String,
    },
    #[error("pushing {image} failed: {message}")]
    Failed { image: String, message: String },
    #[error("cannot reach the Docker engine to push {image}: {message}")]
    Engine { image: String, message: String },
}

impl PushError {
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PushError::Image { .. }
                | PushError::Missing { .. }
                | PushError::Credentials(_)
                | PushError::Denied { .. }
        )
    }
}

/// The digest in a push status line such as
/// `v1: digest: sha256:abc... size: 528`.
pub fn digest_in_status(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    is_sha256_digest(digest).then(|| digest.to_owned())
}

fn looks_like_auth_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "forbidden",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Pushes `image` (`REPO:TAG`), reporting progress lines to `progress`.
pub async fn push(
    docker: &Docker,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Pushed, PushError> {
    let (reference, repo, tag) = split_image(image)?;
    match docker.inspect_image(image).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(PushError::Missing {
                image: image.to_owned(),
            });
        }
        Err(e) => {
            return Err(PushError::Engine {
                image: image.to_owned(),
                message: describe(&e),
            });
        }
    }
    let creds: Option<Credentials> = credentials::for_registry(&reference.registry)?;
    match &creds {
        Some(c) => progress(&format!(
            "pushing {image} as {:?} (credentials from {})",
            c.username, c.origin
        )),
        None => progress(&format!("pushing {image} without credentials")),
    }
    let docker_creds = creds.as_ref().map(|c| DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.expose().to_owned()),
        serveraddress: Some(reference.registry.clone()),
        ..Default::default()
    });
    let opts = PushImageOptionsBuilder::default().tag(&tag).build();
    let stream = docker.push_image(&repo, Some(opts), docker_creds);
    let push = Push {
        image,
        reference: &reference,
        creds: &creds,
    };
    let digest = match push.follow(stream, progress).await? {
        Some(d) => d,
        None => repo_digest(docker, image, &reference).await?,
    };
    Ok(Pushed {
        image: image.to_owned(),
        reference: format!("{repo}@{digest}"),
        digest,
    })
}

/// `REPO:TAG` as its reference, repository and tag; a digest or no tag is
/// refused.
fn split_image(image: &str) -> Result<(Reference, String, String), PushError> {
    let reference = Reference::parse(image).map_err(|e| PushError::Image {
        input: image.to_owned(),
        reason: e.reason,
    })?;
    let (Some(tag), None) = (&reference.tag, &reference.digest) else {
        return Err(PushError::Image {
            input: image.to_owned(),
            reason: "give REPO:TAG (a tag, no digest), such as the one `pipeline build` printed"
                .into(),
        });
    };
    let repo = image
        .strip_suffix(&format!(":{tag}"))
        .unwrap_or(image)
        .to_owned();
    let tag = tag.clone();
    Ok((reference, repo, tag))
}

/// One push in progress: what its messages are about.
struct Push<'a> {
    image: &'a str,
    reference: &'a Reference,
    creds: &'a Option<Credentials>,
}

impl Push<'_> {
    /// Follows the engine's push stream: status changes go to `progress`
    /// (scrubbed of the password); the manifest digest, when the stream
    /// states it, is returned.
    async fn follow(
        &self,
        mut stream: impl futures_util::Stream<
            Item = Result<bollard::models::PushImageInfo, bollard::errors::Error>,
        > + Unpin,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Option<String>, PushError> {
        let mut digest = None;
        let mut last_status = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.failed(&describe(&e)))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(self.failed(&err));
            }
            let Some(status) = info.status else { continue };
            if let Some(d) = digest_in_status(&status) {
                digest = Some(d);
            }
            // Byte counts repeat many times a second; only changes of state
            // are worth a line.
            if status != last_status && status != "Pushing" {
                progress(&self.redact(&status));
                last_status = status;
            }
        }
        Ok(digest)
    }

    fn redact(&self, s: &str) -> String {
        match self.creds {
            Some(c) => c.password.redact(s),
            None => s.to_owned(),
        }
    }

    /// A failed push: refused credentials get their own error and hint.
    fn failed(&self, message: &str) -> PushError {
        let message = self.redact(message);
        if looks_like_auth_failure(&message) {
            denied(self.image, self.reference, self.creds, message)
        } else {
            PushError::Failed {
                image: self.image.to_owned(),
                message,
            }
        }
    }
}

fn denied(
    image: &str,
    reference: &Reference,
    creds: &Option<Credentials>,
    message: String,
) -> PushError {
    let hint = match creds {
        Some(c) => format!(
            "; the credentials of user {:?} (from {}) were refused: check the user name and password",
            c.username, c.origin
        ),
        None => format!(
            "; no credentials were found: set {} and {}, or run `docker login {}`",
            credentials::USER_ENV,
            credentials::PASSWORD_ENV,
            reference.registry
        ),
    };
    PushError::Denied {
        image: image.to_owned(),
        registry: reference.registry.clone(),
        message: format!("{message}{hint}"),
    }
}

/// The digest from the engine's record of the push, when the stream did
/// not state it.
async fn repo_digest(
    docker: &Docker,
    image: &str,
    reference: &Reference,
) -> Result<String, PushError> {
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(|e| PushError::Engine {
            image: image.to_owned(),
            message: describe(&e),
        })?;
    inspect
        .repo_digests
        .unwrap_or_default()
        .iter()
        .filter_map(|rd| Reference::parse(rd).ok())
        .find(|r| r.name() == reference.name())
        .and_then(|r| r.digest)
        .ok_or_else(|| PushError::Failed {
            image: image.to_owned(),
            message: "the push ended without a manifest digest".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_status_lines() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            digest_in_status(&format!("v1: digest: {d} size: 528")),
            Some(d)
        );
        assert_eq!(digest_in_status("Pushed"), None);
        assert_eq!(digest_in_status("x: digest: sha256:zz size: 1"), None);
        assert!(looks_like_auth_failure(
            "unauthorized: authentication required"
        ));
        assert!(looks_like_auth_failure("no basic auth credentials"));
        assert!(!looks_like_auth_failure("connection refused"));
    }
}
