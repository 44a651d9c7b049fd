//! Key pairs in cosign's format.
//!
//! Private key: PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign wrote
//! `ENCRYPTED COSIGN PRIVATE KEY`; both are read) whose body is JSON:
//! `{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
//!   "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"}`, the
//! ciphertext being the PKCS#8 DER of an ECDSA P-256 key, sealed with the
//! 32-byte scrypt key of the password. Public key: PEM `PUBLIC KEY` (SPKI).

use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variable holding the private key's password, as cosign reads it.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";
const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const OLD_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// scrypt parameters cosign writes today (N = 2^16, r = 8, p = 1).
const LOG_N: u8 = 16;
/// Largest N accepted when reading: a key file must not make us spend
/// gigabytes of memory.
const MAX_LOG_N: u8 = 20;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a cosign private key: {message}")]
    Format { path: String, message: String },
    #[error("cannot decrypt {path}: wrong password (set {PASSWORD_ENV})")]
    Password { path: String },
    #[error("{path} is not a PEM public key (ECDSA P-256): {message}")]
    Public { path: String, message: String },
    #[error(
        "{PASSWORD_ENV} is not set; set it to the key's password (it may be empty: COSIGN_PASSWORD=)"
    )]
    NoPassword,
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} exists; remove it or pass --force")]
    Exists { path: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)] // cosign's JSON names the scrypt cost `N`
struct ScryptParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The password from `COSIGN_PASSWORD` (set, possibly empty).
pub fn password_from_env() -> Result<String, KeyError> {
    std::env::var(PASSWORD_ENV).map_err(|_| KeyError::NoPassword)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

/// scrypt parameters the scrypt crate refuses.
#[derive(Debug, thiserror::Error)]
#[error("its scrypt parameters (log2 N = {log_n}, r = {r}, p = {p}) are invalid")]
struct BadScryptParams {
    log_n: u8,
    r: u32,
    p: u32,
}

fn derive(
    password: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<[u8; 32], BadScryptParams> {
    let bad = || BadScryptParams { log_n, r, p };
    let params = scrypt::Params::new(log_n, r, p).map_err(|_| bad())?;
    let mut key = [0u8; 32];
    // The output length is fixed at 32, which scrypt always accepts.
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut key).map_err(|_| bad())?;
    Ok(key)
}

/// A fresh P-256 key.
pub fn generate() -> SigningKey {
    loop {
        // A random scalar is out of range with negligible probability.
        if let Ok(k) = SigningKey::from_slice(&random::<32>()) {
            return k;
        }
    }
}

/// The encrypted PEM of a private key, as cosign writes it.
pub fn encrypt(key: &SigningKey, password: &str) -> String {
    encrypt_with(key, password, LOG_N, LABEL)
}

fn encrypt_with(key: &SigningKey, password: &str, log_n: u8, label: &str) -> String {
    let der = key.to_pkcs8_der().expect("encoding a P-256 key as PKCS#8");
    let salt = random::<32>();
    let nonce = random::<24>();
    let secret = derive(password, &salt, log_n, 8, 1).expect("valid scrypt parameters");
    let box_ = XSalsa20Poly1305::new(Key::from_slice(&secret));
    let ciphertext = box_
        .encrypt(Nonce::from_slice(&nonce), der.as_bytes())
        .expect("sealing a key");
    let b64 = base64::engine::general_purpose::STANDARD;
    let sealed = Sealed {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                N: 1 << log_n,
                r: 8,
                p: 1,
            },
            salt: b64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: b64.encode(nonce),
        },
        ciphertext: b64.encode(ciphertext),
    };
    pem(
        label,
        &serde_json::to_vec(&sealed).expect("serializing JSON"),
    )
}

