//! `runner serve`: the runner as an HTTP service for learning platforms and
//! CI. Tenants, API keys and roles; a durable queue in SQLite; an audit log;
//! Piston compatibility.
//!
//! - [`config`]: settings, validated at start-up.
//! - [`store`]: the database (runs, keys, tenants, audit), tenant-scoped by construction.
//! - [`auth`], [`abuse`]: keys and roles; rate limits and lockout.
//! - [`scheduler`]: queue → sandbox, concurrency bounds, cancellation, drain.
//! - [`api`]: routes and HTTP hygiene; [`metrics`]: Prometheus text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub mod abuse;
pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod scheduler;
pub mod store;

use api::{AppState, Shared};
use auth::Principal;
use config::ServiceConfig;
use metrics::Metrics;
use scheduler::Scheduler;
use store::{Store, StoreError};

use crate::sandbox::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "anonymous_tenant {0:?} does not exist; create it with `runner admin tenant create {0}` or remove the setting"
    )]
    AnonymousTenant(String),
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

pub mod tls;

/// Runs the service until `shutdown` resolves, then stops accepting, lets
/// running jobs finish within the grace period and leaves queued jobs queued.
pub async fn serve(
    config: ServiceConfig,
    sandbox: Arc<Sandbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = Store::open(&config.database)?;
    let anonymous = match &config.anonymous_tenant {
        Some(name) => {
            let t = store
                .tenant_by_name(name)?
                .ok_or_else(|| ServeError::AnonymousTenant(name.clone()))?;
            warn!(tenant = %name, "anonymous access is on: requests without a key run as this tenant's learner");
            Some(Principal::anonymous(t))
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(config.global_concurrency));
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::clone(&sandbox),
        Arc::clone(&metrics),
        Arc::clone(&permits),
        config.tenant_concurrency,
    );
    let recovered = scheduler.recover().await?;
    if recovered > 0 {
        warn!(
            runs = recovered,
            "finished runs interrupted by the previous process as internal_error"
        );
    }
    for lang in sandbox.catalog().languages() {
        if matches!(sandbox.engine().image_labels(&lang.image).await, Ok(None)) {
            warn!(language = %lang.name, image = %lang.image, "sandbox image not built: runs of this language fail until `runner images build` builds it");
        }
    }
    let dispatcher = scheduler.start();
    crate::gc::start_sweeper(Arc::clone(sandbox.engine()), crate::gc::SWEEP_INTERVAL);
    if config.pool.default_size > 0 || config.pool.sizes.values().any(|n| *n > 0) {
        sandbox.start_pool(&config.pool, Arc::clone(&permits));
    }
    let grace = config.shutdown_grace;
    let listen = config.listen;
    let tls = config.tls.clone();
    let state = AppState(Arc::new(Shared::new(
        config,
        store,
        Arc::clone(&sandbox),
        Arc::clone(&scheduler),
        metrics,
        anonymous,
    )));
    let app = api::router(state).into_make_service_with_connect_info::<tls::ClientAddr>();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Server)?;
    info!(addr = %local, tls = tls.is_some(), "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = match tls {
        None => {
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
            })
        }
        Some(t) => {
            let acceptor = tls::acceptor(&t)?;
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(tls::TlsListener::new(listener, acceptor), app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
            })
        }
    };
    tokio::select! {
        () = shutdown => {}
        r = &mut server => {
            dispatcher.abort();
            sandbox.shutdown().await;
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServeError::Server(e)),
                Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
            };
        }
    }
    info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections; running jobs may finish"
    );
    let _ = stop_tx.send(true);
    scheduler.drain(grace).await;
    dispatcher.abort();
    // Warm containers and used ones still being removed: leave nothing.
    sandbox.shutdown().await;
    // Open streams (events, waits) end with their runs; give them a moment.
    if tokio::time::timeout(Duration::from_secs(5), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    info!("stopped");
    Ok(())
}
