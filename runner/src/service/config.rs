//! `runner serve` configuration: a TOML file, overridden by environment
//! variables and flags (the binary maps those), validated once at start-up.
//!
//! Every key is optional; the defaults below suit one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration: {key} {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The file, as written. Absent keys take the defaults of [`ServiceConfig`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// SQLite database (created if missing), or a PostgreSQL URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`) several runners share.
    /// Default `runner.db`.
    pub database: Option<PathBuf>,
    /// Largest request body, in bytes. Default 8 MiB.
    pub max_body_bytes: Option<usize>,
    /// Longest `?wait=true` (and Piston `execute`) wait, in ms. Default 60000.
    pub wait_timeout_ms: Option<u64>,
    /// On SIGTERM/SIGINT, how long running jobs may finish, in ms. Default 30000.
    pub shutdown_grace_ms: Option<u64>,
    /// Runs waiting to start, over all tenants; beyond it submissions get 429.
    /// Default 1000.
    pub queue_capacity: Option<usize>,
    /// Runs executing at once, over all tenants. Default: the number of CPUs.
    pub global_concurrency: Option<usize>,
    /// Runs executing at once for one tenant. Default 2.
    pub tenant_concurrency: Option<usize>,
    /// Name of a tenant whose learner role anonymous requests get, for a
    /// public playground. Absent (the default): every request needs a key.
    pub anonymous_tenant: Option<String>,
    /// Take the client address from `X-Forwarded-For`, only behind proxies
    /// you run: `false` (the default) uses the TCP peer; a number N says N
    /// proxies of yours each append the address they saw, and the client is
    /// the entry the outermost one added (N-th from the right); `true`
    /// means 1. Entries further left are the client's to write, never trusted.
    pub trust_forwarded_for: Option<ForwardedFor>,
    /// `Contact:` of /.well-known/security.txt (a mailto: or https: URI).
    /// Default `mailto:security@localhost`: set your own.
    pub security_contact: Option<String>,
    pub rate_limit: Option<RateLimitFile>,
    pub lockout: Option<LockoutFile>,
    pub pool: Option<PoolFile>,
    pub tls: Option<TlsFile>,
    pub retention: Option<RetentionFile>,
    pub http: Option<HttpFile>,
    pub auth: Option<AuthFile>,
    /// Where jobs run: `"docker"` (the default: containers of this
    /// machine's engine) or `"kubernetes"` (a namespace per job, see
    /// `[kubernetes]`).
    pub backend: Option<String>,
    pub kubernetes: Option<KubernetesFile>,
    pub workflows: Option<WorkflowsFile>,
    /// Web pages and sign-in for people (absent: the JSON API only).
    pub web: Option<super::web::config::WebFile>,
    pub releases: Option<ReleasesFile>,
}

/// Release environments and promotions (absent: this server has none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasesFile {
    /// The environments policy (`policies/environments.toml`). Required.
    pub policy: Option<PathBuf>,
    /// The tenant the environments belong to. Required.
    pub tenant: Option<String>,
    /// A registered repository (`owner/name`) of that tenant: its green
    /// workflow runs on the automatic environment's branches are built,
    /// signed and deployed there. Absent: releases are only promoted.
    pub repository: Option<String>,
    /// Where release builds are pushed (`REGISTRY/NAME`; the tag is the
    /// commit SHA). Required with `repository`.
    pub image: Option<String>,
    /// The build context in the repository. Default `.`.
    pub context: Option<PathBuf>,
    /// The Dockerfile, relative to the context. Default `Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// The cosign private key signing builds; its password is read from
    /// `COSIGN_PASSWORD`. Required with `repository`.
    pub signing_key: Option<PathBuf>,
    /// The scan policy of the build's gate. Required with `repository`.
    pub scan_policy: Option<PathBuf>,
    /// The grype executable. Default: `PIPELINE_GRYPE`, else `grype` on PATH.
    pub grype: Option<PathBuf>,
    /// The record of what runs where. Default `<database>.releases`.
    pub state_dir: Option<PathBuf>,
    /// SBOMs, scan reports and provenance of builds, one folder per commit.
    /// Default `<database>.release-builds`.
    pub output_dir: Option<PathBuf>,
    /// Registries (`host:port`) reached over plain HTTP besides loopback.
    pub insecure_registries: Option<Vec<String>>,
    /// Events per environment `GET /v1/environments/{name}` shows. Default 50.
    pub history: Option<usize>,
}

