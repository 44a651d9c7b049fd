//! `/v1/repos`: repositories a tenant's admins register for workflows,
//! their jobs' secrets (write-only), and runs started by hand.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Auth, require};
use super::model::rfc3339;
use crate::service::auth::{Action, Principal};
use crate::service::secrets::valid_secret_name;
use crate::service::store::repos::{NewRepo, Repo};
use crate::service::store::workflows::{NewTrigger, Triggered};
use crate::service::store::{NewAuditEntry, StoreError};
use crate::service::workflows::Workflows;
use crate::workflow::filter::{Filter, Pattern, PatternError};
use crate::workflow::source::is_commit_id;

/// The workflow runner, or 503 when this server runs none.
pub fn workflows(st: &AppState) -> Result<&std::sync::Arc<Workflows>, ApiError> {
    st.workflows
        .get()
        .ok_or_else(|| ApiError::unavailable("this server does not run workflows"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRepo {
    /// `owner/name`, as pushes name it.
    name: String,
    /// `https://…`, `ssh://…`, or a local `file://…` path.
    url: String,
    /// Branch patterns whose pushes run workflows; absent: every branch.
    #[serde(default)]
    branches: Vec<String>,
    /// Secret names its jobs may use.
    #[serde(default)]
    secrets: Vec<String>,
    /// An egress grant of this server for its jobs; absent: no network.
    #[serde(default)]
    network: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RepoView {
    id: String,
    name: String,
    url: String,
    branches: Vec<String>,
    secrets: Vec<String>,
    network: Option<String>,
    created_by: String,
    created_at: String,
    /// Where GitHub (or any forge speaking its webhooks) delivers pushes.
    webhook_path: String,
}

impl From<Repo> for RepoView {
    fn from(r: Repo) -> Self {
        RepoView {
            webhook_path: format!("/v1/hooks/github?repo={}", r.id),
            id: r.id,
            name: r.name,
            url: scrub_url(&r.url),
            branches: r.branches,
            secrets: r.secrets_allowed,
            network: r.egress,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// A URL without credentials (`https://user:token@host/…` → `https://***@host/…`).
fn scrub_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn audit(p: &Principal, action: &str, target: &str, detail: Option<String>) -> NewAuditEntry {
    NewAuditEntry {
        actor: p.actor(),
        tenant: Some(p.tenant_name.clone()),
        action: action.into(),
        target: Some(target.to_owned()),
        detail,
    }
}

fn check_repo(body: &CreateRepo, st: &AppState) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_request", m);
    check_name(&body.name).map_err(|e| bad(e.to_string()))?;
    crate::workflow::source::url::classify(&body.url).map_err(|e| bad(format!("url: {e}")))?;
    if body.branches.len() > 50 {
        return Err(bad("at most 50 branch patterns".into()));
    }
    branch_filter(&body.branches).map_err(|e| bad(format!("branches: {e}")))?;
    if let Some(s) = body.secrets.iter().find(|s| !valid_secret_name(s)) {
        return Err(bad(format!(
            "secret name {s:?} must be letters, digits and '_', not starting with a digit or GITHUB_"
        )));
    }
    if let Some(n) = &body.network {
        let grants = &st.config.workflows.egress_grants;
        if !grants.contains(n) {
            return Err(bad(format!(
                "network {n:?} is not an egress grant of this server (grants: {}); leave it out for no network",
                if grants.is_empty() {
                    "none".to_owned()
                } else {
                    grants.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// A repository's name as pushes give it: `owner/name` (the API and
/// `runner admin repo create` both check it).
pub fn check_name(name: &str) -> Result<(), InvalidRepoName> {
    let ok = name.len() <= 200
        && name.split('/').count() == 2
        && name.split('/').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(InvalidRepoName {
            name: name.to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("name {name:?} must be owner/name (letters, digits, '-', '_', '.')")]
pub struct InvalidRepoName {
    pub name: String,
}

/// The branches a repository's pushes run on; `None`: every branch.
pub fn branch_filter(patterns: &[String]) -> Result<Option<Filter>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let parsed = patterns
        .iter()
        .map(|p| Pattern::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Filter::new(parsed)))
}

/// A fresh webhook secret: 32 random bytes, base64url.
fn webhook_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub async fn create(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<CreateRepo>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require(&p, Action::ManageRepos, "register repositories")?;
    let wf = workflows(&st)?;
    check_repo(&body, &st)?;
    let secret = webhook_secret();
    let (store, tenant, sb) = (st.store.clone(), p.tenant.clone(), wf.secrets().clone());
    let entry = audit(&p, "repo.create", &body.name, Some(scrub_url(&body.url)));
    let created = store
        .call(move |s| {
            s.repos(&tenant).create(
                &NewRepo {
                    name: &body.name,
                    url: &body.url,
                    branches: &body.branches,
                    secrets_allowed: &body.secrets,
                    egress: body.network.as_deref(),
                    created_by: &entry.actor,
                },
                secret.as_bytes(),
                &sb,
                &entry,
            )
        })
        .await;
    let repo = match created {
        Ok(r) => r,
        Err(StoreError::RepoExists(n)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "repo_exists",
                format!(
                    "repository {n:?} is already registered; remove it first to register it again"
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let secret = webhook_secret_shown(&repo, &st)?;
    let mut view = serde_json::to_value(RepoView::from(repo)).expect("views serialize");
    view["webhook_secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// The webhook secret, read back once, for the creation's answer.
fn webhook_secret_shown(repo: &Repo, st: &AppState) -> Result<String, ApiError> {
    let found = st.store.repo_for_webhook(&repo.id)?;
    let (_, sealed) =
        found.ok_or_else(|| ApiError::internal("a repository vanished as it was created"))?;
    let plain = workflows(st)?
        .secrets()
        .open(&sealed)
        .map_err(ApiError::internal)?;
    Ok(String::from_utf8_lossy(&plain).into_owned())
}

pub async fn list(State(st): State<AppState>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadWorkflows, "list repositories")?;
    let tenant = p.tenant.clone();
    let repos = st.store.call(move |s| s.repos(&tenant).list()).await?;
    let views: Vec<RepoView> = repos.into_iter().map(RepoView::from).collect();
    Ok(Json(json!({ "repos": views })))
}

async fn owned(st: &AppState, p: &Principal, id: &str) -> Result<Repo, ApiError> {
    let (tenant, id2) = (p.tenant.clone(), id.to_owned());
    st.store
        .call(move |s| s.repos(&tenant).get(&id2))
        .await?
        .ok_or_else(|| ApiError::not_found("repository"))
}

pub async fn get(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadWorkflows, "read repositories")?;
    let repo = owned(&st, &p, &id).await?;
    let (tenant, rid) = (p.tenant.clone(), repo.id.clone());
    let names = st
        .store
        .call(move |s| s.repos(&tenant).secret_names(&rid))
        .await?;
    let mut view = serde_json::to_value(RepoView::from(repo)).expect("views serialize");
    view["secrets_set"] = json!(
        names
            .into_iter()
            .map(|(n, by, at)| json!({"name": n, "updated_by": by, "updated_at": rfc3339(at)}))
            .collect::<Vec<_>>()
    );
    Ok(Json(view))
}

pub async fn delete(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&p, Action::ManageRepos, "remove repositories")?;
    let repo = owned(&st, &p, &id).await?;
    let (tenant, entry) = (p.tenant.clone(), audit(&p, "repo.delete", &repo.name, None));
    st.store
        .call(move |s| s.repos(&tenant).delete(&id, &entry))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    value: String,
}

/// Largest secret value: a key or a token, not a file.
const MAX_SECRET: usize = 64 << 10;

pub async fn put_secret(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((id, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetSecret>,
) -> Result<StatusCode, ApiError> {
    require(&p, Action::ManageRepos, "set repository secrets")?;
    let wf = workflows(&st)?;
    if !valid_secret_name(&name) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "secret names are letters, digits and '_', not starting with a digit or GITHUB_",
        ));
    }
    if body.value.is_empty() || body.value.len() > MAX_SECRET {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a secret's value is 1 to {MAX_SECRET} bytes"),
        ));
    }
    let repo = owned(&st, &p, &id).await?;
    if !repo.secrets_allowed.contains(&name) {
        return Err(ApiError::bad_request(
            "secret_not_allowed",
            format!(
                "repository {} may use the secrets {:?} only; register it again to allow {name}",
                repo.name, repo.secrets_allowed
            ),
        ));
    }
    let (tenant, sb) = (p.tenant.clone(), wf.secrets().clone());
    // The audit entry names the secret, never its value.
    let entry = audit(&p, "secret.set", &format!("{}/{name}", repo.name), None);
    st.store
        .call(move |s| {
            s.repos(&tenant)
                .set_secret(&id, &name, body.value.as_bytes(), &sb, &entry)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_secret(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require(&p, Action::ManageRepos, "remove repository secrets")?;
    let repo = owned(&st, &p, &id).await?;
    let (tenant, entry) = (
        p.tenant.clone(),
        audit(&p, "secret.delete", &format!("{}/{name}", repo.name), None),
    );
    let removed = st
        .store
        .call(move |s| s.repos(&tenant).delete_secret(&id, &name, &entry))
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("secret"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The commit to run (40 or 64 hex digits).
    commit: String,
    /// The ref it is on (`refs/heads/main`); default `refs/heads/main`.
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
}

pub async fn start_run(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartRun>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require(&p, Action::TriggerWorkflows, "start workflow runs")?;
    let wf = workflows(&st)?;
    if !is_commit_id(&body.commit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "commit must be a full commit id (40 or 64 lowercase hex digits)",
        ));
    }
    let git_ref = body.git_ref.unwrap_or_else(|| "refs/heads/main".into());
    if !(git_ref.starts_with("refs/heads/") || git_ref.starts_with("refs/tags/"))
        || git_ref.len() > 255
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            "ref must be refs/heads/<branch> or refs/tags/<tag>",
        ));
    }
    let repo = owned(&st, &p, &id).await?;
    let entry = audit(
        &p,
        "workflow.trigger",
        &repo.name,
        Some(format!("{} {}", git_ref, body.commit)),
    );
    let actor = p.actor();
    let triggered = st
        .store
        .call(move |s| {
            s.trigger(
                &NewTrigger {
                    repo: &repo,
                    commit: &body.commit,
                    git_ref: &git_ref,
                    event: "api",
                    actor: &actor,
                    changed_paths: None,
                    delivery: None,
                },
                &entry,
            )
        })
        .await?;
    wf.notify();
    match triggered {
        Triggered::Queued(t) => Ok((
            StatusCode::ACCEPTED,
            Json(super::workflows::trigger_view(&t, &[])),
        )),
        Triggered::Replayed { .. } => Err(ApiError::internal("an API trigger cannot be a replay")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        assert_eq!(
            scrub_url("https://u:tok@example.org/a.git"),
            "https://***@example.org/a.git"
        );
        assert_eq!(
            scrub_url("https://example.org/a@b.git"),
            "https://example.org/a@b.git"
        );
        assert_eq!(scrub_url("file:///srv/repo"), "file:///srv/repo");
    }
}
