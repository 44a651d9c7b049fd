//! Promotions: a request to put an image (by digest) into an environment,
//! the decisions of its approvers, and what became of it. A green workflow
//! run's build for the first environment is a promotion too (state
//! `building` until its image exists), so one table tells every way an
//! image reached an environment.
//!
//! Every state change commits together with its audit entry. What runs
//! where is the deployer's record (`pipeline::release::state`), read
//! through the release engine, not a table here.
//!
//! States: `building` → `deploying`; `pending` → `approved` → `deploying`
//! → `deployed` | `rolled_back` | `failed` | `refused`; `pending` →
//! `rejected` | `withdrawn`; a request that fails its checks is stored as
//! `refused` at once (its verification says why).

use super::sql::{Conn, Row, p};

use super::audit::append_in;
use super::{NewAuditEntry, Store, StoreError, TenantId, now_ms};

/// States in which nothing more happens to a promotion.
pub const FINAL_STATES: [&str; 6] = [
    "deployed",
    "rejected",
    "refused",
    "rolled_back",
    "failed",
    "withdrawn",
];

/// Every state, for validating filters.
pub const STATES: [&str; 10] = [
    "building",
    "pending",
    "approved",
    "deploying",
    "deployed",
    "rejected",
    "refused",
    "rolled_back",
    "failed",
    "withdrawn",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRecord {
    pub seq: i64,
    pub id: String,
    pub tenant: TenantId,
    pub environment: String,
    /// `REPO@sha256:...` (for a build not yet done: `REPO:<sha>`).
    pub image: String,
    pub digest: Option<String>,
    pub commit: Option<String>,
    /// The workflow trigger a green-run build came from.
    pub workflow_trigger: Option<String>,
    pub state: String,
    pub required_approvals: u32,
    pub requested_by: String,
    pub requested_at: i64,
    /// The last verification, as JSON (`[{check, ok, detail}]`).
    pub verification: Option<String>,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// Progress lines of its build and deploy, as a JSON array.
    pub log: String,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub decisions: Vec<Decision>,
}

impl PromotionRecord {
    pub fn approvals(&self) -> u32 {
        self.decisions
            .iter()
            .filter(|d| d.decision == "approve")
            .count() as u32
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actor: String,
    pub role: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub reason: String,
    pub at: i64,
}

/// A promotion to record.
#[derive(Debug, Clone)]
pub struct NewPromotion<'a> {
    pub environment: &'a str,
    pub image: &'a str,
    pub digest: Option<&'a str>,
    pub commit: Option<&'a str>,
    pub workflow_trigger: Option<&'a str>,
    /// `pending`, `refused` or `building`.
    pub state: &'a str,
    pub required_approvals: u32,
    pub requested_by: &'a str,
    pub verification: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    pub approve: bool,
    pub reason: &'a str,
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct PromotionFilter {
    pub state: Option<String>,
    pub environment: Option<String>,
    /// Promotions with `seq` below this (paging, newest first).
    pub before: Option<i64>,
    pub limit: u32,
}

const SELECT: &str = "SELECT seq, id, tenant_id, environment, image, digest, commit_sha, workflow_trigger, state, required_approvals, requested_by, requested_at, verification, message, log, updated_at, finished_at FROM promotions";

fn row(r: &Row) -> Result<PromotionRecord, StoreError> {
    Ok(PromotionRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        tenant: TenantId(r.get(2)?),
        environment: r.get(3)?,
        image: r.get(4)?,
        digest: r.get(5)?,
        commit: r.get(6)?,
        workflow_trigger: r.get(7)?,
        state: r.get(8)?,
        required_approvals: r.get(9)?,
        requested_by: r.get(10)?,
        requested_at: r.get(11)?,
        verification: r.get(12)?,
        message: r.get(13)?,
        log: r.get(14)?,
        updated_at: r.get(15)?,
        finished_at: r.get(16)?,
        decisions: Vec::new(),
    })
}

fn decisions(c: &Conn<'_>, id: &str) -> Result<Vec<Decision>, StoreError> {
    let mut st = c.prepare(
        "SELECT actor, role, decision, reason, at FROM promotion_decisions WHERE promotion_id = ?1 ORDER BY at, actor",
    )?;
    let rows = st.query_map(p![id], |r| {
        Ok(Decision {
            actor: r.get(0)?,
            role: r.get(1)?,
            decision: r.get(2)?,
            reason: r.get(3)?,
            at: r.get(4)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

fn load(c: &Conn<'_>, id: &str) -> Result<Option<PromotionRecord>, StoreError> {
    let Some(mut rec) = c.query_opt(&format!("{SELECT} WHERE id = ?1"), p![id], row)? else {
        return Ok(None);
    };
    rec.decisions = decisions(c, id)?;
    Ok(Some(rec))
}

fn fresh_id() -> String {
    format!("pr_{}", &crate::sandbox::new_job_id()[..20])
}

fn state_of(tx: &Conn<'_>, id: &str) -> Result<String, StoreError> {
    tx.query_opt("SELECT state FROM promotions WHERE id = ?1", p![id], |r| {
        r.get(0)
    })?
    .ok_or_else(|| StoreError::PromotionState {
        id: id.to_owned(),
        state: "missing".into(),
        expected: "present".into(),
    })
}

impl Store {
    pub fn promotions<'a>(&'a self, tenant: &'a TenantId) -> TenantPromotions<'a> {
        TenantPromotions {
            store: self,
            tenant,
        }
    }

    /// The release worker's view, across tenants.
    pub fn promotion_queue(&self) -> PromotionQueue<'_> {
        PromotionQueue { store: self }
    }
}

/// One tenant's promotions.
#[derive(Debug)]
pub struct TenantPromotions<'a> {
    store: &'a Store,
    tenant: &'a TenantId,
}

impl TenantPromotions<'_> {
    /// Records a promotion and its audit entry together.
    pub fn insert(
        &self,
        p: &NewPromotion<'_>,
        audit: &NewAuditEntry,
    ) -> Result<PromotionRecord, StoreError> {
        let (id, at) = (fresh_id(), now_ms());
        let finished = FINAL_STATES.contains(&p.state).then_some(at);
        self.store.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO promotions (id, tenant_id, environment, image, digest, commit_sha, workflow_trigger, state, required_approvals, requested_by, requested_at, verification, message, updated_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?11, ?14)",
                p![id, self.tenant.as_str(), p.environment, p.image, p.digest, p.commit, p.workflow_trigger,
                        p.state, p.required_approvals, p.requested_by, at, p.verification, p.message, finished],
            )?;
            let mut audit = audit.clone();
            audit.target = Some(format!("promotion:{id}"));
            append_in(&tx, &audit)?;
            let rec = load(&tx, &id)?.expect("inserted in this transaction");
            tx.commit()?;
            Ok(rec)
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<PromotionRecord>, StoreError> {
        self.store
            .with(|c| Ok(load(c, id)?.filter(|p| &p.tenant == self.tenant)))
    }

    /// Newest first.
    pub fn list(&self, f: &PromotionFilter) -> Result<Vec<PromotionRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{SELECT} WHERE tenant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2) AND (CAST(?3 AS TEXT) IS NULL OR environment = ?3)
                 AND (CAST(?4 AS BIGINT) IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
            ))?;
            let recs = st
                .query_map(
                    p![self.tenant.as_str(), f.state, f.environment, f.before, f.limit.max(1)],
                    row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            recs.into_iter()
                .map(|mut r| {
                    r.decisions = decisions(c, &r.id)?;
                    Ok(r)
                })
                .collect()
        })
    }

    /// A promotion of this digest into this environment that is still
    /// open (waiting for approvals or a deploy).
    pub fn open_for(&self, environment: &str, digest: &str) -> Result<Option<String>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                "SELECT id FROM promotions WHERE tenant_id = ?1 AND environment = ?2 AND digest = ?3 AND state IN ('pending', 'approved', 'deploying')",
                p![self.tenant.as_str(), environment, digest],
                |r| r.get(0),
            )
        })
    }

    /// Records a decision on a pending promotion and moves it on: enough
    /// approvals make it `approved`, a rejection makes it `rejected`. One
    /// decision per actor. Returns the promotion after.
    pub fn decide(
        &self,
        id: &str,
        d: &NewDecision<'_>,
        audit: &NewAuditEntry,
    ) -> Result<PromotionRecord, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let rec = load(&tx, id)?.filter(|p| &p.tenant == self.tenant).ok_or_else(|| {
                StoreError::PromotionState {
                    id: id.to_owned(),
                    state: "missing".into(),
                    expected: "pending".into(),
                }
            })?;
            if rec.state != "pending" {
                return Err(StoreError::PromotionState {
                    id: id.to_owned(),
                    state: rec.state,
                    expected: "pending".into(),
                });
            }
            if rec.decisions.iter().any(|x| x.actor == d.actor) {
                return Err(StoreError::AlreadyDecided {
                    id: id.to_owned(),
                    actor: d.actor.to_owned(),
                });
            }
            tx.execute(
                "INSERT INTO promotion_decisions (promotion_id, actor, role, decision, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                p![id, d.actor, d.role, if d.approve { "approve" } else { "reject" }, d.reason, at],
            )?;
            append_in(&tx, audit)?;
            let approvals = rec.approvals() + u32::from(d.approve);
            if !d.approve {
                tx.execute(
                    "UPDATE promotions SET state = 'rejected', message = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1",
                    p![id, format!("rejected by {}: {}", d.actor, d.reason), at],
                )?;
            } else if approvals >= rec.required_approvals {
                tx.execute(
                    "UPDATE promotions SET state = 'approved', updated_at = ?2 WHERE id = ?1",
                    p![id, at],
                )?;
            } else {
                tx.execute(
                    "UPDATE promotions SET updated_at = ?2 WHERE id = ?1",
                    p![id, at],
                )?;
            }
            let after = load(&tx, id)?.expect("present in this transaction");
            tx.commit()?;
            Ok(after)
        })
    }

    /// Withdraws a pending or approved promotion (not yet deploying).
    pub fn withdraw(
        &self,
        id: &str,
        by: &str,
        audit: &NewAuditEntry,
    ) -> Result<PromotionRecord, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let rec = load(&tx, id)?.filter(|p| &p.tenant == self.tenant).ok_or_else(|| {
                StoreError::PromotionState {
                    id: id.to_owned(),
                    state: "missing".into(),
                    expected: "pending".into(),
                }
            })?;
            if !matches!(rec.state.as_str(), "pending" | "approved") {
                return Err(StoreError::PromotionState {
                    id: id.to_owned(),
                    state: rec.state,
                    expected: "pending or approved".into(),
                });
            }
            tx.execute(
                "UPDATE promotions SET state = 'withdrawn', message = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1",
                p![id, format!("withdrawn by {by}"), at],
            )?;
            append_in(&tx, audit)?;
            let after = load(&tx, id)?.expect("present in this transaction");
            tx.commit()?;
            Ok(after)
        })
    }
}

