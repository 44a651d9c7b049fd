//! The sandbox a stage runs in, from the policy and the stage's limits, in
//! the backends' engine-neutral terms.

use std::collections::BTreeMap;

use crate::backend::{SandboxSpec, Scratch, SeccompProfile};
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

/// The sandbox of a stage (`role`: compile or run) of a `language` in `image`.
pub fn stage_sandbox(
    policy: &SandboxPolicy,
    image: &str,
    language: &str,
    role: &str,
    limits: &StageLimits,
) -> SandboxSpec {
    let c = &policy.container;
    SandboxSpec {
        role: role.to_owned(),
        image: image.to_owned(),
        memory_bytes: limits.memory_bytes,
        nano_cpus: c.nano_cpus,
        pids: limits.pids,
        scratch: vec![
            Scratch {
                path: WORK_DIR.into(),
                size_bytes: c.work_tmpfs_bytes,
                exec: true,
                mode: 0o700,
            },
            Scratch {
                path: "/tmp".into(),
                size_bytes: c.tmp_tmpfs_bytes,
                exec: false,
                mode: 0o1777,
            },
        ],
        shm_bytes: c.shm_bytes,
        nofile: c.nofile,
        seccomp: match &c.seccomp {
            Seccomp::EngineDefault => SeccompProfile::EngineDefault,
            Seccomp::Profile { json, .. } => SeccompProfile::Runner(json.clone()),
        },
        labels: BTreeMap::from([("language".to_owned(), language.to_owned())]),
    }
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
    fn stage_sandboxes_follow_the_policy_and_limits() {
        let p = SandboxPolicy::embedded().unwrap();
        let l = LimitsRequest::default().resolve(&p).unwrap();
        let s = stage_sandbox(&p, "img", "c", "compile", &l.compile);
        assert_eq!(s.memory_bytes, l.compile.memory_bytes);
        assert_eq!(s.pids, p.compile.pids);
        assert_eq!(s.role, "compile");
        assert_eq!(s.labels["language"], "c");
        let work = s.scratch.iter().find(|t| t.path == "/work").unwrap();
        assert!(work.exec);
        assert_eq!(work.size_bytes, p.container.work_tmpfs_bytes);
        let tmp = s.scratch.iter().find(|t| t.path == "/tmp").unwrap();
        assert!(!tmp.exec);
        assert!(
            matches!(&s.seccomp, SeccompProfile::Runner(json) if json.contains("SCMP_ACT_ERRNO"))
        );
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
