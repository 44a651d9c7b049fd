//! The service's durable state: one SQLite database in WAL mode (one
//! runner), or one PostgreSQL database several runners share (see
//! [`pg`] and `queue` in [`runs`]). The statements are written once, against
//! [`sql::Conn`]; each database has its own schema migrations, numbered
//! alike.
//!
//! Tenant isolation is a property of this API, not of handlers: run queries
//! hang off [`TenantRuns`], which only [`Store::runs`] makes, from a
//! [`TenantId`], which only this module makes (from database rows). A query
//! over another tenant's runs cannot be written against this API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub mod abuse;
pub mod audit;
mod keys;
pub mod pg;
mod pg_schema;
pub mod promotions;
pub mod repos;
mod results;
pub mod retention;
mod runs;
pub mod sessions;
pub mod sql;
pub mod workflows;

use sql::{Conn, Row, p};

pub use audit::{AuditEntry, AuditLog, NewAuditEntry};
pub use keys::{KeyRecord, NewKey};
pub use retention::{Retention, Swept};
pub use runs::{CancelOutcome, NewRun, Queue, RunRecord, RunState, Submitted, TenantRuns};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("cannot connect to the database {database}: {message}")]
    Connect { database: String, message: String },
    #[error(
        "the database's schema is at version {found}, newer than this runner knows ({supported}); upgrade this runner to the version the other runners on the database run"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error(
        "the database holds data this runner cannot read ({0}); was it written by a newer version?"
    )]
    Corrupt(String),
    #[error(transparent)]
    InvalidTenantName(#[from] InvalidTenantName),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error(
        "key {key} is the last admin key of tenant {tenant}; create another admin key before revoking it, or the tenant's keys could no longer be managed"
    )]
    LastAdmin { tenant: String, key: String },
    #[error("the database task failed: {0}")]
    Task(String),
    #[error("repository {0:?} is already registered in this tenant")]
    RepoExists(String),
    #[error(transparent)]
    Secrets(#[from] crate::service::secrets::SecretsError),
    #[error("promotion {id} is {state}, not {expected}")]
    PromotionState {
        id: String,
        state: String,
        expected: String,
    },
    #[error("{actor} already decided on promotion {id}")]
    AlreadyDecided { id: String, actor: String },
}

/// A tenant's id. Only the store creates these, from rows it read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn for_tests(id: &str) -> TenantId {
        TenantId(id.to_owned())
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
}

/// Milliseconds the database's clock is ahead of this machine's: 0 until
/// the process opens a PostgreSQL store (one database per process).
/// Runners sharing a database compare each other's times (leases,
/// rate-limit windows, queue order), so each reads the database's clock,
/// not its own: a runner whose clock ran behind by a lease would otherwise
/// look dead to the others, and its runs be reaped while they ran. Sampled
/// at start and at each lease renewal (see [`sync_clock`]).
static DB_CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch: by the database's clock on
/// PostgreSQL (see [`DB_CLOCK_OFFSET_MS`]), by this machine's otherwise.
pub fn now_ms() -> i64 {
    local_ms() + DB_CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

fn local_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads the database's clock (on `c`, PostgreSQL) and keeps how far it is
/// from this machine's, reckoned halfway through the round trip. A sample
/// within the round trip of the kept offset changes nothing, so times do
/// not jitter back and forth by a few milliseconds.
fn sync_clock(c: &Conn<'_>) -> Result<(), StoreError> {
    let sent = local_ms();
    let db: i64 = c.query_row(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        p![],
        |r| r.get(0),
    )?;
    let back = local_ms();
    let offset = db - (sent + back) / 2;
    let kept = DB_CLOCK_OFFSET_MS.load(Ordering::Relaxed);
    if (offset - kept).abs() > (back - sent).max(1) {
        DB_CLOCK_OFFSET_MS.store(offset, Ordering::Relaxed);
    }
    Ok(())
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_id TEXT NOT NULL,
    language TEXT NOT NULL,
    version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'finished', 'cancelled')),
    request BLOB NOT NULL,
    result TEXT,
    status TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_tenant ON runs(tenant_id, seq);
