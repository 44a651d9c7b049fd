//! Running planned workflow jobs through the job backend.
//!
//! - [`run`]: a whole run, jobs in `needs` order, matrix cells in parallel;
//! - [`job`]: one job in its own sandbox, its steps in order;
//! - [`mask`]: secrets masked in every log line and event;
//! - [`observer`]: live progress for the CLI and the service;
//! - [`state`]: what runs, jobs and steps came to.

pub mod job;
pub mod mask;
pub mod observer;
pub mod prepare;
pub mod run;
pub mod state;

pub use job::RunContext;
pub use observer::RunObserver;
pub use run::{RunRecord, run_plan};
pub use state::{JobRecord, State, StepRecord};
