//! The service end to end on real Docker: runs execute in sandboxes; live
//! events; cancellation; quotas; Piston's documented examples; and a real
//! `runner serve` process killed with SIGKILL (recovery) or stopped with
//! SIGTERM (drain), plus audit tampering through the CLI.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use common::server::{Server, runner, tenant_key};
use common::service::{Service, config, python};
use futures_util::StreamExt;
use runner::service::auth::Role;
use serde_json::{Value, json};
use test_support::{TempDir, require_docker};

async fn started(extra: &str) -> Service {
    let env = Env::new().await;
    env.ensure_image("python").await;
    env.ensure_image("javascript").await;
    Service::new(config(extra), true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_from_queue_to_verdict() {
    require_docker!();
    let s = started("").await;
    let key = s.key("alpha", Role::Learner);
    let (status, b, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(key),
            Some(python("import sys\nprint(sys.stdin.read() + '!')")),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["state"], "finished");
    assert_eq!(b["result"]["status"], "ok");
    assert_eq!(b["result"]["run"]["stdout"], "!\n");
    assert!(b["started_at"].is_string() && b["finished_at"].is_string());

    let body = json!({"language": "python", "files": [{"name": "m.py", "content": "raise SystemExit(3)"}], "stdin": "x", "args": ["a"]});
    let (_, b, _) = s
        .call("POST", "/v1/runs?wait=true", Some(key), Some(body))
        .await;
    assert_eq!(b["result"]["status"], "runtime_error");
    assert_eq!(b["result"]["run"]["exit_code"], 3);
}

/// The request and response examples of Piston's API documentation
/// (docs/api-v2.md), replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pistons_documented_examples_work_unchanged() {
    require_docker!();
    let s = started("").await;
    let key = s.key("alpha", Role::Learner);
    let request = json!({
        "language": "js",
        "version": "*",
        "files": [{ "name": "my_cool_code.js", "content": "console.log(process.argv)" }],
        "stdin": "",
        "args": ["1", "2", "3"],
        "compile_timeout": 10000,
        "run_timeout": 3000,
        "compile_memory_limit": -1,
        "run_memory_limit": -1
    });
    let (status, b, _) = s
        .call("POST", "/api/v2/execute", Some(key), Some(request))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["language"], "javascript");
    assert!(b["version"].is_string());
    assert!(
        b.get("compile").is_none(),
        "no compile stage for JavaScript"
    );
    let run = &b["run"];
    let stdout = run["stdout"].as_str().unwrap();
    let compact: String = stdout.split_whitespace().collect();
    assert!(
        compact.contains("my_cool_code.js") && compact.contains("'1','2','3']"),
        "{stdout}"
    );
    assert_eq!(run["output"], run["stdout"]);
    assert_eq!(run["stderr"], "");
    assert_eq!(run["code"], 0);
    assert!(run["signal"].is_null());
    for f in ["message", "status", "cpu_time", "wall_time", "memory"] {
        assert!(run.get(f).is_some(), "Piston field {f} missing: {run}");
    }
    let (status, runtimes, _) = s.call("GET", "/api/v2/runtimes", Some(key), None).await;
    assert_eq!(status, 200);
    let bash = runtimes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "bash")
        .unwrap();
    assert_eq!(bash["aliases"], json!(["sh"]));

    // A runtime error in Piston's terms.
    let bad = json!({"language": "python", "version": "3.x", "files": [{"content": "import sys\nsys.stderr.write('e')\nsys.exit(2)"}]});
    let (_, b, _) = s
        .call("POST", "/api/v2/execute", Some(key), Some(bad))
        .await;
    assert_eq!(b["run"]["status"], "RE");
    assert_eq!(b["run"]["code"], 2);
    assert_eq!(b["run"]["stderr"], "e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_output_as_it_is_produced() {
    require_docker!();
    let s = started("").await;
    let key = s.key("alpha", Role::Learner).to_owned();
    let code =
        "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.4)";
    let (_, b, _) = s
        .call("POST", "/v1/runs", Some(&key), Some(python(code)))
        .await;
    let id = b["id"].as_str().unwrap().to_owned();
    let req = axum::http::Request::get(format!("/v1/runs/{id}/events"))
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = s.send(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let started = Instant::now();
    let mut stream = resp.into_body().into_data_stream();
    let mut text = String::new();
    let mut first_output_at = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_output_at.is_none() && text.contains("event: output") {
            first_output_at = Some(started.elapsed());
        }
    }
    assert!(text.contains("\"stream\":\"stdout\""), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("event: result"), "{text}");
    let total = started.elapsed();
    let first = first_output_at.unwrap();
    assert!(
        total - first >= Duration::from_millis(600),
        "output came live, not at the end: first {first:?}, total {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_run_stops_it_and_removes_its_container() {
    require_docker!();
    let s = started("").await;
    let env = Env::new().await;
    let key = s.key("alpha", Role::Learner);
    let body = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\nprint('up', flush=True)\ntime.sleep(30)"}], "limits": {"run_wall_time_ms": 20000}});
    let (_, b, _) = s.call("POST", "/v1/runs", Some(key), Some(body)).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.job_containers(&id).await == 0 {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    let (status, c, _) = s
        .call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "cancelled");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        env.job_containers(&id).await,
        0,
        "the container was removed"
    );
}

