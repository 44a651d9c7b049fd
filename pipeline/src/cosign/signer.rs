//! Who signs. A key file today; keyless signing (a Fulcio certificate for an
//! OIDC identity, a Rekor log entry) needs the network and would be another
//! [`Signer`].

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};

use super::keys;

pub trait Signer: std::fmt::Debug + Send + Sync {
    /// ECDSA P-256 over SHA-256 of `message`, DER-encoded (what cosign writes).
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    fn public_key(&self) -> &VerifyingKey;
    /// Recorded with each signature so verification can tell "another key"
    /// from "tampered".
    fn key_id(&self) -> String {
        keys::key_id(self.public_key())
    }
}

/// A private key held in memory.
#[derive(Debug)]
pub struct KeySigner {
    key: SigningKey,
}

impl KeySigner {
    pub fn new(key: SigningKey) -> Self {
        KeySigner { key }
    }
}

impl Signer for KeySigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(message);
        sig.as_bytes().to_vec()
    }

    fn public_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }
}

/// Whether `der` is `key`'s signature of `message`. Malformed signatures
/// are simply not valid.
pub fn verifies(key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
    DerSignature::from_bytes(der).is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let s = KeySigner::new(keys::generate());
        let sig = s.sign(b"payload");
        assert!(verifies(s.public_key(), b"payload", &sig));
        assert!(!verifies(s.public_key(), b"payloaD", &sig));
        let other = KeySigner::new(keys::generate());
        assert!(!verifies(other.public_key(), b"payload", &sig));
        assert!(!verifies(s.public_key(), b"payload", b"not der"));
    }
}
