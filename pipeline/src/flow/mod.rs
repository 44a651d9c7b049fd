//! `pipeline run` as library code: build → push → SBOM → scan → sign →
//! attest for one image, so the CLI and the runner service run the same
//! flow.
//!
//! A [`RunRequest`] is checked into a [`RunPlan`] before anything slow
//! happens ([`RunPlan::validate`]: the scan policy and VEX documents parse,
//! the output directory exists, the build context is a clean git work tree
//! with a Dockerfile). [`RunPlan::execute`] then runs the steps and returns
//! a [`RunReport`]: each step's time and outcome, the image by digest, the
//! files written, the scan's verdict. A failure comes back with the report
//! of the steps so far ([`FlowFailure`]). Nothing is signed unless the scan
//! passes. The caller prints the report; progress lines (build output, the
//! scan table) go to the `progress` callback as they happen.

use std::path::PathBuf;
use std::sync::Arc;

use crate::build::{self, BuildRequest};
use crate::cosign::signer::Signer;
use crate::scan::{GrypeOptions, ScanPolicy, VexDocument};

mod error;
mod facts;
mod report;
mod steps;

pub use error::{FlowError, FlowFailure};
pub use facts::{base_images, builder_id};
pub use report::{RunReport, ScanVerdict, Step, StepReport};

/// Progress lines, as they happen (build output, push status, the scan table).
pub type Progress = dyn Fn(&str) + Sync;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub build: BuildRequest,
    /// Signs the image and its attestations.
    pub signer: Arc<dyn Signer>,
    /// The scan policy file.
    pub policy: PathBuf,
    /// OpenVEX documents applied besides the policy's.
    pub vex: Vec<PathBuf>,
    pub grype: GrypeOptions,
    /// Where the SBOM, the scan reports and the provenance are written.
    pub output_dir: PathBuf,
    /// Registries (`host:port`) reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
}

/// A request whose inputs were checked: what [`RunPlan::execute`] runs.
#[derive(Debug)]
pub struct RunPlan {
    request: RunRequest,
    build: build::Plan,
    policy: ScanPolicy,
    vex: Vec<VexDocument>,
}

impl RunPlan {
    /// Checks everything that can be checked before a build spends minutes:
    /// the policy, the VEX documents, the output directory, the git state
    /// and the Dockerfile.
    pub fn validate(request: RunRequest) -> Result<RunPlan, FlowError> {
        let policy = ScanPolicy::load(&request.policy).map_err(FlowError::Input)?;
        let vex = request
            .vex
            .iter()
            .map(|p| crate::scan::load_vex(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FlowError::Input)?;
        std::fs::create_dir_all(&request.output_dir).map_err(|source| FlowError::OutputDir {
            path: request.output_dir.clone(),
            source,
        })?;
        let build = build::plan(&request.build)?;
        Ok(RunPlan {
            request,
            build,
            policy,
            vex,
        })
    }

    /// The image tag the build will produce (`REPO:<commit sha>`).
    pub fn tag(&self) -> &str {
        &self.build.tag
    }

    /// Runs the steps. On failure, the report of the steps so far comes
    /// with the error.
    pub async fn execute(
        &self,
        docker: &bollard::Docker,
        progress: &Progress,
    ) -> Result<RunReport, Box<FlowFailure>> {
        let mut report = RunReport::default();
        match steps::run(self, docker, progress, &mut report).await {
            Ok(()) => Ok(report),
            Err(error) => Err(Box::new(FlowFailure { report, error })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::{keys, signer::KeySigner};
    use crate::error::{Blame, Classify};

    fn request(dir: &std::path::Path, policy: PathBuf) -> RunRequest {
        RunRequest {
            build: BuildRequest {
                context: dir.to_owned(),
                dockerfile: None,
                repository: "127.0.0.1:5000/app".into(),
                build_args: Vec::new(),
                allow_dirty: false,
                source_date_epoch: None,
            },
            signer: Arc::new(KeySigner::new(keys::generate())),
            policy,
            vex: Vec::new(),
            grype: GrypeOptions::default(),
            output_dir: dir.join("out"),
            insecure_registries: Vec::new(),
        }
    }

    /// What a caller can fix is refused before any engine is needed: the
    /// service can answer "bad request" without a build.
    #[test]
    fn inputs_are_checked_before_anything_runs() {
        let dir = test_support::TempDir::new("flow-validate");
        let missing =
            RunPlan::validate(request(dir.path(), dir.path().join("nope.yaml"))).unwrap_err();
        assert!(matches!(missing, FlowError::Input(_)), "{missing}");
        assert_eq!(missing.blame(), Blame::Usage);
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
        assert!(!dir.path().join("out").exists(), "nothing created");

        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, "fail_on: high\n").unwrap();
        // No Dockerfile, and not a git work tree: a usage error, found
        // before Docker is asked anything.
        let e = RunPlan::validate(request(dir.path(), policy)).unwrap_err();
        assert!(matches!(e, FlowError::Build(_)), "{e}");
        assert_eq!(e.blame(), Blame::Usage);
    }
}
