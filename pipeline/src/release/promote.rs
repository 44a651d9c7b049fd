//! Promotions, in their direct form: gates, verification, deploy, and the
//! local record of what runs where ([`super::state`]).
//!
//! A promotion of `REPO@sha256:...` into an environment is accepted only
//! when, in order:
//! 1. the environment is in the policy and the image is named by digest;
//! 2. no other promotion to it runs (its lock), and a deploy a dead
//!    deployer left half-done is reconciled first;
//! 3. the digest is live in the previous environment and has been for its
//!    `soak_in_previous`;
//! 4. it carries the approvals the environment needs: distinct approvers
//!    holding its `approver_role`, none of them the requester (the runner
//!    service authenticates them and passes them in; the CLI has none, so
//!    it can only promote into the automatic environment);
//! 5. every check of [`super::verify`] passes, run now, just before the
//!    deploy.
//!
//! Then the intent is recorded, the target deployed (rolling back on
//! failure), and the outcome recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::policy::{Environment, EnvironmentPolicy, Target, UnknownEnvironment, duration};
use super::state::{
    EnvironmentLock, EnvironmentState, Event, EventKind, Pending, Release, StateError, StateStore,
};
use super::verify::{VerificationError, VerificationReport, verify_for_environment};
use crate::clock::now_rfc3339;
use crate::deploy::{DeployError, DeployReport, Deployer, DockerDeployer, KubeDeployer};
use crate::error::{Blame, Classify};
use crate::flow::Progress;
use crate::reference::{NotPinned, Pinned};

/// One approval, as the service recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approver's identity.
    pub approver: String,
    /// The role they hold that allowed it.
    pub role: String,
    /// When (RFC 3339).
    pub at: String,
    pub reason: String,
}

/// What to promote where, by whom, with which approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRequest {
    /// `REPO@sha256:...`.
    pub image: String,
    pub environment: String,
    pub requested_by: String,
    pub approvals: Vec<Approval>,
}

/// A promotion that went through.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionReport {
    pub environment: String,
    pub image: String,
    /// What was live before.
    pub previous: Option<String>,
    pub verification: VerificationReport,
    pub deploy: DeployReport,
    /// A half-done deploy found and resolved first.
    pub reconciled: Option<Reconciliation>,
}

/// One environment: its policy in short, what runs there, and its recent
/// history (what `GET /v1/environments` shows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    /// The target, described.
    pub target: String,
    pub automatic: bool,
    pub approvals: u32,
    pub approver_role: Option<String>,
    pub soak_in_previous: String,
    pub live: Option<Release>,
    pub pending: Option<Pending>,
    /// The last events, oldest first.
    pub history: Vec<Event>,
}

/// How a deploy left half-done by a dead deployer was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub environment: String,
    /// What a dead deployer was deploying, if one was.
    pub pending: Option<String>,
    /// What is live now.
    pub live: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(transparent)]
    UnknownEnvironment(#[from] UnknownEnvironment),
    #[error(transparent)]
    NotPinned(#[from] NotPinned),
    #[error("{image} is not live in {previous}, the environment before {environment} ({}); promote it to {previous} first", match .live {
        Some(l) => format!("{previous} runs {l}"),
        None => format!("nothing runs in {previous}"),
    })]
    NotLiveInPrevious {
        image: String,
        environment: String,
        previous: String,
        /// What runs there instead.
        live: Option<String>,
    },
    #[error(
        "{image} has been live in {previous} for {}; {environment} requires {} there first: try again in {}",
        duration::format(*.live_for), duration::format(*.soak), duration::format(.soak.saturating_sub(*.live_for))
    )]
    NotSoaked {
        image: String,
        environment: String,
        previous: String,
        live_for: Duration,
        soak: Duration,
    },
    #[error(
        "a promotion to {environment} needs {needed} approval(s) by distinct holders of the role {role:?}, none of them the requester; it has {valid}{}",
        refusals(.not_counted)
    )]
    NeedsApproval {
        environment: String,
        needed: u32,
        role: String,
        valid: u32,
        /// Approvals that did not count, and why.
        not_counted: Vec<String>,
    },
    /// A check failed; the report names each.
    #[error("{} was refused for {}: {}", .report.image, .report.environment, .report.failure_summary())]
    Rejected { report: Box<VerificationReport> },
    #[error(transparent)]
    Verification(#[from] VerificationError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot reach the target of {environment}: {source}")]
    Target {
        environment: String,
        source: DeployError,
    },
    #[error("deploying to {environment}: {source}")]
    Deploy {
        environment: String,
        source: DeployError,
    },
    #[error("{environment} was left mid-deploy of {pending}, and reconciling it failed: {source}")]
    Reconcile {
        environment: String,
        pending: String,
        source: DeployError,
    },
}

