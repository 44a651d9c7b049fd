//! A uid of its own for every sandbox alive at once.
//!
//! Sandboxes share the host's user namespace, where the kernel counts some
//! limits per uid: inotify instances and watches, POSIX message-queue bytes
//! (RLIMIT_MSGQUEUE), queued signals (RLIMIT_SIGPENDING), pipe buffers,
//! processes (RLIMIT_NPROC). Under one uid, one tenant's run could exhaust
//! them for every other. So each sandbox runs as a uid (and the gid of the
//! same number) leased from the policy's range, and gives it back when its
//! container is gone.
//!
//! Leases are lock files: `uid-<n>.lock` in a runtime directory, held with
//! `flock`. Why lock files, and not a label on the container checked against
//! the engine's list:
//! - taking one is atomic: two runner processes of one host (a `runner serve`
//!   and a `runner exec`) can never both hold a uid, where "list, then create"
//!   leaves a window between the two;
//! - the kernel releases the lock when its process dies, however it dies, so
//!   a crashed runner leaks no uid (its containers' processes are gone within
//!   a stage's wall-time limit: sandbox-init stops when its host does);
//! - no engine round trip per sandbox, and nothing engine-specific: a
//!   Kubernetes backend can lease `runAsUser` the same way.
//!
//! The directory must be the same for every runner of the host:
//! `RUNNER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/runner`, else
//! `/tmp/runner-<uid>`. It must be a directory of this user's, private to it.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{FlockOperation, Mode, OFlags};

/// Ids a range may never reach: 65534 is `nobody`/`nogroup`, and a
/// user-namespace-remapped engine maps only 65536 ids per container.
pub const MAX_SANDBOX_UID: u32 = 65_533;

/// Uids sandboxes run as, each also its gid: `first ..= first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

impl UidRange {
    /// The range, when it stays clear of root and system users (`first` at
    /// least `min`) and of `nobody`; otherwise why not.
    pub fn new(first: u32, count: u32, min: u32) -> Result<UidRange, UidRangeError> {
        if count == 0 {
            return Err(UidRangeError::Empty);
        }
        if first < min {
            return Err(UidRangeError::TooLow { first, min });
        }
        match first.checked_add(count - 1) {
            Some(last) if last <= MAX_SANDBOX_UID => Ok(UidRange { first, count }),
            _ => Err(UidRangeError::TooHigh { first, count }),
        }
    }

    pub fn last(&self) -> u32 {
        self.first + (self.count - 1)
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last()).contains(&uid)
    }
}

/// Why a configured uid range is refused; the policy's error names the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UidRangeError {
    #[error("count is 0; give at least 1 (one sandbox at a time)")]
    Empty,
    #[error(
        "first is {first}; sandboxes never run as root or a system user: start at {min} or more"
    )]
    TooLow { first: u32, min: u32 },
    #[error(
        "{first} + {count} goes past {MAX_SANDBOX_UID}; the range must stay below 65534 (nobody)"
    )]
    TooHigh { first: u32, count: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("cannot use {dir} for sandbox uid leases: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{dir} is not a private directory of this user's (owner {owner}, mode {mode:o}); sandbox uid leases need one: set RUNNER_RUNTIME_DIR"
    )]
    Unsafe { dir: PathBuf, owner: u32, mode: u32 },
    #[error(
        "all {count} sandbox uids ({first}-{last}) are in use on this host; raise [container] uids.count in the sandbox policy, or run fewer sandboxes at once"
    )]
    Exhausted { first: u32, last: u32, count: u32 },
    #[error("cannot lease sandbox uid {uid} ({path}): {source}")]
    Lock {
        uid: u32,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Hands out uids of a range, one holder at a time across the host.
#[derive(Debug)]
pub struct UidAllocator {
    range: UidRange,
    dir: PathBuf,
    /// Where the next search starts: leases rotate through the range, so a
    /// uid just given back is the last to be taken again.
    next: AtomicU32,
    ready: OnceLock<()>,
}

/// A uid held for one sandbox; given back when dropped (and by the kernel
/// if the process dies).
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    _lock: std::os::fd::OwnedFd,
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The gid of the same number: each sandbox's group is its own too.
    pub fn gid(&self) -> u32 {
        self.uid
    }

    /// `uid:gid`, as engines take it.
    pub fn user(&self) -> String {
        format!("{}:{}", self.uid(), self.gid())
    }
}

impl UidAllocator {
    /// Leases from `range`, coordinated through lock files in `dir` (made on
    /// first use).
    pub fn new(range: UidRange, dir: PathBuf) -> UidAllocator {
        UidAllocator {
            range,
            dir,
            next: AtomicU32::new(0),
            ready: OnceLock::new(),
        }
    }

