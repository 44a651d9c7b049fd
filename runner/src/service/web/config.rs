//! The `[web]` section: where browsers reach the service, how long sessions
//! last, and, per tenant, the OpenID provider people sign in with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::service::auth::Role;
use crate::service::config::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    /// The service's address as browsers see it (the OpenID redirect goes
    /// to `<public_url>/auth/callback`). `https`, or `http` on loopback.
    pub public_url: String,
    /// A session ends after this long without a request (default 30).
    pub session_idle_minutes: Option<u64>,
    /// A session ends this long after sign-in whatever happens (default 12).
    pub session_absolute_hours: Option<u64>,
    #[serde(default)]
    pub sign_in: Vec<SignInFile>,
}

/// One tenant's identity provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInFile {
    pub tenant: String,
    /// The issuer; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret...
    pub client_secret_env: Option<String>,
    /// ...or a file holding it (one of the two).
    pub client_secret_file: Option<PathBuf>,
    /// The ID token claim holding group or role names (a string or a list).
    pub role_claim: String,
    /// Claim value → role (learner, developer, release-manager, admin).
    pub roles: BTreeMap<String, String>,
    /// The role of people none of whose values map; without it they are
    /// refused.
    pub default_role: Option<String>,
    /// Claim value (mapped to release-manager) → the release environments
    /// its people may approve for, as key scopes do; absent: every one.
    #[serde(default)]
    pub release_scopes: BTreeMap<String, Vec<String>>,
}

/// A secret whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub public_url: url::Url,
    pub idle: Duration,
    pub absolute: Duration,
    pub sign_in: Vec<SignInConfig>,
}

#[derive(Debug, Clone)]
pub struct SignInConfig {
    pub tenant: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub role_claim: String,
    pub roles: BTreeMap<String, Role>,
    pub default_role: Option<Role>,
    pub release_scopes: BTreeMap<String, Vec<String>>,
}

impl WebConfig {
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/auth/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// Whether cookies may be marked `Secure` and still be sent: always over
    /// https; browsers treat loopback http as secure too.
    pub fn sign_in_for(&self, tenant: &str) -> Option<&SignInConfig> {
        self.sign_in.iter().find(|s| s.tenant == tenant)
    }
}

fn invalid(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

/// `https`, or `http` to a loopback host (tests, a provider beside the
/// service); never anything with credentials, a query or a fragment.
fn checked_url(key: &'static str, text: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(text).map_err(|e| {
        invalid(
            key,
            format!("{text:?} is not a URL ({e}); write it as https://host[:port][/path]"),
        )
    })?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    let ok_scheme = u.scheme() == "https" || (u.scheme() == "http" && loopback);
    if !ok_scheme {
        return Err(invalid(
            key,
            format!("{text:?} must use https (http only for a loopback host)"),
        ));
    }
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(invalid(
            key,
            format!("{text:?} must not carry credentials, a query or a fragment"),
        ));
    }
    Ok(u)
}

impl WebFile {
    pub fn validate(self) -> Result<WebConfig, ConfigError> {
        let public_url = checked_url("web.public_url", &self.public_url)?;
        let idle = self.session_idle_minutes.unwrap_or(30);
        let absolute = self.session_absolute_hours.unwrap_or(12);
        if !(1..=24 * 60).contains(&idle) {
            return Err(invalid(
                "web.session_idle_minutes",
                format!("is {idle}; use 1 to 1440"),
            ));
        }
        if !(1..=24 * 30).contains(&absolute) {
            return Err(invalid(
                "web.session_absolute_hours",
                format!("is {absolute}; use 1 to 720"),
            ));
        }
        let mut sign_in = Vec::new();
        for s in self.sign_in {
            if sign_in.iter().any(|o: &SignInConfig| o.tenant == s.tenant) {
                return Err(invalid(
                    "web.sign_in.tenant",
                    format!(
                        "{:?} is listed twice; give each tenant one identity provider",
                        s.tenant
                    ),
                ));
            }
            sign_in.push(s.validate()?);
        }
        Ok(WebConfig {
            public_url,
            idle: Duration::from_secs(idle * 60),
            absolute: Duration::from_secs(absolute * 3600),
            sign_in,
        })
    }
}

