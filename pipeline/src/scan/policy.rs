//! The scan policy (`policies/scan.yaml`): the severity that fails the
//! gate, and the waivers (ignore rules, VEX documents) that take findings
//! out of it. Parsed strictly: an unknown key is an error, not a silent
//! no-op. The schema is documented in [`super`] and in the shipped file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::{Date, Month};

use super::ScanError;
use super::error::FieldProblem;
use super::read::{MAX_POLICY_BYTES, read_bounded};
use super::report::Match;
use super::severity::{FixState, Severity};
use super::vex::{VexDocument, load_vex};
use crate::purl::Purl;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a scan policy: a mapping with fail_on, and optionally only_fixed, ignore, vex"
)]
struct PolicyFile {
    fail_on: String,
    #[serde(default)]
    only_fixed: bool,
    #[serde(default)]
    ignore: Option<Vec<IgnoreFile>>,
    #[serde(default)]
    vex: Option<Vec<String>>,
}

// Every field is optional here so that a missing one gets a message naming
// the rule and saying what to write, rather than serde's bare "missing field".
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an ignore rule: a mapping with vulnerability, package, fix_state, reason, expires"
)]
struct IgnoreFile {
    #[serde(default)]
    vulnerability: Option<String>,
    #[serde(default)]
    package: Option<PackageFile>,
    #[serde(default)]
    fix_state: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a package matcher: a mapping with name, version, purl"
)]
struct PackageFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

/// A validated scan policy. Construct with [`ScanPolicy::load`] or
/// [`ScanPolicy::parse`].
#[derive(Debug, Clone)]
pub struct ScanPolicy {
    /// Where it came from, for messages and outputs.
    pub origin: String,
    /// The file it was read from ([`ScanPolicy::load`]); `None` when
    /// parsed from text.
    pub path: Option<PathBuf>,
    /// Findings at or above this severity fail the gate.
    pub fail_on: Severity,
    /// Fail only on findings that have a fixed version (`fix.state: fixed`).
    pub only_fixed: bool,
    pub ignore: Vec<IgnoreRule>,
    /// The documents the policy's `vex:` names, loaded.
    pub vex: Vec<VexDocument>,
    /// Their paths, resolved against the policy's directory.
    pub vex_paths: Vec<PathBuf>,
}

/// One waiver: which findings it covers, why, and until when.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// Position in the policy's `ignore:` list, from 0 (cited as `ignore[N]`).
    pub index: usize,
    /// Matches the finding's id or one of its related ids (case-insensitive).
    pub vulnerability: Option<String>,
    pub package_name: Option<String>,
    pub package_version: Option<String>,
    pub package_purl: Option<Purl>,
    pub fix_state: Option<FixState>,
    pub reason: String,
    /// The first day (UTC) on which the rule no longer applies.
    pub expires: Date,
}

impl IgnoreRule {
    /// Expired on and after its `expires` date.
    pub fn is_expired(&self, today: Date) -> bool {
        today >= self.expires
    }

    /// Whether every matcher the rule has agrees with the match; `ids` are
    /// the match's vulnerability id and related ids, `purl` its parsed purl.
    pub fn matches(&self, m: &Match, ids: &[&str], purl: Option<&Purl>) -> bool {
        self.vulnerability
            .as_ref()
            .is_none_or(|v| ids.iter().any(|id| id.eq_ignore_ascii_case(v)))
            && self
                .package_name
                .as_ref()
                .is_none_or(|n| *n == m.artifact.name)
            && self
                .package_version
                .as_ref()
                .is_none_or(|v| *v == m.artifact.version)
            && self
                .package_purl
                .as_ref()
                .is_none_or(|p| purl.is_some_and(|found| p.matches(found)))
            && self
                .fix_state
                .is_none_or(|s| s == m.vulnerability.fix.state)
    }

    /// What the rule matches, as written: `vulnerability=CVE-1 package.name=zlib`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.vulnerability {
            parts.push(format!("vulnerability={v}"));
        }
        if let Some(n) = &self.package_name {
            parts.push(format!("package.name={n}"));
        }
        if let Some(v) = &self.package_version {
            parts.push(format!("package.version={v}"));
        }
        if let Some(p) = &self.package_purl {
            parts.push(format!("package.purl={p}"));
        }
        if let Some(s) = self.fix_state {
            parts.push(format!("fix_state={s}"));
        }
        parts.join(" ")
    }
}

