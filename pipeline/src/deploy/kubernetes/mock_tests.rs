//! Deploys against a mocked Kubernetes API server (`tower_test`): no
//! cluster can run where these tests run. Each request is asserted in
//! order and answered as an API server answers; watch answers stream
//! events and then either end or stay open, as real watches do. The same
//! deployer runs against a real cluster in `tests/deploy_kubernetes.rs`
//! (`#[ignore = "needs cluster"]`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use super::*;

type Answer = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const OLD: &str =
    "registry.example/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str =
    "registry.example/app@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/app";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const PODS: &str = "/api/v1/namespaces/shop/pods";

fn whole(v: &Value) -> Answer {
    Full::new(Bytes::from(serde_json::to_vec(v).unwrap()))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(v: &Value) -> Response<Answer> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(whole(v))
        .unwrap()
}

/// A watch answer: `events` as JSON lines, then the end of the body, or
/// (`open`) nothing more, as a watch with no news.
fn watch_answer(events: &[Value], open: bool) -> Response<Answer> {
    let lines: Vec<Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> =
        events
            .iter()
            .map(|e| {
                let mut line = serde_json::to_vec(e).unwrap();
                line.push(b'\n');
                Ok(http_body::Frame::data(Bytes::from(line)))
            })
            .collect();
    let stream = futures_util::stream::iter(lines);
    let body = if open {
        StreamBody::new(stream.chain(futures_util::stream::pending())).boxed_unsync()
    } else {
        StreamBody::new(stream).boxed_unsync()
    };
    Response::builder().status(200).body(body).unwrap()
}

/// The Deployment `app` (3 replicas) at `generation`, with `image`.
fn deployment(image: &str, generation: i64, version: u32, status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "shop", "generation": generation,
                     "resourceVersion": version.to_string()},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "shop"}},
                 "template": {"metadata": {"labels": {"app": "shop"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
        "status": status,
    })
}

fn complete(observed: i64) -> Value {
    json!({"observedGeneration": observed, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
}

fn progressing(observed: i64, updated: i32, available: i32) -> Value {
    json!({"observedGeneration": observed, "replicas": 3, "updatedReplicas": updated, "availableReplicas": available})
}

fn modified(d: Value) -> Value {
    json!({"type": "MODIFIED", "object": d})
}

fn crash_looping_pods() -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": [
        {"metadata": {"name": "app-7d9f-x2"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "web", "image": NEW, "imageID": "", "ready": false, "restartCount": 5,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
             "lastState": {"terminated": {"exitCode": 2}}}]}},
        {"metadata": {"name": "app-5c4b-ok"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "web", "image": OLD, "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}},
    ]})
}

struct ApiServer {
    handle: Handle<Request<Body>, Response<Answer>>,
    journal: Vec<String>,
}

impl ApiServer {
    /// The next request, which must be `method` on `path`: its query and
    /// JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (String, Value, SendResponse<Response<Answer>>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no request came; expected {method} {path}; so far {:?}",
                    self.journal
                )
            })
            .expect("the client is alive");
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let watch = if query.contains("watch=true") {
            " (watch)"
        } else {
            ""
        };
        self.journal
            .push(format!("{} {}{watch}", parts.method, parts.uri.path()));
        assert_eq!(
            (&parts.method, parts.uri.path()),
            (&method, path),
            "request {} {}",
            parts.method,
            parts.uri
        );
        let bytes = body.collect_bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (query, value, send)
    }

    async fn get(&mut self, answer: Value) {
        let (_, _, send) = self.expect(Method::GET, DEPLOYMENT).await;
        send.send_response(json_response(&answer));
    }

    /// Expects the image patch setting `image`; answers `answer`.
    async fn patch(&mut self, image: &str, answer: Value) {
        let (query, body, send) = self.expect(Method::PATCH, DEPLOYMENT).await;
        assert!(query.contains("fieldManager=pipeline"), "{query}");
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": image}])
        );
        assert!(
            body["metadata"]["annotations"]["kubernetes.io/change-cause"]
                .as_str()
                .unwrap()
                .contains(image)
        );
        send.send_response(json_response(&answer));
    }

    /// Expects a watch of the Deployment from `version`.
    async fn watch(&mut self, version: u32, events: &[Value], open: bool) {
        let (query, _, send) = self.expect(Method::GET, DEPLOYMENTS).await;
        assert!(query.contains("watch=true"), "{query}");
        assert!(
            query.contains(&format!("resourceVersion={version}")),
            "{query}"
        );
        assert!(
            query.contains("fieldSelector=metadata.name%3Dapp"),
            "{query}"
        );
        send.send_response(watch_answer(events, open));
    }

    async fn pods(&mut self, answer: Value) {
        let (query, _, send) = self.expect(Method::GET, PODS).await;
        assert!(query.contains("labelSelector=app%3Dshop"), "{query}");
        send.send_response(json_response(&answer));
    }
}

fn target() -> KubernetesTarget {
    KubernetesTarget {
        context: "test".into(),
        kubeconfig: None,
        namespace: "shop".into(),
        deployment: "app".into(),
        container: "web".into(),
        progress_timeout: Duration::from_secs(10),
        soak_window: Duration::from_millis(300),
    }
}

