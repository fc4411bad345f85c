//! Sources set up the way users set them up (issue 20): Refract connects as the least-privilege
//! users `scripts/testenv` creates with exactly the grants `docs/engine.md` documents; the admin
//! users only set up data. Each test reproduces one case that used to look healthy and be wrong.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{mariadb_admin, mysql, mysql_source, postgres_admin, postgres_source};
use crate::lifecycle::{create_key, endpoint, query_ok, Cp, LONG};

/// `POST /v1/connections` with a first database; returns (connection id, database id).
fn connection(cp: &Cp, body: Value) -> (String, String) {
    let (s, v) = cp.call("POST", "/v1/connections", Some(body));
    assert_eq!(s, 201, "{v}");
    (
        v["connection"]["id"].as_str().unwrap().to_string(),
        v["database"]["id"].as_str().unwrap().to_string(),
    )
}

fn database(cp: &Cp, connection: &str, name: &str, schema: &str) -> String {
    let (s, v) = cp.call(
        "POST",
        "/v1/databases",
        Some(json!({"connectionId": connection, "name": name, "mysqlDb": schema})),
    );
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
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
        json!({"name": "maria", "mysqlHost": src.host, "mysqlPort": src.port, "mysqlUser": src.user,
               "mysqlPassword": src.password, "availableSchemas": [schema], "syncMode": "binlog",
               "syncInterval": 3600, "instance": {"name": "a", "mysqlDb": schema}}),
    );
    let switched = database(&cp, &conn, "b", &schema);
    // Test-connection says what will not be as expected: the keyless table.
    let (s, v) = cp.call(
        "POST",
        &format!("/v1/connections/{conn}/test-connection"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["binlog"]["ready"], true,
        "the documented grants suffice: {v}"
    );
    // (Over every visible schema: other tests' tables may fill the first 20 names.)
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("have no primary key"), "{v}");
    assert!(!warnings.contains(&format!("{schema}.users")), "{v}");
    let (s, v) = cp.call(
        "PATCH",
        &format!("/v1/databases/{switched}"),
        Some(json!({"syncMode": "poll"})),
    );
    assert_eq!(s, 200, "{v}");
    cp.ok(&streaming, "provision", None, "immediate");
    cp.ok(&switched, "provision", None, "immediate");
    let a = cp.wait_status(&streaming, "running", LONG);
    let b = cp.wait_status(&switched, "running", LONG);

    // Keys and relations seen by the SELECT-only user; the keyless table is a warning.
    let schema_view = cp.get(&format!("/v1/databases/{streaming}/schema"));
    let tables = schema_view["tables"].as_array().unwrap();
    let users = tables.iter().find(|t| t["name"] == "users").unwrap();
    assert_eq!(users["primaryKey"], json!(["id"]), "{schema_view}");
    assert!(
        !users["relations"].as_array().unwrap().is_empty(),
        "{schema_view}"
    );
    let warnings = schema_view["warnings"].to_string();
    assert!(
        warnings.contains("`notes` has no primary key"),
        "{schema_view}"
    );

    // Binlog mode got a server id of its own, shown and stored.
    let id_a = a["database"]["binlogServerId"]
        .as_i64()
        .unwrap_or_else(|| panic!("{a}"));
    assert!(id_a > 1, "{a}");
    assert_eq!(b["database"]["syncMode"], "poll");

    let (key_a, _) = create_key(&cp, &streaming, "k");
    let (key_b, _) = create_key(&cp, &switched, "k");
    let q = "users(id = 3) { id name }";
    assert_eq!(query_ok(&endpoint(&a), &key_a, q, LONG), json!([]));

    // Switch b to binlog: pending until reconfigure, which applies it.
    let (s, v) = cp.call(
        "PATCH",
        &format!("/v1/databases/{switched}"),
        Some(json!({"syncMode": "binlog"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(cp.instance(&switched)["hasPendingChanges"], true);
    cp.ok(&switched, "reconfigure", None, "immediate");
    let b = cp.wait_status(&switched, "running", LONG);
    assert_eq!(b["hasPendingChanges"], false, "{b}");
    assert!(b["database"]["lastError"].is_null(), "{b}");
    let id_b = b["database"]["binlogServerId"]
        .as_i64()
        .unwrap_or_else(|| panic!("{b}"));
    assert_ne!(id_a, id_b, "two databases on one source share a server id");

    mariadb_admin(&format!("INSERT INTO {schema}.users VALUES (3, 'Cy')"));
    for (v, key) in [(&a, &key_a), (&b, &key_b)] {
        wait_answer(&endpoint(v), key, q, Duration::from_secs(20), |rows| {
            *rows == json!([{"id": 3, "name": "Cy"}])
        });
    }
    let b = cp.wait_until(&switched, "replication reported", LONG, |v| {
        v["instance"]["replication"]["state"] == "streaming"
    });
    assert_eq!(b["instance"]["replication"]["mode"], "binlog", "{b}");

    // Idle for 3 minutes (no writes on the source): still `ok`, still streaming.
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(180) {
        for id in [&streaming, &switched] {
            let v = cp.instance(id);
            assert_eq!(
                v["instance"]["healthStatus"], "ok",
                "idle stream reported unhealthy: {v}"
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
        cp.ok(id, "terminate", None, "immediate");
        cp.wait_status(id, "terminated", LONG);
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
    let (_, id) = connection(
        &cp,
        json!({"name": "sel", "mysqlHost": m.host, "mysqlPort": m.port, "mysqlUser": user,
               "mysqlPassword": "sel-pw-123", "availableSchemas": [schema], "syncMode": "binlog",
               "instance": {"name": "a", "mysqlDb": schema}}),
    );
    let t0 = Instant::now();
    cp.ok(&id, "provision", None, "immediate");
    let v = cp.wait_status(&id, "failed", Duration::from_secs(30));
    let err = v["database"]["lastError"].as_str().unwrap().to_string();
    assert!(
        err.contains("REPLICATION SLAVE") && err.contains("syncMode"),
        "{err}"
    );
    eprintln!(
        "binlog without grants: failed after {:?}: {err}",
        t0.elapsed()
    );

    // Poll works; switching to binlog then fails the reconfigure fast, the poll engine stays.
    let (s, v) = cp.call(
        "PATCH",
        &format!("/v1/databases/{id}"),
        Some(json!({"syncMode": "poll"})),
    );
    assert_eq!(s, 200, "{v}");
    cp.ok(&id, "provision", None, "immediate");
    let running = cp.wait_status(&id, "running", LONG);
    let (s, v) = cp.call(
        "PATCH",
        &format!("/v1/databases/{id}"),
        Some(json!({"syncMode": "binlog"})),
    );
    assert_eq!(s, 200, "{v}");
    let t0 = Instant::now();
    cp.ok(&id, "reconfigure", None, "immediate");
    let v = cp.wait_until(
        &id,
        "the reconfigure to fail",
        Duration::from_secs(30),
        |v| v["database"]["status"] == "running" && !v["database"]["lastError"].is_null(),
    );
    let err = v["database"]["lastError"].as_str().unwrap();
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
    cp.ok(&id, "terminate", None, "immediate");
    cp.wait_status(&id, "terminated", LONG);
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
    let db = format!("lp_{}", rand::random::<u32>());
    postgres_admin("postgres", &format!("CREATE DATABASE {db}"));
    postgres_admin(
        &db,
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE posts (id INT PRIMARY KEY, user_id INT NOT NULL REFERENCES users(id), title TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob'); INSERT INTO posts VALUES (1, 2, 'hello');",
    );
    let cp = Cp::fresh(0);
    let (conn, first) = connection(
        &cp,
        json!({"name": "pg", "backend": "postgres", "mysqlHost": src.host, "mysqlPort": src.port,
               "mysqlUser": src.user, "mysqlPassword": src.password, "availableSchemas": [db],
               "syncMode": "logical", "syncInterval": 3600, "instance": {"name": "a", "mysqlDb": db}}),
    );
    let t0 = Instant::now();
    cp.ok(&first, "provision", None, "immediate");
    let v = cp.wait_status(&first, "failed", Duration::from_secs(30));
    let err = v["database"]["lastError"].as_str().unwrap().to_string();
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
    cp.ok(&first, "provision", None, "immediate");
    cp.ok(&second, "provision", None, "immediate");
    let a = cp.wait_status(&first, "running", LONG);
    let b = cp.wait_status(&second, "running", LONG);
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
        cp.ok(id, "terminate", None, "immediate");
        cp.wait_status(id, "terminated", LONG);
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
    let (_, id) = connection(
        &cp,
        json!({"name": "br", "mysqlHost": m.host, "mysqlPort": m.port, "mysqlUser": user,
               "mysqlPassword": "br-pw-123", "availableSchemas": [schema], "syncMode": "binlog",
               "syncInterval": 3600, "instance": {"name": "a", "mysqlDb": schema}}),
    );
    cp.ok(&id, "provision", None, "immediate");
    let v = cp.wait_status(&id, "running", LONG);
    cp.wait_until(&id, "streaming", LONG, |v| {
        v["instance"]["replication"]["state"] == "streaming"
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
            v["instance"]["healthStatus"] == "degraded"
                && v["instance"]["replication"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("REPLICATION SLAVE"))
        },
    );
    eprintln!(
        "broken stream reported after {:?}: {}",
        t0.elapsed(),
        broken["instance"]["replication"]
    );
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(broken["database"]["status"], "running");
    let (key, _) = create_key(&cp, &id, "k");
    assert_eq!(
        query_ok(&endpoint(&v), &key, "users { name }", LONG),
        json!([{"name": "Ada"}]),
        "the last snapshot keeps serving"
    );
    cp.ok(&id, "terminate", None, "immediate");
    cp.wait_status(&id, "terminated", LONG);
    mariadb_admin(&format!(
        "DROP DATABASE {schema}; DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost';"
    ));
}