CREATE INDEX runs_state ON runs(state, seq);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#,
    // 2: results stored once and binary-safe (metadata in `result_meta`,
    // each stage's output in `run_stages`); `request` holds a job spec
    // (see `service::spec`) until the run ends; per-tenant positions for
    // list cursors; the bytes each run keeps, for retention. `result` stays
    // for rows written before, which are still read.
    r#"
ALTER TABLE runs ADD COLUMN tenant_seq INTEGER;
UPDATE runs SET tenant_seq = w.n
  FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY seq) AS n FROM runs) AS w
  WHERE w.seq = runs.seq;
CREATE UNIQUE INDEX runs_tenant_seq ON runs(tenant_id, tenant_seq);
ALTER TABLE tenants ADD COLUMN runs_submitted INTEGER NOT NULL DEFAULT 0;
UPDATE tenants SET runs_submitted =
  (SELECT COALESCE(MAX(tenant_seq), 0) FROM runs WHERE runs.tenant_id = tenants.id);
ALTER TABLE runs ADD COLUMN result_meta TEXT;
ALTER TABLE runs ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET stored_bytes = length(request) + COALESCE(length(result), 0);
CREATE INDEX runs_queued_by_tenant ON runs(state, tenant_id, seq);
CREATE INDEX runs_finished_at ON runs(finished_at);
CREATE TABLE run_stages (
    run_seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    stage TEXT NOT NULL CHECK (stage IN ('compile', 'run')),
    meta TEXT NOT NULL,
    stdout BLOB NOT NULL,
    stderr BLOB NOT NULL,
    output_order BLOB NOT NULL,
    PRIMARY KEY (run_seq, stage)
);
"#,
    // 3: workflows. Repositories a tenant's admins register (their webhook
    // secret and jobs' secrets sealed with the server's key, see
    // `service::secrets`); webhook deliveries seen (replays answered once);
    // triggers (a push or an API call, durable before the answer) planned
    // into one run per workflow file, each with its jobs, their steps and
    // masked logs.
    r#"
CREATE TABLE repositories (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    branches TEXT NOT NULL,
    secrets_allowed TEXT NOT NULL,
    egress TEXT,
    webhook_secret BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX repositories_name ON repositories(name);
CREATE TABLE repo_secrets (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
);
CREATE TABLE webhook_deliveries (
    delivery TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    trigger_id TEXT
);
CREATE TABLE workflow_triggers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    commit_sha TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    changed_paths TEXT,
    state TEXT NOT NULL CHECK (state IN ('queued', 'planned', 'failed')),
    message TEXT,
    created_at INTEGER NOT NULL,
    planned_at INTEGER
);
CREATE INDEX workflow_triggers_state ON workflow_triggers(state, seq);
CREATE TABLE workflow_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    trigger_id TEXT NOT NULL REFERENCES workflow_triggers(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    commit_sha TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    workflow TEXT NOT NULL,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX workflow_runs_state ON workflow_runs(state, seq);
CREATE INDEX workflow_runs_repo ON workflow_runs(tenant_id, repo_id, seq);
CREATE TABLE workflow_jobs (
    run_id TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]',
    log BLOB NOT NULL DEFAULT x'',
    message TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (run_id, job_id)
);
"#,
    // 4: releases. Approver keys scoped to environments; promotions (a
    // request, or a green workflow run's build for the first environment)
    // and the decisions of approvers, one per approver. What runs where is
    // the deployer's record (`pipeline::release::state`), not a table.
    r#"
