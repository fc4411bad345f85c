//! Stage 5: run a plan over the snapshot's columns and indexes, writing JSON as rows are found.
//!
//! Without `ORDER BY`, rows stream in primary-key order and the scan stops as soon as the limit
//! is reached (plus one row to tell whether the default limit cut the result); so does an
//! `ORDER BY` that is the primary key ascending ([`crate::plan::pk_order`]). With any other
//! `ORDER BY`, the matching row ids are collected and only the first `offset + limit` are fully
//! sorted.
//! Relations are followed through hash indexes, never by scanning the related table.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;

use refract_schema::{ColumnType, Value, ValueRef};
use refract_storage::{RowId, Snapshot, Table};

use crate::ast::CmpOp;
use crate::collate::CiRules;
use crate::json;
use crate::literal::DAY_US;
use crate::plan::{Access, BExpr, BPred, Hop, Lit, Lookup, Node, OrderKey, Output, Test, Tri};
use crate::semijoin::{self, FilterMemo, RowSet};
use crate::{Interrupt, QueryOptions, RunLimits, RunSummary, Sink};

/// Relation paths with at least this many hops remember the rows they explored.
const MEMO_HOPS: usize = 3;

#[cfg(test)]
thread_local! {
    /// Tests: sort even when the order is the primary key, to compare with the streaming path.
    pub(crate) static FORCE_SORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: never walk a column order, to compare with the sorting path.
    pub(crate) static NO_COLUMN_ORDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: `Some(true)` evaluates every eligible relation filter by semi-join at once,
    /// `Some(false)` never; `None` chooses as in production.
    pub(crate) static SEMI_JOIN: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// `ORDER BY` a column with a `LIMIT` at most this big walks the table's order of that column.
const COLUMN_ORDER_MAX_KEEP: usize = 10_000;

/// Whether the top-level `node` reads its first `keep` rows from the order of its first
/// `ORDER BY` column ([`Table::column_order`]) rather than sorting every match: a scan with an
/// explicit `LIMIT` small next to the table, ordered by a column of the table itself. The
/// table needs a primary key, which breaks ties the same way on both paths.
pub(crate) fn walks_column_order(node: &Node<'_>, table: &Table) -> bool {
    #[cfg(test)]
    if NO_COLUMN_ORDER.with(|f| f.get()) {
        return false;
    }
    let keep = node.offset.saturating_add(node.limit.unwrap_or(usize::MAX));
    matches!(node.access, Access::Scan)
        && !node.pk_order
        && node.order.first().is_some_and(|k| k.hops.is_empty())
        && !table.manifest.primary_key.is_empty()
        && keep <= COLUMN_ORDER_MAX_KEEP
        && keep.saturating_mul(4) < table.row_count()
}

/// Whether `node`'s rows are wanted in primary-key order (no `ORDER BY`, or one equal to it).
fn in_pk_order(node: &Node<'_>) -> bool {
    #[cfg(test)]
    if FORCE_SORT.with(|f| f.get()) {
        return node.order.is_empty();
    }
    node.order.is_empty() || node.pk_order
}

/// Run the planned top-level `node` within `limits`, handing full pieces to `sink`.
pub(crate) fn run(
    snapshot: &Snapshot,
    node: &Node<'_>,
    options: &QueryOptions,
    limits: &RunLimits,
    sink: &mut dyn Sink,
) -> Result<RunSummary, Interrupt> {
    let mut ex = Exec {
        tables: &snapshot.tables,
        ci: CiRules::for_backend(snapshot.manifest.backend),
        scratch: RefCell::new(Vec::new()),
        nested_limit: options.default_nested_limit,
        bounds: Bounds::new(limits, sink),
        rel_filters: HashMap::new(),
    };
    let mut rel_filters = HashMap::new();
    ex.prepare_relation_filters(snapshot, node, &mut rel_filters);
    ex.rel_filters = rel_filters;
    ex.bounds.check()?;
    let table = &*ex.tables[node.table];
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    let limit = node.limit.unwrap_or(options.default_limit);
    let mut rows = 0usize;
    let mut truncated = false;
    if in_pk_order(node) {
        let mut skip = node.offset;
        // Returns whether to go on.
        let mut emit = |row: RowId, out: &mut Vec<u8>| -> bool {
            if !ex.bounds.tick() {
                return false;
            }
            if !ex.passes(node.filter.as_ref(), table, row) {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            if rows == limit {
                truncated = node.limit.is_none();
                return false;
            }
            if rows > 0 {
                out.push(b',');
            }
            ex.write_row(out, node, table, row);
            rows += 1;
            node.limit.is_none() || rows < limit
        };
        if node.limit != Some(0) {
            match &node.access {
                Access::Pk(keys) if keys.len() == 1 => {
                    if let Some(row) = with_key(&keys[0], |k| table.pk_lookup(k)) {
                        emit(row, &mut out);
                    }
                }
                Access::Pk(_) | Access::Index { .. } => {
                    let found = ex.access_rows(table, &node.access);
                    if node.filter.is_none() {
                        let end = node.offset.saturating_add(limit).min(found.len());
                        ex.prefetch(node, table, &found[node.offset.min(end)..end]);
                    }
                    for (i, &row) in found.iter().enumerate() {
                        // Rows before the offset are never written: nothing to load for them.
                        if i + 1 >= node.offset {
                            ex.prefetch_next_lookups(node, table, &found, i);
                        }
                        if !emit(row, &mut out) {
                            break;
                        }
                    }
                }
                Access::PkFrom(from) => {
                    for row in table.scan_from(from.as_ref()) {
                        if !emit(row, &mut out) {
                            break;
                        }
                    }
                }
                Access::Scan | Access::Relation => {
                    for row in table.scan() {
                        if !emit(row, &mut out) {
                            break;
                        }
                    }
                }
            }
        }
    } else {
        let keep = node.offset.saturating_add(limit);
        let mut cands = if walks_column_order(node, table) {
            ex.first_in_column_order(node, table, keep)
        } else {
            let mut cands = match &node.access {
                Access::Scan | Access::Relation => table.scan().collect(),
                access => ex.access_rows(table, access),
            };
            if let Some(f) = &node.filter {
                cands.retain(|&row| ex.bounds.tick() && ex.eval(f, table, row) == Tri::True);
            }
            cands
        };
        ex.bounds.check()?;
        truncated = node.limit.is_none() && cands.len() > keep;
        ex.sort(&node.order, table, &mut cands, keep);
        let end = keep.min(cands.len());
        let shown = &cands[node.offset.min(end)..end];
        ex.prefetch(node, table, shown);
        for (i, &row) in shown.iter().enumerate() {
            if !ex.bounds.tick() {
                break;
            }
            ex.prefetch_next_lookups(node, table, shown, i);
            if rows > 0 {
                out.push(b',');
            }
            ex.write_row(&mut out, node, table, row);
            rows += 1;
        }
    }
    ex.bounds.check()?;
    out.push(b']');
    Ok(RunSummary {
        bytes: ex.bounds.flushed.get() + out.len(),
        tail: out,
        rows,
        truncated: truncated || ex.bounds.nested_truncated.get(),
    })
}

/// Rows visited between two looks at the clock and at the sink.
const TICKS_PER_CHECK: u32 = 256;

/// The bounds of one run ([`RunLimits`]) and where its full pieces go. Loops call
/// [`Bounds::tick`] per row they visit and stop when it says so; [`Exec::write_row`] calls
/// [`Bounds::row_written`]. Once stopped, every loop unwinds quickly and the run returns the
/// interrupt: the bytes written meanwhile are garbage nobody reads.
struct Bounds<'k> {
    limits: RunLimits,
    sink: RefCell<&'k mut dyn Sink>,
    /// Bytes handed to the sink so far.
    flushed: Cell<usize>,
    ticks: Cell<u32>,
    stopped: Cell<Option<Interrupt>>,
    /// A nested default limit cut a selection.
    nested_truncated: Cell<bool>,
}

impl<'k> Bounds<'k> {
    fn new(limits: &RunLimits, sink: &'k mut dyn Sink) -> Self {
        Bounds {
            limits: *limits,
            sink: RefCell::new(sink),
            flushed: Cell::new(0),
            ticks: Cell::new(0),
            stopped: Cell::new(None),
            nested_truncated: Cell::new(false),
        }
    }

    fn stop(&self, why: Interrupt) {
        if self.stopped.get().is_none() {
            self.stopped.set(Some(why));
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.get().is_some()
    }

    fn check(&self) -> Result<(), Interrupt> {
        self.stopped.get().map_or(Ok(()), Err)
    }

    /// One more row visited; whether to go on. Every [`TICKS_PER_CHECK`] rows it looks at the
    /// deadline and asks the sink whether the answer is still wanted.
    #[inline]
    fn tick(&self) -> bool {
        let t = self.ticks.get().wrapping_add(1);
        self.ticks.set(t);
        if t.is_multiple_of(TICKS_PER_CHECK) {
            if self
                .limits
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                self.stop(Interrupt::Timeout);
            } else if !self.sink.borrow().wanted() {
                self.stop(Interrupt::Cancelled);
            }
        }
        !self.stopped()
    }

    /// A row (at any depth) ends at `out.len()`: stop past the byte cap, hand a full piece to
    /// the sink.
    #[inline]
    fn row_written(&self, out: &mut Vec<u8>) {
        let total = self.flushed.get() + out.len();
        if total > self.limits.max_bytes {
            self.stop(Interrupt::TooLarge);
        } else if out.len() >= self.limits.flush_bytes && !self.stopped() {
            let piece = std::mem::replace(out, Vec::with_capacity(self.limits.flush_bytes));
            self.flushed.set(total);
            if !self.sink.borrow_mut().write(piece) {
                self.stop(Interrupt::Cancelled);
            }
        }
    }
}

/// `f(key as ValueRefs)` without allocating for one-column keys.
fn with_key<R>(key: &[Value], f: impl FnOnce(&[ValueRef<'_>]) -> R) -> R {
    if let [k] = key {
        f(&[k.as_ref()])
    } else {
        let refs: Vec<ValueRef<'_>> = key.iter().map(Value::as_ref).collect();
        f(&refs)
    }
}

/// The key of a predicate of the plan being run in [`Exec::rel_filters`]: its address (the
/// plan outlives the run and does not move meanwhile).
fn pred_address(p: &BPred<'_>) -> usize {
    p as *const BPred<'_> as usize
}

/// The relation filters (predicates through relations) of `e`.
fn relation_preds<'e, 'a>(e: &'e BExpr<'a>, out: &mut Vec<&'e BPred<'a>>) {
    match e {
        BExpr::And(t) | BExpr::Or(t) => t.iter().for_each(|x| relation_preds(x, out)),
        BExpr::Not(x) => relation_preds(x, out),
        BExpr::Pred(p) if !p.hops.is_empty() => out.push(p),
        BExpr::Pred(_) => {}
    }
}

/// For an `ORDER BY` key behind relations: the table that holds the value and, per row being
/// sorted, the row that holds it (`None` when a relation leads nowhere).
type HeldRows<'t> = (&'t Table, Vec<Option<RowId>>);

/// Rows related to one row through a hop.
enum Related {
    None,
    One(RowId),
    Many(Vec<RowId>),
}

struct Exec<'s, 'k> {
    tables: &'s [Arc<Table>],
    /// How case-insensitive columns order on this source.
    ci: CiRules,
    /// Row lists done with, kept for the next index lookups (no allocation per lookup).
    scratch: RefCell<Vec<Vec<RowId>>>,
    /// Rows per parent of a nested to-many selection without `LIMIT`.
    nested_limit: usize,
    bounds: Bounds<'k>,
    /// How each relation filter of the plan is evaluated ([`crate::semijoin`]), by the
    /// address of its predicate ([`pred_address`]); filters not in here use the nested loop without counting.
    rel_filters: HashMap<usize, RelFilter>,
}

/// One relation filter of a run: its row set, or the nested loop counting its work.
struct RelFilter {
    set: Option<Arc<RowSet>>,
    memo: Option<Arc<FilterMemo>>,
    /// Rows visited by this run's nested-loop evaluations (added to the memo at the end).
    work: Cell<u64>,
}

impl Drop for Exec<'_, '_> {
    fn drop(&mut self) {
        for f in self.rel_filters.values() {
            if let Some(m) = &f.memo {
                m.work.fetch_add(f.work.get(), AtomicOrdering::Relaxed);
            }
        }
    }
}

impl<'s> Exec<'s, '_> {
    /// Decide how each relation filter in `node`'s tree is evaluated in this run: by its row
    /// set when the snapshot has one or the nested-loop work counted so far has paid for
    /// building it (then it is built now), else by nested loop, counting the work.
    fn prepare_relation_filters(
        &self,
        snapshot: &Snapshot,
        node: &Node<'s>,
        out: &mut HashMap<usize, RelFilter>,
    ) {
        let mut preds = Vec::new();
        if let Some(f) = &node.filter {
            relation_preds(f, &mut preds);
        }
        #[cfg(test)]
        let forced = SEMI_JOIN.with(|f| f.get());
        #[cfg(not(test))]
        let forced: Option<bool> = None;
        for p in preds {
            if forced == Some(false) || semijoin::ineligible(p).is_some() {
                continue;
            }
            let Some(memo) = semijoin::memo(snapshot, node.table, p) else {
                continue;
            };
            let mut set = memo.set.get().cloned().flatten();
            if set.is_none()
                && memo.set.get().is_none()
                && (forced == Some(true) || memo.paid_for())
                && !memo.building.swap(true, AtomicOrdering::AcqRel)
            {
                set = self.build_row_set(snapshot, node.table, p, &memo);
                memo.building.store(false, AtomicOrdering::Release);
            }
            out.insert(
                pred_address(p),
                RelFilter {
                    set,
                    memo: Some(memo),
                    work: Cell::new(0),
                },
            );
        }
        for o in &node.outputs {
            if let Output::Relation { node: child, .. } = o {
                self.prepare_relation_filters(snapshot, child, out);
            }
        }
    }

    /// Build `p`'s row set on `table` into `memo` (within this run's bounds); the set, or
    /// `None` when the run was stopped or the set does not fit the snapshot's memo.
    fn build_row_set(
        &self,
        snapshot: &Snapshot,
        table: usize,
        p: &BPred<'_>,
        memo: &FilterMemo,
    ) -> Option<Arc<RowSet>> {
        let bytes = RowSet::bytes_for(self.tables[table].row_id_bound());
        if !snapshot.memo.reserve(bytes) {
            let _ = memo.set.set(None);
            return None;
        }
        let set = semijoin::build(
            self.tables,
            table,
            p,
            |far, row| far.with_value(p.col, row, |v| test(&p.test, v)) == Tri::True,
            || self.bounds.tick(),
        )?;
        let set = Arc::new(set);
        let _ = memo.set.set(Some(set.clone()));
        Some(set)
    }

    /// Give a row list back for reuse.
    fn recycle(&self, rows: Vec<RowId>) {
        let mut scratch = self.scratch.borrow_mut();
        if scratch.len() < 16 {
            scratch.push(rows);
        }
    }

    /// Rows found by lookups, in primary-key order, without duplicates.
    fn access_rows(&self, table: &Table, access: &Access) -> Vec<RowId> {
        let mut rows: Vec<RowId> = match access {
            Access::Pk(keys) => keys
                .iter()
                .filter_map(|k| with_key(k, |k| table.pk_lookup(k)))
                .collect(),
            Access::Index { cols, keys } => {
                if let [key] = keys.as_slice() {
                    return with_key(key, |k| table.index_lookup(cols, k));
                }
                keys.iter()
                    .flat_map(|k| with_key(k, |k| table.index_lookup(cols, k)))
                    .collect()
            }
            Access::Scan | Access::Relation => return table.scan().collect(),
            Access::PkFrom(from) => return table.scan_from(from.as_ref()).collect(),
        };
        if rows.len() > 1 {
            rows.sort_unstable();
            rows.dedup();
            sort_by_pk(table, &mut rows);
        }
        rows
    }

    fn passes(&self, filter: Option<&BExpr<'_>>, table: &Table, row: RowId) -> bool {
        filter.is_none_or(|f| self.eval(f, table, row) == Tri::True)
    }

    fn eval(&self, e: &BExpr<'_>, table: &Table, row: RowId) -> Tri {
        match e {
            BExpr::And(terms) => {
                let mut acc = Tri::True;
                for t in terms {
                    match self.eval(t, table, row) {
                        Tri::False => return Tri::False,
                        Tri::Unknown => acc = Tri::Unknown,
                        Tri::True => {}
                    }
                }
                acc
            }
            BExpr::Or(terms) => {
                let mut acc = Tri::False;
                for t in terms {
                    match self.eval(t, table, row) {
                        Tri::True => return Tri::True,
                        Tri::Unknown => acc = Tri::Unknown,
                        Tri::False => {}
                    }
                }
                acc
            }
            BExpr::Not(inner) => self.eval(inner, table, row).not(),
            BExpr::Pred(p) if p.hops.is_empty() => {
                table.with_value(p.col, row, |v| test(&p.test, v))
            }
            BExpr::Pred(p) => Tri::from_bool(self.relation_filter(p, table, row)),
        }
    }

    /// Relation filter `p` on `row`: a bit of its row set, or the nested loop (counted).
    #[inline]
    fn relation_filter(&self, p: &BPred<'_>, table: &Table, row: RowId) -> bool {
        let Some(f) = self.rel_filters.get(&pred_address(p)) else {
            return self.exists(&p.hops, table, row, p);
        };
        if let Some(set) = &f.set {
            return set.contains(row);
        }
        let before = self.bounds.ticks.get();
        let found = self.exists(&p.hops, table, row, p);
        let visited = self.bounds.ticks.get().wrapping_sub(before);
        f.work.set(f.work.get() + u64::from(visited) + 1);
        found
    }

    /// Whether a row reached through `hops` satisfies `p` (ANY semantics on to-many hops).
    fn exists(&self, hops: &[Hop<'_>], table: &Table, row: RowId, p: &BPred<'_>) -> bool {
        if hops.len() >= MEMO_HOPS {
            let mut seen = vec![HashSet::new(); hops.len()];
            return self.exists_memo(hops, 0, table, row, p, &mut seen);
        }
        let Some((hop, rest)) = hops.split_first() else {
            return table.with_value(p.col, row, |v| test(&p.test, v)) == Tri::True;
        };
        let target = &*self.tables[hop.target];
        match self.follow(hop, table, row) {
            Related::None => false,
            Related::One(r) => self.exists(rest, target, r, p),
            Related::Many(rows) => rows
                .into_iter()
                .any(|r| self.bounds.tick() && self.exists(rest, target, r, p)),
        }
    }

    /// [`Exec::exists`] for long paths: a row already explored at a level is not explored again
    /// (it did not match), so paths like `posts.author.posts.author.…` cost at most the rows
    /// they reach, not the product of their fan-outs.
    fn exists_memo(
        &self,
        hops: &[Hop<'_>],
        level: usize,
        table: &Table,
        row: RowId,
        p: &BPred<'_>,
        seen: &mut [HashSet<RowId>],
    ) -> bool {
        let Some(hop) = hops.get(level) else {
            return table.with_value(p.col, row, |v| test(&p.test, v)) == Tri::True;
        };
        let target = &*self.tables[hop.target];
        let rows = match self.follow(hop, table, row) {
            Related::None => return false,
            Related::One(r) => vec![r],
            Related::Many(rows) => rows,
        };
        rows.into_iter().any(|r| {
            self.bounds.tick()
                && seen[level].insert(r)
                && self.exists_memo(hops, level + 1, target, r, p, seen)
        })
    }

    /// The rows of the hop's target related to `row` (in primary-key order).
    fn follow(&self, hop: &Hop<'_>, table: &Table, row: RowId) -> Related {
        let target = &*self.tables[hop.target];
        self.with_hop_key(hop, table, row, |key| match &hop.lookup {
            Lookup::Pk(_) => match target.pk_lookup(key) {
                Some(r) => Related::One(r),
                None => Related::None,
            },
            Lookup::Index => {
                let mut rows = self.scratch.borrow_mut().pop().unwrap_or_default();
                target.index_lookup_into(&hop.rel.target_columns, key, &mut rows);
                if hop.to_many {
                    Related::Many(rows)
                } else {
                    let first = rows.first().map_or(Related::None, |&r| Related::One(r));
                    self.recycle(rows);
                    first
                }
            }
        })
        .unwrap_or(Related::None)
    }

    /// `f(the key of `row` in the hop's target, in the target index's column order)`, or `None`
    /// when a key value is NULL or does not convert.
    #[inline]
    fn with_hop_key<R>(
        &self,
        hop: &Hop<'_>,
        table: &Table,
        row: RowId,
        f: impl FnOnce(&[ValueRef<'_>]) -> R,
    ) -> Option<R> {
        let local = &hop.rel.local_columns;
        let n = local.len();
        let mut buf = [ValueRef::Null; 4];
        let mut heap = Vec::new();
        let key: &mut [ValueRef<'_>] = if n <= 4 {
            &mut buf[..n]
        } else {
            heap.resize(n, ValueRef::Null);
            &mut heap
        };
        for (i, &col) in local.iter().enumerate() {
            let (from, to) = hop.key_types[i];
            let v = coerce(table.value(col, row), from, to)?;
            let slot = match &hop.lookup {
                Lookup::Pk(perm) => perm.iter().position(|&p| p == i).unwrap_or(i),
                Lookup::Index => i,
            };
            key[slot] = v;
        }
        Some(f(key))
    }

    /// Called before writing `rows[i]`: start loading the index entries that writing
    /// `rows[i + 1]` will look up (its relations through an index), so that the miss overlaps
    /// with writing `rows[i]`.
    #[inline]
    fn prefetch_next_lookups(&self, node: &Node<'_>, table: &Table, rows: &[RowId], i: usize) {
        let Some(&row) = rows.get(i + 1) else {
            return;
        };
        for o in &node.outputs {
            if let Output::Relation { hop, .. } = o {
                if matches!(hop.lookup, Lookup::Index) {
                    let target = &*self.tables[hop.target];
                    self.with_hop_key(hop, table, row, |key| {
                        target.prefetch_lookup(&hop.rel.target_columns, key)
                    });
                }
            }
        }
    }

    /// Follow to-one hops to the row that holds an `ORDER BY` column.
    fn follow_chain(&self, hops: &[Hop<'_>], table: &Table, row: RowId) -> Option<RowId> {
        let mut table = table;
        let mut row = row;
        for hop in hops {
            match self.follow(hop, table, row) {
                Related::One(r) => row = r,
                Related::Many(rows) => row = *rows.first()?,
                Related::None => return None,
            }
            table = &self.tables[hop.target];
        }
        Some(row)
    }

    /// Start loading what `node` reads of `rows` (its columns, the keys of its relations), so
    /// the cache misses of scattered rows overlap; only worth it for several rows.
    fn prefetch(&self, node: &Node<'_>, table: &Table, rows: &[RowId]) {
        if rows.len() < 2 {
            return;
        }
        let columns = node.outputs.iter().filter_map(|o| match o {
            Output::Column { col, .. } => Some(*col),
            Output::Relation { hop, .. } => hop.rel.local_columns.first().copied(),
        });
        table.prefetch(columns, rows);
    }

    fn write_row(&self, out: &mut Vec<u8>, node: &Node<'_>, table: &Table, row: RowId) {
        if self.bounds.stopped() {
            return;
        }
        out.push(b'{');
        for (i, o) in node.outputs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match o {
                Output::Column { name, col, ty } => {
                    json::write_key(out, name);
                    table.with_value(*col, row, |v| json::write_value(out, v, *ty));
                }
                Output::Relation {
                    name,
                    hop,
                    node: child,
                } => {
                    json::write_key(out, name);
                    self.write_related(out, hop, child, table, row);
                }
            }
        }
        out.push(b'}');
        self.bounds.row_written(out);
    }

    /// A forward relation as an object or `null`, a reverse one as an array.
    fn write_related(
        &self,
        out: &mut Vec<u8>,
        hop: &Hop<'_>,
        child: &Node<'_>,
        table: &Table,
        row: RowId,
    ) {
        let target = &*self.tables[hop.target];
        let mut rows = match self.follow(hop, table, row) {
            Related::None => Vec::new(),
            Related::One(r) => {
                if !hop.to_many {
                    let shown = child.offset == 0
                        && child.limit != Some(0)
                        && self.passes(child.filter.as_ref(), target, r);
                    if shown {
                        self.write_row(out, child, target, r);
                    } else {
                        out.extend_from_slice(b"null");
                    }
                    return;
                }
                vec![r]
            }
            Related::Many(rows) => rows,
        };
        // A to-many selection without `LIMIT` shows at most `nested_limit` rows per parent;
        // one more match than that tells that the default cut it.
        let (limit, probe) = match child.limit {
            Some(l) => (l, 0),
            None if hop.to_many => (self.nested_limit, 1),
            None => (usize::MAX, 0),
        };
        let keep = child.offset.saturating_add(limit);
        if in_pk_order(child) {
            // Rows come in primary-key order: filter only as many as are shown.
            let wanted = keep.saturating_add(probe);
            let mut kept = 0usize;
            rows.retain(|&r| {
                if kept < wanted
                    && self.bounds.tick()
                    && self.passes(child.filter.as_ref(), target, r)
                {
                    kept += 1;
                    true
                } else {
                    false
                }
            });
            if probe > 0 && rows.len() > keep {
                self.bounds.nested_truncated.set(true);
            }
        } else {
            if let Some(f) = &child.filter {
                rows.retain(|&r| self.bounds.tick() && self.eval(f, target, r) == Tri::True);
            }
            if probe > 0 && rows.len() > keep {
                self.bounds.nested_truncated.set(true);
            }
            self.sort(&child.order, target, &mut rows, keep);
        }
        let end = keep.min(rows.len());
        let shown = &rows[child.offset.min(end)..end];
        self.prefetch(child, target, shown);
        if !hop.to_many {
            match shown.first() {
                Some(&r) => self.write_row(out, child, target, r),
                None => out.extend_from_slice(b"null"),
            }
            self.recycle(rows);
            return;
        }
        out.push(b'[');
        for (i, &r) in shown.iter().enumerate() {
            if self.bounds.stopped() {
                break;
            }
            self.prefetch_next_lookups(child, target, shown, i);
            if i > 0 {
                out.push(b',');
            }
            self.write_row(out, child, target, r);
        }
        out.push(b']');
        self.recycle(rows);
    }

    /// The matches of `node` that can be among its first `keep` rows: walking the order of the
    /// first `ORDER BY` column, the first `keep` matches and every match tied with the last of
    /// them, in primary-key order (the caller sorts them by the whole `ORDER BY`).
    fn first_in_column_order(&self, node: &Node<'_>, table: &Table, keep: usize) -> Vec<RowId> {
        let key = &node.order[0];
        let (col, ty, ci) = (key.col, key.ty, self.ci);
        let order = table.column_order(col, || {
            let (mut valued, nulls): (Vec<RowId>, Vec<RowId>) = table
                .scan()
                .partition(|&r| table.with_value(col, r, |v| !matches!(v, ValueRef::Null)));
            // Stable: ties stay in primary-key order.
            valued.sort_by(|&a, &b| {
                table.with_value(col, a, |va| {
                    table.with_value(col, b, |vb| cmp_values(ty, va, vb, Some(ci)))
                })
            });
            let non_null = valued.len();
            valued.extend(nulls);
            refract_storage::ColumnOrder {
                rows: valued,
                non_null,
            }
        });
        let (valued, nulls) = order.rows.split_at(order.non_null);
        let walk: Box<dyn Iterator<Item = &RowId>> = match (key.desc, key.nulls_first) {
            (false, false) => Box::new(valued.iter().chain(nulls)),
            (false, true) => Box::new(nulls.iter().chain(valued)),
            (true, false) => Box::new(valued.iter().rev().chain(nulls)),
            (true, true) => Box::new(nulls.iter().chain(valued.iter().rev())),
        };
        let tied = |a: RowId, b: RowId| {
            table.with_value(col, a, |va| {
                table.with_value(col, b, |vb| match (va, vb) {
                    (ValueRef::Null, ValueRef::Null) => true,
                    (ValueRef::Null, _) | (_, ValueRef::Null) => false,
                    (va, vb) => cmp_values(ty, va, vb, Some(ci)).is_eq(),
                })
            })
        };
        let mut found: Vec<RowId> = Vec::with_capacity(keep.min(1024));
        if keep == 0 {
            return found;
        }
        for &r in walk {
            if !self.bounds.tick() || found.len() >= keep && !tied(found[found.len() - 1], r) {
                break;
            }
            if self.passes(node.filter.as_ref(), table, r) {
                found.push(r);
            }
        }
        sort_by_pk(table, &mut found);
        found
    }

    /// How two values of one `ORDER BY` key compare (its direction and NULL placement applied).
    fn cmp_key(&self, key: &OrderKey<'_>, va: ValueRef<'_>, vb: ValueRef<'_>) -> Ordering {
        match (matches!(va, ValueRef::Null), matches!(vb, ValueRef::Null)) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if key.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if key.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = cmp_values(key.ty, va, vb, Some(self.ci));
                if key.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        }
    }

    /// Sort `rows` (given in primary-key order) by `order`, ties kept in primary-key order;
    /// only the first `keep` rows need to be right.
    fn sort(&self, order: &[OrderKey<'_>], table: &Table, rows: &mut Vec<RowId>, keep: usize) {
        let n = rows.len();
        if n < 2 || order.is_empty() {
            return;
        }
        // Keys behind to-one relations: the row that holds the value, per position.
        let resolved: Vec<Option<HeldRows<'_>>> = order
            .iter()
            .map(|k| {
                let last = k.hops.last()?;
                let rows = rows
                    .iter()
                    .map(|&r| self.follow_chain(&k.hops, table, r))
                    .collect();
                Some((&*self.tables[last.target], rows))
            })
            .collect();
        // Where the value of key `k` for position `i` is: a row of a table, or none (NULL).
        let holder = |k: usize, i: u32| -> Option<(&Table, RowId)> {
            match &resolved[k] {
                None => Some((table, rows[i as usize])),
                Some((t, held)) => held[i as usize].map(|r| (*t, r)),
            }
        };
        fn with_cell<R>(
            at: Option<(&Table, RowId)>,
            col: usize,
            f: impl FnOnce(ValueRef<'_>) -> R,
        ) -> R {
            match at {
                Some((t, r)) => t.with_value(col, r, f),
                None => f(ValueRef::Null),
            }
        }
        let cmp = |a: &u32, b: &u32| -> Ordering {
            for (k, key) in order.iter().enumerate() {
                let o = with_cell(holder(k, *a), key.col, |va| {
                    with_cell(holder(k, *b), key.col, |vb| self.cmp_key(key, va, vb))
                });
                if o.is_ne() {
                    return o;
                }
            }
            a.cmp(b)
        };
        let mut idx: Vec<u32> = (0..n as u32).collect();
        if keep < n {
            if keep == 0 {
                rows.clear();
                return;
            }
            idx.select_nth_unstable_by(keep - 1, cmp);
            idx.truncate(keep);
        }
        idx.sort_unstable_by(cmp);
        let sorted: Vec<RowId> = idx.iter().map(|&i| rows[i as usize]).collect();
        *rows = sorted;
    }
}

/// Sort row ids by their primary key (exact comparison), for results of several lookups.
fn sort_by_pk(table: &Table, rows: &mut [RowId]) {
    let pk = &table.manifest.primary_key;
    if pk.is_empty() {
        return;
    }
    rows.sort_by(|&a, &b| {
        for &c in pk {
            let (va, vb) = (table.value(c, a), table.value(c, b));
            let o = match (va, vb) {
                (ValueRef::Null, ValueRef::Null) => Ordering::Equal,
                (ValueRef::Null, _) => Ordering::Less,
                (_, ValueRef::Null) => Ordering::Greater,
                _ => cmp_values(table.column_type(c), va, vb, None),
            };
            if o.is_ne() {
                return o;
            }
        }
        a.cmp(&b)
    });
}

/// Order of two non-null values of one column; `ci` compares case-insensitive text columns by
/// their collation (`None`: exact, as primary-key order is).
fn cmp_values(ty: ColumnType, a: ValueRef<'_>, b: ValueRef<'_>, ci: Option<CiRules>) -> Ordering {
    use ValueRef as V;
    match (a, b) {
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        (V::Int(x), V::Int(y)) => x.cmp(&y),
        (V::Float(x), V::Float(y)) => x
            .partial_cmp(&y)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan())),
        (V::Decimal(x), V::Decimal(y)) => x.cmp(&y),
        (V::Text(x), V::Text(y)) => match ci {
            Some(rules)
                if ty
                    == (ColumnType::Text {
                        case_insensitive: true,
                    }) =>
            {
                rules.cmp(x, y)
            }
            _ => x.cmp(y),
        },
        (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Time(x), V::Time(y))
        | (V::DateTime(x), V::DateTime(y))
        | (V::Timestamp(x), V::Timestamp(y)) => x.cmp(&y),
        (V::Json(x), V::Json(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// A key value converted to the type of the column it is looked up in; `None` when NULL or
/// when no value of that type can be equal.
fn coerce(v: ValueRef<'_>, from: ColumnType, to: ColumnType) -> Option<ValueRef<'_>> {
    let pow = |s: u8| 10i128.checked_pow(s as u32);
    match (v, from, to) {
        (ValueRef::Null, _, _) => None,
        (ValueRef::Int(x), _, ColumnType::Decimal { scale }) => {
            Some(ValueRef::Decimal((x as i128).checked_mul(pow(scale)?)?))
        }
        (ValueRef::Decimal(m), ColumnType::Decimal { scale: s }, ColumnType::Int) => {
            let p = pow(s)?;
            if m % p != 0 {
                return None;
            }
            i64::try_from(m / p).ok().map(ValueRef::Int)
        }
        (
            ValueRef::Decimal(m),
            ColumnType::Decimal { scale: s1 },
            ColumnType::Decimal { scale: s2 },
        ) if s1 != s2 => {
            if s2 > s1 {
                Some(ValueRef::Decimal(m.checked_mul(pow(s2 - s1)?)?))
            } else {
                let p = pow(s1 - s2)?;
                (m % p == 0).then_some(ValueRef::Decimal(m / p))
            }
        }
        _ => Some(v),
    }
}

/// `floor`-based comparison of a value with a literal `(q, frac)` (see [`Lit::Ord`]).
#[inline]
fn cmp_ord(v: i128, q: i128, frac: bool) -> Ordering {
    match v.cmp(&q) {
        Ordering::Equal if frac => Ordering::Less,
        o => o,
    }
}

/// Order of a non-null value and a literal of its column; `None` when they cannot compare.
fn cmp_lit(v: ValueRef<'_>, lit: &Lit) -> Option<Ordering> {
    Some(match (v, lit) {
        (ValueRef::Int(x), Lit::Ord(q, f)) => cmp_ord(x as i128, *q, *f),
        (ValueRef::Decimal(m), Lit::Ord(q, f)) => cmp_ord(m, *q, *f),
        (ValueRef::Date(d), Lit::Ord(q, f)) => cmp_ord(d as i128 * DAY_US as i128, *q, *f),
        (ValueRef::Time(x) | ValueRef::DateTime(x) | ValueRef::Timestamp(x), Lit::Ord(q, f)) => {
            cmp_ord(x as i128, *q, *f)
        }
        (ValueRef::Float(x), Lit::Float(y)) => x.partial_cmp(y)?,
        (ValueRef::Bool(x), Lit::Bool(y)) => x.cmp(y),
        (ValueRef::Text(s), Lit::Text(l)) => s.as_bytes().cmp(l.as_bytes()),
        (ValueRef::Text(s), Lit::TextCi(l, rules)) => rules.cmp_folded(s, l),
        (ValueRef::Bytes(b), Lit::Bytes(l)) => b.cmp(l.as_slice()),
        _ => return None,
    })
}

/// The scalar test of a predicate on one value.
fn test(t: &Test, v: ValueRef<'_>) -> Tri {
    if let Test::IsNull { negated } = t {
        return Tri::from_bool(matches!(v, ValueRef::Null) != *negated);
    }
    if matches!(v, ValueRef::Null) {
        return Tri::Unknown;
    }
    match t {
        Test::Cmp(op, lit) => Tri::from_ordering(cmp_lit(v, lit), *op),
        Test::In {
            lits,
            sorted,
            has_null,
            negated,
        } => {
            let found = if *sorted {
                // `cmp_lit` orders the value against a literal; the search wants the reverse.
                lits.binary_search_by(|l| cmp_lit(v, l).map_or(Ordering::Less, Ordering::reverse))
                    .is_ok()
            } else {
                lits.iter().any(|l| cmp_lit(v, l) == Some(Ordering::Equal))
            };
            let r = if found {
                Tri::True
            } else if *has_null {
                Tri::Unknown
            } else {
                Tri::False
            };
            if *negated {
                r.not()
            } else {
                r
            }
        }
        Test::Between { low, high, negated } => {
            let lo = low.as_ref().map_or(Tri::Unknown, |l| {
                Tri::from_ordering(cmp_lit(v, l), CmpOp::Ge)
            });
            let hi = high.as_ref().map_or(Tri::Unknown, |h| {
                Tri::from_ordering(cmp_lit(v, h), CmpOp::Le)
            });
            let r = lo.min(hi);
            if *negated {
                r.not()
            } else {
                r
            }
        }
        Test::Like { pattern, negated } => match v {
            ValueRef::Text(s) => Tri::from_bool(pattern.matches(s) != *negated),
            _ => Tri::Unknown,
        },
        Test::IsNull { .. } => unreachable!("handled above"),
    }
}
