//! `/v1/triggers`, `/v1/workflow-runs`: what pushes and API calls started,
//! each run's jobs and steps, logs, live events, and cancellation.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, require};
use super::model::rfc3339;
use super::repos::workflows;
use crate::service::auth::{Action, Principal};
use crate::service::store::NewAuditEntry;
use crate::service::store::workflows::{
    TriggerRecord, WorkflowCancel, WorkflowJobRecord, WorkflowRunRecord,
};
use crate::service::workflows::WorkflowEvent;

pub fn trigger_view(t: &TriggerRecord, runs: &[WorkflowRunRecord]) -> Value {
    json!({
        "id": t.id,
        "repo": t.repo_id,
        "commit": t.commit,
        "ref": t.git_ref,
        "event": t.event,
        "state": t.state,
        "message": t.message,
        "created_at": rfc3339(t.created_at),
        "runs": runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
    })
}

fn run_view(r: &WorkflowRunRecord) -> Value {
    json!({
        "id": r.id,
        "trigger": r.trigger_id,
        "repo": r.repo_id,
        "commit": r.commit,
        "ref": r.git_ref,
        "workflow": r.workflow,
        "name": r.name,
        "state": r.state,
        "message": r.message,
        "cancel_requested": r.cancel_requested,
        "created_at": rfc3339(r.created_at),
        "started_at": r.started_at.map(rfc3339),
        "finished_at": r.finished_at.map(rfc3339),
    })
}

fn job_view(j: &WorkflowJobRecord) -> Value {
    json!({
        "id": j.job_id,
        "name": j.name,
        "state": j.state,
        "steps": serde_json::from_str::<Value>(&j.steps).unwrap_or(Value::Array(vec![])),
        "message": j.message,
        "log_bytes": j.log_bytes,
        "started_at": j.started_at.map(rfc3339),
        "finished_at": j.finished_at.map(rfc3339),
    })
}

pub async fn trigger(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadWorkflows, "read workflow runs")?;
    let tenant = p.tenant.clone();
    let found = st
        .store
        .call(move |s| {
            let w = s.workflows(&tenant);
            Ok(match w.trigger(&id)? {
                Some(t) => {
                    let runs = w.runs_of_trigger(&t.id)?;
                    Some((t, runs))
                }
                None => None,
            })
        })
        .await?;
    let (t, runs) = found.ok_or_else(|| ApiError::not_found("trigger"))?;
    Ok(Json(trigger_view(&t, &runs)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    repo: Option<String>,
    commit: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Cursors of workflow run lists: `w1.<position>`, per tenant.
fn parse_cursor(c: &str) -> Result<i64, ApiError> {
    c.strip_prefix("w1.")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request("invalid_request", "cursor is not one this server gave")
        })
}

pub async fn list(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadWorkflows, "list workflow runs")?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit must be between 1 and 200",
        ));
    }
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let tenant = p.tenant.clone();
    let runs = st
        .store
        .call(move |s| {
            s.workflows(&tenant)
                .list(q.repo.as_deref(), q.commit.as_deref(), before, limit)
        })
        .await?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| format!("w1.{}", r.seq)))
        .flatten();
    Ok(Json(json!({
        "runs": runs.iter().map(run_view).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn visible(
    st: &AppState,
    p: &Principal,
    id: &str,
) -> Result<(WorkflowRunRecord, Vec<WorkflowJobRecord>), ApiError> {
    let (tenant, id) = (p.tenant.clone(), id.to_owned());
    st.store
        .call(move |s| s.workflows(&tenant).get(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("workflow run"))
}

pub async fn get(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadWorkflows, "read workflow runs")?;
    let (run, jobs) = visible(&st, &p, &id).await?;
    let mut v = run_view(&run);
    v["jobs"] = Value::Array(jobs.iter().map(job_view).collect());
    Ok(Json(v))
}

pub async fn log(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((id, job)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    require(&p, Action::ReadWorkflows, "read job logs")?;
    let tenant = p.tenant.clone();
    let log = st
        .store
        .call(move |s| s.workflows(&tenant).log(&id, &job))
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        String::from_utf8_lossy(&log).into_owned(),
    ))
}

pub async fn cancel(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require(&p, Action::CancelWorkflows, "cancel workflow runs")?;
    let wf = workflows(&st)?;
    let tenant = p.tenant.clone();
    let entry = NewAuditEntry {
        actor: p.actor(),
        tenant: Some(p.tenant_name.clone()),
        action: "workflow.cancel".into(),
        target: Some(id.clone()),
        detail: None,
    };
    let id2 = id.clone();
    let outcome = st
        .store
        .call(move |s| s.workflows(&tenant).cancel(&id2, &entry))
        .await?;
    let (status, state) = match outcome {
        WorkflowCancel::NotFound => return Err(ApiError::not_found("workflow run")),
        WorkflowCancel::Cancelled => (StatusCode::OK, "cancelled".to_owned()),
        WorkflowCancel::Requested => {
            wf.cancel(&id);
            wf.notify();
            (StatusCode::ACCEPTED, "cancelling".to_owned())
        }
        WorkflowCancel::AlreadyFinal(s) => (StatusCode::OK, s),
    };
    Ok((status, Json(json!({ "id": id, "state": state }))))
}

fn event(name: &str, data: Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

fn encode(ev: &WorkflowEvent) -> Result<Event, Infallible> {
    match ev {
        WorkflowEvent::Job { job, state } => event("job", json!({"job": job, "state": state})),
        WorkflowEvent::StepStarted { job, index, name } => event(
            "step",
            json!({"job": job, "index": index, "name": name, "state": "running"}),
        ),
        WorkflowEvent::Output {
            job,
            index,
            stream,
            text,
        } => event(
            "output",
            json!({"job": job, "index": index, "stream": stream.as_str(), "text": text}),
        ),
        WorkflowEvent::StepFinished { job, step } => {
            event("step", json!({"job": job, "step": step}))
        }
        WorkflowEvent::JobFinished(record) => event(
            "job",
            json!({"job": record.id, "state": record.state, "record": record}),
        ),
        WorkflowEvent::Finished { state } => event("run", json!({"state": state})),
    }
}

/// Server-sent events of a run: its output so far (the last 256 KiB;
/// `lagged` with `missed_bytes` first when older output was dropped), then
/// jobs, steps and output (masked) as they happen, then the run's end. A
/// run already over sends its state and ends.
pub async fn events(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    require(&p, Action::ReadWorkflows, "follow workflow runs")?;
    let wf = workflows(&st)?;
    let follow = wf.subscribe(&id);
    let (run, _) = visible(&st, &p, &id).await?;
    let done = !matches!(run.state.as_str(), "queued" | "running");
    let mut head = vec![event("run", json!({"state": run.state}))];
    if !done {
        if follow.dropped_bytes > 0 {
            head.push(event(
                "lagged",
                json!({"missed_bytes": follow.dropped_bytes}),
            ));
        }
        head.extend(follow.recent.iter().map(encode));
    }
    let live = futures_util::stream::unfold((follow.rx, done), |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        match rx.recv().await {
            Ok(ev) => {
                let last = matches!(ev, WorkflowEvent::Finished { .. });
                Some((encode(&ev), (rx, last)))
            }
            Err(RecvError::Lagged(n)) => {
                Some((event("lagged", json!({"missed_events": n})), (rx, false)))
            }
            Err(RecvError::Closed) => None,
        }
    });
    let stream = futures_util::stream::iter(head).chain(live);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
