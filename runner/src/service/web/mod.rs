//! Web pages for people: server-rendered shells and small scripts served
//! from this origin, calling the same JSON API as programs with the
//! session cookie; sign-in with OpenID Connect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};

pub mod config;
pub mod jwt;
pub mod oidc;
pub mod pages;
pub mod session;
mod sign_in;

use crate::service::api::AppState;

/// A sign-in under way: the browser went to the provider and should come
/// back with this state within [`PENDING_FOR`].
#[derive(Debug, Clone)]
struct Pending {
    tenant: String,
    nonce: String,
    verifier: String,
    started: Instant,
}

const PENDING_FOR: Duration = Duration::from_secs(600);
const PENDING_MAX: usize = 10_000;

#[derive(Debug)]
pub struct Web {
    pub config: config::WebConfig,
    /// By tenant name.
    pub providers: HashMap<String, Arc<oidc::Provider>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Web {
    pub fn new(config: config::WebConfig) -> Web {
        let providers = config
            .sign_in
            .iter()
            .map(|s| (s.tenant.clone(), Arc::new(oidc::Provider::new(s.clone()))))
            .collect();
        Web {
            config,
            providers,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, state: String, p: Pending) {
        let mut m = self.pending.lock().expect("pending lock");
        if m.len() >= PENDING_MAX {
            m.retain(|_, p| p.started.elapsed() < PENDING_FOR);
            if m.len() >= PENDING_MAX {
                m.clear();
            }
        }
        m.insert(state, p);
    }

    /// The sign-in of `state`, once: a replayed callback finds nothing.
    fn take(&self, state: &str) -> Option<Pending> {
        self.pending
            .lock()
            .expect("pending lock")
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
    }
}

/// The pages, their assets and the sign-in routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/play", get(pages::play))
        .route("/runs", get(pages::runs))
        .route("/workflows", get(pages::workflows))
        .route("/releases", get(pages::releases))
        .route("/admin", get(pages::admin))
        .route("/assets/{name}", get(pages::asset))
        .route("/auth/login", get(sign_in::login))
        .route("/auth/callback", get(sign_in::callback))
        .route("/auth/logout", post(sign_in::logout))
}
