//! Helpers shared by the workspace's integration tests.
//!
//! Tests that need Docker call [`docker_or_skip`] (or the [`require_docker!`]
//! macro) first. Without Docker they skip with a message, except under
//! `CI=true`, where they fail: CI must never pass by skipping.

pub mod netns;
pub mod postgres;
pub mod registry;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The Docker socket tests talk to (`DOCKER_HOST=unix://...` or the default).
pub fn docker_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
}

/// Why the Docker daemon did not answer a ping.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot {action} {socket}: {source}")]
    Io {
        action: &'static str,
        socket: String,
        source: std::io::Error,
    },
    #[error("unexpected answer from {socket}: {first_line}")]
    Answer { socket: String, first_line: String },
}

/// Pings the Docker daemon over its socket.
pub fn docker_ping() -> Result<(), PingError> {
    let path = docker_socket();
    let io = |action: &'static str| {
        let socket = path.clone();
        move |source| PingError::Io {
            action,
            socket,
            source,
        }
    };
    let mut s = UnixStream::connect(&path).map_err(io("connect to"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("set a timeout on"))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(io("write to"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(io("read from"))?;
    if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(PingError::Answer {
            socket: path,
            first_line: reply.lines().next().unwrap_or("").to_owned(),
        })
    }
}

/// Whether CI mode is on (`CI=true`, as GitHub Actions and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `true` when Docker answers. Otherwise prints why and returns `false`, or
/// panics under `CI=true`.
pub fn docker_or_skip(test: &str) -> bool {
    match docker_ping() {
        Ok(()) => true,
        Err(e) if in_ci() => {
            panic!("{test}: Docker is required when CI=true, and it is unavailable: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: Docker is unavailable ({e}); set CI=true to make this a failure"
            );
            false
        }
    }
}

/// Returns early from a test when Docker is unavailable (outside CI).
#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::docker_or_skip(module_path!()) {
            return;
        }
    };
}

/// A directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{nanos}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("creating a test directory");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_detection_reads_the_environment() {
        // Only checks the parsing; the value depends on where tests run.
        let _ = in_ci();
        assert!(docker_socket().starts_with('/'));
    }

    #[test]
    fn temp_dirs_are_removed() {
        let p = {
            let d = TempDir::new("support-test");
            assert!(d.path().is_dir());
            d.path().to_owned()
        };
        assert!(!p.exists());
    }
}
