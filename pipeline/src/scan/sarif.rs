//! SARIF 2.1.0 for code-scanning upload (`--sarif`): one rule per
//! vulnerability id, one result per finding (level by severity: critical and
//! high are errors, medium warnings, the rest notes), and a note per expired
//! ignore rule pointing at the policy file. Ignored and suppressed findings
//! carry a SARIF `suppressions` entry saying why.
//!
//! Paths: code scanning reads every `artifactLocation.uri` as a path in the
//! repository. So a path is written only when it is one, relative to the
//! repository root ([`SarifContext`]): the policy file of an expired-rule
//! note, and the Dockerfile a finding is attached to. A path inside the
//! image (`/var/lib/dpkg/status`) is not a file of the repository: it goes
//! in a logical location, never in `artifactLocation`. Without a root (or
//! for a file outside it), the physical location is left out rather than
//! written absolute, and `runs[].properties.policy` holds the file name.
//!
//! Every result has `partialFingerprints` made only of what identifies the
//! finding (never the run, the date or an absolute path), so the same
//! finding gets the same fingerprint in every run and code scanning tracks
//! it as one alert.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::evaluate::{Evaluation, Finding, RuleOutcome, Status};
use super::severity::Severity;

pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The rule id of the notes about expired ignore rules.
pub const EXPIRED_RULE_ID: &str = "pipeline/expired-ignore-rule";
/// `partialFingerprints` key of a finding (vulnerability in a package).
pub const FINDING_FINGERPRINT: &str = "pipelineVulnerabilityPackage/v1";
/// `partialFingerprints` key of an expired-rule note.
pub const EXPIRED_RULE_FINGERPRINT: &str = "pipelineExpiredIgnoreRule/v1";

/// What SARIF needs to know about the repository the scan is uploaded for.
#[derive(Debug, Clone, Default)]
pub struct SarifContext {
    /// The repository root, absolute. Paths are written relative to it.
    pub repository_root: Option<PathBuf>,
    /// The Dockerfile the scanned image was built from: findings are
    /// attached to it (where a fix goes: a newer base image or package).
    pub dockerfile: Option<PathBuf>,
}

impl SarifContext {
    /// The context of the git work tree that contains `dir` (the nearest
    /// ancestor holding `.git`, a directory or a worktree's file).
    pub fn discover(dir: &Path) -> SarifContext {
        SarifContext {
            repository_root: repository_root(dir),
            dockerfile: None,
        }
    }

    /// `path` relative to the repository root, `/`-separated, when it is
    /// inside it; `None` otherwise (or when no root is known).
    pub fn relative(&self, path: &Path) -> Option<String> {
        let root = self.repository_root.as_deref()?;
        let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
        let path = path.canonicalize().ok()?;
        let rel = path.strip_prefix(&root).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

/// The root of the git work tree containing `dir`, if any.
pub fn repository_root(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_owned)
}

pub fn level(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Negligible | Severity::Unknown => "note",
    }
}

/// GitHub ranks alerts by this CVSS-like number (9.0+ critical, 7.0+ high,
/// 4.0+ medium, above 0 low); it follows Grype's severity, which the gate uses.
fn security_severity(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Negligible | Severity::Unknown => "0.0",
    }
}

/// One rule per vulnerability id, in order of first appearance (findings
/// are sorted), at the highest severity any finding of that id has.
struct Rules<'a>(Vec<(&'a str, &'a Finding, Severity)>);

