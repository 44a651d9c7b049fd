//! The one error type of the API: a status, a stable machine-readable code
//! and a message that says what was wrong and how to fix it. Server-side
//! failures are logged with their details and answered with a generic
//! message: a 5xx body never reveals internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Answer in Piston's error shape (`{"message": ...}`).
    pub piston: bool,
    /// More about the error, under `error.details` (what each check of a
    /// refused promotion found, say).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            piston: false,
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API key is required: send `Authorization: Bearer <key>`",
        )
    }

    pub fn forbidden(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key's role may not {what}"),
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} was not found"),
        )
    }

    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// A failure of ours. `detail` goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request; the operator's log has the details (see X-Request-Id)",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn piston(mut self) -> Self {
        self.piston = true;
        self
    }
}

impl From<crate::service::store::StoreError> for ApiError {
    fn from(e: crate::service::store::StoreError) -> Self {
        // A database that is restarting or cut off by the network is a
        // moment to retry, not a failure of this request: 503 with a hint,
        // the cause in the operator's log only.
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the database is unreachable");
            return ApiError::unavailable(
                "the database is unreachable for the moment; retry in a few seconds",
            )
            .retry_after(2);
        }
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.piston {
            json!({ "message": self.message })
        } else if let Some(details) = self.details {
            json!({ "error": { "code": self.code, "message": self.message, "details": details } })
        } else {
            json!({ "error": { "code": self.code, "message": self.message } })
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"runner\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_detail() {
        let resp =
            ApiError::internal("sqlite: disk I/O error at /var/lib/secret/path").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !text.contains("sqlite") && !text.contains("/var/lib"),
            "{text}"
        );
        assert!(text.contains("\"code\":\"internal\""));
    }

    #[tokio::test]
    async fn retry_after_is_sent() {
        let resp = ApiError::too_many("queue_full", "full", 5).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
    }
}