fn refusals(not_counted: &[String]) -> String {
    if not_counted.is_empty() {
        String::new()
    } else {
        format!(" (not counted: {})", not_counted.join("; "))
    }
}

impl Classify for PromotionError {
    fn blame(&self) -> Blame {
        match self {
            PromotionError::UnknownEnvironment(_)
            | PromotionError::NotPinned(_)
            | PromotionError::NotLiveInPrevious { .. }
            | PromotionError::NotSoaked { .. }
            | PromotionError::NeedsApproval { .. } => Blame::Usage,
            PromotionError::Rejected { .. } => Blame::Rejected,
            PromotionError::Verification(e) => e.blame(),
            PromotionError::State(e) => e.blame(),
            PromotionError::Target { source, .. } => match source.blame() {
                Blame::Usage => Blame::Usage,
                _ => Blame::Infra,
            },
            PromotionError::Deploy { source, .. } => source.blame(),
            PromotionError::Reconcile { .. } => Blame::Degraded,
        }
    }
}

/// Promotions into the environments of one policy, recorded in one state
/// directory.
#[derive(Clone)]
pub struct Releaser {
    policy: Arc<EnvironmentPolicy>,
    state: StateStore,
    insecure: Vec<String>,
    docker: Option<bollard::Docker>,
    labels: BTreeMap<String, String>,
    kube: BTreeMap<String, kube::Client>,
}

