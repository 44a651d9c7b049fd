//! Piston v2 compatibility: `GET /api/v2/runtimes` and `POST
//! /api/v2/execute` (with or without a trailing slash) with Piston's request
//! and response fields and its observable behaviour, so existing Piston
//! clients work unchanged: unknown request fields are ignored, a file named
//! `""` gets the default name, a compile error fills `run` with the compile
//! stage, and errors (404 included) read `{"message": ...}`. Runs go through
//! the same durable queue, limits and audit as `/v1`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{PistonAuth, PistonJson, require};
use super::model::{Encoding, FileIn, request_error};
use super::runs::enqueue;
use crate::limits::LimitsRequest;
use crate::sandbox::{RunRequest, new_job_id};
use crate::service::auth::Action;
use crate::submission::SubmissionFile;
use crate::verdict::{LimitHit, RunResult, StageResult, Status};

pub async fn runtimes(State(st): State<AppState>, PistonAuth(_p): PistonAuth) -> Json<Value> {
    let list: Vec<Value> = st
        .sandbox
        .catalog()
        .languages()
        .iter()
        .map(|l| json!({ "language": l.name, "version": l.version, "aliases": l.aliases }))
        .collect();
    Json(Value::Array(list))
}

/// Piston's execute request, field for field. Unknown fields are ignored, as
/// Piston ignores them (`/v1` refuses them: there, strictness is ours).
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    language: String,
    version: String,
    files: Vec<PistonFile>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    compile_timeout: Option<i64>,
    #[serde(default)]
    run_timeout: Option<i64>,
    #[serde(default)]
    compile_cpu_time: Option<i64>,
    #[serde(default)]
    run_cpu_time: Option<i64>,
    #[serde(default)]
    compile_memory_limit: Option<i64>,
    #[serde(default)]
    run_memory_limit: Option<i64>,
}

/// A file of a Piston request: `name` is optional, and empty means absent.
#[derive(Debug, Deserialize)]
pub struct PistonFile {
    #[serde(default)]
    name: Option<String>,
    content: String,
    #[serde(default)]
    encoding: Encoding,
}

/// Piston's stage result.
#[derive(Debug, Serialize)]
pub struct PistonStage {
    stdout: String,
    stderr: String,
    output: String,
    code: Option<i32>,
    signal: Option<String>,
    message: Option<String>,
    status: Option<&'static str>,
    cpu_time: u64,
    wall_time: u64,
    memory: u64,
}

/// Piston skips a limit given as 0 (or absent): the default applies.
fn ms(name: &str, v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(-1) | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u64)),
        Some(n) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{name} must be a positive number of milliseconds (or -1), not {n}"),
        )
        .piston()),
    }
}

/// Piston gives memory in bytes, -1 for "no limit": here that means the
/// policy's maximum.
fn memory_mb(name: &str, v: Option<i64>, max_mb: u64) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(max_mb)),
        Some(n) if n > 0 => Ok(Some((n as u64).div_ceil(1 << 20))),
        Some(n) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{name} must be a positive number of bytes (or -1), not {n}"),
        )
        .piston()),
    }
}

impl ExecuteRequest {
    fn into_request(self, st: &AppState) -> Result<RunRequest, ApiError> {
        let lang = st
            .sandbox
            .catalog()
            .find(&self.language, Some(&self.version))
            .map_err(|e| request_error(e.into()).piston())?;
        let mut files = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.into_iter().enumerate() {
            let file = FileIn {
                name: f.name.filter(|n| !n.is_empty()),
                content: f.content,
                encoding: f.encoding,
            };
            let content = file.decode(i).map_err(ApiError::piston)?;
            let name = match file.name {
                Some(n) => n,
                None => default_name(&lang.name, &lang.source_extensions, i, &content),
            };
            files.push(SubmissionFile { name, content });
        }
        let policy = st.sandbox.policy();
        Ok(RunRequest {
            language: self.language,
            version: Some(self.version),
            files,
            stdin: self.stdin.unwrap_or_default().into_bytes(),
            args: self.args.unwrap_or_default(),
            limits: LimitsRequest {
                run_wall_time_ms: ms("run_timeout", self.run_timeout)?,
                run_cpu_time_ms: ms("run_cpu_time", self.run_cpu_time)?,
                run_memory_mb: memory_mb(
                    "run_memory_limit",
                    self.run_memory_limit,
                    policy.run.memory_mb.max,
                )?,
                compile_wall_time_ms: ms("compile_timeout", self.compile_timeout)?,
                compile_cpu_time_ms: ms("compile_cpu_time", self.compile_cpu_time)?,
                compile_memory_mb: memory_mb(
                    "compile_memory_limit",
                    self.compile_memory_limit,
                    policy.compile.memory_mb.max,
                )?,
                stdout_max_bytes: None,
                stderr_max_bytes: None,
            },
        })
    }
}

