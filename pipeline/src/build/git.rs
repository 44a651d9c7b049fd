//! What the `git` CLI says about the repository holding a build context.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths listed in the "dirty" message at most.
const SHOWN_DIRTY_PATHS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInfo {
    /// The work tree's top directory.
    pub root: PathBuf,
    /// Full SHA of `HEAD`.
    pub sha: String,
    /// `git status --porcelain` lines (untracked files included), at most
    /// [`SHOWN_DIRTY_PATHS`] of them; empty when clean.
    pub dirty: Vec<String>,
    /// How many paths are dirty in all.
    pub dirty_count: usize,
    /// The `origin` remote (else the first remote) with any credentials
    /// removed, or the work tree's path when there is no remote.
    pub source: String,
    /// Committer time of `HEAD`, Unix seconds.
    pub commit_time: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0} (is git installed and on PATH?)")]
    Missing(String),
    #[error(
        "{path} is not inside a git work tree; the image tag is the commit SHA, so builds need a repository (`git init` and a commit)"
    )]
    NotARepository { path: PathBuf },
    #[error(
        "the repository at {path} has no commit yet; commit first, the image tag is the commit SHA"
    )]
    NoCommit { path: PathBuf },
    #[error("`git {command}` failed in {path}: {message}")]
    Failed {
        command: String,
        path: PathBuf,
        message: String,
    },
}

/// A `git` command that ran and exited non-zero: its stderr.
#[derive(Debug)]
struct Refused(String);

/// Runs `git -C dir ARGS`: `Ok(Ok(stdout))` when it succeeds, `Ok(Err(..))`
/// when git refuses (callers decide what that means: "not a repository",
/// "no commit"), `Err` when git cannot run at all.
fn git(dir: &Path, args: &[&str]) -> Result<Result<String, Refused>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| GitError::Missing(e.to_string()))?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        Ok(Err(Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )))
    }
}

fn must(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    git(dir, args)?.map_err(|Refused(message)| GitError::Failed {
        command: args.join(" "),
        path: dir.to_owned(),
        message,
    })
}

/// Inspects the repository that contains `dir`.
pub fn inspect(dir: &Path) -> Result<GitInfo, GitError> {
    let root = match git(dir, &["rev-parse", "--show-toplevel"])? {
        Ok(r) => PathBuf::from(r.trim()),
        Err(_) => {
            return Err(GitError::NotARepository {
                path: dir.to_owned(),
            });
        }
    };
    let sha = match git(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])? {
        Ok(s) => s.trim().to_owned(),
        Err(_) => return Err(GitError::NoCommit { path: root }),
    };
    let status = must(
        &root,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ],
    )?;
    let lines: Vec<String> = status
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let dirty_count = lines.len();
    let dirty = lines.into_iter().take(SHOWN_DIRTY_PATHS).collect();
    let remotes = must(&root, &["remote"])?;
    let remote = if remotes.lines().any(|r| r.trim() == "origin") {
        Some("origin".to_owned())
    } else {
        remotes.lines().next().map(|r| r.trim().to_owned())
    };
    let source = match remote.filter(|r| !r.is_empty()) {
        Some(r) => strip_credentials(must(&root, &["remote", "get-url", &r])?.trim()),
        None => root.display().to_string(),
    };
    let time = must(&root, &["show", "-s", "--format=%ct", "HEAD"])?;
    let commit_time = time.trim().parse().map_err(|_| GitError::Failed {
        command: "show -s --format=%ct HEAD".into(),
        path: root.clone(),
        message: format!("unexpected output {:?}", time.trim()),
    })?;
    Ok(GitInfo {
        root,
        sha,
        dirty,
        dirty_count,
        source,
        commit_time,
    })
}

/// `https://user:token@host/x.git` → `https://host/x.git`. scp-like
/// addresses (`git@host:x.git`) name a user, not a secret, and stay.
pub fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_remote_urls() {
        assert_eq!(
            strip_credentials("https://user:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_credentials("https://token@host:8443/r"),
            "https://host:8443/r"
        );
        assert_eq!(
            strip_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(strip_credentials("/srv/repo"), "/srv/repo");
        assert_eq!(strip_credentials("ssh://git@host/r"), "ssh://host/r");
    }
}
