//! Sign-in (authorization code with PKCE), its callback and sign-out.

use std::time::Instant;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Pending;
use super::pages::{message, see_other};
use super::session::{
    SESSION_COOKIE, SIGN_IN_COOKIE, clear_cookie, cookie, random_token, set_cookie, token_hash,
};
use crate::service::abuse::Refused;
use crate::service::api::AppState;
use crate::service::store::sessions::NewSession;
use crate::service::store::{NewAuditEntry, now_ms};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    tenant: String,
}

/// Starts a sign-in: a fresh state (also set as a cookie, binding the
/// callback to this browser), nonce and PKCE verifier; then off to the
/// provider.
pub async fn login(
    State(st): State<AppState>,
    parts: Parts,
    q: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = limited(&st, &parts).await {
        return r;
    }
    let Some(web) = st.web.clone() else {
        return message(
            StatusCode::NOT_FOUND,
            "Sign-in is not enabled",
            "The operator has not configured sign-in ([web] in the service configuration).",
        );
    };
    let Ok(Query(q)) = q else {
        return message(
            StatusCode::BAD_REQUEST,
            "Which organisation?",
            "Choose your organisation on the start page.",
        );
    };
    let Some(provider) = web.providers.get(&q.tenant).cloned() else {
        return message(
            StatusCode::NOT_FOUND,
            "Unknown organisation",
            "No sign-in is configured for this organisation; check the link or ask the operator.",
        );
    };
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let redirect = web.config.redirect_uri();
    let (s, n, v) = (state.clone(), nonce.clone(), verifier.clone());
    let url =
        tokio::task::spawn_blocking(move || provider.authorize_url(&redirect, &s, &n, &v)).await;
    let url = match url {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::warn!(tenant = %q.tenant, error = %e, "sign-in: identity provider unusable");
            return message(
                StatusCode::BAD_GATEWAY,
                "The identity provider is unavailable",
                "Sign-in could not reach your organisation's identity provider. Try again in a minute; if it persists, tell the operator.",
            );
        }
        Err(e) => return message_internal(e),
    };
    web.remember(
        state.clone(),
        Pending {
            tenant: q.tenant,
            nonce,
            verifier,
            started: Instant::now(),
        },
    );
    let mut resp = see_other(&url);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &state, "/auth", 600),
    );
    resp
}

/// Sign-in counts toward the address's request rate like the API: an
/// address cannot flood the provider, or the pending sign-ins, from here.
async fn limited(st: &AppState, parts: &Parts) -> Option<Response> {
    let ip = crate::service::api::extract::client_ip(parts, st);
    let refused = st.abuse.hit_ip(&ip).await.err()?;
    let (mut r, retry) = match refused {
        Refused::Limited(retry) => {
            st.metrics.rate_limited.inc();
            let r = message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Too many requests from your address; wait a minute and try again.",
            );
            (r, retry)
        }
        // The limit could not be checked (see `Abuse::run`), or (never
        // from `hit_ip`) a lockout.
        _ => {
            let r = message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The server cannot take sign-ins just now; try again in a few seconds.",
            );
            (r, std::time::Duration::from_secs(5))
        }
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(r)
}

