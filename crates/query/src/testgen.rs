//! Random queries over the test "blog" schema, each with the SQL that answers it on a source:
//! one generator for the differential test of this crate (SQLite in memory) and the correctness
//! tests against real MariaDB, PostgreSQL and SQLite (`crates/refract/tests/it/correctness.rs`).
//! Test support only (feature `testgen`).
//!
//! The queries cover three-valued logic (NULLs, `NOT`, `IN` lists with NULL, `BETWEEN`), decimal
//! literals against integers, `LIKE`/`ILIKE` patterns, relation filters two levels deep (ANY
//! semantics = `EXISTS`), ordering with explicit NULL placement, limits and offsets, and includes
//! with their own filter, order and limit per parent row. What a [`Dialect`] cannot express the
//! same way (text order under a database collation, `NULLS FIRST` in MariaDB, MariaDB's rounding
//! of decimal constants against indexed integers) is either written its way or left out for it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refract_schema::ValueRef;
use serde_json::{json, Value};

/// Names in the data: mixed case, so that collations matter.
pub const NAMES: [&str; 8] = [
    "Alice", "alice", "BOB", "Bob", "carol", "Dave", "eve", "Zoë",
];
/// Plans in the data.
pub const PLANS: [&str; 4] = ["free", "pro", "Pro", "teams"];
/// Titles and bodies in the data.
pub const WORDS: [&str; 6] = [
    "hello",
    "Hello world",
    "rust",
    "SQL is fun",
    "databases",
    "zero",
];

/// The tables of the schema.
pub const TABLES: [&str; 3] = ["users", "posts", "comments"];

/// A column's kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ty {
    /// An integer.
    Int,
    /// Text.
    Text,
    /// A boolean.
    Bool,
}

/// A column of the schema.
#[derive(Debug)]
pub struct Col {
    /// Its name.
    pub name: &'static str,
    /// Its kind.
    pub ty: Ty,
}

/// A relation: its name, target table, and the join condition (local column = target column).
#[derive(Debug)]
pub struct Rel {
    /// The relation's API name.
    pub name: &'static str,
    /// The related table.
    pub target: &'static str,
    /// The column of this table.
    pub local: &'static str,
    /// The column of the related table.
    pub remote: &'static str,
    /// One row relates to many.
    pub to_many: bool,
}

