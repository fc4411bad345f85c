//! The engine's state: the published snapshot (one atomic pointer), load bookkeeping, replication
//! pause, keys and metrics; and the reload that builds and publishes a new snapshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwapOption;
use chrono::{DateTime, SecondsFormat, Utc};
use refract_protocol::{EngineStatus, Health, Replication, ReplicationState};
use refract_query::QueryOptions;
use refract_schema::{Manifest, SchemaConfig, MANIFEST_VERSION};
use refract_sources::{ExportedSnapshot, LoadOptions, LoadProgress, SourceParams, SourcePosition};
use refract_storage::{Snapshot, Table, TableBuilder};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{EngineConfig, SyncMode};
use crate::keys::{AdminToken, KeyStore};
use crate::loader::{finish, CapShared, CappedSink};
use crate::metrics::Metrics;

/// Why a load did not publish a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The source could not be read (down, refused, SQL error) or introspected.
    #[error("{0}")]
    Source(String),
    /// The manifest or schema config is unusable.
    #[error("{0}")]
    Schema(String),
    /// The snapshot would pass `memory_cap_mb`.
    #[error("memory cap exceeded: the snapshot would need more than {cap_mb} MiB (memory_cap_mb)")]
    CapExceeded {
        /// The configured cap.
        cap_mb: u64,
    },
    /// Replication is paused: the snapshot is frozen.
    #[error("replication is paused: the snapshot is frozen (resume it first)")]
    Paused,
    /// A bug (a panic while building tables).
    #[error("internal error: {0}")]
    Internal(String),
}

impl LoadError {
    /// Short machine name (`source`, `schema`, `cap_exceeded`, `paused`, `internal`).
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Source(_) => "source",
            LoadError::Schema(_) => "schema",
            LoadError::CapExceeded { .. } => "cap_exceeded",
            LoadError::Paused => "paused",
            LoadError::Internal(_) => "internal",
        }
    }
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first load at start, or a poll tick.
    Poll,
    /// `POST /admin/reload`.
    Admin,
}

/// Result of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Snapshots published so far, this one included.
    pub swap_count: u64,
    /// Whole load, ms.
    pub duration_ms: u64,
    /// Rows read from the source.
    pub rows: u64,
    /// Tables whose previous version was kept (same content).
    pub tables_reused: Vec<String>,
    /// Tables replaced by newly built ones.
    pub tables_reloaded: Vec<String>,
}

#[derive(Debug, Clone)]
struct LoadRunning {
    started: Instant,
    started_at: DateTime<Utc>,
    progress: Arc<LoadProgress>,
    tables_total: usize,
    trigger: Trigger,
}

#[derive(Debug, Clone)]
struct LoadSummary {
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    duration_ms: u64,
    source_ms: u64,
    build_ms: u64,
    rows: u64,
    report: ReloadReport,
}

type SqliteStamp = Vec<Option<(SystemTime, u64)>>;

#[derive(Debug, Default)]
struct LoadInfo {
    /// Replication paused (also mirrored in `EngineState::paused` for lock-free reads).
    paused: bool,
    /// Result of the last finished load attempt: `None` before the first one ends.
    last_result: Option<Result<(), LoadError>>,
    running: Option<LoadRunning>,
    last_error: Option<(LoadError, DateTime<Utc>)>,
    last_ok: Option<LoadSummary>,
    /// When the current snapshot was published.
    published_at: Option<Instant>,
    /// When the load of the current snapshot started (its data is at least this fresh).
    data_as_of: Option<Instant>,
    source_position: Option<SourcePosition>,
    loads: u64,
    failures: u64,
    /// SQLite file stamp taken before the last successful load.
    sqlite_stamp: Option<SqliteStamp>,
}

