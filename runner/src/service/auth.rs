//! API keys and roles.
//!
//! A key reads `rk_<id>_<secret>`: the id (16 hex digits) finds the record,
//! the secret (32 random bytes, base64url) is checked against an Argon2id
//! hash. Keys are shown once, at creation, and never stored or logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{KeyRecord, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Learner,
    Developer,
    ReleaseManager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Learner,
        Role::Developer,
        Role::ReleaseManager,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Learner => "learner",
            Role::Developer => "developer",
            Role::ReleaseManager => "release-manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }

    /// The permission table. Roles build on each other, except that
    /// approving promotions is kept from admins (separation of duties: who
    /// manages keys does not also approve releases).
    pub fn can(self, action: Action) -> bool {
        use Action::*;
        use Role::*;
        match action {
            SubmitRun | ReadOwnRuns | CancelOwnRuns | ListLanguages => true,
            ReadTenantRuns => matches!(self, Developer | ReleaseManager | Admin),
            CancelTenantRuns | ManageKeys | ManageRepos => matches!(self, Admin),
            ApprovePromotion => matches!(self, ReleaseManager),
            RequestPromotion | ReadReleases => matches!(self, Developer | ReleaseManager | Admin),
            ReadWorkflows | TriggerWorkflows | CancelWorkflows => {
                matches!(self, Developer | ReleaseManager | Admin)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; roles are learner, developer, release-manager, admin")]
pub struct UnknownRole(pub String);

/// Why a key's release-environment scope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environments: {0}")]
pub struct InvalidScope(pub String);

/// Checks the release environments a key is scoped to: only approvers'
/// keys (`release-manager`) carry a scope, of 1 to 16 environment names
/// (lowercase letters, digits and `-`, starting with a letter, at most 32
/// characters, as the environments policy writes them).
pub fn check_scope(role: Role, environments: &[String]) -> Result<(), InvalidScope> {
    if role != Role::ReleaseManager {
        return Err(InvalidScope(format!(
            "only release-manager keys are scoped to environments (this key is {})",
            role.as_str()
        )));
    }
    if environments.is_empty() || environments.len() > 16 {
        return Err(InvalidScope(
            "list 1 to 16 environments, or leave the field out for every environment".into(),
        ));
    }
    for e in environments {
        let ok = e.len() <= 32
            && e.starts_with(|c: char| c.is_ascii_lowercase())
            && e.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(InvalidScope(format!(
                "{:?} is not an environment name (lowercase letters, digits and `-`, starting with a letter, at most 32 characters)",
                e.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SubmitRun,
    ReadOwnRuns,
    ReadTenantRuns,
    CancelOwnRuns,
    CancelTenantRuns,
    ListLanguages,
    ManageKeys,
    ApprovePromotion,
    /// Ask for an image to be promoted into an environment.
    RequestPromotion,
    /// See environments and promotions.
    ReadReleases,
    /// Register repositories, set their secrets.
    ManageRepos,
    ReadWorkflows,
    /// Start a workflow run of a registered repository by hand.
    TriggerWorkflows,
    CancelWorkflows,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The key's id, or `anonymous`.
    pub key_id: String,
    pub role: Role,
    /// The release environments this principal may approve for (`None`:
    /// all its role may approve); see [`check_scope`].
    pub environments: Option<Vec<String>>,
}

impl Principal {
    /// Who requests without a key act as, when the operator names a tenant
    /// for anonymous Piston access: that tenant's learner.
    pub fn anonymous(tenant: super::store::Tenant) -> Principal {
        Principal {
            tenant: tenant.id,
            tenant_name: tenant.name,
            key_id: "anonymous".into(),
            role: Role::Learner,
            environments: None,
        }
    }

    pub fn actor(&self) -> String {
        if self.key_id == "anonymous" || self.key_id.starts_with("user:") {
            // People signed in on the web pages are `user:<subject>`.
            self.key_id.clone()
        } else {
            format!("key:{}", self.key_id)
        }
    }
}

/// A freshly minted key: the full text is shown to the user once.
#[derive(Debug)]
pub struct NewKeyText {
    pub id: String,
    pub text: String,
    pub secret_hash: String,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes): slow enough
/// to make a stolen database costly, fast enough (tens of ms) per first use;
/// verified keys are then cached in memory by a fast hash.
fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

pub fn mint_key() -> NewKeyText {
    let id: String = random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let secret_hash = argon2()
        .hash_password(secret.as_bytes())
        .expect("hashing a key secret")
        .to_string();
    NewKeyText {
        text: format!("rk_{id}_{secret}"),
        id,
        secret_hash,
    }
}

/// Splits a presented key into (id, secret), or `None` if it is not one.
pub fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("rk_")?;
    let (id, secret) = rest.split_at_checked(16)?;
    let secret = secret.strip_prefix('_')?;
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some((id, secret))
}

/// Why a key was refused (for the audit log; clients only learn "invalid").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Malformed,
    Unknown,
    Revoked,
    WrongSecret,
    BadRecord,
}

impl KeyRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRefusal::Malformed => "malformed key",
            KeyRefusal::Unknown => "unknown key id",
            KeyRefusal::Revoked => "revoked key",
            KeyRefusal::WrongSecret => "wrong secret",
            KeyRefusal::BadRecord => "unreadable key record",
        }
    }
}

/// A few dedicated threads for the slow key hash (Argon2id, 19 MiB each
/// time). At most `threads` hashes run at once, each on a thread of its own
/// that keeps reusing its memory: the process's memory stays bounded however
/// many requests present keys at once. Others wait their turn up to `wait`.
#[derive(Debug)]
pub struct HashPool {
    permits: Arc<tokio::sync::Semaphore>,
    jobs: std::sync::mpsc::SyncSender<Job>,
    wait: Duration,
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a hash did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashPoolError {
    #[error("every key hash thread stayed busy for {} ms", .0.as_millis())]
    Busy(Duration),
    #[error("a key hash thread stopped")]
    Stopped,
}

impl HashPool {
    pub fn new(threads: usize, wait: Duration) -> HashPool {
        let threads = threads.max(1);
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            // The threads end when the pool (the sender) is dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("key-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a key hash thread");
            }
        }
        HashPool {
            permits: Arc::new(tokio::sync::Semaphore::new(threads)),
            jobs,
            wait,
        }
    }

    /// Runs `f` on a hash thread when one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashPoolError> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| HashPoolError::Busy(self.wait))?
            .map_err(|_| HashPoolError::Stopped)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
            drop(permit);
        });
        // A permit per thread: the channel always has room.
        self.jobs
            .try_send(job)
            .map_err(|_| HashPoolError::Stopped)?;
        rx.await.map_err(|_| HashPoolError::Stopped)
    }
}

