//! `refract query [--database ID] 'TEXT'`: run a query against a database's engine from the
//! command line, with a query key from `REFRACT_QUERY_KEY` or a temporary one made (and revoked)
//! through the control plane. Prints the engine's JSON, or a table with `--table`.

use std::io::Read as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use refract_api::{CreateQueryKeyRequest, Database, QueryKey, Status};
use reqwest::Method;
use serde_json::Value;

use super::client::{body, cell, read, table, Api};

/// Arguments of `refract query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The query text (`users(LIMIT 3) { id name }`); `-` reads it from stdin.
    text: String,
    /// The database to query; may be omitted when the account has one running database.
    #[arg(long, short)]
    database: Option<String>,
    /// A query key (`rxk_…`) of that database; without it a temporary key is made for this
    /// query and revoked after it.
    #[arg(long, env = "REFRACT_QUERY_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print the top-level rows as a table (nested values as JSON) instead of JSON.
    #[arg(long)]
    table: bool,
}

/// Runs the query and prints the answer.
pub fn run(api: &Api, args: QueryArgs) -> anyhow::Result<()> {
    let text = if args.text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the query from stdin")?;
        s
    } else {
        args.text.clone()
    };
    let db = database(api, args.database.as_deref())?;
    let id = db.id;
    let Some(endpoint) = db.endpoint_url.as_deref().filter(|e| !e.is_empty()) else {
        bail!(
            "database {id} has no running engine (status {}): provision or resume it first",
            db.status
        );
    };
    let (key, temporary) = match args.key.filter(|k| !k.is_empty()) {
        Some(k) => (k, None),
        None => {
            let expires = chrono::Utc::now() + chrono::Duration::minutes(10);
            let request = CreateQueryKeyRequest {
                name: "refract query (temporary)".into(),
                expires_at: Some(expires),
            };
            let k: QueryKey = read(&api.call(
                Method::POST,
                &format!("/v1/databases/{id}/api-keys"),
                Some(body(&request)?),
            )?)?;
            let secret = k.key.context("the control plane answered no key")?;
            (secret, Some(k.key_id))
        }
    };
    let answer = send(endpoint, &key, &text, temporary.is_some());
    if let Some(key_id) = &temporary {
        let _ = api.call(
            Method::DELETE,
            &format!("/v1/databases/{id}/api-keys/{key_id}"),
            None,
        );
    }
    let (status, answer) = answer?;
    if !(200..300).contains(&status) {
        // The engine's errors have the control plane's `{error, message}` shape.
        let message = serde_json::from_str::<refract_api::ErrorBody>(&answer)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}: {answer}"));
        bail!("{message}");
    }
    if args.table {
        let rows: Value = serde_json::from_str(&answer).context("the engine's answer")?;
        print_rows(rows.as_array().map(Vec::as_slice).unwrap_or_default());
    } else {
        println!("{answer}");
    }
    Ok(())
}

/// The database `id`, or the account's only running one.
fn database(api: &Api, id: Option<&str>) -> anyhow::Result<Database> {
    if let Some(id) = id {
        return read(&api.call(Method::GET, &format!("/v1/databases/{id}"), None)?);
    }
    let all: Vec<Database> = read(&api.call(Method::GET, "/v1/databases", None)?)?;
    let running: Vec<&Database> = all.iter().filter(|d| d.status == Status::Running).collect();
    match running.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no running database in this account: provision one, or pass --database ID"),
        many => bail!(
            "{} running databases: pass --database with one of {}",
            many.len(),
            many.iter()
                .map(|d| d.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// POST the query; a key made a moment ago may need a moment to reach the engine.
fn send(endpoint: &str, key: &str, text: &str, fresh_key: bool) -> anyhow::Result<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(if fresh_key { 3 } else { 0 });
    loop {
        let resp = client
            .post(format!("{}/query", endpoint.trim_end_matches('/')))
            .bearer_auth(key)
            .body(text.to_string())
            .send()
            .with_context(|| format!("cannot reach the engine at {endpoint}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        if status == 401 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        return Ok((status, body));
    }
}

/// Top-level rows as a table: columns in first-seen order, nested values as compact JSON.
fn print_rows(rows: &[Value]) {
    let mut columns: Vec<String> = Vec::new();
    for r in rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let flat: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            for c in &columns {
                let v = &r[c.as_str()];
                let shown = match v {
                    Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
                    other => other.clone(),
                };
                o.insert(c.clone(), shown);
            }
            Value::Object(o)
        })
        .collect();
    let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
    table(&headers, &flat, |r| {
        headers.iter().map(|h| cell(&r[*h])).collect()
    });
    println!("({} rows)", rows.len());
}
