//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a free loopback port, with its own storage and config in a
//! temporary directory, optionally behind htpasswd (bcrypt) authentication.
//! It is stopped and its files removed when the [`Registry`] is dropped.
//!
//! ```no_run
//! use test_support::registry::{Auth, Registry};
//! let reg = test_support::require_registry!(Auth::None);
//! // push to format!("{}/app:tag", reg.addr) ...
//! ```
//!
//! Docker treats 127.0.0.0/8 as an insecure registry, so `docker push
//! 127.0.0.1:PORT/...` works over plain HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, in_ci};

/// The registry binary, overridable for machines that install it elsewhere.
pub fn registry_binary() -> PathBuf {
    std::env::var_os("DOCKER_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

/// How clients must authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTP Basic against one htpasswd user.
    Htpasswd {
        user: String,
        password: String,
    },
}

/// Why a registry could not be started or asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{} is not installed (Debian: `apt-get install docker-registry`, or .ci/setup)", .0.display())]
    NotInstalled(PathBuf),
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("bcrypt: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error("docker-registry exited ({status}) before answering: {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("docker-registry did not answer on {addr} within {timeout:?}: {log}")]
    NoAnswer {
        addr: String,
        timeout: Duration,
        log: String,
    },
    #[error("no HTTP answer: {0:?}")]
    NotHttp(String),
}

/// `map_err` for an I/O step, naming it.
fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let action = action.into();
    move |source| RegistryError::Io { action, source }
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`, to put in front of repository names.
    pub addr: String,
    pub auth: Auth,
    child: Child,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers.
    pub fn start(auth: Auth) -> Result<Registry, RegistryError> {
        let bin = registry_binary();
        if !bin.is_file() {
            return Err(RegistryError::NotInstalled(bin));
        }
        // The port is free when probed; another process could take it before
        // the registry binds, so a failed start is retried on a new port.
        let mut attempt = Self::try_start(&bin, &auth);
        for _ in 0..2 {
            if attempt.is_ok() {
                break;
            }
            attempt = Self::try_start(&bin, &auth);
        }
        attempt
    }

    fn try_start(bin: &PathBuf, auth: &Auth) -> Result<Registry, RegistryError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("find a free port"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir = TempDir::new("registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).map_err(io("create the storage directory"))?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: test-registry-secret-{port}\n",
            storage.display()
        );
        if let Auth::Htpasswd { user, password } = auth {
            let hash =
                bcrypt::hash_with_result(password, 4)?.format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))
                .map_err(io("write the htpasswd file"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(io("write the configuration"))?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(io("create the log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("share the log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("run {}", bin.display())))?;
        let mut reg = Registry {
            addr,
            auth: auth.clone(),
            child,
            dir,
        };
        reg.wait_ready(Duration::from_secs(20))?;
        Ok(reg)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), RegistryError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RegistryError::Exited {
                    status,
                    log: self.log(),
                });
            }
            // 401 is an answer too: the authenticated registry is up.
            if let Ok(200 | 401) = self.status("/v2/") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RegistryError::NoAnswer {
                    addr: self.addr.clone(),
                    timeout,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP status of an anonymous GET of `path`.
    pub fn status(&self, path: &str) -> Result<u16, RegistryError> {
        let mut s =
            TcpStream::connect(&self.addr).map_err(io(format!("connect to {}", self.addr)))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io("set a read timeout"))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)
            .map_err(io(format!("send GET {path}")))?;
        let mut reply = String::new();
        // A reset after the status line still leaves the status to read.
        let _ = s.read_to_string(&mut reply);
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or(RegistryError::NotHttp(reply))
    }

    /// What the registry logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running registry, or `None` after printing why the test skips;
/// panics instead under `CI=true`.
pub fn registry_or_skip(test: &str, auth: Auth) -> Option<Registry> {
    match Registry::start(auth) {
        Ok(r) => Some(r),
        Err(e) if in_ci() => panic!("{test}: a registry is required when CI=true: {e}"),
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: cannot start a registry ({e}); set CI=true to make this a failure"
            );
            None
        }
    }
}

/// Starts a registry with the given [`Auth`], or returns from the test
/// (outside CI) when `docker-registry` is unavailable.
#[macro_export]
macro_rules! require_registry {
    ($auth:expr) => {
        match $crate::registry::registry_or_skip(module_path!(), $auth) {
            Some(r) => r,
            None => return,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let Some(reg) = registry_or_skip("registry::starts", Auth::None) else {
            return;
        };
        assert_eq!(reg.status("/v2/").unwrap(), 200);
        let addr = reg.addr.clone();
        drop(reg);
        assert!(TcpStream::connect(&addr).is_err(), "stopped on drop");
    }

    #[test]
    fn htpasswd_requires_credentials() {
        let Some(reg) = registry_or_skip(
            "registry::htpasswd",
            Auth::Htpasswd {
                user: "alice".into(),
                password: "wonderland".into(),
            },
        ) else {
            return;
        };
        assert_eq!(reg.status("/v2/").unwrap(), 401);
    }
}
