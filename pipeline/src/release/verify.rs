//! Verification for a promotion: every check an environment requires, run
//! against the registry for an image by digest, each outcome named, plus
//! what the environments view shows (the commit, the SBOM and the scan).
//!
//! Checks, in order:
//! - `image`: the registry has a manifest with this digest;
//! - `signature`: a signature for this digest verifies with one of the
//!   environment's keys;
//! - `attestation:<kind>`: each required attestation is there, signed with
//!   one of the keys, for this digest;
//! - `scan`: the Grype report in the vuln attestation passes the
//!   environment's scan policy as it is today (rules expire, VEX changes);
//! - `provenance`: the SLSA provenance names the commit the image was built
//!   from, from a clean work tree, the same the image's
//!   `org.opencontainers.image.revision` label gives.
//!
//! A check that fails is in the report, not an error: the caller sees every
//! failure at once. Errors are what stops checking (the registry
//! unreachable, credentials refused).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::policy::{Environment, TrustedKey};
use crate::cosign::storage::{self, Kind};
use crate::cosign::{PredicateKind, dsse, verify};
use crate::credentials::CredentialsError;
use crate::error::{Blame, Classify};
use crate::reference::Pinned;
use crate::registry::{Client, RegistryError, manifest};
use crate::scan::{Date, Status};

/// A check a promotion runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Image,
    Signature,
    Attestation(PredicateKind),
    Scan,
    Provenance,
}

impl Check {
    /// `image`, `signature`, `attestation:vuln`, `scan`, `provenance`.
    pub fn name(self) -> String {
        match self {
            Check::Image => "image".into(),
            Check::Signature => "signature".into(),
            Check::Attestation(k) => format!("attestation:{}", k.name()),
            Check::Scan => "scan".into(),
            Check::Provenance => "provenance".into(),
        }
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    pub check: Check,
    pub passed: bool,
    /// What it found (`2 signatures valid with key 1a2b...`), or why it
    /// failed.
    pub detail: String,
}

/// What the SBOM attestation describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomSummary {
    pub components: usize,
    /// Components by package type (`deb`, `python`, `npm`...).
    pub by_type: BTreeMap<String, usize>,
}

/// The scan, as the environment's policy judges it today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSummary {
    pub passed: bool,
    /// `2 critical, 1 high failing; 3 ignored`.
    pub summary: String,
    /// Findings by status (`failing`, `passing`, `ignored`, `suppressed`).
    pub by_status: BTreeMap<String, usize>,
    /// Findings by severity, whatever their status.
    pub by_severity: BTreeMap<String, usize>,
    /// The policy file it was judged under.
    pub policy: String,
}

/// Every check for one image and one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationReport {
    /// `REPO@sha256:...`.
    pub image: String,
    pub digest: String,
    pub environment: String,
    pub checks: Vec<CheckOutcome>,
    /// The commit the provenance names.
    pub commit: Option<String>,
    /// Where that commit lives (the git remote).
    pub source: Option<String>,
    pub sbom: Option<SbomSummary>,
    pub scan: Option<ScanSummary>,
    pub seconds: f64,
}

impl VerificationReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// `signature: ...; scan: ...`: the failed checks in one line.
    pub fn failure_summary(&self) -> String {
        self.failures()
            .map(|c| format!("{}: {}", c.check.name(), c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn record_pass(&mut self, check: Check, detail: String) {
        self.record(check, Ok::<_, std::convert::Infallible>(detail));
    }

    /// A check's outcome: what it found when it passed, why not otherwise.
    fn record(&mut self, check: Check, result: Result<String, impl std::fmt::Display>) {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d.to_string()),
        };
        self.checks.push(CheckOutcome {
            check,
            passed,
            detail,
        });
    }
}

/// Why no trusted key verified: each key's refusal, in the order of the
/// environment's keys.
#[derive(Debug, thiserror::Error)]
#[error("{}", .refusals.join("; "))]
struct NoKeyVerifies {
    refusals: Vec<String>,
}

