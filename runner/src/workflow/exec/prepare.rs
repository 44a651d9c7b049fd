//! From a repository and a commit to plans ready to run: the commit fetched
//! into the bare cache, its files archived for the jobs' workspaces, its
//! workflow files read from git's objects and planned for the push, and job
//! images resolved to this build's tags. Shared by `runner workflow run`
//! and the service, so both run workflows the same way.

use super::super::plan::{FilePlan, Outcome, Plan, plan_files};
use super::super::policy::WorkflowPolicy;
use super::super::source::{Fetched, GitSource, SourceError};
use super::super::trigger::Push;
use crate::images::jobs::JobImages;

/// A commit ready to run.
#[derive(Debug)]
pub struct Checkout {
    pub fetched: Fetched,
    /// `git archive` of the commit: the workspace of every job.
    pub archive: Vec<u8>,
    /// Each workflow file's plan (or errors, or why the push skips it).
    pub plans: Vec<FilePlan>,
}

/// Fetches `commit` of `url`, archives it and plans its workflows for
/// `push` (whose `sha` is `commit`).
pub async fn checkout(
    source: &GitSource,
    url: &str,
    push: &Push,
    policy: &WorkflowPolicy,
    images: &JobImages,
) -> Result<Checkout, SourceError> {
    let fetched = source
        .fetch(
            url,
            &push.sha,
            Some(push.git_ref.as_str()).filter(|r| r.starts_with("refs/")),
        )
        .await?;
    let files = source.workflow_files(&fetched, &policy.directory).await?;
    let mut plans = plan_files(&files, push, policy);
    for p in &mut plans {
        if let Ok(Outcome::Planned(plan)) = &mut p.result {
            resolve_images(plan, images);
        }
    }
    let mut archive = Vec::new();
    source.archive(&fetched, &mut archive).await?;
    Ok(Checkout {
        fetched,
        archive,
        plans,
    })
}

/// `runner-job/debian` (as policy names it) is this build's image of it.
pub fn resolve_images(plan: &mut Plan, images: &JobImages) {
    for job in &mut plan.jobs {
        job.image = images.resolve(&job.image);
    }
}
