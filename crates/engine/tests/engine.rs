//! The engine in-process against a real SQLite file: loading, queries, auth, errors, health,
//! stats, metrics, reloads, poll sync, key revocation, pause.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use refract_engine::{router, secret_sha256, EngineConfig, EngineState};
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";
const SECRET: &str = "s3cr3t";
const TOKEN: &str = "rxk_k1.s3cr3t";

fn create_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                             title TEXT NOT NULL, published BOOLEAN NOT NULL DEFAULT 0);
         CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id),
                                user_id INTEGER REFERENCES users(id), body TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', NULL), (3, 'Cy', 'cy@example.com');
         INSERT INTO posts VALUES (10, 1, 'Hello', 1), (11, 1, 'Draft', 0), (12, 2, 'Bob here', 1);
         INSERT INTO comments VALUES (100, 10, 2, 'nice'), (101, 10, NULL, 'anon'), (102, 12, 1, 'hi bob');",
    )
    .unwrap();
}

fn sql(path: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn write_keys(path: &Path, keys: &[(&str, &str, Option<&str>)]) {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, secret, exp)| json!({"key_id": id, "secret_sha256": secret_sha256(secret), "expires_at": exp}))
        .collect();
    // Write then rename, as the control plane does, so the engine never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Engine {
    dir: tempfile::TempDir,
    db: PathBuf,
    url: String,
    state: Arc<EngineState>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         source: {{backend: sqlite, path: {db}}}\n\
         sync: {{mode: poll, interval: 1}}\n\
         keys_file: {keys}\n\
         admin_token_file: {admin}\n\
         log_level: debug\n{extra}",
        db = dir.join("source.db").display(),
        keys = dir.join("keys.json").display(),
        admin = dir.join("admin-token").display(),
    )
}

/// A SQLite source, a keys file with `k1` (valid) and `old` (expired), an admin token, and a
/// config with `extra` appended. Not started.
fn prepare(extra: &str) -> (tempfile::TempDir, EngineConfig) {
    let dir = tempfile::tempdir().unwrap();
    create_db(&dir.path().join("source.db"));
    write_keys(
        &dir.path().join("keys.json"),
        &[
            ("k1", SECRET, None),
            ("old", "x", Some("2020-01-01T00:00:00Z")),
        ],
    );
    std::fs::write(dir.path().join("admin-token"), format!("{ADMIN}\n")).unwrap();
    let config = EngineConfig::parse(&config_text(dir.path(), extra)).unwrap();
    (dir, config)
}

async fn start_with(dir: tempfile::TempDir, config: EngineConfig) -> Engine {
    let state = EngineState::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(refract_engine::serve(state.clone(), listener));
    let db = dir.path().join("source.db");
    Engine {
        dir,
        db,
        url,
        state,
        http: reqwest::Client::new(),
        server,
    }
}

async fn start(extra: &str) -> Engine {
    let (dir, config) = prepare(extra);
    let e = start_with(dir, config).await;
    e.wait_health(|h| h["status"] == "ok").await;
    e
}

impl Engine {
    async fn query(&self, text: &str) -> (StatusCode, Value) {
        self.query_as(Some(TOKEN), text).await
    }

