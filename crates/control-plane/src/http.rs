//! HTTP: the router, middleware (request id, tracing span, metrics, internal-error logging) and
//! the `/v1` handlers (their extractors are in `extract.rs`). Handlers are thin: extract, call one [`crate::Service`]
//! method, respond.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::api::*;
use crate::error::{ApiError, InternalCause};
use crate::extract::{request_id, ApiJson, AppState, Auth};

/// The process-wide Prometheus recorder (installed once; later routers share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed when embedded (tests); then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The whole HTTP surface: `/v1`, `/health`, `/metrics`, `/v1/openapi.json`, `/v1/docs`.
pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// [`router`] plus `extra` routes (the managed `/api/v1` routes) behind the same layers: request
/// id, tracing span, metrics, panic catching and the JSON shape of axum's own errors.
pub fn router_with(state: AppState, extra: Option<Router>) -> Router {
    let _ = metrics_handle();
    let state_service = state.service.clone();
    let v1 = Router::new()
        .route(
            "/v1/admin/customers",
            post(create_customer).get(list_customers),
        )
        .route("/v1/admin/customers/{id}/plan", patch(set_plan))
        .route(
            "/v1/account/management-keys",
            post(create_key).get(list_keys),
        )
        .route(
            "/v1/account/management-keys/{id}",
            axum::routing::delete(revoke_key),
        )
        .route(
            "/v1/connections",
            post(create_connection).get(list_connections),
        )
        .route("/v1/connections/test-connection", post(test_connection_raw))
        .route(
            "/v1/connections/{id}",
            get(get_connection)
                .patch(update_connection)
                .delete(delete_connection),
        )
        .route(
            "/v1/connections/{id}/test-connection",
            post(test_connection_stored),
        )
        .route("/v1/databases", post(register_database).get(list_databases))
        .route(
            "/v1/databases/{id}",
            get(get_database)
                .patch(update_database)
                .delete(delete_database),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics_endpoint))
        .merge(crate::lifecycle::http::routes())
        .with_state(state);
    let mut doc = ApiDoc::openapi();
    doc.merge(<crate::lifecycle::http::LifecycleApiDoc as OpenApi>::openapi());
    if extra.is_some() {
        // The managed `/api/v1` routes are the only extra routes (see `lib.rs`).
        doc.merge(<refract_managed::ManagedApiDoc as OpenApi>::openapi());
    }
    document_common_errors(&mut doc);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/v1/docs").url("/v1/openapi.json", doc);
    // The web dashboard (`/`, `/ui/…`): HTML pages over the same service (see `dashboard/`).
    let mut app = v1
        .merge(docs)
        .merge(crate::dashboard::router(state_service, extra.clone()));
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    app.fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            // The dashboard's pages answer a page, the API its JSON.
            if crate::dashboard::is_page(uri.path()) {
                return crate::dashboard::method_not_allowed();
            }
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(ErrorBody {
                    error: "method_not_allowed".into(),
                    message: "method not allowed on this route".into(),
                }),
            )
                .into_response()
        })
        .layer(axum::middleware::from_fn(observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Per request: a tracing span with the request id, request count and latency metrics, and the
/// one place where internal errors are logged (with the request id) and their body replaced.
async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let rid = request_id(&req);
    let method = req.method().to_string();
    // The route template, not the raw path: ids must not explode metric cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %rid, %method, route = %route);
    // The handler runs on its own task: a panic there (a bug) becomes a 500 with the request id
    // instead of a dropped connection, and the server goes on.
    let mut resp = match tokio::spawn(next.run(req).instrument(span.clone())).await {
        Ok(resp) => resp,
        Err(e) => {
            let cause = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into()),
                Err(e) => e.to_string(),
            };
            ApiError::Internal(anyhow::anyhow!("handler panicked: {cause}")).into_response()
        }
    };
    // The dashboard's error pages are HTML on purpose (`dashboard/common.rs`).
    if !resp.status().is_success()
        && !resp.status().is_redirection()
        && !is_json(&resp)
        && !is_html(&resp)
    {
        resp = json_error(resp).await;
    }
    let status = resp.status();
    if let Some(InternalCause(cause)) = resp.extensions_mut().remove::<InternalCause>() {
        span.in_scope(|| tracing::error!(request_id = %rid, cause = %cause, "internal error"));
        let body = ErrorBody {
            error: "internal".into(),
            message: format!("internal error (request id {rid})"),
        };
        resp = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed * 1e3,
            "request done"
        )
    });
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("refract_http_requests_total", &labels).increment(1);
    metrics::histogram!("refract_http_request_duration_seconds", &labels[..2]).record(elapsed);
    resp
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// Safety net: an error answered by axum itself (a path or query rejection in any handler, a
/// body too large, a route of the docs that does not exist) gets our `{error, message}` shape.
async fn json_error(resp: Response) -> Response {
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody {
        error: code.into(),
        message,
    })
    .unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

