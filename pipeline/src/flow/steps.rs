//! The steps of a run, each a function of what the steps before produced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bollard::Docker;

use super::error::FlowError;
use super::report::{RunReport, ScanVerdict, Step};
use super::{Progress, RunPlan, facts};
use crate::build::Built;
use crate::clock::now_rfc3339;
use crate::cosign::{PredicateKind, predicate, provenance, publish};
use crate::push::Pushed;
use crate::reference::Reference;
use crate::registry::Client;
use crate::registry::manifest::Platform;
use crate::sbom::{self, Source};
use crate::scan::sarif::SarifContext;

/// What the scan step leaves for the attestations.
struct Scanned {
    grype_report: Vec<u8>,
    started: String,
    finished: String,
}

/// build → push → sbom → scan → sign → attest, each recorded in `report`.
pub(super) async fn run(
    plan: &RunPlan,
    docker: &Docker,
    progress: &Progress,
    report: &mut RunReport,
) -> Result<(), FlowError> {
    let started_on = now_rfc3339();
    let t = Instant::now();
    let built = report.record(Step::Build, t, build(plan, docker, progress).await)?;
    let t = Instant::now();
    let pushed = report.record(Step::Push, t, push(docker, &built, progress).await)?;
    report.image = Some(pushed.reference.clone());
    let reference = Reference::parse(&pushed.reference).map_err(|source| FlowError::Reference {
        reference: pushed.reference.clone(),
        source,
    })?;
    let t = Instant::now();
    let result = sbom(plan, &reference, progress, report).await;
    let sbom = report.record(Step::Sbom, t, result)?;
    let t = Instant::now();
    let result = scan(plan, &pushed, &sbom.0, progress, report).await;
    let scanned = report.record(Step::Scan, t, result)?;
    let client = Arc::new(Client::new(
        &reference,
        &plan.request.insecure_registries,
        crate::credentials::for_registry(&reference.registry)?,
    ));
    let t = Instant::now();
    let signed = sign(plan, &client, &reference, &pushed, &built).await;
    report.record(Step::Sign, t, signed)?;
    let provenance = provenance(plan, docker, &built, &pushed, started_on).await;
    let predicates = vec![
        (PredicateKind::CycloneDx, json(&sbom.1, "the SBOM")?),
        (
            PredicateKind::Vuln,
            predicate::vuln(
                json(&scanned.grype_report, "grype's report")?,
                Some(scanned.started),
                Some(scanned.finished),
            ),
        ),
        (PredicateKind::SlsaProvenance, provenance.clone()),
    ];
    write(plan, "provenance.json", &pretty(&provenance)?, report)?;
    let t = Instant::now();
    let attested = attest(plan, &client, &reference, &pushed, predicates).await;
    report.record(Step::Attest, t, attested)
}

async fn build(
    plan: &RunPlan,
    docker: &Docker,
    progress: &Progress,
) -> Result<(Built, String), FlowError> {
    let built = crate::build::build(docker, &plan.request.build, progress).await?;
    let outcome = format!("{} ({})", built.tag, &built.id[..19.min(built.id.len())]);
    Ok((built, outcome))
}

async fn push(
    docker: &Docker,
    built: &Built,
    progress: &Progress,
) -> Result<(Pushed, String), FlowError> {
    let pushed = crate::push::push(docker, &built.tag, progress).await?;
    let outcome = pushed.reference.clone();
    Ok((pushed, outcome))
}

/// The SBOM of the pushed image, read back from the registry by digest:
/// its path and its bytes.
async fn sbom(
    plan: &RunPlan,
    reference: &Reference,
    progress: &Progress,
    report: &mut RunReport,
) -> Result<((PathBuf, Vec<u8>), String), FlowError> {
    let options = sbom::Options {
        source_date_epoch: plan.request.build.source_date_epoch,
        insecure_registries: plan.request.insecure_registries.clone(),
        platform: Platform::host(),
    };
    let generated = sbom::generate(&Source::Registry(reference.clone()), &options).await?;
    for w in &generated.warnings {
        progress(&format!("warning: {w}"));
    }
    let path = write(plan, "sbom.cdx.json", &generated.json, report)?;
    let outcome = format!(
        "{} components, {} warnings → {}",
        generated.components,
        generated.warnings.len(),
        path.display()
    );
    Ok(((path, generated.json), outcome))
}

