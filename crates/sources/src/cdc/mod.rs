//! Change data capture: row changes streamed from a source's change log, starting at the
//! [`SourcePosition`] a load returned.
//!
//! | backend | mode | transport | positions |
//! |---|---|---|---|
//! | MySQL / MariaDB | `binlog` | `mysql_async` binlog dump (`COM_BINLOG_DUMP`, checksums on, 1 s heartbeats) | file/offset of the last commit; MariaDB `D-S-N` GTIDs (per domain) or the last MySQL GTID, reported |
//! | PostgreSQL | `logical` | hand-written `START_REPLICATION … LOGICAL` (CopyBoth) over a `replication=database` connection, `pgoutput` v1 | LSN; standby status updates confirm applied LSNs so the server frees WAL |
//!
//! A stream yields [`ChangeEvent`]s in commit order: row events of one transaction, then its
//! [`ChangeEvent::Commit`] with the position just after it. Rows are in manifest column order,
//! already decoded to the manifest's column types (the same decoding as the loaders), so the
//! engine can apply them to its tables without knowing the source.
//!
//! Only tables of the manifest are reported. DDL on an exposed table, and any change of its
//! shape the stream notices, is a [`ChangeEvent::TableChanged`]; the engine reloads the table.
//!
//! ```no_run
//! # async fn f(params: refract_sources::SourceParams, manifest: std::sync::Arc<refract_schema::Manifest>,
//! #            pos: refract_sources::SourcePosition) -> Result<(), refract_sources::cdc::CdcError> {
//! use refract_sources::cdc::{open_stream, CdcOptions, ChangeEvent};
//! let mut stream = open_stream(&params, manifest, &pos, &CdcOptions::for_database("shop", 1001)).await?;
//! let confirmer = stream.confirmer();
//! while let ChangeEvent::Commit { position, .. } = stream.next().await? {
//!     confirmer.confirm(&position);
//! }
//! # Ok(()) }
//! ```

pub(crate) mod binlog;
pub(crate) mod pgoutput;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use refract_schema::{Backend, Manifest, Row, RowSink, TableManifest, Value, ValueRef};

use crate::{SourceError, SourceParams, SourcePosition};

pub use pgoutput::{
    create_logical_slot, drop_logical_slot, logical_status, LogicalSlot, LogicalStatus,
};

/// A streamed row in manifest column order. `None` marks a column the source did not send
/// because the update did not change it (PostgreSQL: a large, TOASTed value); its value is the
/// row's current one, which only a re-read ([`fetch_rows_by_key`]) can tell.
pub type ChangeRow = Vec<Option<Value>>;

/// One event of a change stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    /// A row was inserted into manifest table `table` (index into `manifest.tables`).
    Insert {
        /// Manifest table index.
        table: usize,
        /// The new row.
        row: ChangeRow,
    },
    /// A row was updated; `before` holds at least the old primary key (binlog: the whole old
    /// row; PostgreSQL: the old key when it changed, else the new row's key).
    Update {
        /// Manifest table index.
        table: usize,
        /// The old row (or its key columns, other values NULL).
        before: ChangeRow,
        /// The new row.
        after: ChangeRow,
    },
    /// A row was deleted; `before` holds at least its primary key.
    Delete {
        /// Manifest table index.
        table: usize,
        /// The old row (or its key columns, other values NULL).
        before: ChangeRow,
    },
    /// These tables were truncated.
    Truncate {
        /// Manifest table indexes.
        tables: Vec<usize>,
    },
    /// DDL (or a shape change the stream noticed) on an exposed table: reload it.
    TableChanged {
        /// Manifest table index.
        table: usize,
        /// What happened, for the log.
        reason: String,
    },
    /// The end of a source transaction: everything before it is one atomic unit.
    Commit {
        /// The position just after this transaction (resume from here).
        position: SourcePosition,
        /// Commit time on the source, ms since the Unix epoch (binlog: second precision).
        committed_at_ms: Option<i64>,
    },
    /// Nothing happened; the stream is alive (binlog heartbeat, PostgreSQL keepalive).
    Heartbeat,
}

/// Why a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdcError {
    /// The requested position is no longer available on the source (binlog purged, slot
    /// dropped): resume is impossible, reload fully.
    #[error("the replication position is gone: {0}")]
    PositionGone(String),
    /// The source cannot stream at all (wrong settings, missing rights): retrying will not help
    /// until someone changes the source. The message says what to do.
    #[error("the source cannot stream changes: {0}")]
    NotReady(String),
    /// Connection lost, timeout, or any other error: reconnect.
    #[error("{0}")]
    Source(String),
}

impl From<SourceError> for CdcError {
    fn from(e: SourceError) -> Self {
        CdcError::Source(e.to_string())
    }
}

/// Names and ids of a database's replication bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcOptions {
    /// Binlog: the replica `server_id` (unique among the source's replicas).
    pub server_id: u32,
    /// PostgreSQL: the logical replication slot.
    pub slot: String,
    /// PostgreSQL: the publication.
    pub publication: String,
}

impl CdcOptions {
    /// The per-database names: slot and publication `refract_<name>` (lower case, characters
    /// other than `[a-z0-9_]` replaced by `_`, at most 63 bytes).
    pub fn for_database(name: &str, server_id: u32) -> CdcOptions {
        let mut clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        clean.truncate(54);
        let n = format!("refract_{clean}");
        CdcOptions {
            server_id,
            slot: n.clone(),
            publication: n,
        }
    }
}

/// A running change stream. Dropping it closes the connection (a PostgreSQL slot stays).
pub struct CdcStream {
    inner: Inner,
}

enum Inner {
    Binlog(Box<binlog::BinlogCdc>),
    Logical(Box<pgoutput::LogicalCdc>),
}

