//! What runs where, kept by the direct (local) form of promotions: one
//! JSON file per environment in a state directory, written atomically,
//! changed only under that environment's lock.
//!
//! Before a deploy touches anything, the intent is recorded (`pending`);
//! after it, the outcome (the new `live` release, or a failure and what
//! serves instead) is appended to the history and `pending` cleared. A
//! deployer killed in between leaves `pending` behind: the next promotion
//! to that environment (or `pipeline environments --reconcile`) reconciles
//! it with what the target really runs before doing anything else, so
//! nothing half-done stays unrecorded.
//!
//! The runner service keeps the same facts in its database; this file is
//! for one person at a terminal and for tests.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verify::{SbomSummary, ScanSummary};
use crate::error::{Blame, Classify};

/// Events kept per environment; older ones are dropped.
const HISTORY_CAP: usize = 1000;
/// The version of the file's format.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use the state directory {}: {source}", .path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {} is unreadable: {message}; it is not changed: fix or move it", .path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write the state file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another promotion to {environment} is running (it holds {}); wait for it to end",
        .lock.display()
    )]
    Busy { environment: String, lock: PathBuf },
    #[error("{given:?} is not an environment name (lowercase letters, digits and `-`)")]
    BadName { given: String },
}

impl Classify for StateError {
    fn blame(&self) -> Blame {
        match self {
            StateError::Busy { .. } | StateError::Corrupt { .. } | StateError::BadName { .. } => {
                Blame::Usage
            }
            StateError::Dir { .. } | StateError::Write { .. } => Blame::Infra,
        }
    }
}

/// A release running in an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// `REPO@sha256:...`.
    pub image: String,
    pub digest: String,
    pub commit: Option<String>,
    pub source: Option<String>,
    /// Live since (RFC 3339), and as Unix seconds for soak arithmetic.
    pub since: String,
    pub since_unix: i64,
    pub sbom: Option<SbomSummary>,
    pub scan: Option<ScanSummary>,
}

/// A deploy that started and has not been recorded as ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub image: String,
    pub digest: String,
    pub commit: Option<String>,
    pub source: Option<String>,
    pub sbom: Option<SbomSummary>,
    pub scan: Option<ScanSummary>,
    pub started: String,
    /// Who asked for it.
    pub requested_by: String,
    /// The process that deploys, on which host.
    pub pid: u32,
    pub host: String,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The image became live.
    Deployed,
    /// The image failed; the previous one serves again.
    RolledBack,
    /// The image failed and so did restoring the previous one.
    Failed,
    /// Refused before anything was deployed (verification, policy).
    Refused,
    /// A deploy whose deployer died, resolved.
    Reconciled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: String,
    pub kind: EventKind,
    pub image: String,
    pub digest: String,
    pub commit: Option<String>,
    pub requested_by: Option<String>,
    /// Who approved (the service passes them; the direct form has none).
    #[serde(default)]
    pub approved_by: Vec<String>,
    /// Why, for anything but a plain deploy.
    pub reason: Option<String>,
    /// What serves after it (`None`: nothing).
    pub live_after: Option<String>,
}

/// One environment's file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentState {
    #[serde(default = "format")]
    pub format: u32,
    pub live: Option<Release>,
    pub pending: Option<Pending>,
    #[serde(default)]
    pub history: Vec<Event>,
}

