//! `/v1/runs`: submit, read, list, cancel, and follow runs.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Auth, require};
use super::model::{RunSummary, RunView, StageView, SubmitRun, compact, request_error};
use crate::sandbox::{PreparedRun, SandboxEvent, new_job_id};
use crate::service::auth::{Action, Principal};
use crate::service::scheduler::RunEvent;
use crate::service::spec::JobSpec;
use crate::service::store::{CancelOutcome, NewAuditEntry, NewRun, RunRecord, Submitted};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// Wait (up to the server's bound) for the verdict before answering.
    #[serde(default)]
    wait: bool,
    /// Also show each stage's combined `output`.
    #[serde(default)]
    combined: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Also show each stage's combined `output`.
    #[serde(default)]
    combined: bool,
}

/// Checks, queues durably, and (with `?wait=true`) waits for the verdict.
pub async fn submit(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<SubmitQuery>,
    ApiJson(body): ApiJson<SubmitRun>,
) -> Result<Response, ApiError> {
    require(&p, Action::SubmitRun, "submit runs")?;
    let request = body.into_request()?;
    let id = new_job_id();
    let prepared = st
        .sandbox
        .prepare_as(id.clone(), request)
        .map_err(request_error)?;
    let rec = enqueue(&st, &p, &prepared).await?;
    let view = if q.wait {
        st.scheduler
            .wait_final(&p.tenant, &id, st.config.wait_timeout)
            .await?
            .unwrap_or(rec)
    } else {
        rec
    };
    let status = if view.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut resp = (status, Json(RunView::new(view, q.combined))).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/runs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Stores a checked run's job spec in the queue (or refuses: queue full)
/// and audits it.
pub async fn enqueue(
    st: &AppState,
    p: &Principal,
    run: &PreparedRun,
) -> Result<RunRecord, ApiError> {
    let bytes = JobSpec::from_prepared(run).encode();
    let capacity = st.config.queue_capacity;
    let (tenant, key, id2, lang, ver) = (
        p.tenant.clone(),
        p.key_id.clone(),
        run.id.clone(),
        run.language.name.clone(),
        run.language.version.clone(),
    );
    let audit = NewAuditEntry {
        actor: p.actor(),
        tenant: Some(p.tenant_name.clone()),
        action: "run.submit".into(),
        target: Some(format!("run:{}", run.id)),
        detail: Some(run.language.name.clone()),
    };
    let submitted = st
        .store
        .call(move |s| {
            let run = NewRun {
                id: &id2,
                key_id: &key,
                language: &lang,
                version: &ver,
                request: &bytes,
            };
            s.runs(&tenant).submit(&run, capacity, Some(&audit))
        })
        .await?;
    match submitted {
        Submitted::Queued(rec) => {
            st.scheduler.notify();
            Ok(*rec)
        }
        Submitted::QueueFull { capacity } => {
            st.metrics.queue_full.inc();
            Err(ApiError::too_many(
                "queue_full",
                format!("the queue is full ({capacity} runs waiting); retry later"),
                5,
            ))
        }
    }
}

/// The run if this principal may see it: their tenant's, and their own
/// unless their role reads the whole tenant's. Otherwise "not found", so ids
/// of others' runs reveal nothing.
async fn visible(st: &AppState, p: &Principal, id: &str) -> Result<RunRecord, ApiError> {
    let (tenant, id2) = (p.tenant.clone(), id.to_owned());
    let rec = st.store.call(move |s| s.runs(&tenant).get(&id2)).await?;
    match rec {
        Some(r) if r.key_id == p.key_id || p.role.can(Action::ReadTenantRuns) => Ok(r),
        _ => Err(ApiError::not_found(&format!("run {id}"))),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<RunView>, ApiError> {
    require(&p, Action::ReadOwnRuns, "read runs")?;
    Ok(Json(RunView::new(visible(&st, &p, &id).await?, q.combined)))
}

/// List cursors: opaque to clients; a position among the tenant's own runs
/// only, so nothing in them tells how busy other tenants are.
mod cursor {
    use base64::Engine as _;

    const PREFIX: &str = "c1.";
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    /// Longest cursor accepted (ours are far shorter).
    pub const MAX_LEN: usize = 64;

    pub fn encode(tenant_seq: i64) -> String {
        format!("{PREFIX}{}", B64.encode(tenant_seq.to_be_bytes()))
    }

    pub fn decode(text: &str) -> Option<i64> {
        if text.len() > MAX_LEN {
            return None;
        }
        let bytes = B64.decode(text.strip_prefix(PREFIX)?).ok()?;
        Some(i64::from_be_bytes(bytes.try_into().ok()?)).filter(|n| *n > 0)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn cursors_round_trip_and_refuse_anything_else() {
            let c = super::encode(42);
            assert_eq!(super::decode(&c), Some(42));
            for bad in ["", "42", "c1.", "c1.!!", "c1.AAAA", &"c".repeat(100)] {
                assert_eq!(super::decode(bad), None, "{bad}");
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1-100 (default 20).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only runs submitted with this key (always so for learners).
    #[serde(default)]
    mine: bool,
}

pub async fn list(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&p, Action::ReadOwnRuns, "read runs")?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 100",
        ));
    }
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(cursor::decode(c).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "cursor must be the next_cursor of a previous page",
            )
        })?),
    };
    let only = (q.mine || !p.role.can(Action::ReadTenantRuns)).then(|| p.key_id.clone());
    let tenant = p.tenant.clone();
    let runs = st
        .store
        .call(move |s| s.runs(&tenant).list(cursor, limit + 1, only.as_deref()))
        .await?;
    let more = runs.len() > limit;
    let page: Vec<RunRecord> = runs.into_iter().take(limit).collect();
    let next = if more {
        page.last().map(|r| cursor::encode(r.tenant_seq))
    } else {
        None
    };
    Ok(Json(json!({
        "runs": page.into_iter().map(RunSummary::from).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// Cancels a queued run at once, or stops a running one and removes its
/// container.
pub async fn cancel(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let rec = visible(&st, &p, &id).await?;
    if rec.key_id == p.key_id {
        require(&p, Action::CancelOwnRuns, "cancel runs")?;
    } else {
        require(&p, Action::CancelTenantRuns, "cancel other keys' runs")?;
    }
    let (tenant, id2) = (p.tenant.clone(), id.clone());
    let audit = NewAuditEntry {
        actor: p.actor(),
        tenant: Some(p.tenant_name.clone()),
        action: "run.cancel".into(),
        target: Some(format!("run:{id}")),
        detail: None,
    };
    let outcome = st
        .store
        .call(move |s| {
            let o = s.runs(&tenant).cancel(&id2)?;
            if matches!(o, CancelOutcome::Cancelled(_) | CancelOutcome::Requested(_)) {
                s.audit().append(&audit)?;
            }
            Ok(o)
        })
        .await?;
    match outcome {
        CancelOutcome::NotFound => Err(ApiError::not_found(&format!("run {id}"))),
        CancelOutcome::AlreadyFinal(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_final",
            format!(
                "run {id} is already {}; there is nothing to cancel",
                r.state.as_str()
            ),
        )),
        CancelOutcome::Cancelled(r) => {
            st.scheduler.announce_final(r.clone());
            Ok(Json(r.into()))
        }
        CancelOutcome::Requested(r) => {
            st.scheduler.cancel(&id);
            let done = st
                .scheduler
                .wait_final(&p.tenant, &id, Duration::from_secs(30))
                .await?
                .unwrap_or(r);
            Ok(Json(done.into()))
        }
    }
}

fn event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// Server-sent events: `state` changes, `output` as it is produced, `stage`
/// ends, and finally `result` (the run as `GET` shows it).
pub async fn events(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    require(&p, Action::ReadOwnRuns, "read runs")?;
    // Subscribe first: nothing published between the read and the
    // subscription is lost.
    let rx = st.scheduler.subscribe(&id);
    let rec = visible(&st, &p, &id).await?;
    if !rec.state.is_final() {
        st.scheduler.ask_relay(&id);
    }
    let first = event("state", json!({ "state": rec.state.as_str() }));
    let stream = futures_util::stream::unfold(
        (Some(first), rx, rec.state.is_final().then_some(rec), false),
        |(first, mut rx, done, finished)| async move {
            if finished {
                return None;
            }
            if let Some(ev) = first {
                return Some((ev, (None, rx, done, false)));
            }
            if let Some(rec) = done {
                let view = serde_json::to_value(RunView::new(rec, true)).unwrap_or_default();
                return Some((event("result", view), (None, rx, None, true)));
            }
            let (ev, done) = match rx.recv().await {
                Ok(RunEvent::Started) => (event("state", json!({ "state": "running" })), None),
                Ok(RunEvent::Sandbox(SandboxEvent::StageStarted(stage))) => (
                    event(
                        "stage",
                        json!({ "stage": stage.as_str(), "state": "started" }),
                    ),
                    None,
                ),
                Ok(RunEvent::Sandbox(SandboxEvent::Output {
                    stage,
                    stream,
                    text,
                })) => {
                    let (text, encoding) = compact(&text);
                    let data = json!({ "stage": stage.as_str(), "stream": stream.as_str(), "text": text, "encoding": encoding });
                    (event("output", data), None)
                }
                Ok(RunEvent::Sandbox(SandboxEvent::StageFinished { stage, result })) => {
                    let result = StageView::new(&result, false);
                    let data =
                        json!({ "stage": stage.as_str(), "state": "finished", "result": result });
                    (event("stage", data), None)
                }
                Ok(RunEvent::Done(rec)) => (
                    event("state", json!({ "state": rec.state.as_str() })),
                    Some(*rec),
                ),
                Ok(RunEvent::Lagged(n)) | Err(RecvError::Lagged(n)) => {
                    (event("lagged", json!({ "missed_events": n })), None)
                }
                Err(RecvError::Closed) => return None,
            };
            Some((ev, (None, rx, done, false)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
