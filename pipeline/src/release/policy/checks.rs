//! The rules of the environment policy, checked once at load time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::duration;
use super::file::{
    DockerFile, EnvironmentFile, KubernetesFile, PolicyFile, TargetFile, VerifyFile,
};
use super::problem::Problem;
use super::{Environment, Target, TrustedKey, Verification};
use crate::cosign::{PredicateKind, keys};
use crate::deploy::docker::Limits;
use crate::deploy::{DockerTarget, KubernetesTarget};
use crate::scan::ScanPolicy;

/// A broken rule, and the environment it concerns.
type Broken = (Option<String>, Problem);

pub(super) fn check(file: PolicyFile, base: &Path) -> Result<Vec<Environment>, Broken> {
    if file.environment.is_empty() {
        return Err((None, Problem::NoEnvironment));
    }
    let mut environments: Vec<Environment> = Vec::new();
    for (position, raw) in file.environment.into_iter().enumerate() {
        let name = raw.name.clone();
        let within = |problem| (Some(name.clone()), problem);
        if !is_name(&raw.name, 32) {
            return Err(within(Problem::BadName { name: raw.name }));
        }
        if environments.iter().any(|e| e.name == raw.name) {
            return Err(within(Problem::DuplicateName { name: raw.name }));
        }
        let env = environment(raw, position, base).map_err(within)?;
        order(&env, &environments).map_err(within)?;
        shared_target(&env, &environments).map_err(within)?;
        environments.push(env);
    }
    Ok(environments)
}

/// Lowercase letters, digits and `-`, starting with a letter.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn environment(raw: EnvironmentFile, position: usize, base: &Path) -> Result<Environment, Problem> {
    let automatic_branches = automatic(&raw, position)?;
    let (approvals, approver_role) = approvals(&raw)?;
    let soak_in_previous = match (&raw.soak_in_previous, position) {
        (Some(_), 0) => return Err(Problem::SoakOnFirst),
        (Some(s), _) => parse_duration("soak_in_previous", s)?,
        (None, _) => Duration::ZERO,
    };
    Ok(Environment {
        name: raw.name,
        position,
        target: target(raw.target, base)?,
        verify: verification(raw.verify, base)?,
        approvals,
        approver_role,
        soak_in_previous,
        automatic_branches,
    })
}

fn automatic(raw: &EnvironmentFile, position: usize) -> Result<Option<Vec<String>>, Problem> {
    if !raw.automatic {
        return match raw.branches {
            Some(_) => Err(Problem::BranchesWithoutAutomatic),
            None => Ok(None),
        };
    }
    if position > 0 {
        return Err(Problem::AutomaticNotFirst {
            position: position + 1,
        });
    }
    if raw.approvals.is_some_and(|n| n > 0) || raw.approver_role.is_some() {
        return Err(Problem::AutomaticWithApprovals);
    }
    let branches = match &raw.branches {
        Some(b) if !b.is_empty() => b.clone(),
        _ => return Err(Problem::AutomaticWithoutBranches),
    };
    if let Some(bad) = branches.iter().find(|b| {
        b.is_empty() || b.contains(char::is_whitespace) || b.contains("..") || b.starts_with('-')
    }) {
        return Err(Problem::BadBranch {
            branch: bad.clone(),
        });
    }
    Ok(Some(branches))
}

fn approvals(raw: &EnvironmentFile) -> Result<(u32, Option<String>), Problem> {
    if raw.automatic {
        return Ok((0, None));
    }
    let n = raw.approvals.unwrap_or(0);
    if n == 0 {
        return Err(Problem::NoApprovals);
    }
    let role = raw.approver_role.clone().ok_or(Problem::NoApproverRole)?;
    if !is_name(&role, 64) {
        return Err(Problem::BadRole { role });
    }
    Ok((n, Some(role)))
}

/// A later environment is at least as guarded as every earlier one.
fn order(env: &Environment, earlier: &[Environment]) -> Result<(), Problem> {
    match earlier.iter().find(|e| e.approvals > env.approvals) {
        Some(e) => Err(Problem::FewerApprovalsThanEarlier {
            approvals: env.approvals,
            earlier: e.name.clone(),
            earlier_approvals: e.approvals,
        }),
        None => Ok(()),
    }
}