/// A deploy of NEW over OLD running in the background, and the server.
fn start(
    tweak: impl FnOnce(&mut KubernetesTarget),
) -> (
    tokio::task::JoinHandle<Result<DeployReport, DeployError>>,
    ApiServer,
) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Answer>>();
    let mut t = target();
    tweak(&mut t);
    let deployer = KubeDeployer::new(Client::new(service, "default"), t);
    let task = tokio::spawn(async move {
        let (new, old) = (Pinned::parse(NEW).unwrap(), Pinned::parse(OLD).unwrap());
        deployer.deploy(&new, Some(&old), &|_| {}).await
    });
    (
        task,
        ApiServer {
            handle,
            journal: Vec::new(),
        },
    )
}

/// The start every scenario shares: read, then the patch to NEW.
async fn read_and_patch(server: &mut ApiServer) {
    server.get(deployment(OLD, 1, 10, complete(1))).await;
    server.patch(NEW, deployment(NEW, 2, 11, complete(1))).await;
}

/// The rollback to OLD, which completes.
async fn rollback(server: &mut ApiServer) {
    server
        .patch(OLD, deployment(OLD, 3, 20, progressing(2, 3, 3)))
        .await;
    server
        .watch(20, &[modified(deployment(OLD, 3, 21, complete(3)))], true)
        .await;
}

#[tokio::test]
async fn a_rollout_that_completes_and_soaks_is_live() {
    let (task, mut server) = start(|_| {});
    read_and_patch(&mut server).await;
    server
        .watch(11, &[
            modified(deployment(NEW, 2, 12, progressing(2, 1, 3))),
            modified(deployment(NEW, 2, 13, json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}))),
            modified(deployment(NEW, 2, 14, progressing(2, 3, 2))),
            modified(deployment(NEW, 2, 15, complete(2))),
        ], true)
        .await;
    // The soak window: a watch from the complete version with no news.
    server.watch(15, &[], true).await;
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.image, NEW);
    let said = report.events.join("\n");
    for step in [
        "Waiting for deployment spec update to be observed...",
        "1 out of 3 new replicas have been updated",
        "1 old replicas are pending termination",
        "2 of 3 updated replicas are available",
        "successfully rolled out",
        "soaking",
    ] {
        assert!(said.contains(step), "{step} missing from:\n{said}");
    }
    assert_eq!(
        server.journal,
        [
            format!("GET {DEPLOYMENT}"),
            format!("PATCH {DEPLOYMENT}"),
            format!("GET {DEPLOYMENTS} (watch)"),
            format!("GET {DEPLOYMENTS} (watch)"),
        ]
    );
}

#[tokio::test]
async fn the_progress_deadline_rolls_back_and_names_the_crash_loop() {
    let (task, mut server) = start(|_| {});
    read_and_patch(&mut server).await;
    let exceeded = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
    server
        .watch(11, &[modified(deployment(NEW, 2, 12, exceeded))], true)
        .await;
    server.pods(crash_looping_pods()).await;
    rollback(&mut server).await;
    let e = task.await.unwrap().unwrap_err();
    let DeployError::RolledBack {
        cause, restored, ..
    } = &e
    else {
        panic!("expected a rollback: {e}");
    };
    assert_eq!(restored.as_deref(), Some(OLD));
    let reason = cause.to_string();
    assert!(
        reason.contains("exceeded its progress deadline"),
        "{reason}"
    );
    assert!(
        reason.contains(
            "pod app-7d9f-x2: container web is CrashLoopBackOff (5 restarts, last exit code 2)"
        ),
        "{reason}"
    );
    assert!(
        !reason.contains("app-5c4b-ok"),
        "a healthy pod is not named: {reason}"
    );
    assert_eq!(
        server.journal,
        [
            format!("GET {DEPLOYMENT}"),
            format!("PATCH {DEPLOYMENT}"),
            format!("GET {DEPLOYMENTS} (watch)"),
            format!("GET {PODS}"),
            format!("PATCH {DEPLOYMENT}"),
            format!("GET {DEPLOYMENTS} (watch)"),
        ]
    );
}

#[tokio::test]
async fn a_replica_crash_looping_in_the_soak_window_rolls_back() {
    let (task, mut server) = start(|t| t.soak_window = Duration::from_secs(10));
    read_and_patch(&mut server).await;
    server
        .watch(11, &[modified(deployment(NEW, 2, 12, complete(2)))], true)
        .await;
    // During the soak, one replica stops being available.
    server
        .watch(
            12,
            &[modified(deployment(NEW, 2, 13, progressing(2, 3, 2)))],
            true,
        )
        .await;
    server.pods(crash_looping_pods()).await;
    rollback(&mut server).await;
    let e = task.await.unwrap().unwrap_err();
    let DeployError::RolledBack {
        cause, restored, ..
    } = &e
    else {
        panic!("expected a rollback: {e}");
    };
    assert!(matches!(**cause, DeployError::Soak { .. }), "{cause}");
    let reason = cause.to_string();
    assert!(
        reason.contains("2 of 3 updated replicas are available"),
        "{reason}"
    );
    assert!(reason.contains("CrashLoopBackOff"), "{reason}");
    assert_eq!(restored.as_deref(), Some(OLD));
}

