//! Signing an image and attaching attestations, stored as cosign stores them.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::signer::Signer;
use super::storage::{self, Entry, Kind};
use super::{
    DSSE_ENVELOPE, KEY_ID_ANNOTATION, PREDICATE_ANNOTATION, SIGNATURE_ANNOTATION, SIMPLE_SIGNING,
    dsse, payload,
};
use crate::registry::{Client, RegistryError};

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The `.sig` or `.att` tag.
    pub tag: String,
    /// Digest of the manifest now under that tag.
    pub manifest_digest: String,
}

/// Signs `repository@digest` (the image must exist) and appends the
/// signature under `sha256-<hex>.sig`.
pub fn sign_image(
    client: &Client,
    repository: &str,
    digest: &str,
    signer: &dyn Signer,
    annotations: &BTreeMap<String, String>,
) -> Result<Stored, RegistryError> {
    // Refuse to sign what is not there: a typo must not produce a signature.
    client.manifest(digest)?;
    let body = payload::build(repository, digest, annotations);
    let sig = signer.sign(&body);
    let entry = Entry {
        media_type: SIMPLE_SIGNING.to_owned(),
        bytes: body,
        annotations: BTreeMap::from([
            (
                SIGNATURE_ANNOTATION.to_owned(),
                base64::engine::general_purpose::STANDARD.encode(sig),
            ),
            (KEY_ID_ANNOTATION.to_owned(), signer.key_id()),
        ]),
    };
    let manifest_digest = storage::append(client, digest, Kind::Signatures, &entry)?;
    Ok(Stored {
        tag: storage::tag(digest, Kind::Signatures),
        manifest_digest,
    })
}

/// Attests `predicate` (of `predicate_type`) about `repository@digest` in a
/// signed DSSE envelope appended under `sha256-<hex>.att`.
pub fn attest_image(
    client: &Client,
    repository: &str,
    digest: &str,
    signer: &dyn Signer,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Result<Stored, RegistryError> {
    client.manifest(digest)?;
    let statement = dsse::statement(repository, digest, predicate_type, predicate);
    let envelope = dsse::seal(&statement, signer);
    let entry = Entry {
        media_type: DSSE_ENVELOPE.to_owned(),
        bytes: serde_json::to_vec(&envelope).expect("serializing an envelope"),
        annotations: BTreeMap::from([
            (PREDICATE_ANNOTATION.to_owned(), predicate_type.to_owned()),
            // cosign writes this annotation empty on attestations: the
            // signature is inside the envelope.
            (SIGNATURE_ANNOTATION.to_owned(), String::new()),
        ]),
    };
    let manifest_digest = storage::append(client, digest, Kind::Attestations, &entry)?;
    Ok(Stored {
        tag: storage::tag(digest, Kind::Attestations),
        manifest_digest,
    })
}
