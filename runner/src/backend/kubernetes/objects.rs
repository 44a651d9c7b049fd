//! The Kubernetes objects of one job, built from the engine-neutral specs
//! and the namespace policy. Pure functions: everything a job namespace
//! guarantees can be read (and is tested) here, without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, LimitRange, LimitRangeItem, LimitRangeSpec,
    Namespace, Pod, PodSecurityContext, PodSpec, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::policy::{EgressPeer, EgressRule, NamespacePolicy, PodSeccomp};
use crate::backend::spec::{JobSpec, Resources, SandboxSpec};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "runner";
pub const JOB: &str = "runner.io/job";
pub const KIND: &str = "runner.io/kind";
pub const ROLE: &str = "runner.io/role";
pub const TENANT: &str = "runner.io/tenant";
/// Annotation: the runner process that opened the job (host/boot/pid/start).
pub const OWNER: &str = "runner.io/owner";
/// Annotation: Unix seconds after which the job is abandoned.
pub const DEADLINE: &str = "runner.io/deadline";
/// The one container of every sandbox pod.
pub const CONTAINER: &str = "sandbox";
/// Path of `sandbox-init` in every sandbox image.
pub const SANDBOX_INIT: &str = "/usr/local/sbin/sandbox-init";
/// Quota object names.
pub const QUOTA: &str = "job-quota";
pub const LIMITS: &str = "job-limits";
pub const DENY_ALL: &str = "deny-all";

/// Room in each pod's ephemeral storage for what the node keeps of it
/// (container logs); the root filesystem itself is read-only.
const EPHEMERAL_BYTES: u64 = 64 << 20;

/// Labels every object of a job carries.
pub fn job_labels(job: &JobSpec) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (JOB.to_owned(), job.id.clone()),
        (KIND.to_owned(), job.kind.as_str().to_owned()),
    ]);
    if let Some(t) = job.tenant.as_deref().filter(|t| is_label_value(t)) {
        labels.insert(TENANT.to_owned(), t.to_owned());
    }
    labels
}

/// Whether `v` may be a label value.
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The job's namespace: Pod Security "restricted" enforced, audited and
/// warned; owner and deadline annotated for garbage collection.
pub fn namespace(
    policy: &NamespacePolicy,
    job: &JobSpec,
    owner: &str,
    deadline_unix: u64,
) -> Namespace {
    let mut labels = job_labels(job);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    let mut m = meta(&policy.namespace_of(&job.id), None, labels);
    m.annotations = Some(BTreeMap::from([
        (OWNER.to_owned(), owner.to_owned()),
        (DEADLINE.to_owned(), deadline_unix.to_string()),
    ]));
    Namespace {
        metadata: m,
        ..Default::default()
    }
}

fn quantity(s: String) -> Quantity {
    Quantity(s)
}

fn cpu(nano_cpus: i64) -> Quantity {
    // Millicores, rounded up: a request of 1.5 ns of CPU is still a request.
    quantity(format!(
        "{}m",
        (nano_cpus.max(1) as u64).div_ceil(1_000_000)
    ))
}

fn bytes(n: u64) -> Quantity {
    quantity(n.to_string())
}

/// Ephemeral storage of one sandbox pod.
fn ephemeral(_resources: &Resources) -> u64 {
    EPHEMERAL_BYTES
}

/// The job's quota: object counts from policy; compute for `pods` times the
/// job's largest sandbox.
pub fn resource_quota(policy: &NamespacePolicy, job: &JobSpec) -> ResourceQuota {
    let pods = u64::from(policy.quota.pods);
    let mut hard: BTreeMap<String, Quantity> = policy
        .quota
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), quantity(v.to_string())))
        .collect();
    let largest = job.largest;
    let cpu_total = cpu(largest.nano_cpus.saturating_mul(pods as i64));
    let mem_total = bytes(largest.memory_bytes.saturating_mul(pods));
    let eph_total = bytes(ephemeral(&largest).saturating_mul(pods));
    for kind in ["requests", "limits"] {
        hard.insert(format!("{kind}.cpu"), cpu_total.clone());
        hard.insert(format!("{kind}.memory"), mem_total.clone());
        hard.insert(format!("{kind}.ephemeral-storage"), eph_total.clone());
    }
    ResourceQuota {
        metadata: meta(QUOTA, Some(&policy.namespace_of(&job.id)), job_labels(job)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Defaults and maxima for any container that names no limits.
pub fn limit_range(policy: &NamespacePolicy, job: &JobSpec) -> LimitRange {
    let l = &policy.limit_range;
    let defaults = BTreeMap::from([
        ("memory".to_owned(), bytes(l.default_memory_mb << 20)),
        (
            "cpu".to_owned(),
            quantity(format!("{}m", l.default_cpu_millis)),
        ),
        (
            "ephemeral-storage".to_owned(),
            bytes(l.default_ephemeral_storage_mb << 20),
        ),
    ]);
    let max = BTreeMap::from([
        ("memory".to_owned(), bytes(l.max_memory_mb << 20)),
        ("cpu".to_owned(), quantity(format!("{}m", l.max_cpu_millis))),
    ]);
    LimitRange {
        metadata: meta(LIMITS, Some(&policy.namespace_of(&job.id)), job_labels(job)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(defaults.clone()),
                default_request: Some(defaults),
                max: Some(max),
                ..Default::default()
            }],
        }),
    }
}

