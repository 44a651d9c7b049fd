//! The job spec: a run as the queue keeps it, checked once at submission
//! and executed without being prepared again.
//!
//! It holds what the checks resolved (the language's exact name and version,
//! every limit) and what the client sent (files, stdin, arguments). Stored as
//! a small versioned JSON header followed by the raw bytes of the files and
//! stdin, so binary content costs its own size, not base64's or JSON's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::language::Catalog;
use crate::limits::{Limits, StageLimits};
use crate::policy::{SandboxPolicy, StagePolicy};
use crate::sandbox::PreparedRun;
use crate::submission::SubmissionFile;

/// Leading bytes of an encoded spec.
const MAGIC: &[u8; 4] = b"RJS\x00";
/// The header's format; a spec of another version is refused by name.
pub const SPEC_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "the queued run was stored by an earlier runner in a format this one does not read; submit it again"
    )]
    Unrecognized,
    #[error(
        "the queued run was stored in job spec version {found}; this runner reads version {SPEC_VERSION}"
    )]
    Version { found: u32 },
    #[error("the queued run's job spec is damaged: {0}")]
    Damaged(String),
    #[error(
        "{language} {version} was resolved when the run was queued but this runner no longer has it"
    )]
    LanguageGone { language: String, version: String },
    #[error(
        "the queued run asks for {stage} {name} = {value}, over the current policy's maximum of {max} (the policy changed after it was queued)"
    )]
    OverPolicy {
        stage: &'static str,
        name: &'static str,
        value: u64,
        max: u64,
    },
}