/// The columns of `table`, in order.
pub fn columns(table: &str) -> Vec<Col> {
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

/// The relations of `table`.
pub fn relations(table: &str) -> Vec<Rel> {
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

/// Users in the data.
pub const USERS: i64 = 40;
/// Posts in the data.
pub const POSTS: i64 = 160;
/// Comments in the data.
pub const COMMENTS: i64 = 400;

/// A value of the data.
#[derive(Clone, Debug)]
pub enum Datum {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
}

impl Datum {
    /// The value as an SQL literal of `dialect`.
    pub fn sql(&self, dialect: Dialect) -> String {
        match self {
            Datum::Null => "NULL".into(),
            Datum::Int(v) => v.to_string(),
            Datum::Text(s) => sql_str(s),
            Datum::Bool(b) => dialect.bool_sql(*b).into(),
        }
    }

    /// The value as the engine's loaders hand it to a table builder.
    pub fn value(&self) -> ValueRef<'_> {
        match self {
            Datum::Null => ValueRef::Null,
            Datum::Int(v) => ValueRef::Int(*v),
            Datum::Text(s) => ValueRef::Text(s),
            Datum::Bool(b) => ValueRef::Bool(*b),
        }
    }
}

/// The rows of every table of [`TABLES`], in that order and in the order of [`columns`]; the
/// same on every call. Built to exercise the hard parts: NULLs (three-valued logic), mixed case
/// (collations), and rows without relatives (users 31..=40 write no posts, posts 141..=160 have
/// no comments).
pub fn dataset() -> Vec<(&'static str, Vec<Vec<Datum>>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let t = |s: String| Datum::Text(s);
    let mut users = Vec::new();
    for id in 1..=USERS {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let email = if rng.gen_bool(0.2) {
            Datum::Null
        } else {
            t(format!("{}{id}@example.com", name.to_lowercase()))
        };
        let plan = PLANS[rng.gen_range(0..PLANS.len())];
        let verified = rng.gen_bool(0.5);
        let score = if rng.gen_bool(0.25) {
            Datum::Null
        } else {
            Datum::Int(rng.gen_range(-5..50))
        };
        users.push(vec![
            Datum::Int(id),
            t(name.into()),
            email,
            t(plan.into()),
            Datum::Bool(verified),
            score,
        ]);
    }
    let mut posts = Vec::new();
    for id in 1..=POSTS {
        let user = rng.gen_range(1..=30);
        let views = if rng.gen_bool(0.2) {
            Datum::Null
        } else {
            Datum::Int(rng.gen_range(0..1000))
        };
        let title = format!("{} {id}", WORDS[rng.gen_range(0..WORDS.len())]);
        posts.push(vec![
            Datum::Int(id),
            Datum::Int(user),
            t(title),
            Datum::Bool(rng.gen_bool(0.6)),
            views,
        ]);
    }
    let mut comments = Vec::new();
    for id in 1..=COMMENTS {
        let post = rng.gen_range(1..=140);
        let user = if rng.gen_bool(0.15) {
            Datum::Null
        } else {
            Datum::Int(rng.gen_range(1..=USERS))
        };
        let approved = match rng.gen_range(0..5) {
            0 => Datum::Null,
            1 | 2 => Datum::Bool(true),
            _ => Datum::Bool(false),
        };
        let body = format!("{} #{id}", WORDS[rng.gen_range(0..WORDS.len())]);
        comments.push(vec![
            Datum::Int(id),
            Datum::Int(post),
            user,
            t(body),
            approved,
        ]);
    }
    vec![("users", users), ("posts", posts), ("comments", comments)]
}

/// One `INSERT` of every row of `rows` into `table`, in `dialect`.
pub fn insert_sql(dialect: Dialect, table: &str, rows: &[Vec<Datum>]) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().map(|c| c.sql(dialect)).collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!("INSERT INTO {table} VALUES {}", values.join(", "))
}

/// Fails, showing the first five, when any of the `total` generated queries answered
/// differently from the reference (`on`: which one).
pub fn assert_all_match(failures: &[String], total: usize, on: &str) {
    assert!(
        failures.is_empty(),
        "{} of {total} queries differ on {on}; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The SQL the expected answers are computed with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    /// SQLite with `PRAGMA case_sensitive_like = ON` (binary collation).
    Sqlite,
    /// MariaDB with a `utf8mb4_general_ci` database: text compares without case.
    Mysql,
    /// PostgreSQL (its database collation orders text, so text order is left out).
    Postgres,
}

impl Dialect {
    fn bool_sql(self, v: bool) -> &'static str {
        match (self, v) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (_, true) => "TRUE",
            (_, false) => "FALSE",
        }
    }

    fn ilike(self, col: &str, pattern: &str, not: &str) -> String {
        match self {
            Dialect::Postgres => format!("{col} {not}ILIKE {pattern}"),
            _ => format!("LOWER({col}) {not}LIKE LOWER({pattern})"),
        }
    }

    /// Decimal literals compared with integer columns give the exact answer here: MariaDB
    /// rounds the constant when it looks it up in an index on the column (`user_id = 4.5`
    /// finds the rows of user 5), which is not what the engine (or SQL) means.
    fn decimal_literals(self) -> bool {
        self != Dialect::Mysql
    }

    /// `<`, `>=` and `ORDER BY` on text give the engine's (byte) order here.
    fn text_order(self) -> bool {
        self == Dialect::Sqlite
    }

    /// `col dir` with NULLs first or last.
    fn order_term(self, col: &str, dir: &str, nulls_first: bool) -> String {
        match self {
            Dialect::Mysql => format!(
                "{col} IS NULL {}, {col} {dir}",
                if nulls_first { "DESC" } else { "ASC" }
            ),
            _ => format!(
                "{col} {dir} {}",
                if nulls_first {
                    "NULLS FIRST"
                } else {
                    "NULLS LAST"
                }
            ),
        }
    }
}

/// One generated predicate, as query text and as SQL.
#[derive(Clone, Debug)]
struct Pred {
    query: String,
    sql: String,
}