impl<'a> Rules<'a> {
    fn of(findings: &'a [Finding]) -> Rules<'a> {
        let mut rules: Vec<(&str, &Finding, Severity)> = Vec::new();
        for f in findings {
            match rules.iter_mut().find(|(id, ..)| *id == f.id) {
                Some(entry) => entry.2 = entry.2.max(f.severity),
                None => rules.push((&f.id, f, f.severity)),
            }
        }
        Rules(rules)
    }

    fn index(&self, id: &str) -> usize {
        self.0
            .iter()
            .position(|(rule, ..)| *rule == id)
            .unwrap_or(0)
    }

    fn to_json(&self) -> Vec<Value> {
        self.0
            .iter()
            .map(|(id, f, sev)| rule(id, f, *sev))
            .collect()
    }
}

fn rule(id: &str, f: &Finding, sev: Severity) -> Value {
    let help_uri = f
        .urls
        .iter()
        .chain(std::iter::once(&f.data_source))
        .find(|u| u.starts_with("https://") || u.starts_with("http://"));
    let description = if f.description.trim().is_empty() {
        format!(
            "{id} (see {})",
            help_uri.map_or("the vulnerability database", |u| u.as_str())
        )
    } else {
        f.description.clone()
    };
    let mut rule = json!({
        "id": id,
        "shortDescription": {"text": format!("{id} ({})", sev.as_str())},
        "fullDescription": {"text": description},
        "defaultConfiguration": {"level": level(sev)},
        "properties": {
            "security-severity": security_severity(sev),
            "tags": ["security", "vulnerability", sev.key()],
        },
    });
    if let Some(uri) = help_uri {
        rule["helpUri"] = json!(uri);
    }
    rule
}

fn fingerprint(parts: &[&str]) -> String {
    crate::digest::hex(&Sha256::digest(parts.join("\n")))
}

impl Evaluation {
    /// The evaluation as SARIF 2.1.0, paths relative to `context`'s
    /// repository root.
    pub fn to_sarif(&self, context: &SarifContext) -> Value {
        let rules = Rules::of(&self.findings);
        let mut rule_values = rules.to_json();
        let dockerfile = context
            .dockerfile
            .as_deref()
            .and_then(|d| context.relative(d));
        let mut results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| self.result(f, rules.index(&f.id), dockerfile.as_deref()))
            .collect();
        let policy = self.policy_in_repository(context);
        let expired: Vec<&RuleOutcome> = self.expired_rules().collect();
        if !expired.is_empty() {
            let index = rule_values.len();
            rule_values.push(expired_rule());
            results.extend(expired.into_iter().map(|r| expired_note(r, index, &policy)));
        }
        json!({
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "pipeline",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/anchore/grype",
                    "rules": rule_values,
                }},
                "results": results,
                "properties": {
                    "verdict": if self.passed() { "pass" } else { "fail" },
                    "summary": self.summary(),
                    "policy": policy.name(),
                    "grypeVersion": self.grype.version,
                },
            }],
        })
    }

    /// Where the policy file is, as SARIF may say it.
    fn policy_in_repository(&self, context: &SarifContext) -> PolicyLocation {
        let relative = self
            .policy_path
            .as_deref()
            .and_then(|p| context.relative(p));
        match relative {
            Some(path) => PolicyLocation::InRepository(path),
            None => PolicyLocation::Elsewhere(
                self.policy_path
                    .as_deref()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| {
                        // Parsed from text: its origin is a label, not a
                        // file; only its last component is kept.
                        self.policy
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    }),
            ),
        }
    }

    fn result(&self, f: &Finding, rule_index: usize, dockerfile: Option<&str>) -> Value {
        let mut result = json!({
            "ruleId": f.id,
            "ruleIndex": rule_index,
            "level": level(f.severity),
            "message": {"text": self.message(f)},
            "locations": [finding_location(f, dockerfile)],
            "partialFingerprints": {
                FINDING_FINGERPRINT: fingerprint(&[&f.id, &f.package, &f.version, &f.purl]),
            },
            "properties": {
                "status": f.status.as_str(),
                "severity": f.severity.key(),
                "package": f.package,
                "version": f.version,
                "purl": f.purl,
                "fixState": f.fix_state.as_str(),
                "imagePath": f.location,
            },
        });
        if matches!(f.status, Status::Ignored | Status::Suppressed) {
            result["suppressions"] = json!([{
                "kind": "external",
                "status": "accepted",
                "justification": f.why(self.fail_on),
            }]);
        }
        result
    }

    fn message(&self, f: &Finding) -> String {
        let mut text = format!(
            "{} ({}) in {} {}: {}, {}.",
            f.id,
            f.severity.as_str(),
            f.package,
            f.version,
            f.status.as_str(),
            f.why(self.fail_on)
        );
        if !f.fix_versions.is_empty() {
            text.push_str(&format!(" Fixed in {}.", f.fix_versions.join(", ")));
        }
        if let Some(path) = &f.location {
            text.push_str(&format!(" Found at {path} in the image."));
        }
        text
    }
}

