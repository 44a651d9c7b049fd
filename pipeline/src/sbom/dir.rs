//! A root file system in a directory. Symlinks are recorded, never followed
//! (they are resolved inside the tree, as in an image), so nothing outside
//! the directory is read; files are opened with `O_NOFOLLOW | O_NONBLOCK`
//! so a file swapped for a symlink or a FIFO cannot redirect or block.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::rootfs::{Entry, EntryKind, RootFs};

/// Directories deeper than this are not entered (a warning says so).
const MAX_DEPTH: usize = 256;

/// Opens the file on first read, so files no cataloger wants are never
/// opened.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl Read for LazyFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&self.path)?;
            if !f.metadata()?.file_type().is_file() {
                return Err(io::Error::other("no longer a regular file"));
            }
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

/// A root that cannot be read as a directory.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a directory", .path.display())]
    NotADirectory { path: PathBuf },
}

/// Reads the tree under `root` into a file system view.
pub fn read(root: &Path) -> Result<RootFs, DirError> {
    let meta = std::fs::metadata(root).map_err(|source| DirError::Read {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DirError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let mut fs = RootFs::new();
    // (absolute path, path relative to root, depth)
    let mut stack: Vec<(PathBuf, Vec<u8>, usize)> = vec![(root.to_owned(), Vec::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let shown = String::from_utf8_lossy(&rel).into_owned();
        if depth > MAX_DEPTH {
            fs.warnings.push(
                Some(&shown),
                format!("more than {MAX_DEPTH} directories deep; not entered"),
            );
            continue;
        }
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) => {
                fs.warnings
                    .push(Some(&shown), format!("cannot list the directory: {e}"));
                continue;
            }
        };
        let mut children: Vec<_> = listing.filter_map(Result::ok).collect();
        children.sort_by_key(std::fs::DirEntry::file_name);
        for child in children {
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(child.file_name().as_bytes());
            let path = child.path();
            if add(&mut fs, &path, &child_rel) == Some(EntryKind::Dir) {
                stack.push((path, child_rel, depth + 1));
            }
        }
    }
    Ok(fs)
}

/// Records the entry at `path` (named `rel` in the tree); its kind, or
/// `None` when it could not be looked at (a warning says why).
fn add(fs: &mut RootFs, path: &Path, rel: &[u8]) -> Option<EntryKind> {
    let shown = String::from_utf8_lossy(rel).into_owned();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            fs.warnings.push(Some(&shown), format!("cannot stat: {e}"));
            return None;
        }
    };
    let ft = meta.file_type();
    let link = if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => Some(t.as_os_str().as_bytes().to_vec()),
            Err(e) => {
                fs.warnings
                    .push(Some(&shown), format!("cannot read the symlink: {e}"));
                return None;
            }
        }
    } else {
        None
    };
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    let entry = Entry {
        path: rel,
        kind,
        size: meta.len(),
        mode: meta.permissions().mode(),
        link: link.as_deref(),
    };
    let mut content = LazyFile {
        path: path.to_owned(),
        file: None,
    };
    if let Err(e) = fs.add(0, entry, false, &mut content) {
        fs.warnings
            .push(Some(&shown), format!("cannot read the file: {e}"));
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_not_followed_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("os-release"), "ID=evil\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
        // An absolute link points into the tree, not to the host's file.
        std::os::unix::fs::symlink("/usr/lib/os-release", r.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("escape")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let fs = read(r).unwrap();
        assert_eq!(fs.resolve("etc/os-release").unwrap(), "usr/lib/os-release");
        assert!(fs.get("escape").is_some());
        assert!(fs.get("escape/os-release").is_none(), "not entered");
        let mut w = crate::sbom::warning::Warnings::default();
        assert!(fs.lookup("loop", &mut w).is_none());
        assert!(!w.is_empty());
        let inv = crate::sbom::catalog::assemble(fs, &[]);
        let (os, _) = inv.distro.unwrap();
        assert_eq!(os.id.as_deref(), Some("debian"));
    }

    #[test]
    fn fifos_do_not_block() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/lib/dpkg");
        std::fs::create_dir_all(&dir).unwrap();
        let status = dir.join("status");
        let ok = std::process::Command::new("mkfifo")
            .arg(&status)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("mkfifo unavailable; skipped");
            return;
        }
        let fs = read(root.path()).unwrap();
        assert!(fs.get("var/lib/dpkg/status").is_some());
        assert!(read(&root.path().join("missing")).is_err());
    }
}
