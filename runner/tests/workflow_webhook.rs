//! GitHub webhook deliveries: signatures (good, bad, missing, wrong prefix)
//! and push payloads.

use runner::workflow::webhook::{
    Event, Headers, PushEvent, WebhookError, receive, sign, verify_signature,
};

/// GitHub's documented test vector ("Validating webhook deliveries").
const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
const DOC_BODY: &[u8] = b"Hello, World!";
const DOC_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

const SECRET: &[u8] = b"webhook-secret";
const AFTER: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const BEFORE: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";

/// A push payload in GitHub's shape (trimmed to the fields CI reads plus a
/// few it ignores).
fn push_body(git_ref: &str, after: &str, extra: &str) -> String {
    format!(
        r#"{{
  "ref": "{git_ref}",
  "before": "{BEFORE}",
  "after": "{after}",
  "created": false,
  "deleted": false,
  "forced": false,
  "base_ref": null,
  "compare": "https://github.com/acme/app/compare/0d1a26e67d8f...6113728f27ae",
  "commits": [
    {{"id": "{AFTER}", "message": "Fix the build", "timestamp": "2024-05-01T10:00:00Z",
      "author": {{"name": "Ada", "email": "ada@example.com", "username": "ada"}},
      "added": ["src/new.rs"], "removed": [], "modified": ["README.md", "src/lib.rs"]}},
    {{"id": "1111111111111111111111111111111111111111", "message": "Docs",
      "added": [], "removed": ["docs/old.md"], "modified": ["README.md"]}}
  ],
  "head_commit": {{"id": "{AFTER}", "message": "Fix the build", "timestamp": "2024-05-01T10:00:00Z",
    "author": {{"name": "Ada", "email": "ada@example.com"}}, "added": [], "removed": [], "modified": []}},
  "repository": {{"id": 1296269, "full_name": "acme/app", "clone_url": "https://github.com/acme/app.git",
    "private": false, "owner": {{"login": "acme"}}}},
  "pusher": {{"name": "ada", "email": "ada@example.com"}},
  "sender": {{"login": "ada", "id": 1}}{extra}
}}"#
    )
}

fn headers<'a>(event: &'a str, signature: Option<&'a str>) -> Headers<'a> {
    Headers {
        event: Some(event),
        delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        signature,
    }
}

#[test]
fn github_test_vector_verifies() {
    assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIGNATURE);
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some(DOC_SIGNATURE)),
        Ok(())
    );
}

#[test]
fn bad_signatures_are_refused() {
    assert_eq!(
        verify_signature(b"another secret", DOC_BODY, Some(DOC_SIGNATURE)),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_signature(DOC_SECRET, b"Hello, World?", Some(DOC_SIGNATURE)),
        Err(WebhookError::BadSignature)
    );
    let flipped = DOC_SIGNATURE.replace("757107ea", "757107eb");
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some(&flipped)),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn missing_and_malformed_signatures_are_refused() {
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, None),
        Err(WebhookError::MissingSignature)
    );
    // The SHA-1 header's prefix, or none at all.
    let sha1 = DOC_SIGNATURE.replace("sha256=", "sha1=");
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some(&sha1)),
        Err(WebhookError::MalformedSignature)
    );
    let bare = DOC_SIGNATURE.trim_start_matches("sha256=");
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some(bare)),
        Err(WebhookError::MalformedSignature)
    );
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some("sha256=zz")),
        Err(WebhookError::MalformedSignature)
    );
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some("sha256=abcd")),
        Err(WebhookError::MalformedSignature)
    );
    assert_eq!(
        verify_signature(DOC_SECRET, DOC_BODY, Some("sha256=")),
        Err(WebhookError::MalformedSignature)
    );
}

