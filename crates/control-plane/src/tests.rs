//! `oneshot` tests of the router: request shapes, validation messages, auth. The real binary is
//! tested end to end in `crates/refract/tests/it/control_plane.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{open, router, AppState, ServeConfig};

/// The config of an in-process control plane on `dir/data` (master key from a passphrase, no
/// SQLite roots, the SQLite store and the local runtime): one place for every `oneshot` test.
pub(crate) fn test_config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".into(),
        master_key: Some("test passphrase".into()),
        engine_binary: "refract".into(),
        http: Default::default(),
        sqlite_roots: Vec::new(),
        runtime: Default::default(),
        store: None,
        managed_backup_dir: None,
        managed_servers: Default::default(),
        managed_allow_plaintext: false,
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    app: axum::Router,
    admin: String,
    service: crate::Service,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let service = open(&config).await.unwrap();
    let admin = std::fs::read_to_string(config.data_dir.join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    Harness {
        app: router(AppState {
            service: service.clone(),
        }),
        admin,
        service,
        _dir: dir,
    }
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let b = body.to_string();
        self.call(
            method,
            path,
            Some(&self.admin.clone()),
            if body.is_null() { None } else { Some(&b) },
        )
        .await
    }
}

fn conn_body() -> Value {
    json!({"name": "c1", "mysqlHost": "db.example", "availableSchemas": ["shop", "blog"], "mysqlUser": "u", "mysqlPassword": "pw"})
}

