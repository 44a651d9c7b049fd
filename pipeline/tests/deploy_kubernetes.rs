//! The Kubernetes target against a real cluster. No cluster can run where
//! the project's CI runs, so these are `#[ignore = "needs cluster"]`; the
//! same code is tested against a mocked API server in
//! `src/deploy/kubernetes/mock_tests.rs`. To run them:
//!
//! ```sh
//! PIPELINE_TEST_KUBECONFIG=~/.kube/config [PIPELINE_TEST_KUBE_CONTEXT=ctx] \
//! PIPELINE_TEST_IMAGE=registry.k8s.io/pause@sha256:... \
//! PIPELINE_TEST_IMAGE_2=registry.k8s.io/pause@sha256:... \
//!   cargo test -p pipeline --test deploy_kubernetes -- --ignored
//! ```
//!
//! Both images must run as a non-root user and stay up (pause does). Each
//! test makes a namespace of its own and deletes it.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use pipeline::deploy::{DeployError, KubeDeployer, KubernetesTarget};
use pipeline::reference::Pinned;
use serde_json::json;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (see the top of this file)"))
}

struct Cluster {
    target: KubernetesTarget,
    client: kube::Client,
}

async fn cluster(test: &str) -> Cluster {
    let kubeconfig = PathBuf::from(var("PIPELINE_TEST_KUBECONFIG"));
    let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let context = std::env::var("PIPELINE_TEST_KUBE_CONTEXT")
        .ok()
        .or(file.current_context.clone())
        .expect("no context: set PIPELINE_TEST_KUBE_CONTEXT");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let target = KubernetesTarget {
        context,
        kubeconfig: Some(kubeconfig),
        namespace: format!("pipeline-test-{test}-{:x}", nanos & 0xfffff),
        deployment: "app".into(),
        container: "app".into(),
        progress_timeout: Duration::from_secs(120),
        soak_window: Duration::from_secs(10),
    };
    let client = client(&target).await;
    Cluster { target, client }
}

/// A client for the test's own objects (namespace, Deployment).
async fn client(target: &KubernetesTarget) -> kube::Client {
    let options = kube::config::KubeConfigOptions {
        context: Some(target.context.clone()),
        ..Default::default()
    };
    let file = kube::config::Kubeconfig::read_from(target.kubeconfig.as_ref().unwrap()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A restricted namespace with a Deployment of 2 replicas of `image`.
async fn create(c: &Cluster, image: &str) {
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": c.target.namespace,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted", "io.pipeline.test": "deploy"}}}))
        .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 60,
                 "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                     "automountServiceAccountToken": false,
                     "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "app", "image": image,
                         "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                         "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}}}]}}}
    }))
    .unwrap();
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), &c.target.namespace);
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
}

async fn delete(c: &Cluster) {
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let _ = namespaces
        .delete(&c.target.namespace, &DeleteParams::foreground())
        .await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_rollout_completes_and_a_broken_digest_is_rolled_back() {
    let (a, b) = (
        Pinned::parse(&var("PIPELINE_TEST_IMAGE")).unwrap(),
        Pinned::parse(&var("PIPELINE_TEST_IMAGE_2")).unwrap(),
    );
    let c = cluster("roll").await;
    create(&c, &a.to_string()).await;
    let deployer = KubeDeployer::connect(c.target.clone()).await.unwrap();
    let outcome = async move {
        let report = deployer
            .deploy(&b, Some(&a), &|l| eprintln!("{l}"))
            .await
            .unwrap();
        assert_eq!(report.image, b.to_string());
        assert_eq!(deployer.current_image().await.unwrap(), b.to_string());
        // A digest that does not exist: the pull fails, the rollout stalls
        // past the Deployment's progress deadline, and b comes back.
        let missing = Pinned::parse(&format!("{}@sha256:{}", a.name(), "0".repeat(64))).unwrap();
        let e = deployer
            .deploy(&missing, Some(&b), &|l| eprintln!("{l}"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DeployError::RolledBack { restored: Some(r), .. } if *r == b.to_string()),
            "{e}"
        );
        assert!(
            e.to_string().contains("ImagePullBackOff") || e.to_string().contains("ErrImagePull"),
            "{e}"
        );
        assert_eq!(deployer.current_image().await.unwrap(), b.to_string());
    };
    let result = tokio::spawn(outcome).await;
    delete(&c).await;
    result.unwrap();
}
