//! Live output of runs across runners sharing one PostgreSQL database.
//!
//! A runner with a client following a run it does not execute says so
//! (`follow:<run>` on the channel) when the client subscribes and again when
//! it hears the run started (it may have been queued). The runner executing
//! the run then sends the run's sandbox events as notifications
//! ([`wire`]) from one task per run, in order; every runner receives them
//! and those with followers of the run publish them.
//!
//! While a run executes, its runner keeps its latest events, up to
//! [`REPLAY_BYTES`]: a follow that arrives late (the run wrote before the
//! request came) is first sent those, so a remote follower sees at least
//! what a local one would (a local one sees events from its subscription on;
//! a remote one, the run's events from the start while they fit, and a
//! `lagged` count of those that no longer did). The same buffer is the
//! queue of events still to send: when a run writes faster than they can be
//! sent, the oldest are dropped and the receivers report `lagged`; the run
//! itself never waits on the relay. Consecutive output is coalesced while it
//! waits. Before a run's end is stored (its `done:` notification), what is
//! queued is sent, within [`FLUSH`]: notifications arrive in commit order,
//! so followers see the output before the end.
//!
//! On SQLite (one runner) there is no relay: nothing is kept or sent.

mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

use super::store::Store;
use crate::sandbox::SandboxEvent;
pub use wire::Received;
use wire::{Frame, Inbox, OUTPUT_CHUNK, OVERHEAD, Wire, escaped_len, split_at_budget};

/// Events kept per executing run, for late follows and as the send queue.
pub const REPLAY_BYTES: usize = 64 * 1024;
/// How long a run's end waits for its queued events to be sent.
const FLUSH: Duration = Duration::from_secs(5);
/// Follows remembered for runs not (yet) executing here, and for how long.
const MAX_WANTED: usize = 256;
const WANTED_FOR: Duration = Duration::from_secs(60);
/// Frames sent per transaction.
const FRAMES_PER_TX: usize = 32;

#[derive(Debug)]
struct Entry {
    seq: u64,
    wire: Wire,
    /// Its encoded size, about.
    size: usize,
}

/// An executing run's recent events and what of them is still to send.
#[derive(Debug, Default)]
struct Feed {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The number the next event gets.
    next_seq: u64,
    /// Events below this were sent (at least once): nothing is appended to them.
    sealed: u64,
    /// While relayed: the next event to send.
    cursor: Option<u64>,
    ended: bool,
    pump: Option<JoinHandle<()>>,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            next_seq: 1,
            sealed: 1,
            ..Feed::default()
        }
    }

    fn add(&mut self, wire: Wire, size: usize) {
        self.entries.push_back(Entry {
            seq: self.next_seq,
            wire,
            size,
        });
        self.next_seq += 1;
        self.bytes += size;
    }

    fn push(&mut self, ev: &SandboxEvent) {
        match ev {
            SandboxEvent::StageStarted(stage) => self.add(Wire::started(*stage), OVERHEAD),
            SandboxEvent::Output {
                stage,
                stream,
                text,
            } => {
                let mut rest = text.as_str();
                let sealed = self.sealed;
                if let Some(last) = self.entries.back_mut()
                    && last.seq >= sealed
                {
                    // Coalesced with the output waiting before it.
                    let (head, tail) =
                        split_at_budget(rest, OUTPUT_CHUNK.saturating_sub(last.size));
                    if !head.is_empty() && last.wire.append((*stage, *stream), head) {
                        let n = escaped_len(head);
                        last.size += n;
                        self.bytes += n;
                        rest = tail;
                    }
                }
                while !rest.is_empty() {
                    let (head, tail) = split_at_budget(rest, OUTPUT_CHUNK - OVERHEAD);
                    self.add(
                        Wire::output(*stage, *stream, head.to_owned()),
                        escaped_len(head) + OVERHEAD,
                    );
                    rest = tail;
                }
            }
            SandboxEvent::StageFinished { stage, result } => {
                let wire = Wire::finished(*stage, result);
                let size = escaped_len(&result.stdout) + escaped_len(&result.stderr) + 4 * OVERHEAD;
                if size > wire::MAX_EVENT {
                    // Not relayed (receivers see a gap); the final result has it.
                    self.next_seq += 1;
                } else {
                    self.add(wire, size);
                }
            }
        }
        while self.bytes > REPLAY_BYTES && self.entries.len() > 1 {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size;
                if self.cursor.is_some_and(|c| e.seq >= c) {
                    debug!(
                        seq = e.seq,
                        "the run writes faster than it is relayed; an event was dropped"
                    );
                }
            }
        }
    }

    /// The events to send next (none while not relayed).
    fn take(&mut self) -> Vec<(u64, Wire)> {
        let Some(cursor) = self.cursor else {
            return Vec::new();
        };
        let batch: Vec<(u64, Wire)> = self
            .entries
            .iter()
            .filter(|e| e.seq >= cursor)
            .map(|e| (e.seq, e.wire.clone()))
            .collect();
        if let Some((last, _)) = batch.last() {
            self.cursor = Some(last + 1);
            self.sealed = self.sealed.max(last + 1);
        }
        batch
    }
}

