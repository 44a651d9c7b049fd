//! The wire protocol between the runner and `sandbox-init` (PID 1 of every
//! sandbox container; source in `sandbox-images/base/sandbox-init.c`).
//!
//! Runner → init, on the container's stdin: `SBX 1\n`, then fields
//! `<name> <len>\n<bytes>`, ending with `run 0\n`.
//! Init → runner, on the container's stdout: frames `<type:u8><len:u32 BE><bytes>`.

use crate::verdict::{LimitHit, OutputOrder, StageResult, Stream, signal_name};

/// Version of the protocol; images carry it in the `io.runner.sandbox.protocol` label.
pub const PROTOCOL_VERSION: &str = "3";

/// How the archive of a job is to be unpacked in `/work`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// Plain files only (a submission, built by the runner): sandbox-init
    /// writes them itself.
    Files,
    /// Any tar archive (a compile stage's `/work`): extracted by tar(1).
    Tar,
}
/// Largest frame `sandbox-init` writes (one pipe read).
const MAX_FRAME: usize = 1 << 20;

/// One step for `sandbox-init` (the protocol calls it a job): a sandbox runs
/// one (a learner's stage) or several in turn (a workflow job's steps, which
/// share `/work`).
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub stdout_max: u64,
    pub stderr_max: u64,
    pub fsize_max: u64,
    pub nofile: u64,
    /// When above 0, `/work` comes back as a tar archive of at most this many
    /// bytes after a successful run.
    pub collect_max: u64,
    pub archive: &'a [u8],
    pub archive_kind: ArchiveKind,
    /// Files written under /tmp before the program starts (a step's
    /// script): (name directly under /tmp, content).
    pub tmp_files: &'a [(String, Vec<u8>)],
    pub stdin: &'a [u8],
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
    out.extend_from_slice(value);
}

impl Step<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.archive.len() + self.stdin.len() + 1024);
        out.extend_from_slice(format!("SBX {PROTOCOL_VERSION}\n").as_bytes());
        for a in self.argv {
            field(&mut out, "arg", a.as_bytes());
        }
        for e in self.env {
            field(&mut out, "env", e.as_bytes());
        }
        field(&mut out, "cwd", self.cwd.as_bytes());
        for (name, v) in [
            ("wall_ms", self.wall_ms),
            ("cpu_ms", self.cpu_ms),
            ("stdout_max", self.stdout_max),
            ("stderr_max", self.stderr_max),
            ("fsize_max", self.fsize_max),
            ("nofile", self.nofile),
            ("collect_max", self.collect_max),
        ] {
            field(&mut out, name, v.to_string().as_bytes());
        }
        let kind = match self.archive_kind {
            ArchiveKind::Files => "files",
            ArchiveKind::Tar => "tar",
        };
        field(&mut out, kind, self.archive);
        for (name, content) in self.tmp_files {
            let mut value = format!("/tmp/{name}\0").into_bytes();
            value.extend_from_slice(content);
            field(&mut out, "file", &value);
        }
        if !self.stdin.is_empty() {
            field(&mut out, "stdin", self.stdin);
        }
        out.extend_from_slice(b"run 0\n");
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("sandbox-init sent an unknown frame type {0:#04x}")]
    UnknownFrame(u8),
    #[error("sandbox-init sent a frame of {0} bytes, more than the protocol allows")]
    FrameTooLarge(usize),
    #[error("sandbox-init sent more {what} than the {max}-byte cap it was given")]
    OverCap { what: &'static str, max: u64 },
    #[error("sandbox-init sent a malformed result: {0}")]
    BadReport(String),
    #[error("sandbox-init sent data after its result")]
    AfterResult,
}

/// Where the decoder stands once a stream of frames has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A result frame arrived.
    Report(Report),
    /// `sandbox-init` reported a fatal error of its own.
    Failed(String),
}

