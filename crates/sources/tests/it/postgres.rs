//! PostgreSQL against the real test server (`REFRACT_TEST_PG_URL`).

use std::sync::Arc;
use std::time::Duration;

use refract_schema::{Backend, ColumnType, Manifest};
use refract_sources::{
    ExportedSnapshot, LoadOptions, LoadProgress, SourceError, SourceParams, SourcePosition,
};

use crate::common::*;

fn admin_url() -> String {
    env_url("REFRACT_TEST_PG_URL")
}

const SETUP: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN money2 AS numeric(12,2);
CREATE TABLE everything (
    id int4 PRIMARY KEY,
    c_int2 int2, c_int8 int8,
    c_num numeric(10,2), c_num_big numeric(38,6), c_num_free numeric,
    c_f4 float4, c_f8 float8, c_bool bool,
    c_text text, c_varchar varchar(20), c_char char(5), c_citext citext, c_req text NOT NULL DEFAULT 'req',
    c_bytea bytea, c_date date, c_time time, c_ts timestamp(6), c_tstz timestamptz,
    c_json json, c_jsonb jsonb, c_uuid uuid, c_mood mood, c_arr int4[], c_dom money2,
    c_interval interval, c_inet inet, c_serial bigserial
);
INSERT INTO everything (id, c_int2, c_int8, c_num, c_num_big, c_num_free, c_f4, c_f8, c_bool, c_text, c_varchar,
    c_char, c_citext, c_bytea, c_date, c_time, c_ts, c_tstz, c_json, c_jsonb, c_uuid, c_mood, c_arr, c_dom,
    c_interval, c_inet) VALUES
  (1, -32768, 9223372036854775807, 12345678.90, -123456789012345678901234567890.123456,
   3.14159265358979323846264338327950288, 1.1, -2.5e-300, true, E'h\u00e9llo "world"\n\ttab', 'abc',
   'ab', 'MiXeD', '\x00ff10', '2024-02-29', '23:59:59.999999', '2024-01-31 10:20:30.123456',
   '2024-01-31 10:20:30.5+02', '{"a": [1, 2]}', '{"b": 1, "a": "x"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   'happy', '{1,2,3}', 99.5, '1 day 02:00:00', '192.168.0.1/24'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 0, -1, 0.01, 0, 'NaN', -0.5, 0, false, '', '', '', '', '', '0044-03-15 BC', '00:00', 'infinity',
   '-infinity', 'null', '[]', NULL, 'sad', '{}', -0.01, '-1 mons', '::1'),
  (4, NULL, NULL, -99999999.99, 99999999999999999999999999999999.999999, -1e-20, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, 'infinity', NULL, '1969-12-31 23:59:59.999999', '1970-01-01 00:00:00+00', NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL);

CREATE TABLE parent (a int, b text, name text NOT NULL, PRIMARY KEY (b, a));
INSERT INTO parent VALUES (1, 'x', 'one'), (2, 'x', 'two'), (1, 'y', 'three');
CREATE TABLE child (
    id int PRIMARY KEY, pa int, pb text, note text,
    CONSTRAINT child_parent_fk FOREIGN KEY (pb, pa) REFERENCES parent (b, a)
);
INSERT INTO child VALUES (1, 1, 'x', 'n1'), (2, 2, 'x', NULL), (3, 1, 'y', 'n3'), (4, NULL, NULL, 'orphan');