// ------------------------------------------------------------------ extractors

/// An id path segment; one that is not a UUID cannot exist, so it is a 404 like any unknown id.
fn id(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::not_found(what))
}

// ------------------------------------------------------------------ handlers

type Res<T> = Result<T, ApiError>;

/// The wire values of stored rows, as a list endpoint answers them.
fn wire<Row: Into<Wire>, Wire>(rows: Vec<Row>) -> Vec<Wire> {
    rows.into_iter().map(Into::into).collect()
}

/// Liveness, store readability and leadership.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = HealthResponse),
    (status = 503, description = "the metadata store cannot be reached", body = ErrorBody)))]
async fn health(State(s): State<AppState>) -> Res<Json<HealthResponse>> {
    s.service.read_store(|tx| tx.admin_exists()).await?;
    let leadership = &s.service.leadership;
    let leader_replica = match s.service.postgres.clone() {
        Some(pg) => tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::task::spawn_blocking(move || crate::leader::holder(&pg.pool())),
        )
        .await
        .map_err(|_| ApiError::Unavailable("no answer within 5 s".into()))?
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?,
        None => Some(leadership.replica_name().to_string()),
    };
    Ok(Json(HealthResponse {
        status: "ok".into(),
        store: leadership.backend().into(),
        replica: leadership.replica_name().into(),
        leader: leadership.is_leader(),
        leader_replica,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics_endpoint(State(s): State<AppState>) -> impl IntoResponse {
    fleet_gauges(&s.service).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

/// `refract_databases{status}` (every status, 0 included) and
/// `refract_databases_unhealthy{health}` (engines not `ok`), counted from the store at each scrape:
/// "how many of my databases are unhealthy, and why".
async fn fleet_gauges(service: &crate::Service) {
    use crate::api::{HealthStatus, Status};
    let counts = service
        .read(|tx| {
            let statuses: Vec<Status> = tx.list_all_databases()?.iter().map(|d| d.status).collect();
            let health: Vec<HealthStatus> = tx
                .lifecycle()
                .live_instances(None)?
                .iter()
                .filter_map(|i| i.health_status)
                .collect();
            Ok((statuses, health))
        })
        .await;
    let Ok((statuses, health)) = counts else {
        return;
    };
    for st in Status::ALL {
        let n = statuses.iter().filter(|s| *s == st).count();
        metrics::gauge!("refract_databases", "status" => st.as_str()).set(n as f64);
    }
    for h in HealthStatus::ALL.iter().filter(|h| **h != HealthStatus::Ok) {
        let n = health.iter().filter(|x| *x == h).count();
        metrics::gauge!("refract_databases_unhealthy", "health" => h.as_str()).set(n as f64);
    }
}

/// Create a customer and its first management key (admin only).
#[utoipa::path(post, path = "/v1/admin/customers", tag = "admin", request_body = CreateCustomerRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreateCustomerResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_customer(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<CreateCustomerRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_customer(&p, b).await?),
    ))
}

/// List customers (admin only).
#[utoipa::path(get, path = "/v1/admin/customers", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Customer>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_customers(State(s): State<AppState>, Auth(p): Auth) -> Res<Json<Vec<Customer>>> {
    Ok(Json(s.service.list_customers(&p).await?))
}

