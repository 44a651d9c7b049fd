//! Planning: from a parsed workflow and a push to the jobs to run — whether
//! the push triggers the workflow, each matrix cell as its own job with its
//! image, limits, env and steps, in an order where every job follows the
//! jobs it needs. Pure: no engine, no clock, no secrets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::dag;
use super::error::{ErrorClass, Errors, Pos, WorkflowErrors};
use super::expr::{Condition, EvalContext, GithubContext, Ref, Template};
use super::matrix::Cell;
use super::model::{EnvVar, Flag, Job, Step, Workflow};
use super::parse::parse_workflow;
use super::policy::{JobLimits, WorkflowPolicy};
use super::source::{WorkflowContent, WorkflowFile};
use super::trigger::{Push, Skip, ref_name};

/// What a push means for one workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The push does not trigger the workflow, and why.
    Skipped(Skip),
    Planned(Plan),
}

/// The jobs of one workflow run. Holds no secret: expressions that read
/// secrets stay templates until a step runs ([`PlannedJob::render_step`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The workflow file.
    pub workflow: String,
    /// The workflow's `name`, or its file.
    pub name: String,
    pub github: GithubContext,
    /// The workflow's `env`, unrendered.
    pub env: Vec<EnvVar>,
    /// Every job (matrix cells apart), each after the jobs it needs.
    pub jobs: Vec<PlannedJob>,
}

/// One job to run: a job of the workflow, or one cell of its matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedJob {
    /// Unique in the run: `build`, or `build (3.11, debian)` for a cell.
    pub id: String,
    /// The workflow's job id (`build`): what `needs` names.
    pub job_id: String,
    /// For display: the rendered `name`, else the id.
    pub name: String,
    pub matrix: Option<Cell>,
    /// The image the job runs in: `container.image` or the `runs-on` label's.
    pub image: String,
    pub limits: JobLimits,
    /// Job ids this job needs; each job with that `job_id` (every cell) must
    /// finish first.
    pub needs: Vec<String>,
    #[serde(rename = "if")]
    pub condition: Condition,
    pub continue_on_error: bool,
    /// Cancel the other cells of the same job when one fails.
    pub fail_fast: bool,
    /// At most this many cells of the same job at once.
    pub max_parallel: Option<u32>,
    /// The job's `env`, unrendered.
    pub env: Vec<EnvVar>,
    pub steps: Vec<Step>,
}

/// Decides whether `push` triggers `workflow` and plans its jobs under
/// `policy`. Errors (an unknown `runs-on` label, an image the policy does
/// not allow, a timeout above the policy's maximum) name file:line:column.
pub fn plan(
    workflow: &Workflow,
    push: &Push,
    policy: &WorkflowPolicy,
) -> Result<Outcome, WorkflowErrors> {
    if let Err(skip) = workflow.on.check(push) {
        return Ok(Outcome::Skipped(skip));
    }
    let github = GithubContext {
        sha: push.sha.clone(),
        git_ref: push.git_ref.clone(),
        ref_name: ref_name(&push.git_ref).to_owned(),
        repository: push.repository.clone(),
        event_name: "push".into(),
    };
    let mut errs = Errors::new(&workflow.file);
    let ids: Vec<&str> = workflow.jobs.iter().map(|j| j.id.as_str()).collect();
    let needs: Vec<Vec<String>> = workflow.jobs.iter().map(|j| j.needs.clone()).collect();
    // The parser already refused unknown needs and cycles.
    let order = dag::order(&ids, &needs).unwrap_or_else(|_| (0..ids.len()).collect());
    let mut jobs = Vec::new();
    for i in order {
        let job = &workflow.jobs[i];
        match &job.strategy {
            None => jobs.extend(plan_job(&mut errs, job, None, &github, policy)),
            Some(s) => {
                for cell in &s.cells {
                    jobs.extend(plan_job(&mut errs, job, Some(cell), &github, policy));
                }
            }
        }
    }
    errs.finish(Outcome::Planned(Plan {
        workflow: workflow.file.clone(),
        name: workflow
            .name
            .clone()
            .unwrap_or_else(|| workflow.file.clone()),
        github,
        env: workflow.env.clone(),
        jobs,
    }))
}

fn render(errs: &mut Errors, cx: &EvalContext<'_>, t: &Template, pos: Pos) -> Option<String> {
    t.render(cx)
        .map_err(|e| errs.push(pos, ErrorClass::Expression, e.message))
        .ok()
}

