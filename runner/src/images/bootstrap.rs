//! Creating `debian:bookworm-slim` from Debian's packages, for machines that
//! reach Debian's archive but no container registry.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::engine::ImageEngine;

/// Mirror used unless `RUNNER_DEBIAN_MIRROR` names another.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "debootstrap is not installed; install it (Debian/Ubuntu: `sudo apt-get install debootstrap`) or make {image} available to Docker (`docker pull {image}` or `docker load`)"
    )]
    NoDebootstrap { image: String },
    #[error(
        "debootstrap must run as root to create {image}; run `sudo runner images build` once, or make {image} available to Docker"
    )]
    NotRoot { image: String },
    #[error("cannot prepare a directory for debootstrap at {path}: {source}")]
    TempDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("debootstrap failed ({status}); its last output:\n{tail}")]
    Debootstrap { status: String, tail: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("importing the root filesystem as {image} failed: {message}")]
    Import { image: String, message: String },
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs debootstrap into a private temporary directory, trims it like the
/// official slim image, and imports it into the engine as `image`.
pub async fn create_debian_image(
    engine: &dyn ImageEngine,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), BootstrapError> {
    let debootstrap = find_in_path("debootstrap").ok_or_else(|| BootstrapError::NoDebootstrap {
        image: image.to_owned(),
    })?;
    if !is_root() {
        return Err(BootstrapError::NotRoot {
            image: image.to_owned(),
        });
    }
    let dir = std::env::temp_dir().join(format!(
        "runner-debootstrap-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir).map_err(|source| BootstrapError::TempDir {
        path: dir.clone(),
        source,
    })?;
    let result = bootstrap_into(&debootstrap, &dir, engine, image, progress).await;
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        progress(&format!("could not remove {}: {e}", dir.display()));
    }
    result
}

async fn bootstrap_into(
    debootstrap: &Path,
    dir: &Path,
    engine: &dyn ImageEngine,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), BootstrapError> {
    let mirror = std::env::var("RUNNER_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let mut child = Command::new(debootstrap)
        .args(["--variant=minbase", "bookworm"])
        .arg(dir)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BootstrapError::Spawn {
            program: "debootstrap",
            source,
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    // debootstrap reports progress on stderr, errors on either stream.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let readers: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] =
        [Box::new(stdout), Box::new(stderr)];
    for reader in readers {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut tail = std::collections::VecDeque::new();
    while let Some(l) = rx.recv().await {
        progress(&format!("  {l}"));
        tail.push_back(l);
        if tail.len() > 20 {
            tail.pop_front();
        }
    }
    let status = child.wait().await.map_err(|source| BootstrapError::Spawn {
        program: "debootstrap",
        source,
    })?;
    if !status.success() {
        return Err(BootstrapError::Debootstrap {
            status: status.to_string(),
            tail: Vec::from(tail).join("\n"),
        });
    }

    // What Debian's slim images leave out: documentation, manuals, package
    // indexes and caches.
    for sub in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/log",
    ] {
        let p = dir.join(sub);
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::create_dir_all(&p);
        }
    }

    progress(&format!("importing the root filesystem as {image}"));
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BootstrapError::Spawn {
            program: "tar",
            source,
        })?;
    let out = tar.stdout.take().expect("piped stdout");
    let body = futures_util::stream::unfold(out, |mut out| async move {
        let mut buf = vec![0u8; 1 << 16];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), out))
            }
            Err(e) => Some((Err(e), out)),
        }
    });
    engine
        .import(image, Box::pin(body))
        .await
        .map_err(|e| BootstrapError::Import {
            image: image.to_owned(),
            message: e.0,
        })?;
    let status = tar.wait().await.map_err(|source| BootstrapError::Spawn {
        program: "tar",
        source,
    })?;
    if !status.success() {
        return Err(BootstrapError::Import {
            image: image.to_owned(),
            message: format!("tar of the root filesystem failed ({status})"),
        });
    }
    progress(&format!("created {image} from Debian's packages"));
    Ok(())
}
