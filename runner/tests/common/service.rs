//! An in-process service on the real engine and a fresh database, with a
//! key per (tenant, role), for router tests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use runner::backend::JobBackend;
use runner::backend::docker::DockerBackend;
use runner::backend::fake::ScriptedBackend;
use runner::backend::uids::UidAllocator;
use runner::images::sources::ImageSources;
use runner::language::Catalog;
use runner::policy::SandboxPolicy;
use runner::sandbox::Sandbox;
use runner::service::api::AppState;
use runner::service::auth::{Role, mint_key};
use runner::service::config::{ConfigFile, ServiceConfig};
use runner::service::scheduler::Scheduler;
use runner::service::store::{NewKey, Store, TenantId};
use runner::service::tls::ClientAddr;
use serde_json::Value;
use tower::ServiceExt as _;

pub struct Service {
    pub app: Router,
    pub state: AppState,
    pub store: Store,
    pub scheduler: Arc<Scheduler>,
    /// The wiring `runner serve` uses (runner::service::Service).
    pub inner: runner::service::Service,
    /// (tenant, role) → key text
    pub keys: HashMap<(String, Role), String>,
    /// The PostgreSQL server of this test, when it runs on one.
    pub postgres: Option<Arc<test_support::postgres::Postgres>>,
}

/// A fresh store for a test: in memory (SQLite), or, with
/// `RUNNER_TEST_STORE=postgres`, on a PostgreSQL server of its own. The
/// service tests run on both (`.ci/run` runs them once per store).
pub fn test_store() -> (Store, Option<Arc<test_support::postgres::Postgres>>) {
    match std::env::var("RUNNER_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let pg = test_support::postgres::Postgres::start()
                .unwrap_or_else(|e| panic!("RUNNER_TEST_STORE=postgres: {e}"));
            let store = Store::open(std::path::Path::new(&pg.url())).unwrap();
            (store, Some(Arc::new(pg)))
        }
        Ok("sqlite") | Err(_) => (Store::in_memory().unwrap(), None),
        Ok(other) => panic!("RUNNER_TEST_STORE={other:?}: write sqlite or postgres"),
    }
}

pub const TENANTS: [&str; 2] = ["alpha", "beta"];

pub fn config(extra: &str) -> ServiceConfig {
    toml::from_str::<ConfigFile>(extra)
        .unwrap()
        .validate()
        .unwrap()
}

/// Tenants alpha and beta, with a key of every role each.
fn tenants_and_keys(store: &Store) -> HashMap<(String, Role), String> {
    let mut keys = HashMap::new();
    for t in TENANTS {
        let tenant = store.create_tenant(t).unwrap();
        for role in Role::ALL {
            keys.insert(
                (t.to_owned(), role),
                insert_key(store, &tenant.id, role, None),
            );
        }
    }
    keys
}

/// A new key of `role` in the tenant `tenant_id` (approving only
/// `environments`, when given); its text.
fn insert_key(
    store: &Store,
    tenant_id: &TenantId,
    role: Role,
    environments: Option<&[String]>,
) -> String {
    let k = mint_key();
    store
        .insert_key(
            tenant_id,
            &NewKey {
                id: &k.id,
                role: role.as_str(),
                secret_hash: &k.secret_hash,
                label: "test",
                created_by: "test",
                environments,
            },
        )
        .unwrap();
    k.text
}

impl Service {
    /// `start`: run the scheduler (runs execute in real sandboxes on
    /// Docker); without it, runs stay queued.
    pub async fn new(config: ServiceConfig, start: bool) -> Service {
        let policy = SandboxPolicy::embedded().unwrap();
        let uids = Arc::new(UidAllocator::new(
            policy.container.uids,
            UidAllocator::default_dir(),
        ));
        let docker = DockerBackend::connect(uids)
            .await
            .expect("connecting to Docker");
        Self::on(config, start, Arc::new(docker))
    }

    /// A service whose jobs run on a scripted backend: no engine needed.
    /// The fake is returned to script steps and read its journal.
    pub fn fake(config: ServiceConfig, start: bool) -> (Service, Arc<ScriptedBackend>) {
        let fake = ScriptedBackend::new();
        let svc = Self::on(config, start, Arc::clone(&fake) as Arc<dyn JobBackend>);
        (svc, fake)
    }

    /// A service running workflows on the scripted backend, its git cache
    /// in `cache`; nothing started until `start`.
    pub fn fake_workflows(extra: &str, cache: &std::path::Path) -> (Service, Arc<ScriptedBackend>) {
        let (store, postgres) = test_store();
        let (mut svc, fake) = Self::fake_workflows_with(extra, "", cache, store);
        svc.postgres = postgres;
        (svc, fake)
    }

