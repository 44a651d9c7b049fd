//! Workflow jobs for real: a git repository made by the test, its workflow
//! planned and run on the Docker engine, each job in its own sandbox. A
//! two-job DAG, a failing job skipping its dependant, a matrix fanning out,
//! a secret reaching only the step that reads it and masked in the log
//! (also when printed in pieces), no network, no other job's workspace, a
//! job stopped at its time limit — and no container left behind. Through a
//! real `runner serve`: network only from a repository's egress grant, the
//! per-job log cap, and secrets never in the server's own output.

mod common;

use common::git;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::Env;
use runner::backend::JobBackend;
use runner::images::ImageBuilder;
use runner::images::jobs::JobImages;
use runner::workflow::exec::observer::Recorder;
use runner::workflow::exec::prepare::checkout;
use runner::workflow::exec::{RunContext, RunRecord, State, run_plan};
use runner::workflow::plan::Outcome;
use runner::workflow::policy::WorkflowPolicy;
use runner::workflow::source::GitSource;
use runner::workflow::trigger::Push;
use test_support::{TempDir, require_docker};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// A repository holding `workflow` as .github/workflows/ci.yml and a file
/// of its own; returns its HEAD.
fn repo(dir: &Path, workflow: &str) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::write(dir.join(".github/workflows/ci.yml"), workflow).unwrap();
    std::fs::write(dir.join("hello.txt"), "from the repository\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "ci"]);
    git(dir, &["rev-parse", "HEAD"])
}

struct Ran {
    record: RunRecord,
    log: Arc<Recorder>,
}

impl Ran {
    fn job(&self, id: &str) -> &runner::workflow::exec::JobRecord {
        self.record
            .jobs
            .iter()
            .find(|j| j.id == id)
            .unwrap_or_else(|| panic!("no job {id}: {:?}", self.record.jobs))
    }
}

