//! From a commit to dev and on, through the CLI, for real: a repository of
//! a small HTTP service, `pipeline release` building a given commit from a
//! temporary clone (Grype replaced by its stand-in, which cannot be
//! installed here), signing and attesting it into a test registry and
//! deploying it behind HAProxy; `pipeline promote` and its refusals; and a
//! promotion killed with SIGKILL mid-deploy, reconciled by the next run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::service::{self, Load, RegistryImages, ServiceGuard};
use common::{PIPELINE, fixtures, git, pipeline, text};
use pipeline::cosign::storage::{self, Kind};
use pipeline::reference::Reference;
use pipeline::registry::Client;
use serde_json::Value;
use test_support::registry::{Auth, Registry};
use test_support::{TempDir, require_docker, require_registry};

const PASSWORD: &str = "release-password";

/// Fields drop in order: the guards (which read the proxies' pid files)
/// before the directory holding them.
struct World {
    dev: ServiceGuard,
    _demo: ServiceGuard,
    _images: RegistryImages,
    dir: TempDir,
    repo: TempDir,
    reg: Registry,
    dev_addr: std::net::SocketAddr,
}

const DOCKERFILE: &str = "FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends busybox >/dev/null && rm -rf /var/lib/apt/lists/*
COPY www/ /www/
COPY serve.sh /serve.sh
USER 10001:10001
CMD [\"/bin/sh\", \"/serve.sh\"]
";

/// Commits version `v` of the service; returns the commit SHA.
fn commit_version(repo: &Path, v: &str) -> String {
    std::fs::create_dir_all(repo.join("www")).unwrap();
    std::fs::write(repo.join("www/version"), format!("{v}\n")).unwrap();
    std::fs::write(repo.join("www/health"), "ok\n").unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", v]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_owned()
}

fn policy(dev: &str, dev_addr: &str, demo: &str, demo_addr: &str) -> String {
    let verify = "[environment.verify]\nkeys = [\"release.pub\"]\nattestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\"]\nscan_policy = \"scan.yaml\"\n";
    let target = |service: &str, addr: &str, replicas: u32| {
        format!(
            "[environment.target]\nkind = \"docker\"\nservice = \"{service}\"\nreplicas = {replicas}\nport = 8080\nhealth_path = \"/health\"\nlisten = \"{addr}\"\nsoak_window = \"1s\"\nhealth_timeout = \"20s\"\ndrain_timeout = \"5s\"\n"
        )
    };
    format!(
        "[[environment]]\nname = \"dev\"\nautomatic = true\nbranches = [\"main\"]\n{verify}{}\n\
         [[environment]]\nname = \"demo\"\napprovals = 1\napprover_role = \"release-manager\"\nsoak_in_previous = \"0s\"\n{verify}{}",
        target(dev, dev_addr, 2),
        target(demo, demo_addr, 1)
    )
}

fn world(test: &str, reg: Registry) -> World {
    common::ensure_debian();
    let dir = TempDir::new("release-world");
    let out = pipeline(
        &[
            "keygen",
            "--output-key-prefix",
            dir.path().join("release").to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(dir.path().join("scan.yaml"), "fail_on: high\n").unwrap();
    let (dev, demo) = (
        service::service_name(&format!("{test}-dev")),
        service::service_name(&format!("{test}-demo")),
    );
    let (dev_addr, demo_addr) = (service::free_addr(), service::free_addr());
    std::fs::write(
        dir.path().join("environments.toml"),
        policy(&dev, &dev_addr.to_string(), &demo, &demo_addr.to_string()),
    )
    .unwrap();
    let repo = TempDir::new("release-repo");
    std::fs::write(repo.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::copy(
        fixtures().join("service/serve.sh"),
        repo.path().join("serve.sh"),
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let state = dir.path().join("state");
    World {
        _images: RegistryImages(reg.addr.clone()),
        dev: ServiceGuard {
            service: dev,
            state_dir: state.clone(),
        },
        _demo: ServiceGuard {
            service: demo,
            state_dir: state,
        },
        dir,
        repo,
        reg,
        dev_addr,
    }
}

impl World {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn env_args(&self) -> Vec<String> {
        vec![
            "--environments".into(),
            self.dir
                .path()
                .join("environments.toml")
                .display()
                .to_string(),
            "--state-dir".into(),
            self.state().display().to_string(),
        ]
    }

    /// `pipeline release` of `commit`, with `key` (default: the release key).
    fn release(&self, commit: &str, key: Option<&Path>, extra: &[&str]) -> Output {
        let key = key.map_or_else(|| self.dir.path().join("release.key"), Path::to_owned);
        let mut args: Vec<String> = vec![
            "release".into(),
            "--repo".into(),
            self.repo.path().display().to_string(),
            "--commit".into(),
            commit.into(),
            "--image".into(),
            format!("{}/shop/app", self.reg.addr),
            "--key".into(),
            key.display().to_string(),
            "--scan-policy".into(),
            self.dir.path().join("scan.yaml").display().to_string(),
            "--grype".into(),
            fixtures()
                .join("scan/grype-stand-in.sh")
                .display()
                .to_string(),
            "--output-dir".into(),
            self.dir.path().join("out").display().to_string(),
            "--json".into(),
        ];
        args.extend(self.env_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = fixtures().join("scan/report-clean.json");
        pipeline(
            &args,
            &[
                ("COSIGN_PASSWORD", PASSWORD),
                ("STANDIN_REPORT", report.to_str().unwrap()),
            ],
        )
    }

    /// The image a successful `release --json` printed.
    fn released(&self, commit: &str, extra: &[&str]) -> (String, Value) {
        let out = self.release(commit, None, extra);
        let json: Value = serde_json::from_str(&common::ok(&out, "pipeline release")).unwrap();
        (json["image"].as_str().unwrap().to_owned(), json)
    }

    fn promote_args(&self, image: &str, environment: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "promote".into(),
            "--image".into(),
            image.into(),
            "--environment".into(),
            environment.into(),
        ];
        args.extend(self.env_args());
        args
    }

    fn promote(&self, image: &str, environment: &str) -> Output {
        let args = self.promote_args(image, environment);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pipeline(&args, &[])
    }

    fn environments(&self) -> Value {
        let mut args: Vec<String> = vec![
            "environments".into(),
            "--json".into(),
            "--history".into(),
            "50".into(),
        ];
        args.extend(self.env_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&common::ok(&pipeline(&args, &[]), "pipeline environments")).unwrap()
    }
}

fn env_view<'a>(all: &'a Value, name: &str) -> &'a Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap()
}

fn needs(test: &str) -> bool {
    service::haproxy_or_skip(test)
}

#[test]
fn a_commit_goes_to_dev_from_a_clean_clone_and_further_only_by_the_rules() {
    require_docker!();
    if !needs("a_commit_goes_to_dev") {
        return;
    }
    let w = world("rel", require_registry!(Auth::None));
    let first = commit_version(w.repo.path(), "v1");
    let second = commit_version(w.repo.path(), "v2");
    // The caller's checkout is dirty and at the second commit; building the
    // first must leave it exactly so.
    std::fs::write(w.repo.path().join("www/version"), "edited\n").unwrap();
    std::fs::write(w.repo.path().join("untracked.txt"), "x").unwrap();
    let status_before = git(w.repo.path(), &["status", "--porcelain"]);

    let (v1, json) = w.released(&first, &[]);
    assert_eq!(json["commit"], first.as_str());
    assert_eq!(json["tag"], format!("{}/shop/app:{first}", w.reg.addr));
    assert_eq!(json["promoted_to"], "dev", "{json}");
    assert_eq!(
        git(w.repo.path(), &["status", "--porcelain"]),
        status_before
    );
    assert_eq!(git(w.repo.path(), &["rev-parse", "HEAD"]).trim(), second);
    assert_eq!(
        service::get(w.dev_addr, "/version").unwrap(),
        (200, "v1".to_owned())
    );

    let envs = w.environments();
    let dev = env_view(&envs, "dev");
    assert_eq!(dev["live"]["image"], v1.as_str());
    assert_eq!(dev["live"]["commit"], first.as_str());
    assert!(
        dev["live"]["sbom"]["components"].as_u64().unwrap() > 50,
        "{dev}"
    );
    assert_eq!(dev["live"]["scan"]["passed"], true, "{dev}");

    let (v2, _) = w.released("main", &[]);
    assert_eq!(
        service::get(w.dev_addr, "/version").unwrap(),
        (200, "v2".to_owned())
    );

    // demo needs an approval, which only the runner service records.
    let out = w.promote(&v2, "demo");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("needs 1 approval(s) by distinct holders of the role \"release-manager\""),
        "{}",
        text(&out.stderr)
    );
    // v1 is no longer live in dev.
    let out = w.promote(&v1, "demo");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "is not live in dev, the environment before demo (dev runs {v2})"
        )),
        "{}",
        text(&out.stderr)
    );

    let envs = w.environments();
    let kinds: Vec<&str> = env_view(&envs, "dev")["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deployed", "deployed"]);
    let demo = env_view(&envs, "demo");
    assert!(demo["live"].is_null());
    let refusals: Vec<&str> = demo["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(refusals.len(), 2, "each refusal is recorded: {demo}");
}

