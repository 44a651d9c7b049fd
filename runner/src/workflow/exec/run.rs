//! A whole workflow run: its jobs in the order `needs` allows, as many at
//! once as the run may have, matrix cells at most `max-parallel` at once;
//! a failed need skips its dependants (unless their `if` asks for
//! `always()` or `failure()`); `fail-fast` cancels the other cells of a
//! failed job; cancelling the run stops what runs and starts nothing more
//! (but `always()` jobs).

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use super::job::{JobTicket, RunContext, run_job};
use super::state::{JobRecord, State, run_state};
use crate::workflow::expr::JobResult;
use crate::workflow::plan::PlannedJob;

/// The run as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub state: State,
    /// Every job of the plan, in plan order.
    pub jobs: Vec<JobRecord>,
}

/// Where each job of the plan stands.
#[derive(Debug)]
enum Slot {
    Waiting,
    Running(watch::Sender<bool>),
    Done(JobRecord),
}

/// Runs every job of the plan; `concurrency` jobs at most at once.
pub async fn run_plan(
    ctx: &RunContext,
    mut cancel: watch::Receiver<bool>,
    concurrency: usize,
) -> RunRecord {
    let plan = std::sync::Arc::clone(&ctx.plan);
    let jobs = &plan.jobs;
    let mut slots: Vec<Slot> = jobs.iter().map(|_| Slot::Waiting).collect();
    let mut running = FuturesUnordered::new();
    let mut cancelled = *cancel.borrow();
    loop {
        for i in 0..jobs.len() {
            if !matches!(slots[i], Slot::Waiting) || running.len() >= concurrency.max(1) {
                continue;
            }
            if !may_start(&slots, jobs, i) {
                continue;
            }
            match decide(ctx, &slots, i, cancelled) {
                Decision::End(record) => {
                    ctx.observer
                        .job_state(&record.id, &record.name, record.state);
                    ctx.observer.job_finished(&record);
                    slots[i] = Slot::Done(record);
                }
                Decision::Start(needs) => {
                    let (tx, rx) = watch::channel(cancelled);
                    slots[i] = Slot::Running(tx);
                    let ticket = JobTicket {
                        number: i,
                        job: &jobs[i],
                        needs,
                    };
                    running.push(async move { (i, run_job(ctx, ticket, rx).await) });
                }
            }
        }
        if running.is_empty() {
            // Nothing runs and nothing more can start.
            break;
        }
        tokio::select! {
            Some((i, record)) = running.next() => {
                let failed = record.result() == JobResult::Failure;
                slots[i] = Slot::Done(record);
                if failed && jobs[i].fail_fast && jobs[i].matrix.is_some() {
                    fail_fast(ctx, &mut slots, jobs, i);
                }
            }
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() || *cancel.borrow() {
                    cancelled = true;
                    for slot in &slots {
                        if let Slot::Running(tx) = slot {
                            let _ = tx.send(true);
                        }
                    }
                }
            }
        }
    }
    let records: Vec<JobRecord> = slots
        .into_iter()
        .zip(jobs)
        .map(|(slot, job)| match slot {
            Slot::Done(r) => r,
            // Never started: a need never finished (cannot happen in a
            // valid plan), or the run was cancelled first.
            _ => ended(
                job,
                if cancelled {
                    State::Cancelled
                } else {
                    State::Skipped
                },
                None,
            ),
        })
        .collect();
    RunRecord {
        state: run_state(&records, cancelled),
        jobs: records,
    }
}

/// Whether every job `i` needs is done, and its job's cells are not at
/// their `max-parallel`.
fn may_start(slots: &[Slot], jobs: &[PlannedJob], i: usize) -> bool {
    let job = &jobs[i];
    let needs_done = jobs
        .iter()
        .zip(slots)
        .all(|(j, s)| !job.needs.contains(&j.job_id) || matches!(s, Slot::Done(_)));
    let running_cells = jobs
        .iter()
        .zip(slots)
        .filter(|(j, s)| j.job_id == job.job_id && matches!(s, Slot::Running(_)))
        .count();
    needs_done && job.max_parallel.is_none_or(|m| running_cells < m as usize)
}

enum Decision {
    Start(BTreeMap<String, JobResult>),
    End(JobRecord),
}

/// Whether job `i` runs, from its `if` and the results of what it needs.
fn decide(ctx: &RunContext, slots: &[Slot], i: usize, cancelled: bool) -> Decision {
    let plan = &ctx.plan;
    let job = &plan.jobs[i];
    let result_of = |job_id: &str| -> JobResult {
        let cells: Vec<JobResult> = plan
            .jobs
            .iter()
            .zip(slots)
            .filter(|(j, _)| j.job_id == job_id)
            .map(|(_, s)| match s {
                Slot::Done(r) => r.result(),
                _ => JobResult::Skipped,
            })
            .collect();
        JobResult::aggregate(&cells)
    };
    let needs: BTreeMap<String, JobResult> = job
        .needs
        .iter()
        .map(|n| (n.clone(), result_of(n)))
        .collect();
    let ancestors: Vec<JobResult> = plan.ancestors(job).iter().map(|a| result_of(a)).collect();
    match job.should_run(plan, &needs, &ancestors, cancelled) {
        Ok(true) => Decision::Start(needs),
        Ok(false) if cancelled => Decision::End(ended(job, State::Cancelled, None)),
        Ok(false) => Decision::End(ended(
            job,
            State::Skipped,
            Some("its `if` is false (a job it needs did not succeed)".into()),
        )),
        Err(e) => Decision::End(ended(
            job,
            State::Failure,
            Some(format!("its `if` cannot be evaluated: {}", e.message)),
        )),
    }
}

/// Cancels the other cells of the failed job `i`'s matrix.
fn fail_fast(ctx: &RunContext, slots: &mut [Slot], jobs: &[PlannedJob], i: usize) {
    let job_id = jobs[i].job_id.clone();
    let why = format!("cancelled by fail-fast: {} failed", jobs[i].id);
    for (k, job) in jobs.iter().enumerate() {
        if k == i || job.job_id != job_id {
            continue;
        }
        match &slots[k] {
            Slot::Running(tx) => {
                let _ = tx.send(true);
            }
            Slot::Waiting => {
                let record = ended(job, State::Cancelled, Some(why.clone()));
                ctx.observer
                    .job_state(&record.id, &record.name, record.state);
                ctx.observer.job_finished(&record);
                slots[k] = Slot::Done(record);
            }
            Slot::Done(_) => {}
        }
    }
}

fn ended(job: &PlannedJob, state: State, message: Option<String>) -> JobRecord {
    JobRecord {
        id: job.id.clone(),
        name: job.name.clone(),
        state,
        steps: Vec::new(),
        duration_ms: 0,
        message,
        continued_on_error: false,
    }
}

/// Jobs per state, for summaries.
pub fn tally(record: &RunRecord) -> HashMap<State, usize> {
    let mut t = HashMap::new();
    for j in &record.jobs {
        *t.entry(j.state).or_default() += 1;
    }
    t
}
