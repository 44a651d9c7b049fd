//! Webhook deliveries ([`webhook::receive`]): the signature over the raw
//! body first, then the push payload. A body is parsed only once its
//! signature matches; a push that parses names a ref and commit a run can
//! use, and changed paths stay within their bound.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use runner::workflow::trigger::MAX_CHANGED_PATHS;
use runner::workflow::webhook::{self, Event, Headers, WebhookError};

const SECRET: &[u8] = b"fuzz-webhook-secret";

#[derive(Debug, Arbitrary)]
struct Input {
    /// Sign the body correctly (else use `signature` as given).
    sign: bool,
    signature: String,
    event: u8,
    delivery: String,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let signature = if input.sign {
        webhook::sign(SECRET, &input.body)
    } else {
        input.signature.clone()
    };
    let event = ["push", "ping", "issues", ""][usize::from(input.event) % 4];
    let delivery = if input.delivery.is_empty() {
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    } else {
        &input.delivery
    };
    let headers = Headers {
        event: Some(event),
        delivery: Some(delivery),
        signature: Some(&signature),
    };
    let got = webhook::receive(headers, SECRET, &input.body);
    if !input.sign && signature != webhook::sign(SECRET, &input.body) {
        assert!(
            matches!(
                got,
                Err(WebhookError::BadSignature
                    | WebhookError::MalformedSignature
                    | WebhookError::MissingSignature
                    | WebhookError::TooLarge { .. })
            ),
            "a wrongly signed body got past the signature check: {got:?}"
        );
        return;
    }
    let Ok(d) = got else {
        return;
    };
    assert!(!d.id.is_empty() && d.id.len() <= 128);
    if let Event::Push(p) = d.event {
        assert!(p.git_ref.starts_with("refs/"));
        if let Some(push) = p.to_push() {
            assert!(!push.sha.bytes().all(|b| b == b'0'));
            if let Some(paths) = &push.changed_paths {
                assert!(paths.len() <= MAX_CHANGED_PATHS);
            }
        }
    }
});