/// Piston picks a name when a file has none. Ours keep the language's
/// extension, and Java's the public class, which javac insists on.
fn default_name(language: &str, extensions: &[String], index: usize, content: &[u8]) -> String {
    if language == "java"
        && let Some(class) = public_class(&String::from_utf8_lossy(content))
    {
        return format!("{class}.java");
    }
    let ext = extensions.first().map(String::as_str).unwrap_or(".code");
    format!("file{index}{ext}")
}

fn public_class(source: &str) -> Option<String> {
    let mut words = source.split(|c: char| c.is_whitespace() || c == '{');
    while let Some(w) = words.next() {
        if w == "public" {
            let mut rest = words.by_ref().filter(|w| !w.is_empty());
            let mut next = rest.next()?;
            while matches!(next, "final" | "abstract" | "static") {
                next = rest.next()?;
            }
            if next == "class" {
                let name = rest.next()?;
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                {
                    return Some(name.to_owned());
                }
            }
        }
    }
    None
}

/// Piston's statuses: RE (non-zero exit), SG (signal), TO (time), OL/EL
/// (stdout/stderr over the limit), XX (internal); null when all went well.
fn stage(s: &StageResult) -> PistonStage {
    let (status, message) = match s.limit {
        Some(LimitHit::WallTime | LimitHit::CpuTime) => (Some("TO"), s.message.clone()),
        Some(LimitHit::Output) if s.stderr_truncated && !s.stdout_truncated => {
            (Some("EL"), s.message.clone())
        }
        Some(LimitHit::Output) => (Some("OL"), s.message.clone()),
        Some(LimitHit::Memory) => (Some("SG"), s.message.clone()),
        None => match (s.exit_code, &s.signal) {
            (_, Some(sig)) => (Some("SG"), Some(format!("killed by {sig}"))),
            (Some(0), None) => (None, None),
            (Some(c), None) => (Some("RE"), Some(format!("exited with status {c}"))),
            (None, None) => (Some("XX"), s.message.clone()),
        },
    };
    PistonStage {
        stdout: s.stdout.clone(),
        stderr: s.stderr.clone(),
        output: s.output(),
        code: s.exit_code,
        signal: s.signal.clone(),
        message,
        status,
        cpu_time: s.cpu_ms,
        wall_time: s.wall_ms,
        memory: s.memory_peak_bytes,
    }
}

pub fn response(r: &RunResult) -> Value {
    let mut out = json!({ "language": r.language, "version": r.version });
    if let Some(c) = &r.compile {
        out["compile"] = serde_json::to_value(stage(c)).unwrap_or_default();
    }
    // Piston: when the run stage never started (the compile failed), `run`
    // is the compile stage's result; clients read `run` unconditionally.
    if let Some(run) = r.run.as_ref().or(r.compile.as_ref()) {
        out["run"] = serde_json::to_value(stage(run)).unwrap_or_default();
    }
    out
}

