//! Bringing a service to exactly N healthy replicas of one digest in the
//! proxy, one replica at a time, never below N serving while old ones
//! remain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::container::{self, Replica};
use super::{DeployError, DockerDeployer};
use crate::deploy::report::Log;
use crate::reference::Pinned;

/// How long a replica leaving gets to stop after it was drained (it has no
/// requests left by then).
const STOP_GRACE_SECS: i32 = 5;

/// What the proxy holds: server name → address.
type Members = BTreeMap<String, SocketAddr>;

pub(super) async fn converge(
    d: &DockerDeployer,
    image: &Pinned,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    let network = container::ensure_network(&d.docker, &d.target.service, &d.labels).await?;
    let user = container::ensure_image(&d.docker, image, log.progress()).await?;
    let mut members = proxy_members(d, log).await?;
    let replicas = container::list(&d.docker, &d.target.service).await?;
    forget_vanished(d, &replicas, &mut members, log).await?;
    let (mut keep, others) = partition(d, image, replicas, &mut members, log).await?;
    // Replicas outside the proxy serve nothing: they go first.
    let (mut serving, idle): (Vec<Replica>, Vec<Replica>) = others
        .into_iter()
        .partition(|r| members.contains_key(&r.name));
    for r in idle {
        container::remove(&d.docker, &r.id, 0).await?;
        log.event(format!("removed {} (not serving)", r.name));
    }
    let wanted = d.target.replicas as usize;
    while keep.len() < wanted {
        let body = container::create_body(&d.target, image, &network, &user, &d.labels);
        let new = start_healthy(d, body, image, log).await?;
        add(d, &new, &mut members, log).await?;
        keep.push(new);
        if let Some(old) = serving.pop() {
            retire(d, &old, &mut members, log).await?;
        }
    }
    for old in serving {
        retire(d, &old, &mut members, log).await?;
    }
    while keep.len() > wanted {
        if let Some(extra) = keep.pop() {
            retire(d, &extra, &mut members, log).await?;
        }
    }
    d.proxy.write_config(&members)?;
    Ok(())
}

/// Starts the proxy if it is not running (with the replicas its config
/// file last listed) and returns the replicas it has.
async fn proxy_members(d: &DockerDeployer, log: &mut Log<'_>) -> Result<Members, DeployError> {
    std::fs::create_dir_all(&d.dir).map_err(|source| DeployError::StateDir {
        path: d.dir.clone(),
        source,
    })?;
    if !d.proxy.is_running().await {
        let config = d.dir.join("haproxy.cfg");
        if !config.is_file() {
            d.proxy.write_config(&Members::new())?;
        }
        d.proxy.ensure_running_with_config().await?;
        log.event(format!(
            "started HAProxy for {} on {}",
            d.target.service, d.target.listen
        ));
    }
    Ok(d.proxy.addresses().await?)
}

/// Proxy entries whose container is gone or stopped are removed.
async fn forget_vanished(
    d: &DockerDeployer,
    replicas: &[Replica],
    members: &mut Members,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    let vanished: Vec<String> = members
        .keys()
        .filter(|name| !replicas.iter().any(|r| &r.name == *name && r.running))
        .cloned()
        .collect();
    for name in vanished {
        d.proxy.remove(&name).await?;
        members.remove(&name);
        log.event(format!(
            "removed {name} from the proxy (its container is not running)"
        ));
    }
    Ok(())
}

/// Replicas of `image` that serve (or can: running, healthy, then added)
/// are kept, up to N; everything else is to go.
async fn partition(
    d: &DockerDeployer,
    image: &Pinned,
    replicas: Vec<Replica>,
    members: &mut Members,
    log: &mut Log<'_>,
) -> Result<(Vec<Replica>, Vec<Replica>), DeployError> {
    let up: Vec<String> = d
        .proxy
        .servers()
        .await?
        .into_iter()
        .filter(|s| s.is_up())
        .map(|s| s.name)
        .collect();
    let (mut keep, mut others) = (Vec::new(), Vec::new());
    for r in replicas {
        let candidate =
            r.running && r.digest == image.digest() && keep.len() < d.target.replicas as usize;
        if candidate && up.contains(&r.name) {
            keep.push(r);
        } else if candidate && !members.contains_key(&r.name) && healthy_now(d, &r).await {
            add(d, &r, members, log).await?;
            keep.push(r);
        } else {
            others.push(r);
        }
    }
    Ok((keep, others))
}

