//! A managed PostgreSQL: create, log in with the returned connection string, write and read,
//! SIGKILL and recover with the data, add a streaming standby that receives a write, remove it,
//! stop/start/restart, delete.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use refract_managed::tls::PgTls;
use refract_managed::DbType;
use serde_json::{json, Value};

use crate::harness::{
    assert_no_password_outside_vault, field_names, node_url, Harness, Options, Url, KEY_A,
    SQL_CREDENTIAL_FIELDS,
};

/// Logs in over TLS, verifying the server against the installation's CA (`verify-full`).
pub(crate) async fn connect(tls: &PgTls, url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url.parse()?;
    let (client, conn) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn count(tls: &PgTls, url: &str) -> Option<i64> {
    let client = connect(tls, url).await.ok()?;
    let row = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .ok()?;
    Some(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_lifecycle() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Postgresql) {
        return;
    }
    let newest = h.service.binaries().postgres.keys().max().unwrap().clone();
    let (id, d) = h.create_running(json!({"name": "main-postgres", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "storage_gb": 5})).await;
    assert_eq!(d["version"], Value::String(newest.clone()));
    assert!(
        d["server_version"].as_str().unwrap().starts_with(&newest),
        "{d}"
    );

    let c = h.credentials(&id).await;
    assert_eq!(field_names(&c), SQL_CREDENTIAL_FIELDS);
    assert_eq!(c["database"], "main_postgres");
    assert_eq!(c["ssl_mode"], "require");
    let tls = h.service.client_tls();
    assert!(c["password"].as_str().unwrap().len() >= 24);
    let url = c["connection_string"].as_str().unwrap().to_string();
    assert!(url.starts_with("postgresql://app_user:"), "{url}");

    let client = connect(&tls, &url)
        .await
        .expect("log in with the connection string");
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'before the crash')")
        .await
        .unwrap();
    drop(client);
    assert_no_password_outside_vault(&h, &id, c["password"].as_str().unwrap());

    // psql with the CA from `/ca`: verify-full works for both names in the certificate, and
    // the session is encrypted; plain text is refused by pg_hba (hostssl only).
    let ca = h.ca_file(&id).await;
    let u = Url::parse(&url);
    let psql = |host: &str, mode: &str| {
        crate::harness::psql(
            &u,
            host,
            mode,
            &ca,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
    };
    for host in ["127.0.0.1", "localhost"] {
        let out = psql(host, "verify-full");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "t",
            "psql sslmode=verify-full host={host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = psql("127.0.0.1", "disable");
    assert!(!out.status.success(), "a plain-text login must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no encryption"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGKILL the postmaster: the reconciler restarts it, the committed row survives.
    h.kill_primary_and_wait(
        &id,
        "a restarted PostgreSQL",
        Duration::from_secs(90),
        || {
            let url = url.clone();
            let tls = tls.clone();
            async move { count(&tls, &url).await == Some(1) }
        },
    )
    .await;

    // Scale to two servers: a streaming standby that receives the primary's writes.
    let standby = h.scale_and_wait_streaming(&id, 2).await;
    let client = connect(&tls, &url).await.unwrap();
    client
        .batch_execute("INSERT INTO items VALUES (2, 'replicated')")
        .await
        .unwrap();
    let standby_url = node_url(&url, &standby);
    h.wait_for("the write on the standby", Duration::from_secs(30), || {
        let standby_url = standby_url.clone();
        let tls = tls.clone();
        async move { count(&tls, &standby_url).await == Some(2) }
    })
    .await;
    let ro = connect(&tls, &standby_url).await.unwrap();
    assert!(
        ro.batch_execute("INSERT INTO items VALUES (3, 'no')")
            .await
            .is_err(),
        "standbys are read-only"
    );

    // Back to one server: the standby's process and directory go.
    let standby_pid = h.pid(&id, 1);
    let (status, _) = h
        .call(
            Method::PATCH,
            &format!("/api/v1/databases/{id}"),
            Some(KEY_A),
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let n1 = h.server_dir(&id).join("n1");
    h.wait_for("the standby to be removed", Duration::from_secs(60), || {
        let gone = !n1.exists() && !crate::harness::alive(standby_pid);
        async move { gone }
    })
    .await;

    // Stop, start (data kept), restart.
    h.act_and_wait(&id, "stop", "stopped", Duration::from_secs(60))
        .await;
    assert!(
        count(&tls, &url).await.is_none(),
        "a stopped server refuses logins"
    );
    let (status, _) = h
        .post(
            &format!("/api/v1/databases/{id}/actions"),
            json!({"type": "restart"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "restart needs a running database"
    );
    h.act_and_wait(&id, "start", "running", Duration::from_secs(90))
        .await;
    assert_eq!(count(&tls, &url).await, Some(2));
    let before = h.pid(&id, 0);
    let (status, _) = h
        .call(
            Method::PATCH,
            &format!("/api/v1/databases/{id}"),
            Some(KEY_A),
            Some(json!({"plan_id": "db-s-1vcpu-2gb"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.wait_for(
        "a restart with the new plan",
        Duration::from_secs(90),
        || {
            let h = &h;
            let id = id.clone();
            let url = url.clone();
            let tls = tls.clone();
            async move { h.pid(&id, 0) != before && count(&tls, &url).await == Some(2) }
        },
    )
    .await;
    let client = connect(&tls, &url).await.unwrap();
    let row = client
        .query_one("SELECT current_setting('shared_buffers')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "512MB");
    drop(client);

    h.delete_and_check_gone(&id).await;
}