fn format() -> u32 {
    FORMAT
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// An environment's lock, held until dropped (and released by the kernel
/// when the holder dies, even by `kill -9`).
#[derive(Debug)]
pub struct EnvironmentLock {
    _file: File,
    environment: String,
}

impl StateStore {
    /// The store in `dir` (created, mode 0700: it names what runs where).
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(StateStore {
            dir: dir.to_owned(),
        })
    }

    /// `$PIPELINE_STATE_DIR`, else `$XDG_STATE_HOME/pipeline`, else
    /// `~/.local/state/pipeline`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("PIPELINE_STATE_DIR") {
            return PathBuf::from(d);
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("pipeline")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, environment: &str) -> PathBuf {
        self.dir.join(format!("{environment}.json"))
    }

    /// Names become file names: only what the policy allows.
    fn check_name(environment: &str) -> Result<(), StateError> {
        let ok = !environment.is_empty()
            && environment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(StateError::BadName {
                given: environment.to_owned(),
            })
        }
    }

    /// Takes `environment`'s lock, or says who holds it.
    pub fn lock(&self, environment: &str) -> Result<EnvironmentLock, StateError> {
        Self::check_name(environment)?;
        let path = self.dir.join(format!("{environment}.lock"));
        let dir = |source| StateError::Dir {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(EnvironmentLock {
                _file: file,
                environment: environment.to_owned(),
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy {
                environment: environment.to_owned(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(dir(e)),
        }
    }

    /// An environment's state (empty when nothing was ever deployed).
    pub fn read(&self, environment: &str) -> Result<EnvironmentState, StateError> {
        Self::check_name(environment)?;
        let path = self.path(environment);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(EnvironmentState::default());
            }
            Err(source) => return Err(StateError::Dir { path, source }),
        };
        let state: EnvironmentState =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if state.format != FORMAT {
            return Err(StateError::Corrupt {
                path,
                message: format!(
                    "format {} is not {FORMAT}, which this version reads",
                    state.format
                ),
            });
        }
        Ok(state)
    }

    /// Changes an environment's state under its lock.
    pub fn update(
        &self,
        lock: &EnvironmentLock,
        change: impl FnOnce(&mut EnvironmentState),
    ) -> Result<EnvironmentState, StateError> {
        let mut state = self.read(&lock.environment)?;
        change(&mut state);
        state.format = FORMAT;
        let excess = state.history.len().saturating_sub(HISTORY_CAP);
        state.history.drain(..excess);
        let path = self.path(&lock.environment);
        let mut bytes = serde_json::to_vec_pretty(&state).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        crate::output::write_atomically(&path, &bytes).map_err(|e| StateError::Write {
            path,
            source: e.source,
        })?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            at: "2026-01-01T00:00:00Z".into(),
            kind,
            image: "r/a@sha256:1".into(),
            digest: "sha256:1".into(),
            commit: None,
            requested_by: Some("ana".into()),
            approved_by: vec![],
            reason: None,
            live_after: None,
        }
    }

    #[test]
    fn state_survives_a_round_trip_and_one_lock_at_a_time() {
        let dir = test_support::TempDir::new("release-state");
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.read("dev").unwrap(), EnvironmentState::default());
        let lock = store.lock("dev").unwrap();
        assert!(matches!(store.lock("dev"), Err(StateError::Busy { .. })));
        store.lock("demo").unwrap();
        store
            .update(&lock, |s| s.history.push(event(EventKind::Deployed)))
            .unwrap();
        assert_eq!(store.read("dev").unwrap().history.len(), 1);
        drop(lock);
        let lock = store.lock("dev").unwrap();
        for _ in 0..HISTORY_CAP + 5 {
            store
                .update(&lock, |s| s.history.push(event(EventKind::Refused)))
                .unwrap();
        }
        let s = store.read("dev").unwrap();
        assert_eq!(s.history.len(), HISTORY_CAP);
        assert_eq!(s.history.last().unwrap().kind, EventKind::Refused);
        assert!(matches!(
            store.read("../x"),
            Err(StateError::BadName { .. })
        ));
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_left_alone() {
        let dir = test_support::TempDir::new("release-state-corrupt");
        let store = StateStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("dev.json"), "{\"live\": 3}").unwrap();
        let e = store.read("dev").unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        let lock = store.lock("dev").unwrap();
        assert!(store.update(&lock, |_| {}).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dev.json")).unwrap(),
            "{\"live\": 3}"
        );
    }
}
