//! Releases in the service: promotions requested, approved and deployed
//! through one [`ReleaseEngine`], each step recorded with its audit entry.
//!
//! Who may do what is decided here, from the key that asks and the
//! environments policy:
//! - a promotion is requested by digest into a non-automatic environment;
//!   the engine checks it at once (live and soaked in the previous
//!   environment, every verification) and a refusal is stored with what
//!   each check found;
//! - approvals come from holders of the environment's approver role whose
//!   key is scoped to it (or not scoped), never from the requester, one per
//!   approver; a rejection ends the promotion;
//! - the worker deploys approved promotions (the engine verifies again just
//!   before), and builds the latest green commit of the release repository
//!   into the automatic environment;
//! - at start-up, promotions a dead process left deploying are reconciled
//!   with what the target runs.
//!
//! The releases belong to one tenant (the one owning the release
//! repository); other tenants see none.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pipeline::reference::Pinned;
use pipeline::release::{Approval, EnvironmentView};
use tokio::sync::Notify;
use tracing::{Instrument, error, info, info_span, warn};

use super::auth::{Principal, Role};
use super::store::promotions::{
    NewDecision, NewPromotion, PromotionFilter, PromotionRecord, STATES,
};
use super::store::{NewAuditEntry, Store, StoreError, TenantId};
use super::workflows::Workflows;

pub mod engine;
pub mod fake;
pub mod view;

use engine::{CheckRow, EngineError, EnvRule, ReleaseEngine};

/// How often the worker looks for work it was not woken for (a green
/// workflow run, a promotion another process approved).
const POLL: Duration = Duration::from_secs(3);
/// Progress lines kept per promotion.
const LOG_LINES: usize = 500;
/// The longest reason an approver may give.
const MAX_REASON: usize = 1000;

/// What the API answers when releases say no.
#[derive(Debug, thiserror::Error)]
pub enum ReleasesError {
    #[error("{message}")]
    NotEnabled { message: String },
    #[error("promotion {0} was not found")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request was checked and refused; it is recorded as `promotion`.
    #[error("{message}")]
    Refused {
        promotion: Box<PromotionRecord>,
        message: String,
        checks: Vec<CheckRow>,
    },
    /// The engine could not reach the registry or the target; the detail
    /// goes to the log.
    #[error("{detail}")]
    Unavailable { detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An approver key scoped to an environment the server does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environments: there is no environment {name:?}; environments are: {known}")]
pub struct UnknownEnvironment {
    pub name: String,
    /// The environments there are, comma-separated.
    pub known: String,
}

/// Settings of the service's releases.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// The tenant the releases belong to.
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The registered repository (`owner/name`) whose green commits are
    /// built into the automatic environment.
    pub repository: Option<String>,
    /// Events of each environment shown by `GET /v1/environments/{name}`.
    pub history: usize,
}

/// The service's releases.
#[derive(Debug)]
pub struct Releases {
    store: Store,
    engine: Arc<dyn ReleaseEngine>,
    settings: ReleaseSettings,
    workflows: OnceLock<Arc<Workflows>>,
    wake: Notify,
}

fn audit(p: &Principal, action: &str, target: Option<String>, detail: String) -> NewAuditEntry {
    NewAuditEntry {
        actor: p.actor(),
        tenant: Some(p.tenant_name.clone()),
        action: action.into(),
        target,
        detail: Some(detail),
    }
}

fn checks_json(checks: &[CheckRow]) -> String {
    serde_json::to_string(checks).expect("check rows serialize")
}

/// A reason as given: printable, bounded.
fn check_reason(reason: &str, required: bool) -> Result<String, ReleasesError> {
    let reason = reason.trim();
    if required && reason.is_empty() {
        return Err(ReleasesError::BadRequest {
            code: "reason_required",
            message: "a rejection needs a reason: say what must change (`reason`)".into(),
        });
    }
    if reason.len() > MAX_REASON || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ReleasesError::BadRequest {
            code: "invalid_reason",
            message: format!(
                "reason must be at most {MAX_REASON} bytes of printable text (newlines allowed)"
            ),
        });
    }
    Ok(reason.to_owned())
}

