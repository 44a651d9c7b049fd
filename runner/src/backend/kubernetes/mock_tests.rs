//! The life of a job against a mocked Kubernetes API server (`tower_test`):
//! each request is asserted in order, answered as an API server answers, and
//! the failure paths clean up. No cluster exists on the machines these run
//! on; the same backend runs against a real one in
//! `runner/tests/backend_kubernetes.rs` (`#[ignore = "needs cluster"]`).
//!
//! Attaching to a pod upgrades to a WebSocket, which an HTTP mock cannot do:
//! an in-memory sandbox-init ([`FakeInit`]) stands in for the pod's stdio
//! through the backend's [`PodStreams`] seam, and the journal records when
//! it was attached relative to the API requests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tower_test::mock::{self, Handle, SendResponse};

use super::*;
use crate::backend::protocol::ArchiveKind;
use crate::backend::spec::{JobKind, Resources, Scratch, SeccompProfile};
use crate::backend::{Attachment, Output, OutputStream};
use crate::verdict::LimitHit;

type Journal = Arc<Mutex<Vec<String>>>;
/// What the mocked server answers with: any body, streamed or whole.
type Answer = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn whole(bytes: Vec<u8>) -> Answer {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

const REPORT: &str = "exit_code=0\nsignal=0\nlimit=none\nwall_ms=21\ncpu_ms=7\nmemory_peak_bytes=6000640\nmemory_source=cgroup\noom_kills=0\nstdout_truncated=0\nstderr_truncated=0\ncollected=0\ncollect_error=\n";

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// What the in-memory sandbox-init does with its job.
#[derive(Debug, Clone)]
enum InitScript {
    /// Prints `stdout`, then reports.
    Reply { stdout: Vec<u8>, report: String },
    /// Dies without a report (the kernel killed it).
    Die,
}

/// sandbox-init in memory: reads the whole job from stdin, then answers.
#[derive(Debug)]
struct FakeInit {
    journal: Journal,
    script: InitScript,
    /// The job bytes it received.
    received: Arc<Mutex<Vec<u8>>>,
}

#[async_trait::async_trait]
impl PodStreams for FakeInit {
    async fn attach(&self, namespace: &str, pod: &str) -> Result<Attachment, BackendError> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("ATTACH {namespace}/{pod}"));
        let (runner_end, mut init_end) = tokio::io::duplex(1 << 20);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Output, BackendError>>();
        let script = self.script.clone();
        let received = Arc::clone(&self.received);
        tokio::spawn(async move {
            // A step ends with `run 0` (the runner keeps stdin open: more
            // steps may follow in one sandbox).
            let mut job = Vec::new();
            let mut buf = [0u8; 4096];
            while !job.ends_with(b"run 0\n") {
                let n = init_end.read(&mut buf).await.unwrap();
                assert!(n > 0, "stdin ended inside a step");
                job.extend_from_slice(&buf[..n]);
            }
            assert!(job.starts_with(b"SBX "), "a job arrives first");
            *received.lock().unwrap() = job;
            if let InitScript::Reply { stdout, report } = script {
                let mut frames = frame(b'o', &stdout);
                frames.extend(frame(b'r', report.as_bytes()));
                // Delivered in two chunks of arbitrary size, as streams do.
                let (a, b) = frames.split_at(3);
                let _ = tx.send(Ok(Output::Stdout(a.to_vec().into())));
                let _ = tx.send(Ok(Output::Stdout(b.to_vec().into())));
            }
        });
        let output = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        Ok(Attachment {
            input: Box::pin(runner_end),
            output,
        })
    }
}

/// The mocked API server: asserts each request in order.
struct ApiServer {
    handle: Handle<Request<Body>, Response<Answer>>,
    journal: Journal,
}

impl ApiServer {
    /// The next request, which must be `method` on `path`; its JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (Request<()>, Value, SendResponse<Response<Answer>>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .expect("the client is alive");
        let (parts, body) = req.into_parts();
        self.journal
            .lock()
            .unwrap()
            .push(format!("{} {}", parts.method, parts.uri.path()));
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
        (Request::from_parts(parts, ()), value, send)
    }

    /// Expects a create and answers it with the object, as created.
    async fn created(&mut self, path: &str) -> Value {
        let (_, body, send) = self.expect(Method::POST, path).await;
        send.send_response(json_response(201, &body));
        body
    }
}

fn json_response(status: u16, v: &Value) -> Response<Answer> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(whole(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Answer> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "code": code, "reason": reason, "message": message}),
    )
}

