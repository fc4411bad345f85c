//! The engine's HTTP API. Handlers are thin: check auth, call the state or the query crate,
//! answer. Every error has the shape `{"error": code, "message": text}`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

use refract_query::{Interrupt, RunError, RunLimits};

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
        .route("/docs", get(docs_page))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/keys/reload", post(admin_keys_reload))
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

/// Answers up to this size are built by the request's own task in one buffer; a bigger one is
/// run again on a blocking thread and streamed ([`stream_query`]).
const INLINE_MAX_BYTES: usize = 1 << 20;
/// Work a query may do on the request's own task (a runtime worker) before it moves to a
/// blocking thread, so that one long query never stalls the small ones.
const INLINE_MAX_TIME: Duration = Duration::from_millis(20);
/// Size of the pieces a streamed answer is sent in.
const STREAM_PIECE_BYTES: usize = 256 * 1024;

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
    let caps = QueryCaps::of(&state, started);
    // First on this task, within a small budget: nearly every answer fits, with no thread hop.
    let inline = RunLimits {
        max_bytes: caps.max_bytes.min(INLINE_MAX_BYTES),
        deadline: Some(caps.deadline.min(started + INLINE_MAX_TIME)),
        flush_bytes: usize::MAX,
    };
    match refract_query::run(snapshot, text, &state.query_options, &inline, &mut ()) {
        Ok(out) => {
            drop(guard);
            let mut resp = Response::new(Body::from(out.tail));
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, JSON);
            if out.truncated {
                h.insert(TRUNCATED, HeaderValue::from_static("true"));
            }
            m.query(QueryStatus::Ok, Some(started.elapsed().as_secs_f64()));
            resp
        }
        Err(RunError::Query(e)) => {
            m.query(
                QueryStatus::QueryError,
                Some(started.elapsed().as_secs_f64()),
            );
            ApiError::from(e).into_response()
        }
        Err(RunError::Interrupted(why)) => {
            let final_stop = match why {
                Interrupt::TooLarge => caps.max_bytes <= INLINE_MAX_BYTES,
                Interrupt::Timeout => Instant::now() >= caps.deadline,
                Interrupt::Cancelled => true,
            };
            if final_stop {
                m.query(why.into(), Some(started.elapsed().as_secs_f64()));
                return caps.error(why).into_response();
            }
            let snapshot = snapshot.clone();
            drop(guard);
            stream_query(state, snapshot, body, caps, started).await
        }
    }
}

/// The bounds of one query: the engine's `max_response_bytes` and `max_query_ms`.
#[derive(Debug, Clone, Copy)]
struct QueryCaps {
    max_bytes: usize,
    max_ms: u64,
    deadline: Instant,
}

impl QueryCaps {
    fn of(state: &EngineState, started: Instant) -> QueryCaps {
        let config = state.config();
        QueryCaps {
            max_bytes: config.max_response_bytes,
            max_ms: config.max_query_ms,
            deadline: started + Duration::from_millis(config.max_query_ms),
        }
    }

    /// The answer for a query a cap stopped (before any byte of it was sent).
    fn error(&self, why: Interrupt) -> ApiError {
        match why {
            Interrupt::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "result_too_large",
                format!(
                    "the answer is larger than this database's max_response_bytes ({} bytes); \
                     ask for fewer rows or fields (LIMIT at the top level and in nested selections)",
                    self.max_bytes
                ),
            ),
            Interrupt::Timeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "query_timeout",
                format!(
                    "the query ran longer than this database's max_query_ms ({} ms); \
                     narrow it with a filter on an indexed field or a LIMIT",
                    self.max_ms
                ),
            ),
            // Nobody is left to read this one.
            Interrupt::Cancelled => ApiError::new(
                StatusCode::BAD_REQUEST,
                "cancelled",
                "the client went away",
            ),
        }
    }
}

/// What the query thread sends to the response body.
enum Piece {
    Data(Vec<u8>),
    /// The last bytes; whether a default limit cut the answer.
    End {
        tail: Vec<u8>,
        truncated: bool,
    },
    /// The query is wrong (before any byte).
    Rejected(refract_query::QueryError),
    /// A cap stopped it.
    Stopped(Interrupt),
}

/// Hands pieces to the response body; stops the query when the body is gone.
struct ChannelSink(tokio::sync::mpsc::Sender<Piece>);

impl refract_query::Sink for ChannelSink {
    fn write(&mut self, piece: Vec<u8>) -> bool {
        self.0.blocking_send(Piece::Data(piece)).is_ok()
    }
    fn wanted(&self) -> bool {
        !self.0.is_closed()
    }
}