/// Issue 9, finding 5, over the API: a cancel that lands while the
/// sandbox is still being created (milliseconds after the submit) leaves
/// no container behind, whatever moment it hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_right_after_submitting_leaves_no_container() {
    require_docker!();
    let s = started("[pool]\ndefault_size = 0\n").await;
    let env = Env::new().await;
    let key = s.key("alpha", Role::Learner);
    let body = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\ntime.sleep(30)"}], "limits": {"run_wall_time_ms": 20000}});
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let (status, b, _) = s
            .call("POST", "/v1/runs", Some(key), Some(body.clone()))
            .await;
        assert_eq!(status, 202, "{b}");
        let id = b["id"].as_str().unwrap().to_owned();
        // Spread the cancels over the start: 0, 10, 20... ms after the submit.
        tokio::time::sleep(Duration::from_millis(i * 10)).await;
        let (status, c, _) = s
            .call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
            .await;
        assert!(status == 200 || status == 202, "{status}: {c}");
        ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let (_, r, _) = s
                .call("GET", &format!("/v1/runs/{id}"), Some(key), None)
                .await;
            let left = env.job_containers(id).await;
            if r["state"] == "cancelled" && left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {id}: {r}; {left} container(s) left"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_quota_holds_its_runs_in_the_queue() {
    require_docker!();
    let s = started("tenant_concurrency = 1\nglobal_concurrency = 4").await;
    let key = s.key("alpha", Role::Learner);
    let slow = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\ntime.sleep(2)"}]});
    let (_, a, _) = s
        .call("POST", "/v1/runs", Some(key), Some(slow.clone()))
        .await;
    let (_, b, _) = s.call("POST", "/v1/runs", Some(key), Some(slow)).await;
    // Another tenant is not held back by alpha's quota.
    let (_, other, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(s.key("beta", Role::Learner)),
            Some(python("print(1)")),
        )
        .await;
    assert_eq!(other["state"], "finished", "{other}");
    let (_, ra, _) = s
        .call(
            "GET",
            &format!("/v1/runs/{}", a["id"].as_str().unwrap()),
            Some(key),
            None,
        )
        .await;
    let (_, rb, _) = s
        .call(
            "GET",
            &format!("/v1/runs/{}", b["id"].as_str().unwrap()),
            Some(key),
            None,
        )
        .await;
    let states = [ra["state"].as_str().unwrap(), rb["state"].as_str().unwrap()];
    assert!(
        states.contains(&"queued"),
        "one of alpha's runs waits for the other: {states:?}"
    );
    assert!(!states.iter().all(|s| *s == "running"), "{states:?}");
}

