//! Run-time evaluation of a planned job: whether it runs, and each step
//! rendered with secrets masked (for what is shown or stored) or real (for
//! what the step runs with, and nothing else).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::expr::{EvalContext, EvalError, JobResult, Secrets, Status, Template};
use super::model::{Action, EnvVar, Flag, Shell};
use super::plan::{Plan, PlannedJob};

/// Where a job's run stands when a step is about to start.
#[derive(Debug, Clone, Copy)]
pub struct StepState<'a> {
    /// Results of the workflow jobs this job needs (`needs.<id>.result`).
    pub needs: &'a BTreeMap<String, JobResult>,
    /// An earlier step failed (steps with `continue-on-error` not counted).
    pub job_failed: bool,
    /// The run is being cancelled.
    pub cancelled: bool,
}

/// A step ready to run: every expression evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStep {
    pub index: usize,
    /// `name`, else the script's first line, else `Checkout`.
    pub name: String,
    pub action: RenderedAction,
    /// The step's whole environment from the workflow: workflow, job and
    /// step `env`, later ones winning.
    pub env: BTreeMap<String, String>,
    /// Relative to the workspace.
    pub working_directory: Option<String>,
    pub continue_on_error: bool,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedAction {
    /// Write `script` to a file and run `shell.command(file)`.
    Run { script: String, shell: Shell },
    /// Nothing to do: the workspace already holds the commit.
    Checkout,
}

fn render_env(
    layer: &[EnvVar],
    cx: &EvalContext<'_>,
    into: &mut BTreeMap<String, String>,
) -> Result<(), EvalError> {
    for v in layer {
        into.insert(v.name.clone(), v.value.render(cx)?);
    }
    Ok(())
}

fn secrets_of(
    templates: impl IntoIterator<Item = impl std::borrow::Borrow<Template>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in templates {
        t.borrow().secrets(&mut out);
    }
    out
}

impl PlannedJob {
    fn context<'a>(&'a self, plan: &'a Plan) -> EvalContext<'a> {
        let mut cx = EvalContext::new(&plan.github);
        cx.matrix = self.matrix.as_ref().map(|c| c.0.as_slice());
        cx
    }

    /// Whether the job runs, from its `if` (default `success()`): `needs`
    /// holds the results of the jobs it needs, `ancestors` those of every
    /// job it depends on through them (see [`Plan::ancestors`]).
    pub fn should_run(
        &self,
        plan: &Plan,
        needs: &BTreeMap<String, JobResult>,
        ancestors: &[JobResult],
        cancelled: bool,
    ) -> Result<bool, EvalError> {
        let direct: Vec<JobResult> = self
            .needs
            .iter()
            .map(|id| needs.get(id).copied().unwrap_or(JobResult::Skipped))
            .collect();
        let mut cx = self.context(plan);
        cx.needs = Some(needs);
        cx.status = Some(Status::for_job(&direct, ancestors, cancelled));
        self.condition.evaluate(&cx)
    }

    /// The secrets step `index` reads: its own expressions and the
    /// workflow's and job's `env` (which every step receives). The runner
    /// injects only these into the step.
    pub fn step_secrets(&self, plan: &Plan, index: usize) -> BTreeSet<String> {
        let Some(step) = self.steps.get(index) else {
            return BTreeSet::new();
        };
        let mut templates: Vec<&Template> = plan
            .env
            .iter()
            .chain(&self.env)
            .chain(&step.env)
            .map(|v| &v.value)
            .collect();
        templates.extend(step.name.iter());
        templates.extend(step.working_directory.iter());
        if let Action::Run { script, .. } = &step.action {
            templates.push(script);
        }
        secrets_of(templates)
    }

    /// Every secret any step of the job reads.
    pub fn secrets(&self, plan: &Plan) -> BTreeSet<String> {
        (0..self.steps.len())
            .flat_map(|i| self.step_secrets(plan, i))
            .collect()
    }

    /// Step `index`, rendered; `None` when its `if` says it does not run.
    /// Decide and run with [`Secrets::Real`] (an `if` may compare an `env`
    /// value that came from a secret); render with [`Secrets::Masked`] for
    /// what is logged or stored.
    pub fn render_step(
        &self,
        plan: &Plan,
        index: usize,
        state: StepState<'_>,
        secrets: Secrets<'_>,
    ) -> Result<Option<RenderedStep>, EvalError> {
        let step = self.steps.get(index).ok_or_else(|| EvalError {
            message: format!("job `{}` has no step {index}", self.id),
        })?;
        let mut cx = self.context(plan);
        cx.needs = Some(state.needs);
        cx.secrets = secrets;
        // `env` values see the layers above them, as on GitHub.
        let mut env = BTreeMap::new();
        render_env(&plan.env, &cx, &mut env)?;
        render_env(&self.env, &cx, &mut env)?;
        let outer = env.clone();
        {
            let mut step_cx = cx;
            step_cx.env = Some(&outer);
            render_env(&step.env, &step_cx, &mut env)?;
        }
        cx.env = Some(&env);
        cx.status = Some(Status::for_step(state.job_failed, state.cancelled));
        if !step.condition.evaluate(&cx)? {
            return Ok(None);
        }
        cx.status = None;
        let action = match &step.action {
            Action::Run { script, shell } => RenderedAction::Run {
                script: script.render(&cx)?,
                shell: *shell,
            },
            Action::Checkout { .. } => RenderedAction::Checkout,
        };
        let name = match (&step.name, &action) {
            (Some(n), _) => n.render(&cx)?,
            (None, RenderedAction::Run { script, .. }) => {
                format!(
                    "Run {}",
                    script
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                )
            }
            (None, RenderedAction::Checkout) => "Checkout".into(),
        };
        let continue_on_error = match &step.continue_on_error {
            Flag::Fixed(b) => *b,
            Flag::Expr(t) => t.value(&cx)?.truthy(),
        };
        Ok(Some(RenderedStep {
            index,
            name,
            action,
            working_directory: step
                .working_directory
                .as_ref()
                .map(|w| w.render(&cx))
                .transpose()?,
            env,
            continue_on_error,
            timeout: step.timeout,
        }))
    }
}
