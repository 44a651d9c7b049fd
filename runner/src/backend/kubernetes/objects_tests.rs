//! Every guarantee of a job namespace, read off the objects the runner
//! sends. `restricted_violations` restates the Pod Security "restricted"
//! profile (and the extra rules the runner adds) so that each guarantee has
//! a negative test: break it in a copy of the pod, and the check names it.

use std::time::Duration;

use super::*;
use crate::backend::spec::{JobKind, Scratch, SeccompProfile as Seccomp};

fn policy() -> NamespacePolicy {
    NamespacePolicy::embedded().unwrap()
}

fn job() -> JobSpec {
    JobSpec {
        id: "0f3a9c2e".into(),
        kind: JobKind::Submission,
        tenant: Some("school-a".into()),
        egress: None,
        lifetime: Duration::from_secs(90),
        largest: Resources {
            memory_bytes: 512 << 20,
            nano_cpus: 1_000_000_000,
            scratch_bytes: 88 << 20,
        },
    }
}

fn sandbox() -> SandboxSpec {
    SandboxSpec {
        role: "run".into(),
        image: "runner-sandbox/python@sha256:0123".into(),
        memory_bytes: 128 << 20,
        nano_cpus: 1_000_000_000,
        pids: 64,
        scratch: vec![
            Scratch {
                path: "/work".into(),
                size_bytes: 64 << 20,
                exec: true,
                mode: 0o700,
            },
            Scratch {
                path: "/tmp".into(),
                size_bytes: 16 << 20,
                exec: false,
                mode: 0o1777,
            },
        ],
        shm_bytes: 8 << 20,
        nofile: 256,
        seccomp: Seccomp::EngineDefault,
        labels: BTreeMap::new(),
    }
}

/// What Pod Security "restricted" (and the runner's own additions) would
/// refuse in this pod; empty when it passes.
fn restricted_violations(pod: &Pod) -> Vec<&'static str> {
    let mut v = Vec::new();
    let spec = pod.spec.as_ref().expect("a pod has a spec");
    let psc = spec.security_context.clone().unwrap_or_default();
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true)
    {
        v.push("host namespaces");
    }
    for vol in spec.volumes.iter().flatten() {
        let allowed = vol.config_map.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some()
            || vol.csi.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.ephemeral.is_some();
        if !allowed {
            v.push("volume type");
        }
        if vol
            .empty_dir
            .as_ref()
            .is_some_and(|e| e.size_limit.is_none())
        {
            v.push("unbounded emptyDir");
        }
    }
    if spec.automount_service_account_token != Some(false) {
        v.push("service account token");
    }
    if spec.enable_service_links != Some(false) {
        v.push("service links");
    }
    if spec.restart_policy.as_deref() != Some("Never") {
        v.push("restart policy");
    }
    if spec.active_deadline_seconds.is_none() {
        v.push("no deadline");
    }
    for c in &spec.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push("privileged");
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push("privilege escalation");
        }
        let drops_all = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        let adds = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"));
        if !drops_all || adds {
            v.push("capabilities");
        }
        if sc.run_as_non_root.or(psc.run_as_non_root) != Some(true) {
            v.push("runAsNonRoot");
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push("runAsUser 0");
        }
        let profile = sc.seccomp_profile.or(psc.seccomp_profile.clone());
        if !profile.is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost") {
            v.push("seccomp");
        }
        if sc.read_only_root_filesystem != Some(true) {
            v.push("writable root");
        }
        let res = c.resources.clone().unwrap_or_default();
        if res.limits.is_none() || res.requests != res.limits {
            v.push("requests != limits");
        }
        if c.ports.is_some() {
            v.push("ports");
        }
    }
    v
}

