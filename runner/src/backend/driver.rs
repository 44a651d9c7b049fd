//! One step over an attached sandbox: hand the step to sandbox-init, read
//! its frames (output live, then the result), bounded in time. Shared by
//! every backend that runs sandbox-init, so verdicts do not depend on the
//! platform. The attachment stays open after the step: a sandbox may run
//! several steps in turn (a workflow job's), and closing it ends sandbox-init.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::protocol::{Decoder, Ending, ProtocolError, Report, Step};
use super::{Attachment, BackendError, Output, OutputSink, OutputStream, StepOutcome};
use crate::limits::StageLimits;
use crate::verdict::{LimitHit, StageResult};

/// Time beyond a step's wall-clock limit for sandbox-init to report: file
/// extraction before the run, the kill and reaping after it.
pub const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Extra time when /work is archived after the step (bounded in sandbox-init).
pub const COLLECT_GRACE: Duration = Duration::from_secs(10);
/// sandbox-init's own diagnostics kept from its stderr.
const INIT_STDERR_MAX: usize = 4096;

/// How the sandbox ended, as the platform saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ended {
    pub exit_code: Option<i64>,
    /// The kernel killed a process of the sandbox for memory.
    pub oom_killed: bool,
}

/// What the driver needs of the platform besides the attachment.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Stops the sandbox from outside: it stopped answering.
    async fn kill(&self) -> Result<(), BackendError>;
    /// How the sandbox ended (or stands), waiting up to `wait` for it to stop.
    async fn ended(&self, wait: Duration) -> Result<Ended, BackendError>;
}

/// Who a step is, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct StepId<'a> {
    pub job: &'a str,
    pub sandbox: &'a str,
}

impl StepId<'_> {
    fn protocol(&self, source: ProtocolError) -> BackendError {
        BackendError::Protocol {
            job: self.job.to_owned(),
            sandbox: self.sandbox.to_owned(),
            source,
        }
    }
}

/// The longest a step may take before the runner stops it from outside.
pub fn deadline(step: &Step<'_>) -> Duration {
    Duration::from_millis(step.wall_ms)
        + REPORT_GRACE
        + if step.collect_max > 0 {
            COLLECT_GRACE
        } else {
            Duration::ZERO
        }
}

/// What reading the frames came to.
struct Read {
    ending: Option<Ending>,
    decoder: Decoder,
    init_stderr: Vec<u8>,
}

/// Runs `step` over `attachment` to its outcome.
pub async fn drive(
    id: StepId<'_>,
    attachment: &mut Attachment,
    step: &Step<'_>,
    limits: &StageLimits,
    output: Option<&OutputSink>,
    probe: &dyn Probe,
) -> Result<StepOutcome, BackendError> {
    let started = Instant::now();
    let Attachment {
        input,
        output: frames,
    } = attachment;
    let job = step.encode();
    let write = async {
        input.write_all(&job).await?;
        input.flush().await
    };
    let mut decoder = Decoder::new(
        limits.stdout_max_bytes,
        limits.stderr_max_bytes,
        step.collect_max,
    );
    let mut init_stderr = Vec::new();
    let read = async {
        let mut live = LiveOutput::default();
        while let Some(item) = frames.next().await {
            match item? {
                Output::Stdout(bytes) => {
                    let end = decoder.feed(&bytes).map_err(|e| id.protocol(e))?.cloned();
                    if let Some(sink) = output {
                        live.forward(&decoder, sink);
                    }
                    if end.is_some() {
                        return Ok(end);
                    }
                }
                Output::Stderr(bytes) => {
                    let room = INIT_STDERR_MAX.saturating_sub(init_stderr.len());
                    init_stderr.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
        }
        Ok::<_, BackendError>(None)
    };
    let limit = deadline(step);
    let exchanged = tokio::time::timeout(limit, exchange(write, read)).await;
    let (written, ending) = match exchanged {
        Ok((written, ending)) => (written, ending?),
        Err(_) => {
            // sandbox-init enforces every limit itself; getting here means
            // the sandbox stopped answering. Stop it from outside.
            probe.kill().await?;
            warn!(
                job = id.job,
                sandbox = id.sandbox,
                "no report within {limit:?}; stopped from the host"
            );
            // Memory running out is the verdict whatever else happened.
            let hit = if probe.ended(Duration::ZERO).await?.oom_killed {
                LimitHit::Memory
            } else {
                LimitHit::WallTime
            };
            return Ok(StepOutcome {
                result: stopped_outside(&decoder, started, hit, limits, Some(limit)),
                archive: None,
            });
        }
    };
    let read = Read {
        ending,
        decoder,
        init_stderr,
    };
    conclude(id, read, written, started, limits, step, probe).await
}

/// The outcome from how the frames ended.
async fn conclude(
    id: StepId<'_>,
    read: Read,
    written: Option<std::io::Result<()>>,
    started: Instant,
    limits: &StageLimits,
    step: &Step<'_>,
    probe: &dyn Probe,
) -> Result<StepOutcome, BackendError> {
    let Read {
        ending,
        decoder,
        init_stderr,
    } = read;
    match ending {
        Some(Ending::Report(report)) => Ok(reported(report, decoder, limits, step, probe).await?),
        Some(Ending::Failed(message)) => Err(BackendError::Init {
            job: id.job.to_owned(),
            sandbox: id.sandbox.to_owned(),
            message,
        }),
        None => {
            // The stream ended without a result: sandbox-init died. The
            // platform knows whether memory ran out.
            let ended = probe.ended(REPORT_GRACE).await?;
            if ended.oom_killed {
                return Ok(StepOutcome {
                    result: stopped_outside(&decoder, started, LimitHit::Memory, limits, None),
                    archive: None,
                });
            }
            let written = written
                .and_then(Result::err)
                .map(|e| format!("; sending the job failed: {e}"));
            Err(BackendError::NoResult {
                job: id.job.to_owned(),
                sandbox: id.sandbox.to_owned(),
                exit_code: ended.exit_code,
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&init_stderr).trim(),
                    written.unwrap_or_default()
                ),
            })
        }
    }
}

