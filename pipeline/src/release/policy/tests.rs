//! One test per rule of the environment policy: a valid file, changed in
//! one place, is refused with that rule's problem.

use std::path::Path;

use super::*;
use crate::cosign::keys;

/// A directory holding keys/release.pub and scan.yaml.
fn dir() -> test_support::TempDir {
    let d = test_support::TempDir::new("env-policy");
    std::fs::create_dir_all(d.path().join("keys")).unwrap();
    let key = keys::generate();
    std::fs::write(
        d.path().join("keys/release.pub"),
        keys::public_pem(key.verifying_key()),
    )
    .unwrap();
    std::fs::write(d.path().join("scan.yaml"), "fail_on: high\n").unwrap();
    d
}

const VERIFY: &str = r#"
[environment.verify]
keys = ["keys/release.pub"]
attestations = ["cyclonedx", "vuln", "slsaprovenance"]
scan_policy = "scan.yaml"
"#;

fn valid() -> String {
    format!(
        r#"
[[environment]]
name = "dev"
automatic = true
branches = ["main"]
{VERIFY}
[environment.target]
kind = "docker"
service = "app-dev"
replicas = 2
port = 8080
health_path = "/health"
listen = "127.0.0.1:8081"

[[environment]]
name = "demo"
approvals = 1
approver_role = "release-manager"
soak_in_previous = "30m"
{VERIFY}
[environment.target]
kind = "docker"
service = "app-demo"
replicas = 3
port = 8080
health_path = "/health"
listen = "127.0.0.1:8082"
soak_window = "1m"

[[environment]]
name = "prod"
approvals = 2
approver_role = "release-manager"
soak_in_previous = "1d"
{VERIFY}
[environment.target]
kind = "kubernetes"
context = "prod"
namespace = "app"
deployment = "app"
container = "app"
"#
    )
}

fn parse_in(dir: &Path, text: &str) -> Result<EnvironmentPolicy, PolicyError> {
    EnvironmentPolicy::parse(text, &dir.join("environments.toml"), dir)
}

/// The problem `text` is refused with.
fn refused(text: &str) -> PolicyError {
    let d = dir();
    parse_in(d.path(), text).expect_err("the policy should be refused")
}

fn problem(text: &str) -> Problem {
    match refused(text) {
        PolicyError::Invalid { problem, .. } => *problem,
        other => panic!("expected a broken rule, got {other}"),
    }
}

/// `valid()` with `from` replaced by `to` (which must occur).
fn changed(from: &str, to: &str) -> String {
    let v = valid();
    assert!(v.contains(from), "{from:?} not in the valid policy");
    v.replacen(from, to, 1)
}

#[test]
fn a_valid_policy_is_typed_in_order() {
    let d = dir();
    let p = parse_in(d.path(), &valid()).unwrap();
    let names: Vec<&str> = p.environments().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["dev", "demo", "prod"]);
    let dev = p.get("dev").unwrap();
    assert!(dev.is_automatic());
    assert_eq!(dev.approvals, 0);
    let demo = p.get("demo").unwrap();
    assert_eq!(p.previous(demo).unwrap().name, "dev");
    assert_eq!(demo.soak_in_previous.as_secs(), 1800);
    assert_eq!(demo.approver_role.as_deref(), Some("release-manager"));
    let Target::Docker(t) = &demo.target else {
        panic!("demo is a docker target")
    };
    assert_eq!((t.replicas, t.soak_window.as_secs()), (3, 60));
    assert_eq!(t.health_timeout, DockerTarget::DEFAULT_HEALTH_TIMEOUT);
    let Target::Kubernetes(k) = &p.get("prod").unwrap().target else {
        panic!("prod is a kubernetes target")
    };
    assert_eq!(
        k.progress_timeout,
        KubernetesTarget::DEFAULT_PROGRESS_TIMEOUT
    );
    assert_eq!(demo.verify.keys.len(), 1);
    assert_eq!(demo.verify.attestations, PredicateKind::ALL);
    assert_eq!(p.automatic_for_branch("main").unwrap().name, "dev");
    assert!(p.automatic_for_branch("feature").is_none());
    assert!(p.previous(dev).is_none());
}

#[test]
fn the_repositorys_policy_is_valid_given_the_release_key() {
    let d = dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(
        root.join("environments.toml"),
        d.path().join("environments.toml"),
    )
    .unwrap();
    std::fs::copy(root.join("scan.yaml"), d.path().join("scan.yaml")).unwrap();
    let p = EnvironmentPolicy::load(&d.path().join("environments.toml")).unwrap();
    let names: Vec<&str> = p.environments().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["dev", "demo", "prod"]);
}

