//! PostgreSQL logical replication (stub, being written).

use std::sync::Arc;

use refract_schema::{Manifest, TableManifest};

use super::{CdcError, CdcOptions, CdcStream, CellRow, ChangeEvent};
use crate::{ExportedSnapshot, SourceError, SourceParams};

pub(crate) struct ReplConn;

impl ReplConn {
    pub(crate) async fn connect(_params: &SourceParams) -> Result<ReplConn, CdcError> {
        Err(CdcError::NotReady("logical replication is not built yet".into()))
    }
}

pub(crate) struct LogicalCdc {
    pub(crate) confirmed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl LogicalCdc {
    pub(crate) async fn start(
        _conn: ReplConn,
        _manifest: Arc<Manifest>,
        _slot: &str,
        _publication: &str,
        _lsn: &str,
    ) -> Result<LogicalCdc, CdcError> {
        Err(CdcError::NotReady("logical replication is not built yet".into()))
    }
    pub(crate) async fn next(&mut self) -> Result<ChangeEvent, CdcError> {
        Err(CdcError::NotReady("logical replication is not built yet".into()))
    }
}

/// A logical slot just created on a replication connection, with its exported snapshot.
pub struct LogicalSlot {
    /// The exported snapshot (valid until [`LogicalSlot::start`]); load inside it.
    pub snapshot: ExportedSnapshot,
    _conn: ReplConn,
}

impl std::fmt::Debug for LogicalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalSlot").field("snapshot", &self.snapshot).finish_non_exhaustive()
    }
}

impl LogicalSlot {
    /// Start streaming on the connection that created the slot, from the snapshot's LSN.
    pub async fn start(self, _manifest: Arc<Manifest>, _options: &CdcOptions) -> Result<CdcStream, CdcError> {
        Err(CdcError::NotReady("logical replication is not built yet".into()))
    }
}

/// Replication bookkeeping of one database on a PostgreSQL source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalStatus {
    /// The slot exists.
    pub slot_exists: bool,
    /// A connection streams from it.
    pub active: bool,
    /// WAL bytes the slot retains (`pg_current_wal_lsn() - restart_lsn`).
    pub retained_wal_bytes: Option<i64>,
    /// The slot's `confirmed_flush_lsn`.
    pub confirmed_flush_lsn: Option<String>,
}

/// Create (or replace) the publication and the slot, exporting a snapshot.
pub async fn create_logical_slot(
    _params: &SourceParams,
    _manifest: &Manifest,
    _options: &CdcOptions,
) -> Result<LogicalSlot, CdcError> {
    Err(CdcError::NotReady("logical replication is not built yet".into()))
}

/// Drop the slot and the publication (absent ones are fine).
pub async fn drop_logical_slot(_params: &SourceParams, _options: &CdcOptions) -> Result<(), CdcError> {
    Ok(())
}

/// The slot's state and retained WAL.
pub async fn logical_status(_params: &SourceParams, _options: &CdcOptions) -> Result<LogicalStatus, SourceError> {
    Ok(LogicalStatus::default())
}

pub(crate) async fn fetch_rows(
    _params: &SourceParams,
    _manifest: &Manifest,
    _table: &TableManifest,
    _keys: &[CellRow],
) -> Result<Vec<CellRow>, SourceError> {
    Ok(vec![])
}
