//! API keys and roles.
//!
//! A key reads `rk_<id>_<secret>`: the id (16 hex digits) finds the record,
//! the secret (32 random bytes, base64url) is checked against an Argon2id
//! hash. Keys are shown once, at creation, and never stored or logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
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
            CancelTenantRuns | ManageKeys => matches!(self, Admin),
            ApprovePromotion => matches!(self, ReleaseManager),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; roles are learner, developer, release-manager, admin")]
pub struct UnknownRole(pub String);

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
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The key's id, or `anonymous`.
    pub key_id: String,
    pub role: Role,
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
        }
    }

    pub fn actor(&self) -> String {
        if self.key_id == "anonymous" {
            "anonymous".to_owned()
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

/// The slow check: the secret against the record's Argon2id hash. Blocking
/// (tens of ms and 19 MiB): callers bound how many run at once.
pub fn verify_secret(secret: &str, record: &KeyRecord) -> Result<(), KeyRefusal> {
    argon2()
        .verify_password(secret.as_bytes(), record.secret_hash.as_str())
        .map_err(|_| KeyRefusal::WrongSecret)
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
}
