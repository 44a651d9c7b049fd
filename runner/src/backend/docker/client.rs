//! [`ContainerEngine`] on the Docker Engine API (bollard).

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    WaitContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};

use super::engine::{ContainerEngine, ContainerInfo, ContainerSpec, ContainerState, EngineError};
use crate::backend::{Attachment, BackendError, Output};
pub use pipeline::engine::{describe, is_not_found};

/// Path of `sandbox-init` in every sandbox image. Set explicitly so an image
/// cannot substitute another entrypoint.
pub const SANDBOX_INIT: &str = "/usr/local/sbin/sandbox-init";

/// Paths under /proc and /sys hidden from the sandbox (a file becomes
/// /dev/null, a directory an empty read-only tmpfs). Setting this replaces
/// the engine's default list, so it starts with Docker's own (the newest
/// engine's; paths a kernel lacks are skipped), then adds what shows the
/// host: the kernel's build configuration and the host's load average.
pub const MASKED_PATHS: [&str; 14] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/config.gz",
    "/proc/loadavg",
];

/// Kernel interfaces mounted read-only: Docker's own list, stated here so
/// it holds whatever the engine's defaults become.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The Docker engine, reached through `DOCKER_HOST` or the local socket.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    client: Docker,
}

impl DockerEngine {
    /// Connects and settles the API version with the daemon (older daemons,
    /// such as Debian's 20.10, refuse newer API versions).
    /// (The connection code is `pipeline`'s, shared by both binaries.)
    pub async fn connect() -> Result<Self, EngineError> {
        let client = pipeline::engine::connect()
            .await
            .map_err(|e| EngineError::Unreachable(e.message))?;
        Ok(DockerEngine { client })
    }
}

