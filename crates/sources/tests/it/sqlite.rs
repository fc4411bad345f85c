//! SQLite on a temporary file.

use std::time::Duration;

use refract_schema::{Backend, ColumnType};
use refract_sources::{SourceParams, SourcePosition};

use crate::common::*;

const SETUP: &str = r#"
PRAGMA foreign_keys = ON;
CREATE TABLE everything (
    id INTEGER PRIMARY KEY,
    c_int INTEGER, c_bigint BIGINT, c_real REAL, c_double DOUBLE PRECISION,
    c_text TEXT, c_varchar VARCHAR(20), c_blob BLOB,
    c_dec DECIMAL(10,2), c_num NUMERIC, c_bool BOOLEAN,
    c_date DATE, c_datetime DATETIME, c_ts TIMESTAMP, c_time TIME, c_json JSON,
    c_none, c_req TEXT NOT NULL DEFAULT 'req'
);
INSERT INTO everything VALUES
  (1, 42, 9223372036854775807, 1.5, -2.5e-300, 'h' || char(233) || 'llo', 'abc', x'00ff10',
   12345678.90, 3.25, 1, '2024-02-29', '2024-01-31 10:20:30.123456', '2024-01-31T10:20:30.5+02:00',
   '23:59:59.999', '{"a": [1, 2]}', 'anything', 'r');
INSERT INTO everything (id) VALUES (2);
-- Values of other storage classes than the declared type (SQLite is dynamic).
INSERT INTO everything VALUES
  (3, '17', ' 18 ', '2.5', 7, 99, 3.5, 'text as blob', '0.125', '7', 'true', 1706696430, 2460340.5, 0,
   '2024-01-31 10:20:30', 'not json', x'ff', 'r3'),
  (4, 'abc', 4.0, 'x', NULL, NULL, NULL, NULL, 'zz', NULL, 'maybe', 'not a date', '2024-13-01', 'garbage',
   '25:61', 12.5, NULL, 'r4');

CREATE TABLE parent (a INTEGER, b TEXT, name TEXT NOT NULL, PRIMARY KEY (b, a));
INSERT INTO parent VALUES (1, 'x', 'one'), (2, 'x', 'two'), (1, 'y', 'three');
CREATE TABLE child (
    id INTEGER PRIMARY KEY, pa INTEGER, pb TEXT, note TEXT,
    FOREIGN KEY (pb, pa) REFERENCES parent (b, a)
);
INSERT INTO child VALUES (1, 1, 'x', 'n1'), (2, 2, 'x', NULL), (3, 1, 'y', 'n3'), (4, NULL, NULL, 'orphan');
CREATE TABLE implicit_ref (id INTEGER PRIMARY KEY, child_id INTEGER REFERENCES child);
CREATE VIEW a_view AS SELECT 1;
CREATE INDEX child_note ON child (note);
"#;