/// Reassembles frames from the container's stdout, which Docker delivers in
/// chunks of its own sizes, and keeps what each frame carries within its cap.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// stdout and stderr in frame order: which stream, how many bytes.
    pub combined: OutputOrder,
    pub artifacts: Vec<u8>,
    stdout_max: u64,
    stderr_max: u64,
    collect_max: u64,
    ending: Option<Ending>,
}

impl Decoder {
    pub fn new(stdout_max: u64, stderr_max: u64, collect_max: u64) -> Self {
        Decoder {
            buf: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            combined: OutputOrder::default(),
            artifacts: Vec::new(),
            stdout_max,
            stderr_max,
            collect_max,
            ending: None,
        }
    }

    /// Feeds bytes; returns the ending once the result or a fatal error came.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<&Ending>, ProtocolError> {
        if self.ending.is_some() {
            if bytes.is_empty() {
                return Ok(self.ending.as_ref());
            }
            return Err(ProtocolError::AfterResult);
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        while self.buf.len() - pos >= 5 {
            let kind = self.buf[pos];
            let len = u32::from_be_bytes([
                self.buf[pos + 1],
                self.buf[pos + 2],
                self.buf[pos + 3],
                self.buf[pos + 4],
            ]) as usize;
            if len > MAX_FRAME {
                return Err(ProtocolError::FrameTooLarge(len));
            }
            if self.buf.len() - pos - 5 < len {
                break;
            }
            let payload = &self.buf[pos + 5..pos + 5 + len];
            let push = |dst: &mut Vec<u8>, max: u64, what: &'static str| {
                if (dst.len() + payload.len()) as u64 > max {
                    return Err(ProtocolError::OverCap { what, max });
                }
                dst.extend_from_slice(payload);
                Ok(())
            };
            match kind {
                b'o' => {
                    push(&mut self.stdout, self.stdout_max, "stdout")?;
                    self.combined.push(Stream::Stdout, payload.len());
                }
                b'e' => {
                    push(&mut self.stderr, self.stderr_max, "stderr")?;
                    self.combined.push(Stream::Stderr, payload.len());
                }
                b'a' => push(&mut self.artifacts, self.collect_max, "archive")?,
                b'r' => {
                    let text = String::from_utf8_lossy(payload);
                    self.ending = Some(Ending::Report(Report::parse(&text)?));
                }
                b'x' => {
                    self.ending = Some(Ending::Failed(
                        String::from_utf8_lossy(payload).into_owned(),
                    ));
                }
                other => return Err(ProtocolError::UnknownFrame(other)),
            }
            pos += 5 + len;
            if self.ending.is_some() {
                if pos != self.buf.len() {
                    return Err(ProtocolError::AfterResult);
                }
                break;
            }
        }
        self.buf.drain(..pos);
        Ok(self.ending.as_ref())
    }
}

/// Which limit `sandbox-init` enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitLimit {
    None,
    Wall,
    Cpu,
    Output,
}

