//! One stage in one fresh container: create, attach, start, hand the job to
//! `sandbox-init`, collect its frames, remove the container.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use super::pool::Warm;
use super::protocol::{Decoder, Ending, Job};
use super::reaper::Reaper;
use super::uids::{UidAllocator, UidLease};
use super::{EventSink, OutputStream, SandboxError, SandboxEvent, SandboxStats, StageKind};
use crate::engine::{Attachment, ContainerEngine, EngineError, Output, SandboxSpec};
use crate::limits::StageLimits;
use crate::verdict::{LimitHit, StageResult};

/// Time beyond a stage's wall-clock limit for sandbox-init to report: file
/// extraction before the run, the kill and reaping after it.
pub const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Extra time when /work is archived after the stage (bounded in sandbox-init).
pub const COLLECT_GRACE: Duration = Duration::from_secs(10);
/// sandbox-init's own diagnostics kept from its stderr.
const INIT_STDERR_MAX: usize = 4096;

/// What a stage produced.
#[derive(Debug)]
pub struct StageOutcome {
    pub result: StageResult,
    /// `/work` after the stage, as a tar archive, when collection was asked
    /// for and the stage succeeded.
    pub archive: Option<Vec<u8>>,
}

/// Queues a container for removal when dropped while still armed: a
/// cancelled job (the client went away, Ctrl-C) leaves nothing behind, and
/// [`Reaper::flush`] waits for the removal. Holds the container's uid lease
/// until then.
struct RemoveOnDrop<'a> {
    reaper: &'a Reaper,
    id: Option<String>,
    lease: Option<UidLease>,
}

impl RemoveOnDrop<'_> {
    /// Stops the guard; the lease is the caller's to give back once the
    /// container is gone.
    fn disarm(mut self) -> Option<UidLease> {
        self.id = None;
        self.lease.take()
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.reaper.remove(id, self.lease.take());
        }
    }
}

pub struct StageRun<'a> {
    pub engine: &'a Arc<dyn ContainerEngine>,
    pub reaper: &'a Arc<Reaper>,
    pub uids: &'a UidAllocator,
    pub stats: &'a SandboxStats,
    pub events: Option<&'a EventSink>,
    pub job_id: &'a str,
    pub kind: StageKind,
    pub spec: SandboxSpec,
    pub job: Job<'a>,
    pub limits: &'a StageLimits,
}

