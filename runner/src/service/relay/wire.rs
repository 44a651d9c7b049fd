//! The relay's wire format, private to it: one `NOTIFY` per frame,
//! `relay:<sender>:<run>:<seq>:<part>/<parts>:<json>`.
//!
//! - `sender`: the relaying runner (a token of the process), so a runner
//!   ignores its own frames and a new execution of a run (requeued after a
//!   shutdown) starts a new sequence.
//! - `seq`: the event's number in the run (from 1): a receiver skips what it
//!   has (a replay for another runner) and reports what it missed (`lagged`).
//! - `part`/`parts`: an event larger than one frame (a stage's result) is cut
//!   on UTF-8 boundaries of its JSON; output is cut into events that fit one.
//! - `json`: the event as compact JSON, whose escapes keep control
//!   characters and NUL (which PostgreSQL text cannot hold) out of the payload.

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::sandbox::{OutputStream, SandboxEvent, StageKind};
use crate::verdict::{LimitHit, OutputOrder, StageResult};

/// What precedes a frame on the channel.
pub const PREFIX: &str = "relay:";
/// `pg_notify` refuses payloads of 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7900;
/// An event larger than this (encoded) is not relayed: the run's final
/// result, read from the database, carries it.
pub const MAX_EVENT: usize = 1 << 20;
/// Output per relayed event, measured as it is encoded: one frame each.
pub const OUTPUT_CHUNK: usize = 7000;
/// Encoded size of an event besides its text.
pub const OVERHEAD: usize = 64;
/// Runs a receiver tracks at once.
const MAX_TRACKED: usize = 1024;
/// Longest run id and sender accepted.
const MAX_ID: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Compile,
    Run,
}

impl From<StageKind> for Stage {
    fn from(k: StageKind) -> Stage {
        match k {
            StageKind::Compile => Stage::Compile,
            StageKind::Run => Stage::Run,
        }
    }
}

