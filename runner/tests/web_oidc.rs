//! Sign-in with OpenID Connect against a real provider (`oidc-provider-mock`
//! from PyPI, started here): tokens from the wrong issuer, expired, for
//! another audience or with a tampered signature are refused; keys are
//! fetched again when the provider rotates them; the whole flow through the
//! service's routes gives a session cookie that the API accepts, with CSRF
//! tokens required for changes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use base64::Engine as _;
use common::oidc::{Provider, free_port, tools_or_skip, web_config};
use runner::service::auth::Role;
use runner::service::tls::ClientAddr;
use runner::service::web::config::{Secret, SignInConfig};
use runner::service::web::jwt::TokenError;
use runner::service::web::oidc::{self, OidcError};
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn sign_in_config(issuer: &str, client: &(String, String)) -> SignInConfig {
    SignInConfig {
        tenant: "alpha".into(),
        issuer: issuer.into(),
        client_id: client.0.clone(),
        client_secret: Secret(client.1.clone()),
        role_claim: "roles".into(),
        roles: BTreeMap::from([("release".to_owned(), Role::ReleaseManager)]),
        default_role: None,
        release_scopes: BTreeMap::new(),
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn refused(r: Result<serde_json::Map<String, Value>, OidcError>) -> TokenError {
    match r {
        Err(OidcError::Token(t)) => t,
        other => panic!("expected a token refusal, got {other:?}"),
    }
}

#[test]
fn id_tokens_from_a_real_provider_are_checked() {
    if !tools_or_skip("id_tokens_from_a_real_provider_are_checked") {
        return;
    }
    let port = free_port();
    let idp = Provider::start(port);
    let ours = idp.register(&[REDIRECT]);
    let theirs = idp.register(&[REDIRECT]);
    let p = oidc::Provider::new(sign_in_config(&idp.issuer, &ours));

    let good = idp.id_token(&idp.issuer, &ours, REDIRECT, "rita", "n-1");
    let c = p
        .verify(&good, "n-1", now())
        .expect("a good token verifies");
    let person = p.person(&c);
    assert_eq!(
        (person.subject.as_str(), person.groups.clone()),
        ("rita", vec!["release".to_owned()])
    );
    assert_eq!(
        oidc::role_of(&p.config, &person.groups),
        Some(Role::ReleaseManager)
    );
    assert_eq!(
        oidc::role_of(&p.config, &["devs".to_owned()]),
        None,
        "unmapped, no default: refused"
    );
    // Approver groups may be scoped to environments, as approver keys are.
    let mut scoped = p.config.clone();
    assert_eq!(
        oidc::scope_of(&scoped, &person.groups),
        None,
        "unscoped: every environment"
    );
    scoped.release_scopes = BTreeMap::from([("release".to_owned(), vec!["demo".to_owned()])]);
    assert_eq!(
        oidc::scope_of(&scoped, &person.groups),
        Some(vec!["demo".to_owned()])
    );

    // The same provider reached as `localhost` names itself so: a valid
    // signature from the wrong issuer.
    let other_issuer = idp.id_token(
        &format!("http://localhost:{port}"),
        &ours,
        REDIRECT,
        "rita",
        "n-2",
    );
    assert!(matches!(
        refused(p.verify(&other_issuer, "n-2", now())),
        TokenError::Issuer { .. }
    ));

    let for_them = idp.id_token(&idp.issuer, &theirs, REDIRECT, "rita", "n-3");
    assert!(matches!(
        refused(p.verify(&for_them, "n-3", now())),
        TokenError::Audience { .. }
    ));

    let exp = claims(&good)["exp"].as_i64().unwrap();
    let later = exp + oidc::LEEWAY_SECS + 1;
    assert!(matches!(
        refused(p.verify(&good, "n-1", later)),
        TokenError::Expired(_)
    ));

    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut forged = claims(&good);
    forged["sub"] = "ada".into();
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = format!("{head}.{forged_payload}.{sig}");
    assert_eq!(
        refused(p.verify(&tampered, "n-1", now())),
        TokenError::Signature
    );
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    bytes[10] ^= 1;
    let flipped = format!(
        "{head}.{payload}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    assert_eq!(
        refused(p.verify(&flipped, "n-1", now())),
        TokenError::Signature
    );

    assert_eq!(
        refused(p.verify(&good, "another-nonce", now())),
        TokenError::Nonce
    );
}

#[test]
fn keys_are_fetched_again_when_the_provider_rotates_them() {
    if !tools_or_skip("keys_are_fetched_again_when_the_provider_rotates_them") {
        return;
    }
    let port = free_port();
    let idp = Provider::start(port);
    let client = idp.register(&[REDIRECT]);
    let p = oidc::Provider::new(sign_in_config(&idp.issuer, &client));
    let first = idp.id_token(&idp.issuer, &client, REDIRECT, "rita", "n");
    p.verify(&first, "n", now()).unwrap();
    assert_eq!(p.key_fetches(), 1);
    p.verify(&first, "n", now()).unwrap();
    assert_eq!(p.key_fetches(), 1, "known keys come from the cache");

    // A restarted provider has a new key (and forgot its clients).
    idp.stop();
    let idp = Provider::start(port);
    let client2 = idp.register(&[REDIRECT]);
    let p2 = oidc::Provider::new(sign_in_config(&idp.issuer, &client2));
    p2.verify(
        &idp.id_token(&idp.issuer, &client2, REDIRECT, "rita", "n"),
        "n",
        now(),
    )
    .unwrap();
    // The first verifier still caches the old key: a token signed with
    // the new one names an unknown key id, and the set is fetched again
    // (once the rate limit allows).
    // (The restarted provider gave a new client id: past the signature,
    // the audience is all that differs.)
    let rotated = idp.id_token(&idp.issuer, &client2, REDIRECT, "rita", "n");
    std::thread::sleep(oidc::REFETCH_EVERY + Duration::from_millis(200));
    match p.verify(&rotated, "n", now()) {
        Err(OidcError::Token(TokenError::Audience { .. })) => {}
        other => panic!("the new key should verify and only the audience differ: {other:?}"),
    }
    assert_eq!(
        p.key_fetches(),
        2,
        "an unknown key id fetched the set again"
    );
    // Unknown key ids within the rate limit do not fetch again.
    let unknown = {
        let (h, rest) = rotated.split_once('.').unwrap();
        let mut header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap();
        header["kid"] = "no-such-key".into();
        format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string())
        )
    };
    for _ in 0..5 {
        assert!(matches!(
            refused(p.verify(&unknown, "n", now())),
            TokenError::UnknownKey(_)
        ));
    }
    assert_eq!(
        p.key_fetches(),
        2,
        "forged key ids do not flood the provider"
    );
}

