//! TLS to sources end to end, against the TLS-only MariaDB and PostgreSQL of `scripts/testenv`
//! (plain connections refused by the servers): `verify-full` with the CA provisions a binlog
//! database and a logical one that load and stream a change made on the source; a wrong CA, a
//! host name the certificate lacks and `disable` fail with messages that name the cause;
//! test-connection reports TLS; the CA is kept like the password (never returned, handed to the
//! engine as a 0600 file).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{required_env, ControlPlane, ServerUrl};

const LONG: Duration = Duration::from_secs(120);

fn url(var: &str) -> ServerUrl {
    let u = required_env(var);
    let rest = u.split_once("://").unwrap().1;
    let (auth, hostpart) = rest.rsplit_once('@').unwrap();
    let (user, password) = auth.split_once(':').unwrap();
    let (host, port) = hostpart
        .split('/')
        .next()
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    ServerUrl {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().unwrap(),
    }
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

fn connection_body(backend: &str, u: &ServerUrl, db: &str, tls: Value) -> Value {
    let mut b = json!({
        "name": format!("tls-{backend}-{}", rand::random::<u32>()), "backend": backend,
        "syncMode": if backend == "mysql" { "binlog" } else { "logical" },
        "mysqlHost": u.host, "mysqlPort": u.port, "mysqlUser": u.user, "mysqlPassword": u.password,
        "availableSchemas": [db], "instance": {"name": "db", "mysqlDb": db},
    });
    for (k, v) in tls.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn test_connection(cp: &ControlPlane, backend: &str, u: &ServerUrl, tls: Value) -> Value {
    let mut b = json!({"backend": backend, "mysqlHost": u.host, "mysqlPort": u.port,
                       "mysqlUser": u.user, "mysqlPassword": u.password});
    for (k, v) in tls.as_object().unwrap() {
        b[k] = v.clone();
    }
    let (s, v) = cp.admin("POST", "/v1/connections/test-connection", Some(b));
    assert_eq!(s, 200, "{v}");
    v
}

fn assert_error(v: &Value, what: &str, needles: &[&str]) {
    assert_eq!(v["ok"], false, "{what}: {v}");
    let e = v["error"].as_str().unwrap_or_default();
    for n in needles {
        assert!(e.contains(n), "{what}: {e:?} should mention {n:?}");
    }
}

fn instance(cp: &ControlPlane, id: &str) -> Value {
    let (s, v) = cp.admin("GET", &format!("/v1/databases/{id}/instance"), None);
    assert_eq!(s, 200, "{v}");
    v
}

fn wait_status(cp: &ControlPlane, id: &str, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = instance(cp, id);
        if v["database"]["status"] == status && v["database"]["desiredState"].is_null() {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "waited for {status}: {} (lastError {})\n{}",
            v["database"]["status"],
            v["database"]["lastError"],
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
    let v = wait_status(cp, id, "running");
    let endpoint = v["instance"]["endpointUrl"].as_str().unwrap().to_string();
    let (s, k) = cp.admin(
        "POST",
        &format!("/v1/databases/{id}/api-keys"),
        Some(json!({"name": "k"})),
    );
    assert_eq!(s, 201, "{k}");
    (endpoint, k["key"].as_str().unwrap().to_string())
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
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["sslMode"], "verify-full", "{c}");
    assert_eq!(c["sslRootCertSet"], true, "{c}");
    assert!(!c.to_string().contains("BEGIN CERTIFICATE"), "{c}");
    let inst = instance(cp, did)["instance"]["id"]
        .as_str()
        .unwrap()
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
    let verify_full = json!({"sslMode": "verify-full", "sslRootCert": ca()});

    let ok = test_connection(&cp, "mysql", &u, verify_full.clone());
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["tls"], true, "{ok}");
    assert!(
        ok["tlsVersion"].as_str().unwrap().starts_with("TLSv1."),
        "{ok}"
    );
    let plain = test_connection(&cp, "mysql", &u, json!({"sslMode": "disable"}));
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
        "mysql",
        &u,
        json!({"sslMode": "verify-full", "sslRootCert": other_ca()}),
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
    let mismatch = test_connection(&cp, "mysql", &elsewhere, verify_full.clone());
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
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(connection_body("mysql", &u, &schema, verify_full)),
    );
    assert_eq!(s, 201, "{v}");
    let (cid, did) = (
        v["connection"]["id"].as_str().unwrap().to_string(),
        v["database"]["id"].as_str().unwrap().to_string(),
    );
    let (endpoint, key) = running(&cp, &did);
    assert_eq!(instance(&cp, &did)["database"]["syncMode"], "binlog");
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
    wait_status(&cp, &did, "terminated");
    mysql_run(&u, &format!("DROP DATABASE {schema}"));
}