fn watch_events(events: &[Value]) -> Response<Answer> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    Response::builder().status(200).body(whole(body)).unwrap()
}

fn running_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run", "namespace": "rj-job1"},
           "status": {"phase": "Running", "containerStatuses": [{"name": "sandbox", "image": "i",
           "imageID": "", "ready": true, "restartCount": 0,
           "state": {"running": {"startedAt": "2026-12-02T00:00:00Z"}}}]}})
}

struct Harness {
    backend: Arc<KubernetesBackend>,
    server: ApiServer,
    journal: Journal,
    received: Arc<Mutex<Vec<u8>>>,
}

fn harness(script: InitScript, tweak: impl FnOnce(&mut NamespacePolicy)) -> Harness {
    let (service, handle) = mock::pair::<Request<Body>, Response<Answer>>();
    let client = Client::new(service, "default");
    let journal = Journal::default();
    let received = Arc::new(Mutex::new(Vec::new()));
    let streams = Arc::new(FakeInit {
        journal: Arc::clone(&journal),
        script,
        received: Arc::clone(&received),
    });
    let mut policy = NamespacePolicy::embedded().unwrap();
    tweak(&mut policy);
    Harness {
        backend: Arc::new(KubernetesBackend::with_streams(
            client,
            Arc::new(policy),
            Arc::new(test_uids()),
            streams,
        )),
        server: ApiServer {
            handle,
            journal: Arc::clone(&journal),
        },
        journal,
        received,
    }
}

/// A uid range and lock directory of the test's own.
fn test_uids() -> UidAllocator {
    let dir = std::env::temp_dir().join(format!("runner-uids-{}", crate::sandbox::new_job_id()));
    UidAllocator::new(
        crate::backend::uids::UidRange::new(30000, 64, 10000).unwrap(),
        dir,
    )
}

fn job(egress: Option<&str>) -> JobSpec {
    JobSpec {
        id: "job1".into(),
        kind: JobKind::Submission,
        tenant: Some("school".into()),
        egress: egress.map(str::to_owned),
        lifetime: Duration::from_secs(60),
        largest: Resources {
            memory_bytes: 128 << 20,
            nano_cpus: 1_000_000_000,
            scratch_bytes: 80 << 20,
        },
    }
}

fn sandbox() -> SandboxSpec {
    SandboxSpec {
        role: "run".into(),
        image: "runner-sandbox/python:3.11.2-abc".into(),
        memory_bytes: 128 << 20,
        nano_cpus: 1_000_000_000,
        pids: 64,
        scratch: vec![Scratch {
            path: "/work".into(),
            size_bytes: 64 << 20,
            exec: true,
            mode: 0o700,
        }],
        shm_bytes: 8 << 20,
        nofile: 256,
        seccomp: SeccompProfile::EngineDefault,
        labels: Default::default(),
    }
}

fn limits() -> StageLimits {
    StageLimits {
        wall_time_ms: 3000,
        cpu_time_ms: 3000,
        memory_bytes: 128 << 20,
        pids: 64,
        stdout_max_bytes: 1024,
        stderr_max_bytes: 1024,
    }
}

fn step<'a>(argv: &'a [String]) -> Step<'a> {
    Step {
        argv,
        env: &[],
        cwd: "/work",
        wall_ms: 3000,
        cpu_ms: 3000,
        stdout_max: 1024,
        stderr_max: 1024,
        fsize_max: 1 << 20,
        nofile: 256,
        collect_max: 0,
        archive: b"",
        archive_kind: ArchiveKind::Files,
        tmp_files: &[],
        stdin: b"",
    }
}

/// The API server's side of opening job1: every object, in order.
async fn serve_open(server: &mut ApiServer, egress: bool) -> Vec<Value> {
    let mut bodies = vec![server.created("/api/v1/namespaces").await];
    bodies.push(
        server
            .created("/api/v1/namespaces/rj-job1/resourcequotas")
            .await,
    );
    bodies.push(
        server
            .created("/api/v1/namespaces/rj-job1/limitranges")
            .await,
    );
    bodies.push(
        server
            .created("/apis/networking.k8s.io/v1/namespaces/rj-job1/networkpolicies")
            .await,
    );
    if egress {
        bodies.push(
            server
                .created("/apis/networking.k8s.io/v1/namespaces/rj-job1/networkpolicies")
                .await,
        );
    }
    let (req, body, send) = server
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/rj-job1/serviceaccounts/default",
        )
        .await;
    let query = req.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldManager=runner") && query.contains("force=true"),
        "{query}"
    );
    send.send_response(json_response(200, &body));
    bodies.push(body);
    bodies
}