/// A request through the service's router from 192.0.2.7 with `cookies`.
fn request(
    method: &str,
    uri: &str,
    cookies: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if !cookies.is_empty() {
        b = b.header("cookie", cookies);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(ClientAddr("192.0.2.7:4000".parse().unwrap())));
    req
}

fn set_cookies(resp: &axum::http::Response<Body>) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_pair(set: &[String], name: &str) -> String {
    set.iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {set:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_session_the_api_accepts_with_csrf_tokens() {
    if !tools_or_skip("signing_in_gives_a_session_the_api_accepts_with_csrf_tokens") {
        return;
    }
    let idp = tokio::task::spawn_blocking(|| Provider::start(free_port()))
        .await
        .unwrap();
    let public = "http://localhost:8080";
    let callback = format!("{public}/auth/callback");
    let client = idp.register(&[&callback]);
    let dir = test_support::TempDir::new("web-oidc");
    let (svc, _fake) = common::service::Service::fake(
        common::service::config(&web_config(dir.path(), public, &idp.issuer, &client)),
        false,
    );

    // Without `[web]`, there are no pages: the API's JSON 404.
    let (plain, _) = common::service::Service::fake(common::service::config(""), false);
    let (status, body, _) =
        common::service::split(plain.send(request("GET", "/play", "", &[], None)).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Signed out, pages send people to the start page, which offers alpha.
    let resp = svc.send(request("GET", "/play", "", &[], None)).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["location"].to_str().unwrap()
        ),
        (303, "/")
    );
    let (status, _, _) =
        common::service::split(svc.send(request("GET", "/v1/runs", "", &[], None)).await).await;
    assert_eq!(status, 401);

    let sign_in = |sub: &'static str| {
        let svc = &svc;
        let idp = &idp;
        async move {
            let resp = svc
                .send(request("GET", "/auth/login?tenant=alpha", "", &[], None))
                .await;
            assert_eq!(resp.status(), 303);
            let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
            assert!(
                to_idp.starts_with(&idp.issuer) && to_idp.contains("code_challenge_method=S256"),
                "{to_idp}"
            );
            let signin_cookie = cookie_pair(&set_cookies(&resp), "runner_signin");
            let back = {
                let to_idp = to_idp.clone();
                let idp_url = idp.issuer.clone();
                tokio::task::spawn_blocking(move || {
                    let resp = common::oidc::agent()
                        .post(&to_idp)
                        .send_form([("sub", sub)])
                        .unwrap();
                    assert_eq!(resp.status(), 302, "{idp_url} refused");
                    resp.headers()["location"].to_str().unwrap().to_owned()
                })
                .await
                .unwrap()
            };
            let path = back.strip_prefix(public).unwrap().to_owned();
            (path, signin_cookie)
        }
    };

    let (path, signin) = sign_in("dev").await;
    // The callback from another browser (without the sign-in cookie) is refused.
    let resp = svc.send(request("GET", &path, "", &[], None)).await;
    assert_eq!(resp.status(), 400);
    drop((path, signin));
    let (path, signin) = sign_in("dev").await;
    let resp = svc
        .send(request(
            "GET",
            &path,
            &format!("{signin}; runner_session=stale"),
            &[],
            None,
        ))
        .await;
    assert_eq!(resp.status(), 303, "the callback signs in");
    assert_eq!(resp.headers()["location"], "/play");
    let set = set_cookies(&resp);
    let session_header = set
        .iter()
        .find(|c| c.starts_with("runner_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(session_header.contains(attr), "{session_header}");
    }
    let session = cookie_pair(&set, "runner_session");
    // A replayed callback signs nobody in.
    let resp = svc.send(request("GET", &path, &signin, &[], None)).await;
    assert_eq!(resp.status(), 400);

    let resp = svc.send(request("GET", "/play", &session, &[], None)).await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        html.contains("dev &lt;b&gt;bold&lt;/b&gt;"),
        "the name from the token is escaped: {html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        html.contains("href=\"/workflows\"") && !html.contains("href=\"/admin\""),
        "a developer's navigation"
    );

    let (status, body, head) = common::service::split(
        svc.send(request("GET", "/v1/runs", &session, &[], None))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        head.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'",
        "the API keeps its own policy"
    );
    let run = common::service::python("print(1)");
    let (status, body, _) = common::service::split(
        svc.send(request(
            "POST",
            "/v1/runs",
            &session,
            &[],
            Some(run.clone()),
        ))
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("csrf")),
        "{body}"
    );
    let (status, body, _) = common::service::split(
        svc.send(request(
            "POST",
            "/v1/runs",
            &session,
            &[("x-csrf-token", "wrong")],
            Some(run.clone()),
        ))
        .await,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = common::service::split(
        svc.send(request(
            "POST",
            "/v1/runs",
            &session,
            &[("x-csrf-token", &csrf)],
            Some(run),
        ))
        .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["submitted_by"], "user:dev");
    // API keys work as before, cookie or not.
    let (status, _, _) = common::service::split(
        svc.send(request(
            "GET",
            "/v1/runs",
            "",
            &[(
                "authorization",
                &format!("Bearer {}", svc.key("alpha", Role::Learner)),
            )],
            None,
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200);

    // Sign-out needs the form's token, then ends the session.
    let form = |token: &str| {
        let mut r = request("POST", "/auth/logout", &session, &[], None);
        r.headers_mut().insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        *r.body_mut() = Body::from(format!("csrf={token}"));
        r
    };
    assert_eq!(svc.send(form("wrong")).await.status(), 403);
    let resp = svc.send(form(&csrf)).await;
    assert_eq!(resp.status(), 303);
    assert!(
        set_cookies(&resp)
            .iter()
            .any(|c| c.starts_with("runner_session=;") && c.contains("Max-Age=0"))
    );
    let (status, _, _) = common::service::split(
        svc.send(request("GET", "/v1/runs", &session, &[], None))
            .await,
    )
    .await;
    assert_eq!(status, 401, "signed out");

    // Audited: sign-in and sign-out.
    let actions: Vec<String> = svc
        .store
        .audit()
        .all()
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"web.sign_in".to_owned()) && actions.contains(&"web.sign_out".to_owned()),
        "{actions:?}"
    );
}
