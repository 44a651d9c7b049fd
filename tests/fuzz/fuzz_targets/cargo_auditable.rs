//! The `.dep-v0` section of binaries built with `cargo auditable`
//! (zlib-compressed JSON); raw input, or valid zlib around fuzzed JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::binary;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let section = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        zlib_stored(rest)
    };
    let mut warnings = Vec::new();
    let records = binary::cargo_auditable(&section, &mut warnings);
    assert!(
        warnings.len() <= MAX_WARNINGS_PER_FILE,
        "{}",
        warnings.len()
    );
    for r in records {
        assert!(!r.name.is_empty(), "{r:?}");
    }
});

/// A zlib stream of stored (uncompressed) blocks: the JSON inside reaches
/// the parser unchanged, whatever the fuzzer does to it.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(b) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = b.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}