/// Validated release settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasesConfig {
    pub policy: PathBuf,
    pub tenant: String,
    pub state_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    pub history: usize,
    /// With `repository`: how its green commits are built.
    pub build: Option<ReleaseBuildConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseBuildConfig {
    pub repository: String,
    pub image: String,
    pub context: PathBuf,
    pub dockerfile: Option<PathBuf>,
    pub signing_key: PathBuf,
    pub scan_policy: PathBuf,
    pub grype: PathBuf,
    pub output_dir: PathBuf,
}

fn releases(
    r: ReleasesFile,
    beside: &dyn Fn(&str) -> PathBuf,
) -> Result<ReleasesConfig, ConfigError> {
    let required = |v: Option<PathBuf>, key: &'static str| {
        v.ok_or_else(|| invalid(key, "is required in [releases]".into()))
    };
    let policy = required(r.policy, "releases.policy")?;
    let tenant = r.tenant.ok_or_else(|| {
        invalid(
            "releases.tenant",
            "is required in [releases]: the tenant the environments belong to".into(),
        )
    })?;
    let history = r.history.unwrap_or(50);
    if !(1..=1000).contains(&history) {
        return Err(invalid(
            "releases.history",
            "must be between 1 and 1000".into(),
        ));
    }
    let build = match r.repository {
        None => {
            if r.image.is_some() || r.signing_key.is_some() {
                return Err(invalid(
                    "releases.repository",
                    "is needed when `image` or `signing_key` is set: builds come from that repository's green commits".into(),
                ));
            }
            None
        }
        Some(repository) => {
            let with = |key: &'static str| {
                invalid(
                    key,
                    "is required in [releases] when `repository` is set".into(),
                )
            };
            Some(ReleaseBuildConfig {
                repository,
                image: r.image.ok_or_else(|| with("releases.image"))?,
                context: r.context.unwrap_or_else(|| ".".into()),
                dockerfile: r.dockerfile,
                signing_key: r.signing_key.ok_or_else(|| with("releases.signing_key"))?,
                scan_policy: r.scan_policy.ok_or_else(|| with("releases.scan_policy"))?,
                grype: r
                    .grype
                    .unwrap_or_else(pipeline::scan::grype::default_program),
                output_dir: r.output_dir.unwrap_or_else(|| beside(".release-builds")),
            })
        }
    };
    Ok(ReleasesConfig {
        policy,
        tenant,
        state_dir: r.state_dir.unwrap_or_else(|| beside(".releases")),
        insecure_registries: r.insecure_registries.unwrap_or_default(),
        history,
        build,
    })
}

/// Workflow runs of registered repositories.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowsFile {
    /// The workflow policy (job images, limits, sources). Default: the
    /// reviewed `policies/workflows.toml` built into runner.
    pub policy: Option<PathBuf>,
    /// Bare cache repositories of fetched commits. Default: beside the
    /// database, `<database>.git-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Secret files mounted by the platform: `<dir>/<repository id>/<NAME>`.
    pub secrets_dir: Option<PathBuf>,
    /// The key sealing secrets at rest (32 bytes, base64), in a file only
    /// the runner may read. `RUNNER_SECRETS_KEY` wins over it. Default:
    /// `<database>.secrets-key`, created on first start.
    pub secrets_key_file: Option<PathBuf>,
    /// Workflow runs at once. Default 2.
    pub concurrency: Option<usize>,
    /// Jobs of one run at once. Default 2.
    pub jobs_per_run: Option<usize>,
    /// Egress grants repositories may be given (`network = "..."` when
    /// registered); each must exist for the backend. Default: none.
    pub egress_grants: Option<Vec<String>>,
}

/// Validated workflow settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowsConfig {
    pub policy: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub secrets_dir: Option<PathBuf>,
    pub secrets_key_file: PathBuf,
    pub concurrency: usize,
    pub jobs_per_run: usize,
    pub egress_grants: Vec<String>,
}

