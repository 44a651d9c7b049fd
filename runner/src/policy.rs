//! The sandbox policy (`policies/sandbox.toml`): limits every submission runs
//! under, parsed strictly and validated once into [`SandboxPolicy`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::backend::uids::UidRange;

/// The policy shipped in the repository, embedded so the binary works anywhere.
pub const EMBEDDED_POLICY: &str = include_str!("../../policies/sandbox.toml");
/// The seccomp profile the embedded policy names.
pub const EMBEDDED_SECCOMP: &str = include_str!("../../policies/seccomp/sandbox.json");
pub(crate) const EMBEDDED_SECCOMP_NAME: &str = "seccomp/sandbox.json";

/// Lowest uid a sandbox may run as: keeps sandbox users clear of system and
/// regular login users on the host.
pub const MIN_SANDBOX_UID: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("policy {origin}: {key} {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
    },
    #[error("policy {origin}: cannot read seccomp profile {path}: {source}")]
    Seccomp {
        origin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {origin}: seccomp profile {path} is not a valid profile: {message}")]
    SeccompInvalid {
        origin: String,
        path: PathBuf,
        message: String,
    },
}

/// A limit a request may set, up to `max`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bounded {
    pub default: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePolicy {
    pub wall_time_ms: Bounded,
    pub cpu_time_ms: Bounded,
    pub memory_mb: Bounded,
    pub pids: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerFile {
    cpus: f64,
    work_tmpfs_mb: u64,
    tmp_tmpfs_mb: u64,
    shm_mb: u64,
    nofile: u64,
    uids: UidsFile,
    seccomp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UidsFile {
    first: u32,
    count: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputPolicy {
    pub stdout_max_bytes: Bounded,
    pub stderr_max_bytes: Bounded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputPolicy {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_file_bytes: u64,
    pub max_stdin_bytes: u64,
    pub max_args: usize,
    pub max_arg_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    run: StagePolicy,
    compile: StagePolicy,
    container: ContainerFile,
    output: OutputPolicy,
    input: InputPolicy,
}

/// Which seccomp filter sandbox containers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// The engine's built-in default profile.
    EngineDefault,
    /// A profile of ours: its JSON text, and where it came from.
    Profile { origin: String, json: String },
}

/// Container-wide settings, validated.
#[derive(Debug, Clone)]
pub struct ContainerPolicy {
    pub nano_cpus: i64,
    pub work_tmpfs_bytes: u64,
    pub tmp_tmpfs_bytes: u64,
    pub shm_bytes: u64,
    pub nofile: u64,
    /// The uids (each also a gid) sandboxes are leased from.
    pub uids: UidRange,
    pub seccomp: Seccomp,
}

/// The validated policy. Construct with [`SandboxPolicy::embedded`] or
/// [`SandboxPolicy::load`].
#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    pub run: StagePolicy,
    pub compile: StagePolicy,
    pub container: ContainerPolicy,
    pub output: OutputPolicy,
    pub input: InputPolicy,
    /// Where the policy came from, for messages.
    pub origin: String,
}

impl SandboxPolicy {
    /// The policy compiled into the binary (`policies/sandbox.toml`).
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::parse(EMBEDDED_POLICY, "policies/sandbox.toml (embedded)", |p| {
            if p == Path::new(EMBEDDED_SECCOMP_NAME) {
                Ok(EMBEDDED_SECCOMP.to_owned())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the embedded policy only carries seccomp/sandbox.json",
                ))
            }
        })
    }

    /// Reads a policy file; its seccomp profile is resolved next to it.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        Self::parse(&text, &path.display().to_string(), |p| {
            std::fs::read_to_string(dir.join(p))
        })
    }

    pub(crate) fn parse(
        text: &str,
        origin: &str,
        read_profile: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, problem: String| PolicyError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            problem,
        };

        check_stage_limits(&file, &invalid)?;

        let c = &file.container;
        // Quotas are whole milli-CPUs: a value that rounds to none would
        // give Docker a quota of 0, which means no limit at all.
        if !(c.cpus >= 0.001 && c.cpus <= 256.0) {
            return Err(invalid(
                "container.cpus",
                format!(
                    "is {}; it must be at least 0.001 (one milli-CPU) and at most 256",
                    c.cpus
                ),
            ));
        }
        for (key, mb) in [
            ("container.work_tmpfs_mb", c.work_tmpfs_mb),
            ("container.tmp_tmpfs_mb", c.tmp_tmpfs_mb),
            ("container.shm_mb", c.shm_mb),
        ] {
            if !(1..=65_536).contains(&mb) {
                return Err(invalid(
                    key,
                    format!("is {mb}; it must be between 1 and 65536"),
                ));
            }
        }
        if !(16..=1_048_576).contains(&c.nofile) {
            return Err(invalid(
                "container.nofile",
                format!("is {}; it must be between 16 and 1048576", c.nofile),
            ));
        }
        let uids = UidRange::new(c.uids.first, c.uids.count, MIN_SANDBOX_UID)
            .map_err(|p| invalid("container.uids", p.to_string()))?;
        let seccomp = seccomp_of(&c.seccomp, origin, read_profile)?;
        let i = &file.input;
        if i.max_files == 0 || i.max_file_bytes == 0 || i.max_total_file_bytes == 0 {
            return Err(invalid(
                "input",
                "max_files, max_file_bytes and max_total_file_bytes must be above 0".into(),
            ));
        }
        if i.max_file_bytes > c.work_tmpfs_mb << 20 {
            return Err(invalid(
                "input.max_file_bytes",
                "is larger than container.work_tmpfs_mb: such a file could never be placed".into(),
            ));
        }

        Ok(SandboxPolicy {
            container: ContainerPolicy {
                // Rounded to whole milli-CPUs: the precision CFS quotas have anyway.
                nano_cpus: (c.cpus * 1000.0).round() as i64 * 1_000_000,
                work_tmpfs_bytes: c.work_tmpfs_mb << 20,
                tmp_tmpfs_bytes: c.tmp_tmpfs_mb << 20,
                shm_bytes: c.shm_mb << 20,
                nofile: c.nofile,
                uids,
                seccomp,
            },
            run: file.run,
            compile: file.compile,
            output: file.output,
            input: file.input,
            origin: origin.to_owned(),
        })
    }
}