/// The result frame, as `sandbox-init` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub limit: InitLimit,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
    /// OOM kills in the container's memory cgroup during the stage; `None`
    /// when the cgroup could not be read.
    pub oom_kills: Option<u64>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub collected: bool,
    pub collect_error: Option<String>,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, ProtocolError> {
        let mut map = std::collections::HashMap::new();
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| ProtocolError::BadReport(format!("line {line:?}")))?;
            map.insert(k, v);
        }
        let get = |k: &str| {
            map.get(k)
                .copied()
                .ok_or_else(|| ProtocolError::BadReport(format!("missing {k}")))
        };
        let num = |k: &str| -> Result<i64, ProtocolError> {
            get(k)?
                .parse()
                .map_err(|_| ProtocolError::BadReport(format!("{k} is not a number")))
        };
        let unsigned = |k: &str| -> Result<u64, ProtocolError> {
            u64::try_from(num(k)?).map_err(|_| ProtocolError::BadReport(format!("{k} is negative")))
        };
        let flag = |k: &str| -> Result<bool, ProtocolError> { Ok(num(k)? != 0) };
        let exit = num("exit_code")?;
        let signal = num("signal")?;
        let oom = num("oom_kills")?;
        let collect_error = get("collect_error")?;
        Ok(Report {
            exit_code: (exit >= 0).then_some(exit as i32),
            signal: (signal > 0).then_some(signal as i32),
            limit: match get("limit")? {
                "none" => InitLimit::None,
                "wall" => InitLimit::Wall,
                "cpu" => InitLimit::Cpu,
                "output" => InitLimit::Output,
                other => return Err(ProtocolError::BadReport(format!("limit {other:?}"))),
            },
            wall_ms: unsigned("wall_ms")?,
            cpu_ms: unsigned("cpu_ms")?,
            memory_peak_bytes: unsigned("memory_peak_bytes")?,
            oom_kills: u64::try_from(oom).ok(),
            stdout_truncated: flag("stdout_truncated")?,
            stderr_truncated: flag("stderr_truncated")?,
            collected: flag("collected")?,
            collect_error: (!collect_error.is_empty()).then(|| collect_error.to_owned()),
        })
    }

    /// The stage result, given the program's output and whether the engine
    /// saw the container's memory cgroup run out (for when the cgroup's own
    /// counter could not be read).
    pub fn into_stage(
        self,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        combined: OutputOrder,
        limits: &crate::limits::StageLimits,
        engine_oom: bool,
    ) -> StageResult {
        let oom = self.oom_kills.map_or(engine_oom, |n| n > 0);
        // The kernel's verdict comes first: a process killed for memory also
        // stops everything else, and may trip the time limit on its way out.
        let (limit, message) = if oom {
            (
                Some(LimitHit::Memory),
                Some(format!(
                    "the kernel killed a process: the container reached its memory limit of {} MiB",
                    limits.memory_bytes >> 20
                )),
            )
        } else {
            match self.limit {
                InitLimit::Wall => (
                    Some(LimitHit::WallTime),
                    Some(format!(
                        "stopped after the wall-clock limit of {} ms",
                        limits.wall_time_ms
                    )),
                ),
                InitLimit::Cpu => (
                    Some(LimitHit::CpuTime),
                    Some(format!(
                        "stopped after the CPU-time limit of {} ms",
                        limits.cpu_time_ms
                    )),
                ),
                InitLimit::Output => {
                    let which = if self.stdout_truncated {
                        "stdout"
                    } else {
                        "stderr"
                    };
                    let max = if self.stdout_truncated {
                        limits.stdout_max_bytes
                    } else {
                        limits.stderr_max_bytes
                    };
                    (
                        Some(LimitHit::Output),
                        Some(format!(
                            "stopped after writing more than {max} bytes to {which}"
                        )),
                    )
                }
                InitLimit::None => (
                    None,
                    self.signal.map(|s| format!("killed by {}", signal_name(s))),
                ),
            }
        };
        StageResult {
            stdout_truncated: self.stdout_truncated,
            stderr_truncated: self.stderr_truncated,
            exit_code: self.exit_code,
            signal: self.signal.map(signal_name),
            wall_ms: self.wall_ms,
            cpu_ms: self.cpu_ms,
            memory_peak_bytes: self.memory_peak_bytes,
            limit,
            message,
            ..StageResult::with_output(&stdout, &stderr, &combined)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::StageLimits;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    const REPORT: &str = "exit_code=3\nsignal=0\nlimit=none\nwall_ms=21\ncpu_ms=7\nmemory_peak_bytes=6000640\nmemory_source=cgroup\noom_kills=0\nstdout_truncated=0\nstderr_truncated=0\ncollected=0\ncollect_error=\n";

    fn limits() -> StageLimits {
        StageLimits {
            wall_time_ms: 1000,
            cpu_time_ms: 1000,
            memory_bytes: 64 << 20,
            pids: 64,
            stdout_max_bytes: 10,
            stderr_max_bytes: 10,
        }
    }

    #[test]
    fn the_images_and_sandbox_init_speak_this_protocol() {
        let dockerfile = include_str!("../../../sandbox-images/base/Dockerfile");
        assert!(
            dockerfile.contains(&format!(
                "io.runner.sandbox.protocol=\"{PROTOCOL_VERSION}\""
            )),
            "the base image's label must name protocol {PROTOCOL_VERSION}"
        );
        let init = include_str!("../../../sandbox-images/base/sandbox-init.c");
        assert!(
            init.contains(&format!("#define PROTOCOL_LINE \"SBX {PROTOCOL_VERSION}\"")),
            "sandbox-init must speak protocol {PROTOCOL_VERSION}"
        );
    }

    #[test]
    fn job_encoding_is_what_sandbox_init_reads() {
        let argv = ["python3".to_string(), "main.py".to_string()];
        let env = ["PATH=/bin".to_string()];
        let job = Step {
            argv: &argv,
            env: &env,
            cwd: "/work",
            wall_ms: 1,
            cpu_ms: 2,
            stdout_max: 3,
            stderr_max: 4,
            fsize_max: 5,
            nofile: 6,
            collect_max: 0,
            archive: b"TAR",
            archive_kind: ArchiveKind::Tar,
            tmp_files: &[],
            stdin: b"",
        };
        let text = String::from_utf8(job.encode()).unwrap();
        assert!(
            text.starts_with("SBX 3\narg 7\npython3arg 7\nmain.pyenv 9\nPATH=/bincwd 5\n/work")
        );
        assert!(text.contains("wall_ms 1\n1cpu_ms 1\n2"));
        assert!(text.ends_with("tar 3\nTARrun 0\n"));
        assert!(!text.contains("stdin"));
        let files = Step {
            archive_kind: ArchiveKind::Files,
            stdin: b"in",
            ..job
        };
        let text = String::from_utf8(files.encode()).unwrap();
        assert!(text.ends_with("files 3\nTARstdin 2\ninrun 0\n"), "{text}");
        let script = [("step-1.sh".to_string(), b"echo hi\n".to_vec())];
        let with_script = Step {
            tmp_files: &script,
            ..job
        };
        let text = String::from_utf8(with_script.encode()).unwrap();
        assert!(
            text.ends_with("tar 3\nTARfile 23\n/tmp/step-1.sh\0echo hi\nrun 0\n"),
            "{text}"
        );
    }

    fn none() -> OutputOrder {
        OutputOrder::default()
    }

    fn out_only() -> OutputOrder {
        let mut o = OutputOrder::default();
        o.push(Stream::Stdout, 3);
        o
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut stream = frame(b'o', b"hello\n");
        stream.extend(frame(b'e', b"err"));
        stream.extend(frame(b'o', b"!"));
        stream.extend(frame(b'r', REPORT.as_bytes()));
        for split in 0..stream.len() {
            let mut d = Decoder::new(10, 10, 0);
            assert!(d.feed(&stream[..split]).unwrap().is_none() || split == stream.len());
            let end = d.feed(&stream[split..]).unwrap().cloned();
            assert!(matches!(end, Some(Ending::Report(_))), "split at {split}");
            assert_eq!(d.stdout, b"hello\n!");
            assert_eq!(d.stderr, b"err");
            let order: Vec<_> = d.combined.runs().collect();
            assert_eq!(
                order,
                [
                    (Stream::Stdout, 6),
                    (Stream::Stderr, 3),
                    (Stream::Stdout, 1)
                ]
            );
        }
    }

    #[test]
    fn output_beyond_the_cap_is_a_protocol_violation() {
        let mut d = Decoder::new(4, 4, 0);
        let err = d.feed(&frame(b'o', b"hello")).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::OverCap {
                what: "stdout",
                max: 4
            }
        );
        let mut d = Decoder::new(4, 4, 0);
        assert_eq!(
            d.feed(&frame(b'a', b"x")).unwrap_err(),
            ProtocolError::OverCap {
                what: "archive",
                max: 0
            }
        );
    }

    #[test]
    fn unknown_frames_and_trailing_data_are_rejected() {
        let mut d = Decoder::new(4, 4, 0);
        assert_eq!(
            d.feed(&frame(b'z', b"")).unwrap_err(),
            ProtocolError::UnknownFrame(b'z')
        );
        let mut d = Decoder::new(4, 4, 0);
        let mut s = frame(b'r', REPORT.as_bytes());
        s.extend(frame(b'o', b"late"));
        assert_eq!(d.feed(&s).unwrap_err(), ProtocolError::AfterResult);
        let mut d = Decoder::new(4, 4, 0);
        let huge = [b'o', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            d.feed(&huge),
            Err(ProtocolError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn fatal_errors_end_the_stream() {
        let mut d = Decoder::new(4, 4, 0);
        let end = d
            .feed(&frame(b'x', b"cannot start python3: No such file"))
            .unwrap();
        assert_eq!(
            end,
            Some(&Ending::Failed("cannot start python3: No such file".into()))
        );
    }

    #[test]
    fn reports_parse_and_map_to_stage_results() {
        let r = Report::parse(REPORT).unwrap();
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.signal, None);
        assert_eq!(r.oom_kills, Some(0));
        let s = r.into_stage(b"out".to_vec(), vec![], out_only(), &limits(), false);
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(s.limit, None);
        assert_eq!(s.stdout, "out");

        let oom = REPORT
            .replace("exit_code=3", "exit_code=-1")
            .replace("signal=0", "signal=9")
            .replace("oom_kills=0", "oom_kills=1");
        let s = Report::parse(&oom)
            .unwrap()
            .into_stage(vec![], vec![], none(), &limits(), false);
        assert_eq!(s.limit, Some(LimitHit::Memory));
        assert_eq!(s.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(s.exit_code, None);

        // Exit code 137 alone is not a memory verdict...
        let plain = REPORT.replace("exit_code=3", "exit_code=137");
        let s = Report::parse(&plain)
            .unwrap()
            .into_stage(vec![], vec![], none(), &limits(), false);
        assert_eq!(s.limit, None);
        // ...but the engine's OOM state counts when the cgroup was unreadable.
        let unknown = REPORT.replace("oom_kills=0", "oom_kills=-1");
        let s =
            Report::parse(&unknown)
                .unwrap()
                .into_stage(vec![], vec![], none(), &limits(), true);
        assert_eq!(s.limit, Some(LimitHit::Memory));

        let wall = REPORT.replace("limit=none", "limit=wall");
        let s = Report::parse(&wall)
            .unwrap()
            .into_stage(vec![], vec![], none(), &limits(), false);
        assert_eq!(s.limit, Some(LimitHit::WallTime));
        assert!(s.message.unwrap().contains("1000 ms"));

        let out = REPORT
            .replace("limit=none", "limit=output")
            .replace("stdout_truncated=0", "stdout_truncated=1");
        let s = Report::parse(&out)
            .unwrap()
            .into_stage(vec![], vec![], none(), &limits(), false);
        assert_eq!(s.limit, Some(LimitHit::Output));
        assert!(s.stdout_truncated);
    }

    #[test]
    fn malformed_reports_are_rejected() {
        assert!(Report::parse("exit_code=0").is_err());
        assert!(Report::parse(&REPORT.replace("wall_ms=21", "wall_ms=x")).is_err());
        assert!(Report::parse(&REPORT.replace("limit=none", "limit=moon")).is_err());
        assert!(Report::parse("garbage").is_err());
    }
}
