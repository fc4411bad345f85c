//! TLS to sources end to end, against the TLS-only MariaDB and PostgreSQL of `scripts/testenv`
//! (plain connections refused by the servers): `verify-full` with the CA provisions a binlog
//! database and a logical one that load and stream a change made on the source; a wrong CA, a
//! host name the certificate lacks and `disable` fail with messages that name the cause;
//! test-connection reports TLS; the CA is kept like the password (never returned, handed to the
//! engine as a 0600 file).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use refract_api::{
    Backend, Connection, CreateConnectionRequest, ErrorBody, InstanceStatusResponse, SslMode,
    Status, SyncMode, TestConnectionRequest, TestConnectionResult, UpdateConnectionRequest,
    UpdateDatabaseRequest,
};
use serde_json::{json, Value};

use crate::common::{
    connection_request, instance_request, required_env, server_connection_request, wire_answer,
    wire_body, ControlPlane, ServerUrl,
};

const LONG: Duration = Duration::from_secs(120);

fn url(var: &str) -> ServerUrl {
    ServerUrl::from_env(var)
}

fn ca() -> String {
    std::fs::read_to_string(required_env("REFRACT_TEST_TLS_CA")).unwrap()
}

fn other_ca() -> String {
    std::fs::read_to_string(required_env("REFRACT_TEST_TLS_OTHER_CA")).unwrap()
}

/// Kills the engines a control plane started (also when a test fails).
struct Engines(PathBuf);

