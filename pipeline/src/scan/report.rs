//! Grype's JSON report (`grype ... -o json`), the parts the gate reads.
//!
//! Grype adds fields from release to release, so unknown fields are
//! tolerated here (unlike in our own policy file); the fields the gate
//! relies on are required and checked.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::ScanError;
use super::read::expect_json_object;
use super::severity::{FixState, Severity};

#[derive(Debug, Clone, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a Grype JSON report (an object with `matches`)"
)]
pub struct GrypeReport {
    pub matches: Vec<Match>,
    /// Matches Grype's own ignore rules dropped. The gate evaluates them
    /// like any other: only the policy may waive a finding.
    #[serde(default, deserialize_with = "nullable")]
    pub ignored_matches: Vec<IgnoredMatch>,
    /// What was scanned, as Grype describes it (kept as is for the outputs).
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub distro: Option<Value>,
    #[serde(default)]
    pub descriptor: Option<Descriptor>,
}

/// Which Grype, and which vulnerability database, made the report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// Its shape changed between database schemas 5 and 6; kept as is.
    #[serde(default)]
    pub db: Option<Value>,
    #[serde(default)]
    pub timestamp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    pub vulnerability: Vulnerability,
    #[serde(default, deserialize_with = "nullable")]
    pub related_vulnerabilities: Vec<RelatedVulnerability>,
    pub artifact: Artifact,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredMatch {
    #[serde(flatten)]
    pub matched: Match,
    #[serde(default, deserialize_with = "nullable")]
    pub applied_ignore_rules: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vulnerability {
    pub id: String,
    pub severity: Severity,
    #[serde(default)]
    pub data_source: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub urls: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub fix: Fix,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fix {
    #[serde(default, deserialize_with = "nullable")]
    pub versions: Vec<String>,
    #[serde(default)]
    pub state: FixState,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedVulnerability {
    pub id: String,
    #[serde(default)]
    pub data_source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub locations: Vec<Location>,
    #[serde(default)]
    pub purl: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    #[serde(default)]
    pub path: String,
}

impl GrypeReport {
    /// Every match, Grype-ignored ones included, with whether Grype ignored it.
    pub fn all_matches(&self) -> impl Iterator<Item = (&Match, Option<&IgnoredMatch>)> {
        self.matches.iter().map(|m| (m, None)).chain(
            self.ignored_matches
                .iter()
                .map(|im| (&im.matched, Some(im))),
        )
    }

    /// Digests of the scanned image that Grype recorded: the manifest digest
    /// and the digests of its repo digests (`repo@sha256:...`).
    pub fn image_digests(&self) -> Vec<String> {
        let Some(target) = self.source.as_ref().and_then(|s| s.get("target")) else {
            return Vec::new();
        };
        let repo_digests = target
            .get("repoDigests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|rd| rd.rsplit_once('@').map(|(_, d)| d));
        let mut out: Vec<String> = Vec::new();
        for d in target
            .get("manifestDigest")
            .and_then(Value::as_str)
            .into_iter()
            .chain(repo_digests)
        {
            let d = d.to_ascii_lowercase();
            if !d.is_empty() && !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }
}

/// Parses a Grype JSON report. `origin` names it in messages (a path,
/// `standard input`, `grype output for sbom:FILE`).
pub fn parse_report(bytes: &[u8], origin: &str) -> Result<GrypeReport, ScanError> {
    let err = |field: &str, problem: String| ScanError::Report {
        origin: origin.to_owned(),
        field: field.to_owned(),
        problem,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(err(
            "",
            "is empty; expected the output of `grype -o json`".to_owned(),
        ));
    }
    expect_json_object(bytes, "the output of `grype -o json`")
        .map_err(|p| err("", p.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let not_json = |e: serde_json::Error| {
        err(
            "",
            format!("is not valid JSON ({e}); expected the output of `grype -o json`"),
        )
    };
    let report: GrypeReport = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            not_json(inner)
        } else if field == "." {
            err("", format!("{inner}; {}", what_it_looks_like(bytes)))
        } else {
            err(&field, inner.to_string())
        }
    })?;
    // Trailing bytes after the report mean it was cut or concatenated.
    de.end().map_err(not_json)?;
    for (i, (m, ignored)) in report.all_matches().enumerate() {
        let field = match ignored {
            None => format!("matches[{i}]"),
            Some(_) => format!("ignoredMatches[{}]", i - report.matches.len()),
        };
        if m.vulnerability.id.trim().is_empty() {
            return Err(err(
                &format!("{field}.vulnerability.id"),
                "is empty".to_owned(),
            ));
        }
        if m.artifact.name.trim().is_empty() {
            return Err(err(
                &format!("{field}.artifact.name"),
                format!("is empty (vulnerability {})", m.vulnerability.id),
            ));
        }
    }
    Ok(report)
}

/// A hint for a JSON document that is not a Grype report.
fn what_it_looks_like(bytes: &[u8]) -> &'static str {
    let has = |needle: &str| memchr::memmem::find(bytes, needle.as_bytes()).is_some();
    if has("\"bomFormat\"") || has("\"spdxVersion\"") {
        "this looks like an SBOM: pass it with --sbom to scan it with Grype"
    } else if has("\"@context\"") && has("\"statements\"") {
        "this looks like a VEX document: pass it with --vex"
    } else {
        "expected the output of `grype -o json`"
    }
}

/// Go writes nil slices as `null`; read it as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"matches":[{"vulnerability":{"id":"CVE-2024-0001","severity":"High",
        "fix":{"versions":["1.2"],"state":"fixed"}},
        "relatedVulnerabilities":null,
        "artifact":{"name":"zlib","version":"1.1","type":"deb","locations":null,"purl":"pkg:deb/debian/zlib@1.1"}}],
        "descriptor":{"name":"grype","version":"0.80.0","db":{"built":"2024-06-01T00:00:00Z","schemaVersion":5}}}"#;

    fn problem(json: &str) -> String {
        parse_report(json.as_bytes(), "r.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_the_fields_the_gate_uses() {
        let r = parse_report(MINIMAL.as_bytes(), "r.json").unwrap();
        assert_eq!(r.matches.len(), 1);
        let m = &r.matches[0];
        assert_eq!(m.vulnerability.severity, Severity::High);
        assert_eq!(m.vulnerability.fix.state, FixState::Fixed);
        assert!(m.related_vulnerabilities.is_empty());
        assert_eq!(r.descriptor.unwrap().version, "0.80.0");
        assert!(r.ignored_matches.is_empty());
    }

    #[test]
    fn not_json_is_rejected_clearly() {
        let msg = problem("<html>nope</html>");
        assert!(
            msg.starts_with("Grype report r.json: is not valid JSON ("),
            "{msg}"
        );
        assert!(msg.contains("grype -o json"), "{msg}");
        assert_eq!(
            problem("  \n"),
            "Grype report r.json: is empty; expected the output of `grype -o json`"
        );
        assert!(problem(&format!("{MINIMAL} {{}}")).contains("is not valid JSON"));
    }

    #[test]
    fn a_report_without_matches_is_rejected() {
        let msg = problem(r#"{"source":{},"descriptor":{"name":"grype"}}"#);
        assert!(msg.contains("missing field `matches`"), "{msg}");
        let sbom = problem(r#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#);
        assert!(sbom.contains("pass it with --sbom"), "{sbom}");
        let arr = problem("[1,2]");
        assert_eq!(
            arr,
            "Grype report r.json: is JSON but not an object; expected the output of `grype -o json`"
        );
    }

    #[test]
    fn a_bad_severity_names_the_match() {
        let msg = problem(&MINIMAL.replace("\"High\"", "\"Severe\""));
        assert!(
            msg.contains("matches[0].vulnerability.severity: unknown severity \"Severe\""),
            "{msg}"
        );
        let msg = problem(&MINIMAL.replace("\"fixed\"", "\"patched\""));
        assert!(msg.contains("matches[0].vulnerability.fix.state"), "{msg}");
        let msg = problem(&MINIMAL.replace("\"CVE-2024-0001\"", "\"\""));
        assert!(
            msg.contains("matches[0].vulnerability.id: is empty"),
            "{msg}"
        );
    }

    #[test]
    fn image_digests_come_from_the_source() {
        let json = MINIMAL.replace(
            "\"descriptor\"",
            r#""source":{"type":"image","target":{"manifestDigest":"sha256:AA","repoDigests":["r/x@sha256:bb","q/y@sha256:aa"]}},"descriptor""#,
        );
        let r = parse_report(json.as_bytes(), "r.json").unwrap();
        assert_eq!(r.image_digests(), ["sha256:aa", "sha256:bb"]);
    }
}