async fn healthy_now(d: &DockerDeployer, r: &Replica) -> bool {
    match r.addr(d.target.port) {
        Some(addr) => {
            matches!(
                super::probe::http_status(addr, &d.target.health_path, Duration::from_secs(2))
                    .await,
                Ok(200)
            )
        }
        None => false,
    }
}

/// A new replica that answers its health check; one that does not is
/// removed, and never took traffic.
async fn start_healthy(
    d: &DockerDeployer,
    body: bollard::models::ContainerCreateBody,
    image: &Pinned,
    log: &mut Log<'_>,
) -> Result<Replica, DeployError> {
    let new = container::start(&d.docker, body, &d.target.service, image.digest()).await?;
    log.event(format!(
        "started {} ({})",
        new.name,
        new.ip
            .map_or_else(|| "no address".to_owned(), |ip| ip.to_string())
    ));
    match container::wait_healthy(&d.docker, &new, &d.target).await {
        Ok(after) => {
            log.event(format!(
                "{} healthy after {:.2} s",
                new.name,
                after.as_secs_f64()
            ));
            Ok(new)
        }
        Err(unhealthy) => {
            log.event(format!("{} is unhealthy: removing it", new.name));
            match container::remove(&d.docker, &new.id, 0).await {
                Ok(()) => Err(unhealthy),
                Err(cleanup) => Err(DeployError::with_cleanup(unhealthy, cleanup)),
            }
        }
    }
}

/// Adds a replica to the proxy and waits for the proxy's own check; a
/// replica the proxy does not take is removed.
async fn add(
    d: &DockerDeployer,
    r: &Replica,
    members: &mut Members,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    let addr = r
        .addr(d.target.port)
        .ok_or_else(|| DeployError::Unhealthy {
            replica: r.name.clone(),
            reason: "it has no address".into(),
        })?;
    if let Err(e) = d.proxy.add(&r.name, addr, d.target.health_timeout).await {
        let _ = d.proxy.remove(&r.name).await;
        let first = DeployError::Proxy(e);
        return match container::remove(&d.docker, &r.id, 0).await {
            Ok(()) => Err(first),
            Err(cleanup) => Err(DeployError::with_cleanup(first, cleanup)),
        };
    }
    members.insert(r.name.clone(), addr);
    d.proxy.write_config(members)?;
    log.event(format!("{} takes traffic", r.name));
    Ok(())
}

/// Drains a replica out of the proxy (in-flight requests finish), then
/// stops and removes its container.
async fn retire(
    d: &DockerDeployer,
    r: &Replica,
    members: &mut Members,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    if members.contains_key(&r.name) {
        d.proxy
            .drain_and_remove(&r.name, d.target.drain_timeout)
            .await?;
        members.remove(&r.name);
        d.proxy.write_config(members)?;
        log.event(format!("drained {}", r.name));
    }
    container::remove(&d.docker, &r.id, STOP_GRACE_SECS).await?;
    log.event(format!("stopped {}", r.name));
    Ok(())
}

/// Removes the replicas of one digest (a failed first deploy).
pub(super) async fn retire_digest(
    d: &DockerDeployer,
    digest: &str,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    let mut members = proxy_members(d, log).await?;
    for r in container::list(&d.docker, &d.target.service).await? {
        if r.digest == digest {
            retire(d, &r, &mut members, log).await?;
        }
    }
    d.proxy.write_config(&members)?;
    Ok(())
}

/// Removes every replica of the service.
pub(super) async fn retire_all(d: &DockerDeployer, log: &mut Log<'_>) -> Result<(), DeployError> {
    let mut members = if d.proxy.is_running().await {
        d.proxy.addresses().await?
    } else {
        Members::new()
    };
    for r in container::list(&d.docker, &d.target.service).await? {
        retire(d, &r, &mut members, log).await?;
    }
    Ok(())
}
