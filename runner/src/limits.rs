//! Limits a request asks for, resolved against the policy into the limits a
//! stage runs under. A request may lower a limit; going over a maximum is an
//! error naming the limit, never a silent clamp.

use serde::{Deserialize, Serialize};

use crate::policy::{Bounded, SandboxPolicy, StagePolicy};

/// Limits a request may set. Every field is optional: absent means the
/// policy's default. Shared by `runner exec` and the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub run_wall_time_ms: Option<u64>,
    pub run_cpu_time_ms: Option<u64>,
    pub run_memory_mb: Option<u64>,
    pub compile_wall_time_ms: Option<u64>,
    pub compile_cpu_time_ms: Option<u64>,
    pub compile_memory_mb: Option<u64>,
    pub stdout_max_bytes: Option<u64>,
    pub stderr_max_bytes: Option<u64>,
}

/// The limits one stage runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageLimits {
    pub wall_time_ms: u64,
    pub cpu_time_ms: u64,
    pub memory_bytes: u64,
    pub pids: u32,
    pub stdout_max_bytes: u64,
    pub stderr_max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub compile: StageLimits,
    pub run: StageLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "{name} = {requested} is over the maximum of {max} set by the sandbox policy; ask for {max} or less"
    )]
    OverMaximum {
        name: &'static str,
        requested: u64,
        max: u64,
    },
    #[error("{name} = 0 is not a limit; ask for at least 1 or leave it out for the default")]
    Zero { name: &'static str },
    #[error(
        "{name} = {requested} is under the minimum of {min} the container engine accepts; ask for {min} or more"
    )]
    UnderMinimum {
        name: &'static str,
        requested: u64,
        min: u64,
    },
}

/// The smallest memory limit, in MiB, Docker accepts for a container (it
/// refuses less than 6 MiB). The policy's memory limits are held to it too.
pub const MIN_MEMORY_MB: u64 = 6;

fn pick(name: &'static str, requested: Option<u64>, bound: &Bounded) -> Result<u64, LimitError> {
    match requested {
        None => Ok(bound.default),
        Some(0) => Err(LimitError::Zero { name }),
        Some(v) if v > bound.max => Err(LimitError::OverMaximum {
            name,
            requested: v,
            max: bound.max,
        }),
        Some(v) => Ok(v),
    }
}

fn pick_memory(
    name: &'static str,
    requested: Option<u64>,
    bound: &Bounded,
) -> Result<u64, LimitError> {
    match requested {
        Some(v) if (1..MIN_MEMORY_MB).contains(&v) => Err(LimitError::UnderMinimum {
            name,
            requested: v,
            min: MIN_MEMORY_MB,
        }),
        _ => pick(name, requested, bound),
    }
}

fn stage(
    names: [&'static str; 3],
    wall: Option<u64>,
    cpu: Option<u64>,
    memory: Option<u64>,
    policy: &StagePolicy,
    stdout: u64,
    stderr: u64,
) -> Result<StageLimits, LimitError> {
    Ok(StageLimits {
        wall_time_ms: pick(names[0], wall, &policy.wall_time_ms)?,
        cpu_time_ms: pick(names[1], cpu, &policy.cpu_time_ms)?,
        memory_bytes: pick_memory(names[2], memory, &policy.memory_mb)? << 20,
        pids: policy.pids,
        stdout_max_bytes: stdout,
        stderr_max_bytes: stderr,
    })
}

impl LimitsRequest {
    pub fn resolve(&self, policy: &SandboxPolicy) -> Result<Limits, LimitError> {
        let stdout = pick(
            "stdout_max_bytes",
            self.stdout_max_bytes,
            &policy.output.stdout_max_bytes,
        )?;
        let stderr = pick(
            "stderr_max_bytes",
            self.stderr_max_bytes,
            &policy.output.stderr_max_bytes,
        )?;
        Ok(Limits {
            run: stage(
                ["run_wall_time_ms", "run_cpu_time_ms", "run_memory_mb"],
                self.run_wall_time_ms,
                self.run_cpu_time_ms,
                self.run_memory_mb,
                &policy.run,
                stdout,
                stderr,
            )?,
            compile: stage(
                [
                    "compile_wall_time_ms",
                    "compile_cpu_time_ms",
                    "compile_memory_mb",
                ],
                self.compile_wall_time_ms,
                self.compile_cpu_time_ms,
                self.compile_memory_mb,
                &policy.compile,
                stdout,
                stderr,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SandboxPolicy {
        SandboxPolicy::embedded().unwrap()
    }

    #[test]
    fn absent_values_take_the_policy_defaults() {
        let p = policy();
        let l = LimitsRequest::default().resolve(&p).unwrap();
        assert_eq!(l.run.wall_time_ms, p.run.wall_time_ms.default);
        assert_eq!(l.run.memory_bytes, p.run.memory_mb.default << 20);
        assert_eq!(l.compile.cpu_time_ms, p.compile.cpu_time_ms.default);
        assert_eq!(l.run.pids, p.run.pids);
        assert_eq!(l.compile.pids, p.compile.pids);
    }

    #[test]
    fn lower_values_are_kept() {
        let l = LimitsRequest {
            run_wall_time_ms: Some(500),
            run_memory_mb: Some(32),
            ..Default::default()
        }
        .resolve(&policy())
        .unwrap();
        assert_eq!(l.run.wall_time_ms, 500);
        assert_eq!(l.run.memory_bytes, 32 << 20);
    }

    #[test]
    fn over_the_maximum_is_refused_naming_the_limit() {
        let p = policy();
        let max = p.run.memory_mb.max;
        let err = LimitsRequest {
            run_memory_mb: Some(max + 1),
            ..Default::default()
        }
        .resolve(&p)
        .unwrap_err();
        assert_eq!(
            err,
            LimitError::OverMaximum {
                name: "run_memory_mb",
                requested: max + 1,
                max
            }
        );
        assert!(err.to_string().contains("run_memory_mb"));
        assert!(err.to_string().contains(&max.to_string()));
    }

    #[test]
    fn zero_is_refused() {
        let err = LimitsRequest {
            compile_wall_time_ms: Some(0),
            ..Default::default()
        }
        .resolve(&policy())
        .unwrap_err();
        assert_eq!(
            err,
            LimitError::Zero {
                name: "compile_wall_time_ms"
            }
        );
    }

    #[test]
    fn memory_under_the_engines_minimum_is_refused_naming_it() {
        let p = policy();
        for mb in 1..MIN_MEMORY_MB {
            let err = LimitsRequest {
                run_memory_mb: Some(mb),
                ..Default::default()
            }
            .resolve(&p)
            .unwrap_err();
            assert_eq!(
                err,
                LimitError::UnderMinimum {
                    name: "run_memory_mb",
                    requested: mb,
                    min: MIN_MEMORY_MB
                }
            );
            assert!(err.to_string().contains("the minimum of 6"), "{err}");
        }
        let l = LimitsRequest {
            compile_memory_mb: Some(MIN_MEMORY_MB),
            ..Default::default()
        }
        .resolve(&p)
        .unwrap();
        assert_eq!(l.compile.memory_bytes, MIN_MEMORY_MB << 20);
    }

    #[test]
    fn unknown_request_fields_are_rejected() {
        let err = serde_json::from_str::<LimitsRequest>(r#"{"network": true}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `network`"), "{err}");
    }
}
