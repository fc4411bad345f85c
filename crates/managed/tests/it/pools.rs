//! PgBouncer pools of a managed PostgreSQL: bad input, a pool serving 500 concurrent clients
//! over 20 server connections (TLS on both sides), a PgBouncer restarted after it dies, delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use refract_managed::DbType;
use serde_json::json;

use crate::harness::{Harness, Options, KEY_A};

async fn connect(
    tls: &refract_managed::tls::PgTls,
    url: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config: tokio_postgres::Config = url.parse()?;
    let (client, conn) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbouncer_pool_serves_500_clients_over_20_server_connections() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Postgresql) {
        return;
    }
    assert!(
        refract_managed::pools::find_pgbouncer().is_some(),
        "pgbouncer (Debian package) must be installed: scripts/test installs it"
    );
    let (id, _) = h.create_running(json!({"name": "pooled", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"})).await;
    let pools = format!("/api/v1/databases/{id}/pools");

    // Bad input: each a clear 4xx, nothing created.
    for (body, want, text) in [
        (
            json!({"name": "big", "size": 101, "mode": "transaction"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "max_connections (100)",
        ),
        (
            json!({"name": "x", "size": 5, "mode": "sometimes"}),
            StatusCode::BAD_REQUEST,
            "unknown pool mode",
        ),
        (
            json!({"name": "Bad Name", "size": 5, "mode": "session"}),
            StatusCode::BAD_REQUEST,
            "pool name",
        ),
        (
            json!({"name": "x", "size": 0, "mode": "session"}),
            StatusCode::BAD_REQUEST,
            "size",
        ),
        (
            json!({"name": "x", "size": 5, "mode": "session", "user": "postgres"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "app_user",
        ),
        (
            json!({"name": "x", "size": 5, "mode": "session", "typo": 1}),
            StatusCode::BAD_REQUEST,
            "typo",
        ),
    ] {
        let (status, v) = h.post(&pools, body.clone()).await;
        assert_eq!(status, want, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(text), "{body}: {v}");
    }
    let (status, v) = h.get(&pools).await;
    assert_eq!((status, v.clone()), (StatusCode::OK, json!([])), "{v}");

    let (status, pool) = h
        .post(
            &pools,
            json!({"name": "web", "size": 20, "mode": "transaction"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert_eq!(pool["database"], "pooled");
    let url = pool["connection_string"].as_str().unwrap().to_string();
    assert!(url.ends_with("/web?sslmode=require"), "{url}");
    let (status, v) = h
        .post(&pools, json!({"name": "web", "size": 5, "mode": "session"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = h
        .post(
            &pools,
            json!({"name": "more", "size": 81, "mode": "session"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pools together over max_connections: {v}"
    );

    // psql verifies PgBouncer's certificate with the CA (verify-full); plain text is refused.
    let ca = h.ca_file(&id).await;
    let u = crate::harness::Url::parse(&url);
    let psql = |mode: &str| crate::harness::psql(&u, "127.0.0.1", mode, &ca, "SELECT 41 + 1");
    let out = psql("verify-full");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "psql verify-full through PgBouncer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !psql("disable").status.success(),
        "plain text to PgBouncer is refused"
    );

    // 500 clients at once through the pool (TLS verified with the CA, SCRAM), each holding
    // its connection until all are connected, then a query each; the server sees at most 20.
    let tls = h.service.client_tls();
    let started = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(500));
    let mut tasks = Vec::new();
    for i in 0..500i32 {
        let (tls, url, barrier) = (tls.clone(), url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect(&tls, &url).await.map_err(|e| {
                format!("client {i}: {e} {:?}", e.as_db_error().map(|d| d.message()))
            })?;
            barrier.wait().await;
            // Simple protocol: PgBouncer 1.18 in transaction mode keeps no prepared statements.
            let rows = client
                .simple_query(&format!("SELECT {i} + 1"))
                .await
                .map_err(|e| {
                    format!("client {i}: {e} {:?}", e.as_db_error().map(|d| d.message()))
                })?;
            let value = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            });
            Ok::<i32, String>(value.unwrap_or(-1))
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as i32 + 1);
    }
    let elapsed = started.elapsed();
    eprintln!("500 clients through a 20-connection pool: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    let direct = h.connection_string(&id).await;
    let admin = connect(&tls, &direct).await.unwrap();
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((1..=20).contains(&n), "server connections of the pool: {n}");

    // PgBouncer killed: the reconciler starts it again and the pool serves.
    let inst = refract_managed::pools::pool_instance_id(&id);
    let state = h
        .driver
        .instance_dir(&inst)
        .unwrap()
        .join(refract_runtime::STATE_FILE);
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    h.wait_for("pgbouncer to be restarted", Duration::from_secs(30), || {
        let (tls, url) = (tls.clone(), url.clone());
        async move {
            match connect(&tls, &url).await {
                Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;

    // Pools only for PostgreSQL. (Running before it is deleted below: the check that nothing
    // is left needs its server to have started.)
    let (redis, _) = h
        .create_running(json!({"name": "cache", "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}))
        .await;
    let (status, v) = h
        .post(
            &format!("/api/v1/databases/{redis}/pools"),
            json!({"name": "p", "size": 1, "mode": "session"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("postgresql"), "{v}");

    // Delete: the pool is gone and so is PgBouncer (its only pool).
    let (status, v) = h
        .call(Method::DELETE, &format!("{pools}/web"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let (status, v) = h
        .call(Method::DELETE, &format!("{pools}/web"), Some(KEY_A), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(connect(&tls, &url).await.is_err());
    h.delete_and_check_gone(&redis).await;
    h.delete_and_check_gone(&id).await;
}
