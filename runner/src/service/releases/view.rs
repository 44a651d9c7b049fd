//! Promotions and environments as the API (and the web pages) show them.
//! String fields that are unknown are left out rather than sent as null.

use pipeline::release::EnvironmentView;
use pipeline::release::state::Event;
use serde::Serialize;

use super::engine::CheckRow;
use crate::service::api::model::rfc3339;
use crate::service::store::promotions::PromotionRecord;

#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    pub by: String,
    pub role: String,
    pub decision: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromotionView {
    pub id: String,
    /// `REPO@sha256:...` (absent while a build has not made it yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub environment: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub requested_by: String,
    pub requested_at: String,
    pub required_approvals: u32,
    pub approvals: Vec<DecisionView>,
    pub verification: Vec<CheckRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_trigger: Option<String>,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Progress of its build and deploy (`GET /v1/promotions/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<String>>,
}

impl PromotionView {
    pub fn new(r: PromotionRecord, with_log: bool) -> PromotionView {
        PromotionView {
            verification: r
                .verification
                .as_deref()
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default(),
            log: with_log.then(|| serde_json::from_str(&r.log).unwrap_or_default()),
            approvals: r
                .decisions
                .into_iter()
                .map(|d| DecisionView {
                    by: d.actor,
                    role: d.role,
                    decision: d.decision,
                    reason: d.reason,
                    at: rfc3339(d.at),
                })
                .collect(),
            id: r.id,
            image: Some(r.image).filter(|i| !i.is_empty()),
            digest: r.digest,
            environment: r.environment,
            state: r.state,
            commit: r.commit,
            requested_by: r.requested_by,
            requested_at: rfc3339(r.requested_at),
            required_approvals: r.required_approvals,
            message: r.message,
            workflow_trigger: r.workflow_trigger,
            updated_at: rfc3339(r.updated_at),
            finished_at: r.finished_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SbomView {
    pub components: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanView {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    /// `pass` or `fail` under the environment's policy.
    pub verdict: &'static str,
    pub summary: String,
}

/// One environment: its rules, and what runs there.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentJson {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanView>,
    /// `verified`: what runs passed every signature check before it was
    /// deployed (nothing is deployed otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'static str>,
    /// What a dead deployer left half-done, until reconciled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploying: Option<String>,
    pub target: String,
    pub automatic: bool,
    pub approvals: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver_role: Option<String>,
    pub soak_in_previous: String,
    /// Newest last (`GET /v1/environments/{name}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Event>>,
}

impl EnvironmentJson {
    pub fn new(v: EnvironmentView, with_history: bool) -> EnvironmentJson {
        let live = v.live;
        let sev = |s: &pipeline::release::verify::ScanSummary, k: &str| {
            s.by_severity.get(k).copied().unwrap_or(0)
        };
        EnvironmentJson {
            name: v.name,
            image: live.as_ref().map(|l| l.image.clone()),
            digest: live.as_ref().map(|l| l.digest.clone()),
            commit: live.as_ref().and_then(|l| l.commit.clone()),
            source: live.as_ref().and_then(|l| l.source.clone()),
            since: live.as_ref().map(|l| l.since.clone()),
            sbom: live
                .as_ref()
                .and_then(|l| l.sbom.as_ref())
                .map(|s| SbomView {
                    components: s.components,
                }),
            scan: live
                .as_ref()
                .and_then(|l| l.scan.as_ref())
                .map(|s| ScanView {
                    critical: sev(s, "critical"),
                    high: sev(s, "high"),
                    medium: sev(s, "medium"),
                    low: sev(s, "low"),
                    verdict: if s.passed { "pass" } else { "fail" },
                    summary: s.summary.clone(),
                }),
            signature: live.as_ref().map(|_| "verified"),
            deploying: v.pending.map(|p| p.image),
            target: v.target,
            automatic: v.automatic,
            approvals: v.approvals,
            approver_role: v.approver_role,
            soak_in_previous: v.soak_in_previous,
            history: with_history.then_some(v.history),
        }
    }
}
