//! Multi-valued hash indexes (foreign keys and lazily indexed column sets).

use std::sync::Arc;

use refract_schema::{ColumnType, ValueRef};

use crate::chunk::{Column, CHUNK_MASK, CHUNK_ROWS, CHUNK_SHIFT};
use crate::hash::{hash_key, Slots, NONE};
use crate::store::{key_hash_row, row_eq_key, row_eq_row, row_has_null, Store};

/// Rows grouped by the values of `columns`.
///
/// Two layers, so that the rows of a key are read from one place in the common case and
/// appending stays O(1):
/// - [`Groups`]: the rows that existed when the index was built, stored contiguously per key.
///   A lookup costs a hash probe plus one read of the group, instead of one dependent cache
///   miss per matching row (the rows of a key are usually scattered over the table: the posts
///   of a user, the comments of a post).
/// - [`Chains`]: the rows appended since (change data capture), linked per key.
///
/// No key values are copied: candidates are compared against the columns. Tombstoned rows stay
/// in their group or chain (lookups skip them) until compaction rebuilds the index.
#[derive(Clone, Debug)]
pub(crate) struct MultiIndex {
    pub(crate) columns: Vec<usize>,
    built: Arc<Groups>,
    appended: Chains,
}

impl MultiIndex {
    /// Index the live rows of `store` on `columns`.
    pub(crate) fn build(store: &Store, columns: &[usize]) -> MultiIndex {
        let built = Groups::build(store, columns);
        let appended = Chains::starting_at(built.upto);
        MultiIndex {
            columns: columns.to_vec(),
            built: Arc::new(built),
            appended,
        }
    }

    /// Index row `r`, which is the row right after the last one indexed so far.
    pub(crate) fn add(&mut self, cols: &[Column], r: u32) {
        self.appended.add(cols, &self.columns, r);
    }