/// A workflow trigger whose runs all succeeded, on a commit not yet built
/// for release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreenTrigger {
    pub id: String,
    pub tenant: TenantId,
    pub repo_id: String,
    pub repo_url: String,
    pub commit: String,
    pub git_ref: String,
}

/// The release worker's work, across tenants.
#[derive(Debug)]
pub struct PromotionQueue<'a> {
    store: &'a Store,
}

impl PromotionQueue<'_> {
    /// The oldest promotion ready for the worker (`building` or
    /// `approved`), moved to `deploying` (an approved one) in the same
    /// transaction so no second worker takes it. Builds stay `building`
    /// until their image exists.
    pub fn claim(&self) -> Result<Option<PromotionRecord>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let Some(id): Option<String> = tx
                .query_opt(
                    "SELECT id FROM promotions WHERE state IN ('approved', 'building') ORDER BY seq LIMIT 1",
                    p![],
                    |r| r.get(0),
                )?
            else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE promotions SET state = CASE state WHEN 'approved' THEN 'deploying' ELSE state END, updated_at = ?2 WHERE id = ?1",
                p![id, at],
            )?;
            let rec = load(&tx, &id)?.expect("present in this transaction");
            tx.commit()?;
            Ok(Some(rec))
        })
    }

    /// Promotions a process left in flight (`deploying`, `building`) when it
    /// died.
    pub fn in_flight(&self) -> Result<Vec<PromotionRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{SELECT} WHERE state IN ('deploying', 'building') ORDER BY seq"
            ))?;
            st.query_map(p![], row)?.collect::<Result<_, _>>()
        })
    }

    /// Where a green-run build's commit comes from: the repository's URL
    /// and the pushed ref.
    pub fn build_source(&self, trigger: &str) -> Result<Option<(String, String)>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                "SELECT r.url, t.git_ref FROM workflow_triggers t JOIN repositories r ON r.id = t.repo_id WHERE t.id = ?1",
                p![trigger],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// The build became an image: the promotion now deploys it.
    pub fn built(
        &self,
        id: &str,
        image: &str,
        digest: &str,
        verification: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store.with(|c| {
            c.execute(
                "UPDATE promotions SET image = ?2, digest = ?3, verification = COALESCE(?4, verification), state = 'deploying', updated_at = ?5 WHERE id = ?1 AND state = 'building'",
                p![id, image, digest, verification, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Ends a promotion (`from` must still be its state) with its audit
    /// entry; returns false when it was not in `from` any more.
    pub fn finish(
        &self,
        id: &str,
        from: &str,
        to: &str,
        message: Option<&str>,
        verification: Option<&str>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let at = now_ms();
        let finished = FINAL_STATES.contains(&to).then_some(at);
        self.store.with(|c| {
            let tx = c.transaction()?;
            if state_of(&tx, id)? != from {
                return Ok(false);
            }
            tx.execute(
                "UPDATE promotions SET state = ?2, message = COALESCE(?3, message), verification = COALESCE(?4, verification), updated_at = ?5, finished_at = ?6 WHERE id = ?1",
                p![id, to, message, verification, at, finished],
            )?;
            append_in(&tx, audit)?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Appends progress lines to a promotion's log (at most `cap` lines are
    /// kept: the first ones, then a note).
    pub fn log(&self, id: &str, lines: &[String], cap: usize) -> Result<(), StoreError> {
        self.store.with(|c| {
            let tx = c.transaction()?;
            let text: Option<String> =
                tx.query_opt("SELECT log FROM promotions WHERE id = ?1", p![id], |r| {
                    r.get(0)
                })?;
            let mut log: Vec<String> = text
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            for l in lines {
                if log.len() < cap {
                    log.push(l.clone());
                } else if log.len() == cap {
                    log.push("… (log truncated)".into());
                }
            }
            tx.execute(
                "UPDATE promotions SET log = ?2 WHERE id = ?1",
                p![id, serde_json::to_string(&log).expect("strings serialize")],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The newest trigger of the repository `repo` (in `tenant`) on
    /// `git_ref` whose workflow runs all ended in success, unless a
    /// release build of it, or of a newer trigger, exists already: a
    /// release follows the latest green commit, and a backlog of older
    /// green commits is not built one by one.
    pub fn latest_green(
        &self,
        tenant: &TenantId,
        repo: &str,
        git_refs: &[String],
    ) -> Result<Option<GreenTrigger>, StoreError> {
        self.store.with(|c| {
            for git_ref in git_refs {
                let found = c
                    .query_opt(
                        "SELECT t.id, t.tenant_id, t.repo_id, r.url, t.commit_sha, t.git_ref, t.seq
                         FROM workflow_triggers t JOIN repositories r ON r.id = t.repo_id
                         WHERE t.tenant_id = ?1 AND r.name = ?2 AND t.git_ref = ?3 AND t.state = 'planned'
                           AND EXISTS (SELECT 1 FROM workflow_runs w WHERE w.trigger_id = t.id)
                           AND NOT EXISTS (SELECT 1 FROM workflow_runs w WHERE w.trigger_id = t.id AND w.state <> 'success')
                         ORDER BY t.seq DESC LIMIT 1",
                        p![tenant.as_str(), repo, git_ref],
                        |r| {
                            Ok((
                                GreenTrigger {
                                    id: r.get(0)?,
                                    tenant: TenantId(r.get(1)?),
                                    repo_id: r.get(2)?,
                                    repo_url: r.get(3)?,
                                    commit: r.get(4)?,
                                    git_ref: r.get(5)?,
                                },
                                r.get::<i64>(6)?,
                            ))
                        },
                    )?;
                let Some((green, seq)) = found else { continue };
                let built: bool = c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM promotions p JOIN workflow_triggers t ON t.id = p.workflow_trigger
                                    WHERE t.repo_id = ?1 AND t.git_ref = ?2 AND t.seq >= ?3)",
                    p![green.repo_id, git_ref, seq],
                    |r| r.get(0),
                )?;
                if !built {
                    return Ok(Some(green));
                }
            }
            Ok(None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Store, TenantId) {
        let s = Store::in_memory().unwrap();
        let t = s.create_tenant("acme").unwrap();
        (s, t.id)
    }

    fn audit(action: &str) -> NewAuditEntry {
        NewAuditEntry {
            actor: "key:a".into(),
            tenant: Some("acme".into()),
            action: action.into(),
            ..Default::default()
        }
    }

    fn request(s: &Store, t: &TenantId, approvals: u32) -> PromotionRecord {
        s.promotions(t)
            .insert(
                &NewPromotion {
                    environment: "prod",
                    image: "r/app@sha256:aa",
                    digest: Some("sha256:aa"),
                    commit: Some("abc"),
                    workflow_trigger: None,
                    state: "pending",
                    required_approvals: approvals,
                    requested_by: "key:dev",
                    verification: Some("[]"),
                    message: None,
                },
                &audit("promotion.requested"),
            )
            .unwrap()
    }

    fn decide(
        s: &Store,
        t: &TenantId,
        id: &str,
        actor: &str,
        approve: bool,
    ) -> Result<PromotionRecord, StoreError> {
        s.promotions(t).decide(
            id,
            &NewDecision {
                actor,
                role: "release-manager",
                approve,
                reason: "ok",
            },
            &audit("promotion.approved"),
        )
    }

    #[test]
    fn distinct_approvals_move_a_promotion_to_approved_once_enough() {
        let (s, t) = setup();
        let p = request(&s, &t, 2);
        assert_eq!(
            decide(&s, &t, &p.id, "key:rm1", true).unwrap().state,
            "pending"
        );
        assert!(matches!(
            decide(&s, &t, &p.id, "key:rm1", true),
            Err(StoreError::AlreadyDecided { .. })
        ));
        let after = decide(&s, &t, &p.id, "key:rm2", true).unwrap();
        assert_eq!((after.state.as_str(), after.approvals()), ("approved", 2));
        assert!(matches!(
            decide(&s, &t, &p.id, "key:rm3", true),
            Err(StoreError::PromotionState { .. })
        ));
        // request, two approvals: three entries, one chain.
        assert_eq!(s.audit().all().unwrap().len(), 3);
    }

    #[test]
    fn a_rejection_ends_it() {
        let (s, t) = setup();
        let p = request(&s, &t, 2);
        let after = decide(&s, &t, &p.id, "key:rm1", false).unwrap();
        assert_eq!(after.state, "rejected");
        assert!(after.finished_at.is_some());
        assert!(decide(&s, &t, &p.id, "key:rm2", true).is_err());
    }

    #[test]
    fn other_tenants_do_not_see_or_decide() {
        let (s, t) = setup();
        let other = s.create_tenant("other").unwrap().id;
        let p = request(&s, &t, 1);
        assert!(s.promotions(&other).get(&p.id).unwrap().is_none());
        assert!(decide(&s, &other, &p.id, "key:x", true).is_err());
        assert!(
            s.promotions(&other)
                .list(&PromotionFilter {
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_worker_claims_approved_once_and_finishes_from_the_expected_state() {
        let (s, t) = setup();
        let p = request(&s, &t, 1);
        assert!(s.promotion_queue().claim().unwrap().is_none());
        decide(&s, &t, &p.id, "key:rm1", true).unwrap();
        let c = s.promotion_queue().claim().unwrap().unwrap();
        assert_eq!(c.state, "deploying");
        assert!(s.promotion_queue().claim().unwrap().is_none());
        assert_eq!(s.promotion_queue().in_flight().unwrap().len(), 1);
        let q = s.promotion_queue();
        assert!(
            !q.finish(&p.id, "approved", "deployed", None, None, &audit("x"))
                .unwrap()
        );
        assert!(
            q.finish(
                &p.id,
                "deploying",
                "deployed",
                Some("live"),
                None,
                &audit("promotion.deployed")
            )
            .unwrap()
        );
        assert!(s.promotion_queue().in_flight().unwrap().is_empty());
    }
}
