//! `/v1/keys`: a tenant's admins manage its API keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Auth, require};
use super::model::rfc3339;
use crate::service::auth::{Action, Role, check_scope, mint_key};
use crate::service::store::{KeyRecord, NewAuditEntry, NewKey, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    role: String,
    #[serde(default)]
    label: String,
    /// Release environments a `release-manager` key may approve for;
    /// absent: every environment that role approves.
    #[serde(default)]
    environments: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    id: String,
    role: String,
    label: String,
    created_by: String,
    created_at: String,
    revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environments: Option<Vec<String>>,
}

impl From<KeyRecord> for KeyView {
    fn from(k: KeyRecord) -> Self {
        KeyView {
            id: k.id,
            role: k.role,
            label: k.label,
            created_by: k.created_by,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
            environments: k.environments,
        }
    }
}

/// Longest label accepted: a note for people, not a document.
const MAX_LABEL: usize = 200;

pub async fn create(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require(&p, Action::ManageKeys, "manage API keys")?;
    let role = Role::parse(&body.role)
        .map_err(|e| ApiError::bad_request("invalid_role", e.to_string()))?;
    if body.label.len() > MAX_LABEL || body.label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("label must be at most {MAX_LABEL} bytes of printable text"),
        ));
    }
    if let Some(envs) = &body.environments {
        check_scope(role, envs)
            .map_err(|e| ApiError::bad_request("invalid_scope", e.to_string()))?;
        if let Some(r) = st.releases.get() {
            r.check_scope(envs)
                .map_err(|e| ApiError::bad_request("invalid_scope", e.to_string()))?;
        }
    }
    // Minting hashes the secret (slow): on the key hash threads.
    let minted = st.hashes.run(mint_key).await.map_err(|e| {
        ApiError::unavailable(format!("{e}; retry in a few seconds")).retry_after(2)
    })?;
    let (tenant, actor, tenant_name) = (p.tenant.clone(), p.actor(), p.tenant_name.clone());
    let (id, hash, label, scope) = (
        minted.id.clone(),
        minted.secret_hash.clone(),
        body.label.clone(),
        body.environments.clone(),
    );
    let rec = st
        .store
        .call(move |s| {
            let rec = s.insert_key(
                &tenant,
                &NewKey {
                    id: &id,
                    role: role.as_str(),
                    secret_hash: &hash,
                    label: &label,
                    created_by: &actor,
                    environments: scope.as_deref(),
                },
            )?;
            s.audit().append(&NewAuditEntry {
                actor,
                tenant: Some(tenant_name),
                action: "key.create".into(),
                target: Some(format!("key:{id}")),
                detail: Some(match &scope {
                    Some(e) => format!("role {} for {}", role.as_str(), e.join(", ")),
                    None => format!("role {}", role.as_str()),
                }),
            })?;
            Ok(rec)
        })
        .await?;
    let mut view = serde_json::to_value(KeyView::from(rec)).map_err(ApiError::internal)?;
    // Shown this once; only its hash is kept.
    view["key"] = serde_json::Value::String(minted.text);
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(
    State(st): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    require(&p, Action::ManageKeys, "manage API keys")?;
    let tenant = p.tenant.clone();
    let keys = st.store.call(move |s| s.keys(&tenant)).await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

pub async fn revoke(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    require(&p, Action::ManageKeys, "manage API keys")?;
    let (tenant, actor, tenant_name, id2) = (
        p.tenant.clone(),
        p.actor(),
        p.tenant_name.clone(),
        id.clone(),
    );
    let rec = st
        .store
        .call(move |s| {
            let rec = s.revoke_key(Some(&tenant), &id2);
            let rec = match rec {
                Err(StoreError::LastAdmin { tenant, key }) => return Ok(Err((tenant, key))),
                other => other?,
            };
            if rec.is_some() {
                s.audit().append(&NewAuditEntry {
                    actor,
                    tenant: Some(tenant_name),
                    action: "key.revoke".into(),
                    target: Some(format!("key:{id2}")),
                    detail: None,
                })?;
            }
            Ok(Ok(rec))
        })
        .await?;
    match rec {
        Ok(Some(r)) => Ok(Json(r.into())),
        Ok(None) => Err(ApiError::not_found(&format!("key {id}"))),
        Err((tenant, key)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_key",
            format!(
                "key {key} is the last admin key of tenant {tenant}; create another admin key first"
            ),
        )),
    }
}
