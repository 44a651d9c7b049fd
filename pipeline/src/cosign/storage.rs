//! Signatures and attestations in the registry, where cosign keeps them: an
//! OCI image manifest under the tag `sha256-<hex>.sig` (or `.att`) in the
//! image's repository, one layer per signature or attestation. New ones are
//! appended to what is there, as cosign does.

use std::collections::BTreeMap;

use serde_json::json;

use crate::registry::manifest::{self, Descriptor, OCI_MANIFEST, Parsed};
use crate::registry::{Client, RegistryError};

/// Largest signature payload or attestation read back.
pub const LAYER_CAP: u64 = 64 << 20;

/// Which of the two tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Signatures,
    Attestations,
}

/// `sha256-<hex>.sig` or `.att` for an image digest.
pub fn tag(digest: &str, kind: Kind) -> String {
    let suffix = match kind {
        Kind::Signatures => "sig",
        Kind::Attestations => "att",
    };
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// One stored signature or attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// The layers of the manifest under `tag`; `None` when the tag does not
/// exist. An index there is not cosign's: an error.
fn layers_under(client: &Client, tag: &str) -> Result<Option<Vec<Descriptor>>, RegistryError> {
    let Some((bytes, content_type, _)) = client.manifest_if_exists(tag)? else {
        return Ok(None);
    };
    match manifest::parse(&bytes, content_type.as_deref()) {
        Ok(Parsed::Image { layers, .. }) => Ok(Some(layers)),
        Ok(Parsed::Index(_)) => Err(client.invalid(
            &format!("manifest {tag}"),
            "an index, not an image manifest",
        )),
        Err(e) => Err(client.invalid(&format!("manifest {tag}"), e)),
    }
}

/// The entries under an image's tag; `None` when the tag does not exist.
pub fn read(
    client: &Client,
    digest: &str,
    kind: Kind,
) -> Result<Option<Vec<Entry>>, RegistryError> {
    let tag = tag(digest, kind);
    let Some(layers) = layers_under(client, &tag)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let bytes = client.blob_bytes(
            &l.digest,
            LAYER_CAP,
            &format!("layer {} of {tag}", l.digest),
        )?;
        out.push(Entry {
            media_type: l.media_type,
            bytes,
            annotations: l.annotations,
        });
    }
    Ok(Some(out))
}

fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    let mut v = json!({ "mediaType": d.media_type, "size": d.size, "digest": d.digest });
    if !d.annotations.is_empty() {
        v["annotations"] = json!(d.annotations);
    }
    v
}

/// Appends an entry under the image's tag (no-op when an identical entry is
/// there); returns the manifest digest.
pub fn append(
    client: &Client,
    digest: &str,
    kind: Kind,
    entry: &Entry,
) -> Result<String, RegistryError> {
    let tag = tag(digest, kind);
    let mut layers = layers_under(client, &tag)?.unwrap_or_default();
    let layer_digest = client.push_blob(&entry.bytes, &format!("a layer of {tag}"))?;
    let new = Descriptor {
        media_type: entry.media_type.clone(),
        digest: layer_digest,
        size: entry.bytes.len() as u64,
        platform: None,
        annotations: entry.annotations.clone(),
    };
    if !layers.contains(&new) {
        layers.push(new);
    }
    // The config cosign writes: an empty image whose layers are the entries.
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": layers.iter().map(|_| json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        "config": {},
    }))
    .expect("serializing JSON");
    let config_digest = client.push_blob(&config, &format!("the config of {tag}"))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
    }))
    .expect("serializing JSON");
    client.put_manifest(&tag, &manifest, OCI_MANIFEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_cosigns_scheme() {
        assert_eq!(tag("sha256:abc", Kind::Signatures), "sha256-abc.sig");
        assert_eq!(tag("sha256:abc", Kind::Attestations), "sha256-abc.att");
    }
}
