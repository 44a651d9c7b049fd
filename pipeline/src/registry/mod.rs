//! A small client of the OCI distribution API: manifests and blobs, read and
//! (for signatures and attestations) written, with anonymous, Basic and
//! Bearer-token authentication (answering the registry's `WWW-Authenticate`
//! challenge).
//!
//! Plain HTTP is used for loopback registries (`localhost`, `127.0.0.0/8`,
//! `[::1]`) and for hosts listed as insecure; HTTPS otherwise.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::credentials::Credentials;
use crate::digest::HashingReader;
use crate::reference::Reference;

pub mod auth;
pub mod manifest;

use auth::Challenge;

/// Manifests larger than this are refused (real ones are a few KiB).
pub const MANIFEST_CAP: u64 = 4 << 20;
/// Image configs larger than this are refused.
pub const CONFIG_CAP: u64 = 16 << 20;
/// A registry that sends nothing for this long is given up on.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the registry at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("registry {host} refused access to {repository}: {detail}")]
    Denied {
        host: String,
        repository: String,
        detail: String,
    },
    #[error("{what} not found in {host}/{repository} (HTTP 404); check the name, tag or digest")]
    NotFound {
        host: String,
        repository: String,
        what: String,
    },
    #[error("registry {host} answered HTTP {status} for {what}: {body}")]
    Status {
        host: String,
        status: u16,
        what: String,
        body: String,
    },
    #[error("{what} from {host}/{repository} is invalid: {message}")]
    Invalid {
        host: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error(
        "{what} from {host}/{repository} has digest {actual}, not {expected}: the download is corrupt or was tampered with"
    )]
    DigestMismatch {
        host: String,
        repository: String,
        what: String,
        expected: String,
        actual: String,
    },
}

impl RegistryError {
    /// Whether the user can fix it (name, credentials) rather than the
    /// network or the registry.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RegistryError::Denied { .. } | RegistryError::NotFound { .. }
        )
    }
}

/// A fetched manifest: its bytes, its content type, its digest.
pub type Fetched = (Vec<u8>, Option<String>, String);

#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The `Authorization` value that worked, reused for later requests.
    authorization: Mutex<Option<String>>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