#[test]
fn a_signed_push_is_received_with_its_fields() {
    let body = push_body("refs/heads/main", AFTER, "");
    let sig = sign(SECRET, body.as_bytes());
    let d = receive(headers("push", Some(&sig)), SECRET, body.as_bytes()).unwrap();
    assert_eq!(d.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    let Event::Push(p) = d.event else {
        panic!("not a push: {:?}", d.event)
    };
    assert_eq!(p.git_ref, "refs/heads/main");
    assert_eq!(p.before, BEFORE);
    assert_eq!(p.repository.full_name, "acme/app");
    assert_eq!(p.repository.clone_url, "https://github.com/acme/app.git");
    assert_eq!(p.head_commit.as_ref().unwrap().message, "Fix the build");
    assert!(!p.forced && !p.deleted);
    assert_eq!(p.run_commit(), Some(AFTER));
    assert_eq!(
        p.changed_paths().unwrap(),
        ["README.md", "docs/old.md", "src/lib.rs", "src/new.rs"]
    );
    let push = p.to_push().unwrap();
    assert_eq!(push.sha, AFTER);
    assert_eq!(push.repository, "acme/app");
}

#[test]
fn the_signature_is_checked_before_the_body_is_read() {
    let sig = sign(SECRET, b"not json");
    let e = receive(headers("push", Some(&sig)), b"wrong", b"not json").unwrap_err();
    assert_eq!(e, WebhookError::BadSignature);
    let e = receive(headers("push", None), SECRET, b"{}").unwrap_err();
    assert_eq!(e, WebhookError::MissingSignature);
}

#[test]
fn ping_and_other_events_are_acknowledged_and_ignored() {
    let body = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let sig = sign(SECRET, body);
    let d = receive(headers("ping", Some(&sig)), SECRET, body).unwrap();
    assert_eq!(
        d.event,
        Event::Ping {
            zen: Some("Keep it logically awesome.".into())
        }
    );
    let d = receive(headers("issues", Some(&sig)), SECRET, body).unwrap();
    assert_eq!(
        d.event,
        Event::Ignored {
            event: "issues".into()
        }
    );
}

#[test]
fn deliveries_need_an_event_and_an_id() {
    let body = b"{}";
    let sig = sign(SECRET, body);
    let mut h = headers("push", Some(&sig));
    h.event = None;
    assert_eq!(
        receive(h, SECRET, body).unwrap_err(),
        WebhookError::MissingEvent
    );
    let mut h = headers("ping", Some(&sig));
    h.delivery = Some("../../etc");
    assert_eq!(
        receive(h, SECRET, body).unwrap_err(),
        WebhookError::MissingDelivery
    );
}

#[test]
fn a_deleted_branch_runs_nothing() {
    let zeros = "0".repeat(40);
    let body = push_body("refs/heads/gone", &zeros, "");
    let p = PushEvent::parse(body.as_bytes()).unwrap();
    assert_eq!(p.run_commit(), None);
    assert_eq!(p.to_push(), None);
    let deleted =
        push_body("refs/heads/gone", AFTER, "").replace("\"deleted\": false", "\"deleted\": true");
    assert_eq!(
        PushEvent::parse(deleted.as_bytes()).unwrap().run_commit(),
        None
    );
}

#[test]
fn new_or_forced_refs_have_unknown_changes() {
    let forced =
        push_body("refs/heads/main", AFTER, "").replace("\"forced\": false", "\"forced\": true");
    assert_eq!(
        PushEvent::parse(forced.as_bytes()).unwrap().changed_paths(),
        None
    );
    let created =
        push_body("refs/heads/new", AFTER, "").replace("\"created\": false", "\"created\": true");
    assert_eq!(
        PushEvent::parse(created.as_bytes())
            .unwrap()
            .changed_paths(),
        None
    );
}

#[test]
fn invalid_payloads_say_what_is_wrong() {
    let err = |body: String| PushEvent::parse(body.as_bytes()).unwrap_err().to_string();
    assert!(err(push_body("main", AFTER, "")).contains("`ref` is \"main\", not a full ref name"));
    assert!(
        err(push_body("refs/heads/main", "HEAD", ""))
            .contains("`after` is \"HEAD\", not a commit id")
    );
    let e = err(push_body("refs/heads/main", AFTER, "").replace("\"acme/app\"", "\"acme\""));
    assert!(e.contains("not owner/name"), "{e}");
    assert!(err("{\"ref\": 1}".into()).starts_with("the push payload is not valid: invalid type"));
    let deep = format!(
        "{{\"sender\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    // Deeply nested values are skipped without recursion, or refused.
    assert!(err(deep).starts_with("the push payload is not valid"));
    let big = vec![b' '; runner::workflow::webhook::MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        PushEvent::parse(&big),
        Err(WebhookError::TooLarge { .. })
    ));
}
