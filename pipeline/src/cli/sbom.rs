//! `pipeline sbom`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use pipeline::registry::manifest::Platform;
use pipeline::sbom::{self, Options, Source};

use super::{Failure, infra, usage};

/// Extra registries reached over plain HTTP, comma-separated.
const INSECURE_ENV: &str = "PIPELINE_INSECURE_REGISTRIES";

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
    /// A registry (HOST:PORT) to reach over plain HTTP; loopback ones always are.
    /// Repeatable; also PIPELINE_INSECURE_REGISTRIES=HOST:PORT,...
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// The image to pick from a multi-platform index (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    pub platform: Option<Platform>,
}

pub async fn run(args: SbomArgs) -> Result<ExitCode, Failure> {
    let mut insecure = args.insecure_registries;
    if let Ok(list) = std::env::var(INSECURE_ENV) {
        insecure.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    let options = Options {
        source_date_epoch: super::source_date_epoch()?,
        insecure_registries: insecure,
        platform: args.platform.unwrap_or_else(Platform::host),
    };
    let report = sbom::generate(&args.source, &options)
        .await
        .map_err(|e| if e.is_usage() { usage(e) } else { infra(e) })?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match &args.output {
        Some(path) => write_atomically(path, &report.json).map_err(usage)?,
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

/// Writes next to the destination and renames, so a reader never sees half
/// an SBOM.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    // Devices and pipes (`-o /dev/null`, `-o /dev/stdout`) are written in
    // place: renaming over them would replace them.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        return f
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