impl Client {
    /// A client for `reference`'s repository. `insecure` lists registry
    /// hosts (`host:port`) to reach over plain HTTP besides loopback ones.
    pub fn new(
        reference: &Reference,
        insecure: &[String],
        credentials: Option<Credentials>,
    ) -> Client {
        let plain = reference.is_loopback() || insecure.iter().any(|h| h == &reference.registry);
        let scheme = if plain { "http" } else { "https" };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_redirects(5)
            .user_agent(concat!("pipeline/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: format!("{scheme}://{}", reference.api_host()),
            host: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.credentials {
            Some(c) => c.password.redact(text),
            None => text.to_owned(),
        }
    }

    fn denied(&self, detail: String) -> RegistryError {
        RegistryError::Denied {
            host: self.host.clone(),
            repository: self.repository.clone(),
            detail: self.redact(&detail),
        }
    }

    fn unreachable(&self, url: &str, e: &ureq::Error) -> RegistryError {
        let hint = if url.starts_with("https://") {
            " (if this registry only speaks plain HTTP, pass --insecure-registry HOST:PORT)"
        } else {
            ""
        };
        RegistryError::Unreachable {
            url: url.to_owned(),
            message: format!("{}{hint}", self.redact(&e.to_string())),
        }
    }

    fn authorization(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_authorization(&self, value: String) {
        *self
            .authorization
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    fn who(&self) -> String {
        match &self.credentials {
            Some(c) => format!("user {:?} (from {})", c.username, c.origin),
            None => "anonymous access".to_owned(),
        }
    }

    /// GET `path` under `/v2/NAME/`, answering one auth challenge.
    fn get(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        self.send("GET", &url, &[("Accept", accept)], None)
    }

    /// Sends a request to `url`, answering one auth challenge. Writes ask
    /// for a token with push rights.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let push = !matches!(method, "GET" | "HEAD");
        for attempt in 0..2 {
            let mut b = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            if let Some(a) = self.authorization() {
                b = b.header("Authorization", a);
            }
            let bad = |e: ureq::http::Error| self.invalid("a request", e.to_string());
            let resp = match body {
                Some(bytes) => self.agent.run(b.body(bytes).map_err(bad)?),
                None => self.agent.run(b.body(ureq::SendBody::none()).map_err(bad)?),
            }
            .map_err(|e| self.unreachable(url, &e))?;
            let status = resp.status().as_u16();
            if status != 401 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            if attempt == 1 {
                break;
            }
            match challenge {
                Some(c) => self.authenticate(&c, push)?,
                None => {
                    return Err(
                        self.denied("HTTP 401 without a usable WWW-Authenticate challenge".into())
                    );
                }
            }
        }
        Err(self.denied(format!(
            "HTTP 401 with {}; check the user name and password ({} and {}, or `docker login {}`)",
            self.who(),
            crate::credentials::USER_ENV,
            crate::credentials::PASSWORD_ENV,
            self.host
        )))
    }

    fn authenticate(&self, challenge: &Challenge, push: bool) -> Result<(), RegistryError> {
        match challenge {
            Challenge::Basic => match self.basic() {
                Some(b) => {
                    self.set_authorization(b);
                    Ok(())
                }
                None => Err(self.denied(format!(
                    "it requires credentials; set {} and {}, or run `docker login {}`",
                    crate::credentials::USER_ENV,
                    crate::credentials::PASSWORD_ENV,
                    self.host
                ))),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let rights = if push { "pull,push" } else { "pull" };
                let scope = scope
                    .clone()
                    .unwrap_or_else(|| format!("repository:{}:{rights}", self.repository));
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(s) = service {
                    req = req.query("service", s);
                }
                if let Some(b) = self.basic() {
                    req = req.header("Authorization", &b);
                }
                let resp = req.call().map_err(|e| self.unreachable(realm, &e))?;
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(self.denied(format!(
                        "the token service {realm} refused {} (HTTP {status}); check the user name and password",
                        self.who()
                    )));
                }
                if status != 200 {
                    return Err(RegistryError::Status {
                        host: self.host.clone(),
                        status,
                        what: format!("a token from {realm}"),
                        body: String::new(),
                    });
                }
                let answer: TokenAnswer = resp
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<TokenAnswer>(&b).map_err(|e| e.to_string())
                    })
                    .map_err(|e| RegistryError::Invalid {
                        host: self.host.clone(),
                        repository: self.repository.clone(),
                        what: format!("the token answer of {realm}"),
                        message: e,
                    })?;
                let token =
                    answer
                        .token
                        .or(answer.access_token)
                        .ok_or_else(|| RegistryError::Invalid {
                            host: self.host.clone(),
                            repository: self.repository.clone(),
                            what: format!("the token answer of {realm}"),
                            message: "no token in it".into(),
                        })?;
                self.set_authorization(format!("Bearer {token}"));
                Ok(())
            }
        }
    }

    fn check_status(
        &self,
        resp: ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let status = resp.status().as_u16();
        match status {
            200 => Ok(resp),
            404 => Err(RegistryError::NotFound {
                host: self.host.clone(),
                repository: self.repository.clone(),
                what: what.to_owned(),
            }),
            403 => Err(self.denied(format!("HTTP 403 for {what} with {}", self.who()))),
            _ => {
                let body = resp
                    .into_body()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                Err(RegistryError::Status {
                    host: self.host.clone(),
                    status,
                    what: what.to_owned(),
                    body: self.redact(body.trim()),
                })
            }
        }
    }

