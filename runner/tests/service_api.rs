//! The HTTP API in process: every endpoint and error path, the permission
//! matrix, tenant isolation, rate limits, lockout, the bounded queue and the
//! audit trail. The scheduler is not started, so runs stay queued: these
//! tests are about the API layer (sandbox execution is in service_e2e.rs).

mod common;

use common::service::{Service, config, python};
use runner::service::auth::Role;
use runner::service::store::audit::verify;
use serde_json::json;

async fn service(extra: &str) -> Service {
    Service::fake(config(extra), false).0
}

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{body}"
    );
}

#[tokio::test]
async fn submit_queues_durably_and_get_and_list_show_it() {
    let s = service("").await;
    let key = s.key("alpha", Role::Learner);
    let (status, body, head) = s
        .call("POST", "/v1/runs", Some(key), Some(python("print(1)")))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["language"], "python");
    let id = body["id"].as_str().unwrap();
    assert_eq!(head.headers()["location"], format!("/v1/runs/{id}"));

    let (status, got, _) = s
        .call("GET", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], id);
    assert!(got["result"].is_null());

    let (status, list, _) = s.call("GET", "/v1/runs", Some(key), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["runs"][0]["id"], id);
    assert!(list["next_cursor"].is_null());
}

#[tokio::test]
async fn listing_pages_with_a_cursor() {
    let s = service("").await;
    let key = s.key("alpha", Role::Developer);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, b, _) = s
            .call("POST", "/v1/runs", Some(key), Some(python("")))
            .await;
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    let (_, p1, _) = s.call("GET", "/v1/runs?limit=2", Some(key), None).await;
    let got: Vec<&str> = p1["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()], "newest first");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2, _) = s
        .call(
            "GET",
            &format!("/v1/runs?limit=2&cursor={cursor}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(p2["runs"][0]["id"], ids[2].as_str());
    let (status, b, _) = s.call("GET", "/v1/runs?limit=0", Some(key), None).await;
    assert_error(status, &b, 400, "invalid_query");
    let (status, b, _) = s.call("GET", "/v1/runs?cursor=abc", Some(key), None).await;
    assert_error(status, &b, 400, "invalid_query");
    let (status, _, _) = s.call("GET", "/v1/runs?bogus=1", Some(key), None).await;
    assert_eq!(status, 400, "unknown query parameters are refused");
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let s = service("max_body_bytes = 2048").await;
    let key = s.key("alpha", Role::Learner);
    let cases = [
        (
            json!({"language": "python", "files": [{"name": "a.py", "content": ""}], "network": "bridge"}),
            400,
            "invalid_request",
            "network",
        ),
        (
            json!({"language": "python", "files": [{"name": "a.py", "content": ""}], "limits": {"network": true}}),
            400,
            "invalid_request",
            "network",
        ),
        (
            json!({"language": "cobol", "files": [{"name": "a", "content": ""}]}),
            400,
            "unknown_language",
            "cobol",
        ),
        (
            json!({"language": "python", "version": "2", "files": [{"name": "a", "content": ""}]}),
            400,
            "unknown_version",
            "python 2",
        ),
        (
            json!({"language": "python", "files": [{"name": "../etc/passwd", "content": ""}]}),
            400,
            "invalid_submission",
            "'/'",
        ),
        (
            json!({"language": "python", "files": [{"name": "", "content": ""}]}),
            400,
            "invalid_submission",
            "empty",
        ),
        (
            json!({"language": "python", "files": [{"content": ""}]}),
            400,
            "invalid_file",
            "name is required",
        ),
        (
            json!({"language": "python", "files": []}),
            400,
            "invalid_submission",
            "at least one file",
        ),
        (
            json!({"language": "python", "files": [{"name": "a", "content": "!!", "encoding": "base64"}]}),
            400,
            "invalid_file",
            "base64",
        ),
        (
            json!({"language": "python", "files": [{"name": "a", "content": ""}], "limits": {"run_memory_mb": 999999}}),
            400,
            "limit_exceeded",
            "run_memory_mb",
        ),
        (
            json!({"language": "python", "files": [{"name": "a", "content": ""}], "limits": {"run_wall_time_ms": 0}}),
            400,
            "limit_exceeded",
            "run_wall_time_ms",
        ),
        (
            json!({"language": "python"}),
            400,
            "invalid_request",
            "files",
        ),
        (
            json!({"language": "python", "files": [{"name": "a", "content": "x".repeat(4000)}]}),
            413,
            "payload_too_large",
            "2048",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (got, b, _) = s
            .call("POST", "/v1/runs", Some(key), Some(body.clone()))
            .await;
        assert_error(got, &b, status, code);
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // Not JSON, and not declared as JSON.
    let req = axum::http::Request::post("/v1/runs")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let (status, b, _) = common::service::split(s.send(req).await).await;
    assert_error(status, &b, 400, "invalid_json");
    let req = axum::http::Request::post("/v1/runs")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let (status, b, _) = common::service::split(s.send(req).await).await;
    assert_error(status, &b, 415, "unsupported_media_type");
}

#[tokio::test]
async fn authentication_failures() {
    let s = service("").await;
    let (status, b, head) = s.call("GET", "/v1/runs", None, None).await;
    assert_error(status, &b, 401, "unauthenticated");
    assert_eq!(
        head.headers()["www-authenticate"],
        "Bearer realm=\"runner\""
    );
    let valid = s.key("alpha", Role::Admin).to_owned();
    let wrong_secret = format!(
        "{}{}",
        &valid[..valid.len() - 1],
        if valid.ends_with('A') { 'B' } else { 'A' }
    );
    for bad in [
        "garbage",
        "rk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        wrong_secret.as_str(),
    ] {
        let (status, b, _) = s.call("GET", "/v1/runs", Some(bad), None).await;
        assert_error(status, &b, 401, "unauthenticated");
        assert!(!b.to_string().contains(bad), "the key is not echoed");
    }
    // Revoked keys stop working at once.
    let dev = s.key("alpha", Role::Developer).to_owned();
    let id = &dev[3..19];
    let (status, _, _) = s
        .call("DELETE", &format!("/v1/keys/{id}"), Some(&valid), None)
        .await;
    assert_eq!(status, 200);
    let (status, b, _) = s.call("GET", "/v1/runs", Some(&dev), None).await;
    assert_error(status, &b, 401, "unauthenticated");
    // Piston's bare Authorization header works too.
    let other = s.key("alpha", Role::Learner);
    let req = axum::http::Request::get("/api/v2/runtimes")
        .header("authorization", other)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(s.send(req).await.status(), 200);
}

/// Each role × each action, on a run of another key of the same tenant.
#[tokio::test]
async fn permission_matrix() {
    let s = service("").await;
    // A run owned by alpha's learner, and one owned by each role's key.
    let owner = s.key("alpha", Role::Learner).to_owned();
    let (_, b, _) = s
        .call("POST", "/v1/runs", Some(&owner), Some(python("")))
        .await;
    let others_run = b["id"].as_str().unwrap().to_owned();

    // (role, read other's run, list sees other's run, cancel other's run, manage keys)
    let table = [
        (Role::Learner, false, false, false, false),
        (Role::Developer, true, true, false, false),
        (Role::ReleaseManager, true, true, false, false),
        (Role::Admin, true, true, true, true),
    ];
    for (role, read, list, cancel, keys) in table {
        let key = s.key("alpha", role).to_owned();
        if role == Role::Learner {
            // The owner itself is alpha's learner: use a second learner key.
            continue;
        }
        // Everyone submits, reads and cancels their own runs.
        let (st, own, _) = s
            .call("POST", "/v1/runs", Some(&key), Some(python("")))
            .await;
        assert_eq!(st, 202, "{role:?} submit");
        let own_id = own["id"].as_str().unwrap();
        let (st, _, _) = s
            .call("GET", &format!("/v1/runs/{own_id}"), Some(&key), None)
            .await;
        assert_eq!(st, 200, "{role:?} read own");
        let (st, _, _) = s.call("GET", "/v1/languages", Some(&key), None).await;
        assert_eq!(st, 200, "{role:?} languages");

        let (st, _, _) = s
            .call("GET", &format!("/v1/runs/{others_run}"), Some(&key), None)
            .await;
        assert_eq!(st, if read { 200 } else { 404 }, "{role:?} read other's");
        let (_, l, _) = s.call("GET", "/v1/runs", Some(&key), None).await;
        let ids: Vec<&str> = l["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.contains(&others_run.as_str()), list, "{role:?} list");
        let (st, _, _) = s.call("GET", "/v1/keys", Some(&key), None).await;
        assert_eq!(st, if keys { 200 } else { 403 }, "{role:?} list keys");
        let (st, _, _) = s
            .call(
                "POST",
                "/v1/keys",
                Some(&key),
                Some(json!({"role": "learner"})),
            )
            .await;
        assert_eq!(st, if keys { 201 } else { 403 }, "{role:?} create key");
        if !cancel {
            let (st, _, _) = s
                .call(
                    "DELETE",
                    &format!("/v1/runs/{others_run}"),
                    Some(&key),
                    None,
                )
                .await;
            assert_eq!(st, if read { 403 } else { 404 }, "{role:?} cancel other's");
        }
        let (st, c, _) = s
            .call("DELETE", &format!("/v1/runs/{own_id}"), Some(&key), None)
            .await;
        assert_eq!(st, 200, "{role:?} cancel own: {c}");
    }

    // The learner row, with a second learner key of alpha.
    let k = runner::service::auth::mint_key();
    let alpha = s.store.tenant_by_name("alpha").unwrap().unwrap();
    s.store
        .insert_key(
            &alpha.id,
            &runner::service::store::NewKey {
                id: &k.id,
                role: "learner",
                secret_hash: &k.secret_hash,
                label: "",
                created_by: "t",
                environments: None,
            },
        )
        .unwrap();
    let learner2 = k.text;
    let (st, _, _) = s
        .call(
            "GET",
            &format!("/v1/runs/{others_run}"),
            Some(&learner2),
            None,
        )
        .await;
    assert_eq!(st, 404, "a learner cannot read another learner's run");
    let (_, l, _) = s.call("GET", "/v1/runs", Some(&learner2), None).await;
    assert!(
        l["runs"].as_array().unwrap().is_empty(),
        "a learner lists only their own runs"
    );
    let (st, _, _) = s
        .call(
            "DELETE",
            &format!("/v1/runs/{others_run}"),
            Some(&learner2),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = s.call("GET", "/v1/keys", Some(&learner2), None).await;
    assert_eq!(st, 403);

    // Admin cancels another key's run.
    let (st, c, _) = s
        .call(
            "DELETE",
            &format!("/v1/runs/{others_run}"),
            Some(s.key("alpha", Role::Admin)),
            None,
        )
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["state"], "cancelled");
}

#[tokio::test]
async fn tenants_cannot_reach_each_others_runs() {
    let s = service("").await;
    let (_, b, _) = s
        .call(
            "POST",
            "/v1/runs",
            Some(s.key("alpha", Role::Learner)),
            Some(python("")),
        )
        .await;
    let id = b["id"].as_str().unwrap();
    for role in Role::ALL {
        let key = s.key("beta", role);
        for (method, path) in [
            ("GET", format!("/v1/runs/{id}")),
            ("DELETE", format!("/v1/runs/{id}")),
            ("GET", format!("/v1/runs/{id}/events")),
        ] {
            let (status, body, _) = s.call(method, &path, Some(key), None).await;
            assert_error(status, &body, 404, "not_found");
        }
        let (_, l, _) = s.call("GET", "/v1/runs", Some(key), None).await;
        assert!(l["runs"].as_array().unwrap().is_empty(), "{role:?}: {l}");
    }
    // Keys too: beta's admin cannot revoke alpha's keys.
    let alpha_key = s.key("alpha", Role::Learner);
    let (status, _, _) = s
        .call(
            "DELETE",
            &format!("/v1/keys/{}", &alpha_key[3..19]),
            Some(s.key("beta", Role::Admin)),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = s.call("GET", "/v1/languages", Some(alpha_key), None).await;
    assert_eq!(status, 200, "alpha's key still works");
}

#[tokio::test]
async fn rate_limits_per_key_and_per_address() {
    let s = service("[rate_limit]\nper_key = 3\nper_ip = 5\nwindow_secs = 60").await;
    let a = s.key("alpha", Role::Learner);
    for _ in 0..3 {
        assert_eq!(
            s.call_from("GET", "/v1/languages", Some(a), None, "198.51.100.1")
                .await
                .0,
            200
        );
    }
    let (status, b, head) = s
        .call_from("GET", "/v1/languages", Some(a), None, "198.51.100.2")
        .await;
    assert_error(status, &b, 429, "rate_limited");
    assert!(
        head.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another key from the first address still has room, until the
    // address's own limit (5) is reached.
    let d = s.key("alpha", Role::Developer);
    for _ in 0..2 {
        assert_eq!(
            s.call_from("GET", "/v1/languages", Some(d), None, "198.51.100.1")
                .await
                .0,
            200
        );
    }
    let (status, b, _) = s
        .call_from("GET", "/v1/languages", Some(d), None, "198.51.100.1")
        .await;
    assert_error(status, &b, 429, "rate_limited");
}

#[tokio::test]
async fn repeated_failures_lock_an_address_out_until_it_lifts() {
    let s = service("[lockout]\nfailures = 3\nwindow_secs = 60\nduration_secs = 1").await;
    let good = s.key("alpha", Role::Learner);
    for _ in 0..3 {
        let (status, _, _) = s
            .call_from("GET", "/v1/languages", Some("rk_bad"), None, "203.0.113.9")
            .await;
        assert_eq!(status, 401);
    }
    let (status, b, head) = s
        .call_from("GET", "/v1/languages", Some(good), None, "203.0.113.9")
        .await;
    assert_error(status, &b, 429, "locked_out");
    assert!(head.headers().contains_key("retry-after"));
    // Other addresses are unaffected.
    assert_eq!(
        s.call_from("GET", "/v1/languages", Some(good), None, "203.0.113.10")
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        s.call_from("GET", "/v1/languages", Some(good), None, "203.0.113.9")
            .await
            .0,
        200,
        "the lock lifted"
    );
    let entries = s.store.audit().all().unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "auth.failure")
            .count(),
        3
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "auth.lockout" && e.target.as_deref() == Some("ip:203.0.113.9"))
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = service("queue_capacity = 2").await;
    let key = s.key("alpha", Role::Learner);
    for _ in 0..2 {
        assert_eq!(
            s.call("POST", "/v1/runs", Some(key), Some(python("")))
                .await
                .0,
            202
        );
    }
    let (status, b, head) = s
        .call("POST", "/v1/runs", Some(key), Some(python("")))
        .await;
    assert_error(status, &b, 429, "queue_full");
    assert!(head.headers().contains_key("retry-after"));
    // Cancelling a queued run makes room.
    let (_, l, _) = s.call("GET", "/v1/runs", Some(key), None).await;
    let id = l["runs"][0]["id"].as_str().unwrap();
    let (status, c, _) = s
        .call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(c["state"], "cancelled");
    let (status, b, _) = s
        .call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    assert_error(status, &b, 409, "already_final");
    assert_eq!(
        s.call("POST", "/v1/runs", Some(key), Some(python("")))
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn admins_manage_keys_and_keys_are_shown_once() {
    let s = service("").await;
    let admin = s.key("alpha", Role::Admin);
    let (status, created, _) = s
        .call(
            "POST",
            "/v1/keys",
            Some(admin),
            Some(json!({"role": "developer", "label": "ci"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let text = created["key"].as_str().unwrap();
    assert!(text.starts_with("rk_"));
    assert_eq!(
        s.call("GET", "/v1/runs", Some(text), None).await.0,
        200,
        "the new key works"
    );
    let (_, list, _) = s.call("GET", "/v1/keys", Some(admin), None).await;
    assert!(
        !list.to_string().contains(text),
        "listing never shows a key"
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == created["id"] && k["role"] == "developer")
    );
    let (status, b, _) = s
        .call(
            "POST",
            "/v1/keys",
            Some(admin),
            Some(json!({"role": "root"})),
        )
        .await;
    assert_error(status, &b, 400, "invalid_role");
    let (status, b, _) = s
        .call("DELETE", "/v1/keys/0000000000000000", Some(admin), None)
        .await;
    assert_error(status, &b, 404, "not_found");
    let id = created["id"].as_str().unwrap();
    let (status, revoked, _) = s
        .call("DELETE", &format!("/v1/keys/{id}"), Some(admin), None)
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(s.call("GET", "/v1/runs", Some(text), None).await.0, 401);
}

#[tokio::test]
async fn operations_endpoints_and_http_hygiene() {
    let s = service("").await;
    let (status, b, head) = s.call("GET", "/healthz", None, None).await;
    assert_eq!((status, b["status"].as_str()), (200, Some("ok")));
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(head.headers()[name], value, "{name}");
    }
    assert!(
        !head.headers().contains_key("strict-transport-security"),
        "no HSTS over plain HTTP"
    );
    assert!(head.headers().contains_key("x-request-id"));

    let (status, b, _) = s.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["checks"]["engine"], "ok");

    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = s.send(req).await;
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    // Families by label (runs by status, durations) appear with their
    // first sample; these are always there.
    for metric in [
        "runner_queue_depth",
        "runner_runs_running",
        "runner_auth_failures_total",
        "runner_connections_refused_total",
        "runner_container_create_failures_total",
        "runner_container_remove_failures_total",
    ] {
        assert!(text.contains(metric), "{metric} missing");
    }

    let req = axum::http::Request::get("/.well-known/security.txt")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = s.send(req).await;
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.starts_with("Contact: mailto:") && text.contains("Expires: "),
        "{text}"
    );

    // A request id the client chose is kept (when sane) and echoed.
    let req = axum::http::Request::get("/healthz")
        .header("x-request-id", "trace-123")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(s.send(req).await.headers()["x-request-id"], "trace-123");

    let (status, b, _) = s.call("GET", "/nope", None, None).await;
    assert_error(status, &b, 404, "not_found");
    let (status, b, _) = s
        .call("PUT", "/v1/runs", Some(s.key("alpha", Role::Learner)), None)
        .await;
    assert_error(status, &b, 405, "method_not_allowed");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let s = service("").await;
    let (status, doc, _) = s.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    let served = [
        "POST /v1/runs",
        "GET /v1/runs",
        "GET /v1/runs/{id}",
        "DELETE /v1/runs/{id}",
        "GET /v1/runs/{id}/events",
        "GET /v1/languages",
        "POST /v1/keys",
        "GET /v1/keys",
        "DELETE /v1/keys/{id}",
        "GET /v1/openapi.json",
        "GET /api/v2/runtimes",
        "GET /api/v2/runtimes/",
        "POST /api/v2/execute",
        "POST /api/v2/execute/",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /.well-known/security.txt",
        "POST /v1/repos",
        "GET /v1/repos",
        "GET /v1/repos/{id}",
        "DELETE /v1/repos/{id}",
        "PUT /v1/repos/{id}/secrets/{name}",
        "DELETE /v1/repos/{id}/secrets/{name}",
        "POST /v1/repos/{id}/runs",
        "GET /v1/triggers/{id}",
        "GET /v1/workflow-runs",
        "GET /v1/workflow-runs/{id}",
        "DELETE /v1/workflow-runs/{id}",
        "GET /v1/workflow-runs/{id}/events",
        "GET /v1/workflow-runs/{id}/jobs/{job}/log",
        "POST /v1/hooks/github",
        "POST /v1/promotions",
        "GET /v1/promotions",
        "GET /v1/promotions/{id}",
        "DELETE /v1/promotions/{id}",
        "POST /v1/promotions/{id}/approvals",
        "GET /v1/environments",
        "GET /v1/environments/{name}",
    ];
    let served: std::collections::BTreeSet<String> = served.iter().map(|s| s.to_string()).collect();
    assert_eq!(documented, served);
    // As strict as the server.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["File"]["required"], json!(["name", "content"]));
    assert_eq!(schemas["File"]["properties"]["name"]["minLength"], 1);
    assert_eq!(schemas["RunRequest"]["properties"]["files"]["minItems"], 1);
    assert_eq!(
        schemas["KeyRequest"]["properties"]["label"]["maxLength"],
        200
    );
    let list = &doc["paths"]["/v1/runs"]["get"]["parameters"];
    let cursor = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert_eq!(cursor["schema"]["maxLength"], 64);
    // Every operation with a JSON body documents 415 (and 408).
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                for code in ["415", "408"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} does not document {code}"
                    );
                }
            }
        }
    }
    // Every schema reference resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
}

#[tokio::test]
async fn piston_routes_validate_in_pistons_error_shape() {
    let s = service("").await;
    let key = s.key("alpha", Role::Learner);
    let (status, runtimes, _) = s.call("GET", "/api/v2/runtimes", Some(key), None).await;
    assert_eq!(status, 200);
    let js = runtimes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "javascript")
        .unwrap();
    assert!(js["aliases"].as_array().unwrap().iter().any(|a| a == "js"));
    assert!(js["version"].is_string());

    let (status, b, _) = s.call("GET", "/api/v2/runtimes", None, None).await;
    assert_eq!(status, 401, "anonymous access is off by default");
    assert!(b["message"].is_string(), "{b}");
    for (body, needle) in [
        (
            json!({"language": "js", "files": [{"content": ""}]}),
            "version",
        ),
        (
            json!({"language": "brainfuck", "version": "*", "files": [{"content": ""}]}),
            "brainfuck",
        ),
        (
            json!({"language": "js", "version": "*", "files": [{"content": ""}], "run_timeout": -5}),
            "run_timeout",
        ),
        (
            json!({"language": "js", "version": "*", "files": [{"content": ""}], "run_memory_limit": 1i64 << 40}),
            "run_memory_mb",
        ),
    ] {
        let (status, b, _) = s
            .call("POST", "/api/v2/execute", Some(key), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {b}");
        assert!(b.get("error").is_none(), "Piston's shape: {b}");
        assert!(
            b["message"].as_str().unwrap().contains(needle),
            "{body}: {b}"
        );
    }
}

#[tokio::test]
async fn an_anonymous_tenant_serves_piston_without_keys_when_enabled() {
    let s = service("anonymous_tenant = \"beta\"").await;
    let (status, _, _) = s.call("GET", "/api/v2/runtimes", None, None).await;
    assert_eq!(status, 200);
    // /v1 still needs a key.
    let (status, _, _) = s.call("GET", "/v1/languages", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn security_events_are_audited_and_the_chain_holds() {
    let s = service("").await;
    let key = s.key("alpha", Role::Admin);
    let (_, b, _) = s
        .call("POST", "/v1/runs", Some(key), Some(python("")))
        .await;
    let id = b["id"].as_str().unwrap();
    s.call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    let (_, k, _) = s
        .call(
            "POST",
            "/v1/keys",
            Some(key),
            Some(json!({"role": "learner"})),
        )
        .await;
    s.call(
        "DELETE",
        &format!("/v1/keys/{}", k["id"].as_str().unwrap()),
        Some(key),
        None,
    )
    .await;
    s.call("GET", "/v1/runs", Some("rk_nope"), None).await;
    let entries = s.store.audit().all().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "run.submit",
        "run.cancel",
        "key.create",
        "key.revoke",
        "auth.failure",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    let submit = entries.iter().find(|e| e.action == "run.submit").unwrap();
    assert_eq!(submit.tenant.as_deref(), Some("alpha"));
    assert_eq!(submit.target.as_deref(), Some(format!("run:{id}").as_str()));
    assert!(submit.actor.starts_with("key:"));
    assert!(verify(&entries).is_empty());
    let log = serde_json::to_string(&entries).unwrap();
    assert!(
        !log.contains(k["key"].as_str().unwrap()),
        "no secret in the audit log"
    );
}

/// Issue 10: a malformed query string gets the JSON error body, not text.
#[tokio::test]
async fn query_string_errors_answer_the_json_error_body() {
    let s = service("").await;
    let key = s.key("alpha", Role::Developer);
    for (method, path, body) in [
        ("GET", "/v1/runs?limit=abc", None),
        ("GET", "/v1/runs?mine=perhaps", None),
        ("GET", "/v1/runs?unknown=1", None),
        ("POST", "/v1/runs?wait=yes", Some(python("print(1)"))),
        ("GET", "/v1/runs/whatever?combined=2", None),
    ] {
        let (status, b, head) = s.call(method, path, Some(key), body).await;
        assert_error(status, &b, 400, "invalid_query");
        assert!(
            head.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
    let long = format!("/v1/runs?cursor={}", "c".repeat(65));
    let (status, b, _) = s.call("GET", &long, Some(key), None).await;
    assert_error(status, &b, 400, "invalid_query");
}

/// Issue 10: an admin key cannot leave its tenant without an admin.
#[tokio::test]
async fn the_last_admin_key_of_a_tenant_cannot_be_revoked() {
    let s = service("").await;
    let admin = s.key("alpha", Role::Admin).to_owned();
    let own = &admin[3..19];
    let (status, b, _) = s
        .call("DELETE", &format!("/v1/keys/{own}"), Some(&admin), None)
        .await;
    assert_error(status, &b, 409, "last_admin_key");
    let (_, keys, _) = s.call("GET", "/v1/keys", Some(&admin), None).await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == own && k["revoked_at"].is_null()),
        "still active: {keys}"
    );
    // With a second admin key, the first may go.
    let (status, created, _) = s
        .call(
            "POST",
            "/v1/keys",
            Some(&admin),
            Some(json!({"role": "admin", "label": "successor"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, _, _) = s
        .call("DELETE", &format!("/v1/keys/{own}"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
}

/// Issue 9, finding 12: cursors are per tenant and opaque; another tenant's
/// volume changes nothing in them.
#[tokio::test]
async fn list_cursors_say_nothing_of_other_tenants() {
    let mut cursors = Vec::new();
    for others in [0, 25] {
        let s = service("").await;
        let alpha = s.key("alpha", Role::Developer);
        let beta = s.key("beta", Role::Developer);
        for i in 0..3 {
            for _ in 0..(others / 3) {
                s.call("POST", "/v1/runs", Some(beta), Some(python("1")))
                    .await;
            }
            let (status, _, _) = s
                .call(
                    "POST",
                    "/v1/runs",
                    Some(alpha),
                    Some(python(&format!("{i}"))),
                )
                .await;
            assert_eq!(status, 202);
        }
        let (_, page, _) = s.call("GET", "/v1/runs?limit=2", Some(alpha), None).await;
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        assert!(
            !cursor.chars().any(|c| c.is_ascii_digit()) || cursor.starts_with("c1."),
            "{cursor}"
        );
        let (_, next, _) = s
            .call(
                "GET",
                &format!("/v1/runs?limit=2&cursor={cursor}"),
                Some(alpha),
                None,
            )
            .await;
        assert_eq!(next["runs"].as_array().unwrap().len(), 1, "{next}");
        // Beta's cursor over its own runs reveals nothing of alpha's either.
        let (_, b, _) = s
            .call(
                "GET",
                &format!("/v1/runs?limit=100&cursor={cursor}"),
                Some(beta),
                None,
            )
            .await;
        assert!(b["runs"].as_array().unwrap().len() <= 2);
        cursors.push(cursor);
    }
    assert_eq!(
        cursors[0], cursors[1],
        "alpha's cursor is the same whatever beta submitted"
    );
}

/// Issue 9, finding 7: concurrent wrong secrets with a known key id run at
/// most the lockout threshold of slow hashes; the rest are refused before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_secrets_are_counted_before_they_are_checked() {
    let s = std::sync::Arc::new(service("[lockout]\nfailures = 5\nwindow_secs = 60").await);
    let valid = s.key("alpha", Role::Learner).to_owned();
    let wrong = format!(
        "{}{}",
        &valid[..valid.len() - 1],
        if valid.ends_with('A') { 'B' } else { 'A' }
    );
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (s, wrong) = (std::sync::Arc::clone(&s), wrong.clone());
        tasks.push(tokio::spawn(async move {
            s.call_from("GET", "/v1/languages", Some(&wrong), None, "203.0.113.50")
                .await
                .0
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for t in tasks {
        *codes.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(codes.get(&401), Some(&5), "{codes:?}");
    assert_eq!(codes.get(&429), Some(&35), "{codes:?}");
    let verified = s
        .store
        .audit()
        .all()
        .unwrap()
        .iter()
        .filter(|e| e.detail.as_deref() == Some("wrong secret"))
        .count();
    assert_eq!(verified, 5, "slow hashes run: as many as the threshold");
}

/// Issue 9, finding 9: successes in between do not reset the count.
#[tokio::test]
async fn alternating_good_and_bad_keys_still_locks_out() {
    let s = service("[lockout]\nfailures = 10\nwindow_secs = 300").await;
    let good = s.key("alpha", Role::Learner);
    let mut locked_after = None;
    'outer: for round in 0..5 {
        for i in 0..5 {
            let key = if i == 4 { good } else { "rk_bad" };
            let (status, b, _) = s
                .call_from("GET", "/v1/languages", Some(key), None, "203.0.113.60")
                .await;
            if status == 429 {
                assert_eq!(b["error"]["code"], "locked_out", "{b}");
                locked_after = Some(round * 5 + i);
                break 'outer;
            }
        }
    }
    // 4 failures per round of 5: the 10th failure is request 12 (index 11),
    // so request 13 finds the address locked.
    assert_eq!(locked_after, Some(12));
}

/// A key the server never checked (every key hash thread stayed busy: 503)
/// is not the client's failure: retrying must not lock the address out.
#[tokio::test]
async fn keys_the_server_was_too_busy_to_check_do_not_lock_out() {
    let s = service(
        "[auth]\nmax_concurrent_verifications = 1\nverification_wait_ms = 1\n\
         [lockout]\nfailures = 3\nwindow_secs = 300",
    )
    .await;
    let ip = "203.0.113.70";
    let mut busy = 0;
    for _ in 0..5 {
        // Three keys never verified before, at once: one gets the only hash
        // thread, the others wait 1 ms for it and get 503.
        let [a, b, c] = [(); 3].map(|_| s.new_key("alpha", Role::Learner));
        let (ra, rb, rc) = tokio::join!(
            s.call_from("GET", "/v1/languages", Some(&a), None, ip),
            s.call_from("GET", "/v1/languages", Some(&b), None, ip),
            s.call_from("GET", "/v1/languages", Some(&c), None, ip),
        );
        for (status, body, _) in [ra, rb, rc] {
            match status {
                200 => {}
                503 => {
                    assert_eq!(body["error"]["code"], "unavailable", "{body}");
                    busy += 1;
                }
                _ => panic!("only 200 or 503 expected, got {status}: {body}"),
            }
        }
    }
    assert!(
        busy >= 3,
        "the premise: keys found the hash thread busy ({busy})"
    );
    let fresh = s.new_key("alpha", Role::Learner);
    let (status, body, _) = s
        .call_from("GET", "/v1/languages", Some(&fresh), None, ip)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 9, finding 8: behind N trusted proxies, the client is the entry
/// the outermost one added; entries to its left are the client's own.
#[tokio::test]
async fn forwarded_for_believes_only_what_the_trusted_proxies_added() {
    let s = service("trust_forwarded_for = 1\n[lockout]\nfailures = 3\nwindow_secs = 60").await;
    let good = s.key("alpha", Role::Learner);
    let proxy = "192.0.2.200";
    // An attacker at 198.51.100.7 rotates the entry it writes itself.
    for i in 0..3 {
        let xff = format!("10.0.0.{i}, 198.51.100.7");
        let (status, _, _) = s
            .call_with(
                "GET",
                "/v1/languages",
                Some("rk_bad"),
                None,
                proxy,
                &[("x-forwarded-for", &xff)],
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, b, _) = s
        .call_with(
            "GET",
            "/v1/languages",
            Some(good),
            None,
            proxy,
            &[("x-forwarded-for", "10.0.0.99, 198.51.100.7")],
        )
        .await;
    assert_error(status, &b, 429, "locked_out");
    // A victim's address written by the attacker locks nobody else out.
    let (status, _, _) = s
        .call_with(
            "GET",
            "/v1/languages",
            Some(good),
            None,
            proxy,
            &[("x-forwarded-for", "198.51.100.7, 198.51.100.8")],
        )
        .await;
    assert_eq!(status, 200, "198.51.100.8 is not the attacker");
    // Two headers read as one list; a port is ignored.
    let (status, _, _) = s
        .call_with(
            "GET",
            "/v1/languages",
            Some(good),
            None,
            proxy,
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-for", "198.51.100.7:5000"),
            ],
        )
        .await;
    assert_eq!(status, 429, "the same client, however written");
}

/// Issue 10: Piston's 404 shape under /api/v2, unknown fields ignored there
/// but refused on /v1.
#[tokio::test]
async fn api_v2_answers_in_pistons_shape_and_v1_stays_strict() {
    let s = service("").await;
    let key = s.key("alpha", Role::Learner);
    for path in ["/api/v2/nothing", "/api/v2/packages"] {
        let (status, b, _) = s.call("GET", path, Some(key), None).await;
        assert_eq!(status, 404, "{b}");
        assert!(b["message"].is_string() && b.get("error").is_none(), "{b}");
    }
    let (status, b, _) = s.call("GET", "/v1/nothing", Some(key), None).await;
    assert_error(status, &b, 404, "not_found");
    let (status, b, _) = s.call("GET", "/api/v2/runtimes/", Some(key), None).await;
    assert_eq!(status, 200, "{b}");
    let mut v1 = python("print(1)");
    v1["client_version"] = json!("2.0");
    let (status, b, _) = s.call("POST", "/v1/runs", Some(key), Some(v1)).await;
    assert_error(status, &b, 400, "invalid_request");
    assert!(b.to_string().contains("client_version"), "{b}");
    let (status, b, _) = s
        .call(
            "POST",
            "/v1/runs",
            Some(key),
            Some(json!({"language": "python", "files": [{"name": "", "content": "1"}]})),
        )
        .await;
    assert_eq!(status, 400, "an empty name stays an error on /v1: {b}");
}
