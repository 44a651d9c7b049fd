//! A real `runner serve` process on a fresh database, and a minimal HTTP/1.1
//! client (no client library needed for a few JSON calls).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// Runs `runner <args>` and returns (exit code, stdout, stderr).
pub fn runner(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(RUNNER).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a tenant and a key of `role` in the database at `db`.
pub fn tenant_key(db: &Path, tenant: &str, role: &str) -> String {
    let db = db.to_str().unwrap();
    let (code, _, err) = runner(&["admin", "tenant", "create", tenant, "--database", db]);
    assert!(code == 0 || err.contains("already exists"), "{err}");
    let (code, key, err) = runner(&[
        "admin",
        "key",
        "create",
        "--tenant",
        tenant,
        "--role",
        role,
        "--database",
        db,
    ]);
    assert_eq!(code, 0, "{err}");
    key.trim().to_owned()
}

#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `runner serve` with `config` (TOML) on a free port and waits
    /// until it listens. The warm pool is off unless `config` has `[pool]`.
    pub fn start(dir: &Path, config: &str) -> Server {
        Self::start_env(dir, config, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        let db = dir.join("runner.db").display().to_string();
        Self::start_on(dir, &db, config, env)
    }

    /// [`Server::start_env`] on the database `database` (a file or a
    /// `postgres://` URL).
    pub fn start_on(dir: &Path, database: &str, config: &str, env: &[(&str, &str)]) -> Server {
        Self::start_wrapped(dir, database, config, env, &[])
    }

    /// [`Server::start_on`], the runner started through `wrapper` (e.g.
    /// `ip netns exec NAME`, which execs it: the child is the runner).
    pub fn start_wrapped(
        dir: &Path,
        database: &str,
        config: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Server {
        let cfg = dir.join("runner.toml");
        // A fixed port when the test names one (browsers need the address
        // before the server starts), otherwise any free one.
        let listen = if config.contains("listen =") {
            ""
        } else {
            "listen = \"127.0.0.1:0\"\n"
        };
        // The warm pool is off unless the test asks for it: jobs then get
        // containers labelled with their run id, which tests look for.
        let pool = if config.contains("[pool]") {
            ""
        } else {
            "\n[pool]\ndefault_size = 0\n"
        };
        std::fs::write(
            &cfg,
            format!("{listen}database = \"{database}\"\n{config}{pool}"),
        )
        .unwrap();
        let log = dir.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(RUNNER);
                c
            }
            None => Command::new(RUNNER),
        };
        // In the test's directory: what the server makes beside itself
        // (a secrets key file, caches) never lands in the source tree.
        let mut child = command
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            assert!(Instant::now() < deadline, "the server did not start");
            let line = lines
                .next()
                .expect("server output ended before it listened")
                .unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["fields"]["message"] == "listening" {
                break v["fields"]["addr"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(log2).unwrap();
            for l in lines.map_while(Result::ok) {
                let _ = writeln!(f, "{l}");
            }
        });
        Server { child, addr, log }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        http(&self.addr, method, path, key, body)
    }

    /// Submits a run; its id (the submission must be accepted).
    pub fn submit(&self, key: &str, body: &Value) -> String {
        let (status, v) = self.call("POST", "/v1/runs", Some(key), Some(body));
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// A run's record as this server answers it.
    pub fn run_record(&self, key: &str, id: &str) -> (u16, Value) {
        self.call("GET", &format!("/v1/runs/{id}"), Some(key), None)
    }

    /// Waits until each run is final (read through this server); their
    /// records.
    pub fn all_final(&self, key: &str, ids: &[String], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs: Vec<Value> = ids.iter().map(|id| self.run_record(key, id).1).collect();
            if recs
                .iter()
                .all(|r| r["state"] == "finished" || r["state"] == "cancelled")
            {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "runs never ended: {:?}",
                recs.iter().map(|r| &r["state"]).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit: its status, or `None` on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request with `Connection: close`; returns the status and the JSON body
/// (Null when the body is not JSON).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
