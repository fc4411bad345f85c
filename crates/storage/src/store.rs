//! The row-level state of one table version: columns, tombstones, primary-key order and the
//! primary-key index. Everything is chunked and held in `Arc`s, so cloning a `Store` is
//! O(chunks) and writing into the clone copies only the chunks it touches.

use std::cmp::Ordering;
use std::sync::Arc;

use refract_schema::{ColumnType, ValueRef};

use crate::chunk::{bit, Column, Writer, BITMAP_WORDS, CHUNK_MASK, CHUNK_ROWS, CHUNK_SHIFT};
use crate::hash::{hash_key, val_cmp, val_eq, Mix, Slots, NONE};

/// Largest number of physical rows (row ids are `u32`, `u32::MAX` means "no row").
pub(crate) const MAX_ROWS: usize = u32::MAX as usize - 1;

// ---------------------------------------------------------------------------------------------
// Row helpers over columns

#[inline]
pub(crate) fn key_hash_row(cols: &[Column], keycols: &[usize], r: u32) -> u64 {
    let mut m = Mix::new();
    for &c in keycols {
        cols[c].with(r, |v| m.cell(v));
    }
    m.finish()
}

#[inline]
pub(crate) fn row_eq_key(cols: &[Column], keycols: &[usize], r: u32, key: &[ValueRef<'_>]) -> bool {
    keycols
        .iter()
        .zip(key)
        .all(|(&c, &k)| cols[c].with(r, |v| val_eq(v, k)))
}

#[inline]
pub(crate) fn row_eq_row(cols: &[Column], keycols: &[usize], a: u32, b: u32) -> bool {
    keycols
        .iter()
        .all(|&c| cols[c].with(a, |va| cols[c].with(b, |vb| val_eq(va, vb))))
}

pub(crate) fn row_cmp_key(
    cols: &[Column],
    keycols: &[usize],
    r: u32,
    key: &[ValueRef<'_>],
) -> Ordering {
    for (&c, &k) in keycols.iter().zip(key) {
        match cols[c].with(r, |v| val_cmp(v, k)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

pub(crate) fn row_cmp_row(cols: &[Column], keycols: &[usize], a: u32, b: u32) -> Ordering {
    for &c in keycols {
        match cols[c].with(a, |va| cols[c].with(b, |vb| val_cmp(va, vb))) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

pub(crate) fn row_has_null(cols: &[Column], keycols: &[usize], r: u32) -> bool {
    keycols
        .iter()
        .any(|&c| cols[c].with(r, |v| v == ValueRef::Null))
}

/// The integer behind an integer-like cell (dense primary-key indexes use it).
#[inline]
fn int_key(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Int(x) | ValueRef::Time(x) | ValueRef::DateTime(x) | ValueRef::Timestamp(x) => {
            Some(x)
        }
        ValueRef::Date(d) => Some(d as i64),
        _ => None,
    }
}

fn int_like(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Int
            | ColumnType::Date
            | ColumnType::Time
            | ColumnType::DateTime
            | ColumnType::Timestamp
    )
}

/// `rows` of `col`, in that order, as a new column (its text compressed when `compress`).
pub(crate) fn gather_column(col: &Column, rows: &[u32], compress: bool) -> Column {
    let mut w = Writer::compressing(col.ty, compress);
    let mut chunks = Vec::with_capacity(rows.len().div_ceil(CHUNK_ROWS));
    for &r in rows {
        col.with(r, |v| w.push(v));
        if w.len() == CHUNK_ROWS {
            chunks.push(Arc::new(w.seal()));
        }
    }
    if w.len() > 0 {
        chunks.push(Arc::new(w.seal()));
    }
    Column { ty: col.ty, chunks }
}

// ---------------------------------------------------------------------------------------------
// Primary-key index

const DSEG_SHIFT: u32 = 12;
const DSEG: usize = 1 << DSEG_SHIFT;

/// Direct map from an integer key to its row: `segs[(k - base) / DSEG][(k - base) % DSEG]`.
/// Used for single integer primary keys whose range is dense (auto-increment ids): 4 bytes per
/// key of the range, one memory access per lookup. All segments but the last are full.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    base: i64,
    segs: Vec<Arc<Vec<u32>>>,
    len: usize,
}

impl Dense {
    fn span(&self) -> usize {
        match self.segs.last() {
            None => 0,
            Some(l) => (self.segs.len() - 1) * DSEG + l.len(),
        }
    }

    fn offset(&self, k: i64) -> Option<usize> {
        let off = k as i128 - self.base as i128;
        (off >= 0 && off < self.span() as i128).then_some(off as usize)
    }

    #[inline]
    fn get(&self, k: i64) -> Option<u32> {
        let off = self.offset(k)?;
        let r = self.segs[off >> DSEG_SHIFT][off & (DSEG - 1)];
        (r != NONE).then_some(r)
    }

    fn set(&mut self, off: usize, r: u32) {
        Arc::make_mut(&mut self.segs[off >> DSEG_SHIFT])[off & (DSEG - 1)] = r;
    }

    /// Insert a key known to be absent; `false` when the range would become too sparse (the
    /// caller then converts to a hash index).
    fn insert(&mut self, k: i64, r: u32) -> bool {
        if let Some(off) = self.offset(k) {
            self.set(off, r);
            self.len += 1;
            return true;
        }
        let span = self.span() as i128;
        let lo = (self.base as i128).min(k as i128);
        let hi = (self.base as i128 + span - 1).max(k as i128);
        if self.segs.is_empty() {
            self.base = k;
        } else if hi - lo + 1 > 4 * (self.len as i128 + 1) + 2 * DSEG as i128 {
            return false;
        }
        let off = k as i128 - self.base as i128;
        if off < 0 {
            let m = (-off as usize).div_ceil(DSEG);
            self.segs
                .splice(0..0, (0..m).map(|_| Arc::new(vec![NONE; DSEG])));
            self.base -= (m * DSEG) as i64;
        } else {
            let need = off as usize + 1;
            while self.span() < need {
                let short = self.segs.last().is_some_and(|l| l.len() < DSEG);
                let span = self.span();
                if short {
                    let l = Arc::make_mut(self.segs.last_mut().expect("a segment"));
                    let grow = (DSEG - l.len()).min(need - span);
                    l.resize(l.len() + grow, NONE);
                } else {
                    self.segs
                        .push(Arc::new(vec![NONE; (need - span).min(DSEG)]));
                }
            }
        }
        let off = self.offset(k).expect("in range now");
        self.set(off, r);
        self.len += 1;
        true
    }

    fn memory_bytes(&self) -> usize {
        self.segs.capacity() * 8
            + self
                .segs
                .iter()
                .map(|s| 16 + 24 + s.capacity() * 4)
                .sum::<usize>()
    }
}

/// The primary-key index.
#[derive(Clone, Debug)]
pub(crate) enum PkIndex {
    /// The table has no primary key.
    None,
    /// Single integer key with a dense range.
    Dense(Dense),
    /// Single integer key, sparse: hash slots holding the key beside the row id, so a lookup
    /// touches no row.
    IntHash(Slots<i64>),
    /// Anything else: hash of the key columns, candidates compared against the rows.
    Hash(Slots),
}

#[inline]
fn hash_int(k: i64) -> u64 {
    let mut m = Mix::new();
    m.write_u64(k as u64);
    m.finish()
}

impl PkIndex {
    /// Build over rows `0..rows` (all live, no duplicate keys expected: a duplicate keeps its
    /// first row in the index).
    pub(crate) fn build(cols: &[Column], pk: &[usize], rows: usize) -> PkIndex {
        if pk.is_empty() {
            return PkIndex::None;
        }
        if pk.len() == 1 && int_like(cols[pk[0]].ty) {
            let col = &cols[pk[0]];
            let (mut min, mut max, mut ok) = (i64::MAX, i64::MIN, true);
            for r in 0..rows as u32 {
                match int_key(col.get(r)) {
                    Some(k) => {
                        min = min.min(k);
                        max = max.max(k);
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            let range = max as i128 - min as i128 + 1;
            // Dense when it takes no more memory than a hash index (4 bytes per key of the
            // range against about 6.25 per key).
            if ok && rows > 0 && range <= (rows * 25 / 16).max(64) as i128 {
                let range = range as usize;
                let mut segs = Vec::with_capacity(range.div_ceil(DSEG));
                let mut left = range;
                while left > 0 {
                    let n = left.min(DSEG);
                    segs.push(vec![NONE; n]);
                    left -= n;
                }
                let mut len = 0;
                for r in 0..rows as u32 {
                    let off =
                        (int_key(col.get(r)).expect("checked") as i128 - min as i128) as usize;
                    let e = &mut segs[off >> DSEG_SHIFT][off & (DSEG - 1)];
                    if *e == NONE {
                        *e = r;
                        len += 1;
                    }
                }
                return PkIndex::Dense(Dense {
                    base: min,
                    segs: segs.into_iter().map(Arc::new).collect(),
                    len,
                });
            }
            if ok {
                let mut slots = Slots::<i64>::with_capacity(rows);
                for r in 0..rows as u32 {
                    let k = int_key(col.get(r)).expect("checked");
                    let h = hash_int(k);
                    if slots.find(h, |_, x| x == k).is_none() {
                        slots.insert(h, r, k, |_, x| hash_int(x));
                    }
                }
                return PkIndex::IntHash(slots);
            }
        }
        let mut slots = Slots::with_capacity(rows);
        for r in 0..rows as u32 {
            if row_has_null(cols, pk, r) {
                continue;
            }
            let h = key_hash_row(cols, pk, r);
            if slots.find(h, |t, _| row_eq_row(cols, pk, t, r)).is_none() {
                slots.insert(h, r, (), |id, _| key_hash_row(cols, pk, id));
            }
        }
        PkIndex::Hash(slots)
    }

    /// The row with this key (canonical values, in primary-key column order).
    #[inline]
    pub(crate) fn find(&self, cols: &[Column], pk: &[usize], key: &[ValueRef<'_>]) -> Option<u32> {
        match self {
            PkIndex::None => None,
            PkIndex::Dense(d) => d.get(int_key(key[0])?),
            PkIndex::IntHash(s) => {
                let k = int_key(key[0])?;
                s.find(hash_int(k), |_, x| x == k).map(|(_, r)| r)
            }
            PkIndex::Hash(s) => {
                if key.contains(&ValueRef::Null) {
                    return None;
                }
                s.find(hash_key(key), |r, _| row_eq_key(cols, pk, r, key))
                    .map(|(_, r)| r)
            }
        }
    }

    /// Index row `r` (its key is absent from the index and not NULL).
    fn insert(&mut self, cols: &[Column], pk: &[usize], r: u32) {
        match self {
            PkIndex::None => {}
            PkIndex::Dense(d) => {
                let k = int_key(cols[pk[0]].get(r)).expect("non-null integer key");
                if !d.insert(k, r) {
                    let mut slots = Slots::<i64>::with_capacity(d.len + 1);
                    for (i, seg) in d.segs.iter().enumerate() {
                        for (j, &id) in seg.iter().enumerate() {
                            if id != NONE {
                                let k = d.base + (i * DSEG + j) as i64;
                                slots.insert(hash_int(k), id, k, |_, x| hash_int(x));
                            }
                        }
                    }
                    slots.insert(hash_int(k), r, k, |_, x| hash_int(x));
                    *self = PkIndex::IntHash(slots);
                }
            }
            PkIndex::IntHash(s) => {
                let k = int_key(cols[pk[0]].get(r)).expect("non-null integer key");
                s.insert(hash_int(k), r, k, |_, x| hash_int(x));
            }
            PkIndex::Hash(s) => {
                s.insert(key_hash_row(cols, pk, r), r, (), |id, _| {
                    key_hash_row(cols, pk, id)
                });
            }
        }
    }

    /// Point the key of row `r` at row `to` instead (`to == NONE` removes the key).
    fn repoint(&mut self, cols: &[Column], pk: &[usize], r: u32, to: u32) {
        match self {
            PkIndex::None => {}
            PkIndex::Dense(d) => {
                let Some(off) = int_key(cols[pk[0]].get(r)).and_then(|k| d.offset(k)) else {
                    return;
                };
                if d.segs[off >> DSEG_SHIFT][off & (DSEG - 1)] == r {
                    d.set(off, to);
                    if to == NONE {
                        d.len -= 1;
                    }
                }
            }
            PkIndex::IntHash(s) => {
                let Some(k) = int_key(cols[pk[0]].get(r)) else {
                    return;
                };
                if let Some((pos, _)) = s.find(hash_int(k), |id, _| id == r) {
                    if to == NONE {
                        s.remove(pos);
                    } else {
                        s.set(pos, to);
                    }
                }
            }
            PkIndex::Hash(s) => {
                if let Some((pos, _)) = s.find(key_hash_row(cols, pk, r), |id, _| id == r) {
                    if to == NONE {
                        s.remove(pos);
                    } else {
                        s.set(pos, to);
                    }
                }
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            PkIndex::None => 0,
            PkIndex::Dense(d) => d.memory_bytes(),
            PkIndex::IntHash(s) => s.memory_bytes(),
            PkIndex::Hash(s) => s.memory_bytes(),
        }
    }

    /// Name for `Debug` output.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PkIndex::None => "none",
            PkIndex::Dense(_) => "dense",
            PkIndex::IntHash(_) => "int-hash",
            PkIndex::Hash(_) => "hash",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Primary-key order

const ORDER_CHUNK: usize = 4096;

/// Row ids in primary-key order, when that is not row-id order (after inserts of keys below the
/// largest one). Chunks of 1 to 2 × [`ORDER_CHUNK`] ids; an insert copies one chunk. Tombstoned
/// rows stay in the list (their cells are kept, so the list stays sorted) until compaction.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    chunks: Vec<Arc<Vec<u32>>>,
}

impl Order {
    fn identity(rows: usize) -> Order {
        let mut chunks = Vec::with_capacity(rows.div_ceil(ORDER_CHUNK));
        let mut start = 0;
        while start < rows {
            let end = (start + ORDER_CHUNK).min(rows);
            chunks.push(Arc::new((start as u32..end as u32).collect()));
            start = end;
        }
        Order { chunks }
    }

    fn insert(&mut self, cols: &[Column], pk: &[usize], r: u32, key: &[ValueRef<'_>]) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![r]));
            return;
        }
        let not_after = |x: u32| row_cmp_key(cols, pk, x, key) != Ordering::Greater;
        let ci = self
            .chunks
            .partition_point(|c| not_after(*c.last().expect("non-empty")))
            .min(self.chunks.len() - 1);
        let c = Arc::make_mut(&mut self.chunks[ci]);
        let pos = c.partition_point(|&x| not_after(x));
        c.insert(pos, r);
        if c.len() > 2 * ORDER_CHUNK {
            let tail = c.split_off(ORDER_CHUNK);
            self.chunks.insert(ci + 1, Arc::new(tail));
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().copied())
    }

    fn memory_bytes(&self) -> usize {
        self.chunks.capacity() * 8
            + self
                .chunks
                .iter()
                .map(|c| 16 + 24 + c.capacity() * 4)
                .sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// Store

/// Columns, tombstones, order and primary-key index of one table version.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pub(crate) cols: Vec<Column>,
    /// Physical rows (live and tombstoned); row ids are `0..rows`.
    pub(crate) rows: usize,
    /// Tombstone bitmap per row chunk, when the chunk has a tombstone.
    dead: Vec<Option<Arc<Vec<u64>>>>,
    pub(crate) dead_count: usize,
    /// `None`: row-id order is primary-key order (or load order without a primary key).
    pub(crate) order: Option<Order>,
    pub(crate) pk_cols: Vec<usize>,
    pub(crate) pk: PkIndex,
}

impl Store {
    /// A store over `cols` whose `rows` rows are all live and in primary-key order.
    pub(crate) fn new(cols: Vec<Column>, rows: usize, pk_cols: Vec<usize>) -> Store {
        let pk = PkIndex::build(&cols, &pk_cols, rows);
        Store {
            cols,
            rows,
            dead: vec![None; rows.div_ceil(CHUNK_ROWS)],
            dead_count: 0,
            order: None,
            pk_cols,
            pk,
        }
    }

    /// Sort freshly loaded rows into primary-key order when they are not (checked first).
    pub(crate) fn sort_loaded(cols: Vec<Column>, rows: usize, pk: &[usize]) -> Vec<Column> {
        if pk.is_empty() || rows < 2 {
            return cols;
        }
        let perm: Vec<u32> = if pk.len() == 1
            && int_like(cols[pk[0]].ty)
            && (0..rows as u32).all(|r| cols[pk[0]].get(r) != ValueRef::Null)
        {
            let col = &cols[pk[0]];
            let key = |r: u32| int_key(col.get(r)).expect("non-null");
            if (1..rows as u32).all(|r| key(r - 1) <= key(r)) {
                return cols;
            }
            let mut pairs: Vec<(i64, u32)> = (0..rows as u32).map(|r| (key(r), r)).collect();
            pairs.sort_unstable();
            pairs.into_iter().map(|(_, r)| r).collect()
        } else {
            if (1..rows as u32).all(|r| row_cmp_row(&cols, pk, r - 1, r) != Ordering::Greater) {
                return cols;
            }
            let mut perm: Vec<u32> = (0..rows as u32).collect();
            perm.sort_unstable_by(|&a, &b| row_cmp_row(&cols, pk, a, b).then(a.cmp(&b)));
            perm
        };
        // Column by column, so that only one column is held twice at a time.
        let mut out = Vec::with_capacity(cols.len());
        for col in cols {
            let compress = col.is_compressed();
            out.push(gather_column(&col, &perm, compress));
        }
        out
    }

    pub(crate) fn live_count(&self) -> usize {
        self.rows - self.dead_count
    }

    #[inline(always)]
    pub(crate) fn is_live(&self, r: u32) -> bool {
        let r = r as usize;
        match &self.dead[r >> CHUNK_SHIFT] {
            None => true,
            Some(b) => !bit(b, r & CHUNK_MASK),
        }
    }

    /// Live row ids in primary-key order.
    pub(crate) fn scan(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match &self.order {
            None if self.dead_count == 0 => Box::new(0..self.rows as u32),
            None => Box::new((0..self.rows as u32).filter(|&r| self.is_live(r))),
            Some(o) => Box::new(o.iter().filter(|&r| self.is_live(r))),
        }
    }

    /// Live row ids in primary-key order from the first whose first key column is not below
    /// `first` (a canonical value): a binary search in the order, which keeps tombstoned rows
    /// in place, so it stays sorted.
    pub(crate) fn scan_from(&self, first: ValueRef<'_>) -> Box<dyn Iterator<Item = u32> + '_> {
        let Some(&c0) = self.pk_cols.first() else {
            return self.scan();
        };
        let below = |r: u32| row_cmp_key(&self.cols, &[c0], r, &[first]) == Ordering::Less;
        match &self.order {
            None => {
                let (mut lo, mut hi) = (0u32, self.rows as u32);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if below(mid) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                Box::new((lo..self.rows as u32).filter(|&r| self.is_live(r)))
            }
            Some(o) => {
                let ci = o
                    .chunks
                    .partition_point(|c| below(*c.last().expect("non-empty")));
                let at = o
                    .chunks
                    .get(ci)
                    .map_or(0, |c| c.partition_point(|&r| below(r)));
                Box::new(
                    o.chunks[ci.min(o.chunks.len())..]
                        .iter()
                        .enumerate()
                        .flat_map(move |(i, c)| c[if i == 0 { at } else { 0 }..].iter().copied())
                        .filter(|&r| self.is_live(r)),
                )
            }
        }
    }

    /// The live row with this primary key (canonical values).
    #[inline]
    pub(crate) fn pk_find(&self, key: &[ValueRef<'_>]) -> Option<u32> {
        if key.len() != self.pk_cols.len() {
            return None;
        }
        self.pk.find(&self.cols, &self.pk_cols, key)
    }

    /// The first live row (in scan order) whose cells all equal `row` (tables without a primary
    /// key; O(rows)).
    pub(crate) fn find_equal_row(&self, row: &[ValueRef<'_>]) -> Option<u32> {
        let all: Vec<usize> = (0..self.cols.len()).collect();
        self.scan().find(|&r| row_eq_key(&self.cols, &all, r, row))
    }

    /// Hash of the cells of row `r` (for fingerprints).
    pub(crate) fn row_hash(&self, r: u32) -> u64 {
        let mut m = Mix::new();
        for c in &self.cols {
            c.with(r, |v| m.cell(v));
        }
        m.finish()
    }

    fn set_dead(&mut self, r: u32) {
        let r = r as usize;
        let b = self.dead[r >> CHUNK_SHIFT].get_or_insert_with(|| Arc::new(vec![0; BITMAP_WORDS]));
        let b = Arc::make_mut(b);
        b[(r & CHUNK_MASK) >> 6] |= 1 << (r & 63);
        self.dead_count += 1;
    }

    /// Tombstone live row `r` and drop it from the primary-key index.
    pub(crate) fn delete(&mut self, r: u32) {
        self.pk.repoint(&self.cols, &self.pk_cols, r, NONE);
        self.set_dead(r);
    }

    /// Overwrite cell `c` of live row `r` (not a primary-key or indexed column).
    pub(crate) fn set(&mut self, c: usize, r: u32, v: ValueRef<'_>) {
        self.cols[c].set(r, v);
    }

    /// Append a row (canonical values, one per column) and place it in the primary-key index
    /// and order. With `replaces`, the row is the new version of live row `replaces` (same
    /// key), which is tombstoned and whose index entry is pointed at the new row.
    pub(crate) fn append(&mut self, vals: &[ValueRef<'_>], replaces: Option<u32>) -> u32 {
        assert!(self.rows < MAX_ROWS, "table has too many rows");
        let r = self.rows as u32;
        for (c, col) in self.cols.iter_mut().enumerate() {
            col.push(self.rows, vals[c]);
        }
        if self.rows & CHUNK_MASK == 0 {
            self.dead.push(None);
        }
        self.rows += 1;
        if self.pk_cols.is_empty() {
            return r;
        }
        match replaces {
            Some(old) => {
                self.pk.repoint(&self.cols, &self.pk_cols, old, r);
                self.set_dead(old);
            }
            None => {
                if !row_has_null(&self.cols, &self.pk_cols, r) {
                    self.pk.insert(&self.cols, &self.pk_cols, r);
                }
            }
        }
        let key: Vec<ValueRef<'_>> = self.pk_cols.iter().map(|&c| vals[c]).collect();
        match &mut self.order {
            Some(o) => o.insert(&self.cols, &self.pk_cols, r, &key),
            None => {
                let after_last = r == 0
                    || row_cmp_key(&self.cols, &self.pk_cols, r - 1, &key) != Ordering::Greater;
                if !after_last {
                    // Row r sits at the end of the identity order; move it to its place.
                    let mut o = Order::identity(r as usize);
                    o.insert(&self.cols, &self.pk_cols, r, &key);
                    self.order = Some(o);
                }
            }
        }
        r
    }

    /// Heap bytes of columns, tombstones, order and the primary-key index.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.cols.iter().map(Column::memory_bytes).sum::<usize>()
            + self.dead.capacity() * 8
            + self
                .dead
                .iter()
                .flatten()
                .map(|b| 16 + 24 + b.capacity() * 8)
                .sum::<usize>()
            + self.order.as_ref().map_or(0, Order::memory_bytes)
            + self.pk.memory_bytes()
    }

    /// Whether the tombstones are worth a compaction (more than a quarter of the rows).
    pub(crate) fn wants_compaction(&self) -> bool {
        self.dead_count > 0 && self.dead_count * 4 > self.rows
    }
}
