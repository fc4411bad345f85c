//! What a change stream yields ([`ChangeEvent`] rows of [`ChangeRow`]), how it fails
//! ([`CdcError`]), its names ([`CdcOptions`]), and the helpers both decoders share.

use refract_schema::{Manifest, Row, RowSink, TableManifest, Value, ValueRef};

use crate::{SourceError, SourcePosition};

/// A streamed row in manifest column order. `None` marks a column the source did not send
/// because the update did not change it (PostgreSQL: a large, TOASTed value); its value is the
/// row's current one, which only a re-read ([`super::fetch_rows_by_key`]) can tell.
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
