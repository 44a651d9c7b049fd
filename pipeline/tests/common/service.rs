//! The deploy tests' service: busybox httpd images built from
//! `fixtures/service` (labelled `io.pipeline.test=deploy`), pushed to a test
//! registry and addressed by digest; a steady load through the proxy that
//! counts failed requests; and a guard removing what a test created.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{docker, ensure_debian, fixtures, run};

/// The label on every image, container and network the deploy tests make.
pub const TEST_LABEL: &str = "io.pipeline.test";

/// A variant of the service image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Healthy, answering its version.
    Good(&'static str),
    /// /health answers 404: refused by its health check.
    Broken,
    /// Healthy for this many seconds, then /health fails.
    BreaksAfter(u32),
}

/// Builds (once per variant, cached by the engine) the local image
/// `pipeline-test/deploy-service:<variant>`.
pub fn build(variant: Variant) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ensure_debian();
    let (tag, args): (String, Vec<String>) = match variant {
        Variant::Good(v) => (v.to_owned(), vec![format!("VERSION={v}")]),
        Variant::Broken => (
            "broken".into(),
            vec!["VERSION=broken".into(), "HEALTH=no".into()],
        ),
        Variant::BreaksAfter(s) => (
            format!("breaks-after-{s}"),
            vec![
                format!("VERSION=breaks-after-{s}"),
                format!("BREAK_AFTER={s}"),
            ],
        ),
    };
    let image = format!("pipeline-test/deploy-service:{tag}");
    let mut cmd = Command::new("docker");
    cmd.args([
        "build",
        "-q",
        "--label",
        &format!("{TEST_LABEL}=deploy"),
        "-t",
        &image,
    ]);
    for a in &args {
        cmd.args(["--build-arg", a]);
    }
    cmd.arg(fixtures().join("service"));
    run(&mut cmd);
    image
}

/// Pushes a local image to `registry` as `REGISTRY/deploy/service:TAG`;
/// returns `REPO@sha256:...`.
pub fn push(image: &str, registry: &str) -> String {
    let tag = image.rsplit(':').next().unwrap();
    let remote = format!("{registry}/deploy/service:{tag}");
    docker(&["tag", image, &remote]);
    let out = docker(&["push", &remote]);
    let digest = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in the push output: {out}"));
    format!("{registry}/deploy/service@{digest}")
}

/// A free loopback port (free when asked).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A unique service name for a test.
pub fn service_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("pltest-{test}-{:x}", nanos & 0xffffff)
}

/// One `GET path` through `addr`: the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write: `write!` would send the pieces as separate segments, and
    // Nagle's algorithm would hold the later ones for a delayed ACK.
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {answer:?}"))?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok((code, body))
}

/// What a steady load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    /// The first failures, for the message.
    pub failures: Vec<String>,
    /// Bodies (versions) in the order they were first seen.
    pub versions: Vec<String>,
    pub last_version: String,
}

/// A client thread sending `GET /version` through the proxy, one new
/// connection per request, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    result: Arc<Mutex<LoadResult>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let result = Arc::new(Mutex::new(LoadResult::default()));
        let (s, r) = (Arc::clone(&stop), Arc::clone(&result));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let answer = get(addr, "/version");
                let mut r = r.lock().unwrap();
                match answer {
                    Ok((200, body)) => {
                        r.ok += 1;
                        if !r.versions.contains(&body) {
                            r.versions.push(body.clone());
                        }
                        r.last_version = body;
                    }
                    other => {
                        r.failed += 1;
                        if r.failures.len() < 10 {
                            r.failures.push(format!("{other:?}"));
                        }
                    }
                }
                drop(r);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        Load {
            stop,
            result,
            thread: Some(thread),
        }
    }

    /// Requests so far.
    pub fn so_far(&self) -> LoadResult {
        self.result.lock().unwrap().clone()
    }

    pub fn stop(mut self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.so_far()
    }

    /// Waits until `n` more requests succeeded.
    pub fn wait_for(&self, n: u64) {
        let start = self.so_far().ok;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.so_far().ok < start + n {
            assert!(
                Instant::now() < deadline,
                "the load makes no progress: {:?}",
                self.so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Removes, when dropped, the containers and network of a service, and its
/// HAProxy (by the pid in its state directory).
pub struct ServiceGuard {
    pub service: String,
    pub state_dir: std::path::PathBuf,
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let filter = format!("label=io.pipeline.deploy.service={}", self.service);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("pipeline-{}", self.service)])
            .output();
        let pid_file = self
            .state_dir
            .join("docker")
            .join(&self.service)
            .join("haproxy.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            for pid in pid.split_whitespace() {
                let _ = Command::new("kill").arg(pid).output();
            }
        }
    }
}

/// Removes, when dropped, every image reference into a test registry
/// (`127.0.0.1:PORT/...`, tags and digests): what pushing to it and pulling
/// from it left in the engine. The port is the test's own while it runs.
pub struct RegistryImages(pub String);

impl Drop for RegistryImages {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.0);
        let Ok(out) = Command::new("docker")
            .args([
                "images",
                "--digests",
                "--format",
                "{{.Repository}} {{.Tag}} {{.Digest}}",
            ])
            .output()
        else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut w = line.split_whitespace();
            let (Some(repo), Some(tag), Some(digest)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            if !repo.starts_with(&prefix) {
                continue;
            }
            let reference = if tag == "<none>" {
                format!("{repo}@{digest}")
            } else {
                format!("{repo}:{tag}")
            };
            let _ = Command::new("docker").args(["rmi", &reference]).output();
        }
    }
}

/// Whether HAProxy is installed; without it the test skips (fails under
/// `CI=true`).
pub fn haproxy_or_skip(test: &str) -> bool {
    match pipeline::deploy::docker::proxy::binary() {
        Ok(_) => true,
        Err(e) if test_support::in_ci() => panic!("{test}: HAProxy is required when CI=true: {e}"),
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}; set CI=true to make this a failure");
            false
        }
    }
}

/// The containers of a service: (name, digest label, running).
pub fn containers(service: &str) -> Vec<(String, String, bool)> {
    let filter = format!("label=io.pipeline.deploy.service={service}");
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Label \"io.pipeline.deploy.digest\"}} {{.State}}",
    ]);
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_owned(),
                w.next()?.to_owned(),
                w.next()? == "running",
            ))
        })
        .collect()
}
