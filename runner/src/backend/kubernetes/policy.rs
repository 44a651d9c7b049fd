//! The namespace policy (`policies/kubernetes/job-namespace.toml`): what
//! every job namespace holds. Parsed strictly and validated once into
//! [`NamespacePolicy`]; values that would weaken a guarantee are refused.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The policy shipped in the repository, embedded at build time.
pub const EMBEDDED: &str = include_str!("../../../../policies/kubernetes/job-namespace.toml");

#[derive(Debug, thiserror::Error)]
pub enum NamespacePolicyError {
    #[error("cannot read the Kubernetes namespace policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("Kubernetes namespace policy {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("Kubernetes namespace policy {origin}: {key} {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
    },
}

/// The longest grace after a job's deadline before its namespace is swept:
/// a day is already far longer than any job should outlive its deadline.
pub const MAX_DEADLINE_GRACE_SECS: u64 = 24 * 60 * 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    prefix: String,
    pod_security: String,
    runtime_class: String,
    seccomp: String,
    deadline_grace_secs: u64,
    start_timeout_secs: u64,
    quota: ObjectQuota,
    limit_range: LimitDefaults,
    #[serde(default)]
    egress: BTreeMap<String, Vec<EgressFile>>,
}

/// Object counts one job namespace may hold (ResourceQuota `hard`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectQuota {
    pub pods: u32,
    pub services: u32,
    #[serde(rename = "services.loadbalancers")]
    pub services_loadbalancers: u32,
    #[serde(rename = "services.nodeports")]
    pub services_nodeports: u32,
    pub persistentvolumeclaims: u32,
    pub secrets: u32,
    pub configmaps: u32,
    pub replicationcontrollers: u32,
    #[serde(rename = "count/jobs.batch")]
    pub jobs: u32,
    #[serde(rename = "count/cronjobs.batch")]
    pub cronjobs: u32,
    #[serde(rename = "count/deployments.apps")]
    pub deployments: u32,
}

impl ObjectQuota {
    /// `(resource name, count)` as ResourceQuota spells them.
    pub fn entries(&self) -> [(&'static str, u32); 11] {
        [
            ("pods", self.pods),
            ("services", self.services),
            ("services.loadbalancers", self.services_loadbalancers),
            ("services.nodeports", self.services_nodeports),
            ("persistentvolumeclaims", self.persistentvolumeclaims),
            ("secrets", self.secrets),
            ("configmaps", self.configmaps),
            ("replicationcontrollers", self.replicationcontrollers),
            ("count/jobs.batch", self.jobs),
            ("count/cronjobs.batch", self.cronjobs),
            ("count/deployments.apps", self.deployments),
        ]
    }
}

/// LimitRange defaults and maxima per container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDefaults {
    pub default_memory_mb: u64,
    pub default_cpu_millis: u64,
    pub default_ephemeral_storage_mb: u64,
    pub max_memory_mb: u64,
    pub max_cpu_millis: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressFile {
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    namespace_labels: BTreeMap<String, String>,
    #[serde(default)]
    pod_labels: BTreeMap<String, String>,
    ports: Vec<PortFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortFile {
    port: u16,
    protocol: String,
}

/// Where a grant lets a job's pods connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressPeer {
    /// An address block, minus exceptions.
    Block { cidr: String, except: Vec<String> },
    /// Pods selected by labels, in namespaces selected by labels.
    Pods {
        namespace_labels: BTreeMap<String, String>,
        pod_labels: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub peer: EgressPeer,
    /// `(port, protocol)`; never empty: a grant names its ports.
    pub ports: Vec<(u16, String)>,
}

/// The seccomp profile of sandbox pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSeccomp {
    RuntimeDefault,
    /// A profile installed on every node, relative to the kubelet's
    /// seccomp directory.
    Localhost(String),
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub prefix: String,
    pub runtime_class: Option<String>,
    pub seccomp: PodSeccomp,
    pub deadline_grace: Duration,
    pub start_timeout: Duration,
    pub quota: ObjectQuota,
    pub limit_range: LimitDefaults,
    pub egress: BTreeMap<String, Vec<EgressRule>>,
}

impl NamespacePolicy {
    pub fn embedded() -> Result<NamespacePolicy, NamespacePolicyError> {
        Self::parse(
            EMBEDDED,
            "(embedded policies/kubernetes/job-namespace.toml)",
        )
    }

