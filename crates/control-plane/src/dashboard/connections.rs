//! Connections: list, test (readiness per sync mode, warnings) before creating, create (with a
//! first database), edit, delete. Forms become the API's own request bodies and go through
//! `parse_json`, so they are validated exactly as `/v1/connections`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{page, DashState, Nav, PageError, Posted, Signed};
use super::databases::{badge, path_id};
use crate::extract::parse_json;

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

fn put(m: &mut Map<String, Value>, k: &str, v: &str) {
    let v = v.trim();
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

fn put_port(m: &mut Map<String, Value>, v: &str) -> Result<(), PageError> {
    let v = v.trim();
    if !v.is_empty() {
        let n: i64 = v
            .parse()
            .map_err(|_| PageError::Bad("port must be a number".into()))?;
        m.insert("mysqlPort".into(), json!(n));
    }
    Ok(())
}

fn schemas(v: &str) -> Option<Value> {
    let list: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then(|| json!(list))
}

fn test_body(f: &ConnForm) -> Result<Value, PageError> {
    let mut m = Map::new();
    put(&mut m, "backend", &f.backend);
    m.insert("mysqlHost".into(), json!(f.host.trim()));
    put_port(&mut m, &f.port)?;
    put(&mut m, "mysqlUser", &f.user);
    if !f.password.is_empty() {
        m.insert("mysqlPassword".into(), json!(f.password));
    }
    put(&mut m, "sslMode", &f.ssl_mode);
    Ok(Value::Object(m))
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

fn test_fragment(v: &Value) -> Result<Response, PageError> {
    let mut facts = Vec::new();
    if let Some(l) = v["latencyMs"].as_f64() {
        facts.push(("Latency".into(), format!("{l:.1} ms")));
    }
    if let Some(t) = v["tls"].as_bool() {
        let version = v["tlsVersion"].as_str().unwrap_or("");
        facts.push((
            "TLS".into(),
            if t {
                format!("yes {version}")
            } else {
                "no".into()
            },
        ));
    }
    if let Some(g) = v["estimatedSizeGb"].as_f64() {
        facts.push(("Estimated size".into(), format!("{g:.3} GB")));
    }
    if let Some(a) = v["availableSchemas"].as_array() {
        let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
        facts.push(("Schemas".into(), names.join(", ")));
    }
    let mut readiness = Vec::new();
    for (key, mode) in [("binlog", "binlog (CDC)"), ("logical", "logical (CDC)")] {
        if let Some(r) = v[key].as_object() {
            let ready = r.get("ready").and_then(Value::as_bool).unwrap_or(false);
            let issues: Vec<&str> = r
                .get("issues")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            readiness.push((mode.to_string(), ready, issues.join("; ")));
        }
    }
    readiness.push((
        "poll".into(),
        v["ok"].as_bool().unwrap_or(false),
        String::new(),
    ));
    page(&TestFragment {
        ok: v["ok"].as_bool().unwrap_or(false),
        error: v["error"].as_str().unwrap_or("").to_string(),
        facts,
        readiness,
        warnings: v["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// `POST /ui/connections/test` (htmx): tries the form's credentials, stores nothing.
pub async fn test(
    State(s): State<DashState>,
    Posted { me, form }: Posted<ConnForm>,
) -> Result<Response, PageError> {
    let req = parse_json(test_body(&form)?.to_string().as_bytes())?;
    let v = s.service.test_connection_raw(&me.principal, req).await?;
    test_fragment(&json!(v))
}

/// `POST /ui/connections/{id}/test` (htmx): with the stored credentials.
pub async fn test_stored(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, .. }: Posted<super::account::Empty>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "connection")?;
    let v = s.service.test_connection_stored(&me.principal, id).await?;
    test_fragment(&json!(v))
}

/// `POST /ui/connections`: creates the connection (and its first database when named).
pub async fn create(
    State(s): State<DashState>,
    Posted { me, form }: Posted<ConnForm>,
) -> Result<Response, PageError> {
    let Value::Object(mut m) = test_body(&form)? else {
        return Err(PageError::Bad("malformed form".into()));
    };
    m.insert("name".into(), json!(form.name.trim()));
    if let Some(list) = schemas(&form.schemas) {
        m.insert("availableSchemas".into(), list);
    }
    put(&mut m, "syncMode", &form.sync_mode);
    if !form.db_name.trim().is_empty() {
        m.insert(
            "instance".into(),
            json!({"name": form.db_name.trim(), "mysqlDb": form.db_schema.trim()}),
        );
    }
    let req = parse_json(Value::Object(m).to_string().as_bytes())?;
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
    let mut m = Map::new();
    put(&mut m, "name", &form.name);
    put(&mut m, "mysqlHost", &form.host);
    put_port(&mut m, &form.port)?;
    put(&mut m, "mysqlUser", &form.user);
    if !form.password.is_empty() {
        m.insert("mysqlPassword".into(), json!(form.password));
    }
    put(&mut m, "sslMode", &form.ssl_mode);
    if let Some(list) = schemas(&form.schemas) {
        m.insert("availableSchemas".into(), list);
    }
    let req = parse_json(Value::Object(m).to_string().as_bytes())?;
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
    let body = json!({"connectionId": id, "name": form.name.trim(), "mysqlDb": form.schema.trim()});
    let req = parse_json(body.to_string().as_bytes())?;
    let d = s.service.register_database(&me.principal, req).await?;
    Ok(Redirect::to(&format!("/ui/databases/{}", d.id)).into_response())
}
