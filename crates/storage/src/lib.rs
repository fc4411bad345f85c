//! This crate provides the engine's in-memory data: typed columns with null bitmaps,
//! primary-key and foreign-key hash indexes, and immutable [`Snapshot`]s.
//!
//! API CONTRACT (the query crate is written against it):
//! - Row ids are `u32`. [`Table::scan`] yields live row ids in primary-key order (load order for
//!   tables without a primary key).
//! - [`Table::value`] returns the cell as a [`ValueRef`] (`ValueRef::Null` for NULL), borrowing
//!   column memory. Decimals come as `ValueRef::Decimal(mantissa)` at the column's scale.
//! - [`Table::pk_lookup`] finds the row with this primary key.
//! - [`Table::index_lookup`] returns the row ids whose `columns` equal `key`, in primary-key
//!   order, using a hash index. An index exists for the primary key and for the local columns of
//!   every forward relation (foreign keys); for other column sets it is built lazily on first use
//!   (thread-safe) — callers need not care.
//! - Text equality in indexes is exact (byte) equality; case-insensitive columns are the query's
//!   business (it falls back to a filter scan for those).
//!
//! Beyond the contract:
//! - Row ids of a table loaded by [`TableBuilder`] (or [`Table::compact`]ed) are `0..row_count`
//!   in primary-key order. After [`Table::apply`] they are not: deleted rows leave tombstones and
//!   inserted rows take new ids at the end, so ids run up to [`Table::row_id_bound`], and
//!   [`Table::value`] of a tombstoned row still answers its last cells. Size per-row-id arrays
//!   with [`Table::row_id_bound`], never with [`Table::row_count`].
//! - [`Table::apply`] makes a new table version from a [`ChangeBatch`] (change data capture),
//!   sharing every chunk it does not touch with the old version.
//!
//! # Layout
//!
//! Every column is a list of chunks of 4096 cells (all full but the last), each in an `Arc`:
//! integers, dates, times and narrow decimals are frame-of-reference packed (chunk minimum plus
//! 0–8 byte deltas), wide decimals `i128`, floats `f64`, booleans bits, text/JSON/bytes one byte
//! arena per chunk with packed end offsets; a NULL bitmap exists only in chunks with a NULL. The
//! primary-key index is a direct array for dense single-integer keys (auto-increment ids), an
//! open-addressing hash of (key, row id) for other single-integer keys, and an open-addressing
//! hash of row ids otherwise; foreign-key and lazy indexes chain the rows of one key through a
//! per-row `next` array with one hash slot per distinct key. Apart from integer primary keys, no
//! index copies key values: candidates are compared against the columns. Index structures are
//! chunked in `Arc`s too, so a change batch copies only the chunks it writes.
//!
//! Ordering (scan order, and `index_lookup` results) compares cells by value: NULL first,
//! text and bytes by bytes (not by the source's collation), floats by `total_cmp`.
#![deny(missing_docs)]

mod change;
mod chunk;
mod hash;
mod hugepages;
mod index;
mod memo;
mod store;

use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use refract_schema::{ColumnType, Manifest, RelationKind, RowSink, TableManifest, ValueRef};

pub use change::{Change, ChangeBatch};
pub use hugepages::{advise_huge_pages, HugePageReport};
pub use memo::{Memo, MEMO_MAX_BYTES, MEMO_MAX_ENTRIES};

use chunk::{coerce, Chunk, Column, Writer, CHUNK_MASK};
use hash::{val_eq, Mix};
use index::MultiIndex;
use store::{row_cmp_row, Store, MAX_ROWS};

/// A row identifier inside one [`Table`] version.
pub type RowId = u32;

/// One loaded table: columns, indexes, row count. Immutable once built.
pub struct Table {
    /// The manifest entry this table was built from.
    pub manifest: Arc<TableManifest>,
    store: Store,
    /// Indexes built with this version (foreign keys, and every index of the version it was
    /// derived from): read without a lock, the common case of a lookup.
    indexes: Vec<Arc<MultiIndex>>,
    /// Indexes built lazily for other column sets.
    lazy_indexes: RwLock<Vec<Arc<MultiIndex>>>,
    /// Wrapping sum of the hashes of the live rows, computed on first use.
    fp_sum: OnceLock<u64>,
    /// Live rows sorted by one column, built on first use by the query layer (which owns the
    /// comparison); a new table version starts without them.
    orders: RwLock<Vec<(usize, Arc<ColumnOrder>)>>,
}

