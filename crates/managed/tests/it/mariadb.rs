//! A managed MySQL served by MariaDB: create, log in with the returned connection string, write
//! and read, SIGKILL and recover, add a replica that receives a write, delete.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use refract_managed::DbType;
use serde_json::json;

use crate::harness::{
    assert_no_password_outside_vault, field_names, Harness, Options, Url, SQL_CREDENTIAL_FIELDS,
};

/// Connection options from a `mysql://…?ssl-mode=REQUIRED` string (the query is the MySQL
/// clients' `ssl-mode`, which `mysql_async` does not parse), with TLS verified against the CA.
pub(crate) fn opts(ca: &str, url: &str) -> mysql_async::Opts {
    let base = url.split('?').next().unwrap();
    mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(base).unwrap())
        .ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.as_bytes().to_vec().into()])
                .with_disable_built_in_roots(true),
        ))
        .into()
}

async fn count(ca: &str, url: &str) -> Option<i64> {
    let mut conn = mysql_async::Conn::new(opts(ca, url)).await.ok()?;
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
    let (id, d) = h.create_running(json!({"name": "Shop DB", "db_type": "mysql", "version": "8.0", "plan_id": "db-s-1vcpu-1gb", "region": "ams3"})).await;
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
    assert_eq!(field_names(&c), SQL_CREDENTIAL_FIELDS);
    assert_eq!(c["database"], "shop_db");
    let url = c["connection_string"].as_str().unwrap().to_string();
    assert!(url.starts_with("mysql://app_user:"), "{url}");
    assert!(url.ends_with("?ssl-mode=REQUIRED"), "{url}");
    assert_eq!(c["ssl_mode"], "require");
    let ca = h.service.ca_pem().to_string();

    let mut conn = mysql_async::Conn::new(opts(&ca, &url))
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

    // The mariadb client verifying the server with the CA from `/ca`; plain text refused.
    let ca_file = h.ca_file(&id).await;
    let u = Url::parse(&url);
    let client = |tls: &[&str]| {
        std::process::Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &u.port.to_string(),
            ])
            .args(["-u", &u.user, "--connect-timeout=5", "-N", "-B"])
            .args(tls)
            .args([
                "-e",
                "SHOW SESSION STATUS LIKE 'Ssl_version'; SELECT @@require_secure_transport",
            ])
            .env("MYSQL_PWD", &u.password)
            .output()
            .expect("the mariadb client is installed with the server")
    };
    let ssl_ca = format!("--ssl-ca={}", ca_file.display());
    let out = client(&["--ssl", "--ssl-verify-server-cert", &ssl_ca]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TLSv1.") && stdout.trim_end().ends_with('1'),
        "mariadb --ssl-verify-server-cert: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same login in plain text is refused (MariaDB 10.11 answers it as access denied).
    let out = client(&["--skip-ssl"]);
    assert!(!out.status.success(), "a plain-text login must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("require_secure_transport")
            || err.contains("insecure transport")
            || err.contains("Access denied"),
        "{err}"
    );

    h.kill_primary_and_wait(&id, "a restarted MariaDB", Duration::from_secs(90), || {
        let url = url.clone();
        let ca = ca.clone();
        async move { count(&ca, &url).await == Some(1) }
    })
    .await;

    // A replica replays the primary's binary log and then follows it.
    let replica = h.scale_and_wait_streaming(&id, 2).await;
    let mut conn = mysql_async::Conn::new(opts(&ca, &url)).await.unwrap();
    conn.query_drop("INSERT INTO items VALUES (2, 'replicated')")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let u = Url::parse(&url);
    let replica_url = format!(
        "mysql://{}:{}@127.0.0.1:{}/{}",
        u.user, u.password, replica["port"], u.database
    );
    h.wait_for("the write on the replica", Duration::from_secs(30), || {
        let replica_url = replica_url.clone();
        let ca = ca.clone();
        async move { count(&ca, &replica_url).await == Some(2) }
    })
    .await;

    h.delete_and_check_gone(&id).await;
}
