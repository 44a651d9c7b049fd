//! Runs: tenant-scoped reads and writes ([`TenantRuns`]) and the scheduler's
//! cross-tenant queue operations ([`Queue`]).

use super::sql::{Conn, Row, p};

use super::{Store, StoreError, TenantId, now_ms, results};
use crate::verdict::{RunResult, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Finished,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<RunState, StoreError> {
        Ok(match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "cancelled" => RunState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("run state {other:?}"))),
        })
    }

    /// Whether the run will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Finished | RunState::Cancelled)
    }
}

/// A run as stored. Its request is not part of it (it is the scheduler's),
/// and its result is read only where one run is read, not in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub seq: i64,
    /// Its position among its tenant's runs (1, 2, ...): list cursors are
    /// built from it, so they say nothing of other tenants.
    pub tenant_seq: i64,
    pub id: String,
    pub tenant: TenantId,
    pub key_id: String,
    pub language: String,
    pub version: String,
    pub state: RunState,
    /// The verdict, once finished.
    pub status: Option<Status>,
    /// The whole result, when it was read.
    pub result: Option<RunResult>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const SELECT: &str =
    "SELECT seq, tenant_seq, id, tenant_id, key_id, language, version, state, status,
    created_at, started_at, finished_at, result_meta, result FROM runs";

/// A row, before its state and result are parsed.
struct Raw {
    rec: RunRecord,
    state: String,
    status: Option<String>,
    meta: Option<String>,
    legacy: Option<String>,
}

fn row(r: &Row) -> Result<Raw, StoreError> {
    Ok(Raw {
        rec: RunRecord {
            seq: r.get(0)?,
            tenant_seq: r.get(1)?,
            id: r.get(2)?,
            tenant: TenantId(r.get(3)?),
            key_id: r.get(4)?,
            language: r.get(5)?,
            version: r.get(6)?,
            state: RunState::Queued,
            status: None,
            result: None,
            created_at: r.get(9)?,
            started_at: r.get(10)?,
            finished_at: r.get(11)?,
        },
        state: r.get(7)?,
        status: r.get(8)?,
        meta: r.get(12)?,
        legacy: r.get(13)?,
    })
}

impl Raw {
    /// The record; with its result read from `c` when `c` is given.
    fn into_record(self, c: Option<&Conn<'_>>) -> Result<RunRecord, StoreError> {
        let mut rec = self.rec;
        rec.state = RunState::parse(&self.state)?;
        rec.status =
            match self.status.as_deref() {
                None => None,
                Some(s) => Some(Status::parse(s).ok_or_else(|| {
                    StoreError::Corrupt(format!("status {s:?} of run {}", rec.id))
                })?),
            };
        if let Some(c) = c {
            rec.result = results::read(c, rec.seq, self.meta.as_deref(), self.legacy.as_deref())?;
            if rec.status.is_none() {
                rec.status = rec.result.as_ref().map(|r| r.status);
            }
        }
        Ok(rec)
    }
}

fn one(
    c: &Conn<'_>,
    filter: &str,
    p: &[super::sql::Value],
) -> Result<Option<RunRecord>, StoreError> {
    c.query_opt(&format!("{SELECT} {filter}"), p, row)?
        .map(|raw| raw.into_record(Some(c)))
        .transpose()
}

/// A run to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub id: &'a str,
    /// The submitting key.
    pub key_id: &'a str,
    pub language: &'a str,
    pub version: &'a str,
    /// The job spec, as the scheduler reads it back.
    pub request: &'a [u8],
}

/// Outcome of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Queued(Box<RunRecord>),
    /// The queue holds `capacity` runs already.
    QueueFull {
        capacity: usize,
    },
}

/// Outcome of a cancellation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    NotFound,
    /// It was queued and is now cancelled.
    Cancelled(RunRecord),
    /// It is running: the scheduler stops it.
    Requested(RunRecord),
    /// It had already ended.
    AlreadyFinal(RunRecord),
}

/// The runs of one tenant. Every statement here is filtered by tenant.
#[derive(Debug)]
pub struct TenantRuns<'a> {
    store: &'a Store,
    tenant: &'a TenantId,
}

impl<'a> TenantRuns<'a> {
    pub(super) fn new(store: &'a Store, tenant: &'a TenantId) -> Self {
        TenantRuns { store, tenant }
    }

