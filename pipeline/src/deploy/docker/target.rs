//! What a Docker environment is: a service of N replicas behind a proxy on
//! this host, as the environment policy describes it.

use std::net::SocketAddr;
use std::time::Duration;

/// Resource limits of each replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// RAM, swap disabled.
    pub memory_mb: u64,
    /// CPU share (CFS quota), in CPUs.
    pub cpus: f64,
    /// Processes and threads together.
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_mb: 256,
            cpus: 1.0,
            pids: 128,
        }
    }
}

/// A service on this host: `replicas` containers of one image, behind an
/// HAProxy listening on `listen`.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerTarget {
    /// Names the containers, their network and the proxy.
    pub service: String,
    pub replicas: u32,
    /// The port the service listens on inside its container.
    pub port: u16,
    /// Answers 200 when a replica can take traffic.
    pub health_path: String,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// A new container must answer its health check within this.
    pub health_timeout: Duration,
    /// A replaced replica's in-flight requests may finish within this.
    pub drain_timeout: Duration,
    /// After the last replica is replaced, every replica must stay healthy
    /// this long, else the deploy is rolled back.
    pub soak_window: Duration,
    pub limits: Limits,
}

impl DockerTarget {
    pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_SOAK_WINDOW: Duration = Duration::from_secs(10);
    pub const MAX_REPLICAS: u32 = 64;

    /// A target with the documented defaults for the optional settings.
    pub fn new(
        service: &str,
        replicas: u32,
        port: u16,
        health_path: &str,
        listen: SocketAddr,
    ) -> DockerTarget {
        DockerTarget {
            service: service.to_owned(),
            replicas,
            port,
            health_path: health_path.to_owned(),
            listen,
            health_timeout: Self::DEFAULT_HEALTH_TIMEOUT,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            soak_window: Self::DEFAULT_SOAK_WINDOW,
            limits: Limits::default(),
        }
    }
}
