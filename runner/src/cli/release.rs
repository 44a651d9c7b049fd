//! `runner release ...`: promotions and environments for people at a
//! terminal, through a running server's API (the same calls as the web
//! pages and programs). The key comes from `RUNNER_KEY`, never from an
//! argument, so it stays out of shell history and process lists.
//!
//! Exit codes: 0 done; 2 the server refused the request (4xx: its message
//! says why); 3 the server could not be reached or failed (5xx).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

use super::{Failure, infra, usage};

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The runner server's URL.
    #[arg(
        long,
        env = "RUNNER_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// Print the server's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Ask for an image (by digest) to be promoted into an environment.
    Promote {
        /// `REGISTRY/NAME@sha256:...` (tags are refused).
        #[arg(long)]
        image: String,
        #[arg(long)]
        environment: String,
    },
    /// Approve a pending promotion.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject a pending promotion (ends it).
    Reject {
        id: String,
        /// Why: what must change.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a promotion you requested (not yet deploying).
    Withdraw { id: String },
    /// List promotions, newest first.
    List {
        /// building, pending, approved, deploying, deployed, rejected,
        /// refused, rolled_back, failed or withdrawn.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
    /// One promotion, with its verification, approvals and log.
    Show { id: String },
    /// What runs in each environment; with a name, its history too.
    Environments { name: Option<String> },
}

/// Path segments come from the user: only ids and names, nothing that
/// changes the URL's shape.
fn segment(s: &str, what: &str) -> Result<String, Failure> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(s.to_owned())
    } else {
        Err(usage(anyhow!(
            "{what} {s:?} is not valid: letters, digits, `-` and `_` only"
        )))
    }
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let mut q = Vec::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            q.push(format!("{k}={enc}"));
        }
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub async fn run(args: ReleaseArgs) -> Result<ExitCode, Failure> {
    let key = std::env::var("RUNNER_KEY").map_err(|_| {
        usage(anyhow!(
            "set RUNNER_KEY to your API key (`runner admin key create` makes one)"
        ))
    })?;
    let base = args.server.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(usage(anyhow!(
            "--server {base:?} must start with http:// or https://"
        )));
    }
    let (method, path, body) = match &args.command {
        ReleaseCommand::Promote { image, environment } => (
            "POST",
            "/v1/promotions".to_owned(),
            Some(json!({ "image": image, "environment": environment })),
        ),
        ReleaseCommand::Approve { id, reason } => (
            "POST",
            format!("/v1/promotions/{}/approvals", segment(id, "promotion id")?),
            Some(json!({ "decision": "approve", "reason": reason })),
        ),
        ReleaseCommand::Reject { id, reason } => (
            "POST",
            format!("/v1/promotions/{}/approvals", segment(id, "promotion id")?),
            Some(json!({ "decision": "reject", "reason": reason })),
        ),
        ReleaseCommand::Withdraw { id } => (
            "DELETE",
            format!("/v1/promotions/{}", segment(id, "promotion id")?),
            None,
        ),
        ReleaseCommand::List { state, environment } => (
            "GET",
            format!(
                "/v1/promotions{}",
                query(&[("state", state), ("environment", environment)])
            ),
            None,
        ),
        ReleaseCommand::Show { id } => (
            "GET",
            format!("/v1/promotions/{}", segment(id, "promotion id")?),
            None,
        ),
        ReleaseCommand::Environments { name } => (
            "GET",
            match name {
                Some(n) => format!("/v1/environments/{}", segment(n, "environment")?),
                None => "/v1/environments".to_owned(),
            },
            None,
        ),
    };
    let url = format!("{base}{path}");
    let (status, value) = tokio::task::spawn_blocking(move || call(method, &url, &key, body))
        .await
        .map_err(infra)??;
    if !(200..300).contains(&status) {
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("no message");
        let mut text = format!("the server refused ({status} {code}): {message}");
        if let Some(checks) = value["error"]["details"]["verification"].as_array() {
            for c in checks {
                text.push_str(&format!("\n  {}", check_line(c)));
            }
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        return Err(if status >= 500 {
            infra(anyhow!(text))
        } else {
            usage(anyhow!(text))
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print_summary(&args.command, &value);
    }
    Ok(ExitCode::SUCCESS)
}

fn call(method: &str, url: &str, key: &str, body: Option<Value>) -> Result<(u16, Value), Failure> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Accept", "application/json");
    let sent = match body {
        Some(b) => agent.run(
            req.header("Content-Type", "application/json")
                .body(b.to_string().into_bytes())
                .map_err(usage)?,
        ),
        None => agent.run(req.body(ureq::SendBody::none()).map_err(usage)?),
    };
    let resp = sent.map_err(|e| infra(anyhow!("cannot reach {url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .map_err(|e| infra(anyhow!("reading the answer of {url}: {e}")))?;
    let value = serde_json::from_str(&text).map_err(|_| {
        infra(anyhow!(
            "the server at {url} answered {status} with something that is not JSON; is --server a runner?"
        ))
    })?;
    Ok((status, value))
}

fn check_line(c: &Value) -> String {
    format!(
        "{} {}: {}",
        if c["ok"].as_bool() == Some(true) {
            "ok  "
        } else {
            "FAIL"
        },
        c["check"].as_str().unwrap_or("?"),
        c["detail"].as_str().unwrap_or("")
    )
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

fn promotion_line(p: &Value) -> String {
    format!(
        "{}  {:<11} {:<8} {}  ({} of {} approvals; requested by {} at {})",
        s(p, "id"),
        s(p, "state"),
        s(p, "environment"),
        s(p, "image"),
        p["approvals"].as_array().map_or(0, |a| a
            .iter()
            .filter(|d| d["decision"] == "approve")
            .count()),
        p["required_approvals"],
        s(p, "requested_by"),
        s(p, "requested_at"),
    )
}

fn print_summary(cmd: &ReleaseCommand, v: &Value) {
    match cmd {
        ReleaseCommand::List { .. } => {
            for p in v["promotions"].as_array().into_iter().flatten() {
                println!("{}", promotion_line(p));
            }
        }
        ReleaseCommand::Environments { name: None } => {
            for e in v["environments"].as_array().into_iter().flatten() {
                println!(
                    "{:<8} {}  commit {}  since {}",
                    s(e, "name"),
                    e["image"].as_str().unwrap_or("(nothing deployed)"),
                    s(e, "commit"),
                    s(e, "since")
                );
            }
        }
        ReleaseCommand::Environments { name: Some(_) } => {
            println!(
                "{}: {}  commit {}  since {}",
                s(v, "name"),
                v["image"].as_str().unwrap_or("(nothing deployed)"),
                s(v, "commit"),
                s(v, "since")
            );
            for ev in v["history"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {:<11} {}{}",
                    s(ev, "at"),
                    s(ev, "kind"),
                    s(ev, "image"),
                    ev["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
        }
        _ => {
            println!("{}", promotion_line(v));
            for c in v["verification"].as_array().into_iter().flatten() {
                println!("  {}", check_line(c));
            }
            if let Some(m) = v["message"].as_str() {
                println!("  {m}");
            }
            for l in v["log"].as_array().into_iter().flatten() {
                println!("  | {}", l.as_str().unwrap_or(""));
            }
        }
    }
}
