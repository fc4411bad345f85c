//! The query playground of a running database: examples built from its schema, results as a
//! table and as JSON, timing, explain, errors with their position marked, "copy as curl".
//!
//! Queries go to the database's engine like any client's, with a query key the session created
//! for itself (named `dashboard session`, expiring with the session, revoked at sign-out): the
//! control plane stays out of the query path of applications, and the key never reaches the
//! browser.

use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::common::{page, DashState, Nav, PageError, Posted, Signed};
use super::databases::path_id;
use super::session::SessionQueryKey;
use crate::api::Status;
use crate::error::ApiError;
use crate::lifecycle::types::{CreateQueryKeyRequest, SchemaView};

/// At most this much of an answer is read from the engine for the page.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// At most this many rows go into the table (the JSON shows the rest).
const MAX_TABLE_ROWS: usize = 200;

struct TableView {
    name: String,
    fields: String,
    rows: String,
}

#[derive(Template)]
#[template(path = "dashboard/playground.html")]
struct PlaygroundPage {
    nav: Nav,
    id: String,
    name: String,
    running: bool,
    status: String,
    examples: Vec<String>,
    first: String,
    tables: Vec<TableView>,
    endpoint: String,
}

/// Example queries from a schema: a list, a lookup by key, a relation, a filter.
pub fn examples(schema: &SchemaView) -> Vec<String> {
    let mut out = Vec::new();
    for t in schema.tables.iter().take(3) {
        let fields: Vec<&str> = t.fields.iter().take(4).map(|f| f.name.as_str()).collect();
        if fields.is_empty() {
            continue;
        }
        out.push(format!("{}(LIMIT 10) {{ {} }}", t.name, fields.join(" ")));
        if let Some(pk) = t.primary_key.first() {
            out.push(format!(
                "{}({pk} >= 1 ORDER BY {pk} LIMIT 5) {{ * }}",
                t.name
            ));
        }
        if let Some(r) = t.relations.first() {
            out.push(format!(
                "{}(LIMIT 3) {{ {} {} {{ * }} }}",
                t.name, fields[0], r.name
            ));
        }
    }
    out.truncate(6);
    out
}