/// The limits a request may set, per stage and for its output.
fn check_stage_limits(
    file: &PolicyFile,
    invalid: &impl Fn(&str, String) -> PolicyError,
) -> Result<(), PolicyError> {
    for (name, stage) in [("run", &file.run), ("compile", &file.compile)] {
        check_bounded(&stage.wall_time_ms, 1, 3_600_000)
            .map_err(|p| invalid(&format!("{name}.wall_time_ms"), p.to_string()))?;
        check_bounded(&stage.cpu_time_ms, 1, 3_600_000)
            .map_err(|p| invalid(&format!("{name}.cpu_time_ms"), p.to_string()))?;
        check_bounded(&stage.memory_mb, crate::limits::MIN_MEMORY_MB, 1 << 20)
            .map_err(|p| invalid(&format!("{name}.memory_mb"), p.to_string()))?;
        if !(8..=100_000).contains(&stage.pids) {
            return Err(invalid(
                &format!("{name}.pids"),
                format!("is {}; it must be between 8 and 100000", stage.pids),
            ));
        }
    }
    check_bounded(&file.output.stdout_max_bytes, 1, 64 << 20)
        .map_err(|p| invalid("output.stdout_max_bytes", p.to_string()))?;
    check_bounded(&file.output.stderr_max_bytes, 1, 64 << 20)
        .map_err(|p| invalid("output.stderr_max_bytes", p.to_string()))?;
    Ok(())
}

