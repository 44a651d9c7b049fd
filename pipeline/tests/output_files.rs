//! Result files (SBOM, scan reports) are not secrets: they get the mode the
//! user's umask gives any new file, not the 0600 of a temporary file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use test_support::TempDir;

const PIPELINE: &str = env!("CARGO_BIN_EXE_pipeline");

/// Runs `pipeline ARGS` under `umask MASK` (set by a shell: the test
/// process's own umask is shared by every test thread).
fn pipeline_with_umask(mask: &str, args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(PIPELINE)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_sbom_file_follows_the_umask() {
    let dir = TempDir::new("output-mode");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: a\nStatus: install ok installed\nVersion: 1\n",
    )
    .unwrap();
    let source = format!("dir:{}", root.display());
    for (mask, expected) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let out = dir.path().join(format!("sbom-{mask}.json"));
        pipeline_with_umask(mask, &["sbom", &source, "-o", out.to_str().unwrap()]);
        assert_eq!(mode(&out), expected, "umask {mask}");
        // Replacing an existing file gives the same mode.
        pipeline_with_umask(mask, &["sbom", &source, "-o", out.to_str().unwrap()]);
        assert_eq!(mode(&out), expected, "umask {mask}, replaced");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pipeline-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
}

#[test]
fn scan_reports_follow_the_umask() {
    let dir = TempDir::new("output-mode-scan");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "fail_on: critical\n").unwrap();
    let json = dir.path().join("scan.json");
    let sarif = dir.path().join("scan.sarif");
    pipeline_with_umask(
        "022",
        &[
            "scan",
            "--grype-report",
            fixtures.join("report-clean.json").to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--sarif",
            sarif.to_str().unwrap(),
        ],
    );
    assert_eq!(mode(&json), 0o644);
    assert_eq!(mode(&sarif), 0o644);
}
