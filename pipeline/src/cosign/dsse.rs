//! DSSE envelopes of in-toto statements: what an attestation is.
//! The signature covers PAE(payloadType, payload), so the type cannot be
//! swapped under a valid signature.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::signer::{Signer, verifies};

pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Pre-authentication encoding (DSSE v1).
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// base64
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// base64 of the DER signature
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

/// The statement that `predicate` (of `predicate_type`) is about the image
/// `repository@sha256:hex`.
pub fn statement(
    repository: &str,
    digest: &str,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Statement {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    Statement {
        kind: STATEMENT_V1.to_owned(),
        subject: vec![Subject {
            name: repository.to_owned(),
            digest: [("sha256".to_owned(), hex.to_owned())].into(),
        }],
        predicate_type: predicate_type.to_owned(),
        predicate,
    }
}

pub fn seal(statement: &Statement, signer: &dyn Signer) -> Envelope {
    let payload = serde_json::to_vec(statement).expect("serializing a statement");
    let sig = signer.sign(&pae(IN_TOTO, &payload));
    let b64 = base64::engine::general_purpose::STANDARD;
    Envelope {
        payload_type: IN_TOTO.to_owned(),
        payload: b64.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: signer.key_id(),
            sig: b64.encode(sig),
        }],
    }
}

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Malformed(String),
    /// No signature verifies; the key ids the envelope names.
    BadSignature {
        key_ids: Vec<String>,
    },
}

/// Checks the envelope's signature with `key` and returns its statement.
pub fn open(bytes: &[u8], key: &p256::ecdsa::VerifyingKey) -> Result<Statement, OpenError> {
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| OpenError::Malformed(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != IN_TOTO {
        return Err(OpenError::Malformed(format!(
            "payloadType is {:?}, not {IN_TOTO:?}",
            env.payload_type
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(&env.payload)
        .map_err(|e| OpenError::Malformed(format!("payload is not base64: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let good = env.signatures.iter().any(|s| {
        b64.decode(&s.sig)
            .is_ok_and(|sig| verifies(key, &message, &sig))
    });
    if !good {
        return Err(OpenError::BadSignature {
            key_ids: env.signatures.iter().map(|s| s.keyid.clone()).collect(),
        });
    }
    serde_json::from_slice(&payload)
        .map_err(|e| OpenError::Malformed(format!("the payload is not an in-toto statement: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::keys;
    use crate::cosign::signer::KeySigner;

    #[test]
    fn pae_follows_the_dsse_spec() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn envelopes_open_only_untampered_and_with_the_right_key() {
        let signer = KeySigner::new(keys::generate());
        let st = statement(
            "r/app",
            "sha256:abcd",
            "https://cyclonedx.org/bom",
            serde_json::json!({"bomFormat": "CycloneDX"}),
        );
        let env = seal(&st, &signer);
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&bytes, signer.public_key()).unwrap(), st);
        assert_eq!(st.subject[0].digest["sha256"], "abcd");

        let other = KeySigner::new(keys::generate());
        assert!(matches!(
            open(&bytes, other.public_key()),
            Err(OpenError::BadSignature { .. })
        ));

        let mut tampered = env.clone();
        let forged = statement(
            "r/app",
            "sha256:ffff",
            "https://cyclonedx.org/bom",
            serde_json::json!({}),
        );
        tampered.payload =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(matches!(
            open(&serde_json::to_vec(&tampered).unwrap(), signer.public_key()),
            Err(OpenError::BadSignature { .. })
        ));
        assert!(matches!(
            open(b"{}", signer.public_key()),
            Err(OpenError::Malformed(_))
        ));
    }
}
