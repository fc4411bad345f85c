//! The `/api/v1` rules through `oneshot`, without running servers (no reconciler): validation,
//! auth, scopes, tenant isolation, error shapes.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Harness, Options, KEY_A, KEY_B};

fn no_reconciler() -> Harness {
    Harness::new(Options {
        reconcile: false,
        ..Options::default()
    })
}

fn redis_body(name: &str) -> Value {
    json!({"name": name, "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_with_a_clear_message_and_creates_nothing() {
    let h = no_reconciler();
    let base = json!({"name": "main-postgres", "db_type": "postgresql", "plan_id": "db-s-2vcpu-4gb", "region": "nyc1"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("db_type", json!("oracle")), "unknown db_type"),
        (with("plan_id", json!("db-s-64vcpu")), "unknown plan_id"),
        (
            with("storage_gb", json!(0)),
            "storage_gb must be between 1 and 16384",
        ),
        (
            with("storage_gb", json!(16385)),
            "storage_gb must be between 1 and 16384",
        ),
        (
            with("replicas", json!(0)),
            "replicas must be between 1 and 5",
        ),
        (
            with("replicas", json!(6)),
            "replicas must be between 1 and 5",
        ),
        (with("name", json!("")), "name must be 1-63 characters"),
        (
            with("name", json!("x".repeat(64))),
            "name must be 1-63 characters",
        ),
        (with("region", json!("")), "region"),
        (with("storage_gb", json!("ten")), "invalid request body"),
        (with("colour", json!("blue")), "unknown field"),
        (
            json!({"db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}),
            "missing field `name`",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = h.post("/api/v1/databases", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{body}: expected {want:?} in {msg:?}");
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "only error and message: {v}"
        );
        assert_eq!(v["error"], "invalid_request", "{v}");
    }
    // A version the engine does not support: the schema cannot tie versions to db_type, so 422.
    for v in ["13", "12.5"] {
        let (status, body) = h.post("/api/v1/databases", with("version", json!(v))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v} → {body}");
        assert!(
            body["message"].as_str().unwrap().contains("not supported"),
            "{body}"
        );
    }
    // A body over the size limit (axum's 2 MB default here) is a 413 in the same shape.
    let (status, v) = h
        .post(
            "/api/v1/databases",
            with("name", json!("x".repeat(3 << 20))),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("length limit exceeded"), "{v}");
    assert_eq!(
        v.as_object().unwrap().len(),
        2,
        "only error and message: {v}"
    );
    assert_eq!(v["error"], "too_large", "{v}");
    // A body that is not JSON at all.
    let (status, v) = h
        .call(Method::POST, "/api/v1/databases", Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("JSON"), "{v}");

    // MongoDB is refused at once, naming the missing binary (unless it is installed here).
    if h.service.binaries().mongod.is_none() {
        let (status, v) = h
            .post("/api/v1/databases", with("db_type", json!("mongodb")))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["message"].as_str().unwrap().contains("mongod"), "{v}");
    }
    // A supported version that is not installed names what is.
    if !h.service.binaries().postgres.contains_key("14") {
        let (status, v) = h
            .post("/api/v1/databases", with("version", json!("14")))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            v["message"].as_str().unwrap().contains("not installed"),
            "{v}"
        );
    }

    let (status, list) = h.get("/api/v1/databases").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]), "nothing was created");
    // Only the installation's CA (created when the service opens).
    let names: Vec<String> = h
        .vault
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("managed/ca/"))
        .collect();
    assert!(
        names.is_empty(),
        "no credentials were generated: {:?}",
        names
    );
    assert!(std::fs::read_dir(h.service.servers_dir())
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_and_duplicate_names() {
    let h = no_reconciler();
    if !h.installed(refract_managed::DbType::Redis) {
        return;
    }
    let (status, v) = h.post("/api/v1/databases", redis_body("Cache One")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "name", "db_type", "status", "created_at"]);
    let id = v["id"].as_str().unwrap();
    assert!(
        id.starts_with("db_")
            && id.len() >= 11
            && id[3..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, d) = h.get(&format!("/api/v1/databases/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["slug"], "cache-one");
    assert_eq!(d["project_id"], "proj_default");
    assert_eq!(d["storage_gb"], 10);
    assert_eq!(d["replicas"], 1);
    assert_eq!(d["region"], "nyc1");
    assert_eq!(d["version"], "7.0");
    assert_eq!(d["status"], "provisioning");
    assert!(d.get("error_message").is_none());

    // Duplicate names in a project: 409, nothing created.
    let (status, v) = h.post("/api/v1/databases", redis_body("Cache One")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        v["message"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    // Another project may use the name.
    let mut other = redis_body("Cache One");
    other["project_id"] = json!("proj_other");
    assert_eq!(
        h.post("/api/v1/databases", other).await.0,
        StatusCode::CREATED
    );

    let (_, list) = h.get("/api/v1/databases").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, list) = h.get("/api/v1/databases?project_id=proj_other").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = h.get("/api/v1/databases?db_type=postgresql").await;
    assert_eq!(list, json!([]));
    let (status, _) = h.get("/api/v1/databases?status=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Credentials: 409 until it has run.
    let (status, v) = h.get(&format!("/api/v1/databases/{id}/credentials")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");

    // Bad PATCH and actions.
    let path = format!("/api/v1/databases/{id}");
    let (status, v) = h
        .call(
            Method::PATCH,
            &path,
            Some(KEY_A),
            Some(json!({"storage_gb": 5})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "storage only grows: {v}"
    );
    let (status, _) = h
        .call(
            Method::PATCH,
            &path,
            Some(KEY_A),
            Some(json!({"replicas": 9})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = h
        .call(
            Method::PATCH,
            &path,
            Some(KEY_A),
            Some(json!({"storage_gb": 20})),
        )
        .await;
    assert_eq!(
        (status, v["storage_gb"].as_i64()),
        (StatusCode::OK, Some(20))
    );
    let (status, _) = h
        .post(&format!("{path}/actions"), json!({"type": "explode"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.post(&format!("{path}/connection"), json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "redis cannot be a /v1 source"
    );

    // Delete: 202, destroyed, hidden from the list, name free again.
    let (status, v) = h.call(Method::DELETE, &path, Some(KEY_A), None).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("destroyed"))
    );
    let (_, list) = h.get("/api/v1/databases?project_id=proj_default").await;
    assert_eq!(list, json!([]));
    let (_, list) = h.get("/api/v1/databases?status=destroyed").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        h.post("/api/v1/databases", redis_body("Cache One")).await.0,
        StatusCode::CREATED
    );
    let (status, _) = h
        .post(&format!("{path}/actions"), json!({"type": "start"}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a destroyed database cannot be started"
    );
    let (status, _) = h.get("/api/v1/databases/db_doesnotexist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = h.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    assert!(v["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_and_tenant_isolation() {
    let h = no_reconciler();
    // No token, a malformed one, an unknown management key: the same 401.
    for token in [
        None,
        Some("nope"),
        Some("rmk_unknown.key"),
        Some("dkc_abc.def"),
    ] {
        let (status, v) = h.call(Method::GET, "/api/v1/databases", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(v["error"], "unauthorized");
        assert!(v["message"].is_string());
    }

    // Tokens: created with a management key, shown once, stored hashed.
    let (status, full) = h.post("/api/v1/api-tokens", json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::CREATED, "{full}");
    let full_token = full["token"].as_str().unwrap().to_string();
    assert!(full_token.starts_with("dkc_") && full["id"].as_str().unwrap().starts_with("tok_"));
    let (status, ro) = h
        .post(
            "/api/v1/api-tokens",
            json!({"name": "reader", "scopes": ["databases:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ro_token = ro["token"].as_str().unwrap().to_string();
    let (status, v) = h
        .post(
            "/api/v1/api-tokens",
            json!({"name": "bad", "scopes": ["root"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let db = std::fs::read(h.data.join("managed.sqlite")).unwrap();
    for t in [&full_token, &ro_token] {
        let secret = t.split_once('.').unwrap().1;
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token secret is stored in clear"
        );
    }

    // A read-only token reads but cannot write or manage tokens.
    let (status, _) = h
        .call(Method::GET, "/api/v1/databases", Some(&ro_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = h
        .call(
            Method::POST,
            "/api/v1/databases",
            Some(&ro_token),
            Some(redis_body("x")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().unwrap().contains("databases:write"));
    let (status, _) = h
        .call(Method::GET, "/api/v1/api-tokens", Some(&ro_token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The full token works and records its use.
    let (status, _) = h
        .call(Method::GET, "/api/v1/databases", Some(&full_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = h.get("/api/v1/api-tokens").await;
    let listed: Vec<&Value> = list.as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|t| t.get("token").is_none()),
        "tokens are never listed: {list}"
    );
    let ci = listed.iter().find(|t| t["name"] == "ci").unwrap();
    assert!(ci["last_used_at"].is_string(), "{ci}");

    // Tenants: B sees none of A's databases or tokens.
    if h.service.binaries().redis_server.is_some() {
        let (status, v) = h
            .call(
                Method::POST,
                "/api/v1/databases",
                Some(&full_token),
                Some(redis_body("a-cache")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap();
        for (method, path) in [
            (Method::GET, format!("/api/v1/databases/{id}")),
            (Method::GET, format!("/api/v1/databases/{id}/credentials")),
            (Method::DELETE, format!("/api/v1/databases/{id}")),
            (Method::PATCH, format!("/api/v1/databases/{id}")),
        ] {
            let body = (method == Method::PATCH).then(|| json!({"storage_gb": 50}));
            let (status, v) = h.call(method.clone(), &path, Some(KEY_B), body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        }
        let (_, list) = h
            .call(Method::GET, "/api/v1/databases", Some(KEY_B), None)
            .await;
        assert_eq!(list, json!([]));
        let (_, d) = h.get(&format!("/api/v1/databases/{id}")).await;
        assert_eq!(d["storage_gb"], 10, "B's PATCH changed nothing");
    }
    let (status, _) = h
        .call(
            Method::DELETE,
            &format!("/api/v1/api-tokens/{}", full["id"].as_str().unwrap()),
            Some(KEY_B),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A deleted token stops working at once.
    let (status, _) = h
        .call(
            Method::DELETE,
            &format!("/api/v1/api-tokens/{}", full["id"].as_str().unwrap()),
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call(Method::GET, "/api/v1/databases", Some(&full_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_route_answers_the_installations_ca_to_the_owner_only() {
    use refract_managed::SecretVault;
    let h = no_reconciler();
    let (status, created) = h.post("/api/v1/databases", redis_body("tls")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/databases/{id}/ca");
    let (status, v) = h.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let pem = v["certificate"].as_str().unwrap();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----")
            && pem.trim_end().ends_with("-----END CERTIFICATE-----"),
        "{pem}"
    );
    assert_eq!(pem, h.service.ca_pem());
    assert_eq!(v.as_object().unwrap().len(), 1, "only the certificate: {v}");
    // Another customer's database and an unknown id: the same 404; no token: 401.
    let (status, v) = h.call(Method::GET, &path, Some(KEY_B), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = h.get("/api/v1/databases/db_doesnotexist/ca").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = h.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The private key never leaves the secret store.
    assert!(!v.to_string().contains("PRIVATE"));
    assert!(h.vault.get(refract_managed::tls::CA_KEY_SECRET).is_some());
}
