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
    /// Verifications under way: they count toward the threshold before
    /// their outcome is known, so concurrent attempts cannot overshoot it.
    pending: u32,
    locked_until: Option<Instant>,
}

/// Why an attempt may not proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Locked out, for this long yet.
    Locked(Duration),
    /// As many attempts are under way as failures would lock it out.
    Busy,
}

/// Locks a client out after `failures` failed authentications within
/// `window`, for `duration`; the lock lifts by itself. A success does not
/// clear failures: they leave the window only with time.
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
                f.locked_until = None;
                f.times.clear();
                None
            }
            None => None,
        }
    }

    /// The entry of `who`, its old failures pruned (bounding memory under a
    /// flood of distinct addresses first).
    fn entry<'a>(
        &self,
        state: &'a mut HashMap<String, Failures>,
        who: &str,
        now: Instant,
    ) -> &'a mut Failures {
        if state.len() >= MAX_TRACKED && !state.contains_key(who) {
            let window = self.window;
            state.retain(|_, f| {
                f.pending > 0
                    || f.locked_until.is_some_and(|u| u > now)
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
        f
    }

    /// Starts a verification for `who`; counted at once. End it with
    /// [`Lockout::end`].
    pub fn begin(&self, who: &str, now: Instant) -> Result<(), Refused> {
        let mut state = self.state.lock().expect("lockout lock");
        let f = self.entry(&mut state, who, now);
        if let Some(until) = f.locked_until.filter(|u| *u > now) {
            return Err(Refused::Locked(until - now));
        }
        if f.times.len() as u32 + f.pending >= self.failures {
            return Err(Refused::Busy);
        }
        f.pending += 1;
        Ok(())
    }

    /// Ends a verification begun with [`Lockout::begin`]; returns true when
    /// its failure locks `who` out.
    pub fn end(&self, who: &str, now: Instant, succeeded: bool) -> bool {
        let mut state = self.state.lock().expect("lockout lock");
        let f = self.entry(&mut state, who, now);
        f.pending = f.pending.saturating_sub(1);
        if succeeded {
            return false;
        }
        self.record(f, now)
    }

    /// Records a failure that needed no verification (a malformed or
    /// unknown key); returns true when it locks `who` out.
    pub fn fail(&self, who: &str, now: Instant) -> bool {
        let mut state = self.state.lock().expect("lockout lock");
        let f = self.entry(&mut state, who, now);
        self.record(f, now)
    }

    fn record(&self, f: &mut Failures, now: Instant) -> bool {
        f.times.push_back(now);
        if f.locked_until.is_none_or(|u| u <= now) && f.times.len() as u32 >= self.failures {
            f.locked_until = Some(now + self.duration);
            return true;
        }
        false
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
    fn old_failures_fall_out_of_the_window() {
        let l = Lockout::new(2, Duration::from_secs(10), Duration::from_secs(100));
        let t0 = Instant::now();
        l.fail("ip", t0);
        assert!(!l.fail("ip", t0 + Duration::from_secs(11)));
        assert!(l.fail("ip", t0 + Duration::from_secs(12)));
    }

    #[test]
    fn successes_in_between_do_not_reset_the_count() {
        // Finding: 4 bad keys, 1 good, repeated, never locked.
        let l = Lockout::new(10, Duration::from_secs(300), Duration::from_secs(900));
        let t0 = Instant::now();
        let mut locked_at = None;
        for i in 0..15u64 {
            let now = t0 + Duration::from_millis(i * 100);
            if l.begin("ip", now).is_err() {
                locked_at = Some(i);
                break;
            }
            let good = i % 5 == 4;
            if l.end("ip", now, good) {
                locked_at = Some(i);
                break;
            }
        }
        // The 10th failure is the 12th attempt (the 5th and 10th succeeded).
        assert_eq!(locked_at, Some(11));
        assert!(l.locked("ip", t0 + Duration::from_secs(2)).is_some());
    }

    #[test]
    fn attempts_under_way_count_before_their_outcome() {
        let l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(60));
        let t0 = Instant::now();
        // 100 concurrent attempts: only as many as the threshold proceed.
        let admitted = (0..100).filter(|_| l.begin("ip", t0).is_ok()).count();
        assert_eq!(admitted, 3);
        assert_eq!(l.begin("ip", t0), Err(Refused::Busy));
        assert!(l.begin("other", t0).is_ok(), "addresses are independent");
        // Two succeed (the right key after all), one fails: room for two more.
        assert!(!l.end("ip", t0, true));
        assert!(!l.end("ip", t0, true));
        assert!(!l.end("ip", t0, false));
        assert!(l.begin("ip", t0).is_ok());
        assert!(l.begin("ip", t0).is_ok());
        assert_eq!(l.begin("ip", t0), Err(Refused::Busy));
        assert!(!l.end("ip", t0, false));
        assert!(l.end("ip", t0, false), "the third failure locks");
        assert!(matches!(l.begin("ip", t0), Err(Refused::Locked(_))));
    }
}
