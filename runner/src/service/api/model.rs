//! Request and response bodies of the `/v1` API.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::limits::LimitsRequest;
use crate::sandbox::{RequestError, RunRequest};
use crate::service::store::RunRecord;
use crate::submission::SubmissionFile;
use crate::verdict::{LimitHit, RunResult, StageResult, Status};

/// `POST /v1/runs`. The network is deliberately not a field: it is server
/// policy, and an unknown field is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRun {
    pub language: String,
    #[serde(default)]
    pub version: Option<String>,
    pub files: Vec<FileIn>,
    #[serde(default)]
    pub stdin: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub limits: LimitsRequest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIn {
    #[serde(default)]
    pub name: Option<String>,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
    Hex,
}

impl FileIn {
    pub fn decode(&self, index: usize) -> Result<Vec<u8>, ApiError> {
        let bad = |why: String| {
            ApiError::bad_request(
                "invalid_file",
                format!("files[{index}].content is not valid {why}"),
            )
        };
        match self.encoding {
            Encoding::Utf8 => Ok(self.content.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.content.trim())
                .map_err(|e| bad(format!("base64: {e}"))),
            Encoding::Hex => decode_hex(self.content.trim()).map_err(|e| bad(format!("hex: {e}"))),
        }
    }
}

/// Why a hex text is not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("odd number of digits")]
    OddLength,
    #[error("the text at offset {offset} is not ASCII")]
    NotAscii { offset: usize },
    #[error("{pair:?} at offset {offset} is not a hex byte")]
    NotHex { offset: usize, pair: String },
}

fn decode_hex(s: &str) -> Result<Vec<u8>, HexError> {
    if !s.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    (0..s.len())
        .step_by(2)
        .map(|offset| {
            let pair = s
                .get(offset..offset + 2)
                .ok_or(HexError::NotAscii { offset })?;
            u8::from_str_radix(pair, 16).map_err(|_| HexError::NotHex {
                offset,
                pair: pair.to_owned(),
            })
        })
        .collect()
}

impl SubmitRun {
    pub fn into_request(self) -> Result<RunRequest, ApiError> {
        let mut files = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.iter().enumerate() {
            let name = f.name.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_file",
                    format!("files[{i}].name is required (for example \"main.py\")"),
                )
            })?;
            files.push(SubmissionFile {
                name,
                content: f.decode(i)?,
            });
        }
        Ok(RunRequest {
            language: self.language,
            version: self.version,
            files,
            stdin: self.stdin.into_bytes(),
            args: self.args,
            limits: self.limits,
        })
    }
}

/// A refused request, as the client should see it.
pub fn request_error(e: RequestError) -> ApiError {
    let code = match &e {
        RequestError::Language(crate::language::LookupError::Unknown { .. }) => "unknown_language",
        RequestError::Language(crate::language::LookupError::Version { .. }) => "unknown_version",
        RequestError::Submission(_) => "invalid_submission",
        RequestError::Limit(_) => "limit_exceeded",
    };
    ApiError::bad_request(code, e.to_string())
}

pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A run, as `GET /v1/runs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    /// queued, running, finished or cancelled.
    pub state: &'static str,
    pub language: String,
    pub version: String,
    /// Id of the API key that submitted it.
    pub submitted_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The verdict and stages, once finished.
    pub result: Option<ResultView>,
}

impl RunView {
    /// `combined`: also show each stage's `output` (stdout and stderr
    /// together, in the order written).
    pub fn new(r: RunRecord, combined: bool) -> Self {
        RunView {
            state: r.state.as_str(),
            id: r.id,
            language: r.language,
            version: r.version,
            submitted_by: r.key_id,
            created_at: rfc3339(r.created_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            result: r.result.map(|x| ResultView::new(x, combined)),
        }
    }
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        RunView::new(r, false)
    }
}

/// A run's result as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResultView {
    pub status: Status,
    pub language: String,
    pub version: String,
    pub compile: Option<StageView>,
    pub run: Option<StageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ResultView {
    pub fn new(r: RunResult, combined: bool) -> Self {
        ResultView {
            status: r.status,
            language: r.language,
            version: r.version,
            compile: r.compile.map(|s| StageView::new(&s, combined)),
            run: r.run.map(|s| StageView::new(&s, combined)),
            message: r.message,
        }
    }
}

/// One stage. Each stream is shown once, as text (`utf8`) or, when JSON
/// would inflate it (control characters cost six bytes each), as `base64`:
/// a response is never much larger than the output it carries.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    pub stdout: String,
    pub stdout_encoding: OutputEncoding,
    pub stderr: String,
    pub stderr_encoding: OutputEncoding,
    /// stdout and stderr together, in the order written; only on request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_encoding: Option<OutputEncoding>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
    pub limit: Option<LimitHit>,
    pub message: Option<String>,
}

impl StageView {
    pub fn new(s: &StageResult, combined: bool) -> Self {
        let (stdout, stdout_encoding) = compact(&s.stdout);
        let (stderr, stderr_encoding) = compact(&s.stderr);
        let (output, output_encoding) = if combined {
            let (o, e) = compact(&s.output());
            (Some(o), Some(e))
        } else {
            (None, None)
        };
        StageView {
            stdout,
            stdout_encoding,
            stderr,
            stderr_encoding,
            output,
            output_encoding,
            stdout_truncated: s.stdout_truncated,
            stderr_truncated: s.stderr_truncated,
            exit_code: s.exit_code,
            signal: s.signal.clone(),
            wall_ms: s.wall_ms,
            cpu_ms: s.cpu_ms,
            memory_peak_bytes: s.memory_peak_bytes,
            limit: s.limit,
            message: s.message.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputEncoding {
    Utf8,
    Base64,
}

/// `text` as it costs least in a JSON string: itself, or its base64 when
/// escaping would make it longer than base64 does.
pub fn compact(text: &str) -> (String, OutputEncoding) {
    let escaped: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f | 0x7f => 6,
            _ => 1,
        })
        .sum();
    if escaped <= text.len().div_ceil(3) * 4 {
        (text.to_owned(), OutputEncoding::Utf8)
    } else {
        (
            base64::engine::general_purpose::STANDARD.encode(text),
            OutputEncoding::Base64,
        )
    }
}

/// A run in a listing: its verdict without the output.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub state: &'static str,
    pub status: Option<Status>,
    pub language: String,
    pub version: String,
    pub submitted_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<RunRecord> for RunSummary {
    fn from(r: RunRecord) -> Self {
        RunSummary {
            state: r.state.as_str(),
            status: r.status,
            id: r.id,
            language: r.language,
            version: r.version,
            submitted_by: r.key_id,
            created_at: rfc3339(r.created_at),
            finished_at: r.finished_at.map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, encoding: Encoding) -> FileIn {
        FileIn {
            name: Some("f".into()),
            content: content.into(),
            encoding,
        }
    }

    #[test]
    fn file_encodings_decode() {
        assert_eq!(
            file("hé", Encoding::Utf8).decode(0).unwrap(),
            "hé".as_bytes()
        );
        assert_eq!(file("aGk=", Encoding::Base64).decode(0).unwrap(), b"hi");
        assert_eq!(file("6869", Encoding::Hex).decode(0).unwrap(), b"hi");
        let e = file("zz", Encoding::Hex).decode(3).unwrap_err();
        assert!(
            e.message.starts_with("files[3].content is not valid hex"),
            "{}",
            e.message
        );
        assert!(file("!!", Encoding::Base64).decode(0).is_err());
    }

    #[test]
    fn a_network_field_is_refused() {
        let e = serde_json::from_str::<SubmitRun>(
            r#"{"language":"python","files":[{"name":"a.py","content":""}],"network":true}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `network`"), "{e}");
        let e = serde_json::from_str::<SubmitRun>(
            r#"{"language":"python","files":[],"limits":{"network":"bridge"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `network`"), "{e}");
    }

    #[test]
    fn output_costs_at_most_a_third_more_than_itself() {
        assert_eq!(
            compact("hello \"world\"\n"),
            ("hello \"world\"\n".to_owned(), OutputEncoding::Utf8)
        );
        let nul = "\0".repeat(3000);
        let (text, enc) = compact(&nul);
        assert_eq!(enc, OutputEncoding::Base64);
        assert_eq!(text.len(), 4000);
        let json = serde_json::to_string(&text).unwrap();
        assert!(json.len() <= 4002, "{}", json.len());
        // A few control characters in text stay text.
        assert_eq!(compact("a\u{1b}[0mbcdefghijklmnop").1, OutputEncoding::Utf8);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