/// Denies all ingress and all egress to every pod of the namespace.
pub fn deny_all(policy: &NamespacePolicy, job: &JobSpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(
            DENY_ALL,
            Some(&policy.namespace_of(&job.id)),
            job_labels(job),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(vec![]),
            egress: Some(vec![]),
        }),
    }
}

/// Allows egress to what the named grant lists, nothing else (no ingress).
pub fn egress(
    policy: &NamespacePolicy,
    job: &JobSpec,
    grant: &str,
    rules: &[EgressRule],
) -> NetworkPolicy {
    let egress = rules
        .iter()
        .map(|r| NetworkPolicyEgressRule {
            to: Some(vec![peer(&r.peer)]),
            ports: Some(
                r.ports
                    .iter()
                    .map(|(port, protocol)| NetworkPolicyPort {
                        port: Some(IntOrString::Int(i32::from(*port))),
                        protocol: Some(protocol.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        })
        .collect();
    NetworkPolicy {
        metadata: meta(
            &format!("egress-{grant}"),
            Some(&policy.namespace_of(&job.id)),
            job_labels(job),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Egress".to_owned()]),
            egress: Some(egress),
            ingress: None,
        }),
    }
}

fn peer(p: &EgressPeer) -> NetworkPolicyPeer {
    match p {
        EgressPeer::Block { cidr, except } => NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.clone(),
                except: (!except.is_empty()).then(|| except.clone()),
            }),
            ..Default::default()
        },
        EgressPeer::Pods {
            namespace_labels,
            pod_labels,
        } => NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(namespace_labels.clone()),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(pod_labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The namespace's `default` service account, applied so that it never
/// mounts an API token into a pod.
pub fn default_service_account(policy: &NamespacePolicy, job: &JobSpec) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(
            "default",
            Some(&policy.namespace_of(&job.id)),
            job_labels(job),
        ),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

fn seccomp(policy: &NamespacePolicy) -> SeccompProfile {
    match &policy.seccomp {
        PodSeccomp::RuntimeDefault => SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        },
        PodSeccomp::Localhost(path) => SeccompProfile {
            type_: "Localhost".to_owned(),
            localhost_profile: Some(path.clone()),
        },
    }
}

/// A sandbox pod: Pod Security "restricted" and more (read-only root,
/// memory-backed size-limited scratch, no service account token, no service
/// links, no host namespaces, requests = limits, a deadline, never
/// restarted), running `sandbox-init` on an attached stdin.
pub fn pod(policy: &NamespacePolicy, job: &JobSpec, sandbox: &SandboxSpec, uid: u32) -> Pod {
    let mut labels = job_labels(job);
    labels.insert(ROLE.to_owned(), sandbox.role.clone());
    // The gid is the uid: a group of its own, like the user.
    let (uid, gid) = (i64::from(uid), i64::from(uid));
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut scratch: Vec<(&str, u64)> = sandbox
        .scratch
        .iter()
        .map(|s| (s.path.as_str(), s.size_bytes))
        .collect();
    scratch.push(("/dev/shm", sandbox.shm_bytes));
    for (i, (path, size)) in scratch.into_iter().enumerate() {
        let name = format!("scratch-{i}");
        volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(bytes(size)),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: path.to_owned(),
            ..Default::default()
        });
    }
    let resources = BTreeMap::from([
        ("cpu".to_owned(), cpu(sandbox.nano_cpus)),
        ("memory".to_owned(), bytes(sandbox.memory_bytes)),
        (
            "ephemeral-storage".to_owned(),
            bytes(ephemeral(&sandbox.resources())),
        ),
    ]);
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(sandbox.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![SANDBOX_INIT.to_owned()]),
        args: Some(vec![]),
        stdin: Some(true),
        // The kubelet closes stdin when the runner detaches: an abandoned
        // sandbox-init sees EOF and exits.
        stdin_once: Some(true),
        tty: Some(false),
        working_dir: Some("/work".to_owned()),
        env: Some(vec![]),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            run_as_group: Some(gid),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(seccomp(policy)),
            proc_mount: Some("Default".to_owned()),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("File".to_owned()),
        ..Default::default()
    };
    Pod {
        metadata: meta(&sandbox.role, Some(&policy.namespace_of(&job.id)), labels),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(job.lifetime.as_secs().max(1) as i64),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            host_users: None,
            share_process_namespace: Some(false),
            runtime_class_name: policy.runtime_class.clone(),
            termination_grace_period_seconds: Some(1),
            hostname: Some("sandbox".to_owned()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                run_as_group: Some(gid),
                supplemental_groups: Some(vec![]),
                seccomp_profile: Some(seccomp(policy)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
