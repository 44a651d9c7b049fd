//! The front proxy of a Docker service: an HAProxy (Debian's package) run
//! by the deployer on the host, one per service, its files in the
//! service's state directory.
//!
//! Why HAProxy: its runtime API, over a Unix socket, adds a server, takes
//! it out of rotation (`drain`: no new requests, in-flight ones finish),
//! and deletes it, all without a reload, so no connection is ever dropped
//! by the switch; it health-checks each replica itself and retries a
//! request whose connection failed on another replica. nginx needs a
//! reload per change; Caddy's admin API replaces whole route configs.
//!
//! The process is started with `-D` (it detaches), so it keeps serving when
//! the deployer exits or is killed. Runtime changes are mirrored in the
//! config file, so a restarted proxy comes back with the same replicas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The backend holding the replicas.
pub const BACKEND: &str = "replicas";
/// How often HAProxy checks each replica, and after how many failures it
/// takes one out (1.5 s). A new replica takes traffic after its first
/// passing check, so the interval is also what each replica adds to a
/// rolling deploy.
const CHECK: &str = "check inter 500ms fall 3 rise 1";
/// Longest answer read from the runtime API.
const ANSWER_CAP: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "HAProxy is not installed (looked for {}); install Debian's haproxy package (.ci/setup-pipeline does), or set PIPELINE_HAPROXY",
        .looked.display()
    )]
    NotInstalled { looked: PathBuf },
    #[error("HAProxy for {service} did not start: {message}")]
    Start { service: String, message: String },
    #[error("cannot talk to HAProxy over {}: {source}", .socket.display())]
    Socket {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("HAProxy: {what} of {server} did not happen within {seconds} s{detail}")]
    Timeout {
        what: &'static str,
        server: String,
        seconds: u64,
        detail: String,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One replica as HAProxy sees it (`show stat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, `UP 1/2` (going down), `no check`...
    pub status: String,
    /// Requests in flight.
    pub sessions: u64,
    /// `L7OK`, `L4CON`, `L7STS`...
    pub check: String,
}

impl ServerStat {
    /// Taking traffic and passing its checks (`UP 1/2` is still up).
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

/// The HAProxy of one service.
#[derive(Debug, Clone)]
pub struct Proxy {
    service: String,
    listen: SocketAddr,
    health_path: String,
    dir: PathBuf,
}

/// The HAProxy binary: `PIPELINE_HAPROXY`, else `haproxy` on PATH, else
/// Debian's `/usr/sbin/haproxy` (not on a normal user's PATH).
pub fn binary() -> Result<PathBuf, ProxyError> {
    if let Some(p) = std::env::var_os("PIPELINE_HAPROXY") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ProxyError::NotInstalled { looked: p })
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("haproxy"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/haproxy")])
        .find(|p| p.is_file())
        .ok_or(ProxyError::NotInstalled {
            looked: PathBuf::from("haproxy on PATH and /usr/sbin/haproxy"),
        })
}

impl Proxy {
    pub fn new(service: &str, listen: SocketAddr, health_path: &str, dir: &Path) -> Proxy {
        Proxy {
            service: service.to_owned(),
            listen,
            health_path: health_path.to_owned(),
            dir: dir.to_owned(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("haproxy.sock")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    /// One runtime API command; its answer.
    pub async fn command(&self, command: &str) -> Result<String, ProxyError> {
        let socket = self.socket();
        let fail = |source| ProxyError::Socket {
            socket: socket.clone(),
            source,
        };
        let mut stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&socket))
            .await
            .map_err(|_| fail(std::io::ErrorKind::TimedOut.into()))?
            .map_err(fail)?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(fail)?;
        let mut answer = Vec::new();
        let mut limited = (&mut stream).take(ANSWER_CAP as u64);
        tokio::time::timeout(Duration::from_secs(10), limited.read_to_end(&mut answer))
            .await
            .map_err(|_| fail(std::io::ErrorKind::TimedOut.into()))?
            .map_err(fail)?;
        Ok(String::from_utf8_lossy(&answer).trim().to_owned())
    }

    /// A command whose answer must not be an error.
    async fn must(&self, command: &str) -> Result<String, ProxyError> {
        let answer = self.command(command).await?;
        let lower = answer.to_ascii_lowercase();
        let refused = [
            "unknown",
            "no such",
            "error",
            "not found",
            "can't",
            "cannot",
            "only servers",
            "require",
        ];
        if refused.iter().any(|r| lower.contains(r)) {
            return Err(ProxyError::Refused {
                command: command.to_owned(),
                answer,
            });
        }
        Ok(answer)
    }

    /// Whether this service's HAProxy answers on its socket.
    pub async fn is_running(&self) -> bool {
        self.command("show info")
            .await
            .is_ok_and(|a| a.contains("Pid:"))
    }

    /// Starts HAProxy unless it answers, with `servers` (name → address)
    /// in its config. Returns whether it had to start it.
    pub async fn ensure_running(
        &self,
        servers: &BTreeMap<String, SocketAddr>,
    ) -> Result<bool, ProxyError> {
        if self.is_running().await {
            return Ok(false);
        }
        self.write_config(servers)?;
        self.ensure_running_with_config().await
    }

    /// Starts HAProxy unless it answers, with the config file as it is
    /// (the replicas it last listed). Returns whether it had to start it.
    pub async fn ensure_running_with_config(&self) -> Result<bool, ProxyError> {
        if self.is_running().await {
            return Ok(false);
        }
        let log = self.dir.join("haproxy.log");
        let log_file = std::fs::File::create(&log).map_err(|source| ProxyError::Write {
            path: log.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(self.socket());
        let status = tokio::process::Command::new(binary()?)
            .arg("-D")
            .arg("-p")
            .arg(self.dir.join("haproxy.pid"))
            .arg("-f")
            .arg(self.config_path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .status()
            .await
            .map_err(|e| self.start_failed(e.to_string()))?;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            return Err(self.start_failed(format!("{status}: {}", said.trim())));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.is_running().await {
            if Instant::now() > deadline {
                return Err(
                    self.start_failed(format!("its socket does not answer; {}", said.trim()))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    fn start_failed(&self, message: String) -> ProxyError {
        ProxyError::Start {
            service: self.service.clone(),
            message,
        }
    }

    /// Stops this service's HAProxy (SIGUSR1: it stops accepting, lets
    /// in-flight requests finish, then exits).
    pub async fn stop(&self) -> Result<(), ProxyError> {
        let Ok(info) = self.command("show info").await else {
            return Ok(());
        };
        let Some(pid) = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .map(str::trim)
        else {
            return Ok(());
        };
        let _ = tokio::process::Command::new("kill")
            .args(["-USR1", pid])
            .status()
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running().await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(self.socket());
        Ok(())
    }

    /// Writes the config: the socket, the frontend, and the replicas.
    pub fn write_config(&self, servers: &BTreeMap<String, SocketAddr>) -> Result<(), ProxyError> {
        let path = self.config_path();
        crate::output::write_atomically(&path, self.config(servers).as_bytes()).map_err(|e| {
            ProxyError::Write {
                path,
                source: e.source,
            }
        })
    }

    fn config(&self, servers: &BTreeMap<String, SocketAddr>) -> String {
        let mut lines = vec![
            format!(
                "# Written by `pipeline` for the service {}. Replicas are added and",
                self.service
            ),
            "# removed through the runtime socket; this file mirrors them.".to_owned(),
            "global".to_owned(),
            format!(
                "    stats socket {} mode 600 level admin",
                self.socket().display()
            ),
            "    stats timeout 30s".to_owned(),
            "    maxconn 4096".to_owned(),
            "defaults".to_owned(),
            "    mode http".to_owned(),
            "    timeout connect 2s".to_owned(),
            "    timeout client 60s".to_owned(),
            "    timeout server 60s".to_owned(),
            "    timeout http-request 10s".to_owned(),
            "    timeout queue 10s".to_owned(),
            // A request whose connection to a replica failed goes to
            // another (connection failures only: nothing was sent).
            "    retries 2".to_owned(),
            "    option redispatch 1".to_owned(),
            format!("frontend {}", self.service),
            format!("    bind {}", self.listen),
            format!("    default_backend {BACKEND}"),
            format!("backend {BACKEND}"),
            "    balance roundrobin".to_owned(),
            format!("    option httpchk GET {}", self.health_path),
            "    http-check expect status 200".to_owned(),
        ];
        for (name, addr) in servers {
            lines.push(format!("    server {name} {addr} {CHECK}"));
        }
        lines.push(String::new());
        lines.join("\n")
    }

    /// The replicas HAProxy has, with their state.
    pub async fn servers(&self) -> Result<Vec<ServerStat>, ProxyError> {
        // Not `must`: check descriptions in the CSV may say "error".
        let csv = self.command("show stat").await?;
        if !csv.starts_with("# pxname") {
            return Err(ProxyError::Refused {
                command: "show stat".into(),
                answer: csv,
            });
        }
        Ok(parse_stat(&csv))
    }

    /// Addresses of the replicas HAProxy has (`show servers state`).
    pub async fn addresses(&self) -> Result<BTreeMap<String, SocketAddr>, ProxyError> {
        let command = format!("show servers state {BACKEND}");
        let text = self.command(&command).await?;
        if !text.contains("# be_id") {
            return Err(ProxyError::Refused {
                command,
                answer: text,
            });
        }
        Ok(parse_servers_state(&text))
    }

    /// Adds a replica and waits until HAProxy's own check passes.
    pub async fn add(
        &self,
        name: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), ProxyError> {
        self.must(&format!("add server {BACKEND}/{name} {addr} {CHECK}"))
            .await?;
        self.must(&format!("enable health {BACKEND}/{name}"))
            .await?;
        self.must(&format!("enable server {BACKEND}/{name}"))
            .await?;
        let started = Instant::now();
        loop {
            let stat = self.servers().await?.into_iter().find(|s| s.name == name);
            match stat {
                Some(s) if s.is_up() && s.check.starts_with("L7OK") => return Ok(()),
                s if started.elapsed() > timeout => {
                    return Err(ProxyError::Timeout {
                        what: "the first passing check",
                        server: name.to_owned(),
                        seconds: timeout.as_secs(),
                        detail: s
                            .map(|s| format!(" (status {}, check {})", s.status, s.check))
                            .unwrap_or_default(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Takes a replica out of rotation, lets its in-flight requests finish
    /// (at most `timeout`, then they are cut), and deletes it.
    pub async fn drain_and_remove(&self, name: &str, timeout: Duration) -> Result<(), ProxyError> {
        self.must(&format!("set server {BACKEND}/{name} state drain"))
            .await?;
        let started = Instant::now();
        while started.elapsed() < timeout {
            let busy = self
                .servers()
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .is_some_and(|s| s.sessions > 0);
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.remove(name).await
    }

    /// Deletes a replica now (maintenance, sessions cut, deleted).
    pub async fn remove(&self, name: &str) -> Result<(), ProxyError> {
        self.must(&format!("set server {BACKEND}/{name} state maint"))
            .await?;
        self.must(&format!("shutdown sessions server {BACKEND}/{name}"))
            .await?;
        let started = Instant::now();
        loop {
            let command = format!("del server {BACKEND}/{name}");
            let answer = self.command(&command).await?;
            if answer.contains("deleted") {
                return Ok(());
            }
            // Connections still closing: HAProxy refuses until they are gone.
            if started.elapsed() > Duration::from_secs(10) {
                return Err(ProxyError::Refused { command, answer });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `show stat` CSV: the servers of [`BACKEND`].
fn parse_stat(csv: &str) -> Vec<ServerStat> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st), Some(scur), Some(check)) = (
        col("pxname"),
        col("svname"),
        col("status"),
        col("scur"),
        col("check_status"),
    ) else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&BACKEND) && f.get(sv).is_some_and(|s| *s != "BACKEND"))
        .map(|f| ServerStat {
            name: f[sv].to_owned(),
            status: f.get(st).copied().unwrap_or_default().to_owned(),
            sessions: f.get(scur).and_then(|s| s.parse().ok()).unwrap_or(0),
            check: f.get(check).copied().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// `show servers state BACKEND`: name → address of each server.
fn parse_servers_state(text: &str) -> BTreeMap<String, SocketAddr> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(' ')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(name), Some(addr), Some(port)) = (col("srv_name"), col("srv_addr"), col("srv_port"))
    else {
        return BTreeMap::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let a = format!("{}:{}", f.get(addr)?, f.get(port)?).parse().ok()?;
            Some(((*f.get(name)?).to_owned(), a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_state_answers_are_read_by_column_name() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status\n\
fe,FRONTEND,,,0,1,4096,3,,,,,,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,\n\
replicas,app-1,0,0,2,1,,3,,,,,,,,,,UP,1,1,0,0,0,5,0,,1,3,1,,3,,2,0,,1,L7OK\n\
replicas,app-2,0,0,0,1,,3,,,,,,,,,,DRAIN,1,1,0,0,0,5,0,,1,3,2,,3,,2,0,,1,L4CON\n\
replicas,BACKEND,0,0,0,1,410,3,,,,,,,,,,UP,1,1,0,,0,5,0,,1,3,0,,3,,1,0,,1,\n";
        let s = parse_stat(csv);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].sessions, s[0].is_up()),
            ("app-1", 2, true)
        );
        assert_eq!(
            (s[1].status.as_str(), s[1].check.as_str()),
            ("DRAIN", "L4CON")
        );
        let state = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n3 replicas 1 app-1 172.18.0.2 2 0 1 1 4 6 3 4 6 0 0 0 - 8080 -\n";
        let a = parse_servers_state(state);
        assert_eq!(a["app-1"], "172.18.0.2:8080".parse().unwrap());
    }

    #[test]
    fn the_config_lists_the_replicas() {
        let p = Proxy::new(
            "app",
            "127.0.0.1:8081".parse().unwrap(),
            "/health",
            Path::new("/s"),
        );
        let servers = BTreeMap::from([("app-1".to_owned(), "172.18.0.2:8080".parse().unwrap())]);
        let c = p.config(&servers);
        assert!(c.contains("bind 127.0.0.1:8081"), "{c}");
        assert!(c.contains("option httpchk GET /health"), "{c}");
        assert!(c.contains("server app-1 172.18.0.2:8080 check"), "{c}");
        assert!(
            c.contains("stats socket /s/haproxy.sock mode 600 level admin"),
            "{c}"
        );
    }
}
