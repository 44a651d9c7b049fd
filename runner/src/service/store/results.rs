//! Results as stored: the verdict's metadata as a small JSON text on the
//! run, and each stage's stdout, stderr and output order once, as blobs —
//! the bytes the program wrote, not a JSON string of them, so a NUL costs
//! one byte, not six, and nothing is kept twice.

use super::sql::{Conn, p};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::verdict::{LimitHit, OutputOrder, RunResult, StageResult, Status};

/// Format of `runs.result_meta`.
const META_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultMeta {
    v: u32,
    status: Status,
    language: String,
    version: String,
    message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageMeta {
    stdout_truncated: bool,
    stderr_truncated: bool,
    exit_code: Option<i32>,
    signal: Option<String>,
    wall_ms: u64,
    cpu_ms: u64,
    memory_peak_bytes: u64,
    limit: Option<LimitHit>,
    message: Option<String>,
}

fn corrupt(seq: i64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("result of run #{seq}: {what}"))
}

/// Writes a run's result; returns the bytes it takes.
pub(super) fn write(c: &Conn<'_>, seq: i64, r: &RunResult) -> Result<i64, StoreError> {
    let meta = serde_json::to_string(&ResultMeta {
        v: META_VERSION,
        status: r.status,
        language: r.language.clone(),
        version: r.version.clone(),
        message: r.message.clone(),
    })
    .map_err(|e| corrupt(seq, e))?;
    let mut bytes = meta.len() as i64;
    c.execute(
        "UPDATE runs SET result_meta = ?1 WHERE seq = ?2",
        p![meta, seq],
    )?;
    for (name, stage) in [("compile", &r.compile), ("run", &r.run)] {
        let Some(s) = stage else { continue };
        let meta = serde_json::to_string(&StageMeta {
            stdout_truncated: s.stdout_truncated,
            stderr_truncated: s.stderr_truncated,
            exit_code: s.exit_code,
            signal: s.signal.clone(),
            wall_ms: s.wall_ms,
            cpu_ms: s.cpu_ms,
            memory_peak_bytes: s.memory_peak_bytes,
            limit: s.limit,
            message: s.message.clone(),
        })
        .map_err(|e| corrupt(seq, e))?;
        let order = s.order.encode();
        bytes += (meta.len() + s.stdout.len() + s.stderr.len() + order.len()) as i64;
        c.execute(
            "INSERT INTO run_stages (run_seq, stage, meta, stdout, stderr, output_order)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            p![
                seq,
                name,
                meta,
                s.stdout.as_bytes(),
                s.stderr.as_bytes(),
                order
            ],
        )?;
    }
    Ok(bytes)
}

/// Reads a run's result: from `meta` and its stages, or from `legacy` (the
/// JSON text results were stored as before).
pub(super) fn read(
    c: &Conn<'_>,
    seq: i64,
    meta: Option<&str>,
    legacy: Option<&str>,
) -> Result<Option<RunResult>, StoreError> {
    let Some(meta) = meta else {
        return legacy
            .map(|json| serde_json::from_str(json).map_err(|e| corrupt(seq, e)))
            .transpose();
    };
    let m: ResultMeta = serde_json::from_str(meta).map_err(|e| corrupt(seq, e))?;
    if m.v != META_VERSION {
        return Err(corrupt(seq, format_args!("format version {}", m.v)));
    }
    Ok(Some(RunResult {
        status: m.status,
        language: m.language,
        version: m.version,
        compile: stage(c, seq, "compile")?,
        run: stage(c, seq, "run")?,
        message: m.message,
    }))
}

fn stage(c: &Conn<'_>, seq: i64, name: &str) -> Result<Option<StageResult>, StoreError> {
    let row = c
        .query_opt(
            "SELECT meta, stdout, stderr, output_order FROM run_stages WHERE run_seq = ?1 AND stage = ?2",
            p![seq, name],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<Vec<u8>>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<Vec<u8>>(3)?,
                ))
            },
        )?;
    let Some((meta, stdout, stderr, order)) = row else {
        return Ok(None);
    };
    let m: StageMeta = serde_json::from_str(&meta).map_err(|e| corrupt(seq, e))?;
    let text = |b: Vec<u8>, what: &str| {
        String::from_utf8(b).map_err(|_| corrupt(seq, format_args!("{name} {what} is not UTF-8")))
    };
    Ok(Some(StageResult {
        stdout: text(stdout, "stdout")?,
        stderr: text(stderr, "stderr")?,
        order: OutputOrder::decode(&order).map_err(|e| corrupt(seq, e))?,
        stdout_truncated: m.stdout_truncated,
        stderr_truncated: m.stderr_truncated,
        exit_code: m.exit_code,
        signal: m.signal,
        wall_ms: m.wall_ms,
        cpu_ms: m.cpu_ms,
        memory_peak_bytes: m.memory_peak_bytes,
        limit: m.limit,
        message: m.message,
    }))
}
