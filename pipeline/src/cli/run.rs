//! `pipeline run`: build → push → sbom → scan → sign → attest for one image,
//! with a summary of each step, for CI. Nothing is signed unless the scan
//! passes the policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use pipeline::build;
use pipeline::cosign::{PredicateKind, provenance, publish};
use pipeline::reference::Reference;
use pipeline::sbom::{self, Options, Source};
use pipeline::scan::sarif::SarifContext;

use super::attest::vuln_predicate;
use super::registry::RegistryArgs;
use super::sign::load_signer;
use super::{Failure, infra, usage};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub what: super::build::BuildFlags,
    /// Private key to sign and attest with (password from COSIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Scan policy.
    #[arg(long, default_value = "policies/scan.yaml", value_name = "FILE")]
    pub policy: PathBuf,
    /// OpenVEX documents applied to the scan; repeatable.
    #[arg(long, value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// The grype binary (default: PIPELINE_GRYPE, else `grype` on PATH).
    #[arg(long, value_name = "PATH")]
    pub grype: Option<PathBuf>,
    /// Where the SBOM, scan reports (JSON, SARIF) and provenance are written.
    #[arg(long, default_value = "pipeline-out", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// One row of the summary.
struct Step {
    name: &'static str,
    seconds: f64,
    outcome: String,
}

