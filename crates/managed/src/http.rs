//! The `/api/v1` router: thin handlers (extract, call one [`ManagedService`] method, respond),
//! the bearer-token extractor and a JSON extractor that answers malformed bodies with our
//! `{"error", "message"}` shape, and their OpenAPI entries ([`ManagedApiDoc`]).

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::error::ManagedError;
use crate::service::{Caller, ManagedService};

type Res<T> = Result<T, ManagedError>;

impl ManagedService {
    /// The `/api/v1` routes (API tokens and managed databases), to be merged into the control
    /// plane's router. Sets no fallback (the host router has its own); unknown `/api/v1/…`
    /// paths answer 404 in this API's shape.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/api-tokens", post(create_token).get(list_tokens))
            .route("/api/v1/api-tokens/{id}", delete(delete_token))
            .route(
                "/api/v1/databases",
                post(create_database).get(list_databases),
            )
            .route(
                "/api/v1/databases/{id}",
                get(get_database)
                    .patch(update_database)
                    .delete(delete_database),
            )
            .route("/api/v1/databases/{id}/credentials", get(credentials))
            .route("/api/v1/databases/{id}/actions", post(action))
            .route("/api/v1/databases/{id}/connection", post(create_connection))
            .route("/api/v1/databases/{id}/events", get(events))
            .route("/api/v1/databases/{id}/ca", get(crate::ca::get_ca))
            .route(
                "/api/v1/databases/{id}/pools",
                post(create_pool).get(list_pools),
            )
            .route("/api/v1/databases/{id}/pools/{name}", delete(delete_pool))
            .route(
                "/api/v1/databases/{id}/backups",
                get(list_backups).post(create_backup),
            )
            .route("/api/v1/{*rest}", any(no_route))
            .with_state(self.clone())
    }
}

/// The OpenAPI entries of the `/api/v1` routes, merged by the control plane into the one
/// document it serves at `/v1/openapi.json` (the `bearer` scheme is declared there).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_token, list_tokens, delete_token, create_database, list_databases, get_database,
        update_database, delete_database, credentials, action, create_connection, events,
        crate::ca::get_ca, create_pool, list_pools, delete_pool,
        list_backups, create_backup,
    ),
    components(schemas(ErrorBody, crate::ca::CaCertificate, crate::pools::Pool, crate::pools::CreatePoolRequest)),
    tags((name = "managed", description = "Managed database servers (`dkc_` API tokens or management keys)"))
)]
pub struct ManagedApiDoc;

async fn no_route() -> ManagedError {
    ManagedError::NotFound("no such route".into())
}

impl FromRequestParts<ManagedService> for Caller {
    type Rejection = ManagedError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ManagedService,
    ) -> Result<Self, ManagedError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ManagedError::Unauthorized("missing Authorization: Bearer <API token>".into())
            })?;
        state.authenticate(token).await
    }
}

/// A JSON body; malformed JSON, wrong types, missing and unknown fields are 400 `invalid_request`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ManagedError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ManagedError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let message = format!("cannot read the request body: {}", e.body_text());
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ManagedError::TooLarge(message)
            } else {
                ManagedError::invalid(message)
            }
        })?;
        // serde's derived structs also read a JSON array (fields by position): the body must be
        // an object.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'[') => {
                return Err(ManagedError::invalid(
                    "the request body must be a JSON object",
                ))
            }
            Some(_) => {}
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            ManagedError::invalid(format!("invalid request body: {msg}"))
        })
    }
}

/// Query strings with our error shape.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ManagedError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ManagedError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ManagedError::invalid(format!("invalid query string: {}", e.body_text())))
    }
}

#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "managed", request_body = CreateTokenRequest, security(("bearer" = [])), responses((status = 201, body = CreateTokenResponse), (status = 403, body = ErrorBody, description = "API tokens are created with a management key")))]
async fn create_token(
    State(s): State<ManagedService>,
    caller: Caller,
    Body(b): Body<CreateTokenRequest>,
) -> Res<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(s.create_token(&caller, b).await?)))
}

#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "managed", security(("bearer" = [])), responses((status = 200, body = Vec<ApiToken>), (status = 403, body = ErrorBody, description = "API tokens are listed with a management key")))]
async fn list_tokens(State(s): State<ManagedService>, caller: Caller) -> Res<Json<Vec<ApiToken>>> {
    Ok(Json(s.list_tokens(&caller).await?))
}

#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "managed", params(("id" = String, Path, description = "Token id (`tok_…`)")), security(("bearer" = [])), responses((status = 204), (status = 403, body = ErrorBody, description = "API tokens are deleted with a management key")))]
async fn delete_token(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<StatusCode> {
    s.delete_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/databases", tag = "managed", request_body = CreateDatabaseRequest, security(("bearer" = [])), responses((status = 201, body = CreateDatabaseResponse), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 409, body = ErrorBody, description = "a database of this name exists in the project"), (status = 422, body = ErrorBody, description = "schema-valid but refused: a rule between fields, against the stored database, what is installed here or what the runtime supports (Kubernetes)")))]
async fn create_database(
    State(s): State<ManagedService>,
    caller: Caller,
    Body(b): Body<CreateDatabaseRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_restored(&caller, b).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/databases", tag = "managed", params(ListFilter), security(("bearer" = [])), responses((status = 200, body = Vec<Database>), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs")))]
