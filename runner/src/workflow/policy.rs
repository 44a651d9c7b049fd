//! The server's workflow policy (`policies/workflows.toml`): job images per
//! `runs-on` label, the images `container.image` may name, where workflows
//! live, job limits and how sources are fetched. Parsed strictly and
//! validated once into [`WorkflowPolicy`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::Bounded;

/// The policy shipped in the repository, embedded so the binary works anywhere.
pub const EMBEDDED_WORKFLOW_POLICY: &str = include_str!("../../../policies/workflows.toml");

#[derive(Debug, thiserror::Error)]
pub enum WorkflowPolicyError {
    #[error("cannot read workflow policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workflow policy {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("workflow policy {origin}: {key} {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
    },
}

/// A `runs-on` label the policy does not map to an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown `runs-on` label `{label}`{}: this server knows {}",
    crate::workflow::suggest::did_you_mean(label, known.iter().map(String::as_str)),
    known.join(", ")
)]
pub struct UnknownLabel {
    pub label: String,
    pub known: Vec<String>,
}

/// Not an image reference Docker accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an image reference (like `runner-job/debian` or `name:tag`)")]
pub struct BadImageRef(pub String);

/// A workflow directory that is not a plain relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "is {0:?}; give a path relative to the repository root, without `.` or `..` parts (like \".github/workflows\")"
)]
pub struct BadDirectory(pub String);

/// A limit given as a decimal (CPUs).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundedF64 {
    pub default: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory_mb: Bounded,
    cpus: BoundedF64,
    pids: Bounded,
    workspace_mb: Bounded,
    wall_time_minutes: Bounded,
    log_bytes: Bounded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesFile {
    allowed: Vec<String>,
}

/// Transports git may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

impl Protocol {
    /// The name git's `protocol.<name>.allow` uses.
    pub fn git_name(self) -> &'static str {
        match self {
            Protocol::Https => "https",
            Protocol::Http => "http",
            Protocol::Ssh => "ssh",
            Protocol::Git => "git",
            Protocol::File => "file",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    protocols: Vec<Protocol>,
    max_repository_mb: u64,
    fetch_timeout_seconds: u64,
    max_archive_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    directory: String,
    labels: BTreeMap<String, String>,
    images: ImagesFile,
    limits: LimitsFile,
    source: SourceFile,
}

/// Limits of one job, in the units the engine takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    pub memory_bytes: u64,
    pub nano_cpus: i64,
    pub pids: u64,
    pub workspace_bytes: u64,
    pub wall_time: Duration,
    pub log_bytes: u64,
}

/// The ceilings of [`JobLimits`] (the policy's `max` values).
pub type JobLimitsMax = JobLimits;

/// How sources are fetched ([`super::source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePolicy {
    pub protocols: Vec<Protocol>,
    pub max_repository_bytes: u64,
    pub fetch_timeout: Duration,
    pub max_archive_bytes: u64,
}

/// An entry of the `container.image` allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRule {
    /// `name:tag` or `name@digest`: that reference only.
    Exact(String),
    /// `name`: any tag or digest of it.
    AnyTag(String),
    /// `prefix/*`: any image whose name starts with `prefix/`.
    Prefix(String),
}

impl ImageRule {
    fn parse(entry: &str) -> Result<ImageRule, BadImageRef> {
        if let Some(prefix) = entry.strip_suffix("/*") {
            check_image_ref(prefix)?;
            return Ok(ImageRule::Prefix(format!("{prefix}/")));
        }
        check_image_ref(entry)?;
        Ok(if has_tag_or_digest(entry) {
            ImageRule::Exact(entry.to_owned())
        } else {
            ImageRule::AnyTag(entry.to_owned())
        })
    }

    pub fn allows(&self, image: &str) -> bool {
        match self {
            ImageRule::Exact(r) => image == r,
            ImageRule::AnyTag(name) => image_name(image) == name,
            ImageRule::Prefix(p) => image.starts_with(p.as_str()),
        }
    }
}

/// The name of a reference without `:tag` or `@digest`.
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        // A colon after the last `/` is a tag; before it, a registry port.
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn has_tag_or_digest(image: &str) -> bool {
    image_name(image) != image
}

/// Lower-case names, then an optional tag (letters, digits, `._-`) and
/// digest, as Docker accepts them.
fn check_image_ref(r: &str) -> Result<(), BadImageRef> {
    let name = image_name(r);
    let tail = &r[name.len()..];
    let name_ok = !name.is_empty()
        && !name.starts_with(['-', '.', '/', ':'])
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    let tail_ok = tail.len() != 1
        && tail
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:@".contains(c));
    if name_ok && tail_ok {
        Ok(())
    } else {
        Err(BadImageRef(r.to_owned()))
    }
}

