//! `pipeline run` end to end: a git repository → image in a real registry,
//! SBOM, scan (with a stand-in for grype, which cannot be installed here),
//! signature and three attestations that `pipeline verify` accepts; and a
//! scan failing the policy stops the run before anything is signed.

mod common;

use std::path::Path;

use common::{fixtures, git, pipeline, text};
use serde_json::Value;
use test_support::registry::Auth;
use test_support::{TempDir, require_docker, require_registry};

const PASSWORD: &str = "run-password";

fn project(dir: &Path) {
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "out/\n*.key\n*.pub\n").unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

/// A key pair at DIR/out/k.{key,pub}.
fn keygen(dir: &Path) {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let prefix = dir.join("out/k");
    let out = pipeline(
        &["keygen", "--output-key-prefix", prefix.to_str().unwrap()],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn run_with_stand_in(
    dir: &Path,
    registry: &str,
    report: &str,
    policy: &str,
) -> std::process::Output {
    let standin = fixtures().join("scan/grype-stand-in.sh");
    let report = fixtures().join("scan").join(report);
    let policy_path = dir.join("out/policy.yaml");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(&policy_path, policy).unwrap();
    pipeline(
        &[
            "run",
            "--context",
            dir.to_str().unwrap(),
            "--image",
            &format!("{registry}/proj/app"),
            "--key",
            dir.join("out/k.key").to_str().unwrap(),
            "--policy",
            policy_path.to_str().unwrap(),
            "--grype",
            standin.to_str().unwrap(),
            "--output-dir",
            dir.join("out/artifacts").to_str().unwrap(),
            "--json",
        ],
        &[
            ("COSIGN_PASSWORD", PASSWORD),
            ("STANDIN_REPORT", report.to_str().unwrap()),
        ],
    )
}

#[test]
fn run_builds_pushes_describes_scans_signs_and_attests() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let dir = TempDir::new("pipeline-run");
    project(dir.path());
    keygen(dir.path());

    let out = run_with_stand_in(
        dir.path(),
        &reg.addr,
        "report-clean.json",
        "fail_on: high\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let steps: Vec<&str> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["build", "push", "sbom", "scan", "sign", "attest"]);
    for s in summary["steps"].as_array().unwrap() {
        assert!(!s["outcome"].as_str().unwrap().starts_with("FAILED"), "{s}");
        assert!(s["seconds"].as_f64().unwrap() >= 0.0);
    }
    let image = summary["image"].as_str().unwrap().to_owned();
    assert!(image.contains("/proj/app@sha256:"), "{image}");
    for f in [
        "sbom.cdx.json",
        "scan.json",
        "scan.sarif",
        "grype.json",
        "provenance.json",
    ] {
        assert!(
            dir.path().join("out/artifacts").join(f).is_file(),
            "{f} missing"
        );
    }
    let provenance: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/artifacts/provenance.json")).unwrap(),
    )
    .unwrap();
    let commit = git(dir.path(), &["rev-parse", "HEAD"]);
    assert_eq!(
        provenance["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"],
        commit.trim()
    );

    let out = pipeline(
        &[
            "verify",
            "--image",
            &image,
            "--key",
            dir.path().join("out/k.pub").to_str().unwrap(),
            "--require",
            "cyclonedx,vuln,slsaprovenance",
            "--policy",
            dir.path().join("out/policy.yaml").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_scan_failing_the_policy_stops_the_run_before_signing() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let dir = TempDir::new("pipeline-run-fail");
    project(dir.path());
    keygen(dir.path());
    let out = run_with_stand_in(
        dir.path(),
        &reg.addr,
        "report-debian.json",
        "fail_on: negligible\n",
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let last = summary["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "scan");
    assert!(
        last["outcome"].as_str().unwrap().starts_with("FAILED"),
        "{last}"
    );
    assert!(summary["image"].is_null());
}
