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
    /// SQLite database (created if missing). Default `runner.db`.
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
    /// Take the client address from `X-Forwarded-For` (only behind a proxy
    /// you run). Default false.
    pub trust_forwarded_for: Option<bool>,
    /// `Contact:` of /.well-known/security.txt (a mailto: or https: URI).
    /// Default `mailto:security@localhost`: set your own.
    pub security_contact: Option<String>,
    pub rate_limit: Option<RateLimitFile>,
    pub lockout: Option<LockoutFile>,
    pub pool: Option<PoolFile>,
    pub tls: Option<TlsFile>,
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
    pub trust_forwarded_for: bool,
    pub rate_per_key: u32,
    pub rate_per_ip: u32,
    pub rate_window: Duration,
    pub lockout_failures: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    pub security_contact: String,
    pub pool: crate::sandbox::pool::PoolConfig,
    pub tls: Option<TlsFile>,
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
        let invalid = |key, problem: String| ConfigError::Invalid { key, problem };
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
        let c = ServiceConfig {
            listen,
            database: self.database.unwrap_or_else(|| "runner.db".into()),
            max_body_bytes: self.max_body_bytes.unwrap_or(8 << 20),
            wait_timeout: Duration::from_millis(self.wait_timeout_ms.unwrap_or(60_000)),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(30_000)),
            queue_capacity: self.queue_capacity.unwrap_or(1000),
            global_concurrency: self.global_concurrency.unwrap_or(cpus),
            tenant_concurrency: self.tenant_concurrency.unwrap_or(2),
            anonymous_tenant: self.anonymous_tenant.filter(|t| !t.is_empty()),
            trust_forwarded_for: self.trust_forwarded_for.unwrap_or(false),
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
        };
        let positive: [(&'static str, u64); 11] = [
            ("max_body_bytes", c.max_body_bytes as u64),
            ("wait_timeout_ms", c.wait_timeout.as_millis() as u64),
            ("queue_capacity", c.queue_capacity as u64),
            ("global_concurrency", c.global_concurrency as u64),
            ("tenant_concurrency", c.tenant_concurrency as u64),
            ("rate_limit.per_key", c.rate_per_key.into()),
            ("rate_limit.per_ip", c.rate_per_ip.into()),
            ("rate_limit.window_secs", c.rate_window.as_secs()),
            ("lockout.failures", c.lockout_failures.into()),
            ("lockout.window_secs", c.lockout_window.as_secs()),
            ("lockout.duration_secs", c.lockout_duration.as_secs()),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be above 0".into()));
            }
        }
        if c.global_concurrency > 1024 {
            return Err(invalid(
                "global_concurrency",
                format!(
                    "is {}; more than 1024 containers at once is not a sane bound",
                    c.global_concurrency
                ),
            ));
        }
        if c.max_body_bytes > 256 << 20 {
            return Err(invalid("max_body_bytes", "must be at most 256 MiB".into()));
        }
        if !(c.security_contact.starts_with("mailto:")
            || c.security_contact.starts_with("https://"))
            || c.security_contact.contains(char::is_whitespace)
        {
            return Err(invalid(
                "security_contact",
                format!("{:?} must be a mailto: or https:// URI", c.security_contact),
            ));
        }
        if c.pool.idle_lifetime < Duration::from_secs(10) {
            return Err(invalid(
                "pool.idle_lifetime_secs",
                "must be at least 10".into(),
            ));
        }
        if let Some((lang, n)) = c
            .pool
            .sizes
            .iter()
            .chain(std::iter::once((
                &"default_size".to_owned(),
                &c.pool.default_size,
            )))
            .find(|(_, n)| **n > 64)
        {
            return Err(invalid(
                "pool",
                format!("{lang} = {n}: at most 64 warm containers per language and stage"),
            ));
        }
        if let Some(tls) = &c.tls {
            for (key, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !p.is_file() {
                    return Err(invalid(
                        key,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        Ok(c)
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
        assert!(!c.trust_forwarded_for);
        assert!(c.global_concurrency >= 1);
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
