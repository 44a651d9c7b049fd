//! `pipeline build`: an image built by the Docker engine (legacy builder)
//! from a git work tree, tagged with the commit SHA and labelled with OCI
//! annotations that tie it to its source.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::engine::{describe, is_not_found};
use crate::reference::Reference;

pub mod context;
pub mod dockerignore;
pub mod git;

pub use crate::labels::{
    CREATED as CREATED_LABEL, REVISION as REVISION_LABEL, SOURCE as SOURCE_LABEL,
};

/// Lines of build output kept to explain a failure.
const TAIL_LINES: usize = 20;

#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// Default: `Dockerfile` in the context.
    pub dockerfile: Option<PathBuf>,
    /// Repository to tag (`127.0.0.1:5000/app`), without tag.
    pub repository: String,
    pub build_args: Vec<(String, String)>,
    pub allow_dirty: bool,
    /// `SOURCE_DATE_EPOCH`, for the `created` label.
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub repository: String,
    /// `REPO:TAG`.
    pub tag: String,
    /// `sha256:...` image id.
    pub id: String,
    pub revision: String,
    pub dirty: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid --image {input:?}: {reason}")]
    Repository { input: String, reason: String },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error(
        "the work tree at {root} has {count} uncommitted change(s), so the commit SHA would not describe the image:\n{paths}\ncommit or stash them, or pass --allow-dirty (the tag then ends in -dirty)"
    )]
    Dirty {
        root: PathBuf,
        count: usize,
        paths: String,
    },
    #[error(transparent)]
    Context(#[from] context::ContextError),
    #[error("cannot reach the Docker engine to build {image}: {message}")]
    Engine { image: String, message: String },
    #[error("building {image} failed: {message}")]
    Failed { image: String, message: String },
}

/// How a failure is reported: [`crate::error::Blame`] (usage,
/// infrastructure, or the build itself failed).
pub use crate::error::Blame as FailureKind;

impl BuildError {
    pub fn kind(&self) -> FailureKind {
        match self {
            BuildError::Repository { .. }
            | BuildError::Input(_)
            | BuildError::Git(
                git::GitError::NotARepository { .. } | git::GitError::NoCommit { .. },
            )
            | BuildError::Dirty { .. }
            | BuildError::Context(_) => FailureKind::Usage,
            BuildError::Git(_) | BuildError::Engine { .. } => FailureKind::Infra,
            BuildError::Failed { .. } => FailureKind::BuildFailed,
        }
    }
}

pub use crate::clock::rfc3339;

/// Checks `--image`: a repository, without tag or digest.
pub fn check_repository(input: &str) -> Result<(), BuildError> {
    let fail = |reason: String| BuildError::Repository {
        input: input.to_owned(),
        reason,
    };
    let r = Reference::parse(input).map_err(|e| fail(e.reason))?;
    if r.tag.is_some() || r.digest.is_some() {
        return Err(fail(
            "give the repository only; the tag is the commit SHA".into(),
        ));
    }
    Ok(())
}

/// What the build will do, before the engine is involved: the git state,
/// the tag and the labels.
#[derive(Debug, Clone)]
pub struct Plan {
    pub git: git::GitInfo,
    pub tag: String,
    pub labels: BTreeMap<String, String>,
    pub dockerfile: PathBuf,
}

pub fn plan(req: &BuildRequest) -> Result<Plan, BuildError> {
    check_repository(&req.repository)?;
    if !req.context.is_dir() {
        return Err(BuildError::Input(format!(
            "the context {} is not a directory",
            req.context.display()
        )));
    }
    let dockerfile = req
        .dockerfile
        .clone()
        .unwrap_or_else(|| req.context.join("Dockerfile"));
    if !dockerfile.is_file() {
        return Err(BuildError::Input(format!(
            "no Dockerfile at {}; pass --file PATH",
            dockerfile.display()
        )));
    }
    let git = git::inspect(&req.context)?;
    let dirty = git.dirty_count > 0;
    if dirty && !req.allow_dirty {
        let mut paths = git
            .dirty
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        if git.dirty_count > git.dirty.len() {
            paths.push_str(&format!(
                "\n  ... and {} more",
                git.dirty_count - git.dirty.len()
            ));
        }
        return Err(BuildError::Dirty {
            root: git.root.clone(),
            count: git.dirty_count,
            paths,
        });
    }
    let tag = if dirty {
        format!("{}:{}-dirty", req.repository, git.sha)
    } else {
        format!("{}:{}", req.repository, git.sha)
    };
    let created_unix = req.source_date_epoch.unwrap_or(git.commit_time);
    let created = rfc3339(created_unix)
        .ok_or_else(|| BuildError::Input(format!("{created_unix} is not a usable Unix time")))?;
    let labels = BTreeMap::from([
        (REVISION_LABEL.to_owned(), git.sha.clone()),
        (SOURCE_LABEL.to_owned(), git.source.clone()),
        (CREATED_LABEL.to_owned(), created),
    ]);
    Ok(Plan {
        git,
        tag,
        labels,
        dockerfile,
    })
}

