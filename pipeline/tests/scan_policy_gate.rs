//! The policy gate through the library API the other commands use
//! (`pipeline::scan`): thresholds, `only_fixed`, each kind of ignore rule,
//! expiry, and OpenVEX suppression, on a recorded Grype report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipeline::scan::{
    self, Date, Evaluation, GrypeReport, Reason, ScanPolicy, Severity, Status, VexDocument,
    VexStatus,
};
use time::Month;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scan")
        .join(name)
}

fn report() -> GrypeReport {
    let path = fixture("report-debian.json");
    scan::parse_report(&std::fs::read(&path).unwrap(), &path.display().to_string()).unwrap()
}

fn vex(name: &str) -> VexDocument {
    scan::load_vex(&fixture(name)).unwrap()
}

fn today() -> Date {
    Date::from_calendar_date(2025, Month::March, 1).unwrap()
}

fn policy(text: &str) -> ScanPolicy {
    ScanPolicy::parse(text, "test.yaml", &fixture("")).unwrap()
}

fn run(text: &str, extra_vex: &[VexDocument]) -> Evaluation {
    scan::evaluate(&report(), &policy(text), extra_vex, today())
}

/// (id, package) → status.
fn statuses(ev: &Evaluation) -> BTreeMap<(String, String), Status> {
    ev.findings
        .iter()
        .map(|f| ((f.id.clone(), f.package.clone()), f.status))
        .collect()
}

fn status(ev: &Evaluation, id: &str) -> Status {
    let mut found = ev.findings.iter().filter(|f| f.id == id);
    let f = found.next().unwrap_or_else(|| panic!("no finding {id}"));
    assert!(found.next().is_none(), "{id} is in the report once");
    f.status
}

/// Every finding's status, except those named, is what the threshold alone says.
fn others_unchanged(ev: &Evaluation, except: &[&str]) {
    for f in &ev.findings {
        if except.contains(&f.id.as_str()) {
            continue;
        }
        let expected = if f.severity >= ev.fail_on {
            Status::Failing
        } else {
            Status::Passing
        };
        assert_eq!(f.status, expected, "{} {}", f.id, f.package);
    }
}

#[test]
fn every_threshold_fails_exactly_the_findings_at_or_above_it() {
    let r = report();
    let all: Vec<(String, Severity)> = r
        .all_matches()
        .map(|(m, _)| (m.vulnerability.id.clone(), m.vulnerability.severity))
        .collect();
    // The fixture covers every level, so each threshold is a distinct case.
    for level in Severity::ALL {
        assert!(
            all.iter().any(|(_, s)| *s == level),
            "fixture lacks {level}"
        );
    }
    for level in Severity::ALL {
        let ev = run(&format!("fail_on: {}\n", level.key()), &[]);
        let mut failing: Vec<&str> = ev
            .findings
            .iter()
            .filter(|f| f.status == Status::Failing)
            .map(|f| f.id.as_str())
            .collect();
        let mut expected: Vec<&str> = all
            .iter()
            .filter(|(_, s)| *s >= level)
            .map(|(id, _)| id.as_str())
            .collect();
        failing.sort_unstable();
        expected.sort_unstable();
        assert_eq!(failing, expected, "fail_on {level}");
        assert!(!ev.passed(), "something is at or above {level}");
        assert_eq!(ev.findings.len(), all.len());
        for f in &ev.findings {
            let reason = if f.status == Status::Failing {
                Reason::AtOrAboveThreshold
            } else {
                Reason::BelowThreshold
            };
            assert_eq!(f.reason, reason, "{}", f.id);
        }
    }
    let clean = scan::parse_report(
        &std::fs::read(fixture("report-clean.json")).unwrap(),
        "clean",
    )
    .unwrap();
    let ev = scan::evaluate(&clean, &policy("fail_on: unknown\n"), &[], today());
    assert!(ev.passed());
    assert_eq!(ev.summary(), "nothing failing at or above unknown");
}

