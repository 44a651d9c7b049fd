//! What a deploy did, for the caller to print or record.

use std::time::Instant;

use crate::flow::Progress;

/// A finished deploy: the image now live and each step on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployReport {
    /// `REPO@sha256:...`, now live.
    pub image: String,
    /// The target, described (`docker service app-dev (3 replicas) on ...`).
    pub target: String,
    pub seconds: f64,
    /// What happened, in order (`started app-dev-0123-ab (172.18.0.3)`...).
    pub events: Vec<String>,
}

/// Events as they happen: to the caller's progress and into the report.
pub(crate) struct Log<'a> {
    progress: &'a Progress,
    started: Instant,
    pub events: Vec<String>,
}

impl<'a> Log<'a> {
    pub fn new(progress: &'a Progress) -> Log<'a> {
        Log {
            progress,
            started: Instant::now(),
            events: Vec::new(),
        }
    }

    pub fn event(&mut self, what: impl Into<String>) {
        let line = format!(
            "[{:>6.2} s] {}",
            self.started.elapsed().as_secs_f64(),
            what.into()
        );
        (self.progress)(&line);
        self.events.push(line);
    }

    pub fn progress(&self) -> &'a Progress {
        self.progress
    }

    pub fn report(self, image: String, target: String) -> DeployReport {
        DeployReport {
            image,
            target,
            seconds: self.started.elapsed().as_secs_f64(),
            events: self.events,
        }
    }
}
