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
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::CompileError,
        Status::RuntimeError,
        Status::TimeLimit,
        Status::MemoryLimit,
        Status::OutputLimit,
        Status::InternalError,
    ];

    /// The status named `s` as [`Status::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }

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
///
/// Each stream is kept once; [`StageResult::output`] rebuilds the combined
/// text from them and [`OutputOrder`]. Serialized (`runner exec --json`), it
/// still shows `output`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StageJson", from = "StageJson")]
pub struct StageResult {
    pub stdout: String,
    pub stderr: String,
    /// The order the program wrote stdout and stderr in.
    pub order: OutputOrder,
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

    /// stdout and stderr together, in the order the program wrote them.
    pub fn output(&self) -> String {
        self.order.combine(&self.stdout, &self.stderr)
    }

    /// A result holding only the output of a stage, decoded from its raw
    /// bytes (invalid UTF-8 becomes U+FFFD, as `String::from_utf8_lossy`
    /// does); `order` counts raw bytes. Fill in the rest with `..`.
    pub fn with_output(stdout: &[u8], stderr: &[u8], order: &OutputOrder) -> StageResult {
        let (stdout, stderr, order) = order.to_text(stdout, stderr);
        StageResult {
            stdout,
            stderr,
            order,
            ..StageResult::default()
        }
    }
}

/// The serialized shape of a [`StageResult`]: the combined `output` in full,
/// as `runner exec --json` has always printed it.
#[derive(Serialize, Deserialize)]
struct StageJson {
    stdout: String,
    stderr: String,
    output: String,
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

impl From<StageResult> for StageJson {
    fn from(s: StageResult) -> Self {
        StageJson {
            output: s.output(),
            stdout: s.stdout,
            stderr: s.stderr,
            stdout_truncated: s.stdout_truncated,
            stderr_truncated: s.stderr_truncated,
            exit_code: s.exit_code,
            signal: s.signal,
            wall_ms: s.wall_ms,
            cpu_ms: s.cpu_ms,
            memory_peak_bytes: s.memory_peak_bytes,
            limit: s.limit,
            message: s.message,
        }
    }
}

impl From<StageJson> for StageResult {
    fn from(j: StageJson) -> Self {
        StageResult {
            order: OutputOrder::recover(&j.stdout, &j.stderr, &j.output),
            stdout: j.stdout,
            stderr: j.stderr,
            stdout_truncated: j.stdout_truncated,
            stderr_truncated: j.stderr_truncated,
            exit_code: j.exit_code,
            signal: j.signal,
            wall_ms: j.wall_ms,
            cpu_ms: j.cpu_ms,
            memory_peak_bytes: j.memory_peak_bytes,
            limit: j.limit,
            message: j.message,
        }
    }
}

/// One of a stage's two output streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn other(self) -> Stream {
        match self {
            Stream::Stdout => Stream::Stderr,
            Stream::Stderr => Stream::Stdout,
        }
    }
}

/// The order a stage wrote stdout and stderr in: alternating runs of bytes,
/// the first from `first`. Output written after [`OutputOrder::MAX_RUNS`]
/// switches keeps its stream but not its order (it comes last in the
/// combined text), which bounds this record however the program writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputOrder {
    first: Stream,
    runs: Vec<u32>,
}

/// Why a stored [`OutputOrder`] cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the output order record is empty")]
    Empty,
    #[error("the output order record has unknown format byte {0}")]
    Format(u8),
    #[error("the output order record ends inside a number")]
    Truncated,
}

impl OutputOrder {
    /// Most runs recorded.
    pub const MAX_RUNS: usize = 65_536;

    /// Records that `len` bytes of `stream` came next.
    pub fn push(&mut self, stream: Stream, len: usize) {
        // At the bound, nothing more is recorded (merging into the last run
        // after a dropped one would misplace bytes).
        if len == 0 || self.runs.len() >= Self::MAX_RUNS {
            return;
        }
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if self.runs.is_empty() {
            self.first = stream;
        }
        if self.stream_of(self.runs.len().wrapping_sub(1)) == Some(stream) {
            let last = self.runs.last_mut().expect("a run exists");
            *last = last.saturating_add(len);
        } else {
            self.runs.push(len);
        }
    }

    fn stream_of(&self, run: usize) -> Option<Stream> {
        (run < self.runs.len()).then(|| {
            if run.is_multiple_of(2) {
                self.first
            } else {
                self.first.other()
            }
        })
    }

