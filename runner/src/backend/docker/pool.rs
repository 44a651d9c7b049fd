//! The warm pool: per language and stage, containers already created and
//! started with every limit of the isolation contract, their sandbox-init
//! waiting for a job on an attached stdin.
//!
//! A job takes one, runs, and the container is destroyed: a warm container
//! serves exactly one job, so nothing a job leaves behind reaches another.
//! The pool refills in the background, each creation holding a permit of the
//! global concurrency bound (shared with the jobs themselves); when a pool is
//! empty, jobs take the cold path. Containers idle longer than the idle
//! lifetime are replaced. Pool containers carry the usual labels (owner,
//! deadline) plus `io.runner.pool`, so `runner gc` collects them like any
//! other; if the runner dies, the engine closes their stdin and sandbox-init
//! exits by itself.
//!
//! Only jobs under the policy's default limits use the pool: a container's
//! memory and pids limits are fixed when it is created. Each warm container
//! runs as a uid of its own (see [`crate::backend::uids`]), leased when it is made and
//! given back when it is removed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tracing::{debug, warn};

use super::engine::{ContainerEngine, ContainerSpec, EngineError};
use super::labels;
use super::reaper::Reaper;
use crate::backend::Attachment;
use crate::backend::orphans::Owner;
use crate::backend::uids::{UidAllocator, UidError, UidLease};

/// A started sandbox container, attached, waiting for its one job.
#[derive(Debug)]
pub struct Warm {
    pub id: String,
    pub attachment: Attachment,
    /// The uid it runs as, held until the container is removed.
    pub lease: UidLease,
    created: Instant,
}

/// Why a warm container could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Uid(#[from] UidError),
}

/// What a pool keeps ready: the container as a job under default limits
/// would get it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `language/stage`.
    pub key: String,
    pub language: String,
    pub size: usize,
    pub spec: ContainerSpec,
}

impl Target {
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// Same container in all that matters: everything but the labels and the
/// uid (each container has its own; every one is from the policy's range).
fn same_container(a: &ContainerSpec, b: &ContainerSpec) -> bool {
    a.image == b.image
        && a.memory_bytes == b.memory_bytes
        && a.nano_cpus == b.nano_cpus
        && a.pids == b.pids
        && a.tmpfs == b.tmpfs
        && a.shm_bytes == b.shm_bytes
        && a.nofile == b.nofile
        && a.seccomp == b.seccomp
        && a.egress == b.egress
}

#[derive(Debug, Default)]
pub struct PoolStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub created: AtomicU64,
    pub expired: AtomicU64,
    pub create_failures: AtomicU64,
}

#[derive(Debug)]
pub struct WarmPool {
    engine: Arc<dyn ContainerEngine>,
    reaper: Arc<Reaper>,
    uids: Arc<UidAllocator>,
    owner: Owner,
    instance: String,
    targets: Vec<Target>,
    idle_lifetime: Duration,
    slots: Mutex<HashMap<String, VecDeque<Warm>>>,
    permits: Arc<Semaphore>,
    wake: Notify,
    closed: AtomicBool,
    pub stats: PoolStats,
}

