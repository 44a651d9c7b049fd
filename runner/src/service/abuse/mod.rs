//! Abuse control: sliding-window rate limits (per address, per key) and
//! lockout after repeated failed authentications.
//!
//! Where the state lives is chosen once, from the store: a runner on SQLite
//! is alone, and keeps it in memory (no database write per request; a
//! restart is not an attacker's friend for long, windows are minutes).
//! Runners sharing a PostgreSQL database share it there, or an attacker
//! would get as many attempts as there are runners behind the balancer:
//! each check is one short transaction on the subject's row.

mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use state::{Failures, Limit, LockoutPolicy, Outcome, PENDING_TTL_MS, Refused, Ticket, Window};

use super::config::ServiceConfig;
use super::store::abuse::AbuseTx;
use super::store::{Store, StoreError, now_ms};

/// Most subjects tracked in memory per kind before old ones are pruned
/// (bounds memory under a flood of distinct addresses).
const MAX_TRACKED: usize = 100_000;

/// What a row counts (the `scope` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Requests per client address.
    Ip,
    /// Requests per API key (or web session's key).
    Key,
    /// Failed authentications per client address.
    Auth,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Key => "key",
            Scope::Auth => "auth",
        }
    }
}

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    pub per_ip: Limit,
    pub per_key: Limit,
    pub lockout: LockoutPolicy,
}

impl Policies {
    pub fn from_config(c: &ServiceConfig) -> Policies {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Policies {
            per_ip: Limit {
                limit: c.rate_per_ip,
                window_ms: ms(c.rate_window),
            },
            per_key: Limit {
                limit: c.rate_per_key,
                window_ms: ms(c.rate_window),
            },
            lockout: LockoutPolicy {
                failures: c.lockout_failures,
                window_ms: ms(c.lockout_window),
                duration_ms: ms(c.lockout_duration),
            },
        }
    }

    fn window(&self, scope: Scope) -> &Limit {
        if scope == Scope::Ip {
            &self.per_ip
        } else {
            &self.per_key
        }
    }
}

/// Subjects' states in memory, old ones pruned past [`MAX_TRACKED`].
#[derive(Debug, Default)]
struct Tracked<S>(HashMap<String, S>);

impl<S: Default> Tracked<S> {
    fn entry(&mut self, key: &str, alive: impl Fn(&S) -> bool) -> &mut S {
        if self.0.len() >= MAX_TRACKED && !self.0.contains_key(key) {
            self.0.retain(|_, s| alive(s));
        }
        self.0.entry(key.to_owned()).or_default()
    }
}

#[derive(Debug, Default)]
struct Memory {
    ip: Mutex<Tracked<Window>>,
    key: Mutex<Tracked<Window>>,
    auth: Mutex<Tracked<Failures>>,
}

/// Where states are kept and changed: [`Memory`], or a transaction on the
/// shared database. The checks below are written once, against this.
trait Rows {
    fn window<R>(
        &self,
        scope: Scope,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Result<R, StoreError>;

    fn failures<R>(
        &self,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Failures) -> R,
    ) -> Result<R, StoreError>;

    /// Time left when `subject` is locked out (lifting a lock that ran out).
    fn locked(&self, subject: &str, p: &Policies, now: i64)
    -> Result<Option<Duration>, StoreError>;
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Task("a rate limit check panicked earlier".into())
}

impl Rows for Memory {
    fn window<R>(
        &self,
        scope: Scope,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Result<R, StoreError> {
        let map = if scope == Scope::Ip {
            &self.ip
        } else {
            &self.key
        };
        let l = p.window(scope);
        let mut map = map.lock().map_err(poisoned)?;
        Ok(f(map.entry(subject, |w| w.expires_at(l) > now)))
    }

    fn failures<R>(
        &self,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Failures) -> R,
    ) -> Result<R, StoreError> {
        let mut map = self.auth.lock().map_err(poisoned)?;
        Ok(f(map.entry(subject, |s| s.expires_at(&p.lockout) > now)))
    }

    fn locked(
        &self,
        subject: &str,
        _: &Policies,
        now: i64,
    ) -> Result<Option<Duration>, StoreError> {
        let mut map = self.auth.lock().map_err(poisoned)?;
        Ok(map.0.get_mut(subject).and_then(|f| f.locked(now)))
    }
}

