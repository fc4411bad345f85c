//! `ORDER BY` the primary key ascending streams in primary-key order: same output as sorting.

use std::sync::Arc;

use refract_schema::{
    Backend, ColumnManifest, ColumnType, Manifest, Relation, RelationKind, RowSink, TableManifest,
    Value as V, ValueRef,
};
use refract_storage::{ChangeBatch, Snapshot, TableBuilder};
use serde_json::Value;

use crate::exec::{FORCE_SORT, NO_COLUMN_ORDER};
use crate::{execute, explain, QueryOptions};

const TEXT: ColumnType = ColumnType::Text {
    case_insensitive: false,
};
const TEXT_CI: ColumnType = ColumnType::Text {
    case_insensitive: true,
};

fn col(name: &str, ty: ColumnType, nullable: bool) -> ColumnManifest {
    ColumnManifest {
        source_name: name.into(),
        api_name: name.into(),
        ty,
        source_type: ty.name().into(),
        nullable,
        note: None,
    }
}

fn table(
    name: &str,
    columns: Vec<ColumnManifest>,
    pk: Vec<usize>,
    rels: Vec<Relation>,
) -> TableManifest {
    TableManifest {
        source_name: name.into(),
        api_name: name.into(),
        columns,
        primary_key: pk,
        where_sql: None,
        relations: rels,
        estimated_bytes: None,
    }
}

fn rel(
    name: &str,
    kind: RelationKind,
    target: &str,
    local: Vec<usize>,
    remote: Vec<usize>,
) -> Relation {
    Relation {
        name: name.into(),
        kind,
        target_table: target.into(),
        local_columns: local,
        target_columns: remote,
    }
}

/// `items` (PK `name` text, `n` int), `parts` (PK `id`; FK (`item_name`, `item_n`)), `events`
/// (PK date, timestamp, decimal, time, datetime), `ci` (case-insensitive text PK), `nk`
/// (nullable int PK holding NULLs).
fn manifest() -> Manifest {
    use RelationKind::{Forward, Reverse};
    Manifest {
        warnings: Vec::new(),
        version: refract_schema::MANIFEST_VERSION,
        backend: Backend::Mysql,
        database: "t".into(),
        pg_schema: None,
        tables: vec![
            table(
                "items",
                vec![
                    col("name", TEXT, false),
                    col("n", ColumnType::Int, false),
                    col("v", ColumnType::Int, true),
                ],
                vec![0, 1],
                vec![rel("parts", Reverse, "parts", vec![0, 1], vec![1, 2])],
            ),
            table(
                "parts",
                vec![
                    col("id", ColumnType::Int, false),
                    col("item_name", TEXT, true),
                    col("item_n", ColumnType::Int, true),
                    col("w", ColumnType::Int, true),
                ],
                vec![0],
                vec![rel("item", Forward, "items", vec![1, 2], vec![0, 1])],
            ),
            table(
                "events",
                vec![
                    col("day", ColumnType::Date, false),
                    col("at", ColumnType::Timestamp, false),
                    col("amount", ColumnType::Decimal { scale: 2 }, false),
                    col("t", ColumnType::Time, false),
                    col("dt", ColumnType::DateTime, false),
                    col("v", ColumnType::Int, true),
                ],
                vec![0, 1, 2, 3, 4],
                vec![],
            ),
            table(
                "ci",
                vec![col("k", TEXT_CI, false), col("v", ColumnType::Int, true)],
                vec![0],
                vec![],
            ),
            table(
                "nk",
                vec![
                    col("k", ColumnType::Int, true),
                    col("v", ColumnType::Int, true),
                ],
                vec![0],
                vec![],
            ),
        ],
    }
}

const NAMES: [&str; 8] = ["b", "B", "a", "é", "e", "Z", "ab", "a b"];