    /// The directory every runner of this host uses (see the module docs).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("RUNNER_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("runner");
        }
        std::env::temp_dir().join(format!("runner-{}", own_uid().unwrap_or(0)))
    }

    pub fn range(&self) -> UidRange {
        self.range
    }

    /// A uid no other sandbox of this host holds.
    pub fn lease(&self) -> Result<UidLease, UidError> {
        self.ensure_dir()?;
        let count = self.range.count;
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        for i in 0..count {
            let uid = self.range.first + (start + i) % count;
            if let Some(lease) = self.try_lease(uid)? {
                self.next
                    .store((uid - self.range.first + 1) % count, Ordering::Relaxed);
                return Ok(lease);
            }
        }
        Err(UidError::Exhausted {
            first: self.range.first,
            last: self.range.last(),
            count,
        })
    }

    fn try_lease(&self, uid: u32) -> Result<Option<UidLease>, UidError> {
        let path = self.dir.join(format!("uid-{uid}.lock"));
        let lock_err = |e: rustix::io::Errno| UidError::Lock {
            uid,
            path: path.clone(),
            source: e.into(),
        };
        let fd = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(lock_err)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(UidLease { uid, _lock: fd })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(lock_err(e)),
        }
    }

    /// Makes the directory, or checks the one there: a directory (not a
    /// link), owned by this user, closed to others, so no one else can hold
    /// or fake leases.
    fn ensure_dir(&self) -> Result<(), UidError> {
        if self.ready.get().is_some() {
            return Ok(());
        }
        let dir_err = |source| UidError::Dir {
            dir: self.dir.clone(),
            source,
        };
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(dir_err(e)),
        }
        let meta = std::fs::symlink_metadata(&self.dir).map_err(dir_err)?;
        let me = own_uid().map_err(dir_err)?;
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_dir() || meta.uid() != me || mode & 0o077 != 0 {
            return Err(UidError::Unsafe {
                dir: self.dir.clone(),
                owner: meta.uid(),
                mode,
            });
        }
        let _ = self.ready.set(());
        Ok(())
    }
}

/// This process's uid (the owner of its /proc entry), without libc.
fn own_uid() -> std::io::Result<u32> {
    Ok(std::fs::metadata(Path::new("/proc/self"))?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "runner-uids-{name}-{}",
            crate::sandbox::new_job_id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ranges_stay_clear_of_root_system_users_and_nobody() {
        assert!(UidRange::new(10_001, 4096, 10_000).is_ok());
        assert!(
            UidRange::new(0, 10, 10_000)
                .unwrap_err()
                .to_string()
                .contains("root")
        );
        assert!(UidRange::new(9_999, 10, 10_000).is_err());
        assert!(UidRange::new(10_001, 0, 10_000).is_err());
        assert!(
            UidRange::new(65_000, 600, 10_000)
                .unwrap_err()
                .to_string()
                .contains("65534")
        );
        assert!(
            UidRange::new(u32::MAX - 1, 10, 10_000).is_err(),
            "no wrap to 0"
        );
        let r = UidRange::new(10_001, 3, 10_000).unwrap();
        assert_eq!(r.last(), 10_003);
        assert!(r.contains(10_003) && !r.contains(10_004));
    }

    #[test]
    fn leases_are_distinct_and_given_back_on_drop() {
        let d = dir("distinct");
        let a = UidAllocator::new(UidRange::new(20_000, 3, 10_000).unwrap(), d.clone());
        let l1 = a.lease().unwrap();
        let l2 = a.lease().unwrap();
        let l3 = a.lease().unwrap();
        let mut uids = vec![l1.uid(), l2.uid(), l3.uid()];
        uids.sort();
        assert_eq!(uids, [20_000, 20_001, 20_002]);
        assert_eq!(l1.gid(), l1.uid());
        assert_eq!(l1.user(), format!("{0}:{0}", l1.uid()));
        let err = a.lease().unwrap_err();
        assert!(matches!(err, UidError::Exhausted { count: 3, .. }), "{err}");
        assert!(err.to_string().contains("uids.count"), "{err}");
        let freed = l2.uid();
        drop(l2);
        assert_eq!(a.lease().unwrap().uid(), freed);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Two allocators on one directory behave as two runner processes of a
    /// host: `flock` locks belong to open files, not to processes.
    #[test]
    fn two_allocators_sharing_a_directory_never_hand_out_the_same_uid() {
        let d = dir("shared");
        let range = UidRange::new(20_000, 8, 10_000).unwrap();
        let serve = UidAllocator::new(range, d.clone());
        let exec = UidAllocator::new(range, d.clone());
        let mut held = Vec::new();
        for i in 0..8 {
            let a = if i % 2 == 0 { &serve } else { &exec };
            held.push(a.lease().unwrap());
        }
        let mut uids: Vec<u32> = held.iter().map(UidLease::uid).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 8);
        assert!(exec.lease().is_err() && serve.lease().is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let d = dir("unsafe");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let a = UidAllocator::new(UidRange::new(20_000, 1, 10_000).unwrap(), d.clone());
        let err = a.lease().unwrap_err();
        assert!(matches!(err, UidError::Unsafe { .. }), "{err}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