#[test]
fn postgres_logical_over_verify_full_tls() {
    let u = url("REFRACT_TEST_PG_TLS_URL");
    let cp = ControlPlane::start_fresh();
    let _engines = Engines(cp.dir.clone());
    let verify_full = json!({"sslMode": "verify-full", "sslRootCert": ca()});

    let ok = test_connection(&cp, "postgres", &u, verify_full.clone());
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["tls"], true, "{ok}");
    assert!(
        ok["tlsVersion"].as_str().unwrap().starts_with("TLSv1."),
        "{ok}"
    );
    let plain = test_connection(&cp, "postgres", &u, json!({"sslMode": "disable"}));
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
    let mismatch = test_connection(&cp, "postgres", &elsewhere, verify_full.clone());
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
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(connection_body("postgres", &u, &db, verify_full)),
    );
    assert_eq!(s, 201, "{v}");
    let (cid, did) = (
        v["connection"]["id"].as_str().unwrap().to_string(),
        v["database"]["id"].as_str().unwrap().to_string(),
    );
    let (s, v) = cp.admin(
        "PATCH",
        &format!("/v1/databases/{did}"),
        Some(json!({"syncMode": "logical"})),
    );
    assert_eq!(s, 200, "{v}");
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
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(connection_body(
            "postgres",
            &u,
            &db,
            json!({"sslMode": "verify-full", "sslRootCert": other_ca()}),
        )),
    );
    assert_eq!(s, 201, "{v}");
    let bad = v["database"]["id"].as_str().unwrap().to_string();
    provision(&cp, &bad);
    let v = wait_status(&cp, &bad, "failed");
    let err = v["database"]["lastError"].as_str().unwrap();
    assert!(
        err.contains("not signed by the CA certificate given in sslRootCert")
            && err.contains("sslRootCert")
            && err.contains("PATCH /v1/connections/"),
        "{err}"
    );

    let (s, v) = cp.admin("POST", &format!("/v1/databases/{did}/terminate"), None);
    assert_eq!(s, 202, "{v}");
    wait_status(&cp, &did, "terminated");
    pg_run(&u, "postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// Field rules: modes by name, a PEM that is no certificate, SQLite, clearing the CA.
#[test]
fn tls_fields_are_validated() {
    let cp = ControlPlane::start_fresh();
    let base = json!({"name": "c", "mysqlHost": "127.0.0.1", "mysqlPort": 1, "mysqlUser": "u",
                      "mysqlPassword": "p", "availableSchemas": ["shop"]});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(with(json!({"sslMode": "verify_full"}))),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(with(json!({"sslRootCert": "hello"}))),
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("sslRootCert holds no PEM certificate"),
        "{v}"
    );
    let (s, v) = cp.admin(
        "POST",
        "/v1/connections",
        Some(with(json!({"sslRootCert": "x".repeat(65537)}))),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = cp.admin("POST", "/v1/connections", Some(base.clone()));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["connection"]["sslMode"], "prefer", "{v}");
    assert_eq!(v["connection"]["sslRootCertSet"], false, "{v}");
    let id = v["connection"]["id"].as_str().unwrap().to_string();
    let (s, v) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{id}"),
        Some(json!({"sslMode": "verify-ca", "sslRootCert": ca()})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sslMode"], "verify-ca");
    assert_eq!(v["sslRootCertSet"], true);
    assert!(!v.to_string().contains("BEGIN CERTIFICATE"));
    let (s, v) = cp.admin(
        "PATCH",
        &format!("/v1/connections/{id}"),
        Some(json!({"sslRootCert": null})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sslRootCertSet"], false);
    assert_eq!(v["sslMode"], "verify-ca");

    // SQLite: a local file, no TLS.
    let path = cp.sqlite_root().join("t.sqlite");
    std::fs::write(&path, b"").unwrap();
    let sqlite = json!({"name": "s", "backend": "sqlite", "mysqlHost": path});
    let mut b = sqlite.clone();
    b["sslMode"] = json!("require");
    let (s, v) = cp.admin("POST", "/v1/connections", Some(b));
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("backend sqlite"),
        "{v}"
    );
    let (s, v) = cp.admin("POST", "/v1/connections", Some(sqlite));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["connection"]["sslMode"], "disable", "{v}");
}
