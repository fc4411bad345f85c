//! Sources set up the way users set them up (issue 20): Refract connects as the least-privilege
//! users `scripts/testenv` creates with exactly the grants `docs/engine.md` documents; the admin
//! users only set up data. Each test reproduces one case that used to look healthy and be wrong.

use std::time::{Duration, Instant};

use refract_api::{
    Backend, CreateConnectionRequest, HealthStatus, Mode, ReplicationState, Status, SyncMode,
    UpdateDatabaseRequest,
};
use serde_json::{json, Value};

use crate::common::{
    database_request, instance_request, mariadb_admin, mysql, mysql_source, new_postgres_database,
    postgres_admin, postgres_source, server_connection_request, ServerUrl,
};
use crate::lifecycle::{create_key, endpoint, query_ok, replication, Cp, LONG};

/// `POST /v1/connections` with a first database; returns (connection id, database id).
fn connection(cp: &Cp, request: CreateConnectionRequest) -> (String, String) {
    let created = cp.create_connection(&request);
    let database = created.database.expect("the first database");
    (created.connection.id.to_string(), database.id.to_string())
}

/// A connection `name` to `u` with the first database `a` on `schema`, in `sync_mode`.
fn source(
    name: &str,
    backend: Backend,
    u: &ServerUrl,
    schema: &str,
    sync_mode: SyncMode,
) -> CreateConnectionRequest {
    CreateConnectionRequest {
        sync_mode: Some(sync_mode),
        instance: Some(instance_request("a", schema)),
        ..server_connection_request(name, backend, u, &[schema])
    }
}

fn database(cp: &Cp, connection: &str, name: &str, schema: &str) -> String {
    let connection = connection.parse().expect("a connection id");
    let created = cp.register_database(&database_request(connection, name, schema));
    created.id.to_string()
}

/// `PATCH /v1/databases/{id}` of the sync mode alone.
fn set_sync_mode(cp: &Cp, id: &str, mode: SyncMode) {
    let request = UpdateDatabaseRequest {
        sync_mode: Some(mode),
        ..Default::default()
    };
    cp.update_database(id, &request);
}

