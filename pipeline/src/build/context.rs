//! The build context: the context directory as a tar archive, without what
//! `.dockerignore` excludes. Symlinks go in as symlinks (never followed, so
//! nothing outside the context is read); sockets, FIFOs and devices are left
//! out. Entries are sorted and owned by root, so the same tree gives the
//! same archive.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::dockerignore::Dockerignore;

/// Where a Dockerfile from outside the context goes in the archive.
pub const OUTSIDE_DOCKERFILE: &str = ".dockerfile.pipeline";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextInfo {
    /// The Dockerfile's path inside the archive.
    pub dockerfile: String,
    pub files: usize,
    /// What was left out because it is neither file, directory nor symlink.
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot make the build context from {path}: {message}")]
pub struct ContextError {
    pub path: PathBuf,
    pub message: String,
}

fn header(meta: &std::fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn fail(path: &Path, message: impl std::fmt::Display) -> ContextError {
    ContextError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Writes the context of `dir` to `out`. `dockerfile` is the Dockerfile's
/// path (absolute or relative to the working directory).
pub fn write<W: Write>(dir: &Path, dockerfile: &Path, out: W) -> Result<ContextInfo, ContextError> {
    let root = dir
        .canonicalize()
        .map_err(|e| fail(dir, format!("not an accessible directory ({e})")))?;
    let dockerfile_abs = dockerfile
        .canonicalize()
        .map_err(|e| fail(dockerfile, format!("the Dockerfile is not readable ({e})")))?;
    let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
        Ok(t) => Dockerignore::parse(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
        Err(e) => return Err(fail(&root.join(".dockerignore"), e)),
    };
    let dockerfile_rel = dockerfile_abs
        .strip_prefix(&root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut packer = Packer {
        info: ContextInfo {
            dockerfile: dockerfile_rel
                .clone()
                .unwrap_or_else(|| OUTSIDE_DOCKERFILE.to_owned()),
            files: 0,
            skipped: Vec::new(),
        },
        builder,
        root,
        ignore,
        dockerfile_rel,
    };
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let subdirs = packer.add_children(&rel)?;
        // Reversed so the stack pops them in order.
        stack.extend(subdirs.into_iter().rev());
    }
    if packer.dockerfile_rel.is_none() {
        packer.add_outside_dockerfile(&dockerfile_abs)?;
    }
    let Packer {
        builder,
        root,
        info,
        ..
    } = packer;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| fail(&root, e))?;
    Ok(info)
}

/// The archive being written, and what decides what goes in.
struct Packer<W: Write> {
    builder: tar::Builder<W>,
    root: PathBuf,
    ignore: Dockerignore,
    /// The Dockerfile's path in the context, when it is inside it.
    dockerfile_rel: Option<String>,
    info: ContextInfo,
}

impl<W: Write> Packer<W> {
    /// Adds the entries of the directory `rel` (sorted); returns the
    /// subdirectories to descend into.
    fn add_children(&mut self, rel: &Path) -> Result<Vec<PathBuf>, ContextError> {
        let abs = self.root.join(rel);
        let mut children: Vec<_> = std::fs::read_dir(&abs)
            .and_then(|listing| listing.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(&abs, format!("cannot list it: {e}")))?;
        children.sort_by_key(std::fs::DirEntry::file_name);
        let mut subdirs = Vec::new();
        for child in children {
            let child_rel = rel.join(child.file_name());
            if self.add(&child.path(), &child_rel)? {
                subdirs.push(child_rel);
            }
        }
        Ok(subdirs)
    }

    /// Adds one entry, unless `.dockerignore` excludes it; `true` for a
    /// directory whose content must be looked at (kept, or excluded but
    /// with `!` exceptions that may bring some of it back).
    fn add(&mut self, path: &Path, rel: &Path) -> Result<bool, ContextError> {
        let rel_str = rel.to_string_lossy().into_owned();
        let always = rel_str == ".dockerignore" || Some(&rel_str) == self.dockerfile_rel.as_ref();
        let excluded = !always && self.ignore.is_excluded(&rel_str);
        let meta = std::fs::symlink_metadata(path).map_err(|e| fail(path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !excluded {
                let mut h = header(&meta, tar::EntryType::Directory, 0);
                self.builder
                    .append_data(&mut h, rel, io::empty())
                    .map_err(|e| fail(path, e))?;
            }
            return Ok(!excluded || self.ignore.has_exceptions());
        }
        if excluded {
            return Ok(false);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| fail(path, e))?;
            let mut h = header(&meta, tar::EntryType::Symlink, 0);
            self.builder
                .append_link(&mut h, rel, &target)
                .map_err(|e| fail(path, e))?;
        } else if ft.is_file() {
            let file = open_no_follow(path).map_err(|e| fail(path, e))?;
            let mut h = header(&meta, tar::EntryType::Regular, meta.len());
            self.builder
                .append_data(&mut h, rel, file)
                .map_err(|e| fail(path, e))?;
            self.info.files += 1;
        } else {
            self.info.skipped.push(rel_str);
        }
        Ok(false)
    }

    /// A Dockerfile outside the context goes in as [`OUTSIDE_DOCKERFILE`].
    fn add_outside_dockerfile(&mut self, dockerfile: &Path) -> Result<(), ContextError> {
        let file = open_no_follow(dockerfile).map_err(|e| fail(dockerfile, e))?;
        let meta = file.metadata().map_err(|e| fail(dockerfile, e))?;
        let mut h = header(&meta, tar::EntryType::Regular, meta.len());
        self.builder
            .append_data(&mut h, OUTSIDE_DOCKERFILE, file)
            .map_err(|e| fail(dockerfile, e))
    }
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(archive: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn dockerignore_and_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        std::fs::write(c.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(c.join(".dockerignore"), "*.log\ntarget\nDockerfile\n").unwrap();
        std::fs::write(c.join("app.log"), "x").unwrap();
        std::fs::create_dir_all(c.join("target/debug")).unwrap();
        std::fs::write(c.join("target/debug/big"), "x").unwrap();
        std::fs::create_dir_all(c.join("src")).unwrap();
        std::fs::write(c.join("src/main.rs"), "fn main() {}").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), c.join("link")).unwrap();
        let mut out = Vec::new();
        let info = write(c, &c.join("Dockerfile"), &mut out).unwrap();
        assert_eq!(info.dockerfile, "Dockerfile");
        assert_eq!(
            names(&out),
            [".dockerignore", "Dockerfile", "link", "src", "src/main.rs"]
        );
        // The symlink is a link: its target's content is not in the archive.
        let mut a = tar::Archive::new(&out[..]);
        let link = a
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().ends_with("link"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(link.size(), 0);
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_added() {
        let ctx = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("Build.df"), "FROM scratch\n").unwrap();
        let mut out = Vec::new();
        let info = write(ctx.path(), &elsewhere.path().join("Build.df"), &mut out).unwrap();
        assert_eq!(info.dockerfile, OUTSIDE_DOCKERFILE);
        assert_eq!(names(&out), [OUTSIDE_DOCKERFILE]);
        let e = write(ctx.path(), &ctx.path().join("missing"), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("Dockerfile"), "{e}");
    }
}
