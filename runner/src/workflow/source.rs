//! Sources of workflow runs: a commit fetched into a bare cache repository
//! on the host with the `git` CLI, then streamed out as `git archive` (the
//! job's workspace) and read for its workflow files — never checked out on
//! the host, no hooks, no submodules, bounded in size and time.

mod git;
pub mod url;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::policy::SourcePolicy;
use super::trigger::MAX_CHANGED_PATHS;
use super::yaml::YAML_LIMITS;
use git::{Git, RunError, run, stderr_task};
pub use url::RepoUrl;

/// At most this many workflow files are read from a commit.
pub const MAX_WORKFLOW_FILES: usize = 64;
/// Time any git command other than fetch and archive may take.
const QUICK: Duration = Duration::from_secs(60);
/// How often a running fetch's cache is measured.
const SIZE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{commit}` is not a commit id: give 40 (or 64) lower-case hex digits")]
    InvalidCommit { commit: String },
    #[error("`{git_ref}` is not a ref name like refs/heads/main")]
    InvalidRef { git_ref: String },
    #[error("repository {url} {reason}")]
    UrlNotAllowed { url: String, reason: String },
    #[error("commit {commit} does not exist in {url}")]
    CommitNotFound { url: String, commit: String },
    #[error(
        "repository {url} is {size} bytes, over its limit of {limit} bytes; its cache was removed"
    )]
    TooLarge { url: String, size: u64, limit: u64 },
    #[error("fetching {url} took longer than {after:?}; it was stopped")]
    FetchTimedOut { url: String, after: Duration },
    #[error("fetching {url} failed: {message}")]
    FetchFailed { url: String, message: String },
    #[error("the files of commit {commit} are more than {limit} bytes as a tar archive")]
    ArchiveTooLarge { commit: String, limit: u64 },
    #[error("git {action} failed: {message}")]
    Git {
        action: &'static str,
        message: String,
    },
    #[error("cannot run git ({program}): {source}")]
    GitMissing {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the archive of commit {commit} failed: {source}")]
    Write {
        commit: String,
        source: std::io::Error,
    },
}

/// A commit present in a cache repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The bare cache repository.
    pub repo: PathBuf,
    pub commit: String,
    /// The repository's URL with credentials hidden.
    pub url: String,
    /// Bytes of the cache repository after the fetch.
    pub size: u64,
}

/// A file of the workflow directory at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowFile {
    /// From the repository root: `.github/workflows/ci.yml`.
    pub path: String,
    pub content: WorkflowContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowContent {
    Text(String),
    /// Not read, and why (a symbolic link, too large, not UTF-8).
    Refused(String),
}

/// Fetches and reads commits; one per server, shared by every run.
#[derive(Debug)]
pub struct GitSource {
    cache_root: PathBuf,
    git: Git,
    policy: SourcePolicy,
    /// One fetch at a time per cache repository.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// 40 or 64 lower-case hex digits.
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A full ref name git accepts, checked here so it can never be read as an
/// option or a pattern.
fn is_ref_name(r: &str) -> bool {
    r.starts_with("refs/")
        && r.len() <= 1024
        && !r.contains("..")
        && !r.contains("//")
        && !r.contains("@{")
        && !r.ends_with('/')
        && !r.ends_with(".lock")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
}

impl GitSource {
    /// A source caching repositories under `cache_root` (created if missing).
    pub fn new(cache_root: &Path, policy: SourcePolicy) -> Result<Self, SourceError> {
        Self::with_git(cache_root, policy, Path::new("git"))
    }

    pub fn with_git(
        cache_root: &Path,
        policy: SourcePolicy,
        program: &Path,
    ) -> Result<Self, SourceError> {
        let home = cache_root.join("home");
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        Ok(GitSource {
            cache_root: cache_root.to_owned(),
            git: Git {
                program: program.to_owned(),
                home,
                protocols: policy.protocols.clone(),
            },
            policy,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Where the cache of `url` lives.
    pub fn cache_path(&self, url: &RepoUrl) -> PathBuf {
        let digest = Sha256::digest(url.key.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.cache_root.join(format!("{hex}.git"))
    }

    fn check_url(&self, url: &str) -> Result<RepoUrl, SourceError> {
        let parsed = url::classify(url).map_err(|e| SourceError::UrlNotAllowed {
            // Unreadable, so it cannot be redacted: not shown at all.
            url: "(as given)".into(),
            reason: e.to_string(),
        })?;
        if !self.policy.protocols.contains(&parsed.protocol) {
            let allowed: Vec<&str> = self.policy.protocols.iter().map(|p| p.git_name()).collect();
            return Err(SourceError::UrlNotAllowed {
                url: parsed.redacted,
                reason: format!(
                    "uses the transport `{}`, which the workflow policy does not allow (allowed: {})",
                    parsed.protocol.git_name(),
                    allowed.join(", ")
                ),
            });
        }
        Ok(parsed)
    }

    fn lock(&self, repo: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(repo.to_owned()).or_default().clone()
    }

    /// Makes `commit` of the repository at `url` present in its cache,
    /// fetching it (and its history) unless it is there already. `git_ref`,
    /// when known, is fetched instead if the server refuses a bare commit id.
    pub async fn fetch(
        &self,
        url: &str,
        commit: &str,
        git_ref: Option<&str>,
    ) -> Result<Fetched, SourceError> {
        if !is_commit_id(commit) {
            return Err(SourceError::InvalidCommit {
                commit: commit.chars().take(80).collect(),
            });
        }
        if let Some(r) = git_ref.filter(|r| !is_ref_name(r)) {
            return Err(SourceError::InvalidRef {
                git_ref: r.chars().take(80).collect(),
            });
        }
        let url = self.check_url(url)?;
        let repo = self.cache_path(&url);
        let lock = self.lock(&repo);
        let _guard = lock.lock().await;
        self.init(&repo).await?;
        if !self.has_commit(&repo, commit).await? {
            let started = Instant::now();
            let refspec = format!("+{commit}:refs/runner/commits/{commit}");
            let first = self.fetch_refspec(&repo, &url, &refspec, started).await;
            match (first, git_ref) {
                (Ok(()), _) => {}
                (Err(FetchProblem::Refused), Some(r)) => {
                    let refspec =
                        format!("+{r}:refs/runner/refs/{}", r.trim_start_matches("refs/"));
                    self.fetch_refspec(&repo, &url, &refspec, started)
                        .await
                        .map_err(|p| p.into_error(&url, commit))?;
                }
                (Err(p), _) => return Err(p.into_error(&url, commit)),
            }
            if !self.has_commit(&repo, commit).await? {
                return Err(SourceError::CommitNotFound {
                    url: url.redacted.clone(),
                    commit: commit.to_owned(),
                });
            }
        }
        let size = self.measure(&repo, &url).await?;
        Ok(Fetched {
            repo,
            commit: commit.to_owned(),
            url: url.redacted,
            size,
        })
    }

    /// Creates the bare cache repository if needed, with attributes that
    /// keep `git archive` faithful to the commit (`export-ignore` and
    /// `export-subst` in the repository would drop or rewrite files).
    async fn init(&self, repo: &Path) -> Result<(), SourceError> {
        if !repo.join("HEAD").is_file() {
            let mut cmd = self.git.command(None, None);
            cmd.args(["init", "--bare", "--quiet"]).arg(repo);
            self.quick(cmd, "init").await?;
        }
        let info = repo.join("info");
        std::fs::create_dir_all(&info).map_err(io(&info))?;
        let attributes = info.join("attributes");
        std::fs::write(&attributes, "* -export-ignore -export-subst\n").map_err(io(&attributes))?;
        Ok(())
    }

    async fn quick(
        &self,
        cmd: tokio::process::Command,
        action: &'static str,
    ) -> Result<git::Output, SourceError> {
        let out = run(cmd, QUICK, 64 << 20)
            .await
            .map_err(|e| self.run_error(e, action))?;
        if !out.status.success() {
            return Err(SourceError::Git {
                action,
                message: last_lines(&out.stderr),
            });
        }
        Ok(out)
    }

    fn run_error(&self, e: RunError, action: &'static str) -> SourceError {
        match e {
            RunError::Spawn(source) => SourceError::GitMissing {
                program: self.git.program.clone(),
                source,
            },
            RunError::TimedOut => SourceError::Git {
                action,
                message: format!("took longer than {QUICK:?}"),
            },
            RunError::TooMuchOutput => SourceError::Git {
                action,
                message: "printed more output than expected".into(),
            },
            RunError::Io(e) => SourceError::Git {
                action,
                message: e.to_string(),
            },
        }
    }

    async fn has_commit(&self, repo: &Path, commit: &str) -> Result<bool, SourceError> {
        let mut cmd = self.git.command(Some(repo), None);
        cmd.args(["cat-file", "-e", &format!("{commit}^{{commit}}")]);
        let out = run(cmd, QUICK, 1024)
            .await
            .map_err(|e| self.run_error(e, "cat-file"))?;
        Ok(out.status.success())
    }

    /// One `git fetch`, stopped when it runs past the policy's time or the
    /// cache grows past its size limit.
    async fn fetch_refspec(
        &self,
        repo: &Path,
        url: &RepoUrl,
        refspec: &str,
        started: Instant,
    ) -> Result<(), FetchProblem> {
        let mut cmd = self.git.command(Some(repo), Some(url));
        cmd.args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-recurse-submodules",
            "--no-write-fetch-head",
            "origin",
            refspec,
        ]);
        let mut child = cmd
            .spawn()
            .map_err(|e| FetchProblem::Failed(format!("cannot run git: {e}")))?;
        let stderr = stderr_task(&mut child);
        let limit = self.policy.max_repository_bytes;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.map_err(|e| FetchProblem::Failed(e.to_string()))?,
                () = tokio::time::sleep(SIZE_POLL) => {
                    if started.elapsed() > self.policy.fetch_timeout {
                        let _ = child.kill().await;
                        return Err(FetchProblem::TimedOut(self.policy.fetch_timeout));
                    }
                    let size = dir_size(repo.to_owned()).await;
                    if size > limit {
                        let _ = child.kill().await;
                        return Err(FetchProblem::TooLarge(size, limit, repo.to_owned()));
                    }
                }
            }
        };
        if status.success() {
            return Ok(());
        }
        let message = url.scrub(&last_lines(&stderr.await.unwrap_or_default()));
        let refused = [
            "not our ref",
            "couldn't find remote ref",
            "no such remote ref",
            "unadvertised object",
        ]
        .iter()
        .any(|m| message.contains(m));
        Err(if refused {
            FetchProblem::Refused
        } else {
            FetchProblem::Failed(message)
        })
    }

    /// The cache's size; over the limit, the cache is removed.
    async fn measure(&self, repo: &Path, url: &RepoUrl) -> Result<u64, SourceError> {
        let size = dir_size(repo.to_owned()).await;
        if size > self.policy.max_repository_bytes {
            remove_cache(repo);
            return Err(SourceError::TooLarge {
                url: url.redacted.clone(),
                size,
                limit: self.policy.max_repository_bytes,
            });
        }
        Ok(size)
    }

    /// Streams `git archive --format=tar` of the commit into `out`; returns
    /// the bytes written. Past the policy's archive limit, or its fetch
    /// time, git is stopped and the stream is incomplete: the caller must
    /// discard what it received.
    pub async fn archive<W: AsyncWrite + Unpin>(
        &self,
        fetched: &Fetched,
        out: &mut W,
    ) -> Result<u64, SourceError> {
        let mut cmd = self.git.command(Some(&fetched.repo), None);
        cmd.args(["archive", "--format=tar", &fetched.commit]);
        let mut child = cmd.spawn().map_err(|source| SourceError::GitMissing {
            program: self.git.program.clone(),
            source,
        })?;
        let stderr = stderr_task(&mut child);
        let Some(mut stdout) = child.stdout.take() else {
            return Err(SourceError::Git {
                action: "archive",
                message: "no output pipe".into(),
            });
        };
        let limit = self.policy.max_archive_bytes;
        let commit = fetched.commit.clone();
        let copy = async {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stdout.read(&mut buf).await.map_err(|e| SourceError::Git {
                    action: "archive",
                    message: e.to_string(),
                })?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > limit {
                    return Err(SourceError::ArchiveTooLarge {
                        commit: commit.clone(),
                        limit,
                    });
                }
                out.write_all(&buf[..n])
                    .await
                    .map_err(|source| SourceError::Write {
                        commit: commit.clone(),
                        source,
                    })?;
            }
            out.flush().await.map_err(|source| SourceError::Write {
                commit: commit.clone(),
                source,
            })?;
            Ok(total)
        };
        let total = match tokio::time::timeout(self.policy.fetch_timeout, copy).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Git {
                action: "archive",
                message: format!("took longer than {:?}", self.policy.fetch_timeout),
            }),
        };
        let total = match total {
            Ok(t) => t,
            Err(e) => {
                let _ = child.kill().await;
                return Err(e);
            }
        };
        let status = child.wait().await.map_err(|e| SourceError::Git {
            action: "archive",
            message: e.to_string(),
        })?;
        if !status.success() {
            return Err(SourceError::Git {
                action: "archive",
                message: last_lines(&stderr.await.unwrap_or_default()),
            });
        }
        Ok(total)
    }

    /// The `*.yml` and `*.yaml` files directly in `dir` at the commit, read
    /// from git's objects (never from a checkout), sorted by path.
    pub async fn workflow_files(
        &self,
        fetched: &Fetched,
        dir: &str,
    ) -> Result<Vec<WorkflowFile>, SourceError> {
        let mut cmd = self.git.command(Some(&fetched.repo), None);
        cmd.args([
            "ls-tree",
            "-z",
            "-l",
            &fetched.commit,
            "--",
            &format!("{}/", dir.trim_end_matches('/')),
        ]);
        let out = self.quick(cmd, "ls-tree").await?;
        let mut files = Vec::new();
        for entry in out.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
                continue;
            }
            let fields: Vec<&str> = meta.split_whitespace().collect();
            let [mode, kind, oid, size] = fields[..] else {
                continue;
            };
            if kind != "blob" {
                continue;
            }
            files.push((
                path.to_owned(),
                mode.to_owned(),
                oid.to_owned(),
                size.parse::<u64>().unwrap_or(u64::MAX),
            ));
        }
        if files.len() > MAX_WORKFLOW_FILES {
            return Err(SourceError::Git {
                action: "ls-tree",
                message: format!(
                    "{dir} holds {} workflow files; at most {MAX_WORKFLOW_FILES} are read",
                    files.len()
                ),
            });
        }
        files.sort();
        let mut result = Vec::new();
        for (path, mode, oid, size) in files {
            let content = if mode == "120000" {
                WorkflowContent::Refused(
                    "it is a symbolic link, which is not followed: make it a regular file".into(),
                )
            } else if size > YAML_LIMITS.max_bytes as u64 {
                WorkflowContent::Refused(format!(
                    "it is {size} bytes; workflow files may hold at most {} bytes",
                    YAML_LIMITS.max_bytes
                ))
            } else {
                let mut cmd = self.git.command(Some(&fetched.repo), None);
                cmd.args(["cat-file", "blob", &oid]);
                let out = self.quick(cmd, "cat-file").await?;
                match String::from_utf8(out.stdout) {
                    Ok(text) => WorkflowContent::Text(text),
                    Err(_) => WorkflowContent::Refused("it is not UTF-8 text".into()),
                }
            };
            result.push(WorkflowFile { path, content });
        }
        Ok(result)
    }

    /// Files changed between `before` and the fetched commit, or `None`
    /// when `before` is not in the cache (a force-push, a new branch) or
    /// more than [`MAX_CHANGED_PATHS`] files changed.
    pub async fn changed_paths(
        &self,
        fetched: &Fetched,
        before: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        if !is_commit_id(before) || !self.has_commit(&fetched.repo, before).await? {
            return Ok(None);
        }
        let mut cmd = self.git.command(Some(&fetched.repo), None);
        cmd.args([
            "diff-tree",
            "-r",
            "-z",
            "--name-only",
            "--no-renames",
            "--no-commit-id",
            before,
            &fetched.commit,
        ]);
        let out = self.quick(cmd, "diff-tree").await?;
        let paths: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        Ok((paths.len() <= MAX_CHANGED_PATHS).then_some(paths))
    }
}

enum FetchProblem {
    /// The server would not send the commit (unknown, or not fetchable by
    /// its id).
    Refused,
    Failed(String),
    TimedOut(Duration),
    /// The cache grew past the limit while fetching: size, limit, cache.
    TooLarge(u64, u64, PathBuf),
}

impl FetchProblem {
    fn into_error(self, url: &RepoUrl, commit: &str) -> SourceError {
        match self {
            FetchProblem::Refused => SourceError::CommitNotFound {
                url: url.redacted.clone(),
                commit: commit.to_owned(),
            },
            FetchProblem::Failed(message) => SourceError::FetchFailed {
                url: url.redacted.clone(),
                message,
            },
            FetchProblem::TimedOut(after) => SourceError::FetchTimedOut {
                url: url.redacted.clone(),
                after,
            },
            FetchProblem::TooLarge(size, limit, repo) => {
                remove_cache(&repo);
                SourceError::TooLarge {
                    url: url.redacted.clone(),
                    size,
                    limit,
                }
            }
        }
    }
}

fn remove_cache(repo: &Path) {
    if let Err(e) = std::fs::remove_dir_all(repo) {
        tracing::warn!(repo = %repo.display(), error = %e, "cannot remove an oversized repository cache");
    }
}

/// The last lines of git's stderr: where it says what went wrong.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() {
        "git gave no reason".into()
    } else {
        tail.join(" / ")
    }
}

/// Bytes of regular files under `dir`, symbolic links not followed.
async fn dir_size(dir: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        let mut todo = vec![dir];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => todo.push(e.path()),
                    Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                    _ => {}
                }
            }
        }
        total
    })
    .await
    .unwrap_or(u64::MAX)
}