/// Everything one engine holds. Shared by the HTTP handlers and the background tasks.
pub struct EngineState {
    config: EngineConfig,
    params: SourceParams,
    fixed_manifest: Option<Arc<Manifest>>,
    schema_config: Option<SchemaConfig>,
    snapshot: ArcSwapOption<Snapshot>,
    manifest: ArcSwapOption<Manifest>,
    swap_count: AtomicU64,
    paused: AtomicBool,
    info: Mutex<LoadInfo>,
    reload_lock: tokio::sync::Mutex<()>,
    pub(crate) keys: KeyStore,
    pub(crate) admin: AdminToken,
    pub(crate) metrics: Metrics,
    pub(crate) query_options: QueryOptions,
    /// CDC loop state (binlog / logical modes).
    pub(crate) cdc: CdcShared,
    shutdown: CancellationToken,
    started: Instant,
    local_addr: OnceLock<SocketAddr>,
    /// With `control_listen`: whether `listen` accepts connections yet (after the first load).
    accepting: AtomicBool,
}

impl std::fmt::Debug for EngineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineState")
            .field("source", &self.params)
            .field("swap_count", &self.swap_count())
            .finish_non_exhaustive()
    }
}

impl EngineState {
    /// Read everything the config points at (password, manifest or schema config, keys, admin
    /// token) and make an engine state without a snapshot yet.
    pub fn new(config: EngineConfig) -> anyhow::Result<Arc<EngineState>> {
        config.validate()?;
        let params = crate::config::source_params(&config.source)?;
        let fixed_manifest = match &config.manifest {
            Some(path) => Some(Arc::new(read_manifest(path, &config)?)),
            None => None,
        };
        let schema_config = match &config.schema_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading schema_config {}", path.display()))?;
                let parsed = refract_schema::parse_schema_config(&text).map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    anyhow::anyhow!("schema_config {}: {}", path.display(), lines.join("; "))
                })?;
                Some(parsed)
            }
            None => None,
        };
        let mut params = params;
        if params.pg_schema.is_none() {
            params.pg_schema = schema_config
                .as_ref()
                .and_then(|c| c.pg_schema.clone())
                .or_else(|| fixed_manifest.as_ref().and_then(|m| m.pg_schema.clone()));
        }
        let keys = match &config.keys_file {
            Some(path) => KeyStore::from_file(path)?,
            None => KeyStore::open_access(),
        };
        let admin = match &config.admin_token_file {
            Some(path) => AdminToken::from_file(path)?,
            None => AdminToken::none(),
        };
        let query_options = QueryOptions {
            default_limit: config.default_limit,
            default_nested_limit: config.default_nested_limit,
            ..QueryOptions::default()
        };
        Ok(Arc::new(EngineState {
            manifest: ArcSwapOption::new(fixed_manifest.clone()),
            fixed_manifest,
            schema_config,
            params,
            snapshot: ArcSwapOption::empty(),
            swap_count: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            info: Mutex::new(LoadInfo::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            keys,
            admin,
            metrics: Metrics::for_database(config.database_id.as_deref())
                .with_table_labels(config.metrics_table_labels),
            query_options,
            cdc: CdcShared::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            local_addr: OnceLock::new(),
            accepting: AtomicBool::new(false),
            config,
        }))
    }

    /// The config this engine runs from.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Where the source is.
    pub(crate) fn params(&self) -> &SourceParams {
        &self.params
    }

    /// Publish a CDC batch: `current` with the tables at the given indexes replaced, in one
    /// swap, unless replication was paused meanwhile ([`LoadError::Paused`]) or another load
    /// replaced `current` ([`LoadError::Internal`]).
    pub(crate) fn publish_batch(
        &self,
        current: &Arc<Snapshot>,
        replaced: Vec<(usize, Arc<Table>)>,
        position: SourcePosition,
    ) -> Result<u64, LoadError> {
        let mut tables = current.tables.clone();
        for (i, t) in &replaced {
            if let Some(slot) = tables.get_mut(*i) {
                *slot = t.clone();
            }
        }
        let snapshot = Arc::new(Snapshot::new(current.manifest.clone(), tables));
        let mut info = self.lock_info();
        if info.paused {
            return Err(LoadError::Paused);
        }
        let now = self.snapshot.load();
        if !now.as_ref().is_some_and(|s| Arc::ptr_eq(s, current)) {
            return Err(LoadError::Internal(
                "the snapshot was replaced meanwhile".into(),
            ));
        }
        drop(now);
        for (_, t) in &replaced {
            self.metrics
                .set_table(&t.manifest.api_name, t.row_count(), t.memory_bytes());
        }
        self.snapshot.store(Some(snapshot));
        let swap_count = self.swap_count.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.swaps.increment(1);
        let now = Instant::now();
        info.published_at = Some(now);
        info.data_as_of = Some(now);
        info.source_position = Some(position);
        Ok(swap_count)
    }

    /// The current snapshot, if one was published.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// The current snapshot without touching its reference count (for the query path).
    pub(crate) fn snapshot_guard(&self) -> arc_swap::Guard<Option<Arc<Snapshot>>> {
        self.snapshot.load()
    }

    /// The manifest of the current snapshot, or the one the engine will load.
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        match self.snapshot.load().as_ref() {
            Some(s) => Some(s.manifest.clone()),
            None => self.manifest.load_full(),
        }
    }

    /// Snapshots published so far.
    pub fn swap_count(&self) -> u64 {
        self.swap_count.load(Ordering::Acquire)
    }

    /// Whether replication is paused (the snapshot frozen).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Pause or resume replication. While paused no reload publishes a snapshot.
    pub fn set_paused(&self, paused: bool) {
        let mut info = self.lock_info();
        info.paused = paused;
        self.paused.store(paused, Ordering::Release);
        self.metrics
            .replication_paused
            .set(if paused { 1.0 } else { 0.0 });
        tracing::info!(
            paused,
            "replication {}",
            if paused { "paused" } else { "resumed" }
        );
    }

    /// The token cancelled when the engine must stop.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Ask the engine to stop gracefully.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The address the HTTP server listens on, once bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// `listen` now accepts connections (with `control_listen`, after the first load).
    pub(crate) fn set_accepting(&self) {
        self.accepting.store(true, Ordering::Release);
    }

    fn lock_info(&self) -> MutexGuard<'_, LoadInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SQLite database file and its `-wal` companion, with their mtime and size.
    fn sqlite_stamp(&self) -> Option<SqliteStamp> {
        let path = self.config.source.sqlite_path()?;
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let files = [path, PathBuf::from(wal)];
        Some(
            files
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())))
                })
                .collect(),
        )
    }

    /// Whether a poll tick should reload: not paused, and (for SQLite) the file changed since the
    /// last good load, or there is no good load yet.
    pub(crate) fn poll_due(&self) -> bool {
        if self.is_paused() {
            return false;
        }
        let info = self.lock_info();
        if !matches!(info.last_result, Some(Ok(()))) || self.snapshot.load().is_none() {
            return true;
        }
        match self.sqlite_stamp() {
            Some(now) => info.sqlite_stamp.as_ref() != Some(&now),
            None => true,
        }
    }

    /// Load every table from the source and publish the result with one atomic swap. Reloads
    /// run one at a time; queries keep using the previous snapshot meanwhile, and keep it when
    /// the load fails.
    ///
    /// In CDC modes the reload is a full resync run by the change stream's loop (a new
    /// consistent load, then streaming from its position).
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, LoadError> {
        if let Some(tx) = self.cdc.admin_tx.get() {
            if self.is_paused() {
                return Err(LoadError::Paused);
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            tx.send(reply)
                .await
                .map_err(|_| LoadError::Internal("the replication loop stopped".into()))?;
            return answer.await.map_err(|_| {
                LoadError::Internal("the replication loop dropped the reload".into())
            })?;
        }
        self.reload_with(trigger, None).await.map(|(r, _)| r)
    }

    /// [`EngineState::reload`] itself: load (inside `snapshot` when given) and publish;
    /// returns the report and the load's source position.
    pub(crate) async fn reload_with(
        &self,
        trigger: Trigger,
        snapshot: Option<&ExportedSnapshot>,
    ) -> Result<(ReloadReport, SourcePosition), LoadError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        if self.is_paused() {
            return Err(LoadError::Paused);
        }
        let started = Instant::now();
        let started_at = Utc::now();
        let stamp = self.sqlite_stamp();
        let progress = Arc::new(LoadProgress::default());
        let result = self
            .load_and_publish(trigger, started, started_at, stamp, progress, snapshot)
            .await;
        let mut info = self.lock_info();
        info.running = None;
        info.loads += 1;
        match &result {
            Ok((report, _)) => {
                info.last_result = Some(Ok(()));
                tracing::info!(
                    swap_count = report.swap_count,
                    duration_ms = report.duration_ms,
                    rows = report.rows,
                    reused = report.tables_reused.len(),
                    reloaded = report.tables_reloaded.len(),
                    "snapshot published"
                );
            }
            Err(LoadError::Paused) => {
                tracing::info!("load finished while replication was paused; discarded");
            }
            Err(e) => {
                info.failures += 1;
                info.last_result = Some(Err(e.clone()));
                info.last_error = Some((e.clone(), Utc::now()));
                let serving = self.snapshot.load().is_some();
                match e {
                    LoadError::CapExceeded { .. } => self.metrics.loads_cap_exceeded.increment(1),
                    _ => self.metrics.loads_failed.increment(1),
                }
                tracing::error!(error = %e, kind = e.kind(), keeps_serving_previous = serving, "load failed");
            }
        }
        result
    }

    pub(crate) async fn resolve_manifest(&self) -> Result<Arc<Manifest>, LoadError> {
        if let Some(m) = &self.fixed_manifest {
            return Ok(m.clone());
        }
        let schema = refract_sources::introspect(&self.params)
            .await
            .map_err(|e| LoadError::Source(format!("introspecting the source: {e}")))?;
        let mut manifest = refract_schema::build_manifest(&schema, self.schema_config.as_ref())
            .map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                LoadError::Schema(format!(
                    "schema config does not apply to the source: {}",
                    lines.join("; ")
                ))
            })?;
        // The tables were introspected in the connection's schema (`source.pg_schema`); the
        // manifest must name that one, not the schema config's default.
        if manifest.backend == refract_schema::Backend::Postgres && self.params.pg_schema.is_some()
        {
            manifest.pg_schema = self.params.pg_schema.clone();
        }
        // Keep the previous Arc when nothing changed, so equal manifests stay shared.
        if let Some(current) = self.manifest.load_full() {
            if *current == manifest {
                return Ok(current);
            }
        }
        let manifest = Arc::new(manifest);
        self.manifest.store(Some(manifest.clone()));
        Ok(manifest)
    }

    async fn load_and_publish(
        &self,
        trigger: Trigger,
        started: Instant,
        started_at: DateTime<Utc>,
        stamp: Option<SqliteStamp>,
        progress: Arc<LoadProgress>,
        exported: Option<&ExportedSnapshot>,
    ) -> Result<(ReloadReport, SourcePosition), LoadError> {
        let manifest = self.resolve_manifest().await?;
        self.lock_info().running = Some(LoadRunning {
            started,
            started_at,
            progress: progress.clone(),
            tables_total: manifest.tables.len(),
            trigger,
        });
        tracing::info!(tables = manifest.tables.len(), ?trigger, "load started");

        let cap_bytes = self
            .config
            .memory_cap_mb
            .map(|mb| (mb as usize).saturating_mul(1024 * 1024));
        let shared = CapShared::new(cap_bytes, manifest.tables.len());
        let sinks: Vec<CappedSink> = manifest
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                CappedSink::new(TableBuilder::new(Arc::new(t.clone())), i, shared.clone())
            })
            .collect();
        let options = LoadOptions {
            parallelism: self.config.load_parallelism,
            progress: progress.clone(),
            snapshot: exported,
        };
        let loaded = refract_sources::load_tables(&self.params, &manifest, sinks, options).await;
        let cap_error = || LoadError::CapExceeded {
            cap_mb: self.config.memory_cap_mb.unwrap_or(0),
        };
        if shared.exceeded() {
            return Err(cap_error());
        }
        let (sinks, position) = loaded.map_err(|e| LoadError::Source(e.to_string()))?;
        if shared.refused() {
            return Err(LoadError::Internal("storage refused rows".into()));
        }
        let mut builders = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let (builder, ok) = sink.into_builder();
            if !ok {
                return Err(cap_error());
            }
            builders.push(builder);
        }
        let source_done = Instant::now();

        let current = self.snapshot.load_full();
        let finished = tokio::task::spawn_blocking(move || finish(builders, current.as_deref()))
            .await
            .map_err(|e| LoadError::Internal(format!("building tables: {e}")))?;
        if let Some(cap) = cap_bytes {
            if finished.memory_bytes > cap {
                return Err(cap_error());
            }
        }
        let snapshot = Arc::new(Snapshot::new(manifest.clone(), finished.tables));
        let build_ms = source_done.elapsed().as_millis() as u64;

        // Publish: under the info lock, so a pause that returned before this point freezes the
        // snapshot for sure.
        let mut info = self.lock_info();
        if info.paused {
            return Err(LoadError::Paused);
        }
        for t in &snapshot.tables {
            self.metrics
                .set_table(&t.manifest.api_name, t.row_count(), t.memory_bytes());
        }
        self.snapshot.store(Some(snapshot));
        let swap_count = self.swap_count.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.swaps.increment(1);
        self.metrics.loads_ok.increment(1);
        // Index lookups read scattered rows: huge pages make each read cheaper (storage docs).
        tokio::task::spawn_blocking(|| {
            let t = Instant::now();
            let r = refract_storage::advise_huge_pages();
            tracing::debug!(
                advised = r.advised,
                collapsed = r.collapsed,
                ms = t.elapsed().as_millis() as u64,
                "snapshot memory advised to use huge pages"
            );
        });
        let duration = started.elapsed();
        self.metrics.last_load_seconds.set(duration.as_secs_f64());
        let report = ReloadReport {
            swap_count,
            duration_ms: duration.as_millis() as u64,
            rows: progress.rows.load(Ordering::Relaxed),
            tables_reused: finished.reused,
            tables_reloaded: finished.reloaded,
        };
        let now = Instant::now();
        info.published_at = Some(now);
        info.data_as_of = Some(started);
        info.source_position = Some(position.clone());
        info.sqlite_stamp = stamp;
        info.last_ok = Some(LoadSummary {
            started_at,
            finished_at: Utc::now(),
            duration_ms: report.duration_ms,
            source_ms: source_done.duration_since(started).as_millis() as u64,
            build_ms,
            rows: report.rows,
            report: report.clone(),
        });
        Ok((report, position))
    }

    /// `GET /health` body.
    pub fn health(&self) -> Value {
        let info = self.lock_info();
        serde_json::to_value(self.health_locked(&info)).unwrap_or_default()
    }

    fn health_locked(&self, info: &LoadInfo) -> Health {
        let has_snapshot = self.snapshot.load().is_some();
        let status = match (&info.last_result, has_snapshot) {
            (Some(Err(LoadError::CapExceeded { .. })), _) => EngineStatus::CapExceeded,
            (_, false) => EngineStatus::Loading,
            (Some(Err(_)), true) => EngineStatus::Degraded,
            _ => EngineStatus::Ok,
        };
        let ms = |t: Option<Instant>| t.map(|t| t.elapsed().as_millis() as u64);
        let requested = self.config.sync.mode;
        let replication = if self.cdc.active() {
            self.cdc
                .health(requested, info.paused, self.config.sync.interval)
        } else {
            let state = if info.paused {
                ReplicationState::Paused
            } else if matches!(info.last_result, Some(Err(_))) {
                ReplicationState::Error
            } else if !has_snapshot {
                ReplicationState::Loading
            } else if requested != SyncMode::Poll {
                ReplicationState::PollFallback
            } else {
                ReplicationState::Polling
            };
            let fallback = requested != SyncMode::Poll;
            Replication {
                mode: "poll".into(),
                state,
                lag_ms: ms(info.data_as_of),
                last_batch_lag_ms: None,
                paused: info.paused,
                interval_s: self.config.sync.interval,
                retained_wal_bytes: None,
                last_error: None,
                fatal: None,
                requested_mode: fallback.then(|| requested.as_str().to_string()),
                note: fallback.then(|| {
                    format!(
                        "{} sync does not apply to a {} source; the engine runs in poll mode",
                        requested.as_str(),
                        self.config.source.backend.as_str()
                    )
                }),
            }
        };
        Health {
            status,
            snapshot_age_ms: ms(info.published_at),
            swap_count: self.swap_count(),
            replication,
            listen: self.local_addr().map(|addr| format!("http://{addr}")),
            accepting: self
                .config
                .control_listen
                .map(|_| self.accepting.load(Ordering::Acquire)),
            message: match &info.last_result {
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            },
        }
    }

    /// `GET /stats` body: health plus row counts, memory, loads and the source position.
    pub fn stats(&self) -> Value {
        let info = self.lock_info();
        let mut stats = serde_json::to_value(self.health_locked(&info)).unwrap_or_default();
        let snapshot = self.snapshot.load_full();
        let mut rows = Map::new();
        let mut memory = Map::new();
        let mut by_column = Map::new();
        let mut total = 0usize;
        if let Some(s) = &snapshot {
            for t in &s.tables {
                rows.insert(t.manifest.api_name.clone(), json!(t.row_count()));
                memory.insert(t.manifest.api_name.clone(), json!(t.memory_bytes()));
                total += t.memory_bytes();
                let cols = t.column_memory_bytes();
                let mut per_column: Map<String, Value> = t
                    .manifest
                    .columns
                    .iter()
                    .zip(&cols)
                    .map(|(c, b)| (c.api_name.clone(), json!(b)))
                    .collect();
                // What is not a column's data: indexes, tombstones, the primary-key order.
                per_column.insert(
                    "(indexes)".into(),
                    json!(t.memory_bytes().saturating_sub(cols.iter().sum())),
                );
                by_column.insert(t.manifest.api_name.clone(), Value::Object(per_column));
            }
        }
        let rfc = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let progress = match &info.running {
            Some(r) => json!({
                "inProgress": true,
                "trigger": match r.trigger { Trigger::Poll => "poll", Trigger::Admin => "admin" },
                "startedAt": rfc(&r.started_at),
                "elapsedMs": r.started.elapsed().as_millis() as u64,
                "rows": r.progress.rows.load(Ordering::Relaxed),
                "tablesDone": r.progress.tables_done.load(Ordering::Relaxed),
                "tablesTotal": r.tables_total,
            }),
            None => json!({"inProgress": false}),
        };
        let last_load = info.last_ok.as_ref().map(|l| {
            json!({
                "startedAt": rfc(&l.started_at),
                "finishedAt": rfc(&l.finished_at),
                "durationMs": l.duration_ms,
                "sourceMs": l.source_ms,
                "buildMs": l.build_ms,
                "rows": l.rows,
                "swapCount": l.report.swap_count,
                "tablesReloaded": l.report.tables_reloaded,
                "tablesReused": l.report.tables_reused,
            })
        });
        let last_error = info
            .last_error
            .as_ref()
            .map(|(e, at)| json!({"kind": e.kind(), "message": e.to_string(), "at": rfc(at)}));
        stats["rowCounts"] = Value::Object(rows);
        stats["memoryBytes"] = Value::Object(memory);
        stats["memoryBytesByColumn"] = Value::Object(by_column);
        stats["totalMemoryBytes"] = json!(total);
        stats["memoryCapBytes"] = json!(self.config.memory_cap_mb.map(|mb| mb * 1024 * 1024));
        stats["progress"] = progress;
        stats["lastLoad"] = json!(last_load);
        stats["loads"] = json!(info.loads);
        stats["loadFailures"] = json!(info.failures);
        stats["lastError"] = json!(last_error);
        stats["sourcePosition"] = json!(info.source_position);
        if self.cdc.active() {
            stats["cdc"] = self.cdc.stats();
        }
        stats["source"] = json!({
            "backend": self.params.backend.as_str(),
            "database": self.params.database,
        });
        stats["keys"] =
            json!({"enforced": self.keys.is_enforced(), "count": self.keys.key_count()});
        stats["uptimeMs"] = json!(self.started.elapsed().as_millis() as u64);
        stats
    }

    /// Refresh the gauges that depend on the clock (lag, snapshot age), before a scrape.
    pub(crate) fn refresh_clock_gauges(&self) {
        let info = self.lock_info();
        if self.cdc.active() {
            self.metrics
                .replication_lag_seconds
                .set(self.cdc.lag_ms() as f64 / 1000.0);
        } else if let Some(t) = info.data_as_of {
            self.metrics
                .replication_lag_seconds
                .set(t.elapsed().as_secs_f64());
        }
        if let Some(t) = info.published_at {
            self.metrics
                .snapshot_age_seconds
                .set(t.elapsed().as_secs_f64());
        }
    }
}

