//! Removing sandbox containers nobody will remove: their runner crashed or
//! was killed, or they outlived their deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::engine::{ContainerEngine, EngineError};
use crate::sandbox::labels::{self, Owner};

/// Which containers to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Containers whose owner is gone, or that are past their deadline.
    Orphans,
    /// Every sandbox container, including those of running jobs.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Remove(&'static str),
    Keep(&'static str),
}

/// Decides from a container's labels alone.
pub fn decide(
    labels: &BTreeMap<String, String>,
    now: u64,
    scope: Scope,
    alive: impl Fn(&Owner) -> bool,
    local: impl Fn(&Owner) -> bool,
) -> Decision {
    if scope == Scope::All {
        return Decision::Remove("--all");
    }
    let expires = labels
        .get(labels::EXPIRES)
        .and_then(|v| v.parse::<u64>().ok());
    if expires.is_some_and(|e| now > e) {
        return Decision::Remove("past its deadline");
    }
    let Some(owner) = labels.get(labels::OWNER).and_then(|o| Owner::parse(o)) else {
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

#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    pub kept: usize,
    pub failed: Vec<(String, EngineError)>,
}

/// Removes what [`decide`] says to remove (or only lists it, in `dry_run`).
pub async fn collect(
    engine: &dyn ContainerEngine,
    scope: Scope,
    dry_run: bool,
) -> Result<Report, EngineError> {
    let containers = engine.list(labels::MANAGED, "true").await?;
    let now = labels::unix_now();
    let mut report = Report::default();
    for c in containers {
        match decide(&c.labels, now, scope, Owner::is_alive, Owner::is_local) {
            Decision::Keep(_) => report.kept += 1,
            Decision::Remove(why) => {
                info!(container = %c.id, reason = why, dry_run, "collecting");
                if dry_run {
                    report.removed.push(c.id);
                    continue;
                }
                match engine.remove(&c.id).await {
                    Ok(()) => report.removed.push(c.id),
                    Err(e) => report.failed.push((c.id, e)),
                }
            }
        }
    }
    Ok(report)
}

/// How often `runner serve` collects orphans by itself: containers of
/// runners that died, and containers past their deadline (its own, if a
/// removal failed).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Collects orphans every `every`, for as long as the process runs (a
/// long-running server must not wait for a manual `runner gc`). The first
/// sweep is one interval from now.
pub fn start_sweeper(
    engine: Arc<dyn ContainerEngine>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match collect(engine.as_ref(), Scope::Orphans, false).await {
                Ok(r) => {
                    if !r.removed.is_empty() {
                        info!(
                            removed = r.removed.len(),
                            "collected orphaned sandbox containers"
                        );
                    }
                    for (id, e) in r.failed {
                        warn!(container = %id, error = %e, "could not remove an orphaned sandbox container");
                    }
                }
                Err(e) => warn!(error = %e, "could not look for orphaned sandbox containers"),
            }
        }
    })
}

/// Removes every container of one job (after Ctrl-C, or a cancelled run).
pub async fn remove_job(engine: &dyn ContainerEngine, job: &str) -> Result<usize, EngineError> {
    let mut removed = 0;
    for c in engine.list(labels::JOB, job).await? {
        engine.remove(&c.id).await?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(owner: &Owner, expires: u64) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::OWNER.to_owned(), owner.to_label()),
            (labels::EXPIRES.to_owned(), expires.to_string()),
        ])
    }

    #[test]
    fn live_owners_keep_their_containers() {
        let me = Owner::current();
        let d = decide(&labels_of(&me, 100), 50, Scope::Orphans, |_| true, |_| true);
        assert_eq!(d, Decision::Keep("its runner is still running"));
    }

    #[test]
    fn dead_owners_and_deadlines_release_containers() {
        let me = Owner::current();
        let dead = decide(
            &labels_of(&me, 100),
            50,
            Scope::Orphans,
            |_| false,
            |_| true,
        );
        assert_eq!(dead, Decision::Remove("its runner is gone"));
        let late = decide(
            &labels_of(&me, 100),
            101,
            Scope::Orphans,
            |_| true,
            |_| true,
        );
        assert_eq!(late, Decision::Remove("past its deadline"));
        let unowned = decide(&BTreeMap::new(), 0, Scope::Orphans, |_| true, |_| true);
        assert_eq!(unowned, Decision::Remove("no owner recorded"));
    }

    #[test]
    fn other_hosts_containers_are_kept_until_their_deadline() {
        let me = Owner::current();
        let d = decide(
            &labels_of(&me, 100),
            50,
            Scope::Orphans,
            |_| false,
            |_| false,
        );
        assert!(matches!(d, Decision::Keep(_)));
        let d = decide(&labels_of(&me, 100), 50, Scope::All, |_| true, |_| true);
        assert_eq!(d, Decision::Remove("--all"));
    }
}
