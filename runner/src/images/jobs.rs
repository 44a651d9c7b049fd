//! Job images: the images workflow jobs run in (`sandbox-images/job-*/`,
//! described by `job.toml`), built like the sandbox images — on the sandbox
//! base, tagged with the hash of their sources — and checked by running
//! each tool's version command.

use std::sync::Arc;

use serde::Deserialize;

use super::sources::ImageSources;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: String,
    repository: String,
    version: String,
    #[serde(default)]
    checks: Vec<Check>,
}

/// A tool of the image and what its version command must print.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub command: Vec<String>,
    pub expect: String,
}

/// One job image of this build of the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobImage {
    pub name: String,
    /// Directory under `sandbox-images/`.
    pub dir: String,
    /// `runner-job/debian`: what workflow policy names.
    pub repository: String,
    /// The reference this build uses: repository, version and source hash.
    pub image: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, thiserror::Error)]
#[error("{origin}/{dir}/job.toml: {message}")]
pub struct JobImageError {
    origin: String,
    dir: String,
    message: String,
}

/// The job images of a set of image sources.
#[derive(Debug, Clone, Default)]
pub struct JobImages {
    images: Vec<Arc<JobImage>>,
}

impl JobImages {
    pub fn load(sources: &ImageSources) -> Result<JobImages, JobImageError> {
        let mut images = Vec::new();
        for dir in sources.job_dirs() {
            let err = |message: String| JobImageError {
                origin: sources.origin().to_owned(),
                dir: dir.to_owned(),
                message,
            };
            let text = sources
                .file(&format!("{dir}/job.toml"))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let f: JobFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
            if !f
                .repository
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-._".contains(&b))
            {
                return Err(err(format!(
                    "repository {:?} is not an image name",
                    f.repository
                )));
            }
            if f.checks.iter().any(|c| c.command.is_empty()) {
                return Err(err("a check has an empty command".into()));
            }
            let hash = sources.content_hash(&["base", dir]);
            images.push(Arc::new(JobImage {
                image: format!("{}:{}-{}", f.repository, f.version, &hash[..12]),
                name: f.name,
                dir: dir.to_owned(),
                repository: f.repository,
                checks: f.checks,
            }));
        }
        Ok(JobImages { images })
    }

    pub fn all(&self) -> &[Arc<JobImage>] {
        &self.images
    }

    /// The reference to run for what policy or a workflow names: a job
    /// image's repository without a tag means this build's image of it;
    /// anything else is used as written.
    pub fn resolve(&self, reference: &str) -> String {
        self.images
            .iter()
            .find(|i| i.repository == reference)
            .map(|i| i.image.clone())
            .unwrap_or_else(|| reference.to_owned())
    }
}

/// Runs `argv` in a sandbox of `image` (a one-step job under small limits)
/// and returns what it printed: for checking an image's tools.
pub async fn run_check(
    backend: &Arc<dyn crate::backend::JobBackend>,
    policy: &crate::policy::SandboxPolicy,
    image: &str,
    argv: &[String],
) -> Result<crate::verdict::StageResult, crate::backend::BackendError> {
    use crate::backend::protocol::{ArchiveKind, Step};
    use crate::backend::{JobKind, JobSpec};
    use crate::limits::LimitsRequest;

    let limits = LimitsRequest::default()
        .resolve(policy)
        .expect("the policy's defaults are within its maxima")
        .run;
    let mut sandbox = crate::sandbox::spec::stage_sandbox(policy, image, "-", "check", &limits);
    sandbox.labels.clear();
    let job = JobSpec {
        id: crate::sandbox::new_job_id(),
        kind: JobKind::Workflow,
        tenant: None,
        egress: None,
        lifetime: std::time::Duration::from_secs(120),
        largest: sandbox.resources(),
    };
    let env = crate::sandbox::spec::environment(&Default::default());
    let step = Step {
        argv,
        env: &env,
        cwd: crate::sandbox::spec::WORK_DIR,
        wall_ms: limits.wall_time_ms,
        cpu_ms: limits.cpu_time_ms,
        stdout_max: limits.stdout_max_bytes,
        stderr_max: limits.stderr_max_bytes,
        fsize_max: policy.container.work_tmpfs_bytes,
        nofile: policy.container.nofile,
        collect_max: 0,
        archive: &[],
        archive_kind: ArchiveKind::Files,
        tmp_files: &[],
        stdin: &[],
    };
    let scope = backend.open_job(&job).await?;
    let ran = async {
        let mut handle = backend.start_sandbox(&scope, &sandbox).await?;
        let outcome = backend.run_step(&mut handle, &step, &limits, None).await;
        let stopped = backend.stop_sandbox(handle).await;
        match outcome {
            Ok(o) => Ok(o.result),
            Err(e) => Err(crate::backend::BackendError::with_cleanup(e, stopped)),
        }
    }
    .await;
    let _ = backend.close_job(scope).await;
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debian_job_image_is_described_and_resolves() {
        let images = JobImages::load(&ImageSources::embedded()).unwrap();
        let debian = images
            .all()
            .iter()
            .find(|i| i.name == "debian")
            .expect("the debian job image");
        assert_eq!(debian.repository, "runner-job/debian");
        assert!(debian.image.starts_with("runner-job/debian:12-"));
        assert!(debian.checks.iter().any(|c| c.command[0] == "git"));
        assert_eq!(images.resolve("runner-job/debian"), debian.image);
        assert_eq!(images.resolve("other/image:1"), "other/image:1");
    }
}
