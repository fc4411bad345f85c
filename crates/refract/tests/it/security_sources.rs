//! Issue 12, sources and input limits, attacked the way a customer would: a non-admin
//! management key against the real binary.
//!
//! - SQLite sources are confined to `--sqlite-root` directories (canonical paths: symlinks and
//!   `..` resolved) and never the data directory; refused without a root; checked again before
//!   a build.
//! - Names, hosts, users and schemas refuse control and bidi characters and have length caps,
//!   on `/v1` and on the managed `/api/v1`.
//! - `test-connection` is no network oracle for non-admins.
//! - Every file in the data directory is private (0600, directories 0700).
//! - The managed-server quota.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use refract_api::{
    Backend, Connection, CreateConnectionRequest, CreateConnectionResponse, Database, Status,
    TestConnectionRequest, TestConnectionResult,
};

use crate::common::{
    connection_request, instance_request, serve, wire_answer, wire_body, wire_error, ControlPlane,
};
use crate::managed::KillInstances;

/// A non-admin customer on `plan`: its id and management key.
fn customer(cp: &ControlPlane, name: &str, plan: &str) -> (String, String) {
    let request = refract_api::CreateCustomerRequest {
        name: name.into(),
        plan: Some(refract_api::Plan::parse(plan).unwrap()),
    };
    let created: refract_api::CreateCustomerResponse = cp.wire(
        "POST",
        "/v1/admin/customers",
        &cp.admin_key,
        Some(&request),
        201,
    );
    assert!(!created.customer.is_admin);
    (
        created.customer.id.to_string(),
        created.management_key.key.unwrap(),
    )
}

/// `POST /v1/connections` body: a SQLite connection to `path`, with a first database `name`
/// when `instance`.
fn sqlite_connection(name: &str, path: &str, instance: bool) -> Value {
    wire_body(&CreateConnectionRequest {
        instance: instance.then(|| instance_request(name, "main")),
        ..connection_request(name, Backend::Sqlite, path)
    })
}

/// `POST /v1/connections/test-connection` body: the SQLite file at `path`.
fn sqlite_test(path: &str) -> Value {
    wire_body(&TestConnectionRequest {
        backend: Some(Backend::Sqlite),
        host: path.into(),
        port: None,
        user: None,
        password: None,
        ssl_mode: None,
        ssl_root_cert: None,
    })
}

fn sqlite_file(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada'), (2, 'grace');",
    )
    .unwrap();
}

/// `path` relative to the current directory (which `refract serve` inherits from the test).
fn relative_to_cwd(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count() - 1);
    format!("{ups}{}", path.to_str().unwrap().trim_start_matches('/'))
}

fn assert_refused(s: u16, v: &Value, what: &str) {
    // 422: the body matches the schema; where the file is depends on this host.
    let e = wire_error(what, (422, "invalid_request"), (s, v.clone()));
    let m = &e.message;
    assert!(
        m.contains("mysqlHost") && m.contains("not a SQLite file this control plane may read"),
        "{what}: {m}"
    );
}

