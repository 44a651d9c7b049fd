//! From a commit to the first environment: the supply chain
//! ([`crate::flow`]) run on a commit of a repository, checked out in a
//! temporary clone so the caller's checkout is never touched, tagged with
//! the commit SHA; then, when the commit is on a branch the policy names,
//! promoted into the automatic environment.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::build::BuildRequest;
use crate::cosign::signer::Signer;
use crate::error::{Blame, Classify};
use crate::flow::{FlowError, FlowFailure, Progress, RunPlan, RunReport, RunRequest};
use crate::reference::{NotPinned, Pinned};
use crate::scan::GrypeOptions;

use super::promote::{PromotionError, PromotionReport, PromotionRequest, Releaser};

/// What to build: a commit of a repository.
#[derive(Debug, Clone)]
pub struct CommitBuildRequest {
    /// A git repository: its work tree, any directory in it, or a bare
    /// repository (the runner's cache of fetched commits).
    pub repository: PathBuf,
    /// Where the commit lives, as the provenance names it; default: the
    /// repository's `origin` remote (else its path). Credentials in it are
    /// dropped.
    pub source: Option<String>,
    /// A commit: a SHA (full or abbreviated), or a branch or tag name,
    /// resolved once to a full SHA.
    pub commit: String,
    /// The build context, relative to the repository's top directory.
    pub context: PathBuf,
    /// The Dockerfile, relative to the context (default `Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `REGISTRY/NAME`; the tag is the commit SHA.
    pub image: String,
    pub build_args: Vec<(String, String)>,
    pub signer: Arc<dyn Signer>,
    /// The scan policy of the build's gate.
    pub scan_policy: PathBuf,
    pub vex: Vec<PathBuf>,
    pub grype: GrypeOptions,
    /// Where the SBOM, scan reports and provenance are written.
    pub output_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    pub source_date_epoch: Option<i64>,
}

/// A commit built, pushed, described, scanned, signed and attested.
#[derive(Debug, Clone)]
pub struct CommitBuild {
    /// The full SHA.
    pub commit: String,
    /// `REPO@sha256:...`.
    pub image: Pinned,
    /// `REPO:<sha>`.
    pub tag: String,
    /// Local and remote-tracking branches that contain the commit
    /// (`main`, `origin/main`).
    pub branches: Vec<String>,
    pub report: RunReport,
}

/// A commit built, and what became of its automatic promotion.
#[derive(Debug)]
pub struct CommitRelease {
    pub build: CommitBuild,
    /// The promotion into the automatic environment, when there was one.
    pub promotion: Option<PromotionReport>,
    /// Why it was not promoted, when it was not.
    pub not_promoted: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{} is not a git repository: {message}", .repository.display())]
    NotARepository {
        repository: PathBuf,
        message: String,
    },
    #[error("no commit {commit:?} in {}: {message}", .repository.display())]
    UnknownCommit {
        repository: PathBuf,
        commit: String,
        message: String,
    },
    #[error("the context {} must be a path inside the repository, without `..`", .context.display())]
    Context { context: PathBuf },
    #[error("cannot check out {commit} into a temporary directory: {message}")]
    Checkout { commit: String, message: String },
    #[error(transparent)]
    Plan(FlowError),
    /// The flow stopped; its report says how far it got.
    #[error(transparent)]
    Flow(Box<FlowFailure>),
    #[error("the flow gave {image}, which is not an image by digest: {source}")]
    Image { image: String, source: NotPinned },
    /// Built, but its promotion failed.
    #[error("built {image}, but: {source}")]
    Promotion {
        image: String,
        source: Box<PromotionError>,
    },
    #[error("internal error: a worker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Classify for ReleaseError {
    fn blame(&self) -> Blame {
        match self {
            ReleaseError::NotARepository { .. }
            | ReleaseError::UnknownCommit { .. }
            | ReleaseError::Context { .. } => Blame::Usage,
            ReleaseError::Checkout { .. } | ReleaseError::Image { .. } | ReleaseError::Task(_) => {
                Blame::Infra
            }
            ReleaseError::Plan(e) => e.blame(),
            ReleaseError::Flow(f) => f.blame(),
            ReleaseError::Promotion { source, .. } => source.blame(),
        }
    }
}

