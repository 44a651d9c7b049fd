//! `pipeline build` on temporary git repositories and the real engine:
//! the tag is the commit SHA, the OCI labels tie the image to its source,
//! dirty work trees are refused unless asked for.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{docker, git, ok, pipeline, text};
use serde_json::Value;
use test_support::{TempDir, require_docker};

// Each test its own repository: the fixture commits are identical, so
// their SHAs (and tags) would otherwise collide between parallel tests.
const REPO_LABELS: &str = "pipeline-test/build-labels";
const REPO_EPOCH: &str = "pipeline-test/build-epoch";
const REPO_DIRTY: &str = "pipeline-test/build-dirty";
const REPO_FAIL: &str = "pipeline-test/build-fail";

/// A repository with a `FROM scratch` build (no base image needed) and a
/// `.dockerignore`.
fn scratch_repo() -> TempDir {
    let dir = TempDir::new("pipeline-build");
    let d = dir.path();
    std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n").unwrap();
    std::fs::write(d.join(".dockerignore"), "secret.txt\nbuild/\n").unwrap();
    std::fs::write(d.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(d.join("secret.txt"), "do not send\n").unwrap();
    std::fs::create_dir_all(d.join("build")).unwrap();
    std::fs::write(d.join("build/out.o"), "x").unwrap();
    git(d, &["init", "-q", "-b", "main"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "first"]);
    dir
}

fn build(dir: &Path, repo: &str, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["build", "--context", dir.to_str().unwrap(), "--image", repo];
    args.extend_from_slice(extra);
    pipeline(&args, env)
}

fn labels(image: &str) -> BTreeMap<String, String> {
    serde_json::from_str(&docker(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        image,
    ]))
    .unwrap()
}

/// Files in an image (which has no shell to list them with).
fn files_of(image: &str) -> Vec<String> {
    let id = docker(&["create", image, "none"]).trim().to_owned();
    let out = Command::new("sh")
        .args(["-c", &format!("docker export {id} | tar -t")])
        .output()
        .unwrap();
    docker(&["rm", &id]);
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn tags_with_the_commit_sha_and_labels_the_source() {
    require_docker!();
    let repo = scratch_repo();
    let sha = git(repo.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    git(
        repo.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://deploy:s3cr3t-token@git.example.com/team/app.git",
        ],
    );
    let out = build(repo.path(), REPO_LABELS, &["--json"], &[]);
    let json: Value = serde_json::from_str(&ok(&out, "build")).unwrap();
    let image = format!("{REPO_LABELS}:{sha}");
    assert_eq!(json["image"], image.as_str());
    assert_eq!(json["tag"], sha.as_str());
    assert_eq!(json["revision"], sha.as_str());
    assert_eq!(json["dirty"], false);
    let id = docker(&["inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(json["id"], id.trim());
    let l = labels(&image);
    assert_eq!(l["org.opencontainers.image.revision"], sha);
    assert_eq!(
        l["org.opencontainers.image.source"], "https://git.example.com/team/app.git",
        "credentials are stripped"
    );
    // The commit time (GIT_COMMITTER_DATE of the fixture), RFC 3339.
    assert_eq!(
        l["org.opencontainers.image.created"],
        "2024-01-02T03:04:05Z"
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("s3cr3t-token"), "{all}");
    // .dockerignore is honoured.
    let files = files_of(&image);
    assert!(files.iter().any(|f| f == "ctx/hello.txt"), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("secret.txt")), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("out.o")), "{files:?}");
    // Plain output: the tag, then the id.
    let out = build(repo.path(), REPO_LABELS, &[], &[]);
    assert_eq!(
        ok(&out, "build").lines().collect::<Vec<_>>(),
        [image.as_str(), id.trim()]
    );
}

#[test]
fn source_date_epoch_sets_the_created_label() {
    require_docker!();
    let repo = scratch_repo();
    let sha = git(repo.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    ok(
        &build(
            repo.path(),
            REPO_EPOCH,
            &[],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ),
        "build",
    );
    let l = labels(&format!("{REPO_EPOCH}:{sha}"));
    assert_eq!(
        l["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    // No remote: the source is the repository's path.
    let root = git(repo.path(), &["rev-parse", "--show-toplevel"]);
    assert_eq!(l["org.opencontainers.image.source"], root.trim());
    let out = build(
        repo.path(),
        REPO_EPOCH,
        &[],
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn dirty_work_trees_are_refused_unless_allowed() {
    require_docker!();
    let repo = scratch_repo();
    let sha = git(repo.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    // An untracked file counts.
    std::fs::write(repo.path().join("new.txt"), "untracked\n").unwrap();
    let out = build(repo.path(), REPO_DIRTY, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("uncommitted"), "{err}");
    assert!(err.contains("new.txt"), "{err}");
    assert!(err.contains("--allow-dirty"), "{err}");
    // So does a modified tracked file.
    std::fs::remove_file(repo.path().join("new.txt")).unwrap();
    std::fs::write(repo.path().join("hello.txt"), "changed\n").unwrap();
    assert_eq!(
        build(repo.path(), REPO_DIRTY, &[], &[]).status.code(),
        Some(2)
    );
    let out = build(repo.path(), REPO_DIRTY, &["--allow-dirty", "--json"], &[]);
    let json: Value = serde_json::from_str(&ok(&out, "dirty build")).unwrap();
    assert_eq!(json["tag"], format!("{sha}-dirty"));
    assert_eq!(json["dirty"], true);
    assert_eq!(
        labels(&format!("{REPO_DIRTY}:{sha}-dirty"))["org.opencontainers.image.revision"],
        sha
    );
}

#[test]
fn input_problems_and_failed_builds_have_their_exit_codes() {
    require_docker!();
    let not_git = TempDir::new("pipeline-notgit");
    std::fs::write(not_git.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = build(not_git.path(), REPO_FAIL, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not inside a git work tree"),
        "{}",
        text(&out.stderr)
    );
    let repo = scratch_repo();
    let out = pipeline(
        &[
            "build",
            "--context",
            repo.path().to_str().unwrap(),
            "--image",
            "Bad:Name",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = build(
        repo.path(),
        REPO_FAIL,
        &["--file", "/nonexistent/Dockerfile"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no Dockerfile"));
    // A Dockerfile step that fails: exit 4, with the build's own message.
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM scratch\nRUN /bin/false\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "broken"]);
    let out = build(repo.path(), REPO_FAIL, &["--build-arg", "A=1"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("failed"),
        "{}",
        text(&out.stderr)
    );
}
