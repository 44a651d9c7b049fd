//! `runner exec`: one submission, start to verdict.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use runner::backend::{ImageCheck, JobBackend};
use runner::images::ImageBuilder;
use runner::limits::LimitsRequest;
use runner::sandbox::{RunRequest, Sandbox, SandboxError};
use runner::submission::SubmissionFile;
use runner::verdict::Status;

use super::{Context, EXIT_INTERRUPTED, Failure, Global, infra, summary, usage};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Language name or alias (see `runner images list`).
    #[arg(long, short = 'l')]
    language: String,
    /// Version selector: `*`, an exact version, or a prefix such as `3`.
    #[arg(long = "version", value_name = "SELECTOR")]
    language_version: Option<String>,
    /// A source file; repeat for more. The first one is the entry point. Files
    /// keep their base names inside the sandbox.
    #[arg(long = "file", short = 'f', required = true, value_name = "PATH")]
    files: Vec<PathBuf>,
    /// File whose contents the program reads on stdin (default: none).
    #[arg(long, value_name = "PATH")]
    stdin_file: Option<PathBuf>,
    /// An argument for the program; repeat for more.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Run-stage time limit, wall-clock and CPU alike (default: the policy's).
    #[arg(long, value_name = "MS")]
    time_limit_ms: Option<u64>,
    /// Run-stage wall-clock limit; overrides --time-limit-ms.
    #[arg(long, value_name = "MS")]
    wall_time_limit_ms: Option<u64>,
    /// Run-stage CPU-time limit; overrides --time-limit-ms.
    #[arg(long, value_name = "MS")]
    cpu_time_limit_ms: Option<u64>,
    /// Run-stage memory limit (RAM, no swap).
    #[arg(long, value_name = "MB")]
    memory_limit_mb: Option<u64>,
    /// Compile-stage time limit, wall-clock and CPU alike.
    #[arg(long, value_name = "MS")]
    compile_time_limit_ms: Option<u64>,
    /// Compile-stage memory limit.
    #[arg(long, value_name = "MB")]
    compile_memory_limit_mb: Option<u64>,
    /// Bytes of stdout kept (and allowed) per stage.
    #[arg(long, value_name = "BYTES")]
    stdout_limit_bytes: Option<u64>,
    /// Bytes of stderr kept (and allowed) per stage.
    #[arg(long, value_name = "BYTES")]
    stderr_limit_bytes: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Fail instead of building the language's image when it is missing.
    #[arg(long)]
    no_build: bool,
}

/// Reads an input file, refusing anything larger than `max` bytes before
/// reading it all.
fn read_limited(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Failure> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {what} {}", path.display()))
        .map_err(usage)?;
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what} {}", path.display()))
        .map_err(usage)?;
    if buf.len() as u64 > max {
        return Err(usage(anyhow!(
            "{what} {} is larger than the policy's limit of {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

impl ExecArgs {
    fn request(&self, ctx: &Context) -> Result<RunRequest, Failure> {
        let input = &ctx.policy.input;
        let mut files = Vec::new();
        for path in &self.files {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                usage(anyhow!(
                    "{} has no usable file name (it must be UTF-8)",
                    path.display()
                ))
            })?;
            files.push(SubmissionFile {
                name: name.to_owned(),
                content: read_limited(path, input.max_file_bytes, "file")?,
            });
        }
        let stdin = match &self.stdin_file {
            Some(p) => read_limited(p, input.max_stdin_bytes, "stdin file")?,
            None => Vec::new(),
        };
        Ok(RunRequest {
            language: self.language.clone(),
            version: self.language_version.clone(),
            files,
            stdin,
            args: self.args.clone(),
            limits: LimitsRequest {
                run_wall_time_ms: self.wall_time_limit_ms.or(self.time_limit_ms),
                run_cpu_time_ms: self.cpu_time_limit_ms.or(self.time_limit_ms),
                run_memory_mb: self.memory_limit_mb,
                compile_wall_time_ms: self.compile_time_limit_ms,
                compile_cpu_time_ms: self.compile_time_limit_ms,
                compile_memory_mb: self.compile_memory_limit_mb,
                stdout_max_bytes: self.stdout_limit_bytes,
                stderr_max_bytes: self.stderr_limit_bytes,
            },
        })
    }
}

pub async fn run(global: &Global, args: ExecArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::load(global)?;
    let request = args.request(&ctx)?;
    let backend: Arc<dyn JobBackend> = super::docker(&ctx.policy).await?;
    let sandbox = Sandbox::new(
        Arc::clone(&backend),
        Arc::clone(&ctx.policy),
        Arc::clone(&ctx.catalog),
    );
    let prepared = sandbox.prepare(request).map_err(usage)?;

    if !args.no_build
        && backend
            .inspect_image(&prepared.language.image)
            .await
            .map_err(infra)?
            == ImageCheck::Missing
    {
        eprintln!(
            "runner: the {} sandbox image is not built yet; building it (once)",
            prepared.language.name
        );
        let progress = |line: &str| eprintln!("{line}");
        let images = super::images_engine().await?;
        ImageBuilder::new(&images, &ctx.sources, &progress)
            .ensure_language(&prepared.language, false)
            .await
            .map_err(infra)?;
    }

    let outcome = tokio::select! {
        r = sandbox.execute(&prepared) => Some(r),
        () = super::interrupted() => None,
    };
    let Some(outcome) = outcome else {
        // The job is dropped: its containers, including one the engine was
        // still creating, are queued for removal. Wait for that, then make
        // sure by the job's label.
        sandbox.shutdown().await;
        let removed = backend.remove_job(&prepared.id).await;
        if let Err(e) = removed {
            eprintln!(
                "runner: interrupted; removing the containers of job {} failed: {e}; run `runner gc`",
                prepared.id
            );
        } else {
            eprintln!(
                "runner: interrupted; removed the containers of job {}",
                prepared.id
            );
        }
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    // Used containers are removed in the background; wait for that before
    // exiting, after the result is out.
    let result = match outcome {
        Ok(r) => r,
        Err(e @ SandboxError::ImageMissing { .. }) => return Err(usage(e)),
        Err(e) => {
            let result = runner::sandbox::internal_error(&prepared.language, e.to_string());
            if args.json {
                summary::print_json(&result).map_err(infra)?;
            }
            sandbox.shutdown().await;
            return Err(infra(e));
        }
    };
    if args.json {
        summary::print_json(&result).map_err(infra)?;
    } else {
        summary::print_human(&result);
    }
    sandbox.shutdown().await;
    Ok(if result.status == Status::InternalError {
        ExitCode::from(super::EXIT_INFRA)
    } else {
        ExitCode::SUCCESS
    })
}