/// Remembers, briefly, keys whose secret was verified, by a SHA-256 of the
/// presented key and its stored hash, so the slow hash runs once per key
/// and TTL. Revocation is still seen at once: the record is read on every
/// request, and a revoked record is refused before this cache is asked.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

fn fingerprint(text: &str, record: &KeyRecord) -> [u8; 32] {
    Sha256::digest(format!("{text}\0{}", record.secret_hash)).into()
}

/// A record's role, unless it may not authenticate at all.
pub fn usable_role(record: &KeyRecord) -> Result<Role, KeyRefusal> {
    if record.revoked_at.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    Role::parse(&record.role).map_err(|_| KeyRefusal::BadRecord)
}

/// The slow check: the secret against the record's Argon2id hash, in
/// constant time. Blocking (tens of ms): run it on a [`HashPool`]. Each
/// thread keeps one buffer for Argon2's memory (19 MiB) and reuses it, so
/// the memory of verification is bounded by the number of threads.
pub fn verify_secret(secret: &str, record: &KeyRecord) -> Result<(), KeyRefusal> {
    use argon2::password_hash::phc::Output;
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    fn bad<E>(_: E) -> KeyRefusal {
        KeyRefusal::BadRecord
    }
    let hash = argon2::PasswordHash::new(&record.secret_hash).map_err(bad)?;
    let params = argon2::Params::try_from(&hash).map_err(bad)?;
    let algorithm = argon2::Algorithm::try_from(hash.algorithm.as_str()).map_err(bad)?;
    let version = match hash.version {
        Some(v) => argon2::Version::try_from(v).map_err(|_| KeyRefusal::BadRecord)?,
        None => argon2::Version::default(),
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(KeyRefusal::BadRecord);
    };
    let mut buf = [0u8; Output::MAX_LENGTH];
    let out = buf.get_mut(..expected.len()).ok_or(KeyRefusal::BadRecord)?;
    let blocks = params.block_count();
    let hasher = argon2::Argon2::new(algorithm, version, params);
    BLOCKS
        .with_borrow_mut(|memory| {
            memory.resize(blocks, argon2::Block::default());
            hasher.hash_password_into_with_memory(
                secret.as_bytes(),
                salt.as_ref(),
                out,
                &mut memory[..],
            )
        })
        .map_err(|_| KeyRefusal::BadRecord)?;
    if Output::new(out).map_err(bad)? == *expected {
        Ok(())
    } else {
        Err(KeyRefusal::WrongSecret)
    }
}

impl VerifiedCache {
    /// Whether `text` was verified against this record within the TTL.
    pub fn contains(&self, text: &str, record: &KeyRecord) -> bool {
        let now = Instant::now();
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(&fingerprint(text, record))
            .is_some_and(|t| now.duration_since(*t) < CACHE_TTL)
    }