impl Rows for AbuseTx<'_, '_> {
    fn window<R>(
        &self,
        scope: Scope,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Result<R, StoreError> {
        let before = self.lock(scope.as_str(), subject, now)?;
        let mut w = Window::from_row(before.clone());
        let r = f(&mut w);
        let expires = w.expires_at(p.window(scope));
        self.put(scope.as_str(), subject, &before, &w.to_row(), expires)?;
        Ok(r)
    }

    fn failures<R>(
        &self,
        subject: &str,
        p: &Policies,
        now: i64,
        f: impl FnOnce(&mut Failures) -> R,
    ) -> Result<R, StoreError> {
        let before = self.lock(Scope::Auth.as_str(), subject, now)?;
        let mut s = Failures::from_row(before.clone());
        let r = f(&mut s);
        let expires = s.expires_at(&p.lockout);
        self.put(Scope::Auth.as_str(), subject, &before, &s.to_row(), expires)?;
        Ok(r)
    }

    fn locked(
        &self,
        subject: &str,
        p: &Policies,
        now: i64,
    ) -> Result<Option<Duration>, StoreError> {
        // Asked on every request: read without a row lock (or a write),
        // unless a lock ran out and must be lifted.
        let scope = Scope::Auth.as_str();
        let Some(seen) = self.get(scope, subject, false)? else {
            return Ok(None);
        };
        let mut seen = Failures::from_row(seen);
        if !seen.lock_ran_out(now) {
            return Ok(seen.locked(now));
        }
        let Some(before) = self.get(scope, subject, true)? else {
            return Ok(None);
        };
        let mut s = Failures::from_row(before.clone());
        let left = s.locked(now);
        self.put(
            scope,
            subject,
            &before,
            &s.to_row(),
            s.expires_at(&p.lockout),
        )?;
        Ok(left)
    }
}

/// The checks, written once over [`Rows`]; object safe, so one closure can
/// run them on either kind of rows.
trait Checks {
    fn admit(&self, p: &Policies, ip: &str, now: i64) -> Result<Result<(), Refused>, StoreError>;
    fn hit(
        &self,
        p: &Policies,
        scope: Scope,
        subject: &str,
        now: i64,
    ) -> Result<Result<(), Refused>, StoreError>;
    fn begin(
        &self,
        p: &Policies,
        ip: &str,
        now: i64,
    ) -> Result<Result<Ticket, Refused>, StoreError>;
    fn end(
        &self,
        p: &Policies,
        ip: &str,
        ticket: Ticket,
        now: i64,
        outcome: Outcome,
    ) -> Result<bool, StoreError>;
    fn fail(&self, p: &Policies, ip: &str, now: i64) -> Result<bool, StoreError>;
}

impl<T: Rows> Checks for T {
    fn admit(&self, p: &Policies, ip: &str, now: i64) -> Result<Result<(), Refused>, StoreError> {
        if let Some(left) = self.locked(ip, p, now)? {
            return Ok(Err(Refused::Locked(left)));
        }
        self.hit(p, Scope::Ip, ip, now)
    }

    fn hit(
        &self,
        p: &Policies,
        scope: Scope,
        subject: &str,
        now: i64,
    ) -> Result<Result<(), Refused>, StoreError> {
        let l = *p.window(scope);
        self.window(scope, subject, p, now, |w| {
            w.hit(&l, now).map_err(Refused::Limited)
        })
    }

    fn begin(
        &self,
        p: &Policies,
        ip: &str,
        now: i64,
    ) -> Result<Result<Ticket, Refused>, StoreError> {
        self.failures(ip, p, now, |f| f.begin(&p.lockout, now))
    }

    fn end(
        &self,
        p: &Policies,
        ip: &str,
        ticket: Ticket,
        now: i64,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        self.failures(ip, p, now, |f| f.end(&p.lockout, ticket, now, outcome))
    }