async fn wait_for_container(env: &Env, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.job_containers(job).await == 0 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the container of {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_acknowledged_runs_are_not_lost() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let dir = TempDir::new("svc-crash");
    let db = dir.path().join("runner.db");
    let key = tenant_key(&db, "school", "learner");
    let mut server = Server::start(dir.path(), "global_concurrency = 1");
    let long = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\ntime.sleep(60)"}], "limits": {"run_wall_time_ms": 20000}});
    let (status, a) = server.call("POST", "/v1/runs", Some(&key), Some(&long));
    assert_eq!(status, 202, "{a}");
    let running = a["id"].as_str().unwrap().to_owned();
    let mut queued = Vec::new();
    for i in 0..3 {
        let (status, b) = server.call(
            "POST",
            "/v1/runs",
            Some(&key),
            Some(&python(&format!("print({i})"))),
        );
        assert_eq!(status, 202);
        queued.push(b["id"].as_str().unwrap().to_owned());
    }
    wait_for_container(&env, &running).await;
    server.signal("-KILL");
    let status = server
        .wait(Duration::from_secs(10))
        .expect("the server died");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        env.job_containers(&running).await > 0,
        "SIGKILL left the container behind"
    );

    // Restart on the same database.
    let server = Server::start(dir.path(), "global_concurrency = 1");
    let (_, r) = server.call("GET", &format!("/v1/runs/{running}"), Some(&key), None);
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["result"]["status"], "internal_error");
    assert!(
        r["result"]["message"]
            .as_str()
            .unwrap()
            .contains("crashed or was killed"),
        "{r}"
    );
    assert_eq!(
        env.job_containers(&running).await,
        0,
        "its container was removed at start-up"
    );
    for (i, id) in queued.iter().enumerate() {
        wait_for(
            || {
                server
                    .call("GET", &format!("/v1/runs/{id}"), Some(&key), None)
                    .1["state"]
                    == "finished"
            },
            "a queued run to finish",
        );
        let (_, r) = server.call("GET", &format!("/v1/runs/{id}"), Some(&key), None);
        assert_eq!(r["result"]["run"]["stdout"], format!("{i}\n"), "{r}");
    }
    // Every acknowledged run is in the list exactly once.
    let (_, list) = server.call("GET", "/v1/runs?limit=100", Some(&key), None);
    let ids: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_and_leaves_queued_ones_queued() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let dir = TempDir::new("svc-drain");
    let db = dir.path().join("runner.db");
    let key = tenant_key(&db, "school", "learner");
    let mut server = Server::start(
        dir.path(),
        "global_concurrency = 1\nshutdown_grace_ms = 20000",
    );
    let (_, a) = server.call(
        "POST",
        "/v1/runs",
        Some(&key),
        Some(&python("import time\ntime.sleep(2)\nprint('done')")),
    );
    let first = a["id"].as_str().unwrap().to_owned();
    let (_, b) = server.call(
        "POST",
        "/v1/runs",
        Some(&key),
        Some(&python("print('later')")),
    );
    let second = b["id"].as_str().unwrap().to_owned();
    wait_for_container(&env, &first).await;
    server.signal("-TERM");
    let status = server
        .wait(Duration::from_secs(30))
        .expect("the server stopped");
    assert_eq!(status.code(), Some(0), "clean exit");
    // Inspect the database as the next process would.
    let store = runner::service::store::Store::open(&db).unwrap();
    let t = store.tenant_by_name("school").unwrap().unwrap();
    let r1 = store.runs(&t.id).get(&first).unwrap().unwrap();
    assert_eq!(r1.state.as_str(), "finished");
    assert_eq!(r1.result.unwrap().run.unwrap().stdout, "done\n");
    let r2 = store.runs(&t.id).get(&second).unwrap().unwrap();
    assert_eq!(r2.state.as_str(), "queued", "queued runs stay queued");
    drop(store);
    // The next start runs it.
    let server = Server::start(dir.path(), "");
    wait_for(
        || {
            server
                .call("GET", &format!("/v1/runs/{second}"), Some(&key), None)
                .1["state"]
                == "finished"
        },
        "the queued run after restart",
    );
}