    /// [`Service::fake_workflows`] on `store` (a file, for the CLI to read
    /// too), with more keys of its `[workflows]` table.
    pub fn fake_workflows_with(
        extra: &str,
        workflows: &str,
        cache: &std::path::Path,
        store: Store,
    ) -> (Service, Arc<ScriptedBackend>) {
        let text = format!(
            "{extra}\n[workflows]\ncache_dir = {:?}\n{workflows}\n",
            cache.display().to_string()
        );
        let fake = ScriptedBackend::new();
        let svc = Self::on_store(
            config(&text),
            false,
            Arc::clone(&fake) as Arc<dyn JobBackend>,
            store,
            None,
        );
        let images = runner::images::jobs::JobImages::load(&ImageSources::embedded()).unwrap();
        svc.inner
            .enable_workflows(
                runner::service::secrets::SecretBox::from_key(&[42; 32]),
                Arc::new(images),
            )
            .unwrap();
        (svc, fake)
    }

    /// Starts the scheduler and the workflow dispatcher.
    pub fn start(&self) {
        self.inner.start();
    }

    /// A second service on the store of a first (a restarted server), over
    /// a fresh scripted backend; tenants and keys are the first's.
    pub fn fake_on(store: Store, config: ServiceConfig) -> (Service, Arc<ScriptedBackend>) {
        let fake = ScriptedBackend::new();
        let backend = Arc::clone(&fake) as Arc<dyn JobBackend>;
        let sources = ImageSources::embedded();
        let sandbox = Arc::new(Sandbox::new(
            backend,
            Arc::new(SandboxPolicy::embedded().unwrap()),
            Arc::new(Catalog::load(&sources).unwrap()),
        ));
        let inner = runner::service::Service::new(config, store.clone(), sandbox).unwrap();
        let svc = Service {
            app: inner.router(),
            state: inner.state.clone(),
            store,
            scheduler: Arc::clone(&inner.scheduler),
            inner,
            keys: HashMap::new(),
            postgres: None,
        };
        (svc, fake)
    }

    fn on(config: ServiceConfig, start: bool, backend: Arc<dyn JobBackend>) -> Service {
        let (store, postgres) = test_store();
        Self::on_store(config, start, backend, store, postgres)
    }

    fn on_store(
        config: ServiceConfig,
        start: bool,
        backend: Arc<dyn JobBackend>,
        store: Store,
        postgres: Option<Arc<test_support::postgres::Postgres>>,
    ) -> Service {
        let sources = ImageSources::embedded();
        let sandbox = Arc::new(Sandbox::new(
            backend,
            Arc::new(SandboxPolicy::embedded().unwrap()),
            Arc::new(Catalog::load(&sources).unwrap()),
        ));
        let keys = tenants_and_keys(&store);
        let inner = runner::service::Service::new(config, store.clone(), sandbox).unwrap();
        if start {
            inner.start();
        }
        Service {
            app: inner.router(),
            state: inner.state.clone(),
            store,
            scheduler: Arc::clone(&inner.scheduler),
            inner,
            keys,
            postgres,
        }
    }

    pub fn key(&self, tenant: &str, role: Role) -> &str {
        &self.keys[&(tenant.to_owned(), role)]
    }

    /// Another key of `role` in `tenant` (one never verified yet).
    pub fn new_key(&self, tenant: &str, role: Role) -> String {
        self.new_scoped_key(tenant, role, None)
    }

    /// Another key of `role` in `tenant`, approving only `environments`
    /// when given.
    pub fn new_scoped_key(
        &self,
        tenant: &str,
        role: Role,
        environments: Option<&[String]>,
    ) -> String {
        let t = self.store.tenant_by_name(tenant).unwrap().unwrap();
        insert_key(&self.store, &t.id, role, environments)
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(req).await.unwrap()
    }

    /// A JSON request with a key (or none) from 192.0.2.1.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, Response<()>) {
        self.call_from(method, path, key, body, "192.0.2.1").await
    }

    pub async fn call_from(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        ip: &str,
    ) -> (u16, Value, Response<()>) {
        self.call_with(method, path, key, body, ip, &[]).await
    }

    /// A JSON request from `ip` (the TCP peer) with extra headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        ip: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, Response<()>) {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        req.extensions_mut().insert(ConnectInfo(ClientAddr(
            format!("{ip}:5000").parse().unwrap(),
        )));
        let resp = self.send(req).await;
        split(resp).await
    }
}

/// Status, JSON body (Null when not JSON) and the head of a response.
pub async fn split(resp: Response<Body>) -> (u16, Value, Response<()>) {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status.as_u16(), json, Response::from_parts(parts, ()))
}

pub fn python(code: &str) -> Value {
    serde_json::json!({ "language": "python", "files": [{ "name": "main.py", "content": code }] })
}