/// The API server's side of starting the `run` pod (created, watched until
/// its container runs).
async fn serve_start(server: &mut ApiServer) -> Value {
    let pod = server.created("/api/v1/namespaces/rj-job1/pods").await;
    let (req, _, send) = server
        .expect(Method::GET, "/api/v1/namespaces/rj-job1/pods")
        .await;
    let query = req.uri().query().unwrap_or_default().to_owned();
    assert!(query.contains("watch=true"), "{query}");
    assert!(
        query.contains("fieldSelector=metadata.name%3Drun"),
        "{query}"
    );
    let mut pending = pod.clone();
    pending["status"] = json!({"phase": "Pending"});
    send.send_response(watch_events(&[
        json!({"type": "ADDED", "object": pending}),
        json!({"type": "MODIFIED", "object": running_pod()}),
    ]));
    pod
}

async fn serve_delete_namespace(server: &mut ApiServer, answer: Response<Answer>) {
    let (_, body, send) = server
        .expect(Method::DELETE, "/api/v1/namespaces/rj-job1")
        .await;
    assert_eq!(body["propagationPolicy"], "Foreground", "{body}");
    send.send_response(answer);
}

fn deleted_namespace() -> Response<Answer> {
    json_response(
        200,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rj-job1"},
               "status": {"phase": "Terminating"}}),
    )
}

#[tokio::test]
async fn the_life_of_a_job_in_order_against_the_mocked_api_server() {
    let Harness {
        backend,
        mut server,
        journal,
        received,
    } = harness(
        InitScript::Reply {
            stdout: b"hello from the pod\n".to_vec(),
            report: REPORT.into(),
        },
        |_| {},
    );
    let (first_byte_tx, first_byte_rx) = tokio::sync::oneshot::channel::<Duration>();
    let client = tokio::spawn(async move {
        let started = Instant::now();
        let scope = backend.open_job(&job(None)).await.unwrap();
        assert_eq!(scope.location, "rj-job1");
        let mut sb = backend.start_sandbox(&scope, &sandbox()).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let argv = ["python3".to_string(), "main.py".to_string()];
        let watcher = tokio::spawn(async move {
            let first = rx.recv().await;
            let _ = first_byte_tx.send(started.elapsed());
            first
        });
        let outcome = backend
            .run_step(&mut sb, &step(&argv), &limits(), Some(&tx))
            .await
            .unwrap();
        drop(tx);
        let first = watcher.await.unwrap();
        assert_eq!(
            first,
            Some((OutputStream::Stdout, "hello from the pod\n".to_string()))
        );
        backend.stop_sandbox(sb).await.unwrap();
        backend.close_job(scope).await.unwrap();
        outcome
    });

    let bodies = serve_open(&mut server, false).await;
    let ns = &bodies[0];
    assert_eq!(ns["metadata"]["name"], "rj-job1");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(bodies[1]["spec"]["hard"]["pods"], "2");
    assert_eq!(
        bodies[3]["spec"]["policyTypes"],
        json!(["Ingress", "Egress"])
    );
    assert_eq!(bodies[4]["automountServiceAccountToken"], false);
    let pod = serve_start(&mut server).await;
    assert_eq!(
        pod["spec"]["securityContext"]["runAsUser"], 30000,
        "the first uid of the backend's range, leased for this pod"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    // The step runs over the attachment: no API call unless something fails.
    let (_, body, send) = server
        .expect(Method::DELETE, "/api/v1/namespaces/rj-job1/pods/run")
        .await;
    assert_eq!(body["gracePeriodSeconds"], 0);
    send.send_response(json_response(200, &running_pod()));
    serve_delete_namespace(&mut server, deleted_namespace()).await;

    let outcome = client.await.unwrap();
    assert_eq!(outcome.result.stdout, "hello from the pod\n");
    assert_eq!(outcome.result.exit_code, Some(0));
    assert_eq!(outcome.result.limit, None);
    let job = received.lock().unwrap().clone();
    assert!(
        job.windows(7).any(|w| w == b"python3"),
        "the step's argv reached sandbox-init"
    );
    let journal = journal.lock().unwrap().clone();
    assert_eq!(
        journal,
        [
            "POST /api/v1/namespaces",
            "POST /api/v1/namespaces/rj-job1/resourcequotas",
            "POST /api/v1/namespaces/rj-job1/limitranges",
            "POST /apis/networking.k8s.io/v1/namespaces/rj-job1/networkpolicies",
            "PATCH /api/v1/namespaces/rj-job1/serviceaccounts/default",
            "POST /api/v1/namespaces/rj-job1/pods",
            "GET /api/v1/namespaces/rj-job1/pods",
            "ATTACH rj-job1/run",
            "DELETE /api/v1/namespaces/rj-job1/pods/run",
            "DELETE /api/v1/namespaces/rj-job1",
        ]
    );
    let first_byte = first_byte_rx.await.unwrap();
    eprintln!(
        "mocked API server: {} API requests for one job; open_job to the first byte of output: {:?}",
        journal.len() - 1,
        first_byte
    );
}

#[tokio::test]
async fn an_egress_grant_adds_its_network_policy() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move { backend.open_job(&job(Some("internet"))).await });
    let bodies = serve_open(&mut server, true).await;
    assert_eq!(bodies[4]["metadata"]["name"], "egress-internet");
    assert_eq!(bodies[4]["spec"]["policyTypes"], json!(["Egress"]));
    client.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unknown_egress_grant_fails_and_the_namespace_is_deleted() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move { backend.open_job(&job(Some("everything"))).await });
    server.created("/api/v1/namespaces").await;
    server
        .created("/api/v1/namespaces/rj-job1/resourcequotas")
        .await;
    server
        .created("/api/v1/namespaces/rj-job1/limitranges")
        .await;
    server
        .created("/apis/networking.k8s.io/v1/namespaces/rj-job1/networkpolicies")
        .await;
    serve_delete_namespace(&mut server, deleted_namespace()).await;
    let err = client.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("\"everything\""), "{err}");
}

