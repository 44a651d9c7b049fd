//! Attestation predicates: checking that a document is of the kind it is
//! attested as, and wrapping a Grype report into cosign's vuln predicate.

use serde_json::{Value, json};

use super::PredicateKind;

/// A document that is not a predicate of the kind it is attested as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredicateError {
    #[error("not a CycloneDX SBOM (no \"bomFormat\": \"CycloneDX\")")]
    NotCycloneDx,
    #[error(
        "neither a Grype JSON report (\"matches\") nor a vuln predicate (\"scanner\".\"result\")"
    )]
    NotVuln,
    #[error("not a SLSA v1 provenance predicate (buildDefinition, runDetails)")]
    NotSlsaProvenance,
}

/// `value` as a predicate of `kind`; a raw Grype report is wrapped into
/// cosign's vuln predicate.
pub fn check(kind: PredicateKind, value: Value) -> Result<Value, PredicateError> {
    match kind {
        PredicateKind::CycloneDx
            if value.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX") =>
        {
            Ok(value)
        }
        PredicateKind::CycloneDx => Err(PredicateError::NotCycloneDx),
        PredicateKind::Vuln if value.pointer("/scanner/result").is_some() => Ok(value),
        PredicateKind::Vuln if value.get("matches").is_some() => Ok(vuln(value, None, None)),
        PredicateKind::Vuln => Err(PredicateError::NotVuln),
        PredicateKind::SlsaProvenance
            if value.get("buildDefinition").is_some() && value.get("runDetails").is_some() =>
        {
            Ok(value)
        }
        PredicateKind::SlsaProvenance => Err(PredicateError::NotSlsaProvenance),
    }
}

/// cosign's vuln predicate around a Grype report; scan times default to now.
pub fn vuln(report: Value, started: Option<String>, finished: Option<String>) -> Value {
    let version = report
        .pointer("/descriptor/version")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let db = report
        .pointer("/descriptor/db")
        .cloned()
        .unwrap_or(Value::Null);
    let now = crate::clock::now_rfc3339();
    json!({
        "invocation": { "parameters": null, "uri": "", "event_id": "", "builder.id": "" },
        "scanner": {
            "uri": format!("pkg:github/anchore/grype@{version}"),
            "version": version,
            "db": { "uri": "", "version": db.get("schemaVersion").map(ToString::to_string).unwrap_or_default() },
            "result": report,
        },
        "metadata": {
            "scanStartedOn": started.unwrap_or_else(|| now.clone()),
            "scanFinishedOn": finished.unwrap_or(now),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_are_checked_by_kind_and_grype_reports_wrapped() {
        let bom = json!({"bomFormat": "CycloneDX"});
        assert_eq!(check(PredicateKind::CycloneDx, bom.clone()).unwrap(), bom);
        assert_eq!(
            check(PredicateKind::CycloneDx, json!({})).unwrap_err(),
            PredicateError::NotCycloneDx
        );
        let wrapped = check(
            PredicateKind::Vuln,
            json!({"matches": [], "descriptor": {"version": "0.80.0"}}),
        )
        .unwrap();
        assert_eq!(wrapped["scanner"]["version"], "0.80.0");
        assert!(wrapped["scanner"]["result"]["matches"].is_array());
        assert_eq!(
            check(
                PredicateKind::SlsaProvenance,
                json!({"buildDefinition": {}})
            )
            .unwrap_err(),
            PredicateError::NotSlsaProvenance
        );
    }
}