fn read_manifest(path: &std::path::Path, config: &EngineConfig) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("manifest {} is not a valid manifest", path.display()))?;
    if manifest.version != MANIFEST_VERSION {
        anyhow::bail!(
            "manifest {} has version {}; this engine runs version {MANIFEST_VERSION}: rebuild the database",
            path.display(),
            manifest.version
        );
    }
    if manifest.backend != config.source.backend {
        anyhow::bail!(
            "manifest {} was built for a {} source but the config's source is {}",
            path.display(),
            manifest.backend.as_str(),
            config.source.backend.as_str()
        );
    }
    Ok(manifest)
}

// ------------------------------------------------------------------ change streams

/// A pending `POST /admin/reload`.
pub(crate) type AdminReply = oneshot::Sender<Result<ReloadReport, LoadError>>;

/// What the CDC loop shares with the rest of the engine.
#[derive(Debug, Default)]
pub(crate) struct CdcShared {
    /// Set while a CDC loop runs: admin reloads go through it.
    pub(crate) admin_tx: OnceLock<mpsc::Sender<AdminReply>>,
    status: Mutex<ReplStatus>,
}

/// Replication state shown in `/health`, `/stats` and `/metrics`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplStatus {
    /// What the loop does (`None`: not started, shown as `loading`).
    pub(crate) state: Option<ReplicationState>,
    /// Last batch: first event received → published, ms.
    pub(crate) batch_lag_ms: u64,
    /// While a batch is open: when its first event arrived.
    pub(crate) pending_since: Option<Instant>,
    /// Source commit time of the last published transaction (ms since the epoch).
    pub(crate) last_commit_ms: Option<i64>,
    pub(crate) last_publish: Option<Instant>,
    pub(crate) position: Option<SourcePosition>,
    pub(crate) batches: u64,
    pub(crate) changes: u64,
    pub(crate) reconnects: u64,
    pub(crate) full_loads: u64,
    pub(crate) last_error: Option<String>,
    /// `last_error` is a setup problem of the source (settings, grants, publication, server id)
    /// that retrying does not fix: the control plane fails a deploy on it at once.
    pub(crate) fatal: bool,
    pub(crate) drift: Option<Value>,
    pub(crate) retained_wal_bytes: Option<i64>,
    pub(crate) slot: Option<String>,
    pub(crate) dirty: Vec<String>,
}

