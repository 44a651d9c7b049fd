//! Removes used containers in the background, so a job's result is not
//! held up by the engine's removal, and creates containers in tasks of their
//! own, so no creation is lost to a cancelled job. [`Reaper::flush`] waits for
//! both (the CLI before it exits, the service when it stops).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tracing::warn;

use super::engine::{ContainerEngine, ContainerSpec, EngineError};
use crate::backend::BackendStats;
use crate::backend::uids::UidLease;

/// Removals in flight at once: enough to keep up, few enough not to crowd
/// the engine while it starts new sandboxes.
const PARALLEL_REMOVALS: usize = 2;

#[derive(Debug)]
pub struct Reaper {
    tx: mpsc::UnboundedSender<Removal>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

/// A container to remove, and what to release once it is gone: its uid is
/// free for another sandbox only then.
#[derive(Debug)]
struct Removal {
    id: String,
    _lease: Option<UidLease>,
    _pending: Pending,
}

impl Reaper {
    /// Starts the removal task (needs a Tokio runtime).
    pub fn start(engine: Arc<dyn ContainerEngine>, stats: Arc<BackendStats>) -> Reaper {
        let (tx, mut rx) = mpsc::unbounded_channel::<Removal>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(PARALLEL_REMOVALS));
            while let Some(removal) = rx.recv().await {
                let permit = Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let (engine, stats) = (Arc::clone(&engine), Arc::clone(&stats));
                tokio::spawn(async move {
                    if let Err(e) = engine.remove(&removal.id).await {
                        stats.remove_failures.fetch_add(1, Ordering::Relaxed);
                        warn!(container = %removal.id, error = %e, "removing a used sandbox container failed; `runner gc` will collect it");
                    }
                    drop(permit);
                    drop(removal);
                });
            }
        });
        Reaper {
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
        }
    }

    /// Creates a container in a task of its own and returns its id. The
    /// engine's answer is always read, even when the caller is dropped while
    /// waiting (a cancelled run, Ctrl-C): the task then removes the container
    /// itself. Dropping the request instead would leave a container the
    /// engine finishes creating after every cancel path has looked for it.
    /// [`Reaper::flush`] waits for creations under way. The uid `lease` the
    /// spec runs as travels with the container and comes back with its id.
    pub async fn create(
        self: &Arc<Self>,
        engine: &Arc<dyn ContainerEngine>,
        spec: ContainerSpec,
        lease: Option<UidLease>,
    ) -> Result<(String, Option<UidLease>), EngineError> {
        let (tx, rx) = oneshot::channel();
        let (engine, me) = (Arc::clone(engine), Arc::clone(self));
        let in_flight = self.hold();
        tokio::spawn(async move {
            let created = engine.create(&spec).await.map(|id| (id, lease));
            if let Err(Ok((id, lease))) = tx.send(created) {
                me.remove(id, lease);
            }
            drop(in_flight);
        });
        rx.await.unwrap_or_else(|_| {
            Err(EngineError::Other {
                action: "create a container",
                message: "the creating task ended without an answer".into(),
            })
        })
    }

    /// Counts as pending (for [`Reaper::flush`]) until dropped.
    fn hold(&self) -> Pending {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending {
            pending: Arc::clone(&self.pending),
            idle: Arc::clone(&self.idle),
        }
    }

    /// Queues a container for removal; its uid `lease` is given back once
    /// the container is gone.
    pub fn remove(&self, id: String, lease: Option<UidLease>) {
        let removal = Removal {
            id,
            _lease: lease,
            _pending: self.hold(),
        };
        // The removal task ends only with the runtime; the removal's
        // `Pending` is released either way.
        let _ = self.tx.send(removal);
    }

    /// Waits until every queued removal and every creation under way is done.
    pub async fn flush(&self) {
        loop {
            let idle = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Work [`Reaper::flush`] waits for, done when dropped.
#[derive(Debug)]
struct Pending {
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}