fn plan_job(
    errs: &mut Errors,
    job: &Job,
    cell: Option<&Cell>,
    github: &GithubContext,
    policy: &WorkflowPolicy,
) -> Option<PlannedJob> {
    let mut cx = EvalContext::new(github);
    cx.matrix = cell.map(|c| c.0.as_slice());
    let image = image(errs, &cx, job, policy)?;
    let limits = limits(errs, job, policy)?;
    let continue_on_error = match &job.continue_on_error {
        Flag::Fixed(b) => *b,
        Flag::Expr(t) => t
            .value(&cx)
            .map_err(|e| errs.push(job.pos, ErrorClass::Expression, e.message))
            .ok()?
            .truthy(),
    };
    let label_suffix = cell
        .map(|c| format!(" ({})", c.label()))
        .unwrap_or_default();
    let id = format!("{}{label_suffix}", job.id);
    let name = match &job.name {
        Some(t) => {
            let rendered = render(errs, &cx, t, job.pos)?;
            let mut reads_matrix = false;
            t.visit_refs(&mut |r| reads_matrix |= matches!(r, Ref::Matrix(_)));
            // As on GitHub: a name that does not show the matrix values
            // gets them appended.
            if reads_matrix {
                rendered
            } else {
                format!("{rendered}{label_suffix}")
            }
        }
        None => id.clone(),
    };
    Some(PlannedJob {
        id,
        job_id: job.id.clone(),
        name,
        matrix: cell.cloned(),
        image,
        limits,
        needs: job.needs.clone(),
        condition: job.condition.clone(),
        continue_on_error,
        fail_fast: job.strategy.as_ref().is_none_or(|s| s.fail_fast),
        max_parallel: job.strategy.as_ref().and_then(|s| s.max_parallel),
        env: job.env.clone(),
        steps: job.steps.clone(),
    })
}

/// The `runs-on` label's image, or `container.image` if the policy allows it.
fn image(
    errs: &mut Errors,
    cx: &EvalContext<'_>,
    job: &Job,
    policy: &WorkflowPolicy,
) -> Option<String> {
    let label = render(errs, cx, &job.runs_on.value, job.runs_on.pos)?;
    let labelled = match policy.image_for_label(&label) {
        Ok(image) => image.to_owned(),
        Err(e) => {
            errs.push(
                job.runs_on.pos,
                ErrorClass::Policy,
                format!("{e}; change `runs-on`"),
            );
            return None;
        }
    };
    let Some(c) = &job.container_image else {
        return Some(labelled);
    };
    let wanted = render(errs, cx, &c.value, c.pos)?;
    if !policy.image_allowed(&wanted) {
        errs.push(
            c.pos,
            ErrorClass::Policy,
            format!(
                "image `{wanted}` is not allowed by this server's workflow policy (allowed: {}): name an allowed image or remove `container`",
                policy.allowed_images_text()
            ),
        );
        return None;
    }
    Some(wanted)
}

/// The policy's defaults, with the job's `timeout-minutes` up to the
/// policy's maximum.
fn limits(errs: &mut Errors, job: &Job, policy: &WorkflowPolicy) -> Option<JobLimits> {
    let mut limits = policy.defaults;
    if let Some(t) = &job.timeout {
        if t.value > policy.max.wall_time {
            errs.push(
                t.pos,
                ErrorClass::Policy,
                format!(
                    "`timeout-minutes` is {}; this server allows at most {} minutes: lower it",
                    t.value.as_secs_f64() / 60.0,
                    policy.max.wall_time.as_secs() / 60
                ),
            );
            return None;
        }
        limits.wall_time = t.value;
    }
    Some(limits)
}

/// What one workflow file of a commit means for a push.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePlan {
    /// `.github/workflows/ci.yml`.
    pub path: String,
    pub result: Result<Outcome, WorkflowErrors>,
}

/// Parses and plans every workflow file read from a commit
/// ([`GitSource::workflow_files`](super::source::GitSource::workflow_files)):
/// a file that could not be read or parsed yields its errors, the others
/// their outcome, independently of each other.
pub fn plan_files(files: &[WorkflowFile], push: &Push, policy: &WorkflowPolicy) -> Vec<FilePlan> {
    files
        .iter()
        .map(|f| FilePlan {
            path: f.path.clone(),
            result: match &f.content {
                WorkflowContent::Text(text) => {
                    parse_workflow(&f.path, text).and_then(|w| plan(&w, push, policy))
                }
                WorkflowContent::Refused(why) => Err(Errors::new(&f.path)
                    .error(
                        Pos::new(1, 1),
                        ErrorClass::Limit,
                        format!("the file is not read: {why}"),
                    )
                    .into()),
            },
        })
        .collect()
}

impl Plan {
    pub fn job(&self, id: &str) -> Option<&PlannedJob> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The planned jobs (every cell) of the workflow job `job_id`.
    pub fn cells_of<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a PlannedJob> + 'a {
        self.jobs.iter().filter(move |j| j.job_id == job_id)
    }

    /// Workflow job ids `job` depends on, directly or through others: their
    /// results feed `failure()` in its `if`.
    pub fn ancestors(&self, job: &PlannedJob) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<&str> = job.needs.iter().map(String::as_str).collect();
        while let Some(id) = todo.pop() {
            if out.insert(id.to_owned())
                && let Some(j) = self.cells_of(id).next()
            {
                todo.extend(j.needs.iter().map(String::as_str));
            }
        }
        out
    }

    /// Every secret any job of the run may read.
    pub fn secrets(&self) -> BTreeSet<String> {
        self.jobs.iter().flat_map(|j| j.secrets(self)).collect()
    }
}
