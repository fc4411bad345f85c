//! What every router's handlers share: their state ([`AppState`]), the extractors that answer
//! with our error shape ([`ApiJson`], [`Auth`]) and the id a request was given ([`request_id`]). Apart from `http.rs` so that the routers of
//! `/v1` (`http.rs`) and of the lifecycle (`lifecycle/http.rs`) both use it without depending on
//! each other.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The id `SetRequestIdLayer` gave the request (`x-request-id`), or `-`: the API's and the
/// dashboard's layers log it with an internal error.
pub(crate) fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<tower_http::request_id::RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or("-")
        .to_string()
}
use crate::service::{Principal, Service};

/// Shared state of every handler. The lifecycle work adds its handles (reconciler wake-up,
/// runtime driver) to [`Service`], so handlers keep one entry point.
#[derive(Clone)]
pub struct AppState {
    /// The control plane's logic.
    pub service: Service,
}

/// JSON body extractor that answers malformed JSON, wrong types, missing and unknown fields with
/// our `400 invalid_request` shape, naming the field (axum's own answers in plain text).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let message = format!("cannot read the request body: {}", e.body_text());
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(message)
            } else {
                ApiError::InvalidRequest(message)
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Strips serde_json's " at line 1 column 12" tail: the field path says more.
fn strip_position(msg: String) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Parses a request body; errors name the JSON path (`instance.instanceSize: unknown variant …`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde's derived structs also read a JSON array (fields by position): `["name", null]`
    // must not pass for `{"name": …}`, so the body itself must be an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() || first.is_some_and(|&b| b == b'[') {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = strip_position(inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data
                if path != "." && !msg.starts_with("unknown field") =>
            {
                ApiError::invalid(format!("{path}: {msg}"))
            }
            serde_json::error::Category::Data => ApiError::invalid(msg),
            _ => ApiError::invalid(format!("malformed JSON: {msg}")),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::invalid(format!("malformed JSON: {}", strip_position(e.to_string())))
    })?;
    Ok(value)
}

/// The authenticated caller (`Authorization: Bearer rmk_…`).
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer <management key>".into())
            })?;
        state.service.authenticate(token).await.map(Auth)
    }
}