ALTER TABLE api_keys ADD COLUMN environments TEXT;
CREATE TABLE promotions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    environment TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT,
    commit_sha TEXT,
    workflow_trigger TEXT UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('building', 'pending', 'approved', 'deploying', 'deployed', 'rejected', 'refused', 'rolled_back', 'failed', 'withdrawn')),
    required_approvals INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    verification TEXT,
    message TEXT,
    log TEXT NOT NULL DEFAULT '[]',
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX promotions_state ON promotions(state, seq);
CREATE INDEX promotions_tenant ON promotions(tenant_id, seq);
CREATE TABLE promotion_decisions (
    promotion_id TEXT NOT NULL REFERENCES promotions(id) ON DELETE CASCADE,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (promotion_id, actor)
);
"#,
    // 5: sign-in sessions of people (web pages). Only a SHA-256 of the
    // cookie's token is kept: a copy of the database signs nobody in.
    r#"
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    environments TEXT,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
"#,
    // 6: several runners on one database (PostgreSQL; the columns exist
    // on SQLite too, so both schemas are one version). Which runner claimed
    // a run or workflow run, and each runner's lease, which it renews while
    // it lives: runs of a runner whose lease ran out are finished by
    // another.
    r#"
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE workflow_runs ADD COLUMN owner TEXT;
CREATE TABLE runner_leases (
    owner TEXT PRIMARY KEY,
    lease_until INTEGER NOT NULL,
    started_at INTEGER NOT NULL
);
"#,
    // 7: rate limits and lockouts shared by the runners on one database
    // (see `service::abuse`). A SQLite runner, alone, keeps them in memory
    // and never writes here; the table exists so both schemas stay one
    // version. `times`/`pending`: big-endian i64 milliseconds; a row past
    // `expires_at` holds nothing that counts and is swept.
    r#"
CREATE TABLE abuse_state (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    times BLOB NOT NULL,
    pending BLOB NOT NULL,
    locked_until INTEGER,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX abuse_state_expiry ON abuse_state(expires_at);
"#,
    // 8: a known text sealed with the key of secrets at rest, so a runner
    // started with another key (several runners, each with a key of its
    // own; a lost key file) is refused at start instead of failing to open
    // secrets at job time (see `service::secrets::check_key`).
    r#"
CREATE TABLE key_checks (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
];

/// Rows claimed by a runner that is gone: on PostgreSQL, its lease ran out
/// more than a lease ago (`?1`: that cutoff), so a runner that only missed
/// a renewal (the database restarted) keeps its runs.
const DEAD_OWNER: &str =
    "(owner IS NULL OR owner NOT IN (SELECT owner FROM runner_leases WHERE lease_until > ?1))";

/// Says `owner` is alive until a [`LEASE`] after `now` (on `c`, which may
/// be a transaction: a claim renews its claimer's lease with it).
fn extend_lease(c: &Conn<'_>, owner: &str, now: i64) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO runner_leases (owner, lease_until, started_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until",
        p![owner, now + LEASE.as_millis() as i64, now],
    )
    .map(|_| ())
}

/// The cutoff for [`DEAD_OWNER`] now.
fn dead_cutoff() -> i64 {
    now_ms() - LEASE.as_millis() as i64
}

/// Where the database is, from the `database` setting.
pub fn is_postgres(database: &Path) -> bool {
    database.to_str().is_some_and(pg::is_url)
}

#[derive(Debug)]
enum Db {
    Sqlite(Mutex<Connection>),
    Pg(Box<pg::PgPool>),
}

/// The database. Cheap to clone; all clones share one connection (SQLite)
/// or one pool of connections (PostgreSQL).
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Db>,
    /// Who this runner is in the database: runs it claims carry it, and
    /// its lease (see [`Store::renew_lease`]) says it is alive.
    owner: Arc<str>,
}

/// How long a runner's lease lasts; it renews it every third of this.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(10);

fn new_owner() -> Arc<str> {
    let me = crate::backend::orphans::Owner::current().to_label();
    format!("{me}#{}", &crate::sandbox::new_job_id()[..8]).into()
}

impl Store {
    /// Opens the database `database` names (a SQLite file, or a
    /// `postgres://` URL) and brings its schema up to date.
    pub fn open(database: &Path) -> Result<Store, StoreError> {
        match database.to_str() {
            Some(url) if pg::is_url(url) => Self::connect(url),
            _ => Self::open_sqlite(database),
        }
    }

    fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // FULL: an acknowledged run survives power loss too, not only a crash.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(open_err)?;
        Self::migrate(&conn).map_err(|e| match e {
            StoreError::Sql(source) => open_err(source),
            e => e,
        })?;
        Ok(Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            owner: new_owner(),
        })
    }

    /// Connects to a PostgreSQL database and migrates it (under a lock, so
    /// runners starting together migrate it once).
    pub fn connect(url: &str) -> Result<Store, StoreError> {
        let store = Store {
            db: Arc::new(Db::Pg(Box::new(pg::PgPool::new(url)?))),
            owner: new_owner(),
        };
        store.with(pg_schema::migrate)?;
        store.with(sync_clock)?;
        Ok(store)
    }

    /// A private database in memory, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Self::migrate(&conn)?;
        Ok(Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            owner: new_owner(),
        })
    }

    /// Whether several runners may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(*self.db, Db::Pg(_))
    }

    fn migrate(conn: &Connection) -> Result<(), StoreError> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: MIGRATIONS.len() as i64,
            });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(())
    }

    /// Runs `f` with a connection (blocking).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &*self.db {
            Db::Sqlite(m) => {
                let conn = m
                    .lock()
                    .map_err(|_| StoreError::Task("a database call panicked earlier".into()))?;
                f(&Conn::Sqlite(&conn))
            }
            Db::Pg(pool) => pool.with(|c| f(&Conn::Pg(c))),
        }
    }

    /// This runner's name in the database.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Says this runner is alive for another [`LEASE`].
    pub fn renew_lease(&self) -> Result<(), StoreError> {
        self.with(|c| {
            if self.is_shared() {
                sync_clock(c)?;
            }
            let now = now_ms();
            extend_lease(c, &self.owner, now)?;
            // Leases of runners long gone, kept an hour for inquiries.
            c.execute(
                "DELETE FROM runner_leases WHERE lease_until < ?1",
                p![now - 3_600_000],
            )?;
            Ok(())
        })
    }

    /// Tells every runner listening `payloads`, in order, together (one
    /// transaction); nothing on SQLite, whose one runner knows already.
    pub fn notify(&self, payloads: &[String]) -> Result<(), StoreError> {
        if !self.is_shared() || payloads.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            for p in payloads {
                tx.notify(p)?;
            }
            tx.commit()
        })
    }

    /// Gives this runner's lease up (orderly shutdown).
    pub fn drop_lease(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM runner_leases WHERE owner = ?1",
                p![&*self.owner],
            )
            .map(|_| ())
        })
    }

    /// The PostgreSQL pool, when the store is on PostgreSQL.
    pub(crate) fn pg_pool(&self) -> Option<&pg::PgPool> {
        match &*self.db {
            Db::Pg(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }

    /// Runs blocking store work off the async runtime's threads.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The key check named `name`: the one recorded, or `sealed`, recorded
    /// now when there is none (the first runner to start records its own).
    pub fn key_check(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO key_checks (name, sealed, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                p![name, sealed, now_ms()],
            )?;
            c.query_row(
                "SELECT sealed FROM key_checks WHERE name = ?1",
                p![name],
                |r| r.get(0),
            )
        })
    }

    /// Records `sealed` as the key check `name`, over the one there.
    pub fn replace_key_check(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE key_checks SET sealed = ?2, created_at = ?3 WHERE name = ?1",
                p![name, sealed, now_ms()],
            )
            .map(|_| ())
        })
    }

    /// How many secrets are sealed in this database (repositories' webhook
    /// secrets and their secrets).
    pub fn sealed_secrets(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM repositories) + (SELECT COUNT(*) FROM repo_secrets)",
                p![],
                |r| r.get(0),
            )
        })
    }

    /// Answers a trivial query: the database is usable.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.query_row("SELECT 1", p![], |r| r.get::<i64>(0))
                .map(|_| ())
        })
    }

    pub fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        validate_tenant_name(name)?;
        let id = format!("t_{}", &crate::sandbox::new_job_id()[..16]);
        let at = now_ms();
        self.with(|c| {
            match c.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                p![id, name, at],
            ) {
                Ok(_) => Ok(Tenant {
                    id: TenantId(id.clone()),
                    name: name.to_owned(),
                    created_at: at,
                }),
                Err(e) if e.is_constraint() => Err(StoreError::TenantExists(name.to_owned())),
                Err(e) => Err(e),
            }
        })
    }

    pub fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.with(|c| {
            c.query_opt(
                "SELECT id, name, created_at FROM tenants WHERE name = ?1",
                p![name],
                tenant_row,
            )
        })
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT id, name, created_at FROM tenants ORDER BY name",
                p![],
                tenant_row,
            )
        })
    }

    /// The runs of one tenant: the only way to reach runs by id.
    pub fn runs<'a>(&'a self, tenant: &'a TenantId) -> TenantRuns<'a> {
        TenantRuns::new(self, tenant)
    }

    /// Cross-tenant operations of the scheduler (claiming, finishing,
    /// recovery); never exposed to a request.
    pub fn queue(&self) -> Queue<'_> {
        Queue::new(self)
    }

    pub fn audit(&self) -> AuditLog<'_> {
        AuditLog::new(self)
    }
}

