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
//! [`load_tables`] (with [`LoadOptions::snapshot`]) so the load and the change stream meet exactly at the slot's
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
mod model;
mod mysql;
mod postgres;
mod source_error;
mod sqlite;
mod tls;
mod types;

pub(crate) use model::table_warning;
pub use model::{
    BinlogReadiness, ExportedSnapshot, LoadProgress, LogicalReadiness, SourceParams,
    SourcePosition, TestConnectionReport,
};
pub use source_error::SourceError;
pub use tls::{parse_root_cert, SourceTls, SslMode, MAX_ROOT_CERT_BYTES};

use std::sync::Arc;
use std::time::Duration;

use refract_schema::{Backend, Manifest, RowSink, SourceSchema};

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

/// How [`load_tables`] reads.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'a> {
    /// Connections reading tables side by side (clamped to 1 ..= the number of tables).
    pub parallelism: usize,
    /// Counters the caller may watch while the load runs.
    pub progress: Arc<LoadProgress>,
    /// PostgreSQL only: read inside a snapshot another session exported and keeps alive until
    /// the load returns (see [`ExportedSnapshot`]); every load connection imports it with `SET
    /// TRANSACTION SNAPSHOT` and the position returned is `snapshot.lsn`. `None`: the load takes
    /// a snapshot of its own.
    pub snapshot: Option<&'a ExportedSnapshot>,
}

impl LoadOptions<'_> {
    /// Over `parallelism` connections, in a snapshot of its own, progress not watched.
    pub fn parallel(parallelism: usize) -> Self {
        LoadOptions {
            parallelism,
            ..Default::default()
        }
    }
}

/// Load every table of `manifest` into the sinks (one per table, in manifest order), reading all
/// tables inside one consistent source snapshot, several tables at once over
/// `options.parallelism` connections, streaming rows without buffering a result. Returns the
/// sinks and the source position of the snapshot.
///
/// Each table is read with `SELECT <manifest columns> FROM <table> [WHERE <where_sql>]`. When a
/// sink's `end_row` returns `false`, every reader stops and the result is
/// [`SourceError::Stopped`]. A `snapshot` for another backend than PostgreSQL is
/// [`SourceError::Other`].
pub async fn load_tables<S: RowSink + Send + 'static>(
    params: &SourceParams,
    manifest: &Manifest,
    sinks: Vec<S>,
    options: LoadOptions<'_>,
) -> Result<(Vec<S>, SourcePosition), SourceError> {
    if options.snapshot.is_some() && params.backend != Backend::Postgres {
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
    let parallelism = options.parallelism.clamp(1, manifest.tables.len().max(1));
    let state = load::LoadState::new(params, manifest, sinks, options.progress);
    let position = match params.backend {
        Backend::Mysql => mysql::load(&state, parallelism).await,
        Backend::Postgres => postgres::load(&state, parallelism, options.snapshot).await,
        Backend::Sqlite => sqlite::load(&state).await,
        Backend::Mssql => Err(unsupported(params.backend)),
    };
    let loaded = position.and_then(|position| Ok((state.finish()?, position)));
    loaded.map_err(|e| e.scrubbed(params))
}

fn unsupported(backend: Backend) -> SourceError {
    SourceError::Other(format!(
        "{} sources are accepted by the API but this build has no driver for them",
        backend.as_str()
    ))
}