/// Set a customer's plan (admin only); the plan sets its limits, the managed-server quota included.
#[utoipa::path(patch, path = "/v1/admin/customers/{id}/plan", tag = "admin", request_body = SetPlanRequest,
    params(("id" = Uuid, Path, description = "Customer id")), security(("bearer" = [])),
    responses((status = 200, body = SetPlanResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_plan(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(cid): Path<String>,
    ApiJson(b): ApiJson<SetPlanRequest>,
) -> Res<Json<SetPlanResponse>> {
    Ok(Json(
        s.service.set_plan(&p, id(&cid, "customer")?, b).await?,
    ))
}

/// Create a management key; `key` is shown only in this answer.
#[utoipa::path(post, path = "/v1/account/management-keys", tag = "keys", request_body = CreateManagementKeyRequest,
    security(("bearer" = [])), responses((status = 201, body = ManagementKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn create_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<CreateManagementKeyRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(ManagementKey::from(
            s.service.create_management_key(&p, b).await?,
        )),
    ))
}

/// List the account's management keys (without `key`).
#[utoipa::path(get, path = "/v1/account/management-keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<ManagementKey>), (status = 401, body = ErrorBody)))]
async fn list_keys(State(s): State<AppState>, Auth(p): Auth) -> Res<Json<Vec<ManagementKey>>> {
    Ok(Json(wire(s.service.list_management_keys(&p).await?)))
}

/// Revoke a management key; it stops working at once.
#[utoipa::path(delete, path = "/v1/account/management-keys/{id}", tag = "keys",
    params(("id" = Uuid, Path, description = "Key record id")), security(("bearer" = [])),
    responses((status = 200, body = ManagementKey), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(kid): Path<String>,
) -> Res<Json<ManagementKey>> {
    Ok(Json(
        s.service
            .revoke_management_key(&p, id(&kid, "management key")?)
            .await?
            .into(),
    ))
}

/// Create a connection, optionally with its first database (one transaction; the source is not contacted).
#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = CreateConnectionRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreateConnectionResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn create_connection(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<CreateConnectionRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_connection(&p, b).await?),
    ))
}

/// List the account's connections.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", security(("bearer" = [])),
    responses((status = 200, body = Vec<Connection>), (status = 401, body = ErrorBody)))]
async fn list_connections(State(s): State<AppState>, Auth(p): Auth) -> Res<Json<Vec<Connection>>> {
    Ok(Json(wire(s.service.list_connections(&p).await?)))
}

/// A connection with its non-deleted databases.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")), security(("bearer" = [])),
    responses((status = 200, body = ConnectionWithDatabases), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_connection(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(cid): Path<String>,
) -> Res<Json<ConnectionWithDatabases>> {
    Ok(Json(
        s.service
            .get_connection(&p, id(&cid, "connection")?)
            .await?,
    ))
}

/// Partially update a connection; removing a schema in use is a 409.
#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", request_body = UpdateConnectionRequest,
    params(("id" = Uuid, Path, description = "Connection id")), security(("bearer" = [])),
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn update_connection(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(cid): Path<String>,
    ApiJson(b): ApiJson<UpdateConnectionRequest>,
) -> Res<Json<Connection>> {
    Ok(Json(
        s.service
            .update_connection(&p, id(&cid, "connection")?, b)
            .await?
            .into(),
    ))
}

/// Delete a connection without databases; its password leaves the secret store.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_connection(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(cid): Path<String>,
) -> Res<StatusCode> {
    s.service
        .delete_connection(&p, id(&cid, "connection")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Try credentials without storing them (always 200; `ok:false` with `error` on failure; 5 s timeout).
#[utoipa::path(post, path = "/v1/connections/test-connection", tag = "connections", request_body = TestConnectionRequest,
    security(("bearer" = [])), responses((status = 200, body = TestConnectionResult), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "schema-valid but refused: a host too long for its backend, a SQLite file outside the allowed roots")))]
async fn test_connection_raw(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<TestConnectionRequest>,
) -> Res<Json<TestConnectionResult>> {
    Ok(Json(s.service.test_connection_raw(&p, b).await?))
}

/// Test a stored connection with its stored credentials (always 200 once found).
#[utoipa::path(post, path = "/v1/connections/{id}/test-connection", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")), security(("bearer" = [])),
    responses((status = 200, body = TestConnectionResult), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the stored SQLite file is outside the allowed roots now")))]
async fn test_connection_stored(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(cid): Path<String>,
) -> Res<Json<TestConnectionResult>> {
    Ok(Json(
        s.service
            .test_connection_stored(&p, id(&cid, "connection")?)
            .await?,
    ))
}

/// Register a database under a connection (status `registered`).
#[utoipa::path(post, path = "/v1/databases", tag = "databases", request_body = RegisterDatabaseRequest,
    security(("bearer" = [])),
    responses((status = 201, body = Database), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn register_database(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<RegisterDatabaseRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(Database::from(s.service.register_database(&p, b).await?)),
    ))
}

