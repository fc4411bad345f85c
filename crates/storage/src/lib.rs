//! This crate provides the engine's in-memory data: typed columns with null bitmaps,
//! primary-key and foreign-key hash indexes, and immutable [`Snapshot`]s.
#![deny(missing_docs)]

use std::sync::Arc;

use refract_schema::{Manifest, RowSink, TableManifest, ValueRef};

/// One loaded table: columns, indexes, row count. Immutable once built.
#[derive(Debug)]
pub struct Table {
    /// The manifest entry this table was built from.
    pub manifest: Arc<TableManifest>,
}

impl Table {
    /// Number of rows.
    pub fn row_count(&self) -> usize {
        0
    }
    /// Bytes of memory held by columns and indexes.
    pub fn memory_bytes(&self) -> usize {
        0
    }
    /// A hash of the content; equal content gives an equal fingerprint.
    pub fn fingerprint(&self) -> u64 {
        0
    }
}

/// Builds a [`Table`] from streamed rows.
#[derive(Debug)]
pub struct TableBuilder {
    manifest: Arc<TableManifest>,
}

impl TableBuilder {
    /// A builder for the table described by `manifest`.
    pub fn new(manifest: Arc<TableManifest>) -> Self {
        TableBuilder { manifest }
    }
    /// Bytes used so far (for the memory cap).
    pub fn memory_bytes(&self) -> usize {
        0
    }
    /// Finish: build indexes and freeze.
    pub fn finish(self) -> Table {
        Table { manifest: self.manifest }
    }
}

impl RowSink for TableBuilder {
    fn push(&mut self, _column: usize, _value: ValueRef<'_>) {}
    fn end_row(&mut self) -> bool {
        true
    }
}

/// An immutable set of tables that a query sees as one version.
#[derive(Debug)]
pub struct Snapshot {
    /// The manifest the tables follow.
    pub manifest: Arc<Manifest>,
    /// Tables in manifest order.
    pub tables: Vec<Arc<Table>>,
}

impl Snapshot {
    /// The table with this API name.
    pub fn table(&self, api_name: &str) -> Option<&Arc<Table>> {
        self.tables.iter().find(|t| t.manifest.api_name == api_name)
    }
}