    /// Records a new queued run, unless the global queue is full. Counting and
    /// inserting happen in one transaction, so the bound holds under load.
    pub fn submit(
        &self,
        run: &NewRun<'_>,
        capacity: usize,
        audit: Option<&super::NewAuditEntry>,
    ) -> Result<Submitted, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let queued: i64 =
                tx.query_row("SELECT COUNT(*) FROM runs WHERE state = 'queued'", p![], |r| r.get(0))?;
            if queued as usize >= capacity {
                return Ok(Submitted::QueueFull { capacity });
            }
            let tenant_seq: i64 = tx.query_row(
                "UPDATE tenants SET runs_submitted = runs_submitted + 1 WHERE id = ?1 RETURNING runs_submitted",
                p![self.tenant.as_str()],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO runs (id, tenant_id, tenant_seq, key_id, language, version, state, request,
                                   stored_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9)",
                p![
                    run.id,
                    self.tenant.as_str(),
                    tenant_seq,
                    run.key_id,
                    run.language,
                    run.version,
                    run.request,
                    run.request.len() as i64,
                    at
                ],
            )?;
            let rec = one(&tx, "WHERE id = ?1", p![run.id])?.ok_or_else(|| {
                StoreError::Corrupt(format!("run {} vanished while it was queued", run.id))
            })?;
            if let Some(a) = audit {
                super::audit::append_in(&tx, a)?;
            }
            tx.commit()?;
            Ok(Submitted::Queued(Box::new(rec)))
        })
    }

    /// One run, with its result.
    pub fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.store.with(|c| {
            one(
                c,
                "WHERE tenant_id = ?1 AND id = ?2",
                p![self.tenant.as_str(), id],
            )
        })
    }

    /// Newest first, without results; `before` is the `tenant_seq` to
    /// continue below (a cursor); `submitted_by` restricts to one key's runs.
    pub fn list(
        &self,
        before: Option<i64>,
        limit: usize,
        submitted_by: Option<&str>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{SELECT} WHERE tenant_id = ?1 AND tenant_seq < ?2 AND (CAST(?3 AS TEXT) IS NULL OR key_id = ?3)
                 ORDER BY tenant_seq DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                p![
                    self.tenant.as_str(),
                    before.unwrap_or(i64::MAX),
                    submitted_by,
                    limit as i64
                ],
                row,
            )?;
            rows.map(|r| r?.into_record(None)).collect()
        })
    }

    /// Cancels a queued run at once; asks for a running one to be stopped.
    pub fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let Some(rec) = one(
                &tx,
                "WHERE tenant_id = ?1 AND id = ?2",
                p![self.tenant.as_str(), id],
            )?
            else {
                return Ok(CancelOutcome::NotFound);
            };
            let outcome = match rec.state {
                RunState::Queued => {
                    tx.execute(
                        &format!(
                            "UPDATE runs SET state = 'cancelled', finished_at = ?1, {DROP_REQUEST}
                             WHERE id = ?2 AND state = 'queued'"
                        ),
                        p![at, id],
                    )?;
                    let rec = one(&tx, "WHERE id = ?1", p![id])?
                        .ok_or_else(|| StoreError::Corrupt(format!("run {id} vanished")))?;
                    tx.notify(&format!("done:{id}"))?;
                    CancelOutcome::Cancelled(rec)
                }
                RunState::Running => {
                    tx.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", p![id])?;
                    // The runner executing it may be another: it hears this.
                    tx.notify(&format!("cancel:{id}"))?;
                    CancelOutcome::Requested(rec)
                }
                _ => CancelOutcome::AlreadyFinal(rec),
            };
            tx.commit()?;
            Ok(outcome)
        })
    }
}

/// Once a run is final, its request is no longer needed: nothing reads it
/// again, and keeping it would double what a run costs to store.
const DROP_REQUEST: &str = "request = X'', stored_bytes = stored_bytes - length(request)";

/// The scheduler's view: all tenants' queued and running runs.
#[derive(Debug)]
pub struct Queue<'a> {
    store: &'a Store,
}

