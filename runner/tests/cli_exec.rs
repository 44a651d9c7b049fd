//! `runner exec` and `runner gc` as a user runs them: real processes, real
//! engine, real signals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use runner::backend::JobBackend;
use runner::backend::docker::labels;
use runner::backend::orphans::Owner;
use test_support::{TempDir, require_docker};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn runner(args: &[&str]) -> Output {
    Command::new(RUNNER).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Containers whose owner label names process `pid`.
async fn containers_of(env: &Env, pid: u32) -> Vec<String> {
    env.docker
        .engine()
        .list(labels::MANAGED, "true")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.labels
                .get(labels::OWNER)
                .and_then(|o| Owner::parse(o))
                .is_some_and(|o| o.pid == pid)
        })
        .map(|c| c.id)
        .collect()
}

async fn wait_for_container(env: &Env, pid: u32) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = containers_of(env, pid).await;
        if !found.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no container appeared for pid {pid}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_sleeper(dir: &Path, json: bool) -> Child {
    let prog = write(dir, "main.sh", "echo started; sleep 30\n");
    let mut cmd = Command::new(RUNNER);
    cmd.args(["exec", "-l", "bash", "--time-limit-ms", "20000", "-f"])
        .arg(&prog)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if json {
        cmd.arg("--json");
    }
    cmd.spawn().unwrap()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_result_has_every_documented_field() {
    require_docker!();
    Env::new().await.ensure_image("python").await;
    let dir = TempDir::new("cli-json");
    let prog = write(
        dir.path(),
        "hello.py",
        "import sys\nprint(sys.stdin.read().strip(), sys.argv[1])\n",
    );
    let stdin = write(dir.path(), "in.txt", "from stdin\n");
    let out = Command::new(RUNNER)
        .args([
            "exec",
            "--language",
            "python",
            "--json",
            "--arg",
            "-v",
            "--file",
        ])
        .arg(&prog)
        .arg("--stdin-file")
        .arg(&stdin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["language"], "python");
    assert!(v["version"].as_str().unwrap().starts_with('3'));
    assert!(v["compile"].is_null());
    let run = &v["run"];
    assert_eq!(run["stdout"], "from stdin -v\n");
    for field in [
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "exit_code",
        "signal",
        "wall_ms",
        "cpu_ms",
        "memory_peak_bytes",
    ] {
        assert!(run.get(field).is_some(), "missing {field}: {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_exits_zero_even_when_the_program_fails() {
    require_docker!();
    Env::new().await.ensure_image("python").await;
    let dir = TempDir::new("cli-verdict");
    let prog = write(dir.path(), "fail.py", "raise SystemExit(4)\n");
    let out = runner(&["exec", "-l", "python", "-f", prog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("python 3.11.2: runtime_error"),
        "{stdout}"
    );
    assert!(stdout.contains("exit 4"), "{stdout}");
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_exit_2() {
    // None of these reach Docker: they are refused while checking the request.
    let dir = TempDir::new("cli-bad");
    let dash = write(dir.path(), "-c", "print(1)");
    let dots = write(dir.path(), "a..b.py", "print(1)");
    let at = write(dir.path(), "@opts.py", "print(1)");
    let good = write(dir.path(), "main.py", "print(1)");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-f".into(), dash.display().to_string()],
            "starts with '-'",
        ),
        (
            vec!["-f".into(), at.display().to_string()],
            "starts with '@', which compilers and launchers",
        ),
        (
            vec![
                "-f".into(),
                good.display().to_string(),
                "--memory-limit-mb".into(),
                "3".into(),
            ],
            "run_memory_mb = 3 is under the minimum of 6",
        ),
        (
            vec!["-f".into(), dots.display().to_string()],
            "contains '..'",
        ),
        (
            vec![
                "-f".into(),
                good.display().to_string(),
                "--memory-limit-mb".into(),
                "100000".into(),
            ],
            "run_memory_mb = 100000 is over the maximum of 1024",
        ),
        (
            vec![
                "-f".into(),
                dir.path().join("missing.py").display().to_string(),
            ],
            "cannot open file",
        ),
        (
            vec![
                "-f".into(),
                good.display().to_string(),
                "-f".into(),
                good.display().to_string(),
            ],
            "appears twice",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["exec".to_string(), "-l".into(), "python".into()];
        all.extend(args);
        let out = Command::new(RUNNER).args(&all).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(
            err.contains(expected),
            "{all:?}: expected {expected:?} in {err}"
        );
    }
    let out = runner(&["exec", "-l", "cobol", "-f", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown language \"cobol\"; available: "));
    let out = runner(&[
        "exec",
        "-l",
        "python",
        "--version",
        "2",
        "-f",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("python 2 is not available"));
}

#[test]
fn a_broken_policy_file_is_refused_at_start() {
    let dir = TempDir::new("cli-policy");
    let policy = write(dir.path(), "sandbox.toml", "[run]\nwall_time_ms = 5\n");
    let good = write(dir.path(), "main.py", "print(1)");
    let out = Command::new(RUNNER)
        .args(["exec", "-l", "python", "--policy"])
        .arg(&policy)
        .arg("-f")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("sandbox.toml is not valid"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_removes_the_jobs_containers() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-int");
    let child = spawn_sleeper(dir.path(), false);
    let pid = child.id();
    wait_for_container(&env, pid).await;
    signal(pid, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted; removed"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        containers_of(&env, pid).await.is_empty(),
        "containers left after Ctrl-C"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_collects_what_a_killed_runner_left_behind() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-kill");
    let mut child = spawn_sleeper(dir.path(), false);
    let pid = child.id();
    let left = wait_for_container(&env, pid).await;
    signal(pid, "-KILL");
    child.wait().unwrap();
    // SIGKILL gives the runner no chance to clean up: the container stays.
    assert_eq!(containers_of(&env, pid).await, left, "expected an orphan");

    let out = runner(&["gc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        containers_of(&env, pid).await.is_empty(),
        "gc left the orphan"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("removed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_spares_containers_of_a_live_runner() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-spare");
    let child = spawn_sleeper(dir.path(), false);
    let pid = child.id();
    let before = wait_for_container(&env, pid).await;
    let out = runner(&["gc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        containers_of(&env, pid).await,
        before,
        "gc removed a live job's container"
    );
    signal(pid, "-INT");
    child.wait_with_output().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_mid_run_is_an_internal_error() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-internal");
    let child = spawn_sleeper(dir.path(), true);
    let pid = child.id();
    for id in wait_for_container(&env, pid).await {
        // Give sandbox-init time to start the program, then pull the rug.
        tokio::time::sleep(Duration::from_millis(500)).await;
        env.docker.engine().remove(&id).await.unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "internal_error");
    assert!(v["message"].as_str().unwrap().contains("job "), "{v}");
}

/// Ctrl-C at any moment of `runner exec`'s start, including while the engine
/// is creating the container, leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_start_leaves_no_container() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-int-start");
    let mut pids = Vec::new();
    for i in 0..12u64 {
        let child = spawn_sleeper(dir.path(), false);
        let pid = child.id();
        // Soon after its first container appears (the create answered), or
        // at fixed delays that fall before and during the create.
        if i % 3 == 0 {
            wait_for_container(&env, pid).await;
        } else {
            tokio::time::sleep(Duration::from_millis(40 * i)).await;
        }
        signal(pid, "-INT");
        let out = child.wait_with_output().unwrap();
        // Interrupted before its handler was installed, a process just dies.
        assert!(
            out.status.code() == Some(130) || out.status.code().is_none(),
            "{:?}: {}",
            out.status,
            text(&out.stderr)
        );
        pids.push(pid);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for pid in pids {
        assert_eq!(
            containers_of(&env, pid).await,
            Vec::<String>::new(),
            "runner exec (pid {pid}) left a container"
        );
    }
}

/// A long-running runner collects what dead runners left behind by itself,
/// without a manual `runner gc`: the sweeper `runner serve` starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_collects_orphans_without_a_manual_gc() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-sweep");
    let mut child = spawn_sleeper(dir.path(), false);
    let pid = child.id();
    wait_for_container(&env, pid).await;
    signal(pid, "-KILL");
    child.wait().unwrap();
    assert!(
        !containers_of(&env, pid).await.is_empty(),
        "expected an orphan"
    );

    let backend: std::sync::Arc<dyn JobBackend> = env.docker.clone();
    let sweeper = runner::backend::orphans::start_sweeper(backend, Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_of(&env, pid).await.is_empty() {
        assert!(Instant::now() < deadline, "the sweeper left the orphan");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sweeper.abort();
}

/// Two runner processes of one host never hand out the same uid: while a
/// `runner exec` holds one, the sandboxes of this process get others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runner_processes_never_share_a_sandbox_uid() {
    require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let dir = TempDir::new("cli-uids");
    let child = spawn_sleeper(dir.path(), false);
    let pid = child.id();
    let ids = wait_for_container(&env, pid).await;
    let held: Vec<String> = env
        .docker
        .engine()
        .list(labels::MANAGED, "true")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| ids.contains(&c.id))
        .map(|c| c.labels[labels::UID].clone())
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    let prog = [("main.sh", "id -u; id -g")];
    let (a, b, c) = tokio::join!(
        env.run("bash", &prog),
        env.run("bash", &prog),
        env.run("bash", &prog)
    );
    let mut uids = Vec::new();
    for r in [&a, &b, &c] {
        let out = common::out(r);
        let (uid, gid) = out.split_once('\n').unwrap();
        assert_eq!(uid, gid, "each sandbox's gid is its uid");
        assert_ne!(uid, held[0], "the runner exec's uid was handed out again");
        uids.push(uid.to_owned());
    }
    signal(pid, "-INT");
    child.wait_with_output().unwrap();
    eprintln!(
        "runner exec held uid {}; this process ran as {uids:?}",
        held[0]
    );
}
