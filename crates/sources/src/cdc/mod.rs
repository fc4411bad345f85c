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
mod event;
pub(crate) mod pgoutput;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use refract_schema::{Backend, Manifest, Row};

use crate::{SourceError, SourceParams, SourcePosition};

pub use event::{CdcError, CdcOptions, ChangeEvent, ChangeRow};
pub use pgoutput::{
    create_logical_slot, drop_logical_slot, logical_status, LogicalSlot, LogicalStatus,
};

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

impl pgoutput::LogicalSlot {
    /// Start streaming on the connection that created the slot, from the snapshot's LSN (this
    /// ends the exported snapshot: load before).
    pub async fn start(self, manifest: Arc<Manifest>) -> Result<CdcStream, CdcError> {
        let l = self.start_logical(manifest).await?;
        Ok(CdcStream {
            inner: Inner::Logical(Box::new(l)),
        })
    }
}