impl CdcShared {
    pub(crate) fn status(&self) -> MutexGuard<'_, ReplStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a CDC loop runs.
    pub(crate) fn active(&self) -> bool {
        self.admin_tx.get().is_some()
    }

    /// Data age for `lagMs`: the open batch's age, else 0 (caught up).
    pub(crate) fn lag_ms(&self) -> u64 {
        let s = self.status();
        match s.pending_since {
            Some(t) => t.elapsed().as_millis() as u64,
            None => 0,
        }
    }

    /// The `replication` object of `/health` in CDC modes.
    pub(crate) fn health(&self, mode: SyncMode, paused: bool, interval: u64) -> Replication {
        let lag = self.lag_ms();
        let s = self.status();
        Replication {
            mode: mode.as_str().to_string(),
            state: if paused {
                ReplicationState::Paused
            } else {
                s.state.unwrap_or(ReplicationState::Loading)
            },
            lag_ms: Some(lag),
            last_batch_lag_ms: Some(s.batch_lag_ms),
            paused,
            interval_s: interval,
            retained_wal_bytes: s.retained_wal_bytes,
            last_error: s.last_error.clone(),
            fatal: s.last_error.as_ref().map(|_| s.fatal),
            requested_mode: None,
            note: None,
        }
    }

    /// Extra `/stats` fields in CDC modes.
    pub(crate) fn stats(&self) -> Value {
        let s = self.status();
        json!({
            "position": s.position,
            "lastCommitAt": s.last_commit_ms,
            "lastPublishAgoMs": s.last_publish.map(|t| t.elapsed().as_millis() as u64),
            "batches": s.batches,
            "changes": s.changes,
            "reconnects": s.reconnects,
            "fullLoads": s.full_loads,
            "drift": s.drift,
            "slot": s.slot,
            "dirtyTables": s.dirty,
        })
    }

    pub(crate) fn set_state(&self, state: ReplicationState) {
        self.status().state = Some(state);
    }
}
