//! A tenant's OpenID provider, as a relying party sees it: discovery, the
//! published keys (fetched again when a token names an unknown one, at most
//! once per [`REFETCH_EVERY`]), the authorization code exchange with PKCE,
//! and the checks on the ID token. Blocking (ureq): call from
//! `spawn_blocking`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::SignInConfig;
use super::jwt::{self, Expect, Jwk, TokenError};

/// Unknown key ids fetch the key set again no more often than this: a
/// flood of forged tokens does not become a flood of requests to the
/// provider.
pub const REFETCH_EVERY: Duration = Duration::from_secs(5);
/// Clock skew tolerated between us and the provider.
pub const LEEWAY_SECS: i64 = 60;
const MAX_DOCUMENT: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider at {url} could not be reached: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the identity provider answered {url} with {detail}")]
    BadAnswer { url: String, detail: String },
    #[error(
        "the identity provider's discovery document names issuer {found:?}, not the configured {expected:?}"
    )]
    IssuerMismatch { found: String, expected: String },
    #[error(transparent)]
    Token(#[from] TokenError),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Debug, Default)]
struct Keys {
    by_id: HashMap<String, Jwk>,
    fetched: Option<Instant>,
    /// How many times the set was fetched (for tests of rotation).
    fetches: u64,
}

#[derive(Debug)]
pub struct Provider {
    pub config: SignInConfig,
    agent: ureq::Agent,
    metadata: Mutex<Option<Metadata>>,
    keys: Mutex<Keys>,
}

/// What a verified ID token says about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub subject: String,
    pub name: String,
    /// The values of the role claim.
    pub groups: Vec<String>,
}

fn endpoint_ok(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        let loopback = match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        };
        u.scheme() == "https" || (u.scheme() == "http" && loopback)
    })
}

impl Provider {
    pub fn new(config: SignInConfig) -> Provider {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .max_redirects(0)
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Provider {
            config,
            agent,
            metadata: Mutex::new(None),
            keys: Mutex::new(Keys::default()),
        }
    }