impl SignInFile {
    fn validate(self) -> Result<SignInConfig, ConfigError> {
        crate::service::store::validate_tenant_name(&self.tenant)
            .map_err(|e| invalid("web.sign_in.tenant", e.to_string()))?;
        let issuer = checked_url("web.sign_in.issuer", &self.issuer)?;
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return Err(invalid(
                "web.sign_in.client_id",
                "must be 1 to 256 characters".into(),
            ));
        }
        if self.role_claim.is_empty() {
            return Err(invalid(
                "web.sign_in.role_claim",
                "must name the ID token claim holding roles or groups, e.g. \"roles\"".into(),
            ));
        }
        let client_secret = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                invalid(
                    "web.sign_in.client_secret_env",
                    format!("names {var:?}, which is not set in the environment"),
                )
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    invalid(
                        "web.sign_in.client_secret_file",
                        format!("{}: cannot be read: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            _ => {
                return Err(invalid(
                    "web.sign_in",
                    format!(
                        "tenant {:?}: set exactly one of client_secret_env and client_secret_file",
                        self.tenant
                    ),
                ));
            }
        };
        if client_secret.is_empty() {
            return Err(invalid(
                "web.sign_in",
                format!("tenant {:?}: the client secret is empty", self.tenant),
            ));
        }
        let role =
            |key: &'static str, v: &str| Role::parse(v).map_err(|e| invalid(key, e.to_string()));
        let mut roles = BTreeMap::new();
        for (value, r) in self.roles {
            roles.insert(value, role("web.sign_in.roles", &r)?);
        }
        let default_role = self
            .default_role
            .as_deref()
            .map(|r| role("web.sign_in.default_role", r))
            .transpose()?;
        for (value, envs) in &self.release_scopes {
            if roles.get(value) != Some(&Role::ReleaseManager) {
                return Err(invalid(
                    "web.sign_in.release_scopes",
                    format!(
                        "{value:?} is not mapped to release-manager in `roles`; only approvers are scoped"
                    ),
                ));
            }
            crate::service::auth::check_scope(Role::ReleaseManager, envs)
                .map_err(|e| invalid("web.sign_in.release_scopes", e.to_string()))?;
        }
        if roles.is_empty() && default_role.is_none() {
            return Err(invalid(
                "web.sign_in.roles",
                format!(
                    "tenant {:?}: map at least one claim value to a role, or set default_role",
                    self.tenant
                ),
            ));
        }
        Ok(SignInConfig {
            tenant: self.tenant,
            // Compared byte for byte with `iss`: kept as written, without
            // the slash `url` would add.
            issuer: issuer.as_str().trim_end_matches('/').to_owned(),
            client_id: self.client_id,
            client_secret: Secret(client_secret),
            role_claim: self.role_claim,
            roles,
            default_role,
            release_scopes: self.release_scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, ConfigError> {
        toml::from_str::<WebFile>(text).unwrap().validate()
    }

    #[test]
    fn good_config_validates_and_hides_its_secret() {
        let dir = std::env::temp_dir().join(format!("web-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let c = parse(&format!(
            r#"public_url = "http://localhost:8080"
[[sign_in]]
tenant = "alpha"
issuer = "https://idp.example.com/realms/alpha/"
client_id = "runner"
client_secret_file = {:?}
role_claim = "groups"
roles = {{ "rm" = "release-manager" }}
"#,
            secret.display().to_string()
        ))
        .unwrap();
        assert_eq!(c.sign_in[0].issuer, "https://idp.example.com/realms/alpha");
        assert_eq!(c.sign_in[0].client_secret.0, "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.redirect_uri(), "http://localhost:8080/auth/callback");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for (text, says) in [
            (r#"public_url = "http://example.com""#, "https"),
            (r#"public_url = "nonsense""#, "not a URL"),
            (
                r#"public_url = "https://a"
session_idle_minutes = 0"#,
                "1 to 1440",
            ),
            (
                r#"public_url = "https://a"
[[sign_in]]
tenant = "alpha"
issuer = "https://i"
client_id = "c"
role_claim = "r"
roles = { a = "admin" }"#,
                "exactly one of",
            ),
            (
                r#"public_url = "https://a"
[[sign_in]]
tenant = "alpha"
issuer = "https://i"
client_id = "c"
client_secret_env = "RUNNER_TEST_UNSET_VARIABLE_X"
role_claim = "r"
roles = { a = "admin" }"#,
                "not set",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(toml::from_str::<WebFile>("public_url = \"https://a\"\nsurprise = 1").is_err());
    }
}