#[tokio::test]
async fn a_rollout_past_its_timeout_rolls_back() {
    let (task, mut server) = start(|t| t.progress_timeout = Duration::from_millis(400));
    read_and_patch(&mut server).await;
    // Progress, then silence: the watch stays open past the timeout.
    server
        .watch(
            11,
            &[modified(deployment(NEW, 2, 12, progressing(2, 1, 3)))],
            true,
        )
        .await;
    server
        .pods(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}))
        .await;
    rollback(&mut server).await;
    let e = task.await.unwrap().unwrap_err();
    let DeployError::RolledBack { cause, .. } = &e else {
        panic!("expected a rollback: {e}");
    };
    let reason = cause.to_string();
    assert!(
        reason.contains("not complete after 0.4 s (progress_timeout)"),
        "{reason}"
    );
    assert!(
        reason.contains("1 out of 3 new replicas have been updated"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_failed_rollback_reports_both_failures() {
    let (task, mut server) = start(|_| {});
    read_and_patch(&mut server).await;
    let exceeded = |generation: i64| {
        json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})
    };
    server
        .watch(11, &[modified(deployment(NEW, 2, 12, exceeded(2)))], true)
        .await;
    server.pods(crash_looping_pods()).await;
    server
        .patch(OLD, deployment(OLD, 3, 20, progressing(2, 3, 3)))
        .await;
    server
        .watch(20, &[modified(deployment(OLD, 3, 21, exceeded(3)))], true)
        .await;
    let e = task.await.unwrap().unwrap_err();
    assert!(matches!(e, DeployError::RollbackFailed { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("and the rollback to"), "{text}");
    assert_eq!(
        crate::error::Classify::blame(&e),
        crate::error::Blame::Degraded
    );
}

#[tokio::test]
async fn an_ended_watch_is_resumed_from_a_fresh_read() {
    let (task, mut server) = start(|t| t.soak_window = Duration::ZERO);
    read_and_patch(&mut server).await;
    // The API server closes the watch; then the version is gone (410).
    server
        .watch(
            11,
            &[modified(deployment(NEW, 2, 12, progressing(2, 2, 3)))],
            false,
        )
        .await;
    server
        .get(deployment(NEW, 2, 13, progressing(2, 2, 3)))
        .await;
    server.watch(13, &[json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}})], true).await;
    server.get(deployment(NEW, 2, 14, complete(2))).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_container_is_refused_before_anything_changes() {
    let (task, mut server) = start(|t| t.container = "api".into());
    server.get(deployment(OLD, 1, 10, complete(1))).await;
    let e = task.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("has containers [\"web\"]"), "{e}");
    assert_eq!(server.journal.len(), 1, "no patch: {:?}", server.journal);
}

#[tokio::test]
async fn a_first_deploy_that_fails_has_nothing_to_roll_back_to() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Answer>>();
    let deployer = KubeDeployer::new(Client::new(service, "default"), target());
    let task = tokio::spawn(async move {
        deployer
            .deploy(&Pinned::parse(NEW).unwrap(), None, &|_| {})
            .await
    });
    let mut server = ApiServer {
        handle,
        journal: Vec::new(),
    };
    read_and_patch(&mut server).await;
    let exceeded = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
    server
        .watch(11, &[modified(deployment(NEW, 2, 12, exceeded))], true)
        .await;
    server.pods(crash_looping_pods()).await;
    let e = task.await.unwrap().unwrap_err();
    assert!(
        matches!(e, DeployError::RolledBack { restored: None, .. }),
        "{e}"
    );
    assert_eq!(
        server.journal.len(),
        4,
        "no rollback patch: {:?}",
        server.journal
    );
}

#[tokio::test]
async fn reconcile_keeps_a_complete_pending_image_and_restores_otherwise() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Answer>>();
    let deployer = KubeDeployer::new(Client::new(service, "default"), target());
    let mut server = ApiServer {
        handle,
        journal: Vec::new(),
    };
    let (new, old) = (Pinned::parse(NEW).unwrap(), Pinned::parse(OLD).unwrap());
    let d2 = deployer.clone();
    let (n2, o2) = (new.clone(), old.clone());
    let task = tokio::spawn(async move { d2.reconcile(Some(&o2), Some(&n2), &|_| {}).await });
    server.get(deployment(NEW, 2, 15, complete(2))).await;
    server.watch(15, &[], true).await; // the soak, again
    assert_eq!(task.await.unwrap().unwrap(), Some(new.clone()));

    // The pending image never completed: the recorded one is set back.
    let task =
        tokio::spawn(async move { deployer.reconcile(Some(&old), Some(&new), &|_| {}).await });
    let stuck = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
    server.get(deployment(NEW, 2, 16, stuck)).await;
    rollback(&mut server).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Some(Pinned::parse(OLD).unwrap())
    );
}
