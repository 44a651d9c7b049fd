//! Runs: tenant-scoped reads and writes ([`TenantRuns`]) and the scheduler's
//! cross-tenant queue operations ([`Queue`]).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, TenantId, now_ms};
use crate::verdict::RunResult;

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

/// A run as stored (without its request, which can be large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub seq: i64,
    pub id: String,
    pub tenant: TenantId,
    pub key_id: String,
    pub language: String,
    pub version: String,
    pub state: RunState,
    pub result: Option<RunResult>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const SELECT: &str = "SELECT seq, id, tenant_id, key_id, language, version, state, result, created_at, started_at, finished_at FROM runs";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRecord, String, Option<String>)> {
    Ok((
        RunRecord {
            seq: r.get(0)?,
            id: r.get(1)?,
            tenant: TenantId(r.get(2)?),
            key_id: r.get(3)?,
            language: r.get(4)?,
            version: r.get(5)?,
            state: RunState::Queued,
            result: None,
            created_at: r.get(8)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_row(
    (mut rec, state, result): (RunRecord, String, Option<String>),
) -> Result<RunRecord, StoreError> {
    rec.state = RunState::parse(&state)?;
    rec.result = match result {
        Some(json) => Some(
            serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("result of run {}: {e}", rec.id)))?,
        ),
        None => None,
    };
    Ok(rec)
}

/// A run to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub id: &'a str,
    /// The submitting key.
    pub key_id: &'a str,
    pub language: &'a str,
    pub version: &'a str,
    /// The request, as the scheduler reads it back.
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
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let queued: i64 =
                tx.query_row("SELECT COUNT(*) FROM runs WHERE state = 'queued'", [], |r| r.get(0))?;
            if queued as usize >= capacity {
                return Ok(Submitted::QueueFull { capacity });
            }
            tx.execute(
                "INSERT INTO runs (id, tenant_id, key_id, language, version, state, request, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
                params![run.id, self.tenant.as_str(), run.key_id, run.language, run.version, run.request, at],
            )?;
            let rec = tx.query_row(&format!("{SELECT} WHERE id = ?1"), [run.id], row)?;
            if let Some(a) = audit {
                super::audit::append_in(&tx, a)?;
            }
            tx.commit()?;
            Ok(Submitted::Queued(Box::new(finish_row(rec)?)))
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.store.with(|c| {
            c.query_row(
                &format!("{SELECT} WHERE tenant_id = ?1 AND id = ?2"),
                params![self.tenant.as_str(), id],
                row,
            )
            .optional()?
            .map(finish_row)
            .transpose()
        })
    }

    /// Newest first; `before` is the `seq` to continue below (a cursor);
    /// `submitted_by` restricts to one key's runs.
    pub fn list(
        &self,
        before: Option<i64>,
        limit: usize,
        submitted_by: Option<&str>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!(
                "{SELECT} WHERE tenant_id = ?1 AND seq < ?2 AND (?3 IS NULL OR key_id = ?3)
                 ORDER BY seq DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![
                    self.tenant.as_str(),
                    before.unwrap_or(i64::MAX),
                    submitted_by,
                    limit as i64
                ],
                row,
            )?;
            rows.map(|r| finish_row(r?)).collect()
        })
    }

    /// Cancels a queued run at once; asks for a running one to be stopped.
    pub fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(rec) = tx
                .query_row(
                    &format!("{SELECT} WHERE tenant_id = ?1 AND id = ?2"),
                    params![self.tenant.as_str(), id],
                    row,
                )
                .optional()?
            else {
                return Ok(CancelOutcome::NotFound);
            };
            let rec = finish_row(rec)?;
            let outcome = match rec.state {
                RunState::Queued => {
                    tx.execute(
                        "UPDATE runs SET state = 'cancelled', finished_at = ?1 WHERE id = ?2 AND state = 'queued'",
                        params![at, id],
                    )?;
                    let rec = finish_row(tx.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)?)?;
                    CancelOutcome::Cancelled(rec)
                }
                RunState::Running => {
                    tx.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [id])?;
                    CancelOutcome::Requested(rec)
                }
                _ => CancelOutcome::AlreadyFinal(rec),
            };
            tx.commit()?;
            Ok(outcome)
        })
    }
}

/// The scheduler's view: all tenants' queued and running runs.
#[derive(Debug)]
pub struct Queue<'a> {
    store: &'a Store,
}

