//! The engine's HTTP API. Handlers are thin: check auth, call the state or the query crate,
//! answer. Every error has the shape `{"error": code, "message": text}`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::FutureExt;
use serde_json::json;

use crate::keys::AuthError;
use crate::metrics::QueryStatus;
use crate::state::{EngineState, LoadError, Trigger};

/// Largest request body accepted (a query text), in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TRUNCATED: HeaderName = HeaderName::from_static("x-refract-truncated");

/// An error answer: status, machine code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` field.
    pub code: &'static str,
    /// The `message` field.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_ready() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the first snapshot is still loading; see GET /health",
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

impl From<refract_query::QueryError> for ApiError {
    fn from(e: refract_query::QueryError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "query_error", e.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the request body: {e}"),
            )
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> ApiError {
        let (status, code) = match &e {
            LoadError::Paused => (StatusCode::CONFLICT, "replication_paused"),
            LoadError::CapExceeded { .. } => (StatusCode::INSUFFICIENT_STORAGE, "cap_exceeded"),
            LoadError::Source(_) => (StatusCode::BAD_GATEWAY, "source_error"),
            LoadError::Schema(_) => (StatusCode::UNPROCESSABLE_ENTITY, "schema_error"),
            LoadError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "message": self.message}).to_string();
        let mut resp = (self.status, [(CONTENT_TYPE, JSON)], body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn json_response(value: &serde_json::Value) -> Response {
    ([(CONTENT_TYPE, JSON)], value.to_string()).into_response()
}

fn auth_header(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(AUTHORIZATION).map(|v| v.as_bytes())
}

/// The engine's routes over `state`. Used by [`crate::run`]; tests call it with `oneshot`.
pub fn router(state: Arc<EngineState>) -> Router {
    Router::new()
        .route("/query", post(query))
        .route("/query/explain", post(explain))
        .route("/schema", get(schema))
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/replication/pause", post(pause))
        .route("/admin/replication/resume", post(resume))
        .route("/admin/replication/drop", post(drop_replication))
        .route("/admin/shutdown", post(shutdown))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(catch_panic))
        .with_state(state)
}

/// Turn a panic anywhere below into a 500 in our error shape; the process keeps serving.
async fn catch_panic(req: Request, next: Next) -> Response {
    // A `Uri` clone shares its bytes: no allocation on the hot path.
    let uri = req.uri().clone();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            tracing::error!(path = uri.path(), panic = what, "handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error (logged)",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// The query text, or a `query_error` pointing at the first byte that is not UTF-8.
fn query_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        let valid = &body[..e.valid_up_to()];
        let prefix = std::str::from_utf8(valid).unwrap_or("");
        let line = prefix.matches('\n').count() + 1;
        let column = prefix
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "query_error",
            format!("line {line}, column {column}: the query is not valid UTF-8"),
        )
    })
}

async fn query(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let m = &state.metrics;
    if let Err(e) = state.keys.check(auth_header(&headers)) {
        m.query(QueryStatus::Unauthorized, None);
        return ApiError::from(e).into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let e = ApiError::from(e);
            m.query(
                if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                    QueryStatus::TooLarge
                } else {
                    QueryStatus::QueryError
                },
                None,
            );
            return e.into_response();
        }
    };
    let guard = state.snapshot_guard();
    let Some(snapshot) = guard.as_ref() else {
        m.query(QueryStatus::NotReady, None);
        return ApiError::not_ready().into_response();
    };
    let text = match query_text(&body) {
        Ok(t) => t,
        Err(e) => {
            m.query(QueryStatus::QueryError, None);
            return e.into_response();
        }
    };
    match refract_query::execute(snapshot, text, &state.query_options) {
        Ok(out) => {
            drop(guard);
            let mut resp = Response::new(Body::from(out.body));
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, JSON);
            if out.truncated {
                h.insert(TRUNCATED, HeaderValue::from_static("true"));
            }
            m.query(QueryStatus::Ok, Some(started.elapsed().as_secs_f64()));
            resp
        }
        Err(e) => {
            m.query(
                QueryStatus::QueryError,
                Some(started.elapsed().as_secs_f64()),
            );
            ApiError::from(e).into_response()
        }
    }
}

async fn explain(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.keys.check(auth_header(&headers))?;
    let body = body?;
    let snapshot = state.snapshot().ok_or_else(ApiError::not_ready)?;
    let text = query_text(&body)?;
    let plan = refract_query::explain(&snapshot, text, &state.query_options)?;
    Ok(json_response(&plan))
}

async fn schema(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.keys.check(auth_header(&headers))?;
    let manifest = state.manifest().ok_or_else(ApiError::not_ready)?;
    Ok(json_response(&crate::doc::schema_json(
        &manifest,
        state.snapshot().as_deref(),
    )))
}

async fn openapi(State(state): State<Arc<EngineState>>) -> Result<Response, ApiError> {
    let manifest = state.manifest().ok_or_else(ApiError::not_ready)?;
    Ok(json_response(&crate::doc::openapi_json(
        &manifest,
        state.keys.is_enforced(),
        state.config().default_limit,
    )))
}

async fn health(State(state): State<Arc<EngineState>>) -> Response {
    json_response(&state.health())
}

async fn stats(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    Ok(json_response(&state.stats()))
}

async fn metrics(State(state): State<Arc<EngineState>>) -> Response {
    state.refresh_clock_gauges();
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn admin_reload(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    // On its own task: a client that hangs up does not cancel a load half-way.
    let s = state.clone();
    let result = tokio::spawn(async move { s.reload(Trigger::Admin).await })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("reload task failed: {e}"),
            )
        })?;
    let report = result?;
    Ok(json_response(&json!({
        "swapCount": report.swap_count,
        "durationMs": report.duration_ms,
        "rows": report.rows,
        "tablesReloaded": report.tables_reloaded,
        "tablesReused": report.tables_reused,
    })))
}

async fn pause(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    state.set_paused(true);
    Ok(json_response(&json!({"replication_paused": true})))
}

async fn resume(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    state.set_paused(false);
    Ok(json_response(&json!({"replication_paused": false})))
}

/// Pause replication and drop the PostgreSQL slot and publication (terminate/delete).
async fn drop_replication(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    let answer = state.drop_replication().await?;
    Ok(json_response(&answer))
}

async fn shutdown(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    tracing::info!("shutdown requested over HTTP");
    state.shutdown();
    Ok(json_response(&json!({"shuttingDown": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_errors_have_a_position() {
        let e = query_text(b"users {\n  id \xff }").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("line 2, column 6:"), "{}", e.message);
        assert_eq!(query_text(b"users { id }").unwrap(), "users { id }");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_our_shape() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(middleware::from_fn(catch_panic));
        for _ in 0..2 {
            let req = axum::http::Request::get("/boom")
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], "internal");
        }
    }
}
