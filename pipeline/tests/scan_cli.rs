//! `pipeline scan` as a user runs it: the built binary, Grype replaced by a
//! stand-in script that records its arguments and environment and plays
//! back a recorded report (Grype cannot be installed where tests run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use test_support::TempDir;

const PIPELINE: &str = env!("CARGO_BIN_EXE_pipeline");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scan")
        .join(name)
}

fn shipped_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/scan.yaml")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `pipeline` in `cwd`, without the caller's `PIPELINE_GRYPE` or
/// `GRYPE_*` settings and with only `env` added.
fn pipeline(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(PIPELINE);
    cmd.current_dir(cwd)
        .arg("scan")
        .args(args)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k == "PIPELINE_GRYPE" || k.starts_with("GRYPE_") || k.starts_with("STANDIN_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running pipeline")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("pipeline exited by a signal")
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The stand-in, copied with its executable bit set (a checkout may lose it).
fn stand_in(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("grype");
    std::fs::copy(fixture("grype-stand-in.sh"), &path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn write(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What the stand-in recorded: its arguments, and its GRYPE_* environment.
fn recorded(path: &Path) -> (Vec<String>, Vec<String>) {
    let body = std::fs::read_to_string(path).expect("the stand-in did not run");
    let mut args = Vec::new();
    let mut env = Vec::new();
    for line in body.lines() {
        if let Some(a) = line.strip_prefix("arg=") {
            args.push(a.to_owned());
        } else if let Some(e) = line.strip_prefix("env=") {
            env.push(e.to_owned());
        }
    }
    (args, env)
}

#[test]
fn runs_grype_with_a_stand_in_executable() {
    let dir = TempDir::new("scan-standin");
    let grype = stand_in(&dir);
    let record = dir.path().join("record.txt");
    let json = dir.path().join("out/scan.json");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let sbom = fixture("sbom.cdx.json");
    let cache = dir.path().join("grype-db");
    let out = pipeline(
        dir.path(),
        &[
            "--sbom",
            s(&sbom),
            "--grype",
            s(&grype),
            "--policy",
            s(&shipped_policy()),
            "--db-cache-dir",
            s(&cache),
            "--db-auto-update",
            "false",
            "--db-max-age",
            "48",
            "--json",
            s(&json),
        ],
        &[
            ("STANDIN_RECORD", s(&record)),
            ("STANDIN_REPORT", s(&fixture("report-debian.json"))),
        ],
    );
    // The recorded report has critical findings and the shipped policy
    // fails on high.
    assert_eq!(code(&out), 5, "{}", explain(&out));
    let (args, env) = recorded(&record);
    assert_eq!(
        args,
        [
            format!("sbom:{}", sbom.display()),
            "-o".into(),
            "json".into()
        ]
    );
    for expected in [
        format!("GRYPE_DB_CACHE_DIR={}", cache.display()),
        "GRYPE_DB_AUTO_UPDATE=false".to_owned(),
        "GRYPE_DB_MAX_ALLOWED_BUILT_AGE=48h".to_owned(),
        "GRYPE_DB_VALIDATE_AGE=true".to_owned(),
        "GRYPE_CHECK_FOR_APP_UPDATE=false".to_owned(),
    ] {
        assert!(env.contains(&expected), "{expected} not in {env:?}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["grype"]["version"], "0.87.0");
    assert_eq!(
        report["grype"]["db"]["status"]["built"],
        "2025-01-29T01:32:16Z"
    );
    assert!(
        text(&out.stdout).contains("FAIL (policy "),
        "{}",
        explain(&out)
    );
}

#[test]
fn the_grype_env_var_picks_the_executable_and_the_age_check_can_be_turned_off() {
    let dir = TempDir::new("scan-standin-env");
    let grype = stand_in(&dir);
    let record = dir.path().join("record.txt");
    let policy = write(
        &dir,
        "pass.yaml",
        "fail_on: critical\nonly_fixed: false\nignore:\n  - vulnerability: CVE-2023-32681\n    reason: proxy auth unused\n    expires: 2999-01-01\n  - package: {name: libssl3}\n    reason: rebuilt\n    expires: 2999-01-01\n",
    );
    let out = pipeline(
        dir.path(),
        &[
            "--sbom",
            s(&fixture("sbom.cdx.json")),
            "--policy",
            s(&policy),
            "--no-db-age-check",
        ],
        &[
            ("PIPELINE_GRYPE", s(&grype)),
            ("STANDIN_RECORD", s(&record)),
            ("STANDIN_REPORT", s(&fixture("report-debian.json"))),
        ],
    );
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (_, env) = recorded(&record);
    assert!(
        env.contains(&"GRYPE_DB_VALIDATE_AGE=false".to_owned()),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("GRYPE_DB_MAX_ALLOWED_BUILT_AGE=")),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("GRYPE_DB_CACHE_DIR=")),
        "{env:?}"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("PASS (policy "), "{stdout}");
    assert!(stdout.contains("2 ignored"), "{stdout}");
}

#[test]
fn grype_missing_exits_6_with_the_install_hint() {
    let dir = TempDir::new("scan-no-grype");
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let sbom = fixture("sbom.cdx.json");
    let policy = shipped_policy();
    let explicit = dir.path().join("nowhere/grype");
    for (args, env) in [
        // grype looked up on an empty PATH
        (
            vec!["--sbom", s(&sbom), "--policy", s(&policy)],
            vec![("PATH", s(&empty_path))],
        ),
        // an explicit path that does not exist
        (
            vec![
                "--sbom",
                s(&sbom),
                "--policy",
                s(&policy),
                "--grype",
                s(&explicit),
            ],
            vec![],
        ),
    ] {
        let out = pipeline(dir.path(), &args, &env);
        assert_eq!(code(&out), 6, "{}", explain(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("grype was not found"), "{stderr}");
        assert!(
            stderr.contains("https://github.com/anchore/grype/releases")
                && stderr.contains("checksums file")
                && !stderr.contains("| sh"),
            "{stderr}"
        );
        assert!(stderr.contains("--grype-report"), "{stderr}");
        assert!(out.stdout.is_empty(), "no verdict without a scan");
    }
}

#[test]
fn grype_failing_exits_3_with_its_stderr_tail() {
    let dir = TempDir::new("scan-grype-fails");
    let grype = stand_in(&dir);
    let (sbom, policy) = (fixture("sbom.cdx.json"), shipped_policy());
    let args = [
        "--sbom",
        s(&sbom),
        "--grype",
        s(&grype),
        "--policy",
        s(&policy),
    ];
    for exit in ["1", "2"] {
        let out = pipeline(
            dir.path(),
            &args,
            &[
                ("STANDIN_EXIT", exit),
                (
                    "STANDIN_STDERR",
                    "failed to load vulnerability db: the vulnerability database was built 9 days ago (max allowed age is 5 days)",
                ),
            ],
        );
        assert_eq!(code(&out), 3, "{}", explain(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&format!("exit status: {exit}")), "{stderr}");
        assert!(stderr.contains("max allowed age is 5 days"), "{stderr}");
    }

    // Exit 0 with output that is not a report is Grype's failure too.
    let garbage = write(&dir, "garbage.txt", "Report written to somewhere else\n");
    let out = pipeline(dir.path(), &args, &[("STANDIN_REPORT", s(&garbage))]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert!(
        text(&out.stderr).contains("is not valid JSON"),
        "{}",
        explain(&out)
    );
}

#[test]
fn a_grype_that_hangs_is_stopped_after_the_timeout() {
    let dir = TempDir::new("scan-grype-hangs");
    let grype = stand_in(&dir);
    let started = std::time::Instant::now();
    let out = pipeline(
        dir.path(),
        &[
            "--sbom",
            s(&fixture("sbom.cdx.json")),
            "--grype",
            s(&grype),
            "--policy",
            s(&shipped_policy()),
            "--grype-timeout",
            "1",
        ],
        &[("STANDIN_SLEEP", "30")],
    );
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert!(
        text(&out.stderr).contains("did not finish within 1 s"),
        "{}",
        explain(&out)
    );
    assert!(
        started.elapsed().as_secs() < 20,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_sbom_is_a_usage_error_before_grype_runs() {
    let dir = TempDir::new("scan-no-sbom");
    let grype = stand_in(&dir);
    let record = dir.path().join("record.txt");
    let out = pipeline(
        dir.path(),
        &[
            "--sbom",
            "missing.cdx.json",
            "--grype",
            s(&grype),
            "--policy",
            s(&shipped_policy()),
        ],
        &[("STANDIN_RECORD", s(&record))],
    );
    assert_eq!(code(&out), 2, "{}", explain(&out));
    assert!(
        text(&out.stderr).contains("cannot read SBOM missing.cdx.json"),
        "{}",
        explain(&out)
    );
    assert!(!record.exists(), "grype must not run");
}

#[test]
fn a_report_passes_fails_and_writes_json_and_sarif_either_way() {
    let dir = TempDir::new("scan-report");
    let clean = pipeline(
        dir.path(),
        &[
            "--grype-report",
            s(&fixture("report-clean.json")),
            "--policy",
            s(&shipped_policy()),
        ],
        &[],
    );
    assert_eq!(code(&clean), 0, "{}", explain(&clean));
    assert!(text(&clean.stdout).contains("No failing, ignored or suppressed findings."));
    assert!(text(&clean.stdout).contains("PASS (policy "));

    let json = dir.path().join("scan.json");
    let sarif = dir.path().join("scan.sarif");
    let out = pipeline(
        dir.path(),
        &[
            "--grype-report",
            s(&fixture("report-debian.json")),
            "--policy",
            s(&shipped_policy()),
            "--json",
            s(&json),
            "--sarif",
            s(&sarif),
        ],
        &[],
    );
    assert_eq!(code(&out), 5, "{}", explain(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let failing = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "failing")
        .count();
    assert!(failing > 0);
    assert_eq!(report["counts"]["failing"], failing);
    let sarif: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        report["findings"].as_array().unwrap().len()
    );
}

#[test]
fn a_report_can_come_from_standard_input() {
    let dir = TempDir::new("scan-stdin");
    let out = Command::new(PIPELINE)
        .current_dir(dir.path())
        .args([
            "scan",
            "--grype-report",
            "-",
            "--policy",
            s(&shipped_policy()),
        ])
        .stdin(Stdio::from(
            std::fs::File::open(fixture("report-clean.json")).unwrap(),
        ))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));

    let bad = Command::new(PIPELINE)
        .current_dir(dir.path())
        .args([
            "scan",
            "--grype-report",
            "-",
            "--policy",
            s(&shipped_policy()),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&bad), 2, "{}", explain(&bad));
    assert!(
        text(&bad.stderr).contains("Grype report on standard input: is empty"),
        "{}",
        explain(&bad)
    );
}

#[test]
fn vex_documents_and_the_image_digest_apply_from_the_command_line() {
    let dir = TempDir::new("scan-vex");
    // Without its source, the report does not say which image it was.
    let mut report: Value =
        serde_json::from_slice(&std::fs::read(fixture("report-debian.json")).unwrap()).unwrap();
    let digest = report["source"]["target"]["manifestDigest"]
        .as_str()
        .unwrap()
        .to_owned();
    report.as_object_mut().unwrap().remove("source");
    let anonymous = write(&dir, "anonymous.json", &report.to_string());
    let policy = write(&dir, "p.yaml", "fail_on: critical\n");
    let json = dir.path().join("scan.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--grype-report",
            s(&anonymous),
            "--policy",
            s(&policy),
            "--json",
            s(&json),
        ];
        args.extend_from_slice(extra);
        let out = pipeline(dir.path(), &args, &[]);
        let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        (out, report)
    };
    let status_of = |report: &Value, id: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["status"].as_str().unwrap().to_owned())
            .unwrap()
    };

    let vex = fixture("vex-image.json");
    let (out, without_digest) = run(&["--vex", s(&vex)]);
    assert_eq!(code(&out), 5, "{}", explain(&out));
    assert_eq!(status_of(&without_digest, "CVE-2024-0001"), "failing");

    let (out, with_digest) = run(&["--vex", s(&vex), "--image-digest", &digest]);
    assert_eq!(
        code(&out),
        5,
        "requests is still critical: {}",
        explain(&out)
    );
    assert_eq!(status_of(&with_digest, "CVE-2024-0001"), "suppressed");
    assert!(
        text(&out.stdout).contains("VEX fixed, https://example.com/vex/app-image statements[0]")
    );

    let other = format!("sha256:{}", "0".repeat(64));
    let (_, other_image) = run(&["--vex", s(&vex), "--image-digest", &other]);
    assert_eq!(status_of(&other_image, "CVE-2024-0001"), "failing");
}

#[test]
fn malformed_inputs_exit_2_with_what_to_fix() {
    let dir = TempDir::new("scan-malformed");
    let report = fixture("report-debian.json");
    let good_policy = shipped_policy();
    let unknown_key = write(&dir, "unknown.yaml", "fail_on: high\nfail_when: low\n");
    let no_reason = write(
        &dir,
        "noreason.yaml",
        "fail_on: high\nignore:\n  - vulnerability: CVE-1\n    expires: 2030-01-01\n",
    );
    let not_json = write(&dir, "report.txt", "NAME INSTALLED VULNERABILITY\n");
    let no_matches = write(
        &dir,
        "nomatches.json",
        "{\"descriptor\": {\"name\": \"grype\"}}",
    );
    let bad_vex = write(
        &dir,
        "vex.json",
        "{\"@context\": \"https://openvex.dev/ns/v0.2.0\", \"statements\": [{\"vulnerability\": {\"name\": \"CVE-1\"}, \"status\": \"maybe\", \"products\": [{\"@id\": \"pkg:npm/x\"}]}]}",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--grype-report", s(&report), "--policy", s(&unknown_key)],
            "unknown field `fail_when`",
        ),
        (
            vec!["--grype-report", s(&report), "--policy", s(&no_reason)],
            "ignore[0].reason: is missing",
        ),
        (
            vec!["--grype-report", s(&not_json), "--policy", s(&good_policy)],
            "is not valid JSON",
        ),
        (
            vec![
                "--grype-report",
                s(&no_matches),
                "--policy",
                s(&good_policy),
            ],
            "missing field `matches`",
        ),
        (
            vec![
                "--grype-report",
                s(&report),
                "--policy",
                s(&good_policy),
                "--vex",
                s(&bad_vex),
            ],
            "statements[0].status: is \"maybe\"",
        ),
        (
            vec!["--grype-report", s(&report)],
            "no scan policy at policies/scan.yaml (the default)",
        ),
        (
            vec!["--grype-report", s(&report), "--policy", "missing.yaml"],
            "cannot read scan policy missing.yaml",
        ),
        (vec!["--policy", s(&good_policy)], "--sbom"),
        (
            vec![
                "--grype-report",
                s(&report),
                "--sbom",
                "x.json",
                "--policy",
                s(&good_policy),
            ],
            "cannot be used with",
        ),
        (
            vec![
                "--grype-report",
                s(&report),
                "--db-cache-dir",
                "/tmp",
                "--policy",
                s(&good_policy),
            ],
            "cannot be used with",
        ),
        (
            vec![
                "--sbom",
                "x.json",
                "--db-max-age",
                "48",
                "--no-db-age-check",
            ],
            "cannot be used with",
        ),
        (
            vec!["--sbom", "x.json", "--db-auto-update", "maybe"],
            "invalid value 'maybe'",
        ),
        (
            vec!["--grype-report", s(&report), "--image-digest", "latest"],
            "is not a digest",
        ),
    ];
    for (args, expected) in cases {
        let out = pipeline(dir.path(), &args, &[]);
        assert_eq!(code(&out), 2, "{args:?}: {}", explain(&out));
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: expected {expected:?} in {}",
            explain(&out)
        );
    }
}

/// A directory that looks like a git work tree (what SARIF needs of one: a
/// `.git` at its root) with a policy whose rule expired, and a Dockerfile.
fn repository(prefix: &str) -> TempDir {
    let dir = TempDir::new(prefix);
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    write(
        &dir,
        "policies/scan.yaml",
        "fail_on: critical\nignore:\n  - vulnerability: CVE-2024-0006\n    reason: old waiver\n    expires: 2020-01-01\n",
    );
    write(&dir, "Dockerfile", "FROM scratch\n");
    dir
}

fn sarif_of(cwd: &Path, policy: &Path, extra: &[&str]) -> Value {
    let out_dir = TempDir::new("scan-sarif-out");
    let sarif = out_dir.path().join("scan.sarif");
    let report = fixture("report-debian.json");
    let mut args = vec![
        "--grype-report",
        s(&report),
        "--policy",
        s(policy),
        "--sarif",
        s(&sarif),
    ];
    args.extend_from_slice(extra);
    let out = pipeline(cwd, &args, &[]);
    assert!([0, 5].contains(&code(&out)), "{}", explain(&out));
    serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap()
}

fn fingerprints(sarif: &Value) -> Vec<Value> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partialFingerprints"].clone())
        .collect()
}

