//! Relation filters evaluated from the far side: a semi-join.
//!
//! A relation filter (`users(posts.comments.approved = false)`) is evaluated per row by
//! following the relations down and testing the related rows (the nested loop in
//! [`crate::exec`]). That is cheap when few rows are tested or matches come early, and costly
//! when many rows must be tested through large fan-outs. The other way round: test every row of
//! the far table once, walk the matching rows back up the foreign-key indexes, and mark the
//! rows of the filtered table they lead to — a row set, after which the filter is one bit test
//! per row.
//!
//! Which is cheaper is a bet on data the planner cannot see: estimates that assume columns are
//! independent are wrong exactly where this matters (the benchmark's unapproved comments all
//! lead to users whose id is a multiple of five). So the choice is made the way a ski-rental
//! problem is solved, which never costs more than twice the best choice in hindsight: every
//! query on a snapshot evaluates the filter by nested loop and adds the work it did (rows
//! visited) to a counter kept in the snapshot's [`refract_storage::Memo`]; once the counted
//! work reaches what building the row set costs (the rows of the tables on the path), the next
//! query builds it and every later query on that snapshot uses it. A swap starts over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use refract_storage::{RowId, Snapshot, Table};
use serde_json::{json, Value};

use crate::plan::{BPred, Lookup};

/// Relation keys longer than this are never walked backwards (no real foreign key is).
const MAX_KEY_COLUMNS: usize = 4;

/// One bit per row id of a table: the rows a relation filter holds for.
#[derive(Debug)]
pub(crate) struct RowSet {
    bits: Vec<u64>,
    len: usize,
}

impl RowSet {
    pub(crate) fn new(row_id_bound: usize) -> Self {
        RowSet {
            bits: vec![0; row_id_bound.div_ceil(64)],
            len: 0,
        }
    }

    /// Bytes this set takes for `row_id_bound` rows.
    pub(crate) fn bytes_for(row_id_bound: usize) -> usize {
        row_id_bound.div_ceil(64) * 8
    }

    /// Add `row`; whether it was new.
    pub(crate) fn insert(&mut self, row: RowId) -> bool {
        let (w, b) = (row as usize / 64, row % 64);
        let new = self.bits[w] & (1 << b) == 0;
        self.bits[w] |= 1 << b;
        self.len += usize::from(new);
        new
    }

