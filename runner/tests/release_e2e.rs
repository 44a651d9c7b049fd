//! The whole release path through a real `runner serve`, end to end: a
//! repository of a small HTTP service is registered, a workflow run on
//! `main` goes green (a real job container), the service builds that
//! commit, pushes it to a test registry, describes, scans (Grype's
//! stand-in: Grype cannot be installed here), signs and attests it, and
//! deploys it into `dev` behind HAProxy; a developer asks for `demo`, a
//! release manager approves with `runner release approve`, and the server
//! is killed with SIGKILL in the middle of that deploy: after a restart the
//! environment is reconciled, recorded consistently either way, and the
//! audit chain verifies.

mod common;

use common::git;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{RUNNER, Server, tenant_key};
use serde_json::{Value, json};
use test_support::TempDir;
use test_support::registry::Auth;

const PASSWORD: &str = "e2e-release-password";

const DOCKERFILE: &str = "FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends busybox >/dev/null && rm -rf /var/lib/apt/lists/*
COPY www/ /www/
COPY serve.sh /serve.sh
USER 10001:10001
CMD [\"/bin/sh\", \"/serve.sh\"]
";

const WORKFLOW: &str = "on: push
jobs:
  test:
    runs-on: debian
    steps:
      - uses: actions/checkout@v4
      - run: test -f www/version && echo tested
";

fn pipeline_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/fixtures")
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Removes what the deploys made: containers, networks, proxies, and the
/// image references into the test registry.
struct Cleanup {
    services: Vec<String>,
    state: PathBuf,
    registry: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            let filter = format!("label=io.pipeline.deploy.service={s}");
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", id]).output();
                }
            }
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("pipeline-{s}")])
                .output();
            let pid = self.state.join("docker").join(s).join("haproxy.pid");
            if let Ok(pid) = std::fs::read_to_string(pid) {
                for p in pid.split_whitespace() {
                    let _ = Command::new("kill").arg(p).output();
                }
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        {
            for r in String::from_utf8_lossy(&out.stdout).lines() {
                if r.starts_with(&format!("{}/", self.registry)) {
                    let _ = Command::new("docker").args(["rmi", "-f", r]).output();
                }
            }
        }
    }
}

fn policy(dev: (&str, &str), demo: (&str, &str)) -> String {
    let verify = "[environment.verify]\nkeys = [\"release.pub\"]\nattestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\"]\nscan_policy = \"scan.yaml\"\n";
    let target = |(service, addr): (&str, &str)| {
        format!(
            "[environment.target]\nkind = \"docker\"\nservice = \"{service}\"\nreplicas = 1\nport = 8080\nhealth_path = \"/health\"\nlisten = \"{addr}\"\nsoak_window = \"2s\"\nhealth_timeout = \"30s\"\ndrain_timeout = \"2s\"\n"
        )
    };
    format!(
        "[[environment]]\nname = \"dev\"\nautomatic = true\nbranches = [\"main\"]\n{verify}{}\n\
         [[environment]]\nname = \"demo\"\napprovals = 1\napprover_role = \"release-manager\"\nsoak_in_previous = \"0s\"\n{verify}{}",
        target(dev),
        target(demo)
    )
}

/// Polls `f` until it gives a value.
fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .ok()?;
    let mut a = String::new();
    s.read_to_string(&mut a).ok()?;
    (a.split_whitespace().nth(1) == Some("200"))
        .then(|| a.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_owned())
}

