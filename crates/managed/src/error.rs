//! [`ManagedError`]: every failure of the managed API, mapped to a status and the control plane's
//! `{"error": <code>, "message": <sentence>}` shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::ErrorBody;

/// Why a managed-database request failed. Messages never hold a password.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// 400: the request is malformed or asks for something unsupported; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// 422: the body matches the documented schema but breaks a rule it cannot state (between
    /// fields, against the stored database or what is installed on this host); nothing changed.
    #[error("{0}")]
    Unprocessable(String),
    /// 401: no token, or not a valid `dkc_`/`rmk_` token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token lacks the scope the route needs.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource for this customer (other customers' ids look the same).
    #[error("{0}")]
    NotFound(String),
    /// 409: the resource is not in a state that allows the request (yet).
    #[error("{0}")]
    Conflict(String),
    /// 403 `{"error": "quota_exceeded", "message": …}`: the customer's managed-server quota
    /// would be exceeded; nothing was changed.
    #[error("{0}")]
    QuotaExceeded(String),
    /// 413: the request body is over the size limit; nothing was changed.
    #[error("{0}")]
    TooLarge(String),
    /// 501: this control plane cannot do it (no `/v1` API to register a connection with).
    #[error("{0}")]
    NotImplemented(String),
    /// 500: a bug or an unexpected failure of the host; logged with its cause, answered generically.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ManagedError {
    /// A 400 with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ManagedError::Invalid(message.into())
    }

    /// The 404 of a database id.
    pub fn no_database(id: &str) -> Self {
        ManagedError::NotFound(format!("database {id} not found"))
    }

    /// The stable machine-readable code (the `error` field), the same set as `/v1`'s.
    pub fn code(&self) -> &'static str {
        match self {
            ManagedError::Invalid(_) | ManagedError::Unprocessable(_) => "invalid_request",
            ManagedError::Unauthorized(_) => "unauthorized",
            ManagedError::Forbidden(_) => "forbidden",
            ManagedError::QuotaExceeded(_) => "quota_exceeded",
            ManagedError::NotFound(_) => "not_found",
            ManagedError::Conflict(_) => "conflict",
            ManagedError::TooLarge(_) => "too_large",
            ManagedError::NotImplemented(_) => "not_implemented",
            ManagedError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ManagedError::Invalid(_) => StatusCode::BAD_REQUEST,
            ManagedError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ManagedError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ManagedError::Forbidden(_) | ManagedError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            ManagedError::NotFound(_) => StatusCode::NOT_FOUND,
            ManagedError::Conflict(_) => StatusCode::CONFLICT,
            ManagedError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ManagedError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ManagedError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<anyhow::Error> for ManagedError {
    fn from(err: anyhow::Error) -> Self {
        ManagedError::Internal(err)
    }
}

impl From<rusqlite::Error> for ManagedError {
    fn from(err: rusqlite::Error) -> Self {
        ManagedError::Internal(anyhow::Error::new(err).context("managed metadata store"))
    }
}

impl From<crate::store::StoreError> for ManagedError {
    fn from(err: crate::store::StoreError) -> Self {
        ManagedError::Internal(anyhow::Error::new(err))
    }
}

impl IntoResponse for ManagedError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ManagedError::Internal(cause) => {
                // Logged once, here, where it is answered; the caller sees no detail.
                tracing::error!(cause = %format!("{cause:#}"), "managed API internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: self.code().to_string(),
            message,
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
