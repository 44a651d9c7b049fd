//! The containers of a Docker service: listed by label, started hardened on
//! the service's own network, health-checked from the host, removed.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, NetworkCreateRequest, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::target::DockerTarget;
use super::{DeployError, probe};
use crate::engine::{describe, is_not_found};
use crate::reference::Pinned;

/// Labels every container and network of a service carries.
pub const SERVICE_LABEL: &str = "io.pipeline.deploy.service";
/// The digest a container runs.
pub const DIGEST_LABEL: &str = "io.pipeline.deploy.digest";
/// The image by digest a container runs.
pub const IMAGE_LABEL: &str = "io.pipeline.deploy.image";
/// The user a replica runs as when its image names none, or root.
pub const FALLBACK_USER: &str = "65534:65534";

/// One container of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    /// Also its server name in the proxy.
    pub name: String,
    pub digest: String,
    pub running: bool,
    pub ip: Option<IpAddr>,
}

impl Replica {
    pub fn addr(&self, port: u16) -> Option<SocketAddr> {
        self.ip.map(|ip| SocketAddr::new(ip, port))
    }
}

fn engine(action: &str, e: &bollard::errors::Error) -> DeployError {
    DeployError::Docker {
        action: action.to_owned(),
        message: describe(e),
    }
}

/// The service's network: a user-defined bridge of its own.
pub fn network_name(service: &str) -> String {
    format!("pipeline-{service}")
}

/// The containers labelled as the service's, running or not.
pub async fn list(docker: &Docker, service: &str) -> Result<Vec<Replica>, DeployError> {
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_owned(),
        vec![format!("{SERVICE_LABEL}={service}")],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| engine("list the service's containers", &e))?;
    let network = network_name(service);
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let ip = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse().ok());
            Some(Replica {
                id: c.id?,
                name: c.names?.first()?.trim_start_matches('/').to_owned(),
                digest: labels.get(DIGEST_LABEL).cloned().unwrap_or_default(),
                running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                ip,
            })
        })
        .collect())
}

/// Creates the service's network unless it exists.
pub async fn ensure_network(
    docker: &Docker,
    service: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String, DeployError> {
    let name = network_name(service);
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(name),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine("inspect the service's network", &e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(labels.clone().into_iter().collect()),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(name),
        // Created meanwhile by another deployer: fine.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(name),
        Err(e) => Err(engine("create the service's network", &e)),
    }
}

/// Makes sure the engine has the image, pulling it by digest if needed;
/// returns the user it runs as (its own unless that is root).
pub async fn ensure_image(
    docker: &Docker,
    image: &Pinned,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, DeployError> {
    let reference = image.to_string();
    if docker.inspect_image(&reference).await.is_err() {
        progress(&format!("pulling {reference}"));
        pull(docker, image).await?;
    }
    let inspect =
        docker
            .inspect_image(&reference)
            .await
            .map_err(|e| DeployError::ImageUnavailable {
                image: reference.clone(),
                message: describe(&e),
            })?;
    let user = inspect.config.and_then(|c| c.user).unwrap_or_default();
    Ok(if is_root(&user) {
        FALLBACK_USER.to_owned()
    } else {
        user
    })
}

/// `""`, `root`, `0`, `0:0`, `root:x`: a user that is root.
fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default();
    name.is_empty() || name == "root" || name == "0"
}

async fn pull(docker: &Docker, image: &Pinned) -> Result<(), DeployError> {
    let unavailable = |message: String| DeployError::ImageUnavailable {
        image: image.to_string(),
        message,
    };
    let creds = crate::credentials::for_registry(&image.reference().registry)
        .map_err(|e| unavailable(e.to_string()))?
        .map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.expose().to_owned()),
            serveraddress: Some(image.reference().registry.clone()),
            ..Default::default()
        });
    let opts = CreateImageOptionsBuilder::default()
        .from_image(&image.name())
        .tag(image.digest())
        .build();
    let mut stream = docker.create_image(Some(opts), None, creds);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(unavailable(e));
                }
            }
            Err(e) => return Err(unavailable(describe(&e))),
        }
    }
    Ok(())
}

/// What a new replica is started with: everything that hardens it is fixed
/// here, as for the sandboxes, except the network the service needs.
pub fn create_body(
    target: &DockerTarget,
    image: &Pinned,
    network: &str,
    user: &str,
    labels: &BTreeMap<String, String>,
) -> ContainerCreateBody {
    let memory = i64::try_from(target.limits.memory_mb << 20).unwrap_or(i64::MAX);
    let mut all_labels = labels.clone();
    all_labels.insert(SERVICE_LABEL.into(), target.service.clone());
    all_labels.insert(DIGEST_LABEL.into(), image.digest().to_owned());
    all_labels.insert(IMAGE_LABEL.into(), image.to_string());
    ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some(user.to_owned()),
        labels: Some(all_labels.into_iter().collect()),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_owned()),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec![]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                "rw,noexec,nosuid,nodev,size=16m".to_owned(),
            )])),
            binds: Some(vec![]),
            devices: Some(vec![]),
            ipc_mode: Some("private".into()),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((target.limits.cpus * 1e9) as i64),
            pids_limit: Some(target.limits.pids),
            // A tiny init as PID 1: signals reach the service, zombies are reaped.
            init: Some(true),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(3),
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "3".to_owned()),
                ])),
            }),
            publish_all_ports: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A name for a new replica: the service, the digest's first hex digits,
