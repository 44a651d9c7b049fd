//! What an evaluation renders: the table (order, what it shows), the JSON
//! report (consistent counts, stable keys) and SARIF 2.1.0 (the shape
//! code scanning accepts).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pipeline::scan::{self, Date, Evaluation, ScanPolicy, Severity, Status};
use serde_json::Value;
use time::Month;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scan")
        .join(name)
}

/// The fixture report under a policy that produces every status.
fn evaluation() -> Evaluation {
    let report = scan::parse_report(
        &std::fs::read(fixture("report-debian.json")).unwrap(),
        "report-debian.json",
    )
    .unwrap();
    let policy = ScanPolicy::parse(
        "fail_on: medium\nignore:\n  - package: {name: libc6}\n    reason: glibc is patched by the base image\n    expires: 2025-06-30\n  - vulnerability: CVE-2024-0006\n    reason: old waiver\n    expires: 2025-01-01\n",
        "policies/scan.yaml",
        &fixture(""),
    )
    .unwrap();
    let vex = scan::load_vex(&fixture("vex-not-affected.json")).unwrap();
    scan::evaluate(
        &report,
        &policy,
        &[vex],
        Date::from_calendar_date(2025, Month::March, 1).unwrap(),
    )
}

fn severity_of(name: &str) -> Severity {
    Severity::parse(name).unwrap_or_else(|| panic!("{name:?} is not a severity"))
}

#[test]
fn the_table_lists_what_matters_by_severity_then_id_then_package() {
    let ev = evaluation();
    let table = ev.table();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("SEVERITY  STATUS"), "{table}");
    let rows: Vec<Vec<&str>> = lines
        .take_while(|l| !l.is_empty() && !l.contains("passing finding"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Every failing, ignored and suppressed finding is a row; passing ones are not.
    let shown = ev
        .findings
        .iter()
        .filter(|f| f.status != Status::Passing)
        .count();
    assert_eq!(rows.len(), shown, "{table}");
    assert!(
        ev.count(Status::Passing) > 0
            && ev.count(Status::Ignored) > 0
            && ev.count(Status::Suppressed) > 0
    );
    for row in &rows {
        assert!(
            ["failing", "ignored", "suppressed"].contains(&row[1]),
            "{row:?}"
        );
    }
    // Sorted: severity descending, then id, then package.
    let keys: Vec<(std::cmp::Reverse<Severity>, &str, &str)> = rows
        .iter()
        .map(|r| (std::cmp::Reverse(severity_of(r[0])), r[2], r[3]))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{table}");
    assert!(
        keys.windows(2).any(|w| w[0].0 == w[1].0),
        "the fixture has ties on severity"
    );

    assert!(
        table.contains(&format!(
            "{} passing findings not shown",
            ev.count(Status::Passing)
        )),
        "{table}"
    );
    assert!(
        table.contains("ignore[1] vulnerability=CVE-2024-0006 expired 2025-01-01"),
        "{table}"
    );
    let verdict = table.lines().last().unwrap();
    assert_eq!(
        verdict,
        format!(
            "FAIL (policy policies/scan.yaml, fail_on medium): {}",
            ev.summary()
        )
    );
}

#[test]
fn the_table_neutralizes_control_characters_from_the_report() {
    let mut report: Value =
        serde_json::from_slice(&std::fs::read(fixture("report-debian.json")).unwrap()).unwrap();
    report["matches"][0]["artifact"]["name"] = Value::from("evil\u{1b}[2Jname\nnext");
    let report = scan::parse_report(report.to_string().as_bytes(), "r").unwrap();
    let policy = ScanPolicy::parse("fail_on: negligible\n", "p", Path::new(".")).unwrap();
    let table = scan::evaluate(
        &report,
        &policy,
        &[],
        Date::from_calendar_date(2025, Month::March, 1).unwrap(),
    )
    .table();
    assert!(!table.contains('\u{1b}'), "{table:?}");
    assert!(table.contains("evil?[2Jname?next"), "{table:?}");
}

#[test]
fn the_json_report_is_consistent_with_the_findings() {
    let ev = evaluation();
    let json = ev.to_json();
    assert_eq!(json["schema"], scan::JSON_SCHEMA);
    assert_eq!(json["verdict"], if ev.passed() { "pass" } else { "fail" });
    assert_eq!(json["passed"], ev.passed());
    assert_eq!(json["summary"], ev.summary());
    assert_eq!(json["evaluatedOn"], "2025-03-01");
    assert_eq!(json["policy"]["path"], "policies/scan.yaml");
    assert_eq!(json["policy"]["failOn"], "medium");
    assert_eq!(json["grype"]["name"], "grype");
    assert!(json["grype"]["db"].is_object());
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), ev.findings.len());
    assert_eq!(json["counts"]["total"], findings.len());
    for status in ["failing", "passing", "ignored", "suppressed"] {
        let n = findings.iter().filter(|f| f["status"] == status).count();
        assert_eq!(json["counts"][status], n, "{status}");
        let by_severity: u64 = json["counts"]["bySeverity"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c[status].as_u64().unwrap())
            .sum();
        assert_eq!(by_severity, n as u64, "{status} by severity");
    }
    for f in findings {
        for key in [
            "id",
            "relatedIds",
            "severity",
            "status",
            "why",
            "reason",
            "package",
            "fix",
            "vex",
            "expiredRules",
            "grypeIgnoreRules",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
        let kind = f["reason"]["kind"].as_str().unwrap();
        match f["status"].as_str().unwrap() {
            "ignored" => {
                assert_eq!(kind, "ignore-rule");
                assert!(f["reason"]["reason"].is_string() && f["reason"]["expires"].is_string());
            }
            "suppressed" => {
                assert_eq!(kind, "vex");
                assert!(f["vex"]["document"].is_string() && f["vex"]["statement"].is_u64());
            }
            "failing" => assert_eq!(kind, "at-or-above-threshold"),
            "passing" => assert!(["below-threshold", "no-fix-available"].contains(&kind)),
            other => panic!("status {other}"),
        }
    }
    let lodash = findings
        .iter()
        .find(|f| f["id"] == "GHSA-p6mc-m468-83gw")
        .unwrap();
    assert_eq!(lodash["relatedIds"], serde_json::json!(["CVE-2020-8203"]));
    assert_eq!(lodash["package"]["purl"], "pkg:npm/lodash@4.17.20");
    assert_eq!(
        lodash["package"]["location"],
        "/app/node_modules/lodash/package.json"
    );
}

