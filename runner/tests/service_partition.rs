//! A runner cut off from PostgreSQL by a network partition, for real: runner
//! A lives in a network namespace of its own (a second host on this
//! machine) and reaches the database over a veth pair; the test drops its
//! packets (iptables, no reset: the database just goes quiet), as a broken
//! switch or a cloud zone split would.
//!
//! What must hold: the other runner (B) finishes A's in-flight runs as
//! `internal_error` once A's lease runs out, and their sandboxes are gone;
//! B goes on running new work; A answers its clients 503 (not a hang, not a
//! 500) while cut off; once the network heals, A rejoins and runs work
//! again without changing any final state; every accepted run ends once,
//! none lost, none twice; the audit chain verifies.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;
use common::server::{Server, runner, tenant_key};
use common::service::python;
use serde_json::json;
use test_support::netns::netns_or_skip;
use test_support::postgres::postgres_or_skip;
use test_support::{TempDir, require_docker};

/// Every runner gets the same secrets key (a runner with another is refused).
const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

const CONFIG: &str = "global_concurrency = 2
tenant_concurrency = 4
queue_capacity = 100
shutdown_grace_ms = 2000
[rate_limit]
per_key = 100000
per_ip = 100000
";

/// How many times each run appears in the tenant's listing.
fn listing_counts(server: &Server, key: &str) -> HashMap<String, usize> {
    let (status, page) = server.call("GET", "/v1/runs?limit=100", Some(key), None);
    assert_eq!(status, 200, "{page}");
    assert!(page["next_cursor"].is_null(), "fewer than 100 runs here");
    let mut seen = HashMap::new();
    for r in page["runs"].as_array().unwrap() {
        *seen
            .entry(r["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_cut_off_from_the_database_is_replaced_and_rejoins() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let Some(ns) = netns_or_skip(module_path!()) else {
        return;
    };
    let Some(mut pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    pg.listen_also(ns.host).unwrap();
    let key = tenant_key(Path::new(&pg.url()), "school", "admin");

    // A: in the namespace, the database at the host's end of the pair.
    let dir_a = TempDir::new("svc-part-a");
    let wrapper = ["ip", "netns", "exec", ns.name()];
    let a = Server::start_wrapped(
        dir_a.path(),
        &pg.url_at(ns.host),
        &format!("listen = \"{}:0\"\n{CONFIG}", ns.inside),
        &[("RUNNER_SECRETS_KEY", KEY)],
        &wrapper,
    );
    // Two runs only A can claim (B is not started yet), still running when
    // the network is cut.
    let long = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\nprint('tick', flush=True)\ntime.sleep(60)"}], "limits": {"run_wall_time_ms": 20000}});
    let cut_off: Vec<String> = (0..2).map(|_| a.submit(&key, &long)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &cut_off {
        while env.job_containers(id).await == 0 {
            assert!(Instant::now() < deadline, "run {id} never started on A");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let dir_b = TempDir::new("svc-part-b");
    let b = Server::start_on(
        dir_b.path(),
        &pg.url(),
        CONFIG,
        &[("RUNNER_SECRETS_KEY", KEY)],
    );

    ns.cut(pg.port).unwrap();
    let cut_at = Instant::now();

    // B finishes A's runs once A's lease has run out: internal_error, with
    // the reason, not re-run.
    let recs = b.all_final(&key, &cut_off, Duration::from_secs(90));
    let reaped_after = cut_at.elapsed();
    for r in &recs {
        assert_eq!(r["result"]["status"], "internal_error", "{r}");
        let message = r["result"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("lost the database"), "{r}");
    }
    for id in &cut_off {
        let deadline = Instant::now() + Duration::from_secs(30);
        while env.job_containers(id).await > 0 {
            assert!(Instant::now() < deadline, "run {id}'s sandbox stayed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // B goes on: new work runs there while A is cut off.
    let during: Vec<String> = (0..3)
        .map(|i| b.submit(&key, &python(&format!("print('during {i}')"))))
        .collect();
    for r in b.all_final(&key, &during, Duration::from_secs(120)) {
        assert_eq!(r["result"]["status"], "ok", "{r}");
    }

    // A knows it is cut off: its calls fail within seconds (they do not
    // hang for the kernel's retransmissions), so its log says so and its
    // readiness probe takes it out of a load balancer's rotation.
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        log.contains("could not renew this runner's lease"),
        "A never noticed the cut: {log}"
    );
    let asked = Instant::now();
    let (status, ready) = a.call("GET", "/readyz", None, None);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["store"], "unavailable", "{ready}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // A, cut off, answers its clients promptly and honestly: 503 with a
    // retry hint, nothing of the cause.
    let asked = Instant::now();
    let (status, body) = a.run_record(&key, &cut_off[0]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        !body.to_string().contains("10.231."),
        "no address in the answer: {body}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(40),
        "A answered after {:?}",
        asked.elapsed()
    );

    // The network heals: A rejoins, reads the state B wrote, and runs work.
    ns.heal(pg.port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, r) = a.run_record(&key, &cut_off[0]);
        if status == 200 {
            assert_eq!(r["result"]["status"], "internal_error", "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "A never came back: {status} {r}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let after: Vec<String> = (0..4)
        .map(|i| a.submit(&key, &python(&format!("print('after {i}')"))))
        .collect();
    for r in a.all_final(&key, &after, Duration::from_secs(120)) {
        assert_eq!(r["result"]["status"], "ok", "{r}");
    }
    // What A's own runs did after B had ended them changed nothing: A's
    // results, once it could write again, found the runs final.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &cut_off {
        let (_, r) = b.run_record(&key, id);
        assert_eq!(r["result"]["status"], "internal_error", "{r}");
    }

    // Every accepted run ended once: none lost, none listed twice or
    // unknown; no sandbox left; one audit chain.
    let accepted: Vec<&String> = cut_off.iter().chain(&during).chain(&after).collect();
    let seen = listing_counts(&b, &key);
    let lost = accepted
        .iter()
        .filter(|id| !seen.contains_key(**id))
        .count();
    let duplicated = seen
        .iter()
        .filter(|(id, n)| **n > 1 || !accepted.contains(id))
        .count();
    assert_eq!((lost, duplicated), (0, 0), "{seen:?}");
    for id in &accepted {
        assert_eq!(env.job_containers(id).await, 0, "run {id} left a sandbox");
    }
    let (code, out, err) = runner(&["audit", "verify", "--database", &pg.url()]);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!(
        "partition: A's 2 runs ended by B {:.1} s after the cut; lost {lost}, duplicated {duplicated}",
        reaped_after.as_secs_f64()
    );
}
