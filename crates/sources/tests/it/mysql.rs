//! MySQL/MariaDB against the real test server (`REFRACT_TEST_MYSQL_URL`).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use refract_schema::{Backend, ColumnType};
use refract_sources::{LoadOptions, SourceError, SourcePosition};

use crate::common::*;

/// The documented least-privilege source user (`scripts/testenv`): what Refract connects as.
fn source_url() -> String {
    env_url("REFRACT_TEST_MYSQL_SOURCE_URL")
}

fn admin_url() -> String {
    env_url("REFRACT_TEST_MYSQL_URL")
}

const SETUP: &[&str] = &[
    "CREATE TABLE everything (
        id INT PRIMARY KEY,
        c_bool TINYINT(1), c_tiny TINYINT, c_small SMALLINT, c_med MEDIUMINT, c_int INT, c_uint INT UNSIGNED,
        c_big BIGINT, c_ubig BIGINT UNSIGNED,
        c_dec DECIMAL(10,2), c_dec_big DECIMAL(38,10), c_float FLOAT, c_double DOUBLE,
        c_char CHAR(5), c_ci VARCHAR(20) COLLATE utf8mb4_general_ci, c_bin VARCHAR(20) COLLATE utf8mb4_bin,
        c_text TEXT, c_enum ENUM('a','b'), c_set SET('x','y'), c_json JSON,
        c_binary BINARY(3), c_varbinary VARBINARY(10), c_blob BLOB,
        c_date DATE, c_time TIME(6), c_datetime DATETIME(6), c_timestamp TIMESTAMP(6) NULL DEFAULT NULL,
        c_year YEAR, c_bit1 BIT(1), c_bit8 BIT(8), c_uuid UUID, c_req VARCHAR(5) NOT NULL DEFAULT 'req'
    )",
    "SET time_zone = '+02:00'",
    "INSERT INTO everything (id, c_bool, c_tiny, c_small, c_med, c_int, c_uint, c_big, c_ubig, c_dec, c_dec_big,
        c_float, c_double, c_char, c_ci, c_bin, c_text, c_enum, c_set, c_json, c_binary, c_varbinary, c_blob,
        c_date, c_time, c_datetime, c_timestamp, c_year, c_bit1, c_bit8, c_uuid) VALUES
      (1, 1, -128, -32768, 8388607, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
       12345678.90, 1234567890123456789012345678.0123456789, 1.1, -2.5e-300, 'ab', 'MiXeD', 'Bin',
       'h\u{e9}llo\n\"w\"', 'b', 'x,y', '{\"a\": [1, 2]}', 'ab', x'00ff', 'blob', '2024-02-29',
       '-838:59:59.000000', '2024-01-31 10:20:30.123456', '2024-01-31 10:20:30.5', 2024, b'1', b'10000001',
       '123e4567-e89b-12d3-a456-426614174000'),
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (3, 0, 0, 0, 0, 0, 0, 0, 0, -0.01, -0.0000000001, 0, 0, '', '', '', '', 'a', '', '[]', '', '', '',
       '1000-01-01', '00:00:00', '1969-12-31 23:59:59.999999', '1970-01-01 02:00:01', 1901, b'0', b'0', NULL)",
    "CREATE TABLE parent (a INT, b VARCHAR(10), name VARCHAR(20) NOT NULL, PRIMARY KEY (b, a))",
    "INSERT INTO parent VALUES (1, 'x', 'one'), (2, 'x', 'two'), (1, 'y', 'three')",
    "CREATE TABLE child (id INT PRIMARY KEY, pa INT, pb VARCHAR(10), note TEXT,
        CONSTRAINT child_parent_fk FOREIGN KEY (pb, pa) REFERENCES parent (b, a))",
    "INSERT INTO child VALUES (1, 1, 'x', 'n1'), (2, 2, 'x', NULL), (3, 1, 'y', 'n3'), (4, NULL, NULL, 'orphan')",
    "CREATE TABLE big (id INT PRIMARY KEY, s CHAR(32), n DECIMAL(12,2))",
    "INSERT INTO big SELECT seq, md5(seq), seq * 1.5 FROM seq_1_to_50000",
    "CREATE VIEW a_view AS SELECT 1 AS one",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_introspect_and_load_every_type() {
    let db = TestDb::create(Backend::Mysql).await;
    let mut c = mysql_admin(Some(&db.name)).await;
    for s in SETUP {
        c.query_drop(*s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let _ = c.disconnect().await;
    let p = db.params();

    let schema = refract_sources::introspect(&p).await.expect("introspect");
    assert_eq!(schema.backend, Backend::Mysql);
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["big", "child", "everything", "parent"]);
    let every = table(&schema, "everything");
    let ci = ColumnType::Text {
        case_insensitive: true,
    };
    let cs = ColumnType::Text {
        case_insensitive: false,
    };
    let expected = [
        ("id", ColumnType::Int),
        ("c_bool", ColumnType::Bool),
        ("c_tiny", ColumnType::Int),
        ("c_small", ColumnType::Int),
        ("c_med", ColumnType::Int),
        ("c_int", ColumnType::Int),
        ("c_uint", ColumnType::Int),
        ("c_big", ColumnType::Int),
        ("c_ubig", ColumnType::Decimal { scale: 0 }),
        ("c_dec", ColumnType::Decimal { scale: 2 }),
        ("c_dec_big", ColumnType::Decimal { scale: 10 }),
        ("c_float", ColumnType::Float),
        ("c_double", ColumnType::Float),
        ("c_char", ci),
        ("c_ci", ci),
        ("c_bin", cs),
        ("c_text", ci),
        ("c_enum", ci),
        ("c_set", ColumnType::Json),
        ("c_json", ColumnType::Json),
        ("c_binary", ColumnType::Bytes),
        ("c_varbinary", ColumnType::Bytes),
        ("c_blob", ColumnType::Bytes),
        ("c_date", ColumnType::Date),
        ("c_time", ColumnType::Time),
        ("c_datetime", ColumnType::DateTime),
        ("c_timestamp", ColumnType::Timestamp),
        ("c_year", ColumnType::Int),
        ("c_bit1", ColumnType::Bool),
        ("c_bit8", ColumnType::Int),
        ("c_uuid", cs),
        ("c_req", ci),
    ];
    let got = column_types(every);
    assert_eq!(got, expected);
    assert!(!every.columns[0].nullable && !every.columns[31].nullable && every.columns[1].nullable);
    let parent = table(&schema, "parent");
    assert_eq!(parent.primary_key, ["b", "a"]);
    let child = table(&schema, "child");
    assert_eq!(child.foreign_keys.len(), 1);
    let fk = &child.foreign_keys[0];
    assert_eq!(
        (fk.name.as_str(), fk.referenced_table.as_str()),
        ("child_parent_fk", "parent")
    );
    assert_eq!(fk.columns, ["pb", "pa"]);
    assert_eq!(fk.referenced_columns, ["b", "a"]);

    let m = manifest(
        &schema,
        None,
        &[
            pick("everything"),
            pick("parent"),
            child_subset(),
            pick("big"),
        ],
    );
    let (sinks, pos) = load(&p, &m, 3).await.expect("load");
    assert!(matches!(pos, SourcePosition::Binlog { .. }), "{pos:?}");

    let rows = rows_of(&sinks, "everything");
    let by_id = |id: i64| row_with_id(&rows, id);
    let want1 = vec![
        V::Int(1),
        V::Bool(true),
        V::Int(-128),
        V::Int(-32768),
        V::Int(8_388_607),
        V::Int(-2_147_483_648),
        V::Int(4_294_967_295),
        V::Int(i64::MIN),
        V::Dec(18_446_744_073_709_551_615),
        V::Dec(1_234_567_890),
        V::Dec(12_345_678_901_234_567_890_123_456_780_123_456_789),
        V::Float(1.1),
        V::Float(-2.5e-300),
        t("ab"),
        t("MiXeD"),
        t("Bin"),
        t("h\u{e9}llo\n\"w\""),
        t("b"),
        j(r#"["x","y"]"#),
        j(r#"{"a": [1, 2]}"#),
        V::Bytes(b"ab\0".to_vec()),
        V::Bytes(vec![0, 0xff]),
        V::Bytes(b"blob".to_vec()),
        V::Date(days(2024, 2, 29)),
        V::Time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000),
        V::DateTime(micros(2024, 1, 31, 10, 20, 30, 123_456)),
        V::Ts(micros(2024, 1, 31, 8, 20, 30, 500_000)),
        V::Int(2024),
        V::Bool(true),
        V::Int(129),
        t("123e4567-e89b-12d3-a456-426614174000"),
        t("req"),
    ];
    assert_eq!(by_id(1), want1);
    for (i, v) in by_id(2).iter().enumerate() {
        match (every.columns[i].name.as_str(), v) {
            ("id", V::Int(2)) | ("c_req", V::Text(_)) | (_, V::Null) => {}
            (n, v) => panic!("row 2, {n}: expected NULL, got {v:?}"),
        }
    }
    let r3 = by_id(3);
    assert_eq!(r3[1], V::Bool(false));
    assert_eq!(r3[9], V::Dec(-1));
    assert_eq!(r3[10], V::Dec(-1));
    assert_eq!(r3[13], t(""));
    assert_eq!(r3[18], j("[]"), "an empty SET");
    assert_eq!(r3[19], j("[]"));
    assert_eq!(r3[20], V::Bytes(vec![0, 0, 0]));
    assert_eq!(r3[23], V::Date(days(1000, 1, 1)));
    assert_eq!(r3[24], V::Time(0));
    assert_eq!(r3[25], V::DateTime(-1));
    assert_eq!(r3[26], V::Ts(1_000_000));
    assert_eq!(r3[27], V::Int(1901));
    assert_eq!(r3[28], V::Bool(false));
    assert_eq!(r3[29], V::Int(0));

    assert_parent_child_rows(&sinks);
    let big = &sinks.iter().find(|s| s.table == "big").expect("big").rows;
    assert_eq!(big.len(), 50_000);
    let r = big
        .iter()
        .find(|r| r[0] == V::Int(12_345))
        .expect("row 12345");
    assert_eq!(r[1], t("827ccb0eea8a706c4c34a16891f84e7b"));
    assert_eq!(r[2], V::Dec(1_851_750));

    // Over one connection too.
    let (sinks, _) = load(&p, &m, 1).await.expect("load over one connection");
    assert_eq!(rows_of(&sinks, "everything")[0], want1);

    // The memory cap stops the load.
    let m_big = manifest(&schema, None, &[pick("big"), pick("parent")]);
    let mut sinks: Vec<VecSink> = m_big.tables.iter().map(VecSink::new).collect();
    sinks[0].limit = Some(100);
    let err = refract_sources::load_tables(&p, &m_big, sinks, LoadOptions::parallel(2))
        .await
        .expect_err("the cap stops the load");
    assert!(matches!(err, SourceError::Stopped(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_test_connection_reports_schemas_and_binlog() {
    let db = TestDb::create(Backend::Mysql).await;
    let (report, schemas) = connection_ok(Backend::Mysql, &source_url()).await;
    assert!(schemas.contains(&db.name), "{schemas:?}");
    for sys in ["mysql", "information_schema", "performance_schema", "sys"] {
        assert!(!schemas.iter().any(|s| s == sys), "{schemas:?}");
    }
    let binlog = report.binlog.expect("binlog");
    assert!(binlog.log_bin && binlog.ready, "{binlog:?}");
    assert_eq!(binlog.format.as_deref(), Some("ROW"));
    assert!(report.logical.is_none());
}

#[tokio::test]
async fn mysql_wrong_password_is_a_clear_error_without_the_password() {
    let mut p = ServerUrl::parse(&admin_url()).source_params(Backend::Mysql, None);
    let err = wrong_password_error(&mut p).await;
    assert!(err.contains("Access denied"), "{err}");
}

#[tokio::test]
async fn mysql_unreachable_server_fails_within_the_timeout() {
    let p = ServerUrl::parse(&admin_url()).source_params(Backend::Mysql, None);
    let err = unreachable_server_error(p).await;
    assert!(err.contains("timed out"), "{err}");
}

/// Test-connection with a schema, as the least-privilege user: a table without a primary key is
/// a warning; a keyed one is not (its key is visible to a SELECT-only user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_test_connection_warns_about_tables_without_a_primary_key() {
    let db = TestDb::create(Backend::Mysql).await;
    mysql_admin(Some(&db.name))
        .await
        .query_drop("CREATE TABLE keyed (id INT PRIMARY KEY); CREATE TABLE loose (v INT)")
        .await
        .expect("tables");
    let report = refract_sources::test_connection(&db.params(), Duration::from_secs(5)).await;
    assert!(report.ok, "{:?}", report.error);
    let text = report.warnings.join("\n");
    assert!(
        text.contains("1 table(s) have no primary key")
            && text.contains(&format!("{}.loose", db.name)),
        "{text}"
    );
    assert!(
        !text.contains("keyed") && !text.contains("cannot read"),
        "{text}"
    );
}