#[test]
fn an_unknown_environment_lists_the_known_ones() {
    let d = dir();
    let p = parse_in(d.path(), &valid()).unwrap();
    let e = p.get("staging").unwrap_err();
    assert_eq!(e.known, ["dev", "demo", "prod"]);
    assert!(e.to_string().contains("dev, demo, prod"), "{e}");
}

#[test]
fn unknown_keys_are_errors_at_every_level() {
    for (from, to) in [
        ("name = \"dev\"", "name = \"dev\"\napprovers = 2"),
        (
            "scan_policy = \"scan.yaml\"",
            "scan_policy = \"scan.yaml\"\nkey = \"x\"",
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"127.0.0.1:8081\"\nreplica = 3",
        ),
        ("container = \"app\"", "container = \"app\"\nimage = \"x\""),
        ("kind = \"kubernetes\"", "kind = \"nomad\""),
    ] {
        let e = refused(&changed(from, to));
        assert!(matches!(e, PolicyError::Syntax { .. }), "{to}: {e}");
        assert!(e.to_string().contains("line"), "the line is named: {e}");
    }
}

#[test]
fn at_least_one_environment() {
    assert!(matches!(problem(""), Problem::NoEnvironment));
}

#[test]
fn names_are_usable_and_unique() {
    assert!(matches!(
        problem(&changed("name = \"demo\"", "name = \"Demo\"")),
        Problem::BadName { .. }
    ));
    assert!(matches!(
        problem(&changed("name = \"demo\"", "name = \"dev\"")),
        Problem::DuplicateName { .. }
    ));
}

#[test]
fn only_the_first_environment_is_automatic() {
    let p = problem(&changed(
        "approvals = 1\napprover_role = \"release-manager\"",
        "automatic = true\nbranches = [\"main\"]",
    ));
    assert!(
        matches!(p, Problem::AutomaticNotFirst { position: 2 }),
        "{p}"
    );
}

#[test]
fn the_automatic_environment_takes_no_approvals_and_needs_branches() {
    let p = problem(&changed(
        "automatic = true",
        "automatic = true\napprovals = 1",
    ));
    assert!(matches!(p, Problem::AutomaticWithApprovals), "{p}");
    let p = problem(&changed("branches = [\"main\"]", "branches = []"));
    assert!(matches!(p, Problem::AutomaticWithoutBranches), "{p}");
    let p = problem(&changed("branches = [\"main\"]", "branches = [\"a b\"]"));
    assert!(matches!(p, Problem::BadBranch { .. }), "{p}");
    let p = problem(&changed(
        "approvals = 1\n",
        "approvals = 1\nbranches = [\"main\"]\n",
    ));
    assert!(matches!(p, Problem::BranchesWithoutAutomatic), "{p}");
}

#[test]
fn other_environments_need_approvals_and_a_role() {
    let p = problem(&changed("approvals = 1\n", "approvals = 0\n"));
    assert!(matches!(p, Problem::NoApprovals), "{p}");
    let p = problem(&changed("approvals = 1\n", ""));
    assert!(matches!(p, Problem::NoApprovals), "{p}");
    let p = problem(&changed(
        "approvals = 1\napprover_role = \"release-manager\"",
        "approvals = 1",
    ));
    assert!(matches!(p, Problem::NoApproverRole), "{p}");
    let p = problem(&changed(
        "approver_role = \"release-manager\"",
        "approver_role = \"Release Manager\"",
    ));
    assert!(matches!(p, Problem::BadRole { .. }), "{p}");
}

#[test]
fn environments_are_in_promotion_order() {
    // prod's two approvals listed before demo's one: demo would be less
    // guarded than what precedes it.
    let p = problem(&changed("approvals = 2", "approvals = 1").replacen(
        "approvals = 1",
        "approvals = 2",
        1,
    ));
    assert!(
        matches!(&p, Problem::FewerApprovalsThanEarlier { earlier, .. } if earlier == "demo"),
        "{p}"
    );
}

#[test]
fn the_first_environment_has_nothing_to_soak_in() {
    let p = problem(&changed(
        "automatic = true",
        "automatic = true\nsoak_in_previous = \"1h\"",
    ));
    assert!(matches!(p, Problem::SoakOnFirst), "{p}");
    let p = problem(&changed(
        "soak_in_previous = \"30m\"",
        "soak_in_previous = \"30 minutes\"",
    ));
    assert!(
        matches!(
            p,
            Problem::Duration {
                key: "soak_in_previous",
                ..
            }
        ),
        "{p}"
    );
    let p = problem(&changed("soak_window = \"1m\"", "soak_window = \"1\""));
    assert!(
        matches!(
            p,
            Problem::Duration {
                key: "soak_window",
                ..
            }
        ),
        "{p}"
    );
}