    /// Runs as (stream, length).
    pub fn runs(&self) -> impl Iterator<Item = (Stream, usize)> + '_ {
        self.runs
            .iter()
            .enumerate()
            .map(|(i, n)| (self.stream_of(i).expect("in range"), *n as usize))
    }

    /// Interleaves `stdout` and `stderr` by the recorded runs; what the runs
    /// do not cover follows, stdout first.
    pub fn combine(&self, stdout: &str, stderr: &str) -> String {
        let mut out = String::with_capacity(stdout.len() + stderr.len());
        let (mut at_out, mut at_err) = (0, 0);
        for (stream, n) in self.runs() {
            let (src, at) = match stream {
                Stream::Stdout => (stdout, &mut at_out),
                Stream::Stderr => (stderr, &mut at_err),
            };
            let end = ceil_char_boundary(src, *at + n);
            out.push_str(&src[*at..end]);
            *at = end;
        }
        out.push_str(&stdout[at_out..]);
        out.push_str(&stderr[at_err..]);
        out
    }

    /// Decodes raw stdout and stderr into text, and this order (in raw
    /// bytes) into one in bytes of that text. A character split between
    /// two runs goes with the run it starts in.
    pub fn to_text(&self, stdout: &[u8], stderr: &[u8]) -> (String, String, OutputOrder) {
        let mut cuts: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        let mut ends = [0usize; 2];
        for (stream, n) in self.runs() {
            let i = stream as usize;
            ends[i] += n;
            cuts[i].push(ends[i]);
        }
        let (out_text, out_cuts) = lossy_with_cuts(stdout, &cuts[0]);
        let (err_text, err_cuts) = lossy_with_cuts(stderr, &cuts[1]);
        let mut order = OutputOrder::default();
        let (mut prev, mut next) = ([0usize; 2], [0usize; 2]);
        for (stream, _) in self.runs() {
            let i = stream as usize;
            let end = [&out_cuts, &err_cuts][i][next[i]];
            next[i] += 1;
            order.push(stream, end - prev[i]);
            prev[i] = end;
        }
        (out_text, err_text, order)
    }

    /// A compact, binary encoding: a format byte (0: stdout first, 1:
    /// stderr first), then each run as an unsigned LEB128 number.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.runs.len() * 2);
        out.push(self.first as u8);
        for &n in &self.runs {
            let mut v = n;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<OutputOrder, OrderError> {
        let (&format, mut rest) = bytes.split_first().ok_or(OrderError::Empty)?;
        let first = match format {
            0 => Stream::Stdout,
            1 => Stream::Stderr,
            other => return Err(OrderError::Format(other)),
        };
        let mut runs = Vec::new();
        while !rest.is_empty() {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let (&b, tail) = rest.split_first().ok_or(OrderError::Truncated)?;
                rest = tail;
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 || shift > 35 {
                    break;
                }
            }
            runs.push(u32::try_from(v).unwrap_or(u32::MAX));
        }
        Ok(OutputOrder { first, runs })
    }

    /// The order of output kept as three texts (stdout, stderr and both
    /// combined, as results were stored before): followed greedily; when
    /// that does not rebuild `combined`, stdout then stderr.
    pub fn recover(stdout: &str, stderr: &str, combined: &str) -> OutputOrder {
        let (a, b, c) = (stdout.as_bytes(), stderr.as_bytes(), combined.as_bytes());
        let mut order = OutputOrder::default();
        let (mut i, mut j) = (0, 0);
        let mut current = Stream::Stdout;
        for &byte in c {
            let take_out = i < a.len() && a[i] == byte;
            let take_err = j < b.len() && b[j] == byte;
            let stream = match (take_out, take_err) {
                (true, true) => current,
                (true, false) => Stream::Stdout,
                (false, true) => Stream::Stderr,
                (false, false) => break,
            };
            match stream {
                Stream::Stdout => i += 1,
                Stream::Stderr => j += 1,
            }
            order.push(stream, 1);
            current = stream;
        }
        if order.combine(stdout, stderr) == combined {
            order
        } else {
            let mut plain = OutputOrder::default();
            plain.push(Stream::Stdout, a.len());
            plain.push(Stream::Stderr, b.len());
            plain
        }
    }
}