async fn metrics_text(s: &Service) -> String {
    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let body = s.send(req).await.into_body();
    String::from_utf8(axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_pool_serves_jobs_and_shows_in_metrics() {
    require_docker!();
    let s = started("[pool]\ndefault_size = 0\nsizes = { python = 1 }\n").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics_text(&s)
        .await
        .contains("runner_pool_ready{pool=\"python/run\"} 1")
    {
        assert!(
            Instant::now() < deadline,
            "the pool did not fill: {}",
            metrics_text(&s).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = s.key("alpha", Role::Learner);
    let (status, b, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(key),
            Some(python("print('hi')")),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"]["run"]["stdout"], "hi\n");
    let text = metrics_text(&s).await;
    assert!(text.contains("runner_pool_hits_total 1"), "{text}");
    // A job with its own memory limit cannot use a pre-made container.
    let custom = json!({"language": "python", "files": [{"name": "m.py", "content": "print(2)"}], "limits": {"run_memory_mb": 100}});
    let (_, b, _) = s
        .call("POST", "/v1/runs?wait=true", Some(key), Some(custom))
        .await;
    assert_eq!(b["result"]["status"], "ok", "{b}");
    assert!(metrics_text(&s).await.contains("runner_pool_hits_total 1"));
    s.state.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_containers_are_labelled_and_collected_after_a_crash() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("python").await;
    let dir = TempDir::new("svc-pool");
    let db = dir.path().join("runner.db");
    let key = tenant_key(&db, "school", "learner");
    let mut server = Server::start(
        dir.path(),
        "[pool]\ndefault_size = 0\nsizes = { python = 2 }\n",
    );
    let pid = server.child.id();
    let of_server = |env: &Env| {
        let env_docker = env.docker.clone();
        async move {
            use runner::backend::docker::labels;
            env_docker
                .engine()
                .list(labels::POOL, "python/run")
                .await
                .unwrap()
                .into_iter()
                .filter(|c| {
                    c.labels
                        .get(labels::OWNER)
                        .and_then(|o| runner::backend::orphans::Owner::parse(o))
                        .is_some_and(|o| o.pid == pid)
                })
                .count()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while of_server(&env).await < 2 {
        assert!(Instant::now() < deadline, "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A job takes a warm container; the pool makes another.
    let (status, r) = server.call(
        "POST",
        "/v1/runs?wait=true",
        Some(&key),
        Some(&python("print('warm')")),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["run"]["stdout"], "warm\n");
    server.signal("-KILL");
    server
        .wait(Duration::from_secs(10))
        .expect("the server died");
    assert!(
        of_server(&env).await >= 1,
        "the killed server's warm containers remain"
    );
    let (code, out, err) = runner(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed"), "{out}");
    assert_eq!(of_server(&env).await, 0, "gc collected the warm containers");
}

#[test]
fn audit_verify_names_each_kind_of_tampering() {
    let dir = TempDir::new("audit-cli");
    let db = dir.path().join("runner.db");
    let dbs = db.to_str().unwrap();
    tenant_key(&db, "school", "admin");
    tenant_key(&db, "school", "learner");
    let (code, head, _) = runner(&["audit", "head", "--database", dbs]);
    assert_eq!(code, 0);
    let head = head.trim().to_owned();
    let (code, out, _) = runner(&["audit", "verify", "--database", dbs]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 3 entries"), "{out}");
    let (code, export, _) = runner(&["audit", "export", "--database", dbs]);
    assert_eq!(code, 0);
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["action"], "tenant.create");
    assert_eq!(lines[1]["action"], "key.create");
    assert!(!export.contains("rk_"), "no key text in the log");

    let tamper = |sql: &str| {
        let copy = dir.path().join(format!("t{}.db", sql.len()));
        std::fs::copy(&db, &copy).unwrap();
        let c = rusqlite::Connection::open(&copy).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let (code, out, _) = runner(&[
            "audit",
            "verify",
            "--database",
            copy.to_str().unwrap(),
            "--anchor",
            &head,
        ]);
        (code, out)
    };
    let (code, out) = tamper("UPDATE audit SET detail = 'role admin' WHERE seq = 3;");
    assert_eq!(code, 1);
    assert!(out.contains("entry 3 was modified"), "{out}");
    let (code, out) = tamper("DELETE FROM audit WHERE seq = 2;");
    assert_eq!(code, 1);
    assert!(
        out.contains("entries between 1 and 3 were deleted"),
        "{out}"
    );
    let (code, out) = tamper(
        "UPDATE audit SET seq = seq + 10 WHERE seq >= 3; UPDATE audit SET seq = seq - 9 WHERE seq >= 13;
         INSERT INTO audit (seq, at, actor, tenant, action, target, detail, prev_hash, hash)
           SELECT 3, at, actor, tenant, 'key.create', 'key:forged', detail, hash, hash FROM audit WHERE seq = 2;",
    );
    assert_eq!(code, 1);
    assert!(out.contains("entry 3"), "{out}");
    let (code, out) = tamper(
        "UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 100;",
    );
    assert_eq!(code, 1);
    assert!(out.contains("entry 2 was moved"), "{out}");
    let (code, out) = tamper("DELETE FROM audit WHERE seq = 3;");
    assert_eq!(code, 1, "a truncated tail is caught by the anchor");
    assert!(out.contains("anchored"), "{out}");
}

/// The Python virtual environment `.ci/setup` fills with Piston clients.
fn piston_clients_python() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("PISTON_CLIENTS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/piston-clients")
        });
    let python = venv.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    assert!(
        !test_support::in_ci(),
        "{} is missing: .ci/setup installs the Piston client libraries there",
        venv.display()
    );
    eprintln!(
        "SKIPPED: no Piston client libraries in {}; run .ci/setup (under CI=true this fails)",
        venv.display()
    );
    None
}

/// Piston client libraries from PyPI, used as their READMEs show, against a
/// real `runner serve` on real Docker: pistonapi, aiopyston (async, paths
/// with a trailing slash), ultra-piston (strict models: `run` required)
/// and piston-rspy (Rust core: `run` required). See piston_clients.py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piston_client_libraries_work_unchanged() {
    require_docker!();
    let Some(python) = piston_clients_python() else {
        return;
    };
    let env = Env::new().await;
    env.ensure_image("python").await;
    env.ensure_image("c").await;
    let dir = TempDir::new("svc-piston-clients");
    let db = dir.path().join("runner.db");
    let key = tenant_key(&db, "alpha", "learner");
    let (code, _, err) = runner(&[
        "admin",
        "tenant",
        "create",
        "playground",
        "--database",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let server = Server::start(dir.path(), "anonymous_tenant = \"playground\"\n");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/piston_clients.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(format!("http://{}", server.addr))
            .arg(&key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success() && text.contains("\n0 failed"),
        "Piston clients failed ({:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens a connection to `addr`, sends `bytes`, and returns how long the
/// server took to close it (None: still open after `limit`) and what it sent.
fn closed_after(addr: &str, bytes: &[u8], limit: Duration) -> (Option<Duration>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let t0 = Instant::now();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    Some(t0.elapsed()),
                    String::from_utf8_lossy(&got).into_owned(),
                );
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (
                    Some(t0.elapsed()),
                    String::from_utf8_lossy(&got).into_owned(),
                );
            }
            Err(_) => return (None, String::from_utf8_lossy(&got).into_owned()),
        }
        if t0.elapsed() > limit {
            return (None, String::from_utf8_lossy(&got).into_owned());
        }
    }
}

/// Issue 9, finding 10, over real sockets: idle connections, half-sent
/// headers and slow bodies are closed by the server; one address gets at
/// most its share of connections, and a legitimate client still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_capped_per_address() {
    require_docker!();
    let dir = TempDir::new("svc-slow");
    let key = tenant_key(&dir.path().join("runner.db"), "alpha", "learner");
    let server = Server::start(
        dir.path(),
        "[http]\nheader_read_timeout_ms = 1000\nbody_read_timeout_ms = 1000\n\
         idle_timeout_secs = 1\nmax_connections_per_address = 4\n",
    );
    let addr = server.addr.clone();
    tokio::task::spawn_blocking(move || {
        let limit = Duration::from_secs(8);
        let (idle, _) = closed_after(&addr, b"", limit);
        assert!(
            idle.is_some_and(|d| d < Duration::from_secs(4)),
            "idle: {idle:?}"
        );
        let (half, _) = closed_after(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", limit);
        assert!(
            half.is_some_and(|d| d < Duration::from_secs(4)),
            "half-sent headers: {half:?}"
        );
        // An authenticated request whose body stops coming: 408.
        let slow_body = format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"lang"
        );
        let (slow, said) = closed_after(&addr, slow_body.as_bytes(), limit);
        assert!(
            slow.is_some_and(|d| d < Duration::from_secs(4)),
            "slow body: {slow:?}"
        );
        assert!(
            said.starts_with("HTTP/1.1 408"),
            "the slow body is answered: {said}"
        );
        // After a complete exchange, an idle keep-alive connection goes too.
        let (kept, said) = closed_after(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", limit);
        assert!(said.starts_with("HTTP/1.1 200"), "{said}");
        assert!(
            kept.is_some_and(|d| d < Duration::from_secs(4)),
            "keep-alive idle: {kept:?}"
        );

        // Four connections held open: the fifth from the same address is
        // closed at once; when one closes, a client gets in again.
        let held: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let (fifth, said) = closed_after(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", limit);
        assert!(
            fifth.is_some_and(|d| d < Duration::from_secs(1)),
            "over the cap: {fifth:?}"
        );
        assert!(said.is_empty(), "{said}");
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = common::server::http(&addr, "GET", "/healthz", None, None);
        assert_eq!(status, 200, "{body}");
    })
    .await
    .unwrap();
    drop(server);
}

/// Issue 9, finding 4: output is answered once per stream, compactly: NUL
/// bytes in base64 (4/3 of their size), not as `\u0000` (6 bytes each) three
/// times over; the interleaved `output` only on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_output_is_answered_compactly_and_once() {
    use base64::Engine as _;
    require_docker!();
    let s = started("").await;
    let key = s.key("alpha", Role::Learner);
    let program = "import sys\nsys.stdout.buffer.write(b'\\0' * 262144)\nsys.stdout.flush()\n\
                   sys.stderr.write('done')\n";
    let body = json!({"language": "python", "files": [{"name": "m.py", "content": program}],
                      "limits": {"stdout_max_bytes": 262144}});
    let (status, b, _) = s
        .call("POST", "/v1/runs?wait=true", Some(key), Some(body))
        .await;
    assert_eq!(status, 200, "{b}");
    let run = &b["result"]["run"];
    assert_eq!(b["result"]["status"], "ok", "{}", run["message"]);
    assert_eq!(run["stdout_encoding"], "base64");
    assert_eq!(run["stderr_encoding"], "utf8");
    assert_eq!(run["stderr"], "done");
    assert!(
        run.get("output").is_none(),
        "the combined output is on request"
    );
    let stdout = base64::engine::general_purpose::STANDARD
        .decode(run["stdout"].as_str().unwrap())
        .unwrap();
    assert_eq!(stdout, vec![0u8; 262144]);
    let size = b.to_string().len();
    assert!(size < 262144 * 4 / 3 + 4096, "{size} bytes answered");

    let id = b["id"].as_str().unwrap();
    let (_, full, _) = s
        .call(
            "GET",
            &format!("/v1/runs/{id}?combined=true"),
            Some(key),
            None,
        )
        .await;
    let run = &full["result"]["run"];
    assert_eq!(run["output_encoding"], "base64");
    let output = base64::engine::general_purpose::STANDARD
        .decode(run["output"].as_str().unwrap())
        .unwrap();
    assert_eq!(output.len(), 262144 + 4);
    assert!(output.ends_with(b"done"), "stdout, then stderr, as written");
}

/// Issue 10: `runner admin key revoke` keeps a tenant's last admin key too.
#[test]
fn admin_cli_refuses_to_revoke_the_last_admin_key() {
    let dir = TempDir::new("svc-admin-cli");
    let db = dir.path().join("runner.db");
    let db = db.to_str().unwrap();
    let first = tenant_key(std::path::Path::new(db), "school", "admin");
    let id = &first[3..19];
    let (code, _, err) = runner(&["admin", "key", "revoke", id, "--database", db]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("last admin key"), "{err}");
    let _second = tenant_key(std::path::Path::new(db), "school", "admin");
    let (code, _, err) = runner(&["admin", "key", "revoke", id, "--database", db]);
    assert_eq!(code, 0, "{err}");
}

/// Issue 9, finding 4: the background sweeper applies retention: over its
/// budget, a tenant loses its oldest ended runs, not its newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_keeps_a_tenant_within_its_budget() {
    require_docker!();
    let s = started("[retention]\ntenant_max_mb = 1\nsweep_interval_secs = 1").await;
    let key = s.key("alpha", Role::Learner);
    let big = json!({"language": "python",
                     "files": [{"name": "m.py", "content": "print('x' * 700000)"}],
                     "limits": {"stdout_max_bytes": 800000}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, b, _) = s
            .call("POST", "/v1/runs?wait=true", Some(key), Some(big.clone()))
            .await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["result"]["status"], "ok", "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (old, _, _) = s
            .call("GET", &format!("/v1/runs/{}", ids[0]), Some(key), None)
            .await;
        if old == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the oldest run was never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (new, b, _) = s
        .call("GET", &format!("/v1/runs/{}", ids[1]), Some(key), None)
        .await;
    assert_eq!(new, 200, "the newest run stays: {b}");
    assert!(metrics_text(&s).await.contains("runner_runs_swept_total 1"));
}
