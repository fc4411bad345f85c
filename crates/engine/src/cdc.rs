//! CDC sync (`binlog`, `logical`): a full load inside a consistent source snapshot, then the
//! change stream from that snapshot's position, applied row by row.
//!
//! - **Batches**: events are read by a reader task into a channel. A batch closes on a source
//!   commit when the channel is empty (nothing more to read right now), after 50 ms, or at
//!   10,000 changes — never inside a transaction — and is published with one atomic swap
//!   ([`refract_storage::Table::apply`] per touched table: O(changed rows)).
//! - **Table reloads**: tables without a primary key, `TRUNCATE` and DDL mark a table dirty; its
//!   later events are ignored and, `sync.interval` seconds after it became dirty, a full
//!   resync runs (a new consistent load and a new stream position: no event can be applied
//!   twice or missed). Unchanged tables keep their `Arc`s.
//! - **Flush stages**: a closed batch is flushed in four steps: (1) gather the keys to
//!   re-read (sorted and deduplicated by value), (2) re-read their rows from the source,
//!   (3) build one [`refract_storage::ChangeBatch`] per touched table (streamed changes in
//!   order, then the re-read keys and rows), (4) apply them off the async runtime and publish.
//!   Nothing is applied before every re-read answered.
//! - **`where` predicates**: a streamed row of a table with a `where` cannot be tested in the
//!   engine (the predicate is SQL text for the source), so its keys go to the re-read stage:
//!   `SELECT … WHERE (pk) IN (…) AND (where)`; the rows found are upserted, the others deleted
//!   (a row that stops matching leaves, one that starts matching enters).
//!   The re-read sees the source as of the flush, which may be newer than the batch; later
//!   events re-read again, so the table converges. The same keys are re-read once more
//!   [`RECHECK_AGAIN_AFTER`] later, for a change streamed before it was visible to readers.
//!   PostgreSQL updates with unchanged TOASTed values (columns the source did not send, `None`
//!   in a [`ChangeRow`]) are re-read the same way.
//! - **Reconnects**: exponential backoff (0.5 s doubling to 30 s, ±25 % jitter); `reconnect:
//!   full` reloads and streams from the new position, `resume` streams from the last published
//!   position and falls back to full when the source no longer has it.
//! - **Safety net**: every `sync.safety_net` seconds a full resync; tables whose content
//!   differed (fingerprint) are reported as drift in `/stats` and the log.
//! - **Pause**: the stream is closed (a PostgreSQL slot stays, so WAL is retained: `/stats`
//!   shows how much), the snapshot is frozen; resume streams from the saved position.
//! - **Admin reload** (`POST /admin/reload`) is a full resync run by this loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use refract_protocol::ReplicationState;
use refract_schema::{Backend, Manifest, Row, TableManifest};
use refract_sources::cdc::{
    create_logical_slot, drop_logical_slot, fetch_rows_by_key, logical_status, open_stream,
    CdcError, CdcOptions, CdcStream, ChangeEvent, ChangeRow,
};
use refract_sources::SourcePosition;
use refract_storage::{ChangeBatch, Table};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::{ReconnectMode, SyncMode};
use crate::state::{AdminReply, EngineState, LoadError, ReloadReport, Trigger};

/// Longest a batch stays open.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most changes in one batch (it closes at the next commit).
const BATCH_MAX: usize = 10_000;

/// Keys re-read for a `where` are re-read once more after this long: a source may send a
/// change before it is visible to other sessions (MariaDB writes the binlog before the storage
/// engine commits), so the first re-read can miss a row that just started matching.
const RECHECK_AGAIN_AFTER: Duration = Duration::from_millis(500);
/// Batches of at most this many changes are applied on the applier's own task: a few
/// microseconds of work, where a hand-over to a blocking thread and back costs two waits for
/// a CPU under load (B4 at 1,000 commits/s on a busy machine: flushes of 1–2 changes took up
/// to 35 ms that way). Larger batches go to a blocking thread, off the query workers.
const INLINE_APPLY: usize = 256;
/// ... unless the batch may compact a table of more live rows than this
/// (`Table::apply_may_compact`): compaction is O(table) and rebuilds its indexes — milliseconds
/// to tens of milliseconds on a million rows — which must not hold a query worker.
const INLINE_COMPACT_ROWS: usize = 65_536;
/// Events buffered between the reader task and the applier.
const CHANNEL: usize = 65_536;

/// Whether this engine runs a CDC loop (the mode fits the backend).
pub(crate) fn cdc_mode(state: &EngineState) -> bool {
    let backend = state.config().source.backend;
    matches!(
        (state.config().sync.mode, backend),
        (SyncMode::Binlog, Backend::Mysql) | (SyncMode::Logical, Backend::Postgres)
    )
}

