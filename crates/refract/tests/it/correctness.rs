//! Query correctness against the real sources: the same small dataset is written to MariaDB,
//! PostgreSQL and SQLite, loaded by the engine's loader, and a few hundred generated queries are
//! answered both by the query engine and by equivalent SQL on the source. The results must be
//! equal, row for row.
//!
//! The dataset is built to exercise the hard parts: NULLs (three-valued logic), mixed case (MySQL
//! `_ci` collations), to-one and to-many relations at two levels, and rows without relatives.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refract_schema::Backend;
use refract_sources::SourceParams;
use refract_storage::Snapshot;
use serde_json::{json, Value};

use refract_query::testgen::{
    assert_all_match, dataset, expected_json, generate, insert_sql, Case, Dialect, WORDS,
};

use crate::common;

const QUERIES: usize = 300;

/// The dataset's tables (portable across the three sources).
const DDL: [&str; 3] = [
    "CREATE TABLE users (id INT NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL, email VARCHAR(100) NULL, \
     plan VARCHAR(10) NOT NULL, verified BOOLEAN NOT NULL, score INT NULL)",
    "CREATE TABLE posts (id INT NOT NULL PRIMARY KEY, user_id INT NOT NULL REFERENCES users(id), \
     title VARCHAR(100) NOT NULL, published BOOLEAN NOT NULL, views INT NULL)",
    "CREATE TABLE comments (id INT NOT NULL PRIMARY KEY, post_id INT NOT NULL REFERENCES posts(id), \
     user_id INT NULL REFERENCES users(id), body VARCHAR(200) NOT NULL, approved BOOLEAN NULL)",
];

enum Db {
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client),
    Sqlite(rusqlite::Connection),
}

impl Db {
    async fn exec(&mut self, sql: &str) {
        match self {
            Db::Mysql(c) => {
                use mysql_async::prelude::Queryable;
                c.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Db::Postgres(c) => c
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Db::Sqlite(c) => c
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Rows of two nullable integers.
    async fn pairs(&mut self, sql: &str) -> Vec<(i64, Option<i64>)> {
        match self {
            Db::Mysql(c) => {
                use mysql_async::prelude::Queryable;
                let rows: Vec<(i64, Option<i64>)> =
                    c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows
            }
            Db::Postgres(c) => {
                // The dataset's INT columns are int4 in PostgreSQL.
                let rows = c
                    .query(sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<_, i32>(0) as i64,
                            r.get::<_, Option<i32>>(1).map(i64::from),
                        )
                    })
                    .collect()
            }
            Db::Sqlite(c) => {
                let mut stmt = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let rows = stmt
                    .query_map([], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                    })
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.map(|r| r.expect("row")).collect()
            }
        }
    }
}

/// The expected JSON of a case, from SQL.
async fn expected(db: &mut Db, case: &Case) -> Value {
    let top = db.pairs(&case.top_sql).await;
    let children = match &case.include {
        Some((_, _, sql)) => db.pairs(sql).await,
        None => Vec::new(),
    };
    expected_json(case, &top, &children)
}

async fn load_snapshot(params: &SourceParams) -> Snapshot {
    let schema = refract_sources::introspect(params)
        .await
        .expect("introspect");
    let manifest = refract_schema::build_manifest(&schema, None).expect("manifest");
    let tables = refract_engine::load_tables_once(params, &manifest, 2)
        .await
        .expect("load");
    let tables = tables.into_iter().map(Arc::new).collect();
    Snapshot::new(Arc::new(manifest), tables)
}

