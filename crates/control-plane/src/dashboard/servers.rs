//! Managed servers (`/api/v1/databases`): list, create by plan and version, credentials
//! revealed on click, stop/start/restart, delete with confirmation, "serve it as a read API".
//!
//! Every call goes through the managed router in-process, with the session's management key
//! as its bearer token: the managed API's own authentication, scopes and tenant checks decide,
//! exactly as for a client of `/api/v1`.

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::common::{page, DashState, Nav, PageError, Posted, Signed};

/// One call of the managed API as the signed-in customer: status and JSON body.
async fn call(
    s: &DashState,
    me: &Signed,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), PageError> {
    let router = s.managed.clone().ok_or_else(|| {
        PageError::NotFound("managed servers are not served by this control plane".into())
    })?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", me.session.key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .map_err(|e| PageError::Api(crate::ApiError::Internal(e.into())))?;
    let resp = router
        .oneshot(req)
        .await
        .map_err(|e| PageError::Api(crate::ApiError::Internal(anyhow::anyhow!("{e}"))))?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1024 * 1024)
        .await
        .map_err(|e| PageError::Api(crate::ApiError::Internal(anyhow::anyhow!("{e}"))))?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

/// A managed answer that is not a success becomes the page of its status and message.
fn ok(status: StatusCode, v: Value) -> Result<Value, PageError> {
    if status.is_success() {
        return Ok(v);
    }
    let message = v["message"]
        .as_str()
        .unwrap_or("the request failed")
        .to_string();
    Err(match status {
        StatusCode::NOT_FOUND => PageError::NotFound(message),
        StatusCode::UNAUTHORIZED => PageError::SignIn,
        other => PageError::Status(other, message),
    })
}

/// Managed ids are `db_…` tokens of letters and digits; anything else cannot exist.
fn server_id(id: &str) -> Result<&str, PageError> {
    let valid = id.len() <= 64
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(id)
    } else {
        Err(PageError::NotFound("managed server not found".into()))
    }
}

fn badge(status: &str) -> &'static str {
    match status {
        "running" => "ok",
        "error" => "bad",
        "stopped" | "destroyed" => "idle",
        _ => "busy",
    }
}

fn text(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct ServerRow {
    id: String,
    name: String,
    db_type: String,
    version: String,
    plan: String,
    status: String,
    badge: &'static str,
    error: String,
}

fn server_row(v: &Value) -> ServerRow {
    let status = text(v, "status");
    ServerRow {
        id: text(v, "id"),
        name: text(v, "name"),
        db_type: text(v, "db_type"),
        version: text(v, "version"),
        plan: text(v, "plan_id"),
        badge: badge(&status),
        status,
        error: text(v, "error_message"),
    }
}

#[derive(Template)]
#[template(path = "dashboard/servers.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<ServerRow>,
    plans: Vec<(&'static str, String)>,
}

/// `GET /ui/servers`.
pub async fn list(State(s): State<DashState>, me: Signed) -> Result<Response, PageError> {
    let (status, v) = call(&s, &me, Method::GET, "/api/v1/databases", None).await?;
    let v = ok(status, v)?;
    let rows = v
        .as_array()
        .map(|a| a.iter().map(server_row).collect())
        .unwrap_or_default();
    page(&ListPage {
        nav: me.nav("servers"),
        rows,
        plans: refract_managed::catalog::PLANS
            .iter()
            .map(|p| {
                (
                    p.id,
                    format!("{} ({} vCPU, {} MiB)", p.id, p.vcpus, p.memory_mb),
                )
            })
            .collect(),
    })
}

/// The create form.
#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    db_type: String,
    #[serde(default)]
    version: String,
    plan_id: String,
}

/// `POST /ui/servers`.
pub async fn create(
    State(s): State<DashState>,
    Posted { me, form }: Posted<CreateForm>,
) -> Result<Response, PageError> {
    let mut body = json!({
        "name": form.name.trim(), "db_type": form.db_type, "plan_id": form.plan_id,
        "region": "local",
    });
    if !form.version.trim().is_empty() {
        body["version"] = json!(form.version.trim());
    }
    let (status, v) = call(&s, &me, Method::POST, "/api/v1/databases", Some(body)).await?;
    let v = ok(status, v)?;
    Ok(Redirect::to(&format!("/ui/servers/{}", text(&v, "id"))).into_response())
}

/// A server action button: allowed now, or why not.
struct ServerAction {
    name: &'static str,
    allowed: bool,
    reason: String,
}

/// Which of stop/start/restart the managed API accepts in `status` (docs/managed.md).
fn actions(status: &str) -> Vec<ServerAction> {
    let rule = |name: &'static str, ok: &[&str]| ServerAction {
        name,
        allowed: ok.contains(&status),
        reason: format!("{name} is possible when the server is {}", ok.join(" or ")),
    };
    vec![
        rule("stop", &["running", "provisioning", "error"]),
        rule("start", &["stopped", "error"]),
        rule("restart", &["running", "error"]),
    ]
}

