//! This crate provides everything that talks to a source database: connection checks
//! ([`test_connection`]), introspection ([`introspect`]) and snapshot loading ([`load_tables`]).
//!
//! **Architecture invariant:** nothing here writes to a source's data; the only statements that
//! change anything on a source are replication bookkeeping (slots, publications) in CDC modes.
#![deny(missing_docs)]

use std::sync::atomic::AtomicU64;
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
pub async fn test_connection(params: &SourceParams, timeout: Duration) -> TestConnectionReport {
    let _ = (params, timeout);
    TestConnectionReport { ok: false, error: Some("not implemented".into()), ..Default::default() }
}

/// Introspect the tables of `params.database`.
pub async fn introspect(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let _ = params;
    Err(SourceError::Other("not implemented".into()))
}

/// Load every table of `manifest` into the sinks (one per table, in manifest order), reading all
/// tables inside one consistent source snapshot, several tables at once over `parallelism`
/// connections, streaming rows without buffering a result. Returns the sinks and the source
/// position of the snapshot.
pub async fn load_tables<S: RowSink + Send + 'static>(
    params: &SourceParams,
    manifest: &Manifest,
    sinks: Vec<S>,
    parallelism: usize,
    progress: std::sync::Arc<LoadProgress>,
) -> Result<(Vec<S>, SourcePosition), SourceError> {
    let _ = (params, manifest, parallelism, progress);
    let _ = sinks;
    Err(SourceError::Other("not implemented".into()))
}