impl Drop for Engines {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir(self.0.join("instances")) else {
            return;
        };
        for e in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("state.json")) else {
                continue;
            };
            let state: Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(pid) = state["pid"].as_u64() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("engine") {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

/// TLS settings of a connection: the mode and the CA to trust.
type Tls = (SslMode, Option<String>);

/// `verify-full` against `ca`.
fn verify_full(ca: String) -> Tls {
    (SslMode::VerifyFull, Some(ca))
}

/// A CDC connection (binlog for MySQL, logical for PostgreSQL) to `u` with TLS `tls` and a
/// first database `db` on `schema`.
fn connection_body(
    backend: Backend,
    u: &ServerUrl,
    schema: &str,
    tls: Tls,
) -> CreateConnectionRequest {
    let name = format!("tls-{backend}-{}", rand::random::<u32>());
    CreateConnectionRequest {
        sync_mode: Some(if backend == Backend::Mysql {
            SyncMode::Binlog
        } else {
            SyncMode::Logical
        }),
        ssl_mode: Some(tls.0),
        ssl_root_cert: tls.1,
        instance: Some(instance_request("db", schema)),
        ..server_connection_request(&name, backend, u, &[schema])
    }
}

fn test_connection(
    cp: &ControlPlane,
    backend: Backend,
    u: &ServerUrl,
    tls: Tls,
) -> TestConnectionResult {
    let request = TestConnectionRequest {
        backend: Some(backend),
        host: u.host.clone(),
        port: Some(i64::from(u.port)),
        user: Some(u.user.clone()),
        password: Some(u.password.clone()),
        ssl_mode: Some(tls.0),
        ssl_root_cert: tls.1,
    };
    let answer = cp.admin(
        "POST",
        "/v1/connections/test-connection",
        Some(wire_body(&request)),
    );
    wire_answer("test-connection", 200, answer)
}

fn assert_error(v: &TestConnectionResult, what: &str, needles: &[&str]) {
    assert!(!v.ok, "{what}: {v:?}");
    let e = v.error.as_deref().unwrap_or_default();
    for n in needles {
        assert!(e.contains(n), "{what}: {e:?} should mention {n:?}");
    }
}

fn instance(cp: &ControlPlane, id: &str) -> InstanceStatusResponse {
    let path = format!("/v1/databases/{id}/instance");
    let answer = cp.admin("GET", &path, None);
    wire_answer(&path, 200, answer)
}

fn wait_status(cp: &ControlPlane, id: &str, status: Status) -> InstanceStatusResponse {
    let start = Instant::now();
    loop {
        let v = instance(cp, id);
        if v.database.status == status && v.database.desired_state.is_none() {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "waited for {status}: {} (lastError {:?})\n{}",
            v.database.status,
            v.database.last_error,
            cp.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn provision(cp: &ControlPlane, id: &str) {
    let (s, v) = cp.admin("POST", &format!("/v1/databases/{id}/provision"), None);
    assert_eq!(s, 202, "{v}");
}

/// Provisions `id`, waits for it to run, and returns its endpoint and a query key.
fn running(cp: &ControlPlane, id: &str) -> (String, String) {
    provision(cp, id);
    let v = wait_status(cp, id, Status::Running);
    let endpoint = v
        .instance
        .and_then(|i| i.endpoint_url)
        .expect("a running database's endpoint");
    let request = refract_api::CreateQueryKeyRequest {
        name: "k".into(),
        expires_at: None,
    };
    let path = format!("/v1/databases/{id}/api-keys");
    let answer = cp.admin("POST", &path, Some(wire_body(&request)));
    let key: refract_api::QueryKey = wire_answer(&path, 201, answer);
    (endpoint, key.key.expect("the new key's secret"))
}

/// Polls `q` until its answer is `want`.
fn query_until(endpoint: &str, key: &str, q: &str, want: &Value) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = http
            .post(format!("{endpoint}/query"))
            .bearer_auth(key)
            .body(q.to_string())
            .send()
        {
            last = serde_json::from_str(&r.text().unwrap_or_default()).unwrap_or_default();
            if &last == want {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{q} on {endpoint}: {last}, want {want}");
}

/// The CA is stored like the password: not in the connection's answers, in the engine's
/// directory as a file of its own (0600), not in its config.
fn check_ca_storage(cp: &ControlPlane, cid: &str, did: &str) {
    let (s, c) = cp.admin("GET", &format!("/v1/connections/{cid}"), None);
    assert!(!c.to_string().contains("BEGIN CERTIFICATE"), "{c}");
    let c: refract_api::ConnectionWithDatabases = wire_answer("get the connection", 200, (s, c));
    assert_eq!(c.connection.ssl_mode, SslMode::VerifyFull, "{c:?}");
    assert!(c.connection.ssl_root_cert_set, "{c:?}");
    let inst = instance(cp, did)
        .instance
        .expect("the running engine")
        .id
        .to_string();
    let dir = cp.dir.join("instances").join(inst);
    let pem = dir.join("source-ca.pem");
    assert_eq!(std::fs::read_to_string(&pem).unwrap(), ca());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(dir.join("engine.yaml")).unwrap();
    assert!(!config.contains("BEGIN CERTIFICATE"), "{config}");
    assert!(config.contains("verify-full"), "{config}");
}

fn mysql_run(u: &ServerUrl, sql: &str) {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(u.host.clone())
        .tcp_port(u.port)
        .user(Some(u.user.clone()))
        .pass(Some(u.password.clone()))
        .prefer_socket(false)
        .ssl_opts(Some(mysql_async::SslOpts::default().with_root_certs(vec![
            PathBuf::from(required_env("REFRACT_TEST_TLS_CA")).into(),
        ])));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        c.query_drop(sql).await.unwrap();
        let _ = c.disconnect().await;
    });
}

/// Over the TLS server's local socket (TCP takes TLS only; the socket needs none).
fn pg_run(u: &ServerUrl, db: &str, sql: &str) {
    let mut local = u.clone();
    local.host = format!("{}/postgres-tls", required_env("REFRACT_TEST_ENV_DIR"));
    crate::common::postgres_exec(&local, db, sql)
}

const Q: &str = "users { id name }";

#[test]
fn mariadb_binlog_over_verify_full_tls() {
    let u = url("REFRACT_TEST_MYSQL_TLS_URL");
    let cp = ControlPlane::start_fresh();
    let _engines = Engines(cp.dir.clone());
    let verify_full = verify_full(ca());

    let ok = test_connection(&cp, Backend::Mysql, &u, verify_full.clone());
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.tls, Some(true), "{ok:?}");
    assert!(
        ok.tls_version.as_deref().unwrap().starts_with("TLSv1."),
        "{ok:?}"
    );
    let plain = test_connection(&cp, Backend::Mysql, &u, (SslMode::Disable, None));
    assert_error(
        &plain,
        "disable",
        &[
            "the server requires TLS",
            "set sslMode to prefer or stronger",
        ],
    );
    let wrong = test_connection(
        &cp,
        Backend::Mysql,
        &u,
        (SslMode::VerifyFull, Some(other_ca())),
    );
    assert_error(
        &wrong,
        "another CA",
        &[
            "certificate verify failed",
            "not signed by the CA certificate given in sslRootCert",
        ],
    );
    let mut elsewhere = u.clone();
    elsewhere.host = required_env("REFRACT_TEST_TLS_MISMATCH_HOST");
    let mismatch = test_connection(&cp, Backend::Mysql, &elsewhere, verify_full.clone());
    assert_error(
        &mismatch,
        "host name mismatch",
        &["host name mismatch", "localhost", &elsewhere.host],
    );

    let schema = format!("tls_{}", rand::random::<u32>());
    mysql_run(
        &u,
        &format!(
            "CREATE DATABASE {schema}; CREATE TABLE {schema}.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
             INSERT INTO {schema}.users VALUES (1, 'Ada');"
        ),
    );
    let created = cp.create_connection(&connection_body(Backend::Mysql, &u, &schema, verify_full));
    let (cid, did) = (
        created.connection.id.to_string(),
        created.database.expect("the first database").id.to_string(),
    );
    let (endpoint, key) = running(&cp, &did);
    assert_eq!(instance(&cp, &did).database.sync_mode, SyncMode::Binlog);
    query_until(&endpoint, &key, Q, &json!([{"id": 1, "name": "Ada"}]));
    mysql_run(&u, &format!("INSERT INTO {schema}.users VALUES (2, 'Bob')"));
    query_until(
        &endpoint,
        &key,
        Q,
        &json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]),
    );
    check_ca_storage(&cp, &cid, &did);

    let (s, v) = cp.admin("POST", &format!("/v1/databases/{did}/terminate"), None);
    assert_eq!(s, 202, "{v}");
    wait_status(&cp, &did, Status::Terminated);
    mysql_run(&u, &format!("DROP DATABASE {schema}"));
}