#[test]
fn sqlite_sources_are_confined_to_the_roots_and_never_the_data_dir() {
    let cp = ControlPlane::start_fresh();
    let root = cp.sqlite_root();
    let (_, key) = customer(&cp, "mallory", "free");
    let refract_db = cp.dir.join("refract.db");
    assert!(refract_db.exists());
    std::os::unix::fs::symlink(&refract_db, root.join("innocent.db")).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("other.db"), b"").unwrap();
    std::fs::write(root.parent().unwrap().join("other.db"), b"").ok();

    let attacks: Vec<(String, &str)> = vec![
        (
            refract_db.to_str().unwrap().into(),
            "the data dir's refract.db",
        ),
        (
            cp.dir.join("secrets.enc").to_str().unwrap().into(),
            "the secret store",
        ),
        (
            cp.dir.join("managed.sqlite").to_str().unwrap().into(),
            "managed.sqlite",
        ),
        (
            cp.dir.join("new.db").to_str().unwrap().into(),
            "a new file in the data dir",
        ),
        (
            root.join("innocent.db").to_str().unwrap().into(),
            "a symlink in the root to refract.db",
        ),
        (
            root.join("sub/../data/refract.db").to_str().unwrap().into(),
            "a .. path into the data dir",
        ),
        (
            root.join("../other.db").to_str().unwrap().into(),
            "a .. path out of the root",
        ),
        (
            relative_to_cwd(&refract_db),
            "a relative path to refract.db",
        ),
        ("refract.db".into(), "a bare relative name"),
        (
            outside.path().join("other.db").to_str().unwrap().into(),
            "a file outside every root",
        ),
        ("/etc/passwd".into(), "/etc/passwd"),
    ];
    for (path, what) in &attacks {
        let (s, v) = cp.call(
            "POST",
            "/v1/connections",
            Some(&key),
            Some(sqlite_connection("steal", path, true)),
        );
        assert_refused(s, &v, what);
        let (s, v) = cp.call(
            "POST",
            "/v1/connections/test-connection",
            Some(&key),
            Some(sqlite_test(path)),
        );
        assert_refused(s, &v, what);
    }
    // Nothing was created.
    let list: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", &key, None, 200);
    assert!(list.is_empty(), "{list:?}");
    let dbs: Vec<Database> = cp.wire::<(), _>("GET", "/v1/databases", &key, None, 200);
    assert!(dbs.is_empty(), "{dbs:?}");

    // test-connection is no oracle: an existing and a missing file outside the roots get the
    // same answer.
    let answer = |p: &str| {
        let (s, v) = cp.call(
            "POST",
            "/v1/connections/test-connection",
            Some(&key),
            Some(sqlite_test(p)),
        );
        let e: refract_api::ErrorBody = wire_answer(p, s, (s, v));
        (s, e.error, e.message.replace(p, "<path>"))
    };
    assert_eq!(answer("/etc/passwd"), answer("/etc/no-such-file"));
    assert_eq!(
        answer(outside.path().join("other.db").to_str().unwrap()),
        answer(outside.path().join("missing.db").to_str().unwrap())
    );

    // A real file inside the root works, through a relative path and a `..` too.
    let good = root.join("shop.db");
    sqlite_file(&good);
    for p in [
        good.to_str().unwrap().to_string(),
        relative_to_cwd(&good),
        root.join("sub/../shop.db").to_str().unwrap().to_string(),
    ] {
        let answer = cp.call(
            "POST",
            "/v1/connections/test-connection",
            Some(&key),
            Some(sqlite_test(&p)),
        );
        let t: TestConnectionResult = wire_answer(&p, 200, answer);
        assert!(t.ok, "{p}: {t:?}");
    }
    let answer = cp.call(
        "POST",
        "/v1/connections",
        Some(&key),
        Some(sqlite_connection("shop", good.to_str().unwrap(), true)),
    );
    let created: CreateConnectionResponse = wire_answer("create", 201, answer);
    let cid = created.connection.id;
    let dbid = created.database.unwrap().id;

    // PATCH to the data dir: refused, unchanged.
    let (s, v) = cp.call(
        "PATCH",
        &format!("/v1/connections/{cid}"),
        Some(&key),
        Some(wire_body(&refract_api::UpdateConnectionRequest {
            host: Some(root.join("innocent.db").to_str().unwrap().into()),
            ..Default::default()
        })),
    );
    assert_refused(s, &v, "PATCH to a symlink");
    let c: refract_api::ConnectionWithDatabases =
        cp.wire::<(), _>("GET", &format!("/v1/connections/{cid}"), &key, None, 200);
    assert_eq!(c.connection.host, good.to_str().unwrap(), "{c:?}");

    // The file becomes a symlink to refract.db after it was registered: the stored test and the
    // provision refuse it, naming the cause.
    std::fs::remove_file(&good).unwrap();
    std::os::unix::fs::symlink(&refract_db, &good).unwrap();
    let (s, v) = cp.call(
        "POST",
        &format!("/v1/connections/{cid}/test-connection"),
        Some(&key),
        None,
    );
    assert_refused(s, &v, "stored test after the swap");
    let db = provision_until_settled(
        &cp,
        &key,
        dbid,
        Duration::from_secs(60),
        Duration::from_millis(100),
    );
    assert_eq!(
        db.status,
        Status::Failed,
        "the provision did not fail: {db:?}"
    );
    let err = db.last_error.as_deref().unwrap();
    assert!(
        err.contains("may not be read")
            && err.contains("not a SQLite file this control plane may read"),
        "{err}"
    );
}

