//! Image references: `[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]`, parsed the
//! way Docker does (a first component with a `.` or `:`, or `localhost`, is
//! a registry; otherwise the registry is Docker Hub).

use std::fmt;

use crate::digest::is_sha256_digest;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `ghcr.io`...
    pub registry: String,
    /// `library/debian`, `team/app`...
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// 1 to 128 letters, digits, `_`, `.`, `-`, not starting with `.` or `-`.
fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Registry and repository of a name, as Docker splits them: a first
/// component with a `.` or `:`, or `localhost`, is a registry; otherwise
/// the registry is Docker Hub (and a bare name is an official image).
fn split_name(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), path.to_owned())
        }
        _ if name.contains('/') => (DOCKER_HUB.to_owned(), name.to_owned()),
        _ => (DOCKER_HUB.to_owned(), format!("library/{name}")),
    }
}

fn valid_registry(registry: &str) -> bool {
    !registry.is_empty()
        && registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// Lowercase letters, digits and separators, starting and ending with a
/// letter or digit.
fn valid_path_component(component: &str) -> bool {
    !component.is_empty()
        && component
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && component
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && component
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) if is_sha256_digest(d) => (r, Some(d.to_owned())),
            Some(_) => {
                return Err(fail(
                    "the digest after `@` must be sha256: followed by 64 lowercase hex digits",
                ));
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if tag.as_deref().is_some_and(|t| !valid_tag(t)) {
            return Err(fail(
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
            ));
        }
        let (registry, repository) = split_name(name);
        if !valid_registry(&registry) {
            return Err(fail("the registry host is not a valid host[:port]"));
        }
        if !repository.split('/').all(valid_path_component) {
            return Err(fail(
                "repository path components are lowercase letters, digits and single separators (`.`, `_`, `-`)",
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `REGISTRY/REPOSITORY`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host the registry API answers on (Docker Hub's differs from its
    /// name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The digest when there is one, else the tag, else `latest`.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Whether the registry is on this machine, where plain HTTP is the norm
    /// (as Docker assumes for 127.0.0.0/8).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(self.registry.as_str(), |(h, _)| h);
        host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// An image named by its digest only (`REPO@sha256:...`): what is signed,
/// verified, promoted and deployed. A tag can move to another image between
/// the check and the deploy, so it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    reference: Reference,
}

/// Why a reference is not an image by digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPinned {
    #[error(transparent)]
    Invalid(#[from] ReferenceError),
    #[error(
        "{given} names a tag, which can move to another image; give the digest: REPO@sha256:... (as `pipeline push` and `pipeline release` print it)"
    )]
    Tag { given: String },
    #[error("{given} gives both a tag and a digest; give REPO@sha256:... alone")]
    TagAndDigest { given: String },
}

impl Pinned {
    pub fn parse(input: &str) -> Result<Pinned, NotPinned> {
        let reference = Reference::parse(input)?;
        match (&reference.tag, &reference.digest) {
            (None, Some(_)) => Ok(Pinned { reference }),
            (Some(_), Some(_)) => Err(NotPinned::TagAndDigest {
                given: input.to_owned(),
            }),
            (_, None) => Err(NotPinned::Tag {
                given: input.to_owned(),
            }),
        }
    }

    /// `sha256:...`.
    pub fn digest(&self) -> &str {
        self.reference.digest.as_deref().unwrap_or_default()
    }

    /// `REGISTRY/REPOSITORY`.
    pub fn name(&self) -> String {
        self.reference.name()
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reference.fmt(f)
    }
}

impl std::str::FromStr for Pinned {
    type Err = NotPinned;
    fn from_str(s: &str) -> Result<Pinned, NotPinned> {
        Pinned::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_forms() {
        let r = Reference::parse("debian:bookworm-slim").unwrap();
        assert_eq!(r.name(), "docker.io/library/debian");
        assert_eq!(r.tag.as_deref(), Some("bookworm-slim"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:v1@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.tag_or_digest(), D);
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/app:v1@{D}"));
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
        assert!(r.is_loopback());
        assert_eq!(r.tag_or_digest(), "latest");
        let r = Reference::parse("ghcr.io/o/app:1").unwrap();
        assert!(!r.is_loopback());
        assert!(Reference::parse("127.0.0.2:1/a").unwrap().is_loopback());
    }

    #[test]
    fn only_digests_pin_an_image() {
        let p = Pinned::parse(&format!("127.0.0.1:5000/app@{D}")).unwrap();
        assert_eq!(p.digest(), D);
        assert_eq!(p.name(), "127.0.0.1:5000/app");
        assert_eq!(p.to_string(), format!("127.0.0.1:5000/app@{D}"));
        let e = Pinned::parse("127.0.0.1:5000/app:v1").unwrap_err();
        assert!(matches!(e, NotPinned::Tag { .. }));
        assert!(e.to_string().contains("REPO@sha256:"), "{e}");
        assert!(matches!(Pinned::parse("app"), Err(NotPinned::Tag { .. })));
        assert!(matches!(
            Pinned::parse(&format!("app:v1@{D}")),
            Err(NotPinned::TagAndDigest { .. })
        ));
        assert!(matches!(Pinned::parse("App@x"), Err(NotPinned::Invalid(_))));
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "App:1",
            "app:",
            "app:-x",
            "app@sha256:short",
            "host:5000//x",
            "a b",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }
}