fn tenant_row(r: &Row) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId(r.get(0)?),
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

impl StoreError {
    /// Whether a statement broke a uniqueness (or other) constraint.
    pub fn is_constraint(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
            }
            StoreError::Pg(e) => e.code().is_some_and(|c| c.code().starts_with("23")),
            _ => false,
        }
    }

    /// Whether the database could not be reached (it may come back).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            // Closed, never answered, or the server going down (08: connection
            // exception, 57P: operator intervention such as a shutdown).
            StoreError::Pg(e) => {
                e.is_closed()
                    || e.code()
                        .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant name {0:?} must be 1-64 characters of letters, digits, '-', '_' or '.'")]
pub struct InvalidTenantName(pub String);

/// Tenant names: short, printable, no surprises in logs or URLs.
pub fn validate_tenant_name(name: &str) -> Result<(), InvalidTenantName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(InvalidTenantName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_unique_by_name() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("school-a").unwrap();
        assert!(a.id.as_str().starts_with("t_"));
        let err = s.create_tenant("school-a").unwrap_err();
        assert!(err.to_string().contains("already exists"));
        assert_eq!(s.tenant_by_name("school-a").unwrap().unwrap().id, a.id);
        assert!(s.tenant_by_name("nope").unwrap().is_none());
        assert!(s.create_tenant("bad name").is_err());
    }

    #[test]
    fn a_first_version_database_is_migrated_and_still_read() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {}; PRAGMA user_version = 1; COMMIT;",
            MIGRATIONS[0]
        ))
        .unwrap();
        let legacy =
            r#"{"status":"ok","language":"python","version":"3","compile":null,"run":null}"#;
        conn.execute_batch(&format!(
            "INSERT INTO tenants VALUES ('t_a', 'a', 0), ('t_b', 'b', 0);
             INSERT INTO runs (id, tenant_id, key_id, language, version, state, request, result, status, created_at)
             VALUES ('a1', 't_a', 'k', 'python', '3', 'finished', X'7B7D', '{legacy}', 'ok', 1),
                    ('b1', 't_b', 'k', 'python', '3', 'queued', X'7B7D', NULL, NULL, 2),
                    ('a2', 't_a', 'k', 'python', '3', 'queued', X'7B7D', NULL, NULL, 3);"
        ))
        .unwrap();
        Store::migrate(&conn).unwrap();
        let store = Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            owner: new_owner(),
        };
        let a = store.tenant_by_name("a").unwrap().unwrap().id;
        let listed = store.runs(&a).list(None, 10, None).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|r| (r.id.as_str(), r.tenant_seq))
                .collect::<Vec<_>>(),
            [("a2", 2), ("a1", 1)],
            "positions are per tenant"
        );
        let old = store.runs(&a).get("a1").unwrap().unwrap();
        assert_eq!(old.result.unwrap().status, crate::verdict::Status::Ok);
        // New runs continue the tenant's count.
        let run = NewRun {
            id: "a3",
            key_id: "k",
            language: "python",
            version: "3",
            request: b"",
        };
        let Submitted::Queued(rec) = store.runs(&a).submit(&run, 10, None).unwrap() else {
            panic!("queued")
        };
        assert_eq!(rec.tenant_seq, 3);
    }

    #[test]
    fn a_schema_newer_than_the_binary_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len() + 1))
            .unwrap();
        let e = Store::migrate(&conn).unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
        assert!(e.to_string().contains("upgrade this runner"), "{e}");
    }

    #[test]
    fn both_schemas_have_the_same_versions() {
        assert_eq!(MIGRATIONS.len(), pg_schema::MIGRATIONS.len());
    }

    #[test]
    fn the_database_survives_reopening() {
        let dir =
            std::env::temp_dir().join(format!("runner-store-{}", crate::sandbox::new_job_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.db");
        {
            let s = Store::open(&path).unwrap();
            s.create_tenant("t1").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.tenant_by_name("t1").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