fn snapshot() -> Snapshot {
    use ValueRef::{Decimal as D, Int as I, Null as N, Text as T};
    let m = manifest();
    let build = |t: usize, rows: Vec<Vec<ValueRef<'_>>>| {
        let mut b = TableBuilder::new(Arc::new(m.tables[t].clone()));
        // Loaded in reverse, away from primary-key order.
        for row in rows.into_iter().rev() {
            for (i, v) in row.into_iter().enumerate() {
                b.push(i, v);
            }
            assert!(b.end_row());
        }
        Arc::new(b.finish())
    };
    let mut items = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        for n in [3i64, -1, 2] {
            let v = (i as i64 * 7 + n) % 5;
            items.push(vec![T(name), I(n), if v == 0 { N } else { I(v) }]);
        }
    }
    let mut parts = Vec::new();
    for id in 0..60i64 {
        let name = NAMES[(id * 5 % 8) as usize];
        parts.push(vec![
            I(id * 3 % 61),
            T(name),
            I([3, -1, 2][(id % 3) as usize]),
            I(id % 4),
        ]);
    }
    let mut events = Vec::new();
    for i in 0..40i64 {
        events.push(vec![
            ValueRef::Date((i % 3) as i32 - 1),
            ValueRef::Timestamp((i * 7 % 5) - 2),
            D(((i * 11) % 4) as i128 - 2),
            ValueRef::Time(i % 2),
            ValueRef::DateTime(-i),
            I(i % 3),
        ]);
    }
    let ci = ["a", "B", "b ", "A ", "c", "É"]
        .iter()
        .enumerate()
        .map(|(i, k)| vec![T(k), I(i as i64)])
        .collect();
    let nk = vec![
        vec![I(3), I(1)],
        vec![N, I(2)],
        vec![I(-1), I(3)],
        vec![N, I(4)],
        vec![I(7), I(5)],
    ];
    Snapshot::new(
        Arc::new(m.clone()),
        vec![
            build(0, items),
            build(1, parts),
            build(2, events),
            build(3, ci),
            build(4, nk),
        ],
    )
}

/// The snapshot after a change batch: tombstones and appended rows, so row ids are no longer in
/// primary-key order.
fn changed(s: &Snapshot) -> Snapshot {
    let mut tables = s.tables.clone();
    let mut b = ChangeBatch::new();
    b.delete(vec![V::Text("a".into()), V::Int(2)]);
    b.upsert(vec![V::Text("aa".into()), V::Int(0), V::Int(4)]);
    b.upsert(vec![V::Text("A".into()), V::Int(9), V::Int(1)]);
    b.upsert(vec![V::Text("b".into()), V::Int(3), V::Int(2)]);
    tables[0] = Arc::new(tables[0].apply(&b));
    let mut b = ChangeBatch::new();
    for id in [0i64, 5, 30] {
        b.delete(vec![V::Int(id)]);
    }
    b.upsert(vec![V::Int(-5), V::Text("aa".into()), V::Int(0), V::Int(1)]);
    b.upsert(vec![V::Int(100), V::Text("b".into()), V::Int(3), V::Int(1)]);
    tables[1] = Arc::new(tables[1].apply(&b));
    Snapshot::new(s.manifest.clone(), tables)
}

fn run(s: &Snapshot, q: &str, default_limit: usize, force_sort: bool) -> (String, usize, bool) {
    FORCE_SORT.with(|f| f.set(force_sort));
    let options = QueryOptions {
        default_limit,
        ..QueryOptions::default()
    };
    let out = execute(s, q, &options);
    FORCE_SORT.with(|f| f.set(false));
    let out = out.unwrap_or_else(|e| panic!("{q}: {e}"));
    (
        String::from_utf8(out.body).unwrap(),
        out.rows,
        out.truncated,
    )
}

/// The top-level `sort` of the plan (`None` without `ORDER BY`).
fn sort(s: &Snapshot, q: &str) -> Option<String> {
    let p = explain(s, q, &QueryOptions::default()).unwrap_or_else(|e| panic!("{q}: {e}"));
    p["sort"].as_str().map(str::to_string)
}

const FAST: &str = "none (primary-key order)";
const SORTED: &str = "all matches";
const WALKED: &str = "first rows in the order of";

