//! A PostgreSQL server of the test's own: a cluster made with `initdb` in a
//! temporary directory, listening on a free loopback port (and a socket in
//! that directory), stopped and removed when dropped. Debian's binaries
//! (`postgresql` package, `/usr/lib/postgresql/<version>/bin`) or any on
//! `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; install them with `apt-get install postgresql` (.ci/setup does)"
    )]
    Missing,
    #[error("{step} failed: {output}")]
    Failed { step: &'static str, output: String },
    #[error("cannot run {step}: {source}")]
    Spawn {
        step: &'static str,
        source: std::io::Error,
    },
}

/// Where `initdb` and `pg_ctl` are.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    })
}

/// A running server; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Addresses listened on besides loopback (see [`Postgres::listen_also`]).
    extra_listen: Vec<std::net::Ipv4Addr>,
}

/// PostgreSQL refuses to run as root: as root (a CI container), its
/// commands run as the `postgres` user (Debian's package makes it), or
/// `nobody`; (uid, gid) of that user.
fn server_user() -> Option<(u32, u32)> {
    let me = std::fs::read_to_string("/proc/self/status").ok()?;
    let root = me
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

/// `program` run as the server's user.
fn command(program: &Path) -> Command {
    match server_user() {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn run(step: &'static str, cmd: &mut Command) -> Result<(), PostgresError> {
    let out = cmd
        .output()
        .map_err(|source| PostgresError::Spawn { step, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PostgresError::Failed {
            step,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Postgres {
    /// Makes and starts a cluster with one database, `runner`, owned by
    /// user `runner` (trust authentication, loopback only).
    pub fn start() -> Result<Postgres, PostgresError> {
        let bin = bin_dir().ok_or(PostgresError::Missing)?;
        let dir = TempDir::new("runner-pg");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|source| {
                PostgresError::Spawn {
                    step: "chown",
                    source,
                }
            })?;
        }
        let data = dir.path().join("data");
        run(
            "initdb",
            command(&bin.join("initdb"))
                .args([
                    "--auth=trust",
                    "--username=runner",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ])
                .arg("-D")
                .arg(&data),
        )?;
        let port = free_port();
        let pg = Postgres {
            dir,
            bin,
            port,
            extra_listen: Vec::new(),
        };
        pg.pg_ctl_start()?;
        run(
            "createdb",
            command(&pg.bin.join("psql")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "runner",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE runner",
            ]),
        )?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), PostgresError> {
        let listen: Vec<String> = std::iter::once("127.0.0.1".to_owned())
            .chain(self.extra_listen.iter().map(|a| a.to_string()))
            .collect();
        let opts = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off -c max_connections=200",
            self.port,
            listen.join(","),
            self.dir.path().display()
        );
        run(
            "pg_ctl start",
            command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-o", &opts, "start"]),
        )
    }

    /// `postgres://` URL of the database.
    pub fn url(&self) -> String {
        format!("postgres://runner@127.0.0.1:{}/runner", self.port)
    }

    /// Listens on `addr` too, trusting clients from its /24 (a test's own
    /// network namespace, see `netns`); restarts the server.
    pub fn listen_also(&mut self, addr: std::net::Ipv4Addr) -> Result<(), PostgresError> {
        let [a, b, c, _] = addr.octets();
        let hba = self.data().join("pg_hba.conf");
        let line = format!("host all all {a}.{b}.{c}.0/24 trust\n");
        let mut text = std::fs::read_to_string(&hba).map_err(|source| PostgresError::Spawn {
            step: "read pg_hba.conf",
            source,
        })?;
        text.push_str(&line);
        std::fs::write(&hba, text).map_err(|source| PostgresError::Spawn {
            step: "write pg_hba.conf",
            source,
        })?;
        self.extra_listen.push(addr);
        self.stop()?;
        self.pg_ctl_start()
    }

    /// The database's URL through `addr` (one of [`Postgres::listen_also`]).
    pub fn url_at(&self, addr: std::net::Ipv4Addr) -> String {
        format!("postgres://runner@{addr}:{}/runner", self.port)
    }

    /// Stops the server (fast shutdown: connections are dropped).
    pub fn stop(&self) -> Result<(), PostgresError> {
        run(
            "pg_ctl stop",
            command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "fast", "stop"]),
        )
    }

    /// Starts it again after [`Postgres::stop`], on the same port.
    pub fn restart(&self) -> Result<(), PostgresError> {
        self.pg_ctl_start()
    }

    /// Runs `sql` on the database with `psql` (as its owner).
    pub fn psql(&self, sql: &str) -> Result<(), PostgresError> {
        run(
            "psql",
            command(&self.bin.join("psql")).args([
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "runner",
                "-d",
                "runner",
                "-c",
                sql,
            ]),
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the server refused is often why the test failed.
            let log = self.log();
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("STATEMENT"))
                .collect();
            eprintln!("PostgreSQL errors:\n{}", errors.join("\n"));
        }
        let _ = command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

/// A server, or `None` (with the reason printed) when PostgreSQL is not
/// installed; under `CI=true` a missing PostgreSQL fails the test.
pub fn postgres_or_skip(test: &str) -> Option<Postgres> {
    match Postgres::start() {
        Ok(pg) => Some(pg),
        Err(PostgresError::Missing) if !crate::in_ci() => {
            eprintln!(
                "SKIPPED {test}: {}; set CI=true to make this a failure",
                PostgresError::Missing
            );
            None
        }
        Err(e) => panic!("{test}: PostgreSQL is required and could not start: {e}"),
    }
}