impl std::fmt::Debug for Releaser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releaser")
            .field("policy", &self.policy.path())
            .field("state", &self.state.dir())
            .field("kube_contexts", &self.kube.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Releaser {
    pub fn new(policy: Arc<EnvironmentPolicy>, state: StateStore) -> Releaser {
        Releaser {
            policy,
            state,
            insecure: Vec::new(),
            docker: None,
            labels: BTreeMap::new(),
            kube: BTreeMap::new(),
        }
    }

    /// Registries (`host:port`) reached over plain HTTP besides loopback.
    pub fn with_insecure_registries(mut self, insecure: Vec<String>) -> Releaser {
        self.insecure = insecure;
        self
    }

    /// The engine for Docker targets (else one is connected when needed).
    pub fn with_docker(mut self, docker: bollard::Docker) -> Releaser {
        self.docker = Some(docker);
        self
    }

    /// Extra labels on what Docker targets create.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Releaser {
        self.labels = labels;
        self
    }

    /// The client for a kubeconfig context (else one is made from the
    /// kubeconfig when needed).
    pub fn with_kube_client(mut self, context: &str, client: kube::Client) -> Releaser {
        self.kube.insert(context.to_owned(), client);
        self
    }

    pub fn policy(&self) -> &EnvironmentPolicy {
        &self.policy
    }

    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Every environment in promotion order, with what runs there and its
    /// last `history` events.
    pub fn environments(&self, history: usize) -> Result<Vec<EnvironmentView>, PromotionError> {
        let mut views = Vec::new();
        for env in self.policy.environments() {
            let mut state = self.state.read(&env.name)?;
            let skip = state.history.len().saturating_sub(history);
            views.push(EnvironmentView {
                name: env.name.clone(),
                target: env.target.describe(),
                automatic: env.is_automatic(),
                approvals: env.approvals,
                approver_role: env.approver_role.clone(),
                soak_in_previous: duration::format(env.soak_in_previous),
                live: state.live,
                pending: state.pending,
                history: state.history.split_off(skip),
            });
        }
        Ok(views)
    }

    /// The deployer of an environment's target.
    pub async fn deployer(&self, env: &Environment) -> Result<Deployer, PromotionError> {
        let target = |source| PromotionError::Target {
            environment: env.name.clone(),
            source,
        };
        match &env.target {
            Target::Docker(t) => {
                let docker = match &self.docker {
                    Some(d) => d.clone(),
                    None => crate::engine::connect().await.map_err(|e| {
                        target(DeployError::Docker {
                            action: "connect".into(),
                            message: e.message,
                        })
                    })?,
                };
                let d = DockerDeployer::new(docker, t.clone(), self.state.dir())
                    .with_labels(self.labels.clone());
                Ok(Deployer::Docker(d))
            }
            Target::Kubernetes(t) => match self.kube.get(&t.context) {
                Some(client) => Ok(Deployer::Kubernetes(KubeDeployer::new(
                    client.clone(),
                    t.clone(),
                ))),
                None => KubeDeployer::connect(t.clone())
                    .await
                    .map(Deployer::Kubernetes)
                    .map_err(target),
            },
        }
    }

    /// Checks what can be checked when a promotion is requested, before
    /// anyone approved it: the environment, the digest, the previous
    /// environment, and every verification. The service calls this on a
    /// request and counts approvals as they come; [`Releaser::promote`]
    /// runs it all again, approvals included, just before deploying.
    pub async fn check(
        &self,
        request: &PromotionRequest,
    ) -> Result<VerificationReport, PromotionError> {
        let env = self.policy.get(&request.environment)?;
        let image = Pinned::parse(&request.image)?;
        if let Some(previous) = self.policy.previous(env) {
            let there = self.state.read(&previous.name)?;
            super::gates::live_and_soaked(env, previous, &there, &image, now_unix())?;
        }
        self.verify(env, &image).await
    }

    async fn verify(
        &self,
        env: &Environment,
        image: &Pinned,
    ) -> Result<VerificationReport, PromotionError> {
        let report = verify_for_environment(image, env, &self.insecure).await?;
        if report.passed() {
            Ok(report)
        } else {
            Err(PromotionError::Rejected {
                report: Box::new(report),
            })
        }
    }

    /// The previous environment runs the digest and has for long enough;
    /// the approvals are enough.
    fn gates(
        &self,
        env: &Environment,
        image: &Pinned,
        request: &PromotionRequest,
    ) -> Result<(), PromotionError> {
        if let Some(previous) = self.policy.previous(env) {
            let there = self.state.read(&previous.name)?;
            super::gates::live_and_soaked(env, previous, &there, image, now_unix())?;
        }
        super::gates::approvals(env, request)
    }

    /// Promotes `request.image` into `request.environment`: the gates, the
    /// verification, then the deploy, each outcome recorded.
    pub async fn promote(
        &self,
        request: PromotionRequest,
        progress: &Progress,
    ) -> Result<PromotionReport, PromotionError> {
        let env = self.policy.get(&request.environment)?.clone();
        let image = Pinned::parse(&request.image)?;
        let lock = self.state.lock(&env.name)?;
        // The target is reached only when needed: a refusal by the gates
        // does not depend on a cluster being reachable.
        let mut deployer = None;
        let mut reconciled = None;
        if self.state.read(&env.name)?.pending.is_some() {
            let d = self.deployer(&env).await?;
            reconciled = self.reconcile_locked(&env, &d, &lock, progress).await?;
            deployer = Some(d);
        }
        if let Err(e) = self.gates(&env, &image, &request) {
            self.refused(&lock, &image, &request, &e)?;
            return Err(e);
        }
        progress(&format!("verifying {image} for {}", env.name));
        let verification = match self.verify(&env, &image).await {
            Ok(v) => v,
            Err(e) => {
                self.refused(&lock, &image, &request, &e)?;
                return Err(e);
            }
        };
        let deployer = match deployer {
            Some(d) => d,
            None => match self.deployer(&env).await {
                Ok(d) => d,
                Err(e) => {
                    self.refused(&lock, &image, &request, &e)?;
                    return Err(e);
                }
            },
        };
        let before = self.state.read(&env.name)?.live;
        let previous = before.as_ref().and_then(|r| Pinned::parse(&r.image).ok());
        self.state.update(&lock, |s| {
            s.pending = Some(pending(&image, &verification, &request))
        })?;
        let outcome = Box::pin(deployer.deploy(&image, previous.as_ref(), progress)).await;
        let report = self.record(&lock, &image, &verification, &request, outcome)?;
        Ok(PromotionReport {
            environment: env.name.clone(),
            image: image.to_string(),
            previous: before.map(|r| r.image),
            verification,
            deploy: report.map_err(|source| PromotionError::Deploy {
                environment: env.name.clone(),
                source,
            })?,
            reconciled,
        })
    }

    /// Records a refusal (nothing was deployed).
    fn refused(
        &self,
        lock: &EnvironmentLock,
        image: &Pinned,
        request: &PromotionRequest,
        e: &PromotionError,
    ) -> Result<(), PromotionError> {
        self.state.update(lock, |s| {
            let live_after = s.live.as_ref().map(|r| r.image.clone());
            s.history.push(event(
                EventKind::Refused,
                image,
                None,
                request,
                Some(e.to_string()),
                live_after,
            ));
        })?;
        Ok(())
    }

    /// Records a deploy's outcome: the new live release, or the failure and
    /// what serves instead. A rollback that failed leaves `pending` in
    /// place, so the next promotion reconciles first.
    fn record(
        &self,
        lock: &EnvironmentLock,
        image: &Pinned,
        v: &VerificationReport,
        request: &PromotionRequest,
        outcome: Result<DeployReport, DeployError>,
    ) -> Result<Result<DeployReport, DeployError>, PromotionError> {
        self.state.update(lock, |s| match &outcome {
            Ok(_) => {
                s.live = Some(release(
                    image,
                    v.commit.clone(),
                    v.source.clone(),
                    v.sbom.clone(),
                    v.scan.clone(),
                ));
                s.pending = None;
                s.history.push(event(
                    EventKind::Deployed,
                    image,
                    v.commit.clone(),
                    request,
                    None,
                    Some(image.to_string()),
                ));
            }
            Err(DeployError::RolledBack {
                restored, cause, ..
            }) => {
                if restored.is_none() {
                    s.live = None;
                }
                s.pending = None;
                let after = s.live.as_ref().map(|r| r.image.clone());
                s.history.push(event(
                    EventKind::RolledBack,
                    image,
                    v.commit.clone(),
                    request,
                    Some(cause.to_string()),
                    after,
                ));
            }
            Err(e @ DeployError::RollbackFailed { .. }) => {
                s.history.push(event(
                    EventKind::Failed,
                    image,
                    v.commit.clone(),
                    request,
                    Some(e.to_string()),
                    None,
                ));
            }
            Err(e) => {
                // Refused before anything changed (another deployer, the
                // image not pullable...).
                s.pending = None;
                let after = s.live.as_ref().map(|r| r.image.clone());
                s.history.push(event(
                    EventKind::Refused,
                    image,
                    v.commit.clone(),
                    request,
                    Some(e.to_string()),
                    after,
                ));
            }
        })?;
        Ok(outcome)
    }

    /// Resolves a deploy to `environment` that a dead deployer left
    /// half-done, if any.
    ///
    /// With nothing half-done, the target is brought back to the recorded
    /// live digest instead (a proxy that died is restarted with its
    /// replicas, a replica that crashed is replaced).
    pub async fn reconcile(
        &self,
        environment: &str,
        progress: &Progress,
    ) -> Result<Reconciliation, PromotionError> {
        let env = self.policy.get(environment)?.clone();
        let lock = self.state.lock(&env.name)?;
        let deployer = self.deployer(&env).await?;
        if let Some(r) = self
            .reconcile_locked(&env, &deployer, &lock, progress)
            .await?
        {
            return Ok(r);
        }
        let live = self.state.read(&env.name)?.live;
        let recorded = live.as_ref().and_then(|r| Pinned::parse(&r.image).ok());
        let now = deployer
            .reconcile(recorded.as_ref(), None, progress)
            .await
            .map_err(|source| PromotionError::Deploy {
                environment: env.name.clone(),
                source,
            })?;
        Ok(Reconciliation {
            environment: env.name.clone(),
            pending: None,
            live: now.map(|l| l.to_string()),
        })
    }

    async fn reconcile_locked(
        &self,
        env: &Environment,
        deployer: &Deployer,
        lock: &EnvironmentLock,
        progress: &Progress,
    ) -> Result<Option<Reconciliation>, PromotionError> {
        let state = self.state.read(&env.name)?;
        let Some(p) = state.pending.clone() else {
            return Ok(None);
        };
        progress(&format!(
            "{}: the deploy of {} started {} by pid {} on {} did not finish; reconciling",
            env.name, p.image, p.started, p.pid, p.host
        ));
        let recorded = state
            .live
            .as_ref()
            .and_then(|r| Pinned::parse(&r.image).ok());
        let pending_image = Pinned::parse(&p.image).ok();
        let live = deployer
            .reconcile(recorded.as_ref(), pending_image.as_ref(), progress)
            .await
            .map_err(|source| PromotionError::Reconcile {
                environment: env.name.clone(),
                pending: p.image.clone(),
                source,
            })?;
        self.state
            .update(lock, |s| reconciled(s, &p, live.as_ref()))?;
        Ok(Some(Reconciliation {
            environment: env.name.clone(),
            pending: Some(p.image),
            live: live.map(|l| l.to_string()),
        }))
    }
}