/// The validated policy. Construct with [`WorkflowPolicy::embedded`],
/// [`WorkflowPolicy::load`] or [`WorkflowPolicy::parse`].
#[derive(Debug, Clone)]
pub struct WorkflowPolicy {
    /// Relative to the repository root, without trailing `/`.
    pub directory: String,
    /// `runs-on` label → image.
    pub labels: BTreeMap<String, String>,
    pub allowed_images: Vec<ImageRule>,
    pub defaults: JobLimits,
    pub max: JobLimitsMax,
    pub source: SourcePolicy,
    /// Where the policy came from, for messages.
    pub origin: String,
}

impl WorkflowPolicy {
    pub fn embedded() -> Result<Self, WorkflowPolicyError> {
        Self::parse(
            EMBEDDED_WORKFLOW_POLICY,
            "policies/workflows.toml (embedded)",
        )
    }

    pub fn load(path: &Path) -> Result<Self, WorkflowPolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkflowPolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, WorkflowPolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| WorkflowPolicyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, problem: String| WorkflowPolicyError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let directory =
            check_directory(&file.directory).map_err(|p| invalid("directory", p.to_string()))?;
        if file.labels.is_empty() {
            return Err(invalid(
                "labels",
                "is empty: map at least one `runs-on` label to a job image".into(),
            ));
        }
        for (label, image) in &file.labels {
            if label.is_empty() || label.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    "labels",
                    format!("{label:?} is not a label: use text without spaces"),
                ));
            }
            check_image_ref(image)
                .map_err(|p| invalid(&format!("labels.{label}"), p.to_string()))?;
        }
        let allowed_images = file
            .images
            .allowed
            .iter()
            .map(|e| ImageRule::parse(e).map_err(|p| invalid("images.allowed", p.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let (defaults, max) =
            limits(&file.limits).map_err(|(k, p)| invalid(&format!("limits.{k}"), p))?;
        let source = source(&file.source).map_err(|(k, p)| invalid(&format!("source.{k}"), p))?;
        Ok(WorkflowPolicy {
            directory,
            labels: file.labels,
            allowed_images,
            defaults,
            max,
            source,
            origin: origin.to_owned(),
        })
    }

    /// The job image for a `runs-on` label; the error lists the known labels.
    pub fn image_for_label(&self, label: &str) -> Result<&str, UnknownLabel> {
        self.labels
            .get(label)
            .map(String::as_str)
            .ok_or_else(|| UnknownLabel {
                label: label.to_owned(),
                known: self.labels.keys().cloned().collect(),
            })
    }

    /// Whether `container.image` may name `image`.
    pub fn image_allowed(&self, image: &str) -> bool {
        self.allowed_images.iter().any(|r| r.allows(image))
    }

    /// The allow-list as written, for messages.
    pub fn allowed_images_text(&self) -> String {
        if self.allowed_images.is_empty() {
            return "none (this server allows no `container.image`)".into();
        }
        self.allowed_images
            .iter()
            .map(|r| match r {
                ImageRule::Exact(s) | ImageRule::AnyTag(s) => s.clone(),
                ImageRule::Prefix(p) => format!("{p}*"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_directory(d: &str) -> Result<String, BadDirectory> {
    let d = d.trim_end_matches('/');
    let bad = d.is_empty()
        || d.starts_with('/')
        || d.starts_with('-')
        || d.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || d.chars().any(|c| c.is_control() || c == '\\');
    if bad {
        return Err(BadDirectory(d.to_owned()));
    }
    Ok(d.to_owned())
}

type Problem = (&'static str, String);

fn limits(l: &LimitsFile) -> Result<(JobLimits, JobLimitsMax), Problem> {
    let check = |key: &'static str, b: &Bounded, min: u64, ceiling: u64| -> Result<(), Problem> {
        if b.default < min || b.max < min {
            return Err((key, format!("must be at least {min} (default and max)")));
        }
        if b.max > ceiling {
            return Err((
                key,
                format!("max is {}; it must be at most {ceiling}", b.max),
            ));
        }
        if b.default > b.max {
            return Err((
                key,
                format!("default ({}) is above max ({})", b.default, b.max),
            ));
        }
        Ok(())
    };
    // Docker refuses memory limits under 6 MB.
    check("memory_mb", &l.memory_mb, 6, 1 << 20)?;
    check("pids", &l.pids, 8, 1 << 20)?;
    check("workspace_mb", &l.workspace_mb, 1, 1 << 20)?;
    check("wall_time_minutes", &l.wall_time_minutes, 1, 7 * 24 * 60)?;
    check("log_bytes", &l.log_bytes, 1024, 1 << 34)?;
    let c = l.cpus;
    // Quotas are whole milli-CPUs: a value that rounds to none would give
    // the engine a quota of 0, which means no limit at all.
    if !(c.default >= 0.001 && c.max >= 0.001 && c.max <= 256.0) {
        return Err((
            "cpus",
            "must be at least 0.001 (one milli-CPU) and at most 256 (default and max)".into(),
        ));
    }
    if c.default > c.max {
        return Err((
            "cpus",
            format!("default ({}) is above max ({})", c.default, c.max),
        ));
    }
    let make = |pick: fn(&Bounded) -> u64, cpus: f64| JobLimits {
        memory_bytes: pick(&l.memory_mb) << 20,
        // Whole milli-CPUs: the precision CFS quotas have anyway.
        nano_cpus: (cpus * 1000.0).round() as i64 * 1_000_000,
        pids: pick(&l.pids),
        workspace_bytes: pick(&l.workspace_mb) << 20,
        wall_time: Duration::from_secs(pick(&l.wall_time_minutes) * 60),
        log_bytes: pick(&l.log_bytes),
    };
    Ok((make(|b| b.default, c.default), make(|b| b.max, c.max)))
}

fn source(s: &SourceFile) -> Result<SourcePolicy, Problem> {
    if s.protocols.is_empty() {
        return Err((
            "protocols",
            "is empty: allow at least one of https, ssh, file".into(),
        ));
    }
    if s.max_repository_mb == 0 || s.max_repository_mb > 1 << 20 {
        return Err((
            "max_repository_mb",
            format!(
                "is {}; it must be between 1 and {}",
                s.max_repository_mb,
                1 << 20
            ),
        ));
    }
    if s.max_archive_mb == 0 || s.max_archive_mb > 1 << 20 {
        return Err((
            "max_archive_mb",
            format!(
                "is {}; it must be between 1 and {}",
                s.max_archive_mb,
                1 << 20
            ),
        ));
    }
    if !(1..=86_400).contains(&s.fetch_timeout_seconds) {
        return Err((
            "fetch_timeout_seconds",
            format!(
                "is {}; it must be between 1 and 86400",
                s.fetch_timeout_seconds
            ),
        ));
    }
    let mut protocols = s.protocols.clone();
    protocols.sort();
    protocols.dedup();
    Ok(SourcePolicy {
        protocols,
        max_repository_bytes: s.max_repository_mb << 20,
        fetch_timeout: Duration::from_secs(s.fetch_timeout_seconds),
        max_archive_bytes: s.max_archive_mb << 20,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(replace: &str, by: &str) -> Result<WorkflowPolicy, WorkflowPolicyError> {
        assert!(
            EMBEDDED_WORKFLOW_POLICY.contains(replace),
            "fixture drifted: {replace}"
        );
        WorkflowPolicy::parse(&EMBEDDED_WORKFLOW_POLICY.replace(replace, by), "test")
    }

    fn err(replace: &str, by: &str) -> String {
        with(replace, by).unwrap_err().to_string()
    }

    /// Found by the `workflow_policy` fuzz target: 0.0004 passed the
    /// "above 0" check and rounded to a quota of 0 nano-CPUs (no limit).
    #[test]
    fn cpus_that_round_to_no_quota_are_refused() {
        for by in [
            "cpus = { default = 0.0004, max = 4.0 }",
            "cpus = { default = 0.0004, max = 0.0004 }",
        ] {
            let e = err("cpus = { default = 2.0, max = 4.0 }", by);
            assert!(e.contains("at least 0.001"), "{by}: {e}");
        }
        let p = with(
            "cpus = { default = 2.0, max = 4.0 }",
            "cpus = { default = 0.001, max = 4.0 }",
        )
        .unwrap();
        assert_eq!(p.defaults.nano_cpus, 1_000_000);
    }

    #[test]
    fn embedded_policy_is_valid() {
        let p = WorkflowPolicy::embedded().unwrap();
        assert_eq!(p.directory, ".github/workflows");
        assert_eq!(p.image_for_label("debian").unwrap(), "runner-job/debian");
        assert_eq!(p.defaults.wall_time, Duration::from_secs(360 * 60));
        assert_eq!(p.defaults.nano_cpus, 2_000_000_000);
        assert_eq!(p.defaults.memory_bytes, 2048 << 20);
        assert_eq!(
            p.source.protocols,
            [Protocol::Https, Protocol::Ssh, Protocol::File]
        );
    }

    #[test]
    fn unknown_labels_name_the_known_ones() {
        let p = WorkflowPolicy::embedded().unwrap();
        let e = p.image_for_label("debain").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown `runs-on` label `debain`; did you mean `debian`?: this server knows debian, debian-12, ubuntu-latest"
        );
        assert!(
            p.image_for_label("windows-latest")
                .unwrap_err()
                .to_string()
                .contains("this server knows debian")
        );
    }

    #[test]
    fn image_allow_list_rules() {
        let p = with(
            "allowed = [\"runner-job/*\"]",
            "allowed = [\"runner-job/*\", \"tools\", \"base:1.2\", \"localhost:5000/x\"]",
        )
        .unwrap();
        assert!(p.image_allowed("runner-job/debian"));
        assert!(p.image_allowed("runner-job/debian:abc123"));
        assert!(
            !p.image_allowed("runner-jobx/debian"),
            "prefixes match whole path parts"
        );
        assert!(!p.image_allowed("runner-job"));
        assert!(
            p.image_allowed("tools")
                && p.image_allowed("tools:7")
                && p.image_allowed("tools@sha256:00")
        );
        assert!(!p.image_allowed("tools2"));
        assert!(p.image_allowed("base:1.2"));
        assert!(!p.image_allowed("base:1.3") && !p.image_allowed("base"));
        assert!(
            p.image_allowed("localhost:5000/x:tag"),
            "a registry port is not a tag"
        );
        assert!(!p.image_allowed("debian:bookworm"));
        let none = with("allowed = [\"runner-job/*\"]", "allowed = []").unwrap();
        assert!(!none.image_allowed("runner-job/debian"));
        assert!(none.allowed_images_text().starts_with("none"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(
            err(
                "max_archive_mb = 2048",
                "max_archive_mb = 2048\nmax_archiv_mb = 1"
            )
            .contains("max_archiv_mb")
        );
        assert!(err("[labels]", "[label]").contains("label"));
    }

    #[test]
    fn directory_may_not_leave_the_repository() {
        for bad in ["/etc", "../x", "a/../b", "", "-x", "./a"] {
            let e = err(
                "directory = \".github/workflows\"",
                &format!("directory = {bad:?}"),
            );
            assert!(e.contains("directory is"), "{bad}: {e}");
        }
        let ok = with(
            "directory = \".github/workflows\"",
            "directory = \"ci/flows/\"",
        )
        .unwrap();
        assert_eq!(ok.directory, "ci/flows");
    }

    #[test]
    fn limits_are_checked() {
        let e = err(
            "memory_mb = { default = 2048, max = 8192 }",
            "memory_mb = { default = 9000, max = 8192 }",
        );
        assert!(
            e.contains("limits.memory_mb default (9000) is above max (8192)"),
            "{e}"
        );
        let e = err(
            "cpus = { default = 2.0, max = 4.0 }",
            "cpus = { default = 0.0, max = 4.0 }",
        );
        assert!(e.contains("limits.cpus must be at least 0.001"), "{e}");
        let e = err(
            "pids = { default = 1024, max = 4096 }",
            "pids = { default = 1, max = 4096 }",
        );
        assert!(e.contains("limits.pids must be at least 8"), "{e}");
        let e = err(
            "wall_time_minutes = { default = 360, max = 360 }",
            "wall_time_minutes = { default = 360, max = 99999 }",
        );
        assert!(e.contains("limits.wall_time_minutes max is 99999"), "{e}");
    }

    #[test]
    fn labels_and_images_are_checked() {
        assert!(err("debian = \"runner-job/debian\"", "debian = \"\"").contains("labels.debian"));
        assert!(
            err("debian = \"runner-job/debian\"", "debian = \"a b\"")
                .contains("not an image reference")
        );
        assert!(
            err(
                "allowed = [\"runner-job/*\"]",
                "allowed = [\"--privileged\"]"
            )
            .contains("images.allowed")
        );
        let labels =
            "[labels]\ndebian = \"runner-job/debian\"\n\"debian-12\" = \"runner-job/debian\"\n";
        assert!(EMBEDDED_WORKFLOW_POLICY.contains(labels));
    }

    #[test]
    fn source_settings_are_checked() {
        assert!(
            err(
                "protocols = [\"https\", \"ssh\", \"file\"]",
                "protocols = [\"ext\"]"
            )
            .contains("unknown variant `ext`")
        );
        assert!(
            err(
                "protocols = [\"https\", \"ssh\", \"file\"]",
                "protocols = []"
            )
            .contains("source.protocols is empty")
        );
        assert!(
            err("fetch_timeout_seconds = 600", "fetch_timeout_seconds = 0")
                .contains("source.fetch_timeout_seconds")
        );
        assert!(
            err("max_repository_mb = 1024", "max_repository_mb = 0")
                .contains("source.max_repository_mb")
        );
    }
}