/// Provisions database `dbid` as `key` and reads it every `poll` until it is running or failed
/// (at most `timeout`); returns it then.
fn provision_until_settled(
    cp: &ControlPlane,
    key: &str,
    dbid: impl std::fmt::Display,
    timeout: Duration,
    poll: Duration,
) -> Database {
    let (s, v) = cp.call(
        "POST",
        &format!("/v1/databases/{dbid}/provision"),
        Some(key),
        None,
    );
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    loop {
        let d: Database = cp.wire::<(), _>("GET", &format!("/v1/databases/{dbid}"), key, None, 200);
        if matches!(d.status, Status::Running | Status::Failed) {
            return d;
        }
        assert!(start.elapsed() < timeout, "not settled: {d:?}");
        std::thread::sleep(poll);
    }
}

fn post(url: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn without_a_root_sqlite_is_refused_and_roots_come_from_flags_or_env() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sources = tmp.path().join("sources");
    std::fs::create_dir(&sources).unwrap();
    let file = sources.join("a.db");
    sqlite_file(&file);
    let body = sqlite_connection("a", file.to_str().unwrap(), false);

    // No root: refused, telling the operator what to do.
    let (mut child, url) = serve(&data, tmp.path(), &[], &[]);
    let admin = std::fs::read_to_string(data.join("admin-key")).unwrap();
    let admin = admin.trim();
    let e = wire_error(
        "no root",
        (422, "invalid_request"),
        post(&url, admin, "/v1/connections", body.clone()),
    );
    assert!(e.message.contains("--sqlite-root"), "{e:?}");
    let (s, v) = post(
        &url,
        admin,
        "/v1/connections/test-connection",
        sqlite_test(file.to_str().unwrap()),
    );
    assert_eq!(s, 422, "{v}");
    child.kill();

    // A relative root (made absolute against serve's directory) from the environment.
    std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    let (mut child, url) = serve(
        &data,
        tmp.path(),
        &[],
        &[("REFRACT_SQLITE_ROOT", "elsewhere:sources")],
    );
    let (s, v) = post(&url, admin, "/v1/connections", body.clone());
    assert_eq!(s, 201, "{v}");
    child.kill();

    // A root equal to the data dir still never allows the data dir.
    let (mut child, url) = serve(
        &data,
        tmp.path(),
        &["--sqlite-root", data.to_str().unwrap()],
        &[],
    );
    let (s, v) = post(
        &url,
        admin,
        "/v1/connections",
        sqlite_connection("b", data.join("refract.db").to_str().unwrap(), false),
    );
    assert_refused(s, &v, "root = data dir");
    child.kill();
}

