//! Go's `.go.buildinfo` blob (found by magic anywhere in a binary).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::binary;

fuzz_target!(|data: &[u8]| {
    // Seeds carry the blob from its magic on; prefix it when missing so
    // mutations explore the blob rather than the search for it.
    let mut blob = Vec::with_capacity(data.len() + 14);
    if !data.starts_with(b"\xff Go buildinf:") {
        blob.extend_from_slice(b"\xff Go buildinf:");
    }
    blob.extend_from_slice(data);
    let mut warnings = Vec::new();
    let records = binary::go_buildinfo(&blob, &mut warnings);
    assert!(warnings.len() <= MAX_WARNINGS_PER_FILE);
    for r in records {
        assert!(!r.name.is_empty(), "{r:?}");
    }
});