/// The profile `name` (`container.seccomp`) names: the engine's default, or
/// a profile file next to the policy, read and checked.
fn seccomp_of(
    name: &str,
    origin: &str,
    read_profile: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Seccomp, PolicyError> {
    if name == "docker-default" {
        return Ok(Seccomp::EngineDefault);
    }
    let rel = Path::new(name);
    if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
        return Err(PolicyError::Invalid {
            origin: origin.to_owned(),
            key: "container.seccomp".to_owned(),
            problem: format!(
                "is {name:?}; give a path relative to the policy file, inside its directory, or \"docker-default\""
            ),
        });
    }
    let json = read_profile(rel).map_err(|source| PolicyError::Seccomp {
        origin: origin.to_owned(),
        path: rel.to_owned(),
        source,
    })?;
    check_seccomp(&json).map_err(|e| PolicyError::SeccompInvalid {
        origin: origin.to_owned(),
        path: rel.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Seccomp::Profile {
        origin: name.to_owned(),
        json,
    })
}

/// Why a bounded limit (`default` up to `max`) is refused;
/// [`PolicyError::Invalid`] names the key.
#[derive(Debug, thiserror::Error)]
enum BoundsError {
    #[error("must be at least {min} (default and max)")]
    BelowMin { min: u64 },
    #[error("max is {max}; it must be at most {ceiling}")]
    AboveCeiling { max: u64, ceiling: u64 },
    #[error("default ({default}) is above max ({max})")]
    DefaultAboveMax { default: u64, max: u64 },
}

fn check_bounded(b: &Bounded, min: u64, ceiling: u64) -> Result<(), BoundsError> {
    if b.default < min || b.max < min {
        return Err(BoundsError::BelowMin { min });
    }
    if b.max > ceiling {
        return Err(BoundsError::AboveCeiling {
            max: b.max,
            ceiling,
        });
    }
    if b.default > b.max {
        return Err(BoundsError::DefaultAboveMax {
            default: b.default,
            max: b.max,
        });
    }
    Ok(())
}

/// Checks the shape the engine needs, so a broken profile fails at start-up and
/// not on the first submission.
fn check_seccomp(json: &str) -> Result<(), SeccompProblem> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let action = v
        .get("defaultAction")
        .and_then(|a| a.as_str())
        .ok_or(SeccompProblem::NoDefaultAction)?;
    if action == "SCMP_ACT_ALLOW" {
        return Err(SeccompProblem::AllowsByDefault);
    }
    let syscalls = v
        .get("syscalls")
        .and_then(|s| s.as_array())
        .ok_or(SeccompProblem::NoSyscalls)?;
    if syscalls.is_empty() {
        return Err(SeccompProblem::EmptySyscalls);
    }
    Ok(())
}

