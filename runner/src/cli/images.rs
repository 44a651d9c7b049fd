//! `runner images`: build the sandbox images, or list them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use runner::engine::ContainerEngine;
use runner::images::ImageBuilder;
use runner::images::build::Built;
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
        /// Only this language (name or alias); repeat for more.
        #[arg(long, short = 'l', value_name = "LANGUAGE")]
        language: Vec<String>,
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
    let docker = super::connect().await?;
    match cmd {
        ImagesCommand::List => {
            for lang in ctx.catalog.languages() {
                let present = docker
                    .image_labels(&lang.image)
                    .await
                    .map_err(infra)?
                    .is_some();
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
            force,
            no_verify,
        } => {
            let langs: Vec<Arc<Language>> = if language.is_empty() {
                ctx.catalog.languages().to_vec()
            } else {
                language
                    .iter()
                    .map(|l| ctx.catalog.find(l, None).map_err(usage))
                    .collect::<Result<_, _>>()?
            };
            let progress = |line: &str| eprintln!("{line}");
            let builder = ImageBuilder::new(docker.client(), &ctx.sources, &progress);
            if force {
                builder.ensure_base(true).await.map_err(infra)?;
            }
            let engine: Arc<dyn ContainerEngine> = Arc::new(docker.clone());
            let sandbox = Sandbox::new(engine, Arc::clone(&ctx.policy), Arc::clone(&ctx.catalog));
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
