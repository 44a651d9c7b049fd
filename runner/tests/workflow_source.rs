//! Fetching commits into the bare cache and reading them, against real git
//! repositories made by each test in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runner::workflow::policy::{Protocol, SourcePolicy};
use runner::workflow::source::{GitSource, SourceError, WorkflowContent};
use test_support::TempDir;

fn policy() -> SourcePolicy {
    SourcePolicy {
        protocols: vec![Protocol::Https, Protocol::Ssh, Protocol::File],
        max_repository_bytes: 64 << 20,
        fetch_timeout: Duration::from_secs(60),
        max_archive_bytes: 64 << 20,
    }
}

/// Runs git in `dir` as a developer would, isolated from the host's config.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(dir: &Path, path: &str, content: &[u8]) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A repository with two commits; returns (path, first, second).
fn repo(tmp: &TempDir) -> (PathBuf, String, String) {
    let dir = tmp.path().join("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    write(&dir, "src/main.c", b"int main(void) { return 0; }\n");
    write(&dir, "tests/t.sh", b"echo test\n");
    write(
        &dir,
        ".gitattributes",
        b"tests/** export-ignore\nversion.txt export-subst\n",
    );
    write(&dir, "version.txt", b"$Format:%H$\n");
    write(&dir, ".github/workflows/ci.yml", b"on: push\n");
    write(
        &dir,
        ".github/workflows/release.yaml",
        b"on: push # release\n",
    );
    write(&dir, ".github/workflows/README.md", b"not a workflow\n");
    write(
        &dir,
        ".github/workflows/nested/deep.yml",
        b"on: push # nested\n",
    );
    write(
        &dir,
        ".github/workflows/binary.yml",
        &[0xff, 0xfe, 0x00, 0x01],
    );
    std::os::unix::fs::symlink("/etc/passwd", dir.join(".github/workflows/link.yml")).unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "first"]);
    let first = git(&dir, &["rev-parse", "HEAD"]);
    write(&dir, "src/main.c", b"int main(void) { return 1; }\n");
    write(&dir, "docs/new.md", b"# new\n");
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "second"]);
    let second = git(&dir, &["rev-parse", "HEAD"]);
    (dir, first, second)
}

fn source(tmp: &TempDir, policy: SourcePolicy) -> GitSource {
    GitSource::new(&tmp.path().join("cache"), policy).unwrap()
}

fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((path, data));
    }
    out
}

#[tokio::test]
async fn fetches_a_commit_and_archives_its_files_faithfully() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, second) = repo(&tmp);
    let s = source(&tmp, policy());
    let f = s
        .fetch(upstream.to_str().unwrap(), &first, None)
        .await
        .unwrap();
    assert!(f.repo.join("HEAD").is_file(), "a bare cache repository");
    assert!(
        !f.repo.join("src").exists(),
        "nothing is checked out on the host"
    );
    assert!(f.size > 0);
    let mut out = Vec::new();
    let n = s.archive(&f, &mut out).await.unwrap();
    assert_eq!(n, out.len() as u64);
    let entries = tar_entries(&out);
    let get = |p: &str| {
        entries
            .iter()
            .find(|(path, _)| path == p)
            .map(|(_, d)| d.clone())
    };
    assert_eq!(
        get("src/main.c").unwrap(),
        b"int main(void) { return 0; }\n"
    );
    assert_eq!(
        get("tests/t.sh").unwrap(),
        b"echo test\n",
        "export-ignore in the repository does not drop files"
    );
    assert_eq!(
        get("version.txt").unwrap(),
        b"$Format:%H$\n",
        "export-subst does not rewrite files"
    );
    // The second commit, through a file:// URL (another cache key).
    let url = format!("file://{}", upstream.display());
    let f2 = s
        .fetch(&url, &second, Some("refs/heads/main"))
        .await
        .unwrap();
    let mut out = Vec::new();
    s.archive(&f2, &mut out).await.unwrap();
    assert!(tar_entries(&out).iter().any(|(p, _)| p == "docs/new.md"));
}

#[tokio::test]
async fn a_cached_commit_needs_no_fetch() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, _) = repo(&tmp);
    let s = source(&tmp, policy());
    let url = upstream.to_str().unwrap().to_owned();
    s.fetch(&url, &first, None).await.unwrap();
    std::fs::remove_dir_all(&upstream).unwrap();
    let again = s.fetch(&url, &first, None).await.unwrap();
    assert_eq!(again.commit, first);
}