    pub fn load(path: &Path) -> Result<NamespacePolicy, NamespacePolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| NamespacePolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<NamespacePolicy, NamespacePolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| NamespacePolicyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, problem: String| NamespacePolicyError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            problem,
        };
        check_prefix(&file.prefix).map_err(|p| invalid("prefix", p.to_string()))?;
        if file.pod_security != "restricted" {
            return Err(invalid(
                "pod_security",
                format!(
                    "is {:?}; only \"restricted\" is accepted: job pods run untrusted code",
                    file.pod_security
                ),
            ));
        }
        let runtime_class = match file.runtime_class.as_str() {
            "" => None,
            name if is_dns_subdomain(name) => Some(name.to_owned()),
            name => {
                return Err(invalid(
                    "runtime_class",
                    format!("{name:?} is not a valid RuntimeClass name"),
                ));
            }
        };
        let seccomp =
            parse_seccomp(&file.seccomp).map_err(|p| invalid("seccomp", p.to_string()))?;
        check_quota(&file.quota).map_err(|(k, p)| invalid(&format!("quota.{k}"), p))?;
        check_limits(&file.limit_range)
            .map_err(|(k, p)| invalid(&format!("limit_range.{k}"), p))?;
        if file.deadline_grace_secs > MAX_DEADLINE_GRACE_SECS {
            return Err(invalid(
                "deadline_grace_secs",
                format!(
                    "is {}; it must be at most {MAX_DEADLINE_GRACE_SECS} (a day): the sweeper adds it to every deadline",
                    file.deadline_grace_secs
                ),
            ));
        }
        if file.start_timeout_secs == 0 || file.start_timeout_secs > 3600 {
            return Err(invalid(
                "start_timeout_secs",
                "must be between 1 and 3600".to_owned(),
            ));
        }
        let mut egress = BTreeMap::new();
        for (name, rules) in file.egress {
            let key = format!("egress.{name}");
            if !is_dns_label(&name) {
                return Err(invalid(
                    &key,
                    "must be named with lowercase letters, digits and '-'".to_owned(),
                ));
            }
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    egress_rule(r).map_err(|p| invalid(&format!("{key}[{i}]"), p.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            egress.insert(name, rules);
        }
        Ok(NamespacePolicy {
            prefix: file.prefix,
            runtime_class,
            seccomp,
            deadline_grace: Duration::from_secs(file.deadline_grace_secs),
            start_timeout: Duration::from_secs(file.start_timeout_secs),
            quota: file.quota,
            limit_range: file.limit_range,
            egress,
        })
    }

    /// The namespace of a job.
    pub fn namespace_of(&self, job_id: &str) -> String {
        format!("{}-{job_id}", self.prefix)
    }
}

/// What is wrong with one value of the policy file;
/// [`NamespacePolicyError::Invalid`] adds the file and the key.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("{prefix:?} must be 1-12 lowercase letters, digits or '-', starting with a letter")]
    PrefixShape { prefix: String },
    #[error("{prefix:?} must start with a letter")]
    PrefixStart { prefix: String },
    #[error(
        "{prefix:?} is reserved by Kubernetes; job namespaces must never be mistaken for its own"
    )]
    PrefixReserved { prefix: String },
    #[error(
        "{text:?} must be \"RuntimeDefault\" or \"Localhost:<relative path>\" (Unconfined is not allowed)"
    )]
    Seccomp { text: String },
    #[error(
        "names either `cidr` (with optional `except`) or `namespace_labels`/`pod_labels`, not both or neither"
    )]
    EgressPeer,
    #[error("names no ports; a grant must say which ports it opens")]
    NoPorts,
    #[error("port 0 is not a port")]
    PortZero,
    #[error("protocol {protocol:?} must be TCP, UDP or SCTP")]
    Protocol { protocol: String },
    #[error("{cidr:?} is not an address block such as 10.0.0.0/8")]
    Cidr { cidr: String },
}

fn check_prefix(prefix: &str) -> Result<(), Problem> {
    let prefix_owned = || prefix.to_owned();
    if prefix.is_empty() || prefix.len() > 12 || !is_dns_label(prefix) {
        return Err(Problem::PrefixShape {
            prefix: prefix_owned(),
        });
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Problem::PrefixStart {
            prefix: prefix_owned(),
        });
    }
    if prefix.starts_with("kube") || prefix == "default" {
        return Err(Problem::PrefixReserved {
            prefix: prefix_owned(),
        });
    }
    Ok(())
}