/// The slot/publication names and the binlog server id of this engine.
pub(crate) fn options(state: &EngineState) -> CdcOptions {
    let sync = &state.config().sync;
    let db = state
        .params()
        .database
        .clone()
        .unwrap_or_else(|| "db".into());
    let mut o = CdcOptions::for_database(&db, sync.server_id.unwrap_or(0));
    if let Some(name) = &sync.slot_name {
        o.slot = name.clone();
        o.publication = name.clone();
    }
    o
}

/// Drop the PostgreSQL slot and publication of this engine (terminate/delete); pauses
/// replication first so the stream lets go of the slot. Binlog: nothing to drop.
pub(crate) async fn drop_replication(state: &EngineState) -> Result<Value, LoadError> {
    if state.config().source.backend != Backend::Postgres {
        return Ok(
            json!({"dropped": false, "reason": "only PostgreSQL keeps replication state on the source"}),
        );
    }
    state.set_paused(true);
    let opts = options(state);
    // The stream closes within ~100 ms of the pause (longer on a loaded host); retry while
    // the slot is still active.
    let mut last = None;
    for _ in 0..300 {
        match drop_logical_slot(state.params(), &opts).await {
            Ok(()) => {
                return Ok(
                    json!({"dropped": true, "slot": opts.slot, "publication": opts.publication}),
                )
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LoadError::Source(
        last.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

enum Outcome {
    /// Stream failed: reconnect.
    Disconnected(CdcError),
    /// Paused: stop streaming, keep the position.
    Paused,
    /// A full resync is needed (`None`: safety net or dirty tables).
    Reload(Option<AdminReply>, &'static str),
    Shutdown,
}

struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(500),
        }
    }
    fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        d.mul_f64(jitter)
    }
}

/// The CDC loop: runs until shutdown.
pub(crate) async fn cdc_loop(state: Arc<EngineState>) {
    let (tx, mut admin_rx) = mpsc::channel::<AdminReply>(16);
    let _ = state.cdc.admin_tx.set(tx);
    let mode = state.config().sync.mode;
    let reconnect = state.config().sync.reconnect;
    let opts = options(&state);
    if mode == SyncMode::Logical {
        state.cdc.status().slot = Some(opts.slot.clone());
    }
    let cancel = state.shutdown_token().clone();
    let mut backoff = Backoff::new();
    let mut position: Option<SourcePosition> = None;
    let mut need_full = true;
    let mut pending_admin: Option<AdminReply> = None;
    let mut last_full = Instant::now();
    let mut safety = false;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        if state.is_paused() {
            state.cdc.set_state(ReplicationState::Paused);
            if let Some(reply) = pending_admin.take() {
                let _ = reply.send(Err(LoadError::Paused));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                r = admin_rx.recv() => if let Some(reply) = r { let _ = reply.send(Err(LoadError::Paused)); },
                _ = cancel.cancelled() => return,
            }
            if mode == SyncMode::Logical {
                refresh_wal(&state, &opts).await;
            }
            continue;
        }
        // Establish a stream: full load, or resume.
        let stream = if need_full || position.is_none() {
            state.cdc.set_state(if position.is_none() {
                ReplicationState::Loading
            } else {
                ReplicationState::Reloading
            });
            let before = state.snapshot();
            let trigger = if pending_admin.is_some() {
                Trigger::Admin
            } else {
                Trigger::Poll
            };
            match full_load(&state, mode, &opts, trigger).await {
                Ok((report, pos, stream)) => {
                    last_full = Instant::now();
                    {
                        let mut s = state.cdc.status();
                        s.full_loads += 1;
                        s.position = Some(pos.clone());
                        s.last_error = None;
                        s.fatal = false;
                        s.dirty.clear();
                        if safety {
                            s.drift = Some(drift_report(before.as_deref(), &report, &state));
                        }
                    }
                    safety = false;
                    position = Some(pos);
                    need_full = false;
                    if let Some(reply) = pending_admin.take() {
                        let _ = reply.send(Ok(report));
                    }
                    stream
                }
                Err(FullLoadError::Load(LoadError::Paused)) => continue,
                Err(e) => {
                    let fatal = matches!(
                        e,
                        FullLoadError::Setup(_) | FullLoadError::Stream(CdcError::NotReady(_))
                    );
                    let (msg, load_err) = match e {
                        FullLoadError::Load(l) => (l.to_string(), l),
                        FullLoadError::Setup(m) => (m.clone(), LoadError::Source(m)),
                        FullLoadError::Stream(c) => {
                            // The load published; only the stream failed: retry streaming
                            // from the load's position.
                            if state.snapshot().is_some() && position.is_some() {
                                need_full = matches!(c, CdcError::PositionGone(_));
                            }
                            (c.to_string(), LoadError::Source(c.to_string()))
                        }
                    };
                    tracing::error!(error = %msg, "CDC load failed; retrying");
                    if let Some(reply) = pending_admin.take() {
                        let _ = reply.send(Err(load_err));
                    }
                    {
                        let mut s = state.cdc.status();
                        s.state = Some(ReplicationState::Error);
                        s.last_error = Some(msg);
                        s.fatal = fatal;
                    }
                    if !sleep_or_cancel(&state, backoff.step()).await {
                        return;
                    }
                    continue;
                }
            }
        } else {
            let Some(pos) = position.clone() else {
                continue;
            };
            match open_stream(state.params(), manifest_of(&state), &pos, &opts).await {
                Ok(s) => s,
                Err(CdcError::PositionGone(m)) => {
                    tracing::warn!(reason = %m, "the saved position is gone; reloading fully");
                    need_full = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconnecting the change stream failed");
                    record_stream_error(&state, &e, false);
                    if !sleep_or_cancel(&state, backoff.step()).await {
                        return;
                    }
                    continue;
                }
            }
        };
        {
            let mut s = state.cdc.status();
            s.state = Some(ReplicationState::Streaming);
            s.fatal = false;
        }
        tracing::info!(position = ?position, "change stream started");
        let outcome = run_stream(
            &state,
            stream,
            &mut position,
            &mut admin_rx,
            &mut backoff,
            last_full,
        )
        .await;
        state.cdc.status().pending_since = None;
        match outcome {
            Outcome::Shutdown => return,
            Outcome::Paused => {}
            Outcome::Reload(reply, why) => {
                tracing::info!(reason = why, "full resync");
                safety = why == "safety_net";
                pending_admin = reply;
                need_full = true;
            }
            Outcome::Disconnected(e) => {
                let gone = matches!(e, CdcError::PositionGone(_));
                tracing::warn!(error = %e, "change stream lost; reconnecting");
                record_stream_error(&state, &e, true);
                need_full = gone || reconnect == ReconnectMode::Full;
                if !sleep_or_cancel(&state, backoff.step()).await {
                    return;
                }
            }
        }
    }
}

/// The status after the change stream failed with `e` (`lost`: a running stream, counted as a
/// reconnect): `error` when the source is not set up for it (fatal until fixed), else
/// `reconnecting`.
fn record_stream_error(state: &EngineState, e: &CdcError, lost: bool) {
    let mut s = state.cdc.status();
    s.fatal = matches!(e, CdcError::NotReady(_));
    s.state = Some(if s.fatal {
        ReplicationState::Error
    } else {
        ReplicationState::Reconnecting
    });
    if lost {
        s.reconnects += 1;
    }
    s.last_error = Some(e.to_string());
}

async fn sleep_or_cancel(state: &EngineState, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = state.shutdown_token().cancelled() => false,
    }
}

