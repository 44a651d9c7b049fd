//! Workflows in the service, over the scripted backend and real git
//! repositories made by the tests (no engine needed): registering
//! repositories, GitHub webhooks (signature, replay, pings, other events,
//! deleted branches), runs started by hand, what a run records (jobs,
//! steps, masked logs), live events, cancellation, workflow errors shown
//! on the run, secrets never returned, and recovery after a crash.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::service::Service;
use runner::backend::OutputStream;
use runner::backend::fake::{Call, Reply, When};
use runner::service::auth::Role;
use runner::workflow::webhook::sign;
use serde_json::{Value, json};
use test_support::TempDir;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn repo_with(dir: &Path, workflow: &str) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::write(dir.join(".github/workflows/ci.yml"), workflow).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "ci"]);
    git(dir, &["rev-parse", "HEAD"])
}

struct World {
    svc: Service,
    fake: std::sync::Arc<runner::backend::fake::ScriptedBackend>,
    _cache: TempDir,
    repo_dir: TempDir,
    sha: String,
    repo_id: String,
    hook_secret: String,
}

const CI: &str = "on: push\njobs:\n  build:\n    runs-on: debian\n    steps:\n      - run: echo building\n  test:\n    needs: build\n    runs-on: debian\n    steps:\n      - env:\n          TOKEN: ${{ secrets.DEPLOY_TOKEN }}\n        run: echo \"token $TOKEN\"\n";

async fn world(workflow: &str) -> World {
    let cache = TempDir::new("svc-wf-cache");
    let (svc, fake) = Service::fake_workflows("", cache.path());
    let repo_dir = TempDir::new("svc-wf-repo");
    let sha = repo_with(repo_dir.path(), workflow);
    let admin = svc.key("alpha", Role::Admin).to_owned();
    let (status, b, _) = svc
        .call(
            "POST",
            "/v1/repos",
            Some(&admin),
            Some(json!({"name": "school/app", "url": format!("file://{}", repo_dir.path().display()), "secrets": ["DEPLOY_TOKEN"]})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let repo_id = b["id"].as_str().unwrap().to_owned();
    let hook_secret = b["webhook_secret"].as_str().unwrap().to_owned();
    World {
        svc,
        fake,
        _cache: cache,
        repo_dir,
        sha,
        repo_id,
        hook_secret,
    }
}

fn push_body(sha: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "created": true, "deleted": false, "forced": false,
        "repository": {"full_name": "school/app", "clone_url": "https://example.org/school/app.git"},
        "head_commit": {"id": sha, "message": "ci", "added": [], "removed": [], "modified": []},
        "commits": [],
    }))
    .unwrap()
}

impl World {
    async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        secret: &str,
    ) -> (u16, Value) {
        let sig = sign(secret.as_bytes(), body);
        let req = axum::http::Request::builder()
            .method("POST")
            .uri(format!("/v1/hooks/github?repo={}", self.repo_id))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .body(axum::body::Body::from(body.to_vec()))
            .unwrap();
        let (status, v, _) = common::service::split(self.svc.send(req).await).await;
        (status, v)
    }

    async fn wait_run(&self, trigger: &str) -> Value {
        let dev = self.svc.key("alpha", Role::Developer).to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, t, _) = self
                .svc
                .call("GET", &format!("/v1/triggers/{trigger}"), Some(&dev), None)
                .await;
            if let Some(run) = t["runs"]
                .as_array()
                .and_then(|r| r.first())
                .and_then(Value::as_str)
            {
                let (_, r, _) = self
                    .svc
                    .call("GET", &format!("/v1/workflow-runs/{run}"), Some(&dev), None)
                    .await;
                if !matches!(r["state"].as_str(), Some("queued" | "running")) {
                    return r;
                }
            }
            assert!(t["state"] != "failed", "the trigger failed: {t}");
            assert!(
                Instant::now() < deadline,
                "no finished run for trigger {trigger}: {t}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_signed_push_runs_the_workflow_and_a_replay_runs_nothing() {
    let w = world(CI).await;
    w.svc.start();
    w.fake.on(When::program("bash"), Reply::ok("step output\n"));
    let body = push_body(&w.sha);
    let (status, t) = w.deliver("push", "d-1", &body, &w.hook_secret).await;
    assert_eq!(status, 202, "{t}");
    let trigger = t["id"].as_str().unwrap().to_owned();
    let run = w.wait_run(&trigger).await;
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["workflow"], ".github/workflows/ci.yml");
    let jobs: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["build", "test"]);
    for j in run["jobs"].as_array().unwrap() {
        assert_eq!(j["state"], "success", "{j}");
        let steps = j["steps"].as_array().unwrap();
        assert_eq!(steps[0]["name"], "Set up job");
    }
    let (status, again) = w.deliver("push", "d-1", &body, &w.hook_secret).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["trigger"], trigger.as_str(), "{again}");
    let opened = w
        .fake
        .journal()
        .iter()
        .filter(|c| matches!(c, Call::Open { .. }))
        .count();
    assert_eq!(opened, 2, "two jobs, one run: the replay ran nothing");
}