/// The Kubernetes job backend's connection and policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// A kubeconfig file. Default: `$KUBECONFIG`, `~/.kube/config`, or the
    /// pod's own service account when running in the cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: its current context.
    pub context: Option<String>,
    /// The namespace policy (what every job namespace holds). Default: the
    /// reviewed `policies/kubernetes/job-namespace.toml` built into runner.
    pub policy: Option<PathBuf>,
}

/// Where jobs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Docker,
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        policy: Option<PathBuf>,
    },
}

/// `trust_forwarded_for`: a flag or a number of proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ForwardedFor {
    Flag(bool),
    Proxies(u8),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Ended runs (finished or cancelled) older than this many days are
    /// deleted with their output. Default 30; 0 keeps them by age.
    pub max_age_days: Option<u64>,
    /// What one tenant's runs may keep, in MiB (requests of queued runs,
    /// results and output); beyond it its oldest ended runs are deleted.
    /// Default 1024; 0: no budget.
    pub tenant_max_mb: Option<u64>,
    /// How often the sweeper runs, in seconds. Default 300.
    pub sweep_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// A request's line and headers must arrive within this, in ms. Default 10000.
    pub header_read_timeout_ms: Option<u64>,
    /// A request's body must arrive within this (from its headers), in ms.
    /// Default 30000.
    pub body_read_timeout_ms: Option<u64>,
    /// A connection with no request in progress is closed after this, in
    /// seconds. Default 30.
    pub idle_timeout_secs: Option<u64>,
    /// Open connections, over all clients; more are closed at once. Default 1024.
    pub max_connections: Option<usize>,
    /// Open connections from one address (the TCP peer: behind a proxy, the
    /// proxy's). Default 64.
    pub max_connections_per_address: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// API key hashes (Argon2id, 19 MiB each) verified at once; others wait
    /// their turn. Default: the number of CPUs.
    pub max_concurrent_verifications: Option<usize>,
    /// Longest wait for a turn, in ms; past it the request gets 503. Default 10000.
    pub verification_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// Warm containers kept per language and stage. Default 1; 0 turns the
    /// pool off.
    pub default_size: Option<usize>,
    /// Per-language sizes, by language name, e.g. `{ python = 4 }`.
    pub sizes: Option<std::collections::BTreeMap<String, usize>>,
    /// A warm container idle longer than this is replaced. Default 600.
    pub idle_lifetime_secs: Option<u64>,
}

/// Rate limits: per runner on SQLite, shared by every runner on one
/// PostgreSQL database (see `service::abuse`), like the lockout.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Requests per API key per window. Default 120.
    pub per_key: Option<u32>,
    /// Requests per client address per window. Default 600.
    pub per_ip: Option<u32>,
    /// The sliding window, in seconds. Default 60.
    pub window_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutFile {
    /// Failed authentications from one address within the window that lock
    /// it out. Default 10.
    pub failures: Option<u32>,
    /// Window for counting failures, in seconds. Default 300.
    pub window_secs: Option<u64>,
    /// How long a lockout lasts, in seconds; it lifts by itself. Default 900.
    pub duration_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub database: PathBuf,
    pub max_body_bytes: usize,
    pub wait_timeout: Duration,
    pub shutdown_grace: Duration,
    pub queue_capacity: usize,
    pub global_concurrency: usize,
    pub tenant_concurrency: usize,
    pub anonymous_tenant: Option<String>,
    /// Proxies of the operator's in front (0: none, use the TCP peer).
    pub trusted_proxies: u8,
    pub rate_per_key: u32,
    pub rate_per_ip: u32,
    pub rate_window: Duration,
    pub lockout_failures: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    pub security_contact: String,
    pub pool: crate::sandbox::pool::PoolConfig,
    pub tls: Option<TlsFile>,
    pub retention: super::store::Retention,
    pub sweep_interval: Duration,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub backend: BackendConfig,
    pub workflows: WorkflowsConfig,
    pub web: Option<super::web::config::WebConfig>,
    pub releases: Option<ReleasesConfig>,
}

/// Connection hygiene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

