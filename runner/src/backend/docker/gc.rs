//! Removing sandbox containers nobody will remove: their runner crashed or
//! was killed, or they outlived their deadline ([`orphans::decide`] reads
//! the owner and deadline labels).

use tracing::info;

use super::engine::{ContainerEngine, EngineError};
use super::labels;
use crate::backend::orphans::{self, Decision, Owner, Record, unix_now};
use crate::backend::{BackendError, CollectReport, OrphanScope};

/// Removes what [`orphans::decide`] says to remove (or only lists it, in
/// `dry_run`).
pub async fn collect(
    engine: &dyn ContainerEngine,
    scope: OrphanScope,
    dry_run: bool,
) -> Result<CollectReport, EngineError> {
    let containers = engine.list(labels::MANAGED, "true").await?;
    let now = unix_now();
    let mut report = CollectReport::default();
    for c in containers {
        let record = Record {
            owner: c.labels.get(labels::OWNER).cloned(),
            expires: c.labels.get(labels::EXPIRES).and_then(|v| v.parse().ok()),
        };
        match orphans::decide(&record, now, scope, Owner::is_alive, Owner::is_local) {
            Decision::Keep(_) => report.kept += 1,
            Decision::Remove(why) => {
                info!(container = %c.id, reason = why, dry_run, "collecting");
                if dry_run {
                    report.removed.push(c.id);
                    continue;
                }
                match engine.remove(&c.id).await {
                    Ok(()) => report.removed.push(c.id),
                    Err(e) => report.failed.push((c.id, BackendError::from(e))),
                }
            }
        }
    }
    Ok(report)
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
