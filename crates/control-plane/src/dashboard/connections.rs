//! Connections: list, test (readiness per sync mode, warnings) before creating, create (with a
//! first database), edit, delete. Forms become the API's own request types (`refract-api`) and go
//! to the same service calls as `/v1/connections`, so they are validated exactly as it; a choice
//! the wire enum lacks is the API's 400 naming the field (`wire_choice`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::common::{page, wire_choice_opt, DashState, Nav, PageError, Posted, Signed};
use super::databases::{badge, path_id};
use crate::api::{
    CreateConnectionRequest, CreateInstanceRequest, RegisterDatabaseRequest, TestConnectionRequest,
    TestConnectionResult, UpdateConnectionRequest,
};

struct ConnRow {
    id: String,
    name: String,
    backend: String,
    host: String,
    user: String,
    schemas: String,
    sync_modes: String,
}

#[derive(Template)]
#[template(path = "dashboard/connections.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<ConnRow>,
}

/// `GET /ui/connections`.
pub async fn list(State(s): State<DashState>, me: Signed) -> Result<Response, PageError> {
    let conns = s.service.list_connections(&me.principal).await?;
    page(&ListPage {
        nav: me.nav("connections"),
        rows: conns
            .iter()
            .map(|c| ConnRow {
                id: c.id.to_string(),
                name: c.name.clone(),
                backend: c.backend.to_string(),
                host: match c.port {
                    Some(p) => format!("{}:{p}", c.host),
                    None => c.host.clone(),
                },
                user: c.user.clone().unwrap_or_default(),
                schemas: c.available_schemas.join(", "),
                sync_modes: c
                    .allowed_sync_modes
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    })
}

/// The connection form (create, test, edit). Empty fields are left out of the request.
#[derive(Deserialize, Default)]
pub struct ConnForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    ssl_mode: String,
    #[serde(default)]
    schemas: String,
    #[serde(default)]
    sync_mode: String,
    #[serde(default)]
    db_name: String,
    #[serde(default)]
    db_schema: String,
}

/// A text field: trimmed, empty = not given.
fn text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The password as typed (spaces are part of it); empty = not given (an edit keeps the stored one).
fn password(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

fn port(v: &str) -> Result<Option<i64>, PageError> {
    text(v)
        .map(|v| {
            v.parse()
                .map_err(|_| PageError::Bad("port must be a number".into()))
        })
        .transpose()
}

fn schemas(v: &str) -> Option<Vec<String>> {
    let list: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!list.is_empty()).then_some(list)
}

fn test_request(f: &ConnForm) -> Result<TestConnectionRequest, PageError> {
    Ok(TestConnectionRequest {
        backend: wire_choice_opt("backend", &f.backend)?,
        host: f.host.trim().to_string(),
        port: port(&f.port)?,
        user: text(&f.user),
        password: password(&f.password),
        ssl_mode: wire_choice_opt("sslMode", &f.ssl_mode)?,
        ssl_root_cert: None,
    })
}

#[derive(Template)]
#[template(path = "dashboard/connection_test.html")]
struct TestFragment {
    ok: bool,
    error: String,
    facts: Vec<(String, String)>,
    readiness: Vec<(String, bool, String)>,
    warnings: Vec<String>,
}

fn test_fragment(v: &TestConnectionResult) -> Result<Response, PageError> {
    let mut facts = Vec::new();
    if let Some(l) = v.latency_ms {
        facts.push(("Latency".into(), format!("{l:.1} ms")));
    }
    if let Some(t) = v.tls {
        let version = v.tls_version.as_deref().unwrap_or("");
        facts.push((
            "TLS".into(),
            if t {
                format!("yes {version}")
            } else {
                "no".into()
            },
        ));
    }
    if let Some(g) = v.estimated_size_gb {
        facts.push(("Estimated size".into(), format!("{g:.3} GB")));
    }
    if let Some(a) = &v.available_schemas {
        facts.push(("Schemas".into(), a.join(", ")));
    }
    let mut readiness = Vec::new();
    if let Some(r) = &v.binlog {
        readiness.push(("binlog (CDC)".to_string(), r.ready, r.issues.join("; ")));
    }
    if let Some(r) = &v.logical {
        readiness.push(("logical (CDC)".to_string(), r.ready, r.issues.join("; ")));
    }
    readiness.push(("poll".into(), v.ok, String::new()));
    page(&TestFragment {
        ok: v.ok,
        error: v.error.clone().unwrap_or_default(),
        facts,
        readiness,
        warnings: v.warnings.clone(),
    })
}

/// `POST /ui/connections/test` (htmx): tries the form's credentials, stores nothing.
pub async fn test(
    State(s): State<DashState>,
    Posted { me, form }: Posted<ConnForm>,
) -> Result<Response, PageError> {
    let v = s
        .service
        .test_connection_raw(&me.principal, test_request(&form)?)
        .await?;
    test_fragment(&v)
}

/// `POST /ui/connections/{id}/test` (htmx): with the stored credentials.
pub async fn test_stored(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    let v = s.service.test_connection_stored(&me.principal, id).await?;
    test_fragment(&v)
}

/// `POST /ui/connections`: creates the connection (and its first database when named).
pub async fn create(
    State(s): State<DashState>,
    Posted { me, form }: Posted<ConnForm>,
) -> Result<Response, PageError> {
    let test = test_request(&form)?;
    let req = CreateConnectionRequest {
        backend: test.backend,
        name: form.name.trim().to_string(),
        host: test.host,
        port: test.port,
        available_schemas: schemas(&form.schemas),
        user: test.user,
        password: test.password,
        ssl_mode: test.ssl_mode,
        ssl_root_cert: None,
        sync_mode: wire_choice_opt("syncMode", &form.sync_mode)?,
        sync_interval: None,
        instance: text(&form.db_name).map(|name| CreateInstanceRequest {
            name,
            schema: form.db_schema.trim().to_string(),
            instance_size: None,
            log_level: None,
            binlog_server_id: None,
            replicas: None,
        }),
    };
    let created = s.service.create_connection(&me.principal, req).await?;
    let to = match created.database {
        Some(d) => format!("/ui/databases/{}", d.id),
        None => format!("/ui/connections/{}", created.connection.id),
    };
    Ok(Redirect::to(&to).into_response())
}

struct DbLink {
    id: String,
    name: String,
    status: String,
    badge: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard/connection.html")]
struct EditPage {
    nav: Nav,
    csrf: String,
    id: String,
    name: String,
    backend: String,
    host: String,
    port: String,
    user: String,
    ssl_mode: String,
    schemas: String,
    sync_modes: String,
    available: Vec<String>,
    databases: Vec<DbLink>,
}

/// `GET /ui/connections/{id}`: edit form, its databases, test and delete.
pub async fn show(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    let c = s.service.get_connection(&me.principal, id).await?;
    let conn = &c.connection;
    page(&EditPage {
        nav: me.nav("connections"),
        csrf: me.session.csrf.clone(),
        id: conn.id.to_string(),
        name: conn.name.clone(),
        backend: conn.backend.to_string(),
        host: conn.host.clone(),
        port: conn.port.map(|p| p.to_string()).unwrap_or_default(),
        user: conn.user.clone().unwrap_or_default(),
        ssl_mode: conn.ssl_mode.to_string(),
        schemas: conn.available_schemas.join(", "),
        sync_modes: conn
            .allowed_sync_modes
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        available: conn.available_schemas.clone(),
        databases: c
            .databases
            .iter()
            .map(|d| DbLink {
                id: d.id.to_string(),
                name: d.name.clone(),
                status: d.status.to_string(),
                badge: badge(d.status),
            })
            .collect(),
    })
}

/// `POST /ui/connections/{id}`: updates what the form changed (an empty password keeps it).
pub async fn update(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<ConnForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    let req = UpdateConnectionRequest {
        name: text(&form.name),
        host: text(&form.host),
        port: port(&form.port)?,
        available_schemas: schemas(&form.schemas),
        user: text(&form.user),
        password: password(&form.password),
        ssl_mode: wire_choice_opt("sslMode", &form.ssl_mode)?,
        ..UpdateConnectionRequest::default()
    };
    s.service.update_connection(&me.principal, id, req).await?;
    Ok(Redirect::to(&format!("/ui/connections/{id}")).into_response())
}

/// `POST /ui/connections/{id}/delete`.
pub async fn delete(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    s.service.delete_connection(&me.principal, id).await?;
    Ok(Redirect::to("/ui/connections").into_response())
}

/// The add-a-database form of a connection.
#[derive(Deserialize)]
pub struct DatabaseForm {
    name: String,
    schema: String,
}

/// `POST /ui/connections/{id}/databases`: registers a database on the connection (as
/// `POST /v1/databases`), then shows it, ready to provision.
pub async fn add_database(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<DatabaseForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    let req = RegisterDatabaseRequest {
        connection_id: id,
        name: form.name.trim().to_string(),
        schema: form.schema.trim().to_string(),
        instance_size: None,
        log_level: None,
        binlog_server_id: None,
        replicas: None,
    };
    let d = s.service.register_database(&me.principal, req).await?;
    Ok(Redirect::to(&format!("/ui/databases/{}", d.id)).into_response())
}
