//! Routes of the lifecycle: actions, instance status, builds, events, schema, schema config and
//! query keys. Thin like the others: extract, call one [`crate::Service`] method, respond.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use utoipa::OpenApi;
use uuid::Uuid;

use super::actions::ActionParams;
use super::matrix::Action;
use super::types::*;
use crate::api::ErrorBody;
use crate::error::ApiError;
use crate::extract::{parse_json, ApiJson, AppState, Auth};

type Res<T> = Result<T, ApiError>;

fn id(s: &str, what: &str) -> Res<Uuid> {
    Uuid::parse_str(s).map_err(|_| ApiError::not_found(what))
}

/// The body of actions without parameters: nothing, or `{}` (anything else is a 400).
struct NoBody;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Res<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::invalid(format!("cannot read the request body: {}", e.body_text()))
        })?;
        if !bytes.iter().all(|b| b.is_ascii_whitespace()) {
            parse_json::<Empty>(&bytes)?;
        }
        Ok(NoBody)
    }
}

/// The routes, merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/databases/{id}/provision", post(provision))
        .route("/v1/databases/{id}/rebuild", post(rebuild))
        .route("/v1/databases/{id}/reconfigure", post(reconfigure))
        .route("/v1/databases/{id}/redeploy", post(redeploy))
        .route("/v1/databases/{id}/resize", post(resize))
        .route("/v1/databases/{id}/pause", post(pause))
        .route("/v1/databases/{id}/resume", post(resume))
        .route("/v1/databases/{id}/terminate", post(terminate))
        .route("/v1/databases/{id}/reload", post(reload))
        .route(
            "/v1/databases/{id}/pause-replication",
            post(pause_replication),
        )
        .route(
            "/v1/databases/{id}/resume-replication",
            post(resume_replication),
        )
        .route("/v1/databases/{id}/instance", get(instance))
        .route("/v1/databases/{id}/builds", get(builds))
        .route("/v1/databases/{id}/builds/{build}/logs", get(build_logs))
        .route("/v1/databases/{id}/events", get(events))
        .route("/v1/databases/{id}/schema", get(schema))
        .route(
            "/v1/databases/{id}/schema-config",
            get(get_schema_config)
                .put(put_schema_config)
                .delete(delete_schema_config),
        )
        .route(
            "/v1/databases/{id}/api-keys",
            post(create_api_key).get(list_api_keys),
        )
        .route("/v1/databases/{id}/api-keys/{key}", delete(revoke_api_key))
}

async fn act(
    s: &AppState,
    p: &Auth,
    did: &str,
    action: Action,
    params: ActionParams,
) -> Res<impl IntoResponse> {
    let r = s
        .service
        .database_action(&p.0, id(did, "database")?, action, params)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// Generates one handler per parameterless action (each with its OpenAPI entry).
macro_rules! simple_action {
    ($name:ident, $action:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "lifecycle",
            params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
            responses((status = 202, body = ActionResponse), (status = 404, body = ErrorBody),
                (status = 409, body = ErrorBody, description = "action_not_allowed: the action matrix refuses it")))]
        async fn $name(State(s): State<AppState>, p: Auth, Path(did): Path<String>, _body: NoBody) -> Res<impl IntoResponse> {
            act(&s, &p, &did, $action, ActionParams::default()).await
        }
    };
}

simple_action!(
    provision,
    Action::Provision,
    "/v1/databases/{id}/provision",
    "Provision: test the connection, build, deploy (registered, failed, stopped, terminated)."
);
simple_action!(rebuild, Action::Rebuild, "/v1/databases/{id}/rebuild",
    "Rebuild: a new build deployed beside the running engine; the endpoint moves once the new one is healthy.");
