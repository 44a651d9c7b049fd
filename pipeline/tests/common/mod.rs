//! Shared by the pipeline's integration tests: running the binary with a
//! clean credential environment, temporary git repositories, the Debian base
//! image, and the fixture image built once per test binary.
#![allow(dead_code)] // each test binary uses its own subset

pub mod service;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;
use test_support::TempDir;

pub const PIPELINE: &str = env!("CARGO_BIN_EXE_pipeline");
pub const DEBIAN_IMAGE: &str = "debian:bookworm-slim";

/// Runs `pipeline` with `args` and `env`. Credentials come only from `env`:
/// the host's Docker config and `PIPELINE_*` variables are hidden.
pub fn pipeline(args: &[&str], env: &[(&str, &str)]) -> Output {
    static EMPTY_CONFIG: OnceLock<TempDir> = OnceLock::new();
    let config = EMPTY_CONFIG.get_or_init(|| TempDir::new("pipeline-docker-config"));
    let mut cmd = Command::new(PIPELINE);
    cmd.args(args)
        .env_remove("PIPELINE_REGISTRY_USER")
        .env_remove("PIPELINE_REGISTRY_PASSWORD")
        .env_remove("PIPELINE_INSECURE_REGISTRIES")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("DOCKER_CONFIG", config.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running pipeline")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z"))
}

/// A git repository holding a copy of `src` (files and directories), all
/// committed.
pub fn repo_with(src: &Path, extra: &[(&str, &[u8])]) -> TempDir {
    let dir = TempDir::new("pipeline-repo");
    copy_tree(src, dir.path());
    for (name, bytes) in extra {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fixture"]);
    dir
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

pub fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure `debian:bookworm-slim` exists: no registry can be pulled
/// from here, so it is made from Debian's packages, as `runner images
/// build` does (debootstrap, then an import).
pub fn ensure_debian() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if image_exists(DEBIAN_IMAGE) {
        return;
    }
    let pulled = Command::new("docker")
        .args(["pull", DEBIAN_IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if pulled {
        return;
    }
    let rootfs = TempDir::new("pipeline-debootstrap");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(rootfs.path())
        .arg("http://deb.debian.org/debian"));
    let script = format!(
        "tar -C {} -c . | docker import - {DEBIAN_IMAGE}",
        rootfs.path().display()
    );
    run(Command::new("sh").args(["-c", &script]));
}

/// The host's CA bundle, so `pip install` in a build works behind a
/// TLS-intercepting proxy too.
pub fn ca_bundle() -> Vec<u8> {
    let candidates = [
        std::env::var("SSL_CERT_FILE").unwrap_or_default(),
        "/etc/ssl/certs/ca-certificates.crt".to_owned(),
    ];
    candidates
        .iter()
        .filter(|p| !p.is_empty())
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default()
}

/// The ecosystem-mix fixture image, built with `pipeline build` from a
/// temporary repository (once per test binary). Returns `REPO:SHA`.
pub fn fixture_image() -> String {
    static IMAGE: Mutex<Option<String>> = Mutex::new(None);
    let mut guard = IMAGE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = guard.as_ref() {
        return i.clone();
    }
    ensure_debian();
    let repo = repo_with(&fixtures().join("sbom-image"), &[("ca.crt", &ca_bundle())]);
    let out = pipeline(
        &[
            "build",
            "--context",
            repo.path().to_str().unwrap(),
            "--image",
            "pipeline-test/sbom-fixture",
            "--json",
        ],
        &[],
    );
    let json: Value = serde_json::from_str(&ok(&out, "building the fixture image")).unwrap();
    let image = json["image"].as_str().unwrap().to_owned();
    *guard = Some(image.clone());
    image
}

/// The SBOM `pipeline sbom SOURCE` prints, parsed.
pub fn sbom(source: &str, env: &[(&str, &str)]) -> (Value, Output) {
    let out = pipeline(&["sbom", source], env);
    let json = serde_json::from_str(&ok(&out, &format!("sbom {source}"))).unwrap();
    (json, out)
}

/// A component's property values by name.
pub fn props<'a>(component: &'a Value, name: &str) -> Vec<&'a str> {
    component["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["name"] == name)
                .filter_map(|p| p["value"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Components of a Syft package type (`deb`, `python`, `npm`...).
pub fn of_type<'a>(sbom: &'a Value, kind: &str) -> Vec<&'a Value> {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| props(c, "syft:package:type") == [kind])
        .collect()
}