/// Why a `git` command gave no output. Its message is git's own (what the
/// release errors above quote), so it says nothing of its own.
#[derive(Debug, thiserror::Error)]
enum GitError {
    #[error("cannot run git: {source}")]
    Spawn { source: std::io::Error },
    /// git ran and refused; `stderr` (trimmed) says why, and may be empty.
    #[error("{stderr}")]
    Failed { args: String, stderr: String },
}

/// `git -C dir ARGS`: stdout, or stderr as the error.
fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Read-only commands must not refresh the caller's index either.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| GitError::Spawn { source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The commit's full SHA, its clone in a temporary directory, and the
/// branches that contain it.
struct CheckedOut {
    sha: String,
    clone: tempfile::TempDir,
    branches: Vec<String>,
}

fn check_out(request: &CommitBuildRequest) -> Result<CheckedOut, ReleaseError> {
    let (root, sha) = resolve(request)?;
    let failed = |message: &dyn std::fmt::Display| ReleaseError::Checkout {
        commit: sha.clone(),
        message: message.to_string(),
    };
    let clone = tempfile::Builder::new()
        .prefix("pipeline-commit-")
        .tempdir()
        .map_err(|e| failed(&e))?;
    let dir = clone.path().join("src");
    let (dir_text, root_text) = (dir.to_string_lossy(), root.to_string_lossy());
    // `--shared` borrows the objects: nothing is copied, and nothing in the
    // source repository changes.
    let args = [
        "clone",
        "--quiet",
        "--no-checkout",
        "--shared",
        &root_text,
        &dir_text,
    ];
    git(clone.path(), &args).map_err(|e| failed(&e))?;
    git(&dir, &["checkout", "--quiet", "--detach", &sha]).map_err(|e| failed(&e))?;
    // The provenance names where the commit lives: the source's remote.
    let source = match &request.source {
        Some(s) => crate::build::git::strip_credentials(s),
        None => source_of(&root),
    };
    git(&dir, &["remote", "set-url", "origin", &source]).map_err(|e| failed(&e))?;
    let branches = git(
        &root,
        &[
            "branch",
            "--all",
            "--contains",
            &sha,
            "--format=%(refname:short)",
        ],
    )
    .map(|out| out.lines().map(str::to_owned).collect())
    .unwrap_or_default();
    Ok(CheckedOut {
        sha,
        clone,
        branches,
    })
}

/// The repository's top directory and the commit's full SHA.
fn resolve(request: &CommitBuildRequest) -> Result<(PathBuf, String), ReleaseError> {
    let repo = &request.repository;
    let root = git(repo, &["rev-parse", "--show-toplevel"])
        .or_else(|message| {
            // A bare repository has no top level: its git directory is it.
            match git(repo, &["rev-parse", "--is-bare-repository"]).as_deref() {
                Ok("true") => git(repo, &["rev-parse", "--absolute-git-dir"]),
                _ => Err(message),
            }
        })
        .map_err(|e| ReleaseError::NotARepository {
            repository: repo.clone(),
            message: e.to_string(),
        })?;
    let root = PathBuf::from(root);
    let unknown = |message: String| ReleaseError::UnknownCommit {
        repository: root.clone(),
        commit: request.commit.clone(),
        message,
    };
    if request.commit.starts_with('-') {
        return Err(unknown("a commit does not start with `-`".into()));
    }
    let spec = format!("{}^{{commit}}", request.commit);
    let sha = git(
        &root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    )
    .map_err(|e| {
        unknown(match e {
            GitError::Failed { stderr, .. } if stderr.is_empty() => {
                "git knows no such commit".into()
            }
            e => e.to_string(),
        })
    })?;
    Ok((root, sha))
}

/// The `origin` remote (else the first) without credentials, or the
/// repository's path when it has none: what `pipeline build` records.
fn source_of(root: &Path) -> String {
    let remotes = git(root, &["remote"]).unwrap_or_default();
    let remote = if remotes.lines().any(|r| r.trim() == "origin") {
        Some("origin")
    } else {
        remotes.lines().next().map(str::trim)
    };
    remote
        .filter(|r| !r.is_empty())
        .and_then(|r| git(root, &["remote", "get-url", r]).ok())
        .map(|url| crate::build::git::strip_credentials(&url))
        .unwrap_or_else(|| root.display().to_string())
}

