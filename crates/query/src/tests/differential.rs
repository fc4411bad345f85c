//! Differential test: generated queries against the same data in SQLite (case-sensitive `LIKE`,
//! binary collation), compared row for row. Covers three-valued logic, relation filters at two
//! levels, ordering with NULLs, limits, offsets and includes with their own filter, order and
//! limit per parent row.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refract_schema::{
    Backend, ColumnManifest, ColumnType, Manifest, Relation, RelationKind, RowSink, TableManifest,
    ValueRef,
};
use refract_storage::{Snapshot, TableBuilder};
use serde_json::{json, Value};

use crate::{execute, QueryOptions};

const USERS: i64 = 40;
const POSTS: i64 = 160;
const COMMENTS: i64 = 400;
const QUERIES: usize = 1500;

const NAMES: [&str; 8] = [
    "Alice", "alice", "BOB", "Bob", "carol", "Dave", "eve", "Zoë",
];
const PLANS: [&str; 4] = ["free", "pro", "Pro", "teams"];
const WORDS: [&str; 6] = [
    "hello",
    "Hello world",
    "rust",
    "SQL is fun",
    "databases",
    "zero",
];

#[derive(Clone, Debug)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl Cell {
    fn sql(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(v) => v.to_string(),
            Cell::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Cell::Bool(b) => (if *b { "1" } else { "0" }).into(),
        }
    }

    fn value(&self) -> ValueRef<'_> {
        match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(v) => ValueRef::Int(*v),
            Cell::Text(s) => ValueRef::Text(s),
            Cell::Bool(b) => ValueRef::Bool(*b),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Text,
    Bool,
}

struct Col {
    name: &'static str,
    ty: Ty,
}

struct Rel {
    name: &'static str,
    target: &'static str,
    local: &'static str,
    remote: &'static str,
    to_many: bool,
}

fn columns(table: &str) -> Vec<Col> {
    let c = |name, ty| Col { name, ty };
    match table {
        "users" => vec![
            c("id", Ty::Int),
            c("name", Ty::Text),
            c("email", Ty::Text),
            c("plan", Ty::Text),
            c("verified", Ty::Bool),
            c("score", Ty::Int),
        ],
        "posts" => vec![
            c("id", Ty::Int),
            c("user_id", Ty::Int),
            c("title", Ty::Text),
            c("published", Ty::Bool),
            c("views", Ty::Int),
        ],
        _ => vec![
            c("id", Ty::Int),
            c("post_id", Ty::Int),
            c("user_id", Ty::Int),
            c("body", Ty::Text),
            c("approved", Ty::Bool),
        ],
    }
}

fn relations(table: &str) -> Vec<Rel> {
    let r = |name, target, local, remote, to_many| Rel {
        name,
        target,
        local,
        remote,
        to_many,
    };
    match table {
        "users" => vec![
            r("posts", "posts", "id", "user_id", true),
            r("comments", "comments", "id", "user_id", true),
        ],
        "posts" => vec![
            r("user", "users", "user_id", "id", false),
            r("comments", "comments", "id", "post_id", true),
        ],
        _ => vec![
            r("post", "posts", "post_id", "id", false),
            r("user", "users", "user_id", "id", false),
        ],
    }
}

const TABLES: [&str; 3] = ["users", "posts", "comments"];