/// The entry of a lazily filled cache that `matches`, or the one `build` makes, added. The build
/// runs outside the lock, so concurrent first uses may build twice; the first one added is kept.
fn get_or_build<E: Clone>(
    cache: &RwLock<Vec<E>>,
    matches: impl Fn(&E) -> bool,
    build: impl FnOnce() -> E,
) -> E {
    if let Some(e) = cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|e| matches(e))
    {
        return e.clone();
    }
    let built = build();
    let mut list = cache.write().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = list.iter().find(|e| matches(e)) {
        return e.clone();
    }
    list.push(built.clone());
    built
}

/// Whether a lazily filled cache holds an entry that `matches`.
fn any_cached<E>(cache: &RwLock<Vec<E>>, matches: impl Fn(&E) -> bool) -> bool {
    cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(matches)
}

/// The live rows of a table sorted by one column: the rows with a value in ascending order
/// (ties in primary-key order), then the rows where it is NULL.
#[derive(Debug, Clone, Default)]
pub struct ColumnOrder {
    /// Row ids: `rows[..non_null]` sorted by value, `rows[non_null..]` NULL.
    pub rows: Vec<RowId>,
    /// How many rows have a value.
    pub non_null: usize,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("api_name", &self.manifest.api_name)
            .field("rows", &self.row_count())
            .field("row_id_bound", &self.row_id_bound())
            .field("pk_index", &self.store.pk.kind())
            .field("secondary_indexes", &self.secondaries().len())
            .finish_non_exhaustive()
    }
}

impl Table {
    fn from_store(
        manifest: Arc<TableManifest>,
        store: Store,
        secondary: Vec<Arc<MultiIndex>>,
        fp_sum: Option<u64>,
    ) -> Table {
        let fp = OnceLock::new();
        if let Some(s) = fp_sum {
            let _ = fp.set(s);
        }
        Table {
            manifest,
            store,
            indexes: secondary,
            lazy_indexes: RwLock::new(Vec::new()),
            fp_sum: fp,
            orders: RwLock::new(Vec::new()),
        }
    }

    /// The rows sorted by `column`, from `build` the first time this table version is asked
    /// (concurrent first uses may build it twice; one copy is kept). It lets `ORDER BY column
    /// LIMIT n` read the first rows instead of sorting the table; it costs 4 bytes a row, not
    /// counted in [`Table::memory_bytes`].
    pub fn column_order(
        &self,
        column: usize,
        build: impl FnOnce() -> ColumnOrder,
    ) -> Arc<ColumnOrder> {
        get_or_build(
            &self.orders,
            |(c, _)| *c == column,
            || (column, Arc::new(build())),
        )
        .1
    }

    /// Whether [`Table::column_order`] of `column` was built already (for `explain`).
    pub fn has_column_order(&self, column: usize) -> bool {
        any_cached(&self.orders, |(c, _)| *c == column)
    }

    fn secondaries(&self) -> Vec<Arc<MultiIndex>> {
        let lazy = self.lazy_indexes.read().unwrap_or_else(|e| e.into_inner());
        self.indexes.iter().chain(lazy.iter()).cloned().collect()
    }

    /// Number of live rows.
    pub fn row_count(&self) -> usize {
        self.store.live_count()
    }

    /// One past the largest row id of this version (row ids of tombstoned rows included): the
    /// size for arrays indexed by row id. Equals [`Table::row_count`] for a freshly loaded table.
    pub fn row_id_bound(&self) -> usize {
        self.store.rows
    }

    /// Whether `row` is a live row of this version (not deleted by [`Table::apply`]).
    pub fn is_live(&self, row: RowId) -> bool {
        (row as usize) < self.store.rows && self.store.is_live(row)
    }

