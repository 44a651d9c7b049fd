//! OpenVEX documents (<https://openvex.dev>, spec 0.2.0): statements that a
//! product is, or is not, affected by a vulnerability.
//!
//! A statement applies to a finding when its vulnerability (`name`, `@id`
//! or an alias) is the finding's id or one of Grype's related ids, and one
//! of its products covers the finding's package:
//!
//! - a package product (`pkg:deb/...`, the purl in `@id` or
//!   `identifiers.purl`) without subcomponents covers that package;
//! - a product with subcomponents covers the packages its subcomponents
//!   name. When the product is an image (`pkg:oci/NAME@sha256:...`) its
//!   digest must also be the scanned image's (`--image-digest`, or the
//!   digests Grype recorded for the image): a VEX document about another
//!   image says nothing about this one. A non-image product is not checked:
//!   Grype's report lists only vulnerable packages, so the product that
//!   contains them cannot be confirmed from it;
//! - an image product without subcomponents covers every package of that
//!   image, under the same digest rule.
//!
//! Purls compare as in [`super::purl`]. Products named by something other
//! than a purl (a CPE, a URL) never match. When several statements apply,
//! the latest one (statement `timestamp`, else the document's; then the
//! later document and statement) is the one that counts, as OpenVEX says:
//! `not_affected` and `fixed` suppress the finding, `affected` and
//! `under_investigation` do not.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ScanError;
use super::error::FieldProblem;
use super::read::{MAX_VEX_BYTES, expect_json_object, read_bounded};
use crate::purl::Purl;

/// The justifications OpenVEX allows for `not_affected`.
pub const JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    pub const ALL: [VexStatus; 4] = [
        VexStatus::NotAffected,
        VexStatus::Affected,
        VexStatus::Fixed,
        VexStatus::UnderInvestigation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VexStatus::NotAffected => "not_affected",
            VexStatus::Affected => "affected",
            VexStatus::Fixed => "fixed",
            VexStatus::UnderInvestigation => "under_investigation",
        }
    }

    /// Whether a statement with this status takes the finding out of the gate.
    pub fn suppresses(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }
}

impl fmt::Display for VexStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated OpenVEX document.
#[derive(Debug, Clone)]
pub struct VexDocument {
    /// Where it was read from (a path), for messages and outputs.
    pub origin: String,
    /// The document's `@id`.
    pub id: String,
    pub author: String,
    pub timestamp: Option<OffsetDateTime>,
    pub statements: Vec<VexStatement>,
}

#[derive(Debug, Clone)]
pub struct VexStatement {
    /// Position in the document's `statements`, from 0.
    pub index: usize,
    /// `@id` of the statement, when it has one.
    pub id: Option<String>,
    /// The vulnerability's `name`, `@id` and `aliases`.
    pub vulnerability: Vec<String>,
    pub products: Vec<VexProduct>,
    pub status: VexStatus,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    pub action_statement: Option<String>,
    /// The statement's `timestamp`, else the document's.
    pub timestamp: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct VexProduct {
    /// The product's `@id` as written.
    pub id: String,
    pub purl: Option<Purl>,
    pub subcomponents: Vec<VexComponent>,
}

#[derive(Debug, Clone)]
pub struct VexComponent {
    pub id: String,
    pub purl: Option<Purl>,
}

impl VexStatement {
    /// Whether the statement is about one of `ids` (a finding's id and
    /// related ids).
    pub fn names_any(&self, ids: &[&str]) -> bool {
        self.vulnerability
            .iter()
            .any(|v| ids.iter().any(|id| id.eq_ignore_ascii_case(v)))
    }