simple_action!(
    reconfigure,
    Action::Reconfigure,
    "/v1/databases/{id}/reconfigure",
    "Reconfigure: the same build with the current runtime settings, without downtime."
);
simple_action!(
    pause,
    Action::Pause,
    "/v1/databases/{id}/pause",
    "Pause: stop the engine (queued during an operation)."
);
simple_action!(
    resume,
    Action::Resume,
    "/v1/databases/{id}/resume",
    "Resume a paused database with a fresh snapshot."
);
simple_action!(
    terminate,
    Action::Terminate,
    "/v1/databases/{id}/terminate",
    "Terminate: stop the engine and remove its runtime resources; builds and keys are kept."
);
simple_action!(
    reload,
    Action::Reload,
    "/v1/databases/{id}/reload",
    "Full reload of every table (one atomic swap)."
);
simple_action!(
    pause_replication,
    Action::PauseSync,
    "/v1/databases/{id}/pause-replication",
    "Freeze the snapshot (`replication_paused: true`)."
);
simple_action!(
    resume_replication,
    Action::ResumeSync,
    "/v1/databases/{id}/resume-replication",
    "Unfreeze the snapshot (`replication_paused: false`)."
);

/// Redeploy a past deployable build.
#[utoipa::path(post, path = "/v1/databases/{id}/redeploy", tag = "lifecycle", request_body = RedeployRequest,
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 202, body = ActionResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn redeploy(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
    ApiJson(b): ApiJson<RedeployRequest>,
) -> Res<impl IntoResponse> {
    act(
        &s,
        &p,
        &did,
        Action::Redeploy,
        ActionParams {
            build_id: Some(b.build_id),
            ..Default::default()
        },
    )
    .await
}

/// Change the instance size (stored only, or deployed when running or deploying).
#[utoipa::path(post, path = "/v1/databases/{id}/resize", tag = "lifecycle", request_body = ResizeRequest,
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 202, body = ActionResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resize(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
    ApiJson(b): ApiJson<ResizeRequest>,
) -> Res<impl IntoResponse> {
    act(
        &s,
        &p,
        &did,
        Action::Resize,
        ActionParams {
            instance_size: Some(b.instance_size),
            ..Default::default()
        },
    )
    .await
}

/// Status, serving engine, latest build, deployed settings and the allowed actions.
#[utoipa::path(get, path = "/v1/databases/{id}/instance", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = InstanceStatusResponse), (status = 404, body = ErrorBody)))]
async fn instance(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<Json<InstanceStatusResponse>> {
    Ok(Json(
        s.service
            .instance_status(&p.0, id(&did, "database")?)
            .await?,
    ))
}

/// Builds, newest first, with the active build id.
#[utoipa::path(get, path = "/v1/databases/{id}/builds", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = BuildsResponse), (status = 404, body = ErrorBody)))]
async fn builds(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<Json<BuildsResponse>> {
    Ok(Json(
        s.service.list_builds(&p.0, id(&did, "database")?).await?,
    ))
}

/// The build log as text.
#[utoipa::path(get, path = "/v1/databases/{id}/builds/{build}/logs", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id"), ("build" = Uuid, Path, description = "Build id")),
    security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)))]