    /// Append the rows whose key equals `key` (canonical, non-NULL values) to `out`, ascending
    /// row ids, tombstoned rows included.
    pub(crate) fn lookup_into(&self, cols: &[Column], key: &[ValueRef<'_>], out: &mut Vec<u32>) {
        let h = hash_key(key);
        self.built.lookup_into(h, cols, &self.columns, key, out);
        self.appended.lookup_into(h, cols, &self.columns, key, out);
    }

    /// Start loading the hash slots where `key` (canonical, non-NULL) would be found.
    #[inline]
    pub(crate) fn prefetch(&self, key: &[ValueRef<'_>]) {
        let h = hash_key(key);
        self.built.prefetch(h, key);
        self.appended.heads.prefetch(h);
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.columns.capacity() * 8 + self.built.memory_bytes() + self.appended.memory_bytes()
    }
}

/// The rows below `upto`, grouped by key. Two layouts:
/// - hashed: from offset `o`, the key itself when it is one integer column (two words, low
///   first, so that a probe compares it without reading the table), then the number `n` of
///   rows, then those rows in ascending order. The hash table maps each key to its `o`.
/// - dense, for one integer column whose values fill most of their range (foreign keys to
///   auto-increment ids): the rows sorted by key, and per value of the range where its rows
///   start (`starts`, one more than the range). No hash table, no key copies: 4 bytes per row
///   plus 4 per value of the range, and a lookup reads two adjacent words.
///
/// Immutable once built.
#[derive(Debug, Default)]
struct Groups {
    slots: Slots,
    rows: Vec<u32>,
    /// Words before the row count: 2 when the key is stored inline, else 0.
    inline_key: usize,
    /// Dense layout: the smallest key; `starts[k - min]..starts[k - min + 1]` are key k's rows.
    dense: Option<(i64, Vec<u32>)>,
    upto: u32,
}

impl Groups {
    /// The dense layout over integer column `col`, when its live values span at most twice as
    /// many integers as there are rows (else the hashed layout is smaller).
    fn build_dense(store: &Store, col: &Column) -> Option<Groups> {
        let key = |r: u32| match col.get(r) {
            ValueRef::Int(k) => Some(k),
            _ => None,
        };
        let live = |r: &u32| store.is_live(*r);
        let (mut min, mut max, mut n) = (i64::MAX, i64::MIN, 0usize);
        for k in (0..store.rows as u32).filter(live).filter_map(key) {
            min = min.min(k);
            max = max.max(k);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let span = u64::try_from(max as i128 - min as i128 + 1).ok()?;
        if span > 2 * n as u64 + CHUNK_ROWS as u64 || span >= u32::MAX as u64 {
            return None;
        }
        // A counting sort: rows per key, prefix sums, then each row at its key's next place.
        let mut starts = vec![0u32; span as usize + 1];
        for k in (0..store.rows as u32).filter(live).filter_map(key) {
            starts[(k - min) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut rows = vec![0u32; n];
        for r in (0..store.rows as u32).filter(live) {
            if let Some(k) = key(r) {
                let at = &mut fill[(k - min) as usize];
                rows[*at as usize] = r;
                *at += 1;
            }
        }
        Some(Groups {
            slots: Slots::default(),
            rows,
            inline_key: 0,
            dense: Some((min, starts)),
            upto: store.rows as u32,
        })
    }

    /// Two passes over the rows: number the distinct keys in order of first appearance (a
    /// counting sort's histogram), then place each row in its key's group.
    fn build(store: &Store, keycols: &[usize]) -> Groups {
        let cols = &store.cols;
        if let [c] = keycols {
            if cols[*c].ty == ColumnType::Int {
                if let Some(g) = Groups::build_dense(store, &cols[*c]) {
                    return g;
                }
            }
        }
        let mut slots = Slots::default();
        // Per key number: its first row (to compare and rehash keys) and its row count.
        let mut first: Vec<u32> = Vec::new();
        let mut count: Vec<u32> = Vec::new();
        let mut key_of_row: Vec<u32> = Vec::with_capacity(store.rows);
        for r in 0..store.rows as u32 {
            if !store.is_live(r) || row_has_null(cols, keycols, r) {
                key_of_row.push(NONE);
                continue;
            }
            let h = key_hash_row(cols, keycols, r);
            let k = match slots.find(h, |k, _| row_eq_row(cols, keycols, first[k as usize], r)) {
                Some((_, k)) => {
                    count[k as usize] += 1;
                    k
                }
                None => {
                    let k = first.len() as u32;
                    first.push(r);
                    count.push(1);
                    slots.insert(h, k, (), |k, _| {
                        key_hash_row(cols, keycols, first[k as usize])
                    });
                    k
                }
            };
            key_of_row.push(k);
        }
        let inline_key = match keycols {
            [c] if cols[*c].ty == ColumnType::Int => 2,
            _ => 0,
        };
        // `offset[k]`: where the group of key k starts.
        let mut offset: Vec<u32> = Vec::with_capacity(count.len());
        let mut total = 0usize;
        for &n in &count {
            offset.push(total as u32);
            total += inline_key + 1 + n as usize;
        }
        let mut rows = vec![0u32; total];
        // `fill[k]`: where the next row of key k goes; starts right after its length cell.
        let mut fill: Vec<u32> = Vec::with_capacity(count.len());
        for ((&o, &n), &r) in offset.iter().zip(&count).zip(&first) {
            let o = o as usize;
            if inline_key > 0 {
                let ValueRef::Int(key) = cols[keycols[0]].get(r) else {
                    unreachable!("a non-NULL cell of an integer column is an integer")
                };
                rows[o] = key as u32;
                rows[o + 1] = (key >> 32) as u32;
            }
            rows[o + inline_key] = n;
            fill.push((o + inline_key + 1) as u32);
        }
        for (r, &k) in key_of_row.iter().enumerate() {
            if k != NONE {
                let at = &mut fill[k as usize];
                rows[*at as usize] = r as u32;
                *at += 1;
            }
        }
        slots.map_ids(|k| offset[k as usize]);
        Groups {
            slots,
            rows,
            inline_key,
            dense: None,
            upto: store.rows as u32,
        }
    }

    #[inline]
    fn lookup_into(
        &self,
        h: u64,
        cols: &[Column],
        keycols: &[usize],
        key: &[ValueRef<'_>],
        out: &mut Vec<u32>,
    ) {
        let rows = &self.rows;
        if let Some((min, starts)) = &self.dense {
            if let [ValueRef::Int(k)] = key {
                if let Some(i) = k.checked_sub(*min).and_then(|i| usize::try_from(i).ok()) {
                    if i + 1 < starts.len() {
                        out.extend_from_slice(&rows[starts[i] as usize..starts[i + 1] as usize]);
                    }
                }
            }
            return;
        }
        let skip = self.inline_key;
        let found = self.slots.find(h, |o, _| {
            let o = o as usize;
            match key {
                [ValueRef::Int(k)] if skip > 0 => {
                    *k == (rows[o] as i64 | (rows[o + 1] as i64) << 32)
                }
                _ => row_eq_key(cols, keycols, rows[o + skip + 1], key),
            }
        });
        if let Some((_, o)) = found {
            let o = o as usize + skip;
            let n = rows[o] as usize;
            out.extend_from_slice(&rows[o + 1..=o + n]);
        }
    }

    /// Start loading where the rows of `key` (hash `h`) would be found.
    #[inline]
    fn prefetch(&self, h: u64, key: &[ValueRef<'_>]) {
        match (&self.dense, key) {
            (Some((min, starts)), [ValueRef::Int(k)]) => {
                let i = k.wrapping_sub(*min) as usize;
                if i < starts.len() {
                    crate::chunk::prefetch(starts[i..].as_ptr().cast());
                }
            }
            (Some(_), _) => {}
            (None, _) => self.slots.prefetch(h),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.slots.memory_bytes()
            + self.rows.capacity() * 4
            + self.dense.as_ref().map_or(0, |(_, s)| s.capacity() * 4)
    }
}

/// The rows from `base` on, each on a circular chain of the rows that share its key, linked in
/// ascending row-id order through `next` (4 bytes per row, chunked like the columns); the hash
/// table holds one slot per distinct key, pointing at the chain's *last* row, whose `next` is
/// the first. Appending a row is O(1) (it becomes the new last row), and a lookup costs one
/// step per matching row.
#[derive(Clone, Debug, Default)]
struct Chains {
    base: u32,
    heads: Slots,
    next: Vec<Arc<Vec<u32>>>,
}

impl Chains {
    fn starting_at(base: u32) -> Chains {
        Chains {
            base,
            ..Chains::default()
        }
    }

    fn push_next(&mut self, v: u32) {
        if self.next.last().is_none_or(|c| c.len() == CHUNK_ROWS) {
            self.next.push(Arc::new(Vec::new()));
        }
        let chunk = Arc::make_mut(self.next.last_mut().expect("pushed above"));
        chunk.push(v);
        if chunk.len() == CHUNK_ROWS {
            chunk.shrink_to_fit();
        }
    }

    #[inline(always)]
    fn next_of(&self, r: u32) -> u32 {
        let i = (r - self.base) as usize;
        self.next[i >> CHUNK_SHIFT][i & CHUNK_MASK]
    }

    fn set_next(&mut self, r: u32, v: u32) {
        let i = (r - self.base) as usize;
        Arc::make_mut(&mut self.next[i >> CHUNK_SHIFT])[i & CHUNK_MASK] = v;
    }

    /// Link row `r`, the row right after the last one linked so far.
    fn add(&mut self, cols: &[Column], keycols: &[usize], r: u32) {
        if row_has_null(cols, keycols, r) {
            self.push_next(NONE);
            return;
        }
        let h = key_hash_row(cols, keycols, r);
        match self.heads.find(h, |t, _| row_eq_row(cols, keycols, t, r)) {
            Some((pos, tail)) => {
                let head = self.next_of(tail);
                self.push_next(head);
                self.set_next(tail, r);
                self.heads.set(pos, r);
            }
            None => {
                self.push_next(r);
                self.heads
                    .insert(h, r, (), |id, _| key_hash_row(cols, keycols, id));
            }
        }
    }

    #[inline]
    fn lookup_into(
        &self,
        h: u64,
        cols: &[Column],
        keycols: &[usize],
        key: &[ValueRef<'_>],
        out: &mut Vec<u32>,
    ) {
        let found = self.heads.find(h, |t, _| row_eq_key(cols, keycols, t, key));
        if let Some((_, tail)) = found {
            let mut r = self.next_of(tail);
            loop {
                out.push(r);
                if r == tail {
                    break;
                }
                r = self.next_of(r);
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.heads.memory_bytes()
            + self.next.capacity() * 8
            + self
                .next
                .iter()
                .map(|n| 16 + 24 + n.capacity() * 4)
                .sum::<usize>()
    }
}