/// Bounds on key verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthConfig {
    pub max_concurrent_verifications: usize,
    pub verification_wait: Duration,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn validate(self) -> Result<ServiceConfig, ConfigError> {
        let c = self.resolve()?;
        c.check_bounds()?;
        c.check_contact()?;
        c.check_pool()?;
        c.check_tls()?;
        Ok(c)
    }

    /// Every key with its default.
    fn resolve(self) -> Result<ServiceConfig, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!(
                    "{listen_text:?} is not an address; write it as IP:PORT, e.g. 127.0.0.1:8080"
                ),
            )
        })?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rate = self.rate_limit.unwrap_or_default();
        let lock = self.lockout.unwrap_or_default();
        let pool = self.pool.unwrap_or_default();
        let retention = self.retention.unwrap_or_default();
        let http = self.http.unwrap_or_default();
        let auth = self.auth.unwrap_or_default();
        let backend = backend(self.backend.as_deref(), self.kubernetes)?;
        let database: PathBuf = self.database.unwrap_or_else(|| "runner.db".into());
        let wf = self.workflows.unwrap_or_default();
        let web = self.web.map(|w| w.validate()).transpose()?;
        // Beside a SQLite file; for a PostgreSQL URL, in the working
        // directory (several runners need the same secrets key: give each
        // `RUNNER_SECRETS_KEY` or a shared `secrets_key_file`).
        let beside = |suffix: &str| {
            let mut p = if crate::service::store::is_postgres(&database) {
                PathBuf::from("runner").into_os_string()
            } else {
                database.clone().into_os_string()
            };
            p.push(suffix);
            PathBuf::from(p)
        };
        let workflows = WorkflowsConfig {
            policy: wf.policy,
            cache_dir: wf.cache_dir.unwrap_or_else(|| beside(".git-cache")),
            secrets_dir: wf.secrets_dir,
            secrets_key_file: wf
                .secrets_key_file
                .unwrap_or_else(|| beside(".secrets-key")),
            concurrency: wf.concurrency.unwrap_or(2),
            jobs_per_run: wf.jobs_per_run.unwrap_or(2),
            egress_grants: wf.egress_grants.unwrap_or_default(),
        };
        let releases = self.releases.map(|r| releases(r, &beside)).transpose()?;
        let days = retention.max_age_days.unwrap_or(30);
        let mb = retention.tenant_max_mb.unwrap_or(1024);
        Ok(ServiceConfig {
            listen,
            database,
            max_body_bytes: self.max_body_bytes.unwrap_or(8 << 20),
            wait_timeout: Duration::from_millis(self.wait_timeout_ms.unwrap_or(60_000)),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(30_000)),
            queue_capacity: self.queue_capacity.unwrap_or(1000),
            global_concurrency: self.global_concurrency.unwrap_or(cpus),
            tenant_concurrency: self.tenant_concurrency.unwrap_or(2),
            anonymous_tenant: self.anonymous_tenant.filter(|t| !t.is_empty()),
            trusted_proxies: match self.trust_forwarded_for {
                None | Some(ForwardedFor::Flag(false)) => 0,
                Some(ForwardedFor::Flag(true)) => 1,
                Some(ForwardedFor::Proxies(n)) => n,
            },
            rate_per_key: rate.per_key.unwrap_or(120),
            rate_per_ip: rate.per_ip.unwrap_or(600),
            rate_window: Duration::from_secs(rate.window_secs.unwrap_or(60)),
            lockout_failures: lock.failures.unwrap_or(10),
            lockout_window: Duration::from_secs(lock.window_secs.unwrap_or(300)),
            lockout_duration: Duration::from_secs(lock.duration_secs.unwrap_or(900)),
            security_contact: self
                .security_contact
                .unwrap_or_else(|| "mailto:security@localhost".into()),
            pool: crate::sandbox::pool::PoolConfig {
                default_size: pool.default_size.unwrap_or(1),
                sizes: pool.sizes.unwrap_or_default(),
                idle_lifetime: Duration::from_secs(pool.idle_lifetime_secs.unwrap_or(600)),
            },
            tls: self.tls,
            retention: super::store::Retention {
                max_age: (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))),
                tenant_max_bytes: (mb > 0).then(|| mb.saturating_mul(1 << 20)),
            },
            sweep_interval: Duration::from_secs(retention.sweep_interval_secs.unwrap_or(300)),
            http: HttpConfig {
                header_read_timeout: Duration::from_millis(
                    http.header_read_timeout_ms.unwrap_or(10_000),
                ),
                body_read_timeout: Duration::from_millis(
                    http.body_read_timeout_ms.unwrap_or(30_000),
                ),
                idle_timeout: Duration::from_secs(http.idle_timeout_secs.unwrap_or(30)),
                max_connections: http.max_connections.unwrap_or(1024),
                max_connections_per_address: http.max_connections_per_address.unwrap_or(64),
            },
            auth: AuthConfig {
                max_concurrent_verifications: auth.max_concurrent_verifications.unwrap_or(cpus),
                verification_wait: Duration::from_millis(
                    auth.verification_wait_ms.unwrap_or(10_000),
                ),
            },
            backend,
            workflows,
            web,
            releases,
        })
    }
}

