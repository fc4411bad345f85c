//! The small hand-built "blog" snapshot the query tests and the query fuzz target run on:
//! users 1–4, posts 10–13, comments 100–103, and a table with one column of every type.
//! Not an API: hidden from the docs.
#![allow(missing_docs)]

use std::sync::Arc;

use refract_schema::{
    Backend, ColumnManifest, ColumnType, Manifest, Relation, RelationKind, RowSink, TableManifest,
    ValueRef,
};
use refract_storage::{Snapshot, TableBuilder};

pub const TEXT: ColumnType = ColumnType::Text {
    case_insensitive: false,
};
pub const TEXT_CI: ColumnType = ColumnType::Text {
    case_insensitive: true,
};

pub fn col(name: &str, ty: ColumnType) -> ColumnManifest {
    ColumnManifest {
        source_name: name.into(),
        api_name: name.into(),
        ty,
        source_type: ty.name().into(),
        nullable: true,
        note: None,
    }
}

pub fn rel(name: &str, kind: RelationKind, target: &str, local: usize, remote: usize) -> Relation {
    Relation {
        name: name.into(),
        kind,
        target_table: target.into(),
        local_columns: vec![local],
        target_columns: vec![remote],
    }
}

pub fn table(name: &str, columns: Vec<ColumnManifest>, relations: Vec<Relation>) -> TableManifest {
    TableManifest {
        source_name: name.into(),
        api_name: name.into(),
        columns,
        primary_key: vec![0],
        where_sql: None,
        relations,
        estimated_bytes: None,
    }
}

/// users 1–4, posts 10–13 (`author` = `user_id`), comments 100–103, and `kinds` with one
/// column of every type.
pub fn manifest() -> Manifest {
    use RelationKind::{Forward, Reverse};
    let users = table(
        "users",
        vec![
            col("id", ColumnType::Int),
            col("name", TEXT),
            col("email", TEXT_CI),
            col("plan", TEXT),
            col("verified", ColumnType::Bool),
            col("score", ColumnType::Int),
            col("balance", ColumnType::Decimal { scale: 2 }),
        ],
        vec![
            rel("posts", Reverse, "posts", 0, 1),
            rel("comments", Reverse, "comments", 0, 2),
        ],
    );
    let posts = table(
        "posts",
        vec![
            col("id", ColumnType::Int),
            col("user_id", ColumnType::Int),
            col("title", TEXT),
            col("published", ColumnType::Bool),
            col("views", ColumnType::Int),
        ],
        vec![
            rel("author", Forward, "users", 1, 0),
            rel("comments", Reverse, "comments", 0, 1),
        ],
    );
    let comments = table(
        "comments",
        vec![
            col("id", ColumnType::Int),
            col("post_id", ColumnType::Int),
            col("user_id", ColumnType::Int),
            col("body", TEXT),
            col("approved", ColumnType::Bool),
        ],
        vec![
            rel("post", Forward, "posts", 1, 0),
            rel("user", Forward, "users", 2, 0),
        ],
    );
    let kinds = table(
        "kinds",
        vec![
            col("id", ColumnType::Int),
            col("b", ColumnType::Bool),
            col("f", ColumnType::Float),
            col("d", ColumnType::Decimal { scale: 3 }),
            col("t", TEXT),
            col("ci", TEXT_CI),
            col("by", ColumnType::Bytes),
            col("da", ColumnType::Date),
            col("ti", ColumnType::Time),
            col("dt", ColumnType::DateTime),
            col("ts", ColumnType::Timestamp),
            col("j", ColumnType::Json),
            col("big", ColumnType::Int),
        ],
        vec![],
    );
    Manifest {
        warnings: Vec::new(),
        version: refract_schema::MANIFEST_VERSION,
        backend: Backend::Mysql,
        database: "blog".into(),
        pg_schema: None,
        tables: vec![users, posts, comments, kinds],
    }
}

pub fn build(m: &TableManifest, rows: Vec<Vec<ValueRef<'_>>>) -> Arc<refract_storage::Table> {
    let mut b = TableBuilder::new(Arc::new(m.clone()));
    for row in rows {
        for (i, v) in row.into_iter().enumerate() {
            b.push(i, v);
        }
        assert!(b.end_row(), "the sample rows fit their columns");
    }
    Arc::new(b.finish())
}

pub fn snapshot() -> Snapshot {
    use ValueRef::{Bool as B, Decimal as D, Int as I, Null as N, Text as T};
    let m = manifest();
    // Loaded out of primary-key order on purpose.
    let users = build(
        &m.tables[0],
        vec![
            vec![
                I(3),
                T("Carol"),
                T("carol@x.org"),
                T("free"),
                B(true),
                I(5),
                D(-150),
            ],
            vec![
                I(1),
                T("Alice"),
                T("alice@example.com"),
                T("pro"),
                B(true),
                I(10),
                D(123_456),
            ],
            vec![I(2), T("bob"), N, T("free"), B(false), N, D(0)],
            vec![
                I(4),
                T("Dave"),
                T("dave@x.org "),
                T("teams"),
                B(false),
                I(-3),
                N,
            ],
        ],
    );
    let posts = build(
        &m.tables[1],
        vec![
            vec![I(10), I(1), T("Hello world"), B(true), I(100)],
            vec![I(11), I(1), T("Draft"), B(false), N],
            vec![I(12), I(3), T("Rust"), B(true), I(5)],
            vec![I(13), I(2), T("SQL"), B(false), I(7)],
        ],
    );
    let comments = build(
        &m.tables[2],
        vec![
            vec![I(100), I(10), I(2), T("Nice"), B(true)],
            vec![I(101), I(10), N, T("Spam"), B(false)],
            vec![I(102), I(12), I(1), T("Great"), N],
            vec![I(103), I(13), I(3), T("Meh"), B(false)],
        ],
    );
    let kinds = build(
        &m.tables[3],
        vec![
            vec![
                I(1),
                B(true),
                ValueRef::Float(1.5),
                D(-12_345),
                T("line\n\"quoted\" \\ tab\t\u{1}"),
                T("Zoë"),
                ValueRef::Bytes(b"\x00\xffhi"),
                ValueRef::Date(19_723),
                ValueRef::Time(-3_020_399_000_001),
                ValueRef::DateTime(1_704_067_200_000_001),
                ValueRef::Timestamp(1_704_067_200_000_000),
                ValueRef::Json(r#"{"a":[1,2,{"b":null}]}"#),
                I(1 << 60),
            ],
            vec![
                I(2),
                N,
                ValueRef::Float(f64::INFINITY),
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                I(-7),
            ],
        ],
    );
    Snapshot::new(Arc::new(m), vec![users, posts, comments, kinds])
}

/// The query fuzz target: `data` as a query against [`snapshot`], run within 1 MiB and 1 s.
/// Errors are fine; a panic or a hang is a bug.
pub fn fuzz_query(data: &[u8]) {
    thread_local! {
        static SNAPSHOT: Snapshot = snapshot();
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = crate::RunLimits {
        max_bytes: 1 << 20,
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(1)),
        flush_bytes: 64 * 1024,
    };
    let options = crate::QueryOptions::default();
    SNAPSHOT.with(|s| {
        let _ = crate::explain(s, text, &options);
        let _ = crate::run(s, text, &options, &limits, &mut ());
    });
}
