//! The file system a container sees, built from its layers in one streaming
//! pass each, keeping per-path metadata only (plus, for the few files a
//! cataloger wants, what it extracted from them).
//!
//! Whiteouts follow the OCI image spec: `DIR/.wh.NAME` hides `DIR/NAME` (and
//! everything under it) from lower layers, `DIR/.wh..wh..opq` hides
//! everything lower layers put in `DIR`. Entries of the same layer are never
//! hidden by its own whiteouts, whatever their order in the tar.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::catalog::{self, Captured};
use super::warning::Warnings;

/// Symlinks followed while resolving one path before it counts as a loop
/// (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File {
        size: u64,
        executable: bool,
    },
    Symlink(Box<str>),
    /// Devices, FIFOs and the like: present, never read.
    Other,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Index of the layer that last wrote this path.
    pub layer: u32,
    pub kind: NodeKind,
    pub captured: Option<Box<Captured>>,
}

/// A tar entry's type, as far as the view cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Other,
}

/// One entry to add: a tar header, or a file found by a directory walk.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub path: &'a [u8],
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub link: Option<&'a [u8]>,
}

/// Why a path could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    SymlinkLoop,
}

#[derive(Debug, Default)]
pub struct RootFs {
    nodes: BTreeMap<String, Node>,
    pub warnings: Warnings,
}

