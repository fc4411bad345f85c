//! This crate provides everything that talks to a source database: connection checks
//! ([`test_connection`]), introspection ([`introspect`]) and snapshot loading ([`load_tables`]).
//!
//! **Architecture invariant:** nothing here writes to a source's data; the only statements that
//! change anything on a source are replication bookkeeping (slots, publications) in CDC modes.
//!
//! | backend | driver | snapshot | position |
//! |---|---|---|---|
//! | MySQL / MariaDB | `mysql_async`, binary protocol | `FLUSH TABLES WITH READ LOCK` + `START TRANSACTION WITH CONSISTENT SNAPSHOT` per connection (fallback: one connection) | binlog file/offset + GTID |
//! | PostgreSQL | `tokio-postgres`, `COPY … TO STDOUT` | exported snapshot shared by every connection | LSN |
//! | SQLite | `rusqlite` (on blocking threads) | one read transaction | none |
//!
//! Type mapping rules are in `docs/types.md` and [`types`](crate) (module-private).
//!
//! PostgreSQL CDC: create the logical slot with an exported snapshot, then load with
//! [`load_tables_in_snapshot`] so the load and the change stream meet exactly at the slot's
//! consistent point.
//!
//! ```no_run
//! # async fn demo(params: refract_sources::SourceParams) -> Result<(), refract_sources::SourceError> {
//! let report = refract_sources::test_connection(&params, std::time::Duration::from_secs(5)).await;
//! assert!(report.ok, "{:?}", report.error);
//! let schema = refract_sources::introspect(&params).await?;
//! # let _ = schema; Ok(()) }
//! ```
#![deny(missing_docs)]

mod arrays;
pub mod cdc;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod load;
mod mysql;
mod postgres;
mod sqlite;
mod tls;
mod types;

pub use tls::{parse_root_cert, SourceTls, SslMode, MAX_ROOT_CERT_BYTES};

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use refract_schema::{Backend, Manifest, RowSink, SourceSchema};
use serde::Serialize;

/// Where and how to reach a source. The password is held in memory only.
#[derive(Clone)]
pub struct SourceParams {
    /// Server kind.
    pub backend: Backend,
    /// Host name or IP (for SQLite: the database file path).
    pub host: String,
    /// TCP port (ignored for SQLite).
    pub port: u16,
    /// Login user (ignored for SQLite).
    pub user: String,
    /// Login password.
    pub password: Option<String>,
    /// Database to read: MySQL schema, PostgreSQL database, `main` for SQLite. `None` for checks
    /// that are not about one database.
    pub database: Option<String>,
    /// PostgreSQL schema holding the tables (default `public`).
    pub pg_schema: Option<String>,
    /// TLS mode and CA (ignored for SQLite).
    pub tls: SourceTls,
}

impl std::fmt::Debug for SourceParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceParams")
            .field("backend", &self.backend)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("pg_schema", &self.pg_schema)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A failure talking to a source. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached (DNS, refused, timeout).
    #[error("cannot reach the source: {0}")]
    Unreachable(String),
    /// The server refused the login or a statement for lack of rights.
    #[error("the source rejected the request: {0}")]
    Rejected(String),
    /// The load stopped before its end because a sink refused more rows (memory cap).
    #[error("the load stopped: {0}")]
    Stopped(String),
    /// TLS could not be set up as the connection's `sslMode` asks (certificate not trusted,
    /// host name mismatch, server without TLS, server requiring TLS).
    #[error("TLS to the source failed: {0}")]
    Tls(String),
    /// Anything else the server or driver reported.
    #[error("source error: {0}")]
    Other(String),
}

