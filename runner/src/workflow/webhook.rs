//! GitHub webhook deliveries: the signature checked over the raw body before
//! anything is parsed, then the event classified and a push payload read
//! into typed, validated fields.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::trigger::{MAX_CHANGED_PATHS, Push};

pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// GitHub caps webhook payloads at 25 MB; larger bodies are refused unread.
pub const MAX_PAYLOAD_BYTES: usize = 25 << 20;
/// GitHub lists at most this many commits in a push payload: at this count
/// the list may be cut, so the changed files are unknown.
pub const MAX_LISTED_COMMITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the delivery has no X-Hub-Signature-256 header: give the webhook a secret")]
    MissingSignature,
    #[error("X-Hub-Signature-256 must be `sha256=` followed by 64 hex digits")]
    MalformedSignature,
    #[error("X-Hub-Signature-256 does not match the body: check the webhook's secret")]
    BadSignature,
    #[error("the delivery has no X-GitHub-Event header")]
    MissingEvent,
    #[error("the delivery has no valid X-GitHub-Delivery header (a GUID)")]
    MissingDelivery,
    #[error("the payload is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("the push payload is not valid: {0}")]
    Payload(String),
}

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex>` of `body` under `secret`: what GitHub sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks `X-Hub-Signature-256` against the raw `body`, in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature)?;
    let tag = decode_hex(hex).ok_or(WebhookError::MalformedSignature)?;
    if tag.len() != 32 {
        return Err(WebhookError::MalformedSignature);
    }
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&tag)
        .map_err(|_| WebhookError::BadSignature)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The headers a delivery is read with (header names are case-insensitive
/// in HTTP: the caller looks them up with [`EVENT_HEADER`] and friends).
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub event: Option<&'a str>,
    pub delivery: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push(Box<PushEvent>),
    /// Sent when a webhook is created: acknowledged, nothing runs.
    Ping {
        zen: Option<String>,
    },
    /// Any other event: acknowledged and ignored.
    Ignored {
        event: String,
    },
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `X-GitHub-Delivery`: the same on redeliveries, so a replay can be
    /// answered without a second run.
    pub id: String,
    pub event: Event,
}

/// Reads a delivery: size, then signature over the raw body, then the
/// event. Nothing of the body is parsed before the signature matches.
pub fn receive(headers: Headers<'_>, secret: &[u8], body: &[u8]) -> Result<Delivery, WebhookError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    verify_signature(secret, body, headers.signature)?;
    let id = headers
        .delivery
        .filter(|d| {
            !d.is_empty()
                && d.len() <= 128
                && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .ok_or(WebhookError::MissingDelivery)?
        .to_owned();
    let event = match headers.event.ok_or(WebhookError::MissingEvent)? {
        "push" => Event::Push(Box::new(PushEvent::parse(body)?)),
        "ping" => {
            #[derive(Deserialize)]
            struct Ping {
                zen: Option<String>,
            }
            let ping: Option<Ping> = serde_json::from_slice(body).ok();
            Event::Ping {
                zen: ping.and_then(|p| p.zen),
            }
        }
        other => Event::Ignored {
            event: other.chars().take(64).collect(),
        },
    };
    Ok(Delivery { id, event })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    pub clone_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Commit {
    pub id: String,
    #[serde(default)]
    pub message: String,
    pub timestamp: Option<String>,
    pub author: Option<Person>,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
}

/// The fields of a push event CI uses; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub repository: Repository,
    pub head_commit: Option<Commit>,
    #[serde(default)]
    pub commits: Vec<Commit>,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PushEvent {
    /// Parses and validates a push payload.
    pub fn parse(body: &[u8]) -> Result<PushEvent, WebhookError> {
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(WebhookError::TooLarge {
                size: body.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let p: PushEvent =
            serde_json::from_slice(body).map_err(|e| WebhookError::Payload(e.to_string()))?;
        let bad = |what: String| Err(WebhookError::Payload(what));
        if !p.git_ref.starts_with("refs/")
            || p.git_ref.len() > 1024
            || p.git_ref.chars().any(|c| c.is_control())
        {
            return bad(format!(
                "`ref` is {:?}, not a full ref name like refs/heads/main",
                truncate(&p.git_ref)
            ));
        }
        for (name, id) in [("after", &p.after), ("before", &p.before)] {
            if !is_object_id(id) {
                return bad(format!(
                    "`{name}` is {:?}, not a commit id (40 or 64 lower-case hex digits)",
                    truncate(id)
                ));
            }
        }
        let name_ok = p
            .repository
            .full_name
            .split_once('/')
            .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
        if !name_ok {
            return bad(format!(
                "`repository.full_name` is {:?}, not owner/name",
                truncate(&p.repository.full_name)
            ));
        }
        if p.repository.clone_url.is_empty() {
            return bad("`repository.clone_url` is empty".into());
        }
        Ok(p)
    }

    /// The commit to run, or `None` when the push deleted the ref (`after`
    /// all zeros): nothing runs then.
    pub fn run_commit(&self) -> Option<&str> {
        (!self.deleted && !self.after.bytes().all(|b| b == b'0')).then_some(self.after.as_str())
    }

    /// Files the push changed, from the listed commits; `None` when unknown
    /// (a new or force-pushed ref, no or too many listed commits, more than
    /// [`MAX_CHANGED_PATHS`] files): then
    /// `paths` filters let the push run.
    pub fn changed_paths(&self) -> Option<Vec<String>> {
        if self.created
            || self.forced
            || self.commits.is_empty()
            || self.commits.len() >= MAX_LISTED_COMMITS
        {
            return None;
        }
        let mut out: Vec<String> = self
            .commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        (out.len() <= MAX_CHANGED_PATHS).then_some(out)
    }

    /// The push as planning takes it; `None` for a deleted ref.
    pub fn to_push(&self) -> Option<Push> {
        Some(Push {
            git_ref: self.git_ref.clone(),
            sha: self.run_commit()?.to_owned(),
            repository: self.repository.full_name.clone(),
            changed_paths: self.changed_paths(),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