/// Why the attested scan could not be judged.
#[derive(Debug, thiserror::Error)]
enum AttestedScanError {
    #[error("the vuln attestation holds no scanner.result")]
    NoResult,
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Report(#[from] crate::scan::ScanError),
}

/// Why the provenance names no commit the environment can trust.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum ProvenanceError {
    #[error("it names no commit (buildDefinition.externalParameters.revision)")]
    NoCommit,
    #[error("{commit:?} is not a full commit SHA")]
    NotASha { commit: String },
    #[error(
        "built from a work tree with uncommitted changes on top of {commit}: not a known commit"
    )]
    Dirty { commit: String },
    #[error(
        "it names commit {commit}, but the image's {} label says {label}",
        crate::labels::REVISION
    )]
    LabelDisagrees { commit: String, label: String },
}

/// What stopped verification before its checks could say anything.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("verifying {image}: {source}")]
    Registry {
        image: String,
        source: Box<RegistryError>,
    },
    #[error("internal error: the verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Classify for VerificationError {
    fn blame(&self) -> Blame {
        match self {
            VerificationError::Credentials(_) => Blame::Usage,
            VerificationError::Registry { source, .. } => source.blame(),
            VerificationError::Task(_) => Blame::Infra,
        }
    }
}

/// Runs every check `env` requires on `image`. Registries in `insecure`
/// (`host:port`) are reached over plain HTTP besides loopback ones.
pub async fn verify_for_environment(
    image: &Pinned,
    env: &Environment,
    insecure: &[String],
) -> Result<VerificationReport, VerificationError> {
    let credentials = crate::credentials::for_registry(&image.reference().registry)?;
    let client = Client::new(image.reference(), insecure, credentials);
    let (image, env) = (image.clone(), env.clone());
    let today = time::OffsetDateTime::now_utc().date();
    tokio::task::spawn_blocking(move || checks(&client, &image, &env, today)).await?
}