/// Polls a query until its answer satisfies `pred` (a change arriving through the stream).
fn wait_answer(
    endpoint: &str,
    key: &str,
    q: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) {
    let start = Instant::now();
    loop {
        let v = query_ok(endpoint, key, q, Duration::from_secs(10));
        if pred(&v) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{q} on {endpoint} still answers {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// MariaDB with the documented grants: the SELECT-only view of `information_schema` still gives
/// keys and relations; binlog mode without `binlogServerId` gets a unique id per database and
/// streams; a poll database switched to binlog by `PATCH` + `reconfigure` streams too
/// (`hasPendingChanges` tells the truth); an idle stream stays `ok`.
#[test]
fn mariadb_least_privilege_binlog_server_ids_and_sync_mode_change() {
    let src = mysql_source();
    let schema = format!("lp_{}", rand::random::<u32>());
    mariadb_admin(&format!(
        "CREATE DATABASE {schema};
         CREATE TABLE {schema}.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         CREATE TABLE {schema}.posts (id INT PRIMARY KEY, user_id INT NOT NULL, title VARCHAR(80) NOT NULL,
           FOREIGN KEY (user_id) REFERENCES {schema}.users(id));
         CREATE TABLE {schema}.notes (body VARCHAR(50));
         INSERT INTO {schema}.users VALUES (1, 'Ada'), (2, 'Bob');
         INSERT INTO {schema}.posts VALUES (1, 2, 'hello');"
    ));
    let cp = Cp::fresh(0);
    // Poll every hour: a change that arrives within seconds came through the binlog.
    let (conn, streaming) = connection(
        &cp,
        CreateConnectionRequest {
            sync_interval: Some(3600),
            ..source("maria", Backend::Mysql, &src, &schema, SyncMode::Binlog)
        },
    );
    let switched = database(&cp, &conn, "b", &schema);
    // Test-connection says what will not be as expected: the keyless table.
    let v = cp.test_connection(&conn);
    assert!(v.ok, "{v:?}");
    assert!(
        v.binlog.as_ref().is_some_and(|b| b.ready),
        "the documented grants suffice: {v:?}"
    );
    // (Over every visible schema: other tests' tables may fill the first 20 names.)
    let warnings = v.warnings.join("\n");
    assert!(warnings.contains("have no primary key"), "{v:?}");
    assert!(!warnings.contains(&format!("{schema}.users")), "{v:?}");
    set_sync_mode(&cp, &switched, SyncMode::Poll);
    cp.ok(&streaming, "provision", Mode::Immediate);
    cp.ok(&switched, "provision", Mode::Immediate);
    let a = cp.wait_for(&streaming, Status::Running, LONG);
    let b = cp.wait_for(&switched, Status::Running, LONG);

    // Keys and relations seen by the SELECT-only user; the keyless table is a warning.
    let schema_view: refract_api::SchemaView = cp.wire::<(), _>(
        "GET",
        &format!("/v1/databases/{streaming}/schema"),
        None,
        200,
    );
    let users = schema_view
        .tables
        .iter()
        .find(|t| t.name == "users")
        .unwrap();
    assert_eq!(users.primary_key, ["id"], "{schema_view:?}");
    assert!(!users.relations.is_empty(), "{schema_view:?}");
    assert!(
        schema_view
            .warnings
            .join("\n")
            .contains("`notes` has no primary key"),
        "{schema_view:?}"
    );

    // Binlog mode got a server id of its own, shown and stored.
    let id_a = a
        .database
        .binlog_server_id
        .unwrap_or_else(|| panic!("{a:?}"));
    assert!(id_a > 1, "{a:?}");
    assert_eq!(b.database.sync_mode, SyncMode::Poll);

    let (key_a, _) = create_key(&cp, &streaming, "k");
    let (key_b, _) = create_key(&cp, &switched, "k");
    let q = "users(id = 3) { id name }";
    assert_eq!(query_ok(&endpoint(&a), &key_a, q, LONG), json!([]));

    // Switch b to binlog: pending until reconfigure, which applies it.
    set_sync_mode(&cp, &switched, SyncMode::Binlog);
    assert!(cp.instance_status(&switched).has_pending_changes);
    cp.ok(&switched, "reconfigure", Mode::Immediate);
    let b = cp.wait_for(&switched, Status::Running, LONG);
    assert!(!b.has_pending_changes, "{b:?}");
    assert!(b.database.last_error.is_none(), "{b:?}");
    let id_b = b
        .database
        .binlog_server_id
        .unwrap_or_else(|| panic!("{b:?}"));
    assert_ne!(id_a, id_b, "two databases on one source share a server id");

    mariadb_admin(&format!("INSERT INTO {schema}.users VALUES (3, 'Cy')"));
    for (v, key) in [(&a, &key_a), (&b, &key_b)] {
        wait_answer(&endpoint(v), key, q, Duration::from_secs(20), |rows| {
            *rows == json!([{"id": 3, "name": "Cy"}])
        });
    }
    let b = cp.wait_until(&switched, "replication reported", LONG, |v| {
        replication(v).is_some_and(|r| r.state == ReplicationState::Streaming)
    });
    assert_eq!(
        replication(&b).map(|r| r.mode).as_deref(),
        Some("binlog"),
        "{b:?}"
    );

    // Idle for 3 minutes (no writes on the source): still `ok`, still streaming.
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(180) {
        for id in [&streaming, &switched] {
            let v = cp.instance_status(id);
            assert_eq!(
                v.instance.as_ref().and_then(|i| i.health_status),
                Some(HealthStatus::Ok),
                "idle stream reported unhealthy: {v:?}"
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    mariadb_admin(&format!("INSERT INTO {schema}.users VALUES (4, 'Di')"));
    wait_answer(
        &endpoint(&a),
        &key_a,
        "users(id = 4) { id }",
        Duration::from_secs(20),
        |rows| *rows == json!([{"id": 4}]),
    );
    for id in [&streaming, &switched] {
        cp.ok(id, "terminate", Mode::Immediate);
        cp.wait_for(id, Status::Terminated, LONG);
    }
    mariadb_admin(&format!("DROP DATABASE {schema}"));
}

/// A user without the replication grants: binlog mode fails the provision at once with the
/// missing grants; a poll database switched to binlog fails its reconfigure within seconds with
/// the cause (the engine's setup error), and the old engine keeps serving.
#[test]
fn mariadb_binlog_without_grants_fails_fast_with_the_cause() {
    let m = mysql();
    let schema = format!("ng_{}", rand::random::<u32>());
    let user = format!("sel_{}", rand::random::<u32>());
    mariadb_admin(&format!(
        "CREATE DATABASE {schema};
         CREATE TABLE {schema}.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         INSERT INTO {schema}.users VALUES (1, 'Ada');
         CREATE USER '{user}'@'%' IDENTIFIED BY 'sel-pw-123';
         CREATE USER '{user}'@'localhost' IDENTIFIED BY 'sel-pw-123';
         GRANT SELECT ON {schema}.* TO '{user}'@'%';
         GRANT SELECT ON {schema}.* TO '{user}'@'localhost';"
    ));
    let cp = Cp::fresh(0);
    let selector = ServerUrl {
        user: user.clone(),
        password: "sel-pw-123".into(),
        ..m.clone()
    };
    let (_, id) = connection(
        &cp,
        source("sel", Backend::Mysql, &selector, &schema, SyncMode::Binlog),
    );
    let t0 = Instant::now();
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Failed, Duration::from_secs(30));
    let err = v.database.last_error.expect("lastError");
    assert!(
        err.contains("REPLICATION SLAVE") && err.contains("syncMode"),
        "{err}"
    );
    eprintln!(
        "binlog without grants: failed after {:?}: {err}",
        t0.elapsed()
    );

    // Poll works; switching to binlog then fails the reconfigure fast, the poll engine stays.
    set_sync_mode(&cp, &id, SyncMode::Poll);
    cp.ok(&id, "provision", Mode::Immediate);
    let running = cp.wait_for(&id, Status::Running, LONG);
    set_sync_mode(&cp, &id, SyncMode::Binlog);
    let t0 = Instant::now();
    cp.ok(&id, "reconfigure", Mode::Immediate);
    let v = cp.wait_until(
        &id,
        "the reconfigure to fail",
        Duration::from_secs(30),
        |v| v.database.status == Status::Running && v.database.last_error.is_some(),
    );
    let err = v.database.last_error.clone().unwrap();
    assert!(
        err.contains("binlog") && err.contains("REPLICATION"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(
        endpoint(&v),
        endpoint(&running),
        "the poll engine keeps serving"
    );
    let (key, _) = create_key(&cp, &id, "k");
    assert_eq!(
        query_ok(&endpoint(&v), &key, "users { id }", LONG),
        json!([{"id": 1}])
    );
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    mariadb_admin(&format!(
        "DROP DATABASE {schema}; DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost';"
    ));
}

/// PostgreSQL with the documented role (LOGIN REPLICATION, SELECT): it cannot create a
/// publication over tables it does not own, so logical mode fails within seconds with the
/// exact statement an owner must run; once an owner created it (any name), the database uses it
/// and streams. Two
/// Refract databases on one PostgreSQL database both stream (own slots); terminate drops the
/// slots and leaves the owner's publication.
#[test]
fn postgres_least_privilege_publication_by_owner_and_two_databases() {
    let src = postgres_source();
    let db = new_postgres_database(
        "lp",
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE posts (id INT PRIMARY KEY, user_id INT NOT NULL REFERENCES users(id), title TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob'); INSERT INTO posts VALUES (1, 2, 'hello');",
    );
    let cp = Cp::fresh(0);
    let (conn, first) = connection(
        &cp,
        CreateConnectionRequest {
            sync_interval: Some(3600),
            ..source("pg", Backend::Postgres, &src, &db, SyncMode::Logical)
        },
    );
    let t0 = Instant::now();
    cp.ok(&first, "provision", Mode::Immediate);
    let v = cp.wait_for(&first, Status::Failed, Duration::from_secs(30));
    let err = v.database.last_error.expect("lastError");
    eprintln!(
        "logical without a publication: failed after {:?}: {err}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(
        err.contains("not owned by") && err.contains("CREATE PUBLICATION"),
        "{err}"
    );

    // The owner runs the statement the error names.
    let stmt = err
        .split('`')
        .find(|s| s.starts_with("CREATE PUBLICATION"))
        .unwrap_or_else(|| panic!("no statement in {err}"))
        .to_string();
    postgres_admin(&db, &stmt);
    let second = database(&cp, &conn, "b", &db);
    // The second database's own publication does not exist: the owner's covers its tables too.
    cp.ok(&first, "provision", Mode::Immediate);
    cp.ok(&second, "provision", Mode::Immediate);
    let a = cp.wait_for(&first, Status::Running, LONG);
    let b = cp.wait_for(&second, Status::Running, LONG);
    let (key_a, _) = create_key(&cp, &first, "k");
    let (key_b, _) = create_key(&cp, &second, "k");
    postgres_admin(&db, "INSERT INTO users VALUES (3, 'Cy')");
    for (v, key) in [(&a, &key_a), (&b, &key_b)] {
        wait_answer(
            &endpoint(v),
            key,
            "users(id = 3) { name }",
            Duration::from_secs(20),
            |rows| *rows == json!([{"name": "Cy"}]),
        );
    }
    let slots = |expected: i64| {
        postgres_admin(
            "postgres",
            &format!(
                "DO $$ BEGIN IF (SELECT count(*) FROM pg_replication_slots WHERE database = '{db}') <> {expected} \
                 THEN RAISE EXCEPTION 'expected {expected} slots on {db}'; END IF; END $$"
            ),
        )
    };
    slots(2);
    for id in [&first, &second] {
        cp.ok(id, "terminate", Mode::Immediate);
        cp.wait_for(id, Status::Terminated, LONG);
    }
    slots(0);
    postgres_admin(
        &db,
        "DO $$ BEGIN IF (SELECT count(*) FROM pg_publication) <> 1 \
         THEN RAISE EXCEPTION 'the owner''s publication is gone'; END IF; END $$",
    );
    postgres_admin("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// A running binlog stream whose user loses `REPLICATION SLAVE`: the reconnect fails, and within
/// seconds the API says so — `healthStatus: degraded`, `instance.replication.error` naming the
/// grant — while the engine keeps serving its last snapshot.
#[test]
fn a_stream_that_breaks_after_running_shows_degraded_with_the_cause() {
    let m = mysql();
    let schema = format!("br_{}", rand::random::<u32>());
    let user = format!("br_{}", rand::random::<u32>());
    mariadb_admin(&format!(
        "CREATE DATABASE {schema};
         CREATE TABLE {schema}.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         INSERT INTO {schema}.users VALUES (1, 'Ada');
         CREATE USER '{user}'@'%' IDENTIFIED BY 'br-pw-123';
         CREATE USER '{user}'@'localhost' IDENTIFIED BY 'br-pw-123';
         GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%';
         GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'localhost';"
    ));
    let cp = Cp::fresh(0);
    let breaking = ServerUrl {
        user: user.clone(),
        password: "br-pw-123".into(),
        ..m.clone()
    };
    let (_, id) = connection(
        &cp,
        CreateConnectionRequest {
            sync_interval: Some(3600),
            ..source("br", Backend::Mysql, &breaking, &schema, SyncMode::Binlog)
        },
    );
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    cp.wait_until(&id, "streaming", LONG, |v| {
        replication(v).is_some_and(|r| r.state == ReplicationState::Streaming)
    });
    // Take the grant away and cut the user's connections (the binlog dump among them).
    let url = format!("mysql://{}:{}@{}:{}", m.user, m.password, m.host, m.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let pool = mysql_async::Pool::new(url.as_str());
        let mut c = pool.get_conn().await.unwrap();
        c.query_drop(format!(
            "REVOKE REPLICATION SLAVE ON *.* FROM '{user}'@'%'; REVOKE REPLICATION SLAVE ON *.* FROM '{user}'@'localhost'"
        ))
        .await
        .unwrap();
        let ids: Vec<u64> = c
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (user.as_str(),),
            )
            .await
            .unwrap();
        for pid in ids {
            let _ = c.query_drop(format!("KILL {pid}")).await;
        }
        drop(c);
        pool.disconnect().await.unwrap();
    });
    let t0 = Instant::now();
    let broken = cp.wait_until(
        &id,
        "degraded with the cause",
        Duration::from_secs(30),
        |v| {
            v.instance.as_ref().and_then(|i| i.health_status) == Some(HealthStatus::Degraded)
                && replication(v)
                    .and_then(|r| r.error)
                    .is_some_and(|e| e.contains("REPLICATION SLAVE"))
        },
    );
    eprintln!(
        "broken stream reported after {:?}: {:?}",
        t0.elapsed(),
        replication(&broken)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(broken.database.status, Status::Running);
    let (key, _) = create_key(&cp, &id, "k");
    assert_eq!(
        query_ok(&endpoint(&v), &key, "users { name }", LONG),
        json!([{"name": "Ada"}]),
        "the last snapshot keeps serving"
    );
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    mariadb_admin(&format!(
        "DROP DATABASE {schema}; DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost';"
    ));
}
