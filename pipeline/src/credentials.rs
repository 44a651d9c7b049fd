//! Registry credentials, from (first match wins):
//!
//! 1. `PIPELINE_REGISTRY_USER` and `PIPELINE_REGISTRY_PASSWORD`, for any
//!    registry the command talks to;
//! 2. the Docker config file (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): `credHelpers.<host>`, then `auths.<host>`
//!    (`auth`, base64 `user:password`, or `username`/`password`), then
//!    `credsStore`. Helpers run as `docker-credential-<name> get`.
//!
//! Passwords are kept in [`Secret`], which never prints its content.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

pub const USER_ENV: &str = "PIPELINE_REGISTRY_USER";
pub const PASSWORD_ENV: &str = "PIPELINE_REGISTRY_PASSWORD";
/// A credential helper that has not answered by then is given up on.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// A password or token. `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced, for messages
    /// that quote a server's answer.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// Where they came from, for messages (`PIPELINE_REGISTRY_USER`,
    /// `/root/.docker/config.json`, `docker-credential-pass`).
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{set} is set but {unset} is not; set both, or neither to use the Docker config file")]
    HalfSet {
        set: &'static str,
        unset: &'static str,
    },
    #[error("cannot read the Docker config file {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("the credential helper {helper} failed for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Credentials for `host` (`127.0.0.1:5000`, `docker.io`), if any are set.
pub fn for_registry(host: &str) -> Result<Option<Credentials>, CredentialsError> {
    let user = std::env::var(USER_ENV).ok().filter(|v| !v.is_empty());
    let password = std::env::var(PASSWORD_ENV).ok().filter(|v| !v.is_empty());
    match (user, password) {
        (Some(username), Some(password)) => {
            return Ok(Some(Credentials {
                username,
                password: Secret(password),
                origin: USER_ENV.to_owned(),
            }));
        }
        (Some(_), None) => {
            return Err(CredentialsError::HalfSet {
                set: USER_ENV,
                unset: PASSWORD_ENV,
            });
        }
        (None, Some(_)) => {
            return Err(CredentialsError::HalfSet {
                set: PASSWORD_ENV,
                unset: USER_ENV,
            });
        }
        (None, None) => {}
    }
    match docker_config_path() {
        Some(path) => from_docker_config(&path, host),
        None => Ok(None),
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Hosts a config key may name Docker Hub by.
fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `https://host:port/v1/` → `host:port`.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn same_host(key: &str, host: &str) -> bool {
    let k = key_host(key);
    k == host || (is_docker_hub(k) && is_docker_hub(host))
}

pub(crate) fn from_docker_config(
    path: &Path,
    host: &str,
) -> Result<Option<Credentials>, CredentialsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Config {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    match lookup_docker_config(&text, path, host)? {
        ConfigLookup::Credentials(c) => Ok(Some(c)),
        ConfigLookup::Helper(name) => run_helper(&name, host),
        ConfigLookup::Nothing => Ok(None),
    }
}

/// What the Docker config file says about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLookup {
    Credentials(Credentials),
    /// `docker-credential-NAME` is to be asked (a bare name, never a path).
    Helper(String),
    Nothing,
}

/// Reads the text of the Docker config file at `path` (named in messages)
/// for `host`. Runs nothing: a helper it names is returned, checked.
pub fn lookup_docker_config(
    text: &str,
    path: &Path,
    host: &str,
) -> Result<ConfigLookup, CredentialsError> {
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|e| CredentialsError::Config {
            path: path.to_owned(),
            message: format!("not valid JSON: {e}"),
        })?;
    if let Some((key, helper)) = config.cred_helpers.iter().find(|(k, _)| same_host(k, host)) {
        return helper_named(helper, &format!("credHelpers.{key}"), path);
    }
    if let Some((_, entry)) = config.auths.iter().find(|(k, _)| same_host(k, host)) {
        let origin = path.display().to_string();
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(CredentialsError::Config {
                    path: path.to_owned(),
                    message: format!(
                        "auths.{host}.auth is not base64 of `user:password`; run `docker login {host}` again"
                    ),
                });
            };
            return Ok(ConfigLookup::Credentials(Credentials {
                username: user.to_owned(),
                password: Secret(pass.to_owned()),
                origin,
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(ConfigLookup::Credentials(Credentials {
                username: u.clone(),
                password: Secret(p.clone()),
                origin,
            }));
        }
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => helper_named(store, "credsStore", path),
        _ => Ok(ConfigLookup::Nothing),
    }
}

/// A helper name from the config: `docker-credential-NAME` is looked up on
/// `PATH`, so a name with a `/` would run a file relative to the working
/// directory instead.
fn helper_named(name: &str, key: &str, path: &Path) -> Result<ConfigLookup, CredentialsError> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return Err(CredentialsError::Config {
            path: path.to_owned(),
            message: format!(
                "{key} is {name:?}; name a credential helper (`pass` runs docker-credential-pass), not a path"
            ),
        });
    }
    Ok(ConfigLookup::Helper(name.to_owned()))
}

/// Runs `docker-credential-NAME get`; "not found" answers are no
/// credentials, not an error.
fn run_helper(name: &str, host: &str) -> Result<Option<Credentials>, CredentialsError> {
    let helper = format!("docker-credential-{name}");
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.clone(),
        host: host.to_owned(),
        message,
    };
    let mut child = Command::new(&helper)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading closes the pipe: not an error.
        let _ = stdin.write_all(host.as_bytes());
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("not found")
            || String::from_utf8_lossy(&out.stderr).contains("not found")
        {
            return Ok(None);
        }
        // The answer is not quoted: a misbehaving helper could print secrets.
        return Err(fail(format!("it exited with {}", out.status)));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .map_err(|_| fail("its answer is not the expected JSON {Username, Secret}".into()))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: Secret(answer.secret),
        origin: helper.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn auths_entries_by_host() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:s3cret" and a Docker Hub entry.
        let p = config(
            dir.path(),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        );
        let c = from_docker_config(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.password.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = from_docker_config(&p, "docker.io").unwrap().unwrap();
        assert_eq!(c.username, "bob");
        assert!(from_docker_config(&p, "ghcr.io").unwrap().is_none());
        assert!(
            from_docker_config(&dir.path().join("missing.json"), "x")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_configs_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = config(dir.path(), r#"{"auths":{"h:1":{"auth":"!!!"}}}"#);
        let e = from_docker_config(&p, "h:1").unwrap_err().to_string();
        assert!(e.contains("docker login"), "{e}");
        let p = config(dir.path(), "{not json");
        let e = from_docker_config(&p, "h:1").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn missing_helpers_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = config(
            dir.path(),
            r#"{"credHelpers":{"h:1":"pipeline-test-no-such-helper"}}"#,
        );
        let e = from_docker_config(&p, "h:1").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-pipeline-test-no-such-helper"),
            "{e}"
        );
    }

    #[test]
    fn helper_names_are_never_paths() {
        for json in [
            r#"{"credHelpers":{"h:1":"../../tmp/evil"}}"#,
            r#"{"credsStore":"/bin/sh"}"#,
        ] {
            let e = lookup_docker_config(json, Path::new("config.json"), "h:1")
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a path"), "{e}");
        }
        assert_eq!(
            lookup_docker_config(r#"{"credsStore":"pass"}"#, Path::new("c"), "h:1").unwrap(),
            ConfigLookup::Helper("pass".into())
        );
    }

    #[test]
    fn secrets_redact_themselves() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.redact("bad password hunter2!"), "bad password ***!");
    }
}