    fn fail(&self, p: &Policies, ip: &str, now: i64) -> Result<bool, StoreError> {
        self.failures(ip, p, now, |f| f.fail(&p.lockout, now))
    }
}

/// A clock in wall-clock milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Debug)]
enum Place {
    Memory(Memory),
    Database(Store),
}

/// The rate limits and the lockout of a runner (or of all the runners on
/// one PostgreSQL database).
pub struct Abuse {
    policies: Policies,
    place: Place,
    clock: Clock,
}

impl std::fmt::Debug for Abuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abuse")
            .field("policies", &self.policies)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl Abuse {
    /// In the database when runners share it, in memory otherwise.
    pub fn for_store(policies: Policies, store: &Store) -> Abuse {
        if store.is_shared() {
            Self::in_database(policies, store.clone())
        } else {
            Self::in_memory(policies)
        }
    }

    pub fn in_memory(policies: Policies) -> Abuse {
        Abuse {
            policies,
            place: Place::Memory(Memory::default()),
            clock: Arc::new(now_ms),
        }
    }

    /// State in `store`'s database (on SQLite too, though a runner there
    /// never needs it: tests).
    pub fn in_database(policies: Policies, store: Store) -> Abuse {
        Abuse {
            policies,
            place: Place::Database(store),
            clock: Arc::new(now_ms),
        }
    }

    /// The same, reading the time from `clock` (tests of expiry).
    pub fn with_clock(mut self, clock: Clock) -> Abuse {
        self.clock = clock;
        self
    }

    /// Whether the state is shared through the database.
    pub fn is_shared(&self) -> bool {
        matches!(self.place, Place::Database(_))
    }

    /// Runs `check` on this limiter's rows. On the database, in one
    /// transaction off the async threads.
    ///
    /// A database error refuses the request ([`Refused::Unavailable`], a
    /// 503 with a retry): failing open would hand an attacker unlimited
    /// key guesses exactly while the database struggles (and hammering it
    /// then helps nobody); the rest of the request needs the database
    /// anyway. The error itself goes to the log only.
    async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce(&dyn Checks, &Policies, i64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Refused> {
        let (p, now) = (self.policies, (self.clock)());
        let done = match &self.place {
            Place::Memory(m) => check(m, &p, now),
            Place::Database(store) => store.call(move |s| s.abuse(|tx| check(tx, &p, now))).await,
        };
        done.map_err(|e| {
            tracing::error!(error = %e, "a rate limit or lockout check could not use the database; refusing the request");
            Refused::Unavailable
        })
    }

    /// A request from `ip`: refused while it is locked out, or over its
    /// rate limit; counted otherwise.
    pub async fn admit(&self, ip: &str) -> Result<(), Refused> {
        let ip = ip.to_owned();
        self.run(move |rows, p, now| rows.admit(p, &ip, now))
            .await?
    }

    /// A request from `ip` counted against its rate limit only (sign-in
    /// pages, which take no key).
    pub async fn hit_ip(&self, ip: &str) -> Result<(), Refused> {
        let ip = ip.to_owned();
        self.run(move |rows, p, now| rows.hit(p, Scope::Ip, &ip, now))
            .await?
    }

    /// A request with the API key (or web session of the key) `key_id`.
    pub async fn hit_key(&self, key_id: &str) -> Result<(), Refused> {
        let key = key_id.to_owned();
        self.run(move |rows, p, now| rows.hit(p, Scope::Key, &key, now))
            .await?
    }

    /// Starts verifying a key presented from `ip`; counted toward its
    /// lockout at once. End it with [`Abuse::end`].
    pub async fn begin(&self, ip: &str) -> Result<Ticket, Refused> {
        let ip = ip.to_owned();
        self.run(move |rows, p, now| rows.begin(p, &ip, now))
            .await?
    }

    /// Ends a verification begun with [`Abuse::begin`]; true when its
    /// failure locks `ip` out.
    pub async fn end(&self, ip: &str, ticket: Ticket, outcome: Outcome) -> Result<bool, Refused> {
        let ip = ip.to_owned();
        self.run(move |rows, p, now| rows.end(p, &ip, ticket, now, outcome))
            .await
    }

    /// Records a failure that needed no verification (a malformed or
    /// unknown key); true when it locks `ip` out.
    pub async fn fail(&self, ip: &str) -> Result<bool, Refused> {
        let ip = ip.to_owned();
        self.run(move |rows, p, now| rows.fail(p, &ip, now)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn policies() -> Policies {
        Policies {
            per_ip: Limit {
                limit: 4,
                window_ms: 10_000,
            },
            per_key: Limit {
                limit: 2,
                window_ms: 10_000,
            },
            lockout: LockoutPolicy {
                failures: 3,
                window_ms: 300_000,
                duration_ms: 100_000,
            },
        }
    }

    /// One script of checks; what each answered.
    async fn script(a: Abuse, now: &AtomicI64) -> Vec<String> {
        let mut out = Vec::new();
        let mut log = |what: &str, r: &dyn std::fmt::Debug| out.push(format!("{what}: {r:?}"));
        for _ in 0..5 {
            log("admit", &a.admit("ip1").await);
        }
        log("key", &a.hit_key("k").await);
        log("key", &a.hit_key("k").await);
        log("key", &a.hit_key("k").await);
        log("sign-in", &a.hit_ip("ip2").await);
        let t = a.begin("ip2").await.unwrap();
        log("begin", &a.begin("ip2").await);
        log("begin", &a.begin("ip2").await);
        log("begin", &a.begin("ip2").await);
        log("end", &a.end("ip2", t, Outcome::Invalid).await);
        log("fail", &a.fail("ip2").await);
        // Two verifications never ended: they expire.
        now.fetch_add(PENDING_TTL_MS, Ordering::SeqCst);
        let t = a.begin("ip2").await;
        log("begin after expiry", &t);
        log("end", &a.end("ip2", t.unwrap(), Outcome::Invalid).await);
        log("admit locked", &a.admit("ip2").await);
        now.fetch_add(100_000, Ordering::SeqCst);
        log("admit lifted", &a.admit("ip2").await);
        log("fail afresh", &a.fail("ip2").await);
        log("admit again", &a.admit("ip1").await);
        out
    }

    fn clocked(a: Abuse, now: &Arc<AtomicI64>) -> Abuse {
        let now = Arc::clone(now);
        a.with_clock(Arc::new(move || now.load(Ordering::SeqCst)))
    }

    /// The rows in the database answer as memory does (the same checks on
    /// SQLite here; PostgreSQL's locking: `tests/store_postgres.rs`).
    #[tokio::test]
    async fn memory_and_database_answer_alike() {
        let (m, d) = (Arc::new(AtomicI64::new(T0)), Arc::new(AtomicI64::new(T0)));
        let store = Store::in_memory().unwrap();
        assert!(!Abuse::for_store(policies(), &store).is_shared());
        let in_memory = script(clocked(Abuse::in_memory(policies()), &m), &m).await;
        let db = Abuse::in_database(policies(), store.clone());
        let in_db = script(clocked(db, &d), &d).await;
        assert_eq!(in_memory, in_db);
        let expected = [
            "admit: Ok(())",
            "admit: Ok(())",
            "admit: Ok(())",
            "admit: Ok(())",
            "admit: Err(Limited(10s))",
            "key: Ok(())",
            "key: Ok(())",
            "key: Err(Limited(10s))",
            "sign-in: Ok(())",
            "begin: Ok(Ticket(1700000000000))",
            "begin: Ok(Ticket(1700000000000))",
            "begin: Err(Busy)",
            "end: Ok(false)",
            "fail: Ok(false)",
            "begin after expiry: Ok(Ticket(1700000120000))",
            "end: Ok(true)",
            "admit locked: Err(Locked(100s))",
            "admit lifted: Ok(())",
            "fail afresh: Ok(false)",
            // ip1's window slid by meanwhile.
            "admit again: Ok(())",
        ];
        assert_eq!(in_memory, expected);
        // What the database keeps: ip1's and ip2's windows, ip2's last
        // failure; k's window ran out and is swept.
        let now = d.load(Ordering::SeqCst);
        assert_eq!(store.abuse_rows().unwrap(), 4);
        assert_eq!(store.sweep_abuse(now).unwrap(), 1);
        assert_eq!(store.abuse_rows().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_database_error_refuses_as_unavailable() {
        let store = Store::in_memory().unwrap();
        store
            .abuse(|_| Ok(()))
            .expect("the table exists on SQLite too");
        store.with(|c| c.batch("DROP TABLE abuse_state")).unwrap();
        let a = Abuse::in_database(policies(), store);
        assert_eq!(a.admit("ip").await, Err(Refused::Unavailable));
        assert_eq!(a.fail("ip").await, Err(Refused::Unavailable));
    }
}