async fn list_databases(
    State(s): State<ManagedService>,
    caller: Caller,
    Params(f): Params<ListFilter>,
) -> Res<Json<Vec<Database>>> {
    Ok(Json(s.list_databases(&caller, f).await?))
}

#[utoipa::path(get, path = "/api/v1/databases/{id}", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = Database), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs")))]
async fn get_database(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<Json<Database>> {
    Ok(Json(s.get_database(&caller, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/databases/{id}", tag = "managed", request_body = UpdateDatabaseRequest, params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = Database), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 409, body = ErrorBody, description = "the database is destroyed"), (status = 422, body = ErrorBody, description = "schema-valid but refused: a rule between fields, against the stored database, what is installed here or what the runtime supports (Kubernetes)")))]
async fn update_database(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<UpdateDatabaseRequest>,
) -> Res<Json<Database>> {
    Ok(Json(s.update_database(&caller, &id, b).await?))
}

#[utoipa::path(delete, path = "/api/v1/databases/{id}", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 202, body = Database), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs")))]
async fn delete_database(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.delete_database(&caller, &id).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/databases/{id}/credentials", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = Credentials), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 409, body = ErrorBody, description = "the server has not run yet, or is destroyed")))]
async fn credentials(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<Json<Credentials>> {
    Ok(Json(s.credentials(&caller, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/databases/{id}/actions", tag = "managed", request_body = ActionRequest, params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 202, body = Database), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 409, body = ErrorBody, description = "the database is destroyed or the action does not fit its state")))]
async fn action(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<ActionRequest>,
) -> Res<impl IntoResponse> {
    Ok((StatusCode::ACCEPTED, Json(s.action(&caller, &id, b).await?)))
}

#[utoipa::path(post, path = "/api/v1/databases/{id}/connection", tag = "managed", request_body = CreateConnectionRequest, params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 201, body = Object, description = "the `/v1` answer `{connection, database}`"), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 409, body = ErrorBody, description = "not running yet, destroyed, or the /v1 name is taken"), (status = 422, body = ErrorBody, description = "schema-valid but refused: a rule between fields, against the stored database, what is installed here or what the runtime supports (Kubernetes)"), (status = 501, body = ErrorBody, description = "this control plane has no /v1 API")))]
async fn create_connection(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Res<impl IntoResponse> {
    // Every field is optional, so an empty body is fine here.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let req: CreateConnectionRequest = if first.is_none() {
        CreateConnectionRequest::default()
    } else if first == Some(&b'[') {
        return Err(ManagedError::invalid(
            "the request body must be a JSON object",
        ));
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ManagedError::invalid(format!("invalid request body: {e}")))?
    };
    Ok((
        StatusCode::CREATED,
        Json(s.create_connection(&caller, &id, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/databases/{id}/events", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = Vec<crate::events::Event>, description = "the database's events, oldest first (failovers)"), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs")))]
async fn events(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<Json<Vec<crate::events::Event>>> {
    Ok(Json(s.events(&caller, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/databases/{id}/pools", tag = "managed", request_body = crate::pools::CreatePoolRequest, params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 201, body = crate::pools::Pool), (status = 400, body = ErrorBody, description = "bad name or unknown mode"), (status = 409, body = ErrorBody, description = "a pool with this name exists, or the database is not running"), (status = 422, body = ErrorBody, description = "larger than max_connections, not a postgresql database, or servers run on Kubernetes (no pools there yet)")))]
async fn create_pool(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<crate::pools::CreatePoolRequest>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_pool(&caller, &id, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/databases/{id}/pools", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = Vec<crate::pools::Pool>), (status = 422, body = ErrorBody, description = "not a postgresql database, or servers run on Kubernetes (no pools there yet)")))]
async fn list_pools(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<Json<Vec<crate::pools::Pool>>> {
    Ok(Json(s.list_pools(&caller, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/databases/{id}/pools/{name}", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)"), ("name" = String, Path, description = "Pool name")), security(("bearer" = [])), responses((status = 204), (status = 404, body = ErrorBody, description = "no such pool")))]
async fn delete_pool(
    State(s): State<ManagedService>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Res<StatusCode> {
    s.delete_pool(&caller, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/databases/{id}/backups", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = crate::backup::types::BackupList), (status = 404, body = ErrorBody, description = "no such database for this caller")))]
async fn list_backups(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<Json<crate::backup::types::BackupList>> {
    Ok(Json(s.list_backups(&caller, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/databases/{id}/backups", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 201, body = crate::backup::types::BackupInfo), (status = 409, body = ErrorBody, description = "not running, a backup already runs, or the backup storage is full"), (status = 422, body = ErrorBody, description = "this engine has no backups, or servers run on Kubernetes (no backups there yet)")))]
async fn create_backup(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Res<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_backup(&caller, &id).await?),
    ))
}