/// Builds the image, reporting build output lines to `progress`. Built
/// once more when Docker's classic builder lost a cached layer to a
/// concurrent build of the same Dockerfile ("unknown parent image ID", a
/// known race of the engine, moby#36901): two releases of one commit at
/// once must not fail for it.
pub async fn build(
    docker: &Docker,
    req: &BuildRequest,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Built, BuildError> {
    match build_once(docker, req, progress).await {
        Err(BuildError::Failed { message, .. }) if message.contains("unknown parent image ID") => {
            progress(
                "the engine lost a cached layer to a concurrent build of the same Dockerfile; building again",
            );
            build_once(docker, req, progress).await
        }
        other => other,
    }
}

async fn build_once(
    docker: &Docker,
    req: &BuildRequest,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Built, BuildError> {
    let plan = plan(req)?;
    let image = plan.tag.clone();
    let (spool, info) = spool_context(req, &plan)?;
    for s in &info.skipped {
        progress(&format!(
            "left out of the context (not a file, directory or symlink): {s}"
        ));
    }
    progress(&format!(
        "building {image} from {} ({} files in the context)",
        req.context.display(),
        info.files
    ));
    let buildargs: HashMap<String, String> = req.build_args.iter().cloned().collect();
    let opts = BuildImageOptions {
        dockerfile: info.dockerfile.clone(),
        t: Some(image.clone()),
        rm: true,
        forcerm: true,
        buildargs: Some(buildargs),
        labels: Some(plan.labels.clone().into_iter().collect()),
        ..Default::default()
    };
    let body = bollard::body_try_stream(file_chunks(spool));
    let stream = docker.build_image(opts, None, Some(body));
    let tail = follow(stream, &image, progress).await?;
    let inspect = docker.inspect_image(&image).await.map_err(|e| {
        if is_not_found(&e) {
            BuildError::Failed {
                image: image.clone(),
                message: format!("the build ended without the image{}", tail.text()),
            }
        } else {
            BuildError::Engine {
                image: image.clone(),
                message: describe(&e),
            }
        }
    })?;
    Ok(Built {
        repository: req.repository.clone(),
        tag: image,
        id: inspect.id.unwrap_or_default(),
        revision: plan.git.sha.clone(),
        dirty: plan.git.dirty_count > 0,
        labels: plan.labels,
    })
}

/// The context as a tar archive in an unnamed temporary file, so a large
/// context does not sit in memory; rewound, ready to stream.
fn spool_context(
    req: &BuildRequest,
    plan: &Plan,
) -> Result<(std::fs::File, context::ContextInfo), BuildError> {
    use std::io::Seek as _;
    let temp_file = |message: String| BuildError::Engine {
        image: plan.tag.clone(),
        message,
    };
    let mut spool = tempfile::tempfile()
        .map_err(|e| temp_file(format!("cannot create a temporary file: {e}")))?;
    let info = context::write(
        &req.context,
        &plan.dockerfile,
        std::io::BufWriter::new(&mut spool),
    )?;
    spool
        .rewind()
        .map_err(|e| temp_file(format!("cannot read the temporary file: {e}")))?;
    Ok((spool, info))
}

/// A file as a stream of chunks, for the engine's request body.
fn file_chunks(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::unfold(Some(tokio::fs::File::from_std(file)), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// The last lines of build output, to explain a failure.
#[derive(Debug, Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        self.0.push_back(line.to_owned());
        if self.0.len() > TAIL_LINES {
            self.0.pop_front();
        }
    }

    fn text(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let lines: Vec<String> = self.0.iter().map(|l| format!("  {l}")).collect();
        format!("\nlast lines of the build output:\n{}", lines.join("\n"))
    }
}

/// Follows the engine's build stream to its end, passing output lines to
/// `progress`; a failed step is [`BuildError::Failed`] with the output's
/// last lines.
async fn follow(
    mut stream: impl futures_util::Stream<
        Item = Result<bollard::models::BuildInfo, bollard::errors::Error>,
    > + Unpin,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Tail, BuildError> {
    let mut tail = Tail::default();
    let failed = |message: String| BuildError::Failed {
        image: image.to_owned(),
        message,
    };
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(failed(format!("{error}{}", tail.text())));
            }
            Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                return Err(failed(format!("{}{}", describe(&e), tail.text())));
            }
            Err(e) => {
                return Err(BuildError::Engine {
                    image: image.to_owned(),
                    message: describe(&e),
                });
            }
        };
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(failed(format!("{err}{}", tail.text())));
        }
        for line in info
            .stream
            .or(info.status)
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| !l.trim().is_empty())
        {
            progress(line);
            tail.push(line);
        }
    }
    Ok(tail)
}

/// A `--build-arg` that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildArgError {
    #[error("--build-arg {given:?}: expected KEY=VALUE (or KEY set in the environment)")]
    NoValue { given: String },
    #[error("--build-arg {given:?}: the name must be letters, digits and `_`")]
    BadName { given: String },
}

/// `K=V` (or `K`, taking the value from the environment, as Docker does).
pub fn parse_build_arg(s: &str) -> Result<(String, String), BuildArgError> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, v.to_owned()),
        None => match std::env::var(s) {
            Ok(v) => (s, v),
            Err(_) => {
                return Err(BuildArgError::NoValue {
                    given: s.to_owned(),
                });
            }
        },
    };
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(BuildArgError::BadName {
            given: s.to_owned(),
        });
    }
    Ok((k.to_owned(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_and_repositories() {
        assert_eq!(
            parse_build_arg("A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
        assert!(parse_build_arg("=x").is_err());
        assert!(parse_build_arg("PIPELINE_TEST_SURELY_UNSET_VAR").is_err());
        assert!(check_repository("127.0.0.1:5000/app").is_ok());
        assert!(
            check_repository("app:1")
                .unwrap_err()
                .to_string()
                .contains("commit SHA")
        );
        assert!(check_repository("App").is_err());
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }
}
