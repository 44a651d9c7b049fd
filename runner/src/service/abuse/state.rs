//! The limits' arithmetic, on plain values: a rate window's hits and an
//! address's failures, at times in wall-clock milliseconds (so several
//! runners can share one state). Where the state lives is the parent
//! module's business.

use std::time::Duration;

use crate::service::store::abuse::AbuseRow;

/// How long a verification counts as under way at most. A runner that
/// crashed (or a request dropped) between its start and end cannot leave
/// an address "busy" for longer. Well above the longest wait for a hash
/// thread (`auth.verification_wait_ms`, 10 s by default) plus the hash.
pub const PENDING_TTL_MS: i64 = 120_000;

/// At most `limit` events per `window_ms`, counted over the last window
/// (not fixed buckets, so no double burst at a boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub limit: u32,
    pub window_ms: i64,
}

/// `failures` failed authentications within `window_ms` lock an address
/// out for `duration_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub failures: u32,
    pub window_ms: i64,
    pub duration_ms: i64,
}

/// Why an attempt may not proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Locked out, for this long yet.
    Locked(Duration),
    /// As many attempts are under way as failures would lock it out.
    Busy,
    /// Over a rate limit; retry after this long.
    Limited(Duration),
    /// The shared state could not be read or written (logged where it
    /// happened).
    Unavailable,
}

/// How a verification begun with [`Failures::begin`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key is valid.
    Valid,
    /// The key is not valid: a failure of the address.
    Invalid,
    /// Never checked (every hash thread stayed busy, or the check itself
    /// failed): the server's trouble, not a failure of the client, so it
    /// must not bring a well-behaved address closer to a lockout.
    Unchecked,
}

/// A verification under way: its start, which [`Failures::end`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub(super) i64);

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The hits of one subject within a [`Limit`]'s window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub hits: Vec<i64>,
}

impl Window {
    /// Counts one event at `now`; `Err(retry_after)` when over the limit
    /// (the event is then not counted).
    pub fn hit(&mut self, l: &Limit, now: i64) -> Result<(), Duration> {
        self.hits.retain(|t| now - t < l.window_ms);
        if self.hits.len() as u32 >= l.limit {
            // Runners' clocks differ a little: the oldest is the least,
            // not necessarily the first.
            let oldest = self.hits.iter().copied().min().unwrap_or(now);
            let left = (l.window_ms - (now - oldest)).clamp(1000, l.window_ms.max(1000));
            return Err(millis(left));
        }
        self.hits.push(now);
        Ok(())
    }

    /// When none of its hits counts any more.
    pub fn expires_at(&self, l: &Limit) -> i64 {
        self.hits.iter().max().map_or(i64::MIN, |t| t + l.window_ms)
    }

    pub fn from_row(r: AbuseRow) -> Window {
        Window { hits: r.times }
    }

    pub fn to_row(&self) -> AbuseRow {
        AbuseRow {
            times: self.hits.clone(),
            ..AbuseRow::default()
        }
    }
}

/// The failed authentications of one address, its verifications under way
/// and its lock. A success does not clear failures: they leave the window
/// only with time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    pub times: Vec<i64>,
    /// Starts of verifications under way: they count toward the threshold
    /// before their outcome is known, so concurrent attempts cannot
    /// overshoot it. Each expires after [`PENDING_TTL_MS`].
    pub pending: Vec<i64>,
    pub locked_until: Option<i64>,
}

impl Failures {
    fn prune(&mut self, p: &LockoutPolicy, now: i64) {
        self.times.retain(|t| now - t < p.window_ms);
        self.pending.retain(|t| now - t < PENDING_TTL_MS);
    }

    /// Time left when locked out at `now`; a lock that ran out is lifted
    /// (counting starts afresh).
    pub fn locked(&mut self, now: i64) -> Option<Duration> {
        match self.locked_until {
            Some(until) if until > now => Some(millis(until - now)),
            Some(_) => {
                self.locked_until = None;
                self.times.clear();
                None
            }
            None => None,
        }
    }