async fn run(env: &Env, workflow: &str, secrets: &[(&str, &str)]) -> Ran {
    let dir = TempDir::new("wf-repo");
    let sha = repo(dir.path(), workflow);
    let images = JobImages::load(&env.sources).unwrap();
    {
        static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _g = BUILD.lock().await;
        let progress = |_: &str| {};
        for i in images.all() {
            ImageBuilder::new(&env.images, &env.sources, &progress)
                .ensure_job_image(i, false)
                .await
                .unwrap();
        }
    }
    let policy = WorkflowPolicy::embedded().unwrap();
    let cache = TempDir::new("wf-cache");
    let source = GitSource::new(cache.path(), policy.source.clone()).unwrap();
    let push = Push {
        git_ref: "refs/heads/main".into(),
        sha: sha.clone(),
        repository: "school/app".into(),
        changed_paths: None,
    };
    let url = format!("file://{}", dir.path().display());
    let co = checkout(&source, &url, &push, &policy, &images)
        .await
        .unwrap();
    let plan = match co.plans.into_iter().next().unwrap().result.unwrap() {
        Outcome::Planned(p) => p,
        other => panic!("not planned: {other:?}"),
    };
    let log = Arc::new(Recorder::default());
    let ctx = RunContext {
        backend: Arc::clone(&env.docker) as Arc<dyn JobBackend>,
        sandbox_policy: Arc::new(env.sandbox.policy().clone()),
        plan: Arc::new(plan),
        run_id: runner::sandbox::new_job_id()[..12].to_owned(),
        source: Arc::new(co.archive),
        secrets: Arc::new(
            secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        tenant: None,
        egress: None,
        observer: log.clone(),
    };
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let record = run_plan(&ctx, rx, 2).await;
    env.docker.settle().await;
    Ran { record, log }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_runs_a_two_job_dag_in_order() {
    require_docker!();
    let env = Env::new().await;
    let ran = run(
        &env,
        "on: push\njobs:\n  build:\n    runs-on: debian\n    steps:\n      - uses: actions/checkout@v4\n      - run: cat hello.txt && id -u && echo \"sha=$GITHUB_SHA\"\n  test:\n    needs: build\n    runs-on: debian\n    steps:\n      - run: echo \"tested after ${{ needs.build.result }}\"\n",
        &[],
    )
    .await;
    assert_eq!(ran.record.state, State::Success, "{:?}", ran.record);
    let build = ran.log.output_of("build");
    assert!(build.contains("from the repository"), "{build}");
    let uid: u32 = build
        .lines()
        .nth(2)
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        uid >= 10000,
        "the job runs as a sandbox uid, not root: {build}"
    );
    assert!(ran.log.output_of("test").contains("tested after success"));
    let order: Vec<String> = ran
        .log
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            runner::workflow::exec::observer::Seen::JobFinished(j) => Some(j.id),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["build", "test"]);
    assert!(
        env.leftovers().await.is_empty(),
        "containers left: {:?}",
        env.leftovers().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_skips_its_dependant_and_a_matrix_fans_out() {
    require_docker!();
    let env = Env::new().await;
    let ran = run(
        &env,
        "on: push\njobs:\n  broken:\n    runs-on: debian\n    steps:\n      - run: echo before; exit 3\n      - run: echo never\n      - if: failure()\n        run: echo cleanup\n  after:\n    needs: broken\n    runs-on: debian\n    steps:\n      - run: echo should-not-run\n  grid:\n    runs-on: debian\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps:\n      - run: echo \"cell ${{ matrix.n }}\"\n",
        &[],
    )
    .await;
    assert_eq!(ran.record.state, State::Failure);
    let broken = ran.job("broken");
    assert_eq!(broken.state, State::Failure);
    let states: Vec<State> = broken.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            State::Success,
            State::Failure,
            State::Skipped,
            State::Success
        ],
        "{broken:?}"
    );
    assert_eq!(broken.steps[1].exit_code, Some(3));
    assert!(ran.log.output_of("broken").contains("cleanup"));
    assert_eq!(ran.job("after").state, State::Skipped);
    for n in 1..=3 {
        let id = format!("grid ({n})");
        assert_eq!(ran.job(&id).state, State::Success);
        assert!(ran.log.output_of(&id).contains(&format!("cell {n}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_only_its_step_and_is_masked_even_in_pieces() {
    require_docker!();
    let env = Env::new().await;
    let secret = "s3cr3t-t0ken-value";
    let ran = run(
        &env,
        "on: push\njobs:\n  deploy:\n    runs-on: debian\n    steps:\n      - run: |\n          echo \"other step sees: [${TOKEN:-nothing}]\"\n      - env:\n          TOKEN: ${{ secrets.DEPLOY_TOKEN }}\n        run: |\n          echo \"whole: $TOKEN\"\n          printf '%s' \"${TOKEN:0:6}\"; sleep 0.3; printf '%s\\n' \"${TOKEN:6}\"\n          echo \"length ${#TOKEN}\"\n",
        &[("DEPLOY_TOKEN", secret)],
    )
    .await;
    assert_eq!(ran.record.state, State::Success, "{:?}", ran.record);
    let log = ran.log.output_of("deploy");
    assert!(!log.contains(secret), "the secret leaked: {log}");
    assert!(
        !log.contains("t0ken-value"),
        "a piece of the secret leaked: {log}"
    );
    assert!(log.contains("whole: ***"), "{log}");
    assert!(
        log.contains(&format!("length {}", secret.len())),
        "the step had the real value: {log}"
    );
    assert!(
        log.contains("other step sees: [nothing]"),
        "only the reading step gets it: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_has_no_network_no_host_and_no_other_workspace() {
    require_docker!();
    let env = Env::new().await;
    let ran = run(
        &env,
        "on: push\njobs:\n  writer:\n    runs-on: debian\n    steps:\n      - run: echo mine > /work/writer-was-here && echo wrote\n  probe:\n    needs: writer\n    runs-on: debian\n    steps:\n      - run: |\n          ls /work\n          (exec 3<>/dev/tcp/1.1.1.1/443) 2>/dev/null && echo NET-OPEN || echo no-network\n          getent hosts debian.org >/dev/null && echo DNS-OPEN || echo no-dns\n          test -e /var/run/docker.sock && echo DOCKER-SOCKET || echo no-docker-socket\n          touch /usr/x 2>/dev/null && echo ROOT-WRITABLE || echo read-only-root\n",
        &[],
    )
    .await;
    assert_eq!(ran.record.state, State::Success, "{:?}", ran.record);
    let log = ran.log.output_of("probe");
    for bad in [
        "writer-was-here",
        "NET-OPEN",
        "DNS-OPEN",
        "DOCKER-SOCKET",
        "ROOT-WRITABLE",
    ] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
    for good in [
        "hello.txt",
        "no-network",
        "no-dns",
        "no-docker-socket",
        "read-only-root",
    ] {
        assert!(log.contains(good), "{good}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_time_limit_is_stopped_and_cleaned_up() {
    require_docker!();
    let env = Env::new().await;
    let ran = run(
        &env,
        "on: push\njobs:\n  slow:\n    runs-on: debian\n    timeout-minutes: 0.05\n    steps:\n      - run: echo start; sleep 60; echo never\n      - run: echo not-reached\n",
        &[],
    )
    .await;
    let slow = ran.job("slow");
    assert_eq!(slow.state, State::TimedOut, "{slow:?}");
    assert_eq!(ran.record.state, State::TimedOut);
    let log = ran.log.output_of("slow");
    assert!(
        log.contains("start") && !log.contains("never") && !log.contains("not-reached"),
        "{log}"
    );
    assert!(
        env.leftovers().await.is_empty(),
        "containers left: {:?}",
        env.leftovers().await
    );
}

/// `runner workflow run` prints each job's live log and exits 1 when the
/// run fails, 0 when it succeeds; a secret comes from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_local_repository_like_act() {
    require_docker!();
    let env = Env::new().await;
    let _ = run(
        &env,
        "on: push\njobs:\n  x:\n    runs-on: debian\n    steps:\n      - run: true\n",
        &[],
    )
    .await;
    let dir = TempDir::new("wf-cli");
    repo(
        dir.path(),
        "on: push\njobs:\n  hello:\n    runs-on: debian\n    steps:\n      - run: echo \"hi $NAME\"\n        env:\n          NAME: ${{ secrets.WHO }}\n",
    );
    let out = Command::new(RUNNER)
        .args(["workflow", "run", "--repo"])
        .arg(dir.path())
        .args(["--secret", "WHO"])
        .env("WHO", "world-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[hello] | hi ***"), "{stdout}");
    assert!(!stdout.contains("world-secret"));

    std::fs::write(
        dir.path().join(".github/workflows/ci.yml"),
        "on: push\njobs:\n  bad:\n    runs-on: debian\n    steps:\n      - run: exit 1\n",
    )
    .unwrap();
    git(dir.path(), &["commit", "-qam", "fail"]);
    let out = Command::new(RUNNER)
        .args(["workflow", "run", "--repo"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(RUNNER)
        .args(["workflow", "run", "--repo"])
        .arg(dir.path())
        .args(["--secret", "NOT_SET_ANYWHERE"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_SET_ANYWHERE"));
}

/// A real `runner serve` on Docker: a repository registered, a run started
/// through the API succeeds; then a run killed mid-job by SIGKILL of the
/// server ends, after restart, as a failure saying why, with no container
/// left — and a push accepted before the kill still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_ends_interrupted_runs_and_keeps_accepted_pushes() {
    use common::server::{Server, tenant_key};
    require_docker!();
    let env = Env::new().await;
    let _ = run(
        &env,
        "on: push\njobs:\n  x:\n    runs-on: debian\n    steps:\n      - run: true\n",
        &[],
    )
    .await;
    let dir = TempDir::new("wf-serve");
    let repo_dir = TempDir::new("wf-serve-repo");
    let sha = repo(
        repo_dir.path(),
        "on: push\njobs:\n  slow:\n    runs-on: debian\n    steps:\n      - run: echo started; sleep 120\n",
    );
    let db = dir.path().join("runner.db");
    let admin = tenant_key(&db, "school", "admin");
    let dev = tenant_key(&db, "school", "developer");
    let config = "[workflows]\nconcurrency = 1\n";
    let mut server = Server::start(dir.path(), config);
    let (status, repo) = server.call(
        "POST",
        "/v1/repos",
        Some(&admin),
        Some(&serde_json::json!({"name": "school/app", "url": format!("file://{}", repo_dir.path().display())})),
    );
    assert_eq!(status, 201, "{repo}");
    let repo_id = repo["id"].as_str().unwrap().to_owned();
    let start = |s: &Server| {
        let (status, t) = s.call(
            "POST",
            &format!("/v1/repos/{repo_id}/runs"),
            Some(&dev),
            Some(&serde_json::json!({"commit": sha})),
        );
        assert_eq!(status, 202, "{t}");
        t["id"].as_str().unwrap().to_owned()
    };
    let first = start(&server);
    // Wait until its job runs, then queue a second push behind it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run_id = loop {
        let (_, t) = server.call("GET", &format!("/v1/triggers/{first}"), Some(&dev), None);
        if let Some(run) = t["runs"][0].as_str() {
            let (_, r) = server.call("GET", &format!("/v1/workflow-runs/{run}"), Some(&dev), None);
            if r["jobs"][0]["state"] == "running" {
                break run.to_owned();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let second = start(&server);
    server.signal("-KILL");
    server.wait(std::time::Duration::from_secs(10));
    let server = Server::start(dir.path(), config);
    let (_, r) = server.call(
        "GET",
        &format!("/v1/workflow-runs/{run_id}"),
        Some(&dev),
        None,
    );
    assert_eq!(r["state"], "failure", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("runner stopped"),
        "{r}"
    );
    assert_eq!(r["jobs"][0]["state"], "failure", "{r}");
    // The second push was accepted before the kill: it runs now.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, t) = server.call("GET", &format!("/v1/triggers/{second}"), Some(&dev), None);
        if t["runs"][0].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the accepted push never ran: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Cancel it: nothing of either run stays behind.
    let (_, t) = server.call("GET", &format!("/v1/triggers/{second}"), Some(&dev), None);
    let run2 = t["runs"][0].as_str().unwrap().to_owned();
    server.call(
        "DELETE",
        &format!("/v1/workflow-runs/{run2}"),
        Some(&dev),
        None,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, r) = server.call(
            "GET",
            &format!("/v1/workflow-runs/{run2}"),
            Some(&dev),
            None,
        );
        if r["state"] == "cancelled" && env.sandbox_containers_of_job_prefix("").await == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not cancelled and cleaned: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The Docker bridge network's gateway: the host, as a job with network
/// sees it. Engines leave `Gateway` out when it is the subnet's first
/// address.
fn bridge_gateway() -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (gateway, subnet) = text.trim_end().split_once(' ').unwrap_or(("", ""));
    if !gateway.is_empty() {
        return gateway.to_owned();
    }
    let base: std::net::Ipv4Addr = subnet
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 subnet on the bridge network: {text}"));
    std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
}

/// A real `runner serve` on Docker, its policy keeping 4 KiB of log per
/// job and granting `internet`: a job of a repository registered without
/// the grant has only `lo` and cannot reach the host; one registered with
/// it has the bridge network and reaches a listener on the host's bridge
/// gateway. A job printing far past its log cap keeps at most the cap, its
/// step says the log reached its limit, the next step does not run, and the
/// run ends. A secret the job prints is masked, and neither it nor the
/// webhook secret is ever in the server's own output (at `debug`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_is_server_policy_logs_are_capped_and_secrets_stay_out_of_the_servers_log() {
    use common::server::{Server, tenant_key};
    require_docker!();
    let env = Env::new().await;
    let _ = run(
        &env,
        "on: push\njobs:\n  x:\n    runs-on: debian\n    steps:\n      - run: true\n",
        &[],
    )
    .await;
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(c);
            }
        });
    }
    let gw = bridge_gateway();
    let cap = 4096;
    let dir = TempDir::new("wf-egress");
    let repo_dir = TempDir::new("wf-egress-repo");
    let sha = repo(
        repo_dir.path(),
        &format!(
            "on: push\njobs:\n  probe:\n    runs-on: debian\n    steps:\n      - run: |\n          echo \"interfaces: $(ls /sys/class/net | tr '\\n' ' ')\"\n          (exec 3<>/dev/tcp/{gw}/{port}) 2>/dev/null && echo HOST-REACHED || echo host-unreachable\n      - env:\n          TOKEN: ${{{{ secrets.DEPLOY_TOKEN }}}}\n        run: echo \"token $TOKEN\"\n  flood:\n    runs-on: debian\n    steps:\n      - run: head -c 200000 /dev/zero | tr '\\0' x; echo; echo after-the-flood\n      - run: echo next-step-ran\n  split:\n    runs-on: debian\n    steps:\n      - run: head -c 3000 /dev/zero | tr '\\0' o; head -c 3000 /dev/zero | tr '\\0' e >&2\n      - run: echo next-step-ran\n"
        ),
    );
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/workflows.toml"
    ))
    .unwrap()
    .replace(
        "log_bytes = { default = 16777216, max = 67108864 }",
        &format!("log_bytes = {{ default = {cap}, max = {cap} }}"),
    );
    assert!(policy.contains(&format!("default = {cap}")));
    std::fs::write(dir.path().join("workflows.toml"), policy).unwrap();
    let db = dir.path().join("runner.db");
    let admin = tenant_key(&db, "school", "admin");
    let dev = tenant_key(&db, "school", "developer");
    let config = format!(
        "[workflows]\npolicy = {:?}\negress_grants = [\"internet\"]\n",
        dir.path().join("workflows.toml").display().to_string()
    );
    let server = Server::start_env(dir.path(), &config, &[("RUNNER_LOG", "debug")]);
    let url = format!("file://{}", repo_dir.path().display());
    let register = |name: &str, network: Option<&str>| {
        let mut body = serde_json::json!({"name": name, "url": url, "secrets": ["DEPLOY_TOKEN"]});
        if let Some(n) = network {
            body["network"] = n.into();
        }
        let (status, r) = server.call("POST", "/v1/repos", Some(&admin), Some(&body));
        assert_eq!(status, 201, "{r}");
        (
            r["id"].as_str().unwrap().to_owned(),
            r["webhook_secret"].as_str().unwrap().to_owned(),
        )
    };
    let (closed, hook_a) = register("school/closed", None);
    let (open, hook_b) = register("school/open", Some("internet"));
    let secret = "d0cker-s3cret-value";
    for id in [&closed, &open] {
        let (status, b) = server.call(
            "PUT",
            &format!("/v1/repos/{id}/secrets/DEPLOY_TOKEN"),
            Some(&admin),
            Some(&serde_json::json!({ "value": secret })),
        );
        assert_eq!(status, 204, "{b}");
    }
    let finished = |repo_id: &str| {
        let (status, t) = server.call(
            "POST",
            &format!("/v1/repos/{repo_id}/runs"),
            Some(&dev),
            Some(&serde_json::json!({"commit": sha})),
        );
        assert_eq!(status, 202, "{t}");
        let trigger = t["id"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let (_, t) = server.call("GET", &format!("/v1/triggers/{trigger}"), Some(&dev), None);
            if let Some(run) = t["runs"][0].as_str() {
                let (_, r) =
                    server.call("GET", &format!("/v1/workflow-runs/{run}"), Some(&dev), None);
                if !matches!(r["state"].as_str(), Some("queued" | "running")) {
                    return r;
                }
            }
            assert!(std::time::Instant::now() < deadline, "never finished: {t}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let log = |run: &serde_json::Value, job: &str| -> String {
        let addr: std::net::SocketAddr = server.addr.parse().unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /v1/workflow-runs/{}/jobs/{job}/log HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {dev}\r\n\r\n",
            run["id"].as_str().unwrap()
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        // Chunked or not: the payload is what lies between the framing.
        body.to_owned()
    };

    let shut = finished(&closed);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    let probe = log(&shut, "probe");
    assert!(
        probe.contains("interfaces: lo \n"),
        "only loopback: {probe}"
    );
    assert!(probe.contains("host-unreachable"), "{probe}");
    assert!(probe.contains("token ***"), "{probe}");

    let granted = finished(&open);
    let probe = log(&granted, "probe");
    assert!(probe.contains("eth0"), "the bridge network: {probe}");
    assert!(probe.contains("HOST-REACHED"), "{probe}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the granted job reached the host's bridge gateway"
    );

    // The flood: capped, said so, the next step not run, the run over.
    for run in [&shut, &granted] {
        assert_eq!(run["state"], "failure", "the flood fails its job: {run}");
        let jobs = run["jobs"].as_array().unwrap();
        let job = |id: &str| jobs.iter().find(|j| j["id"] == id).unwrap();
        assert_eq!(job("probe")["state"], "success", "{run}");
        let flood = job("flood");
        assert_eq!(flood["state"], "failure", "{flood}");
        assert!(
            flood["log_bytes"].as_u64().unwrap() <= cap,
            "kept at most the cap: {flood}"
        );
        let steps = flood["steps"].as_array().unwrap();
        let said = steps
            .iter()
            .filter_map(|s| s["message"].as_str())
            .any(|m| m.contains("log reached its limit of 4096 bytes"));
        assert!(said, "{flood}");
        assert_ne!(steps.last().unwrap()["state"], "success", "{flood}");
    }
    // Under the cap on each stream, over it together: the server's writer
    // keeps the cap, and the next step is refused saying why.
    let jobs = granted["jobs"].as_array().unwrap();
    let split = jobs.iter().find(|j| j["id"] == "split").unwrap();
    assert_eq!(split["log_bytes"].as_u64(), Some(cap), "{split}");
    assert_eq!(split["state"], "failure", "{split}");
    let steps = split["steps"].as_array().unwrap();
    // The step that overflowed succeeded, and says its output was cut.
    assert_eq!(steps[1]["state"], "success", "{split}");
    assert!(
        steps[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("output past it was dropped")),
        "{split}"
    );
    let last = steps.last().unwrap();
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("log reached its limit of 4096 bytes")),
        "{split}"
    );
    let flooded = log(&granted, "flood");
    assert!(flooded.len() <= cap as usize + 16, "{}", flooded.len());
    assert!(!flooded.contains("next-step-ran"));

    drop(server);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut own = String::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("serve-") {
            own.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    assert!(own.contains("workflow run finished"), "{own}");
    assert!(!own.contains(secret), "the secret is in the server's log");
    assert!(!own.contains(&hook_a) && !own.contains(&hook_b));
    env.docker.settle().await;
}