/// (query, whether the top level takes the primary-key path).
const QUERIES: &[(&str, bool)] = &[
    ("items(ORDER BY name, n) { name n v }", true),
    (
        "items(ORDER BY name ASC NULLS LAST, n ASC NULLS FIRST) { name n }",
        true,
    ),
    (
        "items(v > 1 ORDER BY name, n LIMIT 4 OFFSET 3) { name n v }",
        true,
    ),
    ("items(v IS NULL ORDER BY name, n LIMIT 0) { name }", true),
    (
        "items(name IN (\"b\", \"a\", \"é\") ORDER BY name, n) { name n }",
        true,
    ),
    (
        "items(name = \"b\" AND n IN (3, -1, 8) ORDER BY name, n) { name n }",
        true,
    ),
    ("items(n = 2 ORDER BY name, n OFFSET 2) { name n }", true),
    (
        "items(ORDER BY name, n LIMIT 5) { name n parts(ORDER BY id LIMIT 2 OFFSET 1) { id w } }",
        true,
    ),
    (
        "items(ORDER BY name, n) { name n parts(w > 0 ORDER BY id) { id } }",
        true,
    ),
    (
        "items(ORDER BY name, n) { name n parts(w > 0 ORDER BY id LIMIT 1) { id } }",
        true,
    ),
    ("items(ORDER BY n, name) { name n }", false),
    ("items(ORDER BY name) { name n }", false),
    ("items(ORDER BY name DESC, n) { name n }", false),
    ("items(ORDER BY name, n DESC) { name n }", false),
    ("items(ORDER BY name, n, v) { name n }", false),
    ("parts(ORDER BY id) { id item { name n } }", true),
    ("parts(item_name = \"a\" ORDER BY id) { id w }", true),
    ("parts(w = 1 ORDER BY id LIMIT 3 OFFSET 2) { id }", true),
    ("parts(item.v > 2 ORDER BY id LIMIT 3) { id }", true),
    ("parts(ORDER BY id DESC LIMIT 3) { id }", false),
    ("parts(id >= 20 ORDER BY id LIMIT 3) { id w }", true),
    ("parts(id > 28 AND w = 1 ORDER BY id) { id }", true),
    ("parts(id >= 3 ORDER BY w, id LIMIT 4) { id w }", false),
    ("parts(ORDER BY item.name) { id }", false),
    (
        "items(ORDER BY name, n) { name parts(ORDER BY w, id DESC LIMIT 2) { id } }",
        true,
    ),
    (
        "parts(w > 0 ORDER BY id) { id item(ORDER BY name) { name } }",
        true,
    ),
    (
        "events(ORDER BY day, at, amount, t, dt) { day at amount t dt v }",
        true,
    ),
    (
        "events(v = 1 ORDER BY day, at, amount, t, dt LIMIT 4) { day at amount t dt }",
        true,
    ),
    (
        "events(ORDER BY day, at, amount, t) { day at amount t dt }",
        false,
    ),
    ("ci(ORDER BY k) { k v }", false),
    ("nk(ORDER BY k) { k v }", false),
    ("nk(ORDER BY k NULLS FIRST) { k v }", true),
    ("nk(v > 1 ORDER BY k NULLS FIRST LIMIT 2) { k v }", true),
];

#[test]
fn pk_order_streams_like_the_sort() {
    let base = snapshot();
    let after = changed(&base);
    for s in [&base, &after] {
        for &(q, fast) in QUERIES {
            let how = sort(s, q);
            if fast {
                assert_eq!(how.as_deref(), Some(FAST), "{q}");
            } else {
                assert!(
                    how.as_deref() == Some(SORTED)
                        || how.as_deref().is_some_and(|h| h.starts_with(WALKED)),
                    "{q}: {how:?}"
                );
            }
            for default_limit in [10_000, 3, 1] {
                let streamed = run(s, q, default_limit, false);
                let sorted = run(s, q, default_limit, true);
                assert_eq!(streamed, sorted, "{q} (default limit {default_limit})");
            }
        }
    }
    // Nested selections report their own sort.
    let p = explain(
        &base,
        "items { parts(ORDER BY id) { id } }",
        &QueryOptions::default(),
    )
    .unwrap();
    assert_eq!(p["sort"], Value::Null);
    assert_eq!(p["children"][0]["sort"], FAST);
}

