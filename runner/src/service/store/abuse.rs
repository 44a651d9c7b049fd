//! The rows of rate limits and lockouts that several runners share (see
//! `service::abuse`, which owns their meaning): one row per (scope,
//! subject), read under a row lock, changed in Rust, written back in the
//! same short transaction.

use super::sql::{Conn, p};
use super::{Store, StoreError};

/// One row as stored: times in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbuseRow {
    /// Hits in a rate window, or failed authentications.
    pub times: Vec<i64>,
    /// Start times of verifications under way (lockouts only).
    pub pending: Vec<i64>,
    pub locked_until: Option<i64>,
}

impl AbuseRow {
    /// Whether the row holds nothing (it is then deleted, not kept).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty() && self.pending.is_empty() && self.locked_until.is_none()
    }
}

/// Rows deleted per statement by [`Store::sweep_abuse`].
const SWEEP_BATCH: i64 = 1000;

/// A transaction over abuse rows; see [`Store::abuse`].
#[derive(Debug)]
pub struct AbuseTx<'t, 'a>(&'t Conn<'a>);

impl Store {
    /// Runs `f` in one transaction, committed when it returns `Ok`.
    pub fn abuse<R>(
        &self,
        f: impl FnOnce(&AbuseTx<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let r = f(&AbuseTx(&tx))?;
            tx.commit()?;
            Ok(r)
        })
    }

    /// Deletes rows that expired by `now`; returns how many. Rows a check
    /// holds are skipped (on PostgreSQL), not waited for: the next sweep
    /// gets them, and a sweep never deadlocks with a check.
    pub fn sweep_abuse(&self, now: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.with(|c| {
                let skip = if c.is_pg() {
                    " FOR UPDATE SKIP LOCKED"
                } else {
                    ""
                };
                c.execute(
                    &format!(
                        "DELETE FROM abuse_state WHERE (scope, subject) IN
                         (SELECT scope, subject FROM abuse_state WHERE expires_at <= ?1 LIMIT ?2{skip})"
                    ),
                    p![now, SWEEP_BATCH],
                )
            })?;
            total += n;
            if (n as i64) < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// How many abuse rows there are (tests, and operators' curiosity).
    pub fn abuse_rows(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM abuse_state", p![], |r| r.get(0)))
    }
}

impl AbuseTx<'_, '_> {
    /// The row of (scope, subject), created empty if missing, locked until
    /// the transaction ends: concurrent checks of one subject, from any
    /// runner, take turns. (An upsert rather than insert-then-select: a
    /// sweep cannot delete the row in between.)
    pub fn lock(&self, scope: &str, subject: &str, now: i64) -> Result<AbuseRow, StoreError> {
        self.0.query_row(
            "INSERT INTO abuse_state (scope, subject, times, pending, locked_until, expires_at)
             VALUES (?1, ?2, ?3, ?3, NULL, ?4)
             ON CONFLICT (scope, subject) DO UPDATE SET expires_at = abuse_state.expires_at
             RETURNING times, pending, locked_until",
            p![scope, subject, Vec::<u8>::new(), now],
            row,
        )
    }

    /// The row of (scope, subject) if there is one, locked when `lock`.
    pub fn get(
        &self,
        scope: &str,
        subject: &str,
        lock: bool,
    ) -> Result<Option<AbuseRow>, StoreError> {
        let suffix = if lock && self.0.is_pg() {
            " FOR UPDATE"
        } else {
            ""
        };
        self.0.query_opt(
            &format!(
                "SELECT times, pending, locked_until FROM abuse_state
                 WHERE scope = ?1 AND subject = ?2{suffix}"
            ),
            p![scope, subject],
            row,
        )
    }

    /// Writes `after` over the row read as `before` (nothing when they are
    /// alike); an empty row is deleted.
    pub fn put(
        &self,
        scope: &str,
        subject: &str,
        before: &AbuseRow,
        after: &AbuseRow,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        if after.is_empty() {
            self.0.execute(
                "DELETE FROM abuse_state WHERE scope = ?1 AND subject = ?2",
                p![scope, subject],
            )?;
        } else if before != after {
            self.0.execute(
                "UPDATE abuse_state SET times = ?3, pending = ?4, locked_until = ?5, expires_at = ?6
                 WHERE scope = ?1 AND subject = ?2",
                p![
                    scope,
                    subject,
                    encode(&after.times),
                    encode(&after.pending),
                    after.locked_until,
                    expires_at
                ],
            )?;
        }
        Ok(())
    }
}

fn row(r: &super::sql::Row) -> Result<AbuseRow, StoreError> {
    Ok(AbuseRow {
        times: decode(&r.get::<Vec<u8>>(0)?)?,
        pending: decode(&r.get::<Vec<u8>>(1)?)?,
        locked_until: r.get(2)?,
    })
}

fn encode(times: &[i64]) -> Vec<u8> {
    times.iter().flat_map(|t| t.to_be_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "an abuse_state row holds {} bytes of times, not a multiple of 8",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_be_bytes(b)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let times = vec![0, 1, -5, i64::MAX, 1_700_000_000_123];
        assert_eq!(decode(&encode(&times)).unwrap(), times);
        assert!(decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn rows_are_created_written_and_deleted_when_empty() {
        let s = Store::in_memory().unwrap();
        let before = s.abuse(|tx| tx.lock("ip", "a", 5)).unwrap();
        assert!(before.is_empty());
        let after = AbuseRow {
            times: vec![5, 6],
            pending: vec![7],
            locked_until: Some(9),
        };
        s.abuse(|tx| tx.put("ip", "a", &before, &after, 100))
            .unwrap();
        assert_eq!(
            s.abuse(|tx| tx.get("ip", "a", false)).unwrap(),
            Some(after.clone())
        );
        assert_eq!(s.abuse(|tx| tx.lock("ip", "a", 6)).unwrap(), after);
        assert_eq!(s.sweep_abuse(99).unwrap(), 0, "not expired yet");
        assert_eq!(s.sweep_abuse(100).unwrap(), 1);
        assert_eq!(s.abuse_rows().unwrap(), 0);
        // Locked, found empty, left empty: no row stays behind.
        s.abuse(|tx| {
            let r = tx.lock("key", "k", 1)?;
            tx.put("key", "k", &r, &r, 1)
        })
        .unwrap();
        assert_eq!(s.abuse_rows().unwrap(), 0);
    }
}