CREATE TABLE events (id int, at date, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO events VALUES (1, '2023-06-01', 'a'), (2, '2024-06-01', 'b');
CREATE TABLE event_refs (id int PRIMARY KEY, event_id int, event_at date,
    FOREIGN KEY (event_id, event_at) REFERENCES events (id, at));

CREATE TABLE big AS SELECT g AS id, md5(g::text) AS s, (g * 1.5)::numeric(12,2) AS n FROM generate_series(1, 50000) g;
ALTER TABLE big ADD PRIMARY KEY (id);
ANALYZE big;

CREATE VIEW a_view AS SELECT 1 AS one;
CREATE SCHEMA other;
CREATE TABLE other.thing (id int PRIMARY KEY, label text);
INSERT INTO other.thing VALUES (7, 'seven');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_introspect_and_load_every_type() {
    let db = TestDb::create(Backend::Postgres).await;
    pg_admin(Some(&db.name))
        .await
        .batch_execute(SETUP)
        .await
        .expect("setup");
    let p = db.params();

    let schema = refract_sources::introspect(&p).await.expect("introspect");
    assert_eq!(schema.backend, Backend::Postgres);
    assert_eq!(schema.database, db.name);
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    // Partitions and views are not tables of their own; other schemas are not visible.
    assert_eq!(
        names,
        [
            "big",
            "child",
            "event_refs",
            "events",
            "everything",
            "parent"
        ]
    );

    let every = table(&schema, "everything");
    let ty = |n: &str| {
        every
            .columns
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("column {n}"))
    };
    let text = ColumnType::Text {
        case_insensitive: false,
    };
    let expected = [
        ("id", ColumnType::Int, "integer"),
        ("c_int2", ColumnType::Int, "smallint"),
        ("c_int8", ColumnType::Int, "bigint"),
        ("c_num", ColumnType::Decimal { scale: 2 }, "numeric(10,2)"),
        (
            "c_num_big",
            ColumnType::Decimal { scale: 6 },
            "numeric(38,6)",
        ),
        ("c_num_free", text, "numeric"),
        ("c_f4", ColumnType::Float, "real"),
        ("c_f8", ColumnType::Float, "double precision"),
        ("c_bool", ColumnType::Bool, "boolean"),
        ("c_text", text, "text"),
        ("c_varchar", text, "character varying(20)"),
        ("c_char", text, "character(5)"),
        (
            "c_citext",
            ColumnType::Text {
                case_insensitive: true,
            },
            "citext",
        ),
        ("c_req", text, "text"),
        ("c_bytea", ColumnType::Bytes, "bytea"),
        ("c_date", ColumnType::Date, "date"),
        ("c_time", ColumnType::Time, "time without time zone"),
        (
            "c_ts",
            ColumnType::DateTime,
            "timestamp(6) without time zone",
        ),
        ("c_tstz", ColumnType::Timestamp, "timestamp with time zone"),
        ("c_json", ColumnType::Json, "json"),
        ("c_jsonb", ColumnType::Json, "jsonb"),
        ("c_uuid", text, "uuid"),
        ("c_mood", text, "mood"),
        ("c_arr", ColumnType::Json, "integer[]"),
        ("c_dom", ColumnType::Decimal { scale: 2 }, "money2"),
        ("c_interval", text, "interval"),
        ("c_inet", text, "inet"),
        ("c_serial", ColumnType::Int, "bigint"),
    ];
    let got: Vec<&str> = every.columns.iter().map(|c| c.name.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(got, want, "columns in ordinal order");
    for (name, t, st) in expected {
        assert_eq!(ty(name).ty, t, "type of {name}");
        assert_eq!(ty(name).source_type, st, "source type of {name}");
    }
    assert!(!ty("id").nullable && !ty("c_req").nullable && ty("c_text").nullable);
    assert_eq!(every.primary_key, ["id"]);

    let parent = table(&schema, "parent");
    assert_eq!(
        parent.primary_key,
        ["b", "a"],
        "key order, not column order"
    );
    let child = table(&schema, "child");
    assert_eq!(child.foreign_keys.len(), 1);
    let fk = &child.foreign_keys[0];
    assert_eq!(fk.name, "child_parent_fk");
    assert_eq!(fk.columns, ["pb", "pa"]);
    assert_eq!(fk.referenced_table, "parent");
    assert_eq!(fk.referenced_columns, ["b", "a"]);
    let refs = table(&schema, "event_refs");
    assert_eq!(
        refs.foreign_keys.len(),
        1,
        "one FK to the partitioned parent: {:?}",
        refs.foreign_keys
    );
    assert_eq!(refs.foreign_keys[0].referenced_table, "events");
    assert_eq!(refs.foreign_keys[0].columns, ["event_id", "event_at"]);
    let big = table(&schema, "big");
    assert!(
        big.estimated_bytes.unwrap_or(0) > 1_000_000,
        "pg_table_size: {:?}",
        big.estimated_bytes
    );
    assert_eq!(big.estimated_rows, Some(50_000));
    let events = table(&schema, "events");
    assert!(
        events.estimated_bytes.unwrap_or(0) > 0,
        "partition sizes summed: {:?}",
        events.estimated_bytes
    );

    // Load: every type, a column subset with a predicate on a column left out, a partitioned
    // table, and a big table, over 3 connections in one snapshot.
    let m = manifest(
        &schema,
        None,
        &[
            pick("everything"),
            pick("parent"),
            child_subset(),
            pick("events"),
            pick("big"),
        ],
    );
    let progress = Arc::new(LoadProgress::default());
    let sinks = m.tables.iter().map(VecSink::new).collect();
    let (sinks, pos) = refract_sources::load_tables(
        &p,
        &m,
        sinks,
        LoadOptions {
            progress: progress.clone(),
            ..LoadOptions::parallel(3)
        },
    )
    .await
    .expect("load");
    match &pos {
        SourcePosition::Lsn { lsn } => assert!(lsn.contains('/'), "lsn {lsn}"),
        other => panic!("position {other:?}"),
    }
    assert_eq!(
        progress.rows.load(std::sync::atomic::Ordering::Relaxed),
        4 + 3 + 2 + 2 + 50_000
    );
    assert_eq!(
        progress
            .tables_done
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );

    let rows = rows_of(&sinks, "everything");
    let by_id = |id: i64| row_with_id(&rows, id);
    let r1 = by_id(1);
    let want1 = vec![
        V::Int(1),
        V::Int(-32768),
        V::Int(i64::MAX),
        V::Dec(1_234_567_890),
        V::Dec(-123_456_789_012_345_678_901_234_567_890_123_456),
        t("3.14159265358979323846264338327950288"),
        V::Float(1.1),
        V::Float(-2.5e-300),
        V::Bool(true),
        t("h\u{e9}llo \"world\"\n\ttab"),
        t("abc"),
        t("ab   "),
        t("MiXeD"),
        t("req"),
        V::Bytes(vec![0x00, 0xff, 0x10]),
        V::Date(days(2024, 2, 29)),
        V::Time(tod(23, 59, 59, 999_999)),
        V::DateTime(micros(2024, 1, 31, 10, 20, 30, 123_456)),
        V::Ts(micros(2024, 1, 31, 8, 20, 30, 500_000)),
        j(r#"{"a": [1, 2]}"#),
        j(r#"{"a": "x", "b": 1}"#),
        t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        t("happy"),
        j("[1,2,3]"),
        V::Dec(9950),
        t("1 day 02:00:00"),
        t("192.168.0.1/24"),
        V::Int(1),
    ];
    assert_eq!(r1, want1);
    let r2 = by_id(2);
    for (i, v) in r2.iter().enumerate() {
        match (every.columns[i].name.as_str(), v) {
            ("id", V::Int(2)) | ("c_req", V::Text(_)) | ("c_serial", V::Int(2)) => {}
            (_, V::Null) => {}
            (n, v) => panic!("row 2, {n}: expected NULL, got {v:?}"),
        }
    }
    let r3 = by_id(3);
    assert_eq!(r3[3], V::Dec(1));
    assert_eq!(r3[4], V::Dec(0));
    assert_eq!(r3[5], t("NaN"));
    assert_eq!(r3[6], V::Float(-0.5));
    assert_eq!(r3[8], V::Bool(false));
    assert_eq!(r3[9], t(""));
    assert_eq!(r3[11], t("     "), "char(5) keeps its padding");
    assert_eq!(r3[14], V::Bytes(vec![]));
    assert_eq!(r3[15], V::Date(days(-43, 3, 15)), "44 BC is year -43");
    assert_eq!(r3[16], V::Time(0));
    assert_eq!(r3[17], V::Null, "infinity → NULL");
    assert_eq!(r3[18], V::Null, "-infinity → NULL");
    assert_eq!(r3[19], j("null"));
    assert_eq!(r3[20], j("[]"));
    assert_eq!(r3[23], j("[]"));
    assert_eq!(r3[24], V::Dec(-1));
    assert_eq!(r3[25], t("-1 mons"));
    let r4 = by_id(4);
    assert_eq!(r4[3], V::Dec(-9_999_999_999));
    assert_eq!(
        r4[4],
        V::Dec(99_999_999_999_999_999_999_999_999_999_999_999_999)
    );
    assert_eq!(r4[5], t("-0.00000000000000000001"));
    assert_eq!(r4[15], V::Null);
    assert_eq!(r4[17], V::DateTime(-1));
    assert_eq!(r4[18], V::Ts(0));

    assert_parent_child_rows(&sinks);
    assert_eq!(
        rows_of(&sinks, "events"),
        vec![
            vec![V::Int(1), V::Date(days(2023, 6, 1)), t("a")],
            vec![V::Int(2), V::Date(days(2024, 6, 1)), t("b")],
        ]
    );
    let big_rows = &sinks.iter().find(|s| s.table == "big").expect("big").rows;
    assert_eq!(big_rows.len(), 50_000);
    let sum: i64 = big_rows
        .iter()
        .map(|r| {
            if let V::Int(i) = r[0] {
                i
            } else {
                panic!("{r:?}")
            }
        })
        .sum();
    assert_eq!(sum, 50_000 * 50_001 / 2);
    let r = big_rows
        .iter()
        .find(|r| r[0] == V::Int(12_345))
        .expect("row 12345");
    assert_eq!(r[1], t("827ccb0eea8a706c4c34a16891f84e7b"));
    assert_eq!(r[2], V::Dec(1_851_750)); // 12345 * 1.5 = 18517.50

    // A sink that refuses rows (memory cap) stops the load.
    let m_big = manifest(&schema, None, &[pick("big"), pick("parent")]);
    let mut sinks: Vec<VecSink> = m_big.tables.iter().map(VecSink::new).collect();
    sinks[0].limit = Some(100);
    let err = refract_sources::load_tables(&p, &m_big, sinks, LoadOptions::parallel(2))
        .await
        .expect_err("the cap stops the load");
    assert!(matches!(err, SourceError::Stopped(_)), "{err:?}");

    // A bad predicate is an error naming the table.
    let m_bad = manifest(
        &schema,
        None,
        &[Pick {
            table: "parent",
            columns: None,
            where_sql: Some("nope = 1"),
        }],
    );
    let err = load(&p, &m_bad, 1).await.expect_err("bad predicate");
    assert!(
        err.to_string().contains("parent") && err.to_string().contains("nope"),
        "{err}"
    );

    // Another schema.
    let mut p_other = p.clone();
    p_other.pg_schema = Some("other".into());
    let other = refract_sources::introspect(&p_other)
        .await
        .expect("introspect other");
    assert_eq!(other.tables.len(), 1);
    assert_eq!(other.tables[0].name, "thing");
    let m_other = manifest(&other, Some("other"), &[pick("thing")]);
    let (sinks, _) = load(&p, &m_other, 2).await.expect("load other");
    assert_eq!(rows_of(&sinks, "thing"), vec![vec![V::Int(7), t("seven")]]);
    let mut p_missing = p.clone();
    p_missing.pg_schema = Some("missing".into());
    let err = refract_sources::introspect(&p_missing)
        .await
        .expect_err("missing schema");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// [`load`] inside the exported snapshot `snap`.
async fn load_in_snapshot(
    p: &SourceParams,
    m: &Manifest,
    parallelism: usize,
    snap: &ExportedSnapshot,
) -> Result<(Vec<VecSink>, SourcePosition), SourceError> {
    let sinks = m.tables.iter().map(VecSink::new).collect();
    let options = LoadOptions {
        snapshot: Some(snap),
        ..LoadOptions::parallel(parallelism)
    };
    refract_sources::load_tables(p, m, sinks, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_load_inside_an_exported_snapshot() {
    let db = TestDb::create(Backend::Postgres).await;
    let c = pg_admin(Some(&db.name)).await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await
    .expect("setup");
    let p = db.params();
    let schema = refract_sources::introspect(&p).await.expect("introspect");
    let m = manifest(&schema, None, &[pick("t")]);

    // Another session exports a snapshot and keeps its transaction open.
    let exporter = pg_admin(Some(&db.name)).await;
    exporter
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("begin");
    let row = exporter
        .query_one(
            "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .expect("export");
    let snap = ExportedSnapshot {
        name: row.get(0),
        lsn: row.get(1),
    };
    c.batch_execute("INSERT INTO t VALUES (3, 'after')")
        .await
        .expect("insert");

    let (sinks, pos) = load_in_snapshot(&p, &m, 2, &snap)
        .await
        .expect("load in snapshot");
    assert_eq!(
        pos,
        SourcePosition::Lsn {
            lsn: snap.lsn.clone()
        }
    );
    assert_eq!(
        rows_of(&sinks, "t"),
        vec![vec![V::Int(1), t("a")], vec![V::Int(2), t("b")]]
    );
    exporter.batch_execute("COMMIT").await.expect("commit");

    let (sinks, _) = load(&p, &m, 1).await.expect("load");
    assert_eq!(rows_of(&sinks, "t").len(), 3);

    // A snapshot that no longer exists is an error, not a silent fresh snapshot.
    let err = load_in_snapshot(&p, &m, 1, &snap)
        .await
        .expect_err("stale snapshot");
    assert!(err.to_string().contains("snapshot"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_test_connection_reports_databases_and_readiness() {
    let db = TestDb::create(Backend::Postgres).await;
    let (report, schemas) = connection_ok(Backend::Postgres, &admin_url()).await;
    assert!(schemas.contains(&"postgres".to_string()), "{schemas:?}");
    assert!(schemas.contains(&db.name), "{schemas:?}");
    assert!(
        !schemas.iter().any(|s| s.starts_with("template")),
        "{schemas:?}"
    );
    assert!(report.latency_ms.is_some_and(|l| l >= 0.0));
    assert!(report.estimated_size_gb.is_some_and(|g| g > 0.0));
    assert!(report.binlog.is_none());
    let logical = report.logical.clone().expect("logical readiness");
    assert_eq!(logical.wal_level.as_deref(), Some("logical"));
    assert!(logical.ready, "{:?}", logical.issues);
    let json = serde_json::to_value(&report).expect("json");
    assert!(
        json["availableSchemas"].is_array() && json["logical"]["walLevel"] == "logical",
        "{json}"
    );

    let url = ServerUrl::parse(&admin_url());
    let p_db = url.source_params(Backend::Postgres, Some(&db.name));
    let report = refract_sources::test_connection(&p_db, Duration::from_secs(5)).await;
    assert!(report.ok, "{:?}", report.error);

    let p_missing = url.source_params(Backend::Postgres, Some("refract_no_such_db"));
    let (err, _) = failed_connection_test(&p_missing, Duration::from_secs(5)).await;
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_readiness_names_missing_rights() {
    // An ordinary role: no REPLICATION, no CREATE on the database, owns no tables.
    let db = TestDb::create(Backend::Postgres).await;
    let role = unique_name("refract_role");
    let admin = pg_admin(Some(&db.name)).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'role-pw-1'; REVOKE CREATE ON DATABASE {0} FROM PUBLIC; \
             CREATE TABLE owned_by_admin (id int PRIMARY KEY); GRANT SELECT ON owned_by_admin TO {role};",
            db.name
        ))
        .await
        .expect("role");
    let url = ServerUrl::parse(&admin_url());
    let mut p = url.source_params(Backend::Postgres, Some(&db.name));
    p.user = role.clone();
    p.password = Some("role-pw-1".into());
    let report = refract_sources::test_connection(&p, Duration::from_secs(5)).await;
    let _ = admin.batch_execute(&format!("DROP OWNED BY {role}")).await;
    drop(db);
    let _ = pg_admin(None)
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
    assert!(report.ok, "{:?}", report.error);
    let logical = report.logical.expect("logical");
    assert!(!logical.ready);
    let issues = logical.issues.join("\n");
    assert!(issues.contains("REPLICATION"), "{issues}");
    assert!(issues.contains("GRANT CREATE ON DATABASE"), "{issues}");
    assert!(issues.contains("not owned by"), "{issues}");
}

#[tokio::test]
async fn pg_wrong_password_is_a_clear_error_without_the_password() {
    let url = ServerUrl::parse(&admin_url());
    let mut p = url.source_params(Backend::Postgres, None);
    let err = wrong_password_error(&mut p).await;
    assert!(err.contains("password authentication failed"), "{err}");
    if !url.password.is_empty() {
        assert!(!err.contains(url.password.as_str()), "{err}");
    }
    p.database = Some("postgres".into());
    let err = refract_sources::introspect(&p).await.expect_err("login");
    assert!(matches!(err, SourceError::Rejected(_)), "{err:?}");
    assert!(!err.to_string().contains(WRONG_PASSWORD), "{err}");
}

#[tokio::test]
async fn pg_unreachable_server_fails_within_the_timeout() {
    let p = ServerUrl::parse(&admin_url()).source_params(Backend::Postgres, None);
    let err = unreachable_server_error(p).await;
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
}

/// Test-connection in a database, as the least-privilege role: a table without a primary key
/// and a table the role may not read are warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_test_connection_warns_about_keyless_and_unreadable_tables() {
    let db = TestDb::create(Backend::Postgres).await;
    pg_admin(Some(&db.name))
        .await
        .batch_execute(
            "CREATE TABLE keyed (id INT PRIMARY KEY); CREATE TABLE loose (v INT);
             CREATE SCHEMA private; CREATE TABLE private.secret (id INT PRIMARY KEY);",
        )
        .await
        .expect("tables");
    // The test role reads everything (pg_read_all_data); a role with SELECT on one table only:
    let role = format!("{}_ro", db.name);
    pg_admin(Some(&db.name))
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'ro-pw-1'; GRANT SELECT ON keyed, loose TO {role};"
        ))
        .await
        .expect("role");
    let mut p = db.params();
    p.user = role.clone();
    p.password = Some("ro-pw-1".into());
    let report = refract_sources::test_connection(&p, Duration::from_secs(5)).await;
    pg_admin(Some(&db.name))
        .await
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
    assert!(report.ok, "{:?}", report.error);
    let text = report.warnings.join("\n");
    assert!(
        text.contains("1 table(s) have no primary key") && text.contains("public.loose"),
        "{text}"
    );
    assert!(
        text.contains("1 table(s) cannot be read by this user")
            && text.contains("): private.secret"),
        "{text}"
    );
    assert!(!text.contains("keyed"), "{text}");
}