/// The state after reconciling `p`: live is what the target runs.
fn reconciled(s: &mut EnvironmentState, p: &Pending, live: Option<&Pinned>) {
    let kept = live.is_some_and(|l| l.to_string() == p.image);
    if kept {
        s.live = Some(Release {
            image: p.image.clone(),
            digest: p.digest.clone(),
            commit: p.commit.clone(),
            source: p.source.clone(),
            since: now_rfc3339(),
            since_unix: now_unix(),
            sbom: p.sbom.clone(),
            scan: p.scan.clone(),
        });
    } else if live.is_none() {
        s.live = None;
    }
    let reason = format!(
        "the deployer (pid {} on {}) died during the deploy started {}; {}",
        p.pid,
        p.host,
        p.started,
        if kept {
            "every replica ran it and stayed healthy: kept".to_owned()
        } else {
            match live {
                Some(l) => format!("{l} restored"),
                None => "nothing was live before: its replicas were removed".to_owned(),
            }
        }
    );
    s.history.push(Event {
        at: now_rfc3339(),
        kind: EventKind::Reconciled,
        image: p.image.clone(),
        digest: p.digest.clone(),
        commit: p.commit.clone(),
        requested_by: Some(p.requested_by.clone()),
        approved_by: Vec::new(),
        reason: Some(reason),
        live_after: live.map(ToString::to_string),
    });
    s.pending = None;
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn pending(image: &Pinned, v: &VerificationReport, request: &PromotionRequest) -> Pending {
    Pending {
        image: image.to_string(),
        digest: image.digest().to_owned(),
        commit: v.commit.clone(),
        source: v.source.clone(),
        sbom: v.sbom.clone(),
        scan: v.scan.clone(),
        started: now_rfc3339(),
        requested_by: request.requested_by.clone(),
        pid: std::process::id(),
        host: host(),
    }
}

fn release(
    image: &Pinned,
    commit: Option<String>,
    source: Option<String>,
    sbom: Option<super::verify::SbomSummary>,
    scan: Option<super::verify::ScanSummary>,
) -> Release {
    Release {
        image: image.to_string(),
        digest: image.digest().to_owned(),
        commit,
        source,
        since: now_rfc3339(),
        since_unix: now_unix(),
        sbom,
        scan,
    }
}

fn event(
    kind: EventKind,
    image: &Pinned,
    commit: Option<String>,
    request: &PromotionRequest,
    reason: Option<String>,
    live_after: Option<String>,
) -> Event {
    Event {
        at: now_rfc3339(),
        kind,
        image: image.to_string(),
        digest: image.digest().to_owned(),
        commit,
        requested_by: Some(request.requested_by.clone()),
        approved_by: request
            .approvals
            .iter()
            .map(|a| a.approver.clone())
            .collect(),
        reason,
        live_after,
    }
}