#[derive(Template)]
#[template(path = "dashboard/server.html")]
struct ServerPage {
    nav: Nav,
    csrf: String,
    s: ServerRow,
    region: String,
    storage: String,
    poll: &'static str,
    actions: Vec<ServerAction>,
    /// Only PostgreSQL and MySQL servers can be the source of a read API.
    servable: bool,
}

#[derive(Template)]
#[template(path = "dashboard/server_status.html")]
struct StatusFragment {
    csrf: String,
    s: ServerRow,
    poll: &'static str,
    actions: Vec<ServerAction>,
}

fn poll(status: &str) -> &'static str {
    if badge(status) == "busy" {
        "every 1s"
    } else {
        "every 10s"
    }
}

/// The managed server `id` (the path segment) as `/api/v1` answers it to the signed-in user.
async fn fetch(s: &DashState, me: &Signed, id: &str) -> Result<Value, PageError> {
    let id = server_id(id)?;
    let (status, v) = call(s, me, Method::GET, &format!("/api/v1/databases/{id}"), None).await?;
    ok(status, v)
}

/// `GET /ui/servers/{id}`.
pub async fn show(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let v = fetch(&s, &me, &id).await?;
    let row = server_row(&v);
    page(&ServerPage {
        nav: me.nav("servers"),
        csrf: me.session.csrf.clone(),
        region: text(&v, "region"),
        storage: text(&v, "storage_gb"),
        poll: poll(&row.status),
        actions: actions(&row.status),
        servable: matches!(row.db_type.as_str(), "postgresql" | "mysql"),
        s: row,
    })
}

/// `GET /ui/servers/{id}/status` (htmx, polled).
pub async fn status(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let row = server_row(&fetch(&s, &me, &id).await?);
    page(&StatusFragment {
        csrf: me.session.csrf.clone(),
        poll: poll(&row.status),
        actions: actions(&row.status),
        s: row,
    })
}

#[derive(Template)]
#[template(path = "dashboard/server_credentials.html")]
struct CredentialsFragment {
    facts: Vec<(&'static str, String)>,
    connection_string: String,
}

/// `POST /ui/servers/{id}/credentials` (htmx, on click): the credentials, never cached.
pub async fn credentials(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = server_id(&id)?;
    let path = format!("/api/v1/databases/{id}/credentials");
    let (status, v) = call(&s, &me, Method::GET, &path, None).await?;
    let v = ok(status, v)?;
    page(&CredentialsFragment {
        facts: vec![
            ("Host", text(&v, "host")),
            ("Port", text(&v, "port")),
            ("User", text(&v, "username")),
            ("Password", text(&v, "password")),
            ("Database", text(&v, "database")),
        ],
        connection_string: text(&v, "connection_string"),
    })
}

/// `POST /ui/servers/{id}/actions/{action}`: stop, start, restart.
pub async fn action(
    State(s): State<DashState>,
    Path((id, action)): Path<(String, String)>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = server_id(&id)?;
    if !matches!(action.as_str(), "stop" | "start" | "restart") {
        return Err(PageError::NotFound("no such action".into()));
    }
    let path = format!("/api/v1/databases/{id}/actions");
    let (status, v) = call(&s, &me, Method::POST, &path, Some(json!({"type": action}))).await?;
    ok(status, v)?;
    Ok(Redirect::to(&format!("/ui/servers/{id}")).into_response())
}

/// `POST /ui/servers/{id}/delete`.
pub async fn delete(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = server_id(&id)?;
    let path = format!("/api/v1/databases/{id}");
    let (status, v) = call(&s, &me, Method::DELETE, &path, None).await?;
    ok(status, v)?;
    Ok(Redirect::to("/ui/servers").into_response())
}

/// The "serve it as a read API" form.
#[derive(Deserialize)]
pub struct ServeForm {
    name: String,
}

/// `POST /ui/servers/{id}/connection`: registers the server as a `/v1` connection, then shows
/// it (a database is added there, then provisioned).
pub async fn serve(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<ServeForm>,
) -> Result<Response, PageError> {
    let id = server_id(&id)?;
    let path = format!("/api/v1/databases/{id}/connection");
    let body = json!({"name": form.name.trim()});
    let (status, v) = call(&s, &me, Method::POST, &path, Some(body)).await?;
    let v = ok(status, v)?;
    let to = match v["database"]["id"].as_str() {
        Some(db) => format!("/ui/databases/{db}"),
        None => format!("/ui/connections/{}", text(&v["connection"], "id")),
    };
    Ok(Redirect::to(&to).into_response())
}