impl Releases {
    pub fn new(store: Store, engine: Arc<dyn ReleaseEngine>, settings: ReleaseSettings) -> Self {
        Releases {
            store,
            engine,
            settings,
            workflows: OnceLock::new(),
            wake: Notify::new(),
        }
    }

    /// Connects green workflow runs to builds for the automatic environment.
    pub fn attach_workflows(&self, workflows: Arc<Workflows>) {
        let _ = self.workflows.set(workflows);
        self.wake.notify_one();
    }

    pub fn engine(&self) -> &Arc<dyn ReleaseEngine> {
        &self.engine
    }

    fn rule(&self, environment: &str) -> Result<&EnvRule, ReleasesError> {
        self.engine
            .rules()
            .iter()
            .find(|r| r.name == environment)
            .ok_or_else(|| ReleasesError::BadRequest {
                code: "unknown_environment",
                message: format!(
                    "there is no environment {:?}; environments are: {}",
                    environment.chars().take(40).collect::<String>(),
                    self.names()
                ),
            })
    }

    fn names(&self) -> String {
        self.engine
            .rules()
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks the environments an approver key is scoped to exist.
    pub fn check_scope(&self, environments: &[String]) -> Result<(), UnknownEnvironment> {
        for e in environments {
            if self.engine.rules().iter().all(|r| &r.name != e) {
                return Err(UnknownEnvironment {
                    name: e.clone(),
                    known: self.names(),
                });
            }
        }
        Ok(())
    }

    fn tenant_of(&self, p: &Principal) -> Result<(), ReleasesError> {
        if p.tenant == self.settings.tenant {
            Ok(())
        } else {
            Err(ReleasesError::NotEnabled {
                message: format!(
                    "tenant {} has no release environments on this server",
                    p.tenant_name
                ),
            })
        }
    }

    /// Requests the promotion of `image` (by digest) into `environment`.
    pub async fn request(
        &self,
        p: &Principal,
        image: &str,
        environment: &str,
    ) -> Result<PromotionRecord, ReleasesError> {
        self.tenant_of(p)?;
        let rule = self.rule(environment)?.clone();
        if rule.automatic_branches.is_some() {
            return Err(ReleasesError::BadRequest {
                code: "automatic_environment",
                message: format!(
                    "{} takes the green commits of {} automatically; request promotions into the environments after it",
                    rule.name,
                    rule.automatic_branches.unwrap_or_default().join(", ")
                ),
            });
        }
        let pinned = Pinned::parse(image).map_err(|e| ReleasesError::BadRequest {
            code: "not_pinned",
            message: e.to_string(),
        })?;
        let (image, digest) = (pinned.to_string(), pinned.digest().to_owned());
        let (t, env, d) = (
            self.settings.tenant.clone(),
            rule.name.clone(),
            digest.clone(),
        );
        if let Some(open) = self
            .store
            .call(move |s| s.promotions(&t).open_for(&env, &d))
            .await?
        {
            return Err(ReleasesError::Conflict {
                code: "already_requested",
                message: format!(
                    "promotion {open} of this digest into {environment} is still open; approve or withdraw it"
                ),
            });
        }
        let span = info_span!("promotion.request", environment = %rule.name, image = %image);
        let checked = self
            .engine
            .check(&image, &rule.name, &p.actor())
            .instrument(span)
            .await;
        let (state, checks, commit, message) = match checked {
            Ok(c) => ("pending", c.checks, c.commit, None),
            Err(EngineError::Rejected { message, checks }) => {
                ("refused", checks, None, Some(message))
            }
            Err(EngineError::Refused {
                code: "not_live_in_previous" | "not_soaked",
                message,
            }) => {
                let row = CheckRow {
                    check: "previous_environment".into(),
                    ok: false,
                    detail: message.clone(),
                };
                ("refused", vec![row], None, Some(message))
            }
            Err(EngineError::Refused { code, message }) => {
                return Err(ReleasesError::BadRequest { code, message });
            }
            Err(e) => {
                return Err(ReleasesError::Unavailable {
                    detail: e.to_string(),
                });
            }
        };
        let action = if state == "pending" {
            "promotion.requested"
        } else {
            "promotion.refused"
        };
        let detail = match &message {
            None => format!(
                "{image} into {}: needs {} approval(s) by {}",
                rule.name,
                rule.approvals,
                rule.approver_role.as_deref().unwrap_or("-")
            ),
            Some(m) => format!("{image} into {}: {m}", rule.name),
        };
        let entry = audit(p, action, None, detail);
        let (t, requested_by) = (self.settings.tenant.clone(), p.actor());
        let (env, verification) = (rule.name.clone(), checks_json(&checks));
        let approvals = rule.approvals;
        let (img, msg) = (image.clone(), message.clone());
        let rec = self
            .store
            .call(move |s| {
                s.promotions(&t).insert(
                    &NewPromotion {
                        environment: &env,
                        image: &img,
                        digest: Some(&digest),
                        commit: commit.as_deref(),
                        workflow_trigger: None,
                        state,
                        required_approvals: approvals,
                        requested_by: &requested_by,
                        verification: Some(&verification),
                        message: msg.as_deref(),
                    },
                    &entry,
                )
            })
            .await?;
        match message {
            None => {
                info!(promotion = %rec.id, environment = %rec.environment, image = %rec.image, "promotion requested");
                Ok(rec)
            }
            Some(message) => Err(ReleasesError::Refused {
                promotion: Box::new(rec),
                message,
                checks,
            }),
        }
    }

    /// An approver's decision on a pending promotion.
    pub async fn decide(
        &self,
        p: &Principal,
        id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<PromotionRecord, ReleasesError> {
        self.tenant_of(p)?;
        let reason = check_reason(reason, !approve)?;
        let rec = self.get(p, id).await?;
        let rule = self.rule(&rec.environment)?.clone();
        let role_ok = rule.approver_role.as_deref() == Some(p.role.as_str())
            && p.role.can(super::auth::Action::ApprovePromotion);
        if !role_ok {
            return Err(ReleasesError::Forbidden {
                code: "not_an_approver",
                message: format!(
                    "promotions into {} are approved by holders of the role {}; this key is {}",
                    rule.name,
                    rule.approver_role.as_deref().unwrap_or("(none: automatic)"),
                    p.role.as_str()
                ),
            });
        }
        if let Some(scope) = &p.environments
            && !scope.contains(&rule.name)
        {
            return Err(ReleasesError::Forbidden {
                code: "not_an_approver",
                message: format!(
                    "this key approves for {} only, not {}",
                    scope.join(", "),
                    rule.name
                ),
            });
        }
        if rec.requested_by == p.actor() {
            return Err(ReleasesError::Forbidden {
                code: "self_approval",
                message: "the requester of a promotion cannot decide on it; another approver must"
                    .into(),
            });
        }
        let action = if approve {
            "promotion.approved"
        } else {
            "promotion.rejected"
        };
        let detail = format!(
            "{} into {} (commit {}), {} {} of {}{}",
            rec.image,
            rec.environment,
            rec.commit.as_deref().unwrap_or("unknown"),
            if approve {
                "approval"
            } else {
                "rejection after"
            },
            rec.approvals() + u32::from(approve),
            rec.required_approvals,
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        let entry = audit(p, action, Some(format!("promotion:{id}")), detail);
        let (t, id2, actor, role) = (
            self.settings.tenant.clone(),
            id.to_owned(),
            p.actor(),
            p.role.as_str().to_owned(),
        );
        let after = self
            .store
            .call(move |s| {
                s.promotions(&t).decide(
                    &id2,
                    &NewDecision {
                        actor: &actor,
                        role: &role,
                        approve,
                        reason: &reason,
                    },
                    &entry,
                )
            })
            .await
            .map_err(|e| match e {
                StoreError::AlreadyDecided { .. } => ReleasesError::Conflict {
                    code: "already_decided",
                    message: "this key has already decided on this promotion".into(),
                },
                StoreError::PromotionState { state, .. } => ReleasesError::Conflict {
                    code: "not_pending",
                    message: format!(
                        "the promotion is {state}: only pending promotions take decisions"
                    ),
                },
                other => other.into(),
            })?;
        if after.state == "approved" {
            info!(promotion = %after.id, environment = %after.environment, "promotion approved; deploying");
            self.wake.notify_one();
        }
        Ok(after)
    }

    /// Withdraws a promotion not yet deploying: its requester, or an admin.
    pub async fn withdraw(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<PromotionRecord, ReleasesError> {
        self.tenant_of(p)?;
        let rec = self.get(p, id).await?;
        if rec.requested_by != p.actor() && p.role != Role::Admin {
            return Err(ReleasesError::Forbidden {
                code: "forbidden",
                message: "only the requester or an admin may withdraw a promotion".into(),
            });
        }
        let entry = audit(
            p,
            "promotion.withdrawn",
            Some(format!("promotion:{id}")),
            format!("{} into {}", rec.image, rec.environment),
        );
        let (t, id2, by) = (self.settings.tenant.clone(), id.to_owned(), p.actor());
        self.store
            .call(move |s| s.promotions(&t).withdraw(&id2, &by, &entry))
            .await
            .map_err(|e| match e {
                StoreError::PromotionState { state, .. } => ReleasesError::Conflict {
                    code: "not_pending",
                    message: format!("the promotion is {state}: only pending or approved promotions can be withdrawn"),
                },
                other => other.into(),
            })
    }

    pub async fn get(&self, p: &Principal, id: &str) -> Result<PromotionRecord, ReleasesError> {
        self.tenant_of(p)?;
        let (t, id2) = (self.settings.tenant.clone(), id.to_owned());
        self.store
            .call(move |s| s.promotions(&t).get(&id2))
            .await?
            .ok_or_else(|| ReleasesError::NotFound(id.chars().take(64).collect()))
    }

    pub async fn list(
        &self,
        p: &Principal,
        filter: PromotionFilter,
    ) -> Result<Vec<PromotionRecord>, ReleasesError> {
        self.tenant_of(p)?;
        if let Some(s) = &filter.state
            && !STATES.contains(&s.as_str())
        {
            return Err(ReleasesError::BadRequest {
                code: "invalid_query",
                message: format!("state must be one of {}", STATES.join(", ")),
            });
        }
        if let Some(e) = &filter.environment {
            self.rule(e)?;
        }
        let t = self.settings.tenant.clone();
        Ok(self
            .store
            .call(move |s| s.promotions(&t).list(&filter))
            .await?)
    }

    /// What runs where, with the last `history` events of each.
    pub async fn environments(
        &self,
        p: &Principal,
        history: usize,
    ) -> Result<Vec<EnvironmentView>, ReleasesError> {
        self.tenant_of(p)?;
        self.engine
            .environments(history.min(self.settings.history))
            .await
            .map_err(|e| ReleasesError::Unavailable {
                detail: e.to_string(),
            })
    }

    pub fn history(&self) -> usize {
        self.settings.history
    }

    /// Ends what a dead process left in flight: a deploy is reconciled with
    /// what its target runs; a build resumes with the worker. Returns how
    /// many deploys were reconciled.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let stuck = self.store.call(|s| s.promotion_queue().in_flight()).await?;
        let mut n = 0;
        for rec in stuck.into_iter().filter(|r| r.state == "deploying") {
            let live = self.engine.reconcile(&rec.environment).await;
            let (to, message) = match &live {
                Ok(Some(l)) if *l == rec.image => (
                    "deployed",
                    format!(
                        "the runner died during this deploy; on restart every replica ran {} and it was kept",
                        rec.image
                    ),
                ),
                Ok(l) => (
                    "failed",
                    format!(
                        "the runner died during this deploy; on restart {} serves {}; request the promotion again",
                        rec.environment,
                        l.as_deref().unwrap_or("nothing")
                    ),
                ),
                Err(e) => (
                    "failed",
                    format!(
                        "the runner died during this deploy, and reconciling {} failed: {e}; the environment needs a person",
                        rec.environment
                    ),
                ),
            };
            warn!(promotion = %rec.id, environment = %rec.environment, state = to, "{message}");
            self.finish(
                &rec,
                "deploying",
                to,
                &message,
                None,
                "promotion.reconciled",
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts the worker: deploys approved promotions, builds green commits.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match me.step().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => error!(error = %e, "the release worker failed a step; retrying"),
                }
                let _ = tokio::time::timeout(POLL, me.wake.notified()).await;
            }
        })
    }

    /// One piece of work; false when there was none.
    async fn step(&self) -> Result<bool, StoreError> {
        if let Some(rec) = self.store.call(|s| s.promotion_queue().claim()).await? {
            let span =
                info_span!("promotion", promotion.id = %rec.id, environment = %rec.environment);
            match rec.state.as_str() {
                "building" => self.build(rec).instrument(span).await?,
                _ => self.deploy(rec).instrument(span).await?,
            }
            return Ok(true);
        }
        self.queue_green_build().await
    }

    /// Queues a build of the newest green commit of the release repository
    /// on a branch the automatic environment takes.
    async fn queue_green_build(&self) -> Result<bool, StoreError> {
        let (Some(repo), Some(_)) = (&self.settings.repository, self.workflows.get()) else {
            return Ok(false);
        };
        let Some(first) = self.engine.rules().first() else {
            return Ok(false);
        };
        let Some(branches) = &first.automatic_branches else {
            return Ok(false);
        };
        let refs: Vec<String> = branches.iter().map(|b| format!("refs/heads/{b}")).collect();
        let (t, r) = (self.settings.tenant.clone(), repo.clone());
        let Some(green) = self
            .store
            .call(move |s| s.promotion_queue().latest_green(&t, &r, &refs))
            .await?
        else {
            return Ok(false);
        };
        let entry = NewAuditEntry {
            actor: format!("workflow:{}", green.id),
            tenant: Some(self.settings.tenant_name.clone()),
            action: "promotion.build_requested".into(),
            target: None,
            detail: Some(format!(
                "commit {} of {repo} ({}) is green: building it for {}",
                green.commit, green.git_ref, first.name
            )),
        };
        let (t, env) = (self.settings.tenant.clone(), first.name.clone());
        let inserted = self
            .store
            .call(move |s| {
                s.promotions(&t).insert(
                    &NewPromotion {
                        environment: &env,
                        image: "",
                        digest: None,
                        commit: Some(&green.commit),
                        workflow_trigger: Some(&green.id),
                        state: "building",
                        required_approvals: 0,
                        requested_by: &format!("workflow:{}", green.id),
                        verification: None,
                        message: None,
                    },
                    &entry,
                )
            })
            .await?;
        info!(promotion = %inserted.id, commit = ?inserted.commit, "green commit: release build queued");
        Ok(true)
    }

    async fn build(&self, rec: PromotionRecord) -> Result<(), StoreError> {
        let Some(wf) = self.workflows.get() else {
            return Ok(());
        };
        let commit = rec.commit.clone().unwrap_or_default();
        let trigger = rec.workflow_trigger.clone().unwrap_or_default();
        let source = self
            .store
            .call(move |s| s.promotion_queue().build_source(&trigger))
            .await?;
        let Some((url, git_ref)) = source else {
            let m = "the repository of this build was removed";
            return self
                .finish(
                    &rec,
                    "building",
                    "failed",
                    m,
                    None,
                    "promotion.build_failed",
                )
                .await;
        };
        let (lines, progress) = collector();
        let fetched = wf.source().fetch(&url, &commit, Some(&git_ref)).await;
        let built = match fetched {
            Ok(f) => {
                self.engine
                    .build(&f.repo, &f.url, &commit, Arc::clone(&progress))
                    .await
            }
            Err(e) => Err(EngineError::Unavailable {
                message: format!("fetching commit {commit} failed: {e}"),
            }),
        };
        self.flush(&rec.id, &lines).await;
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                let m = format!("the release build of {commit} failed: {e}");
                return self
                    .finish(
                        &rec,
                        "building",
                        "failed",
                        &m,
                        None,
                        "promotion.build_failed",
                    )
                    .await;
            }
        };
        let (id, img, dg) = (rec.id.clone(), built.image.clone(), built.digest.clone());
        self.store
            .call(move |s| s.promotion_queue().built(&id, &img, &dg, None))
            .await?;
        let entry = NewAuditEntry {
            actor: rec.requested_by.clone(),
            tenant: Some(self.settings.tenant_name.clone()),
            action: "promotion.built".into(),
            target: Some(format!("promotion:{}", rec.id)),
            detail: Some(format!(
                "commit {commit} built, signed and scanned: {}",
                built.image
            )),
        };
        self.store
            .call(move |s| s.audit().append(&entry).map(|_| ()))
            .await?;
        let rec = PromotionRecord {
            image: built.image,
            digest: Some(built.digest),
            state: "deploying".into(),
            ..rec
        };
        self.deploy(rec).await
    }

    async fn deploy(&self, rec: PromotionRecord) -> Result<(), StoreError> {
        let approvals: Vec<Approval> = rec
            .decisions
            .iter()
            .filter(|d| d.decision == "approve")
            .map(|d| Approval {
                approver: d.actor.clone(),
                role: d.role.clone(),
                at: super::api::model::rfc3339(d.at),
                reason: d.reason.clone(),
            })
            .collect();
        let approvers = approvals
            .iter()
            .map(|a| a.approver.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let (lines, progress) = collector();
        let outcome = self
            .engine
            .promote(
                &rec.image,
                &rec.environment,
                &rec.requested_by,
                approvals,
                Arc::clone(&progress),
            )
            .await;
        self.flush(&rec.id, &lines).await;
        let commit = rec.commit.as_deref().unwrap_or("unknown");
        let (to, action, message, checks) = match outcome {
            Ok(d) => (
                "deployed",
                "promotion.deployed",
                format!(
                    "{} is live in {} (commit {}; approved by {}; before: {})",
                    rec.image,
                    rec.environment,
                    d.commit.as_deref().unwrap_or(commit),
                    if approvers.is_empty() {
                        "policy (automatic)"
                    } else {
                        &approvers
                    },
                    d.previous.as_deref().unwrap_or("nothing")
                ),
                Some(d.checks),
            ),
            Err(EngineError::RolledBack { message }) => {
                ("rolled_back", "promotion.rolled_back", message, None)
            }
            Err(EngineError::Rejected { message, checks }) => (
                "refused",
                "promotion.refused",
                format!("refused just before deploying: {message}"),
                Some(checks),
            ),
            Err(EngineError::Refused { message, .. }) => (
                "refused",
                "promotion.refused",
                format!("refused just before deploying: {message}"),
                None,
            ),
            Err(e) => ("failed", "promotion.failed", e.to_string(), None),
        };
        info!(state = to, "{message}");
        self.finish(&rec, "deploying", to, &message, checks.as_deref(), action)
            .await
    }

    async fn finish(
        &self,
        rec: &PromotionRecord,
        from: &str,
        to: &str,
        message: &str,
        checks: Option<&[CheckRow]>,
        action: &str,
    ) -> Result<(), StoreError> {
        let entry = NewAuditEntry {
            actor: "runner".into(),
            tenant: Some(self.settings.tenant_name.clone()),
            action: action.into(),
            target: Some(format!("promotion:{}", rec.id)),
            detail: Some(format!(
                "{} into {}, digest {}, commit {}: {message}",
                if rec.image.is_empty() {
                    "(not built)"
                } else {
                    &rec.image
                },
                rec.environment,
                rec.digest.as_deref().unwrap_or("-"),
                rec.commit.as_deref().unwrap_or("-"),
            )),
        };
        let (id, from, to, msg) = (
            rec.id.clone(),
            from.to_owned(),
            to.to_owned(),
            message.to_owned(),
        );
        let checks = checks.map(checks_json);
        self.store
            .call(move |s| {
                s.promotion_queue()
                    .finish(&id, &from, &to, Some(&msg), checks.as_deref(), &entry)
            })
            .await?;
        Ok(())
    }

    async fn flush(&self, id: &str, lines: &Arc<Mutex<Vec<String>>>) {
        let taken = std::mem::take(&mut *lines.lock().expect("progress lock"));
        let id = id.to_owned();
        if let Err(e) = self
            .store
            .call(move |s| s.promotion_queue().log(&id, &taken, LOG_LINES))
            .await
        {
            warn!(error = %e, "recording a promotion's progress failed");
        }
    }
}

type Collector = Arc<engine::Progress>;

/// A progress callback that keeps the lines (and logs them).
fn collector() -> (Arc<Mutex<Vec<String>>>, Collector) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let f = move |l: &str| {
        info!("{l}");
        if let Ok(mut v) = sink.lock()
            && v.len() <= LOG_LINES
        {
            v.push(l.to_owned());
        }
    };
    (lines, Arc::new(f))
}