    fn read_capped(
        &self,
        resp: ureq::http::Response<ureq::Body>,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RegistryError::Unreachable {
                url: format!("{}/v2/{}", self.base, self.repository),
                message: format!("reading {what}: {e}"),
            })?;
        if bytes.len() as u64 > cap {
            return Err(self.invalid(what, format!("larger than {cap} bytes")));
        }
        Ok(bytes)
    }

    /// The registry sent something unusable as `what`; `problem` says why.
    pub fn invalid(&self, what: &str, problem: impl std::fmt::Display) -> RegistryError {
        let message = problem.to_string();
        RegistryError::Invalid {
            host: self.host.clone(),
            repository: self.repository.clone(),
            what: what.to_owned(),
            message,
        }
    }

    pub fn mismatch(&self, what: &str, expected: &str, actual: &str) -> RegistryError {
        RegistryError::DigestMismatch {
            host: self.host.clone(),
            repository: self.repository.clone(),
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    }

    /// A manifest or index by tag or digest: its bytes, its content type,
    /// and its digest (checked against the reference when that is one).
    pub fn manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, String), RegistryError> {
        let what = format!("manifest {reference}");
        let resp = self.get(&format!("manifests/{reference}"), manifest::ACCEPT)?;
        let resp = self.check_status(resp, &what)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = self.read_capped(resp, MANIFEST_CAP, &what)?;
        let digest = crate::digest::sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(self.mismatch(&what, reference, &digest));
        }
        Ok((bytes, content_type, digest))
    }

    /// A small blob (a config), verified.
    pub fn blob_bytes(&self, digest: &str, cap: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        let resp = self.check_status(resp, what)?;
        let bytes = self.read_capped(resp, cap, what)?;
        let actual = crate::digest::sha256_digest(&bytes);
        if actual != digest {
            return Err(self.mismatch(what, digest, &actual));
        }
        Ok(bytes)
    }

    /// A blob as a stream that hashes what passes; the caller checks the
    /// digest with [`HashingReader::finish`] once done.
    pub fn blob_reader(
        &self,
        digest: &str,
        what: &str,
    ) -> Result<HashingReader<Box<dyn Read + Send>>, RegistryError> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        let resp = self.check_status(resp, what)?;
        let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        Ok(HashingReader::new(reader))
    }

    /// A manifest by tag, or `None` when the tag does not exist.
    pub fn manifest_if_exists(&self, tag: &str) -> Result<Option<Fetched>, RegistryError> {
        match self.manifest(tag) {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the repository holds a blob.
    pub fn blob_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let resp = self.send("HEAD", &url, &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => self
                .check_status(resp, &format!("blob {digest}"))
                .map(|_| true),
        }
    }

    /// Uploads a blob (monolithically: ours are small) unless present;
    /// returns its digest.
    pub fn push_blob(&self, bytes: &[u8], what: &str) -> Result<String, RegistryError> {
        let digest = crate::digest::sha256_digest(bytes);
        if self.blob_exists(&digest)? {
            return Ok(digest);
        }
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let resp = self.send("POST", &url, &[("Content-Length", "0")], Some(&[]))?;
        let status = resp.status().as_u16();
        if status != 202 {
            return Err(self.written(resp, what, status));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.invalid(what, "the upload answer has no Location"))?;
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let len = bytes.len().to_string();
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", len.as_str()),
        ];
        let resp = self.send("PUT", &url, &headers, Some(bytes))?;
        let status = resp.status().as_u16();
        if status != 201 {
            return Err(self.written(resp, what, status));
        }
        Ok(digest)
    }

    /// Stores a manifest under `tag`; returns its digest.
    pub fn put_manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let what = format!("manifest {tag}");
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.repository);
        let resp = self.send("PUT", &url, &[("Content-Type", media_type)], Some(bytes))?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            return Err(self.written(resp, &what, status));
        }
        Ok(crate::digest::sha256_digest(bytes))
    }

    /// The error for a refused write.
    fn written(
        &self,
        resp: ureq::http::Response<ureq::Body>,
        what: &str,
        status: u16,
    ) -> RegistryError {
        if status == 403 {
            return self.denied(format!(
                "HTTP 403 writing {what} with {}: these credentials may not push",
                self.who()
            ));
        }
        let body = resp
            .into_body()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        RegistryError::Status {
            host: self.host.clone(),
            status,
            what: format!("writing {what}"),
            body: self.redact(body.trim()),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}