/// The context inside the clone, refusing paths that leave it.
fn context_in(clone: &Path, context: &Path) -> Result<PathBuf, ReleaseError> {
    let inside = context
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(ReleaseError::Context {
            context: context.to_owned(),
        });
    }
    Ok(clone.join(context))
}

/// Builds `request.commit` through the whole supply chain; the image is
/// tagged `REPO:<sha>` and returned by digest.
pub async fn build_for_commit(
    request: CommitBuildRequest,
    docker: &bollard::Docker,
    progress: &Progress,
) -> Result<CommitBuild, ReleaseError> {
    let r = request.clone();
    let checked = tokio::task::spawn_blocking(move || check_out(&r)).await??;
    progress(&format!(
        "building commit {} from a clean clone",
        checked.sha
    ));
    let context = context_in(&checked.clone.path().join("src"), &request.context)?;
    let run = RunRequest {
        build: BuildRequest {
            dockerfile: request.dockerfile.as_ref().map(|d| context.join(d)),
            context,
            repository: request.image.clone(),
            build_args: request.build_args.clone(),
            allow_dirty: false,
            source_date_epoch: request.source_date_epoch,
        },
        signer: request.signer,
        policy: request.scan_policy,
        vex: request.vex,
        grype: request.grype,
        output_dir: request.output_dir,
        insecure_registries: request.insecure_registries,
    };
    let plan = tokio::task::spawn_blocking(move || RunPlan::validate(run))
        .await?
        .map_err(ReleaseError::Plan)?;
    let tag = plan.tag().to_owned();
    let report = plan
        .execute(docker, progress)
        .await
        .map_err(ReleaseError::Flow)?;
    let reference = report.image.clone().unwrap_or_default();
    let image = Pinned::parse(&reference).map_err(|source| ReleaseError::Image {
        image: reference,
        source,
    })?;
    Ok(CommitBuild {
        commit: checked.sha,
        image,
        tag,
        branches: checked.branches,
        report,
    })
}

/// [`build_for_commit`], then the promotion into the automatic
/// environment when the commit is on one of its branches (a local branch
/// or `origin/<branch>`).
pub async fn release_commit(
    releaser: &Releaser,
    request: CommitBuildRequest,
    docker: &bollard::Docker,
    requested_by: &str,
    progress: &Progress,
) -> Result<CommitRelease, ReleaseError> {
    let build = build_for_commit(request, docker, progress).await?;
    let first = releaser.policy().first();
    let Some(wanted) = first.automatic_branches.clone() else {
        let why = format!("{} is not automatic: promote with approvals", first.name);
        return Ok(CommitRelease {
            build,
            promotion: None,
            not_promoted: Some(why),
        });
    };
    let on = |b: &String| {
        build
            .branches
            .iter()
            .any(|have| have == b || have == &format!("origin/{b}"))
    };
    if !wanted.iter().any(on) {
        let why = format!(
            "commit {} is on none of the branches {} takes ({}); it is on: {}",
            build.commit,
            first.name,
            wanted.join(", "),
            if build.branches.is_empty() {
                "no branch".to_owned()
            } else {
                build.branches.join(", ")
            }
        );
        return Ok(CommitRelease {
            build,
            promotion: None,
            not_promoted: Some(why),
        });
    }
    let request = PromotionRequest {
        image: build.image.to_string(),
        environment: first.name.clone(),
        requested_by: requested_by.to_owned(),
        approvals: Vec::new(),
    };
    match Box::pin(releaser.promote(request, progress)).await {
        Ok(p) => Ok(CommitRelease {
            build,
            promotion: Some(p),
            not_promoted: None,
        }),
        Err(e) => Err(ReleaseError::Promotion {
            image: build.image.to_string(),
            source: Box::new(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_stay_inside_the_clone() {
        let clone = Path::new("/tmp/c");
        assert_eq!(
            context_in(clone, Path::new("app")).unwrap(),
            Path::new("/tmp/c/app")
        );
        assert_eq!(
            context_in(clone, Path::new(".")).unwrap(),
            Path::new("/tmp/c/.")
        );
        assert!(context_in(clone, Path::new("../x")).is_err());
        assert!(context_in(clone, Path::new("/etc")).is_err());
    }
}