    /// The product that covers a package with this purl in the image with
    /// these digests (see the module docs), if any.
    pub fn product_for(
        &self,
        package: Option<&Purl>,
        image_digests: &[String],
    ) -> Option<&VexProduct> {
        self.products
            .iter()
            .find(|p| p.covers(package, image_digests))
    }
}

impl VexProduct {
    fn covers(&self, package: Option<&Purl>, image_digests: &[String]) -> bool {
        let Some(purl) = &self.purl else {
            return false;
        };
        let is_image = purl.kind == "oci";
        if is_image {
            let Some(digest) = &purl.version else {
                return false;
            };
            if !image_digests.iter().any(|d| d.eq_ignore_ascii_case(digest)) {
                return false;
            }
        }
        if self.subcomponents.is_empty() {
            return is_image || package.is_some_and(|p| purl.matches(p));
        }
        let Some(package) = package else {
            return false;
        };
        self.subcomponents
            .iter()
            .filter_map(|c| c.purl.as_ref())
            .any(|c| c.matches(package))
    }
}

/// Reads and validates an OpenVEX document.
pub fn load_vex(path: &Path) -> Result<VexDocument, ScanError> {
    let bytes = read_bounded(path, MAX_VEX_BYTES, "VEX document")?;
    parse_vex(&bytes, &path.display().to_string())
}

// What the file holds. Extra fields (`author_role`, `tooling`, `hashes`, ...)
// are tolerated: OpenVEX documents come from other tools, and the fields
// the gate relies on are checked below.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an OpenVEX document (an object with @context and statements)")]
struct DocumentFile {
    #[serde(rename = "@context")]
    context: String,
    #[serde(rename = "@id", default)]
    id: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    timestamp: Option<String>,
    statements: Vec<StatementFile>,
}

#[derive(Debug, Deserialize)]
struct StatementFile {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    vulnerability: VulnerabilityFile,
    #[serde(default)]
    products: Vec<ProductFile>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    action_statement: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an object such as {\"name\": \"CVE-2024-1234\"} (OpenVEX 0.2.0)")]
struct VulnerabilityFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an object such as {\"@id\": \"pkg:...\"} (OpenVEX 0.2.0)")]
struct ProductFile {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    identifiers: Option<IdentifiersFile>,
    #[serde(default)]
    subcomponents: Vec<ProductFile>,
}

#[derive(Debug, Deserialize)]
struct IdentifiersFile {
    #[serde(default)]
    purl: Option<String>,
}

/// Parses and validates an OpenVEX document; `origin` names it in messages.
pub fn parse_vex(bytes: &[u8], origin: &str) -> Result<VexDocument, ScanError> {
    let err = |field: &str, problem: String| ScanError::Vex {
        origin: origin.to_owned(),
        field: field.to_owned(),
        problem,
    };
    expect_json_object(bytes, "an OpenVEX document").map_err(|p| err("", p.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let file: DocumentFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            err(
                "",
                format!("is not valid JSON ({inner}); expected an OpenVEX document"),
            )
        } else {
            err(&field, inner.to_string())
        }
    })?;
    de.end().map_err(|e| {
        err(
            "",
            format!("is not valid JSON ({e}); expected an OpenVEX document"),
        )
    })?;
    if !file.context.starts_with("https://openvex.dev/ns") {
        return Err(err(
            "@context",
            format!(
                "is {:?}; this reads OpenVEX documents, whose @context is https://openvex.dev/ns/v0.2.0",
                file.context
            ),
        ));
    }
    let doc_time = file
        .timestamp
        .as_deref()
        .map(|t| parse_time(t).map_err(|p| err("timestamp", p.to_string())))
        .transpose()?;
    if file.statements.is_empty() {
        return Err(err(
            "statements",
            "is empty: the document says nothing".to_owned(),
        ));
    }
    let statements = file
        .statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            statement(i, s, doc_time).map_err(|p| {
                let p = p.under(&format!("statements[{i}]."));
                err(&p.field, p.problem)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VexDocument {
        origin: origin.to_owned(),
        id: file.id,
        author: file.author,
        timestamp: doc_time,
        statements,
    })
}