fn parse_seccomp(text: &str) -> Result<PodSeccomp, Problem> {
    if text == "RuntimeDefault" {
        return Ok(PodSeccomp::RuntimeDefault);
    }
    match text.strip_prefix("Localhost:") {
        Some(path)
            if !path.is_empty()
                && !path.starts_with('/')
                && path
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..") =>
        {
            Ok(PodSeccomp::Localhost(path.to_owned()))
        }
        _ => Err(Problem::Seccomp {
            text: text.to_owned(),
        }),
    }
}

fn check_quota(q: &ObjectQuota) -> Result<(), (&'static str, String)> {
    if q.pods == 0 || q.pods > 8 {
        return Err(("pods", "must be between 1 and 8".into()));
    }
    // These would expose a job to the outside or let it outlive itself.
    for (key, v) in [
        ("services.loadbalancers", q.services_loadbalancers),
        ("services.nodeports", q.services_nodeports),
        ("persistentvolumeclaims", q.persistentvolumeclaims),
    ] {
        if v != 0 {
            return Err((key, "must be 0: a job needs none".into()));
        }
    }
    Ok(())
}

fn check_limits(l: &LimitDefaults) -> Result<(), (&'static str, String)> {
    for (key, v) in [
        ("default_memory_mb", l.default_memory_mb),
        ("default_cpu_millis", l.default_cpu_millis),
        (
            "default_ephemeral_storage_mb",
            l.default_ephemeral_storage_mb,
        ),
    ] {
        if v == 0 {
            return Err((key, "must be above 0".into()));
        }
    }
    if l.default_memory_mb > l.max_memory_mb {
        return Err(("default_memory_mb", "is above max_memory_mb".into()));
    }
    if l.default_cpu_millis > l.max_cpu_millis {
        return Err(("default_cpu_millis", "is above max_cpu_millis".into()));
    }
    Ok(())
}

