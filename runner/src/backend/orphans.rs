//! What crashed runners leave behind, and deciding what to remove: every
//! sandbox (a container, a job namespace) records the runner process that
//! made it and a deadline; a leftover is removed once its deadline passed or
//! its runner is gone. Shared by the backends, each reading the record from
//! its own labels or annotations.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::{JobBackend, OrphanScope};

/// The process that created a container: host, boot, pid and the pid's start
/// time, so a recycled pid is not mistaken for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    pub start_ticks: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    pub fn to_label(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.host, self.boot_id, self.pid, self.start_ticks
        )
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(4, '/');
        let start_ticks = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let boot_id = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        Some(Owner {
            host,
            boot_id,
            pid,
            start_ticks,
        })
    }

    /// Whether the owner is a process of this machine (same host and boot).
    pub fn is_local(&self) -> bool {
        let me = Owner::current();
        self.host == me.host && self.boot_id == me.boot_id
    }

    /// Whether the owner still runs. Only meaningful for local owners.
    pub fn is_alive(&self) -> bool {
        self.is_local() && start_ticks(self.pid) == Some(self.start_ticks)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown".into())
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a leftover records about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The owner's label text ([`Owner::to_label`]), if recorded.
    pub owner: Option<String>,
    /// Unix seconds after which it is surely abandoned, if recorded.
    pub expires: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Remove(&'static str),
    Keep(&'static str),
}

/// Decides from a leftover's record alone.
pub fn decide(
    record: &Record,
    now: u64,
    scope: OrphanScope,
    alive: impl Fn(&Owner) -> bool,
    local: impl Fn(&Owner) -> bool,
) -> Decision {
    if scope == OrphanScope::All {
        return Decision::Remove("--all");
    }
    if record.expires.is_some_and(|e| now > e) {
        return Decision::Remove("past its deadline");
    }
    let Some(owner) = record.owner.as_deref().and_then(Owner::parse) else {
        return Decision::Remove("no owner recorded");
    };
    if !local(&owner) {
        return Decision::Keep("owned by a runner on another host or boot");
    }
    if alive(&owner) {
        Decision::Keep("its runner is still running")
    } else {
        Decision::Remove("its runner is gone")
    }
}

/// How often `runner serve` collects leftovers by itself: sandboxes of
/// runners that died, and sandboxes past their deadline (its own, if a
/// removal failed).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Collects orphans every `every`, for as long as the process runs (a
/// long-running server must not wait for a manual `runner gc`). The first
/// sweep is one interval from now.
pub fn start_sweeper(backend: Arc<dyn JobBackend>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match backend.collect_orphans(OrphanScope::Orphans, false).await {
                Ok(r) => {
                    if !r.removed.is_empty() {
                        info!(
                            removed = r.removed.len(),
                            backend = backend.name(),
                            "collected orphaned sandboxes"
                        );
                    }
                    for (name, e) in r.failed {
                        warn!(sandbox = %name, error = %e, "could not remove an orphaned sandbox");
                    }
                }
                Err(e) => warn!(error = %e, "could not look for orphaned sandboxes"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &Owner, expires: u64) -> Record {
        Record {
            owner: Some(owner.to_label()),
            expires: Some(expires),
        }
    }

    #[test]
    fn owner_round_trips_through_its_label() {
        let me = Owner::current();
        assert!(me.start_ticks > 0);
        let parsed = Owner::parse(&me.to_label()).unwrap();
        assert_eq!(parsed, me);
        assert!(parsed.is_alive());
    }

    #[test]
    fn hosts_with_slashes_parse() {
        let o = Owner::parse("a/b/boot/12/34").unwrap();
        assert_eq!(o.host, "a/b");
        assert_eq!(o.pid, 12);
        assert!(Owner::parse("nonsense").is_none());
    }

    #[test]
    fn a_recycled_pid_is_not_the_owner() {
        let mut me = Owner::current();
        me.start_ticks += 1;
        assert!(!me.is_alive());
        let mut elsewhere = Owner::current();
        elsewhere.boot_id = "other-boot".into();
        assert!(!elsewhere.is_local());
    }

    #[test]
    fn live_owners_keep_their_sandboxes() {
        let me = Owner::current();
        let d = decide(
            &record(&me, 100),
            50,
            OrphanScope::Orphans,
            |_| true,
            |_| true,
        );
        assert_eq!(d, Decision::Keep("its runner is still running"));
    }

    #[test]
    fn dead_owners_and_deadlines_release_sandboxes() {
        let me = Owner::current();
        let dead = decide(
            &record(&me, 100),
            50,
            OrphanScope::Orphans,
            |_| false,
            |_| true,
        );
        assert_eq!(dead, Decision::Remove("its runner is gone"));
        let late = decide(
            &record(&me, 100),
            101,
            OrphanScope::Orphans,
            |_| true,
            |_| true,
        );
        assert_eq!(late, Decision::Remove("past its deadline"));
        let unowned = decide(
            &Record::default(),
            0,
            OrphanScope::Orphans,
            |_| true,
            |_| true,
        );
        assert_eq!(unowned, Decision::Remove("no owner recorded"));
    }

    #[test]
    fn other_hosts_sandboxes_are_kept_until_their_deadline() {
        let me = Owner::current();
        let d = decide(
            &record(&me, 100),
            50,
            OrphanScope::Orphans,
            |_| false,
            |_| false,
        );
        assert!(matches!(d, Decision::Keep(_)));
        let d = decide(&record(&me, 100), 50, OrphanScope::All, |_| true, |_| true);
        assert_eq!(d, Decision::Remove("--all"));
    }
}
