//! A layer blob as it arrives from a registry or `docker save`: any bytes,
//! maybe gzip, opened by [`layer::decompressed`] and read by
//! [`RootFs::apply_tar`].
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use parser_fuzz::assert_contained;
use pipeline::sbom::layer;
use pipeline::sbom::rootfs::RootFs;

/// Decompression is bounded the way the fuzz run's memory is: a gzip bomb
/// is the decoder's concern, the reader must only stay streaming.
const MAX_INFLATED: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(stream) = layer::decompressed(data) else {
        return;
    };
    let mut fs = RootFs::new();
    fs.apply_tar(stream.take(MAX_INFLATED), 0, "layer", true);
    for (path, _) in fs.iter() {
        assert_contained(path, "a path in the file system view");
    }
});
