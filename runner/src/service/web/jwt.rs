//! ID tokens: compact JWS, signed RS256 or ES256, checked against the
//! provider's published keys (JWK), then their claims.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a token was refused. The text goes to the audit log and, briefly,
/// to the person signing in; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the ID token is not a signed JWT ({0})")]
    Malformed(&'static str),
    #[error("the ID token is signed with {0:?}; only RS256 and ES256 are accepted")]
    Algorithm(String),
    #[error("the ID token names signing key {0:?}, which the provider does not publish")]
    UnknownKey(String),
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token was issued by {found:?}, not by {expected:?}")]
    Issuer { found: String, expected: String },
    #[error("the ID token is meant for {found}, not for this client")]
    Audience { found: String },
    #[error("the ID token expired {0} s ago")]
    Expired(i64),
    #[error("the ID token is dated {0} s in the future")]
    NotYetValid(i64),
    #[error("the ID token's nonce is not the one this sign-in sent")]
    Nonce,
    #[error("the ID token lacks the {0:?} claim")]
    Missing(&'static str),
}

/// A published public key.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(rename = "use", default)]
    pub use_: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Keys by id; a key without an id is kept under "".
pub fn index(set: JwkSet) -> HashMap<String, Jwk> {
    set.keys
        .into_iter()
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .map(|k| (k.kid.clone().unwrap_or_default(), k))
        .collect()
}

fn b64(s: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("a part is not base64url"))
}

#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
}

/// A token split and its header read, not yet verified.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub header: Header,
    signed: &'a str,
    payload: &'a str,
    signature: Vec<u8>,
}

pub fn split(token: &str) -> Result<Unverified<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three parts"));
    };
    let header: Header = serde_json::from_slice(&b64(h)?)
        .map_err(|_| TokenError::Malformed("the header is not JSON"))?;
    if header.alg != "RS256" && header.alg != "ES256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    Ok(Unverified {
        header,
        signed: &token[..h.len() + 1 + p.len()],
        payload: p,
        signature: b64(s)?,
    })
}

impl Unverified<'_> {
    /// Checks the signature with `key`, and returns the claims.
    pub fn verify(&self, key: &Jwk) -> Result<Map<String, Value>, TokenError> {
        use ring::signature;
        let msg = self.signed.as_bytes();
        if key.alg.as_deref().is_some_and(|a| a != self.header.alg) {
            return Err(TokenError::Signature);
        }
        let ok = match (self.header.alg.as_str(), key.kty.as_str()) {
            ("RS256", "RSA") => {
                let (Some(n), Some(e)) = (&key.n, &key.e) else {
                    return Err(TokenError::Signature);
                };
                let (n, e) = (b64(n)?, b64(e)?);
                signature::RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, &self.signature)
                    .is_ok()
            }
            ("ES256", "EC") if key.crv.as_deref() == Some("P-256") => {
                let (Some(x), Some(y)) = (&key.x, &key.y) else {
                    return Err(TokenError::Signature);
                };
                let mut point = vec![4u8];
                point.extend(b64(x)?);
                point.extend(b64(y)?);
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, &self.signature)
                    .is_ok()
            }
            _ => false,
        };
        if !ok {
            return Err(TokenError::Signature);
        }
        serde_json::from_slice(&b64(self.payload)?)
            .map_err(|_| TokenError::Malformed("the claims are not a JSON object"))
    }
}

/// What an ID token must say besides a good signature.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Clock skew tolerated, seconds.
    pub leeway: i64,
}

/// OpenID Connect Core 3.1.3.7: issuer, audience (and `azp` when there
/// are several), expiry, issue time, nonce.
pub fn check_claims(c: &Map<String, Value>, x: &Expect<'_>) -> Result<(), TokenError> {
    let iss = c
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::Missing("iss"))?;
    if iss != x.issuer {
        return Err(TokenError::Issuer {
            found: iss.chars().take(200).collect(),
            expected: x.issuer.to_owned(),
        });
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Missing("aud")),
    };
    let azp = c.get("azp").and_then(Value::as_str);
    if !auds.contains(&x.client_id) || (auds.len() > 1 && azp != Some(x.client_id)) {
        let found = auds
            .iter()
            .map(|a| format!("{:?}", a.chars().take(100).collect::<String>()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TokenError::Audience { found });
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::Missing("exp"))?;
    if x.now >= exp + x.leeway {
        return Err(TokenError::Expired(x.now - exp));
    }
    let iat = c
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(TokenError::Missing("iat"))?;
    if iat > x.now + x.leeway {
        return Err(TokenError::NotYetValid(iat - x.now));
    }
    let nonce = c
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or(TokenError::Missing("nonce"))?;
    if !super::session::same(nonce, x.nonce) {
        return Err(TokenError::Nonce);
    }
    if c.get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(TokenError::Missing("sub"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const X: Expect<'static> = Expect {
        issuer: "https://i",
        client_id: "c",
        nonce: "n",
        now: 1000,
        leeway: 60,
    };

    #[test]
    fn claims_are_checked() {
        let good = json!({"iss": "https://i", "aud": "c", "exp": 1100, "iat": 990, "nonce": "n", "sub": "u"});
        assert_eq!(check_claims(&claims(good.clone()), &X), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(good.clone());
            c.insert(k.into(), v);
            check_claims(&c, &X)
        };
        assert!(matches!(
            with("iss", json!("https://other")),
            Err(TokenError::Issuer { .. })
        ));
        assert!(matches!(
            with("aud", json!("d")),
            Err(TokenError::Audience { .. })
        ));
        assert!(
            matches!(
                with("aud", json!(["c", "d"])),
                Err(TokenError::Audience { .. })
            ),
            "several audiences need azp"
        );
        assert!(matches!(
            with("exp", json!(900)),
            Err(TokenError::Expired(100))
        ));
        assert!(matches!(
            with("iat", json!(2000)),
            Err(TokenError::NotYetValid(1000))
        ));
        assert_eq!(with("nonce", json!("m")), Err(TokenError::Nonce));
        assert_eq!(with("sub", json!("")), Err(TokenError::Missing("sub")));
    }

    #[test]
    fn unsigned_and_odd_tokens_are_refused() {
        let h = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", h(json!({"alg": "none"})), h(json!({})));
        assert!(matches!(split(&none), Err(TokenError::Algorithm(a)) if a == "none"));
        let hs = format!("{}.{}.AA", h(json!({"alg": "HS256"})), h(json!({})));
        assert!(matches!(split(&hs), Err(TokenError::Algorithm(_))));
        assert!(matches!(split("a.b"), Err(TokenError::Malformed(_))));
    }
}