/// `ORDER BY` a column with a small `LIMIT` walks the column's order; the rows must be those
/// sorting every match gives, ties, NULLs, case-insensitive text and changes included.
#[test]
fn column_order_walk_matches_the_sort() {
    let base = snapshot();
    let after = changed(&base);
    let queries = [
        "items(ORDER BY n LIMIT 3) { name n v }",
        "items(ORDER BY n DESC LIMIT 3) { name n v }",
        "items(ORDER BY n DESC, name DESC LIMIT 4 OFFSET 1) { name n }",
        "items(v > 1 ORDER BY v LIMIT 2) { name n v }",
        "items(ORDER BY v NULLS FIRST LIMIT 3) { name n v }",
        "items(ORDER BY v DESC NULLS FIRST LIMIT 5) { name n v }",
        "items(ORDER BY v DESC LIMIT 5) { name n v }",
        "items(v IS NULL ORDER BY v LIMIT 2) { name n }",
        "items(ORDER BY v LIMIT 0) { name }",
        "items(name = \"zz\" ORDER BY v LIMIT 2) { name }",
        "items(ORDER BY name DESC LIMIT 3) { name n parts(ORDER BY w LIMIT 1) { id } }",
        "parts(ORDER BY w DESC, id LIMIT 2) { id w }",
        "parts(ORDER BY item_name LIMIT 3) { id item_name }",
        "ci(ORDER BY k LIMIT 1) { k v }",
        "ci(ORDER BY k DESC LIMIT 1) { k v }",
        "ci(ORDER BY v DESC LIMIT 1) { k v }",
        "events(ORDER BY at DESC LIMIT 3) { at v }",
        "events(v = 1 ORDER BY amount, day DESC LIMIT 4) { day amount }",
        "events(ORDER BY dt LIMIT 5 OFFSET 2) { dt }",
    ];
    let mut walked = 0;
    for s in [&base, &after] {
        for q in queries {
            if sort(s, q).is_some_and(|h| h.starts_with(WALKED)) {
                walked += 1;
            }
            let with_walk = run(s, q, 10_000, false);
            NO_COLUMN_ORDER.with(|f| f.set(true));
            let sorted = run(s, q, 10_000, false);
            NO_COLUMN_ORDER.with(|f| f.set(false));
            assert_eq!(with_walk, sorted, "{q}");
        }
    }
    assert!(walked >= 30, "only {walked} queries walked a column order");
    // The order is built once per table version and reported by `explain`.
    let q = "items(ORDER BY n LIMIT 2) { name }";
    let how = sort(&base, q).unwrap();
    assert!(how.ends_with("(built already)"), "{how}");
    assert!(sort(&after, "items(ORDER BY v LIMIT 2) { name }")
        .unwrap()
        .ends_with("(built already)"));
}

#[test]
fn pk_order_is_storage_order() {
    // Byte order of case-sensitive text: "B" < "Z" < "a" < "a b" < "ab" < "b" < "e" < "é".
    let s = snapshot();
    let (body, rows, truncated) = run(&s, "items(n = 3 ORDER BY name, n) { name }", 10_000, false);
    let names: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["B", "Z", "a", "a b", "ab", "b", "e", "é"]);
    assert_eq!((rows, truncated), (8, false));
    let (_, rows, truncated) = run(&s, "items(ORDER BY name, n) { name }", 5, false);
    assert_eq!((rows, truncated), (5, true));
    let (_, rows, truncated) = run(&s, "items(ORDER BY name, n) { name }", 24, false);
    assert_eq!((rows, truncated), (24, false));
}

/// `cargo test --release -p refract-query time_pk -- --ignored --nocapture`
#[test]
#[ignore]
fn time_pk_order() {
    let m = Manifest {
        tables: vec![table(
            "posts",
            vec![
                col("id", ColumnType::Int, false),
                col("published", ColumnType::Bool, true),
                col("title", TEXT, true),
            ],
            vec![0],
            vec![],
        )],
        ..manifest()
    };
    let mut b = TableBuilder::new(Arc::new(m.tables[0].clone()));
    let n = 1_000_000i64;
    for id in 0..n {
        b.push(0, ValueRef::Int(id));
        b.push(1, ValueRef::Bool(id % 3 != 0));
        b.push(2, ValueRef::Text("title"));
        assert!(b.end_row());
    }
    let s = Snapshot::new(Arc::new(m), vec![Arc::new(b.finish())]);
    let q = "posts(published = true ORDER BY id LIMIT 50) { id title }";
    for force in [false, true] {
        let start = std::time::Instant::now();
        let iters = 20;
        let mut body = String::new();
        for _ in 0..iters {
            body = run(&s, q, 10_000, force).0;
        }
        println!(
            "{} rows, force_sort={force}: {:?} per query ({} bytes)",
            n,
            start.elapsed() / iters,
            body.len()
        );
    }
}