#[test]
fn postgres_logical_over_verify_full_tls() {
    let u = url("REFRACT_TEST_PG_TLS_URL");
    let cp = ControlPlane::start_fresh();
    let _engines = Engines(cp.dir.clone());
    let verify_full = verify_full(ca());

    let ok = test_connection(&cp, Backend::Postgres, &u, verify_full.clone());
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.tls, Some(true), "{ok:?}");
    assert!(
        ok.tls_version.as_deref().unwrap().starts_with("TLSv1."),
        "{ok:?}"
    );
    let plain = test_connection(&cp, Backend::Postgres, &u, (SslMode::Disable, None));
    assert_error(
        &plain,
        "disable",
        &[
            "the server requires TLS",
            "hostssl",
            "set sslMode to prefer or stronger",
        ],
    );
    let mut elsewhere = u.clone();
    elsewhere.host = required_env("REFRACT_TEST_TLS_MISMATCH_HOST");
    let mismatch = test_connection(&cp, Backend::Postgres, &elsewhere, verify_full.clone());
    assert_error(
        &mismatch,
        "host name mismatch",
        &["host name mismatch", "localhost", &elsewhere.host],
    );

    let db = format!("tls_{}", rand::random::<u32>());
    pg_run(&u, "postgres", &format!("CREATE DATABASE {db}"));
    pg_run(
        &u,
        &db,
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL); INSERT INTO users VALUES (1, 'Ada');",
    );
    let created = cp.create_connection(&connection_body(Backend::Postgres, &u, &db, verify_full));
    let (cid, did) = (
        created.connection.id.to_string(),
        created.database.expect("the first database").id.to_string(),
    );
    let request = UpdateDatabaseRequest {
        sync_mode: Some(SyncMode::Logical),
        ..Default::default()
    };
    let answer = cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(wire_body(&request)),
    );
    let updated: refract_api::Database = wire_answer("set logical", 200, answer);
    assert_eq!(updated.sync_mode, SyncMode::Logical);
    let (endpoint, key) = running(&cp, &did);
    query_until(&endpoint, &key, Q, &json!([{"id": 1, "name": "Ada"}]));
    pg_run(&u, &db, "INSERT INTO users VALUES (2, 'Bob')");
    query_until(
        &endpoint,
        &key,
        Q,
        &json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]),
    );
    check_ca_storage(&cp, &cid, &did);

    // A wrong CA: the provision stops at its connection test, naming the certificate problem.
    let created = cp.create_connection(&connection_body(
        Backend::Postgres,
        &u,
        &db,
        (SslMode::VerifyFull, Some(other_ca())),
    ));
    let bad = created.database.expect("the first database").id.to_string();
    provision(&cp, &bad);
    let v = wait_status(&cp, &bad, Status::Failed);
    let err = v.database.last_error.expect("lastError");
    assert!(
        err.contains("not signed by the CA certificate given in sslRootCert")
            && err.contains("sslRootCert")
            && err.contains("PATCH /v1/connections/"),
        "{err}"
    );

    let (s, v) = cp.admin("POST", &format!("/v1/databases/{did}/terminate"), None);
    assert_eq!(s, 202, "{v}");
    wait_status(&cp, &did, Status::Terminated);
    pg_run(&u, "postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// Field rules: modes by name, a PEM that is no certificate, SQLite, clearing the CA.
#[test]
fn tls_fields_are_validated() {
    let cp = ControlPlane::start_fresh();
    let base = CreateConnectionRequest {
        port: Some(1),
        user: Some("u".into()),
        password: Some("p".into()),
        available_schemas: Some(vec!["shop".into()]),
        ..connection_request("c", Backend::Mysql, "127.0.0.1")
    };
    // A mode spelled wrong (no wire value has this spelling: the raw body).
    let mut misspelled = wire_body(&base);
    misspelled["sslMode"] = json!("verify_full");
    let (s, v) = cp.admin("POST", "/v1/connections", Some(misspelled));
    assert_eq!(s, 400, "{v}");
    let with_cert = |pem: String| CreateConnectionRequest {
        ssl_root_cert: Some(pem),
        ..base.clone()
    };
    let answer = cp.admin(
        "POST",
        "/v1/connections",
        Some(wire_body(&with_cert("hello".into()))),
    );
    let refused: ErrorBody = wire_answer("a PEM that is no certificate", 422, answer);
    assert!(
        refused
            .message
            .contains("sslRootCert holds no PEM certificate"),
        "{refused:?}"
    );
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(wire_body(&with_cert("x".repeat(65537)))),
    );
    assert_eq!(s, 400, "{v}");
    let created = cp.create_connection(&base);
    assert_eq!(created.connection.ssl_mode, SslMode::Prefer, "{created:?}");
    assert!(!created.connection.ssl_root_cert_set, "{created:?}");
    let id = created.connection.id;
    let update = |request: UpdateConnectionRequest| -> Connection {
        let (s, v) = cp.admin(
            "PATCH",
            &format!("/v1/connections/{id}"),
            Some(wire_body(&request)),
        );
        assert!(!v.to_string().contains("BEGIN CERTIFICATE"), "{v}");
        wire_answer("PATCH the connection", 200, (s, v))
    };
    let v = update(UpdateConnectionRequest {
        ssl_mode: Some(SslMode::VerifyCa),
        ssl_root_cert: Some(Some(ca())),
        ..Default::default()
    });
    assert_eq!(v.ssl_mode, SslMode::VerifyCa);
    assert!(v.ssl_root_cert_set);
    // `null` removes the CA.
    let v = update(UpdateConnectionRequest {
        ssl_root_cert: Some(None),
        ..Default::default()
    });
    assert!(!v.ssl_root_cert_set);
    assert_eq!(v.ssl_mode, SslMode::VerifyCa);

    // SQLite: a local file, no TLS.
    let path = cp.sqlite_root().join("t.sqlite");
    std::fs::write(&path, b"").unwrap();
    let sqlite = connection_request("s", Backend::Sqlite, path.to_str().unwrap());
    let tls_on_sqlite = CreateConnectionRequest {
        ssl_mode: Some(SslMode::Require),
        ..sqlite.clone()
    };
    let answer = cp.admin("POST", "/v1/connections", Some(wire_body(&tls_on_sqlite)));
    let refused: ErrorBody = wire_answer("TLS on SQLite", 422, answer);
    assert!(refused.message.contains("backend sqlite"), "{refused:?}");
    let created = cp.create_connection(&sqlite);
    assert_eq!(created.connection.ssl_mode, SslMode::Disable, "{created:?}");
}
