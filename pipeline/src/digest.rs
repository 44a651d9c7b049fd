//! Content digests (`sha256:<hex>`) and a reader that computes one while
//! data streams through it.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// A digest argument that is not `ALGORITHM:HEX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{given:?} is not a digest: write sha256:<64 hex digits>")]
    Shape { given: String },
    #[error("{given:?}: unknown digest algorithm {algorithm:?}; write sha256:<64 hex digits>")]
    Algorithm { given: String, algorithm: String },
    #[error("{given:?} is not a digest: {algorithm} takes {len} hex digits")]
    Length {
        given: String,
        algorithm: &'static str,
        len: usize,
    },
}

/// Parses `sha256:HEX` (or `sha512:HEX`), lowercased.
pub fn parse(s: &str) -> Result<String, DigestError> {
    let s = s.trim();
    let (algorithm, hex) = s.split_once(':').ok_or_else(|| DigestError::Shape {
        given: s.to_owned(),
    })?;
    let (algorithm, len) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha512" => ("sha512", 128),
        other => {
            return Err(DigestError::Algorithm {
                given: s.to_owned(),
                algorithm: other.to_owned(),
            });
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::Length {
            given: s.to_owned(),
            algorithm,
            len,
        });
    }
    Ok(s.to_ascii_lowercase())
}

/// Whether `s` is a well-formed `sha256:<64 lowercase hex>` digest.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Passes data through and hashes it, so a blob is verified in the same
/// pass that consumes it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (so trailing bytes count too), then returns the
    /// digest and the total length.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.bytes,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse(&format!("sha256:{}", hex.to_uppercase())).unwrap(),
            format!("sha256:{hex}")
        );
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        assert!(msg("sha256:abc").contains("64 hex digits"));
        assert!(msg(&format!("md5:{hex}")).contains("unknown digest algorithm"));
        assert!(msg("latest").contains("is not a digest"));
    }

    #[test]
    fn digests_match_known_values() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_digest(&d));
        assert!(!is_sha256_digest("sha256:ABC"));
        assert!(!is_sha256_digest("md5:00"));
    }
}
