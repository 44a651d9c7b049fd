//! Removes used containers in the background, so a job's result is not
//! held up by the engine's removal. [`Reaper::flush`] waits for the backlog
//! (the CLI before it exits, the service when it stops).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc};
use tracing::warn;

use super::SandboxStats;
use crate::engine::ContainerEngine;

/// Removals in flight at once: enough to keep up, few enough not to crowd
/// the engine while it starts new sandboxes.
const PARALLEL_REMOVALS: usize = 2;

#[derive(Debug)]
pub struct Reaper {
    tx: mpsc::UnboundedSender<String>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Reaper {
    /// Starts the removal task (needs a Tokio runtime).
    pub fn start(engine: Arc<dyn ContainerEngine>, stats: Arc<SandboxStats>) -> Reaper {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let (p, i, f) = (Arc::clone(&pending), Arc::clone(&idle), stats);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(PARALLEL_REMOVALS));
            while let Some(id) = rx.recv().await {
                let permit = Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let (engine, p, i, f) = (
                    Arc::clone(&engine),
                    Arc::clone(&p),
                    Arc::clone(&i),
                    Arc::clone(&f),
                );
                tokio::spawn(async move {
                    if let Err(e) = engine.remove(&id).await {
                        f.remove_failures.fetch_add(1, Ordering::Relaxed);
                        warn!(container = %id, error = %e, "removing a used sandbox container failed; `runner gc` will collect it");
                    }
                    drop(permit);
                    if p.fetch_sub(1, Ordering::SeqCst) == 1 {
                        i.notify_waiters();
                    }
                });
            }
        });
        Reaper { tx, pending, idle }
    }

    /// Queues a container for removal.
    pub fn remove(&self, id: String) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(id).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits until every queued removal is done.
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
