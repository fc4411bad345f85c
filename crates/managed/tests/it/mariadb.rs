//! A managed MySQL served by MariaDB: create, log in with the returned connection string, write
//! and read, SIGKILL and recover, add a replica that receives a write, delete.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use refract_managed::DbType;
use serde_json::json;

use crate::harness::{assert_no_password_outside_vault, parse_url, Harness, Options};

async fn count(url: &str) -> Option<i64> {
    let opts = mysql_async::Opts::from_url(url).ok()?;
    let mut conn = mysql_async::Conn::new(opts).await.ok()?;
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM items").await.ok()?;
    let _ = conn.disconnect().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_on_mariadb_lifecycle() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Mysql) {
        return;
    }
    let id = h
        .create(json!({"name": "Shop DB", "db_type": "mysql", "version": "8.0", "plan_id": "db-s-1vcpu-1gb", "region": "ams3"}))
        .await;
    let d = h
        .wait_status(&id, "running", Duration::from_secs(120))
        .await;
    assert!(
        d["version"].as_str().unwrap().starts_with("MariaDB "),
        "version says which server runs: {d}"
    );
    assert_eq!(d["requested_version"], "8.0");
    assert!(
        d["server_version"].as_str().unwrap().ends_with("-MariaDB"),
        "{d}"
    );

    let c = h.credentials(&id).await;
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "host",
            "port",
            "username",
            "password",
            "database",
            "ssl_mode",
            "connection_string"
        ]
    );
    assert_eq!(c["database"], "shop_db");
    let url = c["connection_string"].as_str().unwrap().to_string();
    assert!(url.starts_with("mysql://app_user:"), "{url}");

    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .expect("log in");
    conn.query_drop("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO items VALUES (1, 'before the crash')")
        .await
        .unwrap();
    // The application user cannot touch other schemas.
    assert!(conn.query_drop("CREATE DATABASE other").await.is_err());
    conn.disconnect().await.unwrap();
    assert_no_password_outside_vault(&h, &id, c["password"].as_str().unwrap());

    h.kill_primary_and_wait(&id, "a restarted MariaDB", Duration::from_secs(90), || {
        let url = url.clone();
        async move { count(&url).await == Some(1) }
    })
    .await;

    // A replica replays the primary's binary log and then follows it.
    let replica = h.scale_and_wait_streaming(&id, 2).await;
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    conn.query_drop("INSERT INTO items VALUES (2, 'replicated')")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let u = parse_url(&url);
    let replica_url = format!(
        "mysql://{}:{}@127.0.0.1:{}/{}",
        u.user, u.password, replica["port"], u.path
    );
    h.wait_for("the write on the replica", Duration::from_secs(30), || {
        let replica_url = replica_url.clone();
        async move { count(&replica_url).await == Some(2) }
    })
    .await;

    h.delete_and_check_gone(&id).await;
}
