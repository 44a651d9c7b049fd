//! Environments as reviewed policy (`policies/environments.toml`): ordered
//! environments, each with its deploy target, the verification it requires,
//! the approvals it needs, how long an image must have soaked in the
//! environment before it, and whether promotion into it is automatic.
//!
//! TOML, as the project's other reviewed policies (`sandbox.toml`,
//! `workflows.toml`): comments for the reviewer, an array of tables whose
//! order is the promotion order, and none of YAML's implicit typing (`on`,
//! `no`, `010` mean what they say). Read strictly and checked once
//! ([`EnvironmentPolicy::load`]) into typed values: a service loads it at
//! start-up and refuses to start on a bad file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use p256::ecdsa::VerifyingKey;

use crate::cosign::PredicateKind;
use crate::deploy::{DockerTarget, KubernetesTarget};
use crate::scan::ScanPolicy;

mod checks;
pub mod duration;
mod file;
mod problem;
#[cfg(test)]
mod tests;

pub use problem::{PolicyError, Problem};

/// The largest policy file read.
const MAX_POLICY_BYTES: u64 = 1 << 20;

/// The environments, in promotion order.
#[derive(Debug, Clone)]
pub struct EnvironmentPolicy {
    path: PathBuf,
    environments: Vec<Environment>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    /// Its place in the promotion order, from 0.
    pub position: usize,
    pub target: Target,
    pub verify: Verification,
    /// Distinct approvals a promotion into it needs (0 when automatic).
    pub approvals: u32,
    /// The role whose holders may approve (`None` when automatic).
    pub approver_role: Option<String>,
    /// How long a digest must have been live in the previous environment.
    pub soak_in_previous: Duration,
    /// Branches whose green commits are promoted here without approval
    /// (only the first environment may have them).
    pub automatic_branches: Option<Vec<String>>,
}

impl Environment {
    pub fn is_automatic(&self) -> bool {
        self.automatic_branches.is_some()
    }
}

/// A public key an environment trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub path: PathBuf,
    /// cosign's key id (a hash of the public key), named in reports.
    pub id: String,
    pub key: VerifyingKey,
}

/// What an image must carry to run in an environment.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The signature and attestations must verify with one of these.
    pub keys: Vec<TrustedKey>,
    pub attestations: Vec<PredicateKind>,
    /// The scan attestation is re-evaluated under this policy.
    pub scan_policy: ScanPolicy,
    pub scan_policy_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Docker(DockerTarget),
    Kubernetes(KubernetesTarget),
}

impl Target {
    /// `docker service app-dev on 127.0.0.1:8081`, `kubernetes prod/app/app`.
    pub fn describe(&self) -> String {
        match self {
            Target::Docker(d) => format!(
                "docker service {} ({} replicas) on {}",
                d.service, d.replicas, d.listen
            ),
            Target::Kubernetes(k) => format!(
                "kubernetes deployment {}/{} (context {}, container {})",
                k.namespace, k.deployment, k.context, k.container
            ),
        }
    }
}

/// An environment the policy does not name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no environment {given:?} in {policy}; the environments are: {}", .known.join(", "))]
pub struct UnknownEnvironment {
    pub given: String,
    pub policy: String,
    pub known: Vec<String>,
}

impl crate::error::Classify for UnknownEnvironment {
    fn blame(&self) -> crate::error::Blame {
        crate::error::Blame::Usage
    }
}

impl EnvironmentPolicy {
    /// Reads and checks a policy file; relative paths in it are resolved
    /// against its directory.
    pub fn load(path: &Path) -> Result<EnvironmentPolicy, PolicyError> {
        let read = |source| PolicyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_POLICY_BYTES {
            return Err(read(std::io::Error::other(format!(
                "larger than {MAX_POLICY_BYTES} bytes"
            ))));
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let base = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Self::parse(&text, path, base)
    }

    /// Parses and checks policy text; `path` names it in messages,
    /// `base_dir` resolves relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        base_dir: &Path,
    ) -> Result<EnvironmentPolicy, PolicyError> {
        let file: file::PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let environments = checks::check(file, base_dir).map_err(|(environment, problem)| {
            PolicyError::Invalid {
                path: path.to_owned(),
                environment,
                problem: Box::new(problem),
            }
        })?;
        Ok(EnvironmentPolicy {
            path: path.to_owned(),
            environments,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// In promotion order; never empty.
    pub fn environments(&self) -> &[Environment] {
        &self.environments
    }

    pub fn get(&self, name: &str) -> Result<&Environment, UnknownEnvironment> {
        self.environments
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| UnknownEnvironment {
                given: name.to_owned(),
                policy: self.path.display().to_string(),
                known: self.environments.iter().map(|e| e.name.clone()).collect(),
            })
    }

    /// The environment before `env` in the promotion order.
    pub fn previous(&self, env: &Environment) -> Option<&Environment> {
        env.position
            .checked_sub(1)
            .and_then(|i| self.environments.get(i))
    }

    pub fn first(&self) -> &Environment {
        &self.environments[0]
    }

    /// The automatic environment a green commit on `branch` is promoted
    /// into, if policy names that branch.
    pub fn automatic_for_branch(&self, branch: &str) -> Option<&Environment> {
        let first = self.first();
        let branches = first.automatic_branches.as_ref()?;
        branches.iter().any(|b| b == branch).then_some(first)
    }
}