impl std::fmt::Debug for CdcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Binlog(_) => "CdcStream(binlog)",
            Inner::Logical(_) => "CdcStream(logical)",
        })
    }
}

impl CdcStream {
    /// The next event; waits until one arrives. Cancel-safe only between events: drop the
    /// stream after a cancelled call.
    pub async fn next(&mut self) -> Result<ChangeEvent, CdcError> {
        match &mut self.inner {
            Inner::Binlog(b) => b.next().await,
            Inner::Logical(l) => l.next().await,
        }
    }

    /// A handle to confirm applied positions while another task reads the stream.
    pub fn confirmer(&self) -> Confirmer {
        match &self.inner {
            Inner::Binlog(_) => Confirmer(Arc::new(AtomicU64::new(0))),
            Inner::Logical(l) => Confirmer(l.confirmed.clone()),
        }
    }
}

/// Tells the source which position is applied (PostgreSQL: sent in the next standby status
/// update, at least every 10 s, so the server may free WAL; binlog: nothing to tell).
#[derive(Debug, Clone)]
pub struct Confirmer(Arc<AtomicU64>);

impl Confirmer {
    /// Everything up to `position` is applied (and published).
    pub fn confirm(&self, position: &SourcePosition) {
        if let SourcePosition::Lsn { lsn } = position {
            if let Some(v) = pgoutput::parse_lsn(lsn) {
                self.0.fetch_max(v, Ordering::Relaxed);
            }
        }
    }
}

/// Open a change stream from `position` (a load's or a previous commit's).
///
/// PostgreSQL: streams from slot `options.slot` with publication `options.publication`; use
/// [`create_logical_slot`] first (its exported snapshot is where the load must read) and
/// [`LogicalSlot::start`] to stream on the connection that created the slot, or this function
/// to resume on a new connection.
pub async fn open_stream(
    params: &SourceParams,
    manifest: Arc<Manifest>,
    position: &SourcePosition,
    options: &CdcOptions,
) -> Result<CdcStream, CdcError> {
    let inner = match params.backend {
        Backend::Mysql => Inner::Binlog(Box::new(
            binlog::BinlogCdc::open(params, manifest, position, options.server_id).await?,
        )),
        Backend::Postgres => {
            let lsn = match position {
                SourcePosition::Lsn { lsn } => lsn.clone(),
                other => {
                    return Err(CdcError::Source(format!(
                        "not a PostgreSQL position: {other:?}"
                    )))
                }
            };
            let publications = pgoutput::publication_names(params, &manifest, options).await?;
            let conn = pgoutput::ReplConn::connect(params).await?;
            Inner::Logical(Box::new(
                pgoutput::LogicalCdc::start(
                    conn,
                    pgoutput::schema_of(params, &manifest),
                    manifest,
                    &options.slot,
                    &publications,
                    &lsn,
                )
                .await?,
            ))
        }
        other => {
            return Err(CdcError::NotReady(format!(
                "{} sources have no change stream in this build",
                other.as_str()
            )))
        }
    };
    Ok(CdcStream { inner })
}

/// Re-read rows of manifest table `table` by primary key: `SELECT <columns> FROM t WHERE
/// (<pk>) IN (<keys>) [AND (<where_sql>)]`. Returns the rows that exist and match the table's
/// `where` predicate, in manifest column order. `keys` are primary-key values in key order.
///
/// The engine uses it for tables with a `where` predicate (a streamed row may start or stop
/// matching) and for PostgreSQL updates with unchanged TOASTed values.
pub async fn fetch_rows_by_key(
    params: &SourceParams,
    manifest: &Manifest,
    table: usize,
    keys: &[Row],
) -> Result<Vec<Row>, SourceError> {
    let t = manifest
        .tables
        .get(table)
        .ok_or_else(|| SourceError::Other(format!("no table {table} in the manifest")))?;
    if t.primary_key.is_empty() || keys.is_empty() {
        return Ok(vec![]);
    }
    let r = match params.backend {
        Backend::Mysql => binlog::fetch_rows(params, &manifest.database, t, keys).await,
        Backend::Postgres => pgoutput::fetch_rows(params, manifest, t, keys).await,
        other => Err(SourceError::Other(format!(
            "no row fetch for {} sources",
            other.as_str()
        ))),
    };
    r.map_err(|e| e.scrubbed(params))
}

/// A [`RowSink`] that collects rows of owned values.
pub(crate) struct RowBuffer {
    pub(crate) row: Row,
    pub(crate) rows: Vec<Row>,
    width: usize,
}

impl RowBuffer {
    pub(crate) fn new(width: usize) -> RowBuffer {
        RowBuffer {
            row: vec![Value::Null; width],
            rows: vec![],
            width,
        }
    }

    /// Take the current row (and start a fresh one).
    pub(crate) fn take_row(&mut self) -> Row {
        std::mem::replace(&mut self.row, vec![Value::Null; self.width])
    }
}

impl RowSink for RowBuffer {
    fn push(&mut self, column: usize, value: ValueRef<'_>) {
        if let Some(c) = self.row.get_mut(column) {
            *c = Value::from_ref(value);
        }
    }

    fn end_row(&mut self) -> bool {
        let r = self.take_row();
        self.rows.push(r);
        true
    }
}

/// Index of the manifest table with this source name.
pub(crate) fn table_index(manifest: &Manifest, source_name: &str) -> Option<usize> {
    manifest
        .tables
        .iter()
        .position(|t| t.source_name == source_name)
}

/// Manifest column index of each source column name (`None`: not exposed).
pub(crate) fn column_map<'a>(
    table: &TableManifest,
    names: impl Iterator<Item = &'a str>,
) -> Vec<Option<usize>> {
    names
        .map(|n| table.columns.iter().position(|c| c.source_name == n))
        .collect()
}