fn manifest_of(state: &EngineState) -> Arc<Manifest> {
    match state.snapshot() {
        Some(s) => s.manifest.clone(),
        None => state.manifest().unwrap_or_else(|| {
            Arc::new(Manifest {
                version: refract_schema::MANIFEST_VERSION,
                backend: state.config().source.backend,
                database: String::new(),
                pg_schema: None,
                tables: vec![],
                warnings: Vec::new(),
            })
        }),
    }
}

async fn refresh_wal(state: &EngineState, opts: &CdcOptions) {
    if let Ok(st) = logical_status(state.params(), opts).await {
        state.cdc.status().retained_wal_bytes = st.retained_wal_bytes;
        state
            .metrics
            .set_retained_wal(st.retained_wal_bytes.unwrap_or(0) as f64);
    }
}

enum FullLoadError {
    Load(LoadError),
    /// The source cannot stream (a [`CdcError::NotReady`] before the load).
    Setup(String),
    Stream(CdcError),
}

/// Load every table inside a consistent snapshot and open the stream at its position.
async fn full_load(
    state: &Arc<EngineState>,
    mode: SyncMode,
    opts: &CdcOptions,
    trigger: Trigger,
) -> Result<(ReloadReport, SourcePosition, CdcStream), FullLoadError> {
    match mode {
        SyncMode::Logical => {
            let manifest = state
                .resolve_manifest()
                .await
                .map_err(FullLoadError::Load)?;
            let slot = create_logical_slot(state.params(), &manifest, opts)
                .await
                .map_err(|e| match e {
                    CdcError::NotReady(_) => FullLoadError::Setup(e.to_string()),
                    e => FullLoadError::Load(LoadError::Source(e.to_string())),
                })?;
            let (report, pos) = state
                .reload_with(trigger, Some(&slot.snapshot))
                .await
                .map_err(FullLoadError::Load)?;
            let stream = slot
                .start(manifest_of(state))
                .await
                .map_err(FullLoadError::Stream)?;
            Ok((report, pos, stream))
        }
        _ => {
            let (report, pos) = state
                .reload_with(trigger, None)
                .await
                .map_err(FullLoadError::Load)?;
            if matches!(pos, SourcePosition::None) {
                return Err(FullLoadError::Setup(
                    "the source reported no binlog position: is log_bin ON and may the user run SHOW MASTER STATUS (REPLICATION CLIENT / BINLOG MONITOR)?".into(),
                ));
            }
            let stream = open_stream(state.params(), manifest_of(state), &pos, opts)
                .await
                .map_err(FullLoadError::Stream)?;
            Ok((report, pos, stream))
        }
    }
}