#[tokio::test]
async fn reads_workflow_files_from_the_commit_only() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, _) = repo(&tmp);
    let s = source(&tmp, policy());
    let f = s
        .fetch(upstream.to_str().unwrap(), &first, None)
        .await
        .unwrap();
    let files = s.workflow_files(&f, ".github/workflows").await.unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".github/workflows/binary.yml",
            ".github/workflows/ci.yml",
            ".github/workflows/link.yml",
            ".github/workflows/release.yaml"
        ]
    );
    assert_eq!(files[1].content, WorkflowContent::Text("on: push\n".into()));
    assert_eq!(
        files[3].content,
        WorkflowContent::Text("on: push # release\n".into())
    );
    assert!(matches!(&files[0].content, WorkflowContent::Refused(r) if r.contains("not UTF-8")));
    assert!(
        matches!(&files[2].content, WorkflowContent::Refused(r) if r.contains("symbolic link")),
        "{:?}",
        files[2]
    );
    assert!(
        s.workflow_files(&f, "no/such/dir")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn changed_paths_between_two_commits() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, second) = repo(&tmp);
    let s = source(&tmp, policy());
    let f = s
        .fetch(upstream.to_str().unwrap(), &second, None)
        .await
        .unwrap();
    assert_eq!(
        s.changed_paths(&f, &first).await.unwrap().unwrap(),
        ["docs/new.md", "src/main.c"]
    );
    assert_eq!(s.changed_paths(&f, &"0".repeat(40)).await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_commit_is_a_clear_error() {
    let tmp = TempDir::new("wf-source");
    let (upstream, _, _) = repo(&tmp);
    let s = source(&tmp, policy());
    let missing = "1234567890123456789012345678901234567890";
    for git_ref in [None, Some("refs/heads/main")] {
        let e = s
            .fetch(upstream.to_str().unwrap(), missing, git_ref)
            .await
            .unwrap_err();
        assert!(
            matches!(e, SourceError::CommitNotFound { .. }),
            "{git_ref:?}: {e}"
        );
        assert_eq!(
            e.to_string(),
            format!("commit {missing} does not exist in {}", upstream.display())
        );
    }
}

#[tokio::test]
async fn bad_commits_refs_and_urls_are_refused_before_git_runs() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, _) = repo(&tmp);
    let s = source(&tmp, policy());
    let url = upstream.to_str().unwrap();
    assert!(matches!(
        s.fetch(url, "--upload-pack=touch /tmp/x", None).await,
        Err(SourceError::InvalidCommit { .. })
    ));
    assert!(matches!(
        s.fetch(url, "HEAD", None).await,
        Err(SourceError::InvalidCommit { .. })
    ));
    assert!(matches!(
        s.fetch(url, &first, Some("--force")).await,
        Err(SourceError::InvalidRef { .. })
    ));
    assert!(matches!(
        s.fetch(url, &first, Some("refs/heads/../x")).await,
        Err(SourceError::InvalidRef { .. })
    ));
    let e = s
        .fetch("ext::sh -c touch% /tmp/pwned", &first, None)
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::UrlNotAllowed { .. }), "{e}");
    let e = s
        .fetch("http://example.com/a.git", &first, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the transport `http`, which the workflow policy does not allow (allowed: https, ssh, file)"), "{e}");
    // A policy without `file` refuses local paths.
    let https_only = source(
        &tmp,
        SourcePolicy {
            protocols: vec![Protocol::Https],
            ..policy()
        },
    );
    let e = https_only.fetch(url, &first, None).await.unwrap_err();
    assert!(e.to_string().contains("transport `file`"), "{e}");
}

#[tokio::test]
async fn a_repository_over_its_size_limit_is_refused_and_removed() {
    let tmp = TempDir::new("wf-source");
    let dir = tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    // Incompressible bytes, so the pack is as large as the file.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..512 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write(&dir, "blob.bin", &noise);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "big"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    let s = source(
        &tmp,
        SourcePolicy {
            max_repository_bytes: 100 * 1024,
            ..policy()
        },
    );
    let e = s
        .fetch(dir.to_str().unwrap(), &commit, None)
        .await
        .unwrap_err();
    let SourceError::TooLarge { size, limit, .. } = e else {
        panic!("{e}")
    };
    assert!(size > limit && limit == 100 * 1024, "{size} {limit}");
    let url = runner::workflow::source::url::classify(dir.to_str().unwrap()).unwrap();
    assert!(
        !s.cache_path(&url).exists(),
        "the oversized cache is removed"
    );
}

#[tokio::test]
async fn an_archive_over_its_limit_is_stopped() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, _) = repo(&tmp);
    let s = source(
        &tmp,
        SourcePolicy {
            max_archive_bytes: 4096,
            ..policy()
        },
    );
    let f = s
        .fetch(upstream.to_str().unwrap(), &first, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    let e = s.archive(&f, &mut out).await.unwrap_err();
    assert!(
        matches!(e, SourceError::ArchiveTooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert!(out.len() <= 4096);
}

#[tokio::test]
async fn credentials_in_urls_never_reach_messages() {
    let tmp = TempDir::new("wf-source");
    let (_, first, _) = repo(&tmp);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = source(&tmp, policy());
    let url = format!("https://ci-bot:hunter2-token@127.0.0.1:{port}/acme/app.git");
    let e = s.fetch(&url, &first, None).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SourceError::FetchFailed { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!("https://***@127.0.0.1:{port}/acme/app.git")),
        "{text}"
    );
}

#[tokio::test]
async fn a_fetch_that_hangs_is_stopped_at_the_time_limit() {
    let tmp = TempDir::new("wf-source");
    let (_, first, _) = repo(&tmp);
    // Connections complete in the kernel's backlog, and nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = source(
        &tmp,
        SourcePolicy {
            fetch_timeout: Duration::from_secs(1),
            ..policy()
        },
    );
    let started = std::time::Instant::now();
    let e = s
        .fetch(&format!("https://127.0.0.1:{port}/a.git"), &first, None)
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::FetchTimedOut { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn hooks_in_the_cache_never_run() {
    let tmp = TempDir::new("wf-source");
    let (upstream, first, second) = repo(&tmp);
    let s = source(&tmp, policy());
    let f = s
        .fetch(upstream.to_str().unwrap(), &first, None)
        .await
        .unwrap();
    // A hook git runs on every ref update, planted in the cache.
    let marker = tmp.path().join("hook-ran");
    let hook = f.repo.join("hooks/reference-transaction");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Control: plain git runs it.
    git(&f.repo, &["update-ref", "refs/control", &first]);
    assert!(marker.exists(), "the planted hook works with plain git");
    std::fs::remove_file(&marker).unwrap();
    s.fetch(upstream.to_str().unwrap(), &second, None)
        .await
        .unwrap();
    assert!(!marker.exists(), "the runner's fetch ran the cache's hook");
}
