//! Several runners on one PostgreSQL database. Each renews a lease while it
//! lives; each finishes the runs of runners whose lease ran out (as
//! `internal_error`, not re-run, as after a crash of a single runner) and
//! removes their sandboxes on the engine they share; each listens to the
//! others (`LISTEN`): a cancellation reaches the runner executing the run,
//! the end of a run reaches the runner a client waits or follows on, and
//! its live output the runners whose clients follow it (see `relay`).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Service;
use super::store::LEASE;

/// Starts the lease, the reaper and the listener; renews the lease once
/// first, so nothing this runner claims looks abandoned.
pub fn start(service: &Service) -> Vec<JoinHandle<()>> {
    let store = service.store.clone();
    if let Err(e) = store.renew_lease() {
        warn!(error = %e, "could not take a lease on the database; retrying");
    }
    let Some(pool) = store.pg_pool() else {
        return Vec::new();
    };
    let mut events = pool.listen();
    let lease = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE / 3);
            loop {
                tick.tick().await;
                if let Err(e) = store.call(|s| s.renew_lease()).await {
                    warn!(error = %e, "could not renew this runner's lease");
                }
            }
        })
    };
    let reaper = {
        let scheduler = Arc::clone(&service.scheduler);
        let workflows = service.state.workflows.get().cloned();
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE / 2);
            loop {
                tick.tick().await;
                match scheduler.reap().await {
                    Ok(n) if n > 0 => warn!(
                        runs = n,
                        "finished runs of a runner that stopped (its lease ran out) as internal_error"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "could not look for runs of stopped runners"),
                }
                if let Some(wf) = &workflows
                    && let Err(e) = wf.recover().await
                {
                    warn!(error = %e, "could not look for workflow runs of stopped runners");
                }
                // A cancellation whose notification this runner missed.
                match store.call(|s| s.queue().cancels_pending()).await {
                    Ok(ids) => ids.iter().for_each(|id| {
                        scheduler.cancel(id);
                    }),
                    Err(e) => warn!(error = %e, "could not read cancellations"),
                }
            }
        })
    };
    let listener = {
        let scheduler = Arc::clone(&service.scheduler);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event.split_once(':') {
                    Some(("cancel", id)) if scheduler.cancel(id) => {
                        info!(run.id = %id, "cancelled through another runner");
                    }
                    Some(("done", id)) => scheduler.relay_done(id).await,
                    Some(("started", id)) => scheduler.relay_started(id),
                    Some(("follow", id)) => scheduler.relay_follow(id),
                    Some(("relay", frame)) => scheduler.relay_events(frame),
                    _ if event == "resync" => scheduler.relay_all().await,
                    _ => {}
                }
            }
        })
    };
    vec![lease, reaper, listener]
}
