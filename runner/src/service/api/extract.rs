//! Extractors: who is calling (API key, lockout and rate limits checked on
//! the way), and strict JSON bodies whose rejections use the API's errors.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::service::abuse::{Outcome, Refused};
use crate::service::auth::{
    Action, HashPoolError, KeyRefusal, Principal, Role, parse_key, usable_role, verify_secret,
};
use crate::service::store::{KeyRecord, NewAuditEntry};
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

/// The client's address: the TCP peer, or, behind the operator's proxies,
/// what the outermost of them saw (see [`forwarded_client`]).
pub fn client_ip(parts: &Parts, state: &AppState) -> String {
    let proxies = usize::from(state.config.trusted_proxies);
    if proxies > 0
        && let Some(ip) = forwarded_client(&parts.headers, proxies)
    {
        return ip.to_string();
    }
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The client of a request that came through `proxies` proxies of the
/// operator's, each appending the address it saw to `X-Forwarded-For`: the
/// `proxies`-th entry from the right. Entries left of it were written by the
/// client and are never believed. With fewer entries, the leftmost (still
/// written by one of the proxies). `None` without a usable entry.
pub fn forwarded_client(headers: &HeaderMap, proxies: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.get(entries.len().checked_sub(1)?.saturating_sub(proxies - 1))?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

fn too_many(code: &'static str, why: &str, retry: Duration) -> ApiError {
    ApiError::too_many(
        code,
        format!("{why}; retry in {} s", retry.as_secs().max(1)),
        retry.as_secs(),
    )
}

/// A refusal of the rate limits or lockout as the API's error; `whose`
/// says whose requests were too many ("from this address").
pub fn refused(state: &AppState, r: Refused, whose: &str) -> ApiError {
    match r {
        Refused::Locked(left) => too_many(
            "locked_out",
            "too many failed authentications from this address",
            left,
        ),
        Refused::Busy => too_many(
            "locked_out",
            "too many authentications from this address are being checked",
            Duration::from_secs(1),
        ),
        Refused::Limited(retry) => {
            state.metrics.rate_limited.inc();
            too_many("rate_limited", &format!("too many requests {whose}"), retry)
        }
        // Why refusing rather than letting the request through: see
        // `Abuse::run`.
        Refused::Unavailable => ApiError::unavailable(
            "the server cannot check its rate limits just now; retry in a few seconds",
        )
        .retry_after(5),
    }
}

/// Lockout, then the per-address rate limit.
async fn admit(state: &AppState, ip: &str) -> Result<(), ApiError> {
    state
        .abuse
        .admit(ip)
        .await
        .map_err(|r| refused(state, r, "from this address"))
}

/// The key presented, `Bearer <key>` or bare as Piston clients send it.
fn presented_key(parts: &Parts) -> Option<&str> {
    let text = parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .unwrap_or("")
        .trim();
    let text = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .unwrap_or(text);
    Some(text.trim())
}

async fn authenticate(
    parts: &Parts,
    state: &AppState,
    anonymous_ok: bool,
) -> Result<Principal, ApiError> {
    let ip = client_ip(parts, state);
    admit(state, &ip).await?;
    let Some(text) = presented_key(parts) else {
        // People on the web pages: the session cookie (and, to change
        // anything, its CSRF token).
        if let Some(p) =
            crate::service::web::session::authenticate(state, &parts.method, &parts.headers).await?
        {
            state
                .abuse
                .hit_key(&p.key_id)
                .await
                .map_err(|r| refused(state, r, "from this session"))?;
            return Ok(p);
        }
        if let Some(p) = state.anonymous.as_ref().filter(|_| anonymous_ok) {
            return Ok(p.clone());
        }
        state.metrics.auth_failures.inc();
        return Err(ApiError::unauthenticated());
    };
    let (record, role) = verify_key(state, &ip, text).await?;
    state
        .abuse
        .hit_key(&record.id)
        .await
        .map_err(|r| refused(state, r, "with this key"))?;
    Ok(Principal {
        tenant: record.tenant,
        tenant_name: record.tenant_name,
        key_id: record.id,
        role,
        environments: record.environments,
    })
}

/// Checks a presented key: its record, then (unless verified moments ago)
/// its secret. The slow hash is bounded twice: the attempt counts toward the
/// address's lockout before it starts, and at most
/// `auth.max_concurrent_verifications` run at once.
async fn verify_key(state: &AppState, ip: &str, text: &str) -> Result<(KeyRecord, Role), ApiError> {
    let Some((id, secret)) = parse_key(text) else {
        return Err(refuse(state, ip, None, KeyRefusal::Malformed, false).await);
    };
    let key_id = id.to_owned();
    let Some(record) = state.store.call(move |s| s.key(&key_id)).await? else {
        return Err(refuse(state, ip, Some((id, None)), KeyRefusal::Unknown, false).await);
    };
    let tenant = Some(&record.tenant_name);
    let role = match usable_role(&record) {
        Ok(role) => role,
        Err(why) => return Err(refuse(state, ip, Some((id, tenant)), why, false).await),
    };
    if state.verified.contains(text, &record) {
        return Ok((record, role));
    }
    let ticket = state
        .abuse
        .begin(ip)
        .await
        .map_err(|r| refused(state, r, "from this address"))?;
    let checked = bounded_verify(state, secret, &record).await;
    let outcome = match checked {
        Ok(Ok(())) => Outcome::Valid,
        Ok(Err(_)) => Outcome::Invalid,
        // Busy or broken on our side: not the client's failure.
        Err(_) => Outcome::Unchecked,
    };
    let locked = state
        .abuse
        .end(ip, ticket, outcome)
        .await
        .map_err(|r| refused(state, r, "from this address"))?;
    match checked {
        Ok(Ok(())) => {
            state.verified.remember(text, &record);
            Ok((record, role))
        }
        Ok(Err(why)) => Err(refuse(state, ip, Some((id, tenant)), why, locked).await),
        Err(e) => Err(e),
    }
}

/// Runs the slow hash on the key hash threads (bounded; see `HashPool`).
async fn bounded_verify(
    state: &AppState,
    secret: &str,
    record: &KeyRecord,
) -> Result<Result<(), KeyRefusal>, ApiError> {
    let (secret, record) = (secret.to_owned(), record.clone());
    match state
        .hashes
        .run(move || verify_secret(&secret, &record))
        .await
    {
        Ok(checked) => Ok(checked),
        Err(HashPoolError::Busy(_)) => Err(ApiError::unavailable(
            "the server is busy checking API keys; retry in a few seconds",
        )
        .retry_after(2)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// A failed authentication: counted, audited, and maybe a lockout. The client
/// learns only that the key is not valid.
/// `counted`: the failure was already counted (and `locked` is its outcome);
/// otherwise it is counted here.
async fn refuse(
    state: &AppState,
    ip: &str,
    key: Option<(&str, Option<&String>)>,
    why: KeyRefusal,
    locked: bool,
) -> ApiError {
    state.metrics.auth_failures.inc();
    let counted = matches!(why, KeyRefusal::WrongSecret);
    // A failure that could not be counted is still audited; the client
    // is then told to come back (see `Abuse::run`).
    let (locked, uncounted) = match counted {
        true => (locked, None),
        false => match state.abuse.fail(ip).await {
            Ok(locked) => (locked, None),
            Err(r) => (false, Some(refused(state, r, "from this address"))),
        },
    };
    let mut entries = vec![NewAuditEntry {
        actor: format!("ip:{ip}"),
        tenant: key.and_then(|(_, t)| t.cloned()),
        action: "auth.failure".into(),
        target: key.map(|(id, _)| format!("key:{id}")),
        detail: Some(why.as_str().into()),
    }];
    if locked {
        state.metrics.lockouts.inc();
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
    if let Some(answer) = uncounted {
        return answer;
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
    if crate::service::server::is_body_timeout(&rej) {
        return ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time; send it at once",
        );
    }
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
