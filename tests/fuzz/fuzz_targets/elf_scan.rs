//! The ELF reader for executables in layers ([`binary::scan`]), fed the way
//! a tar entry is: a stream in pieces, with a size the header claims.
//! Input: 2 bytes of size error (i16, little-endian), 2 bytes of read size,
//! then the file, so seeds that are real executables keep their header.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{Found, binary};

/// Hands out at most `step` bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_first_chunk::<4>() else {
        return;
    };
    let delta = i16::from_le_bytes([head[0], head[1]]);
    let step = usize::from(u16::from_le_bytes([head[2], head[3]])).max(1);
    let size = (bytes.len() as i64 + i64::from(delta)).max(0) as u64;
    let mut r = Pieces { data: bytes, step };
    let captured = binary::scan(&mut r, size).expect("reading from memory cannot fail");
    // The same bytes read in one piece give the same answer.
    let whole = binary::scan(&mut &bytes[..], size).expect("memory");
    assert_eq!(captured, whole, "the answer depends on how reads are split");
    if let Some(c) = captured {
        assert!(c.warnings.len() <= MAX_WARNINGS_PER_FILE);
        if let Found::Packages(p) = &c.found {
            assert!(p.iter().all(|r| !r.name.is_empty()));
        }
    }
});
