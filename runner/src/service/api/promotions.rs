//! `/v1/promotions` and `/v1/environments`: ask for an image to go into an
//! environment, approve or reject it, and see what runs where.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Auth, require};
use crate::service::auth::Action;
use crate::service::releases::view::{EnvironmentJson, PromotionView};
use crate::service::releases::{Releases, ReleasesError};
use crate::service::store::promotions::PromotionFilter;

impl From<ReleasesError> for ApiError {
    fn from(e: ReleasesError) -> Self {
        match e {
            ReleasesError::NotEnabled { message } => {
                ApiError::new(StatusCode::NOT_FOUND, "releases_not_enabled", message)
            }
            ReleasesError::NotFound(_) => ApiError::not_found("promotion"),
            ReleasesError::BadRequest { code, message } => ApiError::bad_request(code, message),
            ReleasesError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            ReleasesError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ReleasesError::Refused {
                promotion,
                message,
                checks,
            } => {
                let code = if checks.iter().any(|c| c.check == "previous_environment") {
                    "not_live_in_previous"
                } else {
                    "verification_failed"
                };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
                    .with_details(json!({ "promotion": promotion.id, "verification": checks }))
            }
            ReleasesError::Unavailable { detail } => {
                // The detail may name hosts and paths of ours: log only.
                tracing::warn!(error = %detail, "a release check could not complete");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "release_target_unavailable",
                    "the registry or deploy target could not be reached to check this; retry shortly (the operator's log has the details)",
                )
                .retry_after(10)
            }
            ReleasesError::Store(e) => ApiError::internal(e),
        }
    }
}

fn releases(st: &AppState) -> Result<&Releases, ApiError> {
    st.releases.get().map(|r| r.as_ref()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "releases_not_enabled",
            "this server has no release environments: its operator sets `[releases]` in the service configuration",
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// `REPO@sha256:...`.
    image: String,
    environment: String,
}

pub async fn request(
    State(st): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<RequestBody>,
) -> Result<(StatusCode, Json<PromotionView>), ApiError> {
    require(&p, Action::RequestPromotion, "request promotions")?;
    if body.image.len() > 512 || body.environment.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "image must be at most 512 bytes and environment at most 64",
        ));
    }
    let rec = releases(&st)?
        .request(&p, body.image.trim(), body.environment.trim())
        .await?;
    Ok((StatusCode::CREATED, Json(PromotionView::new(rec, false))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    environment: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadReleases, "read promotions")?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 200",
        ));
    }
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.strip_prefix("p1.")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "cursor is not one this server gave")
                })?,
        ),
    };
    let recs = releases(&st)?
        .list(
            &p,
            PromotionFilter {
                state: q.state,
                environment: q.environment,
                before,
                limit,
            },
        )
        .await?;
    let next = (recs.len() == limit as usize)
        .then(|| recs.last().map(|r| format!("p1.{}", r.seq)))
        .flatten();
    let views: Vec<PromotionView> = recs
        .into_iter()
        .map(|r| PromotionView::new(r, false))
        .collect();
    Ok(Json(json!({ "promotions": views, "next_cursor": next })))
}

pub async fn get(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<PromotionView>, ApiError> {
    require(&p, Action::ReadReleases, "read promotions")?;
    let rec = releases(&st)?.get(&p, &id).await?;
    Ok(Json(PromotionView::new(rec, true)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    reason: String,
}

pub async fn decide(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<PromotionView>, ApiError> {
    let approve = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_decision",
                "decision must be \"approve\" or \"reject\"",
            ));
        }
    };
    let rec = releases(&st)?
        .decide(&p, &id, approve, &body.reason)
        .await?;
    Ok(Json(PromotionView::new(rec, false)))
}

pub async fn withdraw(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<PromotionView>, ApiError> {
    require(&p, Action::RequestPromotion, "withdraw promotions")?;
    let rec = releases(&st)?.withdraw(&p, &id).await?;
    Ok(Json(PromotionView::new(rec, false)))
}

pub async fn environments(
    State(st): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Value>, ApiError> {
    require(&p, Action::ReadReleases, "read environments")?;
    let views = releases(&st)?.environments(&p, 0).await?;
    let envs: Vec<EnvironmentJson> = views
        .into_iter()
        .map(|v| EnvironmentJson::new(v, false))
        .collect();
    Ok(Json(json!({ "environments": envs })))
}

pub async fn environment(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> Result<Json<EnvironmentJson>, ApiError> {
    require(&p, Action::ReadReleases, "read environments")?;
    let r = releases(&st)?;
    let views = r.environments(&p, r.history()).await?;
    views
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| Json(EnvironmentJson::new(v, true)))
        .ok_or_else(|| ApiError::not_found("environment"))
}