#[tokio::test]
async fn bad_signatures_pings_other_events_and_deleted_branches() {
    let w = world(CI).await;
    let body = push_body(&w.sha);
    let (status, b) = w.deliver("push", "d-2", &body, "not-the-secret").await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(b["error"]["code"], "bad_signature");
    let (status, b) = w
        .deliver("ping", "d-3", b"{\"zen\":\"hi\"}", &w.hook_secret)
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = w.deliver("issues", "d-4", b"{}", &w.hook_secret).await;
    assert_eq!(status, 202, "{b}");
    assert!(b["message"].as_str().unwrap().contains("ignored"));
    let mut deleted: Value = serde_json::from_slice(&body).unwrap();
    deleted["deleted"] = json!(true);
    deleted["after"] = json!("0000000000000000000000000000000000000000");
    let (status, b) = w
        .deliver(
            "push",
            "d-5",
            &serde_json::to_vec(&deleted).unwrap(),
            &w.hook_secret,
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let dev = w.svc.key("alpha", Role::Developer);
    let (_, runs, _) = w
        .svc
        .call("GET", "/v1/workflow-runs", Some(dev), None)
        .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
}

#[tokio::test]
async fn secrets_reach_the_step_masked_and_are_never_returned() {
    let w = world(CI).await;
    w.svc.start();
    let admin = w.svc.key("alpha", Role::Admin).to_owned();
    let secret = "v3ry-s3cret-value";
    let (status, b, _) = w
        .svc
        .call(
            "PUT",
            &format!("/v1/repos/{}/secrets/DEPLOY_TOKEN", w.repo_id),
            Some(&admin),
            Some(json!({"value": secret})),
        )
        .await;
    assert_eq!(status, 204, "{b}");
    // The fake prints what the step was given, in two pieces.
    w.fake.on(
        When::program("bash"),
        Reply::Exit {
            output: vec![
                (OutputStream::Stdout, "token v3ry-s3".into()),
                (OutputStream::Stdout, "cret-value\n".into()),
            ],
            exit_code: 0,
            archive: None,
        },
    );
    let dev = w.svc.key("alpha", Role::Developer).to_owned();
    let (status, t, _) = w
        .svc
        .call(
            "POST",
            &format!("/v1/repos/{}/runs", w.repo_id),
            Some(&dev),
            Some(json!({"commit": w.sha})),
        )
        .await;
    assert_eq!(status, 202, "{t}");
    let run = w.wait_run(t["id"].as_str().unwrap()).await;
    let id = run["id"].as_str().unwrap();
    let log = w
        .svc
        .send(
            axum::http::Request::get(format!("/v1/workflow-runs/{id}/jobs/test/log"))
                .header("authorization", format!("Bearer {dev}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let bytes = axum::body::to_bytes(log.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("token ***"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("v3ry"), "{text}");
    let (_, repo, _) = w
        .svc
        .call(
            "GET",
            &format!("/v1/repos/{}", w.repo_id),
            Some(&admin),
            None,
        )
        .await;
    assert!(
        !repo.to_string().contains(secret) && repo.get("webhook_secret").is_none(),
        "{repo}"
    );
    assert_eq!(repo["secrets_set"][0]["name"], "DEPLOY_TOKEN");
    let learner = w.svc.key("alpha", Role::Learner);
    let (status, _, _) = w
        .svc
        .call(
            "PUT",
            &format!("/v1/repos/{}/secrets/DEPLOY_TOKEN", w.repo_id),
            Some(learner),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(status, 403);
    let audit = w.svc.store.audit().all().unwrap();
    assert!(audit.iter().any(|e| e.action == "secret.set"));
    assert!(
        !format!("{audit:?}").contains(secret),
        "the audit log holds no secret"
    );
}

#[tokio::test]
async fn an_unknown_action_is_refused_with_where_and_what() {
    let w = world("on: push\njobs:\n  x:\n    runs-on: debian\n    steps:\n      - uses: actions/setup-node@v4\n").await;
    w.svc.start();
    let (_, t) = w
        .deliver("push", "d-9", &push_body(&w.sha), &w.hook_secret)
        .await;
    let run = w.wait_run(t["id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "failure");
    let message = run["message"].as_str().unwrap();
    assert!(message.contains("ci.yml:6:"), "{message}");
    assert!(message.contains("setup-node"), "{message}");
}

#[tokio::test]
async fn cancelling_a_running_workflow_stops_its_jobs() {
    let w = world(CI).await;
    w.svc.start();
    w.fake
        .on(When::program("bash"), Reply::Hang { output: vec![] });
    let dev = w.svc.key("alpha", Role::Developer).to_owned();
    let (_, t, _) = w
        .svc
        .call(
            "POST",
            &format!("/v1/repos/{}/runs", w.repo_id),
            Some(&dev),
            Some(json!({"commit": w.sha})),
        )
        .await;
    w.fake.until_steps_started(2).await;
    let (_, trig, _) = w
        .svc
        .call(
            "GET",
            &format!("/v1/triggers/{}", t["id"].as_str().unwrap()),
            Some(&dev),
            None,
        )
        .await;
    let run_id = trig["runs"][0].as_str().unwrap().to_owned();
    let (status, b, _) = w
        .svc
        .call(
            "DELETE",
            &format!("/v1/workflow-runs/{run_id}"),
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(status, 202, "{b}");
    let run = w.wait_run(t["id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "cancelled", "{run}");
    assert!(
        w.fake
            .journal()
            .iter()
            .any(|c| matches!(c, Call::Remove { .. }))
    );
    assert!(w.fake.open_jobs().is_empty(), "{:?}", w.fake.open_jobs());
    assert!(
        w.svc
            .store
            .audit()
            .all()
            .unwrap()
            .iter()
            .any(|e| e.action == "workflow.cancel")
    );
}

#[tokio::test]
async fn only_admins_register_repositories_and_names_are_checked() {
    let w = world(CI).await;
    let dev = w.svc.key("alpha", Role::Developer);
    let (status, _, _) = w
        .svc
        .call(
            "POST",
            "/v1/repos",
            Some(dev),
            Some(json!({"name": "a/b", "url": "https://example.org/a/b.git"})),
        )
        .await;
    assert_eq!(status, 403);
    let admin = w.svc.key("alpha", Role::Admin);
    for (body, needle) in [
        (
            json!({"name": "nope", "url": "https://example.org/x.git"}),
            "owner/name",
        ),
        (json!({"name": "a/b", "url": "ext::sh -c id"}), "url"),
        (
            json!({"name": "a/b", "url": "https://example.org/x.git", "network": "internet"}),
            "egress grant",
        ),
        (
            json!({"name": "a/b", "url": "https://example.org/x.git", "secrets": ["GITHUB_TOKEN"]}),
            "secret name",
        ),
        (
            json!({"name": "a/b", "url": "https://example.org/x.git", "shell": "yes"}),
            "unknown field",
        ),
    ] {
        let (status, b, _) = w
            .svc
            .call("POST", "/v1/repos", Some(admin), Some(body))
            .await;
        assert_eq!(status, 400, "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {b}"
        );
    }
    let (status, _, _) = w
        .svc
        .call(
            "POST",
            "/v1/repos",
            Some(admin),
            Some(json!({"name": "school/app", "url": "https://example.org/x.git"})),
        )
        .await;
    assert_eq!(status, 409, "registering twice");
    // Another tenant sees nothing of alpha's repositories.
    let beta = w.svc.key("beta", Role::Admin);
    let (status, _, _) = w
        .svc
        .call("GET", &format!("/v1/repos/{}", w.repo_id), Some(beta), None)
        .await;
    assert_eq!(status, 404);
    let _ = &w.repo_dir;
}