/// Copies image `from`'s signature manifest under image `to`'s tag: a
/// signature for another digest, as an attacker with push rights could.
fn copy_signature(from: &str, to: &str) {
    let (f, t) = (
        Reference::parse(from).unwrap(),
        Reference::parse(to).unwrap(),
    );
    let c = Client::new(&f, &[], None);
    let from_tag = storage::tag(f.digest.as_deref().unwrap(), Kind::Signatures);
    let (bytes, ct, _) = c.manifest(&from_tag).unwrap();
    let to_tag = storage::tag(t.digest.as_deref().unwrap(), Kind::Signatures);
    c.put_manifest(&to_tag, &bytes, ct.as_deref().unwrap())
        .unwrap();
}

#[test]
fn promotions_refuse_bad_input_and_record_it() {
    require_docker!();
    if !needs("promotions_refuse_bad_input") {
        return;
    }
    let w = world("bad", require_registry!(Auth::None));
    let sha = commit_version(w.repo.path(), "v1");
    let (signed, json) = w.released(&sha, &["--no-promote"]);
    assert!(json["promoted_to"].is_null());

    // A tag, and an unknown environment.
    let out = w.promote(&format!("{}/shop/app:{sha}", w.reg.addr), "dev");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("names a tag, which can move to another image"),
        "{}",
        text(&out.stderr)
    );
    let out = w.promote(&signed, "staging");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no environment \"staging\"")
            && text(&out.stderr).contains("dev, demo"),
        "{}",
        text(&out.stderr)
    );

    // Never deployed in dev, the environment before demo.
    let out = w.promote(&signed, "demo");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nothing runs in dev"),
        "{}",
        text(&out.stderr)
    );

    // Unsigned: pushed by hand.
    let unsigned = service::push(&service::build(service::Variant::Good("v1")), &w.reg.addr);
    let out = w.promote(&unsigned, "dev");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("FAILED signature") && said.contains("is not signed"),
        "{said}"
    );
    assert!(
        said.contains("FAILED attestation:vuln") && said.contains("FAILED scan"),
        "{said}"
    );

    // Signed with another key.
    let other = w.dir.path().join("other");
    let out = pipeline(
        &["keygen", "--output-key-prefix", other.to_str().unwrap()],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert!(out.status.success());
    commit_version(w.repo.path(), "v2");
    let out = w.release(
        "main",
        Some(&other.with_extension("key")),
        &["--no-promote"],
    );
    let json: Value = serde_json::from_str(&common::ok(&out, "release with another key")).unwrap();
    let foreign = json["image"].as_str().unwrap().to_owned();
    let out = w.promote(&foreign, "dev");
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out.stdout).contains("was made with another key"),
        "{}",
        text(&out.stdout)
    );

    // Tampered: the good signature copied onto the foreign image.
    copy_signature(&signed, &foreign);
    let out = w.promote(&foreign, "dev");
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out.stdout).contains(&format!("is for {}", signed.split('@').nth(1).unwrap())),
        "{}",
        text(&out.stdout)
    );

    // Nothing was deployed, and every refusal is on record with its reason.
    assert!(service::containers(&w.dev.service).is_empty());
    let envs = w.environments();
    let dev = env_view(&envs, "dev");
    assert!(dev["live"].is_null());
    let history = dev["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{dev}");
    assert!(
        history.iter().all(|e| e["kind"] == "refused"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("was refused for dev"))),
        "{dev}"
    );
}