fn drift_report(
    before: Option<&refract_storage::Snapshot>,
    report: &ReloadReport,
    state: &EngineState,
) -> Value {
    let after = state.snapshot();
    let mut counts = serde_json::Map::new();
    for name in &report.tables_reloaded {
        let b = before.and_then(|s| s.table(name)).map(|t| t.row_count());
        let a = after
            .as_ref()
            .and_then(|s| s.table(name))
            .map(|t| t.row_count());
        counts.insert(name.clone(), json!({"engine": b, "source": a}));
    }
    if !report.tables_reloaded.is_empty() {
        tracing::warn!(tables = ?report.tables_reloaded, "safety net: drift repaired");
    }
    json!({
        "at": Utc::now().to_rfc3339(),
        "tablesDrifted": report.tables_reloaded,
        "rowCounts": counts,
    })
}

/// The changes of the open batch.
#[derive(Default)]
struct Pending {
    per_table: HashMap<usize, ChangeBatch>,
    /// Keys to re-read from the source at the flush (tables with a `where`, rows with values
    /// the source did not send), per table.
    recheck: HashMap<usize, Vec<Row>>,
    /// Keys re-read a second time (see [`RECHECK_AGAIN_AFTER`]); not scheduled again.
    recheck_again: HashMap<usize, Vec<Row>>,
    dirty: BTreeSet<usize>,
    changes: usize,
    /// Events since the last commit (a batch closes only when 0).
    open_txn: usize,
    committed: Option<(SourcePosition, Option<i64>)>,
    first_at: Option<Instant>,
}

/// The primary key of a streamed row, in key column order (a value not sent reads as NULL).
fn key(t: &TableManifest, row: &ChangeRow) -> Row {
    t.primary_key
        .iter()
        .map(|&i| row.get(i).cloned().flatten().unwrap_or_default())
        .collect()
}

/// A streamed row whose every value was sent, as a full row.
fn complete(row: ChangeRow) -> Row {
    row.into_iter().map(Option::unwrap_or_default).collect()
}

impl Pending {
    fn touch(&mut self) {
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        self.changes += 1;
        self.open_txn += 1;
    }

    /// Whether a batch that ends on a commit closes now: when nothing more is queued (the
    /// source sent all it had), when it is full, or when its window is over.
    fn due(&self, queue_empty: bool) -> bool {
        queue_empty
            || self.changes >= BATCH_MAX
            || self.first_at.is_some_and(|t| t.elapsed() >= BATCH_WINDOW)
    }

    /// Route one row event: into the table's change batch, or (tables with a `where`, rows
    /// with values the source did not send) its keys to the re-read stage of the flush.
    /// Events of a table without a primary key make it dirty (reloaded).
    fn row(&mut self, manifest: &Manifest, ev: ChangeEvent) {
        let (table, before, after) = match ev {
            ChangeEvent::Insert { table, row } => (table, None, Some(row)),
            ChangeEvent::Update {
                table,
                before,
                after,
            } => (table, Some(before), Some(after)),
            ChangeEvent::Delete { table, before } => (table, Some(before), None),
            _ => return,
        };
        self.touch();
        if self.dirty.contains(&table) {
            return;
        }
        let Some(t) = manifest.tables.get(table) else {
            return;
        };
        if t.primary_key.is_empty() {
            self.dirty.insert(table);
            return;
        }
        let unchanged = after
            .as_ref()
            .is_some_and(|r| r.iter().any(Option::is_none));
        let has_where = t.where_sql.as_deref().is_some_and(|w| !w.trim().is_empty());
        if has_where || unchanged {
            let keys = self.recheck.entry(table).or_default();
            if let Some(b) = &before {
                keys.push(key(t, b));
            }
            if let Some(a) = &after {
                keys.push(key(t, a));
            }
            return;
        }
        let batch = self.per_table.entry(table).or_default();
        match (before, after) {
            (None, Some(row)) => {
                batch.upsert(complete(row));
            }
            (Some(before), Some(after)) => {
                let old = key(t, &before);
                if old != key(t, &after) {
                    batch.delete(old);
                }
                batch.upsert(complete(after));
            }
            (Some(before), None) => {
                batch.delete(key(t, &before));
            }
            (None, None) => {}
        }
    }