impl<'a> Queue<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Queue { store }
    }

    /// Oldest queued runs first: (id, tenant).
    pub fn waiting(&self, limit: usize) -> Result<Vec<(String, TenantId)>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT id, tenant_id FROM runs WHERE state = 'queued' ORDER BY seq LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, TenantId(r.get(1)?))))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Moves a queued run to running; returns its request, or `None` if
    /// another claimant (or a cancellation) got there first.
    pub fn claim(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE runs SET state = 'running', started_at = ?1 WHERE id = ?2 AND state = 'queued'",
                params![at, id],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let req: Vec<u8> = tx.query_row("SELECT request FROM runs WHERE id = ?1", [id], |r| r.get(0))?;
            tx.commit()?;
            Ok(Some(req))
        })
    }

    /// Records the result of a running run, exactly once.
    pub fn finish(&self, id: &str, result: &RunResult) -> Result<bool, StoreError> {
        let json = serde_json::to_string(result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at = now_ms();
        self.store.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET state = 'finished', result = ?1, status = ?2, finished_at = ?3
                 WHERE id = ?4 AND state = 'running'",
                params![json, result.status.as_str(), at, id],
            )? == 1)
        })
    }

    /// Ends a running run as cancelled (the client asked).
    pub fn cancelled(&self, id: &str) -> Result<bool, StoreError> {
        let at = now_ms();
        self.store.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET state = 'cancelled', finished_at = ?1 WHERE id = ?2 AND state = 'running'",
                params![at, id],
            )? == 1)
        })
    }

    /// Puts a running run back in the queue (orderly shutdown past its grace).
    pub fn requeue(&self, id: &str) -> Result<bool, StoreError> {
        self.store.with(|c| {
            Ok(c.execute(
                "UPDATE runs SET state = 'queued', started_at = NULL WHERE id = ?1 AND state = 'running'",
                [id],
            )? == 1)
        })
    }

    pub fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        self.store.with(|c| {
            Ok(c.query_row(
                "SELECT cancel_requested FROM runs WHERE id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some_and(|v| v != 0))
        })
    }

    /// Runs that were running when the previous process died: (id, language,
    /// version). They are finished by the caller.
    pub fn interrupted(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT id, language, version FROM runs WHERE state = 'running' ORDER BY seq",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A run by id, whatever its tenant (the scheduler's own bookkeeping).
    pub fn record(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.store.with(|c| {
            c.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
                .optional()?
                .map(finish_row)
                .transpose()
        })
    }

    /// (queued, running) counts.
    pub fn depth(&self) -> Result<(usize, usize), StoreError> {
        self.store.with(|c| {
            let q: i64 = c.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )?;
            let r: i64 = c.query_row(
                "SELECT COUNT(*) FROM runs WHERE state = 'running'",
                [],
                |r| r.get(0),
            )?;
            Ok((q as usize, r as usize))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Status;

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
        assert!(s.queue().claim("r1").unwrap().is_some());
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
        assert_eq!(
            s.queue().waiting(10).unwrap(),
            vec![("r1".to_string(), a.clone())]
        );
        assert_eq!(s.queue().claim("r1").unwrap().as_deref(), Some(&b"REQ"[..]));
        assert_eq!(s.queue().claim("r1").unwrap(), None);
        assert!(s.queue().finish("r1", &result()).unwrap());
        assert!(!s.queue().finish("r1", &result()).unwrap());
        let rec = s.runs(&a).get("r1").unwrap().unwrap();
        assert_eq!(rec.state, RunState::Finished);
        assert_eq!(rec.result.unwrap().status, Status::Ok);
    }

    #[test]
    fn cancelling_depends_on_the_state() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        s.runs(&a).submit(&queued("q", b"{}"), 10, None).unwrap();
        s.runs(&a).submit(&queued("r", b"{}"), 10, None).unwrap();
        s.queue().claim("r").unwrap();
        assert!(
            matches!(s.runs(&a).cancel("q").unwrap(), CancelOutcome::Cancelled(r) if r.state == RunState::Cancelled)
        );
        assert!(
            s.queue().claim("q").unwrap().is_none(),
            "a cancelled run never starts"
        );
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
    fn listing_is_newest_first_with_a_cursor() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
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
        }
        let page = s.runs(&a).list(None, 2, None).unwrap();
        assert_eq!(
            page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r4", "r3"]
        );
        let next = s.runs(&a).list(Some(page[1].seq), 2, None).unwrap();
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
}
