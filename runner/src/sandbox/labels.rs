//! Labels on every sandbox container: which job it serves, which process owns
//! it, and when it is surely abandoned. `runner gc` decides from them alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MANAGED: &str = "io.runner.managed";
pub const JOB: &str = "io.runner.job";
pub const STAGE: &str = "io.runner.stage";
pub const LANGUAGE: &str = "io.runner.language";
pub const OWNER: &str = "io.runner.owner";
pub const EXPIRES: &str = "io.runner.expires";
/// The sandbox (one per runner process, or per test) that made a container.
pub const INSTANCE: &str = "io.runner.instance";
/// `language/stage` of the warm pool a container was made for.
pub const POOL: &str = "io.runner.pool";
/// The uid (and gid) the container runs as, leased for it alone.
pub const UID: &str = "io.runner.uid";

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

/// Labels for a stage container that must be gone within `lifetime`.
pub fn for_stage(
    owner: &Owner,
    instance: &str,
    job: &str,
    stage: &str,
    language: &str,
    lifetime: Duration,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (JOB.to_owned(), job.to_owned()),
        (STAGE.to_owned(), stage.to_owned()),
        (LANGUAGE.to_owned(), language.to_owned()),
        (OWNER.to_owned(), owner.to_label()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (
            EXPIRES.to_owned(),
            (unix_now() + lifetime.as_secs()).to_string(),
        ),
    ])
}

/// Labels for a warm pool container: no job yet (it gets one when taken),
/// but an owner and a deadline like every sandbox container.
pub fn for_pool(
    owner: &Owner,
    instance: &str,
    pool: &str,
    language: &str,
    lifetime: Duration,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (POOL.to_owned(), pool.to_owned()),
        (LANGUAGE.to_owned(), language.to_owned()),
        (OWNER.to_owned(), owner.to_label()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (
            EXPIRES.to_owned(),
            (unix_now() + lifetime.as_secs()).to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