#[test]
fn names_hosts_users_and_schemas_refuse_control_and_bidi_characters() {
    let cp = ControlPlane::start_fresh();
    let (_, key) = customer(&cp, "eve", "free");
    let long_host = format!("{}\nX-Injected: yes", "h".repeat(100_000));
    let base = CreateConnectionRequest {
        backend: None,
        available_schemas: Some(vec!["shop".into()]),
        user: Some("reader".into()),
        password: Some("pw-123456".into()),
        ..connection_request("ok", Backend::Mysql, "db.internal")
    };
    let with = |change: &dyn Fn(&mut CreateConnectionRequest)| {
        let mut b = base.clone();
        change(&mut b);
        b
    };
    let cases = [
        (with(&|b| b.host = long_host.clone()), "mysqlHost"),
        (
            with(&|b| b.host = "db.internal\r\nfake".into()),
            "mysqlHost",
        ),
        (with(&|b| b.host = "db\u{0}.internal".into()), "mysqlHost"),
        (with(&|b| b.name = "invoice\u{202E}fdp.exe".into()), "name"),
        (with(&|b| b.name = "a\nb".into()), "name"),
        (with(&|b| b.name = "x\u{2066}y".into()), "name"),
        (
            with(&|b| b.user = Some("reader\nadmin".into())),
            "mysqlUser",
        ),
        (with(&|b| b.user = Some("u".repeat(129))), "mysqlUser"),
        (
            with(&|b| b.available_schemas = Some(vec!["shop\u{2069}".into()])),
            "availableSchemas[0]",
        ),
        (
            with(&|b| b.instance = Some(instance_request("db\rx", "shop"))),
            "instance.name",
        ),
        (
            with(&|b| b.instance = Some(instance_request("db", "shop\n"))),
            "instance.mysqlDb",
        ),
    ];
    for (body, field) in cases {
        let e = wire_error(
            field,
            (400, "invalid_request"),
            cp.call(
                "POST",
                "/v1/connections",
                Some(&key),
                Some(wire_body(&body)),
            ),
        );
        assert!(
            e.message.starts_with(field),
            "the message names {field}: {e:?}"
        );
        assert!(e.message.len() < 500, "no echo of the value");
    }
    let long_test = TestConnectionRequest {
        backend: None,
        host: long_host.clone(),
        port: None,
        user: Some("u".into()),
        password: Some("p".into()),
        ssl_mode: None,
        ssl_root_cert: None,
    };
    let (s, v) = cp.call(
        "POST",
        "/v1/connections/test-connection",
        Some(&key),
        Some(wire_body(&long_test)),
    );
    assert_eq!(s, 400, "{v}");
    let list: Vec<Connection> = cp.wire::<(), _>("GET", "/v1/connections", &key, None, 200);
    assert!(list.is_empty(), "nothing was created: {list:?}");

    // PATCH, customers, management keys.
    let created: CreateConnectionResponse =
        cp.wire("POST", "/v1/connections", &key, Some(&base), 201);
    let cid = created.connection.id;
    for body in [
        refract_api::UpdateConnectionRequest {
            host: Some(long_host.clone()),
            ..Default::default()
        },
        refract_api::UpdateConnectionRequest {
            name: Some("n\u{202D}".into()),
            ..Default::default()
        },
        refract_api::UpdateConnectionRequest {
            user: Some("a\u{0}".into()),
            ..Default::default()
        },
    ] {
        let (s, v) = cp.call(
            "PATCH",
            &format!("/v1/connections/{cid}"),
            Some(&key),
            Some(wire_body(&body)),
        );
        assert_eq!(s, 400, "{body:?}: {v}");
    }
    let (s, v) = cp.admin(
        "POST",
        "/v1/admin/customers",
        Some(wire_body(&refract_api::CreateCustomerRequest {
            name: "bob\u{202E}".into(),
            plan: None,
        })),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = cp.call(
        "POST",
        "/v1/account/management-keys",
        Some(&key),
        Some(wire_body(&refract_api::CreateManagementKeyRequest {
            name: "ci\nadmin".into(),
            expires_at: None,
        })),
    );
    assert_eq!(s, 400, "{v}");

    // The managed API's names (`/api/v1`: no refract-api types, its own field names).
    for path in ["/api/v1/databases", "/api/v1/api-tokens"] {
        let body = json!({"name": "cache\u{202E}", "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"});
        let body = if path.ends_with("tokens") {
            json!({"name": "t\u{2067}"})
        } else {
            body
        };
        let (s, v) = cp.call("POST", path, Some(&key), Some(body));
        assert_eq!(s, 400, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("name"), "{v}");
    }
    let (_, list) = cp.call("GET", "/api/v1/databases", Some(&key), None);
    assert_eq!(list, json!([]));
}

#[test]
fn test_connection_is_no_network_oracle_for_customers() {
    let cp = ControlPlane::start_fresh();
    let (_, key) = customer(&cp, "scanner", "free");
    // A port nothing listens on, and a listener that is no database server.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in junk.incoming().flatten() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let probe = |token: &str, backend: Backend, port: u16| {
        let request = TestConnectionRequest {
            backend: Some(backend),
            host: "127.0.0.1".into(),
            port: Some(i64::from(port)),
            user: Some("u".into()),
            password: Some("p".into()),
            ssl_mode: None,
            ssl_root_cert: None,
        };
        let t: TestConnectionResult = cp.wire(
            "POST",
            "/v1/connections/test-connection",
            token,
            Some(&request),
            200,
        );
        assert!(!t.ok, "{t:?}");
        t.error.unwrap()
    };
    for (backend, kind) in [(Backend::Mysql, "MySQL"), (Backend::Postgres, "PostgreSQL")] {
        for port in [closed, junk_port] {
            assert_eq!(
                probe(&key, backend, port),
                format!("could not connect to 127.0.0.1:{port} as a {kind} server"),
                "{backend} {port}"
            );
            // The admin sees the cause.
            let detail = probe(&cp.admin_key, backend, port);
            assert!(!detail.starts_with("could not connect to"), "{detail}");
        }
    }
    // A stored connection answers the same.
    let stored = CreateConnectionRequest {
        port: Some(i64::from(closed)),
        available_schemas: Some(vec!["x".into()]),
        user: Some("u".into()),
        password: Some("p".into()),
        ..connection_request("c", Backend::Mysql, "127.0.0.1")
    };
    let created: CreateConnectionResponse =
        cp.wire("POST", "/v1/connections", &key, Some(&stored), 201);
    let cid = created.connection.id;
    // The served JSON itself: nothing beside `ok` and the generic `error` (no detail leaks).
    let (_, v) = cp.call(
        "POST",
        &format!("/v1/connections/{cid}/test-connection"),
        Some(&key),
        None,
    );
    assert_eq!(
        v,
        json!({"ok": false, "error": format!("could not connect to 127.0.0.1:{closed} as a MySQL server")})
    );
    // A refused login on a real server stays specific: that is what the user must fix.
    let my = crate::common::mysql();
    let request = TestConnectionRequest {
        backend: None,
        host: my.host.clone(),
        port: Some(i64::from(my.port)),
        user: Some(my.user.clone()),
        password: Some("wrong-password".into()),
        ssl_mode: None,
        ssl_root_cert: None,
    };
    let t: TestConnectionResult = cp.wire(
        "POST",
        "/v1/connections/test-connection",
        &key,
        Some(&request),
        200,
    );
    assert!(!t.ok, "{t:?}");
    assert!(
        t.error.as_deref().is_some_and(|e| e.contains("rejected")),
        "{t:?}"
    );
}