#[derive(Debug)]
struct Outbox {
    feed: Mutex<Feed>,
    wake: Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        // A panic while holding it cannot leave the feed inconsistent in a
        // way that matters more than losing live output.
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A run's events, as they come, for [`Relay::open`]'s caller.
#[derive(Debug, Clone)]
pub struct Feeder(Arc<Outbox>);

impl Feeder {
    /// Never waits: when the relay is behind, the oldest events are dropped.
    pub fn push(&self, ev: &SandboxEvent) {
        let relayed = {
            let mut feed = self.0.lock();
            feed.push(ev);
            feed.cursor.is_some()
        };
        if relayed {
            self.0.wake.notify_one();
        }
    }
}

/// This runner's side of the relay (PostgreSQL only).
#[derive(Debug)]
pub struct Relay {
    store: Store,
    /// This process, on the wire.
    me: String,
    outboxes: Mutex<HashMap<String, Arc<Outbox>>>,
    wanted: Mutex<VecDeque<(String, Instant)>>,
    inbox: Mutex<Inbox>,
}

impl Relay {
    pub fn new(store: Store) -> Relay {
        Relay {
            store,
            me: crate::sandbox::new_job_id()[..12].to_owned(),
            outboxes: Mutex::default(),
            wanted: Mutex::default(),
            inbox: Mutex::default(),
        }
    }

    fn outboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Outbox>>> {
        self.outboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `run` starts executing here; it is relayed at once if a follow
    /// for it came first.
    pub fn open(&self, run: &str) -> Feeder {
        let outbox = Arc::new(Outbox {
            feed: Mutex::new(Feed::new()),
            wake: Notify::new(),
        });
        self.outboxes().insert(run.to_owned(), Arc::clone(&outbox));
        let wanted = {
            let mut w = self
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            w.retain(|(_, at)| at.elapsed() < WANTED_FOR);
            let found = w.iter().position(|(id, _)| id == run);
            found.and_then(|i| w.remove(i)).is_some()
        };
        let feeder = Feeder(outbox);
        if wanted {
            self.start(run, &feeder.0);
        }
        feeder
    }

    /// Run `run` ended here: sends what is queued (within [`FLUSH`]) and
    /// forgets it. Call before its end is stored.
    pub async fn close(&self, run: &str) {
        let Some(outbox) = self.outboxes().remove(run) else {
            return;
        };
        let pump = {
            let mut feed = outbox.lock();
            feed.ended = true;
            feed.pump.take()
        };
        outbox.wake.notify_one();
        if let Some(mut pump) = pump
            && tokio::time::timeout(FLUSH, &mut pump).await.is_err()
        {
            pump.abort();
            debug!(run.id = %run, "the relay did not catch up before the run's end");
        }
    }

    /// Another runner asks for run `run`'s events.
    pub fn follow(&self, run: &str) {
        let outbox = self.outboxes().get(run).cloned();
        match outbox {
            Some(outbox) => self.start(run, &outbox),
            None => {
                let mut w = self
                    .wanted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                w.retain(|(_, at)| at.elapsed() < WANTED_FOR);
                if w.len() >= MAX_WANTED {
                    w.pop_front();
                }
                w.push_back((run.to_owned(), Instant::now()));
            }
        }
    }

    /// Relays `run` from its oldest kept event (again, for a runner that
    /// joins later: the others skip what they have).
    fn start(&self, run: &str, outbox: &Arc<Outbox>) {
        {
            let mut feed = outbox.lock();
            if feed.ended {
                return;
            }
            feed.cursor = Some(feed.entries.front().map_or(feed.next_seq, |e| e.seq));
            if feed.pump.is_none() {
                // Spawned under the lock: `close` always finds the task.
                feed.pump = Some(tokio::spawn(pump(
                    self.store.clone(),
                    self.me.clone(),
                    run.to_owned(),
                    Arc::clone(outbox),
                )));
            }
        }
        outbox.wake.notify_one();
    }

    /// A frame from the channel (after `relay:`): the events it completes
    /// for a run `followed` here. Malformed frames are ignored.
    pub fn receive(
        &self,
        payload: &str,
        followed: impl Fn(&str) -> bool,
    ) -> Option<(String, Vec<Received>)> {
        let frame = match Frame::parse(payload) {
            Ok(f) => f,
            Err(e) => {
                debug!(error = %e, "a relay notification was ignored");
                return None;
            }
        };
        if frame.sender == self.me || !followed(frame.run) {
            return None;
        }
        let events = self
            .inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .accept(&frame);
        (!events.is_empty()).then(|| (frame.run.to_owned(), events))
    }

    /// Run `run` ended: its received state goes.
    pub fn forget(&self, run: &str) {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget(run);
    }

    /// Keeps received state only for runs still `followed`.
    pub fn prune(&self, followed: impl Fn(&str) -> bool) {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(followed);
    }
}

/// Sends a run's events, one batch at a time, until the run ended and
/// everything kept was sent. One task per run keeps them in order
/// (notifications from separate connections may be reordered).
async fn pump(store: Store, me: String, run: String, outbox: Arc<Outbox>) {
    loop {
        let batch = loop {
            let woken = outbox.wake.notified();
            {
                let mut feed = outbox.lock();
                let batch = feed.take();
                if !batch.is_empty() {
                    break batch;
                }
                if feed.ended {
                    return;
                }
            }
            woken.await;
        };
        let frames: Vec<String> = batch
            .iter()
            .flat_map(|(seq, wire)| wire::frames(&me, &run, *seq, wire))
            .collect();
        for chunk in frames.chunks(FRAMES_PER_TX) {
            let chunk = chunk.to_vec();
            if let Err(e) = store.call(move |s| s.notify(&chunk)).await {
                // Receivers see the gap.
                debug!(run.id = %run, error = %e, "relaying a run's events failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
