//! Workflow triggers, runs and jobs. A trigger (a push delivered by a
//! webhook, or an API call) is stored before it is acknowledged; the
//! dispatcher plans it into one run per workflow file, each with its jobs;
//! jobs keep their steps and their masked, capped log. Reads for clients go
//! through [`TenantWorkflows`]; the dispatcher's cross-tenant work through
//! [`WorkflowQueue`].

use super::sql::{Row, p};

use super::repos::Repo;
use super::{Store, StoreError, TenantId, now_ms};

/// A trigger as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRecord {
    pub id: String,
    pub tenant: TenantId,
    pub repo_id: String,
    pub commit: String,
    pub git_ref: String,
    /// `push` (a webhook) or `api`.
    pub event: String,
    pub actor: String,
    pub changed_paths: Option<Vec<String>>,
    /// `queued`, `planned` or `failed`.
    pub state: String,
    pub message: Option<String>,
    pub created_at: i64,
}

/// A trigger to record.
#[derive(Debug, Clone)]
pub struct NewTrigger<'a> {
    pub repo: &'a Repo,
    pub commit: &'a str,
    pub git_ref: &'a str,
    pub event: &'a str,
    pub actor: &'a str,
    pub changed_paths: Option<&'a [String]>,
    /// The webhook delivery id (`X-GitHub-Delivery`), when one.
    pub delivery: Option<&'a str>,
}

/// What recording a trigger came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triggered {
    Queued(Box<TriggerRecord>),
    /// This delivery was recorded before: nothing new runs.
    Replayed {
        trigger: Option<String>,
    },
}

/// A workflow run as stored (its plan aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunRecord {
    pub seq: i64,
    pub id: String,
    pub trigger_id: String,
    pub tenant: TenantId,
    pub repo_id: String,
    pub commit: String,
    pub git_ref: String,
    pub workflow: String,
    pub name: String,
    pub state: String,
    pub message: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A job of a run as stored (its log aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowJobRecord {
    pub job_id: String,
    pub position: i64,
    pub name: String,
    pub state: String,
    /// JSON array of step records.
    pub steps: String,
    pub message: Option<String>,
    pub log_bytes: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One planned workflow file of a trigger.
#[derive(Debug, Clone)]
pub struct NewWorkflowRun {
    pub workflow: String,
    pub name: String,
    /// The plan as JSON (holds no secret), or empty when the file failed.
    pub plan: String,
    /// `(job id, name)` in plan order.
    pub jobs: Vec<(String, String)>,
    /// Set when the file could not be planned: the run is a failure at
    /// once, with this message (the file's errors).
    pub failed: Option<String>,
}

/// A run the dispatcher claimed.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub record: WorkflowRunRecord,
    pub plan: String,
}

const TRIGGER: &str = "SELECT id, tenant_id, repo_id, commit_sha, git_ref, event, actor, changed_paths, state, message, created_at FROM workflow_triggers";
const RUN: &str = "SELECT seq, id, trigger_id, tenant_id, repo_id, commit_sha, git_ref, workflow, name, state, message, cancel_requested, created_at, started_at, finished_at FROM workflow_runs";
const JOB: &str = "SELECT job_id, position, name, state, steps, message, length(log), started_at, finished_at FROM workflow_jobs";

fn trigger_row(r: &Row) -> Result<TriggerRecord, StoreError> {
    let paths: Option<String> = r.get(7)?;
    Ok(TriggerRecord {
        id: r.get(0)?,
        tenant: TenantId(r.get(1)?),
        repo_id: r.get(2)?,
        commit: r.get(3)?,
        git_ref: r.get(4)?,
        event: r.get(5)?,
        actor: r.get(6)?,
        changed_paths: paths.and_then(|p| serde_json::from_str(&p).ok()),
        state: r.get(8)?,
        message: r.get(9)?,
        created_at: r.get(10)?,
    })
}

fn run_row(r: &Row) -> Result<WorkflowRunRecord, StoreError> {
    Ok(WorkflowRunRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        trigger_id: r.get(2)?,
        tenant: TenantId(r.get(3)?),
        repo_id: r.get(4)?,
        commit: r.get(5)?,
        git_ref: r.get(6)?,
        workflow: r.get(7)?,
        name: r.get(8)?,
        state: r.get(9)?,
        message: r.get(10)?,
        cancel_requested: r.get::<i64>(11)? != 0,
        created_at: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
    })
}

