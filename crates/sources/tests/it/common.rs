//! Shared test helpers: server URLs from the environment, a `Vec` row sink, hand-built
//! manifests and date helpers.

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use refract_schema::{
    Backend, ColumnManifest, ColumnType, Manifest, RowSink, SourceSchema, SourceTable,
    TableManifest, ValueRef, MANIFEST_VERSION,
};
use refract_sources::{
    LoadOptions, SourceError, SourceParams, SourcePosition, TestConnectionReport,
};
pub use refract_testkit::ServerUrl;

/// An owned cell.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Dec(i128),
    Text(String),
    Bytes(Vec<u8>),
    Date(i32),
    Time(i64),
    DateTime(i64),
    Ts(i64),
    Json(String),
}

/// `V::Text` from a `&str`.
pub fn t(s: &str) -> V {
    V::Text(s.to_string())
}

/// `V::Json` from a `&str`.
pub fn j(s: &str) -> V {
    V::Json(s.to_string())
}

impl From<ValueRef<'_>> for V {
    fn from(v: ValueRef<'_>) -> V {
        match v {
            ValueRef::Null => V::Null,
            ValueRef::Bool(b) => V::Bool(b),
            ValueRef::Int(i) => V::Int(i),
            ValueRef::Float(f) => V::Float(f),
            ValueRef::Decimal(d) => V::Dec(d),
            ValueRef::Text(s) => V::Text(s.to_string()),
            ValueRef::Bytes(b) => V::Bytes(b.to_vec()),
            ValueRef::Date(d) => V::Date(d),
            ValueRef::Time(t) => V::Time(t),
            ValueRef::DateTime(t) => V::DateTime(t),
            ValueRef::Timestamp(t) => V::Ts(t),
            ValueRef::Json(s) => V::Json(s.to_string()),
        }
    }
}

/// Collects rows; checks that cells arrive in column order and rows are complete. With a
/// `limit`, refuses the row after that many (a memory cap).
#[derive(Debug, Default)]
pub struct VecSink {
    pub table: String,
    pub columns: usize,
    pub rows: Vec<Vec<V>>,
    pub limit: Option<usize>,
    cur: Vec<V>,
}

impl VecSink {
    pub fn new(table: &TableManifest) -> Self {
        VecSink {
            table: table.source_name.clone(),
            columns: table.columns.len(),
            ..Default::default()
        }
    }
}

impl RowSink for VecSink {
    fn push(&mut self, column: usize, value: ValueRef<'_>) {
        assert_eq!(column, self.cur.len(), "{}: cells out of order", self.table);
        self.cur.push(value.into());
    }

    fn end_row(&mut self) -> bool {
        assert_eq!(
            self.cur.len(),
            self.columns,
            "{}: incomplete row",
            self.table
        );
        self.rows.push(std::mem::take(&mut self.cur));
        self.limit.is_none_or(|l| self.rows.len() < l)
    }
}

/// Which table to load: all its columns or a subset, and an optional predicate.
pub struct Pick<'a> {
    pub table: &'a str,
    pub columns: Option<&'a [&'a str]>,
    pub where_sql: Option<&'a str>,
}

pub fn pick(table: &str) -> Pick<'_> {
    Pick {
        table,
        columns: None,
        where_sql: None,
    }
}

/// The `child` table's `id` and `note` where `pa = 1`: a column subset with a predicate on a
/// column left out.
pub fn child_subset() -> Pick<'static> {
    Pick {
        table: "child",
        columns: Some(&["id", "note"]),
        where_sql: Some("pa = 1"),
    }
}

/// The introspected table `name` of `schema`.
pub fn table<'s>(schema: &'s SourceSchema, name: &str) -> &'s SourceTable {
    schema
        .tables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("table {name} not introspected"))
}

/// `(name, type)` of every column of `table`, in order.
pub fn column_types(table: &SourceTable) -> Vec<(&str, ColumnType)> {
    table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty))
        .collect()
}