/// Translates a [`ContainerSpec`] into Docker's create body. Everything that
/// makes the container a sandbox is fixed here, not taken from the spec.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| {
            let (uid, gid) = spec
                .user
                .split_once(':')
                .unwrap_or((&spec.user, &spec.user));
            let exec = if t.exec { "exec" } else { "noexec" };
            (
                t.path.clone(),
                format!(
                    "rw,{exec},nosuid,nodev,size={},mode={:o},uid={uid},gid={gid}",
                    t.size_bytes, t.mode
                ),
            )
        })
        .collect();
    let mut security_opt = vec!["no-new-privileges:true".to_owned()];
    if let Some(profile) = &spec.seccomp {
        security_opt.push(format!("seccomp={profile}"));
    }
    let memory = i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![SANDBOX_INIT.to_owned()]),
        cmd: Some(vec![]),
        user: Some(spec.user.clone()),
        env: Some(vec![]),
        working_dir: Some("/work".into()),
        hostname: Some("sandbox".into()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        // The engine closes the container's stdin when the runner detaches:
        // an abandoned sandbox-init sees EOF and exits.
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(spec.egress.is_none()),
        host_config: Some(HostConfig {
            network_mode: Some(
                if spec.egress.is_some() {
                    "bridge"
                } else {
                    "none"
                }
                .into(),
            ),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec![]),
            security_opt: Some(security_opt),
            readonly_rootfs: Some(true),
            binds: Some(vec![]),
            mounts: Some(vec![]),
            volumes_from: Some(vec![]),
            devices: Some(vec![]),
            tmpfs: Some(tmpfs),
            shm_size: Some(i64::try_from(spec.shm_bytes).unwrap_or(i64::MAX)),
            ipc_mode: Some("private".into()),
            memory: Some(memory),
            // Equal to memory: no swap.
            memory_swap: Some(memory),
            nano_cpus: Some(spec.nano_cpus),
            pids_limit: Some(i64::from(spec.pids)),
            oom_kill_disable: Some(false),
            masked_paths: Some(MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect()),
            readonly_paths: Some(READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect()),
            ulimits: Some(vec![
                ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(i64::try_from(spec.nofile).unwrap_or(i64::MAX)),
                    hard: Some(i64::try_from(spec.nofile).unwrap_or(i64::MAX)),
                },
                ResourcesUlimits {
                    name: Some("core".into()),
                    soft: Some(0),
                    hard: Some(0),
                },
            ]),
            // Output travels over the attach stream only: nothing of the
            // submission is written to the host's disk by a log driver.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            init: Some(false),
            auto_remove: Some(false),
            publish_all_ports: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl ContainerEngine for DockerEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.client
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Unreachable(describe(&e)))
    }

    async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(Some(
                info.config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(EngineError::Other {
                action: "inspect an image",
                message: describe(&e),
            }),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        match self.client.create_container(None, create_body(spec)).await {
            Ok(r) => Ok(r.id),
            Err(e) if is_not_found(&e) => Err(EngineError::ImageMissing {
                image: spec.image.clone(),
            }),
            Err(e) => Err(EngineError::Other {
                action: "create a container",
                message: describe(&e),
            }),
        }
    }

    async fn attach(&self, id: &str) -> Result<Attachment, EngineError> {
        let opts = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let r = self
            .client
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| container_err("attach to", id, &e))?;
        let cid = id.to_owned();
        let output = r
            .output
            .map_err(move |e| BackendError::from(container_err("read from", &cid, &e)))
            .try_filter_map(|o| async move {
                Ok(match o {
                    bollard::container::LogOutput::StdOut { message } => {
                        Some(Output::Stdout(message))
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        Some(Output::Stderr(message))
                    }
                    // No TTY: Docker multiplexes, so console frames do not occur.
                    bollard::container::LogOutput::Console { message } => {
                        Some(Output::Stdout(message))
                    }
                    bollard::container::LogOutput::StdIn { .. } => None,
                })
            })
            .boxed();
        Ok(Attachment {
            input: r.input,
            output,
        })
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.client
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| container_err("start", id, &e))
    }

    async fn inspect(&self, id: &str) -> Result<ContainerState, EngineError> {
        let r = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| container_err("inspect", id, &e))?;
        let state = r.state.unwrap_or_default();
        Ok(ContainerState {
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    async fn wait(&self, id: &str) -> Result<i64, EngineError> {
        let mut s = self.client.wait_container(id, None::<WaitContainerOptions>);
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(container_err("wait for", id, &e)),
            None => Err(EngineError::Container {
                action: "wait for",
                container: id.to_owned(),
                message: "the engine ended the wait without a status".into(),
            }),
        }
    }

    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        let opts = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        match self.client.kill_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // Not running any more, or gone: either way it is not running.
            Err(BollardError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(container_err("kill", id, &e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        // Another removal may be under way (a cancelled job's guard, `runner
        // gc`); it may also be abandoned when its client goes away. Only the
        // container's absence counts as success.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.client.remove_container(id, Some(opts)).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(BollardError::DockerResponseServerError {
                    status_code: 409,
                    message,
                }) if message.contains("already in progress")
                    && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(container_err("remove", id, &e)),
            }
        }
    }

    async fn list(&self, label: &str, value: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters: HashMap<String, Vec<String>> =
            HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list =
            self.client
                .list_containers(Some(opts))
                .await
                .map_err(|e| EngineError::Other {
                    action: "list containers",
                    message: describe(&e),
                })?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(ContainerInfo {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                    running: c
                        .state
                        .is_some_and(|s| s == bollard::models::ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }
}

fn container_err(action: &'static str, id: &str, e: &BollardError) -> EngineError {
    EngineError::Container {
        action,
        container: short_id(id).to_owned(),
        message: describe(e),
    }
}

/// The 12-character form Docker's CLI shows.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::docker::engine::Tmpfs;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: "runner-sandbox/python:x".into(),
            labels: BTreeMap::from([("io.runner.job".into(), "j1".into())]),
            user: "10001:10001".into(),
            memory_bytes: 64 << 20,
            nano_cpus: 1_000_000_000,
            pids: 64,
            tmpfs: vec![Tmpfs {
                path: "/work".into(),
                size_bytes: 1 << 20,
                exec: true,
                mode: 0o700,
            }],
            shm_bytes: 1 << 20,
            nofile: 256,
            seccomp: Some("{}".into()),
            egress: None,
        }
    }

    #[test]
    fn the_isolation_contract_is_fixed_in_the_create_body() {
        let b = create_body(&spec());
        let h = b.host_config.unwrap();
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, Some(vec![]));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(b.network_disabled, Some(true));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.binds, Some(vec![]));
        assert_eq!(h.mounts, Some(vec![]));
        assert_eq!(h.devices, Some(vec![]));
        assert_eq!(h.memory, h.memory_swap, "swap must be disabled");
        assert_eq!(h.pids_limit, Some(64));
        let sec = h.security_opt.unwrap();
        assert!(sec.contains(&"no-new-privileges:true".to_string()));
        assert!(sec.contains(&"seccomp={}".to_string()));
        assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("none"));
        assert_eq!(b.user.as_deref(), Some("10001:10001"));
        assert_eq!(b.entrypoint, Some(vec![SANDBOX_INIT.to_string()]));
        let masked = h.masked_paths.unwrap();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/config.gz",
            "/proc/loadavg",
        ] {
            assert!(masked.iter().any(|m| m == p), "{p} not masked");
        }
        assert!(h.readonly_paths.unwrap().iter().any(|p| p == "/proc/sys"));
        let work = &h.tmpfs.unwrap()["/work"];
        assert_eq!(
            work,
            "rw,exec,nosuid,nodev,size=1048576,mode=700,uid=10001,gid=10001"
        );
    }

    #[test]
    fn engine_default_seccomp_adds_no_profile() {
        let mut s = spec();
        s.seccomp = None;
        let sec = create_body(&s).host_config.unwrap().security_opt.unwrap();
        assert_eq!(sec, ["no-new-privileges:true"]);
    }
}