/// Result of `test-connection` (field names are the API's).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestConnectionReport {
    /// The login worked.
    pub ok: bool,
    /// Why not, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The connection was encrypted (TLS); absent when the login failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// The TLS version used (`TLSv1.3`), when TLS was used and the server says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Round-trip of a trivial query, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Sum of data sizes of the visible schemas, in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_size_gb: Option<f64>,
    /// Visible schemas (MySQL) or databases (PostgreSQL), without system ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_schemas: Option<Vec<String>>,
    /// MySQL/MariaDB binlog readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogReadiness>,
    /// PostgreSQL logical replication readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical: Option<LogicalReadiness>,
    /// What works but will not be as expected, for a person: tables without a primary key,
    /// key constraints or tables the user cannot read (at most 20 names each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Names shown in a warning list before "and N more".
const WARNING_NAMES: usize = 20;

/// `count` tables (`names`, at most [`WARNING_NAMES`] of them) followed by `what`.
pub(crate) fn table_warning(names: &[String], total: usize, what: &str) -> Option<String> {
    if total == 0 {
        return None;
    }
    let shown = names
        .iter()
        .take(WARNING_NAMES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if total > WARNING_NAMES {
        format!(" and {} more", total - WARNING_NAMES)
    } else {
        String::new()
    };
    Some(format!("{total} table(s) {what}: {shown}{more}"))
}

/// Whether a MySQL/MariaDB source can feed `binlog` mode.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BinlogReadiness {
    /// `log_bin` is ON.
    pub log_bin: bool,
    /// `binlog_format`.
    pub format: Option<String>,
    /// The server's own `server_id`.
    pub server_id: Option<u64>,
    /// All prerequisites met.
    pub ready: bool,
    /// Each missing setting or grant.
    pub issues: Vec<String>,
}

/// Whether a PostgreSQL source can feed `logical` mode.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogicalReadiness {
    /// `wal_level`.
    pub wal_level: Option<String>,
    /// All prerequisites met.
    pub ready: bool,
    /// Each missing setting or right.
    pub issues: Vec<String>,
}

/// Rows loaded so far, shared with `/stats` while a load runs.
#[derive(Debug, Default)]
pub struct LoadProgress {
    /// Rows read from the source so far, all tables together.
    pub rows: AtomicU64,
    /// Tables finished.
    pub tables_done: AtomicU64,
}

/// Where the source's change log stood when the load's snapshot was taken; CDC starts there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourcePosition {
    /// MySQL/MariaDB binlog file and offset (and GTID set when the server has one).
    Binlog {
        /// Binlog file name.
        file: String,
        /// Offset in the file.
        position: u64,
        /// GTID set / MariaDB GTID position, when known.
        gtid: Option<String>,
    },
    /// PostgreSQL LSN.
    Lsn {
        /// `X/Y` text form.
        lsn: String,
    },
    /// No change log (SQLite, or not requested).
    None,
}

/// Connect, log in and describe the server, within `timeout`. Never fails: problems are in
/// the report's `error`.
///
/// With `database: None`, MySQL connects without a default schema and PostgreSQL to the
/// `postgres` database (then `template1`). PostgreSQL's `availableSchemas` lists the databases
/// the user may connect to, `postgres` included (it is an ordinary database that often holds
/// tables); `template0`/`template1` are left out.
pub async fn test_connection(params: &SourceParams, timeout: Duration) -> TestConnectionReport {
    let run = async {
        match params.backend {
            Backend::Mysql => mysql::test_connection(params, timeout).await,
            Backend::Postgres => postgres::test_connection(params, timeout).await,
            Backend::Sqlite => sqlite::test_connection(params).await,
            Backend::Mssql => Err(unsupported(params.backend)),
        }
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(error::timed_out(params, "connecting to", timeout)),
    };
    match result {
        Ok(report) => report,
        Err(e) => TestConnectionReport {
            ok: false,
            error: Some(error::scrub(e.to_string(), params)),
            ..Default::default()
        },
    }
}

