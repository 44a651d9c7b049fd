//! What a workflow run, its jobs and their steps came to.

use serde::{Deserialize, Serialize};

use crate::workflow::expr::JobResult;

/// The state of a run, a job or a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Running,
    Success,
    Failure,
    Cancelled,
    Skipped,
    TimedOut,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Success => "success",
            State::Failure => "failure",
            State::Cancelled => "cancelled",
            State::Skipped => "skipped",
            State::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Queued,
            State::Running,
            State::Success,
            State::Failure,
            State::Cancelled,
            State::Skipped,
            State::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether it will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step as it ran (or did not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position among the job's steps; the runner's own set-up step is -1.
    pub index: i64,
    /// Rendered with secrets masked.
    pub name: String,
    pub state: State,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Why it ended as it did, when a code does not say it.
    pub message: Option<String>,
}

/// One job (or matrix cell) as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `build`, `build (3.11, debian)`.
    pub id: String,
    pub name: String,
    pub state: State,
    pub steps: Vec<StepRecord>,
    pub duration_ms: u64,
    pub message: Option<String>,
    /// The job had `continue-on-error` and failed: the run stays green.
    pub continued_on_error: bool,
}

impl JobRecord {
    /// What `needs.<id>.result` reads and dependants decide by: a failure
    /// allowed by `continue-on-error` counts as a success, as on GitHub.
    pub fn result(&self) -> JobResult {
        match self.state {
            State::Success => JobResult::Success,
            State::Failure | State::TimedOut if self.continued_on_error => JobResult::Success,
            State::Failure | State::TimedOut => JobResult::Failure,
            State::Cancelled => JobResult::Cancelled,
            State::Skipped | State::Queued | State::Running => JobResult::Skipped,
        }
    }
}

/// The run's state from its jobs'.
pub fn run_state(jobs: &[JobRecord], cancelled: bool) -> State {
    if cancelled {
        return State::Cancelled;
    }
    let results: Vec<JobResult> = jobs.iter().map(JobRecord::result).collect();
    if jobs
        .iter()
        .any(|j| j.state == State::TimedOut && !j.continued_on_error)
    {
        return State::TimedOut;
    }
    match JobResult::aggregate(&results) {
        JobResult::Failure => State::Failure,
        JobResult::Cancelled => State::Cancelled,
        JobResult::Skipped => State::Skipped,
        JobResult::Success => State::Success,
    }
}