#[test]
fn a_promotion_killed_mid_deploy_is_reconciled_by_the_next_run() {
    require_docker!();
    if !needs("a_promotion_killed_mid_deploy") {
        return;
    }
    let w = world("kill", require_registry!(Auth::None));
    commit_version(w.repo.path(), "v1");
    let (v1, _) = w.released("main", &[]);
    commit_version(w.repo.path(), "v2");
    let (v2, _) = w.released("main", &["--no-promote"]);
    let load = Load::start(w.dev_addr);
    load.wait_for(10);

    let args = w.promote_args(&v2, "dev");
    let mut child = Command::new(PIPELINE)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let digest2 = v2.split('@').nth(1).unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !service::containers(&w.dev.service)
        .iter()
        .any(|(_, d, running)| *d == digest2 && *running)
    {
        assert!(
            Instant::now() < deadline,
            "the promotion never started a replica"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the promotion ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let envs = w.environments();
    let dev = env_view(&envs, "dev");
    assert_eq!(
        dev["pending"]["image"],
        v2.as_str(),
        "the intent is on record: {dev}"
    );
    assert_eq!(dev["live"]["image"], v1.as_str());

    let out = w.promote(&v2, "dev");
    let said = common::ok(&out, "the promotion after the kill");
    assert!(
        said.contains(&format!(
            "reconciled first: dev had been left mid-deploy of {v2}; live: {v1}"
        )),
        "{said}"
    );
    let envs = w.environments();
    let dev = env_view(&envs, "dev");
    assert!(dev["pending"].is_null(), "{dev}");
    assert_eq!(dev["live"]["image"], v2.as_str());
    let kinds: Vec<&str> = dev["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deployed", "reconciled", "deployed"], "{dev}");
    let containers = service::containers(&w.dev.service);
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert!(
        containers
            .iter()
            .all(|(_, d, running)| *d == digest2 && *running),
        "{containers:?}"
    );
    load.wait_for(10);
    let seen = load.stop();
    assert_eq!(
        seen.failed, 0,
        "failed requests through the kill and the reconciliation: {:?}",
        seen.failures
    );
    assert_eq!(seen.last_version, "v2");
}
