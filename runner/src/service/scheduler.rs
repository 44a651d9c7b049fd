//! Turns queued runs into sandbox executions: fairly across tenants (round
//! robin over the tenants with queued runs, each tenant's oldest first),
//! within the global concurrency bound and each tenant's quota; publishes
//! progress; stops runs on cancellation; drains on shutdown.
//!
//! The queue lives in the store, so a run acknowledged to a client survives
//! a crash. After a crash, runs that were executing are finished as
//! `internal_error` (not re-run: a run that crashed the runner must not crash
//! it again in a loop); after an orderly shutdown whose grace ran out, they are
//! put back in the queue and run again on the next start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, broadcast, oneshot};
use tracing::{Instrument, error, info, info_span, warn};

use super::metrics::Metrics;
use super::relay::{Received, Relay};
use super::spec::JobSpec;
use super::store::{RunRecord, Store, StoreError, TenantId};
use crate::sandbox::{PreparedRun, Sandbox, SandboxEvent};
use crate::verdict::{RunResult, Status};

/// The result of a run that could not run, for `message`'s reason.
fn failed(language: String, version: String, message: String) -> RunResult {
    RunResult {
        status: Status::InternalError,
        language,
        version,
        compile: None,
        run: None,
        message: Some(message),
    }
}

/// Progress of one run, for live views.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started,
    Sandbox(SandboxEvent),
    /// The run reached its final state; the record holds the result.
    Done(Box<RunRecord>),
    /// This many events of a run executing on another runner were missed
    /// on the way here.
    Lagged(u64),
}

/// Why a running run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Its client cancelled it.
    Cancel,
    /// The service is shutting down and the grace period is over.
    Shutdown,
}

#[derive(Debug, Default)]
struct Running {
    total: usize,
    per_tenant: HashMap<TenantId, usize>,
    stops: HashMap<String, oneshot::Sender<Stop>>,
}

