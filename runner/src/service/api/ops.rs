//! Operations endpoints: health, readiness, metrics, languages, the OpenAPI
//! document and security.txt.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, require};
use crate::service::auth::Action;

/// The OpenAPI document, kept by hand next to the handlers it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers and the job backend answers.
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    // Bounded like the engine's check: a database cut off by the network
    // must make this runner unready at once, not hang the probe.
    let store_ok = matches!(
        tokio::time::timeout(Duration::from_secs(3), st.store.call(|s| s.ping())).await,
        Ok(Ok(()))
    );
    let backend = std::sync::Arc::clone(st.sandbox.backend());
    let engine_ok = matches!(
        tokio::time::timeout(Duration::from_secs(3), backend.ping()).await,
        Ok(Ok(()))
    );
    let status = if store_ok && engine_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not ready" },
            "checks": { "store": word(store_ok), "engine": word(engine_ok) },
        })),
    )
}

pub async fn metrics(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (queued, _) = st.store.call(|s| s.queue().depth()).await?;
    let text = st.metrics.render(
        queued,
        st.scheduler.running_now(),
        st.sandbox.backend().stats(),
        st.sandbox.backend().pool().as_deref(),
    );
    Ok((
        [(header::CONTENT_TYPE, crate::service::metrics::CONTENT_TYPE)],
        text,
    ))
}

pub async fn languages(
    State(st): State<AppState>,
    Auth(p): Auth,
) -> Result<impl IntoResponse, ApiError> {
    require(&p, Action::ListLanguages, "list languages")?;
    let list: Vec<_> = st
        .sandbox
        .catalog()
        .languages()
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "version": l.version,
                "aliases": l.aliases,
                "compiled": l.compile.is_some(),
                // A name the language accepts for a one-file program.
                "file": l.test_file,
            })
        })
        .collect();
    Ok(Json(list))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn security_txt(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        st.security_txt.clone(),
    )
}

/// Under `/api/v2`, errors take Piston's shape (`{"message": ...}`).
fn shaped(uri: &Uri, e: ApiError) -> ApiError {
    if uri.path() == "/api/v2" || uri.path().starts_with("/api/v2/") {
        e.piston()
    } else {
        e
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    shaped(&uri, ApiError::not_found("this path"))
}

pub async fn method_not_allowed(uri: Uri) -> ApiError {
    shaped(
        &uri,
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not answer this method; see /v1/openapi.json",
        ),
    )
}
