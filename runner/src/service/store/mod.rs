//! The service's durable state: one SQLite database in WAL mode.
//!
//! Tenant isolation is a property of this API, not of handlers: run queries
//! hang off [`TenantRuns`], which only [`Store::runs`] makes, from a
//! [`TenantId`], which only this module makes (from database rows). A query
//! over another tenant's runs cannot be written against this API.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

pub mod audit;
mod keys;
pub mod promotions;
pub mod repos;
mod results;
pub mod retention;
mod runs;
pub mod sessions;
pub mod workflows;

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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
];

/// The database. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Self::migrate(&conn).map_err(open_err)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// A private database in memory, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Self::migrate(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn migrate(conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(())
    }

    /// Runs `f` with the connection (blocking).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Task("a database call panicked earlier".into()))?;
        f(&mut conn)
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

    /// Answers a trivial query: the database is usable.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
    }

    pub fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        validate_tenant_name(name)?;
        let id = format!("t_{}", &crate::sandbox::new_job_id()[..16]);
        let at = now_ms();
        self.with(|c| {
            match c.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id, name, at],
            ) {
                Ok(_) => Ok(Tenant {
                    id: TenantId(id.clone()),
                    name: name.to_owned(),
                    created_at: at,
                }),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::TenantExists(name.to_owned()))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    pub fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT id, name, created_at FROM tenants WHERE name = ?1",
                [name],
                |r| {
                    Ok(Tenant {
                        id: TenantId(r.get(0)?),
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, name, created_at FROM tenants ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(Tenant {
                    id: TenantId(r.get(0)?),
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
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
            conn: Arc::new(Mutex::new(conn)),
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
