//! `POST /v1/hooks/github?repo=ID`: GitHub's push webhooks. The signature
//! (HMAC-SHA256 of the raw body with the repository's webhook secret) is
//! checked in constant time before the body is read as JSON; a delivery
//! seen before is answered without a second run; other events are
//! acknowledged and ignored. The push is stored before the answer: an
//! accepted push survives a crash.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::repos::{branch_filter, workflows};
use crate::service::store::NewAuditEntry;
use crate::service::store::workflows::{NewTrigger, Triggered};
use crate::workflow::trigger::ref_name;
use crate::workflow::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, Event, Headers, SIGNATURE_HEADER, WebhookError, receive,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookQuery {
    /// The repository's id, as `/v1/repos` gave it.
    repo: String,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub async fn github(
    State(st): State<AppState>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wf = workflows(&st)?;
    let json = header(&headers, "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "deliveries must be JSON: set the webhook's content type to application/json",
        ));
    }
    let id = q.repo.clone();
    let found = st.store.call(move |s| s.repo_for_webhook(&id)).await?;
    // Unknown repository and wrong signature look alike to the sender.
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the delivery's X-Hub-Signature-256 does not match this repository's webhook secret",
        )
    };
    let (repo, sealed) = found.ok_or_else(refused)?;
    let secret = wf.secrets().open(&sealed).map_err(ApiError::internal)?;
    let h = Headers {
        event: header(&headers, EVENT_HEADER),
        delivery: header(&headers, DELIVERY_HEADER),
        signature: header(&headers, SIGNATURE_HEADER),
    };
    let delivery = match receive(h, &secret, &body) {
        Ok(d) => d,
        Err(
            WebhookError::BadSignature
            | WebhookError::MissingSignature
            | WebhookError::MalformedSignature,
        ) => return Err(refused()),
        Err(e) => return Err(ApiError::bad_request("invalid_delivery", e.to_string())),
    };
    let push = match delivery.event {
        Event::Ping { .. } => {
            let (d, r) = (delivery.id.clone(), repo.id.clone());
            st.store.call(move |s| s.delivery_seen(&d, &r)).await?;
            return Ok((StatusCode::OK, Json(json!({"message": "pong"}))));
        }
        Event::Ignored { event } => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"message": format!("event {event:?} is acknowledged and ignored; only pushes run workflows")}),
                ),
            ));
        }
        Event::Push(p) => p,
    };
    let Some(to_run) = push.to_push() else {
        let (d, r) = (delivery.id.clone(), repo.id.clone());
        st.store.call(move |s| s.delivery_seen(&d, &r)).await?;
        return Ok((
            StatusCode::OK,
            Json(json!({"message": "a deleted ref runs nothing"})),
        ));
    };
    let wanted = branch_filter(&repo.branches)
        .map_err(ApiError::internal)?
        .is_none_or(|f| {
            !to_run.git_ref.starts_with("refs/heads/") || f.selects(ref_name(&to_run.git_ref))
        });
    if !wanted {
        let (d, r) = (delivery.id.clone(), repo.id.clone());
        st.store.call(move |s| s.delivery_seen(&d, &r)).await?;
        return Ok((
            StatusCode::OK,
            Json(
                json!({"message": format!("branch {} does not run workflows of this repository", ref_name(&to_run.git_ref))}),
            ),
        ));
    }
    let entry = NewAuditEntry {
        actor: format!("webhook:{}", delivery.id),
        tenant: None,
        action: "workflow.trigger".into(),
        target: Some(repo.name.clone()),
        detail: Some(format!("push {} {}", to_run.git_ref, to_run.sha)),
    };
    let did = delivery.id.clone();
    let triggered = st
        .store
        .call(move |s| {
            s.trigger(
                &NewTrigger {
                    repo: &repo,
                    commit: &to_run.sha,
                    git_ref: &to_run.git_ref,
                    event: "push",
                    actor: &entry.actor,
                    changed_paths: to_run.changed_paths.as_deref(),
                    delivery: Some(&did),
                },
                &entry,
            )
        })
        .await?;
    match triggered {
        Triggered::Queued(t) => {
            wf.notify();
            Ok((
                StatusCode::ACCEPTED,
                Json(super::workflows::trigger_view(&t, &[])),
            ))
        }
        Triggered::Replayed { trigger } => Ok((
            StatusCode::OK,
            Json(
                json!({"message": "this delivery was received before; nothing new runs", "trigger": trigger}),
            ),
        )),
    }
}
