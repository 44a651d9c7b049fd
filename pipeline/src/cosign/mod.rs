//! cosign-compatible keys, signatures and attestations, stored in the
//! registry the way cosign stores them (the tag scheme `cosign verify` still
//! reads): `sha256-<hex>.sig` holds simple-signing payloads, one layer per
//! signature, the signature in the layer annotation
//! `dev.cosignproject.cosign/signature`; `sha256-<hex>.att` holds DSSE
//! envelopes of in-toto statements, one layer per attestation, annotated
//! with their `predicateType`.
//!
//! Signing goes through [`signer::Signer`]: a key file today. Keyless
//! signing (Fulcio certificates, Rekor entries) needs the network; it would
//! be another implementation of the same trait.

pub mod dsse;
pub mod keys;
pub mod payload;
pub mod predicate;
pub mod provenance;
pub mod publish;
pub mod signer;
pub mod storage;
pub mod verify;

/// Layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer media type of a DSSE envelope.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation holding a signature (base64 of its DER).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Annotation naming an attestation's predicate type.
pub const PREDICATE_ANNOTATION: &str = "predicateType";
/// Annotation with the id of the key that signed (ours; cosign ignores it).
pub const KEY_ID_ANNOTATION: &str = "dev.pipeline/key-id";

/// An attestation type that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attestation type {given:?}; use cyclonedx, vuln or slsaprovenance")]
pub struct UnknownPredicateKind {
    pub given: String,
}

/// The attestation kinds `--type` names, and their predicate types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateKind {
    CycloneDx,
    Vuln,
    SlsaProvenance,
}

impl PredicateKind {
    pub const ALL: [PredicateKind; 3] = [
        PredicateKind::CycloneDx,
        PredicateKind::Vuln,
        PredicateKind::SlsaProvenance,
    ];

    pub fn parse(s: &str) -> Result<PredicateKind, UnknownPredicateKind> {
        match s {
            "cyclonedx" => Ok(PredicateKind::CycloneDx),
            "vuln" => Ok(PredicateKind::Vuln),
            "slsaprovenance" | "slsaprovenance1" => Ok(PredicateKind::SlsaProvenance),
            other => Err(UnknownPredicateKind {
                given: other.to_owned(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PredicateKind::CycloneDx => "cyclonedx",
            PredicateKind::Vuln => "vuln",
            PredicateKind::SlsaProvenance => "slsaprovenance",
        }
    }

    /// The in-toto predicate type (cosign's for cyclonedx and vuln; SLSA
    /// provenance v1).
    pub fn uri(self) -> &'static str {
        match self {
            PredicateKind::CycloneDx => "https://cyclonedx.org/bom",
            PredicateKind::Vuln => "https://cosign.sigstore.dev/attestation/vuln/v1",
            PredicateKind::SlsaProvenance => "https://slsa.dev/provenance/v1",
        }
    }
}