/// `GET /ui/databases/{id}/query`.
pub async fn show(
    State(s): State<DashState>,
    me: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let d = s.service.get_database(&me.principal, id).await?;
    let running = d.status == Status::Running;
    let schema = if running {
        s.service.database_schema(&me.principal, id).await.ok()
    } else {
        None
    };
    let examples = schema.as_ref().map(examples).unwrap_or_default();
    let tables = schema
        .as_ref()
        .map(|sc| {
            sc.tables
                .iter()
                .map(|t| TableView {
                    name: t.name.clone(),
                    fields: t
                        .fields
                        .iter()
                        .map(|f| format!("{} ({})", f.name, f.ty))
                        .collect::<Vec<_>>()
                        .join(", "),
                    rows: t.row_count.map(|n| n.to_string()).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    page(&PlaygroundPage {
        nav: me.nav("databases"),
        id: id.to_string(),
        name: d.name.clone(),
        running,
        status: d.status.to_string(),
        first: examples.first().cloned().unwrap_or_default(),
        examples,
        tables,
        endpoint: d.endpoint_url.clone().unwrap_or_default(),
    })
}

/// The playground form.
#[derive(Deserialize)]
pub struct QueryForm {
    q: String,
    #[serde(default)]
    explain: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/query_result.html")]
struct ResultFragment {
    ok: bool,
    status: u16,
    elapsed: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    more_rows: usize,
    json: String,
    error: String,
    before: String,
    at: String,
    after: String,
    has_position: bool,
    curl: String,
}

/// The session's query key for database `id`, created on first use.
async fn session_key(s: &DashState, me: &Signed, id: Uuid) -> Result<String, PageError> {
    if let Some(k) = me.session.query_keys.iter().find(|k| k.database == id) {
        return Ok(k.token.clone());
    }
    let req = CreateQueryKeyRequest {
        name: "dashboard session".into(),
        expires_at: Some(me.session.expires_at),
    };
    let k = s.service.create_query_key(&me.principal, id, req).await?;
    let token = k
        .key
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a new query key without its token")))?;
    s.sessions.add_query_key(
        &me.id,
        SessionQueryKey {
            database: id,
            record: k.id,
            token: token.clone(),
        },
    );
    Ok(token)
}

/// `line L, column C: …` → (L, C), 1-based.
fn position(message: &str) -> Option<(usize, usize)> {
    let rest = message.strip_prefix("line ")?;
    let (l, rest) = rest.split_once(", column ")?;
    let c: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((l.trim().parse().ok()?, c.parse().ok()?))
}

/// Splits `q` around the character at (line, column): before, the character, after.
fn split_at_position(q: &str, line: usize, column: usize) -> Option<(String, String, String)> {
    let mut offset = 0;
    for (i, l) in q.split('\n').enumerate() {
        if i + 1 == line {
            let start = offset
                + l.char_indices()
                    .nth(column.saturating_sub(1))
                    .map(|(b, _)| b)
                    .unwrap_or(l.len());
            let ch = q[start..].chars().next().map(String::from);
            let end = start + ch.as_ref().map(|c| c.len()).unwrap_or(0);
            let at = match ch {
                Some(c) if c != "\n" => c,
                _ => " ".into(),
            };
            let end = if q[start..].starts_with('\n') {
                start
            } else {
                end
            };
            return Some((q[..start].to_string(), at, q[end..].to_string()));
        }
        offset += l.len() + 1;
    }
    None
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `POST /ui/databases/{id}/query` (htmx): runs or explains the query on the engine.
pub async fn run(
    State(s): State<DashState>,
    Path(id): Path<String>,
    Posted { me, form }: Posted<QueryForm>,
) -> Result<Response, PageError> {
    let id = path_id(&id, "database")?;
    let d = s.service.get_database(&me.principal, id).await?;
    let endpoint = d
        .endpoint_url
        .clone()
        .filter(|_| d.status == Status::Running)
        .ok_or_else(|| {
            ApiError::conflict("the database is not running: provision or resume it first")
        })?;
    let token = session_key(&s, &me, id).await?;
    let explain = form.explain.is_some();
    let route = if explain { "query/explain" } else { "query" };
    let start = Instant::now();
    let answer = s
        .http
        .post(format!("{endpoint}/{route}"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(15))
        .body(form.q.clone())
        .send()
        .await;
    let (status, body) = match answer {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let mut body = Vec::new();
            let mut cut = false;
            loop {
                match r.chunk().await {
                    Ok(Some(c)) => {
                        if body.len() + c.len() > MAX_ANSWER_BYTES {
                            cut = true;
                            break;
                        }
                        body.extend_from_slice(&c);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        body = serde_json::to_vec(&serde_json::json!({
                            "error": "unreachable", "message": format!("the answer broke off: {e}")
                        }))
                        .unwrap_or_default();
                        break;
                    }
                }
            }
            if cut {
                let msg = serde_json::json!({"error": "too_large", "message": "the answer is over 1 MiB: add a LIMIT to see it here"});
                (413, serde_json::to_vec(&msg).unwrap_or_default())
            } else {
                (status, body)
            }
        }
        Err(e) => {
            let msg = serde_json::json!({"error": "unreachable", "message": format!("the engine did not answer: {e}")});
            (502, serde_json::to_vec(&msg).unwrap_or_default())
        }
    };
    let elapsed = format!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let curl = format!(
        "curl -s -H \"Authorization: Bearer $REFRACT_QUERY_KEY\" {endpoint}/{route} -d {}",
        shell_quote(&form.q)
    );
    let mut out = ResultFragment {
        ok: status == 200,
        status,
        elapsed,
        columns: Vec::new(),
        rows: Vec::new(),
        more_rows: 0,
        json: serde_json::to_string_pretty(&value).unwrap_or_default(),
        error: String::new(),
        before: String::new(),
        at: String::new(),
        after: String::new(),
        has_position: false,
        curl,
    };
    if status == 200 {
        if let Value::Array(rows) = &value {
            for r in rows.iter().take(MAX_TABLE_ROWS) {
                if let Value::Object(m) = r {
                    for k in m.keys() {
                        if !out.columns.contains(k) {
                            out.columns.push(k.clone());
                        }
                    }
                }
            }
            out.rows = rows
                .iter()
                .take(MAX_TABLE_ROWS)
                .map(|r| out.columns.iter().map(|c| cell(r.get(c))).collect())
                .collect();
            out.more_rows = rows.len().saturating_sub(MAX_TABLE_ROWS);
        }
    } else {
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        if let Some((before, at, after)) =
            position(&message).and_then(|(l, c)| split_at_position(&form.q, l, c))
        {
            out.before = before;
            out.at = at;
            out.after = after;
            out.has_position = true;
        }
        out.error = message;
    }
    page(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_positions_split_the_query() {
        assert_eq!(position("line 2, column 5: expected"), Some((2, 5)));
        assert_eq!(position("no position"), None);
        let (b, a, r) = split_at_position("users {\n  idd }", 2, 3).unwrap();
        assert_eq!(
            (b.as_str(), a.as_str(), r.as_str()),
            ("users {\n  ", "i", "dd }")
        );
        let (b, a, r) = split_at_position("abc", 1, 4).unwrap();
        assert_eq!((b.as_str(), a.as_str(), r.as_str()), ("abc", " ", ""));
    }

    #[test]
    fn curl_quotes_the_query() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