fn data() -> Vec<(&'static str, Vec<Vec<Cell>>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let t = |s: String| Cell::Text(s);
    let mut users = Vec::new();
    for id in 1..=USERS {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let email = if rng.gen_bool(0.2) {
            Cell::Null
        } else {
            t(format!("{}{id}@example.com", name.to_lowercase()))
        };
        let plan = PLANS[rng.gen_range(0..PLANS.len())];
        let verified = rng.gen_bool(0.5);
        let score = if rng.gen_bool(0.25) {
            Cell::Null
        } else {
            Cell::Int(rng.gen_range(-5..50))
        };
        users.push(vec![
            Cell::Int(id),
            t(name.into()),
            email,
            t(plan.into()),
            Cell::Bool(verified),
            score,
        ]);
    }
    let mut posts = Vec::new();
    for id in 1..=POSTS {
        let user = rng.gen_range(1..=30);
        let views = if rng.gen_bool(0.2) {
            Cell::Null
        } else {
            Cell::Int(rng.gen_range(0..1000))
        };
        let title = format!("{} {id}", WORDS[rng.gen_range(0..WORDS.len())]);
        posts.push(vec![
            Cell::Int(id),
            Cell::Int(user),
            t(title),
            Cell::Bool(rng.gen_bool(0.6)),
            views,
        ]);
    }
    let mut comments = Vec::new();
    for id in 1..=COMMENTS {
        let post = rng.gen_range(1..=140);
        let user = if rng.gen_bool(0.15) {
            Cell::Null
        } else {
            Cell::Int(rng.gen_range(1..=USERS))
        };
        let approved = match rng.gen_range(0..5) {
            0 => Cell::Null,
            1 | 2 => Cell::Bool(true),
            _ => Cell::Bool(false),
        };
        let body = format!("{} #{id}", WORDS[rng.gen_range(0..WORDS.len())]);
        comments.push(vec![
            Cell::Int(id),
            Cell::Int(post),
            user,
            t(body),
            approved,
        ]);
    }
    vec![("users", users), ("posts", posts), ("comments", comments)]
}

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

// ---------------------------------------------------------------------------------------------
// Generated queries and their SQL translation (after `crates/refract/tests/it/correctness.rs`).

struct Pred {
    query: String,
    sql: String,
}

struct Gen {
    rng: StdRng,
    alias: usize,
}

impl Gen {
    fn text_value(&mut self) -> String {
        let pool: Vec<&str> = NAMES
            .iter()
            .chain(PLANS.iter())
            .chain(WORDS.iter())
            .copied()
            .collect();
        pool[self.rng.gen_range(0..pool.len())].to_string()
    }

    fn pattern(&mut self) -> String {
        let v = self.text_value();
        let chars: Vec<char> = v.chars().collect();
        let n = self.rng.gen_range(1..=chars.len().min(3));
        let part: String = chars[..n].iter().collect();
        match self.rng.gen_range(0..5) {
            0 => format!("{part}%"),
            1 => format!("%{}", chars[chars.len() - n..].iter().collect::<String>()),
            2 => format!("%{part}%"),
            3 => format!(
                "_{}%",
                chars[1..n.max(2).min(chars.len())]
                    .iter()
                    .collect::<String>()
            ),
            _ => format!("{part}_%"),
        }
    }