/// Two environments on one host cannot share a service or a listen address.
fn shared_target(env: &Environment, earlier: &[Environment]) -> Result<(), Problem> {
    let Target::Docker(d) = &env.target else {
        return Ok(());
    };
    for e in earlier {
        if let Target::Docker(o) = &e.target {
            let clash = if o.service == d.service {
                Some(("service", d.service.clone()))
            } else if o.listen == d.listen {
                Some(("listen", d.listen.to_string()))
            } else {
                None
            };
            if let Some((field, value)) = clash {
                return Err(Problem::SharedTarget {
                    field,
                    value,
                    other: e.name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn parse_duration(key: &'static str, value: &str) -> Result<Duration, Problem> {
    duration::parse(value).map_err(|source| Problem::Duration { key, source })
}

fn optional_duration(
    key: &'static str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, Problem> {
    value
        .as_deref()
        .map_or(Ok(default), |v| parse_duration(key, v))
}

fn verification(raw: VerifyFile, base: &Path) -> Result<Verification, Problem> {
    if raw.keys.is_empty() {
        return Err(Problem::NoKeys);
    }
    let mut keys = Vec::new();
    for k in &raw.keys {
        let path = base.join(k);
        let key = keys::read_public(&path).map_err(Problem::Key)?;
        keys.push(TrustedKey {
            id: keys::key_id(&key),
            path,
            key,
        });
    }
    let mut attestations = Vec::new();
    for name in &raw.attestations {
        let kind = PredicateKind::parse(name)
            .map_err(|_| Problem::UnknownAttestation { name: name.clone() })?;
        if attestations.contains(&kind) {
            return Err(Problem::DuplicateAttestation { name: name.clone() });
        }
        attestations.push(kind);
    }
    if let Some(missing) = PredicateKind::ALL
        .iter()
        .find(|k| !attestations.contains(k))
    {
        return Err(Problem::MissingAttestation {
            name: missing.name(),
        });
    }
    let scan_policy_path = base.join(&raw.scan_policy);
    let scan_policy = ScanPolicy::load(&scan_policy_path).map_err(Problem::ScanPolicy)?;
    Ok(Verification {
        keys,
        attestations,
        scan_policy,
        scan_policy_path,
    })
}

fn target(raw: TargetFile, base: &Path) -> Result<Target, Problem> {
    match raw {
        TargetFile::Docker(d) => docker(d).map(Target::Docker),
        TargetFile::Kubernetes(k) => kubernetes(k, base).map(Target::Kubernetes),
    }
}

fn bad(field: &'static str, value: impl ToString, problem: &'static str) -> Problem {
    Problem::Target {
        field,
        value: value.to_string(),
        problem,
    }
}

fn docker(raw: DockerFile) -> Result<DockerTarget, Problem> {
    if !is_name(&raw.service, 48) {
        return Err(bad(
            "service",
            &raw.service,
            "is not usable: lowercase letters, digits and `-`, starting with a letter, at most 48 characters",
        ));
    }
    if raw.replicas == 0 || raw.replicas > DockerTarget::MAX_REPLICAS {
        return Err(bad("replicas", raw.replicas, "is out of range: 1 to 64"));
    }
    if raw.port == 0 {
        return Err(bad("port", raw.port, "is not a port: 1 to 65535"));
    }
    if !raw.health_path.starts_with('/') || raw.health_path.contains(char::is_whitespace) {
        return Err(bad(
            "health_path",
            &raw.health_path,
            "must start with `/` and have no spaces",
        ));
    }
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        bad(
            "listen",
            &raw.listen,
            "is not an address: IP:PORT, e.g. 127.0.0.1:8081",
        )
    })?;
    let limits = Limits {
        memory_mb: raw.memory_mb.unwrap_or(Limits::default().memory_mb),
        cpus: raw.cpus.unwrap_or(Limits::default().cpus),
        pids: raw.pids.unwrap_or(Limits::default().pids),
    };
    if !(6..=1 << 20).contains(&limits.memory_mb) {
        return Err(bad(
            "memory_mb",
            limits.memory_mb,
            "is out of range: 6 to 1048576",
        ));
    }
    if !(limits.cpus > 0.0 && limits.cpus <= 256.0) {
        return Err(bad(
            "cpus",
            limits.cpus,
            "is out of range: more than 0, at most 256",
        ));
    }
    if !(8..=1 << 20).contains(&limits.pids) {
        return Err(bad("pids", limits.pids, "is out of range: 8 to 1048576"));
    }
    let mut t = DockerTarget::new(
        &raw.service,
        raw.replicas,
        raw.port,
        &raw.health_path,
        listen,
    );
    t.health_timeout = optional_duration("health_timeout", &raw.health_timeout, t.health_timeout)?;
    t.drain_timeout = optional_duration("drain_timeout", &raw.drain_timeout, t.drain_timeout)?;
    t.soak_window = optional_duration("soak_window", &raw.soak_window, t.soak_window)?;
    if t.health_timeout.is_zero() {
        return Err(bad(
            "health_timeout",
            "0s",
            "leaves a new container no time to start",
        ));
    }
    t.limits = limits;
    Ok(t)
}

/// RFC 1123 label: what namespaces, deployments and containers are named.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn kubernetes(raw: KubernetesFile, base: &Path) -> Result<KubernetesTarget, Problem> {
    if raw.context.trim().is_empty() {
        return Err(bad(
            "context",
            &raw.context,
            "is empty: name a context of the kubeconfig",
        ));
    }
    let fields = BTreeMap::from([
        ("namespace", &raw.namespace),
        ("deployment", &raw.deployment),
        ("container", &raw.container),
    ]);
    for (field, value) in fields {
        if !is_dns_label(value) {
            return Err(bad(
                field,
                value,
                "is not a DNS label (lowercase letters, digits, `-`, at most 63)",
            ));
        }
    }
    let progress_timeout = optional_duration(
        "progress_timeout",
        &raw.progress_timeout,
        KubernetesTarget::DEFAULT_PROGRESS_TIMEOUT,
    )?;
    if progress_timeout.is_zero() {
        return Err(bad("progress_timeout", "0s", "leaves the rollout no time"));
    }
    Ok(KubernetesTarget {
        context: raw.context,
        kubeconfig: raw.kubeconfig.map(|k| base.join(k)),
        namespace: raw.namespace,
        deployment: raw.deployment,
        container: raw.container,
        progress_timeout,
        soak_window: optional_duration(
            "soak_window",
            &raw.soak_window,
            KubernetesTarget::DEFAULT_SOAK_WINDOW,
        )?,
    })
}