/// Every directory under `dir` is 0700 and every file has no bit for group or others. The one
/// exception: when the control plane is root, engines run as another user that must *search*
/// (never list) the data dir and `instances/` to reach their own 0700 directory (docs/security.md,
/// "Engine processes"); those two may be 0701 then, nothing else.
fn assert_private(data: &Path, dir: &Path) -> usize {
    let mut n = 0;
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o777;
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let search_only = root && (dir == data || dir == data.join("instances")) && mode == 0o701;
    assert!(
        mode == 0o700 || search_only,
        "{} is {mode:o}",
        dir.display()
    );
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            n += assert_private(data, &e.path());
        } else {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_file_in_the_data_dir_is_private() {
    let cp = ControlPlane::start_fresh();
    let (_, key) = customer(&cp, "carol", "pro");
    let file = cp.sqlite_root().join("shop.db");
    sqlite_file(&file);
    // As an operator would for engines that run as another user: the source readable by others
    // (its root searchable, the data dir inside stays closed).
    std::fs::set_permissions(cp.sqlite_root(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let answer = cp.call(
        "POST",
        "/v1/connections",
        Some(&key),
        Some(sqlite_connection("shop", file.to_str().unwrap(), true)),
    );
    let created: CreateConnectionResponse = wire_answer("create", 201, answer);
    let dbid = created.database.unwrap().id;
    let with_password = CreateConnectionRequest {
        available_schemas: Some(vec!["x".into()]),
        user: Some("u".into()),
        password: Some("a-password".into()),
        ..connection_request("pw", Backend::Mysql, "db.internal")
    };
    let _: CreateConnectionResponse =
        cp.wire("POST", "/v1/connections", &key, Some(&with_password), 201);
    let _: refract_api::ManagementKey = cp.wire(
        "POST",
        "/v1/account/management-keys",
        &key,
        Some(&refract_api::CreateManagementKeyRequest {
            name: "ci".into(),
            expires_at: None,
        }),
        201,
    );
    let _: refract_api::QueryKey = cp.wire(
        "POST",
        &format!("/v1/databases/{dbid}/api-keys"),
        &key,
        Some(&refract_api::CreateQueryKeyRequest {
            name: "app".into(),
            expires_at: None,
        }),
        201,
    );
    let (s, v) = cp.call(
        "POST",
        "/api/v1/api-tokens",
        Some(&key),
        Some(json!({"name": "t"})),
    );
    assert_eq!(s, 201, "{v}");
    // A running engine: builds, instance files, logs.
    let _cleanup = KillInstances(cp.dir.clone());
    let db = provision_until_settled(
        &cp,
        &key,
        dbid,
        Duration::from_secs(90),
        Duration::from_millis(200),
    );
    assert_eq!(db.status, Status::Running, "{db:?}");
    assert!(cp.dir.join("builds").exists() && cp.dir.join("instances").exists());
    // Every store has written (WAL and SHM files exist while it runs).
    for f in [
        "refract.db-wal",
        "refract.db-shm",
        "managed.sqlite-wal",
        "admin-key",
        "secrets.enc",
    ] {
        assert!(cp.dir.join(f).exists(), "{f} exists");
    }
    let n = assert_private(&cp.dir, &cp.dir);
    assert!(n >= 8, "walked {n} files");
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|e| e.path().join("bin/initdb").exists()))
        .unwrap_or(false)
}

#[test]
fn managed_servers_have_a_per_customer_quota() {
    if !postgres_installed() {
        eprintln!("skipping: PostgreSQL is not installed");
        return;
    }
    let cp = ControlPlane::start_fresh();
    let _cleanup = KillInstances(cp.dir.clone());
    let (cust, key) = customer(&cp, "dave", "free");
    let pg = |name: &str, plan: &str, replicas: i64| json!({"name": name, "db_type": "postgresql", "plan_id": plan, "region": "nyc1", "replicas": replicas});
    let quota_exceeded = |s: u16, v: &Value, what: &str| {
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("quota_exceeded")),
            "{what}: {v}"
        );
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(what) && m.contains("/plan"), "{m}");
    };
    // 16 GiB of plan memory: over the free plan's 8192 MiB; nothing is created.
    let (s, v) = cp.call(
        "POST",
        "/api/v1/databases",
        Some(&key),
        Some(pg("big", "db-s-8vcpu-16gb", 1)),
    );
    quota_exceeded(s, &v, "8192 MiB");
    let (_, list) = cp.call("GET", "/api/v1/databases", Some(&key), None);
    assert_eq!(list, json!([]));

    // One server, then five more: over the five servers.
    let (s, v) = cp.call(
        "POST",
        "/api/v1/databases",
        Some(&key),
        Some(pg("one", "db-s-1vcpu-1gb", 1)),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Running, so that its server is known (and purged) before the test ends.
    let start = Instant::now();
    loop {
        let (_, d) = cp.call("GET", &format!("/api/v1/databases/{id}"), Some(&key), None);
        if d["status"] == "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{d}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (s, v) = cp.call(
        "POST",
        "/api/v1/databases",
        Some(&key),
        Some(pg("five", "db-s-1vcpu-1gb", 5)),
    );
    quota_exceeded(s, &v, "5 servers");
    // Growing the existing one past the memory quota is refused too, and changes nothing.
    let (s, v) = cp.call(
        "PATCH",
        &format!("/api/v1/databases/{id}"),
        Some(&key),
        Some(json!({"plan_id": "db-s-8vcpu-16gb"})),
    );
    quota_exceeded(s, &v, "8192 MiB");
    let (_, d) = cp.call("GET", &format!("/api/v1/databases/{id}"), Some(&key), None);
    assert_eq!(d["plan_id"], "db-s-1vcpu-1gb");

    // The admin raises it the way every limit is raised: the plan.
    let v: refract_api::SetPlanResponse = cp.wire(
        "PATCH",
        &format!("/v1/admin/customers/{cust}/plan"),
        &cp.admin_key,
        Some(&refract_api::SetPlanRequest {
            plan: refract_api::Plan::Pro,
        }),
        200,
    );
    assert_eq!(v.limits.max_managed_servers, Some(10), "{v:?}");
    assert_eq!(v.limits.max_managed_memory_mib, Some(32768), "{v:?}");
    let (s, v) = cp.call(
        "PATCH",
        &format!("/api/v1/databases/{id}"),
        Some(&key),
        Some(json!({"storage_gb": 11})),
    );
    assert_eq!(s, 200, "{v}");

    let (s, v) = cp.call(
        "PATCH",
        &format!("/api/v1/databases/{id}"),
        Some(&key),
        Some(json!({"plan_id": "db-s-8vcpu-16gb"})),
    );
    assert_eq!((s, &v["plan_id"]), (200, &json!("db-s-8vcpu-16gb")), "{v}");

    // Deleting frees the quota; the server is purged before the test ends.
    let (s, _) = cp.call(
        "DELETE",
        &format!("/api/v1/databases/{id}"),
        Some(&key),
        None,
    );
    assert_eq!(s, 202);
    let instance = cp.dir.join("managed/instances").join(format!("{id}-n0"));
    let start = Instant::now();
    while instance.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server was not purged"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