/// Run a big or slow query on a blocking thread and stream its answer.
///
/// When a cap stops it before the first piece is sent, the answer is the cap's error with its
/// status. After that the status (200) is gone: the body ends with a line holding the error
/// object and the connection is cut without the closing chunk, so no client can mistake the
/// incomplete array for a whole answer.
async fn stream_query(
    state: Arc<EngineState>,
    snapshot: Arc<refract_storage::Snapshot>,
    body: Bytes,
    caps: QueryCaps,
    started: Instant,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(2);
    let options = state.query_options.clone();
    let running = state.metrics.query_running();
    let metrics = state.clone();
    let work = tokio::task::spawn_blocking(move || {
        let metrics = &metrics.metrics;
        let _running = running;
        let text = std::str::from_utf8(&body).unwrap_or_default();
        let limits = RunLimits {
            max_bytes: caps.max_bytes,
            deadline: Some(caps.deadline),
            flush_bytes: STREAM_PIECE_BYTES,
        };
        let mut sink = ChannelSink(tx.clone());
        let end = match refract_query::run(&snapshot, text, &options, &limits, &mut sink) {
            Ok(out) => Piece::End {
                tail: out.tail,
                truncated: out.truncated,
            },
            Err(RunError::Interrupted(Interrupt::Cancelled)) => {
                // Nobody reads the body any more: count it here.
                metrics.query(QueryStatus::Cancelled, None);
                return;
            }
            Err(RunError::Interrupted(why)) => Piece::Stopped(why),
            Err(RunError::Query(e)) => Piece::Rejected(e),
        };
        let _ = tx.blocking_send(end);
    });
    let m = &state.metrics;
    let first = rx.recv().await;
    let elapsed = || Some(started.elapsed().as_secs_f64());
    match first {
        None => {
            let e = work.await.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::error!(error = e, "query thread ended without an answer");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error (logged)",
            )
            .into_response()
        }
        Some(Piece::Rejected(e)) => {
            m.query(QueryStatus::QueryError, elapsed());
            ApiError::from(e).into_response()
        }
        Some(Piece::Stopped(why)) => {
            m.query(why.into(), elapsed());
            caps.error(why).into_response()
        }
        Some(Piece::End { tail, truncated }) => {
            m.query(QueryStatus::Ok, elapsed());
            let mut resp = Response::new(Body::from(tail));
            resp.headers_mut().insert(CONTENT_TYPE, JSON);
            if truncated {
                resp.headers_mut()
                    .insert(TRUNCATED, HeaderValue::from_static("true"));
            }
            resp
        }
        Some(Piece::Data(first)) => {
            m.queries_streamed.increment(1);
            let body = StreamedAnswer {
                first: Some(Bytes::from(first)),
                rx,
                state: state.clone(),
                caps,
                started,
                trailers: None,
                cut_at: None,
            };
            let mut resp = Response::new(Body::new(body));
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, JSON);
            // Whether a default limit cut a streamed answer is known at its end only.
            h.insert(
                axum::http::header::TRAILER,
                HeaderValue::from_static("x-refract-truncated"),
            );
            resp
        }
    }
}

/// The body of a streamed answer: the pieces of the query thread, then (when a default limit
/// cut it and the client sent `TE: trailers`) the `X-Refract-Truncated` trailer.
struct StreamedAnswer {
    first: Option<Bytes>,
    rx: tokio::sync::mpsc::Receiver<Piece>,
    state: Arc<EngineState>,
    caps: QueryCaps,
    started: Instant,
    trailers: Option<HeaderMap>,
    /// Set once the error line is out: when it fires, the connection is cut. The pause lets the
    /// server flush that line first (it flushes when the body has nothing ready).
    cut_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for StreamedAnswer {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        if let Some(t) = this.trailers.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(t))));
        }
        if let Some(cut) = &mut this.cut_at {
            // Cut the connection: no closing chunk, so the body is visibly incomplete.
            return match cut.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(std::io::Error::other("query stopped mid-answer"))))
                }
            };
        }
        let elapsed = Some(this.started.elapsed().as_secs_f64());
        let m = &this.state.metrics;
        match this.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(d))) => {
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(d)))))
            }
            Poll::Ready(Some(Piece::End { tail, truncated })) => {
                m.query(QueryStatus::Ok, elapsed);
                if truncated {
                    let mut t = HeaderMap::new();
                    t.insert(TRUNCATED, HeaderValue::from_static("true"));
                    this.trailers = Some(t);
                }
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(tail)))))
            }
            // A query error comes before any byte: never after the first piece.
            Poll::Ready(Some(Piece::Rejected(_))) => Poll::Ready(None),
            Poll::Ready(Some(Piece::Stopped(why))) => {
                m.query(why.into(), elapsed);
                this.cut_at = Some(Box::pin(tokio::time::sleep(Duration::from_millis(20))));
                let e = this.caps.error(why);
                let line = format!("\n{}\n", json!({"error": e.code, "message": e.message}));
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(line)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
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

async fn openapi(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Every table, column and relation: as much as `/schema` tells, so the same key.
    state.keys.check(auth_header(&headers))?;
    let manifest = state.manifest().ok_or_else(ApiError::not_ready)?;
    Ok(json_response(&crate::doc::openapi_json(
        &manifest,
        state.keys.is_enforced(),
        state.config().default_limit,
    )))
}

/// A browsable page of this engine's API: it asks for a query key, then shows the schema (from
/// `/schema`) and runs queries. Static: it holds no schema itself, so it needs no key.
async fn docs_page() -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        include_str!("assets/docs.html"),
    )
        .into_response()
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

/// Re-read the keys file now; answers the key-set version in force (the control plane calls it
/// after every key change, so a new key works and a revoked one stops before its call answers).
async fn admin_keys_reload(
    State(state): State<Arc<EngineState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admin.check(auth_header(&headers))?;
    let s = state.clone();
    let result = tokio::task::spawn_blocking(move || s.keys.reload_now())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("keys reload task failed: {e}"),
            )
        })?;
    let (version, keys) = result.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "keys_error",
            format!("{e:#}; the previous keys stay in force"),
        )
    })?;
    Ok(json_response(&json!({"version": version, "keys": keys})))
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
    let answer = crate::cdc::drop_replication(&state).await?;
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