    /// Flush stage 1: the keys to re-read, per table in table order, sorted and without
    /// duplicates; dirty tables are left out (they are reloaded whole).
    fn keys_to_reread(&mut self) -> BTreeMap<usize, Vec<Row>> {
        let mut out: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
        for (table, keys) in self.recheck.drain().chain(self.recheck_again.drain()) {
            if !self.dirty.contains(&table) {
                out.entry(table).or_default().extend(keys);
            }
        }
        for keys in out.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        out
    }

    /// Flush stage 3: one change batch per touched table: its streamed changes in order, then
    /// for re-read keys a delete of each key and an upsert of each row found (a row that
    /// stopped matching, or is gone, leaves; one that matches is written whole). Dirty tables
    /// and empty batches are left out.
    fn into_batches(mut self, reread: Vec<Reread>) -> Vec<(usize, ChangeBatch)> {
        for r in reread {
            let cb = self.per_table.entry(r.table).or_default();
            for k in r.keys {
                cb.delete(k);
            }
            for row in r.rows {
                cb.upsert(row);
            }
        }
        for d in &self.dirty {
            self.per_table.remove(d);
        }
        self.per_table
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .collect()
    }
}

/// The rows of one table re-read by key.
struct Reread {
    table: usize,
    /// The keys asked for.
    keys: Vec<Row>,
    /// The rows found (existing, and matching the table's `where`).
    rows: Vec<Row>,
}

/// Flush stage 2: re-read the keys' rows from the source. The source is read as of now,
/// which may be newer than the batch; later events re-read again, so the table converges.
async fn reread(
    state: &EngineState,
    manifest: &Manifest,
    keys: BTreeMap<usize, Vec<Row>>,
) -> Result<Vec<Reread>, FlushError> {
    let mut out = Vec::with_capacity(keys.len());
    for (table, keys) in keys {
        let rows = fetch_rows_by_key(state.params(), manifest, table, &keys)
            .await
            .map_err(|e| FlushError::Source(e.to_string()))?;
        out.push(Reread { table, keys, rows });
    }
    Ok(out)
}

