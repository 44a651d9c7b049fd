//! A second host on this machine: a network namespace joined to the host's
//! by a veth pair, for tests of what happens when a network path is cut.
//! The cut drops packets silently (iptables `DROP` inside the namespace),
//! like a real partition: no reset, no error, the peer just goes quiet.
//!
//! Needs root (CAP_NET_ADMIN) and `ip`/`iptables` (iproute2, iptables);
//! [`netns_or_skip`] says why when they are missing, and fails under CI.

use std::net::Ipv4Addr;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespaces need root (CAP_NET_ADMIN); run the test as root")]
    NotRoot,
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
}

/// A namespace with one address, reachable from the host at
/// [`Netns::inside`]; the host is [`Netns::host`] from inside. Removed on
/// drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    pub host: Ipv4Addr,
    pub inside: Ipv4Addr,
}

fn run(args: &[&str]) -> Result<(), NetnsError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| NetnsError::Command {
            command: args.join(" "),
            output: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Command {
        command: args.join(" "),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Netns {
    /// Makes the namespace, its veth pair and a /30 from 10.231.0.0/16
    /// chosen by process id (tests of several processes do not collide).
    pub fn new() -> Result<Netns, NetnsError> {
        if !is_root() {
            return Err(NetnsError::NotRoot);
        }
        let pid = std::process::id();
        let name = format!("rnr-test-{pid}");
        let (host_if, ns_if) = (
            format!("rnr{}h", pid % 100_000),
            format!("rnr{}n", pid % 100_000),
        );
        // 16384 /30 subnets: which one, from the pid.
        let block = (pid % 16_384) * 4;
        let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + block;
        let (host, inside) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        // A namespace left by a killed earlier run with this pid.
        let _ = run(&["ip", "netns", "del", &name]);
        let _ = run(&["ip", "link", "del", &host_if]);
        let ns = Netns {
            name,
            host_if,
            host,
            inside,
        };
        ns.setup(&ns_if)?;
        Ok(ns)
    }

    fn setup(&self, ns_if: &str) -> Result<(), NetnsError> {
        let (name, host_if) = (self.name.as_str(), self.host_if.as_str());
        let host = format!("{}/30", self.host);
        let inside = format!("{}/30", self.inside);
        run(&["ip", "netns", "add", name])?;
        run(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
        ])?;
        run(&["ip", "link", "set", ns_if, "netns", name])?;
        run(&["ip", "addr", "add", &host, "dev", host_if])?;
        run(&["ip", "link", "set", host_if, "up"])?;
        self.exec(&["ip", "addr", "add", &inside, "dev", ns_if])?;
        self.exec(&["ip", "link", "set", ns_if, "up"])?;
        self.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace's name, for `ip netns exec NAME ...`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `args` inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<(), NetnsError> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Cuts TCP between the namespace and `port` on the host, both ways:
    /// packets are dropped, nothing is refused.
    pub fn cut(&self, port: u16) -> Result<(), NetnsError> {
        self.drop_rules("-I", port)
    }

    /// Undoes [`Netns::cut`].
    pub fn heal(&self, port: u16) -> Result<(), NetnsError> {
        self.drop_rules("-D", port)
    }

    /// Inserts (`-I`) or deletes (`-D`) the two `DROP` rules of a cut.
    fn drop_rules(&self, action: &str, port: u16) -> Result<(), NetnsError> {
        let (host, port) = (self.host.to_string(), port.to_string());
        self.exec(&[
            "iptables", action, "OUTPUT", "-p", "tcp", "-d", &host, "--dport", &port, "-j", "DROP",
        ])?;
        self.exec(&[
            "iptables", action, "INPUT", "-p", "tcp", "-s", &host, "--sport", &port, "-j", "DROP",
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes its end of the pair, and with it
        // the host's end.
        let _ = run(&["ip", "netns", "del", &self.name]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

/// A namespace, or `None` (with the reason printed) when this machine
/// cannot make one; under `CI=true` that fails the test instead.
pub fn netns_or_skip(test: &str) -> Option<Netns> {
    match Netns::new() {
        Ok(ns) => Some(ns),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI=true and no network namespace can be made: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}
