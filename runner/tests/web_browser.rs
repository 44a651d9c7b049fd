//! The web pages in a real browser: headless Chromium (Debian's) driven by
//! Selenium (PyPI) from runner/tests/web/browser.py, against `runner serve`
//! with sign-in at a real OpenID provider and runs in real sandboxes.
//! Screenshots and the playground's figures go to target/web-screenshots/.

mod common;

use common::git;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::oidc::{Provider, free_port, tools, tools_or_skip, web_config};
use common::server::{Server, tenant_key};

pub fn screenshots() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/web-screenshots"
    ))
}

/// Chromium and its driver from Debian; under `CI=true` their absence fails.
fn browser_or_skip(test: &str) -> bool {
    let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if test_support::in_ci() {
        panic!("{test}: {missing:?} missing; run .ci/setup");
    }
    eprintln!(
        "SKIPPED {test}: {missing:?} missing (run .ci/setup); set CI=true to make this a failure"
    );
    false
}

#[derive(Debug)]
pub struct Site {
    pub server: Server,
    pub idp: Provider,
    pub base: String,
    pub dir: test_support::TempDir,
    pub learner_key: String,
}

/// `runner serve` on a known port with sign-in for tenant alpha.
pub fn site(extra: &str) -> Site {
    let dir = test_support::TempDir::new("web-browser");
    let idp = Provider::start(free_port());
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let client = idp.register(&[&format!("{base}/auth/callback")]);
    let learner_key = tenant_key(&dir.path().join("runner.db"), "alpha", "learner");
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n{extra}\n{}",
        web_config(dir.path(), &base, &idp.issuer, &client)
    );
    let server = Server::start(dir.path(), &config);
    Site {
        server,
        idp,
        base,
        dir,
        learner_key,
    }
}

pub fn drive(site: &Site, env: &[(&str, &str)]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/browser.py");
    let out = Command::new(tools().join("bin/python"))
        .arg(script)
        .env("BASE_URL", &site.base)
        .env("API_KEY", &site.learner_key)
        .env("OUT_DIR", screenshots())
        .envs(env.iter().copied())
        .output()
        .expect("running the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser checks failed:\n{stdout}\n{stderr}\nserver log: {}",
        std::fs::read_to_string(&site.server.log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The python sandbox image and the workflow job images, built unless
/// there (a fresh machine may reach this test first).
async fn images() {
    let env = common::Env::new().await;
    env.ensure_image("python").await;
    let jobs = runner::images::jobs::JobImages::load(&env.sources).unwrap();
    let progress = |_: &str| {};
    for i in jobs.all() {
        runner::images::ImageBuilder::new(&env.images, &env.sources, &progress)
            .ensure_job_image(i, false)
            .await
            .unwrap();
    }
}

/// A repository registered in alpha whose workflow prints markup, waits,
/// and prints again; returns its id and commit (the browser starts the run).
fn workflow_repo(site: &Site, repo_dir: &Path) -> (String, String) {
    git(repo_dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo_dir.join(".github/workflows")).unwrap();
    std::fs::write(
        repo_dir.join(".github/workflows/ci.yml"),
        "name: web check\non: push\njobs:\n  greet:\n    runs-on: debian\n    steps:\n      - run: echo '<i>from the job</i>'; sleep 10; echo done\n",
    )
    .unwrap();
    git(repo_dir, &["add", "-A"]);
    git(repo_dir, &["commit", "-q", "-m", "ci"]);
    let sha = git(repo_dir, &["rev-parse", "HEAD"]);
    let admin = tenant_key(&site.dir.path().join("runner.db"), "alpha", "admin");
    let (status, repo) = site.server.call(
        "POST",
        "/v1/repos",
        Some(&admin),
        Some(&serde_json::json!({"name": "alpha/app", "url": format!("file://{}", repo_dir.display())})),
    );
    assert_eq!(status, 201, "{repo}");
    (repo["id"].as_str().unwrap().to_owned(), sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_and_use_every_page_in_chromium() {
    let test = "people_sign_in_and_use_every_page_in_chromium";
    if !tools_or_skip(test) || !browser_or_skip(test) || !test_support::docker_or_skip(test) {
        return;
    }
    images().await;
    let site = site("[workflows]\nconcurrency = 1\n");
    let repo_dir = test_support::TempDir::new("web-browser-repo");
    let (repo, commit) = workflow_repo(&site, repo_dir.path());
    tokio::task::spawn_blocking(move || {
        drive(
            &site,
            &[
                ("WORKFLOW", "web check"),
                ("REPO", &repo),
                ("COMMIT", &commit),
            ],
        );
    })
    .await
    .unwrap();
    for page in [
        "sign-in",
        "playground",
        "runs",
        "run-detail",
        "workflows",
        "workflow-run",
        "admin",
        "releases",
    ] {
        assert!(
            screenshots().join(format!("{page}.png")).exists(),
            "screenshot of {page}"
        );
    }
}

/// Release managers approve in the browser and the requester cannot; on
/// the scripted release engine (`releases::fake`: deploy targets and
/// registries are the pipeline's, tested there), served over TCP to
/// Chromium by the same accept loop as `runner serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_managers_approve_in_chromium_and_requesters_cannot_on_the_scripted_engine() {
    let test = "release_managers_approve_in_chromium_and_requesters_cannot_on_the_scripted_engine";
    if !tools_or_skip(test) || !browser_or_skip(test) {
        return;
    }
    const IMG: &str =
        "registry.test/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let idp = tokio::task::spawn_blocking(|| Provider::start(free_port()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let client = idp.register(&[&format!("{base}/auth/callback")]);
    let dir = test_support::TempDir::new("web-releases");
    let (svc, _jobs) = common::service::Service::fake(
        common::service::config(&web_config(dir.path(), &base, &idp.issuer, &client)),
        false,
    );
    let engine = std::sync::Arc::new(runner::service::releases::fake::FakeEngine::standard());
    engine.set_live("dev", IMG);
    let releases = svc
        .inner
        .enable_releases(engine, "alpha", None, 50)
        .unwrap();
    releases.start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(runner::service::server::serve(
        listener,
        svc.app.clone(),
        None,
        svc.state.config.http,
        std::sync::Arc::clone(&svc.state.metrics),
        stop_rx,
    ));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/browser.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(tools().join("bin/python"))
            .arg(script)
            .env("BASE_URL", &base)
            .env("OUT_DIR", screenshots())
            .env("PHASE", "releases")
            .env("IMAGE", IMG)
            .env("ENVIRONMENT", "demo")
            .output()
            .expect("running the browser script")
    })
    .await
    .unwrap();
    let _ = stop_tx.send(true);
    let _ = server.await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the browser did is what the service recorded.
    let about: Vec<(String, String)> = svc
        .store
        .audit()
        .all()
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("promotion."))
        .map(|e| (e.action, e.actor))
        .collect();
    let has = |a: &str, who: &str| about.contains(&(a.to_owned(), who.to_owned()));
    assert!(has("promotion.requested", "user:rob"), "{about:?}");
    assert!(has("promotion.approved", "user:rita"), "{about:?}");
    assert!(!has("promotion.approved", "user:rob"), "{about:?}");
}
