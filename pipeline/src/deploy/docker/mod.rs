//! The Docker target: one host, N replicas of a service behind an HAProxy
//! the deployer runs ([`proxy`]), replaced one at a time.
//!
//! A deploy converges the service on one digest ([`converge`]): for each
//! replica missing, start a hardened container on the service's network,
//! wait for its health check, add it to the proxy and wait for the proxy's
//! own check, then drain an old replica (no new requests; in-flight ones
//! finish) and stop it. A new replica that fails its health check is
//! removed before it ever takes traffic; the deploy then converges back on
//! the previous digest the same way, so the old replicas keep serving
//! throughout. After the last replica, every replica must stay up for the
//! soak window.
//!
//! What runs is read from the engine (containers labelled with the service
//! and the digest) and the proxy's runtime API, never assumed: a deployer
//! killed mid-way leaves containers and proxy entries that [`DockerDeployer::reconcile`]
//! resolves, and at most one deployer works on a service at a time (a lock
//! file in its state directory).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;

mod container;
mod converge;
pub mod probe;
pub mod proxy;
mod target;

pub use container::{DIGEST_LABEL, IMAGE_LABEL, Replica, SERVICE_LABEL, network_name};
pub use proxy::{Proxy, ProxyError, ServerStat};
pub use target::{DockerTarget, Limits};

use super::error::DeployError;
use super::report::{DeployReport, Log};
use crate::flow::Progress;
use crate::reference::Pinned;

/// Deploys one service.
#[derive(Debug, Clone)]
pub struct DockerDeployer {
    docker: Docker,
    target: DockerTarget,
    dir: PathBuf,
    labels: BTreeMap<String, String>,
    proxy: Proxy,
}

/// What serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Whether the proxy answers.
    pub proxy_running: bool,
    /// Digest → how many of its replicas the proxy has up.
    pub up: BTreeMap<String, usize>,
    /// Replicas in the proxy that are not up (down, draining).
    pub not_up: usize,
    /// Containers of the service, running or not.
    pub containers: usize,
}

impl ServiceStatus {
    /// The digest every replica in the proxy runs, when there are exactly
    /// `replicas` of them, all up.
    pub fn fully_live(&self, replicas: u32) -> Option<&str> {
        match (self.up.len(), self.not_up) {
            (1, 0) => {
                let (digest, n) = self.up.iter().next()?;
                (*n == replicas as usize).then_some(digest.as_str())
            }
            _ => None,
        }
    }
}

impl DockerDeployer {
    /// A deployer keeping its files (proxy config, socket, lock) under
    /// `state_dir/docker/<service>`.
    pub fn new(docker: Docker, target: DockerTarget, state_dir: &Path) -> DockerDeployer {
        let dir = state_dir.join("docker").join(&target.service);
        let proxy = Proxy::new(&target.service, target.listen, &target.health_path, &dir);
        DockerDeployer {
            docker,
            target,
            dir,
            labels: BTreeMap::new(),
            proxy,
        }
    }

    /// Extra labels on every container and network it creates (tests find
    /// and remove what they made by them).
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> DockerDeployer {
        self.labels = labels;
        self
    }