pub async fn execute(
    State(st): State<AppState>,
    PistonAuth(p): PistonAuth,
    PistonJson(body): PistonJson<ExecuteRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require(&p, Action::SubmitRun, "submit runs").map_err(ApiError::piston)?;
    let request = body.into_request(&st)?;
    let id = new_job_id();
    let prepared = st
        .sandbox
        .prepare_as(id.clone(), request)
        .map_err(|e| request_error(e).piston())?;
    enqueue(&st, &p, &prepared)
        .await
        .map_err(ApiError::piston)?;
    let rec = st
        .scheduler
        .wait_final(&p.tenant, &id, st.config.wait_timeout)
        .await
        .map_err(|e| ApiError::from(e).piston())?;
    match rec.and_then(|r| r.result) {
        Some(result) if result.status != Status::InternalError => {
            Ok((StatusCode::OK, Json(response(&result))))
        }
        Some(_) => Err(ApiError::internal(format!("run {id} ended with internal_error")).piston()),
        None => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the run did not finish within {} s; it is still queued or running as run {id}",
                st.config.wait_timeout.as_secs()
            ),
        )
        .piston()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_files_without_a_name_are_named_after_their_public_class() {
        let src = b"import java.util.*;\npublic final class Hello {\n public static void main(String[] a){}}";
        assert_eq!(
            default_name("java", &[".java".into()], 0, src),
            "Hello.java"
        );
        assert_eq!(
            default_name("java", &[".java".into()], 1, b"class X {}"),
            "file1.java"
        );
        assert_eq!(default_name("python", &[], 0, b""), "file0.code");
        assert_eq!(default_name("c", &[".c".into()], 2, b""), "file2.c");
    }

    fn base() -> StageResult {
        StageResult {
            stdout: "o".into(),
            stderr: String::new(),
            order: Default::default(),
            stdout_truncated: false,
            stderr_truncated: false,
            exit_code: Some(0),
            signal: None,
            wall_ms: 5,
            cpu_ms: 3,
            memory_peak_bytes: 1024,
            limit: None,
            message: None,
        }
    }

    #[test]
    fn statuses_map_to_pistons() {
        assert_eq!(stage(&base()).status, None);
        let re = StageResult {
            exit_code: Some(2),
            ..base()
        };
        assert_eq!(stage(&re).status, Some("RE"));
        let sg = StageResult {
            exit_code: None,
            signal: Some("SIGSEGV".into()),
            ..base()
        };
        assert_eq!(stage(&sg).status, Some("SG"));
        let to = StageResult {
            limit: Some(LimitHit::CpuTime),
            ..base()
        };
        assert_eq!(stage(&to).status, Some("TO"));
        let ol = StageResult {
            limit: Some(LimitHit::Output),
            stdout_truncated: true,
            ..base()
        };
        assert_eq!(stage(&ol).status, Some("OL"));
        let el = StageResult {
            limit: Some(LimitHit::Output),
            stderr_truncated: true,
            ..base()
        };
        assert_eq!(stage(&el).status, Some("EL"));
        let p = stage(&base());
        assert_eq!((p.cpu_time, p.wall_time, p.memory), (3, 5, 1024));
    }

    #[test]
    fn a_compile_error_fills_run_with_the_compile_stage() {
        let failed = StageResult {
            exit_code: Some(1),
            stderr: "error: expected ';'".into(),
            ..base()
        };
        let r = RunResult {
            status: Status::CompileError,
            language: "c".into(),
            version: "12".into(),
            compile: Some(failed),
            run: None,
            message: None,
        };
        let v = response(&r);
        assert_eq!(v["run"], v["compile"]);
        assert_eq!(v["run"]["code"], 1);
    }

    #[test]
    fn unknown_fields_are_ignored_and_empty_names_are_absent() {
        let r: ExecuteRequest = serde_json::from_str(
            r#"{"language":"py","version":"*","files":[{"name":"","content":"x","extra":1}],"client":"x"}"#,
        )
        .unwrap();
        assert_eq!(r.files[0].name.as_deref(), Some(""));
    }

    #[test]
    fn piston_limits_convert() {
        assert_eq!(ms("run_timeout", Some(3000)).unwrap(), Some(3000));
        assert_eq!(ms("run_timeout", Some(-1)).unwrap(), None);
        assert_eq!(ms("run_timeout", Some(0)).unwrap(), None, "Piston skips 0");
        assert!(ms("run_timeout", Some(-5)).is_err());
        assert_eq!(memory_mb("m", Some(0), 1024).unwrap(), None);
        assert_eq!(memory_mb("m", Some(-1), 1024).unwrap(), Some(1024));
        assert_eq!(memory_mb("m", Some(1), 1024).unwrap(), Some(1));
        assert_eq!(memory_mb("m", Some(128_000_000), 1024).unwrap(), Some(123));
    }
}
