//! Reading input files with a size cap, so a wrong path (a disk image, a
//! device) fails with a message instead of filling memory.

use std::io::Read;
use std::path::Path;

use super::ScanError;

/// Largest Grype report read, from a file, standard input or Grype itself.
pub const MAX_REPORT_BYTES: u64 = 256 << 20;
/// Largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Largest OpenVEX document read.
pub const MAX_VEX_BYTES: u64 = 16 << 20;

/// Reads `path` whole, failing when it holds more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ScanError> {
    let read_err = |source| ScanError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    read_limited(file, limit)
        .map_err(read_err)?
        .ok_or_else(|| ScanError::TooLarge {
            what,
            path: path.to_owned(),
            limit,
        })
}

/// Reads `reader` to its end; `None` when it holds more than `limit` bytes.
pub fn read_limited(reader: impl Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// A document that should be a JSON object and is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnObject {
    #[error("is not valid JSON ({detail}); expected {expected}")]
    NotJson { detail: String, expected: String },
    #[error("is JSON but not an object; expected {expected}")]
    OtherJson { expected: String },
}

/// Serde reads a struct from a JSON array too (field by field), which
/// gives baffling messages for a document that is not an object at all; so
/// the document must start with `{`. `Err` says what it is instead.
pub fn expect_json_object(bytes: &[u8], expected: &str) -> Result<(), NotAnObject> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Ok(());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(e) => Err(NotAnObject::NotJson {
            detail: e.to_string(),
            expected: expected.to_owned(),
        }),
        Ok(_) => Err(NotAnObject::OtherJson {
            expected: expected.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_refuses_more() {
        assert_eq!(
            read_limited(&b"abcd"[..], 4).unwrap(),
            Some(b"abcd".to_vec())
        );
        assert_eq!(read_limited(&b"abcde"[..], 4).unwrap(), None);
    }

    #[test]
    fn only_objects_pass_the_shape_check() {
        assert!(expect_json_object(b"  {\"a\": 1}", "X").is_ok());
        assert_eq!(
            expect_json_object(b"[1]", "X").unwrap_err().to_string(),
            "is JSON but not an object; expected X"
        );
        assert!(
            expect_json_object(b"nope", "X")
                .unwrap_err()
                .to_string()
                .starts_with("is not valid JSON (")
        );
    }

    #[test]
    fn a_missing_file_names_what_and_where() {
        let err =
            read_bounded(Path::new("/nonexistent/report.json"), 10, "Grype report").unwrap_err();
        assert!(err.is_usage());
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read Grype report /nonexistent/report.json: "),
            "{msg}"
        );
    }
}