fn ceil_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// `String::from_utf8_lossy(raw)`, and where each raw offset of `cuts`
/// (ascending) falls in it.
fn lossy_with_cuts(raw: &[u8], cuts: &[usize]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(raw.len());
    let mut out = Vec::with_capacity(cuts.len());
    let (mut next, mut pos) = (0, 0);
    let mut mark = |pos: usize, text: &String, next: &mut usize| {
        while *next < cuts.len() && cuts[*next] <= pos {
            out.push(text.len());
            *next += 1;
        }
    };
    for chunk in raw.utf8_chunks() {
        for ch in chunk.valid().chars() {
            mark(pos, &text, &mut next);
            text.push(ch);
            pos += ch.len_utf8();
        }
        if !chunk.invalid().is_empty() {
            mark(pos, &text, &mut next);
            text.push('\u{FFFD}');
            pos += chunk.invalid().len();
        }
    }
    mark(usize::MAX, &text, &mut next);
    (text, out)
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
    if let Some(c) = compile
        && !c.succeeded()
    {
        return Status::CompileError;
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
            order: OutputOrder::default(),
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
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("fine"), None);
    }

    /// The frames a program wrote: (stream, bytes).
    fn written(frames: &[(Stream, &[u8])]) -> (Vec<u8>, Vec<u8>, OutputOrder, Vec<u8>) {
        let (mut out, mut err, mut order, mut all) =
            (Vec::new(), Vec::new(), OutputOrder::default(), Vec::new());
        for (s, bytes) in frames {
            match s {
                Stream::Stdout => out.extend_from_slice(bytes),
                Stream::Stderr => err.extend_from_slice(bytes),
            }
            order.push(*s, bytes.len());
            all.extend_from_slice(bytes);
        }
        (out, err, order, all)
    }

    #[test]
    fn the_combined_output_is_rebuilt_in_the_order_written() {
        use Stream::*;
        let frames: &[(Stream, &[u8])] = &[
            (Stderr, b"e1 "),
            (Stdout, b"o1 "),
            (Stdout, b"o2 "),
            (Stderr, b"\0\0"),
            (Stdout, "é".as_bytes()),
        ];
        let (out, err, order, all) = written(frames);
        assert_eq!(order.runs().count(), 4, "adjacent runs of a stream merge");
        let s = StageResult::with_output(&out, &err, &order);
        assert_eq!(s.stdout, "o1 o2 é");
        assert_eq!(s.stderr, "e1 \0\0");
        assert_eq!(s.output().as_bytes(), all);
        let back = OutputOrder::decode(&s.order.encode()).unwrap();
        assert_eq!(back, s.order);
        assert_eq!(s.order.encode().len(), 5, "one byte per short run");
    }

    #[test]
    fn invalid_utf8_and_split_characters_keep_the_order() {
        use Stream::*;
        // "é" split across two stdout frames with stderr between, then an
        // invalid byte: the character goes with the run it starts in.
        let e = "é".as_bytes();
        let frames: &[(Stream, &[u8])] = &[
            (Stdout, &e[..1]),
            (Stderr, b"E"),
            (Stdout, &e[1..]),
            (Stdout, b"\xff!"),
        ];
        let (out, err, order, _) = written(frames);
        let s = StageResult::with_output(&out, &err, &order);
        assert_eq!(s.stdout, "é\u{FFFD}!");
        assert_eq!(s.output(), "éE\u{FFFD}!");
        assert_eq!(s.stdout, String::from_utf8_lossy(&out));
    }

    #[test]
    fn the_order_is_bounded_however_the_program_writes() {
        let mut order = OutputOrder::default();
        for i in 0..(OutputOrder::MAX_RUNS * 2) {
            let s = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            order.push(s, 1);
        }
        assert_eq!(order.runs().count(), OutputOrder::MAX_RUNS);
        let out = "o".repeat(OutputOrder::MAX_RUNS);
        let err = "e".repeat(OutputOrder::MAX_RUNS);
        let combined = order.combine(&out, &err);
        assert_eq!(combined.len(), out.len() + err.len(), "nothing is lost");
        assert!(combined.starts_with("oeoe"));
    }

    #[test]
    fn serialized_results_still_show_the_combined_output() {
        let mut order = OutputOrder::default();
        order.push(Stream::Stderr, 2);
        order.push(Stream::Stdout, 3);
        let s = StageResult {
            stdout: "out".into(),
            stderr: "er".into(),
            order,
            ..stage(Some(0), None, None)
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["output"], "erout");
        assert!(json.get("order").is_none());
        let back: StageResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, s, "the order is recovered from the three texts");
        assert!(OutputOrder::decode(&[]).is_err());
        assert!(OutputOrder::decode(&[7]).is_err());
        assert_eq!(OutputOrder::decode(&[0, 0x80]), Err(OrderError::Truncated));
    }
}