/// Introspect the tables of `params.database` (PostgreSQL: of the schema `params.pg_schema`,
/// default `public`, in that database).
pub async fn introspect(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let r = match params.backend {
        Backend::Mysql => mysql::introspect(params).await,
        Backend::Postgres => postgres::introspect(params).await,
        Backend::Sqlite => sqlite::introspect(params).await,
        Backend::Mssql => Err(unsupported(params.backend)),
    };
    r.map_err(|e| e.scrubbed(params))
}

/// Load every table of `manifest` into the sinks (one per table, in manifest order), reading all
/// tables inside one consistent source snapshot, several tables at once over `parallelism`
/// connections, streaming rows without buffering a result. Returns the sinks and the source
/// position of the snapshot.
///
/// Each table is read with `SELECT <manifest columns> FROM <table> [WHERE <where_sql>]`. When a
/// sink's `end_row` returns `false`, every reader stops and the result is
/// [`SourceError::Stopped`].
pub async fn load_tables<S: RowSink + Send + 'static>(
    params: &SourceParams,
    manifest: &Manifest,
    sinks: Vec<S>,
    parallelism: usize,
    progress: Arc<LoadProgress>,
) -> Result<(Vec<S>, SourcePosition), SourceError> {
    if sinks.len() != manifest.tables.len() {
        return Err(SourceError::Other(format!(
            "{} sinks for {} tables",
            sinks.len(),
            manifest.tables.len()
        )));
    }
    let parallelism = parallelism.clamp(1, manifest.tables.len().max(1));
    let r = match params.backend {
        Backend::Mysql => mysql::load(params, manifest, sinks, parallelism, progress).await,
        Backend::Postgres => {
            postgres::load(params, manifest, sinks, parallelism, progress, None).await
        }
        Backend::Sqlite => sqlite::load(params, manifest, sinks, progress).await,
        Backend::Mssql => Err(unsupported(params.backend)),
    };
    r.map_err(|e| e.scrubbed(params))
}

/// A PostgreSQL snapshot exported by another session that keeps it alive while the load runs:
/// typically the replication connection that created the logical slot with `EXPORT_SNAPSHOT`,
/// so that the change stream starts exactly where the load's snapshot ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSnapshot {
    /// The snapshot name (`00000003-00000002-1`), as `pg_export_snapshot()` or
    /// `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` returned it.
    pub name: String,
    /// The LSN the snapshot corresponds to (the slot's `consistent_point`), `X/Y`; returned as
    /// the load's position.
    pub lsn: String,
}

/// [`load_tables`] inside a snapshot exported by another PostgreSQL session (see
/// [`ExportedSnapshot`]); every load connection imports it with `SET TRANSACTION SNAPSHOT`.
/// The position returned is `snapshot.lsn`. Other backends: [`SourceError::Other`].
pub async fn load_tables_in_snapshot<S: RowSink + Send + 'static>(
    params: &SourceParams,
    manifest: &Manifest,
    sinks: Vec<S>,
    parallelism: usize,
    progress: Arc<LoadProgress>,
    snapshot: &ExportedSnapshot,
) -> Result<(Vec<S>, SourcePosition), SourceError> {
    if params.backend != Backend::Postgres {
        return Err(SourceError::Other(format!(
            "an exported snapshot is a PostgreSQL feature; the source is {}",
            params.backend.as_str()
        )));
    }
    if sinks.len() != manifest.tables.len() {
        return Err(SourceError::Other(format!(
            "{} sinks for {} tables",
            sinks.len(),
            manifest.tables.len()
        )));
    }
    let parallelism = parallelism.clamp(1, manifest.tables.len().max(1));
    postgres::load(
        params,
        manifest,
        sinks,
        parallelism,
        progress,
        Some(snapshot),
    )
    .await
    .map_err(|e| e.scrubbed(params))
}

fn unsupported(backend: Backend) -> SourceError {
    SourceError::Other(format!(
        "{} sources are accepted by the API but this build has no driver for them",
        backend.as_str()
    ))
}