    pub fn remember(&self, text: &str, record: &KeyRecord) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, t| now.duration_since(*t) < CACHE_TTL);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(fingerprint(text, record), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let k = mint_key();
        let (id, secret) = parse_key(&k.text).unwrap();
        let record = KeyRecord {
            id: id.to_owned(),
            tenant: crate::service::store::TenantId::for_tests("t"),
            tenant_name: "t".into(),
            role: "learner".into(),
            secret_hash: k.secret_hash.clone(),
            label: String::new(),
            created_by: "test".into(),
            created_at: 0,
            revoked_at: None,
            environments: None,
        };
        assert_eq!(verify_secret(secret, &record), Ok(()));
        // Another last character (the secret may end in `A` itself).
        let last = if secret.ends_with('A') { 'B' } else { 'A' };
        let wrong = format!("{}{last}", &secret[..secret.len() - 1]);
        assert_eq!(verify_secret(&wrong, &record), Err(KeyRefusal::WrongSecret));
        let broken = KeyRecord {
            secret_hash: "$argon2id$nonsense".into(),
            ..record
        };
        assert_eq!(verify_secret(secret, &broken), Err(KeyRefusal::BadRecord));
    }

    #[test]
    fn minted_keys_parse_and_verify() {
        let k = mint_key();
        let (id, secret) = parse_key(&k.text).unwrap();
        assert_eq!(id, k.id);
        assert!(
            !k.secret_hash.contains(secret),
            "the hash does not contain the secret"
        );
        assert!(k.secret_hash.starts_with("$argon2id$"));
        assert!(
            argon2()
                .verify_password(secret.as_bytes(), k.secret_hash.as_str())
                .is_ok()
        );
        assert!(
            argon2()
                .verify_password(b"nope", k.secret_hash.as_str())
                .is_err()
        );
        assert_ne!(mint_key().text, k.text);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "rk_",
            "rk_0123456789abcdef",
            "xx_0123456789abcdef_",
            "rk_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "rk_0123456789abcdef_short",
            "Bearer rk_...",
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_so_many_hashes_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashPool::new(2, Duration::from_secs(30)));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let names = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (pool, now, peak, names) = (
                Arc::clone(&pool),
                Arc::clone(&now),
                Arc::clone(&peak),
                Arc::clone(&names),
            );
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    let name = std::thread::current().name().map(str::to_owned);
                    names.lock().unwrap().insert(name);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(
            names.lock().unwrap().len(),
            2,
            "the same two threads, always"
        );
        let busy = HashPool::new(1, Duration::from_millis(50));
        let slow = busy.run(|| std::thread::sleep(Duration::from_millis(500)));
        let late = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            busy.run(|| ()).await
        };
        let (_, late) = tokio::join!(slow, late);
        assert!(matches!(late, Err(HashPoolError::Busy(_))));
    }

    #[test]
    fn permission_table() {
        use Action::*;
        let learner = Role::Learner;
        assert!(learner.can(SubmitRun) && learner.can(ReadOwnRuns));
        assert!(!learner.can(ReadTenantRuns) && !learner.can(ManageKeys));
        assert!(Role::Developer.can(ReadTenantRuns) && !Role::Developer.can(ManageKeys));
        assert!(
            Role::ReleaseManager.can(ApprovePromotion) && !Role::ReleaseManager.can(ManageKeys)
        );
        assert!(Role::Admin.can(ManageKeys) && Role::Admin.can(CancelTenantRuns));
        assert!(!Role::Admin.can(ApprovePromotion), "separation of duties");
        assert_eq!(Role::parse("release-manager"), Ok(Role::ReleaseManager));
        assert!(Role::parse("root").is_err());
    }

    fn record(hash: &str) -> KeyRecord {
        KeyRecord {
            id: "k1".into(),
            tenant: crate::service::store::TenantId::for_tests("t"),
            tenant_name: "t".into(),
            role: "learner".into(),
            secret_hash: hash.into(),
            label: String::new(),
            created_by: "test".into(),
            created_at: 0,
            revoked_at: None,
            environments: None,
        }
    }

    #[test]
    fn the_verified_cache_remembers_a_key_for_its_record_and_ttl_only() {
        let cache = VerifiedCache::default();
        let r = record("$argon2id$one");
        assert!(!cache.contains("rk_a_secret", &r));
        cache.remember("rk_a_secret", &r);
        assert!(cache.contains("rk_a_secret", &r));
        // Another text, or the same text against a record whose hash
        // changed (the key was re-minted), is not a hit.
        assert!(!cache.contains("rk_a_secreT", &r));
        assert!(!cache.contains("rk_a_secret", &record("$argon2id$two")));
        // An entry older than the TTL is not a hit.
        if let Some(old) = Instant::now().checked_sub(CACHE_TTL + Duration::from_secs(1)) {
            cache
                .entries
                .lock()
                .unwrap()
                .insert(fingerprint("rk_a_secret", &r), old);
            assert!(!cache.contains("rk_a_secret", &r));
        }
    }

    #[test]
    fn the_verified_cache_stays_bounded() {
        let cache = VerifiedCache::default();
        let r = record("$argon2id$one");
        for i in 0..CACHE_MAX + 10 {
            cache.remember(&format!("rk_{i}"), &r);
        }
        assert!(cache.entries.lock().unwrap().len() <= CACHE_MAX);
        assert!(cache.contains(&format!("rk_{}", CACHE_MAX + 9), &r));
    }
}
