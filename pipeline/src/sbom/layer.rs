//! Opening a layer blob as a tar stream, whatever its compression.

use std::io::{BufRead, Read};

/// gzip and zstd magic numbers.
const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A layer that cannot be opened as a tar stream.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read the layer: {0}")]
    Read(#[from] std::io::Error),
    #[error("the layer is zstd-compressed, which is not supported; its files are not listed")]
    Zstd,
}

/// The uncompressed tar stream of a layer, the compression told by its
/// first bytes (media types lie, and docker save does not state them).
/// zstd is refused with an error message: no decoder is built in.
pub fn decompressed<'a, R: BufRead + 'a>(mut reader: R) -> Result<Box<dyn Read + 'a>, LayerError> {
    let head = reader.fill_buf()?;
    if head.starts_with(GZIP) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(ZSTD) {
        Err(LayerError::Zstd)
    } else {
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_and_gzip_and_zstd() {
        let mut plain = Vec::new();
        decompressed(&b"hello"[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"hello");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"zipped").unwrap();
        let gz = gz.finish().unwrap();
        let mut out = Vec::new();
        decompressed(&gz[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"zipped");
        assert!(decompressed(&[0x28, 0xb5, 0x2f, 0xfd, 0][..]).is_err());
        let mut empty = Vec::new();
        decompressed(&b""[..])
            .unwrap()
            .read_to_end(&mut empty)
            .unwrap();
        assert!(empty.is_empty());
    }
}