    /// Bytes of memory held by columns and indexes (lazily built indexes included). Chunks
    /// shared with other versions of the table are counted in each version.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Table>()
            + self.store.memory_bytes()
            + self
                .secondaries()
                .iter()
                .map(|ix| 16 + ix.memory_bytes())
                .sum::<usize>()
    }

    /// Bytes of each column's data (manifest order); [`Table::memory_bytes`] minus their sum is
    /// what indexes, tombstones and the primary-key order take.
    pub fn column_memory_bytes(&self) -> Vec<usize> {
        self.store.cols.iter().map(|c| c.memory_bytes()).collect()
    }

    /// A hash of the content; equal content gives an equal fingerprint.
    ///
    /// It is the wrapping sum of a 64-bit hash of every live row, mixed with the row count: it
    /// depends on the rows and not on their physical layout (a table loaded in another order, or
    /// reached through [`Table::apply`], has the same fingerprint as a fresh load of the same
    /// rows), and `apply` keeps it up to date in O(changed rows) once it was computed. Computed
    /// on first call (O(rows)), then cached.
    pub fn fingerprint(&self) -> u64 {
        let sum = *self.fp_sum.get_or_init(|| {
            self.store
                .scan()
                .fold(0u64, |s, r| s.wrapping_add(self.store.row_hash(r)))
        });
        let mut m = Mix::new();
        m.write_u64(sum);
        m.write_u64(self.row_count() as u64);
        m.finish()
    }

    /// Whether some of the text of `column` is stored compressed.
    pub fn is_compressed(&self, column: usize) -> bool {
        self.store.cols[column].is_compressed()
    }

    /// Storage type of column `column`.
    pub fn column_type(&self, column: usize) -> ColumnType {
        self.manifest.columns[column].ty
    }

    /// Live row ids in primary-key order.
    pub fn scan(&self) -> Box<dyn Iterator<Item = RowId> + '_> {
        self.store.scan()
    }

    /// Live row ids in primary-key order, starting at the first row whose first primary-key
    /// column is not below `first` (all rows when the table has no primary key or `first` does
    /// not fit the column).
    pub fn scan_from(&self, first: ValueRef<'_>) -> Box<dyn Iterator<Item = RowId> + '_> {
        let Some(&c0) = self.store.pk_cols.first() else {
            return self.scan();
        };
        match coerce(self.store.cols[c0].ty, first) {
            ValueRef::Null => self.scan(),
            v => self.store.scan_from(v),
        }
    }

    /// The cell of `column` in row `row` (`ValueRef::Null` when NULL), given to `f`.
    ///
    /// Text of columns that are not keys may be compressed: such a cell is decompressed into a
    /// buffer that lives while `f` runs. Other cells are lent straight from the column.
    #[inline(always)]
    pub fn with_value<R>(&self, column: usize, row: RowId, f: impl FnOnce(ValueRef<'_>) -> R) -> R {
        self.store.cols[column].with(row, f)
    }

    /// The cell of `column` in row `row`, decompressed into `buf` when it is compressed (then
    /// it borrows `buf`, else the column): for holding several cells at once, e.g. a key.
    #[inline]
    pub fn value_in<'a>(&'a self, column: usize, row: RowId, buf: &'a mut Vec<u8>) -> ValueRef<'a> {
        self.store.cols[column].read(row, buf)
    }

    /// The cell of `column` in row `row` as an owned value (tests, diagnostics).
    pub fn owned_value(&self, column: usize, row: RowId) -> refract_schema::Value {
        self.with_value(column, row, |v| refract_schema::Value::from(v))
    }

    /// The cell of `column` in row `row` (`ValueRef::Null` when NULL), borrowed from the column.
    ///
    /// # Panics
    /// On a compressed cell. Columns of the primary key and of relations, and columns that are
    /// not text or JSON, are never compressed; read others with [`Table::with_value`].
    #[inline]
    pub fn value(&self, column: usize, row: RowId) -> ValueRef<'_> {
        self.store.cols[column].get(row)
    }

    /// Start loading the cells of `columns` in `rows` into the cache: a hint to call before
    /// reading rows scattered over the table (index lookups), so their cache misses overlap.
    #[inline]
    pub fn prefetch(&self, columns: impl Iterator<Item = usize> + Clone, rows: &[RowId]) {
        let cols = &self.store.cols;
        let mut var = false;
        for &row in rows {
            for col in columns.clone().filter_map(|c| cols.get(c)) {
                col.prefetch(row);
                var |= col.is_var();
            }
        }
        // Strings: their offsets are on the way for every row by now, so reading them to find
        // the bytes waits for about one miss instead of one per row.
        if var {
            for &row in rows {
                for col in columns.clone().filter_map(|c| cols.get(c)) {
                    if col.is_var() {
                        col.prefetch_bytes(row);
                    }
                }
            }
        }
    }

    /// The row whose primary key equals `key` (values in primary-key column order).
    #[inline]
    pub fn pk_lookup(&self, key: &[ValueRef<'_>]) -> Option<RowId> {
        let pk = &self.store.pk_cols;
        match (pk.as_slice(), key) {
            ([c], [k]) => self.store.pk_find(&[coerce(self.store.cols[*c].ty, *k)]),
            _ if pk.len() == key.len() => {
                let key: Vec<ValueRef<'_>> = pk
                    .iter()
                    .zip(key)
                    .map(|(&c, &k)| coerce(self.store.cols[c].ty, k))
                    .collect();
                self.store.pk_find(&key)
            }
            _ => None,
        }
    }

    /// Rows whose `columns` equal `key`, in primary-key order (hash index; built lazily for
    /// column sets that are neither the primary key nor a foreign key).
    ///
    /// A NULL in `key` (or a value whose variant does not fit its column) matches nothing, as
    /// in SQL. An empty `columns` matches every live row.
    pub fn index_lookup(&self, columns: &[usize], key: &[ValueRef<'_>]) -> Vec<RowId> {
        let mut rows = Vec::new();
        self.index_lookup_into(columns, key, &mut rows);
        rows
    }

    /// [`Table::index_lookup`] into `out` (cleared first), reusing its allocation.
    pub fn index_lookup_into(&self, columns: &[usize], key: &[ValueRef<'_>], out: &mut Vec<RowId>) {
        out.clear();
        let ncols = self.store.cols.len();
        if columns.len() != key.len() || columns.iter().any(|&c| c >= ncols) {
            return;
        }
        if columns.is_empty() {
            out.extend(self.scan());
            return;
        }
        let mut buf = [ValueRef::Null; 4];
        let mut heap = Vec::new();
        let canon: &mut [ValueRef<'_>] = if key.len() <= buf.len() {
            &mut buf[..key.len()]
        } else {
            heap.resize(key.len(), ValueRef::Null);
            &mut heap
        };
        for ((&c, &k), v) in columns.iter().zip(key).zip(canon.iter_mut()) {
            *v = coerce(self.store.cols[c].ty, k);
            if *v == ValueRef::Null {
                return;
            }
        }
        if columns == self.store.pk_cols.as_slice() {
            out.extend(self.store.pk_find(canon));
            return;
        }
        self.with_secondary_index(columns, |ix| ix.lookup_into(&self.store.cols, canon, out));
        if self.store.dead_count > 0 {
            out.retain(|&r| self.store.is_live(r));
        }
        if self.store.order.is_some() && out.len() > 1 {
            let (cols, pk) = (&self.store.cols, &self.store.pk_cols);
            out.sort_unstable_by(|&a, &b| row_cmp_row(cols, pk, a, b).then(a.cmp(&b)));
        }
    }

    /// `f(the index on exactly columns)`, built now if there is none yet. Concurrent first
    /// uses may build it twice; one copy is kept.
    #[inline]
    fn with_secondary_index<R>(&self, columns: &[usize], f: impl FnOnce(&MultiIndex) -> R) -> R {
        if let Some(ix) = self.built_index(columns) {
            return f(ix);
        }
        let ix = get_or_build(
            &self.lazy_indexes,
            |ix| ix.columns == columns,
            || Arc::new(MultiIndex::build(&self.store, columns)),
        );
        f(&ix)
    }

    /// Start loading the index entry for `key` on `columns`: a hint before an
    /// [`Table::index_lookup`] of the same key, so that its cache miss overlaps with other
    /// work. Only indexes built with the table (foreign keys) take the hint.
    #[inline]
    pub fn prefetch_lookup(&self, columns: &[usize], key: &[ValueRef<'_>]) {
        let [c] = columns else { return };
        let [k] = key else { return };
        let Some(col) = self.store.cols.get(*c) else {
            return;
        };
        let k = coerce(col.ty, *k);
        if k == ValueRef::Null {
            return;
        }
        if let Some(ix) = self.built_index(columns) {
            ix.prefetch(&[k]);
        }
    }

    /// The index on exactly `columns` built with this version, if any (no lock taken).
    #[inline]
    fn built_index(&self, columns: &[usize]) -> Option<&MultiIndex> {
        self.indexes
            .iter()
            .find(|ix| ix.columns == columns)
            .map(|ix| &**ix)
    }

    /// Whether an index on exactly `columns` exists already (for `explain`).
    pub fn has_index(&self, columns: &[usize]) -> bool {
        (!columns.is_empty() && columns == self.store.pk_cols.as_slice())
            || self.built_index(columns).is_some()
            || any_cached(&self.lazy_indexes, |ix| ix.columns == columns)
    }

    /// Whether [`Table::apply`] of a batch of `changes` changes may compact this table (its
    /// O(table) step, see there): an upper bound, since every change may leave a tombstone. For
    /// callers that keep O(table) work off the threads that answer queries.
    pub fn apply_may_compact(&self, changes: usize) -> bool {
        (self.store.dead_count + changes) * 4 > self.store.rows
    }

    /// A new version of this table with `batch` applied in order; this version is unchanged.
    ///
    /// Cost: O(changed rows + touched chunks), plus occasional amortized O(table) steps:
    /// - Deletes tombstone their row (skipped by [`Table::scan`] and lookups); the row id is not
    ///   reused. When more than a quarter of the row ids are tombstones, the new version is
    ///   compacted ([`Table::compact`]: O(table), at most once per ~rows/3 deletes).
    /// - An update that changes no indexed column (primary key, foreign keys, lazily indexed
    ///   column sets) is written in place into a copy of the touched chunks. One that changes an
    ///   indexed column is a delete plus an insert (new row id), which keeps every index
    ///   append-only.
    /// - Inserts append. While appended keys are above every existing key (auto-increment), row
    ///   id order stays primary-key order; the first insert below the largest key materializes a
    ///   chunked order list (O(table) once, 4 bytes per row until the next compaction), after which
    ///   each insert costs O(log rows) comparisons plus one order chunk copy.
    /// - Indexes are updated persistently: the primary-key index (dense array or hash slots)
    ///   and the foreign-key/lazy indexes (per-row chains plus hash slots) are segmented in
    ///   `Arc`s like the columns, so only touched segments are copied. A hash table that must
    ///   grow is rehashed (amortized O(1) per insert), and a dense primary-key index that would
    ///   become too sparse is converted to a hash once.
    /// - Text/bytes/JSON cells are rewritten by re-encoding their chunk (O(chunk)); appends to
    ///   the last chunk are in place.
    /// - The fingerprint is carried over in O(changed rows) when it had been computed.
    pub fn apply(&self, batch: &ChangeBatch) -> Table {
        self.apply_inner(batch, true)
    }

    fn apply_inner(&self, batch: &ChangeBatch, allow_compaction: bool) -> Table {
        let mut st = self.store.clone();
        let mut sec: Vec<MultiIndex> = self.secondaries().iter().map(|ix| (**ix).clone()).collect();
        let mut sum = self.fp_sum.get().copied();
        let ncols = st.cols.len();
        let types: Vec<ColumnType> = st.cols.iter().map(|c| c.ty).collect();
        let mut indexed = vec![false; ncols];
        for &c in st
            .pk_cols
            .iter()
            .chain(sec.iter().flat_map(|ix| ix.columns.iter()))
        {
            indexed[c] = true;
        }
        let has_pk = !st.pk_cols.is_empty();
        let mut vals: Vec<ValueRef<'_>> = Vec::with_capacity(ncols);
        let mut key: Vec<ValueRef<'_>> = Vec::with_capacity(st.pk_cols.len());
        for change in &batch.changes {
            match change {
                Change::Delete(k) => {
                    let found = if has_pk {
                        key.clear();
                        key.extend(
                            st.pk_cols
                                .iter()
                                .zip(k)
                                .map(|(&c, v)| coerce(types[c], v.as_ref())),
                        );
                        (k.len() == st.pk_cols.len())
                            .then(|| st.pk_find(&key))
                            .flatten()
                    } else {
                        vals.clear();
                        vals.extend((0..ncols).map(|c| {
                            coerce(types[c], k.get(c).map_or(ValueRef::Null, |v| v.as_ref()))
                        }));
                        st.find_equal_row(&vals)
                    };
                    if let Some(r) = found {
                        if let Some(s) = &mut sum {
                            *s = s.wrapping_sub(st.row_hash(r));
                        }
                        st.delete(r);
                    }
                }
                Change::Upsert(row) => {
                    vals.clear();
                    vals.extend((0..ncols).map(|c| {
                        coerce(types[c], row.get(c).map_or(ValueRef::Null, |v| v.as_ref()))
                    }));
                    let existing = if has_pk {
                        key.clear();
                        key.extend(st.pk_cols.iter().map(|&c| vals[c]));
                        st.pk_find(&key)
                    } else {
                        None
                    };
                    let new_row = match existing {
                        Some(r) => {
                            let changed: Vec<usize> = (0..ncols)
                                .filter(|&c| !st.cols[c].with(r, |v| val_eq(v, vals[c])))
                                .collect();
                            if changed.is_empty() {
                                continue;
                            }
                            if let Some(s) = &mut sum {
                                *s = s.wrapping_sub(st.row_hash(r));
                            }
                            if changed.iter().any(|&c| indexed[c]) {
                                let r2 = st.append(&vals, Some(r));
                                for ix in &mut sec {
                                    ix.add(&st.cols, r2);
                                }
                                r2
                            } else {
                                for c in changed {
                                    st.set(c, r, vals[c]);
                                }
                                r
                            }
                        }
                        None => {
                            let r2 = st.append(&vals, None);
                            for ix in &mut sec {
                                ix.add(&st.cols, r2);
                            }
                            r2
                        }
                    };
                    if let Some(s) = &mut sum {
                        *s = s.wrapping_add(st.row_hash(new_row));
                    }
                }
            }
        }
        let table = Table::from_store(
            self.manifest.clone(),
            st,
            sec.into_iter().map(Arc::new).collect(),
            sum,
        );
        if allow_compaction && table.store.wants_compaction() {
            table.compact()
        } else {
            table
        }
    }

    /// A copy of this version without tombstones: live rows renumbered `0..row_count` in
    /// primary-key order, every index rebuilt (lazily built ones included). O(table).
    pub fn compact(&self) -> Table {
        let rows: Vec<RowId> = self.scan().collect();
        let cols: Vec<Column> = self
            .store
            .cols
            .iter()
            .zip(compressible_columns(&self.manifest))
            .map(|(c, compress)| store::gather_column(c, &rows, compress))
            .collect();
        let store = Store::new(cols, rows.len(), self.store.pk_cols.clone());
        let secondary = self
            .secondaries()
            .iter()
            .map(|ix| Arc::new(MultiIndex::build(&store, &ix.columns)))
            .collect();
        Table::from_store(
            self.manifest.clone(),
            store,
            secondary,
            self.fp_sum.get().copied(),
        )
    }
}

/// Which columns of a table may have their text compressed: all but the primary key and the
/// columns of relations. Keys are hashed and compared on every lookup and held several at a
/// time, so they stay readable in place (and are short, mostly numbers, in practice).
fn compressible_columns(manifest: &TableManifest) -> Vec<bool> {
    let mut compress = vec![true; manifest.columns.len()];
    let keys = manifest.primary_key.iter().chain(
        manifest
            .relations
            .iter()
            .flat_map(|r| r.local_columns.iter()),
    );
    for &c in keys {
        if let Some(x) = compress.get_mut(c) {
            *x = false;
        }
    }
    compress
}

/// Builds a [`Table`] from streamed rows.
///
/// Cells are appended to per-column chunk writers (no allocation per cell beyond buffer
/// growth); every 4096 rows the writers are encoded into chunks. [`TableBuilder::finish`] sorts
/// the rows into primary-key order only when they did not arrive in it, then builds the
/// primary-key and foreign-key indexes.
#[derive(Debug)]
pub struct TableBuilder {
    manifest: Arc<TableManifest>,
    writers: Vec<Writer>,
    chunks: Vec<Vec<Arc<Chunk>>>,
    rows: usize,
    sealed_bytes: usize,
}

impl TableBuilder {
    /// A builder for the table described by `manifest`.
    pub fn new(manifest: Arc<TableManifest>) -> Self {
        let writers: Vec<Writer> = manifest
            .columns
            .iter()
            .zip(compressible_columns(&manifest))
            .map(|(c, compress)| Writer::compressing(c.ty, compress))
            .collect();
        let chunks = vec![Vec::new(); writers.len()];
        TableBuilder {
            manifest,
            writers,
            chunks,
            rows: 0,
            sealed_bytes: 0,
        }
    }

    /// Rows ended so far.
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Bytes used so far (for the memory cap).
    pub fn memory_bytes(&self) -> usize {
        self.sealed_bytes + self.writers.iter().map(Writer::memory_bytes).sum::<usize>()
    }

    fn seal(&mut self) {
        for (w, chunks) in self.writers.iter_mut().zip(self.chunks.iter_mut()) {
            let c = w.seal();
            self.sealed_bytes += c.memory_bytes() + 8;
            chunks.push(Arc::new(c));
        }
    }

    /// Finish: build indexes and freeze. Cells of a row that was not ended are dropped.
    pub fn finish(mut self) -> Table {
        let at = self.rows & CHUNK_MASK;
        for w in &mut self.writers {
            w.truncate(at);
        }
        if at > 0 {
            self.seal();
        }
        let cols: Vec<Column> = self
            .manifest
            .columns
            .iter()
            .zip(std::mem::take(&mut self.chunks))
            .map(|(c, chunks)| Column { ty: c.ty, chunks })
            .collect();
        let ncols = cols.len();
        let valid = |cs: &[usize]| !cs.is_empty() && cs.iter().all(|&c| c < ncols);
        let mut pk = self.manifest.primary_key.clone();
        if !valid(&pk) {
            pk.clear();
        }
        let cols = Store::sort_loaded(cols, self.rows, &pk);
        let store = Store::new(cols, self.rows, pk);
        let mut sets: Vec<&[usize]> = Vec::new();
        for rel in &self.manifest.relations {
            let cs = rel.local_columns.as_slice();
            // Forward: this table's foreign key. Reverse: the columns other tables reference,
            // usually the primary key (then nothing to build).
            let wanted = matches!(rel.kind, RelationKind::Forward | RelationKind::Reverse);
            if wanted && valid(cs) && cs != store.pk_cols.as_slice() && !sets.contains(&cs) {
                sets.push(cs);
            }
        }
        let secondary = sets
            .into_iter()
            .map(|cs| Arc::new(MultiIndex::build(&store, cs)))
            .collect();
        Table::from_store(self.manifest, store, secondary, None)
    }
}

impl RowSink for TableBuilder {
    #[inline]
    fn push(&mut self, column: usize, value: ValueRef<'_>) {
        let at = self.rows & CHUNK_MASK;
        if let Some(w) = self.writers.get_mut(column) {
            // A second push for the same cell is ignored.
            if w.len() == at && self.rows < MAX_ROWS {
                w.push(value);
            }
        }
    }

    #[inline]
    fn end_row(&mut self) -> bool {
        if self.rows >= MAX_ROWS {
            return false;
        }
        let at = self.rows & CHUNK_MASK;
        for w in &mut self.writers {
            if w.len() == at {
                w.push(ValueRef::Null);
            }
        }
        self.rows += 1;
        if self.rows & CHUNK_MASK == 0 {
            self.seal();
        }
        self.rows < MAX_ROWS
    }
}

/// An immutable set of tables that a query sees as one version.
#[derive(Debug)]
pub struct Snapshot {
    /// The manifest the tables follow.
    pub manifest: Arc<Manifest>,
    /// Tables in manifest order.
    pub tables: Vec<Arc<Table>>,
    /// What queries derived from these tables and reuse while this version is current.
    pub memo: Memo,
}

impl Snapshot {
    /// A snapshot of `tables` (in manifest order).
    pub fn new(manifest: Arc<Manifest>, tables: Vec<Arc<Table>>) -> Self {
        Snapshot {
            manifest,
            tables,
            memo: Memo::default(),
        }
    }
    /// The table with this API name.
    pub fn table(&self, api_name: &str) -> Option<&Arc<Table>> {
        self.tables.iter().find(|t| t.manifest.api_name == api_name)
    }
}

#[cfg(test)]
mod tests;
