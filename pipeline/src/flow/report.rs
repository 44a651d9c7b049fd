//! What a run did, step by step, for the caller to print or store.

use std::path::PathBuf;
use std::time::Instant;

use super::error::FlowError;

/// The steps of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Build,
    Push,
    Sbom,
    Scan,
    Sign,
    Attest,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Build => "build",
            Step::Push => "push",
            Step::Sbom => "sbom",
            Step::Scan => "scan",
            Step::Sign => "sign",
            Step::Attest => "attest",
        }
    }
}

/// One step: how long it took, and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: Step,
    pub seconds: f64,
    pub ok: bool,
    /// What it produced (`3 components, 0 warnings → sbom.cdx.json`), or
    /// `FAILED: why`.
    pub outcome: String,
}

/// The scan's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanVerdict {
    pub passed: bool,
    /// `2 critical failing; 1 ignored`.
    pub summary: String,
    /// The table `pipeline scan` prints.
    pub table: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub steps: Vec<StepReport>,
    /// The image by digest (`REPO@sha256:...`), once pushed.
    pub image: Option<String>,
    /// Files written to the output directory.
    pub files: Vec<PathBuf>,
    pub scan: Option<ScanVerdict>,
}

impl RunReport {
    /// Records a step that started at `started`, and passes its value or
    /// error on.
    pub(super) fn record<T>(
        &mut self,
        step: Step,
        started: Instant,
        result: Result<(T, String), FlowError>,
    ) -> Result<T, FlowError> {
        let seconds = started.elapsed().as_secs_f64();
        let (ok, outcome, value) = match result {
            Ok((value, outcome)) => (true, outcome, Ok(value)),
            Err(e) => (false, format!("FAILED: {e}"), Err(e)),
        };
        self.steps.push(StepReport {
            step,
            seconds,
            ok,
            outcome,
        });
        value
    }
}
