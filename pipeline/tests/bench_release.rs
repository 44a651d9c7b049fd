//! Measurements for tests/bench/release.sh (ignored in normal runs: they
//! time things, they do not test them):
//!
//! - a 3-replica rolling deploy on the Docker target under a steady load
//!   (requests failed during it), against the baseline of one hardened
//!   `docker run -d` of the same image until it answers its health check,
//!   interleaved in the same run;
//! - the cost of verification before a deploy (every check an environment
//!   requires, against the local registry), against the baseline of one
//!   manifest fetch from the same registry.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::service::{self, Load, RegistryImages, ServiceGuard, TEST_LABEL, Variant};
use common::{docker, fixtures};
use pipeline::cosign::signer::KeySigner;
use pipeline::cosign::{PredicateKind, keys, predicate, provenance, publish};
use pipeline::deploy::{DockerDeployer, DockerTarget};
use pipeline::reference::Pinned;
use pipeline::registry::Client;
use pipeline::release::{EnvironmentPolicy, verify_for_environment};
use test_support::registry::{Auth, Registry};
use test_support::{TempDir, require_docker};

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// One hardened `docker run -d` of `image` (the flags the deployer gives a
/// replica), until it answers /health; seconds to running and to healthy.
fn docker_run_baseline(image: &str, network: &str) -> (f64, f64) {
    let name = format!("pltest-baseline-{}", std::process::id());
    let started = Instant::now();
    docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        &name,
        "--label",
        &format!("{TEST_LABEL}=deploy"),
        "--network",
        network,
        "--user",
        "10001:10001",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "128",
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
        "--cpus",
        "1",
        "--init",
        "--tmpfs",
        "/tmp:rw,noexec,nosuid,nodev,size=16m",
        image,
    ]);
    let running = started.elapsed().as_secs_f64();
    let ip = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        &name,
    ]);
    let addr = format!("{}:8080", ip.trim()).parse().unwrap();
    while service::get(addr, "/health").map(|(c, _)| c) != Ok(200) {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let healthy = started.elapsed().as_secs_f64();
    docker(&["rm", "-f", &name]);
    (running, healthy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by tests/bench/release.sh"]
async fn bench_rolling_deploy_against_docker_run() {
    require_docker!();
    let reg = Registry::start(Auth::None).expect("a registry");
    let _images = RegistryImages(reg.addr.clone());
    let images: Vec<Pinned> = ["v1", "v2"]
        .iter()
        .map(|v| {
            Pinned::parse(&service::push(&service::build(Variant::Good(v)), &reg.addr)).unwrap()
        })
        .collect();
    let state = TempDir::new("bench-release");
    let name = service::service_name("bench");
    let _guard = ServiceGuard {
        service: name.clone(),
        state_dir: state.path().to_owned(),
    };
    let mut target = DockerTarget::new(&name, 3, 8080, "/health", service::free_addr());
    target.soak_window = Duration::ZERO;
    let labels = BTreeMap::from([(TEST_LABEL.to_owned(), "deploy".to_owned())]);
    let d = DockerDeployer::new(
        pipeline::engine::connect().await.unwrap(),
        target,
        state.path(),
    )
    .with_labels(labels);
    d.deploy(&images[0], None, &|_| {}).await.unwrap();
    let network = pipeline::deploy::docker::network_name(&name);
    let load = Load::start(d.target().listen);
    load.wait_for(20);
    let (mut rolling, mut running, mut healthy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds() {
        let (next, previous) = (&images[(round + 1) % 2], &images[round % 2]);
        let report = d.deploy(next, Some(previous), &|_| {}).await.unwrap();
        rolling.push(report.seconds);
        let (r, h) =
            tokio::task::block_in_place(|| docker_run_baseline(&next.to_string(), &network));
        running.push(r);
        healthy.push(h);
    }
    let seen = load.stop();
    d.teardown().await.unwrap();
    let (roll, base) = (median(rolling.clone()), median(healthy.clone()));
    eprintln!("BENCH rounds: {} (interleaved)", rolling.len());
    eprintln!("BENCH rolling deploy, 3 replicas, median: {roll:.2} s (all: {rolling:.2?})");
    eprintln!(
        "BENCH docker run -d, median to running: {:.2} s; to healthy: {base:.2} s",
        median(running)
    );
    eprintln!(
        "BENCH ratio rolling deploy / one docker run to healthy: {:.1}",
        roll / base
    );
    eprintln!(
        "BENCH requests through the proxy: {} ok, {} failed",
        seen.ok, seen.failed
    );
    assert_eq!(seen.failed, 0, "{:?}", seen.failures);
}

/// Signs `image` and attests an SBOM (generated from the registry), a
/// clean scan and a provenance, as `pipeline release` does.
async fn sign_and_attest(image: &Pinned, signer: Arc<KeySigner>) {
    let options = pipeline::sbom::Options {
        source_date_epoch: None,
        insecure_registries: Vec::new(),
        platform: pipeline::registry::manifest::Platform::host(),
    };
    let sbom = pipeline::sbom::generate(
        &pipeline::sbom::Source::Registry(image.reference().clone()),
        &options,
    )
    .await
    .unwrap();
    let grype: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("scan/report-clean.json")).unwrap())
            .unwrap();
    let provenance = provenance::predicate(&provenance::BuildFacts {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        image: image.to_string(),
        ..Default::default()
    });
    let image = image.clone();
    tokio::task::spawn_blocking(move || {
        let client = Client::new(image.reference(), &[], None);
        publish::sign_image(
            &client,
            &image.name(),
            image.digest(),
            signer.as_ref(),
            &BTreeMap::new(),
        )
        .unwrap();
        for (kind, p) in [
            (
                PredicateKind::CycloneDx,
                serde_json::from_slice(&sbom.json).unwrap(),
            ),
            (PredicateKind::Vuln, predicate::vuln(grype, None, None)),
            (PredicateKind::SlsaProvenance, provenance),
        ] {
            publish::attest_image(
                &client,
                &image.name(),
                image.digest(),
                signer.as_ref(),
                kind.uri(),
                p,
            )
            .unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by tests/bench/release.sh"]
async fn bench_verification_against_a_manifest_fetch() {
    require_docker!();
    let reg = Registry::start(Auth::None).expect("a registry");
    let _images = RegistryImages(reg.addr.clone());
    let image = Pinned::parse(&service::push(
        &service::build(Variant::Good("v1")),
        &reg.addr,
    ))
    .unwrap();
    let key = keys::generate();
    let dir = TempDir::new("bench-verify");
    std::fs::write(
        dir.path().join("k.pub"),
        keys::public_pem(key.verifying_key()),
    )
    .unwrap();
    std::fs::write(dir.path().join("scan.yaml"), "fail_on: high\n").unwrap();
    sign_and_attest(&image, Arc::new(KeySigner::new(key))).await;
    let text = "[[environment]]\nname = \"dev\"\nautomatic = true\nbranches = [\"main\"]\n[environment.verify]\nkeys = [\"k.pub\"]\nattestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\"]\nscan_policy = \"scan.yaml\"\n[environment.target]\nkind = \"docker\"\nservice = \"x\"\nreplicas = 1\nport = 80\nhealth_path = \"/\"\nlisten = \"127.0.0.1:1\"\n";
    let policy = EnvironmentPolicy::parse(text, &dir.path().join("e.toml"), dir.path()).unwrap();
    let env = policy.first();
    let (mut verify, mut fetch) = (Vec::new(), Vec::new());
    let mut checks = 0;
    for _ in 0..rounds() * 2 + 1 {
        let t = Instant::now();
        let report = verify_for_environment(&image, env, &[]).await.unwrap();
        verify.push(t.elapsed().as_secs_f64());
        assert!(report.passed(), "{}", report.failure_summary());
        checks = report.checks.len();
        let i = image.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || {
            Client::new(i.reference(), &[], None)
                .manifest(i.digest())
                .unwrap()
        })
        .await
        .unwrap();
        fetch.push(t.elapsed().as_secs_f64());
    }
    let (v, f) = (median(verify), median(fetch));
    eprintln!(
        "BENCH verification before deploy ({checks} checks), median: {:.1} ms",
        v * 1000.0
    );
    eprintln!(
        "BENCH one manifest fetch from the same registry, median: {:.1} ms",
        f * 1000.0
    );
    eprintln!("BENCH ratio verification / manifest fetch: {:.1}", v / f);
}
