//! The files of `sandbox-images/`: embedded in the binary at build time, or
//! read from a directory an operator names (`--images-dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_images.rs"));
}

/// Largest file taken from an images directory: these are Dockerfiles,
/// manifests and small sources, never payloads.
const MAX_SOURCE_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("cannot read sandbox images directory {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is {size} bytes; files of a sandbox image directory are limited to {MAX_SOURCE_FILE}"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "{path} has no base/ directory; point --images-dir at a copy of the repository's sandbox-images/"
    )]
    NoBase { path: PathBuf },
}

/// `sandbox-images/` as a map of relative path ("python/Dockerfile") to bytes.
#[derive(Debug, Clone)]
pub struct ImageSources {
    files: BTreeMap<String, Vec<u8>>,
    origin: String,
}

impl ImageSources {
    pub fn embedded() -> Self {
        ImageSources {
            files: embedded::FILES
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
                .collect(),
            origin: "sandbox-images (embedded)".into(),
        }
    }

    /// Reads `<dir>/<image>/<file>` (one level of subdirectories; deeper
    /// trees are not part of the layout).
    pub fn from_dir(dir: &Path) -> Result<Self, SourcesError> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| SourcesError::Read { path, source }
        };
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
            let entry = entry.map_err(read_err(dir))?;
            let sub = entry.path();
            if !entry.file_type().map_err(read_err(&sub))?.is_dir() {
                continue;
            }
            let Some(image) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for f in std::fs::read_dir(&sub).map_err(read_err(&sub))? {
                let f = f.map_err(read_err(&sub))?;
                let path = f.path();
                let meta = f.metadata().map_err(read_err(&path))?;
                if !meta.is_file() {
                    continue;
                }
                if meta.len() > MAX_SOURCE_FILE {
                    return Err(SourcesError::TooLarge {
                        path,
                        size: meta.len(),
                    });
                }
                let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let bytes = std::fs::read(&path).map_err(read_err(&path))?;
                files.insert(format!("{image}/{name}"), bytes);
            }
        }
        if !files.keys().any(|k| k.starts_with("base/")) {
            return Err(SourcesError::NoBase {
                path: dir.to_owned(),
            });
        }
        Ok(ImageSources {
            files,
            origin: dir.display().to_string(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Image directories holding a `manifest.toml` (the languages).
    pub fn language_dirs(&self) -> Vec<&str> {
        self.files
            .keys()
            .filter_map(|k| k.strip_suffix("/manifest.toml"))
            .collect()
    }

    /// Image directories holding a `job.toml` (the workflow job images).
    pub fn job_dirs(&self) -> Vec<&str> {
        self.files
            .keys()
            .filter_map(|k| k.strip_suffix("/job.toml"))
            .collect()
    }

    /// Files of one image directory: (file name, bytes).
    pub fn dir(&self, dir: &str) -> impl Iterator<Item = (&str, &[u8])> {
        let prefix = format!("{dir}/");
        self.files
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(&prefix).map(|name| (name, v.as_slice())))
    }

    /// Content hash of the named directories, in order: an image tag that
    /// changes whenever anything its build reads changes.
    pub fn content_hash(&self, dirs: &[&str]) -> String {
        let mut h = Sha256::new();
        for d in dirs {
            for (name, bytes) in self.dir(d) {
                h.update(format!("{d}/{name}\0{}\0", bytes.len()).as_bytes());
                h.update(bytes);
            }
        }
        let digest = h.finalize();
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_sources_hold_the_base_and_languages() {
        let s = ImageSources::embedded();
        assert!(s.file("base/Dockerfile").is_some());
        assert!(s.file("base/sandbox-init.c").is_some());
        let langs = s.language_dirs();
        for l in ["python", "javascript", "c", "cpp", "java", "bash"] {
            assert!(langs.contains(&l), "{l} missing from {langs:?}");
        }
    }

    #[test]
    fn content_hash_changes_with_content() {
        let mut s = ImageSources::embedded();
        let a = s.content_hash(&["base", "python"]);
        assert_eq!(a.len(), 12);
        assert_eq!(a, s.content_hash(&["base", "python"]));
        s.files
            .get_mut("python/Dockerfile")
            .unwrap()
            .extend_from_slice(b"\n# changed\n");
        assert_ne!(a, s.content_hash(&["base", "python"]));
    }

    #[test]
    fn a_directory_without_base_is_refused() {
        let dir = std::env::temp_dir().join(format!("runner-sources-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("python")).unwrap();
        std::fs::write(dir.join("python/manifest.toml"), "").unwrap();
        let err = ImageSources::from_dir(&dir).unwrap_err();
        assert!(matches!(err, SourcesError::NoBase { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
