//! The HTTP API: routes, shared state, and the middleware every response
//! passes through (request ids, security headers, access log, metrics, the
//! body read timeout).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};

pub mod error;
pub mod extract;
pub mod hooks;
pub mod keys;
pub mod model;
pub mod ops;
pub mod piston;
pub mod promotions;
pub mod repos;
pub mod runs;
pub mod workflows;

use super::abuse::{Abuse, Policies};
use super::auth::{HashPool, Principal, VerifiedCache};
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
    /// Rate limits and lockout: in memory, or in the database runners
    /// share.
    pub abuse: Abuse,
    /// Where the slow key hash runs (see `auth.max_concurrent_verifications`).
    pub hashes: HashPool,
    /// The principal of anonymous Piston requests, when enabled.
    pub anonymous: Option<Principal>,
    pub security_txt: String,
    /// Workflow runs, once enabled ([`crate::service::Service::enable_workflows`]).
    pub workflows: std::sync::OnceLock<Arc<crate::service::workflows::Workflows>>,
    /// Pages and sign-in for people, when `[web]` is configured.
    pub web: Option<Arc<crate::service::web::Web>>,
    /// Promotions and environments, once enabled
    /// ([`crate::service::Service::enable_releases`]).
    pub releases: std::sync::OnceLock<Arc<crate::service::releases::Releases>>,
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
        let web = config
            .web
            .clone()
            .map(|w| Arc::new(crate::service::web::Web::new(w)));
        Shared {
            abuse: Abuse::for_store(Policies::from_config(&config), &store),
            verified: VerifiedCache::default(),
            hashes: HashPool::new(
                config.auth.max_concurrent_verifications,
                config.auth.verification_wait,
            ),
            config,
            store,
            sandbox,
            scheduler,
            metrics,
            anonymous,
            security_txt,
            web,
            workflows: std::sync::OnceLock::new(),
            releases: std::sync::OnceLock::new(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let body_timeout = state.config.http.body_read_timeout;
    let tls = state.config.tls.is_some();
    let metrics = Arc::clone(&state.metrics);
    let app = Router::new()
        .route("/v1/runs", post(runs::submit).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get).delete(runs::cancel))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/languages", get(ops::languages))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/v1/repos", post(repos::create).get(repos::list))
        .route("/v1/repos/{id}", get(repos::get).delete(repos::delete))
        .route(
            "/v1/repos/{id}/secrets/{name}",
            axum::routing::put(repos::put_secret).delete(repos::delete_secret),
        )
        .route("/v1/repos/{id}/runs", post(repos::start_run))
        .route("/v1/triggers/{id}", get(workflows::trigger))
        .route("/v1/workflow-runs", get(workflows::list))
        .route(
            "/v1/workflow-runs/{id}",
            get(workflows::get).delete(workflows::cancel),
        )
        .route("/v1/workflow-runs/{id}/events", get(workflows::events))
        .route("/v1/workflow-runs/{id}/jobs/{job}/log", get(workflows::log))
        .route("/v1/hooks/github", post(hooks::github))
        .route(
            "/v1/promotions",
            post(promotions::request).get(promotions::list),
        )
        .route(
            "/v1/promotions/{id}",
            get(promotions::get).delete(promotions::withdraw),
        )
        .route("/v1/promotions/{id}/approvals", post(promotions::decide))
        .route("/v1/environments", get(promotions::environments))
        .route("/v1/environments/{name}", get(promotions::environment))
        // Piston answers with and without a trailing slash; clients use both.
        .route("/api/v2/runtimes", get(piston::runtimes))
        .route("/api/v2/runtimes/", get(piston::runtimes))
        .route("/api/v2/execute", post(piston::execute))
        .route("/api/v2/execute/", post(piston::execute))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/.well-known/security.txt", get(ops::security_txt))
        // Pages only where `[web]` is configured: elsewhere `/` and the
        // page paths stay the API's JSON 404s.
        .merge(if state.web.is_some() {
            crate::service::web::routes()
        } else {
            Router::new()
        })
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            body_timeout,
            crate::service::server::time_bodies,
        ))
        .with_state(state);
    hygiene::layers(app, metrics, tls)
}

/// What every response passes through, from `tower-http`: a request id (a
/// sane client `X-Request-Id`, or a fresh one) in a span around the request
/// and on the response; one access-log line per request (bodies are never
/// logged: they hold submitted code and keys); security headers.
mod hygiene {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderName, HeaderValue, Request, Response, header};
    use tower_http::request_id::{
        MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
    };
    use tower_http::set_header::SetResponseHeaderLayer;
    use tower_http::trace::TraceLayer;
    use tracing::{Span, info, info_span};

    use crate::service::metrics::Metrics;

    const X_REQUEST_ID: &str = "x-request-id";

    #[derive(Debug, Clone, Copy)]
    struct FreshId;

    impl MakeRequestId for FreshId {
        fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
            HeaderValue::from_str(&crate::sandbox::new_job_id())
                .ok()
                .map(RequestId::new)
        }
    }

    /// A client's request id is kept only when it is short and plain (it
    /// goes into every log line of the request).
    async fn drop_unusable_id(mut req: Request<Body>) -> Request<Body> {
        let usable = req.headers().get(X_REQUEST_ID).is_none_or(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        });
        if !usable {
            req.headers_mut().remove(X_REQUEST_ID);
        }
        req
    }

    fn span(req: &Request<Body>) -> Span {
        let id = req
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        info_span!("request", request.id = %id, method = %req.method(), path = %req.uri().path())
    }

    pub fn layers(app: Router, metrics: Arc<Metrics>, tls: bool) -> Router {
        let access_log = move |resp: &Response<Body>, latency: Duration, _: &Span| {
            let status = resp.status().as_u16();
            metrics.response(status);
            info!(status, ms = latency.as_millis() as u64, "request");
        };
        let name = HeaderName::from_static(X_REQUEST_ID);
        let mut app = app
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(span)
                    .on_request(())
                    .on_response(access_log)
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::new(name.clone()))
            .layer(SetRequestIdLayer::new(name, FreshId))
            .layer(axum::middleware::map_request(drop_unusable_id));
        let headers: [(HeaderName, &'static str); 5] = [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ];
        for (name, value) in headers {
            // Pages set their own, less strict, policy (web/pages.rs).
            let layer = if name == header::CONTENT_SECURITY_POLICY {
                SetResponseHeaderLayer::if_not_present
            } else {
                SetResponseHeaderLayer::overriding
            };
            app = app.layer(layer(name, HeaderValue::from_static(value)));
        }
        if tls {
            app = app.layer(SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        app
    }
}
