//! Reading a workflow file into a checked [`Workflow`]. Every error names
//! the file, line and column and says what to change; all errors of a file
//! are reported together (up to [`MAX_ERRORS`](super::error::MAX_ERRORS)).

mod job;
mod on;
mod read;
mod step;
mod strategy;

pub use read::MAX_ENV_VARS;

use super::dag::{self, DagError};
use super::error::{ErrorClass, Errors, Pos, WorkflowErrors};
use super::expr::Scope;
use super::matrix::MAX_CELLS;
use super::model::{Job, Workflow};
use super::yaml::{self, Node, YAML_LIMITS};
use read::{check_keys, get, map, text};

/// At most this many jobs in a workflow.
pub const MAX_JOBS: usize = 100;
/// At most this many steps in a job.
pub const MAX_STEPS: usize = 100;
/// At most this many jobs may a workflow expand to, matrix cells counted
/// (GitHub's bound for a matrix, applied to the whole run).
pub const MAX_RUN_JOBS: usize = MAX_CELLS;

const TOP_KEYS: &[&str] = &["name", "on", "env", "jobs"];
const TOP_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "run-name",
        "runs are named after the workflow's `name`; remove it",
    ),
    (
        "permissions",
        "jobs here get no GitHub token, so there is nothing to grant; remove it",
    ),
    ("concurrency", "every push runs; remove it"),
    (
        "defaults",
        "set `shell` and `working-directory` on each step instead",
    ),
];

/// Where workflow-level `env` values may read: `github` and `secrets`.
const WORKFLOW_ENV: Scope<'static> = Scope {
    place: "the workflow's `env`",
    secrets: true,
    ..Scope::GITHUB_ONLY
};

/// Parses the workflow `file` (its path, for messages) from `text`.
pub fn parse_workflow(file: &str, text: &str) -> Result<Workflow, WorkflowErrors> {
    let mut errs = Errors::new(file);
    let root = match yaml::parse(text, YAML_LIMITS) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(errs
                .error(
                    Pos::new(1, 1),
                    ErrorClass::MissingKey,
                    "the file is empty: a workflow needs `on` and `jobs`",
                )
                .into());
        }
        Err(e) => return Err(errs.error(e.pos, e.class, e.message).into()),
    };
    let workflow = read_workflow(&mut errs, &root);
    errs.finish(())
        .and(workflow.ok_or_else(|| unreachable_errors(file)))
}

/// `read_workflow` returns `None` only after reporting an error; this keeps
/// that promise checkable instead of panicking.
fn unreachable_errors(file: &str) -> WorkflowErrors {
    Errors::new(file)
        .error(
            Pos::new(1, 1),
            ErrorClass::Syntax,
            "the workflow could not be read",
        )
        .into()
}

fn read_workflow(errs: &mut Errors, root: &Node) -> Option<Workflow> {
    let top = map(errs, root, "a workflow file")?;
    check_keys(errs, top, "the workflow", TOP_KEYS, TOP_UNSUPPORTED);
    let name = get(top, "name")
        .and_then(|(_, n)| text(errs, n, "the workflow's `name`"))
        .map(|s| s.text.clone());
    let on = match get(top, "on") {
        Some((_, n)) => on::read(errs, n),
        None => {
            errs.push(
                root.pos,
                ErrorClass::MissingKey,
                "the workflow has no `on`: add `on: push`",
            );
            None
        }
    };
    let env = get(top, "env")
        .map(|(_, n)| read::env(errs, n, "the workflow", &WORKFLOW_ENV))
        .unwrap_or_default();
    let jobs = match get(top, "jobs") {
        Some((k, n)) => read_jobs(errs, k.pos, n),
        None => {
            errs.push(
                root.pos,
                ErrorClass::MissingKey,
                "the workflow has no `jobs`: add at least one job",
            );
            Vec::new()
        }
    };
    Some(Workflow {
        file: errs.file().to_owned(),
        name,
        on: on?,
        env,
        jobs,
    })
}

fn read_jobs(errs: &mut Errors, key_pos: Pos, node: &Node) -> Vec<Job> {
    let Some(entries) = map(errs, node, "`jobs`") else {
        return Vec::new();
    };
    if entries.is_empty() {
        errs.push(
            key_pos,
            ErrorClass::MissingKey,
            "`jobs` is empty: add at least one job",
        );
        return Vec::new();
    }
    if entries.len() > MAX_JOBS {
        errs.push(
            key_pos,
            ErrorClass::Limit,
            format!("the workflow has {} jobs; at most {MAX_JOBS} are allowed: split it into several workflows", entries.len()),
        );
        return Vec::new();
    }
    let jobs: Vec<Job> = entries
        .iter()
        .filter_map(|(id, n)| job::read(errs, id, n))
        .collect();
    if jobs.len() == entries.len() {
        check_needs(errs, entries, &jobs);
        let expanded: usize = jobs
            .iter()
            .map(|j| j.strategy.as_ref().map_or(1, |s| s.cells.len()))
            .sum();
        if expanded > MAX_RUN_JOBS {
            errs.push(
                key_pos,
                ErrorClass::Limit,
                format!("the workflow expands to {expanded} jobs (matrix cells counted); at most {MAX_RUN_JOBS} are allowed"),
            );
        }
    }
    jobs
}

/// Unknown needs and cycles, reported at the `needs` entry concerned.
fn check_needs(errs: &mut Errors, entries: read::Entries<'_>, jobs: &[Job]) {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let needs: Vec<Vec<String>> = jobs.iter().map(|j| j.needs.clone()).collect();
    let Err(problems) = dag::order(&ids, &needs) else {
        return;
    };
    // Where job `j`'s need number `n` is written.
    let need_pos = |j: usize, n: usize| -> Pos {
        let node = &entries[j].1;
        let Some((_, needs)) = node.as_map().and_then(|m| get(m, "needs")) else {
            return node.pos;
        };
        needs
            .as_seq()
            .and_then(|s| s.get(n))
            .map_or(needs.pos, |e| e.pos)
    };
    for p in problems {
        match p {
            DagError::Unknown { job, need } => {
                let name = &jobs[job].needs[need];
                let hint = super::suggest::did_you_mean(name, ids.iter().copied());
                let message = if hint.is_empty() {
                    format!(
                        "job `{}` needs `{name}`, which is not a job of this workflow (its jobs: {})",
                        jobs[job].id,
                        ids.join(", ")
                    )
                } else {
                    format!(
                        "job `{}` needs `{name}`, which is not a job of this workflow{hint}",
                        jobs[job].id
                    )
                };
                errs.push(need_pos(job, need), ErrorClass::Dependency, message);
            }
            DagError::Cycle(cycle) => {
                let first = cycle[0];
                let next = cycle.get(1).copied().unwrap_or(first);
                let n = jobs[first]
                    .needs
                    .iter()
                    .position(|x| *x == jobs[next].id)
                    .unwrap_or(0);
                let path: Vec<&str> = cycle
                    .iter()
                    .chain(std::iter::once(&first))
                    .map(|&j| jobs[j].id.as_str())
                    .collect();
                errs.push(
                    need_pos(first, n),
                    ErrorClass::Dependency,
                    format!(
                        "`needs` forms a cycle: {}; remove one of these needs",
                        path.join(" → ")
                    ),
                );
            }
        }
    }
}
