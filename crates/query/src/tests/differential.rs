//! Differential test: generated queries against the same data in SQLite (case-sensitive `LIKE`,
//! binary collation), compared row for row. Covers three-valued logic, relation filters at two
//! levels, ordering with NULLs, limits, offsets and includes with their own filter, order and
//! limit per parent row.

use std::sync::Arc;

use refract_schema::{
    Backend, ColumnManifest, ColumnType, Manifest, Relation, RelationKind, RowSink, TableManifest,
};
use refract_storage::{Snapshot, TableBuilder};
use serde_json::{json, Value};

use crate::exec::SEMI_JOIN;
use crate::testgen::{
    assert_all_match, columns, dataset, expected_json, generate, insert_sql, relations, Case,
    Dialect, Ty, TABLES,
};
use crate::{execute, QueryOptions};

const QUERIES: usize = 1500;

fn manifest() -> Manifest {
    let tables = TABLES
        .iter()
        .map(|&name| {
            let cols = columns(name);
            let column_manifests = cols
                .iter()
                .map(|c| ColumnManifest {
                    source_name: c.name.into(),
                    api_name: c.name.into(),
                    ty: match c.ty {
                        Ty::Int => ColumnType::Int,
                        Ty::Text => ColumnType::Text {
                            case_insensitive: false,
                        },
                        Ty::Bool => ColumnType::Bool,
                    },
                    source_type: String::new(),
                    // Primary keys are NOT NULL, as sources report them.
                    nullable: c.name != "id",
                    note: None,
                })
                .collect();
            let idx =
                |table: &str, col: &str| columns(table).iter().position(|c| c.name == col).unwrap();
            let relations = relations(name)
                .iter()
                .map(|r| Relation {
                    name: r.name.into(),
                    kind: if r.to_many {
                        RelationKind::Reverse
                    } else {
                        RelationKind::Forward
                    },
                    target_table: r.target.into(),
                    local_columns: vec![idx(name, r.local)],
                    target_columns: vec![idx(r.target, r.remote)],
                })
                .collect();
            TableManifest {
                source_name: name.into(),
                api_name: name.into(),
                columns: column_manifests,
                primary_key: vec![0],
                where_sql: None,
                relations,
                estimated_bytes: None,
            }
        })
        .collect();
    Manifest {
        warnings: Vec::new(),
        version: refract_schema::MANIFEST_VERSION,
        backend: Backend::Sqlite,
        database: "main".into(),
        pg_schema: None,
        tables,
    }
}

fn pairs(db: &rusqlite::Connection, sql: &str) -> Vec<(i64, Option<i64>)> {
    let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.map(|r| r.expect("row")).collect()
}

fn expected(db: &rusqlite::Connection, case: &Case) -> Value {
    let children = match &case.include {
        Some((_, _, sql)) => pairs(db, sql),
        None => Vec::new(),
    };
    expected_json(case, &pairs(db, &case.top_sql), &children)
}

#[test]
fn generated_queries_match_sqlite() {
    let data = dataset();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("PRAGMA case_sensitive_like = ON").unwrap();
    let m = manifest();
    let mut tables = Vec::new();
    for ((name, rows), tm) in data.iter().zip(&m.tables) {
        let cols: Vec<&str> = columns(name).iter().map(|c| c.name).collect();
        db.execute_batch(&format!("CREATE TABLE {name} ({})", cols.join(", ")))
            .unwrap();
        db.execute_batch(&insert_sql(Dialect::Sqlite, name, rows))
            .unwrap();
        // Loaded in reverse to check that results do not depend on load order.
        let mut b = TableBuilder::new(Arc::new(tm.clone()));
        for r in rows.iter().rev() {
            for (i, c) in r.iter().enumerate() {
                b.push(i, c.value());
            }
            assert!(b.end_row());
        }
        tables.push(Arc::new(b.finish()));
    }
    // The comments' bodies are stored compressed, so every generated query that filters, sorts
    // or returns them reads compressed text.
    assert!(tables[2].is_compressed(3), "comments.body is compressed");
    let m = Arc::new(m);
    let options = QueryOptions::default();
    let cases = generate(Dialect::Sqlite, 42, QUERIES);
    let mut failures = Vec::new();
    let mut semi_joined = 0;
    // Relation filters by nested loop only, by semi-join wherever possible, and as chosen in
    // production (the work counted across the run's queries makes some switch midway); each on
    // a fresh snapshot so that no row set carries over.
    for (mode, forced) in [
        ("nested loop", Some(false)),
        ("semi-join", Some(true)),
        ("chosen", None),
    ] {
        let snapshot = Snapshot::new(m.clone(), tables.clone());
        SEMI_JOIN.with(|f| f.set(forced));
        for case in &cases {
            let want = expected(&db, case);
            let got = match execute(&snapshot, &case.query, &options) {
                Ok(out) => serde_json::from_slice::<Value>(&out.body).expect("JSON"),
                Err(e) => json!({ "query_error": e.to_string() }),
            };
            if forced == Some(true) {
                let plan = crate::explain(&snapshot, &case.query, &options);
                if plan.is_ok_and(|p| p.to_string().contains("\"strategy\":\"semi_join\"")) {
                    semi_joined += 1;
                }
            }
            if got != want {
                failures.push(format!(
                    "[{mode}] query: {}\n  sql: {}\n  engine: {got}\n  sqlite: {want}",
                    case.query, case.top_sql
                ));
            }
        }
        SEMI_JOIN.with(|f| f.set(None));
    }
    // The generated relation filters do exercise the semi-join.
    assert!(
        semi_joined > QUERIES / 20,
        "only {semi_joined} queries used a semi-join"
    );
    assert_all_match(&failures, cases.len() * 3, "SQLite");
}
