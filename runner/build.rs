//! Embeds `sandbox-images/` so `runner` builds its sandbox images from any
//! working directory (an operator may still point `--images-dir` elsewhere).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-images");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in walkdir::WalkDir::new(&root).min_depth(2).max_depth(2) {
        let entry = entry.expect("reading sandbox-images/");
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&root)
            .expect("entry under root")
            .to_str()
            .expect("sandbox-images/ paths are UTF-8")
            .to_owned();
        let abs = entry.path().canonicalize().expect("canonical path");
        println!("cargo:rerun-if-changed={}", abs.display());
        if let Some(parent) = entry.path().parent() {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
        files.push((rel, abs.display().to_string()));
    }
    files.sort();
    let mut out = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(out, "    ({rel:?}, include_bytes!({abs:?})),").expect("write to String");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded_images.rs");
    std::fs::write(dest, out).expect("writing embedded_images.rs");
}