#[test]
fn only_fixed_fails_only_what_has_a_fix() {
    let ev = run("fail_on: medium\nonly_fixed: true\n", &[]);
    for f in &ev.findings {
        let expected = if f.severity >= Severity::Medium && f.fix_state == scan::FixState::Fixed {
            Status::Failing
        } else {
            Status::Passing
        };
        assert_eq!(
            f.status, expected,
            "{} ({:?}, {})",
            f.id, f.severity, f.fix_state
        );
    }
    // zlib1g's high finding is wont-fix: it passes, and says why.
    let zlib = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2024-0002")
        .unwrap();
    assert_eq!(zlib.reason, Reason::NoFixAvailable);
    assert!(zlib.why(ev.fail_on).contains("fix state is wont-fix"));
    assert!(!ev.passed(), "fixable criticals remain");
}

fn rule(matchers: &str) -> String {
    format!(
        "fail_on: high\nignore:\n  - {matchers}\n    reason: accepted for the test\n    expires: 2025-06-30\n"
    )
}

#[test]
fn each_kind_of_ignore_rule_matches_what_it_names() {
    // (rule matchers, findings it must ignore)
    let cases: &[(&str, &[&str])] = &[
        ("vulnerability: CVE-2024-0001", &["CVE-2024-0001"]),
        ("vulnerability: cve-2024-0001", &["CVE-2024-0001"]),
        // The related CVE of a GHSA.
        ("vulnerability: CVE-2020-8203", &["GHSA-p6mc-m468-83gw"]),
        (
            "package: {name: libc6}",
            &["CVE-2024-0004", "CVE-2024-0005"],
        ),
        ("package: {version: '1:1.2.13.dfsg-1'}", &["CVE-2024-0002"]),
        ("package: {purl: 'pkg:pypi/requests'}", &["CVE-2023-32681"]),
        (
            "package: {purl: 'pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12'}",
            &["CVE-2024-0001"],
        ),
        (
            "package: {purl: 'pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-11'}",
            &[],
        ),
        ("package: {purl: 'pkg:deb/debian/libssl3@3.0.12'}", &[]),
        ("fix_state: wont-fix", &["CVE-2024-0002"]),
        ("fix_state: not-fixed", &["CVE-2024-0004", "CVE-2024-0009"]),
        // Grype's "" and "unknown" are both unknown.
        ("fix_state: unknown", &["CVE-2024-0006", "CVE-2024-0007"]),
        // Combinations: every matcher must agree.
        (
            "vulnerability: CVE-2024-0005\n    package: {name: libc6, version: 2.36-9+deb12u3}",
            &["CVE-2024-0005"],
        ),
        (
            "vulnerability: CVE-2024-0005\n    package: {name: libc6, version: 2.36-9+deb12u4}",
            &[],
        ),
        (
            "package: {name: libc6}\n    fix_state: fixed",
            &["CVE-2024-0005"],
        ),
        (
            "vulnerability: CVE-2024-0001\n    package: {name: zlib1g}",
            &[],
        ),
    ];
    for (matchers, expected) in cases {
        let ev = run(&rule(matchers), &[]);
        let mut ignored: Vec<&str> = ev
            .findings
            .iter()
            .filter(|f| f.status == Status::Ignored)
            .map(|f| f.id.as_str())
            .collect();
        ignored.sort_unstable();
        assert_eq!(&ignored, expected, "rule {matchers:?}");
        assert_eq!(ev.rules[0].matched, expected.len(), "rule {matchers:?}");
        others_unchanged(&ev, expected);
        for f in ev.findings.iter().filter(|f| f.status == Status::Ignored) {
            match &f.reason {
                Reason::IgnoreRule {
                    rule,
                    reason,
                    expires,
                } => {
                    assert_eq!((*rule, reason.as_str()), (0, "accepted for the test"));
                    assert_eq!(expires.to_string(), "2025-06-30");
                }
                other => panic!("{} ignored for {other:?}", f.id),
            }
        }
    }
}