impl RootFs {
    pub fn new() -> Self {
        RootFs::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Paths and nodes in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Applies one layer (an uncompressed tar stream) on top of the others.
    /// A malformed or truncated tar ends the layer with a warning; what was
    /// read before stays. `whiteouts` is false for plain archives whose
    /// `.wh.` files are ordinary files.
    pub fn apply_tar<R: Read>(&mut self, reader: R, layer: u32, label: &str, whiteouts: bool) {
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.warnings
                    .push(None, format!("{label}: not a readable tar stream: {e}"));
                return;
            }
        };
        for item in entries {
            let mut entry = match item {
                Ok(e) => e,
                Err(e) => {
                    self.warnings.push(
                        None,
                        format!("{label}: the tar stream is malformed or truncated, the rest of the layer is ignored: {e}"),
                    );
                    return;
                }
            };
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => EntryKind::Hardlink,
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => continue,
                _ => EntryKind::Other,
            };
            let mode = header.mode().unwrap_or(0o644);
            let size = entry.size();
            let path = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let meta = Entry {
                path: &path,
                kind,
                size,
                mode,
                link: link.as_deref(),
            };
            if let Err(e) = self.add(layer, meta, whiteouts, &mut entry) {
                self.warnings.push(
                    None,
                    format!("{label}: reading the tar stream failed, the rest of the layer is ignored: {e}"),
                );
                return;
            }
        }
    }

    /// Adds one entry of layer `layer`; `content` is read only when a
    /// cataloger wants the file. An error is an I/O error of `content`.
    pub fn add(
        &mut self,
        layer: u32,
        entry: Entry<'_>,
        whiteouts: bool,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        let Some(path) = self.normalize(entry.path) else {
            return Ok(());
        };
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", path.as_str()),
        };
        if whiteouts && let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                self.remove_lower(dir, layer, false);
            } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                self.warnings
                    .push(Some(&path), "a whiteout that names nothing; ignored");
            } else {
                let target = join(dir, hidden);
                self.remove_lower(&target, layer, true);
            }
            return Ok(());
        }
        let kind = match entry.kind {
            EntryKind::Dir => NodeKind::Dir,
            EntryKind::File => NodeKind::File {
                size: entry.size,
                executable: entry.mode & 0o111 != 0,
            },
            EntryKind::Symlink => {
                let target = entry.link.unwrap_or_default();
                NodeKind::Symlink(String::from_utf8_lossy(target).into())
            }
            EntryKind::Hardlink => return self.add_hardlink(layer, &path, entry),
            EntryKind::Other => NodeKind::Other,
        };
        if kind != NodeKind::Dir {
            // A file replacing a directory hides what lower layers had in it.
            self.remove_lower(&path, layer, false);
        }
        let captured = match kind {
            NodeKind::File { size, executable } => {
                catalog::capture(&path, size, executable, content)?
            }
            _ => None,
        };
        self.nodes.insert(
            path,
            Node {
                layer,
                kind,
                captured: captured.map(Box::new),
            },
        );
        Ok(())
    }

    fn add_hardlink(&mut self, layer: u32, path: &str, entry: Entry<'_>) -> io::Result<()> {
        let target = entry.link.and_then(|l| self.normalize(l));
        let Some(target) = target else {
            self.warnings
                .push(Some(path), "a hard link without a usable target; ignored");
            return Ok(());
        };
        let Some(found) = self.nodes.get(&target) else {
            self.warnings.push(
                Some(path),
                format!("a hard link to /{target}, which no layer so far holds; ignored"),
            );
            return Ok(());
        };
        let mut node = found.clone();
        node.layer = layer;
        // What was extracted depends on the path (a METADATA file means
        // something only in a .dist-info directory), so it carries over only
        // between paths of the same kind.
        if catalog::classify(path) != catalog::classify(&target) {
            node.captured = None;
        }
        self.remove_lower(path, layer, false);
        self.nodes.insert(path.to_owned(), node);
        Ok(())
    }

    /// Removes what layers below `layer` put under `path` (and `path`
    /// itself when `itself`).
    fn remove_lower(&mut self, path: &str, layer: u32, itself: bool) {
        if itself && self.nodes.get(path).is_some_and(|n| n.layer < layer) {
            self.nodes.remove(path);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// A tar path as a relative path without `.` components, or `None` (with
    /// a warning) when it is absolute or climbs out with `..`.
    fn normalize(&mut self, raw: &[u8]) -> Option<String> {
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.to_owned(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(raw).into_owned();
                self.warnings.push(
                    Some(&lossy),
                    "the file name is not valid UTF-8; invalid bytes are shown as U+FFFD",
                );
                lossy
            }
        };
        let shown = text.trim_start_matches("./");
        if text.starts_with('/') {
            self.warnings.push(
                Some(shown.trim_start_matches('/')),
                "an entry with an absolute path; ignored (layers hold relative paths)",
            );
            return None;
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    self.warnings
                        .push(Some(shown), "an entry whose path contains `..`; ignored");
                    return None;
                }
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(parts.join("/"))
    }

    /// The path `path` names once symlinks are followed inside this file
    /// system (an absolute target starts again at its root; `..` stops at
    /// the root). The result may not exist.
    pub fn resolve(&self, path: &str) -> Result<String, ResolveError> {
        let mut todo: std::collections::VecDeque<String> =
            path.split('/').map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let joined = current.join("/");
            if let Some(Node {
                kind: NodeKind::Symlink(target),
                ..
            }) = self.nodes.get(&joined)
            {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ResolveError::SymlinkLoop);
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                for p in target.split('/').rev() {
                    todo.push_front(p.to_owned());
                }
            }
        }
        Ok(current.join("/"))
    }

    /// The node at `path` after following symlinks, with its real path.
    /// A loop is a warning and gives `None`.
    pub fn lookup(&self, path: &str, warnings: &mut Warnings) -> Option<(String, &Node)> {
        match self.resolve(path) {
            Ok(real) => self.nodes.get(&real).map(|n| (real, n)),
            Err(ResolveError::SymlinkLoop) => {
                warnings.push(
                    Some(path),
                    format!("too many levels of symbolic links (more than {MAX_SYMLINK_HOPS}); not followed"),
                );
                None
            }
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
pub(crate) use tests::LayerBuilder;

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer as a tar archive in memory.
    pub(crate) struct LayerBuilder(tar::Builder<Vec<u8>>);

    impl LayerBuilder {
        pub fn new() -> Self {
            LayerBuilder(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h
        }
        pub fn file(mut self, path: &str, data: &[u8]) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, 0o644);
            self.0.append_data(&mut h, path, data).unwrap();
            self
        }
        pub fn dir(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
            self.0.append_data(&mut h, path, &[][..]).unwrap();
            self
        }
        pub fn symlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Symlink, 0, 0o777);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        pub fn hardlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Link, 0, 0o644);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        /// An entry whose name is written raw, bypassing the tar crate's
        /// checks (which refuse `..` and absolute paths).
        pub fn raw_name(mut self, name: &[u8], data: &[u8]) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, 0o644);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        pub fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn paths(fs: &RootFs) -> Vec<&str> {
        fs.iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .dir("a")
            .file("a/keep", b"1")
            .file("a/gone", b"2")
            .dir("a/sub")
            .file("a/sub/deep", b"3")
            .file("b", b"4")
            .build();
        fs.apply_tar(&l0[..], 0, "layer 0", true);
        // The whiteout comes after the re-created file in the same layer:
        // the new file must survive.
        let l1 = LayerBuilder::new()
            .file("b", b"new")
            .file(".wh.b", b"")
            .file("a/.wh.gone", b"")
            .file("a/.wh.sub", b"")
            .build();
        fs.apply_tar(&l1[..], 1, "layer 1", true);
        assert_eq!(paths(&fs), ["a", "a/keep", "b"]);
        assert_eq!(fs.get("b").unwrap().layer, 1);
        assert!(fs.warnings.is_empty());
    }

    #[test]
    fn opaque_directories_drop_lower_content_but_keep_their_own() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .dir("d")
            .file("d/old", b"1")
            .dir("d/x")
            .file("d/x/y", b"2")
            .file("other", b"3")
            .build();
        fs.apply_tar(&l0[..], 0, "layer 0", true);
        // The marker after a new entry of the same layer.
        let l1 = LayerBuilder::new()
            .dir("d")
            .file("d/new", b"4")
            .file("d/.wh..wh..opq", b"")
            .build();
        fs.apply_tar(&l1[..], 1, "layer 1", true);
        assert_eq!(paths(&fs), ["d", "d/new", "other"]);
    }

    #[test]
    fn a_file_replacing_a_directory_hides_its_content() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new().dir("x").file("x/f", b"1").build();
        fs.apply_tar(&l0[..], 0, "0", true);
        let l1 = LayerBuilder::new().file("x", b"now a file").build();
        fs.apply_tar(&l1[..], 1, "1", true);
        assert_eq!(paths(&fs), ["x"]);
    }

    #[test]
    fn dot_dot_and_absolute_entries_are_refused_with_a_warning() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .raw_name(b"../escape", b"x")
            .raw_name(b"/abs/path", b"x")
            .raw_name(b"ok/../../x", b"x")
            .file("./fine", b"y")
            .build();
        fs.apply_tar(&l0[..], 0, "0", true);
        assert_eq!(paths(&fs), ["fine"]);
        let w = std::mem::take(&mut fs.warnings).into_sorted();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|w| w.message.contains("absolute")));
        assert!(w.iter().filter(|w| w.message.contains("`..`")).count() == 2);
    }

    #[test]
    fn whiteouts_are_plain_files_when_disabled() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .file("f", b"1")
            .file(".wh.f", b"")
            .build();
        fs.apply_tar(&l0[..], 0, "0", false);
        assert_eq!(paths(&fs), [".wh.f", "f"]);
    }

    #[test]
    fn a_truncated_layer_keeps_what_came_before() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .file("first", b"1")
            .file("second", &[7u8; 4096])
            .build();
        // Cut in the middle of the second header.
        fs.apply_tar(&l0[..1024 + 300], 0, "layer 0", true);
        assert_eq!(paths(&fs), ["first"]);
        let w = std::mem::take(&mut fs.warnings).into_sorted();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("layer 0"), "{w:?}");
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_loops_stop() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .dir("usr/lib")
            .file("usr/lib/os-release", b"ID=x\n")
            .dir("etc")
            .symlink("etc/os-release", "../usr/lib/os-release")
            .symlink("escape", "../../../../etc/passwd")
            .symlink("abs", "/usr/lib")
            .symlink("loop1", "loop2")
            .symlink("loop2", "loop1")
            .build();
        fs.apply_tar(&l0[..], 0, "0", true);
        assert_eq!(fs.resolve("etc/os-release").unwrap(), "usr/lib/os-release");
        assert_eq!(fs.resolve("escape").unwrap(), "etc/passwd");
        assert_eq!(fs.resolve("abs/os-release").unwrap(), "usr/lib/os-release");
        assert_eq!(fs.resolve("loop1/x"), Err(ResolveError::SymlinkLoop));
        let mut w = Warnings::default();
        assert!(fs.lookup("loop1", &mut w).is_none());
        assert!(!w.is_empty());
    }

    /// A GNU sparse entry (`S`) with an empty sparse map and no real size
    /// (found by the `layer_tar` fuzz campaign). Go's archive/tar reads past
    /// it as an empty sparse file; the tar crate stops there. What matters
    /// is what runs: Docker (moby's pkg/archive), containerd and
    /// containers/storage (Podman, CRI-O) refuse every layer holding an `S`
    /// entry ("unhandled tar header type 83"), so no container ever sees a
    /// file after it. The view keeps what came before and says the rest of
    /// the layer was not read, so the SBOM never silently looks complete.
    #[test]
    fn a_gnu_sparse_entry_ends_the_layer_with_a_warning() {
        let mut b = LayerBuilder::new().file("before", b"1");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.set_mode(0o644);
        b.0.append_data(&mut h, "sparse", &[][..]).unwrap();
        let layer = b.file("var/lib/dpkg/status", b"Package: hidden\n").build();
        let mut fs = RootFs::new();
        fs.apply_tar(&layer[..], 0, "layer 0", true);
        assert_eq!(paths(&fs), ["before"]);
        let warnings = std::mem::take(&mut fs.warnings).into_sorted();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .message
                .contains("layer 0: the tar stream is malformed or truncated, the rest of the layer is ignored"),
            "{warnings:?}"
        );
    }

    #[test]
    fn hard_links_copy_their_target() {
        let mut fs = RootFs::new();
        let l0 = LayerBuilder::new()
            .file("etc/os-release", b"ID=debian\nVERSION_ID=12\n")
            .hardlink("usr/lib/os-release", "etc/os-release")
            .hardlink("dangling", "nowhere")
            .build();
        fs.apply_tar(&l0[..], 0, "0", true);
        assert!(fs.get("usr/lib/os-release").unwrap().captured.is_some());
        assert!(fs.get("dangling").is_none());
        assert!(!fs.warnings.is_empty());
    }
}