/// One generated test case.
#[derive(Debug)]
pub struct Case {
    /// The query.
    pub query: String,
    /// SQL returning `(id, parent key of the include)` of the top-level rows in the expected order.
    pub top_sql: String,
    /// The included relation: (name, to-many, SQL returning `(parent key, child id)` in the
    /// expected order).
    pub include: Option<(String, bool, String)>,
}

/// `n` cases for `dialect`, the same ones for the same seed.
pub fn generate(dialect: Dialect, seed: u64, n: usize) -> Vec<Case> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        alias: 0,
        dialect,
    };
    (0..n).map(|_| g.case()).collect()
}

/// The expected JSON answer of `case` from its SQL answers: `top` from `top_sql`, `children`
/// from the include's SQL (empty without an include).
pub fn expected_json(
    case: &Case,
    top: &[(i64, Option<i64>)],
    children: &[(i64, Option<i64>)],
) -> Value {
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

struct Gen {
    rng: StdRng,
    alias: usize,
    dialect: Dialect,
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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

    fn not(&mut self, p: f64) -> &'static str {
        if self.rng.gen_bool(p) {
            "NOT "
        } else {
            ""
        }
    }

    fn scalar(&mut self, table: &str, alias: &str, path: &str) -> Pred {
        let cols = columns(table);
        let col = &cols[self.rng.gen_range(0..cols.len())];
        let q = format!("{path}{}", col.name);
        let s = format!("{alias}.{}", col.name);
        if self.rng.gen_range(0..8) == 0 {
            let not = self.not(0.5);
            return Pred {
                query: format!("{q} IS {not}NULL"),
                sql: format!("{s} IS {not}NULL"),
            };
        }
        match col.ty {
            Ty::Int => {
                let v = self.rng.gen_range(-5..200);
                match self.rng.gen_range(0..6) {
                    3 if !self.dialect.decimal_literals() => {
                        let v = self.rng.gen_range(0..40);
                        Pred {
                            query: format!("{q} = {v}"),
                            sql: format!("{s} = {v}"),
                        }
                    }
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
                        let not = self.not(0.3);
                        Pred {
                            query: format!("{q} {not}IN ({})", vals.join(", ")),
                            sql: format!("{s} {not}IN ({})", vals.join(", ")),
                        }
                    }
                    2 => {
                        let hi = v + self.rng.gen_range(0..100);
                        let not = self.not(0.3);
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
                    sql: format!("{s} {sop} {}", self.dialect.bool_sql(v)),
                }
            }
            Ty::Text => match self.rng.gen_range(0..6) {
                0 | 1 => {
                    let v = self.text_value();
                    let ops: &[&str] = if self.dialect.text_order() {
                        &["=", "!=", "<", ">="]
                    } else {
                        &["=", "!="]
                    };
                    let op = ops[self.rng.gen_range(0..ops.len())];
                    let sop = if op == "!=" { "<>" } else { op };
                    Pred {
                        query: format!("{q} {op} \"{v}\""),
                        sql: format!("{s} {sop} {}", sql_str(&v)),
                    }
                }
                2 => {
                    let p = self.pattern();
                    let not = self.not(0.3);
                    Pred {
                        query: format!("{q} {not}LIKE \"{p}\""),
                        sql: format!("{s} {not}LIKE {}", sql_str(&p)),
                    }
                }
                3 => {
                    let p = self.pattern();
                    let not = self.not(0.3);
                    Pred {
                        query: format!("{q} {not}ILIKE \"{p}\""),
                        sql: self.dialect.ilike(&s, &sql_str(&p), not),
                    }
                }
                _ => {
                    let vals: Vec<String> = (0..self.rng.gen_range(1..4))
                        .map(|_| self.text_value())
                        .collect();
                    let not = self.not(0.3);
                    let quoted: Vec<String> = vals.iter().map(|v| format!("\"{v}\"")).collect();
                    let sql: Vec<String> = vals.iter().map(|v| sql_str(v)).collect();
                    Pred {
                        query: format!("{q} {not}IN ({})", quoted.join(", ")),
                        sql: format!("{s} {not}IN ({})", sql.join(", ")),
                    }
                }
            },
        }
    }

    /// A predicate on `table` (as `alias`), maybe through relations (ANY semantics = EXISTS).
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

    /// A boolean expression of predicates.
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

    /// `ORDER BY` on a column with explicit NULL placement, ties broken by id; text columns
    /// only where the dialect orders text like the engine.
    fn order(&mut self, table: &str, alias: &str) -> (String, String) {
        if self.rng.gen_bool(0.4) {
            return (String::new(), format!("{alias}.id"));
        }
        let cols: Vec<Col> = columns(table)
            .into_iter()
            .filter(|c| c.ty != Ty::Text || self.dialect.text_order())
            .collect();
        let col = cols[self.rng.gen_range(0..cols.len())].name;
        let dir = if self.rng.gen_bool(0.5) {
            "DESC"
        } else {
            "ASC"
        };
        let nulls_first = self.rng.gen_bool(0.5);
        let nulls = if nulls_first {
            "NULLS FIRST"
        } else {
            "NULLS LAST"
        };
        let id_dir = if self.rng.gen_bool(0.5) { " DESC" } else { "" };
        let term = self
            .dialect
            .order_term(&format!("{alias}.{col}"), dir, nulls_first);
        if col == "id" {
            // The primary key alone (ascending: the executor streams it in key order).
            return (format!("ORDER BY id {dir} {nulls}"), term);
        }
        (
            format!("ORDER BY {col} {dir} {nulls}, id{id_dir}"),
            format!("{term}, {alias}.id{id_dir}"),
        )
    }

    fn case(&mut self) -> Case {
        self.alias = 0;
        let table = TABLES[self.rng.gen_range(0..3)];
        let filter = if self.rng.gen_range(0..6) == 0 {
            None
        } else {
            Some(self.expr(table, "t0", 0))
        };
        let (order_q, order_sql) = self.order(table, "t0");
        let limit = if self.rng.gen_bool(0.3) {
            let (l, o) = (self.rng.gen_range(0..20), self.rng.gen_range(0..10));
            format!("LIMIT {l} OFFSET {o}")
        } else {
            String::new()
        };
        let rels = relations(table);
        let include = if self.rng.gen_bool(0.5) {
            Some(&rels[self.rng.gen_range(0..rels.len())])
        } else {
            None
        };
        let mut items = "id".to_string();
        let mut include_case = None;
        let mut include_key = "id";
        if let Some(rel) = include {
            self.alias = 100;
            let nested = if self.rng.gen_bool(0.6) {
                Some(self.pred(rel.target, "c", "", 1))
            } else {
                None
            };
            let (n_order_q, n_order_sql) = if rel.to_many {
                self.order(rel.target, "c")
            } else {
                (String::new(), "c.id".into())
            };
            let n_limit = if rel.to_many && self.rng.gen_bool(0.4) {
                Some((self.rng.gen_range(0..4), self.rng.gen_range(0..3)))
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
            let window = match n_limit {
                Some((l, o)) => format!(" AND rn > {o} AND rn <= {}", o + l),
                None => String::new(),
            };
            include_case = Some((
                rel.name.to_string(),
                rel.to_many,
                format!(
                    "SELECT k, id FROM (SELECT c.{remote} AS k, c.id AS id, ROW_NUMBER() OVER \
                     (PARTITION BY c.{remote} ORDER BY {n_order_sql}) AS rn FROM {target} c \
                     WHERE c.{remote} IS NOT NULL{where_nested}) w WHERE 1 = 1{window} ORDER BY k, rn",
                    remote = rel.remote,
                    target = rel.target,
                ),
            ));
        }
        let parts: Vec<&str> = [
            filter.as_ref().map(|p| p.query.as_str()).unwrap_or(""),
            order_q.as_str(),
            limit.as_str(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        let args = if parts.is_empty() {
            String::new()
        } else {
            format!("({})", parts.join(" "))
        };
        let where_sql = filter
            .as_ref()
            .map(|p| format!(" WHERE {}", p.sql))
            .unwrap_or_default();
        let limit_sql = if limit.is_empty() {
            String::new()
        } else {
            format!(" {limit}")
        };
        Case {
            query: format!("{table}{args} {{ {items} }}"),
            top_sql: format!(
                "SELECT t0.id, t0.{include_key} FROM {table} t0{where_sql} ORDER BY {order_sql}{limit_sql}"
            ),
            include: include_case,
        }
    }
}
