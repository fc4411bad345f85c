//! What every loader shares: the table queue, the sinks handed to workers, progress counting,
//! stopping all workers at the first failure, identifier quoting and the `SELECT`s (the change
//! streams' re-read by key too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use refract_schema::{Manifest, TableManifest};

use crate::{LoadProgress, SourceError, SourceParams};

/// Shared state of one load: what is read from where, which tables are left, the sinks, the
/// first error.
pub(crate) struct LoadState<S> {
    pub(crate) params: SourceParams,
    pub(crate) manifest: Manifest,
    slots: Mutex<Vec<Option<S>>>,
    queue: Mutex<VecDeque<usize>>,
    stop: AtomicBool,
    first_error: Mutex<Option<SourceError>>,
    pub(crate) progress: Arc<LoadProgress>,
}

impl<S> LoadState<S> {
    /// Tables are handed out biggest first (by the source's size estimate) so that parallel
    /// workers finish close together.
    pub(crate) fn new(
        params: &SourceParams,
        manifest: &Manifest,
        sinks: Vec<S>,
        progress: Arc<LoadProgress>,
    ) -> Arc<Self> {
        let mut order: Vec<usize> = (0..manifest.tables.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(manifest.tables[i].estimated_bytes.unwrap_or(0)));
        Arc::new(LoadState {
            params: params.clone(),
            manifest: manifest.clone(),
            slots: Mutex::new(sinks.into_iter().map(Some).collect()),
            queue: Mutex::new(order.into()),
            stop: AtomicBool::new(false),
            first_error: Mutex::new(None),
            progress,
        })
    }

    /// The next table to read and its sink; `None` when all are taken or the load stops.
    pub(crate) fn next(&self) -> Option<(usize, S)> {
        if self.stopped() {
            return None;
        }
        let i = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()?;
        let sink = self.slots.lock().unwrap_or_else(PoisonError::into_inner)[i].take()?;
        Some((i, sink))
    }

    /// Give a sink back after its table was read (or failed).
    fn put_back(&self, i: usize, sink: S) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(sink);
    }

    /// A table is complete.
    fn table_done(&self) {
        self.progress.tables_done.fetch_add(1, Ordering::Relaxed);
    }

    /// After table `i` was read (`Ok(false)`: its sink asked to stop): gives the sink back,
    /// counts a complete table, records a failure (see [`LoadState::fail`]). Returns whether the
    /// worker goes on with the next table.
    pub(crate) fn table_read(&self, i: usize, sink: S, read: Result<bool, SourceError>) -> bool {
        self.put_back(i, sink);
        match read {
            Ok(true) => {
                self.table_done();
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Whether a worker failed (the others stop at their next batch).
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Record a failure: the first one is the load's result; every worker stops.
    pub(crate) fn fail(&self, e: SourceError) {
        let mut slot = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    /// After every worker ended: the sinks in manifest order, or the first error.
    pub(crate) fn finish(&self) -> Result<Vec<S>, SourceError> {
        if let Some(e) = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(slots.len());
        for (i, s) in slots.drain(..).enumerate() {
            match s {
                Some(s) => out.push(s),
                None => {
                    return Err(SourceError::Other(format!(
                        "internal: sink {i} was not returned"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Run the workers to their end; a worker that panicked is the load's failure (see
/// [`LoadState::finish`] for the result).
pub(crate) async fn drive<S, F>(state: &LoadState<S>, workers: Vec<F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = workers.into_iter().map(tokio::spawn).collect();
    for h in handles {
        if let Err(e) = h.await {
            state.fail(SourceError::Other(format!("a load worker failed: {e}")));
        }
    }
}

/// Counts rows locally and adds them to [`LoadProgress::rows`] in batches.
pub(crate) struct RowCounter<'a> {
    pending: u64,
    progress: &'a LoadProgress,
    stop: &'a AtomicBool,
}

impl<'a> RowCounter<'a> {
    /// A counter feeding `state`'s progress.
    pub(crate) fn new<S>(state: &'a LoadState<S>) -> Self {
        RowCounter {
            pending: 0,
            progress: &state.progress,
            stop: &state.stop,
        }
    }

    /// Count one row; `false` when another worker failed and this one should stop.
    #[inline]
    pub(crate) fn row(&mut self) -> bool {
        self.pending += 1;
        if self.pending >= 1024 {
            self.flush();
            return !self.stop.load(Ordering::Relaxed);
        }
        true
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.progress
                .rows
                .fetch_add(self.pending, Ordering::Relaxed);
            self.pending = 0;
        }
    }
}

impl Drop for RowCounter<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The error of a sink that refused a row.
pub(crate) fn refused(table: &TableManifest) -> SourceError {
    SourceError::Stopped(format!(
        "table {}: storage refused more rows (memory cap reached)",
        table.source_name
    ))
}

/// `` `name` `` with backticks doubled (MySQL/MariaDB).
pub(crate) fn quote_backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `"name"` with double quotes doubled (PostgreSQL, SQLite).
pub(crate) fn quote_double(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `SELECT <cols> FROM <from> [WHERE (<where_sql>)]`.
pub(crate) fn select_sql(columns: &[String], from: &str, where_sql: Option<&str>) -> String {
    let list = if columns.is_empty() {
        "1".to_string()
    } else {
        columns.join(", ")
    };
    let mut sql = format!("SELECT {list} FROM {from}");
    if let Some(w) = where_sql.map(str::trim).filter(|w| !w.is_empty()) {
        sql.push_str(" WHERE (");
        sql.push_str(w);
        sql.push(')');
    }
    sql
}

/// The re-read of [`crate::cdc::fetch_rows_by_key`]: `SELECT <columns> FROM <from> WHERE (<pk>) IN
/// (<tuples>) [AND (<where_sql>)]`, `tuples` being the key tuples already joined (`(?, ?), …` or
/// literals).
pub(crate) fn select_by_key_sql(
    columns: &[String],
    from: &str,
    pk: &[String],
    tuples: &str,
    where_sql: Option<&str>,
) -> String {
    let mut sql = format!(
        "SELECT {} FROM {from} WHERE ({}) IN ({tuples})",
        columns.join(", "),
        pk.join(", "),
    );
    if let Some(w) = where_sql.map(str::trim).filter(|w| !w.is_empty()) {
        sql.push_str(&format!(" AND ({w})"));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::select_by_key_sql;

    #[test]
    fn select_by_key_adds_the_table_predicate_when_there_is_one() {
        let (cols, pk) = (["`a`".to_string(), "`b`".to_string()], ["`a`".to_string()]);
        assert_eq!(
            select_by_key_sql(&cols, "`d`.`t`", &pk, "(?), (?)", None),
            "SELECT `a`, `b` FROM `d`.`t` WHERE (`a`) IN ((?), (?))"
        );
        assert_eq!(
            select_by_key_sql(&cols, "`d`.`t`", &pk, "(?)", Some("  ")),
            "SELECT `a`, `b` FROM `d`.`t` WHERE (`a`) IN ((?))"
        );
        assert_eq!(
            select_by_key_sql(&cols, "`d`.`t`", &pk, "(?)", Some(" b > 1 ")),
            "SELECT `a`, `b` FROM `d`.`t` WHERE (`a`) IN ((?)) AND (b > 1)"
        );
    }
}
