//! The ELF reader for executables in layers ([`binary::scan`]), fed the way
//! a tar entry is: a stream in pieces, with a size the header claims.
#![no_main]

use std::io::Read;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{Found, binary};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Bytes claimed beyond (or short of) the content, as a cut archive does.
    size_delta: i16,
    read_sizes: Vec<u16>,
    bytes: Vec<u8>,
}

/// Hands out at most the next planned number of bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: std::slice::Iter<'a, u16>,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .sizes
            .next()
            .map_or(usize::MAX, |&s| usize::from(s).max(1));
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: Input| {
    let size = (input.bytes.len() as i64 + i64::from(input.size_delta)).max(0) as u64;
    let mut r = Pieces {
        data: &input.bytes,
        sizes: input.read_sizes.iter(),
    };
    let captured = binary::scan(&mut r, size).expect("reading from memory cannot fail");
    // The same bytes read in one piece give the same answer.
    let whole = binary::scan(&mut &input.bytes[..], size).expect("memory");
    assert_eq!(captured, whole, "the answer depends on how reads are split");
    if let Some(c) = captured {
        assert!(c.warnings.len() <= MAX_WARNINGS_PER_FILE);
        if let Found::Packages(p) = &c.found {
            assert!(p.iter().all(|r| !r.name.is_empty()));
        }
    }
});