impl From<Stage> for StageKind {
    fn from(s: Stage) -> StageKind {
        match s {
            Stage::Compile => StageKind::Compile,
            Stage::Run => StageKind::Run,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl From<OutputStream> for Stream {
    fn from(s: OutputStream) -> Stream {
        match s {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        }
    }
}

impl From<Stream> for OutputStream {
    fn from(s: Stream) -> OutputStream {
        match s {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        }
    }
}

/// A stage's result as relayed: the output order in its binary encoding
/// (base64), not rebuilt from a combined copy of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStage {
    stdout: String,
    stderr: String,
    order: String,
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

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A sandbox event on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case", deny_unknown_fields)]
pub enum Wire {
    Started {
        stage: Stage,
    },
    Output {
        stage: Stage,
        stream: Stream,
        text: String,
    },
    Finished {
        stage: Stage,
        result: Box<WireStage>,
    },
}

/// Why a received event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the frame is longer than a notification may be")]
    TooLong,
    #[error("the frame header is malformed")]
    Header,
    #[error("the event is not valid JSON of a relayed event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the output order is not valid: {0}")]
    Order(String),
}

impl Wire {
    pub fn started(stage: StageKind) -> Wire {
        Wire::Started {
            stage: stage.into(),
        }
    }

    pub fn output(stage: StageKind, stream: OutputStream, text: String) -> Wire {
        Wire::Output {
            stage: stage.into(),
            stream: stream.into(),
            text,
        }
    }

    pub fn finished(stage: StageKind, r: &StageResult) -> Wire {
        Wire::Finished {
            stage: stage.into(),
            result: Box::new(WireStage {
                stdout: r.stdout.clone(),
                stderr: r.stderr.clone(),
                order: B64.encode(r.order.encode()),
                stdout_truncated: r.stdout_truncated,
                stderr_truncated: r.stderr_truncated,
                exit_code: r.exit_code,
                signal: r.signal.clone(),
                wall_ms: r.wall_ms,
                cpu_ms: r.cpu_ms,
                memory_peak_bytes: r.memory_peak_bytes,
                limit: r.limit,
                message: r.message.clone(),
            }),
        }
    }

    /// Appends to an output event of `stage`'s `stream`; false for any other.
    pub fn append(&mut self, to: (StageKind, OutputStream), more: &str) -> bool {
        match self {
            Wire::Output {
                stage,
                stream,
                text,
            } if *stage == to.0.into() && *stream == to.1.into() => {
                text.push_str(more);
                true
            }
            _ => false,
        }
    }

    pub fn into_event(self) -> Result<SandboxEvent, WireError> {
        Ok(match self {
            Wire::Started { stage } => SandboxEvent::StageStarted(stage.into()),
            Wire::Output {
                stage,
                stream,
                text,
            } => SandboxEvent::Output {
                stage: stage.into(),
                stream: stream.into(),
                text,
            },
            Wire::Finished { stage, result } => {
                let r = *result;
                let order = B64
                    .decode(&r.order)
                    .map_err(|e| WireError::Order(e.to_string()))
                    .and_then(|b| {
                        OutputOrder::decode(&b).map_err(|e| WireError::Order(e.to_string()))
                    })?;
                SandboxEvent::StageFinished {
                    stage: stage.into(),
                    result: StageResult {
                        stdout: r.stdout,
                        stderr: r.stderr,
                        order,
                        stdout_truncated: r.stdout_truncated,
                        stderr_truncated: r.stderr_truncated,
                        exit_code: r.exit_code,
                        signal: r.signal,
                        wall_ms: r.wall_ms,
                        cpu_ms: r.cpu_ms,
                        memory_peak_bytes: r.memory_peak_bytes,
                        limit: r.limit,
                        message: r.message,
                    },
                }
            }
        })
    }
}

/// What `c` costs in a JSON string (as serde_json writes it).
fn cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `s`'s length in a JSON string.
pub fn escaped_len(s: &str) -> usize {
    s.chars().map(cost).sum()
}

/// `s` cut on a character boundary: the longest head whose JSON-escaped
/// length is at most `budget`, and the rest.
pub fn split_at_budget(s: &str, budget: usize) -> (&str, &str) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += cost(c);
        if used > budget {
            return s.split_at(i);
        }
    }
    (s, "")
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `wire`, event `seq` of `run`, as the payloads of its frames; none when
/// it is too large to relay (the receiver sees a gap).
pub fn frames(sender: &str, run: &str, seq: u64, wire: &Wire) -> Vec<String> {
    let json = match serde_json::to_string(wire) {
        Ok(j) if j.len() <= MAX_EVENT => j,
        Ok(j) => {
            debug!(run.id = %run, seq, bytes = j.len(), "an event too large to relay was skipped");
            return Vec::new();
        }
        Err(e) => {
            debug!(run.id = %run, seq, error = %e, "an event could not be encoded for the relay");
            return Vec::new();
        }
    };
    // The header at its longest: u64 and u32 numbers in full.
    let header = PREFIX.len() + sender.len() + run.len() + 20 + 10 + 10 + 5;
    let budget = MAX_PAYLOAD.saturating_sub(header).max(8);
    let mut pieces = Vec::new();
    let mut rest = json.as_str();
    while !rest.is_empty() {
        let mut cut = budget.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    let parts = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{PREFIX}{sender}:{run}:{seq}:{i}/{parts}:{p}"))
        .collect()
}

/// One received frame (the payload after [`PREFIX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub sender: &'a str,
    pub run: &'a str,
    seq: u64,
    part: u32,
    parts: u32,
    body: &'a str,
}

impl<'a> Frame<'a> {
    pub fn parse(rest: &'a str) -> Result<Frame<'a>, WireError> {
        if rest.len() + PREFIX.len() > MAX_PAYLOAD {
            return Err(WireError::TooLong);
        }
        let mut it = rest.splitn(5, ':');
        let mut next = || it.next().ok_or(WireError::Header);
        let (sender, run, seq, part, body) = (next()?, next()?, next()?, next()?, next()?);
        let (part, parts) = part.split_once('/').ok_or(WireError::Header)?;
        let num = |s: &str| {
            (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
                .ok_or(WireError::Header)
        };
        let seq = num(seq)?;
        let part = u32::try_from(num(part)?).map_err(|_| WireError::Header)?;
        let parts = u32::try_from(num(parts)?).map_err(|_| WireError::Header)?;
        let max_parts = (MAX_EVENT / 512 + 1) as u32;
        if !valid_id(sender)
            || !valid_id(run)
            || seq == 0
            || parts == 0
            || parts > max_parts
            || part >= parts
        {
            return Err(WireError::Header);
        }
        Ok(Frame {
            sender,
            run,
            seq,
            part,
            parts,
            body,
        })
    }
}

/// What a receiver makes of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Events of the run were missed (lost on the way, or dropped by the
    /// relaying runner when the run wrote faster than they could be sent).
    Lagged(u64),
    Event(SandboxEvent),
}

#[derive(Debug)]
struct Partial {
    seq: u64,
    parts: u32,
    got: u32,
    text: String,
}

#[derive(Debug)]
struct Track {
    sender: String,
    /// The next event expected.
    next: u64,
    partial: Option<Partial>,
}

/// A receiving runner's view of the relayed runs its clients follow:
/// reassembles, orders and deduplicates their frames.
#[derive(Debug, Default)]
pub struct Inbox {
    runs: HashMap<String, Track>,
}

impl Inbox {
    /// The events `f` completes, in order.
    pub fn accept(&mut self, f: &Frame<'_>) -> Vec<Received> {
        if !self.runs.contains_key(f.run) && self.runs.len() >= MAX_TRACKED {
            debug!(run.id = %f.run, "too many relayed runs tracked; a frame was ignored");
            return Vec::new();
        }
        let t = self.runs.entry(f.run.to_owned()).or_insert_with(|| Track {
            sender: f.sender.to_owned(),
            next: 1,
            partial: None,
        });
        if t.sender != f.sender {
            // Another execution of the run (requeued after a shutdown).
            *t = Track {
                sender: f.sender.to_owned(),
                next: 1,
                partial: None,
            };
        }
        if f.seq < t.next {
            return Vec::new();
        }
        if f.part == 0 {
            t.partial = Some(Partial {
                seq: f.seq,
                parts: f.parts,
                got: 0,
                text: String::new(),
            });
        }
        let Some(p) = t
            .partial
            .as_mut()
            .filter(|p| p.seq == f.seq && p.parts == f.parts && p.got == f.part)
        else {
            // A part is missing: the event counts as missed.
            t.partial = None;
            debug!(run.id = %f.run, seq = f.seq, "a relayed event lost a part");
            return Vec::new();
        };
        if p.text.len() + f.body.len() > MAX_EVENT {
            t.partial = None;
            debug!(run.id = %f.run, seq = f.seq, "a relayed event is too large");
            return Vec::new();
        }
        p.text.push_str(f.body);
        p.got += 1;
        if p.got < p.parts {
            return Vec::new();
        }
        let Some(p) = t.partial.take() else {
            return Vec::new();
        };
        let event = serde_json::from_str::<Wire>(&p.text)
            .map_err(WireError::from)
            .and_then(Wire::into_event);
        match event {
            Ok(ev) => {
                let missed = f.seq - t.next;
                t.next = f.seq + 1;
                let mut out = Vec::with_capacity(2);
                if missed > 0 {
                    out.push(Received::Lagged(missed));
                }
                out.push(Received::Event(ev));
                out
            }
            Err(e) => {
                debug!(run.id = %f.run, seq = f.seq, error = %e, "a relayed event was not accepted");
                Vec::new()
            }
        }
    }

    pub fn forget(&mut self, run: &str) {
        self.runs.remove(run);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.runs.retain(|run, _| keep(run));
    }
}