fn job_row(r: &Row) -> Result<WorkflowJobRecord, StoreError> {
    Ok(WorkflowJobRecord {
        job_id: r.get(0)?,
        position: r.get(1)?,
        name: r.get(2)?,
        state: r.get(3)?,
        steps: r.get(4)?,
        message: r.get(5)?,
        log_bytes: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

fn fresh_id(prefix: &str) -> String {
    format!("{prefix}_{}", &crate::sandbox::new_job_id()[..20])
}

impl Store {
    /// Records a trigger (and its delivery) before it is acknowledged; a
    /// delivery seen before is a replay and records nothing.
    pub fn trigger(
        &self,
        t: &NewTrigger<'_>,
        audit: &super::NewAuditEntry,
    ) -> Result<Triggered, StoreError> {
        let id = fresh_id("wt");
        let at = now_ms();
        let paths = t
            .changed_paths
            .map(|p| serde_json::to_string(p).expect("strings serialize"));
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(d) = t.delivery {
                let seen: Option<Option<String>> = tx
                    .query_opt(
                        "SELECT trigger_id FROM webhook_deliveries WHERE delivery = ?1",
                        p![d],
                        |r| r.get(0),
                    )?;
                if let Some(trigger) = seen {
                    return Ok(Triggered::Replayed { trigger });
                }
                tx.execute(
                    "INSERT INTO webhook_deliveries (delivery, repo_id, received_at, trigger_id) VALUES (?1, ?2, ?3, ?4)",
                    p![d, t.repo.id, at, id],
                )?;
            }
            tx.execute(
                "INSERT INTO workflow_triggers (id, tenant_id, repo_id, commit_sha, git_ref, event, actor, changed_paths, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9)",
                p![id, t.repo.tenant.as_str(), t.repo.id, t.commit, t.git_ref, t.event, t.actor, paths, at],
            )?;
            super::audit::append_in(&tx, audit)?;
            let rec = tx.query_row(&format!("{TRIGGER} WHERE id = ?1"), p![&id], trigger_row)?;
            tx.commit()?;
            Ok(Triggered::Queued(Box::new(rec)))
        })
    }

    /// Records a delivery that runs nothing (a ping, a deleted branch), so
    /// its replay is recognised too.
    pub fn delivery_seen(&self, delivery: &str, repo_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "INSERT INTO webhook_deliveries (delivery, repo_id, received_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                p![delivery, repo_id, now_ms()],
            )? == 0)
        })
    }

    pub fn workflows<'a>(&'a self, tenant: &'a TenantId) -> TenantWorkflows<'a> {
        TenantWorkflows {
            store: self,
            tenant,
        }
    }

    pub fn workflow_queue(&self) -> WorkflowQueue<'_> {
        WorkflowQueue { store: self }
    }
}

/// The dispatcher's view: every tenant's triggers and runs.
#[derive(Debug)]
pub struct WorkflowQueue<'a> {
    store: &'a Store,
}

