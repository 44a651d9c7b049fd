//! Workflows in the service, over the scripted backend and real git
//! repositories made by the tests (no engine needed): registering
//! repositories, GitHub webhooks (signature, replay, pings, other events,
//! deleted branches), runs started by hand, what a run records (jobs,
//! steps, masked logs), live events, cancellation, workflow errors shown
//! on the run, secrets never returned (nor in the server's own log),
//! secret files mounted by the platform, the audit of repository changes
//! and triggers, `runner admin repo`, and egress only from a grant.

mod common;

use common::git;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::service::{Service, test_store};
use runner::backend::OutputStream;
use runner::backend::fake::{Call, Reply, When};
use runner::service::auth::Role;
use runner::service::store::Store;
use runner::workflow::webhook::sign;
use serde_json::{Value, json};
use test_support::TempDir;
use test_support::postgres::Postgres;

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

/// A world on the test store (SQLite in memory, or PostgreSQL with
/// `RUNNER_TEST_STORE=postgres`).
async fn world(workflow: &str) -> World {
    world_with(workflow, "", test_store()).await
}

/// A world whose service has more `[workflows]` keys and runs on `store`
/// (and the PostgreSQL server it lives on, kept as long as the world).
async fn world_with(
    workflow: &str,
    workflows: &str,
    (store, postgres): (Store, Option<std::sync::Arc<Postgres>>),
) -> World {
    let cache = TempDir::new("svc-wf-cache");
    let (mut svc, fake) = Service::fake_workflows_with("", workflows, cache.path(), store);
    svc.postgres = postgres;
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

impl World {
    async fn set_secret(&self, name: &str, value: &str) {
        let admin = self.svc.key("alpha", Role::Admin).to_owned();
        let (status, b, _) = self
            .svc
            .call(
                "PUT",
                &format!("/v1/repos/{}/secrets/{name}", self.repo_id),
                Some(&admin),
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(status, 204, "{b}");
    }

    /// Starts a run of the repository's HEAD through the API; the trigger.
    async fn start_run(&self) -> String {
        let dev = self.svc.key("alpha", Role::Developer).to_owned();
        let (status, t, _) = self
            .svc
            .call(
                "POST",
                &format!("/v1/repos/{}/runs", self.repo_id),
                Some(&dev),
                Some(json!({"commit": self.sha})),
            )
            .await;
        assert_eq!(status, 202, "{t}");
        t["id"].as_str().unwrap().to_owned()
    }

    /// The run a trigger was planned into, as soon as it exists.
    async fn run_of(&self, trigger: &str) -> String {
        let dev = self.svc.key("alpha", Role::Developer).to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, t, _) = self
                .svc
                .call("GET", &format!("/v1/triggers/{trigger}"), Some(&dev), None)
                .await;
            if let Some(run) = t["runs"][0].as_str() {
                return run.to_owned();
            }
            assert!(Instant::now() < deadline, "never planned: {t}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A GET with the developer's key.
    async fn get_as_developer(&self, path: &str) -> axum::http::Response<axum::body::Body> {
        let dev = self.svc.key("alpha", Role::Developer).to_owned();
        self.svc
            .send(
                axum::http::Request::get(path)
                    .header("authorization", format!("Bearer {dev}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
    }

    /// Follows a run's event stream until it ends (within `timeout`, or
    /// panics saying `what`): its text.
    async fn follow(&self, run: &str, timeout: Duration, what: &str) -> String {
        let resp = self
            .get_as_developer(&format!("/v1/workflow-runs/{run}/events"))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let body = tokio::time::timeout(timeout, axum::body::to_bytes(resp.into_body(), 1 << 20))
            .await
            .expect(what)
            .unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    async fn log(&self, run: &str, job: &str) -> String {
        let resp = self
            .get_as_developer(&format!("/v1/workflow-runs/{run}/jobs/{job}/log"))
            .await;
        assert_eq!(resp.status(), 200);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What the fake prints for a step given `TOKEN`: the value, in two pieces
/// that split it (the masker must hold back the first).
fn prints_in_pieces(value: &str) -> Reply {
    let (a, b) = value.split_at(value.len() / 2);
    Reply::Exit {
        output: vec![
            (OutputStream::Stdout, format!("token {a}")),
            (OutputStream::Stdout, format!("{b}\n")),
        ],
        exit_code: 0,
        archive: None,
    }
}

/// One server-sent event: its name and its data.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

#[tokio::test]
async fn a_client_following_a_run_gets_its_steps_masked_output_and_end() {
    let w = world(CI).await;
    let secret = "l1ve-s3cret-in-events";
    w.set_secret("DEPLOY_TOKEN", secret).await;
    w.fake
        .on(When::env(secret), prints_in_pieces(secret))
        .on(When::program("bash"), Reply::ok("building\n"));
    // Slow steps: the client connects while the first job runs.
    *w.fake.step_delay.lock().unwrap() = Duration::from_millis(300);
    w.svc.start();
    let trigger = w.start_run().await;
    let run = w.run_of(&trigger).await;
    // The stream ends by itself after the run's end.
    let text = w
        .follow(
            &run,
            Duration::from_secs(30),
            "the event stream did not end with the run",
        )
        .await;
    let events = sse_events(&text);
    assert!(!text.contains(secret), "the secret leaked: {text}");
    let (a, b) = secret.split_at(secret.len() / 2);
    assert!(
        !text.contains(a) && !text.contains(b),
        "a piece leaked: {text}"
    );
    assert_eq!(events[0].0, "run", "{text}");
    assert!(
        matches!(events[0].1["state"].as_str(), Some("queued" | "running")),
        "connected while it ran: {text}"
    );
    let (last, end) = events.last().unwrap();
    assert_eq!((last.as_str(), &end["state"]), ("run", &json!("success")));
    let has =
        |name: &str, f: &dyn Fn(&Value) -> bool| events.iter().any(|(n, v)| n == name && f(v));
    assert!(
        has("job", &|v| v["job"] == "test" && v["state"] == "running"),
        "{text}"
    );
    assert!(
        has("step", &|v| v["job"] == "test"
            && v["name"] == "Set up job"
            && v["state"] == "running"),
        "{text}"
    );
    assert!(
        has("step", &|v| v["job"] == "test"
            && v["step"]["index"] == 0
            && v["step"]["state"] == "success"),
        "{text}"
    );
    let output: String = events
        .iter()
        .filter(|(n, v)| n == "output" && v["job"] == "test")
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect();
    assert_eq!(output, "token ***\n", "{text}");
    assert!(
        has("job", &|v| v["job"] == "test"
            && v["state"] == "success"
            && v["record"]["steps"].is_array()),
        "{text}"
    );
    // A client connecting after the end gets the final state and an end.
    let after = w
        .follow(
            &run,
            Duration::from_secs(5),
            "a finished run's stream ends at once",
        )
        .await;
    let after = sse_events(&after);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].1["state"], "success");
}

/// A client opening a run after some of its output was printed (and maybe
/// not stored yet) gets that output first, then the rest, each line once.
#[tokio::test]
async fn a_client_following_late_gets_the_output_so_far_once() {
    let w = world(CI).await;
    w.set_secret("DEPLOY_TOKEN", "late-s3cret").await;
    w.fake
        .on(When::env("late-s3cret"), prints_in_pieces("late-s3cret"))
        .on(When::program("bash"), Reply::ok("building\n"));
    // Each step waits before printing: `test` runs for a while after
    // `build` printed.
    *w.fake.step_delay.lock().unwrap() = Duration::from_millis(1500);
    w.svc.start();
    let trigger = w.start_run().await;
    let run = w.run_of(&trigger).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.log(&run, "build").await.contains("building") {
        assert!(Instant::now() < deadline, "build never printed");
        // Not faster: each look is a request against the key's rate limit.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = w
        .follow(
            &run,
            Duration::from_secs(30),
            "the event stream did not end with the run",
        )
        .await;
    let events = sse_events(&text);
    assert_eq!(
        events[0].1["state"], "running",
        "connected while it ran: {text}"
    );
    let output = |job: &str| -> String {
        events
            .iter()
            .filter(|(n, v)| n == "output" && v["job"] == job)
            .map(|(_, v)| v["text"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        output("build"),
        "building\n",
        "printed before we came: {text}"
    );
    assert_eq!(output("test"), "token ***\n", "{text}");
    assert_eq!(events.last().unwrap().1["state"], "success", "{text}");
}

#[tokio::test]
async fn platform_secret_files_win_reach_only_their_steps_and_are_masked() {
    let dir = TempDir::new("svc-wf-secrets");
    let w = world_with(
        CI,
        &format!("secrets_dir = {:?}", dir.path().display().to_string()),
        test_store(),
    )
    .await;
    let stored = "stored-but-overridden";
    let mounted = "m0unted-by-the-platform";
    w.set_secret("DEPLOY_TOKEN", stored).await;
    std::fs::create_dir_all(dir.path().join(&w.repo_id)).unwrap();
    // Files as a CSI driver writes them: with a trailing newline.
    std::fs::write(
        dir.path().join(&w.repo_id).join("DEPLOY_TOKEN"),
        format!("{mounted}\n"),
    )
    .unwrap();
    // Not a secret this repository may use: never read.
    std::fs::write(dir.path().join(&w.repo_id).join("OTHER"), "nope").unwrap();
    w.fake
        .on(
            When::env(&format!("TOKEN={mounted}")),
            prints_in_pieces(mounted),
        )
        .on(When::env(mounted), Reply::ok("GIVEN UNDER ANOTHER NAME\n"))
        .on(When::env(stored), Reply::ok("THE STORED VALUE WON\n"))
        .on(When::env("nope"), Reply::ok("AN UNLISTED FILE WAS READ\n"))
        .on(When::program("bash"), Reply::ok("no secret here\n"));
    w.svc.start();
    let trigger = w.start_run().await;
    let run = w.wait_run(&trigger).await;
    assert_eq!(run["state"], "success", "{run}");
    let id = run["id"].as_str().unwrap();
    assert_eq!(
        w.log(id, "build").await,
        "no secret here\n",
        "a step not reading the secret is not given it"
    );
    let test = w.log(id, "test").await;
    assert_eq!(test, "token ***\n", "the mounted file wins, masked");
}

/// Every secret and key this test uses must never reach the server's own
/// log: tracing is captured for the whole test binary, at every level.
fn captured_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(std::sync::Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_the_servers_own_log() {
    let log = captured_log();
    let w = world(CI).await;
    let secret = "0wn-log-s3cret-value";
    w.set_secret("DEPLOY_TOKEN", secret).await;
    // The step prints it; the platform then fails with it in its words
    // (a file name, say), which the runner logs and records.
    w.fake
        .on(When::env(secret), prints_in_pieces(secret))
        .on(When::program("bash"), Reply::ok("building\n"));
    w.svc.start();
    let run = w.wait_run(&w.start_run().await).await;
    assert_eq!(run["state"], "success", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(w.log(&id, "test").await, "token ***\n");
    let failing = world(CI).await;
    failing.set_secret("DEPLOY_TOKEN", secret).await;
    failing.fake.on(
        When::env(secret),
        Reply::Fail(format!("cannot write /tmp/{secret}: no space left")),
    );
    failing.svc.start();
    let run = failing.wait_run(&failing.start_run().await).await;
    assert_eq!(run["state"], "failure", "{run}");
    assert!(!run.to_string().contains(secret), "{run}");
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("workflow run finished"),
        "the capture works: {text}"
    );
    assert!(!text.contains(secret), "the secret is in the server's log");
    assert!(
        !text.contains(&w.hook_secret),
        "the webhook secret is in the server's log"
    );
}

#[tokio::test]
async fn a_request_field_never_grants_network() {
    let w = world_with(CI, "egress_grants = [\"internet\"]", test_store()).await;
    w.svc.start();
    let dev = w.svc.key("alpha", Role::Developer).to_owned();
    let (status, b, _) = w
        .svc
        .call(
            "POST",
            &format!("/v1/repos/{}/runs", w.repo_id),
            Some(&dev),
            Some(json!({"commit": w.sha, "network": "internet"})),
        )
        .await;
    assert_eq!(status, 400, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("network"));
    let run = w.wait_run(&w.start_run().await).await;
    assert_eq!(run["state"], "success", "{run}");
    // The repository was registered without the grant: its jobs get none.
    let opened = w.fake.egress_of_opened();
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert!(opened.iter().all(|(_, e)| e.is_none()), "{opened:?}");
    // One registered with it: every job of its runs gets it.
    let admin = w.svc.key("alpha", Role::Admin).to_owned();
    let (status, r, _) = w
        .svc
        .call(
            "POST",
            "/v1/repos",
            Some(&admin),
            Some(json!({"name": "school/net", "url": format!("file://{}", w.repo_dir.path().display()), "network": "internet"})),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["network"], "internet");
    let (status, t, _) = w
        .svc
        .call(
            "POST",
            &format!("/v1/repos/{}/runs", r["id"].as_str().unwrap()),
            Some(&dev),
            Some(json!({"commit": w.sha})),
        )
        .await;
    assert_eq!(status, 202, "{t}");
    let run = w.wait_run(t["id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "success", "{run}");
    let opened = w.fake.egress_of_opened();
    assert_eq!(opened.len(), 4, "{opened:?}");
    assert!(
        opened[2..]
            .iter()
            .all(|(_, e)| e.as_deref() == Some("internet")),
        "{opened:?}"
    );
}

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// `runner <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(RUNNER)
        .args(args)
        .env_remove("RUNNER_CONFIG")
        .env_remove("RUNNER_DATABASE")
        .env_remove("RUNNER_SECRETS_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn repository_changes_and_triggers_are_audited_without_values_and_verify() {
    let dir = TempDir::new("svc-wf-audit");
    let db = dir.path().join("runner.db");
    // A file, which the `runner audit` CLI below reads too.
    let w = world_with(CI, "", (Store::open(&db).unwrap(), None)).await;
    w.svc.start();
    let secret = "audit-s3cret-value";
    w.set_secret("DEPLOY_TOKEN", secret).await;
    let admin = w.svc.key("alpha", Role::Admin).to_owned();
    let (status, b, _) = w
        .svc
        .call(
            "DELETE",
            &format!("/v1/repos/{}/secrets/DEPLOY_TOKEN", w.repo_id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{b}");
    w.set_secret("DEPLOY_TOKEN", secret).await;
    w.wait_run(&w.start_run().await).await;
    let (status, t) = w
        .deliver("push", "d-audit", &push_body(&w.sha), &w.hook_secret)
        .await;
    assert_eq!(status, 202, "{t}");
    w.wait_run(t["id"].as_str().unwrap()).await;
    let (status, b, _) = w
        .svc
        .call(
            "DELETE",
            &format!("/v1/repos/{}", w.repo_id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{b}");
    let audit = w.svc.store.audit().all().unwrap();
    let of = |action: &str| -> Vec<&runner::service::store::AuditEntry> {
        audit.iter().filter(|e| e.action == action).collect()
    };
    assert_eq!(of("repo.create").len(), 1, "{audit:?}");
    assert_eq!(of("repo.create")[0].target.as_deref(), Some("school/app"));
    assert_eq!(of("secret.set").len(), 2, "{audit:?}");
    assert_eq!(
        of("secret.delete")[0].target.as_deref(),
        Some("school/app/DEPLOY_TOKEN")
    );
    let triggers = of("workflow.trigger");
    assert_eq!(triggers.len(), 2, "an API run and a push: {audit:?}");
    assert!(triggers.iter().any(|e| e.actor.starts_with("webhook:")));
    assert!(
        triggers
            .iter()
            .all(|e| e.detail.as_deref().unwrap_or("").contains(&w.sha)),
        "{triggers:?}"
    );
    assert_eq!(of("repo.delete").len(), 1, "{audit:?}");
    let all = format!("{audit:?}");
    assert!(
        !all.contains(secret),
        "a secret's value is in the audit log"
    );
    assert!(!all.contains(&w.hook_secret), "the webhook secret is too");
    let (code, out, err) = cli(&["audit", "verify", "--database", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log intact"), "{out}");
}

#[test]
fn the_admin_cli_registers_lists_and_removes_repositories() {
    let dir = TempDir::new("svc-wf-cli");
    let db = dir.path().join("runner.db");
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "database = {:?}\n[workflows]\negress_grants = [\"internet\"]\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, _, err) = cli(&["admin", "tenant", "create", "school", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "admin", "repo", "create", "--tenant", "school", "--config", cfg,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let (code, out, err) = create(&[
        "--name",
        "school/app",
        "--url",
        "https://example.org/school/app.git",
        "--secret",
        "DEPLOY_TOKEN",
        "--branch",
        "main",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "the id, then the webhook secret: {out}");
    let (id, hook_secret) = (lines[0], lines[1]);
    assert!(id.starts_with("r_"), "{out}");
    assert!(hook_secret.len() >= 43, "32 random bytes: {out}");
    assert!(
        err.contains(&format!("/v1/hooks/github?repo={id}")) && err.contains("shown once"),
        "{err}"
    );
    let (code, out, err) = create(&[
        "--name",
        "school/net",
        "--url",
        "https://example.org/school/net.git",
        "--network",
        "internet",
    ]);
    assert_eq!(code, 0, "{err}");
    let net_id = out.lines().next().unwrap().to_owned();
    let list = || {
        let (code, out, err) = cli(&[
            "admin", "repo", "list", "--tenant", "school", "--config", cfg,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let listed = list();
    assert!(
        listed.contains(&format!("{id}\tschool/app\tno network")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{net_id}\tschool/net\tinternet")),
        "{listed}"
    );
    assert!(
        !listed.contains(hook_secret),
        "the secret is shown once only"
    );
    for (args, needle) in [
        (
            vec![
                "--name",
                "school/x",
                "--url",
                "https://e.org/x.git",
                "--network",
                "anywhere",
            ],
            "egress grant",
        ),
        (
            vec![
                "--name",
                "school/x",
                "--url",
                "https://e.org/x.git",
                "--secret",
                "GITHUB_TOKEN",
            ],
            "--secret GITHUB_TOKEN",
        ),
        (
            vec!["--name", "school/x", "--url", "ext::sh -c id"],
            "--url",
        ),
        (
            vec!["--name", "nope", "--url", "https://e.org/x.git"],
            "owner/name",
        ),
        (
            vec![
                "--name",
                "school/x",
                "--url",
                "https://e.org/x.git",
                "--branch",
                "[main",
            ],
            "--branch",
        ),
        (
            vec!["--name", "school/app", "--url", "https://e.org/x.git"],
            "already registered",
        ),
    ] {
        let (code, out, err) = create(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(needle), "{args:?} wants {needle:?}: {err}");
        assert!(out.is_empty(), "nothing printed as if created: {out}");
    }
    let (code, _, err) = cli(&[
        "admin",
        "repo",
        "create",
        "--tenant",
        "nobody",
        "--name",
        "a/b",
        "--url",
        "https://e.org/x.git",
        "--config",
        cfg,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nobody"), "{err}");
    assert_eq!(list(), listed, "refused input changed nothing");
    let (code, _, err) = cli(&[
        "admin", "repo", "delete", "--tenant", "school", id, "--config", cfg,
    ]);
    assert_eq!(code, 0, "{err}");
    let listed = list();
    assert!(!listed.contains(id) && listed.contains(&net_id), "{listed}");
    let (code, _, err) = cli(&[
        "admin", "repo", "delete", "--tenant", "school", id, "--config", cfg,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(id), "{err}");
    let (code, out, err) = cli(&["audit", "export", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("\"repo.create\"").count(), 2, "{out}");
    assert_eq!(out.matches("\"repo.delete\"").count(), 1, "{out}");
    assert!(!out.contains(hook_secret), "{out}");
    let (code, out, err) = cli(&["audit", "verify", "--config", cfg]);
    assert_eq!(code, 0, "{out}{err}");
}