/// The policy file: a path in the repository, or only its name.
enum PolicyLocation {
    InRepository(String),
    Elsewhere(String),
}

impl PolicyLocation {
    fn name(&self) -> &str {
        match self {
            PolicyLocation::InRepository(p) | PolicyLocation::Elsewhere(p) => p,
        }
    }
}

/// A finding's location: the package (its purl) and where the image holds
/// it, as logical locations; the Dockerfile, when known, as the file.
fn finding_location(f: &Finding, dockerfile: Option<&str>) -> Value {
    let mut logical = vec![json!({
        "name": if f.purl.is_empty() { format!("{}@{}", f.package, f.version) } else { f.purl.clone() },
        "kind": "package",
    })];
    if let Some(path) = &f.location {
        logical.push(json!({"name": path, "kind": "resource"}));
    }
    let mut location = json!({"logicalLocations": logical});
    if let Some(file) = dockerfile {
        location["physicalLocation"] = json!({"artifactLocation": {"uri": uri(file)}});
    }
    location
}

fn expired_rule() -> Value {
    json!({
        "id": EXPIRED_RULE_ID,
        "shortDescription": {"text": "An ignore rule of the scan policy has expired"},
        "fullDescription": {"text": "The rule no longer waives findings. Renew it with a new expiry date and reason, or remove it."},
        "defaultConfiguration": {"level": "note"},
    })
}

fn expired_note(r: &RuleOutcome, rule_index: usize, policy: &PolicyLocation) -> Value {
    let location = match policy {
        PolicyLocation::InRepository(path) => json!({
            "physicalLocation": {"artifactLocation": {"uri": uri(path)}},
            "logicalLocations": [{"name": format!("ignore[{}]", r.rule.index), "kind": "element"}],
        }),
        PolicyLocation::Elsewhere(name) => json!({
            "logicalLocations": [{
                "name": format!("ignore[{}]", r.rule.index),
                "fullyQualifiedName": format!("{name}#ignore[{}]", r.rule.index),
                "kind": "element",
            }],
        }),
    };
    json!({
        "ruleId": EXPIRED_RULE_ID,
        "ruleIndex": rule_index,
        "level": "note",
        "message": {"text": format!(
            "ignore[{}] ({}) expired on {} and no longer applies (it would match {} finding(s)): {}",
            r.rule.index, r.rule.describe(), r.rule.expires, r.matched, r.rule.reason
        )},
        "locations": [location],
        // What the rule matches identifies it: not its position in the
        // list, nor where the policy file sits on this machine.
        "partialFingerprints": {
            EXPIRED_RULE_FINGERPRINT: fingerprint(&[EXPIRED_RULE_ID, policy.name(), &r.rule.describe()]),
        },
    })
}

/// A relative URI reference for a path: characters URIs do not allow as
/// they are are percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_repository_or_left_out() {
        let dir = test_support::TempDir::new("sarif-root");
        std::fs::create_dir_all(dir.path().join("repo/.git")).unwrap();
        std::fs::create_dir_all(dir.path().join("repo/policies")).unwrap();
        std::fs::write(dir.path().join("repo/policies/scan.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("outside.yaml"), "x").unwrap();
        let ctx = SarifContext::discover(&dir.path().join("repo/policies"));
        assert_eq!(
            ctx.repository_root,
            Some(dir.path().join("repo").canonicalize().unwrap())
        );
        assert_eq!(
            ctx.relative(&dir.path().join("repo/policies/scan.yaml"))
                .as_deref(),
            Some("policies/scan.yaml")
        );
        assert_eq!(ctx.relative(&dir.path().join("outside.yaml")), None);
        assert_eq!(
            SarifContext::default().relative(&dir.path().join("outside.yaml")),
            None
        );
        assert_eq!(uri("a b/c#d"), "a%20b/c%23d");
    }
}