#[tokio::test]
async fn the_quota_refusing_the_pod_is_a_clear_error_and_the_namespace_goes() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move {
        let scope = backend.open_job(&job(None)).await.unwrap();
        let err = backend.start_sandbox(&scope, &sandbox()).await.unwrap_err();
        backend.close_job(scope).await.unwrap();
        err
    });
    serve_open(&mut server, false).await;
    let (_, _, send) = server
        .expect(Method::POST, "/api/v1/namespaces/rj-job1/pods")
        .await;
    send.send_response(status(
        403,
        "Forbidden",
        "pods \"run\" is forbidden: exceeded quota: job-quota, requested: limits.memory=2Gi, used: limits.memory=0, limited: limits.memory=256Mi",
    ));
    serve_delete_namespace(&mut server, deleted_namespace()).await;
    let err = client.await.unwrap();
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("exceeded quota"), "{err}");
}

#[tokio::test]
async fn admission_refusing_the_pod_is_a_clear_error() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move {
        let scope = backend.open_job(&job(None)).await.unwrap();
        backend.start_sandbox(&scope, &sandbox()).await.unwrap_err()
    });
    serve_open(&mut server, false).await;
    let (_, _, send) = server
        .expect(Method::POST, "/api/v1/namespaces/rj-job1/pods")
        .await;
    send.send_response(status(
        403,
        "Forbidden",
        "pods \"run\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false",
    ));
    let err = client.await.unwrap();
    assert!(err.to_string().contains("violates PodSecurity"), "{err}");
}

#[tokio::test]
async fn a_pod_that_never_schedules_times_out_and_says_why() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |p| {
        p.start_timeout = Duration::from_secs(1);
    });
    let client = tokio::spawn(async move {
        let scope = backend.open_job(&job(None)).await.unwrap();
        let err = backend.start_sandbox(&scope, &sandbox()).await.unwrap_err();
        backend.close_job(scope).await.unwrap();
        err
    });
    serve_open(&mut server, false).await;
    let pod = server.created("/api/v1/namespaces/rj-job1/pods").await;
    let (_, _, send) = server
        .expect(Method::GET, "/api/v1/namespaces/rj-job1/pods")
        .await;
    let mut unscheduled = pod;
    unscheduled["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    // The watch stays open with nothing more to say until the deadline.
    let (mut body_tx, body) = futures_channel_body();
    send.send_response(Response::builder().status(200).body(body).unwrap());
    body_tx(json!({"type": "ADDED", "object": unscheduled}));
    serve_delete_namespace(&mut server, deleted_namespace()).await;
    let err = client.await.unwrap();
    assert!(matches!(err, BackendError::StartTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("3 Insufficient memory"), "{err}");
}

/// A response body the test keeps writing to (a watch that stays open).
fn futures_channel_body() -> (impl FnMut(Value), Answer) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .map(|b| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(b)));
    let body = StreamBody::new(stream).boxed_unsync();
    let send = move |v: Value| {
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        let _ = tx.send(line.into());
    };
    (send, body)
}

