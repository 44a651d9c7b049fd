//! Several `runner serve` processes on one PostgreSQL database, for real:
//! a server of the test's own (initdb in a temp dir), runners on the real
//! engine. One runner killed with SIGKILL under load: every accepted run
//! reaches one final state, none lost, none twice, no container left. The
//! database restarted under load: runners reconnect, nothing accepted is
//! lost. A run submitted through one runner is followed (its live output
//! too) and cancelled through another.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Env;
use common::server::{Server, tenant_key};
use common::service::python;
use serde_json::{Value, json};
use test_support::postgres::{Postgres, postgres_or_skip};
use test_support::{TempDir, require_docker};

const CONFIG: &str = "global_concurrency = 2
tenant_concurrency = 6
queue_capacity = 1000
shutdown_grace_ms = 2000
[rate_limit]
per_key = 100000
per_ip = 100000
";

/// Every runner gets the same secrets key (they share the repositories).
const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

struct Cluster {
    pg: Postgres,
    dirs: Vec<TempDir>,
    key: String,
}

impl Cluster {
    fn new() -> Option<Cluster> {
        let pg = postgres_or_skip(module_path!())?;
        let key = tenant_key(std::path::Path::new(&pg.url()), "school", "admin");
        Some(Cluster {
            pg,
            dirs: Vec::new(),
            key,
        })
    }

    fn runner(&mut self) -> Server {
        let dir = TempDir::new("svc-scale");
        let cache = dir.path().join("git-cache");
        let config = format!(
            "{CONFIG}[workflows]\ncache_dir = {:?}\nsecrets_key_file = {:?}\n",
            cache.display().to_string(),
            dir.path().join("key").display().to_string()
        );
        let server = Server::start_on(
            dir.path(),
            &self.pg.url(),
            &config,
            &[("RUNNER_SECRETS_KEY", KEY)],
        );
        self.dirs.push(dir);
        server
    }
}

fn submit(server: &Server, key: &str, body: &Value) -> Option<String> {
    let (status, v) = server.call("POST", "/v1/runs", Some(key), Some(body));
    (status == 202).then(|| v["id"].as_str().unwrap().to_owned())
}