    async fn query_as(&self, token: Option<&str>, text: &str) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/query", self.url))
            .body(text.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.text().await.unwrap())
    }

    async fn get_json(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (s, body) = self.get(path, token).await;
        (
            s,
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
        )
    }

    async fn admin(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap())
    }

    async fn health(&self) -> Value {
        self.get_json("/health", None).await.1
    }

    async fn wait_health(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let h = self.health().await;
            if pred(&h) {
                return h;
            }
            let message = h["message"].as_str().unwrap_or("");
            assert!(
                !message.contains("not implemented"),
                "a crate the engine uses is still a stub: {h}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "health never matched: {h}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `text` answers `expected` (poll sync), failing after `within`.
    async fn wait_for_rows(&self, text: &str, expected: &Value, within: Duration) {
        let t = Instant::now();
        loop {
            let (s, body) = self.query(text).await;
            if s == StatusCode::OK && &body == expected {
                return;
            }
            assert!(
                t.elapsed() < within,
                "after {within:?}: {s} {body}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        let (s, _) = self.admin("/admin/shutdown").await;
        assert_eq!(s, StatusCode::OK);
        let r = tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("engine stops");
        r.unwrap().unwrap();
        drop(self.dir);
    }
}

async fn oneshot(state: &Arc<EngineState>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_load() {
    let (_dir, config) = prepare("");
    // No background tasks: nothing loads.
    let state = EngineState::new(config).unwrap();
    let req = || {
        Request::post("/query")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from("users { id }"))
    };
    let (s, body) = oneshot(&state, req().unwrap()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_ready");
    assert!(body["message"].is_string());
    let (s, health) = oneshot(&state, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(health["status"], "loading");
    assert_eq!(health["swapCount"], 0);
    assert_eq!(health["snapshotAgeMs"], Value::Null);
    // Auth comes first: a bad key is a 401 even before the load.
    let (s, body) = oneshot(
        &state,
        Request::post("/query")
            .body(Body::from("users { id }"))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    // Unknown routes and methods keep our error shape.
    let (s, body) = oneshot(&state, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, body) = oneshot(&state, Request::get("/query").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_errors_and_auth() {
    let e = start("").await;
    let (s, body) = e.query("users { id name }").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}, {"id": 3, "name": "Cy"}])
    );
    let (s, body) = e
        .query("posts(published = true) { id title user { name } comments { id } }")
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!([
            {"id": 10, "title": "Hello", "user": {"name": "Ada"}, "comments": [{"id": 100}, {"id": 101}]},
            {"id": 12, "title": "Bob here", "user": {"name": "Bob"}, "comments": [{"id": 102}]},
        ])
    );

    // Errors with line and column.
    let (s, body) = e.query("users {\n  id emial\n}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "query_error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2, column "),
        "{body}"
    );
    let (s, body) = e.query("users { id ").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query_error"))
    );

    // 401s.
    for token in [
        None,
        Some("rxk_k1.wrong"),
        Some("rxk_nope.s3cr3t"),
        Some("garbage"),
        Some("rxk_old.x"),
    ] {
        let (s, body) = e.query_as(token, "users { id }").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    let (_, body) = e.query_as(Some("rxk_old.x"), "users { id }").await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // 413 in our shape.
    let big = format!("users {{ id }} -- {}", "x".repeat(2 * 1024 * 1024));
    let (s, body) = e.query(&big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "too_large");

    // Any content type works.
    let resp = e
        .http
        .post(format!("{}/query", e.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("users(id = 2) { email }")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"email": null}])
    );

    // Explain, schema, openapi.
    let resp = e
        .http
        .post(format!("{}/query/explain", e.url))
        .bearer_auth(TOKEN)
        .body("users(id = 1) { id }")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let _plan: Value = resp.json().await.unwrap();
    let (s, schema) = e.get_json("/schema", Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    let users = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "users")
        .unwrap()
        .clone();
    assert_eq!(users["primaryKey"], json!(["id"]));
    assert!(users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "email" && f["nullable"] == true));
    assert!(users["relations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "posts" && r["kind"] == "reverse"));
    let (s, _) = e.get("/schema", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The OpenAPI document names every table and column: a query key, like /schema.
    let (s, _) = e.get("/openapi.json", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, doc) = e.get_json("/openapi.json", Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    // The browsable page needs no key and holds no schema: it reads /schema with the key it asks.
    let (s, page) = e.get("/docs", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<title>Refract engine</title>") && page.contains("fetch(\"schema\""));
    assert!(
        !page.contains("posts"),
        "the page must not carry the schema"
    );
    assert!(
        doc["components"]["schemas"]["posts"]["properties"]["title"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"]["/query"]["post"].is_object());

    // Health, stats, metrics.
    let h = e.health().await;
    assert_eq!(h["status"], "ok");
    assert!(h["swapCount"].as_u64().unwrap() >= 1, "{h}");
    assert_eq!(h["replication"]["mode"], "poll");
    assert_eq!(h["replication"]["paused"], false);
    assert!(h["snapshotAgeMs"].is_u64());
    assert!(h["replication"]["lagMs"].is_u64());
    let (s, _) = e.get("/stats", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = e.get("/stats", Some(TOKEN)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a query key is not an admin token"
    );
    let (s, stats) = e.get_json("/stats", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    for t in ["users", "posts", "comments"] {
        assert_eq!(stats["rowCounts"][t], 3, "{stats}");
    }
    assert_eq!(stats["rowCounts"].as_object().unwrap().len(), 3);
    assert!(stats["memoryBytes"]["users"].is_u64());
    // Per column: every column's data plus the rest, adding up to the table's total.
    let users = stats["memoryBytesByColumn"]["users"].as_object().unwrap();
    let sum: u64 = users.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(
        sum,
        stats["memoryBytes"]["users"].as_u64().unwrap(),
        "{stats}"
    );
    assert!(
        users["id"].as_u64().unwrap() > 0 && users.contains_key("(indexes)"),
        "{stats}"
    );
    assert!(stats["lastLoad"]["durationMs"].is_u64());
    assert_eq!(stats["lastError"], Value::Null);
    assert_eq!(stats["sourcePosition"]["kind"], "none");
    let (s, text) = e.get("/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    for needle in [
        "refract_queries_total{status=\"ok\"}",
        "refract_queries_total{status=\"unauthorized\"}",
        "refract_queries_total{status=\"query_error\"}",
        "refract_snapshot_swaps_total ",
        "refract_replication_lag_seconds",
        "refract_query_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    // `/metrics` needs no key: no table names unless `metrics_table_labels` is set.
    assert!(!text.contains("users"), "table names in /metrics:\n{text}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_swaps_once_and_shares_unchanged_tables() {
    // A long interval: only admin reloads happen here.
    let (dir, mut config) = prepare("");
    config.sync.interval = 3600;
    config.metrics_table_labels = true;
    let e = start_with(dir, config).await;
    e.wait_health(|h| h["status"] == "ok").await;
    // Per-table gauges when the operator asks for table labels.
    let (_, text) = e.get("/metrics", None).await;
    for needle in [
        "refract_table_rows{table=\"users\"} 3",
        "refract_table_memory_bytes{table=\"users\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let before = e.state.snapshot().unwrap();
    let (s, body) = e.admin("/admin/reload").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["swapCount"], 2);
    assert_eq!(e.health().await["swapCount"], 2);
    let after = e.state.snapshot().unwrap();
    assert!(
        !Arc::ptr_eq(&before, &after),
        "a reload publishes a new snapshot"
    );
    for (a, b) in before.tables.iter().zip(&after.tables) {
        assert!(
            Arc::ptr_eq(a, b),
            "unchanged table {} is shared",
            a.manifest.api_name
        );
    }

    sql(
        &e.db,
        "UPDATE posts SET title = 'Hello again' WHERE id = 10;",
    );
    let (s, body) = e.admin("/admin/reload").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["swapCount"], 3);
    assert_eq!(body["tablesReloaded"], json!(["posts"]));
    let third = e.state.snapshot().unwrap();
    let table = |s: &refract_storage::Snapshot, n: &str| s.table(n).unwrap().clone();
    assert!(Arc::ptr_eq(
        &table(&after, "users"),
        &table(&third, "users")
    ));
    assert!(Arc::ptr_eq(
        &table(&after, "comments"),
        &table(&third, "comments")
    ));
    assert!(!Arc::ptr_eq(
        &table(&after, "posts"),
        &table(&third, "posts")
    ));
    let (_, rows) = e.query("posts(id = 10) { title }").await;
    assert_eq!(rows, json!([{"title": "Hello again"}]));

    // Admin routes need the admin token.
    let resp = e
        .http
        .post(format!("{}/admin/reload", e.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "unauthorized");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_sync_picks_up_changes_and_pause_freezes() {
    let e = start("").await;
    let q = "users(id >= 3) { id name }";
    e.wait_for_rows(q, &json!([{"id": 3, "name": "Cy"}]), Duration::from_secs(1))
        .await;
    sql(&e.db, "INSERT INTO users VALUES (4, 'Dee', NULL);");
    e.wait_for_rows(
        q,
        &json!([{"id": 3, "name": "Cy"}, {"id": 4, "name": "Dee"}]),
        Duration::from_secs(6),
    )
    .await;

    // An unchanged file is not reloaded (SQLite: mtime/size check).
    let swaps = e.state.swap_count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(e.state.swap_count(), swaps, "no change, no reload");

    // Pause: changes are not picked up, and an admin reload is refused.
    let (s, body) = e.admin("/admin/replication/pause").await;
    assert_eq!(
        (s, body),
        (StatusCode::OK, json!({"replication_paused": true}))
    );
    sql(&e.db, "INSERT INTO users VALUES (5, 'Eve', NULL);");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(e.state.swap_count(), swaps, "paused: frozen");
    let (_, rows) = e.query(q).await;
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let h = e.health().await;
    assert_eq!(h["replication"]["paused"], true);
    assert_eq!(h["replication"]["state"], "paused");
    let (s, body) = e.admin("/admin/reload").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");

    let (s, body) = e.admin("/admin/replication/resume").await;
    assert_eq!(
        (s, body),
        (StatusCode::OK, json!({"replication_paused": false}))
    );
    e.wait_for_rows(
        q,
        &json!([{"id": 3, "name": "Cy"}, {"id": 4, "name": "Dee"}, {"id": 5, "name": "Eve"}]),
        Duration::from_secs(6),
    )
    .await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_refused_within_5_seconds() {
    let e = start("").await;
    let (s, _) = e.query("users { id }").await;
    assert_eq!(s, StatusCode::OK);
    write_keys(&e.dir.path().join("keys.json"), &[("k2", "other", None)]);
    let t = Instant::now();
    loop {
        let (s, _) = e.query("users { id }").await;
        if s == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "revoked key still works after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = e.query_as(Some("rxk_k2.other"), "users { id }").await;
    assert_eq!(s, StatusCode::OK, "the new key works");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_load_keeps_serving_the_previous_snapshot() {
    let e = start("").await;
    // Not a database any more.
    std::fs::write(
        &e.db,
        b"this is not a sqlite database, just text that is long enough to matter",
    )
    .unwrap();
    let h = e.wait_health(|h| h["status"] == "degraded").await;
    assert!(h["message"].is_string(), "{h}");
    let (s, rows) = e.query("users { id }").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let (_, stats) = e.get_json("/stats", Some(ADMIN)).await;
    assert!(stats["lastError"]["message"].is_string(), "{stats}");
    assert!(stats["loadFailures"].as_u64().unwrap() >= 1);
    let (s, body) = e.admin("/admin/reload").await;
    assert!(s.is_server_error(), "{s} {body}");
    assert_eq!(e.health().await["swapCount"], 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cap_stops_the_load() {
    let (dir, config) = prepare("memory_cap_mb: 1\n");
    let db = dir.path().join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM n WHERE i < 30100)
         INSERT INTO users SELECT i, printf('%.200c', 'x') || i, NULL FROM n;",
    )
    .unwrap();
    drop(conn);
    let e = start_with(dir, config).await;
    let h = e.wait_health(|h| h["status"] == "cap_exceeded").await;
    assert!(h["message"].as_str().unwrap().contains("memory"), "{h}");
    assert_eq!(h["swapCount"], 0);
    let (s, body) = e.query("users { id }").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_config_and_open_access() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    create_db(&db);
    std::fs::write(
        dir.path().join("reflexdb.yaml"),
        "version: 1\ntables:\n  - name: users\n    alias: people\n    field_notes:\n      email: Work address\n  - name: posts\n",
    )
    .unwrap();
    // Relative paths resolve against the config file's directory.
    std::fs::write(
        dir.path().join("engine.yaml"),
        "source: {backend: sqlite, path: source.db}\nschema_config: reflexdb.yaml\nsync: {interval: 3600, mode: binlog}\n",
    )
    .unwrap();
    let config = EngineConfig::load(&dir.path().join("engine.yaml")).unwrap();
    let e = start_with(dir, config).await;
    let h = e.wait_health(|h| h["status"] == "ok").await;
    assert_eq!(h["replication"]["state"], "poll_fallback", "{h}");
    assert_eq!(h["replication"]["requestedMode"], "binlog");
    // No keys_file: no key needed.
    let (s, rows) = e
        .query_as(None, "people(id = 1) { name posts { id } }")
        .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(
        rows,
        json!([{"name": "Ada", "posts": [{"id": 10}, {"id": 11}]}])
    );
    let (s, _) = e.query_as(None, "comments { id }").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "comments are not exposed");
    let (_, doc) = e.get_json("/openapi.json", None).await;
    let email = &doc["components"]["schemas"]["people"]["properties"]["email"];
    assert_eq!(email["description"], "Work address", "{doc}");
    // No admin token: admin routes refused; shut down through the state instead.
    let resp = e
        .http
        .post(format!("{}/admin/shutdown", e.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    e.state.shutdown();
    tokio::time::timeout(Duration::from_secs(15), e.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
