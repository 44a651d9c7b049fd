//! `runner images`: build the sandbox images, or list them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use runner::backend::JobBackend;
use runner::images::ImageBuilder;
use runner::images::build::Built;
use runner::images::jobs::{JobImage, JobImages, run_check};
use runner::language::Language;
use runner::limits::LimitsRequest;
use runner::sandbox::{RunRequest, Sandbox};
use runner::submission::SubmissionFile;
use runner::verdict::Status;

use super::{Context, Failure, Global, infra, usage};

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Build the sandbox images that are missing (all languages by default),
    /// then check each by running its test program, which must print OK.
    Build {
        /// Only this language (name or alias); repeat for more. With
        /// `--language` or `--job`, only what they name is built.
        #[arg(long, short = 'l', value_name = "LANGUAGE")]
        language: Vec<String>,
        /// Only this workflow job image (e.g. `debian`); repeat for more.
        #[arg(long, short = 'j', value_name = "JOB_IMAGE")]
        job: Vec<String>,
        /// Rebuild even when the image is present.
        #[arg(long)]
        force: bool,
        /// Skip the test run after building.
        #[arg(long)]
        no_verify: bool,
    },
    /// List the languages, their images and whether each is built.
    List,
}

pub async fn run(global: &Global, cmd: ImagesCommand) -> Result<ExitCode, Failure> {
    let ctx = Context::load(global)?;
    match cmd {
        ImagesCommand::List => {
            let images = super::images_engine().await?;
            for lang in ctx.catalog.languages() {
                let present = runner::images::engine::ImageEngine::exists(&images, &lang.image)
                    .await
                    .map_err(infra)?;
                println!(
                    "{:<12} {:<10} {:<48} {}",
                    lang.name,
                    lang.version,
                    lang.image,
                    if present { "built" } else { "not built" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Build {
            language,
            job,
            force,
            no_verify,
        } => {
            let jobs = job_images(&ctx, &language, &job)?;
            let langs: Vec<Arc<Language>> = if language.is_empty() && job.is_empty() {
                ctx.catalog.languages().to_vec()
            } else {
                language
                    .iter()
                    .map(|l| ctx.catalog.find(l, None).map_err(usage))
                    .collect::<Result<_, _>>()?
            };
            let progress = |line: &str| eprintln!("{line}");
            let images = super::images_engine().await?;
            let builder = ImageBuilder::new(&images, &ctx.sources, &progress);
            if force {
                builder.ensure_base(true).await.map_err(infra)?;
            }
            let backend: Arc<dyn JobBackend> = super::docker(&ctx.policy).await?;
            let sandbox = Sandbox::new(backend, Arc::clone(&ctx.policy), Arc::clone(&ctx.catalog));
            let mut failed = Vec::new();
            for lang in &langs {
                let built = builder.ensure_language(lang, force).await.map_err(infra)?;
                let verdict = if no_verify {
                    "not checked".to_owned()
                } else {
                    match smoke_test(&sandbox, &ctx, lang).await {
                        Ok(()) => "prints OK".to_owned(),
                        Err(e) => {
                            failed.push(lang.name.clone());
                            format!("FAILED: {e:#}")
                        }
                    }
                };
                let state = match built {
                    Built::Present(_) => "present",
                    Built::Built(_) => "built",
                };
                println!("{:<12} {:<48} {state:<8} {verdict}", lang.name, lang.image);
            }
            for image in &jobs {
                let built = builder
                    .ensure_job_image(image, force)
                    .await
                    .map_err(infra)?;
                let verdict = if no_verify {
                    "not checked".to_owned()
                } else {
                    match check_job_image(&sandbox, &ctx, image).await {
                        Ok(()) => "tools report their versions".to_owned(),
                        Err(e) => {
                            failed.push(image.name.clone());
                            format!("FAILED: {e:#}")
                        }
                    }
                };
                let state = match built {
                    Built::Present(_) => "present",
                    Built::Built(_) => "built",
                };
                println!(
                    "{:<12} {:<48} {state:<8} {verdict}",
                    format!("job:{}", image.name),
                    image.image
                );
            }
            sandbox.shutdown().await;
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(infra(anyhow!(
                    "the test program failed for: {}",
                    failed.join(", ")
                )))
            }
        }
    }
}

/// The job images to build: all of them unless `--language` or `--job`
/// narrowed the build, then those `--job` names.
fn job_images(
    ctx: &Context,
    language: &[String],
    job: &[String],
) -> Result<Vec<Arc<JobImage>>, Failure> {
    let all = JobImages::load(&ctx.sources).map_err(usage)?;
    if job.is_empty() {
        return Ok(if language.is_empty() {
            all.all().to_vec()
        } else {
            Vec::new()
        });
    }
    job.iter()
        .map(|name| {
            all.all()
                .iter()
                .find(|i| &i.name == name)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = all.all().iter().map(|i| i.name.as_str()).collect();
                    usage(anyhow!(
                        "no job image is named {name:?}; job images: {}",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// Runs each of the job image's version checks.
async fn check_job_image(sandbox: &Sandbox, ctx: &Context, image: &JobImage) -> anyhow::Result<()> {
    for check in &image.checks {
        let r = run_check(sandbox.backend(), &ctx.policy, &image.image, &check.command).await?;
        let said = format!("{}{}", r.stdout, r.stderr);
        if !said.contains(&check.expect) {
            return Err(anyhow!(
                "`{}` prints {:?}, not {:?}; update sandbox-images/{}/job.toml",
                check.command.join(" "),
                said.trim(),
                check.expect,
                image.dir
            ));
        }
    }
    Ok(())
}

/// Runs the language's test program, which must print `OK`, and checks the
/// toolchain's version against the manifest.
async fn smoke_test(sandbox: &Sandbox, ctx: &Context, lang: &Arc<Language>) -> anyhow::Result<()> {
    let probe = sandbox.run_command(lang, &lang.version_command).await?;
    let said = format!("{}{}", probe.stdout, probe.stderr);
    if !said.contains(&lang.version) {
        return Err(anyhow!(
            "the manifest says version {}, but `{}` prints {:?}; update sandbox-images/{}/manifest.toml",
            lang.version,
            lang.version_command.join(" "),
            said.trim(),
            lang.dir
        ));
    }
    let content = ctx
        .sources
        .file(&format!("{}/{}", lang.dir, lang.test_file))
        .ok_or_else(|| anyhow!("{} is missing", lang.test_file))?
        .to_vec();
    let prepared = sandbox.prepare(RunRequest {
        language: lang.name.clone(),
        files: vec![SubmissionFile {
            name: lang.test_file.clone(),
            content,
        }],
        limits: LimitsRequest::default(),
        ..Default::default()
    })?;
    let result = sandbox.execute(&prepared).await?;
    let stdout = result.run.as_ref().map(|r| r.stdout.as_str()).unwrap_or("");
    if result.status != Status::Ok || stdout.trim() != "OK" {
        return Err(anyhow!(
            "status {}, stdout {:?}, stderr {:?}",
            result.status,
            stdout,
            result
                .compile
                .as_ref()
                .filter(|c| !c.succeeded())
                .or(result.run.as_ref())
                .map(|s| s.stderr.as_str())
                .unwrap_or("")
        ));
    }
    Ok(())
}
