//! SARIF 2.1.0 for code-scanning upload (`--sarif`): one rule per
//! vulnerability id, one result per finding (level by severity: critical and
//! high are errors, medium warnings, the rest notes), and a note per expired
//! ignore rule pointing at the policy file. Ignored and suppressed findings
//! carry a SARIF `suppressions` entry saying why.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::evaluate::{Evaluation, Finding, Status};
use super::severity::Severity;

pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The rule id of the notes about expired ignore rules.
pub const EXPIRED_RULE_ID: &str = "pipeline/expired-ignore-rule";

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

impl Evaluation {
    pub fn to_sarif(&self) -> Value {
        // Rules in order of first appearance (findings are sorted), one per id,
        // at the highest severity any finding of that id has.
        let mut rules: Vec<(&str, &Finding, Severity)> = Vec::new();
        for f in &self.findings {
            match rules.iter_mut().find(|(id, ..)| *id == f.id) {
                Some(entry) => entry.2 = entry.2.max(f.severity),
                None => rules.push((&f.id, f, f.severity)),
            }
        }
        let mut rule_values: Vec<Value> = rules
            .iter()
            .map(|(id, f, sev)| {
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
                    "defaultConfiguration": {"level": level(*sev)},
                    "properties": {
                        "security-severity": security_severity(*sev),
                        "tags": ["security", "vulnerability", sev.key()],
                    },
                });
                if let Some(uri) = help_uri {
                    rule["helpUri"] = json!(uri);
                }
                rule
            })
            .collect();

        let mut results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                let rule_index = rules.iter().position(|(id, ..)| *id == f.id).unwrap_or(0);
                self.result(f, rule_index)
            })
            .collect();

        let expired: Vec<_> = self.expired_rules().collect();
        if !expired.is_empty() {
            let index = rule_values.len();
            rule_values.push(json!({
                "id": EXPIRED_RULE_ID,
                "shortDescription": {"text": "An ignore rule of the scan policy has expired"},
                "fullDescription": {"text": "The rule no longer waives findings. Renew it with a new expiry date and reason, or remove it."},
                "defaultConfiguration": {"level": "note"},
            }));
            for r in expired {
                results.push(json!({
                    "ruleId": EXPIRED_RULE_ID,
                    "ruleIndex": index,
                    "level": "note",
                    "message": {"text": format!(
                        "ignore[{}] ({}) expired on {} and no longer applies (it would match {} finding(s)): {}",
                        r.rule.index, r.rule.describe(), r.rule.expires, r.matched, r.rule.reason
                    )},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri(&self.policy)}}}],
                }));
            }
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
                    "policy": self.policy,
                    "grypeVersion": self.grype.version,
                },
            }],
        })
    }

    fn result(&self, f: &Finding, rule_index: usize) -> Value {
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
        let logical = json!([{
            "name": if f.purl.is_empty() { format!("{}@{}", f.package, f.version) } else { f.purl.clone() },
            "kind": "package",
        }]);
        let location = match &f.location {
            Some(path) => json!({
                "physicalLocation": {"artifactLocation": {"uri": uri(path.trim_start_matches('/'))}},
                "logicalLocations": logical,
            }),
            None => json!({"logicalLocations": logical}),
        };
        let fingerprint = Sha256::digest(format!(
            "{}\n{}\n{}\n{}",
            f.id, f.package, f.version, f.purl
        ));
        let mut result = json!({
            "ruleId": f.id,
            "ruleIndex": rule_index,
            "level": level(f.severity),
            "message": {"text": text},
            "locations": [location],
            "partialFingerprints": {
                "pipelineVulnerabilityPackage/v1": fingerprint.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            },
            "properties": {
                "status": f.status.as_str(),
                "severity": f.severity.key(),
                "package": f.package,
                "version": f.version,
                "purl": f.purl,
                "fixState": f.fix_state.as_str(),
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
