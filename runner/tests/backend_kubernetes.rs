//! The Kubernetes job backend against a real cluster: the isolation
//! contract of the Docker suites (sandbox_isolation.rs), checked in pods of
//! per-job namespaces. No cluster can run where the main suite runs, so
//! these are `#[ignore = "needs cluster"]`; the `kubernetes` GitHub Actions
//! workflow starts a kind cluster, loads the sandbox images and runs them:
//!
//! ```sh
//! RUNNER_TEST_KUBECONFIG=~/.kube/config cargo test -p runner --test backend_kubernetes -- --ignored
//! ```
//!
//! The same backend's requests, in order and on every failure path, are
//! tested without a cluster against a mocked API server
//! (runner/src/backend/kubernetes/mock_tests.rs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use runner::backend::kubernetes::{KubernetesBackend, NamespacePolicy};
use runner::backend::uids::UidAllocator;
use runner::backend::{JobBackend, OrphanScope};
use runner::images::sources::ImageSources;
use runner::language::Catalog;
use runner::limits::LimitsRequest;
use runner::policy::SandboxPolicy;
use runner::sandbox::{RunRequest, Sandbox};
use runner::submission::SubmissionFile;
use runner::verdict::{RunResult, Status};

fn kubeconfig() -> PathBuf {
    std::env::var_os("RUNNER_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .expect("set RUNNER_TEST_KUBECONFIG to the kubeconfig of a test cluster")
}

struct Cluster {
    backend: Arc<KubernetesBackend>,
    sandbox: Sandbox,
    client: kube::Client,
}

async fn cluster() -> Cluster {
    let policy = Arc::new(SandboxPolicy::embedded().unwrap());
    let uids = Arc::new(UidAllocator::new(
        policy.container.uids,
        UidAllocator::default_dir(),
    ));
    let path = kubeconfig();
    let backend = Arc::new(
        KubernetesBackend::connect(
            Some(&path),
            None,
            Arc::new(NamespacePolicy::embedded().unwrap()),
            uids,
        )
        .await
        .expect("connecting to the test cluster"),
    );
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let catalog = Arc::new(Catalog::load(&ImageSources::embedded()).unwrap());
    Cluster {
        sandbox: Sandbox::new(Arc::clone(&backend) as Arc<dyn JobBackend>, policy, catalog),
        backend,
        client: kube::Client::try_from(config).unwrap(),
    }
}

impl Cluster {
    async fn run(
        &self,
        language: &str,
        name: &str,
        code: &str,
        limits: LimitsRequest,
    ) -> (String, RunResult) {
        let prepared = self
            .sandbox
            .prepare(RunRequest {
                language: language.into(),
                files: vec![SubmissionFile {
                    name: name.into(),
                    content: code.as_bytes().to_vec(),
                }],
                limits,
                ..Default::default()
            })
            .unwrap();
        let result = self.sandbox.execute(&prepared).await.expect("a verdict");
        (prepared.id, result)
    }

    async fn bash(&self, script: &str) -> RunResult {
        self.run("bash", "main.sh", script, LimitsRequest::default())
            .await
            .1
    }

    /// Waits until the job's namespace is gone (or being deleted).
    async fn namespace_goes(&self, job: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.backend.policy().namespace_of(job);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match api.get_opt(&name).await.unwrap() {
                None => return,
                Some(ns) if ns.metadata.deletion_timestamp.is_some() => return,
                Some(_) => {}
            }
            assert!(Instant::now() < deadline, "namespace {name} still there");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn stdout(r: &RunResult) -> String {
    r.run
        .as_ref()
        .map(|s| s.stdout.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_submission_runs_in_a_namespace_of_its_own_that_is_deleted_after() {
    let c = cluster().await;
    let (id, r) = c
        .run(
            "python",
            "main.py",
            "print('hello from the pod')",
            LimitsRequest::default(),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(stdout(&r), "hello from the pod");
    c.namespace_goes(&id).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_compiled_language_runs_its_two_stages() {
    let c = cluster().await;
    let (_, r) = c
        .run(
            "c",
            "main.c",
            "#include <stdio.h>\nint main(){puts(\"OK\");}",
            LimitsRequest::default(),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(stdout(&r), "OK");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_program_runs_as_a_non_root_uid_with_no_capabilities() {
    let c = cluster().await;
    let r = c
        .bash("id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status")
        .await;
    let out = stdout(&r);
    let uid: u32 = out.lines().next().unwrap().parse().unwrap();
    assert!(uid >= 10000, "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_root_filesystem_is_read_only_and_work_is_writable() {
    let c = cluster().await;
    let r = c
        .bash("touch /usr/x 2>/dev/null && echo root-writable; echo hi > /work/f && cat /work/f")
        .await;
    assert_eq!(stdout(&r), "hi");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn no_network_and_no_service_account_token() {
    let c = cluster().await;
    let r = c
        .bash(
            "ls /var/run/secrets/kubernetes.io 2>/dev/null && echo token-mounted; \
             (exec 3<>/dev/tcp/1.1.1.1/443) 2>/dev/null && echo internet; \
             (exec 3<>/dev/tcp/kubernetes.default.svc/443) 2>/dev/null && echo api-server; \
             echo done",
        )
        .await;
    assert_eq!(stdout(&r), "done", "{r:?}");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn memory_and_time_limits_give_their_verdicts() {
    let c = cluster().await;
    let (_, r) = c
        .run(
            "python",
            "main.py",
            "x = bytearray(512 << 20)\nprint(len(x))",
            LimitsRequest {
                run_memory_mb: Some(64),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status, Status::MemoryLimit, "{r:?}");
    let (_, r) = c
        .run(
            "python",
            "main.py",
            "while True: pass",
            LimitsRequest {
                run_wall_time_ms: Some(1000),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status, Status::TimeLimit, "{r:?}");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn while_a_job_runs_its_namespace_has_quota_and_deny_all_policy() {
    let c = cluster().await;
    let run = c.run(
        "bash",
        "main.sh",
        "sleep 8; echo done",
        LimitsRequest {
            run_wall_time_ms: Some(20000),
            ..Default::default()
        },
    );
    let look = async {
        let api: Api<Namespace> = Api::all(c.client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        let ns = loop {
            let list = api
                .list(&ListParams::default().labels("app.kubernetes.io/managed-by=runner"))
                .await
                .unwrap();
            if let Some(ns) = list
                .items
                .into_iter()
                .find(|n| n.metadata.deletion_timestamp.is_none())
            {
                break ns;
            }
            assert!(Instant::now() < deadline, "no job namespace appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let name = ns.metadata.name.clone().unwrap();
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), &name);
        assert_eq!(
            quotas.list(&Default::default()).await.unwrap().items.len(),
            1
        );
        let policies: Api<NetworkPolicy> = Api::namespaced(c.client.clone(), &name);
        let names: Vec<_> = policies
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(names, ["deny-all"]);
    };
    let ((_, r), ()) = tokio::join!(run, look);
    assert_eq!(stdout(&r), "done", "{r:?}");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn garbage_collection_keeps_namespaces_of_live_runners() {
    let c = cluster().await;
    let report = c
        .backend
        .collect_orphans(OrphanScope::Orphans, true)
        .await
        .unwrap();
    // Nothing of this (live) process is taken; a dry run removes nothing.
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}
