//! [`ApiError`]: every failure an API call can answer with, mapped to status + `{error, message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::lifecycle::ActionError;
use crate::store::StoreError;

/// The error body of every failed request (a wire type).
pub use refract_api::ErrorBody;

/// Every failure of a `/v1` call. Layers below the service convert into it here, in one place:
/// [`StoreError`] into [`ApiError::Internal`], the lifecycle's action errors into their status;
/// the service produces the others.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: the message names the field and the rule.
    #[error("{0}")]
    InvalidRequest(String),
    /// 422 `invalid_request`: the body matches the documented schema but breaks a rule the schema
    /// cannot state (between fields, against stored state or the clock); the message names it.
    #[error("{0}")]
    Unprocessable(String),
    /// 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found` (also for ids of another customer).
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 409 `action_not_allowed`.
    #[error("{0}")]
    ActionNotAllowed(String),
    /// 413 `too_large`: the request body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 503 `store_unavailable`: the metadata store cannot be reached now (PostgreSQL store down
    /// or unreachable); nothing was changed, the request may be retried. The cause is logged.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    /// 500 `internal`: the cause is logged with the request id, never sent.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// 400 helper.
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidRequest(msg.into())
    }
    /// 422 helper.
    pub fn unprocessable(msg: impl Into<String>) -> Self {
        ApiError::Unprocessable(msg.into())
    }
    /// A 400 of a rule the schema cannot state becomes a 422 (other errors stay as they are).
    pub fn semantic(self) -> Self {
        match self {
            ApiError::InvalidRequest(m) => ApiError::Unprocessable(m),
            other => other,
        }
    }
    /// 409 helper.
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError::Conflict(msg.into())
    }
    /// 404 for a resource kind.
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// HTTP status and `error` code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::ActionNotAllowed(_) => (StatusCode::CONFLICT, "action_not_allowed"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// A store failure is a 500, or a 503 when the store cannot be reached; the cause (`metadata
/// store: …`) is logged, never sent.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            e => ApiError::Internal(anyhow::Error::new(e)),
        }
    }
}

/// An action that cannot begin: 400, 404 or 409 `action_not_allowed` (a store failure: 500).
impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let message = e.to_string();
        match e {
            ActionError::Store(e) => e.into(),
            ActionError::BuildIdRequired => ApiError::InvalidRequest(message),
            ActionError::BuildNotFound => ApiError::NotFound(message),
            ActionError::NotDeployable { .. } => ApiError::ActionNotAllowed(message),
        }
    }
}

/// The cause of a 500, attached to the response so that the request-id middleware logs it once
/// with the request id and replaces the body (handlers never see the request id).
#[derive(Clone, Debug)]
pub(crate) struct InternalCause(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(_) => "internal error".to_string(),
            ApiError::Unavailable(_) => {
                "the metadata store cannot be reached right now; nothing was changed, retry in a few seconds".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (
            status,
            axum::Json(ErrorBody {
                error: code.to_string(),
                message,
            }),
        )
            .into_response();
        match &self {
            ApiError::Internal(e) => {
                resp.extensions_mut()
                    .insert(InternalCause(format!("{e:#}")));
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "metadata store unavailable: answered 503");
            }
            _ => {}
        }
        resp
    }
}
