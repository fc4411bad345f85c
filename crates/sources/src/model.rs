//! The crate's vocabulary: where a source is ([`SourceParams`]) and what the checks, loads and
//! change streams report ([`TestConnectionReport`], readiness, [`LoadProgress`],
//! [`SourcePosition`], [`ExportedSnapshot`]). Re-exported at the crate root.

use std::sync::atomic::AtomicU64;

use refract_schema::Backend;
use serde::Serialize;

use crate::tls::SourceTls;

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

impl SourceParams {
    /// The SQLite database file at `path` (its `main` schema): the only thing SQLite needs.
    pub fn sqlite_file(path: &std::path::Path) -> SourceParams {
        SourceParams {
            backend: Backend::Sqlite,
            host: path.to_string_lossy().into_owned(),
            port: 0,
            user: String::new(),
            password: None,
            database: Some("main".into()),
            pg_schema: None,
            tls: SourceTls::default(),
        }
    }
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