#[test]
fn an_expired_rule_stops_applying_and_is_reported() {
    let text = "fail_on: high\nignore:\n  - vulnerability: CVE-2024-0001\n    reason: waiting for the rebuild\n    expires: 2025-03-01\n  - vulnerability: CVE-2023-32681\n    reason: proxy auth unused\n    expires: 2025-03-02\n";
    let ev = run(text, &[]);
    assert_eq!(
        status(&ev, "CVE-2024-0001"),
        Status::Failing,
        "expires today: no longer applies"
    );
    assert_eq!(
        status(&ev, "CVE-2023-32681"),
        Status::Ignored,
        "expires tomorrow: still applies"
    );
    let libssl = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2024-0001")
        .unwrap();
    assert_eq!(libssl.expired_rules, [0]);
    assert!(libssl.why(ev.fail_on).contains("ignore[0] has expired"));
    assert_eq!(
        ev.expired_rules().map(|r| r.rule.index).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(ev.rules[0].matched, 1, "it would have matched one finding");
    assert!(
        ev.summary().ends_with("; 1 ignored; 1 expired ignore rule"),
        "{}",
        ev.summary()
    );

    let table = ev.table();
    assert!(table.contains("Expired ignore rules"), "{table}");
    assert!(
        table.contains("ignore[0] vulnerability=CVE-2024-0001 expired 2025-03-01 (would match 1 finding): waiting for the rebuild"),
        "{table}"
    );
    let json = ev.to_json();
    assert_eq!(json["ignoreRules"][0]["expired"], true);
    assert_eq!(json["ignoreRules"][1]["expired"], false);
    assert_eq!(json["counts"]["expiredRules"], 1);
    let notes: Vec<_> = json_results(&ev.to_sarif(&Default::default()))
        .into_iter()
        .filter(|r| r["ruleId"] == scan::sarif::EXPIRED_RULE_ID)
        .collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["level"], "note");
    // Parsed from text, the policy is no file of a repository: no path.
    assert!(notes[0]["locations"][0].get("physicalLocation").is_none());
    assert_eq!(
        notes[0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "test.yaml#ignore[0]"
    );
    assert!(notes[0]["partialFingerprints"][scan::sarif::EXPIRED_RULE_FINGERPRINT].is_string());

    // The day before, the same rule still applies.
    let before = scan::evaluate(
        &report(),
        &policy(text),
        &[],
        Date::from_calendar_date(2025, Month::February, 28).unwrap(),
    );
    assert_eq!(status(&before, "CVE-2024-0001"), Status::Ignored);
    assert_eq!(before.expired_rules().count(), 0);
}

fn json_results(sarif: &serde_json::Value) -> Vec<serde_json::Value> {
    sarif["runs"][0]["results"].as_array().unwrap().clone()
}

#[test]
fn not_affected_and_fixed_suppress_and_are_cited() {
    let ev = run(
        "fail_on: low\n",
        &[vex("vex-not-affected.json"), vex("vex-image.json")],
    );
    // zlib1g by package purl; lodash's GHSA through its related CVE with a
    // purl that has no version; libssl3 as a subcomponent of the image, and
    // libc6's CVE-2024-0004 through the image product itself (the report
    // records the image's digest).
    for id in [
        "CVE-2024-0002",
        "GHSA-p6mc-m468-83gw",
        "CVE-2024-0001",
        "CVE-2024-0004",
    ] {
        assert_eq!(status(&ev, id), Status::Suppressed, "{id}");
    }
    others_unchanged(
        &ev,
        &[
            "CVE-2024-0002",
            "GHSA-p6mc-m468-83gw",
            "CVE-2024-0001",
            "CVE-2024-0004",
        ],
    );
    let zlib = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2024-0002")
        .unwrap();
    let c = zlib.vex.as_ref().unwrap();
    assert_eq!(c.document, "https://example.com/vex/app-not-affected");
    assert_eq!(
        c.origin,
        fixture("vex-not-affected.json").display().to_string()
    );
    assert_eq!((c.statement, c.status), (0, VexStatus::NotAffected));
    assert_eq!(
        c.justification.as_deref(),
        Some("vulnerable_code_not_present")
    );
    assert_eq!(
        c.impact_statement.as_deref(),
        Some("minizip is not part of the zlib1g binary package")
    );
    assert_eq!(c.product, "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1");
    let libssl = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2024-0001")
        .unwrap();
    let c = libssl.vex.as_ref().unwrap();
    assert_eq!((c.statement, c.status), (0, VexStatus::Fixed));
    assert!(c.product.starts_with("pkg:oci/app@sha256"));
    let json = ev.to_json();
    let cited = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "CVE-2024-0002")
        .unwrap()["vex"]
        .clone();
    assert_eq!(cited["statement"], 0);
    assert_eq!(cited["justification"], "vulnerable_code_not_present");
    // Left failing: requests (critical), the kernel headers (high), libc6's low.
    assert_eq!(
        ev.summary(),
        "1 critical, 1 high, 1 low failing; 4 suppressed by VEX"
    );
}