/// and a random suffix (names are also the proxy's server names).
fn replica_name(service: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).unwrap_or_default();
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{service}-{}-{suffix}", &hex[..hex.len().min(12)])
}

/// Creates and starts a replica; returns it with its address.
pub async fn start(
    docker: &Docker,
    body: ContainerCreateBody,
    service: &str,
    digest: &str,
) -> Result<Replica, DeployError> {
    let name = replica_name(service, digest);
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| engine("create a replica", &e))?;
    if let Err(e) = docker.start_container(&created.id, None).await {
        let start = engine(&format!("start the replica {name}"), &e);
        return Err(match remove(docker, &created.id, 0).await {
            Ok(()) => start,
            Err(cleanup) => DeployError::with_cleanup(start, cleanup),
        });
    }
    let network = network_name(service);
    let inspect = docker
        .inspect_container(&created.id, None)
        .await
        .map_err(|e| engine(&format!("inspect the replica {name}"), &e))?;
    let ip = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&network))
        .and_then(|e| e.ip_address)
        .and_then(|ip| ip.parse().ok());
    Ok(Replica {
        id: created.id,
        name,
        digest: digest.to_owned(),
        running: true,
        ip,
    })
}

/// Waits until the replica answers its health check with 200. A replica
/// that exits, or does not answer in time, fails with its last log lines.
pub async fn wait_healthy(
    docker: &Docker,
    replica: &Replica,
    target: &DockerTarget,
) -> Result<Duration, DeployError> {
    let started = Instant::now();
    let unhealthy = |reason: String| DeployError::Unhealthy {
        replica: replica.name.clone(),
        reason,
    };
    let Some(addr) = replica.addr(target.port) else {
        return Err(unhealthy(format!(
            "it has no address on {}",
            network_name(&target.service)
        )));
    };
    loop {
        let last = match probe::http_status(addr, &target.health_path, Duration::from_secs(2)).await
        {
            Ok(200) => return Ok(started.elapsed()),
            Ok(code) => format!("GET {} answered {code}", target.health_path),
            Err(e) => format!("GET {}: {e}", target.health_path),
        };
        if let Some(exit) = exited(docker, &replica.id).await {
            let logs = last_logs(docker, &replica.id).await;
            return Err(unhealthy(format!(
                "it exited ({exit}); last output:\n{logs}"
            )));
        }
        if started.elapsed() > target.health_timeout {
            let logs = last_logs(docker, &replica.id).await;
            return Err(unhealthy(format!(
                "no healthy answer within {} s (last: {last}); last output:\n{logs}",
                target.health_timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `exit code N` when the container is not running.
pub async fn exited(docker: &Docker, id: &str) -> Option<String> {
    let state = docker.inspect_container(id, None).await.ok()?.state?;
    if state.running == Some(true) && state.restarting != Some(true) {
        return None;
    }
    Some(format!("exit code {}", state.exit_code.unwrap_or(-1)))
}

/// The last 20 lines the container wrote, indented.
async fn last_logs(docker: &Docker, id: &str) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail("20")
        .build();
    let mut stream = docker.logs(id, Some(opts));
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    if out.trim().is_empty() {
        return "  (nothing)".into();
    }
    out.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Stops (SIGTERM, then SIGKILL after `grace_secs`) and removes a container.
pub async fn remove(docker: &Docker, id: &str, grace_secs: i32) -> Result<(), DeployError> {
    let stop = StopContainerOptionsBuilder::default().t(grace_secs).build();
    match docker.stop_container(id, Some(stop)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => return Err(engine("stop a replica", &e)),
    }
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // Removal already in progress (the engine is removing it).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(engine("remove a replica", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_hardened_and_labelled() {
        let target = DockerTarget::new("app", 3, 8080, "/health", "127.0.0.1:1".parse().unwrap());
        let image = Pinned::parse("127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        let labels = BTreeMap::from([("io.pipeline.test".to_owned(), "t".to_owned())]);
        let body = create_body(&target, &image, "pipeline-app", "10001", &labels);
        let h = body.host_config.unwrap();
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.privileged, Some(false));
        assert_eq!(
            h.security_opt,
            Some(vec!["no-new-privileges:true".to_owned()])
        );
        assert_eq!(h.memory, h.memory_swap);
        assert_eq!(h.pids_limit, Some(128));
        assert_eq!(h.network_mode.as_deref(), Some("pipeline-app"));
        let l = body.labels.unwrap();
        assert_eq!(l[SERVICE_LABEL], "app");
        assert_eq!(l[DIGEST_LABEL], image.digest());
        assert_eq!(l["io.pipeline.test"], "t");
        assert_eq!(body.user.as_deref(), Some("10001"));
    }

    #[test]
    fn root_is_never_the_user() {
        for root in ["", "root", "0", "0:0", "root:root"] {
            assert!(is_root(root), "{root}");
        }
        for user in ["10001", "app", "10001:10001", "nobody"] {
            assert!(!is_root(user), "{user}");
        }
        let name = replica_name("app", "sha256:0123456789abcdef");
        assert!(name.starts_with("app-0123456789ab-"), "{name}");
    }
}
