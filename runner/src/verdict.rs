//! Results: what each stage did, and the verdict for the whole run.

use serde::{Deserialize, Serialize};

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The program ran and exited with code 0.
    Ok,
    /// The compile stage failed (including hitting one of its limits).
    CompileError,
    /// The program exited with a non-zero code or was killed by a signal.
    RuntimeError,
    /// The program exceeded its wall-clock or CPU-time limit.
    TimeLimit,
    /// The container's memory cgroup ran out and the kernel killed a process.
    MemoryLimit,
    /// The program wrote more than the stdout or stderr cap.
    OutputLimit,
    /// The sandbox itself failed; the submission is not to blame.
    InternalError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::CompileError => "compile_error",
            Status::RuntimeError => "runtime_error",
            Status::TimeLimit => "time_limit",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::InternalError => "internal_error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which limit stopped a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    WallTime,
    CpuTime,
    Memory,
    Output,
}

/// What one stage (compile or run) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageResult {
    pub stdout: String,
    pub stderr: String,
    /// stdout and stderr together, in the order the program wrote them.
    pub output: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Exit code, when the process exited (null when a signal ended it).
    pub exit_code: Option<i32>,
    /// Name of the signal that ended the process (`SIGKILL`, `SIGSEGV`, ...).
    pub signal: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
    /// The limit that stopped the stage, if one did.
    pub limit: Option<LimitHit>,
    /// Why the stage ended, in a sentence, when it did not simply exit.
    pub message: Option<String>,
}

impl StageResult {
    /// The stage ran to its end by itself with code 0.
    pub fn succeeded(&self) -> bool {
        self.limit.is_none() && self.exit_code == Some(0) && self.signal.is_none()
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: Status,
    pub language: String,
    pub version: String,
    pub compile: Option<StageResult>,
    pub run: Option<StageResult>,
    /// For `internal_error`: what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The verdict given the stages that ran.
pub fn verdict(compile: Option<&StageResult>, run: Option<&StageResult>) -> Status {
    if let Some(c) = compile {
        if !c.succeeded() {
            return Status::CompileError;
        }
    }
    let Some(r) = run else {
        // A run stage is always attempted after a good compile.
        return Status::InternalError;
    };
    match r.limit {
        Some(LimitHit::Memory) => Status::MemoryLimit,
        Some(LimitHit::WallTime | LimitHit::CpuTime) => Status::TimeLimit,
        Some(LimitHit::Output) => Status::OutputLimit,
        None if r.succeeded() => Status::Ok,
        None => Status::RuntimeError,
    }
}

/// Name of a Linux signal number (x86_64 and aarch64 agree on these).
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        16 => "SIGSTKFLT",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        23 => "SIGURG",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        28 => "SIGWINCH",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        n => return format!("SIG{n}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(exit: Option<i32>, signal: Option<&str>, limit: Option<LimitHit>) -> StageResult {
        StageResult {
            stdout: String::new(),
            stderr: String::new(),
            output: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            exit_code: exit,
            signal: signal.map(Into::into),
            wall_ms: 1,
            cpu_ms: 1,
            memory_peak_bytes: 1,
            limit,
            message: None,
        }
    }

    #[test]
    fn run_stage_outcomes_map_to_verdicts() {
        let v = |s: StageResult| verdict(None, Some(&s));
        assert_eq!(v(stage(Some(0), None, None)), Status::Ok);
        assert_eq!(v(stage(Some(1), None, None)), Status::RuntimeError);
        assert_eq!(v(stage(None, Some("SIGSEGV"), None)), Status::RuntimeError);
        // 137 from the program itself is a plain exit code, not a memory verdict.
        assert_eq!(v(stage(Some(137), None, None)), Status::RuntimeError);
        assert_eq!(
            v(stage(None, Some("SIGKILL"), Some(LimitHit::Memory))),
            Status::MemoryLimit
        );
        assert_eq!(
            v(stage(None, Some("SIGKILL"), Some(LimitHit::WallTime))),
            Status::TimeLimit
        );
        assert_eq!(
            v(stage(None, Some("SIGXCPU"), Some(LimitHit::CpuTime))),
            Status::TimeLimit
        );
        assert_eq!(
            v(stage(None, Some("SIGKILL"), Some(LimitHit::Output))),
            Status::OutputLimit
        );
    }

    #[test]
    fn a_failed_compile_is_a_compile_error_whatever_stopped_it() {
        for c in [
            stage(Some(1), None, None),
            stage(None, Some("SIGKILL"), Some(LimitHit::WallTime)),
            stage(None, Some("SIGKILL"), Some(LimitHit::Memory)),
        ] {
            assert_eq!(verdict(Some(&c), None), Status::CompileError);
        }
        let ok = stage(Some(0), None, None);
        assert_eq!(verdict(Some(&ok), Some(&ok)), Status::Ok);
        assert_eq!(verdict(Some(&ok), None), Status::InternalError);
    }

    #[test]
    fn statuses_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&Status::MemoryLimit).unwrap(),
            "\"memory_limit\""
        );
        assert_eq!(Status::CompileError.to_string(), "compile_error");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(64), "SIG64");
    }
}