fn spawn_reader(
    mut stream: CdcStream,
    idle: Duration,
) -> (
    mpsc::Receiver<Result<ChangeEvent, CdcError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let handle = tokio::spawn(async move {
        loop {
            let r = match tokio::time::timeout(idle, stream.next()).await {
                Ok(r) => r,
                Err(_) => Err(CdcError::Source(format!(
                    "no event or heartbeat from the source for {} s",
                    idle.as_secs()
                ))),
            };
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    (rx, handle)
}

/// Stream and apply until something ends it.
async fn run_stream(
    state: &Arc<EngineState>,
    stream: CdcStream,
    position: &mut Option<SourcePosition>,
    admin_rx: &mut mpsc::Receiver<AdminReply>,
    backoff: &mut Backoff,
    last_full: Instant,
) -> Outcome {
    let logical = state.config().sync.mode == SyncMode::Logical;
    let idle = if logical {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(10)
    };
    let confirmer = stream.confirmer();
    let (mut rx, reader) = spawn_reader(stream, idle);
    let guard = AbortOnDrop(reader);
    let interval = Duration::from_secs(state.config().sync.interval.max(1));
    let safety_net = state.config().sync.safety_net;
    let mut pending = Pending::default();
    // Keys re-read in a flush, to re-read again when due (oldest first).
    let mut recheck_again: std::collections::VecDeque<(Instant, HashMap<usize, Vec<Row>>)> =
        Default::default();
    let mut dirty_since: Option<Instant> = None;
    let mut wal_checked = Instant::now();
    let mut first_event = true;
    let cancel = state.shutdown_token().clone();
    let manifest = manifest_of(state);
    let outcome = loop {
        if state.is_paused() {
            break Outcome::Paused;
        }
        if safety_net > 0
            && last_full.elapsed() >= Duration::from_secs(safety_net)
            && pending.open_txn == 0
        {
            break Outcome::Reload(None, "safety_net");
        }
        if let Some(t) = dirty_since {
            if t.elapsed() >= interval && pending.open_txn == 0 {
                break Outcome::Reload(None, "dirty_tables");
            }
        }
        if logical && wal_checked.elapsed() >= Duration::from_secs(10) {
            wal_checked = Instant::now();
            refresh_wal(state, &options(state)).await;
        }
        let mut close = false;
        if pending.open_txn == 0
            && recheck_again
                .front()
                .is_some_and(|(due, _)| *due <= Instant::now())
        {
            if let Some(p) = position.clone() {
                let (_, keys) = recheck_again.pop_front().expect("checked above");
                for (table, keys) in keys {
                    pending.recheck_again.entry(table).or_default().extend(keys);
                }
                // Published at the position already reached when nothing else is pending.
                if pending.committed.is_none() {
                    pending.committed = Some((p, None));
                }
                pending.first_at.get_or_insert_with(Instant::now);
                close = true;
            }
        }
        let wait = match pending.first_at {
            Some(t) if pending.committed.is_some() => BATCH_WINDOW.saturating_sub(t.elapsed()),
            _ => Duration::from_millis(100),
        };
        let wait = match recheck_again.front() {
            Some((due, _)) => wait.min(due.saturating_duration_since(Instant::now())),
            None => wait,
        };
        let ev = if close {
            None
        } else {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break Outcome::Shutdown,
                r = admin_rx.recv() => match r {
                    Some(reply) => break Outcome::Reload(Some(reply), "admin"),
                    None => continue,
                },
                ev = rx.recv() => ev,
                _ = tokio::time::sleep(wait) => None,
            }
        };
        match ev {
            None => {
                // Window over (or idle tick): close the batch if it ends on a commit.
                close = pending.open_txn == 0 && pending.committed.is_some();
            }
            Some(Err(e)) => break Outcome::Disconnected(e),
            Some(Ok(ev)) => {
                if first_event {
                    first_event = false;
                    backoff.reset();
                }
                match ev {
                    // PostgreSQL sends a keepalive each time its walsender catches up, so at
                    // thousands of commits/s nearly every commit is followed by one: closing on
                    // it regardless of the queue published one commit per batch, and the
                    // applier fell behind (B4: 2,800 of 5,000 commits/s under query load).
                    ChangeEvent::Heartbeat => {
                        close = pending.open_txn == 0
                            && pending.committed.is_some()
                            && pending.due(rx.is_empty());
                    }
                    ChangeEvent::Commit {
                        position: p,
                        committed_at_ms,
                    } => {
                        pending.open_txn = 0;
                        if pending.first_at.is_none() {
                            // An empty transaction (other tables): just move the position.
                            pending.first_at = Some(Instant::now());
                        }
                        pending.committed = Some((p, committed_at_ms));
                        close = pending.due(rx.is_empty());
                    }
                    ChangeEvent::Truncate { tables } => {
                        pending.touch();
                        pending.dirty.extend(tables);
                    }
                    ChangeEvent::TableChanged { table, reason } => {
                        pending.touch();
                        tracing::info!(table = ?manifest.tables.get(table).map(|t| &t.api_name), %reason, "table changed on the source; it will be reloaded");
                        pending.dirty.insert(table);
                    }
                    row => pending.row(&manifest, row),
                }
                if pending.first_at.is_some() {
                    let mut s = state.cdc.status();
                    if s.pending_since.is_none() {
                        s.pending_since = pending.first_at;
                    }
                }
            }
        }
        if close {
            let batch = std::mem::take(&mut pending);
            if !batch.dirty.is_empty() && dirty_since.is_none() {
                dirty_since = Some(Instant::now());
            }
            // Dirty tables stay dirty (their events ignored) until the resync.
            pending.dirty = batch.dirty.clone();
            let rechecked = batch.recheck.clone();
            match flush(state, &manifest, batch).await {
                Ok(Some(p)) => {
                    confirmer.confirm(&p);
                    *position = Some(p);
                    if !rechecked.is_empty() {
                        recheck_again.push_back((Instant::now() + RECHECK_AGAIN_AFTER, rechecked));
                    }
                }
                Ok(None) => {}
                Err(FlushError::Paused) => break Outcome::Paused,
                Err(FlushError::Source(e)) => break Outcome::Disconnected(CdcError::Source(e)),
                Err(FlushError::Stale) => break Outcome::Reload(None, "snapshot_replaced"),
            }
        }
    };
    drop(guard);
    outcome
}

/// Whether a batch is applied on the applier's own task ([`INLINE_APPLY`]) rather than a
/// blocking thread: small, and compacting no large table ([`INLINE_COMPACT_ROWS`]).
fn apply_inline(current: &refract_storage::Snapshot, jobs: &[(usize, ChangeBatch)]) -> bool {
    jobs.iter().map(|(_, b)| b.len()).sum::<usize>() <= INLINE_APPLY
        && jobs.iter().all(|(i, b)| {
            current.tables.get(*i).is_none_or(|t| {
                t.row_count() <= INLINE_COMPACT_ROWS || !t.apply_may_compact(b.len())
            })
        })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum FlushError {
    Paused,
    Source(String),
    /// The snapshot's manifest is not the stream's (replaced by another load).
    Stale,
}

/// Apply one closed batch and publish it with one swap. Returns the batch's position.
///
/// Stages: the keys to re-read (1) are re-read from the source (2) before anything is applied;
/// then the change batches are built (3), applied off the async runtime and published (4).
async fn flush(
    state: &Arc<EngineState>,
    manifest: &Arc<Manifest>,
    mut batch: Pending,
) -> Result<Option<SourcePosition>, FlushError> {
    let Some((position, committed_at_ms)) = batch.committed.take() else {
        return Ok(None);
    };
    let started = batch.first_at.unwrap_or_else(Instant::now);
    let dirty: Vec<String> = batch
        .dirty
        .iter()
        .filter_map(|&i| manifest.tables.get(i).map(|t| t.api_name.clone()))
        .collect();
    let changes = batch.changes as u64;
    let keys = batch.keys_to_reread();
    let reread = reread(state, manifest, keys).await?;
    let jobs = batch.into_batches(reread);
    let Some(current) = state.snapshot() else {
        return Err(FlushError::Stale);
    };
    if !Arc::ptr_eq(&current.manifest, manifest) && *current.manifest != **manifest {
        return Err(FlushError::Stale);
    }
    let apply = |cur: &refract_storage::Snapshot, jobs: Vec<(usize, ChangeBatch)>| {
        jobs.into_iter()
            .filter_map(|(i, b)| cur.tables.get(i).map(|t| (i, Arc::new(t.apply(&b)))))
            .collect::<Vec<(usize, Arc<Table>)>>()
    };
    let replaced = if apply_inline(&current, &jobs) {
        apply(&current, jobs)
    } else {
        let cur = current.clone();
        tokio::task::spawn_blocking(move || apply(&cur, jobs))
            .await
            .map_err(|e| FlushError::Source(format!("applying a batch failed: {e}")))?
    };
    state
        .publish_batch(&current, replaced, position.clone())
        .map_err(|e| match e {
            LoadError::Paused => FlushError::Paused,
            _ => FlushError::Stale,
        })?;
    let lag = started.elapsed();
    state.metrics.replication_lag_seconds.set(lag.as_secs_f64());
    state.metrics.add_changes(changes);
    let mut s = state.cdc.status();
    s.batch_lag_ms = lag.as_millis() as u64;
    s.pending_since = None;
    s.last_publish = Some(Instant::now());
    // A second re-read has no commit of its own: keep the last one.
    if committed_at_ms.is_some() {
        s.last_commit_ms = committed_at_ms;
    }
    s.position = Some(position.clone());
    s.batches += 1;
    s.changes += changes;
    if !dirty.is_empty() {
        for d in dirty {
            if !s.dirty.contains(&d) {
                s.dirty.push(d);
            }
        }
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use refract_schema::Value;
    use refract_storage::Change;

    /// Tables `plain(id, s)` and `filtered(id, s) where s <> 'x'` keyed by `id`, `nokey(id, s)`
    /// without a key.
    fn manifest() -> Manifest {
        let col = |name: &str, kind: &str| {
            json!({"source_name": name, "api_name": name, "ty": {"kind": kind, "case_insensitive": false},
                   "source_type": "x", "nullable": true})
        };
        let table = |name: &str, pk: serde_json::Value, where_sql: Option<&str>| {
            json!({"source_name": name, "api_name": name, "primary_key": pk, "relations": [],
                   "where_sql": where_sql, "columns": [col("id", "int"), col("s", "text")]})
        };
        serde_json::from_value(json!({
            "version": 1, "backend": "postgres", "database": "d", "pg_schema": "public",
            "tables": [
                table("plain", json!([0]), None),
                table("filtered", json!([0]), Some("s <> 'x'")),
                table("nokey", json!([]), None),
            ],
        }))
        .expect("test manifest")
    }

    fn row(id: i64, s: &str) -> ChangeRow {
        vec![Some(Value::Int(id)), Some(Value::Text(s.into()))]
    }

    fn insert(table: usize, row: ChangeRow) -> ChangeEvent {
        ChangeEvent::Insert { table, row }
    }

    fn update(table: usize, before: ChangeRow, after: ChangeRow) -> ChangeEvent {
        ChangeEvent::Update {
            table,
            before,
            after,
        }
    }

    /// Small batches are applied inline, except one that may compact a large table (O(table)
    /// on a query worker); large batches never.
    #[test]
    fn small_batches_apply_inline_unless_they_may_compact_a_large_table() {
        use refract_schema::RowSink;
        let m = Arc::new(manifest());
        let table = |rows: i64, deleted: i64| {
            let mut b = refract_storage::TableBuilder::new(Arc::new(m.tables[0].clone()));
            for i in 0..rows {
                b.push(0, refract_schema::ValueRef::Int(i));
                b.push(1, refract_schema::ValueRef::Null);
                assert!(b.end_row());
            }
            let t = b.finish();
            let mut batch = ChangeBatch::new();
            for i in 0..deleted {
                batch.delete(vec![Value::Int(i)]);
            }
            Arc::new(t.apply(&batch))
        };
        let deletes = |n: i64| {
            let mut b = ChangeBatch::new();
            for i in 0..n {
                b.delete(vec![Value::Int(1_000_000 + i)]);
            }
            b
        };
        let big = 100_000;
        // A quarter of the row ids minus one are tombstones: the next delete compacts.
        let near = table(big, big / 4 - 1);
        let snap = |t: Arc<Table>| refract_storage::Snapshot::new(m.clone(), vec![t]);
        assert!(near.apply_may_compact(2) && !near.apply_may_compact(0));
        assert!(
            !apply_inline(&snap(near.clone()), &[(0, deletes(2))]),
            "a 2-change batch may compact a {big}-row table: off the query workers"
        );
        let fresh = table(big, 0);
        assert!(apply_inline(&snap(fresh.clone()), &[(0, deletes(2))]));
        assert!(!apply_inline(
            &snap(fresh),
            &[(0, deletes(INLINE_APPLY as i64 + 1))]
        ));
        // A small table compacts cheaply: inline.
        let small = table(1_000, 249);
        assert!(small.apply_may_compact(2));
        assert!(apply_inline(&snap(small), &[(0, deletes(2))]));
    }

    #[test]
    fn a_batch_ending_on_a_commit_waits_for_what_is_queued() {
        let mut p = Pending {
            first_at: Some(Instant::now()),
            changes: 1,
            ..Default::default()
        };
        // More is queued (a keepalive after each commit must not close the batch then).
        assert!(!p.due(false));
        // Nothing more queued: publish now.
        assert!(p.due(true));
        // Full, or its window is over: publish even with more queued.
        p.changes = BATCH_MAX;
        assert!(p.due(false));
        p.changes = 1;
        p.first_at = Instant::now().checked_sub(BATCH_WINDOW);
        assert!(p.due(false));
    }

    #[test]
    fn rows_route_to_batches_or_to_the_reread_stage() {
        let m = manifest();
        let mut p = Pending::default();
        p.row(&m, insert(0, row(1, "a")));
        // A changed key: delete the old one, then upsert.
        p.row(&m, update(0, row(1, "a"), row(2, "a")));
        // A value not sent (unchanged TOAST): re-read, nothing in the batch.
        p.row(&m, update(0, row(3, "b"), vec![Some(Value::Int(3)), None]));
        // A `where`: re-read both keys.
        p.row(&m, update(1, row(10, "a"), row(9, "a")));
        p.row(
            &m,
            ChangeEvent::Delete {
                table: 1,
                before: row(10, "a"),
            },
        );
        // No primary key: dirty.
        p.row(&m, insert(2, row(1, "a")));
        assert_eq!(p.changes, 6);
        assert_eq!(
            p.per_table[&0].changes,
            vec![
                Change::Upsert(vec![Value::Int(1), Value::Text("a".into())]),
                Change::Delete(vec![Value::Int(1)]),
                Change::Upsert(vec![Value::Int(2), Value::Text("a".into())]),
            ]
        );
        assert!(!p.per_table.contains_key(&1));
        assert!(p.dirty.contains(&2));
        // Keys sorted by value (not by their text: `Int(9)` after `Int(10)`), without duplicates.
        p.recheck_again.insert(1, vec![vec![Value::Int(11)]]);
        p.recheck.insert(2, vec![vec![Value::Int(5)]]);
        let keys = p.keys_to_reread();
        assert_eq!(
            keys,
            BTreeMap::from([
                (0, vec![vec![Value::Int(3)]]),
                (
                    1,
                    vec![
                        vec![Value::Int(9)],
                        vec![Value::Int(10)],
                        vec![Value::Int(11)]
                    ]
                ),
            ])
        );
        assert!(p.recheck.is_empty() && p.recheck_again.is_empty());
    }

    #[test]
    fn reread_rows_follow_the_streamed_changes() {
        let m = manifest();
        let mut p = Pending::default();
        p.row(&m, insert(0, row(1, "a")));
        p.row(&m, insert(2, row(1, "a")));
        let reread = vec![
            Reread {
                table: 0,
                keys: vec![vec![Value::Int(3)]],
                rows: vec![vec![Value::Int(3), Value::Text("big".into())]],
            },
            Reread {
                table: 1,
                keys: vec![vec![Value::Int(9)], vec![Value::Int(10)]],
                rows: vec![],
            },
        ];
        let mut jobs = p.into_batches(reread);
        jobs.sort_by_key(|(t, _)| *t);
        let got: Vec<(usize, Vec<Change>)> =
            jobs.into_iter().map(|(t, b)| (t, b.changes)).collect();
        assert_eq!(
            got,
            vec![
                (
                    0,
                    vec![
                        Change::Upsert(vec![Value::Int(1), Value::Text("a".into())]),
                        Change::Delete(vec![Value::Int(3)]),
                        Change::Upsert(vec![Value::Int(3), Value::Text("big".into())]),
                    ]
                ),
                (
                    1,
                    vec![
                        Change::Delete(vec![Value::Int(9)]),
                        Change::Delete(vec![Value::Int(10)])
                    ]
                ),
            ]
        );
    }
}