/// A validated run, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The language's catalog name and exact version.
    pub language: String,
    pub language_version: String,
    pub files: Vec<SubmissionFile>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub limits: Limits,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    version: u32,
    language: String,
    language_version: String,
    /// Names and sizes; the contents follow the header, in this order.
    files: Vec<FileHeader>,
    stdin_bytes: u64,
    args: Vec<String>,
    compile: StoredLimits,
    run: StoredLimits,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeader {
    name: String,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLimits {
    wall_time_ms: u64,
    cpu_time_ms: u64,
    memory_bytes: u64,
    pids: u32,
    stdout_max_bytes: u64,
    stderr_max_bytes: u64,
}

impl From<StageLimits> for StoredLimits {
    fn from(l: StageLimits) -> Self {
        StoredLimits {
            wall_time_ms: l.wall_time_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_bytes: l.memory_bytes,
            pids: l.pids,
            stdout_max_bytes: l.stdout_max_bytes,
            stderr_max_bytes: l.stderr_max_bytes,
        }
    }
}

impl From<StoredLimits> for StageLimits {
    fn from(l: StoredLimits) -> Self {
        StageLimits {
            wall_time_ms: l.wall_time_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_bytes: l.memory_bytes,
            pids: l.pids,
            stdout_max_bytes: l.stdout_max_bytes,
            stderr_max_bytes: l.stderr_max_bytes,
        }
    }
}

impl JobSpec {
    /// The spec of a request the sandbox has prepared (checked).
    pub fn from_prepared(p: &PreparedRun) -> JobSpec {
        JobSpec {
            language: p.language.name.clone(),
            language_version: p.language.version.clone(),
            files: p.files.clone(),
            stdin: p.stdin.clone(),
            args: p.args.clone(),
            limits: p.limits,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            version: SPEC_VERSION,
            language: self.language.clone(),
            language_version: self.language_version.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileHeader {
                    name: f.name.clone(),
                    bytes: f.content.len() as u64,
                })
                .collect(),
            stdin_bytes: self.stdin.len() as u64,
            args: self.args.clone(),
            compile: self.limits.compile.into(),
            run: self.limits.run.into(),
        };
        let json = serde_json::to_vec(&header).expect("a header always serializes");
        let body: usize = self.files.iter().map(|f| f.content.len()).sum();
        let mut out = Vec::with_capacity(8 + json.len() + body + self.stdin.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        for f in &self.files {
            out.extend_from_slice(&f.content);
        }
        out.extend_from_slice(&self.stdin);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<JobSpec, SpecError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(SpecError::Unrecognized)?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| SpecError::Damaged("it ends before its header".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let (json, mut payload) = rest
            .split_at_checked(len)
            .ok_or_else(|| SpecError::Damaged("its header is cut short".into()))?;
        // Read the version first, so a newer header is named as such rather
        // than as an unknown field.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(json).map_err(|e| SpecError::Damaged(e.to_string()))?;
        if v.version != SPEC_VERSION {
            return Err(SpecError::Version { found: v.version });
        }
        let h: Header =
            serde_json::from_slice(json).map_err(|e| SpecError::Damaged(e.to_string()))?;
        let mut take = |n: u64, what: &str| -> Result<Vec<u8>, SpecError> {
            let (head, tail) = payload
                .split_at_checked(n as usize)
                .ok_or_else(|| SpecError::Damaged(format!("{what} is cut short")))?;
            payload = tail;
            Ok(head.to_vec())
        };
        let mut files = Vec::with_capacity(h.files.len());
        for f in h.files {
            let content = take(f.bytes, &format!("file {}", f.name))?;
            files.push(SubmissionFile {
                name: f.name,
                content,
            });
        }
        let stdin = take(h.stdin_bytes, "stdin")?;
        if !payload.is_empty() {
            return Err(SpecError::Damaged(format!(
                "{} bytes follow its content",
                payload.len()
            )));
        }
        Ok(JobSpec {
            language: h.language,
            language_version: h.language_version,
            files,
            stdin,
            args: h.args,
            limits: Limits {
                compile: h.compile.into(),
                run: h.run.into(),
            },
        })
    }

    /// The run to execute: the language as resolved at submission (it must
    /// still be there, in that version), under the stored limits (still
    /// within the policy's maxima). Nothing else is checked again.
    pub fn into_prepared(
        self,
        id: String,
        catalog: &Catalog,
        policy: &SandboxPolicy,
    ) -> Result<PreparedRun, SpecError> {
        let gone = || SpecError::LanguageGone {
            language: self.language.clone(),
            version: self.language_version.clone(),
        };
        let language = catalog
            .find(&self.language, Some(&self.language_version))
            .map_err(|_| gone())?;
        if language.name != self.language || language.version != self.language_version {
            return Err(gone());
        }
        within_policy("compile", &self.limits.compile, &policy.compile, policy)?;
        within_policy("run", &self.limits.run, &policy.run, policy)?;
        Ok(PreparedRun {
            id,
            language: Arc::clone(&language),
            files: self.files,
            stdin: self.stdin,
            args: self.args,
            limits: self.limits,
        })
    }
}

fn within_policy(
    stage: &'static str,
    l: &StageLimits,
    p: &StagePolicy,
    policy: &SandboxPolicy,
) -> Result<(), SpecError> {
    let checks: [(&'static str, u64, u64); 6] = [
        ("wall_time_ms", l.wall_time_ms, p.wall_time_ms.max),
        ("cpu_time_ms", l.cpu_time_ms, p.cpu_time_ms.max),
        ("memory_bytes", l.memory_bytes, p.memory_mb.max << 20),
        ("pids", l.pids.into(), p.pids.into()),
        (
            "stdout_max_bytes",
            l.stdout_max_bytes,
            policy.output.stdout_max_bytes.max,
        ),
        (
            "stderr_max_bytes",
            l.stderr_max_bytes,
            policy.output.stderr_max_bytes.max,
        ),
    ];
    for (name, value, max) in checks {
        if value > max {
            return Err(SpecError::OverPolicy {
                stage,
                name,
                value,
                max,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::sources::ImageSources;
    use crate::limits::LimitsRequest;

    fn spec() -> JobSpec {
        let policy = SandboxPolicy::embedded().unwrap();
        JobSpec {
            language: "python".into(),
            language_version: "3.11.2".into(),
            files: vec![
                SubmissionFile {
                    name: "main.py".into(),
                    content: b"print(1)\n".to_vec(),
                },
                SubmissionFile {
                    name: "a.bin".into(),
                    content: vec![0, 159, 146, 150, 255],
                },
            ],
            stdin: b"in\0put".to_vec(),
            args: vec!["-x".into()],
            limits: LimitsRequest {
                run_memory_mb: Some(64),
                ..Default::default()
            }
            .resolve(&policy)
            .unwrap(),
        }
    }

    #[test]
    fn specs_round_trip_binary_content_at_its_own_size() {
        let s = spec();
        let bytes = s.encode();
        assert_eq!(JobSpec::decode(&bytes).unwrap(), s);
        let content: usize = s.files.iter().map(|f| f.content.len()).sum::<usize>() + s.stdin.len();
        assert!(
            bytes.len() < content + 600,
            "{} bytes for {content} of content",
            bytes.len()
        );
    }

    #[test]
    fn old_other_and_damaged_rows_get_clear_errors() {
        // What the previous runner stored: JSON with base64 content.
        let legacy =
            br#"{"language":"python","version":null,"files":[],"stdin":"","args":[],"limits":{}}"#;
        assert!(matches!(
            JobSpec::decode(legacy),
            Err(SpecError::Unrecognized)
        ));
        let e = JobSpec::decode(legacy).unwrap_err().to_string();
        assert!(e.contains("submit it again"), "{e}");

        let mut newer = spec().encode();
        let header_len = u32::from_be_bytes(newer[4..8].try_into().unwrap()) as usize;
        let text = String::from_utf8(newer[8..8 + header_len].to_vec()).unwrap();
        let text = text.replace("\"version\":1", "\"version\":2");
        newer.splice(8..8 + header_len, text.into_bytes());
        assert!(matches!(
            JobSpec::decode(&newer),
            Err(SpecError::Version { found: 2 })
        ));

        let whole = spec().encode();
        assert!(matches!(
            JobSpec::decode(&whole[..whole.len() - 1]),
            Err(SpecError::Damaged(_))
        ));
        let mut extra = whole.clone();
        extra.push(0);
        assert!(matches!(
            JobSpec::decode(&extra),
            Err(SpecError::Damaged(_))
        ));
    }

    #[test]
    fn preparing_checks_only_what_can_have_changed() {
        let catalog = Catalog::load(&ImageSources::embedded()).unwrap();
        let policy = SandboxPolicy::embedded().unwrap();
        let p = spec()
            .into_prepared("r1".into(), &catalog, &policy)
            .unwrap();
        assert_eq!(p.language.name, "python");
        assert_eq!(p.limits.run.memory_bytes, 64 << 20);

        let gone = JobSpec {
            language_version: "2.7.18".into(),
            ..spec()
        };
        assert!(matches!(
            gone.into_prepared("r".into(), &catalog, &policy),
            Err(SpecError::LanguageGone { .. })
        ));
        let mut over = spec();
        over.limits.run.wall_time_ms = policy.run.wall_time_ms.max + 1;
        assert!(matches!(
            over.into_prepared("r".into(), &catalog, &policy),
            Err(SpecError::OverPolicy {
                name: "wall_time_ms",
                ..
            })
        ));
    }
}
