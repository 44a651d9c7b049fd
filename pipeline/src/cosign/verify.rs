//! Verifying an image: its signature, the digest the signature claims, each
//! required attestation, and that the scan it carries still passes the
//! current policy. Each failure has its own reason and exit code.

use base64::Engine as _;
use p256::ecdsa::VerifyingKey;

use super::storage::{self, Kind};
use super::{
    DSSE_ENVELOPE, KEY_ID_ANNOTATION, PREDICATE_ANNOTATION, PredicateKind, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING, dsse, keys, payload,
};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::scan::{Date, ScanError, ScanPolicy};

/// Exit codes of `pipeline verify`, one per reason.
pub const EXIT_UNSIGNED: u8 = 10;
pub const EXIT_WRONG_KEY: u8 = 11;
pub const EXIT_TAMPERED: u8 = 12;
pub const EXIT_DIGEST_MISMATCH: u8 = 13;
pub const EXIT_MISSING_ATTESTATION: u8 = 14;
pub const EXIT_FAILING_SCAN: u8 = 15;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{image} is not signed: no signature under {tag}")]
    Unsigned { image: String, tag: String },
    #[error(
        "{image}: {what} was made with another key (key id {found}), not the given one ({expected})"
    )]
    WrongKey {
        image: String,
        what: String,
        expected: String,
        found: String,
    },
    #[error(
        "{image}: {what} does not verify with the given key: its payload or signature was tampered with ({detail})"
    )]
    Tampered {
        image: String,
        what: String,
        detail: String,
    },
    #[error(
        "{image}: {what} is for {signed}, not for this image's digest {actual} (another image was pushed under the tag, or a signature was copied)"
    )]
    DigestMismatch {
        image: String,
        what: String,
        signed: String,
        actual: String,
    },
    #[error("{image} has no {kind} attestation signed with the given key (predicate type {uri})")]
    MissingAttestation {
        image: String,
        kind: String,
        uri: String,
    },
    #[error("{image}: the scan attestation fails the current policy: {summary}")]
    FailingScan { image: String, summary: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl VerifyError {
    pub fn exit_code(&self) -> Option<u8> {
        Some(match self {
            VerifyError::Unsigned { .. } => EXIT_UNSIGNED,
            VerifyError::WrongKey { .. } => EXIT_WRONG_KEY,
            VerifyError::Tampered { .. } => EXIT_TAMPERED,
            VerifyError::DigestMismatch { .. } => EXIT_DIGEST_MISMATCH,
            VerifyError::MissingAttestation { .. } => EXIT_MISSING_ATTESTATION,
            VerifyError::FailingScan { .. } => EXIT_FAILING_SCAN,
            VerifyError::Registry(_) => return None,
        })
    }
}

/// Why a stored scan does not pass the current policy.
#[derive(Debug, thiserror::Error)]
pub enum ScanRejected {
    /// The report in the attestation cannot be read.
    #[error(transparent)]
    Unreadable(#[from] ScanError),
    /// It fails the policy: the evaluation's summary.
    #[error("{summary}")]
    Fails { summary: String },
}

/// Re-evaluates a stored Grype report against the current policy.
pub type ScanCheck<'a> = &'a dyn Fn(&[u8]) -> Result<(), ScanRejected>;

/// The check of a stored Grype report against `policy`, judged on `today`.
pub fn policy_check(
    policy: &ScanPolicy,
    today: Date,
) -> impl Fn(&[u8]) -> Result<(), ScanRejected> {
    move |report: &[u8]| {
        let report = crate::scan::parse_report(report, "the scan attestation")?;
        let evaluation = crate::scan::evaluate(&report, policy, &[], today);
        if evaluation.passed() {
            Ok(())
        } else {
            Err(ScanRejected::Fails {
                summary: evaluation.summary(),
            })
        }
    }
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub digest: String,
    /// Signatures under the tag that verify with the key.
    pub signatures: usize,
    pub attestations: Vec<PredicateKind>,
}

/// A failure found while looking at one entry; the strongest wins.
enum Finding {
    Mismatch(String),
    OtherKey(String),
    Tampered(String),
}

fn worst(
    image: &str,
    what: &str,
    own_id: &str,
    findings: Vec<Finding>,
    actual: &str,
) -> VerifyError {
    let mut other = None;
    let mut tampered = None;
    for f in findings {
        match f {
            Finding::Mismatch(signed) => {
                return VerifyError::DigestMismatch {
                    image: image.to_owned(),
                    what: what.to_owned(),
                    signed,
                    actual: actual.to_owned(),
                };
            }
            Finding::OtherKey(id) => other = other.or(Some(id)),
            Finding::Tampered(d) => tampered = tampered.or(Some(d)),
        }
    }
    match (tampered, other) {
        (Some(detail), _) => VerifyError::Tampered {
            image: image.to_owned(),
            what: what.to_owned(),
            detail,
        },
        (None, Some(found)) => VerifyError::WrongKey {
            image: image.to_owned(),
            what: what.to_owned(),
            expected: own_id.to_owned(),
            found,
        },
        (None, None) => VerifyError::Tampered {
            image: image.to_owned(),
            what: what.to_owned(),
            detail: "no entry could be checked".into(),
        },
    }
}

/// A failed signature check: another key when the entry names a different
/// key id, tampering otherwise.
fn failed(named: Option<&str>, own_id: &str, detail: &str) -> Finding {
    match named {
        Some(id) if !id.is_empty() && id != own_id => Finding::OtherKey(id.to_owned()),
        _ => Finding::Tampered(detail.to_owned()),
    }
}

/// The digest `reference` names: the one it gives, or the one its tag (else
/// `latest`) names now; given both, they must agree.
pub fn resolve(client: &Client, reference: &Reference) -> Result<String, VerifyError> {
    match (&reference.tag, &reference.digest) {
        (Some(tag), Some(d)) => {
            let (_, _, now) = client.manifest(tag)?;
            if &now != d {
                return Err(VerifyError::DigestMismatch {
                    image: reference.to_string(),
                    what: format!("tag {tag}"),
                    signed: d.clone(),
                    actual: now,
                });
            }
            Ok(d.clone())
        }
        (_, Some(d)) => Ok(d.clone()),
        (tag, None) => Ok(client.manifest(tag.as_deref().unwrap_or("latest"))?.2),
    }
}

/// Verifies an image as `pipeline verify` does: [`resolve`] its digest,
/// then [`verify`] with the scan attestation judged against `policy` (when
/// given) today.
pub fn verify_reference(
    client: &Client,
    reference: &Reference,
    key: &VerifyingKey,
    required: &[PredicateKind],
    policy: Option<&ScanPolicy>,
) -> Result<Verified, VerifyError> {
    let digest = resolve(client, reference)?;
    let today = time::OffsetDateTime::now_utc().date();
    let check = policy.map(|p| policy_check(p, today));
    let check = check.as_ref().map(|c| c as ScanCheck<'_>);
    verify(
        client,
        &reference.to_string(),
        &digest,
        key,
        required,
        check,
    )
}

pub fn verify(
    client: &Client,
    image: &str,
    digest: &str,
    key: &VerifyingKey,
    required: &[PredicateKind],
    scan_check: Option<ScanCheck<'_>>,
) -> Result<Verified, VerifyError> {
    let own_id = keys::key_id(key);
    let signatures = verify_signatures(client, image, digest, key, &own_id)?;
    let mut attested = Vec::new();
    if !required.is_empty() {
        let entries = storage::read(client, digest, Kind::Attestations)?.unwrap_or_default();
        for kind in required {
            let statement = attestation(&entries, *kind, image, digest, key, &own_id)?;
            if *kind == PredicateKind::Vuln
                && let Some(check) = scan_check
            {
                check_scan(&statement, image, check)?;
            }
            attested.push(*kind);
        }
    }
    Ok(Verified {
        digest: digest.to_owned(),
        signatures,
        attestations: attested,
    })
}

/// How many signatures under the image's `.sig` tag verify with `key` for
/// `digest`; none is an error saying why.
pub fn verify_signatures(
    client: &Client,
    image: &str,
    digest: &str,
    key: &VerifyingKey,
    own_id: &str,
) -> Result<usize, VerifyError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let entries = storage::read(client, digest, Kind::Signatures)?.unwrap_or_default();
    let mut good = 0;
    let mut findings = Vec::new();
    for e in entries.iter().filter(|e| e.media_type == SIMPLE_SIGNING) {
        let named = e.annotations.get(KEY_ID_ANNOTATION).map(String::as_str);
        let sig = e
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .and_then(|s| b64.decode(s).ok());
        let Some(sig) = sig else {
            findings.push(Finding::Tampered(
                "a signature annotation is missing or not base64".into(),
            ));
            continue;
        };
        if !super::signer::verifies(key, &e.bytes, &sig) {
            findings.push(failed(
                named,
                own_id,
                "the signature does not match the payload",
            ));
            continue;
        }
        match payload::parse(&e.bytes) {
            Ok(p) if p.critical.image.docker_manifest_digest == digest => good += 1,
            Ok(p) => findings.push(Finding::Mismatch(p.critical.image.docker_manifest_digest)),
            Err(m) => findings.push(Finding::Tampered(m.to_string())),
        }
    }
    if good > 0 {
        Ok(good)
    } else if entries.is_empty() {
        Err(VerifyError::Unsigned {
            image: image.to_owned(),
            tag: storage::tag(digest, Kind::Signatures),
        })
    } else {
        Err(worst(image, "the signature", own_id, findings, digest))
    }
}

/// The statement of the `kind` attestation signed with `key` for `digest`,
/// among the entries under the image's `.att` tag.
pub fn attestation(
    entries: &[storage::Entry],
    kind: PredicateKind,
    image: &str,
    digest: &str,
    key: &VerifyingKey,
    own_id: &str,
) -> Result<dsse::Statement, VerifyError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let mut findings = Vec::new();
    let candidates = entries.iter().filter(|e| {
        e.media_type == DSSE_ENVELOPE
            && e.annotations.get(PREDICATE_ANNOTATION).map(String::as_str) == Some(kind.uri())
    });
    for e in candidates {
        match dsse::open(&e.bytes, key) {
            Ok(st) if st.predicate_type != kind.uri() => findings.push(Finding::Tampered(format!(
                "its statement's predicate type is {}, not {}",
                st.predicate_type,
                kind.uri()
            ))),
            Ok(st) => match st.subject.iter().find_map(|s| s.digest.get("sha256")) {
                Some(d) if d == hex => return Ok(st),
                Some(d) => findings.push(Finding::Mismatch(format!("sha256:{d}"))),
                None => findings.push(Finding::Tampered(
                    "its statement names no sha256 subject".into(),
                )),
            },
            Err(dsse::OpenError::Malformed(m)) => findings.push(Finding::Tampered(m)),
            Err(dsse::OpenError::BadSignature { key_ids }) => {
                let named = key_ids.iter().find(|k| !k.is_empty()).map(String::as_str);
                findings.push(failed(
                    named,
                    own_id,
                    "the envelope's signature does not match its payload",
                ));
            }
        }
    }
    if findings.is_empty() {
        return Err(VerifyError::MissingAttestation {
            image: image.to_owned(),
            kind: kind.name().to_owned(),
            uri: kind.uri().to_owned(),
        });
    }
    let what = format!("the {} attestation", kind.name());
    Err(worst(image, &what, own_id, findings, digest))
}

/// The Grype report a vuln attestation carries (cosign's vuln predicate:
/// `scanner.result`).
pub fn scan_report(statement: &dsse::Statement) -> Option<&serde_json::Value> {
    statement.predicate.pointer("/scanner/result")
}

/// The scan a vuln attestation carries, judged by `check`.
fn check_scan(
    statement: &dsse::Statement,
    image: &str,
    check: ScanCheck<'_>,
) -> Result<(), VerifyError> {
    let report = scan_report(statement).ok_or_else(|| VerifyError::Tampered {
        image: image.to_owned(),
        what: "the vuln attestation".into(),
        detail: "its predicate holds no scanner.result".into(),
    })?;
    let bytes = serde_json::to_vec(report).expect("serializing JSON");
    check(&bytes).map_err(|rejected| VerifyError::FailingScan {
        image: image.to_owned(),
        summary: rejected.to_string(),
    })
}