/// Why a seccomp profile is refused; [`PolicyError::SeccompInvalid`] names
/// the policy and the profile's path.
#[derive(Debug, thiserror::Error)]
enum SeccompProblem {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("it has no \"defaultAction\"")]
    NoDefaultAction,
    #[error("its defaultAction is SCMP_ACT_ALLOW; a sandbox profile must deny by default")]
    AllowsByDefault,
    #[error("it has no \"syscalls\" list")]
    NoSyscalls,
    #[error("its \"syscalls\" list is empty")]
    EmptySyscalls,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(replace: &str, by: &str) -> Result<SandboxPolicy, PolicyError> {
        assert!(
            EMBEDDED_POLICY.contains(replace),
            "fixture drifted: {replace}"
        );
        let text = EMBEDDED_POLICY.replace(replace, by);
        SandboxPolicy::parse(&text, "test", |_| Ok(EMBEDDED_SECCOMP.to_owned()))
    }

    #[test]
    fn embedded_policy_is_valid() {
        let p = SandboxPolicy::embedded().unwrap();
        assert_eq!(p.container.uids.first, 10001);
        assert!(p.container.uids.count >= 64);
        assert_eq!(p.container.nano_cpus, 1_000_000_000);
        assert!(matches!(p.container.seccomp, Seccomp::Profile { .. }));
        assert!(p.run.wall_time_ms.default <= p.run.wall_time_ms.max);
    }

    /// Found by the `sandbox_policy` fuzz target: 0.0004 passed the
    /// "above 0" check and rounded to a quota of 0 nano-CPUs (no limit).
    #[test]
    fn cpus_that_round_to_no_quota_are_refused() {
        for cpus in ["cpus = 0.0004", "cpus = 1e-300", "cpus = 0.0"] {
            let err = with("cpus = 1.0", cpus).unwrap_err().to_string();
            assert!(err.contains("at least 0.001"), "{cpus}: {err}");
        }
        let p = with("cpus = 1.0", "cpus = 0.001").unwrap();
        assert_eq!(p.container.nano_cpus, 1_000_000);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = with("pids = 64", "pids = 64\npidz = 3").unwrap_err();
        assert!(err.to_string().contains("pidz"), "{err}");
    }

    #[test]
    fn default_above_max_is_rejected() {
        let err = with(
            "memory_mb = { default = 128, max = 1024 }",
            "memory_mb = { default = 2048, max = 1024 }",
        )
        .unwrap_err();
        assert!(err.to_string().contains("run.memory_mb"), "{err}");
    }

    #[test]
    fn uid_ranges_reaching_root_system_users_or_nobody_are_rejected() {
        let default = "uids = { first = 10001, count = 4096 }";
        for (range, why) in [
            ("uids = { first = 0, count = 10 }", "never run as root"),
            ("uids = { first = 1000, count = 10 }", "never run as root"),
            ("uids = { first = 10001, count = 0 }", "count is 0"),
            ("uids = { first = 60000, count = 10000 }", "below 65534"),
            ("uids = { first = 4294967295, count = 2 }", "below 65534"),
        ] {
            let err = with(default, range).unwrap_err().to_string();
            assert!(
                err.contains("container.uids") && err.contains(why),
                "{range}: {err}"
            );
        }
        let err = with(default, "user = \"10001:10001\"").unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
    }

    #[test]
    fn seccomp_path_may_not_leave_the_policy_directory() {
        let err = with(
            "seccomp = \"seccomp/sandbox.json\"",
            "seccomp = \"../etc/x.json\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("container.seccomp"), "{err}");
    }

    #[test]
    fn allow_by_default_profile_is_rejected() {
        let text = EMBEDDED_POLICY.to_owned();
        let err = SandboxPolicy::parse(&text, "t", |_| {
            Ok(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#.into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("deny by default"), "{err}");
    }

    /// What takes from a pool wider than the container and is not bounded
    /// per uid stays out of the allow-list (policies/seccomp/sandbox.json,
    /// reviewNotes); the real-engine test calls each and expects EPERM.
    #[test]
    fn calls_on_host_wide_pools_are_not_allowed() {
        let v: serde_json::Value = serde_json::from_str(EMBEDDED_SECCOMP).unwrap();
        let allowed: Vec<&str> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|e| e["names"].as_array().unwrap())
            .map(|n| n.as_str().unwrap())
            .collect();
        for denied in [
            "io_setup",
            "io_submit",
            "io_getevents",
            "io_pgetevents",
            "io_cancel",
            "io_destroy",
            "add_key",
            "keyctl",
            "request_key",
            "fanotify_init",
            "fanotify_mark",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "msgget",
            "msgsnd",
            "msgrcv",
            "msgctl",
            "semget",
            "semop",
            "semtimedop",
            "semctl",
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
        ] {
            assert!(!allowed.contains(&denied), "{denied} is allowed");
        }
        assert!(v["reviewNotes"].as_array().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn docker_default_seccomp_is_accepted() {
        let p = with(
            "seccomp = \"seccomp/sandbox.json\"",
            "seccomp = \"docker-default\"",
        )
        .unwrap();
        assert_eq!(p.container.seccomp, Seccomp::EngineDefault);
    }
}