fn egress_rule(r: EgressFile) -> Result<EgressRule, Problem> {
    let peer = match (
        r.cidr,
        r.namespace_labels.is_empty() && r.pod_labels.is_empty(),
    ) {
        (Some(cidr), true) => {
            check_cidr(&cidr)?;
            for e in &r.except {
                check_cidr(e)?;
            }
            EgressPeer::Block {
                cidr,
                except: r.except,
            }
        }
        (None, false) if r.except.is_empty() => EgressPeer::Pods {
            namespace_labels: r.namespace_labels,
            pod_labels: r.pod_labels,
        },
        _ => return Err(Problem::EgressPeer),
    };
    if r.ports.is_empty() {
        return Err(Problem::NoPorts);
    }
    let ports = r
        .ports
        .into_iter()
        .map(|p| match (p.port, p.protocol.as_str()) {
            (0, _) => Err(Problem::PortZero),
            (port, "TCP" | "UDP" | "SCTP") => Ok((port, p.protocol)),
            (_, other) => Err(Problem::Protocol {
                protocol: other.to_owned(),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok(EgressRule { peer, ports })
}

fn check_cidr(cidr: &str) -> Result<(), Problem> {
    let bad = || Problem::Cidr {
        cidr: cidr.to_owned(),
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(())
}

/// RFC 1123 label: what a namespace name must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(from: &str, to: &str) -> Result<NamespacePolicy, NamespacePolicyError> {
        assert!(EMBEDDED.contains(from), "{from}");
        NamespacePolicy::parse(&EMBEDDED.replacen(from, to, 1), "test")
    }

    fn refused(from: &str, to: &str, key: &str) {
        match with(from, to) {
            Err(NamespacePolicyError::Invalid { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{to}: expected {key} refused, got {other:?}"),
        }
    }

    /// Found by the `kubernetes_policy` fuzz target: a grace near u64::MAX
    /// overflowed when the sweeper added it to a namespace's deadline.
    #[test]
    fn a_deadline_grace_beyond_a_day_is_refused() {
        refused(
            "deadline_grace_secs = 300",
            "deadline_grace_secs = 18446744073709551615",
            "deadline_grace_secs",
        );
        refused(
            "deadline_grace_secs = 300",
            "deadline_grace_secs = 86401",
            "deadline_grace_secs",
        );
        with("deadline_grace_secs = 300", "deadline_grace_secs = 86400").unwrap();
    }

    #[test]
    fn the_embedded_policy_is_valid() {
        let p = NamespacePolicy::embedded().unwrap();
        assert_eq!(p.prefix, "rj");
        assert_eq!(p.seccomp, PodSeccomp::RuntimeDefault);
        assert_eq!(p.runtime_class, None);
        assert_eq!(p.quota.pods, 2);
        assert_eq!(p.namespace_of("abc"), "rj-abc");
        let internet = &p.egress["internet"];
        assert_eq!(internet.len(), 2);
        assert!(
            matches!(&internet[0].peer, EgressPeer::Block { except, .. } if except.contains(&"169.254.0.0/16".to_string()))
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = NamespacePolicy::parse(&format!("{EMBEDDED}\nprivileged = true\n"), "t");
        assert!(
            matches!(err, Err(NamespacePolicyError::Parse { .. })),
            "{err:?}"
        );
        let err = with("pods = 2", "pods = 2\nhostpath = 1");
        assert!(
            matches!(err, Err(NamespacePolicyError::Parse { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn pod_security_below_restricted_is_refused() {
        refused(
            "pod_security = \"restricted\"",
            "pod_security = \"baseline\"",
            "pod_security",
        );
        refused(
            "pod_security = \"restricted\"",
            "pod_security = \"privileged\"",
            "pod_security",
        );
    }

    #[test]
    fn unconfined_seccomp_is_refused() {
        refused(
            "seccomp = \"RuntimeDefault\"",
            "seccomp = \"Unconfined\"",
            "seccomp",
        );
        refused(
            "seccomp = \"RuntimeDefault\"",
            "seccomp = \"Localhost:../../etc/x.json\"",
            "seccomp",
        );
        let p = with(
            "seccomp = \"RuntimeDefault\"",
            "seccomp = \"Localhost:runner/sandbox.json\"",
        )
        .unwrap();
        assert_eq!(
            p.seccomp,
            PodSeccomp::Localhost("runner/sandbox.json".into())
        );
    }

    #[test]
    fn quota_that_exposes_a_job_is_refused() {
        refused(
            "\"services.loadbalancers\" = 0",
            "\"services.loadbalancers\" = 1",
            "quota.services.loadbalancers",
        );
        refused(
            "\"services.nodeports\" = 0",
            "\"services.nodeports\" = 2",
            "quota.services.nodeports",
        );
        refused(
            "persistentvolumeclaims = 0",
            "persistentvolumeclaims = 1",
            "quota.persistentvolumeclaims",
        );
        refused("pods = 2", "pods = 0", "quota.pods");
    }

    #[test]
    fn prefixes_that_could_name_system_namespaces_are_refused() {
        refused("prefix = \"rj\"", "prefix = \"kube\"", "prefix");
        refused("prefix = \"rj\"", "prefix = \"Rj\"", "prefix");
        refused("prefix = \"rj\"", "prefix = \"\"", "prefix");
        refused(
            "prefix = \"rj\"",
            "prefix = \"a-very-long-prefix\"",
            "prefix",
        );
    }

    #[test]
    fn egress_grants_are_checked() {
        refused(
            "cidr = \"0.0.0.0/0\"",
            "cidr = \"0.0.0.0/33\"",
            "egress.internet[0]",
        );
        refused(
            "cidr = \"0.0.0.0/0\"",
            "cidr = \"everything\"",
            "egress.internet[0]",
        );
        refused(
            "ports = [{ port = 80, protocol = \"TCP\" }, { port = 443, protocol = \"TCP\" }]",
            "ports = []",
            "egress.internet[0]",
        );
        refused(
            "{ port = 80, protocol = \"TCP\" }",
            "{ port = 80, protocol = \"ICMP\" }",
            "egress.internet[0]",
        );
        refused(
            "[[egress.internet]]",
            "[[egress.Internet]]",
            "egress.Internet",
        );
    }

    #[test]
    fn runtime_class_names_are_checked() {
        let p = with("runtime_class = \"\"", "runtime_class = \"gvisor\"").unwrap();
        assert_eq!(p.runtime_class.as_deref(), Some("gvisor"));
        refused(
            "runtime_class = \"\"",
            "runtime_class = \"G Visor\"",
            "runtime_class",
        );
    }
}
