//! Writing result files (SBOMs, scan reports, provenance) so that a reader,
//! such as an upload step, never sees half a file, with the permissions any
//! other file of the user gets: these are not secrets, so the umask decides
//! (a private key is written by [`crate::cosign::keys`], mode 0600).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `bytes` next to `path` and renames, so `path` is either the old
/// file or the whole new one. Devices and pipes (`-o /dev/null`,
/// `-o /dev/stdout`) are written in place: renaming over them would
/// replace them.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let fail = |source| OutputError {
        path: path.to_owned(),
        source,
    };
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(fail)?;
        return f.write_all(bytes).map_err(fail);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A temporary file is created 0600; asking for 0666 lets the umask
    // decide, as for any file the user creates.
    let mut tmp = tempfile::Builder::new()
        .prefix(".pipeline-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
