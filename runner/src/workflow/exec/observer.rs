//! What a run reports while it runs: for the CLI's live log, the service's
//! store and its server-sent events. Every text here is already masked.

use std::sync::Mutex;

use super::state::{JobRecord, State, StepRecord};
use crate::backend::OutputStream;

/// Receives a run's progress. Implementations must not block for long.
pub trait RunObserver: Send + Sync {
    fn job_state(&self, job: &str, name: &str, state: State);
    fn step_started(&self, job: &str, index: i64, name: &str);
    /// Output of a running step, masked.
    fn output(&self, job: &str, index: i64, stream: OutputStream, text: &str);
    fn step_finished(&self, job: &str, step: &StepRecord);
    fn job_finished(&self, job: &JobRecord);
}

/// One thing an observer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    JobState(String, State),
    StepStarted(String, i64, String),
    Output(String, i64, String),
    StepFinished(String, StepRecord),
    JobFinished(JobRecord),
}

/// Keeps everything it sees (tests; and a run's log for the CLI summary).
#[derive(Debug, Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder lock").clone()
    }

    /// All output of one job, in order.
    pub fn output_of(&self, job: &str) -> String {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Output(j, _, t) if j == job => Some(t),
                _ => None,
            })
            .collect()
    }

    fn push(&self, s: Seen) {
        self.seen.lock().expect("recorder lock").push(s);
    }
}

impl RunObserver for Recorder {
    fn job_state(&self, job: &str, _name: &str, state: State) {
        self.push(Seen::JobState(job.to_owned(), state));
    }

    fn step_started(&self, job: &str, index: i64, name: &str) {
        self.push(Seen::StepStarted(job.to_owned(), index, name.to_owned()));
    }

    fn output(&self, job: &str, index: i64, _stream: OutputStream, text: &str) {
        self.push(Seen::Output(job.to_owned(), index, text.to_owned()));
    }

    fn step_finished(&self, job: &str, step: &StepRecord) {
        self.push(Seen::StepFinished(job.to_owned(), step.clone()));
    }

    fn job_finished(&self, job: &JobRecord) {
        self.push(Seen::JobFinished(job.clone()));
    }
}
