//! The seam between the service's promotions and the supply chain: the
//! service decides who may do what and records it; a [`ReleaseEngine`]
//! checks, builds and deploys. [`PipelineEngine`] is the real one, over
//! `pipeline::release`; service tests use the scripted fake in
//! [`super::fake`], so they need no registry, Docker or cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::error::{Blame, Classify};
use pipeline::release::{
    Approval, CommitBuildRequest, EnvironmentPolicy, EnvironmentView, PromotionError,
    PromotionRequest, ReleaseError, Releaser, VerificationReport,
};
use serde::{Deserialize, Serialize};

/// What the service needs to know of an environment's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRule {
    pub name: String,
    /// Distinct approvals a promotion into it needs (0: automatic).
    pub approvals: u32,
    /// The role whose holders may approve.
    pub approver_role: Option<String>,
    /// For the automatic environment: the branches whose green commits it
    /// takes.
    pub automatic_branches: Option<Vec<String>>,
}

/// One verification check, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// What a request-time check found (every check passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub checks: Vec<CheckRow>,
    /// The commit the provenance names.
    pub commit: Option<String>,
}

/// A deploy that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub checks: Vec<CheckRow>,
    pub commit: Option<String>,
    /// What was live before.
    pub previous: Option<String>,
    /// A half-done deploy of a dead process, resolved first.
    pub reconciled: Option<String>,
}

/// A commit built, pushed, described, scanned, signed and attested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `REPO@sha256:...`.
    pub image: String,
    pub digest: String,
    pub commit: String,
}

/// Why the engine said no, in the terms the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request cannot be accepted as given (unknown environment, a tag,
    /// not live or not soaked in the previous environment): `code` names
    /// the rule.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A verification check failed; `checks` says which.
    #[error("{message}")]
    Rejected {
        message: String,
        checks: Vec<CheckRow>,
    },
    /// The registry, the engine or the cluster could not be reached.
    #[error("{message}")]
    Unavailable { message: String },
    /// The build failed (its Dockerfile, the scan gate).
    #[error("{message}")]
    BuildFailed { message: String },
    /// The new image failed its deploy; the previous one serves again.
    #[error("{message}")]
    RolledBack { message: String },
    /// The deploy failed and restoring the previous image did too: the
    /// environment needs a person.
    #[error("{message}")]
    Failed { message: String },
}

/// Progress lines of a build or deploy.
pub type Progress = dyn Fn(&str) + Sync + Send;

#[async_trait]
pub trait ReleaseEngine: Send + Sync + std::fmt::Debug {
    /// The environments, in promotion order.
    fn rules(&self) -> &[EnvRule];

    /// The checks of a request: the gates but approvals, and verification.
    async fn check(
        &self,
        image: &str,
        environment: &str,
        requested_by: &str,
    ) -> Result<Checked, EngineError>;

    /// Everything again, then the rolling deploy (rolled back on failure).
    async fn promote(
        &self,
        image: &str,
        environment: &str,
        requested_by: &str,
        approvals: Vec<Approval>,
        progress: Arc<Progress>,
    ) -> Result<Deployed, EngineError>;

    /// Resolves a deploy a dead process left half-done; returns what is
    /// live after.
    async fn reconcile(&self, environment: &str) -> Result<Option<String>, EngineError>;

    /// What runs where, with the last `history` events of each.
    async fn environments(&self, history: usize) -> Result<Vec<EnvironmentView>, EngineError>;

    /// Builds `commit` of the (bare or not) git repository at `repository`
    /// through the supply chain; `source` is the URL the provenance names.
    async fn build(
        &self,
        repository: &Path,
        source: &str,
        commit: &str,
        progress: Arc<Progress>,
    ) -> Result<Built, EngineError>;
}

/// How a commit is built for release (from the service configuration).
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// `REGISTRY/NAME`; tags are commit SHAs.
    pub image: String,
    pub context: PathBuf,
    pub dockerfile: Option<PathBuf>,
    /// The private key signing builds (its password from `COSIGN_PASSWORD`).
    pub signing_key: PathBuf,
    pub scan_policy: PathBuf,
    pub grype: PathBuf,
    /// Where SBOMs, scan reports and provenance go, one folder per commit.
    pub output_dir: PathBuf,
}