impl ScanPolicy {
    /// Reads a policy file; relative `vex:` paths are resolved against its
    /// directory.
    pub fn load(path: &Path) -> Result<ScanPolicy, ScanError> {
        let bytes = read_bounded(path, MAX_POLICY_BYTES, "scan policy")?;
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|_| ScanError::Policy {
            origin: origin.clone(),
            field: String::new(),
            problem: "is not UTF-8 text".to_owned(),
        })?;
        let base = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut policy = ScanPolicy::parse(&text, &origin, base)?;
        policy.path = Some(path.to_owned());
        Ok(policy)
    }

    /// Parses policy text; `origin` names it in messages, `base_dir`
    /// resolves relative `vex:` paths (which are read here).
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<ScanPolicy, ScanError> {
        let err = |field: &str, problem: String| ScanError::Policy {
            origin: origin.to_owned(),
            field: field.to_owned(),
            problem,
        };
        if text.trim().is_empty() {
            return Err(err(
                "",
                "is empty; it needs at least `fail_on: SEVERITY` (see policies/scan.yaml)"
                    .to_owned(),
            ));
        }
        // serde_yaml_ng's messages already carry the path and the line.
        let file: PolicyFile = serde_yaml_ng::from_str(text)
            .map_err(|e| err("", format!("is not a valid scan policy: {e}")))?;
        let fail_on = Severity::parse(&file.fail_on).ok_or_else(|| {
            err(
                "fail_on",
                format!("is {:?}; use one of {}", file.fail_on, Severity::choices()),
            )
        })?;
        let ignore = file
            .ignore
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                ignore_rule(i, r).map_err(|p| {
                    let p = p.under(&format!("ignore[{i}]"));
                    err(&p.field, p.problem)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut vex = Vec::new();
        let mut vex_paths = Vec::new();
        for (i, p) in file.vex.unwrap_or_default().into_iter().enumerate() {
            if p.trim().is_empty() {
                return Err(err(
                    &format!("vex[{i}]"),
                    "is empty; give the path of an OpenVEX document".to_owned(),
                ));
            }
            let path = base_dir.join(&p);
            vex.push(load_vex(&path).map_err(|e| err(&format!("vex[{i}]"), e.to_string()))?);
            vex_paths.push(path);
        }
        Ok(ScanPolicy {
            origin: origin.to_owned(),
            path: None,
            fail_on,
            only_fixed: file.only_fixed,
            ignore,
            vex,
            vex_paths,
        })
    }
}

fn ignore_rule(index: usize, r: IgnoreFile) -> Result<IgnoreRule, FieldProblem> {
    let fail = |field: &str, problem: String| FieldProblem::new(field, problem);
    let text = |field: &str, v: Option<String>| -> Result<Option<String>, FieldProblem> {
        match v {
            Some(s) if s.trim().is_empty() => Err(fail(
                field,
                "is empty; remove the key or give a value".to_owned(),
            )),
            other => Ok(other.map(|s| s.trim().to_owned())),
        }
    };
    let vulnerability = text(".vulnerability", r.vulnerability)?;
    let (package_name, package_version, purl_text) = match r.package {
        Some(p) => (
            text(".package.name", p.name)?,
            text(".package.version", p.version)?,
            text(".package.purl", p.purl)?,
        ),
        None => (None, None, None),
    };
    let package_purl = purl_text
        .as_deref()
        .map(|p| Purl::parse(p).map_err(|e| fail(".package.purl", e.to_string())))
        .transpose()?;
    let fix_state = text(".fix_state", r.fix_state)?
        .map(|s| {
            FixState::parse(&s).ok_or_else(|| {
                fail(
                    ".fix_state",
                    format!("is {s:?}; use one of {}", FixState::choices()),
                )
            })
        })
        .transpose()?;
    if vulnerability.is_none()
        && package_name.is_none()
        && package_version.is_none()
        && package_purl.is_none()
        && fix_state.is_none()
    {
        return Err(fail(
            "",
            "matches every finding: give at least one of vulnerability, package.name, package.version, package.purl, fix_state".to_owned(),
        ));
    }
    let reason = text(".reason", r.reason)?.ok_or_else(|| {
        fail(
            ".reason",
            "is missing: every ignore rule needs a reason saying why the finding is acceptable"
                .to_owned(),
        )
    })?;
    let expires = text(".expires", r.expires)?.ok_or_else(|| {
        fail(
            ".expires",
            "is missing: every ignore rule needs an expiry date (YYYY-MM-DD) after which it is reviewed again"
                .to_owned(),
        )
    })?;
    let expires = parse_date(&expires).map_err(|p| fail(".expires", p.to_string()))?;
    Ok(IgnoreRule {
        index,
        vulnerability,
        package_name,
        package_version,
        package_purl,
        fix_state,
        reason,
        expires,
    })
}

/// A date that is not `YYYY-MM-DD`, or no day of the calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is {given:?}: {why}; write the date as YYYY-MM-DD, e.g. 2025-06-30")]
pub struct InvalidDate {
    pub given: String,
    pub why: &'static str,
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn parse_date(s: &str) -> Result<Date, InvalidDate> {
    let shape_ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let bad = |why: &'static str| InvalidDate {
        given: s.to_owned(),
        why,
    };
    if !shape_ok {
        return Err(bad("not a date"));
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or_default();
    let month = Month::try_from(num(5..7) as u8).map_err(|_| bad("there is no such month"))?;
    Date::from_calendar_date(i32::from(num(0..4)), month, num(8..10) as u8)
        .map_err(|_| bad("there is no such day"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScanPolicy, ScanError> {
        ScanPolicy::parse(text, "p.yaml", Path::new("/nonexistent"))
    }

    fn problem(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert!(e.is_usage());
        e.to_string()
    }

    #[test]
    fn the_shipped_policy_is_valid() {
        let text = include_str!("../../../policies/scan.yaml");
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let p = ScanPolicy::parse(text, "policies/scan.yaml", &base).unwrap();
        assert_eq!(p.fail_on, Severity::High);
    }

    #[test]
    fn reads_every_key() {
        let p = parse(
            "fail_on: Critical\nonly_fixed: true\nignore:\n  - vulnerability: CVE-2024-1\n    package:\n      name: zlib\n      version: 1.10\n      purl: pkg:deb/debian/zlib\n    fix_state: wont-fix\n    reason: not reachable\n    expires: 2025-06-30\n",
        )
        .unwrap();
        assert_eq!((p.fail_on, p.only_fixed), (Severity::Critical, true));
        let r = &p.ignore[0];
        assert_eq!(
            r.package_version.as_deref(),
            Some("1.10"),
            "a YAML number stays text"
        );
        assert_eq!(r.fix_state, Some(FixState::WontFix));
        assert_eq!(
            r.expires,
            Date::from_calendar_date(2025, Month::June, 30).unwrap()
        );
        assert_eq!(
            r.describe(),
            "vulnerability=CVE-2024-1 package.name=zlib package.version=1.10 package.purl=pkg:deb/debian/zlib fix_state=wont-fix"
        );
        assert!(
            parse("fail_on: high\nignore:\nvex:\n")
                .unwrap()
                .ignore
                .is_empty()
        );
    }

    #[test]
    fn expiry_is_exclusive() {
        let p = parse("fail_on: high\nignore:\n  - vulnerability: CVE-1\n    reason: r\n    expires: 2025-06-30\n").unwrap();
        let day = |d| Date::from_calendar_date(2025, Month::June, d).unwrap();
        assert!(!p.ignore[0].is_expired(day(29)));
        assert!(p.ignore[0].is_expired(day(30)));
    }

    #[test]
    fn malformed_policies_are_rejected_with_the_field_and_the_fix() {
        let rule = |body: &str| format!("fail_on: high\nignore:\n  - {body}\n");
        let cases = [
            (
                "",
                "p.yaml: is empty; it needs at least `fail_on: SEVERITY`",
            ),
            ("only_fixed: true\n", "missing field `fail_on`"),
            (
                "fail_on: severe\n",
                "p.yaml: fail_on: is \"severe\"; use one of unknown, negligible, low, medium, high, critical",
            ),
            (
                "fail_on: high\nfail_when: low\n",
                "unknown field `fail_when`",
            ),
            (
                "fail_on: high\nonly_fixed: yes\n",
                "only_fixed: invalid type: string \"yes\", expected a boolean",
            ),
            ("- fail_on: high\n", "expected a scan policy"),
            ("fail_on: [high\n", "is not a valid scan policy"),
            (
                &rule("vulnerability: CVE-1\n    expires: 2025-01-01"),
                "ignore[0].reason: is missing: every ignore rule needs a reason",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: '  '\n    expires: 2025-01-01"),
                "ignore[0].reason: is empty",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r"),
                "ignore[0].expires: is missing",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r\n    expires: 2025-13-01"),
                "ignore[0].expires: is \"2025-13-01\": there is no such month; write the date as YYYY-MM-DD",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r\n    expires: 2025-02-30"),
                "there is no such day",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r\n    expires: next year"),
                "ignore[0].expires: is \"next year\": not a date",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r\n    expires: 2025-1-1"),
                "not a date",
            ),
            (
                &rule("reason: r\n    expires: 2025-01-01"),
                "ignore[0]: matches every finding",
            ),
            (
                &rule("vulnerability: CVE-1\n    reason: r\n    expires: 2025-01-01\n    why: x"),
                "ignore[0]: unknown field `why`",
            ),
            (
                &rule("package: {nmae: zlib}\n    reason: r\n    expires: 2025-01-01"),
                "unknown field `nmae`",
            ),
            (
                &rule("package: {purl: 'deb/zlib'}\n    reason: r\n    expires: 2025-01-01"),
                "ignore[0].package.purl: \"deb/zlib\" is not a package URL",
            ),
            (
                &rule("fix_state: patched\n    reason: r\n    expires: 2025-01-01"),
                "ignore[0].fix_state: is \"patched\"; use one of fixed, not-fixed, wont-fix, unknown",
            ),
            (
                "fail_on: high\nvex: [missing.json]\n",
                "p.yaml: vex[0]: cannot read VEX document /nonexistent/missing.json",
            ),
        ];
        for (text, expected) in cases {
            let msg = problem(text);
            assert!(msg.starts_with("scan policy p.yaml"), "{msg}");
            assert!(
                msg.contains(expected),
                "for {text:?}: expected {expected:?} in {msg:?}"
            );
        }
    }
}
