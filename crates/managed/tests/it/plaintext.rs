//! `refract serve --managed-allow-plaintext`: PostgreSQL and MariaDB then accept plain-text
//! logins too, while TLS stays offered and verifiable (the default, TLS only, is tested in
//! `postgres.rs` and `mariadb.rs`).

use std::process::Command;
use std::time::Duration;

use refract_managed::DbType;
use serde_json::json;

use crate::harness::{Harness, Options, Url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_logins_only_when_the_operator_allows_them() {
    let h = Harness::new(Options {
        allow_plaintext: true,
        ..Options::default()
    });
    if !h.installed(DbType::Postgresql) || !h.installed(DbType::Mysql) {
        return;
    }
    let pg = h
        .create(json!({"name": "plain-pg", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "storage_gb": 5}))
        .await;
    let my = h
        .create(json!({"name": "plain-my", "db_type": "mysql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "storage_gb": 5}))
        .await;
    h.wait_status(&pg, "running", Duration::from_secs(120))
        .await;
    h.wait_status(&my, "running", Duration::from_secs(120))
        .await;

    // PostgreSQL: a plain-text session is accepted and unencrypted; verify-full still works.
    let c = h.credentials(&pg).await;
    assert_eq!(
        c["ssl_mode"], "require",
        "the credentials still ask for TLS: {c}"
    );
    let u = Url::parse(c["connection_string"].as_str().unwrap());
    let ca = h.ca_file(&pg).await;
    let psql = |mode: &str| {
        let out = crate::harness::psql(
            &u,
            "127.0.0.1",
            mode,
            &ca,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    assert_eq!(psql("disable"), "f", "a plain-text login is allowed");
    assert_eq!(
        psql("verify-full"),
        "t",
        "TLS is still offered and verifiable"
    );

    // MariaDB: require_secure_transport is off; a --skip-ssl login works, TLS still verifies.
    let c = h.credentials(&my).await;
    let u = Url::parse(c["connection_string"].as_str().unwrap());
    let ca = h.ca_file(&my).await;
    let mariadb = |tls: &[&str]| {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-h", "127.0.0.1", "-P", &u.port.to_string()])
            .args(["-u", &u.user, "--connect-timeout=5", "-N", "-B"])
            .args(tls)
            .args(["-e", "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'"])
            .env("MYSQL_PWD", &u.password)
            .output()
            .expect("the mariadb client is installed with the server");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    assert_eq!(
        mariadb(&["--skip-ssl"]),
        "",
        "a plain-text login is allowed (no TLS version)"
    );
    let ssl_ca = format!("--ssl-ca={}", ca.display());
    let tls = mariadb(&["--ssl", "--ssl-verify-server-cert", &ssl_ca]);
    assert!(
        tls.starts_with("TLSv1."),
        "TLS is still offered and verifiable: {tls}"
    );

    h.delete_and_check_gone(&pg).await;
    h.delete_and_check_gone(&my).await;
}