#[test]
fn sarif_has_the_2_1_0_shape_code_scanning_accepts() {
    let ev = evaluation();
    let sarif = ev.to_sarif(&Default::default());
    assert_eq!(sarif["$schema"], scan::sarif::SARIF_SCHEMA);
    assert_eq!(sarif["version"], "2.1.0");
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "pipeline");
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "rule ids are unique"
    );
    for r in rules {
        assert!(
            r["shortDescription"]["text"].is_string() && r["fullDescription"]["text"].is_string(),
            "{r}"
        );
        assert!(
            ["error", "warning", "note"]
                .contains(&r["defaultConfiguration"]["level"].as_str().unwrap())
        );
    }
    let results = runs[0]["results"].as_array().unwrap();
    let expired = ev.expired_rules().count();
    assert!(expired > 0);
    assert_eq!(results.len(), ev.findings.len() + expired);
    for (i, result) in results.iter().enumerate() {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(result["ruleId"], rules[index]["id"], "result {i}");
        assert!(
            result["message"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(
            !result["locations"].as_array().unwrap().is_empty(),
            "result {i}"
        );
    }
    for (f, result) in ev.findings.iter().zip(results) {
        assert_eq!(result["ruleId"], f.id.as_str());
        let expected = match f.severity {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            _ => "note",
        };
        assert_eq!(result["level"], expected, "{}", f.id);
        let location = &result["locations"][0];
        let logical = location["logicalLocations"][0]["name"].as_str().unwrap();
        assert_eq!(
            logical,
            if f.purl.is_empty() {
                format!("{}@{}", f.package, f.version)
            } else {
                f.purl.clone()
            }
        );
        // A path in the image is not a file of the repository: it is a
        // logical location, never an artifact location.
        assert!(location.get("physicalLocation").is_none());
        if let Some(path) = &f.location {
            assert_eq!(location["logicalLocations"][1]["name"], path.as_str());
        }
        assert!(result["partialFingerprints"][scan::sarif::FINDING_FINGERPRINT].is_string());
        let suppressed = result.get("suppressions").is_some();
        assert_eq!(
            suppressed,
            matches!(f.status, Status::Ignored | Status::Suppressed),
            "{}",
            f.id
        );
        assert_eq!(result["properties"]["status"], f.status.as_str());
    }
    let notes = &results[ev.findings.len()..];
    for note in notes {
        assert_eq!(note["ruleId"], scan::sarif::EXPIRED_RULE_ID);
        assert_eq!(note["level"], "note");
    }
}