/// A manifest built by hand from the introspected schema (no relations: loading ignores them).
pub fn manifest(schema: &SourceSchema, pg_schema: Option<&str>, picks: &[Pick<'_>]) -> Manifest {
    let tables = picks
        .iter()
        .map(|p| {
            let st = table(schema, p.table);
            let columns: Vec<ColumnManifest> = st
                .columns
                .iter()
                .filter(|c| p.columns.is_none_or(|cols| cols.contains(&c.name.as_str())))
                .map(ColumnManifest::exposing)
                .collect();
            if let Some(cols) = p.columns {
                assert_eq!(
                    columns.len(),
                    cols.len(),
                    "{}: unknown column in {cols:?}",
                    p.table
                );
            }
            let primary_key = st
                .primary_key
                .iter()
                .filter_map(|k| columns.iter().position(|c| &c.source_name == k))
                .collect();
            TableManifest {
                source_name: st.name.clone(),
                api_name: st.name.clone(),
                columns,
                primary_key,
                where_sql: p.where_sql.map(str::to_string),
                relations: Vec::new(),
                estimated_bytes: st.estimated_bytes,
            }
        })
        .collect();
    Manifest {
        warnings: Vec::new(),
        version: MANIFEST_VERSION,
        backend: schema.backend,
        database: schema.database.clone(),
        pg_schema: pg_schema.map(str::to_string),
        tables,
    }
}

/// Load every table of `m`; the sinks in manifest order.
pub async fn load(
    params: &SourceParams,
    m: &Manifest,
    parallelism: usize,
) -> Result<(Vec<VecSink>, SourcePosition), SourceError> {
    let sinks = m.tables.iter().map(VecSink::new).collect();
    refract_sources::load_tables(params, m, sinks, LoadOptions::parallel(parallelism)).await
}

/// The rows of table `name`, sorted (tables without `ORDER BY` come in any order).
pub fn rows_of(sinks: &[VecSink], name: &str) -> Vec<Vec<V>> {
    let s = sinks
        .iter()
        .find(|s| s.table == name)
        .unwrap_or_else(|| panic!("no sink for {name}"));
    let mut rows = s.rows.clone();
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

/// The row of `rows` whose first column is the integer `id`.
pub fn row_with_id(rows: &[Vec<V>], id: i64) -> Vec<V> {
    rows.iter()
        .find(|r| r[0] == V::Int(id))
        .unwrap_or_else(|| panic!("row {id}"))
        .clone()
}

/// The rows every backend's test loads from `parent` (a composite primary key `(b, a)`, rows in
/// key order) and `child` (the `id, note` allow-list and a `where`), the same on MySQL,
/// PostgreSQL and SQLite.
pub fn assert_parent_child_rows(sinks: &[VecSink]) {
    assert_eq!(
        rows_of(sinks, "parent"),
        vec![
            vec![V::Int(1), t("x"), t("one")],
            vec![V::Int(1), t("y"), t("three")],
            vec![V::Int(2), t("x"), t("two")],
        ]
    );
    assert_eq!(
        rows_of(sinks, "child"),
        vec![vec![V::Int(1), t("n1")], vec![V::Int(3), t("n3")]]
    );
}

/// The environment variable, or a panic telling how to run the tests.
pub fn env_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} not set: run ./scripts/test (or source the test env file of scripts/testenv)"
        ),
    }
}

/// A fresh database on the test server of `backend` (MySQL or PostgreSQL), dropped at the end
/// of the test.
pub struct TestDb {
    backend: Backend,
    pub name: String,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let (name, sql) = match backend {
            Backend::Mysql => {
                let name = unique_name("refract_src_my");
                let sql = format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
                );
                (name, sql)
            }
            _ => {
                let name = unique_name("refract_src_pg");
                let sql = format!("CREATE DATABASE {name}");
                (name, sql)
            }
        };
        admin_sql(backend, &sql).await.expect("create database");
        TestDb { backend, name }
    }

    /// How the documented least-privilege source user (`scripts/testenv`), what Refract
    /// connects as, reaches this database.
    pub fn params(&self) -> SourceParams {
        let var = match self.backend {
            Backend::Mysql => "REFRACT_TEST_MYSQL_SOURCE_URL",
            _ => "REFRACT_TEST_PG_SOURCE_URL",
        };
        ServerUrl::from_env(var).source_params(self.backend, Some(&self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (backend, name) = (self.backend, self.name.clone());
        let sql = match backend {
            Backend::Mysql => format!("DROP DATABASE IF EXISTS `{name}`"),
            _ => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        };
        // A thread of its own: the test's runtime may be the one being dropped.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin_sql(backend, &sql))
        })
        .join();
    }
}