    #[inline]
    pub(crate) fn contains(&self, row: RowId) -> bool {
        self.bits
            .get(row as usize / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// What a snapshot remembers about one relation filter on one table.
#[derive(Debug)]
pub(crate) struct FilterMemo {
    /// Rows visited by nested-loop evaluations of the filter so far.
    pub work: AtomicU64,
    /// The work that building the row set costs: the rows of the tables on the path.
    pub buy_cost: u64,
    /// A query is building the set (others go on with the nested loop meanwhile).
    pub building: AtomicBool,
    /// The set, once built; `None` inside when it did not fit the memo's byte budget.
    pub set: OnceLock<Option<Arc<RowSet>>>,
}

impl FilterMemo {
    fn new(buy_cost: u64) -> Self {
        FilterMemo {
            work: AtomicU64::new(0),
            buy_cost,
            building: AtomicBool::new(false),
            set: OnceLock::new(),
        }
    }

    /// Whether the work counted so far pays for building the set.
    pub(crate) fn paid_for(&self) -> bool {
        self.work.load(Ordering::Relaxed) >= self.buy_cost
    }
}

/// Why `p` cannot be walked backwards, or `None` when it can: every hop must find its related
/// rows by plain key equality (same types on both sides) and, when it leads to one row, through
/// the target's primary key (the nested loop takes the first row of a non-unique to-one hop).
pub(crate) fn ineligible(p: &BPred<'_>) -> Option<&'static str> {
    if p.hops.is_empty() {
        return Some("not a relation filter");
    }
    for hop in &p.hops {
        if !hop.to_many && !matches!(hop.lookup, Lookup::Pk(_)) {
            return Some("a to-one relation that is not on the target's primary key");
        }
        if hop.key_types.iter().any(|(local, target)| local != target) {
            return Some("a relation whose key columns differ in type");
        }
        if hop.rel.local_columns.len() > MAX_KEY_COLUMNS {
            return Some("a relation key of more than four columns");
        }
    }
    None
}

/// The memo key of relation filter `p` on table `table` (its text names the same filter on the
/// same snapshot).
pub(crate) fn memo_key(table: usize, p: &BPred<'_>) -> String {
    format!("semi-join/{table}/{}", p.src)
}

/// The filter's memo entry on `snapshot` (created on first use; `None` when the memo is full).
pub(crate) fn memo(snapshot: &Snapshot, table: usize, p: &BPred<'_>) -> Option<Arc<FilterMemo>> {
    snapshot.memo.get_or_insert_with(&memo_key(table, p), || {
        FilterMemo::new(buy_cost(snapshot, table, p))
    })
}

/// The rows of `tables[table]` for which `p` holds, walking from the far table back through
/// the relations; `holds(far, row)` is the predicate's test on a far row, `go_on()` is asked
/// once per row visited (`false` stops: `None`).
pub(crate) fn build(
    tables: &[Arc<Table>],
    table: usize,
    p: &BPred<'_>,
    holds: impl Fn(&Table, RowId) -> bool,
    go_on: impl Fn() -> bool,
) -> Option<RowSet> {
    let (last, _) = p.hops.split_last()?;
    let far = &*tables[last.target];
    let mut frontier = Vec::new();
    for row in far.scan() {
        if !go_on() {
            return None;
        }
        if holds(far, row) {
            frontier.push(row);
        }
    }
    let mut found = Vec::new();
    for (i, hop) in p.hops.iter().enumerate().rev() {
        let near_index = if i == 0 { table } else { p.hops[i - 1].target };
        let near = &*tables[near_index];
        let target = &*tables[hop.target];
        let mut seen = RowSet::new(near.row_id_bound());
        let mut next = Vec::new();
        let n = hop.rel.target_columns.len();
        let mut bufs: [Vec<u8>; MAX_KEY_COLUMNS] = Default::default();
        for &row in &frontier {
            if !go_on() {
                return None;
            }
            // The target columns are a key of `target` in practice (never compressed), but a
            // relation may reference any columns: read them into buffers of their own.
            let mut key = [refract_schema::ValueRef::Null; MAX_KEY_COLUMNS];
            for ((slot, &col), buf) in key
                .iter_mut()
                .zip(&hop.rel.target_columns)
                .zip(bufs.iter_mut())
            {
                *slot = target.value_in(col, row, buf);
            }
            // NULL keys match nothing, as in the forward direction.
            near.index_lookup_into(&hop.rel.local_columns, &key[..n], &mut found);
            for &r in &found {
                if seen.insert(r) && i > 0 {
                    next.push(r);
                }
            }
        }
        if i == 0 {
            return Some(seen);
        }
        frontier = next;
    }
    None
}

/// How `explain` describes the evaluation of relation filter `p` on `table`.
pub(crate) fn describe(snapshot: &Snapshot, table: usize, p: &BPred<'_>) -> Value {
    if let Some(why) = ineligible(p) {
        return json!({"strategy": "nested_loop", "semi_join": format!("not possible: {why}")});
    }
    let Some(m) = snapshot.memo.get::<FilterMemo>(&memo_key(table, p)) else {
        return json!({"strategy": "nested_loop", "work_so_far": 0,
                      "semi_join_after_work": buy_cost(snapshot, table, p)});
    };
    match m.set.get() {
        Some(Some(set)) => json!({"strategy": "semi_join", "matching_rows": set.len()}),
        Some(None) => json!({"strategy": "nested_loop",
                             "semi_join": "not possible: the snapshot's memo is full"}),
        None => json!({"strategy": "nested_loop",
                       "work_so_far": m.work.load(Ordering::Relaxed),
                       "semi_join_after_work": m.buy_cost}),
    }
}

/// What building the row set costs, in rows visited: the rows of every table on the path.
fn buy_cost(snapshot: &Snapshot, table: usize, p: &BPred<'_>) -> u64 {
    p.hops
        .iter()
        .map(|h| snapshot.tables[h.target].row_id_bound() as u64)
        .sum::<u64>()
        + snapshot.tables[table].row_id_bound() as u64
}

#[cfg(test)]
mod tests {
    use super::RowSet;

    #[test]
    fn row_sets_count_and_answer_membership() {
        let mut s = RowSet::new(130);
        assert!(s.insert(0) && s.insert(129) && s.insert(64));
        assert!(!s.insert(64));
        assert_eq!(s.len(), 3);
        assert!(s.contains(129) && s.contains(0) && !s.contains(1) && !s.contains(10_000));
        assert_eq!(RowSet::bytes_for(130), 24);
    }
}
