//! The JSON report of an evaluation (`--json`): every finding with its
//! status and why, counts, the verdict, and what produced the input. Keys
//! are always present (null when there is nothing), so consumers can rely
//! on the shape; `schema` changes when the shape does.

use serde_json::{Value, json};

use super::evaluate::{Evaluation, Finding, Reason, Status, VexCitation};
use super::severity::Severity;

/// Names the shape of [`Evaluation::to_json`].
pub const JSON_SCHEMA: &str = "pipeline.scan/v1";

impl Evaluation {
    pub fn to_json(&self) -> Value {
        let by_severity: serde_json::Map<String, Value> = Severity::ALL
            .iter()
            .rev()
            .map(|&sev| {
                let mut counts = serde_json::Map::new();
                counts.insert(
                    "total".to_owned(),
                    self.findings
                        .iter()
                        .filter(|f| f.severity == sev)
                        .count()
                        .into(),
                );
                for st in Status::ALL {
                    counts.insert(st.as_str().to_owned(), self.count_of(st, sev).into());
                }
                (sev.key().to_owned(), Value::Object(counts))
            })
            .collect();
        json!({
            "schema": JSON_SCHEMA,
            "verdict": if self.passed() { "pass" } else { "fail" },
            "passed": self.passed(),
            "summary": self.summary(),
            "evaluatedOn": self.today.to_string(),
            "policy": {
                "path": self.policy,
                "failOn": self.fail_on.key(),
                "onlyFixed": self.only_fixed,
            },
            "grype": {
                "name": self.grype.name,
                "version": self.grype.version,
                "timestamp": self.grype.timestamp,
                "db": self.grype.db,
            },
            "source": self.source,
            "distro": self.distro,
            "imageDigests": self.image_digests,
            "vexDocuments": self.vex_documents.iter().map(|d| json!({
                "origin": d.origin,
                "id": d.id,
                "statements": d.statements,
            })).collect::<Vec<_>>(),
            "counts": {
                "total": self.findings.len(),
                "failing": self.count(Status::Failing),
                "passing": self.count(Status::Passing),
                "ignored": self.count(Status::Ignored),
                "suppressed": self.count(Status::Suppressed),
                "expiredRules": self.expired_rules().count(),
                "bySeverity": by_severity,
            },
            "ignoreRules": self.rules.iter().map(|r| json!({
                "index": r.rule.index,
                "match": {
                    "vulnerability": r.rule.vulnerability,
                    "packageName": r.rule.package_name,
                    "packageVersion": r.rule.package_version,
                    "packagePurl": r.rule.package_purl.as_ref().map(|p| p.as_str()),
                    "fixState": r.rule.fix_state.map(|s| s.as_str()),
                },
                "reason": r.rule.reason,
                "expires": r.rule.expires.to_string(),
                "expired": r.expired,
                "matched": r.matched,
            })).collect::<Vec<_>>(),
            "findings": self.findings.iter().map(|f| finding(f, self)).collect::<Vec<_>>(),
        })
    }
}

fn finding(f: &Finding, ev: &Evaluation) -> Value {
    let reason = match &f.reason {
        Reason::AtOrAboveThreshold => json!({"kind": "at-or-above-threshold"}),
        Reason::BelowThreshold => json!({"kind": "below-threshold"}),
        Reason::NoFixAvailable => json!({"kind": "no-fix-available"}),
        Reason::IgnoreRule {
            rule,
            reason,
            expires,
        } => json!({
            "kind": "ignore-rule",
            "rule": rule,
            "reason": reason,
            "expires": expires.to_string(),
        }),
        Reason::Vex => json!({"kind": "vex"}),
    };
    json!({
        "id": f.id,
        "relatedIds": f.related,
        "severity": f.severity.key(),
        "status": f.status.as_str(),
        "why": f.why(ev.fail_on),
        "reason": reason,
        "package": {
            "name": f.package,
            "version": f.version,
            "type": f.kind,
            "purl": f.purl,
            "location": f.location,
        },
        "fix": {
            "state": f.fix_state.as_str(),
            "versions": f.fix_versions,
        },
        "dataSource": f.data_source,
        "urls": f.urls,
        "vex": f.vex.as_ref().map(citation),
        "expiredRules": f.expired_rules,
        "grypeIgnoreRules": f.grype_ignore_rules,
    })
}

fn citation(c: &VexCitation) -> Value {
    json!({
        "document": c.document,
        "origin": c.origin,
        "statement": c.statement,
        "statementId": c.statement_id,
        "status": c.status.as_str(),
        "justification": c.justification,
        "impactStatement": c.impact_statement,
        "actionStatement": c.action_statement,
        "product": c.product,
    })
}