impl StageRun<'_> {
    /// Runs the stage in `warm` (a started container from the pool) or, when
    /// none was ready, in a container created now.
    pub async fn run(self, warm: Option<Warm>) -> Result<StageOutcome, SandboxError> {
        let err = |source: EngineError| SandboxError::Engine {
            job: self.job_id.to_owned(),
            stage: self.kind,
            source,
        };
        let (id, lease, warm) = match warm {
            Some(w) => (w.id, Some(w.lease), Some(w.attachment)),
            None => {
                let (id, lease) = self.create().await?;
                (id, lease, None)
            }
        };
        // From here on, dropping the stage removes the container.
        let guard = RemoveOnDrop {
            reaper: self.reaper,
            id: Some(id.clone()),
            lease,
        };
        let attachment = match warm {
            Some(attachment) => Ok(attachment),
            None => {
                // Attaching and starting are independent: one round trip
                // instead of two. Nothing is lost: sandbox-init writes only
                // after it has read its job.
                let (attached, started) =
                    tokio::join!(self.engine.attach(&id), self.engine.start(&id));
                match (attached, started) {
                    (Ok(a), Ok(())) => Ok(a),
                    (Err(e), _) | (_, Err(e)) => Err(err(e)),
                }
            }
        };
        debug!(container = %id, stage = %self.kind, "ready");
        let outcome = match attachment {
            Ok(a) => self.drive(&id, a).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(o) => {
                let lease = guard.disarm();
                // Off the critical path: the result does not wait for the
                // engine to remove the container.
                self.reaper.remove(id, lease);
                if let Some(events) = self.events {
                    let _ = events.send(SandboxEvent::StageFinished {
                        stage: self.kind,
                        result: o.result.clone(),
                    });
                }
                Ok(o)
            }
            Err(cause) => {
                // On failure, remove now, so a failed removal is reported
                // together with what went wrong first.
                let cleanup = self.engine.remove(&id).await;
                guard.disarm();
                match cleanup {
                    Ok(()) => Err(cause),
                    Err(cleanup) => {
                        self.stats.remove_failures.fetch_add(1, Ordering::Relaxed);
                        Err(SandboxError::Cleanup {
                            cause: Box::new(cause),
                            cleanup,
                        })
                    }
                }
            }
        }
    }

    /// Creates the stage's container, running as a uid leased for it alone
    /// (see [`Reaper::create`]: a cancelled stage never leaves one behind,
    /// even mid-creation).
    async fn create(&self) -> Result<(String, Option<UidLease>), SandboxError> {
        let lease = self.uids.lease().map_err(|source| SandboxError::Uid {
            job: self.job_id.to_owned(),
            stage: self.kind,
            source,
        })?;
        let mut spec = self.spec.clone();
        super::spec::run_as(&mut spec, &lease);
        let created = self.reaper.create(self.engine, spec, Some(lease)).await;
        let created = created.map_err(|e| {
            self.stats.create_failures.fetch_add(1, Ordering::Relaxed);
            match e {
                EngineError::ImageMissing { image } => SandboxError::ImageMissing { image },
                source => SandboxError::Engine {
                    job: self.job_id.to_owned(),
                    stage: self.kind,
                    source,
                },
            }
        })?;
        self.stats
            .containers_created
            .fetch_add(1, Ordering::Relaxed);
        Ok(created)
    }

    async fn drive(&self, id: &str, attachment: Attachment) -> Result<StageOutcome, SandboxError> {
        let err = |source: EngineError| SandboxError::Engine {
            job: self.job_id.to_owned(),
            stage: self.kind,
            source,
        };
        let Attachment {
            mut input,
            mut output,
        } = attachment;
        let started = Instant::now();
        if let Some(events) = self.events {
            let _ = events.send(SandboxEvent::StageStarted(self.kind));
        }
        let mut live = LiveOutput::default();

        let collect = self.job.collect_max > 0;
        let mut decoder = Decoder::new(
            self.limits.stdout_max_bytes,
            self.limits.stderr_max_bytes,
            self.job.collect_max,
        );
        let mut init_stderr = Vec::new();
        let job = self.job.encode();
        let write = async {
            input.write_all(&job).await?;
            input.flush().await?;
            input.shutdown().await
        };
        let read = async {
            while let Some(item) = output.next().await {
                match item.map_err(err)? {
                    Output::Stdout(bytes) => {
                        let end = decoder
                            .feed(&bytes)
                            .map_err(|source| SandboxError::Protocol {
                                job: self.job_id.to_owned(),
                                stage: self.kind,
                                source,
                            })?
                            .cloned();
                        if let Some(events) = self.events {
                            live.forward(self.kind, &decoder, events);
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
            Ok::<_, SandboxError>(None)
        };
        let deadline = Duration::from_millis(self.limits.wall_time_ms)
            + REPORT_GRACE
            + if collect {
                COLLECT_GRACE
            } else {
                Duration::ZERO
            };
        let (written, ending) = match tokio::time::timeout(deadline, exchange(write, read)).await {
            Ok((written, read)) => (written, read?),
            Err(_) => {
                // sandbox-init enforces every limit itself; getting here means
                // the container stopped answering. Stop it from outside.
                self.engine.kill(id).await.map_err(err)?;
                warn!(container = %id, "no report within {deadline:?}; killed from the host");
                // Memory running out is the verdict whatever else happened.
                let (limit, message) = if self.engine.inspect(id).await.map_err(err)?.oom_killed {
                    (LimitHit::Memory, self.memory_message())
                } else {
                    let message = format!(
                        "the sandbox did not finish within {} ms; the runner stopped it",
                        deadline.as_millis()
                    );
                    (LimitHit::WallTime, message)
                };
                return Ok(self.stopped_outside(&decoder, started, limit, message));
            }
        };

        match ending {
            Some(Ending::Report(report)) => {
                let engine_oom = if report.oom_kills.is_none() {
                    // The cgroup was unreadable inside: ask the engine.
                    let _ = tokio::time::timeout(REPORT_GRACE, self.engine.wait(id)).await;
                    self.engine.inspect(id).await.map_err(err)?.oom_killed
                } else {
                    false
                };
                let collected = report.collected;
                let collect_error = report.collect_error.clone();
                let stdout = std::mem::take(&mut decoder.stdout);
                let stderr = std::mem::take(&mut decoder.stderr);
                let combined = std::mem::take(&mut decoder.combined);
                let mut result =
                    report.into_stage(stdout, stderr, combined, self.limits, engine_oom);
                if let Some(why) = collect_error {
                    // The program succeeded, but what it left in /work
                    // cannot be carried to the next stage.
                    result.limit = Some(LimitHit::Output);
                    result.message = Some(format!(
                        "the files left in /work cannot be carried to the next stage: {why}"
                    ));
                }
                Ok(StageOutcome {
                    archive: (collect && collected).then(|| std::mem::take(&mut decoder.artifacts)),
                    result,
                })
            }
            Some(Ending::Failed(message)) => Err(SandboxError::Init {
                job: self.job_id.to_owned(),
                stage: self.kind,
                message,
            }),
            None => {
                // The stream ended without a result: sandbox-init died. The
                // engine knows whether memory ran out.
                let _ = tokio::time::timeout(REPORT_GRACE, self.engine.wait(id)).await;
                let state = self.engine.inspect(id).await.map_err(err)?;
                if state.oom_killed {
                    let message = self.memory_message();
                    return Ok(self.stopped_outside(&decoder, started, LimitHit::Memory, message));
                }
                let written = written
                    .and_then(Result::err)
                    .map(|e| format!("; sending the job failed: {e}"));
                Err(SandboxError::NoResult {
                    job: self.job_id.to_owned(),
                    stage: self.kind,
                    exit_code: state.exit_code,
                    detail: format!(
                        "{}{}",
                        String::from_utf8_lossy(&init_stderr).trim(),
                        written.unwrap_or_default()
                    ),
                })
            }
        }
    }

    fn memory_message(&self) -> String {
        format!(
            "the container reached its memory limit of {} MiB",
            self.limits.memory_bytes >> 20
        )
    }

    /// The result of a stage sandbox-init could not report on: stopped from
    /// the host, or gone with the engine's word that memory ran out.
    fn stopped_outside(
        &self,
        decoder: &Decoder,
        started: Instant,
        limit: LimitHit,
        message: String,
    ) -> StageOutcome {
        // When memory ran out, it ran out at the limit.
        let memory_peak_bytes = if limit == LimitHit::Memory {
            self.limits.memory_bytes
        } else {
            0
        };
        StageOutcome {
            result: StageResult {
                stdout_truncated: false,
                stderr_truncated: false,
                exit_code: None,
                signal: Some("SIGKILL".into()),
                wall_ms: started.elapsed().as_millis() as u64,
                cpu_ms: 0,
                memory_peak_bytes,
                limit: Some(limit),
                message: Some(message),
                ..StageResult::with_output(&decoder.stdout, &decoder.stderr, &decoder.combined)
            },
            archive: None,
        }
    }
}

/// Sends the job and reads the frames together, until the read ends (a
/// report, a fatal error, or the stream closed). A write still under way
/// then is abandoned: a container killed for memory stops reading its stdin,
/// and waiting for the write would wait for the stage's whole deadline.
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

/// Forwards output as it arrives, cut at UTF-8 character boundaries so a
/// character split across two frames is never mangled.
#[derive(Debug, Default)]
struct LiveOutput {
    stdout_sent: usize,
    stderr_sent: usize,
}

impl LiveOutput {
    fn forward(&mut self, stage: StageKind, decoder: &Decoder, events: &EventSink) {
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
            let _ = events.send(SandboxEvent::Output {
                stage,
                stream,
                text,
            });
        }
    }
}