async fn check_all(backend: Backend, db: &mut Db, params: SourceParams) {
    let dialect = match backend {
        Backend::Mysql => Dialect::Mysql,
        Backend::Postgres => Dialect::Postgres,
        _ => Dialect::Sqlite,
    };
    for stmt in DDL {
        db.exec(stmt).await;
    }
    for (table, rows) in dataset() {
        db.exec(&insert_sql(dialect, table, &rows)).await;
    }
    let snapshot = load_snapshot(&params).await;
    let options = refract_query::QueryOptions::default();
    let mut failures = Vec::new();
    let cases = generate(dialect, 42, QUERIES);
    for case in &cases {
        let want = expected(db, case).await;
        let got = match refract_query::execute(&snapshot, &case.query, &options) {
            Ok(out) => serde_json::from_slice::<Value>(&out.body).expect("engine returns JSON"),
            Err(e) => json!({ "query_error": e.to_string() }),
        };
        if got != want {
            failures.push(format!(
                "query: {}\n  sql: {}\n  engine: {got}\n  source: {want}",
                case.query, case.top_sql
            ));
        }
    }
    assert_all_match(&failures, cases.len(), &format!("{backend:?}"));
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand::random::<u32>())
}

/// A new empty database on the test PostgreSQL server, named after `prefix`, and a client of it.
struct PostgresScratch {
    /// Connected to `postgres`, to drop the database at the end.
    admin: tokio_postgres::Client,
    client: tokio_postgres::Client,
    params: SourceParams,
}