fn builder_id() -> String {
    match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        (Ok(s), Ok(r), Ok(id)) => format!("{s}/{r}/actions/runs/{id}"),
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("pipeline@{}", host.trim())
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Base images named by the Dockerfile's FROM lines, with build arguments
/// and ARG defaults substituted; stage names are not images.
fn base_images(dockerfile: &Path, args: &[(String, String)]) -> Vec<String> {
    let text = std::fs::read_to_string(dockerfile).unwrap_or_default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages = Vec::new();
    let mut bases = Vec::new();
    let given: BTreeMap<&str, &str> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("ARG") => {
                if let Some(decl) = words.next() {
                    let (k, default) = decl.split_once('=').unwrap_or((decl, ""));
                    let v = given.get(k).copied().unwrap_or(default);
                    vars.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            Some("FROM") => {
                let Some(mut image) = words.find(|w| !w.starts_with("--")).map(str::to_owned)
                else {
                    continue;
                };
                for (k, v) in &vars {
                    image = image
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                let rest: Vec<&str> = words.collect();
                if let [as_, name] = rest.as_slice() {
                    if as_.eq_ignore_ascii_case("as") {
                        stages.push(name.to_ascii_lowercase());
                    }
                }
                if image != "scratch"
                    && !stages[..stages.len().saturating_sub(1)]
                        .contains(&image.to_ascii_lowercase())
                    && !bases.contains(&image)
                {
                    bases.push(image);
                }
            }
            _ => {}
        }
    }
    bases
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, Failure> {
    let path = dir.join(name);
    pipeline::output::write_atomically(&path, bytes).map_err(usage)?;
    Ok(path)
}

fn print_summary(steps: &[Step], json: bool, image: Option<&str>) {
    if json {
        let rows: Vec<_> = steps.iter().map(|s| serde_json::json!({"step": s.name, "seconds": (s.seconds * 100.0).round() / 100.0, "outcome": s.outcome})).collect();
        println!("{}", serde_json::json!({"image": image, "steps": rows}));
        return;
    }
    println!("{:<8} {:>8}  outcome", "step", "seconds");
    for s in steps {
        println!("{:<8} {:>8.2}  {}", s.name, s.seconds, s.outcome);
    }
    if let Some(i) = image {
        println!("image: {i}");
    }
}

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let mut steps: Vec<Step> = Vec::new();
    let started_on = now_rfc3339();
    // Check what can be checked before spending minutes on a build.
    let signer = load_signer(&args.key)?;
    let policy = pipeline::scan::ScanPolicy::load(&args.policy).map_err(usage)?;
    let vex = args
        .vex
        .iter()
        .map(|p| pipeline::scan::load_vex(p).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))
        .map_err(usage)?;
    let req = args.what.request()?;
    let plan = build::plan(&req).map_err(usage)?;
    let docker = super::connect().await?;
    let progress = |line: &str| eprintln!("{line}");

    macro_rules! step {
        ($name:literal, $body:expr) => {{
            let t = Instant::now();
            match $body {
                Ok((value, outcome)) => {
                    steps.push(Step {
                        name: $name,
                        seconds: t.elapsed().as_secs_f64(),
                        outcome,
                    });
                    value
                }
                Err(failure) => {
                    let f: Failure = failure;
                    steps.push(Step {
                        name: $name,
                        seconds: t.elapsed().as_secs_f64(),
                        outcome: format!("FAILED: {:#}", f.error),
                    });
                    print_summary(&steps, args.json, None);
                    return Err(f);
                }
            }
        }};
    }

    let built = step!(
        "build",
        build::build(&docker, &req, &progress)
            .await
            .map(|b| {
                let outcome = format!("{} ({})", b.tag, &b.id[..19.min(b.id.len())]);
                (b, outcome)
            })
            .map_err(super::build::failure)
    );

    let pushed = step!(
        "push",
        pipeline::push::push(&docker, &built.tag, &progress)
            .await
            .map(|p| {
                let o = p.reference.clone();
                (p, o)
            })
            .map_err(|e| if e.is_usage() { usage(e) } else { infra(e) })
    );
    let reference = Reference::parse(&pushed.reference).map_err(usage)?;

    let sbom_path = step!(
        "sbom",
        async {
            let options = Options {
                source_date_epoch: super::source_date_epoch()?,
                insecure_registries: args.registry.insecure(),
                platform: pipeline::registry::manifest::Platform::host(),
            };
            let report = sbom::generate(&Source::Registry(reference.clone()), &options)
                .await
                .map_err(|e| if e.is_usage() { usage(e) } else { infra(e) })?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            let path = write(&args.output_dir, "sbom.cdx.json", &report.json)?;
            Ok((
                path.clone(),
                format!(
                    "{} components, {} warnings → {}",
                    report.components,
                    report.warnings.len(),
                    path.display()
                ),
            ))
        }
        .await
    );

    let scan_started = now_rfc3339();
    let grype_report = step!("scan", {
        let opts = pipeline::scan::GrypeOptions {
            program: args
                .grype
                .clone()
                .unwrap_or_else(pipeline::scan::grype::default_program),
            ..Default::default()
        };
        let sbom_path = sbom_path.clone();
        let ran = tokio::task::spawn_blocking(move || pipeline::scan::run_grype(&sbom_path, &opts))
            .await
            .map_err(infra)?;
        match ran {
            Ok(bytes) => {
                let report =
                    pipeline::scan::parse_report(&bytes, "grype's output").map_err(infra)?;
                let today = time::OffsetDateTime::now_utc().date();
                let eval = pipeline::scan::evaluate_for_image(
                    &report,
                    &policy,
                    &vex,
                    today,
                    std::slice::from_ref(&pushed.digest),
                );
                write(
                    &args.output_dir,
                    "scan.json",
                    &serde_json::to_vec_pretty(&eval.to_json()).map_err(infra)?,
                )?;
                write(
                    &args.output_dir,
                    "scan.sarif",
                    &serde_json::to_vec_pretty(&eval.to_sarif(&SarifContext {
                        repository_root: Some(plan.git.root.clone()),
                        dockerfile: Some(plan.dockerfile.clone()),
                    }))
                    .map_err(infra)?,
                )?;
                write(&args.output_dir, "grype.json", &bytes)?;
                eprint!("{}", eval.table());
                if eval.passed() {
                    Ok((bytes, format!("passed: {}", eval.summary())))
                } else {
                    Err(Failure {
                        code: super::scan::EXIT_POLICY_FAILED,
                        error: anyhow!(
                            "the scan fails the policy {}: {}",
                            args.policy.display(),
                            eval.summary()
                        ),
                    })
                }
            }
            Err(e) if e.is_grype_not_found() => Err(Failure {
                code: super::scan::EXIT_GRYPE_MISSING,
                error: e.into(),
            }),
            Err(e) if e.is_usage() => Err(usage(e)),
            Err(e) => Err(infra(e)),
        }
    });
    let scan_finished = now_rfc3339();

    let client = args.registry.client(&reference)?;
    let digest = pushed.digest.clone();
    let repository = reference.name();
    let annotations = BTreeMap::from([("commit".to_owned(), built.revision.clone())]);
    let (client, signer) = step!("sign", {
        let (repository, digest) = (repository.clone(), digest.clone());
        tokio::task::spawn_blocking(move || {
            let r = publish::sign_image(&client, &repository, &digest, &signer, &annotations);
            (client, signer, r)
        })
        .await
        .map_err(infra)
        .and_then(|(client, signer, r)| match r {
            Ok(s) => Ok(((client, signer), format!("signature under {}", s.tag))),
            Err(e) => Err(if e.is_usage() { usage(e) } else { infra(e) }),
        })
    });

    let sbom_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_path).map_err(infra)?).map_err(infra)?;
    let scan_json: serde_json::Value = serde_json::from_slice(&grype_report).map_err(infra)?;
    let base_digests: Vec<(String, Option<String>)> = {
        let mut out = Vec::new();
        for b in base_images(&plan.dockerfile, &args.what.build_args) {
            let id = docker.inspect_image(&b).await.ok().and_then(|i| {
                i.repo_digests
                    .and_then(|d| {
                        d.first()
                            .and_then(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
                    })
                    .or(i.id)
            });
            out.push((b, id));
        }
        out
    };
    let facts = provenance::BuildFacts {
        builder_id: builder_id(),
        source: plan.git.source.clone(),
        commit: built.revision.clone(),
        dirty: built.dirty,
        context: args.what.context.display().to_string(),
        dockerfile: plan.dockerfile.display().to_string(),
        build_args: args.what.build_args.iter().cloned().collect(),
        image: pushed.reference.clone(),
        base_images: base_digests,
        invocation_id: std::env::var("GITHUB_RUN_ID")
            .unwrap_or_else(|_| format!("{}", std::process::id())),
        started_on,
        finished_on: now_rfc3339(),
    };
    let provenance = provenance::predicate(&facts);
    write(
        &args.output_dir,
        "provenance.json",
        &serde_json::to_vec_pretty(&provenance).map_err(infra)?,
    )?;
    let predicates = vec![
        (PredicateKind::CycloneDx, sbom_json),
        (
            PredicateKind::Vuln,
            vuln_predicate(scan_json, Some(scan_started), Some(scan_finished)),
        ),
        (PredicateKind::SlsaProvenance, provenance),
    ];
    step!("attest", {
        let (repository, digest) = (repository.clone(), digest.clone());
        tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            for (kind, predicate) in predicates {
                publish::attest_image(
                    &client,
                    &repository,
                    &digest,
                    &signer,
                    kind.uri(),
                    predicate,
                )
                .map_err(|e| if e.is_usage() { usage(e) } else { infra(e) })?;
                names.push(kind.name());
            }
            Ok(((), names.join(", ")))
        })
        .await
        .map_err(infra)?
    });
    print_summary(&steps, args.json, Some(&pushed.reference));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_come_from_from_lines() {
        let dir = test_support::TempDir::new("run-bases");
        let f = dir.path().join("Dockerfile");
        std::fs::write(&f, "ARG BASE=runner-sandbox/base:latest\nARG DEBIAN_IMAGE=debian:bookworm-slim\nFROM ${DEBIAN_IMAGE} AS build\nRUN x\nFROM build AS second\nFROM $BASE\nFROM scratch\n").unwrap();
        assert_eq!(
            base_images(&f, &[("BASE".into(), "b:1".into())]),
            ["debian:bookworm-slim", "b:1"]
        );
    }
}