    pub fn target(&self) -> &DockerTarget {
        &self.target
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Holds the service's lock file until dropped; another deployer holding
    /// it is [`DeployError::Busy`]. The kernel releases it when a deployer
    /// dies, even by `kill -9`.
    fn lock(&self) -> Result<File, DeployError> {
        let state_dir = |source| DeployError::StateDir {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(state_dir)?;
        let path = self.dir.join("deploy.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(state_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(DeployError::Busy {
                what: format!("service {}", self.target.service),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(state_dir(e)),
        }
    }

    /// Rolls the service onto `image`; on failure converges back on
    /// `previous` (the last verified digest) and says why.
    pub async fn deploy(
        &self,
        image: &Pinned,
        previous: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<DeployReport, DeployError> {
        let _lock = self.lock()?;
        let mut log = Log::new(progress);
        log.event(format!(
            "deploying {image} to {} replicas of {}",
            self.target.replicas, self.target.service
        ));
        let forward = async {
            converge::converge(self, image, &mut log).await?;
            self.soak(image, &mut log).await
        };
        let cause = match forward.await {
            Ok(()) => {
                log.event(format!("{image} is live"));
                return Ok(log.report(image.to_string(), self.describe()));
            }
            Err(e) => e,
        };
        log.event(format!("FAILED: {cause}"));
        self.roll_back(image, previous, cause, &mut log).await
    }

    async fn roll_back(
        &self,
        image: &Pinned,
        previous: Option<&Pinned>,
        cause: DeployError,
        log: &mut Log<'_>,
    ) -> Result<DeployReport, DeployError> {
        let restored = match previous {
            Some(p) if p != image => {
                log.event(format!("rolling back to {p}"));
                converge::converge(self, p, log)
                    .await
                    .map(|()| Some(p.to_string()))
            }
            _ => {
                log.event(format!("removing the replicas of {image}"));
                converge::retire_digest(self, image.digest(), log)
                    .await
                    .map(|()| None)
            }
        };
        match restored {
            Ok(restored) => {
                log.event("rollback done");
                Err(DeployError::RolledBack {
                    image: image.to_string(),
                    cause: Box::new(cause),
                    restored,
                })
            }
            Err(rollback) => Err(DeployError::RollbackFailed {
                image: image.to_string(),
                cause: Box::new(cause),
                restoring: previous.map_or_else(|| "nothing".to_owned(), ToString::to_string),
                rollback: Box::new(rollback),
            }),
        }
    }

    /// Every replica of `image` must stay up in the proxy, and running, for
    /// the soak window.
    async fn soak(&self, image: &Pinned, log: &mut Log<'_>) -> Result<(), DeployError> {
        let window = self.target.soak_window;
        if window.is_zero() {
            return Ok(());
        }
        log.event(format!("soaking for {} s", window.as_secs()));
        let fail = |reason: String| DeployError::Soak {
            seconds: window.as_secs(),
            reason,
        };
        let started = Instant::now();
        while started.elapsed() < window {
            let status = self.status().await?;
            if status.fully_live(self.target.replicas) != Some(image.digest()) {
                let down: Vec<String> = self
                    .proxy
                    .servers()
                    .await?
                    .into_iter()
                    .filter(|s| !s.is_up())
                    .map(|s| format!("{} is {} (check {})", s.name, s.status, s.check))
                    .collect();
                return Err(fail(if down.is_empty() {
                    format!(
                        "fewer than {} replicas of {image} are up",
                        self.target.replicas
                    )
                } else {
                    down.join(", ")
                }));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    /// What serves now, from the engine and the proxy.
    pub async fn status(&self) -> Result<ServiceStatus, DeployError> {
        let replicas = container::list(&self.docker, &self.target.service).await?;
        let proxy_running = self.proxy.is_running().await;
        let mut status = ServiceStatus {
            proxy_running,
            up: BTreeMap::new(),
            not_up: 0,
            containers: replicas.len(),
        };
        if !proxy_running {
            return Ok(status);
        }
        for s in self.proxy.servers().await? {
            let replica = replicas.iter().find(|r| r.name == s.name && r.running);
            match replica {
                Some(r) if s.is_up() => *status.up.entry(r.digest.clone()).or_default() += 1,
                _ => status.not_up += 1,
            }
        }
        Ok(status)
    }

    /// After a deployer died mid-way: keeps `pending` if it is fully live
    /// (every replica of it up in the proxy, nothing else) and stays so for
    /// the soak window, else converges back on `recorded` (or, with nothing
    /// recorded, removes `pending`'s replicas). Returns what is live
    /// afterwards.
    pub async fn reconcile(
        &self,
        recorded: Option<&Pinned>,
        pending: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<Option<Pinned>, DeployError> {
        let _lock = self.lock()?;
        let mut log = Log::new(progress);
        let status = self.status().await?;
        if let Some(p) = pending
            && status.fully_live(self.target.replicas) == Some(p.digest())
        {
            // Every replica was replaced; only the soak window may have been
            // cut short, so it runs again before the new digest is kept.
            log.event(format!("{p} is fully live: soaking it again"));
            match self.soak(p, &mut log).await {
                Ok(()) => return Ok(Some(p.clone())),
                Err(e) => log.event(format!("FAILED: {e}")),
            }
        }
        match recorded {
            Some(r) => {
                log.event(format!("restoring {r}"));
                converge::converge(self, r, &mut log).await?;
                Ok(Some(r.clone()))
            }
            None => {
                if let Some(p) = pending {
                    log.event(format!("removing the replicas of {p}"));
                    converge::retire_digest(self, p.digest(), &mut log).await?;
                }
                Ok(None)
            }
        }
    }

    /// Removes the service: replicas, proxy, network, and its state files.
    pub async fn teardown(&self) -> Result<(), DeployError> {
        let lock = self.lock()?;
        let mut log = Log::new(&|_| {});
        converge::retire_all(self, &mut log).await?;
        self.proxy.stop().await?;
        match self
            .docker
            .remove_network(&network_name(&self.target.service))
            .await
        {
            Ok(()) => {}
            Err(e) if crate::engine::is_not_found(&e) => {}
            Err(e) => {
                return Err(DeployError::Docker {
                    action: "remove the service's network".into(),
                    message: crate::engine::describe(&e),
                });
            }
        }
        drop(lock);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "docker service {} ({} replicas) on {}",
            self.target.service, self.target.replicas, self.target.listen
        )
    }
}
