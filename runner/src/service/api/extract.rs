//! Extractors: who is calling (API key, lockout and rate limits checked on
//! the way), and strict JSON bodies whose rejections use the API's errors.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::service::auth::{Action, KeyRefusal, Principal, parse_key};
use crate::service::store::NewAuditEntry;
use crate::service::tls::ClientAddr;

/// The caller, authenticated with an API key.
#[derive(Debug)]
pub struct Auth(pub Principal);

/// The caller of a Piston route: an API key, or the anonymous tenant when
/// the operator enabled one. Errors in Piston's shape.
#[derive(Debug)]
pub struct PistonAuth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state, false).await.map(Auth)
    }
}

impl FromRequestParts<AppState> for PistonAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state, true)
            .await
            .map(PistonAuth)
            .map_err(ApiError::piston)
    }
}

/// Refuses unless the principal's role allows `action`.
pub fn require(p: &Principal, action: Action, what: &str) -> Result<(), ApiError> {
    if p.role.can(action) {
        Ok(())
    } else {
        Err(ApiError::forbidden(what))
    }
}

/// The client's address: the TCP peer, or the first `X-Forwarded-For` hop
/// when the operator says a proxy of theirs sets it.
pub fn client_ip(parts: &Parts, state: &AppState) -> String {
    if state.config.trust_forwarded_for {
        if let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        {
            return first.to_owned();
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn authenticate(
    parts: &Parts,
    state: &AppState,
    anonymous_ok: bool,
) -> Result<Principal, ApiError> {
    let ip = client_ip(parts, state);
    let now = Instant::now();
    if let Some(left) = state.lockout.locked(&ip, now) {
        return Err(ApiError::too_many(
            "locked_out",
            format!(
                "too many failed authentications from this address; try again in {} s",
                left.as_secs().max(1)
            ),
            left.as_secs(),
        ));
    }
    if let Err(retry) = state.per_ip.hit(&ip, now) {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::too_many(
            "rate_limited",
            format!(
                "too many requests from this address; retry in {} s",
                retry.as_secs()
            ),
            retry.as_secs(),
        ));
    }
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        if anonymous_ok {
            if let Some(p) = &state.anonymous {
                return Ok(p.clone());
            }
        }
        state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::unauthenticated());
    };
    let text = header.to_str().unwrap_or("").trim();
    // `Bearer <key>`, or the bare key as Piston clients send it.
    let text = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .unwrap_or(text)
        .trim();
    let Some((id, secret)) = parse_key(text) else {
        return Err(refuse(state, &ip, None, KeyRefusal::Malformed).await);
    };
    let key_id = id.to_owned();
    let record = state.store.call(move |s| s.key(&key_id)).await?;
    let Some(record) = record else {
        return Err(refuse(state, &ip, Some((id, None)), KeyRefusal::Unknown).await);
    };
    // The slow hash runs on a blocking thread.
    let (st, text2, secret2, rec2) = (
        state.clone(),
        text.to_owned(),
        secret.to_owned(),
        record.clone(),
    );
    let checked = tokio::task::spawn_blocking(move || st.verified.check(&text2, &secret2, &rec2))
        .await
        .map_err(ApiError::internal)?;
    let role = match checked {
        Ok(role) => role,
        Err(reason) => {
            return Err(refuse(state, &ip, Some((id, Some(&record.tenant_name))), reason).await);
        }
    };
    state.lockout.succeed(&ip);
    if let Err(retry) = state.per_key.hit(&record.id, now) {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::too_many(
            "rate_limited",
            format!(
                "too many requests with this key; retry in {} s",
                retry.as_secs()
            ),
            retry.as_secs(),
        ));
    }
    Ok(Principal {
        tenant: record.tenant,
        tenant_name: record.tenant_name,
        key_id: record.id,
        role,
    })
}

/// A failed authentication: counted, audited, and maybe a lockout. The client
/// learns only that the key is not valid.
async fn refuse(
    state: &AppState,
    ip: &str,
    key: Option<(&str, Option<&String>)>,
    why: KeyRefusal,
) -> ApiError {
    state.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
    let locked = state.lockout.fail(ip, Instant::now());
    let mut entries = vec![NewAuditEntry {
        actor: format!("ip:{ip}"),
        tenant: key.and_then(|(_, t)| t.cloned()),
        action: "auth.failure".into(),
        target: key.map(|(id, _)| format!("key:{id}")),
        detail: Some(why.as_str().into()),
    }];
    if locked {
        state.metrics.lockouts.fetch_add(1, Ordering::Relaxed);
        entries.push(NewAuditEntry {
            actor: "system".into(),
            tenant: None,
            action: "auth.lockout".into(),
            target: Some(format!("ip:{ip}")),
            detail: Some(format!(
                "{} failed authentications within {} s; locked for {} s",
                state.config.lockout_failures,
                state.config.lockout_window.as_secs(),
                state.config.lockout_duration.as_secs()
            )),
        });
    }
    if let Err(e) = state
        .store
        .call(move |s| {
            for e in &entries {
                s.audit().append(e)?;
            }
            Ok(())
        })
        .await
    {
        tracing::error!(error = %e, "could not audit a failed authentication");
    }
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "the API key is not valid (unknown, revoked or mistyped)",
    )
}

/// A query string, strictly parsed; a malformed one is answered with the
/// API's JSON error, like every other bad input.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|rej| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("the query string is not valid: {}", rej.body_text()),
                )
            })
    }
}

/// A JSON body, strictly parsed; rejections are API errors that say what was
/// wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON body of a Piston route: the same, with Piston's error shape.
#[derive(Debug)]
pub struct PistonJson<T>(pub T);

pub fn json_rejection(rej: JsonRejection, max_body: usize) -> ApiError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON, with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_request", e.body_text()),
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the server's limit of {max_body} bytes"),
            )
        }
        other => ApiError::bad_request("invalid_request", other.body_text()),
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(|r| json_rejection(r, state.config.max_body_bytes))
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for PistonJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| PistonJson(v))
            .map_err(|r| json_rejection(r, state.config.max_body_bytes).piston())
    }
}