/// Sends the step and reads the frames together, until the read ends (a
/// report, a fatal error, or the stream closed). A write still under way
/// then is abandoned: a sandbox killed for memory stops reading its stdin,
/// and waiting for the write would wait for the step's whole deadline.
async fn exchange<W, R>(write: W, read: R) -> (Option<std::io::Result<()>>, R::Output)
where
    W: Future<Output = std::io::Result<()>>,
    R: Future,
{
    tokio::pin!(write);
    tokio::pin!(read);
    let mut written = None;
    loop {
        tokio::select! {
            biased;
            r = &mut read => return (written, r),
            w = &mut write, if written.is_none() => written = Some(w),
        }
    }
}

/// The outcome of a step sandbox-init reported on.
async fn reported(
    report: Report,
    mut decoder: Decoder,
    limits: &StageLimits,
    step: &Step<'_>,
    probe: &dyn Probe,
) -> Result<StepOutcome, BackendError> {
    let platform_oom = if report.oom_kills.is_none() {
        // The cgroup was unreadable inside: ask the platform.
        probe.ended(REPORT_GRACE).await?.oom_killed
    } else {
        false
    };
    let collected = report.collected;
    let collect_error = report.collect_error.clone();
    let stdout = std::mem::take(&mut decoder.stdout);
    let stderr = std::mem::take(&mut decoder.stderr);
    let combined = std::mem::take(&mut decoder.combined);
    let mut result = report.into_stage(stdout, stderr, combined, limits, platform_oom);
    if let Some(why) = collect_error {
        // The program succeeded, but what it left in /work cannot be
        // carried to the next stage.
        result.limit = Some(LimitHit::Output);
        result.message = Some(format!(
            "the files left in /work cannot be carried to the next stage: {why}"
        ));
    }
    Ok(StepOutcome {
        archive: (step.collect_max > 0 && collected)
            .then(|| std::mem::take(&mut decoder.artifacts)),
        result,
    })
}

/// The result of a step sandbox-init could not report on: stopped from the
/// host (`waited`), or gone with the platform's word that memory ran out.
fn stopped_outside(
    decoder: &Decoder,
    started: Instant,
    limit: LimitHit,
    limits: &StageLimits,
    waited: Option<Duration>,
) -> StageResult {
    let message = match (limit, waited) {
        (LimitHit::Memory, _) => format!(
            "the container reached its memory limit of {} MiB",
            limits.memory_bytes >> 20
        ),
        (_, Some(w)) => format!(
            "the sandbox did not finish within {} ms; the runner stopped it",
            w.as_millis()
        ),
        (_, None) => "the sandbox was stopped".to_owned(),
    };
    StageResult {
        stdout_truncated: false,
        stderr_truncated: false,
        exit_code: None,
        signal: Some("SIGKILL".into()),
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: 0,
        // When memory ran out, it ran out at the limit.
        memory_peak_bytes: if limit == LimitHit::Memory {
            limits.memory_bytes
        } else {
            0
        },
        limit: Some(limit),
        message: Some(message),
        ..StageResult::with_output(&decoder.stdout, &decoder.stderr, &decoder.combined)
    }
}

/// Forwards output as it arrives, cut at UTF-8 character boundaries so a
/// character split across two frames is never mangled.
#[derive(Debug, Default)]
struct LiveOutput {
    stdout_sent: usize,
    stderr_sent: usize,
}

impl LiveOutput {
    fn forward(&mut self, decoder: &Decoder, sink: &OutputSink) {
        for (stream, buf, sent) in [
            (OutputStream::Stdout, &decoder.stdout, &mut self.stdout_sent),
            (OutputStream::Stderr, &decoder.stderr, &mut self.stderr_sent),
        ] {
            let pending = &buf[*sent..];
            let complete = match std::str::from_utf8(pending) {
                Ok(_) => pending.len(),
                // An incomplete character at the end waits for the next frame;
                // invalid bytes elsewhere go out (lossily) now.
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            if complete == 0 {
                continue;
            }
            let text = String::from_utf8_lossy(&pending[..complete]).into_owned();
            *sent += complete;
            let _ = sink.send((stream, text));
        }
    }
}