impl WarmPool {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        reaper: Arc<Reaper>,
        uids: Arc<UidAllocator>,
        instance: String,
        targets: Vec<Target>,
        idle_lifetime: Duration,
        permits: Arc<Semaphore>,
    ) -> Arc<WarmPool> {
        Arc::new(WarmPool {
            engine,
            reaper,
            uids,
            owner: Owner::current(),
            instance,
            targets,
            idle_lifetime,
            slots: Mutex::new(HashMap::new()),
            permits,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            stats: PoolStats::default(),
        })
    }

    /// A warm container for this job's container, if one is ready.
    pub fn take(&self, spec: &ContainerSpec) -> Option<Warm> {
        let target = self
            .targets
            .iter()
            .find(|t| same_container(&t.spec, spec))?;
        let taken = {
            let mut slots = self.slots.lock().expect("pool lock");
            let q = slots.entry(target.key()).or_default();
            loop {
                match q.pop_front() {
                    Some(w) if w.created.elapsed() >= self.idle_lifetime => {
                        self.stats.expired.fetch_add(1, Ordering::Relaxed);
                        self.reaper.remove(w.id, Some(w.lease));
                    }
                    other => break other,
                }
            }
        };
        match &taken {
            Some(_) => self.stats.hits.fetch_add(1, Ordering::Relaxed),
            None => self.stats.misses.fetch_add(1, Ordering::Relaxed),
        };
        self.wake.notify_one();
        taken
    }

    /// Warm containers ready now, per `language/stage`.
    pub fn ready(&self) -> BTreeMap<String, usize> {
        let slots = self.slots.lock().expect("pool lock");
        self.targets
            .iter()
            .map(|t| (t.key(), slots.get(&t.key()).map_or(0, VecDeque::len)))
            .collect()
    }

    /// Whether every pool holds its full size.
    pub fn is_full(&self) -> bool {
        let slots = self.slots.lock().expect("pool lock");
        self.targets
            .iter()
            .all(|t| slots.get(&t.key()).map_or(0, VecDeque::len) >= t.size)
    }

    /// Ids of the warm containers ready now.
    pub fn ready_ids(&self) -> Vec<String> {
        let slots = self.slots.lock().expect("pool lock");
        slots
            .values()
            .flat_map(|q| q.iter().map(|w| w.id.clone()))
            .collect()
    }

    /// Keeps the pools full until [`WarmPool::close`].
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures = 0u32;
            while !me.closed.load(Ordering::SeqCst) {
                me.expire();
                match me.refill_one().await {
                    Ok(true) => {
                        failures = 0;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        failures += 1;
                        me.stats.create_failures.fetch_add(1, Ordering::Relaxed);
                        warn!(error = %e, "preparing a warm sandbox failed");
                    }
                }
                // Back off after failures (an image missing, the engine
                // down), up to a minute; otherwise wait for a take.
                let pause = if failures > 0 {
                    Duration::from_secs(1u64 << failures.min(6))
                } else {
                    self_pause(me.idle_lifetime)
                };
                tokio::select! {
                    () = me.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// Replaces containers past their idle lifetime.
    fn expire(&self) {
        let mut slots = self.slots.lock().expect("pool lock");
        for q in slots.values_mut() {
            while q
                .front()
                .is_some_and(|w| w.created.elapsed() >= self.idle_lifetime)
            {
                let w = q.pop_front().expect("checked");
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                self.reaper.remove(w.id, Some(w.lease));
            }
        }
    }

    /// Creates one container for the emptiest pool below its size.
    /// `Ok(false)` when all pools are full.
    async fn refill_one(&self) -> Result<bool, RefillError> {
        let target = {
            let slots = self.slots.lock().expect("pool lock");
            self.targets
                .iter()
                .filter(|t| t.size > 0)
                .map(|t| (t, slots.get(&t.key()).map_or(0, VecDeque::len)))
                .filter(|(t, n)| *n < t.size)
                .min_by_key(|(t, n)| (*n * 1000) / t.size)
                .map(|(t, _)| t.clone())
        };
        let Some(target) = target else {
            return Ok(false);
        };
        // Creating holds a permit of the global bound, like a running job.
        let _permit = self.permits.acquire().await.expect("semaphore open");
        if self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut spec = target.spec.clone();
        spec.labels = labels::for_pool(
            &self.owner,
            &self.instance,
            &target.key(),
            &target.language,
            self.idle_lifetime + Duration::from_secs(300),
        );
        let lease = self.uids.lease()?;
        super::run_as(&mut spec, &lease);
        let (id, lease) = self.reaper.create(&self.engine, spec, Some(lease)).await?;
        let lease = lease.expect("the lease comes back with the container");
        let prepared = async {
            let attachment = self.engine.attach(&id).await?;
            self.engine.start(&id).await?;
            Ok::<_, EngineError>(attachment)
        }
        .await;
        let attachment = match prepared {
            Ok(a) => a,
            Err(e) => {
                self.reaper.remove(id, Some(lease));
                return Err(e.into());
            }
        };
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        debug!(container = %id, pool = %target.key(), "warm sandbox ready");
        let warm = Warm {
            id,
            attachment,
            lease,
            created: Instant::now(),
        };
        if self.closed.load(Ordering::SeqCst) {
            self.reaper.remove(warm.id, Some(warm.lease));
            return Ok(false);
        }
        self.slots
            .lock()
            .expect("pool lock")
            .entry(target.key())
            .or_default()
            .push_back(warm);
        Ok(true)
    }

    /// Stops refilling and removes every warm container.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let drained: Vec<Warm> = self
            .slots
            .lock()
            .expect("pool lock")
            .drain()
            .flat_map(|(_, q)| q)
            .collect();
        for w in drained {
            self.reaper.remove(w.id, Some(w.lease));
        }
    }
}

/// How long an idle refill loop sleeps before checking lifetimes again.
fn self_pause(idle_lifetime: Duration) -> Duration {
    (idle_lifetime / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::docker::engine::Tmpfs;

    fn spec(memory: u64) -> ContainerSpec {
        ContainerSpec {
            image: "img".into(),
            labels: BTreeMap::from([("a".into(), "1".into())]),
            user: "10001:10001".into(),
            memory_bytes: memory,
            nano_cpus: 1,
            pids: 64,
            tmpfs: vec![Tmpfs {
                path: "/work".into(),
                size_bytes: 1,
                exec: true,
                mode: 0o700,
            }],
            shm_bytes: 1,
            nofile: 1,
            seccomp: None,
            egress: None,
        }
    }

    #[test]
    fn only_identical_containers_match() {
        let mut other_labels = spec(1);
        other_labels.labels.clear();
        assert!(
            same_container(&spec(1), &other_labels),
            "labels do not matter"
        );
        let mut other_uid = spec(1);
        other_uid.user = "10002:10002".into();
        assert!(
            same_container(&spec(1), &other_uid),
            "every container has a uid of its own"
        );
        assert!(!same_container(&spec(1), &spec(2)), "limits do");
    }
}