impl<'a> Queue<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Queue { store }
    }

    /// Tenants with queued runs, the one waiting longest first.
    pub fn waiting_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT tenant_id, MIN(seq) AS oldest FROM runs WHERE state = 'queued'
                 GROUP BY tenant_id ORDER BY oldest",
            )?;
            let rows = st.query_map(p![], |r| Ok(TenantId(r.get(0)?)))?;
            rows.collect::<Result<_, _>>()
        })
    }

    /// Moves the oldest queued run of `tenant` to running; returns its id
    /// and job spec, or `None` when the tenant has none queued.
    pub fn claim_next(&self, tenant: &TenantId) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.claim(tenant, usize::MAX)
    }

    /// Like [`Queue::claim_next`], unless `tenant` has `per_tenant` runs
    /// running already, on whichever runner: the tenant's row is locked
    /// while its running runs are counted, so runners sharing the database
    /// take turns and the bound holds across them. A run is claimed by one
    /// runner only (`SKIP LOCKED`: a run another runner is claiming is
    /// passed over, not waited for), and carries this runner's name.
    pub fn claim(
        &self,
        tenant: &TenantId,
        per_tenant: usize,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            if tx.is_pg() {
                tx.query(
                    "SELECT id FROM tenants WHERE id = ?1 FOR UPDATE",
                    p![tenant.as_str()],
                )?;
                // The claim renews this runner's lease in the same
                // transaction: a runner back from a network partition
                // (its lease lapsed, its old runs reaped) must not claim a
                // run that another runner's reaper would then take for
                // abandoned.
                super::extend_lease(&tx, self.store.owner(), at)?;
            }
            if per_tenant < usize::MAX {
                let running: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM runs WHERE state = 'running' AND tenant_id = ?1",
                    p![tenant.as_str()],
                    |r| r.get(0),
                )?;
                if running as usize >= per_tenant {
                    return Ok(None);
                }
            }
            let lock = if tx.is_pg() {
                "FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let next: Option<(String, Vec<u8>)> = tx.query_opt(
                &format!(
                    "SELECT id, request FROM runs WHERE state = 'queued' AND tenant_id = ?1
                     ORDER BY seq LIMIT 1 {lock}"
                ),
                p![tenant.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some((id, _)) = &next {
                tx.execute(
                    "UPDATE runs SET state = 'running', started_at = ?1, owner = ?3 WHERE id = ?2",
                    p![at, id, self.store.owner()],
                )?;
                tx.notify(&format!("started:{id}"))?;
            }
            tx.commit()?;
            Ok(next)
        })
    }

    /// Records the result of a running run, exactly once.
    pub fn finish(&self, id: &str, result: &RunResult) -> Result<bool, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let seq: Option<i64> = tx.query_opt(
                "UPDATE runs SET state = 'finished', status = ?1, finished_at = ?2, request = X''
                     WHERE id = ?3 AND state = 'running' RETURNING seq",
                p![result.status.as_str(), at, id],
                |r| r.get(0),
            )?;
            let Some(seq) = seq else {
                return Ok(false);
            };
            let bytes = results::write(&tx, seq, result)?;
            tx.execute(
                "UPDATE runs SET stored_bytes = ?1 WHERE seq = ?2",
                p![bytes, seq],
            )?;
            tx.notify(&format!("done:{id}"))?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Ends a running run as cancelled (the client asked).
    pub fn cancelled(&self, id: &str) -> Result<bool, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let ended = c.execute(
                &format!(
                    "UPDATE runs SET state = 'cancelled', finished_at = ?1, {DROP_REQUEST}
                     WHERE id = ?2 AND state = 'running'"
                ),
                p![at, id],
            )? == 1;
            if ended {
                c.notify(&format!("done:{id}"))?;
            }
            Ok(ended)
        })
    }

    /// Puts a running run back in the queue (orderly shutdown past its grace).
    pub fn requeue(&self, id: &str) -> Result<bool, StoreError> {
        self.store.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET state = 'queued', started_at = NULL WHERE id = ?1 AND state = 'running'",
                p![id],
            )? == 1)
        })
    }

    pub fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        self.store.with(|c| {
            Ok(c.query_opt(
                "SELECT cancel_requested FROM runs WHERE id = ?1",
                p![id],
                |r| r.get::<i64>(0),
            )?
            .is_some_and(|v| v != 0))
        })
    }

    /// Runs that were running when the previous process died: (id, language,
    /// version). They are finished by the caller.
    pub fn interrupted(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.store.with(|c| {
            // On SQLite, one runner: whatever was running when it started
            // was its previous process's. On PostgreSQL, the runs of
            // runners whose lease ran out.
            let (filter, cutoff) = if c.is_pg() {
                (super::DEAD_OWNER, super::dead_cutoff())
            } else {
                ("?1 = ?1", 0)
            };
            c.query_map(
                &format!(
                    "SELECT id, language, version FROM runs WHERE state = 'running' AND {filter} ORDER BY seq"
                ),
                p![cutoff],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
    }

    /// Runs of this runner whose cancellation was asked for (a request
    /// another runner answered, whose notification was missed).
    pub fn cancels_pending(&self) -> Result<Vec<String>, StoreError> {
        self.store.with(|c| {
            c.query_map(
                "SELECT id FROM runs WHERE state = 'running' AND owner = ?1 AND cancel_requested = 1",
                p![self.store.owner()],
                |r| r.get(0),
            )
        })
    }

    /// A run by id, whatever its tenant (the scheduler's own bookkeeping).
    pub fn record(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.store.with(|c| one(c, "WHERE id = ?1", p![id]))
    }

    /// (queued, running) counts.
    pub fn depth(&self) -> Result<(usize, usize), StoreError> {
        self.store.with(|c| {
            let q: i64 = c.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = 'queued'",
                p![],
                |r| r.get(0),
            )?;
            let r: i64 = c.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = 'running'",
                p![],
                |r| r.get(0),
            )?;
            Ok((q as usize, r as usize))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{OutputOrder, StageResult, Stream};

    fn result() -> RunResult {
        RunResult {
            status: Status::Ok,
            language: "python".into(),
            version: "3".into(),
            compile: None,
            run: None,
            message: None,
        }
    }

    /// A run submitted with key "k" and the given request body.
    fn queued<'a>(id: &'a str, request: &'a [u8]) -> NewRun<'a> {
        NewRun {
            id,
            key_id: "k",
            language: "python",
            version: "3",
            request,
        }
    }

    fn claim(s: &Store, t: &TenantId) -> Option<String> {
        s.queue().claim_next(t).unwrap().map(|(id, _)| id)
    }

    #[test]
    fn runs_are_invisible_across_tenants() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        s.runs(&a).submit(&queued("r1", b"{}"), 10, None).unwrap();
        assert!(s.runs(&a).get("r1").unwrap().is_some());
        assert!(s.runs(&b).get("r1").unwrap().is_none());
        assert!(s.runs(&b).list(None, 10, None).unwrap().is_empty());
        assert_eq!(s.runs(&b).cancel("r1").unwrap(), CancelOutcome::NotFound);
    }

    #[test]
    fn the_queue_bound_holds() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        assert!(matches!(
            s.runs(&a).submit(&queued("r1", b"{}"), 2, None).unwrap(),
            Submitted::Queued(_)
        ));
        assert!(matches!(
            s.runs(&a).submit(&queued("r2", b"{}"), 2, None).unwrap(),
            Submitted::Queued(_)
        ));
        assert_eq!(
            s.runs(&a).submit(&queued("r3", b"{}"), 2, None).unwrap(),
            Submitted::QueueFull { capacity: 2 }
        );
        // A claimed run leaves the queue.
        assert_eq!(claim(&s, &a).as_deref(), Some("r1"));
        assert!(matches!(
            s.runs(&a).submit(&queued("r3", b"{}"), 2, None).unwrap(),
            Submitted::Queued(_)
        ));
    }

    #[test]
    fn a_run_is_claimed_and_finished_exactly_once() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        s.runs(&a).submit(&queued("r1", b"REQ"), 10, None).unwrap();
        assert_eq!(s.queue().waiting_tenants().unwrap(), vec![a.clone()]);
        assert_eq!(
            s.queue().claim_next(&a).unwrap(),
            Some(("r1".to_string(), b"REQ".to_vec()))
        );
        assert_eq!(s.queue().claim_next(&a).unwrap(), None);
        assert!(s.queue().waiting_tenants().unwrap().is_empty());
        assert!(s.queue().finish("r1", &result()).unwrap());
        assert!(!s.queue().finish("r1", &result()).unwrap());
        let rec = s.runs(&a).get("r1").unwrap().unwrap();
        assert_eq!(rec.state, RunState::Finished);
        assert_eq!(rec.status, Some(Status::Ok));
        assert_eq!(rec.result.unwrap().status, Status::Ok);
    }

    #[test]
    fn tenants_waiting_come_oldest_first() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        s.runs(&b).submit(&queued("b1", b"{}"), 10, None).unwrap();
        s.runs(&a).submit(&queued("a1", b"{}"), 10, None).unwrap();
        s.runs(&b).submit(&queued("b2", b"{}"), 10, None).unwrap();
        assert_eq!(s.queue().waiting_tenants().unwrap(), vec![b.clone(), a]);
        assert_eq!(claim(&s, &b).as_deref(), Some("b1"));
        assert_eq!(claim(&s, &b).as_deref(), Some("b2"));
    }

    #[test]
    fn cancelling_depends_on_the_state() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        s.runs(&a).submit(&queued("r", b"{}"), 10, None).unwrap();
        s.runs(&a).submit(&queued("q", b"{}"), 10, None).unwrap();
        assert_eq!(claim(&s, &a).as_deref(), Some("r"));
        assert!(
            matches!(s.runs(&a).cancel("q").unwrap(), CancelOutcome::Cancelled(r) if r.state == RunState::Cancelled)
        );
        assert!(claim(&s, &a).is_none(), "a cancelled run never starts");
        assert!(matches!(
            s.runs(&a).cancel("r").unwrap(),
            CancelOutcome::Requested(_)
        ));
        assert!(s.queue().cancel_requested("r").unwrap());
        assert!(s.queue().cancelled("r").unwrap());
        assert!(matches!(
            s.runs(&a).cancel("r").unwrap(),
            CancelOutcome::AlreadyFinal(_)
        ));
    }

    #[test]
    fn listing_is_newest_first_with_a_per_tenant_cursor() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        for i in 0..5 {
            let id = format!("r{i}");
            let run = NewRun {
                id: &id,
                key_id: if i % 2 == 0 { "k0" } else { "k1" },
                language: "py",
                version: "3",
                request: b"{}",
            };
            s.runs(&a).submit(&run, 10, None).unwrap();
            // Another tenant's runs in between leave no trace in a's positions.
            let other = format!("o{i}");
            s.runs(&b)
                .submit(&queued(&other, b"{}"), 100, None)
                .unwrap();
        }
        let page = s.runs(&a).list(None, 2, None).unwrap();
        assert_eq!(
            page.iter()
                .map(|r| (r.id.as_str(), r.tenant_seq))
                .collect::<Vec<_>>(),
            [("r4", 5), ("r3", 4)]
        );
        let next = s.runs(&a).list(Some(page[1].tenant_seq), 2, None).unwrap();
        assert_eq!(
            next.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );
        let mine = s.runs(&a).list(None, 10, Some("k1")).unwrap();
        assert_eq!(
            mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r3", "r1"]
        );
    }

    fn bytes_of(s: &Store, id: &str) -> i64 {
        s.with(|c| {
            c.query_row("SELECT stored_bytes FROM runs WHERE id = ?1", p![id], |r| {
                r.get(0)
            })
        })
        .unwrap()
    }

    #[test]
    fn output_is_stored_once_as_bytes_and_the_request_is_dropped_when_final() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let request = vec![7u8; 10_000];
        s.runs(&a)
            .submit(&queued("r1", &request), 10, None)
            .unwrap();
        assert_eq!(bytes_of(&s, "r1"), 10_000);
        claim(&s, &a).unwrap();
        let nul = "\0".repeat(100_000);
        let mut order = OutputOrder::default();
        order.push(Stream::Stdout, 50_000);
        order.push(Stream::Stderr, 100_000);
        order.push(Stream::Stdout, 50_000);
        let stage = StageResult {
            stdout: nul.clone(),
            stderr: nul.clone(),
            order,
            exit_code: Some(0),
            ..StageResult::default()
        };
        let r = RunResult {
            run: Some(stage.clone()),
            ..result()
        };
        assert!(s.queue().finish("r1", &r).unwrap());
        let stored = bytes_of(&s, "r1");
        assert!(
            (200_000..201_000).contains(&stored),
            "each NUL costs one byte, each stream is kept once: {stored}"
        );
        let request_left: i64 = s
            .with(|c| {
                c.query_row(
                    "SELECT length(request) FROM runs WHERE id = 'r1'",
                    p![],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(request_left, 0);
        let back = s.runs(&a).get("r1").unwrap().unwrap().result.unwrap();
        assert_eq!(back, r);
        let out = back.run.unwrap().output();
        assert_eq!(out.len(), 200_000);
        assert_eq!(out, nul.clone() + &nul);
    }

    #[test]
    fn results_stored_as_json_before_are_still_read() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        s.runs(&a).submit(&queued("old", b"{}"), 10, None).unwrap();
        let legacy = r#"{"status":"ok","language":"python","version":"3","compile":null,"run":{"stdout":"o","stderr":"e","output":"eo","stdout_truncated":false,"stderr_truncated":false,"exit_code":0,"signal":null,"wall_ms":1,"cpu_ms":1,"memory_peak_bytes":1,"limit":null,"message":null}}"#;
        s.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'finished', status = 'ok', result = ?1 WHERE id = 'old'",
                p![legacy],
            )?;
            Ok(())
        })
        .unwrap();
        let run = s
            .runs(&a)
            .get("old")
            .unwrap()
            .unwrap()
            .result
            .unwrap()
            .run
            .unwrap();
        assert_eq!(run.output(), "eo");
    }
}