    /// Whether [`Failures::locked`] would change the state at `now`.
    pub fn lock_ran_out(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|u| u <= now)
    }

    /// Starts a verification; counted at once. End it with
    /// [`Failures::end`].
    pub fn begin(&mut self, p: &LockoutPolicy, now: i64) -> Result<Ticket, Refused> {
        self.prune(p, now);
        if let Some(until) = self.locked_until.filter(|u| *u > now) {
            return Err(Refused::Locked(millis(until - now)));
        }
        if self.times.len() as u32 + self.pending.len() as u32 >= p.failures {
            return Err(Refused::Busy);
        }
        self.pending.push(now);
        Ok(Ticket(now))
    }

    /// Ends the verification of `ticket`; returns true when its failure
    /// locks the address out. A ticket that expired meanwhile is no longer
    /// pending; its failure still counts.
    pub fn end(&mut self, p: &LockoutPolicy, ticket: Ticket, now: i64, outcome: Outcome) -> bool {
        self.prune(p, now);
        if let Some(i) = self.pending.iter().position(|t| *t == ticket.0) {
            self.pending.swap_remove(i);
        }
        match outcome {
            Outcome::Valid | Outcome::Unchecked => false,
            Outcome::Invalid => self.record(p, now),
        }
    }

    /// Records a failure that needed no verification (a malformed or
    /// unknown key); returns true when it locks the address out.
    pub fn fail(&mut self, p: &LockoutPolicy, now: i64) -> bool {
        self.prune(p, now);
        self.record(p, now)
    }

    fn record(&mut self, p: &LockoutPolicy, now: i64) -> bool {
        self.times.push(now);
        if self.locked_until.is_none_or(|u| u <= now) && self.times.len() as u32 >= p.failures {
            self.locked_until = Some(now + p.duration_ms);
            return true;
        }
        false
    }

    /// When nothing of it counts any more: failures out of the window,
    /// verifications expired, the lock lifted.
    pub fn expires_at(&self, p: &LockoutPolicy) -> i64 {
        let failures = self.times.iter().max().map(|t| t + p.window_ms);
        let pending = self.pending.iter().max().map(|t| t + PENDING_TTL_MS);
        [failures, pending, self.locked_until]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(i64::MIN)
    }

    pub fn from_row(r: AbuseRow) -> Failures {
        Failures {
            times: r.times,
            pending: r.pending,
            locked_until: r.locked_until,
        }
    }

    pub fn to_row(&self) -> AbuseRow {
        AbuseRow {
            times: self.times.clone(),
            pending: self.pending.clone(),
            locked_until: self.locked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome::{Invalid, Unchecked, Valid};
    use super::*;

    const S: i64 = 1000;
    /// Any wall-clock time; the arithmetic is relative.
    const T0: i64 = 1_700_000_000_000;

    fn lockout(failures: u32, window_s: i64, duration_s: i64) -> LockoutPolicy {
        LockoutPolicy {
            failures,
            window_ms: window_s * S,
            duration_ms: duration_s * S,
        }
    }

    #[test]
    fn the_window_slides() {
        let l = Limit {
            limit: 3,
            window_ms: 10 * S,
        };
        let (mut k, mut other) = (Window::default(), Window::default());
        for i in 0..3 {
            k.hit(&l, T0 + i * S).unwrap();
        }
        let retry = k.hit(&l, T0 + 3 * S).unwrap_err();
        assert_eq!(retry, Duration::from_secs(7));
        assert!(other.hit(&l, T0).is_ok(), "keys are independent");
        // The first hit leaves the window after 10 s.
        assert!(k.hit(&l, T0 + 10 * S).is_ok());
        assert!(k.hit(&l, T0 + 10 * S).is_err());
        assert_eq!(k.expires_at(&l), T0 + 20 * S);
    }

    #[test]
    fn a_retry_is_at_least_a_second_and_at_most_a_window() {
        let l = Limit {
            limit: 1,
            window_ms: 10 * S,
        };
        let mut w = Window::default();
        w.hit(&l, T0).unwrap();
        assert_eq!(w.hit(&l, T0 + 9_900).unwrap_err(), Duration::from_secs(1));
        // Another runner's clock ahead of ours: a hit "in the future".
        let mut w = Window {
            hits: vec![T0 + 5 * S],
        };
        assert_eq!(w.hit(&l, T0).unwrap_err(), Duration::from_secs(10));
    }

    #[test]
    fn lockout_follows_failures_and_lifts_by_itself() {
        let p = lockout(3, 60, 100);
        let mut f = Failures::default();
        assert!(!f.fail(&p, T0));
        assert!(!f.fail(&p, T0 + S));
        assert!(f.locked(T0).is_none());
        assert!(f.fail(&p, T0 + 2 * S));
        assert_eq!(f.locked(T0 + 2 * S), Some(Duration::from_secs(100)));
        assert!(!f.lock_ran_out(T0 + 101 * S));
        assert!(f.lock_ran_out(T0 + 102 * S));
        assert!(f.locked(T0 + 102 * S).is_none(), "lifted");
        assert!(!f.fail(&p, T0 + 103 * S), "counting starts afresh");
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let p = lockout(2, 10, 100);
        let mut f = Failures::default();
        f.fail(&p, T0);
        assert!(!f.fail(&p, T0 + 11 * S));
        assert!(f.fail(&p, T0 + 12 * S));
    }

    #[test]
    fn successes_in_between_do_not_reset_the_count() {
        // Finding: 4 bad keys, 1 good, repeated, never locked.
        let p = lockout(10, 300, 900);
        let mut f = Failures::default();
        let mut locked_at = None;
        for i in 0..15 {
            let now = T0 + i * 100;
            let Ok(ticket) = f.begin(&p, now) else {
                locked_at = Some(i);
                break;
            };
            let good = if i % 5 == 4 { Valid } else { Invalid };
            if f.end(&p, ticket, now, good) {
                locked_at = Some(i);
                break;
            }
        }
        // The 10th failure is the 12th attempt (the 5th and 10th succeeded).
        assert_eq!(locked_at, Some(11));
        assert!(f.locked(T0 + 2 * S).is_some());
    }

    #[test]
    fn attempts_under_way_count_before_their_outcome() {
        let p = lockout(3, 60, 60);
        let (mut f, mut other) = (Failures::default(), Failures::default());
        // 100 concurrent attempts: only as many as the threshold proceed.
        let tickets: Vec<Ticket> = (0..100).filter_map(|_| f.begin(&p, T0).ok()).collect();
        assert_eq!(tickets.len(), 3);
        assert_eq!(f.begin(&p, T0), Err(Refused::Busy));
        assert!(other.begin(&p, T0).is_ok(), "addresses are independent");
        // Two succeed (the right key after all), one fails: room for two more.
        assert!(!f.end(&p, tickets[0], T0, Valid));
        assert!(!f.end(&p, tickets[1], T0, Valid));
        assert!(!f.end(&p, tickets[2], T0, Invalid));
        let a = f.begin(&p, T0).unwrap();
        let b = f.begin(&p, T0).unwrap();
        assert_eq!(f.begin(&p, T0), Err(Refused::Busy));
        assert!(!f.end(&p, a, T0, Invalid));
        assert!(f.end(&p, b, T0, Invalid), "the third failure locks");
        assert!(matches!(f.begin(&p, T0), Err(Refused::Locked(_))));
    }

    #[test]
    fn verifications_never_checked_are_not_failures() {
        // Every hash thread stayed busy: the client retries, and its
        // retries must not lock it out.
        let p = lockout(3, 60, 60);
        let mut f = Failures::default();
        for i in 0..10 {
            let t = f.begin(&p, T0 + i).expect("nothing counted against it");
            assert!(!f.end(&p, t, T0 + i, Unchecked));
        }
        assert!(f.times.is_empty() && f.pending.is_empty());
        let t = f.begin(&p, T0 + 10).unwrap();
        assert!(!f.end(&p, t, T0 + 10, Valid));
    }

    #[test]
    fn attempts_never_ended_stop_counting_after_a_while() {
        // A runner began three verifications and crashed.
        let p = lockout(3, 600, 60);
        let mut f = Failures::default();
        for _ in 0..3 {
            f.begin(&p, T0).unwrap();
        }
        assert_eq!(f.begin(&p, T0 + PENDING_TTL_MS - 1), Err(Refused::Busy));
        assert_eq!(f.expires_at(&p), T0 + PENDING_TTL_MS);
        let t = f
            .begin(&p, T0 + PENDING_TTL_MS)
            .expect("expired: room again");
        assert_eq!(f.pending.len(), 1, "only the new one is under way");
        // A ticket that expired before its end: its failure still counts,
        // and it removes nothing of the others.
        let late = T0 + PENDING_TTL_MS;
        let mut g = Failures::default();
        let old = g.begin(&p, T0).unwrap();
        let young = g.begin(&p, late).unwrap();
        assert!(!g.end(&p, old, late + 1, Invalid));
        assert_eq!((g.times.len(), g.pending.clone()), (1, vec![young.0]));
        assert!(!f.end(&p, t, late, Valid));
        assert!(f.pending.is_empty());
    }

    #[test]
    fn state_expires_with_its_last_reason_to_count() {
        let p = lockout(2, 10, 100);
        let mut f = Failures::default();
        assert_eq!(f.expires_at(&p), i64::MIN);
        f.fail(&p, T0);
        assert_eq!(f.expires_at(&p), T0 + 10 * S);
        f.begin(&p, T0 + S).unwrap();
        assert_eq!(f.expires_at(&p), T0 + S + PENDING_TTL_MS);
        f.fail(&p, T0 + 2 * S);
        assert_eq!(f.locked_until, Some(T0 + 102 * S));
        assert_eq!(f.expires_at(&p), T0 + S + PENDING_TTL_MS.max(101 * S));
        assert_eq!(Failures::from_row(f.to_row()), f);
    }
}