/// The `backend` key and its `[kubernetes]` section, which only that
/// backend may have.
fn backend(
    name: Option<&str>,
    kubernetes: Option<KubernetesFile>,
) -> Result<BackendConfig, ConfigError> {
    match (name.unwrap_or("docker"), kubernetes) {
        ("docker", None) => Ok(BackendConfig::Docker),
        ("docker", Some(_)) => Err(invalid(
            "kubernetes",
            "is set but `backend` is \"docker\"; set `backend = \"kubernetes\"` or remove the section".into(),
        )),
        ("kubernetes", k) => {
            let k = k.unwrap_or_default();
            Ok(BackendConfig::Kubernetes {
                kubeconfig: k.kubeconfig,
                context: k.context,
                policy: k.policy,
            })
        }
        (other, _) => Err(invalid(
            "backend",
            format!("{other:?} is not a backend; use \"docker\" or \"kubernetes\""),
        )),
    }
}

fn invalid(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

impl ServiceConfig {
    /// Counts and durations: above 0, and sane upper bounds.
    fn check_bounds(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        let positive: [(&'static str, u64); 21] = [
            ("workflows.concurrency", self.workflows.concurrency as u64),
            ("workflows.jobs_per_run", self.workflows.jobs_per_run as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("wait_timeout_ms", self.wait_timeout.as_millis() as u64),
            ("queue_capacity", self.queue_capacity as u64),
            ("global_concurrency", self.global_concurrency as u64),
            ("tenant_concurrency", self.tenant_concurrency as u64),
            ("rate_limit.per_key", self.rate_per_key.into()),
            ("rate_limit.per_ip", self.rate_per_ip.into()),
            ("rate_limit.window_secs", self.rate_window.as_secs()),
            ("lockout.failures", self.lockout_failures.into()),
            ("lockout.window_secs", self.lockout_window.as_secs()),
            ("lockout.duration_secs", self.lockout_duration.as_secs()),
            (
                "retention.sweep_interval_secs",
                self.sweep_interval.as_secs(),
            ),
            (
                "http.header_read_timeout_ms",
                h.header_read_timeout.as_millis() as u64,
            ),
            (
                "http.body_read_timeout_ms",
                h.body_read_timeout.as_millis() as u64,
            ),
            ("http.idle_timeout_secs", h.idle_timeout.as_secs()),
            ("http.max_connections", h.max_connections as u64),
            (
                "http.max_connections_per_address",
                h.max_connections_per_address as u64,
            ),
            (
                "auth.max_concurrent_verifications",
                self.auth.max_concurrent_verifications as u64,
            ),
            (
                "auth.verification_wait_ms",
                self.auth.verification_wait.as_millis() as u64,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(key, "must be above 0".into()));
        }
        let at_most: [(&'static str, u64, u64, &str); 4] = [
            (
                "global_concurrency",
                self.global_concurrency as u64,
                1024,
                "containers at once",
            ),
            (
                "max_body_bytes",
                self.max_body_bytes as u64,
                256 << 20,
                "bytes",
            ),
            (
                "auth.max_concurrent_verifications",
                self.auth.max_concurrent_verifications as u64,
                256,
                "verifications at once (19 MiB each)",
            ),
            (
                "http.max_connections",
                h.max_connections as u64,
                1 << 20,
                "connections",
            ),
        ];
        if let Some((key, v, max, what)) = at_most.iter().find(|(_, v, max, _)| v > max) {
            return Err(invalid(
                key,
                format!("is {v}; more than {max} {what} is not a sane bound"),
            ));
        }
        Ok(())
    }

    fn check_contact(&self) -> Result<(), ConfigError> {
        let c = &self.security_contact;
        if !(c.starts_with("mailto:") || c.starts_with("https://"))
            || c.contains(char::is_whitespace)
        {
            return Err(invalid(
                "security_contact",
                format!("{c:?} must be a mailto: or https:// URI"),
            ));
        }
        Ok(())
    }

    fn check_pool(&self) -> Result<(), ConfigError> {
        if self.pool.idle_lifetime < Duration::from_secs(10) {
            return Err(invalid(
                "pool.idle_lifetime_secs",
                "must be at least 10".into(),
            ));
        }
        let default = ("default_size".to_owned(), self.pool.default_size);
        let sizes = self.pool.sizes.iter().map(|(k, v)| (k.clone(), *v));
        if let Some((lang, n)) = sizes.chain(std::iter::once(default)).find(|(_, n)| *n > 64) {
            return Err(invalid(
                "pool",
                format!("{lang} = {n}: at most 64 warm containers per language and stage"),
            ));
        }
        Ok(())
    }

    fn check_tls(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            for (key, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !p.is_file() {
                    return Err(invalid(
                        key,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        toml::from_str::<ConfigFile>(text)
            .map_err(|e| ConfigError::Parse {
                path: "t".into(),
                message: e.to_string(),
            })?
            .validate()
    }

    #[test]
    fn defaults_suit_one_machine() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(
            c.anonymous_tenant.is_none(),
            "anonymous access is off by default"
        );
        assert_eq!(c.trusted_proxies, 0);
        assert!(c.global_concurrency >= 1);
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.retention.tenant_max_bytes, Some(1 << 30));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn the_backend_is_docker_unless_kubernetes_is_chosen() {
        assert_eq!(parse("").unwrap().backend, BackendConfig::Docker);
        let k =
            parse("backend = \"kubernetes\"\n[kubernetes]\ncontext = \"kind-runner\"\n").unwrap();
        assert_eq!(
            k.backend,
            BackendConfig::Kubernetes {
                kubeconfig: None,
                context: Some("kind-runner".into()),
                policy: None
            }
        );
        let err = parse("backend = \"podman\"").unwrap_err().to_string();
        assert!(
            err.contains("backend") && err.contains("\"docker\""),
            "{err}"
        );
        let err = parse("[kubernetes]\ncontext = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backend = \"kubernetes\""), "{err}");
        assert!(parse("backend = \"kubernetes\"\n[kubernetes]\nnamespace = \"x\"").is_err());
    }

    #[test]
    fn the_deployment_manifests_configuration_is_valid() {
        let text = include_str!("../../deploy/kubernetes/base/runner.toml");
        let c = parse(text).unwrap();
        assert!(matches!(c.backend, BackendConfig::Kubernetes { .. }));
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn forwarded_for_takes_a_flag_or_a_number_of_proxies() {
        assert_eq!(
            parse("trust_forwarded_for = true").unwrap().trusted_proxies,
            1
        );
        assert_eq!(
            parse("trust_forwarded_for = false")
                .unwrap()
                .trusted_proxies,
            0
        );
        assert_eq!(parse("trust_forwarded_for = 2").unwrap().trusted_proxies, 2);
        assert!(parse("trust_forwarded_for = \"yes\"").is_err());
    }

    #[test]
    fn retention_zero_turns_a_bound_off() {
        let c = parse("[retention]\nmax_age_days = 0\ntenant_max_mb = 0").unwrap();
        assert_eq!(c.retention.max_age, None);
        assert_eq!(c.retention.tenant_max_bytes, None);
        let e = parse("[http]\nidle_timeout_secs = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.idle_timeout_secs must be above 0"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("listen = \"localhost\"").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("IP:PORT"), "{e}");
        let e = parse("queue_capacity = 0").unwrap_err().to_string();
        assert!(e.contains("queue_capacity must be above 0"), "{e}");
        let e = parse("[rate_limit]\nper_key = 0").unwrap_err().to_string();
        assert!(e.contains("rate_limit.per_key"), "{e}");
        let e = parse("[tls]\ncert = \"/nope\"\nkey = \"/nope\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.cert"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = parse("listen = \"127.0.0.1:1\"\nnetwork = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `network`"), "{e}");
    }
}
