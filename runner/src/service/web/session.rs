//! Session cookies and the principal they stand for; CSRF tokens.
//!
//! The cookie holds 32 random bytes; the store keeps their SHA-256 only.
//! Pages read the session's CSRF token from a `<meta>` element and send it
//! back in `X-CSRF-Token` on every state-changing request (a synchronizer
//! token: another site can make the browser send the cookie, never read
//! the token).

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::service::api::AppState;
use crate::service::api::error::ApiError;
use crate::service::auth::{Principal, Role};
use crate::service::store::now_ms;
use crate::service::store::sessions::SessionRecord;

pub const SESSION_COOKIE: &str = "runner_session";
pub const SIGN_IN_COOKIE: &str = "runner_signin";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Equal, compared in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name`, if the request carries one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value: `HttpOnly; Secure; SameSite=Lax`, always.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax"
    ))
    .expect("cookie values are base64url")
}

pub fn clear_cookie(name: &str, path: &str) -> HeaderValue {
    set_cookie(name, "", path, 0)
}

/// The principal a session acts as: `user:<subject>` in the audit log and
/// as the submitter of runs. Subjects that are long or unusual are hashed.
pub fn principal_of(s: &SessionRecord) -> Principal {
    let plain = s.subject.len() <= 64
        && s.subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    let who = if plain {
        s.subject.clone()
    } else {
        token_hash(&s.subject)[..32].to_owned()
    };
    Principal {
        tenant: s.tenant.clone(),
        tenant_name: s.tenant_name.clone(),
        key_id: format!("user:{who}"),
        role: Role::parse(&s.role).unwrap_or(Role::Learner),
        environments: s.environments.clone(),
    }
}

/// The live session of the request's cookie (idle clock restarted).
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, ApiError> {
    let Some(web) = state.web.as_ref() else {
        return Ok(None);
    };
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = token_hash(token);
    let idle = web.config.idle.as_millis() as i64;
    Ok(state
        .store
        .call(move |s| s.touch_session(&hash, now_ms(), idle))
        .await?)
}

/// The principal of a request without an API key that carries a session
/// cookie; state-changing methods must also carry the session's CSRF token.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(s) = current(state, headers).await? else {
        return Ok(None);
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent, &s.csrf) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "csrf",
                "a request made with a session cookie must send the session's CSRF token in X-CSRF-Token; reload the page",
            ));
        }
    }
    Ok(Some(principal_of(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; runner_session=tok"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "runner"), None);
        let c = set_cookie(SESSION_COOKIE, "v", "/", 60);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
    }
}
