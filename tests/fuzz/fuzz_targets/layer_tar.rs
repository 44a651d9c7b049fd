//! The layer reader with whiteouts ([`RootFs::apply_tar`]), on tar streams
//! built from structured entries: names with `..`, absolute names,
//! whiteouts, opaque directories, links and cut-short files, over several
//! layers.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parser_fuzz::{EntryType, TarEntry, assert_contained, tar_stream};
use pipeline::sbom::catalog;
use pipeline::sbom::rootfs::{NodeKind, RootFs};
use pipeline::sbom::warning::MAX_WARNINGS;

#[derive(Debug, Arbitrary)]
struct Input {
    layers: Vec<Vec<TarEntry>>,
    whiteouts: bool,
}

fuzz_target!(|input: Input| {
    let mut fs = RootFs::new();
    let layers: Vec<Vec<TarEntry>> = input.layers.into_iter().take(4).collect();
    for (i, entries) in layers.iter().enumerate() {
        fs.apply_tar(&tar_stream(entries)[..], i as u32, "layer", input.whiteouts);
    }
    for (path, node) in fs.iter() {
        assert_contained(path, "a path in the file system view");
        if let NodeKind::Symlink(_) = node.kind {
            // Following it stays inside the root too.
            if let Ok(real) = fs.resolve(path) {
                if !real.is_empty() {
                    assert_contained(&real, "a resolved symlink");
                }
            }
        }
    }
    // Entries of the top layer are never hidden by that layer's own
    // whiteouts: each one with a usable name is there.
    // (Unless the layer holds raw GNU long-name or PAX records, which rename
    // the entry after them.)
    let renames =
        |e: &TarEntry| matches!(e.kind, EntryType::Other(b'L' | b'K' | b'x' | b'g' | b'X'));
    if let Some(top) = layers
        .len()
        .checked_sub(1)
        .filter(|&t| !layers[t].iter().any(renames))
    {
        let mut cut = false;
        for e in &layers[top] {
            if cut {
                break;
            }
            // Any entry whose header claims more than follows ends the
            // stream (see `append_entry`), whatever its type.
            // So may a GNU sparse header ('S'): its sparse map (and
            // extension blocks) decide how much follows; the reader stops
            // at a malformed one and warns. Docker, containerd and CRI-O
            // refuse any layer holding an 'S' entry, so nothing after it
            // runs (see `a_gnu_sparse_entry_ends_the_layer_with_a_warning`
            // and corpus/layer_tar/regression-sparse-header).
            cut = e.content.claim_extra.is_some_and(|x| x > 0)
                || matches!(e.kind, EntryType::Other(b'S'));
            if !matches!(
                e.kind,
                EntryType::File | EntryType::Dir | EntryType::Symlink
            ) {
                continue;
            }
            let Some(path) = normalized(&e.path.bytes()) else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(&path);
            if input.whiteouts && name.starts_with(".wh.") {
                continue;
            }
            assert!(
                fs.get(&path).is_some_and(|n| n.layer == top as u32),
                "{path:?} of the top layer is missing"
            );
        }
    }
    let inventory = catalog::assemble(fs, &[]);
    assert!(inventory.warnings.len() <= MAX_WARNINGS + 1);
    for p in &inventory.packages {
        for l in &p.locations {
            assert_contained(&l.path, "a package location");
        }
    }
});

/// What the view should key a UTF-8 tar name by, or `None` when it must
/// refuse it (absolute, `..`, empty).
fn normalized(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if text.starts_with('/') || raw.contains(&0) {
        return None;
    }
    let mut parts = Vec::new();
    for p in text.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