#[test]
fn a_green_commit_reaches_dev_then_demo_by_approval_and_survives_a_sigkill_mid_deploy() {
    test_support::require_docker!();
    let reg = test_support::require_registry!(Auth::None);
    if pipeline::deploy::docker::proxy::binary().is_err() {
        assert!(!test_support::in_ci(), "HAProxy is required when CI=true");
        eprintln!("SKIPPED: HAProxy is not installed");
        return;
    }
    // The job image the workflow runs in (built once, kept).
    let (code, _, err) = common::server::runner(&["images", "build", "--job", "debian"]);
    assert_eq!(code, 0, "{err}");
    let dir = TempDir::new("release-e2e");
    let d = dir.path();
    let key = pipeline::cosign::keys::generate();
    pipeline::cosign::keys::write_pair(&d.join("release"), &key, PASSWORD, false).unwrap();
    std::fs::write(d.join("scan.yaml"), "fail_on: high\n").unwrap();
    let stamp = std::process::id();
    let (dev_svc, demo_svc) = (format!("e2e-dev-{stamp}"), format!("e2e-demo-{stamp}"));
    let (dev_addr, demo_addr) = (free_addr(), free_addr());
    std::fs::write(
        d.join("environments.toml"),
        policy((&dev_svc, &dev_addr), (&demo_svc, &demo_addr)),
    )
    .unwrap();
    let state = d.join("state");
    let _cleanup = Cleanup {
        services: vec![dev_svc.clone(), demo_svc.clone()],
        state: state.clone(),
        registry: reg.addr.clone(),
    };

    // The repository: the service, and a workflow that tests it.
    let repo = TempDir::new("release-e2e-repo");
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::copy(
        pipeline_fixtures().join("service/serve.sh"),
        r.join("serve.sh"),
    )
    .unwrap();
    std::fs::create_dir_all(r.join("www")).unwrap();
    std::fs::write(r.join("www/version"), "v1\n").unwrap();
    std::fs::write(r.join("www/health"), "ok\n").unwrap();
    std::fs::create_dir_all(r.join(".github/workflows")).unwrap();
    std::fs::write(r.join(".github/workflows/ci.yml"), WORKFLOW).unwrap();
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "v1"]);
    let sha = git(r, &["rev-parse", "HEAD"]);

    let db = d.join("runner.db");
    let admin = tenant_key(&db, "shop", "admin");
    let developer = tenant_key(&db, "shop", "developer");
    let manager = tenant_key(&db, "shop", "release-manager");
    let config = format!(
        "[releases]\npolicy = {:?}\ntenant = \"shop\"\nrepository = \"shop/app\"\nimage = \"{}/shop/app\"\nsigning_key = {:?}\nscan_policy = {:?}\ngrype = {:?}\nstate_dir = {:?}\n[rate_limit]\nper_key = 100000\nper_ip = 100000\n",
        d.join("environments.toml").display().to_string(),
        reg.addr,
        d.join("release.key").display().to_string(),
        d.join("scan.yaml").display().to_string(),
        pipeline_fixtures()
            .join("scan/grype-stand-in.sh")
            .display()
            .to_string(),
        state.display().to_string(),
    );
    let report = pipeline_fixtures().join("scan/report-clean.json");
    let env = [
        ("COSIGN_PASSWORD", PASSWORD),
        ("STANDIN_REPORT", report.to_str().unwrap()),
    ];
    let mut server = Server::start_env(d, &config, &env);

    let (s, created) = server.call(
        "POST",
        "/v1/repos",
        Some(&admin),
        Some(&json!({ "name": "shop/app", "url": format!("file://{}", r.display()) })),
    );
    assert_eq!(s, 201, "{created}");
    let repo_id = created["id"].as_str().unwrap().to_owned();
    let (s, t) = server.call(
        "POST",
        &format!("/v1/repos/{repo_id}/runs"),
        Some(&developer),
        Some(&json!({ "commit": sha })),
    );
    assert!(s == 201 || s == 202, "{s} {t}");

    // Green → built, signed, scanned → live in dev.
    let promotions = |server: &Server, env: &str| -> Value {
        let (s, v) = server.call(
            "GET",
            &format!("/v1/promotions?environment={env}"),
            Some(&developer),
            None,
        );
        assert_eq!(s, 200, "{v}");
        v["promotions"].clone()
    };
    let dev_promotion = until("the green commit to reach dev", 600, || {
        let p = promotions(&server, "dev")[0].clone();
        match p["state"].as_str() {
            Some("deployed") => Some(p),
            Some("failed" | "refused" | "rolled_back") => panic!("{p}"),
            _ => None,
        }
    });
    assert_eq!(dev_promotion["commit"], sha.as_str());
    let image = dev_promotion["image"].as_str().unwrap().to_owned();
    assert!(
        image.starts_with(&format!("{}/shop/app@sha256:", reg.addr)),
        "{image}"
    );
    assert_eq!(http_get(&dev_addr, "/version").as_deref(), Some("v1"));
    let (_, envs) = server.call("GET", "/v1/environments", Some(&developer), None);
    let dev = &envs["environments"][0];
    assert_eq!(dev["image"], image.as_str(), "{envs}");
    assert_eq!(dev["commit"], sha.as_str(), "{envs}");
    assert_eq!(dev["signature"], "verified");
    assert!(dev["sbom"]["components"].as_u64().unwrap() > 0, "{envs}");
    assert_eq!(dev["scan"]["verdict"], "pass", "{envs}");

    // A developer asks for demo; every check passes at request time.
    let (s, p) = server.call(
        "POST",
        "/v1/promotions",
        Some(&developer),
        Some(&json!({ "image": image, "environment": "demo" })),
    );
    assert_eq!(s, 201, "{p}");
    let checks = p["verification"].as_array().unwrap();
    assert!(
        checks.len() >= 4 && checks.iter().all(|c| c["ok"] == true),
        "{p}"
    );
    let id = p["id"].as_str().unwrap().to_owned();

    // The release manager approves at a terminal.
    let out = Command::new(RUNNER)
        .args(["release", "--server", &format!("http://{}", server.addr)])
        .args(["approve", &id, "--reason", "demo for the customer"])
        .env("RUNNER_KEY", &manager)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGKILL once the deploy has begun (the deployer's record says so).
    let demo_state = state.join("demo.json");
    until("the demo deploy to begin", 120, || {
        std::fs::read_to_string(&demo_state)
            .ok()
            .filter(|t| t.contains("\"pending\":{") || t.contains("\"pending\": {"))
    });
    server.signal("-KILL");
    server.wait(Duration::from_secs(10)).expect("killed");
    let server = Server::start_env(d, &config, &env);
    let after = until("the interrupted promotion to be reconciled", 120, || {
        let (_, p) = server.call(
            "GET",
            &format!("/v1/promotions/{id}"),
            Some(&developer),
            None,
        );
        matches!(p["state"].as_str(), Some("deployed" | "failed")).then_some(p)
    });
    assert!(
        after["message"].as_str().unwrap().contains("died"),
        "{after}"
    );
    let (_, envs) = server.call("GET", "/v1/environments/demo", Some(&developer), None);
    // Either way, what is recorded is what serves.
    match after["state"].as_str() {
        Some("deployed") => {
            assert_eq!(envs["image"], image.as_str(), "{envs}");
            assert_eq!(http_get(&demo_addr, "/version").as_deref(), Some("v1"));
        }
        _ => {
            assert!(envs["image"].is_null(), "{envs}");
            assert_eq!(http_get(&demo_addr, "/version"), None);
        }
    }
    assert!(
        envs["deploying"].is_null(),
        "nothing left half-done: {envs}"
    );

    let (code, out, err) =
        common::server::runner(&["audit", "export", "--database", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for action in [
        "promotion.build_requested",
        "promotion.built",
        "promotion.deployed",
        "promotion.requested",
        "promotion.approved",
        "promotion.reconciled",
    ] {
        assert!(out.contains(action), "{action} missing from the audit log");
    }
    let (code, _, err) =
        common::server::runner(&["audit", "verify", "--database", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}
