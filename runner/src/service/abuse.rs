//! Abuse control: sliding-window rate limits and lockout after repeated
//! failed authentications. In memory: limits protect this process, and a
//! restart is not an attacker's friend for long (windows are minutes).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked before old ones are pruned (bounds memory under a flood
/// of distinct addresses).
const MAX_TRACKED: usize = 100_000;

/// At most `limit` events per `window` per key, counted over the last
/// `window` (not fixed buckets, so no double burst at a boundary).
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event; `Err(retry_after)` when over the limit (the event
    /// is then not counted).
    pub fn hit(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut hits = self.hits.lock().expect("rate limit lock");
        if hits.len() >= MAX_TRACKED && !hits.contains_key(key) {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = hits.entry(key.to_owned()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() as u32 >= self.limit {
            let oldest = *q.front().expect("a full window has entries");
            return Err(self
                .window
                .saturating_sub(now.duration_since(oldest))
                .max(Duration::from_secs(1)));
        }
        q.push_back(now);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// Locks a client out after `failures` failed authentications within
/// `window`, for `duration`; the lock lifts by itself.
#[derive(Debug)]
pub struct Lockout {
    failures: u32,
    window: Duration,
    duration: Duration,
    state: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    pub fn new(failures: u32, window: Duration, duration: Duration) -> Self {
        Lockout {
            failures,
            window,
            duration,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Time left when `who` is locked out.
    pub fn locked(&self, who: &str, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().expect("lockout lock");
        let f = state.get_mut(who)?;
        match f.locked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // Lifted: start afresh.
                state.remove(who);
                None
            }
            None => None,
        }
    }

    /// Records a failure; returns true when this failure locks `who` out.
    pub fn fail(&self, who: &str, now: Instant) -> bool {
        let mut state = self.state.lock().expect("lockout lock");
        if state.len() >= MAX_TRACKED && !state.contains_key(who) {
            let window = self.window;
            state.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || f.times
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let f = state.entry(who.to_owned()).or_default();
        while f
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.locked_until.is_none() && f.times.len() as u32 >= self.failures {
            f.locked_until = Some(now + self.duration);
            return true;
        }
        false
    }

    /// A successful authentication clears the failures of `who`.
    pub fn succeed(&self, who: &str) {
        let mut state = self.state.lock().expect("lockout lock");
        if state.get(who).is_some_and(|f| f.locked_until.is_none()) {
            state.remove(who);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let w = SlidingWindow::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..3 {
            w.hit("k", t0 + Duration::from_secs(i)).unwrap();
        }
        let retry = w.hit("k", t0 + Duration::from_secs(3)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(7));
        assert!(w.hit("other", t0).is_ok(), "keys are independent");
        // The first hit leaves the window after 10 s.
        assert!(w.hit("k", t0 + Duration::from_secs(10)).is_ok());
        assert!(w.hit("k", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn lockout_follows_failures_and_lifts_by_itself() {
        let l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(100));
        let t0 = Instant::now();
        assert!(!l.fail("ip", t0));
        assert!(!l.fail("ip", t0 + Duration::from_secs(1)));
        assert!(l.locked("ip", t0).is_none());
        assert!(l.fail("ip", t0 + Duration::from_secs(2)));
        assert_eq!(
            l.locked("ip", t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(100))
        );
        assert!(
            l.locked("ip", t0 + Duration::from_secs(102)).is_none(),
            "lifted"
        );
        assert!(
            !l.fail("ip", t0 + Duration::from_secs(103)),
            "counting starts afresh"
        );
    }

    #[test]
    fn old_failures_fall_out_of_the_window_and_success_clears() {
        let l = Lockout::new(2, Duration::from_secs(10), Duration::from_secs(100));
        let t0 = Instant::now();
        l.fail("ip", t0);
        assert!(!l.fail("ip", t0 + Duration::from_secs(11)));
        l.succeed("ip");
        assert!(!l.fail("ip", t0 + Duration::from_secs(12)));
    }
}