#[test]
fn keys_must_exist_and_be_public_keys() {
    let p = problem(&changed("keys = [\"keys/release.pub\"]", "keys = []"));
    assert!(matches!(p, Problem::NoKeys), "{p}");
    let p = problem(&changed(
        "keys = [\"keys/release.pub\"]",
        "keys = [\"keys/missing.pub\"]",
    ));
    assert!(
        matches!(p, Problem::Key(keys::KeyError::Read { .. })),
        "{p}"
    );
    assert!(p.to_string().contains("missing.pub"), "{p}");
    let p = problem(&changed(
        "keys = [\"keys/release.pub\"]",
        "keys = [\"scan.yaml\"]",
    ));
    assert!(
        matches!(p, Problem::Key(keys::KeyError::Public { .. })),
        "{p}"
    );
}

#[test]
fn attestations_are_known_and_complete() {
    let all = "attestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\"]";
    let p = problem(&changed(
        all,
        "attestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\", \"spdx\"]",
    ));
    assert!(matches!(p, Problem::UnknownAttestation { .. }), "{p}");
    let p = problem(&changed(
        all,
        "attestations = [\"cyclonedx\", \"vuln\", \"vuln\", \"slsaprovenance\"]",
    ));
    assert!(matches!(p, Problem::DuplicateAttestation { .. }), "{p}");
    let p = problem(&changed(all, "attestations = [\"cyclonedx\", \"vuln\"]"));
    assert!(
        matches!(
            p,
            Problem::MissingAttestation {
                name: "slsaprovenance"
            }
        ),
        "{p}"
    );
}

#[test]
fn the_scan_policy_must_load() {
    let p = problem(&changed(
        "scan_policy = \"scan.yaml\"",
        "scan_policy = \"nope.yaml\"",
    ));
    assert!(matches!(p, Problem::ScanPolicy(_)), "{p}");
}

#[test]
fn docker_targets_are_checked() {
    for (from, to, field) in [
        ("replicas = 2", "replicas = 0", "replicas"),
        ("replicas = 2", "replicas = 65", "replicas"),
        ("port = 8080", "port = 0", "port"),
        (
            "health_path = \"/health\"",
            "health_path = \"health\"",
            "health_path",
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"localhost\"",
            "listen",
        ),
        ("service = \"app-dev\"", "service = \"App\"", "service"),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"127.0.0.1:8081\"\ncpus = 0.0",
            "cpus",
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"127.0.0.1:8081\"\nmemory_mb = 1",
            "memory_mb",
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"127.0.0.1:8081\"\npids = 1",
            "pids",
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "listen = \"127.0.0.1:8081\"\nhealth_timeout = \"0s\"",
            "health_timeout",
        ),
    ] {
        let p = problem(&changed(from, to));
        assert!(
            matches!(&p, Problem::Target { field: f, .. } if *f == field),
            "{to}: {p}"
        );
    }
}

#[test]
fn docker_environments_do_not_share_a_service_or_an_address() {
    let p = problem(&changed("service = \"app-demo\"", "service = \"app-dev\""));
    assert!(
        matches!(&p, Problem::SharedTarget { field: "service", other, .. } if other == "dev"),
        "{p}"
    );
    let p = problem(&changed(
        "listen = \"127.0.0.1:8082\"",
        "listen = \"127.0.0.1:8081\"",
    ));
    assert!(
        matches!(
            &p,
            Problem::SharedTarget {
                field: "listen",
                ..
            }
        ),
        "{p}"
    );
}

#[test]
fn kubernetes_targets_are_checked() {
    for (from, to, field) in [
        ("namespace = \"app\"", "namespace = \"App_1\"", "namespace"),
        (
            "deployment = \"app\"",
            "deployment = \"-app\"",
            "deployment",
        ),
        ("container = \"app\"", "container = \"\"", "container"),
        ("context = \"prod\"", "context = \" \"", "context"),
        (
            "container = \"app\"",
            "container = \"app\"\nprogress_timeout = \"0s\"",
            "progress_timeout",
        ),
    ] {
        let p = problem(&changed(from, to));
        assert!(
            matches!(&p, Problem::Target { field: f, .. } if *f == field),
            "{to}: {p}"
        );
    }
}

#[test]
fn errors_name_the_file_and_the_environment() {
    let e = refused(&changed("replicas = 3", "replicas = 0"));
    let text = e.to_string();
    assert!(text.contains("environments.toml"), "{text}");
    assert!(text.contains("environment \"demo\""), "{text}");
}