#[test]
fn the_sandbox_pod_passes_restricted_and_the_runner_rules() {
    let pod = pod(&policy(), &job(), &sandbox(), 20001);
    assert_eq!(restricted_violations(&pod), Vec::<&str>::new());
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(pod.metadata.namespace.as_deref(), Some("rj-0f3a9c2e"));
    assert_eq!(spec.active_deadline_seconds, Some(90));
    let c = &spec.containers[0];
    assert_eq!(c.command.as_ref().unwrap(), &[SANDBOX_INIT.to_string()]);
    assert_eq!(c.stdin, Some(true));
    assert_eq!(c.stdin_once, Some(true));
    assert_eq!(c.tty, Some(false));
    assert_eq!(
        c.env.as_ref().map(Vec::len),
        Some(0),
        "no inherited environment"
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(20001), "the leased uid");
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, (128u64 << 20).to_string());
    assert_eq!(limits["cpu"].0, "1000m");
    let mounts: Vec<_> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/work", "/tmp", "/dev/shm"]);
    for v in spec.volumes.iter().flatten() {
        let e = v.empty_dir.as_ref().expect("only emptyDir volumes");
        assert_eq!(e.medium.as_deref(), Some("Memory"));
    }
}

#[test]
fn each_guarantee_of_the_pod_is_checked() {
    type Break = fn(&mut Pod);
    let cases: [(&str, Break); 12] = [
        ("host namespaces", |p| {
            p.spec.as_mut().unwrap().host_pid = Some(true)
        }),
        ("privileged", |p| {
            p.spec.as_mut().unwrap().containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .privileged = Some(true)
        }),
        ("privilege escalation", |p| {
            p.spec.as_mut().unwrap().containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .allow_privilege_escalation = None
        }),
        ("capabilities", |p| {
            p.spec.as_mut().unwrap().containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .capabilities = Some(Capabilities {
                add: Some(vec!["SYS_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            })
        }),
        ("runAsUser 0", |p| {
            let s = p.spec.as_mut().unwrap();
            s.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .run_as_user = Some(0);
        }),
        ("seccomp", |p| {
            let s = p.spec.as_mut().unwrap();
            s.security_context.as_mut().unwrap().seccomp_profile = None;
            s.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .seccomp_profile = Some(SeccompProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            });
        }),
        ("writable root", |p| {
            p.spec.as_mut().unwrap().containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .read_only_root_filesystem = Some(false)
        }),
        ("service account token", |p| {
            p.spec.as_mut().unwrap().automount_service_account_token = None
        }),
        ("service links", |p| {
            p.spec.as_mut().unwrap().enable_service_links = Some(true)
        }),
        ("unbounded emptyDir", |p| {
            p.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
                .empty_dir
                .as_mut()
                .unwrap()
                .size_limit = None
        }),
        ("requests != limits", |p| {
            let r = p.spec.as_mut().unwrap().containers[0]
                .resources
                .as_mut()
                .unwrap();
            r.requests = None;
        }),
        ("volume type", |p| {
            p.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0] = Volume {
                name: "host".into(),
                host_path: Some(Default::default()),
                ..Default::default()
            }
        }),
    ];
    let good = pod(&policy(), &job(), &sandbox(), 20001);
    for (name, break_it) in cases {
        let mut bad = good.clone();
        break_it(&mut bad);
        assert!(
            restricted_violations(&bad).contains(&name),
            "{name}: {:?}",
            restricted_violations(&bad)
        );
    }
}

#[test]
fn the_namespace_is_restricted_and_annotated_for_collection() {
    let ns = namespace(&policy(), &job(), "host/boot/1/2", 1234);
    let labels = ns.metadata.labels.unwrap();
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[&format!("pod-security.kubernetes.io/{mode}")],
            "restricted"
        );
    }
    assert_eq!(labels[MANAGED_BY], MANAGER);
    assert_eq!(labels[JOB], "0f3a9c2e");
    assert_eq!(labels[KIND], "submission");
    assert_eq!(labels[TENANT], "school-a");
    let notes = ns.metadata.annotations.unwrap();
    assert_eq!(notes[DEADLINE], "1234");
    assert_eq!(notes[OWNER], "host/boot/1/2");
    assert_eq!(ns.metadata.name.as_deref(), Some("rj-0f3a9c2e"));
}

