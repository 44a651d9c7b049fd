//! Shared by the Docker integration tests: a sandbox on the real engine, with
//! the language images built on first use.
#![allow(dead_code)] // each test binary uses its own subset

pub mod oidc;
pub mod server;
pub mod service;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use runner::backend::JobBackend;
use runner::backend::docker::{DockerBackend, labels};
use runner::backend::uids::UidAllocator;
use runner::images::ImageBuilder;
use runner::images::engine::DockerImages;
use runner::images::sources::ImageSources;
use runner::language::Catalog;
use runner::limits::LimitsRequest;
use runner::policy::SandboxPolicy;
use runner::sandbox::{RunRequest, Sandbox};
use runner::submission::SubmissionFile;
use runner::verdict::RunResult;

pub struct Env {
    pub docker: Arc<DockerBackend>,
    pub images: DockerImages,
    pub sandbox: Sandbox,
    pub sources: ImageSources,
}

impl Env {
    /// A sandbox whose stages start in warm containers: a pool of `size` per
    /// stage of each language named, filled before this returns.
    pub async fn warm(languages: &[&str], size: usize) -> Env {
        let env = Env::new().await;
        for l in languages {
            env.ensure_image(l).await;
        }
        let catalog = env.sandbox.catalog();
        let names: Vec<String> = languages
            .iter()
            .map(|l| catalog.find(l, None).unwrap().name.clone())
            .collect();
        let config = runner::sandbox::pool::PoolConfig {
            sizes: names.iter().map(|n| (n.clone(), size)).collect(),
            default_size: 0,
            idle_lifetime: std::time::Duration::from_secs(600),
        };
        assert!(
            env.sandbox
                .start_pool(&config, Arc::new(tokio::sync::Semaphore::new(4)))
        );
        let pool = env.docker.pool().expect("the Docker backend keeps a pool");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let ready = pool.ready();
            let full = ready
                .iter()
                .filter(|(k, _)| names.iter().any(|n| k.starts_with(&format!("{n}/"))))
                .all(|(_, n)| *n >= size);
            if full {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the warm pool did not fill: {ready:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        env
    }

    /// Stages that started in a warm container so far.
    pub fn pool_hits(&self) -> u64 {
        self.docker.pool().map_or(0, |p| {
            p.stats.hits.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    pub async fn new() -> Env {
        let sources = ImageSources::embedded();
        let catalog = Arc::new(Catalog::load(&sources).unwrap());
        let policy = Arc::new(SandboxPolicy::embedded().unwrap());
        let uids = Arc::new(UidAllocator::new(
            policy.container.uids,
            UidAllocator::default_dir(),
        ));
        let docker = Arc::new(
            DockerBackend::connect(uids)
                .await
                .expect("connecting to Docker"),
        );
        let backend: Arc<dyn JobBackend> = Arc::clone(&docker) as Arc<dyn JobBackend>;
        Env {
            sandbox: Sandbox::new(backend, policy, catalog),
            images: DockerImages::connect().await.expect("connecting to Docker"),
            docker,
            sources,
        }
    }

    /// Builds a language's image unless this process already made sure of it.
    /// Builds are serialized: parallel tests would otherwise build twice.
    pub async fn ensure_image(&self, language: &str) {
        static READY: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let ready = READY.get_or_init(|| Mutex::new(HashSet::new()));
        let lang = self.sandbox.catalog().find(language, None).unwrap();
        if ready.lock().unwrap().contains(&lang.image) {
            return;
        }
        let _guard = BUILD.lock().await;
        let progress = |_: &str| {};
        ImageBuilder::new(&self.images, &self.sources, &progress)
            .ensure_language(&lang, false)
            .await
            .unwrap_or_else(|e| panic!("building the {language} image: {e}"));
        ready.lock().unwrap().insert(lang.image.clone());
    }

    pub async fn run(&self, language: &str, files: &[(&str, &str)]) -> RunResult {
        self.run_with(language, files, "", &[], LimitsRequest::default())
            .await
    }

    pub async fn run_with(
        &self,
        language: &str,
        files: &[(&str, &str)],
        stdin: &str,
        args: &[&str],
        limits: LimitsRequest,
    ) -> RunResult {
        self.run_job(language, files, stdin, args, limits).await.1
    }

    /// Like [`Env::run_with`], also returning the job id.
    pub async fn run_job(
        &self,
        language: &str,
        files: &[(&str, &str)],
        stdin: &str,
        args: &[&str],
        limits: LimitsRequest,
    ) -> (String, RunResult) {
        self.ensure_image(language).await;
        let req = RunRequest {
            language: language.to_owned(),
            version: None,
            files: files.iter().map(|(n, c)| file(n, c)).collect(),
            stdin: stdin.as_bytes().to_vec(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            limits,
        };
        let prepared = self.sandbox.prepare(req).expect("a valid request");
        let result = self.sandbox.execute(&prepared).await;
        // Used containers go in the background; a test process must not exit
        // before they are gone.
        self.sandbox.flush_removals().await;
        let result = result.unwrap_or_else(|e| panic!("running {language}: {e}"));
        (prepared.id, result)
    }

    /// Runs files the submission validator would refuse (names starting
    /// with `-` or `@`): for proving that the commands themselves never let
    /// a name become an option, should a name ever get past the validator.
    pub async fn run_unvalidated(
        &self,
        language: &str,
        files: &[(&str, &str)],
    ) -> Result<RunResult, runner::sandbox::SandboxError> {
        self.ensure_image(language).await;
        let prepared = runner::sandbox::PreparedRun {
            id: runner::sandbox::new_job_id(),
            language: self.sandbox.catalog().find(language, None).unwrap(),
            files: files.iter().map(|(n, c)| file(n, c)).collect(),
            stdin: Vec::new(),
            args: Vec::new(),
            limits: LimitsRequest::default()
                .resolve(self.sandbox.policy())
                .unwrap(),
        };
        let result = self.sandbox.execute(&prepared).await;
        self.sandbox.flush_removals().await;
        result
    }

    /// Containers of one job still present.
    pub async fn job_containers(&self, job: &str) -> usize {
        self.docker
            .engine()
            .list(labels::JOB, job)
            .await
            .unwrap()
            .len()
    }

    /// Containers this sandbox made that are neither gone nor waiting in its
    /// warm pool, once queued removals are done: what a job left behind.
    pub async fn leftovers(&self) -> Vec<String> {
        // Let the pool finish refilling, so a container being prepared is
        // not mistaken for one left behind.
        if let Some(pool) = self.docker.pool() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !pool.is_full() && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        self.sandbox.flush_removals().await;
        let ready = self
            .docker
            .pool()
            .map(|p| p.ready_ids())
            .unwrap_or_default();
        self.docker
            .engine()
            .list(labels::INSTANCE, self.docker.instance())
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !ready.contains(id))
            .collect()
    }

    /// Workflow job containers present (`workflow-job` label set), whose job
    /// id starts with `prefix`.
    pub async fn sandbox_containers_of_job_prefix(&self, prefix: &str) -> usize {
        self.docker
            .engine()
            .list(labels::MANAGED, "true")
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.labels.get(labels::STAGE).is_some_and(|s| s == "job"))
            .filter(|c| {
                c.labels
                    .get(labels::JOB)
                    .is_some_and(|j| j.starts_with(prefix))
            })
            .count()
    }

    /// Sandbox containers currently present, of any job.
    pub async fn sandbox_containers(&self) -> usize {
        self.docker
            .engine()
            .list(labels::MANAGED, "true")
            .await
            .unwrap()
            .len()
    }
}

pub fn file(name: &str, content: &str) -> SubmissionFile {
    SubmissionFile {
        name: name.to_owned(),
        content: content.as_bytes().to_vec(),
    }
}

/// stdout of the run stage, trimmed.
pub fn out(r: &RunResult) -> String {
    r.run
        .as_ref()
        .map(|s| s.stdout.trim().to_owned())
        .unwrap_or_default()
}

/// Debug text for assertion messages.
pub fn show(r: &RunResult) -> String {
    serde_json::to_string_pretty(r).unwrap()
}

/// `git -C dir ARGS` with a fixed identity and no signing; panics with
/// git's message when it fails; returns stdout, trimmed.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