fn statement(
    index: usize,
    s: StatementFile,
    doc_time: Option<OffsetDateTime>,
) -> Result<VexStatement, FieldProblem> {
    let fail = |field: &str, problem: String| FieldProblem::new(field, problem);
    let vulnerability = vulnerability_names(s.vulnerability)?;
    let status = status(&s.status, s.justification.as_deref())?;
    let nonempty = |o: Option<String>| o.filter(|t| !t.trim().is_empty());
    let impact_statement = nonempty(s.impact_statement);
    // The spec requires it, and the gate cites it: an unexplained
    // "not affected" must not silently pass a finding.
    if status == VexStatus::NotAffected && s.justification.is_none() && impact_statement.is_none() {
        return Err(fail(
            "justification",
            "is missing: a not_affected statement needs a justification or an impact_statement"
                .to_owned(),
        ));
    }
    if s.products.is_empty() {
        return Err(fail(
            "products",
            "is empty: name the product (an image pkg:oci/... or a package purl) the statement is about"
                .to_owned(),
        ));
    }
    let products = s
        .products
        .into_iter()
        .enumerate()
        .map(|(pi, p)| product(p).map_err(|e| e.under(&format!("products[{pi}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp = match s.timestamp.as_deref() {
        Some(t) => Some(parse_time(t).map_err(|p| fail("timestamp", p.to_string()))?),
        None => doc_time,
    };
    Ok(VexStatement {
        index,
        id: s.id,
        vulnerability,
        products,
        status,
        justification: s.justification,
        impact_statement,
        action_statement: nonempty(s.action_statement),
        timestamp,
    })
}

/// The vulnerability's name, `@id` and aliases; at least one.
fn vulnerability_names(v: VulnerabilityFile) -> Result<Vec<String>, FieldProblem> {
    let mut names: Vec<String> = v
        .name
        .into_iter()
        .chain(v.id)
        .chain(v.aliases)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    names.dedup();
    if names.is_empty() {
        return Err(FieldProblem::new(
            "vulnerability",
            "names no vulnerability: give its `name`, e.g. {\"name\": \"CVE-2024-1234\"}",
        ));
    }
    Ok(names)
}

/// The statement's status, its justification (when given) one of
/// OpenVEX's.
fn status(status: &str, justification: Option<&str>) -> Result<VexStatus, FieldProblem> {
    let found = VexStatus::ALL
        .into_iter()
        .find(|st| st.as_str() == status)
        .ok_or_else(|| {
            FieldProblem::new(
                "status",
                format!(
                    "is {status:?}; OpenVEX statuses are not_affected, affected, fixed, under_investigation"
                ),
            )
        })?;
    if let Some(j) = justification
        && !JUSTIFICATIONS.contains(&j)
    {
        return Err(FieldProblem::new(
            "justification",
            format!(
                "is {j:?}; OpenVEX justifications are {}",
                JUSTIFICATIONS.join(", ")
            ),
        ));
    }
    Ok(found)
}

fn product(p: ProductFile) -> Result<VexProduct, FieldProblem> {
    let (id, purl) = identify(p.id, p.identifiers)?;
    let subcomponents = p
        .subcomponents
        .into_iter()
        .enumerate()
        .map(|(ci, c)| {
            identify(c.id, c.identifiers)
                .map(|(id, purl)| VexComponent { id, purl })
                .map_err(|e| e.under(&format!(".subcomponents[{ci}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VexProduct {
        id,
        purl,
        subcomponents,
    })
}

/// The `@id` and the purl (from `identifiers.purl`, else an `@id` that is
/// one) of a product or subcomponent.
fn identify(
    id: Option<String>,
    identifiers: Option<IdentifiersFile>,
) -> Result<(String, Option<Purl>), FieldProblem> {
    let listed = identifiers
        .and_then(|i| i.purl)
        .filter(|p| !p.trim().is_empty());
    let id = id.filter(|i| !i.trim().is_empty());
    let purl_text = listed.clone().or_else(|| {
        id.clone()
            .filter(|i| i.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("pkg:")))
    });
    let purl = purl_text
        .as_deref()
        .map(Purl::parse)
        .transpose()
        .map_err(|e| FieldProblem::new("", e.to_string()))?;
    let id = id.or(listed).ok_or_else(|| {
        FieldProblem::new(
            "",
            "has neither an @id nor identifiers.purl: name it, e.g. {\"@id\": \"pkg:deb/debian/openssl@3.0.11-1~deb12u2\"}",
        )
    })?;
    Ok((id, purl))
}

/// A time that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is {given:?}, not an RFC 3339 time such as 2024-06-01T12:00:00Z ({detail})")]
pub struct InvalidTime {
    pub given: String,
    pub detail: String,
}

fn parse_time(t: &str) -> Result<OffsetDateTime, InvalidTime> {
    OffsetDateTime::parse(t, &Rfc3339).map_err(|e| InvalidTime {
        given: t.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> String {
        format!(
            r#"{{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1",
               "author":"Security <sec@example.com>","timestamp":"2024-05-01T10:00:00Z","version":1,
               "statements":[{statements}]}}"#
        )
    }

    fn parse(statements: &str) -> Result<VexDocument, ScanError> {
        parse_vex(doc(statements).as_bytes(), "v.json")
    }

    fn problem(statements: &str) -> String {
        parse(statements).unwrap_err().to_string()
    }

    const PKG: &str = r#""products":[{"@id":"pkg:deb/debian/openssl@3.0.11-1~deb12u2"}]"#;

    #[test]
    fn reads_statements_with_their_citation_fields() {
        let d = parse(&format!(
            r#"{{"vulnerability":{{"name":"CVE-2024-0727","aliases":["GHSA-9v9h-cgj8-h64p"]}},{PKG},
                 "status":"not_affected","justification":"vulnerable_code_not_in_execute_path",
                 "impact_statement":"PKCS12 parsing is never used"}}"#
        ))
        .unwrap();
        assert_eq!(d.id, "https://example.com/vex/1");
        let s = &d.statements[0];
        assert_eq!(s.status, VexStatus::NotAffected);
        assert!(s.names_any(&["ghsa-9v9h-cgj8-h64p"]));
        assert!(!s.names_any(&["CVE-2024-0728"]));
        assert_eq!(s.timestamp, d.timestamp, "the document's time stands in");
        assert_eq!(
            s.impact_statement.as_deref(),
            Some("PKCS12 parsing is never used")
        );
    }

    #[test]
    fn products_cover_packages_as_documented() {
        let d = parse(
            r#"{"vulnerability":{"name":"CVE-1"},"status":"fixed","products":[
                 {"@id":"pkg:oci/app@sha256%3Aaaaa","subcomponents":[{"@id":"pkg:apk/alpine/libssl3@3.0.8-r3"}]},
                 {"@id":"urn:example:not-a-purl","identifiers":{"purl":"pkg:npm/left-pad"}}]},
               {"vulnerability":{"name":"CVE-2"},"status":"fixed","products":[{"@id":"pkg:oci/app@sha256%3Aaaaa"}]}"#,
        )
        .unwrap();
        let libssl = Purl::parse("pkg:apk/alpine/libssl3@3.0.8-r3?arch=x86_64").unwrap();
        let pad = Purl::parse("pkg:npm/left-pad@1.3.0").unwrap();
        let this = ["sha256:aaaa".to_owned()];
        let other = ["sha256:bbbb".to_owned()];
        let sub = &d.statements[0];
        assert!(sub.product_for(Some(&libssl), &this).is_some());
        assert!(
            sub.product_for(Some(&libssl), &other).is_none(),
            "another image's VEX"
        );
        assert!(
            sub.product_for(Some(&libssl), &[]).is_none(),
            "image unknown"
        );
        assert_eq!(
            sub.product_for(Some(&pad), &[]).unwrap().id,
            "urn:example:not-a-purl"
        );
        let whole_image = &d.statements[1];
        assert!(whole_image.product_for(Some(&pad), &this).is_some());
        assert!(whole_image.product_for(None, &this).is_some());
        assert!(whole_image.product_for(Some(&pad), &other).is_none());
    }

    #[test]
    fn malformed_documents_are_rejected_with_the_field() {
        let cases = [
            (
                r#"{"vulnerability":{},"status":"fixed","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].vulnerability: names no vulnerability",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"maybe","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].status: is \"maybe\"",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"not_affected","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].justification: is missing",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"not_affected","justification":"trust_me","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].justification: is \"trust_me\"",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"fixed"}"#,
                "statements[0].products: is empty",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"fixed","products":[{"@id":"pkg:npm"}]}"#,
                "statements[0].products[0]: \"pkg:npm\" is not a package URL",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"fixed","products":[{"@id":"pkg:oci/a","subcomponents":[{}]}]}"#,
                "statements[0].products[0].subcomponents[0]: has neither an @id",
            ),
            (
                r#"{"vulnerability":{"name":"CVE-1"},"status":"fixed","timestamp":"yesterday","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].timestamp: is \"yesterday\"",
            ),
            (
                r#"{"vulnerability":"CVE-1","status":"fixed","products":[{"@id":"pkg:npm/x"}]}"#,
                "statements[0].vulnerability: invalid type: string \"CVE-1\", expected an object such as",
            ),
        ];
        for (statement, expected) in cases {
            let msg = problem(statement);
            assert!(msg.starts_with("VEX document v.json: "), "{msg}");
            assert!(msg.contains(expected), "expected {expected:?} in {msg}");
        }
        let not_vex = parse_vex(
            br#"{"@context":"https://cyclonedx.org","statements":[]}"#,
            "v.json",
        )
        .unwrap_err();
        assert!(
            not_vex
                .to_string()
                .contains("@context: is \"https://cyclonedx.org\""),
            "{not_vex}"
        );
        let not_json = parse_vex(b"statements: []", "v.json").unwrap_err();
        assert!(
            not_json.to_string().contains("is not valid JSON"),
            "{not_json}"
        );
        assert!(not_json.is_usage());
    }
}