    fn sql_str(&self, s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn scalar(&mut self, table: &str, alias: &str, path: &str) -> Pred {
        let cols = columns(table);
        let col = &cols[self.rng.gen_range(0..cols.len())];
        let q = format!("{path}{}", col.name);
        let s = format!("{alias}.{}", col.name);
        if self.rng.gen_range(0..8) == 0 {
            let not = if self.rng.gen_bool(0.5) { "NOT " } else { "" };
            return Pred {
                query: format!("{q} IS {not}NULL"),
                sql: format!("{s} IS {not}NULL"),
            };
        }
        match col.ty {
            Ty::Int => {
                let v = self.rng.gen_range(-5..200);
                match self.rng.gen_range(0..6) {
                    0 => {
                        let op = ["=", "!=", "<", "<=", ">", ">="][self.rng.gen_range(0..6)];
                        let sop = if op == "!=" { "<>" } else { op };
                        Pred {
                            query: format!("{q} {op} {v}"),
                            sql: format!("{s} {sop} {v}"),
                        }
                    }
                    1 => {
                        let mut vals: Vec<String> = (0..self.rng.gen_range(1..4))
                            .map(|_| self.rng.gen_range(0..50).to_string())
                            .collect();
                        if self.rng.gen_bool(0.2) {
                            vals.push("null".into());
                        }
                        let not = if self.rng.gen_bool(0.3) { "NOT " } else { "" };
                        Pred {
                            query: format!("{q} {not}IN ({})", vals.join(", ")),
                            sql: format!("{s} {not}IN ({})", vals.join(", ")),
                        }
                    }
                    2 => {
                        let hi = v + self.rng.gen_range(0..100);
                        let not = if self.rng.gen_bool(0.3) { "NOT " } else { "" };
                        Pred {
                            query: format!("{q} {not}BETWEEN {v} AND {hi}"),
                            sql: format!("{s} {not}BETWEEN {v} AND {hi}"),
                        }
                    }
                    3 => {
                        // Decimal literals against integers, compared exactly.
                        let op = ["=", "<", ">="][self.rng.gen_range(0..3)];
                        let x = format!("{}.5", self.rng.gen_range(-5..60));
                        Pred {
                            query: format!("{q} {op} {x}"),
                            sql: format!("{s} {op} {x}"),
                        }
                    }
                    _ => {
                        let v = self.rng.gen_range(0..40);
                        Pred {
                            query: format!("{q} = {v}"),
                            sql: format!("{s} = {v}"),
                        }
                    }
                }
            }
            Ty::Bool => {
                let v = self.rng.gen_bool(0.5);
                let op = if self.rng.gen_bool(0.7) { "=" } else { "!=" };
                let sop = if op == "!=" { "<>" } else { op };
                Pred {
                    query: format!("{q} {op} {v}"),
                    sql: format!("{s} {sop} {}", v as u8),
                }
            }
            Ty::Text => match self.rng.gen_range(0..6) {
                0 | 1 => {
                    let v = self.text_value();
                    let op = ["=", "!=", "<", ">="][self.rng.gen_range(0..4)];
                    let sop = if op == "!=" { "<>" } else { op };
                    Pred {
                        query: format!("{q} {op} \"{v}\""),
                        sql: format!("{s} {sop} {}", self.sql_str(&v)),
                    }
                }
                2 => {
                    let p = self.pattern();
                    let not = if self.rng.gen_bool(0.3) { "NOT " } else { "" };
                    Pred {
                        query: format!("{q} {not}LIKE \"{p}\""),
                        sql: format!("{s} {not}LIKE {}", self.sql_str(&p)),
                    }
                }
                3 => {
                    let p = self.pattern();
                    let not = if self.rng.gen_bool(0.3) { "NOT " } else { "" };
                    Pred {
                        query: format!("{q} {not}ILIKE \"{p}\""),
                        sql: format!("LOWER({s}) {not}LIKE LOWER({})", self.sql_str(&p)),
                    }
                }
                _ => {
                    let vals: Vec<String> = (0..self.rng.gen_range(1..4))
                        .map(|_| self.text_value())
                        .collect();
                    let not = if self.rng.gen_bool(0.3) { "NOT " } else { "" };
                    Pred {
                        query: format!(
                            "{q} {not}IN ({})",
                            vals.iter()
                                .map(|v| format!("\"{v}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        sql: format!(
                            "{s} {not}IN ({})",
                            vals.iter()
                                .map(|v| self.sql_str(v))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                }
            },
        }
    }

    fn pred(&mut self, table: &str, alias: &str, path: &str, depth: usize) -> Pred {
        if depth < 2 && self.rng.gen_range(0..3) == 0 {
            let rels = relations(table);
            let rel = &rels[self.rng.gen_range(0..rels.len())];
            self.alias += 1;
            let inner_alias = format!("t{}", self.alias);
            let inner = self.pred(
                rel.target,
                &inner_alias,
                &format!("{path}{}.", rel.name),
                depth + 1,
            );
            return Pred {
                query: inner.query,
                sql: format!(
                    "EXISTS (SELECT 1 FROM {} {inner_alias} WHERE {inner_alias}.{} = {alias}.{} AND ({}))",
                    rel.target, rel.remote, rel.local, inner.sql
                ),
            };
        }
        self.scalar(table, alias, path)
    }

    fn expr(&mut self, table: &str, alias: &str, depth: usize) -> Pred {
        match self.rng.gen_range(0..if depth > 2 { 1 } else { 6 }) {
            0..=2 => self.pred(table, alias, "", 0),
            3 => {
                let (a, b) = (
                    self.expr(table, alias, depth + 1),
                    self.expr(table, alias, depth + 1),
                );
                Pred {
                    query: format!("{} AND {}", a.query, b.query),
                    sql: format!("({}) AND ({})", a.sql, b.sql),
                }
            }
            4 => {
                let (a, b) = (
                    self.expr(table, alias, depth + 1),
                    self.expr(table, alias, depth + 1),
                );
                Pred {
                    query: format!("({} OR {})", a.query, b.query),
                    sql: format!("(({}) OR ({}))", a.sql, b.sql),
                }
            }
            _ => {
                let a = self.expr(table, alias, depth + 1);
                Pred {
                    query: format!("NOT ({})", a.query),
                    sql: format!("NOT ({})", a.sql),
                }
            }
        }
    }

    /// `ORDER BY` on any column with explicit NULL placement, ties broken by id.
    fn order(&mut self, table: &str, alias: &str) -> (String, String) {
        if self.rng.gen_bool(0.4) {
            return (String::new(), format!("{alias}.id"));
        }
        let cols = columns(table);
        let col = cols[self.rng.gen_range(0..cols.len())].name;
        let dir = if self.rng.gen_bool(0.5) {
            "DESC"
        } else {
            "ASC"
        };
        let nulls = if self.rng.gen_bool(0.5) {
            "NULLS FIRST"
        } else {
            "NULLS LAST"
        };
        let id_dir = if self.rng.gen_bool(0.5) { " DESC" } else { "" };
        if col == "id" {
            // The primary key alone (ascending: the executor streams it in key order).
            return (
                format!("ORDER BY id {dir} {nulls}"),
                format!("{alias}.id {dir} {nulls}"),
            );
        }
        (
            format!("ORDER BY {col} {dir} {nulls}, id{id_dir}"),
            format!("{alias}.{col} {dir} {nulls}, {alias}.id{id_dir}"),
        )
    }
}

struct Case {
    query: String,
    top_sql: String,
    /// (relation name, to-many, SQL returning (parent key, child id) in the expected order).
    include: Option<(String, bool, String)>,
}

fn generate(n: usize) -> Vec<Case> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(42),
        alias: 0,
    };
    let mut cases = Vec::new();
    for _ in 0..n {
        g.alias = 0;
        let table = TABLES[g.rng.gen_range(0..3)];
        let filter = if g.rng.gen_range(0..6) == 0 {
            None
        } else {
            Some(g.expr(table, "t0", 0))
        };
        let (order_q, order_sql) = g.order(table, "t0");
        let (limit_q, limit_sql) = if g.rng.gen_bool(0.3) {
            let (l, o) = (g.rng.gen_range(0..20), g.rng.gen_range(0..10));
            (
                format!(" LIMIT {l} OFFSET {o}"),
                format!(" LIMIT {l} OFFSET {o}"),
            )
        } else {
            (String::new(), String::new())
        };
        let rels = relations(table);
        let include = if g.rng.gen_bool(0.5) {
            Some(&rels[g.rng.gen_range(0..rels.len())])
        } else {
            None
        };
        let mut items = "id".to_string();
        let mut include_case = None;
        let mut include_key = "id";
        if let Some(rel) = include {
            g.alias = 100;
            let nested = if g.rng.gen_bool(0.6) {
                Some(g.pred(rel.target, "c", "", 1))
            } else {
                None
            };
            let (n_order_q, n_order_sql) = if rel.to_many {
                g.order(rel.target, "c")
            } else {
                (String::new(), "c.id".into())
            };
            let n_limit = if rel.to_many && g.rng.gen_bool(0.4) {
                Some((g.rng.gen_range(0..4), g.rng.gen_range(0..3)))
            } else {
                None
            };
            let mut args: Vec<String> = Vec::new();
            if let Some(p) = &nested {
                args.push(p.query.clone());
            }
            if !n_order_q.is_empty() {
                args.push(n_order_q);
            }
            if let Some((l, o)) = n_limit {
                args.push(format!("LIMIT {l} OFFSET {o}"));
            }
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(" "))
            };
            items.push_str(&format!(" {}{args} {{ id }}", rel.name));
            let where_nested = nested
                .map(|p| format!(" AND ({})", p.sql))
                .unwrap_or_default();
            include_key = rel.local;
            let base = format!(
                "SELECT c.{remote} AS k, c.id AS id, ROW_NUMBER() OVER (PARTITION BY c.{remote} ORDER BY {n_order_sql}) AS rn \
                 FROM {} c WHERE c.{remote} IS NOT NULL{where_nested}",
                rel.target,
                remote = rel.remote
            );
            let window = match n_limit {
                Some((l, o)) => format!(" AND rn > {o} AND rn <= {}", o + l),
                None => String::new(),
            };
            include_case = Some((
                rel.name.to_string(),
                rel.to_many,
                format!("SELECT k, id FROM ({base}) WHERE 1 = 1{window} ORDER BY k, rn"),
            ));
        }
        let args = match (&filter, order_q.is_empty() && limit_q.is_empty()) {
            (None, true) => String::new(),
            (f, _) => {
                let parts: Vec<&str> = [
                    f.as_ref().map(|p| p.query.as_str()).unwrap_or(""),
                    order_q.as_str(),
                    limit_q.trim(),
                ]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
                format!("({})", parts.join(" "))
            }
        };
        let where_sql = filter
            .as_ref()
            .map(|p| format!(" WHERE {}", p.sql))
            .unwrap_or_default();
        let limit_sql = if limit_sql.is_empty() {
            String::new()
        } else {
            limit_sql
        };
        cases.push(Case {
            query: format!("{table}{args} {{ {items} }}"),
            top_sql: format!("SELECT t0.id, t0.{include_key} FROM {table} t0{where_sql} ORDER BY {order_sql}{limit_sql}"),
            include: include_case,
        });
    }
    cases
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
    let top = pairs(db, &case.top_sql);
    let children = match &case.include {
        Some((_, _, sql)) => pairs(db, sql),
        None => Vec::new(),
    };
    let rows = top
        .iter()
        .map(|(id, key)| {
            let mut obj = serde_json::Map::new();
            obj.insert("id".into(), json!(id));
            if let Some((name, to_many, _)) = &case.include {
                let matching: Vec<Value> = children
                    .iter()
                    .filter(|(k, _)| Some(*k) == *key)
                    .map(|(_, c)| json!({ "id": c }))
                    .collect();
                let v = if *to_many {
                    Value::Array(matching)
                } else {
                    matching.into_iter().next().unwrap_or(Value::Null)
                };
                obj.insert(name.clone(), v);
            }
            Value::Object(obj)
        })
        .collect();
    Value::Array(rows)
}

#[test]
fn generated_queries_match_sqlite() {
    let data = data();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("PRAGMA case_sensitive_like = ON").unwrap();
    let m = manifest();
    let mut tables = Vec::new();
    for ((name, rows), tm) in data.iter().zip(&m.tables) {
        let cols: Vec<&str> = columns(name).iter().map(|c| c.name).collect();
        db.execute_batch(&format!("CREATE TABLE {name} ({})", cols.join(", ")))
            .unwrap();
        let values: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "({})",
                    r.iter().map(Cell::sql).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        db.execute_batch(&format!("INSERT INTO {name} VALUES {}", values.join(", ")))
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
    let snapshot = Snapshot::new(Arc::new(m), tables);
    let options = QueryOptions::default();
    let cases = generate(QUERIES);
    let mut failures = Vec::new();
    for case in &cases {
        let want = expected(&db, case);
        let got = match execute(&snapshot, &case.query, &options) {
            Ok(out) => serde_json::from_slice::<Value>(&out.body).expect("JSON"),
            Err(e) => json!({ "query_error": e.to_string() }),
        };
        if got != want {
            failures.push(format!(
                "query: {}\n  sql: {}\n  engine: {got}\n  sqlite: {want}",
                case.query, case.top_sql
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ; first ones:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