#[test]
fn vex_in_the_policy_applies_like_vex_on_the_command_line() {
    let from_policy = run("fail_on: high\nvex:\n  - vex-not-affected.json\n", &[]);
    let from_args = run("fail_on: high\n", &[vex("vex-not-affected.json")]);
    assert_eq!(statuses(&from_policy), statuses(&from_args));
    assert_eq!(status(&from_policy, "CVE-2024-0002"), Status::Suppressed);
}

#[test]
fn affected_and_under_investigation_do_not_suppress() {
    let ev = run("fail_on: low\n", &[vex("vex-affected.json")]);
    // requests: an older not_affected is overridden by a later affected.
    assert_eq!(status(&ev, "CVE-2023-32681"), Status::Failing);
    let requests = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2023-32681")
        .unwrap();
    let c = requests.vex.as_ref().unwrap();
    assert_eq!((c.statement, c.status), (1, VexStatus::Affected));
    assert_eq!(
        c.action_statement.as_deref(),
        Some("upgrade requests to 2.31.0")
    );
    assert_eq!(
        status(&ev, "CVE-2024-0005"),
        Status::Failing,
        "under_investigation"
    );
    others_unchanged(&ev, &[]);

    // The same two statements in the other order in time: not_affected wins.
    let mut doc = vex("vex-affected.json");
    let (a, b) = (doc.statements[0].timestamp, doc.statements[1].timestamp);
    doc.statements[0].timestamp = b;
    doc.statements[1].timestamp = a;
    let ev = run("fail_on: low\n", &[doc]);
    assert_eq!(status(&ev, "CVE-2023-32681"), Status::Suppressed);
}

#[test]
fn image_statements_need_the_image_digest() {
    let mut r = report();
    let digest = r.image_digests()[0].clone();
    r.source = None;
    let p = policy("fail_on: low\n");
    let docs = [vex("vex-image.json")];
    let unknown = scan::evaluate(&r, &p, &docs, today());
    assert_eq!(status(&unknown, "CVE-2024-0001"), Status::Failing);
    assert_eq!(status(&unknown, "CVE-2024-0004"), Status::Failing);
    let known = scan::evaluate_for_image(&r, &p, &docs, today(), &[digest.to_uppercase()]);
    assert_eq!(status(&known, "CVE-2024-0001"), Status::Suppressed);
    assert_eq!(status(&known, "CVE-2024-0004"), Status::Suppressed);
    // The subcomponent names libssl3 only: libc6's low finding is not covered.
    assert_eq!(status(&known, "CVE-2024-0005"), Status::Failing);
}

#[test]
fn vex_takes_precedence_over_ignore_rules() {
    let ev = run(
        &rule("vulnerability: CVE-2024-0002"),
        &[vex("vex-not-affected.json")],
    );
    assert_eq!(status(&ev, "CVE-2024-0002"), Status::Suppressed);
    assert_eq!(ev.rules[0].matched, 0, "the rule was not needed");
}

#[test]
fn matches_grype_ignored_are_judged_by_the_policy() {
    let ev = run("fail_on: high\n", &[]);
    let kernel = ev
        .findings
        .iter()
        .find(|f| f.id == "CVE-2024-0009")
        .unwrap();
    assert_eq!(kernel.status, Status::Failing);
    assert!(
        kernel
            .grype_ignore_rules
            .as_ref()
            .is_some_and(|r| !r.is_empty())
    );
    let waived = run(&rule("package: {name: linux-libc-dev}"), &[]);
    assert_eq!(status(&waived, "CVE-2024-0009"), Status::Ignored);
}