#[test]
fn sarif_paths_are_relative_to_the_repository_and_every_result_has_stable_fingerprints() {
    let runs: Vec<(TempDir, Value)> = ["scan-repo-a", "scan-repo-b"]
        .into_iter()
        .map(|prefix| {
            let repo = repository(prefix);
            // Absolute paths, as CI passes them.
            let policy = repo.path().join("policies/scan.yaml");
            let dockerfile = repo.path().join("Dockerfile");
            let sarif = sarif_of(repo.path(), &policy, &["--dockerfile", s(&dockerfile)]);
            (repo, sarif)
        })
        .collect();
    for (repo, sarif) in &runs {
        let text = sarif.to_string();
        assert!(
            !text.contains(s(repo.path())),
            "no absolute path of the checkout: {text}"
        );
        let run = &sarif["runs"][0];
        assert_eq!(run["properties"]["policy"], "policies/scan.yaml");
        let results = run["results"].as_array().unwrap();
        let notes: Vec<&Value> = results
            .iter()
            .filter(|r| r["ruleId"] == "pipeline/expired-ignore-rule")
            .collect();
        assert_eq!(notes.len(), 1, "{text}");
        assert_eq!(
            notes[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "policies/scan.yaml"
        );
        for r in results {
            let fp = r["partialFingerprints"].as_object();
            assert!(fp.is_some_and(|f| !f.is_empty()), "no fingerprint: {r}");
            for l in r["locations"].as_array().unwrap() {
                if let Some(uri) = l.pointer("/physicalLocation/artifactLocation/uri") {
                    let uri = uri.as_str().unwrap();
                    assert!(
                        !uri.starts_with('/') && !uri.contains(':'),
                        "not relative: {uri}"
                    );
                }
            }
            if r["ruleId"] != "pipeline/expired-ignore-rule" {
                assert_eq!(
                    r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "Dockerfile",
                    "findings are attached to the Dockerfile: {r}"
                );
            }
        }
    }
    // Same findings, two checkouts: the same fingerprints.
    assert_eq!(fingerprints(&runs[0].1), fingerprints(&runs[1].1));
    let all = fingerprints(&runs[0].1);
    let unique: std::collections::HashSet<String> = all.iter().map(Value::to_string).collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "distinct findings, distinct fingerprints"
    );
}

#[test]
fn sarif_leaves_out_paths_outside_the_repository() {
    // Neither the working directory nor the policy is in a git work tree.
    let elsewhere = TempDir::new("scan-no-repo");
    let policy = write(
        &elsewhere,
        "my-policy.yaml",
        "fail_on: critical\nignore:\n  - vulnerability: CVE-2024-0006\n    reason: old waiver\n    expires: 2020-01-01\n",
    );
    let sarif = sarif_of(elsewhere.path(), &policy, &[]);
    let text = sarif.to_string();
    assert!(!text.contains(s(elsewhere.path())), "{text}");
    let run = &sarif["runs"][0];
    assert_eq!(run["properties"]["policy"], "my-policy.yaml");
    for r in run["results"].as_array().unwrap() {
        assert!(r["partialFingerprints"].is_object(), "{r}");
        assert!(
            r["locations"][0].get("physicalLocation").is_none(),
            "no path is better than an absolute one: {r}"
        );
        assert!(
            !r["locations"][0]["logicalLocations"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}
