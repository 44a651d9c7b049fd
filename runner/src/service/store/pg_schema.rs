//! The PostgreSQL schema: the same tables as SQLite's (`MIGRATIONS` in the
//! parent module), in PostgreSQL's types, with the same version numbers, so
//! "schema version 5" means one thing on both. Integers are `BIGINT` (the
//! store reads every integer as an `i64`), bytes `BYTEA`.

use super::StoreError;
use super::sql::{Conn, Lock, p};

/// Migrations, applied in order; `schema_version` holds how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE runs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_id TEXT NOT NULL,
    language TEXT NOT NULL,
    version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'finished', 'cancelled')),
    request BYTEA NOT NULL,
    result TEXT,
    status TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_tenant ON runs(tenant_id, seq);
CREATE INDEX runs_state ON runs(state, seq);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE runs ADD COLUMN tenant_seq BIGINT;
CREATE UNIQUE INDEX runs_tenant_seq ON runs(tenant_id, tenant_seq);
ALTER TABLE tenants ADD COLUMN runs_submitted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN result_meta TEXT;
ALTER TABLE runs ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_queued_by_tenant ON runs(state, tenant_id, seq);
CREATE INDEX runs_finished_at ON runs(finished_at);
CREATE TABLE run_stages (
    run_seq BIGINT NOT NULL REFERENCES runs(seq) ON DELETE CASCADE,
    stage TEXT NOT NULL CHECK (stage IN ('compile', 'run')),
    meta TEXT NOT NULL,
    stdout BYTEA NOT NULL,
    stderr BYTEA NOT NULL,
    output_order BYTEA NOT NULL,
    PRIMARY KEY (run_seq, stage)
);
"#,
    r#"
CREATE TABLE repositories (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    branches TEXT NOT NULL,
    secrets_allowed TEXT NOT NULL,
    egress TEXT,
    webhook_secret BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX repositories_name ON repositories(name);
CREATE TABLE repo_secrets (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BYTEA NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
CREATE TABLE webhook_deliveries (
    delivery TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    trigger_id TEXT
);
CREATE TABLE workflow_triggers (
    seq BIGSERIAL PRIMARY KEY,
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
    created_at BIGINT NOT NULL,
    planned_at BIGINT
);
CREATE INDEX workflow_triggers_state ON workflow_triggers(state, seq);
CREATE TABLE workflow_runs (
    seq BIGSERIAL PRIMARY KEY,
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
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX workflow_runs_state ON workflow_runs(state, seq);
CREATE INDEX workflow_runs_repo ON workflow_runs(tenant_id, repo_id, seq);
CREATE TABLE workflow_jobs (
    run_id TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]',
    log BYTEA NOT NULL DEFAULT ''::bytea,
    message TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (run_id, job_id)
);
"#,
    r#"
ALTER TABLE api_keys ADD COLUMN environments TEXT;
CREATE TABLE promotions (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    environment TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT,
    commit_sha TEXT,
    workflow_trigger TEXT UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('building', 'pending', 'approved', 'deploying', 'deployed', 'rejected', 'refused', 'rolled_back', 'failed', 'withdrawn')),
    required_approvals BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    verification TEXT,
    message TEXT,
    log TEXT NOT NULL DEFAULT '[]',
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX promotions_state ON promotions(state, seq);
CREATE INDEX promotions_tenant ON promotions(tenant_id, seq);
CREATE TABLE promotion_decisions (
    promotion_id TEXT NOT NULL REFERENCES promotions(id) ON DELETE CASCADE,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (promotion_id, actor)
);
"#,
    r#"
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    environments TEXT,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
"#,
    // 6: see the SQLite migration 6.
    r#"
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE workflow_runs ADD COLUMN owner TEXT;
CREATE TABLE runner_leases (
    owner TEXT PRIMARY KEY,
    lease_until BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);
"#,
    // 7: see the SQLite migration 7 (on PostgreSQL the runners use it).
    r#"
CREATE TABLE abuse_state (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    times BYTEA NOT NULL,
    pending BYTEA NOT NULL,
    locked_until BIGINT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX abuse_state_expiry ON abuse_state(expires_at);
"#,
    // 8: see the SQLite migration 8.
    r#"
CREATE TABLE key_checks (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
];

/// Brings the schema up to date; refuses a schema newer than this binary.
pub(super) fn migrate(c: &Conn<'_>) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    tx.serialize(Lock::Migrations)?;
    tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let found: Option<i64> =
        tx.query_opt("SELECT version FROM schema_version", p![], |r| r.get(0))?;
    let version = match found {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", p![])?;
            0
        }
    };
    let supported = MIGRATIONS.len() as i64;
    debug_assert_eq!(
        supported,
        super::MIGRATIONS.len() as i64,
        "both schemas alike"
    );
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch(m)?;
        tx.execute("UPDATE schema_version SET version = ?1", p![(i + 1) as i64])?;
    }
    tx.commit()
}