    fn read(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, OidcError> {
        let mut resp = resp.map_err(|e| OidcError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_string()
            .map_err(|e| OidcError::Unreachable {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        if !status.is_success() {
            // The provider's error code and description say what to fix;
            // the body never carries our secret.
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let why = [v.get("error"), v.get("error_description")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(": ");
            return Err(OidcError::BadAnswer {
                url: url.to_owned(),
                detail: format!("HTTP {status} {why}"),
            });
        }
        serde_json::from_str(&text).map_err(|e| OidcError::BadAnswer {
            url: url.to_owned(),
            detail: format!("a body that is not JSON ({e})"),
        })
    }

    /// The discovery document, read once.
    pub fn metadata(&self) -> Result<Metadata, OidcError> {
        if let Some(m) = self.metadata.lock().expect("metadata lock").clone() {
            return Ok(m);
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let v = self.read(&url, self.agent.get(&url).call())?;
        let m: Metadata = serde_json::from_value(v).map_err(|e| OidcError::BadAnswer {
            url: url.clone(),
            detail: format!("a discovery document without {e}"),
        })?;
        if m.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(OidcError::IssuerMismatch {
                found: m.issuer,
                expected: self.config.issuer.clone(),
            });
        }
        for e in [&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri] {
            if !endpoint_ok(e) {
                return Err(OidcError::BadAnswer {
                    url,
                    detail: format!("endpoint {e:?}, which is neither https nor loopback"),
                });
            }
        }
        *self.metadata.lock().expect("metadata lock") = Some(m.clone());
        Ok(m)
    }

    fn fetch_keys(&self, m: &Metadata) -> Result<(), OidcError> {
        let v = self.read(&m.jwks_uri, self.agent.get(&m.jwks_uri).call())?;
        let set: jwt::JwkSet = serde_json::from_value(v).map_err(|e| OidcError::BadAnswer {
            url: m.jwks_uri.clone(),
            detail: format!("a key set that does not parse ({e})"),
        })?;
        let mut keys = self.keys.lock().expect("keys lock");
        keys.by_id = jwt::index(set);
        keys.fetched = Some(Instant::now());
        keys.fetches += 1;
        Ok(())
    }

    pub fn key_fetches(&self) -> u64 {
        self.keys.lock().expect("keys lock").fetches
    }

    /// The cached key a token names; a token without a key id takes the
    /// set's only key of its type (providers with one key often omit ids).
    fn cached(&self, kid: &str, kty: &str) -> Option<Jwk> {
        let keys = self.keys.lock().expect("keys lock");
        if !kid.is_empty() {
            return keys.by_id.get(kid).cloned();
        }
        let mut of_type = keys.by_id.values().filter(|k| k.kty == kty);
        match (of_type.next(), of_type.next()) {
            (Some(k), None) => Some(k.clone()),
            _ => None,
        }
    }

    /// Fetches the key set again unless it was fetched less than
    /// [`REFETCH_EVERY`] ago; whether it did.
    fn refetch_if_due(&self) -> Result<bool, OidcError> {
        let due = self
            .keys
            .lock()
            .expect("keys lock")
            .fetched
            .is_none_or(|t| t.elapsed() >= REFETCH_EVERY);
        if due {
            let m = self.metadata()?;
            self.fetch_keys(&m)?;
        }
        Ok(due)
    }

    /// The key a token names: from the cache, or after fetching the set
    /// again (the provider rotated its keys).
    fn key(&self, kid: &str, kty: &str) -> Result<Jwk, OidcError> {
        if let Some(k) = self.cached(kid, kty) {
            return Ok(k);
        }
        self.refetch_if_due()?;
        self.cached(kid, kty)
            .ok_or_else(|| TokenError::UnknownKey(kid.chars().take(100).collect()).into())
    }

    /// Where to send the browser: the authorization request, with PKCE.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let m = self.metadata()?;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()),
        );
        let mut u =
            url::Url::parse(&m.authorization_endpoint).map_err(|e| OidcError::BadAnswer {
                url: m.authorization_endpoint.clone(),
                detail: e.to_string(),
            })?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile email")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(u.into())
    }

    /// Trades the code for tokens (client_secret_basic) and returns the ID
    /// token, unverified.
    pub fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let m = self.metadata()?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.config.client_id),
            enc(&self.config.client_secret.0)
        ));
        let resp = self
            .agent
            .post(&m.token_endpoint)
            .header("authorization", format!("Basic {basic}"))
            .header("accept", "application/json")
            .send_form([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ]);
        let v = self.read(&m.token_endpoint, resp)?;
        v.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| OidcError::BadAnswer {
                url: m.token_endpoint.clone(),
                detail: "a token response without id_token".into(),
            })
    }

    /// Verifies an ID token: signature by a published key, then claims.
    pub fn verify(
        &self,
        token: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Map<String, Value>, OidcError> {
        let t = jwt::split(token)?;
        let kid = t.header.kid.clone().unwrap_or_default();
        let kty = if t.header.alg == "ES256" { "EC" } else { "RSA" };
        let claims = match t.verify(&self.key(&kid, kty)?) {
            // Without a key id, rotation shows only as a failing signature:
            // the set is fetched again (rate-limited) and tried once more.
            Err(TokenError::Signature) if kid.is_empty() && self.refetch_if_due()? => {
                t.verify(&self.key(&kid, kty)?)?
            }
            other => other?,
        };
        jwt::check_claims(
            &claims,
            &Expect {
                issuer: &self.config.issuer,
                client_id: &self.config.client_id,
                nonce,
                now,
                leeway: LEEWAY_SECS,
            },
        )?;
        Ok(claims)
    }

    /// The person a verified token names.
    pub fn person(&self, claims: &Map<String, Value>) -> Person {
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let subject = s("sub").unwrap_or_default().to_owned();
        let name = s("name")
            .or(s("preferred_username"))
            .or(s("email"))
            .unwrap_or(&subject);
        let groups = match claims.get(&self.config.role_claim) {
            Some(Value::String(g)) => vec![g.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Person {
            name: name.chars().take(100).collect(),
            subject,
            groups,
        }
    }
}

/// The release environments a release manager may approve for: the union
/// of the scopes of their approver groups; `None` (every environment) when
/// one of those groups is unscoped.
pub fn scope_of(config: &SignInConfig, groups: &[String]) -> Option<Vec<String>> {
    use crate::service::auth::Role;
    let mut envs: Vec<String> = Vec::new();
    for g in groups
        .iter()
        .filter(|g| config.roles.get(*g) == Some(&Role::ReleaseManager))
    {
        envs.extend(config.release_scopes.get(g)?.iter().cloned());
    }
    envs.sort();
    envs.dedup();
    Some(envs)
}

/// The role of a person: the mapped role of their groups (when several
/// map, the first of release-manager, admin, developer, learner: separation
/// of duties keeps approvers from also holding admin in one session), or
/// the configured default.
pub fn role_of(config: &SignInConfig, groups: &[String]) -> Option<crate::service::auth::Role> {
    use crate::service::auth::Role;
    let mapped: Vec<Role> = groups
        .iter()
        .filter_map(|g| config.roles.get(g).copied())
        .collect();
    [
        Role::ReleaseManager,
        Role::Admin,
        Role::Developer,
        Role::Learner,
    ]
    .into_iter()
    .find(|r| mapped.contains(r))
    .or(config.default_role)
}
