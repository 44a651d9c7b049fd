//! The simple-signing payload cosign signs for an image:
//! `{"critical": {"identity": {"docker-reference"}, "image":
//! {"docker-manifest-digest"}, "type": "cosign container image signature"},
//! "optional": {...}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PAYLOAD_TYPE: &str = "cosign container image signature";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload for `repository` (registry/name, no tag) at `digest`.
pub fn build(repository: &str, digest: &str, annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let p = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: Image {
                docker_manifest_digest: digest.to_owned(),
            },
            kind: PAYLOAD_TYPE.to_owned(),
        },
        optional: (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        }),
    };
    serde_json::to_vec(&p).expect("serializing a payload")
}

/// A signed payload that is not a simple-signing payload of an image.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("not a simple-signing payload: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("its type is {found:?}, not {PAYLOAD_TYPE:?}")]
    OtherType { found: String },
}

pub fn parse(bytes: &[u8]) -> Result<Payload, PayloadError> {
    let p: Payload = serde_json::from_slice(bytes)?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(PayloadError::OtherType {
            found: p.critical.kind,
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_cosigns_shape() {
        let bytes = build("127.0.0.1:5000/app", "sha256:ab", &BTreeMap::new());
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/app"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(
            parse(&bytes).unwrap().critical.image.docker_manifest_digest,
            "sha256:ab"
        );
        let with = build(
            "r/a",
            "sha256:ab",
            &BTreeMap::from([("commit".into(), "abc".into())]),
        );
        assert!(
            String::from_utf8(with)
                .unwrap()
                .ends_with(r#""optional":{"commit":"abc"}}"#)
        );
        assert!(parse(b"{}").is_err());
    }
}
