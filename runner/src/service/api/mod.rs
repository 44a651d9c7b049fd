//! The HTTP API: routes, shared state, and the middleware every response
//! passes through (request ids, security headers, access log, metrics).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use tracing::{Instrument, info, info_span};

pub mod error;
pub mod extract;
pub mod keys;
pub mod model;
pub mod ops;
pub mod piston;
pub mod runs;

use super::abuse::{Lockout, SlidingWindow};
use super::auth::{Principal, VerifiedCache};
use super::config::ServiceConfig;
use super::metrics::Metrics;
use super::scheduler::Scheduler;
use super::store::Store;
use crate::sandbox::Sandbox;

/// Everything handlers share.
#[derive(Debug)]
pub struct Shared {
    pub config: ServiceConfig,
    pub store: Store,
    pub sandbox: Arc<Sandbox>,
    pub scheduler: Arc<Scheduler>,
    pub metrics: Arc<Metrics>,
    pub verified: VerifiedCache,
    pub per_ip: SlidingWindow,
    pub per_key: SlidingWindow,
    pub lockout: Lockout,
    /// The principal of anonymous Piston requests, when enabled.
    pub anonymous: Option<Principal>,
    pub security_txt: String,
}

#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    pub fn new(
        config: ServiceConfig,
        store: Store,
        sandbox: Arc<Sandbox>,
        scheduler: Arc<Scheduler>,
        metrics: Arc<Metrics>,
        anonymous: Option<Principal>,
    ) -> Shared {
        let expires = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + std::time::Duration::from_secs(365 * 24 * 3600),
        );
        let security_txt = format!(
            "Contact: {}\nExpires: {expires}\nPreferred-Languages: en\n",
            config.security_contact
        );
        Shared {
            per_ip: SlidingWindow::new(config.rate_per_ip, config.rate_window),
            per_key: SlidingWindow::new(config.rate_per_key, config.rate_window),
            lockout: Lockout::new(
                config.lockout_failures,
                config.lockout_window,
                config.lockout_duration,
            ),
            verified: VerifiedCache::default(),
            config,
            store,
            sandbox,
            scheduler,
            metrics,
            anonymous,
            security_txt,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/v1/runs", post(runs::submit).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get).delete(runs::cancel))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/languages", get(ops::languages))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/api/v2/runtimes", get(piston::runtimes))
        .route("/api/v2/execute", post(piston::execute))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/.well-known/security.txt", get(ops::security_txt))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), hygiene))
        .with_state(state)
}

/// The id of a request, from a sane `X-Request-Id` or fresh.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(crate::sandbox::new_job_id)
}

/// Request id in a span (so every log line of the request carries it),
/// security headers on every response, one access-log line per request.
/// Bodies are never logged: they hold submitted code and keys.
async fn hygiene(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = info_span!("request", request.id = %id, method = %method, path = %path);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let h = resp.headers_mut();
    let pairs: [(HeaderName, &str); 5] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (k, v) in pairs {
        h.insert(k, HeaderValue::from_static(v));
    }
    if st.config.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    st.metrics.response(status);
    span.in_scope(|| info!(status, ms = started.elapsed().as_millis() as u64, "request"));
    resp
}
