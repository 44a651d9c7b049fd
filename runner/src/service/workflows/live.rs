//! A workflow run's live events, and its recent output for followers who
//! come late. The store's copy of a log lags by up to a flush (see
//! `Workflows::writer`), so a follower that read the log and then
//! subscribed would miss the lines in between: it takes the recent output
//! and its subscription under one lock instead, missing none and seeing
//! none twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::WorkflowEvent;

/// Output kept for late followers, per run: its last 256 KiB.
pub const REPLAY_BYTES: usize = 256 * 1024;

/// Events a slow follower may fall behind by before it is told `lagged`.
const CHANNEL_EVENTS: usize = 4096;

/// One run's channel. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Live(Arc<Mutex<State>>);

struct State {
    tx: broadcast::Sender<WorkflowEvent>,
    /// The run's output events, oldest first, at most [`REPLAY_BYTES`] of text.
    recent: VecDeque<WorkflowEvent>,
    recent_bytes: usize,
    /// Output dropped from `recent` to keep it bounded.
    dropped_bytes: u64,
}

/// What a follower gets: the output so far, then every event after it.
#[derive(Debug)]
pub struct Follow {
    /// Bytes of output older than `recent`, which the follower will not see.
    pub dropped_bytes: u64,
    /// The output events so far, oldest first.
    pub recent: Vec<WorkflowEvent>,
    pub rx: broadcast::Receiver<WorkflowEvent>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    pub fn new() -> Live {
        Live(Arc::new(Mutex::new(State {
            tx: broadcast::channel(CHANNEL_EVENTS).0,
            recent: VecDeque::new(),
            recent_bytes: 0,
            dropped_bytes: 0,
        })))
    }

    /// Sends `ev` to the followers, keeping it for later ones if it is output.
    pub fn publish(&self, ev: WorkflowEvent) {
        let mut s = self.0.lock().expect("live lock");
        if let WorkflowEvent::Output { text, .. } = &ev {
            s.recent_bytes += text.len();
            s.recent.push_back(ev.clone());
            while s.recent_bytes > REPLAY_BYTES {
                let Some(WorkflowEvent::Output { text, .. }) = s.recent.pop_front() else {
                    break;
                };
                s.recent_bytes -= text.len();
                s.dropped_bytes += text.len() as u64;
            }
        }
        let _ = s.tx.send(ev);
    }

    pub fn follow(&self) -> Follow {
        let s = self.0.lock().expect("live lock");
        Follow {
            dropped_bytes: s.dropped_bytes,
            recent: s.recent.iter().cloned().collect(),
            rx: s.tx.subscribe(),
        }
    }

    pub fn followers(&self) -> usize {
        self.0.lock().expect("live lock").tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::OutputStream;

    fn output(text: &str) -> WorkflowEvent {
        WorkflowEvent::Output {
            job: "j".into(),
            index: 0,
            stream: OutputStream::Stdout,
            text: text.into(),
        }
    }

    fn text(evs: &[WorkflowEvent]) -> String {
        evs.iter()
            .map(|e| match e {
                WorkflowEvent::Output { text, .. } => text.as_str(),
                _ => "",
            })
            .collect()
    }

    #[test]
    fn a_late_follower_gets_the_output_so_far_then_the_rest_once() {
        let live = Live::new();
        live.publish(output("one\n"));
        live.publish(WorkflowEvent::Job {
            job: "j".into(),
            state: crate::workflow::exec::State::Running,
        });
        let mut f = live.follow();
        live.publish(output("two\n"));
        assert_eq!(text(&f.recent), "one\n");
        assert_eq!(f.dropped_bytes, 0);
        let next = f.rx.try_recv().unwrap();
        assert_eq!(text(&[next]), "two\n");
        assert!(f.rx.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn recent_output_is_bounded_and_says_what_it_dropped() {
        let live = Live::new();
        let line = "x".repeat(1000);
        for _ in 0..300 {
            live.publish(output(&line));
        }
        let f = live.follow();
        let kept = text(&f.recent).len();
        assert!(kept <= REPLAY_BYTES, "{kept}");
        assert_eq!(kept as u64 + f.dropped_bytes, 300_000);
    }
}
