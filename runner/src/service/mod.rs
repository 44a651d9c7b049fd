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

use tokio::task::JoinHandle;
use tracing::{info, warn};

pub mod abuse;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod relay;
pub mod releases;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod spec;
pub mod store;
pub mod tls;
pub mod web;
pub mod workflows;

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
    #[error("workflows: {0}")]
    Workflows(String),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error("releases: {0}")]
    Releases(String),
}

/// The service's parts, wired together: what `runner serve` runs and what
/// the tests drive in process. The one place they are put together.
#[derive(Debug)]
pub struct Service {
    pub state: AppState,
    pub store: Store,
    pub scheduler: Arc<Scheduler>,
    pub sandbox: Arc<Sandbox>,
    pub metrics: Arc<Metrics>,
    /// The global concurrency bound, shared by running jobs and the pool.
    pub permits: Arc<tokio::sync::Semaphore>,
}

impl Service {
    /// Wires the service on `store` (migrated); starts nothing.
    pub fn new(
        config: ServiceConfig,
        store: Store,
        sandbox: Arc<Sandbox>,
    ) -> Result<Service, ServeError> {
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
        let state = AppState(Arc::new(Shared::new(
            config,
            store.clone(),
            Arc::clone(&sandbox),
            Arc::clone(&scheduler),
            Arc::clone(&metrics),
            anonymous,
        )));
        Ok(Service {
            state,
            store,
            scheduler,
            sandbox,
            metrics,
            permits,
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.state.config
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Turns on workflow runs: `secrets` seals repositories' secrets at
    /// rest, `job_images` resolves the job images policy names.
    pub fn enable_workflows(
        &self,
        secrets: secrets::SecretBox,
        job_images: Arc<crate::images::jobs::JobImages>,
    ) -> Result<Arc<workflows::Workflows>, ServeError> {
        let c = &self.config().workflows;
        let policy = match &c.policy {
            Some(p) => crate::workflow::policy::WorkflowPolicy::load(p),
            None => crate::workflow::policy::WorkflowPolicy::embedded(),
        }
        .map_err(|e| ServeError::Workflows(e.to_string()))?;
        let settings = workflows::WorkflowSettings {
            policy: Arc::new(policy),
            cache_dir: c.cache_dir.clone(),
            secrets_dir: c.secrets_dir.clone(),
            concurrency: c.concurrency,
            jobs_per_run: c.jobs_per_run,
        };
        let wf = workflows::Workflows::new(
            self.store.clone(),
            Arc::clone(self.sandbox.backend()),
            Arc::new(self.sandbox.policy().clone()),
            job_images,
            settings,
            secrets,
        )
        .map_err(|e| ServeError::Workflows(e.to_string()))?;
        let _ = self.state.workflows.set(Arc::clone(&wf));
        Ok(wf)
    }

    /// Turns on promotions and environments over `engine`, for the tenant
    /// named `tenant`; green runs of `repository` (when given) are built
    /// into the automatic environment once workflows are enabled.
    pub fn enable_releases(
        &self,
        engine: Arc<dyn releases::engine::ReleaseEngine>,
        tenant: &str,
        repository: Option<String>,
        history: usize,
    ) -> Result<Arc<releases::Releases>, ServeError> {
        let t = self.store.tenant_by_name(tenant)?.ok_or_else(|| {
            ServeError::Releases(format!(
                "the tenant {tenant:?} does not exist; create it with `runner admin tenant create {tenant}` or change `[releases] tenant`"
            ))
        })?;
        let r = Arc::new(releases::Releases::new(
            self.store.clone(),
            engine,
            releases::ReleaseSettings {
                tenant: t.id,
                tenant_name: t.name,
                repository,
                history,
            },
        ));
        if let Some(wf) = self.state.workflows.get() {
            r.attach_workflows(Arc::clone(wf));
        }
        let _ = self.state.releases.set(Arc::clone(&r));
        Ok(r)
    }

    /// [`Service::enable_releases`] with the real engine, from `[releases]`.
    pub fn enable_releases_from_config(
        &self,
    ) -> Result<Option<Arc<releases::Releases>>, ServeError> {
        let Some(c) = self.config().releases.clone() else {
            return Ok(None);
        };
        let build = c.build.as_ref().map(|b| releases::engine::BuildSettings {
            image: b.image.clone(),
            context: b.context.clone(),
            dockerfile: b.dockerfile.clone(),
            signing_key: b.signing_key.clone(),
            scan_policy: b.scan_policy.clone(),
            grype: b.grype.clone(),
            output_dir: b.output_dir.clone(),
        });
        let engine = releases::engine::PipelineEngine::new(
            &c.policy,
            &c.state_dir,
            build,
            c.insecure_registries.clone(),
        )
        .map_err(|e| ServeError::Releases(e.to_string()))?;
        self.enable_releases(
            Arc::new(engine),
            &c.tenant,
            c.build.map(|b| b.repository),
            c.history,
        )
        .map(Some)
    }

    /// Starts executing queued runs: the dispatcher, the warm pool (when
    /// configured) and the retention sweeper. Returns the background tasks.
    pub fn start(&self) -> Vec<JoinHandle<()>> {
        // Runners sharing a database: leases, their reaper, notifications.
        let mut tasks = if self.store.is_shared() {
            cluster::start(self)
        } else {
            Vec::new()
        };
        tasks.push(self.scheduler.start());
        if let Some(wf) = self.state.workflows.get() {
            tasks.push(wf.start());
        }
        if let Some(r) = self.state.releases.get() {
            tasks.push(r.start());
        }
        let pool = &self.config().pool;
        if pool.default_size > 0 || pool.sizes.values().any(|n| *n > 0) {
            self.sandbox.start_pool(pool, Arc::clone(&self.permits));
        }
        tasks.push(self.start_sweeper());
        // What this server leaves behind (a cancelled start, a failed
        // removal) is collected without waiting for `runner gc`.
        tasks.push(crate::backend::orphans::start_sweeper(
            Arc::clone(self.sandbox.backend()),
            crate::backend::orphans::SWEEP_INTERVAL,
        ));
        tasks
    }

    /// Applies retention now and then every `sweep_interval`.
    fn start_sweeper(&self) -> JoinHandle<()> {
        let (store, metrics) = (self.store.clone(), Arc::clone(&self.metrics));
        let (policy, every) = (self.config().retention, self.config().sweep_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match store.call(move |s| s.sweep(&policy, store::now_ms())).await {
                    Ok(swept) if swept.by_age + swept.by_size > 0 => {
                        metrics
                            .runs_swept
                            .inc_by((swept.by_age + swept.by_size) as u64);
                        info!(
                            by_age = swept.by_age,
                            by_size = swept.by_size,
                            bytes = swept.bytes,
                            "retention deleted ended runs"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "the retention sweep failed"),
                }
                // Rate limit and lockout rows nothing counts any more
                // (runners sharing a database; the table stays bounded
                // under a flood of addresses).
                if store.is_shared()
                    && let Err(e) = store.call(|s| s.sweep_abuse(store::now_ms())).await
                {
                    warn!(error = %e, "the sweep of rate limit rows failed");
                }
            }
        })
    }

    /// Warns about languages whose image is missing.
    async fn check_images(&self) {
        for lang in self.sandbox.catalog().languages() {
            if matches!(
                self.sandbox.backend().inspect_image(&lang.image).await,
                Ok(crate::backend::ImageCheck::Missing)
            ) {
                warn!(language = %lang.name, image = %lang.image, "sandbox image not built: runs of this language fail until `runner images build` builds it");
            }
        }
    }
}

/// Runs the service until `shutdown` resolves, then stops accepting, lets
/// running jobs finish within the grace period and leaves queued jobs queued.
pub async fn serve(
    config: ServiceConfig,
    sandbox: Arc<Sandbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = Store::open(&config.database)?;
    let service = Service::new(config, store, Arc::clone(&sandbox))?;
    let key = secrets::load_key(&service.config().workflows.secrets_key_file)?;
    {
        let key = key.clone();
        service
            .store
            .call(move |store| secrets::check_key(store, &key))
            .await?;
    }
    let images =
        crate::images::jobs::JobImages::load(&crate::images::sources::ImageSources::embedded())
            .map_err(|e| ServeError::Workflows(e.to_string()))?;
    let wf = service.enable_workflows(key, Arc::new(images))?;
    let ended = wf.recover().await?;
    if ended > 0 {
        warn!(
            runs = ended,
            "ended workflow runs interrupted by the previous process as failures"
        );
    }
    if let Some(r) = service.enable_releases_from_config()? {
        let reconciled = r.recover().await?;
        if reconciled > 0 {
            warn!(
                promotions = reconciled,
                "reconciled deploys interrupted by the previous process"
            );
        }
    }
    let recovered = service.scheduler.recover().await?;
    if recovered > 0 {
        warn!(
            runs = recovered,
            "finished runs interrupted by the previous process as internal_error"
        );
    }
    service.check_images().await;
    let tasks = service.start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = listen(&service, stop_rx).await?;
    tokio::select! {
        () = shutdown => {}
        _ = &mut server => {
            tasks.iter().for_each(JoinHandle::abort);
            sandbox.shutdown().await;
            return Err(ServeError::Server(std::io::Error::other("the server stopped by itself")));
        }
    }
    let grace = service.config().shutdown_grace;
    info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections; running jobs may finish"
    );
    let _ = stop_tx.send(true);
    service.scheduler.drain(grace).await;
    if service.store.is_shared() {
        // Its runs were put back in the queue: nothing to reap.
        let _ = service.store.call(|s| s.drop_lease()).await;
    }
    tasks.iter().for_each(JoinHandle::abort);
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

/// Binds the listener and serves the API on it until `stop` turns true.
async fn listen(
    service: &Service,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ServeError> {
    let config = service.config();
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Server)?;
    info!(addr = %local, tls = tls.is_some(), "listening");
    Ok(tokio::spawn(server::serve(
        listener,
        service.router(),
        tls,
        config.http,
        Arc::clone(&service.metrics),
        stop,
    )))
}
