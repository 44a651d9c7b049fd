//! Why an environment policy is refused: one variant per rule, so the
//! service and the tests can tell them apart, each saying how to fix it.

use std::path::PathBuf;

use super::duration::BadDuration;
use crate::cosign::keys::KeyError;
use crate::scan::ScanError;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the environment policy {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, a missing key or a value of the wrong type;
    /// the message names the line.
    #[error("environment policy {}: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("environment policy {}{}: {problem}", .path.display(), in_environment(.environment))]
    Invalid {
        path: PathBuf,
        /// The environment the rule concerns, when it is one.
        environment: Option<String>,
        problem: Box<Problem>,
    },
}

fn in_environment(e: &Option<String>) -> String {
    e.as_ref()
        .map(|n| format!(", environment {n:?}"))
        .unwrap_or_default()
}

impl PolicyError {
    /// The rule broken, for an [`PolicyError::Invalid`] policy.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            PolicyError::Invalid { problem, .. } => Some(&**problem),
            _ => None,
        }
    }
}

impl crate::error::Classify for PolicyError {
    fn blame(&self) -> crate::error::Blame {
        crate::error::Blame::Usage
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("it names no environment; add at least one [[environment]] table")]
    NoEnvironment,
    #[error(
        "the name {name:?} is not usable: lowercase letters, digits and `-`, starting with a letter, at most 32 characters"
    )]
    BadName { name: String },
    #[error("the name {name:?} is used twice; environment names are unique")]
    DuplicateName { name: String },
    #[error(
        "`automatic = true` is only allowed on the first environment (here the {position}th); promotions into later ones are approved"
    )]
    AutomaticNotFirst { position: usize },
    #[error(
        "an automatic environment takes no approvals and no approver_role; remove them or set automatic = false"
    )]
    AutomaticWithApprovals,
    #[error(
        "an automatic environment needs `branches`: the branches whose commits are promoted into it"
    )]
    AutomaticWithoutBranches,
    #[error("a branch name {branch:?} is not usable (empty, or with spaces or `..`)")]
    BadBranch { branch: String },
    #[error(
        "`branches` applies to the automatic environment only; remove it or set automatic = true"
    )]
    BranchesWithoutAutomatic,
    #[error(
        "a promotion into it needs approvals >= 1 (only the first environment may be automatic, with none)"
    )]
    NoApprovals,
    #[error("it needs approvals, so it needs `approver_role`: the role whose holders may approve")]
    NoApproverRole,
    #[error("approver_role {role:?} is not a role name: lowercase letters, digits and `-`")]
    BadRole { role: String },
    #[error(
        "it needs {approvals} approval(s), fewer than {earlier} before it ({earlier_approvals}): environments are listed in promotion order, each at least as guarded as the one before"
    )]
    FewerApprovalsThanEarlier {
        approvals: u32,
        earlier: String,
        earlier_approvals: u32,
    },
    #[error(
        "`soak_in_previous` on the first environment: there is no previous environment to soak in"
    )]
    SoakOnFirst,
    #[error("`{key}`: {source}")]
    Duration {
        key: &'static str,
        source: BadDuration,
    },
    #[error("verify.keys is empty: at least one public key must verify what runs here")]
    NoKeys,
    #[error(
        "verify.keys: {0}; each is a cosign public key (`pipeline keygen --output-key-prefix PATH` makes a pair; keep the .key out of the repository)"
    )]
    Key(KeyError),
    #[error(
        "verify.attestations: {name:?} is not an attestation type; use cyclonedx, vuln or slsaprovenance"
    )]
    UnknownAttestation { name: String },
    #[error("verify.attestations names {name:?} twice")]
    DuplicateAttestation { name: String },
    #[error(
        "verify.attestations must include {name:?}: nothing ships without an SBOM (cyclonedx), a scan (vuln) and its commit (slsaprovenance)"
    )]
    MissingAttestation { name: &'static str },
    #[error("verify.scan_policy: {0}")]
    ScanPolicy(ScanError),
    #[error("target: {field} {value:?} {problem}")]
    Target {
        field: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("target: {field} {value:?} is already used by environment {other:?}")]
    SharedTarget {
        field: &'static str,
        value: String,
        other: String,
    },
}