/// The real engine: `pipeline::release` with the Docker engine.
pub struct PipelineEngine {
    releaser: Releaser,
    rules: Vec<EnvRule>,
    /// How green commits are built, with the key that signs them; `None`:
    /// this server only promotes.
    build: Option<(BuildSettings, Arc<dyn pipeline::cosign::signer::Signer>)>,
    insecure: Vec<String>,
}

impl std::fmt::Debug for PipelineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineEngine")
            .field("releaser", &self.releaser)
            .field("build", &self.build.as_ref().map(|b| &b.0))
            .finish_non_exhaustive()
    }
}

/// Why the real engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineSetupError {
    #[error("releases: the environments policy: {0}")]
    Policy(#[from] pipeline::release::PolicyError),
    #[error("releases: the state directory: {0}")]
    State(#[from] pipeline::release::StateError),
    #[error("releases: the signing key {}: {message}", .path.display())]
    Key { path: PathBuf, message: String },
}

impl PipelineEngine {
    pub fn new(
        policy: &Path,
        state_dir: &Path,
        build: Option<BuildSettings>,
        insecure: Vec<String>,
    ) -> Result<PipelineEngine, EngineSetupError> {
        let policy = Arc::new(EnvironmentPolicy::load(policy)?);
        let rules = policy
            .environments()
            .iter()
            .map(|e| EnvRule {
                name: e.name.clone(),
                approvals: e.approvals,
                approver_role: e.approver_role.clone(),
                automatic_branches: e.automatic_branches.clone(),
            })
            .collect();
        let state = pipeline::release::StateStore::open(state_dir)?;
        // The key is read once, at start-up: a wrong password is found now,
        // not at the first green commit.
        let build = match build {
            None => None,
            Some(b) => {
                let key_err = |message: String| EngineSetupError::Key {
                    path: b.signing_key.clone(),
                    message,
                };
                let password = pipeline::cosign::keys::password_from_env()
                    .map_err(|e| key_err(e.to_string()))?;
                let key = pipeline::cosign::keys::read_private(&b.signing_key, &password)
                    .map_err(|e| key_err(e.to_string()))?;
                let signer: Arc<dyn pipeline::cosign::signer::Signer> =
                    Arc::new(pipeline::cosign::signer::KeySigner::new(key));
                Some((b, signer))
            }
        };
        let releaser = Releaser::new(policy, state).with_insecure_registries(insecure.clone());
        Ok(PipelineEngine {
            releaser,
            rules,
            build,
            insecure,
        })
    }
}

fn rows(report: &VerificationReport) -> Vec<CheckRow> {
    report
        .checks
        .iter()
        .map(|c| CheckRow {
            check: c.check.name(),
            ok: c.passed,
            detail: c.detail.clone(),
        })
        .collect()
}

/// The promotion errors in the API's terms.
fn promotion_error(e: PromotionError) -> EngineError {
    let message = e.to_string();
    match e {
        PromotionError::UnknownEnvironment(_) => EngineError::Refused {
            code: "unknown_environment",
            message,
        },
        PromotionError::NotPinned(_) => EngineError::Refused {
            code: "not_pinned",
            message,
        },
        PromotionError::NotLiveInPrevious { .. } => EngineError::Refused {
            code: "not_live_in_previous",
            message,
        },
        PromotionError::NotSoaked { .. } => EngineError::Refused {
            code: "not_soaked",
            message,
        },
        PromotionError::NeedsApproval { .. } => EngineError::Refused {
            code: "needs_approval",
            message,
        },
        PromotionError::Rejected { report } => EngineError::Rejected {
            message,
            checks: rows(&report),
        },
        ref other => match other.blame() {
            Blame::RolledBack => EngineError::RolledBack { message },
            Blame::Degraded => EngineError::Failed { message },
            Blame::Usage => EngineError::Refused {
                code: "refused",
                message,
            },
            _ => EngineError::Unavailable { message },
        },
    }
}

#[async_trait]
impl ReleaseEngine for PipelineEngine {
    fn rules(&self) -> &[EnvRule] {
        &self.rules
    }

    async fn check(
        &self,
        image: &str,
        environment: &str,
        requested_by: &str,
    ) -> Result<Checked, EngineError> {
        let request = PromotionRequest {
            image: image.to_owned(),
            environment: environment.to_owned(),
            requested_by: requested_by.to_owned(),
            approvals: Vec::new(),
        };
        let report = self
            .releaser
            .check(&request)
            .await
            .map_err(promotion_error)?;
        Ok(Checked {
            checks: rows(&report),
            commit: report.commit,
        })
    }

    async fn promote(
        &self,
        image: &str,
        environment: &str,
        requested_by: &str,
        approvals: Vec<Approval>,
        progress: Arc<Progress>,
    ) -> Result<Deployed, EngineError> {
        let request = PromotionRequest {
            image: image.to_owned(),
            environment: environment.to_owned(),
            requested_by: requested_by.to_owned(),
            approvals,
        };
        let progress = move |l: &str| progress(l);
        let report = Box::pin(self.releaser.promote(request, &progress))
            .await
            .map_err(promotion_error)?;
        Ok(Deployed {
            checks: rows(&report.verification),
            commit: report.verification.commit.clone(),
            previous: report.previous,
            reconciled: report
                .reconciled
                .map(|r| format!("{:?} left mid-deploy; live after: {:?}", r.pending, r.live)),
        })
    }

    async fn reconcile(&self, environment: &str) -> Result<Option<String>, EngineError> {
        let env = environment.to_owned();
        let progress = move |l: &str| tracing::info!(environment = %env, "{l}");
        self.releaser
            .reconcile(environment, &progress)
            .await
            .map(|r| r.live)
            .map_err(promotion_error)
    }

    async fn environments(&self, history: usize) -> Result<Vec<EnvironmentView>, EngineError> {
        let r = self.releaser.clone();
        tokio::task::spawn_blocking(move || r.environments(history))
            .await
            .map_err(|e| EngineError::Unavailable {
                message: e.to_string(),
            })?
            .map_err(promotion_error)
    }

    async fn build(
        &self,
        repository: &Path,
        source: &str,
        commit: &str,
        progress: Arc<Progress>,
    ) -> Result<Built, EngineError> {
        let Some((b, signer)) = &self.build else {
            return Err(EngineError::BuildFailed {
                message: "this server has no release build configured (`[releases] image`, `signing_key`)".into(),
            });
        };
        let request = CommitBuildRequest {
            repository: repository.to_owned(),
            source: Some(source.to_owned()),
            commit: commit.to_owned(),
            context: b.context.clone(),
            dockerfile: b.dockerfile.clone(),
            image: b.image.clone(),
            build_args: Vec::new(),
            signer: Arc::clone(signer),
            scan_policy: b.scan_policy.clone(),
            vex: Vec::new(),
            grype: pipeline::scan::GrypeOptions {
                program: b.grype.clone(),
                ..Default::default()
            },
            output_dir: b.output_dir.join(commit),
            insecure_registries: self.insecure.clone(),
            source_date_epoch: None,
        };
        let docker = pipeline::engine::connect()
            .await
            .map_err(|e| EngineError::Unavailable { message: e.message })?;
        let progress = move |l: &str| progress(l);
        let built = pipeline::release::build_for_commit(request, &docker, &progress)
            .await
            .map_err(|e| {
                let message = e.to_string();
                match &e {
                    ReleaseError::Flow(f) if matches!(f.blame(), Blame::Infra) => {
                        EngineError::Unavailable { message }
                    }
                    ReleaseError::Checkout { .. } | ReleaseError::Task(_) => {
                        EngineError::Unavailable { message }
                    }
                    _ => EngineError::BuildFailed { message },
                }
            })?;
        Ok(Built {
            digest: built.image.digest().to_owned(),
            image: built.image.to_string(),
            commit: built.commit,
        })
    }
}