/// Waits until every run in `ids` is final (read through `server`);
/// returns each one's record.
fn all_final(server: &Server, key: &str, ids: &[String], timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let recs: Vec<Value> = ids
            .iter()
            .map(|id| {
                server
                    .call("GET", &format!("/v1/runs/{id}"), Some(key), None)
                    .1
            })
            .collect();
        let pending: Vec<&Value> = recs
            .iter()
            .filter(|r| r["state"] != "finished" && r["state"] != "cancelled")
            .collect();
        if pending.is_empty() {
            return recs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs never ended, e.g. {}",
            pending.len(),
            pending[0]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every run of the tenant, through the listing (all pages).
fn listed(server: &Server, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/runs?limit=100&cursor={c}"),
            None => "/v1/runs?limit=100".to_owned(),
        };
        let (status, page) = server.call("GET", &path, Some(key), None);
        assert_eq!(status, 200, "{page}");
        for r in page["runs"].as_array().unwrap() {
            out.push(r["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// (lost, duplicated): accepted runs missing from the listing, and runs
/// listed more than once or never accepted.
fn lost_and_duplicated(accepted: &[String], listed: &[String]) -> (usize, usize) {
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    let mut seen: HashMap<&String, usize> = HashMap::new();
    for id in listed {
        *seen.entry(id).or_default() += 1;
    }
    let lost = accepted.iter().filter(|id| !seen.contains_key(id)).count();
    let duplicated = seen
        .iter()
        .filter(|(id, n)| **n > 1 || !accepted_set.contains(*id))
        .count();
    (lost, duplicated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runners_one_killed_mid_load_lose_nothing() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let Some(mut cluster) = Cluster::new() else {
        return;
    };
    let key = cluster.key.clone();
    // The runner to kill starts first and claims the long runs.
    let mut doomed = cluster.runner();
    let long = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\ntime.sleep(60)"}], "limits": {"run_wall_time_ms": 20000}});
    let mut accepted = Vec::new();
    let mut long_ids = Vec::new();
    for _ in 0..2 {
        let id = submit(&doomed, &key, &long).expect("accepted");
        long_ids.push(id.clone());
        accepted.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while long_ids.iter().any(|id| {
        doomed
            .call("GET", &format!("/v1/runs/{id}"), Some(&key), None)
            .1["state"]
            != "running"
    }) {
        assert!(Instant::now() < deadline, "the long runs never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let a = cluster.runner();
    let b = cluster.runner();
    let servers = [&a, &b, &doomed];
    for i in 0..24 {
        let s = servers[i % 3];
        if let Some(id) = submit(s, &key, &python(&format!("print({i})"))) {
            accepted.push(id);
        }
    }
    for id in &long_ids {
        assert!(
            env.job_containers(id).await > 0,
            "the long run has its container"
        );
    }
    doomed.signal("-KILL");
    let status = doomed
        .wait(Duration::from_secs(10))
        .expect("the runner died");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Load goes on through the living runners.
    for i in 24..40 {
        let s = if i % 2 == 0 { &a } else { &b };
        accepted.push(submit(s, &key, &python(&format!("print({i})"))).expect("accepted"));
    }
    let recs = all_final(&a, &key, &accepted, Duration::from_secs(180));
    for (id, r) in accepted.iter().zip(&recs) {
        if long_ids.contains(id) {
            assert_eq!(r["result"]["status"], "internal_error", "{r}");
            assert!(
                r["result"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("runner executing this run stopped"),
                "{r}"
            );
        } else {
            assert!(
                r["result"]["status"] == "ok" || r["result"]["status"] == "internal_error",
                "{r}"
            );
        }
    }
    let ok = recs
        .iter()
        .filter(|r| r["result"]["status"] == "ok")
        .count();
    let (lost, duplicated) = lost_and_duplicated(&accepted, &listed(&b, &key));
    eprintln!(
        "SIGKILL under load: accepted {}, ok {ok}, lost {lost}, duplicated {duplicated}",
        accepted.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert!(ok >= 38 - 24 / 3, "the short runs ran: {ok} ok");
    // Final states come before the sandboxes' removal has finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        while env.job_containers(id).await > 0 {
            assert!(
                Instant::now() < deadline,
                "run {id} left a container behind"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (code, out, err) =
        common::server::runner(&["audit", "verify", "--database", &cluster.pg.url()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarts_under_load_and_nothing_accepted_is_lost() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let Some(mut cluster) = Cluster::new() else {
        return;
    };
    let key = cluster.key.clone();
    let a = cluster.runner();
    let b = cluster.runner();
    let mut accepted = Vec::new();
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        accepted.push(submit(s, &key, &python(&format!("print({i})"))).expect("accepted"));
    }
    cluster.pg.stop().unwrap();
    // While it is down, submissions are refused (not acknowledged).
    let (status, body) = a.call("POST", "/v1/runs", Some(&key), Some(&python("print(1)")));
    assert!(status >= 500, "{status} {body}");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "a 5xx body leaks nothing: {body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.pg.restart().unwrap();
    for i in 10..20 {
        let s = if i % 2 == 0 { &a } else { &b };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(id) = submit(s, &key, &python(&format!("print({i})"))) {
                accepted.push(id);
                break;
            }
            assert!(Instant::now() < deadline, "the runners never reconnected");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let recs = all_final(&b, &key, &accepted, Duration::from_secs(180));
    let ok = recs
        .iter()
        .filter(|r| r["result"]["status"] == "ok")
        .count();
    let (lost, duplicated) = lost_and_duplicated(&accepted, &listed(&a, &key));
    eprintln!(
        "database restart under load: accepted {}, ok {ok}, lost {lost}, duplicated {duplicated}",
        accepted.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    // A run is final before its sandbox's removal has finished (removal
    // runs in the background): give removals a moment, then require none.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &accepted {
        while env.job_containers(id).await > 0 {
            assert!(Instant::now() < deadline, "run {id} left a container");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The first lines of a run's event stream through `addr`, until `stop`
/// says enough.
fn follow(addr: &str, key: &str, id: &str, mut stop: impl FnMut(&str) -> bool) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /v1/runs/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if stop(&seen) {
            break;
        }
    }
    seen
}

/// What a follower saw: the output text, in order, and whether a `lagged`
/// event said some was missed.
fn seen_output(seen: &str) -> (String, bool) {
    use base64::Engine as _;
    let (mut text, mut lagged, mut event) = (String::new(), false, "");
    for line in seen.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e;
        } else if let Some(data) = line.strip_prefix("data: ") {
            match event {
                "output" => {
                    let v: Value = serde_json::from_str(data).expect("output data is JSON");
                    let t = v["text"].as_str().expect("output has text");
                    if v["encoding"] == "base64" {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(t)
                            .expect("base64");
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    } else {
                        text.push_str(t);
                    }
                }
                "lagged" => lagged = true,
                _ => {}
            }
        }
    }
    (text, lagged)
}

/// Follows run `id` through `addr` in a thread until its result; says on
/// `ticked` once its output contains `tick`.
fn follow_until_result(
    addr: String,
    key: String,
    id: String,
    ticked: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut told = false;
        follow(&addr, &key, &id, |seen| {
            if !told && seen_output(seen).0.contains("tick") {
                told = true;
                let _ = ticked.send(());
            }
            seen.contains("event: result")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_on_one_runner_followed_and_cancelled_on_another() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let Some(mut cluster) = Cluster::new() else {
        return;
    };
    let key = cluster.key.clone();
    let a = cluster.runner();
    let b = cluster.runner();
    // `?wait=true` through B for a run A may execute, and the reverse.
    let (status, done) = b.call(
        "POST",
        "/v1/runs?wait=true",
        Some(&key),
        Some(&python("print('hello')")),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["status"], "ok", "{done}");
    let long = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\nprint('tick', flush=True)\ntime.sleep(60)"}], "limits": {"run_wall_time_ms": 20000}});
    let id = submit(&a, &key, &long).expect("accepted");
    // Followed through both runners (either may execute it: they share
    // the queue) until it ends; both see its live output.
    let (ticked, ticks) = std::sync::mpsc::channel();
    let followers: Vec<_> = [&a, &b]
        .iter()
        .map(|s| follow_until_result(s.addr.clone(), key.clone(), id.clone(), ticked.clone()))
        .collect();
    for n in 0..2 {
        assert!(
            ticks.recv_timeout(Duration::from_secs(90)).is_ok(),
            "only {n} of the two followers saw the output line `tick`"
        );
    }
    assert!(env.job_containers(&id).await > 0, "the run is executing");
    let started = Instant::now();
    let (status, cancelled) = b.call("DELETE", &format!("/v1/runs/{id}"), Some(&key), None);
    assert!(status == 200 || status == 202, "{status} {cancelled}");
    for f in followers {
        let seen = f.join().unwrap();
        assert!(seen.contains("event: result"), "{seen}");
        assert_eq!(seen_output(&seen).0, "tick\n", "{seen}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the cancellation reached the runner executing it"
    );
    let (_, r) = a.call("GET", &format!("/v1/runs/{id}"), Some(&key), None);
    assert_eq!(r["state"], "cancelled", "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.job_containers(&id).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the cancelled run's container stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Many lines, followed through both runners (so through the one not
    // executing it): in order, or a `lagged` event says some were dropped.
    let lines = 2000;
    let many = python(&format!(
        "import time\ntime.sleep(2)\nfor i in range({lines}):\n    print(f'line {{i}}')"
    ));
    let id = submit(&b, &key, &many).expect("accepted");
    let (ticked, _ticks) = std::sync::mpsc::channel();
    let followers: Vec<_> = [&a, &b]
        .iter()
        .map(|s| follow_until_result(s.addr.clone(), key.clone(), id.clone(), ticked.clone()))
        .collect();
    for (name, f) in ["A", "B"].into_iter().zip(followers) {
        let seen = f.join().unwrap();
        assert!(seen.contains("event: result"), "{seen}");
        let (text, lagged) = seen_output(&seen);
        let got: Vec<usize> = text
            .lines()
            .map(|l| {
                l.strip_prefix("line ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("not a line the run wrote: {l:?}"))
            })
            .collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "runner {name}: lines out of order or repeated"
        );
        if lagged {
            eprintln!(
                "runner {name}: {} of {lines} lines live, the rest reported as lagged",
                got.len()
            );
        } else {
            assert_eq!(
                got,
                (0..lines).collect::<Vec<_>>(),
                "runner {name}: lines missing without a `lagged` event"
            );
            eprintln!("runner {name}: all {lines} lines live, in order");
        }
    }
    let (_, r) = a.call("GET", &format!("/v1/runs/{id}"), Some(&key), None);
    assert_eq!(r["result"]["status"], "ok", "{r}");
}