#[derive(Debug)]
pub struct Scheduler {
    store: Store,
    sandbox: Arc<Sandbox>,
    metrics: Arc<Metrics>,
    /// The global concurrency bound: a permit per running job (and per
    /// warm container being prepared, see the pool).
    permits: Arc<tokio::sync::Semaphore>,
    per_tenant: usize,
    running: Mutex<Running>,
    /// The tenant a run was last started for: the round robin goes on after it.
    last_served: Mutex<Option<TenantId>>,
    wake: Notify,
    idle: Notify,
    draining: AtomicBool,
    channels: Mutex<HashMap<String, broadcast::Sender<RunEvent>>>,
    /// Live events to and from other runners (on a shared database).
    relay: Option<Relay>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        sandbox: Arc<Sandbox>,
        metrics: Arc<Metrics>,
        permits: Arc<tokio::sync::Semaphore>,
        per_tenant: usize,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            sandbox,
            metrics,
            permits,
            per_tenant,
            running: Mutex::new(Running::default()),
            last_served: Mutex::new(None),
            wake: Notify::new(),
            idle: Notify::new(),
            draining: AtomicBool::new(false),
            channels: Mutex::new(HashMap::new()),
            relay: store.is_shared().then(|| Relay::new(store.clone())),
            store,
        })
    }

    /// Finishes runs a previous process left executing, and removes their
    /// containers and any other orphans. Call once, before [`Scheduler::start`].
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let n = self.reap().await?;
        match self
            .sandbox
            .backend()
            .collect_orphans(crate::backend::OrphanScope::Orphans, false)
            .await
        {
            Ok(r) if !r.removed.is_empty() => {
                info!(removed = r.removed.len(), "removed orphaned sandboxes")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not look for orphaned sandboxes"),
        }
        Ok(n)
    }

    /// Finishes interrupted runs (see [`Scheduler::recover`]; on a shared
    /// database, those of runners whose lease ran out) and removes their
    /// sandboxes.
    pub async fn reap(&self) -> Result<usize, StoreError> {
        let interrupted = self.store.call(|s| s.queue().interrupted()).await?;
        let backend = Arc::clone(self.sandbox.backend());
        for (id, language, version) in &interrupted {
            if let Err(e) = backend.remove_job(id).await {
                warn!(run.id = %id, error = %e, "could not remove the sandboxes of an interrupted run");
            }
            let result = failed(
                language.clone(),
                version.clone(),
                if self.store.is_shared() {
                    "the runner executing this run stopped (it crashed, was killed or lost the database for longer than its lease); the run was not retried"
                } else {
                    "the runner stopped while this run was executing (it crashed or was killed); the run was not retried"
                }
                .into(),
            );
            let id2 = id.clone();
            self.store
                .call(move |s| s.queue().finish(&id2, &result))
                .await?;
            warn!(run.id = %id, "finished a run interrupted by the previous process as internal_error");
        }
        Ok(interrupted.len())
    }

    /// Starts the dispatch loop.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = me.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if me.draining.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = me.fill().await {
                    error!(error = %e, "dispatching queued runs failed");
                }
                me.prune_channels();
            }
        })
    }

    /// A new run was queued.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts queued runs while the bounds allow: one per tenant per round,
    /// tenants in turn, so a tenant with a long queue (or at its quota)
    /// never holds back another's runs.
    async fn fill(self: &Arc<Self>) -> Result<(), StoreError> {
        loop {
            if self.draining.load(Ordering::SeqCst) || self.permits.available_permits() == 0 {
                return Ok(());
            }
            let waiting = self.store.call(|s| s.queue().waiting_tenants()).await?;
            let mut started = false;
            for tenant in self.in_turn(waiting) {
                if self.tenant_running(&tenant) >= self.per_tenant {
                    continue;
                }
                let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                    return Ok(());
                };
                let (t, limit) = (tenant.clone(), self.per_tenant);
                // The database counts the tenant's runs on every runner.
                let Some((id, spec)) = self.store.call(move |s| s.queue().claim(&t, limit)).await?
                else {
                    continue;
                };
                *self.last_served.lock().expect("scheduler lock") = Some(tenant.clone());
                self.launch(id, tenant, spec, permit);
                started = true;
            }
            if !started {
                return Ok(());
            }
        }
    }

    /// `tenants` in round-robin order: by id, starting after the one served last.
    fn in_turn(&self, mut tenants: Vec<TenantId>) -> Vec<TenantId> {
        tenants.sort();
        let last = self.last_served.lock().expect("scheduler lock").clone();
        if let Some(last) = last {
            let next = tenants.partition_point(|t| *t <= last);
            tenants.rotate_left(next);
        }
        tenants
    }

    fn tenant_running(&self, tenant: &TenantId) -> usize {
        self.running
            .lock()
            .expect("scheduler lock")
            .per_tenant
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Runs a claimed run in the background, holding `permit` until it ends.
    fn launch(
        self: &Arc<Self>,
        id: String,
        tenant: TenantId,
        spec: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) {
        let (stop_tx, stop_rx) = oneshot::channel();
        {
            let mut r = self.running.lock().expect("scheduler lock");
            r.total += 1;
            *r.per_tenant.entry(tenant.clone()).or_default() += 1;
            r.stops.insert(id.clone(), stop_tx);
        }
        let me = Arc::clone(self);
        let span = info_span!("run", run.id = %id, tenant = %tenant);
        tokio::spawn(
            async move {
                me.execute(&id, spec, stop_rx).await;
                drop(permit);
                me.release(&id, &tenant);
            }
            .instrument(span),
        );
    }

    fn release(&self, id: &str, tenant: &TenantId) {
        let mut r = self.running.lock().expect("scheduler lock");
        r.total = r.total.saturating_sub(1);
        if let Some(n) = r.per_tenant.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.per_tenant.remove(tenant);
            }
        }
        r.stops.remove(id);
        if r.total == 0 {
            self.idle.notify_waiters();
        }
        drop(r);
        self.wake.notify_one();
    }

    pub fn running_now(&self) -> usize {
        self.running.lock().expect("scheduler lock").total
    }

    /// The stored job spec as a run to execute: prepared once, at
    /// submission; only what can have changed since is checked.
    fn prepared(&self, id: &str, spec: &[u8]) -> Result<PreparedRun, super::spec::SpecError> {
        JobSpec::decode(spec)?.into_prepared(
            id.to_owned(),
            self.sandbox.catalog(),
            self.sandbox.policy(),
        )
    }

    async fn execute(&self, id: &str, spec: Vec<u8>, stop: oneshot::Receiver<Stop>) {
        self.publish(id, RunEvent::Started);
        // A cancel between the claim and `launch` registering this run's
        // stop handle found nothing to stop; it is in the database (written
        // before the handle is looked for), so read it now that the handle
        // is there. Found by `cancelling_right_after_submitting_leaves_no_container`:
        // 1 cancel in 12 was lost and the run went on to its time limit.
        let id2 = id.to_owned();
        match self
            .store
            .call(move |s| s.queue().cancel_requested(&id2))
            .await
        {
            Ok(true) => {
                self.stopped(id, Stop::Cancel).await;
                return;
            }
            Ok(false) => {}
            // The stop handle still works; the reaper's pass over pending
            // cancellations (shared database) is the second chance.
            Err(e) => warn!(error = %e, "could not read whether the run was cancelled"),
        }
        let started = Instant::now();
        let prepared = match self.prepared(id, &spec) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "run cannot start");
                let (language, version) = self
                    .lookup(id)
                    .await
                    .map(|r| (r.language, r.version))
                    .unwrap_or_default();
                let result = failed(language, version, e.to_string());
                self.finish(id, result, started).await;
                return;
            }
        };
        drop(spec);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let forward = {
            let channel = self.channel(id);
            let feeder = self.relay.as_ref().map(|r| r.open(id));
            tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if let Some(f) = &feeder {
                        f.push(&ev);
                    }
                    let _ = channel.send(RunEvent::Sandbox(ev));
                }
            })
        };
        let outcome = tokio::select! {
            r = self.sandbox.execute_observed(&prepared, Some(&tx)) => Ok(r),
            stop = stop => Err(stop.unwrap_or(Stop::Shutdown)),
        };
        drop(tx);
        let _ = forward.await;
        // Followers elsewhere get the output before the end.
        if let Some(relay) = &self.relay {
            relay.close(id).await;
        }
        match outcome {
            Ok(Ok(result)) => self.finish(id, result, started).await,
            Ok(Err(e)) => {
                // The client sees a generic message; the details stay here.
                error!(error = %e, "the sandbox failed");
                let result = crate::sandbox::internal_error(
                    &prepared.language,
                    format!("the sandbox failed; the operator's log has the details (run {id})"),
                );
                self.finish(id, result, started).await;
            }
            Err(reason) => self.stopped(id, reason).await,
        }
    }

    /// Cleans up after a run stopped from outside, and records why.
    async fn stopped(&self, id: &str, reason: Stop) {
        if let Err(e) = self.sandbox.backend().remove_job(id).await {
            warn!(error = %e, "could not remove the sandboxes of a stopped run; `runner gc` will");
        }
        let stored = self
            .durably(|store| {
                let id = id.to_owned();
                async move {
                    match reason {
                        Stop::Cancel => store.call(move |s| s.queue().cancelled(&id)).await,
                        Stop::Shutdown => store.call(move |s| s.queue().requeue(&id)).await,
                    }
                }
            })
            .await;
        if let Err(e) = stored {
            error!(error = %e, "recording a stopped run failed");
        }
        info!(reason = ?reason, "run stopped");
        if let Some(rec) = self.lookup(id).await {
            self.publish(id, RunEvent::Done(Box::new(rec)));
        }
    }

    async fn finish(&self, id: &str, result: RunResult, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .run_finished(&result.language, result.status.as_str(), seconds);
        info!(status = %result.status, seconds, "run finished");
        let result = Arc::new(result);
        match self
            .durably(|store| {
                let (id, result) = (id.to_owned(), Arc::clone(&result));
                async move { store.call(move |s| s.queue().finish(&id, &result)).await }
            })
            .await
        {
            Ok(true) => {}
            Ok(false) => warn!("the run was no longer running when its result came (cancelled?)"),
            Err(e) => error!(error = %e, "storing a result failed"),
        }
        if let Some(rec) = self.lookup(id).await {
            self.publish(id, RunEvent::Done(Box::new(rec)));
        }
    }

    /// Runs a store write, again while the database is unreachable (a
    /// restart): a result must not be lost to a blip, and the writes are
    /// idempotent (they change only a run still running). Gives up after
    /// a few minutes; the run is then reaped like a crashed runner's.
    async fn durably<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match f(self.store.clone()).await {
                Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                    warn!(error = %e, "the database is unreachable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    async fn lookup(&self, id: &str) -> Option<RunRecord> {
        let id = id.to_owned();
        self.store
            .call(move |s| s.queue().record(&id))
            .await
            .ok()
            .flatten()
    }

    /// Stops a running run (its record already says cancel was requested).
    pub fn cancel(&self, id: &str) -> bool {
        let stop = self
            .running
            .lock()
            .expect("scheduler lock")
            .stops
            .remove(id);
        stop.is_some_and(|s| s.send(Stop::Cancel).is_ok())
    }

    /// Orderly shutdown: start nothing new, let running runs finish within
    /// `grace`, then stop the rest and put them back in the queue.
    pub async fn drain(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        while self.running_now() > 0 {
            let idle = self.idle.notified();
            if self.running_now() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let stops: Vec<_> = self
            .running
            .lock()
            .expect("scheduler lock")
            .stops
            .drain()
            .collect();
        if !stops.is_empty() {
            warn!(
                runs = stops.len(),
                "grace period over: stopping runs and putting them back in the queue"
            );
        }
        for (_, s) in stops {
            let _ = s.send(Stop::Shutdown);
        }
        // Stopped runs clean up (remove containers, requeue) quickly.
        let cleanup = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.running_now() > 0 && tokio::time::Instant::now() < cleanup {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.idle.notified()).await;
        }
    }

    fn channel(&self, id: &str) -> broadcast::Sender<RunEvent> {
        self.channels
            .lock()
            .expect("channels lock")
            .entry(id.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    fn publish(&self, id: &str, ev: RunEvent) {
        let _ = self.channel(id).send(ev);
    }

    /// Whether someone here follows or waits on run `id`.
    fn followed(&self, id: &str) -> bool {
        self.channels
            .lock()
            .expect("channels lock")
            .get(id)
            .is_some_and(|ch| ch.receiver_count() > 0)
    }

    /// Another runner (sharing the database) ended run `id`: its followers
    /// here get its final record.
    pub async fn relay_done(&self, id: &str) {
        if !self.followed(id) {
            return;
        }
        if let Some(rec) = self.lookup(id).await
            && rec.state.is_final()
        {
            if let Some(relay) = &self.relay {
                relay.forget(id);
            }
            self.publish(id, RunEvent::Done(Box::new(rec)));
        }
    }

    /// Another runner started run `id`: a follower here asks it for the
    /// run's events (the run may have been queued when they subscribed).
    pub fn relay_started(&self, id: &str) {
        if self.followed(id) {
            self.publish(id, RunEvent::Started);
            self.ask_relay(id);
        }
    }

    /// A client here follows run `id` (not final): when another runner
    /// executes it (or will), that runner is asked for its live events.
    pub fn ask_relay(&self, id: &str) {
        if self.relay.is_none() || self.executing(id) {
            return;
        }
        let payload = vec![format!("follow:{id}")];
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.call(move |s| s.notify(&payload)).await {
                warn!(error = %e, "could not ask for a run's live output");
            }
        });
    }

    /// Another runner asks for run `id`'s events (if it executes here).
    pub fn relay_follow(&self, id: &str) {
        if let Some(relay) = &self.relay {
            relay.follow(id);
        }
    }

    /// Events of a run executing on another runner (a `relay:` payload).
    pub fn relay_events(&self, payload: &str) {
        let Some(relay) = &self.relay else {
            return;
        };
        if let Some((id, events)) = relay.receive(payload, |id| self.followed(id)) {
            for ev in events {
                self.publish(
                    &id,
                    match ev {
                        Received::Lagged(n) => RunEvent::Lagged(n),
                        Received::Event(ev) => RunEvent::Sandbox(ev),
                    },
                );
            }
        }
    }

    fn executing(&self, id: &str) -> bool {
        self.running
            .lock()
            .expect("scheduler lock")
            .stops
            .contains_key(id)
    }

    /// Listening (re)started: what ended meanwhile is read again, and the
    /// live events of what goes on asked for again.
    pub async fn relay_all(&self) {
        let followed: Vec<String> = self
            .channels
            .lock()
            .expect("channels lock")
            .iter()
            .filter(|(_, ch)| ch.receiver_count() > 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in followed {
            self.relay_done(&id).await;
            if self.followed(&id) {
                self.ask_relay(&id);
            }
        }
    }

    /// Tells followers of a run that it ended outside the scheduler (it was
    /// cancelled while queued).
    pub fn announce_final(&self, rec: RunRecord) {
        let id = rec.id.clone();
        self.publish(&id, RunEvent::Done(Box::new(rec)));
    }

    /// Subscribes to a run's events. Subscribe before reading the run's
    /// state, so nothing between the two is missed.
    pub fn subscribe(&self, id: &str) -> broadcast::Receiver<RunEvent> {
        self.channel(id).subscribe()
    }

    fn prune_channels(&self) {
        let running = self.running.lock().expect("scheduler lock");
        let mut channels = self.channels.lock().expect("channels lock");
        channels.retain(|id, ch| running.stops.contains_key(id) || ch.receiver_count() > 0);
        if let Some(relay) = &self.relay {
            relay.prune(|id| channels.get(id).is_some_and(|ch| ch.receiver_count() > 0));
        }
    }

    /// Waits until the run is final or `timeout` passes; returns its record
    /// as it then is.
    pub async fn wait_final(
        &self,
        tenant: &TenantId,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut rx = self.subscribe(id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (t, i) = (tenant.clone(), id.to_owned());
            let rec = self.store.call(move |s| s.runs(&t).get(&i)).await?;
            match rec {
                Some(r) if !r.state.is_final() => {}
                other => return Ok(other),
            }
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => {
                        let (t, i) = (tenant.clone(), id.to_owned());
                        return self.store.call(move |s| s.runs(&t).get(&i)).await;
                    }
                    Ok(Ok(RunEvent::Done(rec))) => return Ok(Some(*rec)),
                    Ok(Ok(_)) => {}
                    // Missed events or a closed channel: read the state again.
                    Ok(Err(_)) => break,
                }
            }
            rx = self.subscribe(id);
        }
    }
}