/// List non-deleted databases, optionally filtered.
#[utoipa::path(get, path = "/v1/databases", tag = "databases", params(DatabaseFilter), security(("bearer" = [])),
    responses((status = 200, body = Vec<Database>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_databases(
    State(s): State<AppState>,
    Auth(p): Auth,
    q: Result<Query<DatabaseFilter>, QueryRejection>,
) -> Res<Json<Vec<Database>>> {
    let Query(filter) =
        q.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    Ok(Json(wire(s.service.list_databases(&p, filter).await?)))
}

/// One database.
#[utoipa::path(get, path = "/v1/databases/{id}", tag = "databases",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = Database), (status = 404, body = ErrorBody)))]
async fn get_database(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(did): Path<String>,
) -> Res<Json<Database>> {
    Ok(Json(
        s.service
            .get_database(&p, id(&did, "database")?)
            .await?
            .into(),
    ))
}

/// Partially update a database; runtime-setting changes set `hasPendingChanges` once deployed.
#[utoipa::path(patch, path = "/v1/databases/{id}", tag = "databases", request_body = UpdateDatabaseRequest,
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = Database), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn update_database(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(did): Path<String>,
    ApiJson(b): ApiJson<UpdateDatabaseRequest>,
) -> Res<Json<Database>> {
    Ok(Json(
        s.service
            .update_database(&p, id(&did, "database")?, b)
            .await?
            .into(),
    ))
}

/// Soft-delete a database (registered, stopped, terminated or failed); its name is free again.
#[utoipa::path(delete, path = "/v1/databases/{id}", tag = "databases",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_database(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(did): Path<String>,
) -> Res<StatusCode> {
    s.service.delete_database(&p, id(&did, "database")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
/// types' `ToSchema` derives (never hand-written).
#[derive(OpenApi)]
#[openapi(
    info(title = "Refract control plane API", description = "Read replicas as an API: connections, databases, keys. See docs/api.md."),
    paths(
        health, metrics_endpoint, create_customer, list_customers, set_plan, create_key, list_keys, revoke_key,
        create_connection, list_connections, get_connection, update_connection, delete_connection,
        test_connection_raw, test_connection_stored, register_database, list_databases, get_database,
        update_database, delete_database,
    ),
    components(schemas(ErrorBody, RuntimeSettings, BinlogReadiness, LogicalReadiness)),
    modifiers(&BearerAuth),
    tags(
        (name = "connections", description = "Source database connections"),
        (name = "databases", description = "Databases (engine configs) and their status"),
        (name = "keys", description = "Management keys of the account"),
        (name = "admin", description = "Customers and plans (admin keys only)"),
        (name = "system", description = "Health and metrics (no auth)"),
    )
)]
pub struct ApiDoc;

/// Adds the error answers every route of a kind can give, so that the document lists every
/// status a route answers (the contract the API fuzz test holds the server to): 401 on every
/// route behind the bearer scheme, 404 on every route with a path parameter (unknown or foreign
/// id), 400 on every route that reads a body or a query string, 413 on every route that reads a
/// body. Each with the `{error, message}` schema; statuses a handler documents itself are kept.
pub fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_path_param = path.contains('{');
        let ops = [
            (&mut item.get, false),
            (&mut item.delete, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
        ];
        for (op, reads_body) in ops {
            let Some(op) = op.as_mut() else { continue };
            let has_query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query);
            let mut add = |code: &str, description: &str| {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error(description).into());
            };
            if reads_body || has_query {
                add(
                    "400",
                    "invalid_request: the message names the field and the rule",
                );
            }
            if reads_body {
                add("413", "too_large: the request body is over the limit");
            }
            if has_path_param {
                add("404", "not_found: no such resource for this account");
            }
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add("401", "unauthorized: no valid management key");
            }
        }
    }
}

/// Declares the `Authorization: Bearer rmk_…` scheme the routes refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rmk_<keyId>.<secret>")
                    .build(),
            ),
        );
    }
}