fn checks(
    client: &Client,
    image: &Pinned,
    env: &Environment,
    today: Date,
) -> Result<VerificationReport, VerificationError> {
    let started = Instant::now();
    let registry = |source| VerificationError::Registry {
        image: image.to_string(),
        source: Box::new(source),
    };
    let mut report = VerificationReport {
        image: image.to_string(),
        digest: image.digest().to_owned(),
        environment: env.name.clone(),
        checks: Vec::new(),
        commit: None,
        source: None,
        sbom: None,
        scan: None,
        seconds: 0.0,
    };
    let labels = match image_labels(client, image.digest()) {
        Ok(labels) => labels,
        Err(e) if e.is_usage() => {
            report.record(
                Check::Image,
                Err(format!(
                    "{e}; push it first, and promote what `pipeline release` printed"
                )),
            );
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        Err(e) => return Err(registry(e)),
    };
    report.record_pass(
        Check::Image,
        format!("{} is in {}", image.digest(), image.reference().registry),
    );
    let signature = signature(client, image, &env.verify.keys).map_err(registry)?;
    report.record(Check::Signature, signature);
    let entries = storage::read(client, image.digest(), Kind::Attestations)
        .map_err(registry)?
        .unwrap_or_default();
    for kind in &env.verify.attestations {
        attested(&mut report, &entries, *kind, image, env, &labels, today);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The image's config labels (empty for an index, whose images each have
/// their own).
fn image_labels(client: &Client, digest: &str) -> Result<BTreeMap<String, String>, RegistryError> {
    let (bytes, content_type, _) = client.manifest(digest)?;
    let config = match manifest::parse(&bytes, content_type.as_deref()) {
        Ok(manifest::Parsed::Image { config, .. }) => config,
        Ok(manifest::Parsed::Index(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(client.invalid(&format!("manifest {digest}"), e)),
    };
    let bytes = client.blob_bytes(
        &config.digest,
        crate::registry::CONFIG_CAP,
        "the image config",
    )?;
    let config =
        manifest::parse_config(&bytes).map_err(|e| client.invalid("the image config", e))?;
    Ok(config.config.and_then(|c| c.labels).unwrap_or_default())
}

/// The first key a signature verifies with; else why none does. Only the
/// registry failing is an error.
fn signature(
    client: &Client,
    image: &Pinned,
    keys: &[TrustedKey],
) -> Result<Result<String, NoKeyVerifies>, RegistryError> {
    let mut refusals = Vec::new();
    for key in keys {
        match verify::verify_signatures(
            client,
            &image.to_string(),
            image.digest(),
            &key.key,
            &key.id,
        ) {
            Ok(n) => {
                return Ok(Ok(format!(
                    "{n} signature(s) valid with key {} ({})",
                    short(&key.id),
                    key.path.display()
                )));
            }
            Err(verify::VerifyError::Registry(e)) if !e.is_usage() => return Err(e),
            Err(e) => refusals.push(e.to_string()),
        }
    }
    Ok(Err(NoKeyVerifies { refusals }))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(16)]
}

/// The `kind` attestation signed with one of the keys; with what it
/// carries checked and summarized.
fn attested(
    report: &mut VerificationReport,
    entries: &[storage::Entry],
    kind: PredicateKind,
    image: &Pinned,
    env: &Environment,
    labels: &BTreeMap<String, String>,
    today: Date,
) {
    let mut refusals = Vec::new();
    let mut found = None;
    for key in &env.verify.keys {
        match verify::attestation(
            entries,
            kind,
            &image.to_string(),
            image.digest(),
            &key.key,
            &key.id,
        ) {
            Ok(statement) => {
                found = Some((statement, key));
                break;
            }
            Err(e) => refusals.push(e.to_string()),
        }
    }
    let Some((statement, key)) = found else {
        report.record(Check::Attestation(kind), Err(NoKeyVerifies { refusals }));
        let dependent = match kind {
            PredicateKind::Vuln => Some(Check::Scan),
            PredicateKind::SlsaProvenance => Some(Check::Provenance),
            PredicateKind::CycloneDx => None,
        };
        if let Some(check) = dependent {
            report.record(
                check,
                Err(format!(
                    "no valid {} attestation to read it from",
                    kind.name()
                )),
            );
        }
        return;
    };
    report.record_pass(
        Check::Attestation(kind),
        format!("signed with key {}", short(&key.id)),
    );
    read_attested(report, &statement, kind, image, env, labels, today);
}

/// What an attestation carries: the SBOM's summary, the scan judged under
/// the environment's policy, the provenance's commit.
fn read_attested(
    report: &mut VerificationReport,
    statement: &dsse::Statement,
    kind: PredicateKind,
    image: &Pinned,
    env: &Environment,
    labels: &BTreeMap<String, String>,
    today: Date,
) {
    match kind {
        PredicateKind::CycloneDx => report.sbom = Some(sbom_summary(statement)),
        PredicateKind::Vuln => {
            let result = match scan(statement, image, env, today) {
                Ok(s) => {
                    let result = if s.passed {
                        Ok(format!("passes {}: {}", s.policy, s.summary))
                    } else {
                        Err(format!("fails {}: {}", s.policy, s.summary))
                    };
                    report.scan = Some(s);
                    result
                }
                Err(e) => Err(e.to_string()),
            };
            report.record(Check::Scan, result);
        }
        PredicateKind::SlsaProvenance => {
            let result = provenance(statement, labels);
            if let Ok((commit, source)) = &result {
                report.commit = Some(commit.clone());
                report.source = source.clone();
            }
            report.record(
                Check::Provenance,
                result.map(|(c, s)| {
                    format!(
                        "built from commit {c}{}",
                        s.map(|s| format!(" of {s}")).unwrap_or_default()
                    )
                }),
            );
        }
    }
}

/// Components of the SBOM, by Syft's package type (else the purl's).
fn sbom_summary(statement: &dsse::Statement) -> SbomSummary {
    let components = statement.predicate["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut by_type = BTreeMap::new();
    for c in &components {
        let syft_type = c["properties"].as_array().and_then(|props| {
            props
                .iter()
                .find(|p| p["name"] == "syft:package:type")
                .and_then(|p| p["value"].as_str())
        });
        let purl_type = c["purl"]
            .as_str()
            .and_then(|p| p.strip_prefix("pkg:"))
            .and_then(|p| p.split('/').next());
        let kind = syft_type.or(purl_type).unwrap_or("other");
        *by_type.entry(kind.to_owned()).or_insert(0) += 1;
    }
    SbomSummary {
        components: components.len(),
        by_type,
    }
}

/// The attested Grype report under the environment's scan policy, today.
fn scan(
    statement: &dsse::Statement,
    image: &Pinned,
    env: &Environment,
    today: Date,
) -> Result<ScanSummary, AttestedScanError> {
    let raw = verify::scan_report(statement).ok_or(AttestedScanError::NoResult)?;
    let bytes = serde_json::to_vec(raw)?;
    let report = crate::scan::parse_report(&bytes, "the scan attestation")?;
    let policy = &env.verify.scan_policy;
    let evaluation =
        crate::scan::evaluate_for_image(&report, policy, &[], today, &[image.digest().to_owned()]);
    let mut by_severity = BTreeMap::new();
    for f in &evaluation.findings {
        *by_severity.entry(f.severity.key().to_owned()).or_insert(0) += 1;
    }
    let by_status = Status::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), evaluation.count(*s)))
        .collect();
    Ok(ScanSummary {
        passed: evaluation.passed(),
        summary: evaluation.summary(),
        by_status,
        by_severity,
        policy: env.verify.scan_policy_path.display().to_string(),
    })
}

/// The commit (and source) the provenance names: a full SHA, from a clean
/// work tree, agreeing with the image's revision label.
fn provenance(
    statement: &dsse::Statement,
    labels: &BTreeMap<String, String>,
) -> Result<(String, Option<String>), ProvenanceError> {
    let p = &statement.predicate;
    let commit = p
        .pointer("/buildDefinition/externalParameters/revision")
        .and_then(|v| v.as_str())
        .or_else(|| {
            p.pointer("/buildDefinition/resolvedDependencies")?
                .as_array()?
                .iter()
                .find_map(|d| d.pointer("/digest/gitCommit")?.as_str())
        })
        .ok_or(ProvenanceError::NoCommit)?;
    let is_sha = matches!(commit.len(), 40 | 64) && commit.chars().all(|c| c.is_ascii_hexdigit());
    if !is_sha {
        return Err(ProvenanceError::NotASha {
            commit: commit.to_owned(),
        });
    }
    if p.pointer("/buildDefinition/internalParameters/dirty")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        return Err(ProvenanceError::Dirty {
            commit: commit.to_owned(),
        });
    }
    if let Some(label) = labels.get(crate::labels::REVISION)
        && label != commit
    {
        return Err(ProvenanceError::LabelDisagrees {
            commit: commit.to_owned(),
            label: label.clone(),
        });
    }
    let source = p
        .pointer("/buildDefinition/externalParameters/source")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok((commit.to_owned(), source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement(predicate: serde_json::Value) -> dsse::Statement {
        dsse::Statement {
            kind: "https://in-toto.io/Statement/v1".into(),
            subject: vec![],
            predicate_type: PredicateKind::SlsaProvenance.uri().into(),
            predicate,
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn provenance_must_name_a_clean_commit_matching_the_label() {
        let good = statement(
            json!({"buildDefinition": {"externalParameters": {"revision": SHA, "source": "https://git.example/app"}, "internalParameters": {"dirty": false}}}),
        );
        let labels = BTreeMap::from([(crate::labels::REVISION.to_owned(), SHA.to_owned())]);
        assert_eq!(
            provenance(&good, &labels).unwrap(),
            (SHA.to_owned(), Some("https://git.example/app".to_owned()))
        );
        let other = BTreeMap::from([(crate::labels::REVISION.to_owned(), "f".repeat(40))]);
        assert!(
            provenance(&good, &other)
                .unwrap_err()
                .to_string()
                .contains("label says")
        );
        let dirty = statement(
            json!({"buildDefinition": {"externalParameters": {"revision": SHA}, "internalParameters": {"dirty": true}}}),
        );
        assert!(
            provenance(&dirty, &labels)
                .unwrap_err()
                .to_string()
                .contains("uncommitted")
        );
        let short =
            statement(json!({"buildDefinition": {"externalParameters": {"revision": "abc123"}}}));
        assert!(
            provenance(&short, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("not a full commit")
        );
        let none = statement(json!({"buildDefinition": {}}));
        assert!(
            provenance(&none, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("names no commit")
        );
        let from_deps = statement(
            json!({"buildDefinition": {"resolvedDependencies": [{"uri": "git+x", "digest": {"gitCommit": SHA}}]}}),
        );
        assert_eq!(provenance(&from_deps, &BTreeMap::new()).unwrap().0, SHA);
    }

    #[test]
    fn sboms_are_counted_by_package_type() {
        let s = statement(json!({"components": [
            {"purl": "pkg:deb/debian/bash@5", "properties": [{"name": "syft:package:type", "value": "deb"}]},
            {"purl": "pkg:pypi/requests@2"},
            {"name": "no purl"},
        ]}));
        let summary = sbom_summary(&s);
        assert_eq!(summary.components, 3);
        assert_eq!(
            summary.by_type,
            BTreeMap::from([("deb".into(), 1), ("pypi".into(), 1), ("other".into(), 1)])
        );
    }
}
