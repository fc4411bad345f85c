//! Loading a snapshot: one [`TableBuilder`] per manifest table behind a memory-capped
//! [`RowSink`], the source streaming into them, then finishing the tables off the async runtime
//! and reusing every table whose content did not change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use refract_schema::{RowSink, ValueRef};
use refract_storage::{Snapshot, Table, TableBuilder};

/// Rows between two measurements of a builder's memory (a power of two).
const CHECK_EVERY_ROWS: u64 = 1024;

/// Memory accounting shared by the sinks of one load.
#[derive(Debug)]
pub(crate) struct CapShared {
    cap_bytes: Option<usize>,
    per_table: Vec<AtomicUsize>,
    exceeded: AtomicBool,
    refused: AtomicBool,
}

impl CapShared {
    pub(crate) fn new(cap_bytes: Option<usize>, tables: usize) -> Arc<CapShared> {
        Arc::new(CapShared {
            cap_bytes,
            per_table: (0..tables).map(|_| AtomicUsize::new(0)).collect(),
            exceeded: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        })
    }

    /// The cap was passed (the load must not be published).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Storage itself refused rows.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Bytes measured so far, all tables together.
    pub(crate) fn total(&self) -> usize {
        self.per_table
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

/// A [`TableBuilder`] that stops the load when all tables together pass the memory cap.
#[derive(Debug)]
pub(crate) struct CappedSink {
    builder: TableBuilder,
    index: usize,
    rows: u64,
    shared: Arc<CapShared>,
}

impl CappedSink {
    pub(crate) fn new(builder: TableBuilder, index: usize, shared: Arc<CapShared>) -> CappedSink {
        CappedSink {
            builder,
            index,
            rows: 0,
            shared,
        }
    }

    fn measure(&mut self) -> bool {
        let Some(cap) = self.shared.cap_bytes else {
            return true;
        };
        self.shared.per_table[self.index].store(self.builder.memory_bytes(), Ordering::Relaxed);
        if self.shared.total() > cap {
            self.shared.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn into_builder(mut self) -> (TableBuilder, bool) {
        let ok = self.measure();
        (self.builder, ok)
    }
}

impl RowSink for CappedSink {
    #[inline]
    fn push(&mut self, column: usize, value: ValueRef<'_>) {
        self.builder.push(column, value);
    }

    #[inline]
    fn end_row(&mut self) -> bool {
        if !self.builder.end_row() {
            self.shared.refused.store(true, Ordering::Relaxed);
            return false;
        }
        self.rows += 1;
        if self.shared.exceeded.load(Ordering::Relaxed) {
            return false;
        }
        if self.rows & (CHECK_EVERY_ROWS - 1) == 0 {
            return self.measure();
        }
        true
    }
}

/// What finishing the builders produced.
pub(crate) struct Finished {
    pub(crate) tables: Vec<Arc<Table>>,
    pub(crate) reused: Vec<String>,
    pub(crate) reloaded: Vec<String>,
    pub(crate) memory_bytes: usize,
}

/// Finish every builder (CPU work: call from a blocking thread) and keep the current snapshot's
/// table wherever the new one has the same manifest and the same content, so unchanged tables
/// stay shared between versions instead of being held twice.
pub(crate) fn finish(builders: Vec<TableBuilder>, current: Option<&Snapshot>) -> Finished {
    let mut out = Finished {
        tables: Vec::with_capacity(builders.len()),
        reused: vec![],
        reloaded: vec![],
        memory_bytes: 0,
    };
    for builder in builders {
        let table = builder.finish();
        let name = table.manifest.api_name.clone();
        let old = current.and_then(|s| s.table(&name)).filter(|old| {
            *old.manifest == *table.manifest
                && old.row_count() == table.row_count()
                && old.fingerprint() == table.fingerprint()
        });
        let table = match old {
            Some(old) => {
                out.reused.push(name);
                old.clone()
            }
            None => {
                out.reloaded.push(name);
                Arc::new(table)
            }
        };
        out.memory_bytes += table.memory_bytes();
        out.tables.push(table);
    }
    out
}

/// Every table of `manifest` read once from the source into storage tables, over
/// `parallelism` connections in one snapshot, without the engine's memory cap or table reuse:
/// what the benchmarks and the tests compare a running engine with.
pub async fn load_tables_once(
    params: &refract_sources::SourceParams,
    manifest: &refract_schema::Manifest,
    parallelism: usize,
) -> Result<Vec<Table>, refract_sources::SourceError> {
    let builders = manifest
        .tables
        .iter()
        .map(|t| TableBuilder::new(Arc::new(t.clone())))
        .collect();
    let options = refract_sources::LoadOptions::parallel(parallelism);
    let (builders, _) = refract_sources::load_tables(params, manifest, builders, options).await?;
    Ok(builders.into_iter().map(TableBuilder::finish).collect())
}