/// The admin of the test MariaDB server (`REFRACT_TEST_MYSQL_URL`), in database `db`.
pub async fn mysql_admin(db: Option<&str>) -> mysql_async::Conn {
    let url = env_url("REFRACT_TEST_MYSQL_URL");
    let opts = mysql_async::Opts::from_url(&url).expect("REFRACT_TEST_MYSQL_URL");
    let opts = mysql_async::OptsBuilder::from_opts(opts).db_name(db.map(str::to_string));
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to the test MariaDB server")
}

/// The admin of the test PostgreSQL server (`REFRACT_TEST_PG_URL`), in database `db`.
pub async fn pg_admin(db: Option<&str>) -> tokio_postgres::Client {
    let url = env_url("REFRACT_TEST_PG_URL");
    let mut cfg = tokio_postgres::Config::from_str(&url).expect("REFRACT_TEST_PG_URL");
    if let Some(db) = db {
        cfg.dbname(db);
    }
    let (c, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(conn);
    c
}

/// `sql` as the test server's admin, outside any database.
async fn admin_sql(backend: Backend, sql: &str) -> Result<(), String> {
    match backend {
        Backend::Mysql => {
            let mut c = mysql_admin(None).await;
            let done = mysql_async::prelude::Queryable::query_drop(&mut c, sql).await;
            let _ = c.disconnect().await;
            done.map_err(|e| e.to_string())
        }
        _ => pg_admin(None)
            .await
            .batch_execute(sql)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// The connection test of the server at `url`, not about one database: it passed; the report
/// and its `availableSchemas`.
pub async fn connection_ok(backend: Backend, url: &str) -> (TestConnectionReport, Vec<String>) {
    let p = ServerUrl::parse(url).source_params(backend, None);
    let report = refract_sources::test_connection(&p, Duration::from_secs(5)).await;
    assert!(report.ok, "{:?}", report.error);
    let schemas = report.available_schemas.clone().expect("availableSchemas");
    (report, schemas)
}

/// A database name no other test run uses.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// Days since 1970-01-01.
pub fn days(y: i32, m: u32, d: u32) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// Microseconds since 1970-01-01T00:00:00.
pub fn micros(y: i32, m: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
    i64::from(days(y, m, d)) * 86_400_000_000 + ((h * 60 + mi) * 60 + s) * 1_000_000 + us
}

/// Microseconds of a time of day.
pub fn tod(h: i64, mi: i64, s: i64, us: i64) -> i64 {
    ((h * 60 + mi) * 60 + s) * 1_000_000 + us
}

/// A local TCP port that accepts connections and never answers (a hung server).
pub fn silent_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// A local TCP port nobody listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// The wrong password the connection tests log in with (it must never show in an error).
pub const WRONG_PASSWORD: &str = "wrong-secret-4711";

/// A connection test of `p` that must fail; returns its error and how long it took.
pub async fn failed_connection_test(p: &SourceParams, timeout: Duration) -> (String, Duration) {
    let t = Instant::now();
    let report = refract_sources::test_connection(p, timeout).await;
    assert!(!report.ok);
    (report.error.expect("error"), t.elapsed())
}

/// A connection test of `p` logging in with [`WRONG_PASSWORD`]: it fails and its error does not
/// show the password. Returns the error (its wording is the backend's).
pub async fn wrong_password_error(p: &mut SourceParams) -> String {
    p.password = Some(WRONG_PASSWORD.into());
    let (err, _) = failed_connection_test(p, Duration::from_secs(5)).await;
    assert!(!err.contains(WRONG_PASSWORD), "{err}");
    err
}

/// Connection tests of `p` against servers that cannot answer: a closed port fails at once,
/// saying so; a server that accepts and never answers is cut off by the timeout. Returns the
/// error of the second (its wording is the backend's).
pub async fn unreachable_server_error(mut p: SourceParams) -> String {
    p.port = closed_port();
    let (err, took) = failed_connection_test(&p, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(err.contains("cannot reach"), "{err}");

    let (_listener, port) = silent_port();
    p.port = port;
    let (err, took) = failed_connection_test(&p, Duration::from_secs(1)).await;
    assert!(took < Duration::from_millis(2500), "{took:?}");
    err
}
