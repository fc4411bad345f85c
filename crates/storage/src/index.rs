//! Multi-valued hash indexes (foreign keys and lazily indexed column sets).

use std::sync::Arc;

use refract_schema::ValueRef;

use crate::chunk::{Column, CHUNK_MASK, CHUNK_ROWS, CHUNK_SHIFT};
use crate::hash::{hash_key, Slots, NONE};
use crate::store::{key_hash_row, row_eq_key, row_eq_row, row_has_null, Store};

/// Rows grouped by the values of `columns`.
///
/// Layout: every row with a non-NULL key is on a circular chain of the rows that share its key,
/// linked in ascending row-id order through `next` (4 bytes per row, chunked like the columns);
/// the hash table holds one slot per distinct key, pointing at the chain's *last* row, whose
/// `next` is the first. Appending a row is O(1) (it becomes the new last row), and a lookup
/// costs O(matching rows). No key values are copied: candidates are compared against the
/// columns. Tombstoned rows stay on their chain (lookups skip them) until compaction.
#[derive(Clone, Debug)]
pub(crate) struct MultiIndex {
    pub(crate) columns: Vec<usize>,
    heads: Slots,
    next: Vec<Arc<Vec<u32>>>,
}

impl MultiIndex {
    /// Index the live rows of `store` on `columns`.
    pub(crate) fn build(store: &Store, columns: &[usize]) -> MultiIndex {
        let mut ix = MultiIndex {
            columns: columns.to_vec(),
            heads: Slots::default(),
            next: (0..store.rows.div_ceil(CHUNK_ROWS))
                .map(|i| {
                    Arc::new(Vec::with_capacity(
                        (store.rows - i * CHUNK_ROWS).min(CHUNK_ROWS),
                    ))
                })
                .collect(),
        };
        for r in 0..store.rows as u32 {
            if store.is_live(r) {
                ix.add(&store.cols, r);
            } else {
                ix.push_next(r, NONE);
            }
        }
        ix
    }

    fn push_next(&mut self, r: u32, v: u32) {
        let c = r as usize >> CHUNK_SHIFT;
        if self.next.len() <= c {
            self.next.push(Arc::new(Vec::new()));
        }
        let chunk = Arc::make_mut(&mut self.next[c]);
        chunk.push(v);
        if chunk.len() == CHUNK_ROWS {
            chunk.shrink_to_fit();
        }
    }

    #[inline(always)]
    fn next_of(&self, r: u32) -> u32 {
        let r = r as usize;
        self.next[r >> CHUNK_SHIFT][r & CHUNK_MASK]
    }

    fn set_next(&mut self, r: u32, v: u32) {
        let r = r as usize;
        Arc::make_mut(&mut self.next[r >> CHUNK_SHIFT])[r & CHUNK_MASK] = v;
    }

    /// Index row `r`, which is the row right after the last one indexed so far.
    pub(crate) fn add(&mut self, cols: &[Column], r: u32) {
        let keycols = &self.columns;
        if row_has_null(cols, keycols, r) {
            self.push_next(r, NONE);
            return;
        }
        let h = key_hash_row(cols, keycols, r);
        match self.heads.find(h, |t, _| row_eq_row(cols, keycols, t, r)) {
            Some((pos, tail)) => {
                let head = self.next_of(tail);
                self.push_next(r, head);
                self.set_next(tail, r);
                self.heads.set(pos, r);
            }
            None => {
                self.push_next(r, r);
                let keycols = &self.columns;
                self.heads
                    .insert(h, r, (), |id, _| key_hash_row(cols, keycols, id));
            }
        }
    }

    /// Rows whose key equals `key` (canonical, non-NULL values), ascending row ids, tombstoned
    /// rows included.
    pub(crate) fn lookup(&self, cols: &[Column], key: &[ValueRef<'_>]) -> Vec<u32> {
        let found = self.heads.find(hash_key(key), |t, _| {
            row_eq_key(cols, &self.columns, t, key)
        });
        let mut out = Vec::new();
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
        out
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.columns.capacity() * 8
            + self.heads.memory_bytes()
            + self.next.capacity() * 8
            + self
                .next
                .iter()
                .map(|n| 16 + 24 + n.capacity() * 4)
                .sum::<usize>()
    }
}