/// Grype on the SBOM, then the policy gate; the reports are written
/// whatever the verdict, and the verdict goes into `report`.
async fn scan(
    plan: &RunPlan,
    pushed: &Pushed,
    sbom_path: &Path,
    progress: &Progress,
    report: &mut RunReport,
) -> Result<(Scanned, String), FlowError> {
    let started = now_rfc3339();
    let (path, options) = (sbom_path.to_owned(), plan.request.grype.clone());
    let bytes = tokio::task::spawn_blocking(move || crate::scan::run_grype(&path, &options))
        .await?
        .map_err(FlowError::Grype)?;
    let finished = now_rfc3339();
    let grype_report =
        crate::scan::parse_report(&bytes, "grype's output").map_err(FlowError::GrypeOutput)?;
    let today = time::OffsetDateTime::now_utc().date();
    let evaluation = crate::scan::evaluate_for_image(
        &grype_report,
        &plan.policy,
        &plan.vex,
        today,
        std::slice::from_ref(&pushed.digest),
    );
    let sarif = SarifContext {
        repository_root: Some(plan.build.git.root.clone()),
        dockerfile: Some(plan.build.dockerfile.clone()),
    };
    write(plan, "scan.json", &pretty(&evaluation.to_json())?, report)?;
    write(
        plan,
        "scan.sarif",
        &pretty(&evaluation.to_sarif(&sarif))?,
        report,
    )?;
    write(plan, "grype.json", &bytes, report)?;
    let table = evaluation.table();
    table.lines().for_each(progress);
    let verdict = ScanVerdict {
        passed: evaluation.passed(),
        summary: evaluation.summary(),
        table,
    };
    report.scan = Some(verdict.clone());
    if !verdict.passed {
        return Err(FlowError::PolicyFailed {
            policy: plan.request.policy.display().to_string(),
            summary: verdict.summary,
        });
    }
    let outcome = format!("passed: {}", verdict.summary);
    Ok((
        Scanned {
            grype_report: bytes,
            started,
            finished,
        },
        outcome,
    ))
}

async fn sign(
    plan: &RunPlan,
    client: &Arc<Client>,
    reference: &Reference,
    pushed: &Pushed,
    built: &Built,
) -> Result<((), String), FlowError> {
    let (client, signer) = (Arc::clone(client), Arc::clone(&plan.request.signer));
    let (repository, digest) = (reference.name(), pushed.digest.clone());
    let annotations = BTreeMap::from([("commit".to_owned(), built.revision.clone())]);
    let stored = tokio::task::spawn_blocking(move || {
        publish::sign_image(&client, &repository, &digest, signer.as_ref(), &annotations)
    })
    .await?
    .map_err(|source| FlowError::Sign {
        image: pushed.reference.clone(),
        source: Box::new(source),
    })?;
    Ok(((), format!("signature under {}", stored.tag)))
}

async fn attest(
    plan: &RunPlan,
    client: &Arc<Client>,
    reference: &Reference,
    pushed: &Pushed,
    predicates: Vec<(PredicateKind, serde_json::Value)>,
) -> Result<((), String), FlowError> {
    let (client, signer) = (Arc::clone(client), Arc::clone(&plan.request.signer));
    let (repository, digest) = (reference.name(), pushed.digest.clone());
    let image = pushed.reference.clone();
    tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        for (kind, predicate) in predicates {
            publish::attest_image(
                &client,
                &repository,
                &digest,
                signer.as_ref(),
                kind.uri(),
                predicate,
            )
            .map_err(|source| FlowError::Attest {
                image: image.clone(),
                kind: kind.name(),
                source: Box::new(source),
            })?;
            names.push(kind.name());
        }
        Ok(((), names.join(", ")))
    })
    .await?
}

/// The SLSA v1 provenance of the build.
async fn provenance(
    plan: &RunPlan,
    docker: &Docker,
    built: &Built,
    pushed: &Pushed,
    started_on: String,
) -> serde_json::Value {
    let request = &plan.request.build;
    let mut base_images = Vec::new();
    for image in facts::base_images(&plan.build.dockerfile, &request.build_args) {
        let digest = base_image_digest(docker, &image).await;
        base_images.push((image, digest));
    }
    provenance::predicate(&provenance::BuildFacts {
        builder_id: facts::builder_id(),
        source: plan.build.git.source.clone(),
        commit: built.revision.clone(),
        dirty: built.dirty,
        context: request.context.display().to_string(),
        dockerfile: plan.build.dockerfile.display().to_string(),
        build_args: request.build_args.iter().cloned().collect(),
        image: pushed.reference.clone(),
        base_images,
        invocation_id: std::env::var("GITHUB_RUN_ID")
            .unwrap_or_else(|_| std::process::id().to_string()),
        started_on,
        finished_on: now_rfc3339(),
    })
}

/// A base image's registry digest as the engine knows it, else its id.
async fn base_image_digest(docker: &Docker, image: &str) -> Option<String> {
    let inspect = docker.inspect_image(image).await.ok()?;
    inspect
        .repo_digests
        .and_then(|d| {
            d.first()
                .and_then(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
        })
        .or(inspect.id)
}

fn write(
    plan: &RunPlan,
    name: &str,
    bytes: &[u8],
    report: &mut RunReport,
) -> Result<PathBuf, FlowError> {
    let path = plan.request.output_dir.join(name);
    crate::output::write_atomically(&path, bytes)?;
    report.files.push(path.clone());
    Ok(path)
}

fn pretty(value: &serde_json::Value) -> Result<Vec<u8>, FlowError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| FlowError::Json {
        what: "a report",
        source,
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn json(bytes: &[u8], what: &'static str) -> Result<serde_json::Value, FlowError> {
    serde_json::from_slice(bytes).map_err(|source| FlowError::Json { what, source })
}
