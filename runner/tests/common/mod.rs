//! Shared by the Docker integration tests: a sandbox on the real engine, with
//! the language images built on first use.
#![allow(dead_code)] // each test binary uses its own subset

pub mod server;
pub mod service;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use runner::engine::ContainerEngine;
use runner::engine::docker::DockerEngine;
use runner::images::ImageBuilder;
use runner::images::sources::ImageSources;
use runner::language::Catalog;
use runner::limits::LimitsRequest;
use runner::policy::SandboxPolicy;
use runner::sandbox::{RunRequest, Sandbox};
use runner::submission::SubmissionFile;
use runner::verdict::RunResult;

pub struct Env {
    pub docker: DockerEngine,
    pub sandbox: Sandbox,
    pub sources: ImageSources,
}

impl Env {
    pub async fn new() -> Env {
        let docker = DockerEngine::connect().await.expect("connecting to Docker");
        let sources = ImageSources::embedded();
        let catalog = Arc::new(Catalog::load(&sources).unwrap());
        let policy = Arc::new(SandboxPolicy::embedded().unwrap());
        let engine: Arc<dyn ContainerEngine> = Arc::new(docker.clone());
        Env {
            sandbox: Sandbox::new(engine, policy, catalog),
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
        ImageBuilder::new(self.docker.client(), &self.sources, &progress)
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
        let result = self
            .sandbox
            .execute(&prepared)
            .await
            .unwrap_or_else(|e| panic!("running {language}: {e}"));
        (prepared.id, result)
    }

    /// Containers of one job still present.
    pub async fn job_containers(&self, job: &str) -> usize {
        self.docker
            .list(runner::sandbox::labels::JOB, job)
            .await
            .unwrap()
            .len()
    }

    /// Sandbox containers currently present, of any job.
    pub async fn sandbox_containers(&self) -> usize {
        self.docker
            .list(runner::sandbox::labels::MANAGED, "true")
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