impl WorkflowQueue<'_> {
    /// The oldest trigger waiting to be planned.
    pub fn next_trigger(&self) -> Result<Option<TriggerRecord>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                &format!("{TRIGGER} WHERE state = 'queued' ORDER BY seq LIMIT 1"),
                p![],
                trigger_row,
            )
        })
    }

    /// Stores a trigger's runs (one per workflow file) and marks it planned,
    /// all at once.
    pub fn plan_trigger(
        &self,
        trigger: &TriggerRecord,
        runs: &[NewWorkflowRun],
    ) -> Result<Vec<String>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            // Runners sharing the database may plan the same trigger at
            // once: the first to mark it planned plans it; the other's
            // plan is rolled back (it plans nothing).
            let mine = tx.execute(
                "UPDATE workflow_triggers SET state = 'planned', planned_at = ?2 WHERE id = ?1 AND state = 'queued'",
                p![trigger.id, at],
            )?;
            if mine == 0 {
                return Ok(Vec::new());
            }
            let mut ids = Vec::new();
            for run in runs {
                let id = fresh_id("wr");
                let (state, finished) = match &run.failed {
                    Some(_) => ("failure", Some(at)),
                    None => ("queued", None),
                };
                tx.execute(
                    "INSERT INTO workflow_runs (id, trigger_id, tenant_id, repo_id, commit_sha, git_ref, workflow, name, plan, state, message, created_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    p![id, trigger.id, trigger.tenant.as_str(), trigger.repo_id, trigger.commit, trigger.git_ref,
                            run.workflow, run.name, run.plan, state, run.failed, at, finished],
                )?;
                for (pos, (job, name)) in run.jobs.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO workflow_jobs (run_id, job_id, position, name, state) VALUES (?1, ?2, ?3, ?4, 'queued')",
                        p![id, job, pos as i64, name],
                    )?;
                }
                ids.push(id);
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// A trigger that cannot be planned (the commit does not exist, the
    /// fetch failed): recorded with why.
    pub fn fail_trigger(&self, id: &str, message: &str) -> Result<(), StoreError> {
        self.store.with(|c| {
            c.execute(
                "UPDATE workflow_triggers SET state = 'failed', message = ?2, planned_at = ?3 WHERE id = ?1",
                p![id, message, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Moves the oldest queued run to running.
    pub fn claim_run(&self) -> Result<Option<ClaimedRun>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            // Runners sharing the database pass over a run another is
            // claiming rather than wait for it.
            let lock = if tx.is_pg() { "FOR UPDATE SKIP LOCKED" } else { "" };
            let Some((id, plan)) = tx.query_opt(
                &format!("SELECT id, plan FROM workflow_runs WHERE state = 'queued' ORDER BY seq LIMIT 1 {lock}"),
                p![],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
            )?
            else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE workflow_runs SET state = 'running', started_at = ?2, owner = ?3 WHERE id = ?1",
                p![id, at, self.store.owner()],
            )?;
            let record = tx.query_row(&format!("{RUN} WHERE id = ?1"), p![&id], run_row)?;
            tx.commit()?;
            Ok(Some(ClaimedRun { record, plan }))
        })
    }

    pub fn job_started(&self, run: &str, job: &str) -> Result<(), StoreError> {
        self.store.with(|c| {
            c.execute(
                "UPDATE workflow_jobs SET state = 'running', started_at = ?3 WHERE run_id = ?1 AND job_id = ?2",
                p![run, job, now_ms()],
            )?;
            Ok(())
        })
    }

    /// A job's final state, steps (JSON) and message.
    pub fn job_finished(
        &self,
        run: &str,
        job: &str,
        state: &str,
        steps: &str,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store.with(|c| {
            c.execute(
                "UPDATE workflow_jobs SET state = ?3, steps = ?4, message = ?5, finished_at = ?6 WHERE run_id = ?1 AND job_id = ?2",
                p![run, job, state, steps, message, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Appends to a job's log, up to `cap` bytes in all; returns whether
    /// all of `bytes` fit.
    pub fn append_log(
        &self,
        run: &str,
        job: &str,
        bytes: &[u8],
        cap: u64,
    ) -> Result<bool, StoreError> {
        self.store.with(|c| {
            let len: i64 = c
                .query_opt(
                    "SELECT length(log) FROM workflow_jobs WHERE run_id = ?1 AND job_id = ?2",
                    p![run, job],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            let room = (cap as usize).saturating_sub(len as usize);
            let take = &bytes[..bytes.len().min(room)];
            if !take.is_empty() {
                // SQLite's `||` makes text of bytes; PostgreSQL's keeps bytea.
                let sql = if c.is_pg() {
                    "UPDATE workflow_jobs SET log = log || ?3 WHERE run_id = ?1 AND job_id = ?2"
                } else {
                    "UPDATE workflow_jobs SET log = CAST(log || ?3 AS BLOB) WHERE run_id = ?1 AND job_id = ?2"
                };
                c.execute(sql, p![run, job, take])?;
            }
            Ok(take.len() == bytes.len())
        })
    }

    /// A run's final state; its jobs still queued end as `state` too when
    /// it was cancelled, as skipped otherwise.
    pub fn finish_run(
        &self,
        run: &str,
        state: &str,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE workflow_runs SET state = ?2, message = ?3, finished_at = ?4 WHERE id = ?1",
                p![run, state, message, at],
            )?;
            let leftover = if state == "cancelled" { "cancelled" } else { "skipped" };
            tx.execute(
                "UPDATE workflow_jobs SET state = ?2, finished_at = ?3 WHERE run_id = ?1 AND state IN ('queued', 'running')",
                p![run, leftover, at],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn cancel_requested(&self, run: &str) -> Result<bool, StoreError> {
        self.store.with(|c| {
            Ok(c.query_opt(
                "SELECT cancel_requested FROM workflow_runs WHERE id = ?1",
                p![run],
                |r| r.get::<i64>(0),
            )?
            .is_some_and(|v| v != 0))
        })
    }

    /// After a crash: runs that were running end as failures (their jobs
    /// that were running too, with why); triggers are planned again.
    /// Returns the ids of the runs so ended, whose sandboxes are removed.
    pub fn recover(&self, reason: &str) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            // On PostgreSQL, only the runs of runners whose lease ran out
            // (see `Queue::interrupted`).
            let (filter, cutoff) = if tx.is_pg() {
                (super::DEAD_OWNER, super::dead_cutoff())
            } else {
                ("?1 = ?1", 0)
            };
            let runs: Vec<String> = tx.query_map(
                &format!("SELECT id FROM workflow_runs WHERE state = 'running' AND {filter}"),
                p![cutoff],
                |r| r.get(0),
            )?;
            let mut ended = Vec::new();
            for run in runs {
                let positions: Vec<String> = {
                    let mut st = tx.prepare(
                        "SELECT position FROM workflow_jobs WHERE run_id = ?1 AND state = 'running'",
                    )?;
                    let rows = st.query_map(p![&run], |r| Ok(r.get::<i64>(0)?.to_string()))?;
                    rows.collect::<Result<_, _>>()?
                };
                tx.execute(
                    "UPDATE workflow_jobs SET state = 'failure', message = ?2, finished_at = ?3 WHERE run_id = ?1 AND state = 'running'",
                    p![run, reason, at],
                )?;
                tx.execute(
                    "UPDATE workflow_jobs SET state = 'cancelled', finished_at = ?2 WHERE run_id = ?1 AND state = 'queued'",
                    p![run, at],
                )?;
                tx.execute(
                    "UPDATE workflow_runs SET state = 'failure', message = ?2, finished_at = ?3 WHERE id = ?1",
                    p![run, reason, at],
                )?;
                ended.push((run, positions));
            }
            tx.commit()?;
            Ok(ended)
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<WorkflowRunRecord>, StoreError> {
        self.store
            .with(|c| c.query_opt(&format!("{RUN} WHERE id = ?1"), p![id], run_row))
    }
}

/// What cancelling a run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowCancel {
    NotFound,
    /// Queued: cancelled at once.
    Cancelled,
    /// Running: the dispatcher stops it.
    Requested,
    AlreadyFinal(String),
}

/// One tenant's workflow runs.
#[derive(Debug)]
pub struct TenantWorkflows<'a> {
    store: &'a Store,
    tenant: &'a TenantId,
}

impl TenantWorkflows<'_> {
    pub fn trigger(&self, id: &str) -> Result<Option<TriggerRecord>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                &format!("{TRIGGER} WHERE tenant_id = ?1 AND id = ?2"),
                p![self.tenant.as_str(), id],
                trigger_row,
            )
        })
    }

    /// Runs of a trigger, in creation order.
    pub fn runs_of_trigger(&self, trigger: &str) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{RUN} WHERE tenant_id = ?1 AND trigger_id = ?2 ORDER BY seq"
            ))?;
            let rows = st.query_map(p![self.tenant.as_str(), trigger], run_row)?;
            rows.collect::<Result<_, _>>()
        })
    }

    /// Newest first, below `before` (a run's `seq`), optionally of one
    /// repository and commit.
    pub fn list(
        &self,
        repo: Option<&str>,
        commit: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{RUN} WHERE tenant_id = ?1 AND seq < ?2 AND (CAST(?3 AS TEXT) IS NULL OR repo_id = ?3) AND (CAST(?4 AS TEXT) IS NULL OR commit_sha = ?4)
                 ORDER BY seq DESC LIMIT ?5"
            ))?;
            let rows = st.query_map(
                p![self.tenant.as_str(), before.unwrap_or(i64::MAX), repo, commit, limit as i64],
                run_row,
            )?;
            rows.collect::<Result<_, _>>()
        })
    }

    pub fn get(
        &self,
        id: &str,
    ) -> Result<Option<(WorkflowRunRecord, Vec<WorkflowJobRecord>)>, StoreError> {
        self.store.with(|c| {
            let Some(run) = c.query_opt(
                &format!("{RUN} WHERE tenant_id = ?1 AND id = ?2"),
                p![self.tenant.as_str(), id],
                run_row,
            )?
            else {
                return Ok(None);
            };
            let mut st = c.prepare(&format!("{JOB} WHERE run_id = ?1 ORDER BY position"))?;
            let jobs = st.query_map(p![id], job_row)?.collect::<Result<_, _>>()?;
            Ok(Some((run, jobs)))
        })
    }

    /// A job's log, masked and capped as it was stored.
    pub fn log(&self, run: &str, job: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                "SELECT CAST(j.log AS BLOB) FROM workflow_jobs j JOIN workflow_runs r ON r.id = j.run_id
                 WHERE r.tenant_id = ?1 AND r.id = ?2 AND j.job_id = ?3",
                p![self.tenant.as_str(), run, job],
                |r| r.get(0),
            )
        })
    }

    pub fn cancel(
        &self,
        id: &str,
        audit: &super::NewAuditEntry,
    ) -> Result<WorkflowCancel, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let state: Option<String> = tx
                .query_opt(
                    "SELECT state FROM workflow_runs WHERE tenant_id = ?1 AND id = ?2",
                    p![self.tenant.as_str(), id],
                    |r| r.get(0),
                )?;
            let outcome = match state.as_deref() {
                None => return Ok(WorkflowCancel::NotFound),
                Some("queued") => {
                    tx.execute(
                        "UPDATE workflow_runs SET state = 'cancelled', finished_at = ?2, cancel_requested = 1 WHERE id = ?1",
                        p![id, at],
                    )?;
                    tx.execute(
                        "UPDATE workflow_jobs SET state = 'cancelled', finished_at = ?2 WHERE run_id = ?1",
                        p![id, at],
                    )?;
                    WorkflowCancel::Cancelled
                }
                Some("running") => {
                    tx.execute("UPDATE workflow_runs SET cancel_requested = 1 WHERE id = ?1", p![id])?;
                    WorkflowCancel::Requested
                }
                Some(other) => return Ok(WorkflowCancel::AlreadyFinal(other.to_owned())),
            };
            super::audit::append_in(&tx, audit)?;
            tx.commit()?;
            Ok(outcome)
        })
    }
}
