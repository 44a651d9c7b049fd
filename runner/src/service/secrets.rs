//! Secrets at rest: repositories' webhook secrets and their jobs' secrets
//! are sealed (XSalsa20-Poly1305, a random 24-byte nonce each) with a key
//! the operator gives (`RUNNER_SECRETS_KEY`, 32 bytes in base64, or a key
//! file), never stored in the database beside them. Values are never
//! returned by the API, logged, or put in errors.

use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};

/// The environment variable holding the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "RUNNER_SECRETS_KEY";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "the secrets key is not 32 bytes of base64 ({where_}); make one with `head -c 32 /dev/urandom | base64`"
    )]
    BadKey { where_: String },
    #[error("cannot read the secrets key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the secrets key file {path} is readable by others (mode {mode:o}); make it readable by the runner only: chmod 600 {path}"
    )]
    KeyFileMode { path: String, mode: u32 },
    #[error(
        "a sealed secret cannot be opened with this key (another key, or the database was altered)"
    )]
    Open,
    #[error(
        "this runner's secrets key is not the one the database's {sealed} sealed secrets were sealed with; give every runner on this database the same key (RUNNER_SECRETS_KEY or the same secrets_key_file), or restore the lost key file"
    )]
    KeyMismatch { sealed: i64 },
}

/// What the key check seals: a known text, opened at every start.
const KEY_CHECK_TEXT: &[u8] = b"runner secrets key check v1";
const KEY_CHECK_NAME: &str = "secrets";

/// Refuses a key that is not the one the database's secrets were sealed
/// with: several runners each with a key of its own (each would create
/// one beside itself), or a lost key file, would otherwise surface only
/// when a job's secrets fail to open. The first runner records the check;
/// a database holding no sealed secret takes the new key's check instead.
pub fn check_key(
    store: &crate::service::store::Store,
    key: &SecretBox,
) -> Result<(), crate::service::store::StoreError> {
    let sealed = key.seal(KEY_CHECK_TEXT);
    let recorded = store.key_check(KEY_CHECK_NAME, &sealed)?;
    if key.open(&recorded).is_ok_and(|text| text == KEY_CHECK_TEXT) {
        return Ok(());
    }
    match store.sealed_secrets()? {
        0 => {
            tracing::warn!(
                "the secrets key differs from the one recorded, and no secret is sealed yet: recording this one"
            );
            store.replace_key_check(KEY_CHECK_NAME, &sealed)
        }
        n => Err(SecretsError::KeyMismatch { sealed: n }.into()),
    }
}

/// Seals and opens secrets. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XSalsa20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: XSalsa20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// The key from base64 text.
    pub fn from_base64(text: &str, where_: &str) -> Result<SecretBox, SecretsError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| SecretsError::BadKey {
                where_: where_.to_owned(),
            })?;
        Ok(Self::from_key(&bytes))
    }

    /// The key from a file only its owner may read.
    pub fn from_file(path: &Path) -> Result<SecretBox, SecretsError> {
        use std::os::unix::fs::PermissionsExt as _;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SecretsError::KeyFile {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::KeyFileMode { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::KeyFile {
            path: shown.clone(),
            source,
        })?;
        Self::from_base64(&text, &shown)
    }

    /// A fresh random key, in base64 (for a new key file).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source is available");
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source is available");
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SecretsError::Open)
    }
}

/// The server's key: `RUNNER_SECRETS_KEY`, else the key file, which is
/// created (readable by this user only) on first start.
pub fn load_key(file: &Path) -> Result<SecretBox, SecretsError> {
    if let Ok(text) = std::env::var(KEY_ENV) {
        return SecretBox::from_base64(&text, KEY_ENV);
    }
    if !file.exists() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .and_then(|mut f| f.write_all(SecretBox::generate_key().as_bytes()));
        match created {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                "created a key for secrets at rest beside the database; keep a copy elsewhere, or give one in RUNNER_SECRETS_KEY"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(SecretsError::KeyFile {
                    path: file.display().to_string(),
                    source,
                });
            }
        }
    }
    SecretBox::from_file(file)
}

/// Secret names: what workflow expressions can name (`secrets.NAME`).
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_key_only() {
        let a = SecretBox::from_key(&[7; 32]);
        let sealed = a.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(a.open(&sealed).unwrap(), b"hunter2");
        assert_ne!(a.seal(b"hunter2"), sealed, "a fresh nonce each time");
        let b = SecretBox::from_key(&[8; 32]);
        assert!(matches!(b.open(&sealed), Err(SecretsError::Open)));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(a.open(&tampered).is_err());
        assert!(format!("{a:?}").contains(".."));
    }

    #[test]
    fn a_runner_with_another_key_is_refused_once_secrets_are_sealed() {
        use crate::service::store::{NewAuditEntry, Store, StoreError, repos::NewRepo};
        let store = Store::in_memory().unwrap();
        let (a, b) = (SecretBox::from_key(&[7; 32]), SecretBox::from_key(&[8; 32]));
        check_key(&store, &a).unwrap();
        check_key(&store, &a).unwrap();
        // Nothing sealed yet: the other key's check replaces the first.
        check_key(&store, &b).unwrap();
        check_key(&store, &a).unwrap();
        let tenant = store.create_tenant("t").unwrap().id;
        let branches = ["main".to_owned()];
        let repo = NewRepo {
            name: "app",
            url: "https://example.com/app.git",
            branches: &branches,
            secrets_allowed: &[],
            egress: None,
            created_by: "test",
        };
        let audit = NewAuditEntry {
            actor: "test".into(),
            tenant: None,
            action: "repo.create".into(),
            target: None,
            detail: None,
        };
        store
            .repos(&tenant)
            .create(&repo, b"hook-secret", &a, &audit)
            .unwrap();
        let err = check_key(&store, &b).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Secrets(SecretsError::KeyMismatch { sealed: 1 })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("same key"), "{err}");
        check_key(&store, &a).unwrap();
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(SecretBox::from_base64(&SecretBox::generate_key(), "t").is_ok());
        assert!(SecretBox::from_base64("short", "t").is_err());
    }

    #[test]
    fn key_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("runner-key-{}", crate::sandbox::new_job_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        std::fs::write(&p, SecretBox::generate_key()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretBox::from_file(&p),
            Err(SecretsError::KeyFileMode { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SecretBox::from_file(&p).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_names_are_what_expressions_can_name() {
        assert!(valid_secret_name("DEPLOY_TOKEN"));
        assert!(valid_secret_name("npm_token2"));
        for bad in ["", "2FA", "A-B", "GITHUB_TOKEN", "a b", &"A".repeat(101)] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
    }
}
