//! The container a stage runs in, from the policy and the stage's limits.

use std::collections::BTreeMap;

use super::labels;
use super::uids::UidLease;
use crate::engine::{SandboxSpec, Tmpfs};
use crate::limits::StageLimits;
use crate::policy::{SandboxPolicy, Seccomp};

/// Where submissions live inside the sandbox (a tmpfs, the only writable
/// place besides /tmp and /dev/shm).
pub const WORK_DIR: &str = "/work";

/// Environment every stage starts with; a language's manifest adds to it.
pub const BASE_ENV: [(&str, &str); 5] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", WORK_DIR),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("TMPDIR", "/tmp"),
];

/// The container of a stage. It runs as the first uid of the policy's range
/// until [`run_as`] gives it the uid leased for it.
pub fn stage_spec(
    policy: &SandboxPolicy,
    image: &str,
    labels: BTreeMap<String, String>,
    limits: &StageLimits,
) -> SandboxSpec {
    let c = &policy.container;
    SandboxSpec {
        image: image.to_owned(),
        labels,
        user: format!("{0}:{0}", c.uids.first),
        memory_bytes: limits.memory_bytes,
        nano_cpus: c.nano_cpus,
        pids: limits.pids,
        tmpfs: vec![
            Tmpfs {
                path: WORK_DIR.into(),
                size_bytes: c.work_tmpfs_bytes,
                exec: true,
                mode: 0o700,
            },
            Tmpfs {
                path: "/tmp".into(),
                size_bytes: c.tmp_tmpfs_bytes,
                exec: false,
                mode: 0o1777,
            },
        ],
        shm_bytes: c.shm_bytes,
        nofile: c.nofile,
        seccomp: match &c.seccomp {
            Seccomp::EngineDefault => None,
            Seccomp::Profile { json, .. } => Some(json.clone()),
        },
    }
}

/// Makes the container run as the leased uid (and gid); its tmpfs mounts
/// are owned by them, and a label says which uid it holds.
pub fn run_as(spec: &mut SandboxSpec, lease: &UidLease) {
    spec.user = lease.user();
    spec.labels
        .insert(labels::UID.to_owned(), lease.uid().to_string());
}

/// `NAME=value` strings: the base environment overlaid with the language's.
pub fn environment(extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut env: BTreeMap<&str, &str> = BASE_ENV.into_iter().collect();
    for (k, v) in extra {
        env.insert(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitsRequest;

    #[test]
    fn stage_spec_follows_the_policy_and_limits() {
        let p = SandboxPolicy::embedded().unwrap();
        let l = LimitsRequest::default().resolve(&p).unwrap();
        let s = stage_spec(&p, "img", BTreeMap::new(), &l.compile);
        assert_eq!(s.memory_bytes, l.compile.memory_bytes);
        assert_eq!(s.pids, p.compile.pids);
        assert_eq!(s.user, "10001:10001");
        let work = s.tmpfs.iter().find(|t| t.path == "/work").unwrap();
        assert!(work.exec);
        assert_eq!(work.size_bytes, p.container.work_tmpfs_bytes);
        let tmp = s.tmpfs.iter().find(|t| t.path == "/tmp").unwrap();
        assert!(!tmp.exec);
        assert!(s.seccomp.unwrap().contains("SCMP_ACT_ERRNO"));
    }

    #[test]
    fn manifest_env_overrides_base_env() {
        let env = environment(&BTreeMap::from([
            ("HOME".to_string(), "/tmp".to_string()),
            ("GOCACHE".to_string(), "/tmp/go".to_string()),
        ]));
        assert!(env.contains(&"HOME=/tmp".to_string()));
        assert!(env.contains(&"GOCACHE=/tmp/go".to_string()));
        assert!(env.contains(&"LANG=C.UTF-8".to_string()));
    }
}