#[tokio::test]
async fn json_errors_have_our_shape_and_name_the_field() {
    let h = harness().await;
    let t = h.admin.clone();
    let cases: &[(&str, &str)] = &[
        ("{", "malformed JSON"),
        ("", "JSON object"),
        // serde would read a struct from an array of its fields in order.
        (r#"["c","h",null,["a"],"u","p"]"#, "JSON object"),
        (
            r#"{"name":"c","mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p","instance":["d","a"]}"#,
            "instance: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"name":"c","mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p","bogus":1}"#,
            "unknown field `bogus`",
        ),
        (
            r#"{"name":"c","mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p","mysqlPort":"x"}"#,
            "mysqlPort",
        ),
        (
            r#"{"name":"c","mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p","instance":{"name":"d","mysqlDb":"a","instanceSize":"huge"}}"#,
            "instance.instanceSize",
        ),
        (
            r#"{"mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p"}"#,
            "missing field `name`",
        ),
    ];
    for (body, needle) in cases {
        let (s, v) = h
            .call("POST", "/v1/connections", Some(&t), Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"], "invalid_request", "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    // A rule between fields (the schema cannot state it): 422, same shape and code.
    let body = r#"{"name":"c","mysqlHost":"h","availableSchemas":["a"],"mysqlUser":"u","mysqlPassword":"p","syncMode":"logical"}"#;
    let (s, v) = h
        .call("POST", "/v1/connections", Some(&t), Some(body))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert!(v["message"].as_str().unwrap().contains("syncMode"), "{v}");
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let h = harness().await;
    for token in [None, Some("nope"), Some("rmk_abc.def"), Some("rmk_")] {
        let (s, v) = h.call("GET", "/v1/connections", token, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(v["error"], "unauthorized");
    }
    let (s, _) = h.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.call("GET", "/health", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn connection_with_instance_is_one_transaction() {
    let h = harness().await;
    let mut body = conn_body();
    body["instance"] = json!({"name": "d1", "mysqlDb": "nope"});
    let (s, v) = h.admin("POST", "/v1/connections", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, list) = h.admin("GET", "/v1/connections", Value::Null).await;
    assert_eq!(list, json!([]));
    body["instance"]["mysqlDb"] = json!("shop");
    let (s, v) = h.admin("POST", "/v1/connections", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["connection"]["mysqlPort"], 3306);
    assert_eq!(v["connection"]["allowedSyncModes"], json!(["poll"]));
    assert_eq!(v["database"]["status"], "registered");
    assert_eq!(v["database"]["taskCpu"], 256);
    assert!(v["connection"].get("mysqlPassword").is_none());
}

#[tokio::test]
async fn deleting_a_database_removes_its_engine_admin_token() {
    let h = harness().await;
    let mut body = conn_body();
    body["instance"] = json!({"name": "d1", "mysqlDb": "shop"});
    let (s, v) = h.admin("POST", "/v1/connections", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id: uuid::Uuid = v["database"]["id"].as_str().unwrap().parse().unwrap();
    let name = crate::lifecycle::admin_token_secret(id);
    h.service.secrets.put(&name, "adm_token").unwrap();
    let (s, v) = h
        .admin("DELETE", &format!("/v1/databases/{id}"), Value::Null)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(h.service.secrets.get(&name), None);
}

#[tokio::test]
async fn openapi_lists_the_routes() {
    let h = harness().await;
    let (_, doc) = h.call("GET", "/v1/openapi.json", None, None).await;
    for p in [
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/databases",
        "/v1/account/management-keys",
        "/v1/admin/customers",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    assert!(doc["components"]["schemas"].get("Database").is_some());
    // `replicas` is documented where it is read and written.
    for (schema, field) in [
        ("Database", "replicas"),
        ("RegisterDatabaseRequest", "replicas"),
        ("UpdateDatabaseRequest", "replicas"),
        ("CreateInstanceRequest", "replicas"),
    ] {
        assert!(
            doc["components"]["schemas"][schema]["properties"]
                .get(field)
                .is_some(),
            "{schema}.{field} missing"
        );
    }
}

/// The local runtime runs one engine per database: `replicas` above 1 is refused there, and
/// stored otherwise (a PATCH is a pending change like any runtime setting).
#[tokio::test]
async fn replicas_above_one_need_the_kubernetes_runtime() {
    let h = harness().await;
    let t = h.admin.clone();
    let register = async |replicas: i64| {
        let body = format!(
            r#"{{"connectionId": "{}", "name": "x", "mysqlDb": "shop", "replicas": {replicas}}}"#,
            uuid::Uuid::new_v4()
        );
        h.call("POST", "/v1/databases", Some(&t), Some(&body)).await
    };
    let (s, body) = register(3).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Kubernetes runtime"),
        "{body}"
    );
    let (s, body) = register(0).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn every_error_has_our_shape_even_from_axum_rejections() {
    let h = harness().await;
    let t = h.admin.clone();
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20));
    let deep = "[".repeat(10_000);
    let cases: Vec<(&str, &str, Option<&str>, StatusCode, &str)> = vec![
        (
            "GET",
            "/v1/connections/%FF",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/databases?connectionId=%FF",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/databases?status=running&status=paused",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "PUT",
            "/v1/connections",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/docs/no-such-asset.js",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/v1/connections",
            Some(big.as_str()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "POST",
            "/v1/connections",
            Some("{\"name\": \"\\ud800\"}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/connections",
            Some(deep.as_str()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "PATCH",
            "/v1/databases/00000000-0000-0000-0000-000000000000",
            Some("{}"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, v) = h.call(method, path, Some(&t), body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        assert_eq!(v["error"], code, "{method} {path}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {v}"
        );
    }
    // The server is still fine.
    let (s, _) = h.call("GET", "/health", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn managed_routes_go_through_the_same_layers() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let service = open(&config).await.unwrap();
    let managed = crate::managed_hooks::open(
        &config.data_dir,
        None,
        false,
        &config.managed_servers,
        &service,
    )
    .unwrap();
    let app = crate::router_with(AppState { service }, Some(managed.router()));
    let req = Request::builder()
        .uri("/api/v1/databases")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    // The managed API's own answer and shape, with the control plane's request id.
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].as_str().is_some(), "{v}");
    // Counted under its route template.
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(r#"route="/api/v1/databases""#),
        "no managed route in the metrics:\n{text}"
    );
}

/// The served (and documented) `TestConnectionResult` carries every field of the sources crate's
/// `TestConnectionReport`, and writes it as that report's own serialization did (same names,
/// same fields left out), so the conversion loses nothing and the served JSON did not change.
#[test]
fn test_connection_result_carries_the_whole_report() {
    let report = refract_sources::TestConnectionReport {
        ok: true,
        error: Some("e".into()),
        tls: Some(true),
        tls_version: Some("TLSv1.3".into()),
        latency_ms: Some(1.0),
        estimated_size_gb: Some(0.5),
        available_schemas: Some(vec!["shop".into()]),
        binlog: Some(refract_sources::BinlogReadiness {
            log_bin: true,
            format: Some("ROW".into()),
            server_id: Some(1),
            ready: true,
            issues: vec!["x".into()],
        }),
        logical: Some(refract_sources::LogicalReadiness {
            wal_level: Some("logical".into()),
            ready: false,
            issues: vec!["y".into()],
        }),
        warnings: vec!["w".into()],
    };
    let report_json = serde_json::to_value(&report).unwrap();
    let served = crate::api::test_connection_result(report.clone());
    assert_eq!(serde_json::to_value(&served).unwrap(), report_json);
    // And the other way: a client reads the served body back into the same value.
    let read: crate::api::TestConnectionResult = serde_json::from_value(report_json).unwrap();
    assert_eq!(read, served);
    // A failed test leaves out what it does not know (no `null`s, no empty `warnings`).
    let failed = refract_sources::TestConnectionReport {
        ok: false,
        error: Some("e".into()),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(crate::api::test_connection_result(failed.clone())).unwrap(),
        serde_json::to_value(&failed).unwrap()
    );
}