fn pem(label: &str, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Text that is not a PEM document.
#[derive(Debug, thiserror::Error)]
enum PemError {
    #[error("no PEM BEGIN line")]
    NoBegin,
    #[error("a malformed BEGIN line")]
    MalformedBegin,
    #[error("no END line for {label}")]
    NoEnd { label: String },
    #[error("the PEM body is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// The label and decoded body of a PEM document.
fn unpem(text: &str) -> Result<(String, Vec<u8>), PemError> {
    let begin = text.find("-----BEGIN ").ok_or(PemError::NoBegin)?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or(PemError::MalformedBegin)?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = rest.find(&end_marker).ok_or_else(|| PemError::NoEnd {
        label: label.clone(),
    })?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let body = base64::engine::general_purpose::STANDARD.decode(b64)?;
    Ok((label, body))
}

/// Reads an encrypted cosign private key.
pub fn decrypt(text: &str, password: &str, origin: &str) -> Result<SigningKey, KeyError> {
    let format = |message: String| KeyError::Format {
        path: origin.to_owned(),
        message,
    };
    let (label, body) = unpem(text).map_err(|e| format(e.to_string()))?;
    if label != LABEL && label != OLD_LABEL {
        return Err(format(format!(
            "its PEM label is {label:?}, not {LABEL:?} or {OLD_LABEL:?}"
        )));
    }
    let sealed: Sealed = serde_json::from_slice(&body)
        .map_err(|e| format(format!("its body is not cosign's JSON: {e}")))?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        return Err(format(format!(
            "it uses {} with {}; only scrypt with nacl/secretbox is known",
            sealed.kdf.name, sealed.cipher.name
        )));
    }
    let n = sealed.kdf.params.N;
    if !n.is_power_of_two()
        || n < 2
        || n.trailing_zeros() > u32::from(MAX_LOG_N)
        || sealed.kdf.params.r == 0
        || sealed.kdf.params.r > 32
        || sealed.kdf.params.p == 0
        || sealed.kdf.params.p > 16
    {
        return Err(format(format!(
            "its scrypt parameters N={n}, r={}, p={} are out of range",
            sealed.kdf.params.r, sealed.kdf.params.p
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64
        .decode(&sealed.kdf.salt)
        .map_err(|e| format(format!("salt: {e}")))?;
    let nonce = b64
        .decode(&sealed.cipher.nonce)
        .map_err(|e| format(format!("nonce: {e}")))?;
    if nonce.len() != 24 {
        return Err(format(format!(
            "its nonce is {} bytes, not 24",
            nonce.len()
        )));
    }
    let ciphertext = b64
        .decode(&sealed.ciphertext)
        .map_err(|e| format(format!("ciphertext: {e}")))?;
    let secret = derive(
        password,
        &salt,
        n.trailing_zeros() as u8,
        sealed.kdf.params.r,
        sealed.kdf.params.p,
    )
    .map_err(|e| format(e.to_string()))?;
    let der = XSalsa20Poly1305::new(Key::from_slice(&secret))
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| KeyError::Password {
            path: origin.to_owned(),
        })?;
    SigningKey::from_pkcs8_der(&der)
        .map_err(|e| format(format!("the decrypted key is not a PKCS#8 P-256 key: {e}")))
}

pub fn read_private(path: &Path, password: &str) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    decrypt(&text, password, &path.display().to_string())
}

pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("encoding a P-256 public key")
}

pub fn parse_public(text: &str, origin: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| KeyError::Public {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_public(&text, &path.display().to_string())
}

/// A short id of a public key: SHA-256 of its DER, hex. Recorded next to
/// signatures so a failure can tell "another key" from "tampered".
pub fn key_id(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("encoding a P-256 public key");
    crate::digest::hex(&Sha256::digest(der.as_bytes()))
}

/// Writes `PREFIX.key` (mode 0600) and `PREFIX.pub`.
pub fn write_pair(
    prefix: &Path,
    key: &SigningKey,
    password: &str,
    force: bool,
) -> Result<(std::path::PathBuf, std::path::PathBuf), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let private = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for p in [&private, &public] {
        if p.exists() && !force {
            return Err(KeyError::Exists {
                path: p.display().to_string(),
            });
        }
    }
    let write = |path: &Path, text: &str, mode: u32| -> Result<(), KeyError> {
        let err = |source| KeyError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)
    };
    write(&private, &encrypt(key, password), 0o600)?;
    write(&public, &public_pem(key.verifying_key()), 0o644)?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_cosigns_format() {
        let k = generate();
        let pem = encrypt(&k, "s3cret");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = decrypt(&pem, "s3cret", "t").unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        assert!(matches!(
            decrypt(&pem, "wrong", "t"),
            Err(KeyError::Password { .. })
        ));
        let public = public_pem(k.verifying_key());
        assert_eq!(parse_public(&public, "t").unwrap(), *k.verifying_key());
        assert_eq!(key_id(k.verifying_key()).len(), 64);
    }

    #[test]
    fn the_older_label_and_cost_are_read() {
        let k = generate();
        let pem = encrypt_with(&k, "", 15, OLD_LABEL);
        assert!(pem.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"));
        assert_eq!(decrypt(&pem, "", "t").unwrap().to_bytes(), k.to_bytes());
    }

    /// The Python that has PyPI's `cryptography` and `pynacl`, which
    /// `.ci/setup-pipeline` installs into `target/pipeline-py`
    /// (`PIPELINE_TEST_PYTHON` names another). Without it the test skips
    /// with a message, and fails under `CI=true`.
    fn python_with_crypto(test: &str) -> Option<std::path::PathBuf> {
        let python = std::env::var_os("PIPELINE_TEST_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pipeline-py/bin/python3")
            });
        let usable = std::process::Command::new(&python)
            .args(["-c", "import nacl.secret, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success());
        if usable {
            return Some(python);
        }
        let why = format!(
            "{} with cryptography and pynacl is not there; run .ci/setup-pipeline",
            python.display()
        );
        if test_support::in_ci() {
            panic!("{test}: required when CI=true: {why}");
        }
        eprintln!("SKIPPED {test}: {why}; set CI=true to make this a failure");
        None
    }

    /// Keys in cosign's format made by another implementation (PyPI's
    /// `cryptography` and `pynacl`, `tests/tools/cosign_keygen.py`) at
    /// test time: no key file is copied from anywhere.
    #[test]
    fn keys_made_by_another_implementation_are_read() {
        let Some(python) = python_with_crypto("keys_made_by_another_implementation_are_read")
        else {
            return;
        };
        let dir = test_support::TempDir::new("cosign-py-keys");
        let message = dir.path().join("message");
        std::fs::write(&message, b"a payload to sign").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/cosign_keygen.py");
        for password in ["s3cret", ""] {
            let prefix = dir.path().join(format!("py{}", password.len()));
            let out = std::process::Command::new(&python)
                .arg(&script)
                .arg(&prefix)
                .arg(&message)
                .env(PASSWORD_ENV, password)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let key = read_private(&prefix.with_extension("key"), password)
                .unwrap_or_else(|e| panic!("password {password:?}: {e}"));
            assert!(matches!(
                read_private(&prefix.with_extension("key"), "not it"),
                Err(KeyError::Password { .. })
            ));
            // The same key: its public half is the one Python wrote.
            let public = read_public(&prefix.with_extension("pub")).unwrap();
            assert_eq!(*key.verifying_key(), public);
            // Python's signature verifies with our verifier, ours with the key.
            let sig = base64::engine::general_purpose::STANDARD
                .decode(
                    std::fs::read_to_string(prefix.with_extension("sig"))
                        .unwrap()
                        .trim(),
                )
                .unwrap();
            assert!(crate::cosign::signer::verifies(
                &public,
                b"a payload to sign",
                &sig
            ));
            assert!(!crate::cosign::signer::verifies(
                &public,
                b"another payload",
                &sig
            ));
        }
    }

    #[test]
    fn malformed_keys_are_refused_clearly() {
        let e = decrypt("hello", "", "k").unwrap_err().to_string();
        assert!(e.contains("no PEM BEGIN line"), "{e}");
        let e = decrypt(&pem("PRIVATE KEY", b"x"), "", "k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PEM label"), "{e}");
        let e = decrypt(&pem(LABEL, b"{}"), "", "k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosign's JSON"), "{e}");
        let huge = r#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
        let e = decrypt(&pem(LABEL, huge.as_bytes()), "", "k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        assert!(parse_public("nope", "p").is_err());
    }
}
