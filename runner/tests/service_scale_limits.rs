//! Rate limits and lockouts hold across `runner serve` processes on one
//! PostgreSQL database (a server of the test's own): wrong keys sent to
//! two runners in turn lock the address out on both, and a key's requests
//! through both count against one limit. No run is executed (no sandbox
//! image needed), but `runner serve` connects to its container engine.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::server::{Server, tenant_key};
use serde_json::Value;
use test_support::postgres::{Postgres, postgres_or_skip};
use test_support::{TempDir, require_docker};

const CONFIG: &str = "[lockout]
failures = 4
window_secs = 300
duration_secs = 600
[rate_limit]
per_key = 6
per_ip = 100000
window_secs = 300
";

/// Every runner gets the same secrets key (as runners sharing a database must).
const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

/// A database, a key of tenant `school`, and two runners on it.
struct Cluster {
    runners: [Server; 2],
    key: String,
    pg: Postgres,
    _dirs: [TempDir; 2],
}

impl Cluster {
    fn new() -> Option<Cluster> {
        let pg = postgres_or_skip(module_path!())?;
        let key = tenant_key(std::path::Path::new(&pg.url()), "school", "admin");
        let dirs = [TempDir::new("svc-limits"), TempDir::new("svc-limits")];
        let runners = [0, 1].map(|i| {
            let dir = dirs[i].path();
            let config = format!(
                "{CONFIG}[workflows]\ncache_dir = {:?}\nsecrets_key_file = {:?}\n",
                dir.join("git-cache").display().to_string(),
                dir.join("key").display().to_string()
            );
            Server::start_on(dir, &pg.url(), &config, &[("RUNNER_SECRETS_KEY", KEY)])
        });
        Some(Cluster {
            runners,
            key,
            pg,
            _dirs: dirs,
        })
    }
}

/// `GET /v1/languages` with `key`: the status, `Retry-After` (seconds) and
/// the JSON body.
fn get(server: &Server, key: &str) -> (u16, Option<u64>, Value) {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /v1/languages HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let retry = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())?
    });
    // Small JSON answers come whole; a chunked one is not needed here.
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, retry, json)
}

#[test]
fn wrong_keys_sent_to_two_runners_lock_the_address_out_on_both() {
    require_docker!();
    let Some(c) = Cluster::new() else { return };
    for r in &c.runners {
        assert_eq!(get(r, &c.key).0, 200, "the key works on both runners");
    }
    // The real key's id with a wrong secret (a slow verification), and a
    // key nobody issued (no verification): both count.
    let (id, _) = c.key.split_at("rk_".len() + 16);
    let wrong_secret = format!("{id}_{}", "A".repeat(43));
    let unknown = format!("rk_{}_{}", "0".repeat(16), "B".repeat(43));
    for i in 0..4 {
        let key = if i % 2 == 0 { &wrong_secret } else { &unknown };
        let (status, _, body) = get(&c.runners[i % 2], key);
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    // Two failures on each runner: each alone would still let it in.
    for r in &c.runners {
        let (status, retry, body) = get(r, &c.key);
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "locked_out", "{body}");
        let retry = retry.expect("Retry-After");
        assert!((500..=600).contains(&retry), "{retry}");
    }
}

#[test]
fn a_keys_requests_through_both_runners_count_against_one_limit() {
    require_docker!();
    let Some(c) = Cluster::new() else { return };
    for i in 0..6 {
        let (status, _, body) = get(&c.runners[i % 2], &c.key);
        assert_eq!(status, 200, "request {i}: {body}");
    }
    for r in &c.runners {
        let (status, retry, body) = get(r, &c.key);
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert!(retry.is_some_and(|s| (1..=300).contains(&s)), "{retry:?}");
    }
    // Another key of the same address is not limited by this one's count.
    let other = tenant_key(std::path::Path::new(&c.pg.url()), "school", "learner");
    for r in &c.runners {
        assert_eq!(get(r, &other).0, 200);
    }
}
