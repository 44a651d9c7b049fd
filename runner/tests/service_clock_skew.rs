//! Two runners on one PostgreSQL database whose clocks disagree, for real:
//! runner B runs under libfaketime a minute behind, as a host whose NTP
//! broke would. Runners judge each other alive by leases, so each must read
//! the database's clock, not its own: otherwise B's lease looks a minute
//! stale to A, and A finishes B's healthy runs as `internal_error`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Env;
use common::server::{Server, runner, tenant_key};
use common::service::python;
use serde_json::json;
use test_support::postgres::postgres_or_skip;
use test_support::{TempDir, require_docker};

/// Every runner gets the same secrets key (a runner with another is refused).
const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

const CONFIG: &str = "global_concurrency = 2
tenant_concurrency = 4
queue_capacity = 100
shutdown_grace_ms = 2000
";

/// How far behind B's clock runs: several leases (10 s each).
const SKEW: &str = "-60s";

/// libfaketime (Debian's `faketime` package; `.ci/setup` installs it),
/// when it can shift a program's clock here; with CI=true it must. Loaded
/// into the runner directly rather than through the `faketime` program,
/// which forks: killing it would leave the runner running.
fn libfaketime_or_skip(test: &str) -> Option<String> {
    let mut candidates = vec![
        "/usr/lib/faketime/libfaketime.so.1".to_owned(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_owned(),
    ];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        for d in dirs.flatten() {
            candidates.push(format!("{}/faketime/libfaketime.so.1", d.path().display()));
        }
    }
    let lib = candidates.into_iter().find(|c| Path::new(c).exists());
    let shifted = lib.as_ref().and_then(|lib| {
        Command::new("date")
            .arg("+%s")
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", SKEW)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match shifted {
        Some(t) if now.abs_diff(t) >= 55 => lib,
        other if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{test}: CI=true and libfaketime cannot shift a clock (got {other:?}): run .ci/setup"
            )
        }
        _ => {
            eprintln!("SKIPPED {test}: libfaketime is missing (apt-get install faketime)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_clock_is_behind_keeps_its_runs() {
    require_docker!();
    let Some(libfaketime) = libfaketime_or_skip(module_path!()) else {
        return;
    };
    let env = Env::new().await;
    env.ensure_image("python").await;
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let key = tenant_key(Path::new(&pg.url()), "school", "admin");

    // B, a minute behind, claims two runs that take a few leases' time.
    let dir_b = TempDir::new("svc-skew-b");
    let b = Server::start_on(
        dir_b.path(),
        &pg.url(),
        CONFIG,
        &[
            ("RUNNER_SECRETS_KEY", KEY),
            ("LD_PRELOAD", &libfaketime),
            ("FAKETIME", SKEW),
        ],
    );
    let slow = json!({"language": "python", "files": [{"name": "m.py", "content": "import time\ntime.sleep(15)\nprint('done')"}], "limits": {"run_wall_time_ms": 20000}});
    let on_b: Vec<String> = (0..2).map(|_| b.submit(&key, &slow)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &on_b {
        while env.job_containers(id).await == 0 {
            assert!(Instant::now() < deadline, "run {id} never started on B");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A, on time, joins: its reaper looks at B's lease every few seconds
    // while B's runs go on for 15 s.
    let dir_a = TempDir::new("svc-skew-a");
    let a = Server::start_on(
        dir_a.path(),
        &pg.url(),
        CONFIG,
        &[("RUNNER_SECRETS_KEY", KEY)],
    );
    for r in a.all_final(&key, &on_b, Duration::from_secs(120)) {
        assert_eq!(r["result"]["status"], "ok", "A took B for dead: {r}");
        assert_eq!(r["result"]["run"]["stdout"], "done\n", "{r}");
    }
    // Both go on taking work side by side.
    let more: Vec<String> = (0..4)
        .map(|i| {
            let via = if i % 2 == 0 { &a } else { &b };
            via.submit(&key, &python(&format!("print('more {i}')")))
        })
        .collect();
    for r in b.all_final(&key, &more, Duration::from_secs(120)) {
        assert_eq!(r["result"]["status"], "ok", "{r}");
    }
    let (code, out, err) = runner(&["audit", "verify", "--database", &pg.url()]);
    assert_eq!(code, 0, "{out}{err}");
}
