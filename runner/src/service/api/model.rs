//! Request and response bodies of the `/v1` API.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::limits::LimitsRequest;
use crate::sandbox::{RequestError, RunRequest};
use crate::service::store::RunRecord;
use crate::submission::SubmissionFile;
use crate::verdict::RunResult;

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

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).ok_or("not ASCII")?, 16)
                .map_err(|_| format!("{:?} at offset {i} is not a hex byte", &s[i..i + 2]))
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
    pub result: Option<RunResult>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        RunView {
            state: r.state.as_str(),
            id: r.id,
            language: r.language,
            version: r.version,
            submitted_by: r.key_id,
            created_at: rfc3339(r.created_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            result: r.result,
        }
    }
}

/// A run in a listing: its verdict without the output.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub state: &'static str,
    pub status: Option<crate::verdict::Status>,
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
            status: r.result.as_ref().map(|x| x.status),
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
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