async fn build_logs(
    State(s): State<AppState>,
    p: Auth,
    Path((did, bid)): Path<(String, String)>,
) -> Res<impl IntoResponse> {
    let text = s
        .service
        .build_log(&p.0, id(&did, "database")?, id(&bid, "build")?)
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// Status transitions, newest first.
#[utoipa::path(get, path = "/v1/databases/{id}/events", tag = "lifecycle", params(("id" = Uuid, Path, description = "Database id"), EventsQuery),
    security(("bearer" = [])), responses((status = 200, body = EventsResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn events(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Res<Json<EventsResponse>> {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    Ok(Json(
        s.service
            .list_events(&p.0, id(&did, "database")?, q)
            .await?,
    ))
}

/// Tables, fields, keys and relations as the active build sees them.
#[utoipa::path(get, path = "/v1/databases/{id}/schema", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = SchemaView), (status = 404, body = ErrorBody)))]
async fn schema(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<Json<SchemaView>> {
    Ok(Json(
        s.service
            .database_schema(&p.0, id(&did, "database")?)
            .await?,
    ))
}

/// The `reflexdb.yaml` text; 204 (no body) while the default config is used (every table and
/// column exposed): the database exists, it just has no config of its own.
#[utoipa::path(get, path = "/v1/databases/{id}/schema-config", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "application/yaml"),
        (status = 204, description = "no schema config: the default (every table and column) is used"),
        (status = 404, body = ErrorBody)))]
async fn get_schema_config(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<impl IntoResponse> {
    match s
        .service
        .get_schema_config(&p.0, id(&did, "database")?)
        .await?
    {
        Some(text) => Ok((
            [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
            text,
        )
            .into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Set the `reflexdb.yaml` text (the raw YAML is the body); 400 names the line and the reason.
#[utoipa::path(put, path = "/v1/databases/{id}/schema-config", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the YAML breaks a rule of reflexdb.yaml (the message names the line)")))]
async fn put_schema_config(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
    body: Bytes,
) -> Res<StatusCode> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid("the schema config must be UTF-8 text"))?;
    s.service
        .set_schema_config(&p.0, id(&did, "database")?, Some(text))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove the schema config (back to the default: every table and column).
#[utoipa::path(delete, path = "/v1/databases/{id}/schema-config", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_schema_config(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<StatusCode> {
    s.service
        .set_schema_config(&p.0, id(&did, "database")?, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a query key; `key` (`rxk_…`) is shown only in this answer. When `effective` is `true`,
/// every running engine accepts it already; else (`effectiveReason`) within about a second.
#[utoipa::path(post, path = "/v1/databases/{id}/api-keys", tag = "lifecycle", request_body = CreateQueryKeyRequest,
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 201, body = QueryKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "schema-valid but refused by a rule between fields, against stored state or the clock")))]
async fn create_api_key(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
    ApiJson(b): ApiJson<CreateQueryKeyRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(
            s.service
                .create_query_key(&p.0, id(&did, "database")?, b)
                .await?,
        ),
    ))
}

/// The database's query keys (without `key`).
#[utoipa::path(get, path = "/v1/databases/{id}/api-keys", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<QueryKey>), (status = 404, body = ErrorBody)))]
async fn list_api_keys(
    State(s): State<AppState>,
    p: Auth,
    Path(did): Path<String>,
) -> Res<Json<Vec<QueryKey>>> {
    Ok(Json(
        s.service
            .list_query_keys(&p.0, id(&did, "database")?)
            .await?,
    ))
}

/// Revoke a query key (by `keyId` or record id). When `effective` is `true`, every running engine
/// refuses it already; else (`effectiveReason`) within about a second.
#[utoipa::path(delete, path = "/v1/databases/{id}/api-keys/{key}", tag = "lifecycle",
    params(("id" = Uuid, Path, description = "Database id"), ("key" = String, Path, description = "keyId or record id")),
    security(("bearer" = [])), responses((status = 200, body = QueryKey), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(
    State(s): State<AppState>,
    p: Auth,
    Path((did, key)): Path<(String, String)>,
) -> Res<Json<QueryKey>> {
    Ok(Json(
        s.service
            .revoke_query_key(&p.0, id(&did, "database")?, &key)
            .await?,
    ))
}

/// The OpenAPI entries of these routes, merged into the main document.
#[derive(OpenApi)]
#[openapi(
    paths(
        provision, rebuild, reconfigure, redeploy, resize, pause, resume, terminate, reload, pause_replication,
        resume_replication, instance, builds, build_logs, events, schema, get_schema_config, put_schema_config,
        delete_schema_config, create_api_key, list_api_keys, revoke_api_key,
    ),
    tags((name = "lifecycle", description = "Provisioning and the action matrix, builds, events, schema, query keys"))
)]
pub struct LifecycleApiDoc;