#[tokio::test]
async fn sqlite_introspect_and_load_every_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("source.db");
    {
        let c = rusqlite::Connection::open(&path).expect("create");
        c.execute_batch(SETUP).expect("setup");
    }
    let p = SourceParams::sqlite_file(&path);

    let report = refract_sources::test_connection(&p, Duration::from_secs(5)).await;
    assert!(report.ok, "{:?}", report.error);
    assert_eq!(
        report.available_schemas.as_deref(),
        Some(&["main".to_string()][..])
    );
    assert!(report.estimated_size_gb.is_some_and(|g| g > 0.0));

    let schema = refract_sources::introspect(&p).await.expect("introspect");
    assert_eq!(schema.backend, Backend::Sqlite);
    assert_eq!(schema.database, "main");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["child", "everything", "implicit_ref", "parent"]);
    let every = table(&schema, "everything");
    let text = ColumnType::Text {
        case_insensitive: false,
    };
    let expected = [
        ("id", ColumnType::Int),
        ("c_int", ColumnType::Int),
        ("c_bigint", ColumnType::Int),
        ("c_real", ColumnType::Float),
        ("c_double", ColumnType::Float),
        ("c_text", text),
        ("c_varchar", text),
        ("c_blob", ColumnType::Bytes),
        ("c_dec", ColumnType::Decimal { scale: 2 }),
        ("c_num", ColumnType::Float),
        ("c_bool", ColumnType::Bool),
        ("c_date", ColumnType::Date),
        ("c_datetime", ColumnType::DateTime),
        ("c_ts", ColumnType::DateTime),
        ("c_time", ColumnType::Time),
        ("c_json", ColumnType::Json),
        ("c_none", text),
        ("c_req", text),
    ];
    let got = column_types(every);
    assert_eq!(got, expected);
    assert!(
        !every.columns[0].nullable,
        "INTEGER PRIMARY KEY is the rowid"
    );
    assert!(every.columns[1].nullable && !every.columns[17].nullable);
    assert_eq!(every.columns[8].source_type, "DECIMAL(10,2)");
    assert_eq!(every.primary_key, ["id"]);
    assert!(every.estimated_bytes.is_some_and(|b| b > 0));
    let parent = table(&schema, "parent");
    assert_eq!(parent.primary_key, ["b", "a"]);
    let child = table(&schema, "child");
    assert_eq!(child.foreign_keys.len(), 1);
    let fk = &child.foreign_keys[0];
    assert_eq!(fk.columns, ["pb", "pa"]);
    assert_eq!(fk.referenced_table, "parent");
    assert_eq!(fk.referenced_columns, ["b", "a"]);
    assert_eq!(fk.name, "child_pb_pa_fkey");
    let implicit = table(&schema, "implicit_ref");
    assert_eq!(
        implicit.foreign_keys[0].referenced_columns,
        ["id"],
        "REFERENCES child → its primary key"
    );

    let m = manifest(
        &schema,
        None,
        &[pick("everything"), pick("parent"), child_subset()],
    );
    let (sinks, pos) = load(&p, &m, 4).await.expect("load");
    assert_eq!(pos, SourcePosition::None);
    let rows = rows_of(&sinks, "everything");
    let by_id = |id: i64| row_with_id(&rows, id);
    assert_eq!(
        by_id(1),
        vec![
            V::Int(1),
            V::Int(42),
            V::Int(i64::MAX),
            V::Float(1.5),
            V::Float(-2.5e-300),
            t("h\u{e9}llo"),
            t("abc"),
            V::Bytes(vec![0, 0xff, 0x10]),
            V::Dec(1_234_567_890),
            V::Float(3.25),
            V::Bool(true),
            V::Date(days(2024, 2, 29)),
            V::DateTime(micros(2024, 1, 31, 10, 20, 30, 123_456)),
            V::DateTime(micros(2024, 1, 31, 8, 20, 30, 500_000)),
            V::Time(tod(23, 59, 59, 999_000)),
            j(r#"{"a": [1, 2]}"#),
            t("anything"),
            t("r"),
        ]
    );
    let mut nulls = vec![V::Null; 18];
    nulls[0] = V::Int(2);
    nulls[17] = t("req");
    assert_eq!(by_id(2), nulls);
    assert_eq!(
        by_id(3),
        vec![
            V::Int(3),
            V::Int(17),
            V::Int(18),
            V::Float(2.5),
            V::Float(7.0),
            t("99"),
            t("3.5"),
            V::Bytes(b"text as blob".to_vec()),
            V::Dec(13), // '0.125' → 0.13 (half away from zero)
            V::Float(7.0),
            V::Bool(true),
            V::Date(days(2024, 1, 31)), // Unix seconds 1706696430 = 2024-01-31T10:20:30Z
            V::DateTime(micros(2024, 1, 31, 0, 0, 0, 0)), // Julian day 2460340.5
            V::DateTime(0),
            V::Time(tod(10, 20, 30, 0)),
            V::Null, // 'not json'
            V::Null, // x'ff' is not UTF-8 text
            t("r3"),
        ]
    );
    let r4 = by_id(4);
    assert_eq!(r4[1], V::Null, "'abc' in an INTEGER column");
    assert_eq!(r4[2], V::Int(4), "4.0 is an integer");
    assert_eq!(r4[3], V::Null);
    assert_eq!(r4[8], V::Null);
    assert_eq!(r4[10], V::Null, "'maybe' is no boolean");
    assert_eq!(r4[11], V::Null);
    assert_eq!(r4[12], V::Null);
    assert_eq!(r4[13], V::Null);
    assert_eq!(r4[14], V::Null);
    assert_eq!(r4[15], j("12.5"));

    assert_parent_child_rows(&sinks);

    // The file was opened read-only: nothing was written.
    let c = rusqlite::Connection::open(&path).expect("reopen");
    let n: i64 = c
        .query_row("SELECT count(*) FROM everything", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 4);
}

#[tokio::test]
async fn sqlite_missing_or_bad_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.db");
    let (err, _) =
        failed_connection_test(&SourceParams::sqlite_file(&missing), Duration::from_secs(5)).await;
    assert!(err.contains("missing.db"), "{err}");
    assert!(!missing.exists(), "a check must not create the file");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("write");
    let (err, _) =
        failed_connection_test(&SourceParams::sqlite_file(&junk), Duration::from_secs(5)).await;
    assert!(err.contains("not a database"), "{err}");
}