#[tokio::test]
async fn an_api_failure_midway_still_deletes_the_namespace() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move { backend.open_job(&job(None)).await.unwrap_err() });
    server.created("/api/v1/namespaces").await;
    server
        .created("/api/v1/namespaces/rj-job1/resourcequotas")
        .await;
    let (_, _, send) = server
        .expect(Method::POST, "/api/v1/namespaces/rj-job1/limitranges")
        .await;
    send.send_response(status(
        500,
        "InternalError",
        "etcdserver: request timed out",
    ));
    serve_delete_namespace(&mut server, deleted_namespace()).await;
    let err = client.await.unwrap();
    assert!(
        err.to_string().contains("creating the limit range"),
        "{err}"
    );
    assert!(err.to_string().contains("etcdserver"), "{err}");
}

#[tokio::test]
async fn when_cleanup_fails_too_both_failures_are_reported() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move { backend.open_job(&job(None)).await.unwrap_err() });
    server.created("/api/v1/namespaces").await;
    let (_, _, send) = server
        .expect(Method::POST, "/api/v1/namespaces/rj-job1/resourcequotas")
        .await;
    send.send_response(status(500, "InternalError", "quota admission unavailable"));
    serve_delete_namespace(
        &mut server,
        status(503, "ServiceUnavailable", "the API server is shutting down"),
    )
    .await;
    let err = client.await.unwrap();
    assert!(matches!(err, BackendError::Cleanup { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("quota admission unavailable"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
}

#[tokio::test]
async fn an_oom_kill_is_read_from_the_container_state() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move {
        let scope = backend.open_job(&job(None)).await.unwrap();
        let mut sb = backend.start_sandbox(&scope, &sandbox()).await.unwrap();
        let argv = ["python3".to_string(), "main.py".to_string()];
        backend
            .run_step(&mut sb, &step(&argv), &limits(), None)
            .await
            .unwrap()
    });
    serve_open(&mut server, false).await;
    serve_start(&mut server).await;
    let (_, _, send) = server
        .expect(Method::GET, "/api/v1/namespaces/rj-job1/pods/run")
        .await;
    let mut oom = running_pod();
    oom["status"]["containerStatuses"][0]["state"] =
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    send.send_response(json_response(200, &oom));
    let outcome = client.await.unwrap();
    assert_eq!(outcome.result.limit, Some(LimitHit::Memory));
    assert_eq!(
        crate::verdict::verdict(None, Some(&outcome.result)),
        crate::verdict::Status::MemoryLimit
    );
}

#[tokio::test]
async fn a_restarted_runner_collects_namespaces_left_behind() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let me = Owner::current().to_label();
    let mut dead = Owner::current();
    dead.start_ticks += 1;
    let future = unix(SystemTime::now()) + 3600;
    let ns = |name: &str, owner: &str, deadline: u64| {
        json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "runner"},
               "annotations": {"runner.io/owner": owner, "runner.io/deadline": deadline.to_string()}}})
    };
    let client = tokio::spawn(async move {
        backend
            .collect_orphans(OrphanScope::Orphans, false)
            .await
            .unwrap()
    });
    let (req, _, send) = server.expect(Method::GET, "/api/v1/namespaces").await;
    assert!(
        req.uri()
            .query()
            .unwrap()
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Drunner"),
        "{:?}",
        req.uri()
    );
    send.send_response(json_response(
        200,
        &json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": [
            ns("rj-expired", &me, 1000),
            ns("rj-dead-owner", &dead.to_label(), future),
            ns("rj-live", &me, future),
            ns("other-app", "x", 1000),
        ]}),
    ));
    for name in ["rj-expired", "rj-dead-owner"] {
        let (_, body, send) = server
            .expect(Method::DELETE, &format!("/api/v1/namespaces/{name}"))
            .await;
        assert_eq!(body["propagationPolicy"], "Foreground");
        send.send_response(json_response(
            200,
            &json!({"metadata": {"name": name}, "status": {"phase": "Terminating"}}),
        ));
    }
    let report = client.await.unwrap();
    assert_eq!(report.removed, ["rj-expired", "rj-dead-owner"]);
    assert_eq!(report.kept, 1, "the live runner's namespace stays");
}

#[tokio::test]
async fn removing_a_job_that_is_gone_is_success() {
    let Harness {
        backend,
        mut server,
        ..
    } = harness(InitScript::Die, |_| {});
    let client = tokio::spawn(async move { backend.remove_job("job1").await });
    serve_delete_namespace(
        &mut server,
        status(404, "NotFound", "namespaces \"rj-job1\" not found"),
    )
    .await;
    client.await.unwrap().unwrap();
}