fn message_internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sign-in failed",
        "The server failed to sign you in; the operator's log has the details.",
    )
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider sends the browser back here with a code: exchanged, the ID
/// token verified, the role mapped; then a new session (any session the
/// browser had is ended: the id rotates at sign-in).
pub async fn callback(
    State(st): State<AppState>,
    parts: Parts,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = limited(&st, &parts).await {
        return r;
    }
    let Some(web) = st.web.clone() else {
        return message(
            StatusCode::NOT_FOUND,
            "Sign-in is not enabled",
            "The operator has not configured sign-in.",
        );
    };
    let refused = |why: &str| message(StatusCode::BAD_REQUEST, "Sign-in refused", why);
    let Ok(Query(q)) = q else {
        return refused(
            "The identity provider's answer was not understood. Start again from the start page.",
        );
    };
    if let Some(e) = q.error.as_deref() {
        return refused(&format!(
            "The identity provider did not sign you in ({}). Start again from the start page.",
            e.chars().take(60).collect::<String>()
        ));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refused(
            "The identity provider's answer lacks a code or state. Start again from the start page.",
        );
    };
    let bound = cookie(&headers, SIGN_IN_COOKIE).is_some_and(|c| super::session::same(c, &state));
    let pending = bound.then(|| web.take(&state)).flatten();
    let Some(p) = pending else {
        return refused(
            "This sign-in was not started in this browser, took too long or was already used. Start again from the start page.",
        );
    };
    let Some(provider) = web.providers.get(&p.tenant).cloned() else {
        return refused("Sign-in for this organisation is no longer configured.");
    };
    let redirect = web.config.redirect_uri();
    let nonce = p.nonce.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let token = provider.exchange(&code, &p.verifier, &redirect)?;
        let claims = provider.verify(&token, &nonce, now_ms() / 1000)?;
        let person = provider.person(&claims);
        let role = super::oidc::role_of(&provider.config, &person.groups);
        let scope = (role == Some(crate::service::auth::Role::ReleaseManager))
            .then(|| super::oidc::scope_of(&provider.config, &person.groups))
            .flatten();
        Ok::<_, super::oidc::OidcError>((person, role, scope))
    })
    .await;
    let (person, role, scope) = match verified {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(tenant = %p.tenant, error = %e, "sign-in refused");
            audit(
                &st,
                &p.tenant,
                "web.sign_in_refused",
                None,
                Some(e.to_string()),
            )
            .await;
            return refused(
                "Your identity provider's answer did not pass the checks (see the operator's log). Start again from the start page.",
            );
        }
        Err(e) => return message_internal(e),
    };
    let Some(role) = role else {
        audit(
            &st,
            &p.tenant,
            "web.sign_in_refused",
            Some(&person.subject),
            Some("no role mapped".into()),
        )
        .await;
        return message(
            StatusCode::FORBIDDEN,
            "No access",
            "You signed in, but your account has no role here. Ask your organisation's administrator for access.",
        );
    };
    let tenant_name = p.tenant.clone();
    let tenant = match st.store.call(move |s| s.tenant_by_name(&tenant_name)).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                "Unknown organisation",
                "This organisation does not exist on this server; tell the operator.",
            );
        }
        Err(e) => return message_internal(e),
    };
    let token = random_token();
    let (hash, csrf) = (token_hash(&token), random_token());
    let replaces = cookie(&headers, SESSION_COOKIE).map(token_hash);
    let now = now_ms();
    let absolute = web.config.absolute;
    let idle = web.config.idle.as_millis() as i64;
    let (subject, name, role_s) = (person.subject.clone(), person.name.clone(), role.as_str());
    let saved = st
        .store
        .call(move |s| {
            s.sweep_sessions(now, idle)?;
            s.insert_session(
                &NewSession {
                    token_hash: &hash,
                    tenant: &tenant.id,
                    subject: &subject,
                    name: &name,
                    role: role_s,
                    environments: scope.as_deref(),
                    csrf: &csrf,
                    now,
                    expires_at: now + absolute.as_millis() as i64,
                },
                replaces.as_deref(),
            )
        })
        .await;
    if let Err(e) = saved {
        return message_internal(e);
    }
    audit(
        &st,
        &p.tenant,
        "web.sign_in",
        Some(&person.subject),
        Some(format!("role {}", role.as_str())),
    )
    .await;
    let mut resp = see_other("/play");
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, "/", absolute.as_secs()),
    );
    h.append(header::SET_COOKIE, clear_cookie(SIGN_IN_COOKIE, "/auth"));
    resp
}

async fn audit(
    st: &AppState,
    tenant: &str,
    action: &str,
    subject: Option<&str>,
    detail: Option<String>,
) {
    let entry = NewAuditEntry {
        actor: subject.map_or_else(
            || "anonymous".to_owned(),
            |s| format!("user:{}", s.chars().take(64).collect::<String>()),
        ),
        tenant: Some(tenant.to_owned()),
        action: action.to_owned(),
        target: None,
        detail,
    };
    if let Err(e) = st
        .store
        .call(move |s| s.audit().append(&entry).map(|_| ()))
        .await
    {
        tracing::error!(error = %e, "could not audit a sign-in");
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// Ends the session (the form carries its CSRF token).
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let session = match super::session::current(&st, &headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Some(s) = session {
        let ok = form.is_ok_and(|Form(f)| super::session::same(&f.csrf, &s.csrf));
        if !ok {
            return message(
                StatusCode::FORBIDDEN,
                "Sign-out refused",
                "The form was stale; reload the page and sign out again.",
            );
        }
        if let Some(token) = cookie(&headers, SESSION_COOKIE) {
            let hash = token_hash(token);
            if let Err(e) = st.store.call(move |s| s.delete_session(&hash)).await {
                return message_internal(e);
            }
        }
        audit(&st, &s.tenant_name, "web.sign_out", Some(&s.subject), None).await;
    }
    let mut resp = see_other("/");
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, "/"));
    resp
}
