//! Retention: ended runs are deleted when they are older than the configured
//! age, and a tenant's oldest ended runs when what its runs keep goes over
//! its byte budget. Queued and running runs are never deleted. The audit log
//! is not touched (it is a hash chain, and small).

use std::time::Duration;

use super::sql::p;

use super::{Store, StoreError};

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Ended runs older than this (by their end) go; `None`: kept by age.
    pub max_age: Option<Duration>,
    /// Bytes a tenant's runs may keep (requests, results, output); beyond
    /// it the oldest ended runs go. `None`: no budget.
    pub tenant_max_bytes: Option<u64>,
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub by_age: usize,
    pub by_size: usize,
    pub bytes: u64,
}

/// Rows deleted per statement, so a sweep never holds the write lock long.
const BATCH: i64 = 500;

const ENDED: &str = "state IN ('finished', 'cancelled')";

impl Store {
    /// Applies `policy` once, at time `now_ms`.
    pub fn sweep(&self, policy: &Retention, now_ms: i64) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        if let Some(age) = policy.max_age {
            let cutoff = now_ms.saturating_sub(age.as_millis() as i64);
            loop {
                let (n, bytes) = self.delete_batch(
                    &format!("{ENDED} AND finished_at < ?1 ORDER BY seq LIMIT ?2"),
                    p![cutoff, BATCH],
                )?;
                swept.by_age += n;
                swept.bytes += bytes;
                if (n as i64) < BATCH {
                    break;
                }
            }
        }
        if let Some(budget) = policy.tenant_max_bytes {
            for (tenant, total) in self.tenants_over(budget)? {
                let last = self.oldest_covering(&tenant, total - budget as i64)?;
                let Some(last) = last else { continue };
                loop {
                    let (n, bytes) = self.delete_batch(
                        &format!("{ENDED} AND tenant_id = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3"),
                        p![tenant, last, BATCH],
                    )?;
                    swept.by_size += n;
                    swept.bytes += bytes;
                    if (n as i64) < BATCH {
                        break;
                    }
                }
            }
        }
        Ok(swept)
    }

    /// Deletes the runs selected by `filter` (a WHERE clause with its
    /// ORDER BY and LIMIT); returns how many and the bytes they kept.
    fn delete_batch(
        &self,
        filter: &str,
        p: &[super::sql::Value],
    ) -> Result<(usize, u64), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let gone: Vec<(i64, i64)> = {
                let mut st = tx.prepare(&format!(
                    "SELECT seq, stored_bytes FROM runs WHERE {filter}"
                ))?;
                let rows = st.query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            {
                // Their stages go with them (ON DELETE CASCADE).
                let mut del = tx.prepare("DELETE FROM runs WHERE seq = ?1")?;
                for (seq, _) in &gone {
                    del.execute(p![seq])?;
                }
            }
            tx.commit()?;
            Ok((gone.len(), gone.iter().map(|(_, b)| *b as u64).sum()))
        })
    }

    fn tenants_over(&self, budget: u64) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                // PostgreSQL's SUM of a BIGINT is a NUMERIC, which would make
                // the parameter one too: compare the BIGINT.
                "SELECT tenant_id, CAST(SUM(stored_bytes) AS BIGINT) FROM runs GROUP BY tenant_id
                 HAVING CAST(SUM(stored_bytes) AS BIGINT) > ?1",
            )?;
            let rows = st.query_map(p![budget as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()
        })
    }

    /// The `seq` up to which a tenant's oldest ended runs keep at least
    /// `excess` bytes (or all of them, when they keep less).
    fn oldest_covering(&self, tenant: &str, excess: i64) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT seq, stored_bytes FROM runs WHERE tenant_id = ?1 AND {ENDED} ORDER BY seq"
            ))?;
            let mut rows = st.query(p![tenant])?;
            let (mut freed, mut last) = (0i64, None);
            while let Some(r) = rows.next()? {
                last = Some(r.get::<i64>(0)?);
                freed += r.get::<i64>(1)?;
                if freed >= excess {
                    break;
                }
            }
            Ok(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::store::{NewRun, TenantId, now_ms};
    use crate::verdict::{RunResult, StageResult, Status};

    /// A finished run of `tenant` keeping about `bytes` of output.
    fn finished(s: &Store, tenant: &TenantId, id: &str, bytes: usize) {
        let run = NewRun {
            id,
            key_id: "k",
            language: "python",
            version: "3",
            request: b"spec",
        };
        s.runs(tenant).submit(&run, 1000, None).unwrap();
        s.queue().claim_next(tenant).unwrap().unwrap();
        let result = RunResult {
            status: Status::Ok,
            language: "python".into(),
            version: "3".into(),
            compile: None,
            run: Some(StageResult {
                stdout: "x".repeat(bytes),
                ..StageResult::default()
            }),
            message: None,
        };
        assert!(s.queue().finish(id, &result).unwrap());
    }

    fn ids(s: &Store, t: &TenantId) -> Vec<String> {
        let mut v: Vec<String> = s
            .runs(t)
            .list(None, 100, None)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn old_ended_runs_go_and_queued_ones_stay() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        finished(&s, &a, "done", 10);
        let queued = NewRun {
            id: "waiting",
            key_id: "k",
            language: "python",
            version: "3",
            request: b"spec",
        };
        s.runs(&a).submit(&queued, 1000, None).unwrap();
        let policy = Retention {
            max_age: Some(Duration::from_secs(60)),
            tenant_max_bytes: None,
        };
        assert_eq!(s.sweep(&policy, now_ms()).unwrap(), Swept::default());
        let later = now_ms() + 61_000;
        let swept = s.sweep(&policy, later).unwrap();
        assert_eq!(swept.by_age, 1);
        assert!(swept.bytes >= 10);
        assert_eq!(ids(&s, &a), ["waiting"]);
        let stages: i64 = s
            .with(|c| c.query_row("SELECT COUNT(*) FROM run_stages", p![], |r| r.get(0)))
            .unwrap();
        assert_eq!(stages, 0, "the output went with its run");
    }

    #[test]
    fn a_tenant_over_its_budget_loses_its_oldest_runs_only() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        for i in 0..5 {
            finished(&s, &a, &format!("a{i}"), 10_000);
            finished(&s, &b, &format!("b{i}"), 10_000);
        }
        let policy = Retention {
            max_age: None,
            tenant_max_bytes: Some(35_000),
        };
        let swept = s.sweep(&policy, now_ms()).unwrap();
        // Each run keeps a little over 10 000 bytes: two go from each tenant.
        assert_eq!(swept.by_size, 4);
        assert_eq!(ids(&s, &a), ["a2", "a3", "a4"]);
        assert_eq!(ids(&s, &b), ["b2", "b3", "b4"]);
        assert_eq!(s.sweep(&policy, now_ms()).unwrap(), Swept::default());
    }
}