#[test]
fn a_tenant_that_is_not_a_label_value_is_left_out() {
    let mut j = job();
    j.tenant = Some("school a/../x".into());
    assert!(!job_labels(&j).contains_key(TENANT));
}

#[test]
fn the_quota_caps_objects_and_compute() {
    let q = resource_quota(&policy(), &job());
    let hard = q.spec.unwrap().hard.unwrap();
    for (key, want) in [
        ("pods", "2"),
        ("services", "0"),
        ("services.loadbalancers", "0"),
        ("services.nodeports", "0"),
        ("persistentvolumeclaims", "0"),
        ("secrets", "0"),
        ("configmaps", "1"),
        ("limits.memory", &(1024u64 << 20).to_string()),
        ("requests.memory", &(1024u64 << 20).to_string()),
        ("limits.cpu", "2000m"),
        ("requests.cpu", "2000m"),
    ] {
        assert_eq!(hard[key].0, want, "{key}");
    }
    assert!(hard.contains_key("limits.ephemeral-storage"));
}

#[test]
fn the_limit_range_gives_defaults_and_maxima() {
    let l = limit_range(&policy(), &job());
    let item = &l.spec.unwrap().limits[0];
    assert_eq!(item.type_, "Container");
    assert_eq!(
        item.default.as_ref().unwrap()["memory"].0,
        (128u64 << 20).to_string()
    );
    assert_eq!(item.default, item.default_request);
    assert_eq!(item.max.as_ref().unwrap()["cpu"].0, "4000m");
}

#[test]
fn the_network_is_denied_both_ways_by_default() {
    let np = deny_all(&policy(), &job());
    let spec = np.spec.unwrap();
    assert_eq!(
        spec.pod_selector,
        Some(LabelSelector::default()),
        "every pod"
    );
    assert_eq!(
        spec.policy_types.unwrap(),
        ["Ingress".to_string(), "Egress".to_string()]
    );
    assert_eq!(spec.ingress, Some(vec![]));
    assert_eq!(spec.egress, Some(vec![]));
}

#[test]
fn an_egress_grant_opens_only_its_destinations() {
    let p = policy();
    let np = egress(&p, &job(), "internet", &p.egress["internet"]);
    assert_eq!(np.metadata.name.as_deref(), Some("egress-internet"));
    let spec = np.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Egress".to_string()]);
    assert!(spec.ingress.is_none(), "no ingress is granted");
    let rules = spec.egress.unwrap();
    let block = rules[0].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
    assert_eq!(block.cidr, "0.0.0.0/0");
    assert!(
        block
            .except
            .as_ref()
            .unwrap()
            .contains(&"169.254.0.0/16".into()),
        "the metadata endpoint stays out of reach"
    );
    let ports: Vec<_> = rules[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.port.clone().unwrap())
        .collect();
    assert_eq!(ports, [IntOrString::Int(80), IntOrString::Int(443)]);
}

#[test]
fn the_default_service_account_mounts_no_token() {
    let sa = default_service_account(&policy(), &job());
    assert_eq!(sa.metadata.name.as_deref(), Some("default"));
    assert_eq!(sa.automount_service_account_token, Some(false));
}

#[test]
fn runtime_class_and_localhost_seccomp_come_from_policy() {
    let mut p = policy();
    p.runtime_class = Some("gvisor".into());
    p.seccomp = PodSeccomp::Localhost("runner/sandbox.json".into());
    let pod = pod(&p, &job(), &sandbox(), 20001);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
    let profile = spec.security_context.unwrap().seccomp_profile.unwrap();
    assert_eq!(profile.type_, "Localhost");
    assert_eq!(
        profile.localhost_profile.as_deref(),
        Some("runner/sandbox.json")
    );
}
