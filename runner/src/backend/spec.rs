//! Engine-neutral descriptions of a job and of the sandboxes it runs in.
//! Nothing here names Docker or Kubernetes: each backend translates them,
//! and fixes everything that makes a sandbox a sandbox itself (capabilities
//! dropped, no privilege escalation, read-only root, non-root user, no host
//! mounts) rather than taking it from a spec.

use std::collections::BTreeMap;
use std::time::Duration;

/// What kind of work a job is: decides its labels and, with server policy,
/// its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A learner's submission (one stage: compile or run).
    Submission,
    /// A developer's workflow job.
    Workflow,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Submission => "submission",
            JobKind::Workflow => "workflow",
        }
    }
}

/// One job: the isolation boundary (a namespace on Kubernetes; a set of
/// labelled containers on Docker) that its sandboxes live in.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Lowercase letters, digits and `-`, at most [`MAX_JOB_ID`] characters:
    /// it names the job's namespace and labels its containers.
    pub id: String,
    pub kind: JobKind,
    /// The tenant the job runs for (a label; never used for access).
    pub tenant: Option<String>,
    /// The name of an egress grant of the server's policy, or `None`: no
    /// network at all. Only server-side policy sets this, never a request.
    pub egress: Option<String>,
    /// After this long the job is abandoned whatever happens, and any
    /// runner's garbage collection removes what is left of it.
    pub lifetime: Duration,
    /// The largest sandbox the job will start (sizes the job's quota).
    pub largest: Resources,
}

/// Longest job id: `<prefix>-<id>` must fit a DNS label (63).
pub const MAX_JOB_ID: usize = 48;

/// Whether `id` can name a job everywhere it has to (DNS labels, Docker
/// container names and labels).
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_JOB_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// Compute a sandbox may use; requests equal limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    pub memory_bytes: u64,
    /// CPUs, in billionths.
    pub nano_cpus: i64,
    /// Writable scratch space (the tmpfs mounts), in bytes.
    pub scratch_bytes: u64,
}

impl Resources {
    /// The larger of each.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            nano_cpus: self.nano_cpus.max(other.nano_cpus),
            scratch_bytes: self.scratch_bytes.max(other.scratch_bytes),
        }
    }
}

/// A writable, size-limited, memory-backed mount; everything else is
/// read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    pub path: String,
    pub size_bytes: u64,
    /// Whether programs may be executed from it (compiled binaries in /work).
    pub exec: bool,
    /// Octal mode of its root.
    pub mode: u32,
}

/// The seccomp profile a sandbox runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompProfile {
    /// The engine's default (Docker's built-in; Kubernetes' RuntimeDefault).
    EngineDefault,
    /// The runner's allow-list, as JSON (Docker passes it inline; on
    /// Kubernetes it must be installed on the nodes and is named by the
    /// namespace policy instead).
    Runner(String),
}

/// One sandbox (a container, a pod) of a job: its image and limits. Its
/// user is not here: each backend leases a uid of its own for every
/// sandbox ([`super::uids`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSpec {
    /// What the sandbox is for within its job (`compile`, `run`, `job`):
    /// names the pod, labels the container.
    pub role: String,
    /// A local tag or `name@sha256:…`.
    pub image: String,
    pub memory_bytes: u64,
    pub nano_cpus: i64,
    pub pids: u32,
    pub scratch: Vec<Scratch>,
    pub shm_bytes: u64,
    pub nofile: u64,
    pub seccomp: SeccompProfile,
    /// Extra labels (a language, a pool) for operators; never decide access.
    pub labels: BTreeMap<String, String>,
}

impl SandboxSpec {
    pub fn resources(&self) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes,
            nano_cpus: self.nano_cpus,
            scratch_bytes: self.scratch.iter().map(|s| s.size_bytes).sum::<u64>() + self.shm_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_fit_names_and_labels() {
        assert!(valid_job_id("0f3a9c2e1b7d4e6fa8b9c0d1e2f3a4b5"));
        assert!(valid_job_id("wf-12-build-3"));
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            &"a".repeat(MAX_JOB_ID + 1),
        ] {
            assert!(!valid_job_id(bad), "{bad:?}");
        }
        // The longest prefix the namespace policy accepts (12), a dash and
        // the longest id fit a namespace name (a DNS label, 63).
        const { assert!(12 + 1 + MAX_JOB_ID <= 63) };
    }

    #[test]
    fn the_largest_of_two_sandboxes() {
        let a = Resources {
            memory_bytes: 1,
            nano_cpus: 5,
            scratch_bytes: 3,
        };
        let b = Resources {
            memory_bytes: 4,
            nano_cpus: 2,
            scratch_bytes: 3,
        };
        assert_eq!(
            a.max(b),
            Resources {
                memory_bytes: 4,
                nano_cpus: 5,
                scratch_bytes: 3
            }
        );
    }
}