impl PostgresScratch {
    async fn create(prefix: &str) -> PostgresScratch {
        let server = common::postgres();
        let base = format!(
            "postgres://{}:{}@{}:{}",
            server.user, server.password, server.host, server.port
        );
        let db_name = unique_name(prefix);
        let (admin, conn) =
            tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect PostgreSQL");
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .unwrap();
        let (client, conn) =
            tokio_postgres::connect(&format!("{base}/{db_name}"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        PostgresScratch {
            admin,
            client,
            params: server.source_params(Backend::Postgres, Some(&db_name)),
        }
    }

    /// Drops the database (`FORCE`: the loader's sessions may still be closing).
    async fn drop_database(admin: tokio_postgres::Client, params: &SourceParams) {
        let db_name = params.database.as_deref().expect("a database");
        admin
            .batch_execute(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn engine_matches_mariadb_on_generated_queries() {
    use mysql_async::prelude::Queryable;
    let server = common::mysql();
    let url = format!(
        "mysql://{}:{}@{}:{}",
        server.user, server.password, server.host, server.port
    );
    let db_name = unique_name("correctness");
    let mut conn = mysql_async::Conn::from_url(url.as_str())
        .await
        .expect("connect MariaDB");
    conn.query_drop(format!(
        "CREATE DATABASE {db_name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("USE {db_name}")).await.unwrap();
    let mut db = Db::Mysql(conn);
    let params = server.source_params(Backend::Mysql, Some(&db_name));
    check_all(Backend::Mysql, &mut db, params).await;
    db.exec(&format!("DROP DATABASE {db_name}")).await;
}

#[tokio::test]
async fn engine_matches_postgres_on_generated_queries() {
    let PostgresScratch {
        admin,
        client,
        params,
    } = PostgresScratch::create("correctness").await;
    let mut db = Db::Postgres(client);
    check_all(Backend::Postgres, &mut db, params.clone()).await;
    drop(db);
    PostgresScratch::drop_database(admin, &params).await;
}

#[tokio::test]
async fn engine_matches_sqlite_on_generated_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("correctness.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    // SQLite's LIKE ignores ASCII case by default; the engine follows the column's collation
    // (BINARY here), so the reference must compare case-sensitively too.
    conn.execute_batch("PRAGMA case_sensitive_like = ON")
        .unwrap();
    let mut db = Db::Sqlite(conn);
    check_all(Backend::Sqlite, &mut db, SourceParams::sqlite_file(&path)).await;
}

/// Timestamps the way both sides can be compared: PostgreSQL's `to_jsonb` writes
/// `…59.5` and `+00:00`, the engine `…59.500000` and `Z`.
fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') => {
            let (s, z) = match s.strip_suffix("+00:00").or_else(|| s.strip_suffix('Z')) {
                Some(rest) => (rest.to_string(), "Z"),
                None => (s, ""),
            };
            let s = if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            };
            Value::String(format!("{s}{z}"))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// PostgreSQL arrays: every column of generated rows through `{ * }` and `IS [NOT] NULL`
/// filters (the only filters on arrays), against PostgreSQL's own `to_jsonb` of the array
/// (numeric elements as their text, the engine's exact form).
#[tokio::test]
async fn engine_arrays_match_postgres() {
    let PostgresScratch {
        admin,
        client,
        params,
    } = PostgresScratch::create("arrays").await;
    let columns = [
        ("i2", "int2"),
        ("i4", "int4"),
        ("i8", "int8"),
        ("f4", "float4"),
        ("f8", "float8"),
        ("nu", "numeric(8,2)"),
        ("bo", "bool"),
        ("tx", "text"),
        ("vc", "varchar(12)"),
        ("u", "uuid"),
        ("d", "date"),
        ("ts", "timestamp"),
        ("tz", "timestamptz"),
        ("jb", "jsonb"),
    ];
    let mut rng = StdRng::seed_from_u64(11);
    let element = |ty: &str, rng: &mut StdRng| -> String {
        if rng.gen_bool(0.15) {
            return "NULL".into();
        }
        let n: i64 = rng.gen_range(-1000..1000);
        match ty {
            "int2" | "int4" => n.to_string(),
            "int8" => (n * 1_000_000_007).to_string(),
            "float4" | "float8" => format!("{}.25", n),
            "numeric(8,2)" => format!("{}.{:02}", n, n.rem_euclid(100)),
            "bool" => (n % 2 == 0).to_string(),
            "text" | "varchar(12)" => {
                let w = WORDS[n.rem_euclid(WORDS.len() as i64) as usize];
                format!("'{w} \"{n}\", {{x}}'")
            }
            "uuid" => format!(
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd38{:04}'",
                n.rem_euclid(10000)
            ),
            "date" => format!("DATE '2024-01-01' + {n}"),
            "timestamp" => format!("TIMESTAMP '2024-01-01 00:00:00' + interval '{n}.5 hours'"),
            "timestamptz" => {
                format!("TIMESTAMPTZ '2024-01-01 00:00:00+03' + interval '{n} minutes'")
            }
            _ => format!("'{{\"k\": {n}, \"a\": [true, null]}}'"),
        }
    };
    let mut ddl = String::from("CREATE TABLE arrs (id int PRIMARY KEY");
    for (name, ty) in columns {
        ddl.push_str(&format!(", {name} {ty}[]"));
    }
    ddl.push_str(", m int4[][]);");
    client.batch_execute(&ddl).await.unwrap();
    for id in 1..=60 {
        let mut values = vec![id.to_string()];
        for (_, ty) in columns {
            values.push(match rng.gen_range(0..6) {
                0 => "NULL".into(),
                1 => format!("'{{}}'::{ty}[]"),
                k => {
                    let items: Vec<String> = (0..k).map(|_| element(ty, &mut rng)).collect();
                    format!("ARRAY[{}]::{ty}[]", items.join(", "))
                }
            });
        }
        values.push(if id % 3 == 0 {
            "NULL".into()
        } else {
            format!("'{{{{{id},NULL}},{{3,4}}}}'")
        });
        client
            .batch_execute(&format!("INSERT INTO arrs VALUES ({})", values.join(", ")))
            .await
            .unwrap();
    }
    let snapshot = load_snapshot(&params).await;
    let options = refract_query::QueryOptions::default();
    let mut json_cols: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            if ty.starts_with("numeric") {
                format!(
                    "'{name}', CASE WHEN {name} IS NOT NULL THEN (SELECT coalesce(jsonb_agg(x::text ORDER BY o), '[]') \
                     FROM unnest({name}) WITH ORDINALITY AS e(x, o)) END"
                )
            } else {
                format!("'{name}', to_jsonb({name})")
            }
        })
        .collect();
    json_cols.push("'m', to_jsonb(m)".into());
    let mut failures = Vec::new();
    let mut cases = vec![("arrs(ORDER BY id) { * }".to_string(), String::new())];
    for (name, _) in columns.iter().chain([("m", "")].iter()) {
        for not in ["", "NOT "] {
            cases.push((
                format!("arrs({name} IS {not}NULL ORDER BY id) {{ id {name} }}"),
                format!("WHERE {name} IS {not}NULL"),
            ));
        }
    }
    for (query, filter) in &cases {
        let got = match refract_query::execute(&snapshot, query, &options) {
            Ok(out) => serde_json::from_slice::<Value>(&out.body).expect("JSON"),
            Err(e) => json!({ "query_error": e.to_string() }),
        };
        let rows = client
            .query(
                &format!(
                    "SELECT jsonb_build_object('id', id, {})::text FROM arrs {filter} ORDER BY id",
                    json_cols.join(", ")
                ),
                &[],
            )
            .await
            .unwrap();
        let fields: Vec<&str> = query
            .split('{')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .filter(|f| *f != "}")
            .collect();
        let want: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v: Value = serde_json::from_str(r.get::<_, &str>(0)).unwrap();
                if fields != ["*"] {
                    let o = v.as_object_mut().unwrap();
                    o.retain(|k, _| fields.contains(&k.as_str()));
                }
                v
            })
            .collect();
        if normalize(got.clone()) != normalize(Value::Array(want.clone())) {
            failures.push(format!("{query}\n  engine: {got}\n  source: {want:?}"));
        }
    }
    // Any other filter on an array is refused (arrays are JSON columns).
    assert!(refract_query::execute(&snapshot, "arrs(tx = \"a\") { id }", &options).is_err());
    assert!(
        failures.is_empty(),
        "{} queries differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(client);
    PostgresScratch::drop_database(admin, &params).await;
}

/// MariaDB `SET` columns: the engine's JSON array equals the members MariaDB prints.
#[tokio::test]
async fn engine_sets_match_mariadb() {
    use mysql_async::prelude::Queryable;
    let server = common::mysql();
    let url = format!(
        "mysql://{}:{}@{}:{}",
        server.user, server.password, server.host, server.port
    );
    let db_name = unique_name("sets");
    let mut conn = mysql_async::Conn::from_url(url.as_str())
        .await
        .expect("connect MariaDB");
    conn.query_drop(format!("CREATE DATABASE {db_name}"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db_name}.s (id INT PRIMARY KEY, st SET('a','b c','d''e','é') NULL)"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "INSERT INTO {db_name}.s VALUES (1, 'a'), (2, ''), (3, NULL), (4, 'é,a,b c'), (5, 'd''e,b c'), (6, 15)"
    ))
    .await
    .unwrap();
    let params = server.source_params(Backend::Mysql, Some(&db_name));
    let snapshot = load_snapshot(&params).await;
    let got = refract_query::execute(
        &snapshot,
        "s { id st }",
        &refract_query::QueryOptions::default(),
    )
    .expect("query");
    let got: Value = serde_json::from_slice(&got.body).unwrap();
    let rows: Vec<(i64, Option<String>)> = conn
        .query(format!("SELECT id, st FROM {db_name}.s ORDER BY id"))
        .await
        .unwrap();
    let want: Vec<Value> = rows
        .into_iter()
        .map(|(id, st)| {
            let st = st.map(|s| {
                Value::Array(
                    s.split(',')
                        .filter(|m| !m.is_empty())
                        .map(|m| Value::String(m.into()))
                        .collect(),
                )
            });
            json!({"id": id, "st": st})
        })
        .collect();
    assert_eq!(got, Value::Array(want));
    conn.query_drop(format!("DROP DATABASE {db_name}"))
        .await
        .unwrap();
}
