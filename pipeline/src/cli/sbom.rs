//! `pipeline sbom`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use pipeline::registry::manifest::Platform;
use pipeline::sbom::{self, Options, Source};

use super::{Failure, infra};

#[derive(Debug, clap::Args)]
pub struct SbomArgs {
    /// What to describe: docker:IMAGE, registry:REF, docker-archive:PATH or dir:PATH.
    #[arg(value_name = "SOURCE", value_parser = Source::parse)]
    pub source: Source,
    /// Write the SBOM to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With -o: print a JSON summary (components, warnings) on standard output.
    #[arg(long, requires = "output")]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// The image to pick from a multi-platform index (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    pub platform: Option<Platform>,
}

pub async fn run(args: SbomArgs) -> Result<ExitCode, Failure> {
    let options = Options {
        source_date_epoch: super::source_date_epoch()?,
        insecure_registries: args.registry.insecure(),
        platform: args.platform.unwrap_or_else(Platform::host),
    };
    let report = sbom::generate(&args.source, &options).await?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match &args.output {
        Some(path) => pipeline::output::write_atomically(path, &report.json)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&report.json)
                .and_then(|()| out.flush())
                .context("cannot write the SBOM to standard output")
                .map_err(infra)?;
        }
    }
    if args.json {
        let summary = serde_json::json!({
            "source": report.subject.name,
            "output": args.output,
            "image": report.subject.image.as_ref().map(|i| &i.id),
            "manifestDigest": report.subject.image.as_ref().and_then(|i| i.manifest_digest.as_ref()),
            "components": report.components,
            "warnings": report.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
