//! Backups and point-in-time restore of managed servers.
//!
//! - Storage: [`storage::BackupStorage`] (a directory, [`storage::DirStorage`]; default
//!   `DIR/managed/backups`, 0700), keys `<db>/base/<stamp>/{base.tar,pg_wal.tar,…,manifest.json}`
//!   and `<db>/wal/<segment>`. A backup exists once its `manifest.json` is written (last).
//! - PostgreSQL: a base backup by `pg_basebackup` ([`postgres`]) every `interval` (and on
//!   `POST …/backups`), continuous WAL archiving ([`archive`]) shipped into the storage every
//!   `tick`. Restore: a new database whose first node is the base backup plus the WAL up to
//!   the target second.
//! - MySQL (MariaDB): a base backup by `mariadb-backup` ([`mariadb`]), the primary's closed
//!   binary logs shipped into the storage every `tick` (`<db>/binlog/<origin>/<file>`). Restore:
//!   the prepared backup copied back into the new node, then the binary logs replayed from the
//!   backup's position up to the target second.
//! - Redis: an RDB snapshot (`BGSAVE`, then the `dump.rdb` copied).
//! - Retention: per plan ([`crate::catalog::backup_retention_days`]); older backups and the
//!   archived log only they needed are pruned, the newest backup is always kept.
//!
//! What differs between engines is dispatched in one place per step on [`Recipe`]; everything
//! around it (storage, manifests, schedule, retention, restore plans, validation, events) is
//! shared.

pub mod archive;
pub(crate) mod mariadb;
pub mod postgres;
mod redis;
pub mod storage;
pub mod types;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use crate::api::{CreateDatabaseRequest, CreateDatabaseResponse, DbType, Status};
use crate::engines::Ctx;
use crate::error::ManagedError;
use crate::service::{lock, Caller, ManagedService};
use crate::store::DbRecord;
use storage::{BackupStorage, StorageError};
use types::{BackupInfo, BackupList, BackupRestore, Manifest, RestorePlan, RestoreWindow};

/// A scheduled backup that failed (full storage, server busy) is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// Where a restore keeps the archived log it reads, beside the new server's node directories.
const RESTORE_LOG_DIR: &str = "restore_log";

/// Events returned with a backup list.
const EVENTS_LISTED: usize = 20;

fn storage_err(e: StorageError) -> ManagedError {
    match e {
        StorageError::Full(m) => ManagedError::Conflict(format!(
            "backup storage is full: {m}; free space or raise the limit, then try again"
        )),
        StorageError::NotFound(m) => ManagedError::NotFound(format!("no backup object {m}")),
        StorageError::Io(e) => ManagedError::Internal(e),
    }
}

/// How an engine is backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recipe {
    /// `pg_basebackup` + continuous WAL archiving.
    Postgres,
    /// `mariadb-backup` + binary-log archiving.
    MariaDb,
    /// RDB snapshots, no log.
    Redis,
}

impl Recipe {
    /// The recipe of `t`, or the 422 of an engine without backups.
    fn of(t: DbType) -> Result<Recipe, ManagedError> {
        match t {
            DbType::Postgresql => Ok(Recipe::Postgres),
            DbType::Mysql => Ok(Recipe::MariaDb),
            DbType::Redis => Ok(Recipe::Redis),
            DbType::Mongodb => Err(ManagedError::Unprocessable(format!(
                "backups of {t} servers are not supported yet (postgresql, mysql and redis are)"
            ))),
        }
    }

    /// Whether a restore may target any second: a continuous log is archived.
    fn point_in_time(self) -> bool {
        !matches!(self, Recipe::Redis)
    }

    /// The `kind` of its backups in the API.
    fn kind(self) -> &'static str {
        match self {
            Recipe::Redis => "snapshot",
            Recipe::Postgres | Recipe::MariaDb => "base",
        }
    }

    /// The storage prefix of `db_id`'s archived log.
    fn log_prefix(self, db_id: &str) -> Option<String> {
        match self {
            Recipe::Postgres => Some(format!("{db_id}/wal/")),
            Recipe::MariaDb => Some(mariadb::log_prefix(db_id)),
            Recipe::Redis => None,
        }
    }

    /// Whether a restore of `plan` reads the archived log at all.
    fn replays_log(self, plan: &RestorePlan) -> bool {
        match self {
            // Recovery to the backup's end reads WAL too.
            Recipe::Postgres => true,
            Recipe::MariaDb => plan.target.is_some(),
            Recipe::Redis => false,
        }
    }

    /// Whether a restore from the backup `m` needs the archived log object `rel` (its key past
    /// [`Recipe::log_prefix`]); retention keeps exactly what some kept backup needs.
    fn log_needed(self, m: &Manifest, rel: &str) -> bool {
        match self {
            Recipe::Postgres => {
                let from = m.wal_start.as_deref().and_then(postgres::segment);
                rel.ends_with(".history")
                    || from.is_none()
                    || matches!((postgres::segment(rel), from), (Some(x), Some(f)) if x >= f)
            }
            Recipe::MariaDb => m
                .binlog_start
                .as_ref()
                .is_some_and(|start| mariadb::log_needed(start, rel)),
            Recipe::Redis => false,
        }
    }

    fn info(self, m: &Manifest) -> BackupInfo {
        BackupInfo {
            created_at: m.created_at,
            size_gigabytes: m.size_bytes as f64 / (1u64 << 30) as f64,
            size_bytes: m.size_bytes,
            kind: self.kind().into(),
            version: m.version.clone(),
        }
    }
}

/// Whether a scheduled backup is due: none yet, the newest older than `interval`, or (MariaDB)
/// the newest taken on another binary-log lineage than the primary's now (`lineage`): after a
/// failover the promoted server's binary log cannot extend a backup of the old primary, so a
/// point-in-time restore past the failover needs a backup of the new one at once.
fn backup_due(
    newest: Option<&Manifest>,
    now: DateTime<Utc>,
    interval: Duration,
    lineage: Option<&str>,
) -> bool {
    let Some(m) = newest else {
        return true;
    };
    if let (Some(current), Some(start)) = (lineage, m.binlog_start.as_ref()) {
        if start.origin != current {
            return true;
        }
    }
    (now - m.created_at).to_std().unwrap_or_default() >= interval
}

impl ManagedService {
    fn storage(&self) -> std::sync::Arc<dyn BackupStorage> {
        self.inner.backups.storage.clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn BackupStorage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let s = self.storage();
        tokio::task::spawn_blocking(move || f(s.as_ref()))
            .await
            .map_err(|e| StorageError::Io(anyhow::anyhow!("backup task failed: {e}")))?
    }

    /// Completed backups of `db_id` (manifests), oldest first.
    pub(crate) async fn manifests(&self, db_id: &str) -> Result<Vec<Manifest>, StorageError> {
        let prefix = format!("{db_id}/base/");
        self.blocking(move |s| {
            let mut out = Vec::new();
            for o in s.list(&prefix)? {
                if o.key.ends_with("/manifest.json") {
                    let bytes = s.get_bytes(&o.key)?;
                    match serde_json::from_slice::<Manifest>(&bytes) {
                        Ok(m) => out.push(m),
                        Err(e) => {
                            tracing::warn!(key = %o.key, error = %e, "unreadable backup manifest")
                        }
                    }
                }
            }
            out.sort_by_key(|m| m.created_at);
            Ok(out)
        })
        .await
    }

    /// `GET /api/v1/databases/{id}/backups`.
    pub async fn list_backups(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupList, ManagedError> {
        let d = self.owned_db(caller, id, false).await?;
        let manifests = self.manifests(&d.id).await.map_err(storage_err)?;
        // An engine without backups lists none (its POST answers why).
        let recipe = Recipe::of(d.db_type).ok();
        let restore_window = match (recipe, manifests.first()) {
            (Some(r), Some(first)) if r.point_in_time() => Some(RestoreWindow {
                earliest: first.created_at,
                latest: self.window_latest(&d, r).await,
            }),
            _ => None,
        };
        Ok(BackupList {
            backups: recipe
                .map(|r| manifests.iter().map(|m| r.info(m)).collect())
                .unwrap_or_default(),
            restore_window,
            in_progress_since: lock(&self.inner.backups.running).get(&d.id).copied(),
            events: self.inner.backups.events_of(&d.id, EVENTS_LISTED),
        })
    }

    /// The latest second a point-in-time restore of `d` may target: now while it runs (a restore
    /// archives its log first), else when its last WAL segment or binary log was archived.
    async fn window_latest(&self, d: &DbRecord, recipe: Recipe) -> DateTime<Utc> {
        let Some(prefix) = recipe.log_prefix(&d.id) else {
            return Utc::now();
        };
        if d.status == Status::Running {
            return Utc::now();
        }
        self.blocking(move |s| s.list(&prefix))
            .await
            .ok()
            .and_then(|objs| objs.iter().map(|o| o.modified).max())
            .unwrap_or_else(Utc::now)
    }

    /// The caller's database `id` (404 for others'); `running` requires it to run (409).
    async fn owned_db(
        &self,
        caller: &Caller,
        id: &str,
        write: bool,
    ) -> Result<DbRecord, ManagedError> {
        if write {
            caller.need_write()?;
        } else {
            caller.need_read()?;
        }
        let key = id.to_string();
        match self.db(move |s| Ok(s.get_database(&key)?)).await? {
            Some(d) if d.customer_id == caller.customer => Ok(d),
            _ => Err(ManagedError::no_database(id)),
        }
    }

    /// `POST /api/v1/databases/{id}/backups`: takes a backup now and answers it (201).
    pub async fn create_backup(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupInfo, ManagedError> {
        let d = self.owned_db(caller, id, true).await?;
        // Backups run local tools against a local server (CloudNativePG's own backups are not
        // wired): refused rather than attempted.
        self.refuse_on_platform("backups")?;
        let recipe = Recipe::of(d.db_type)?;
        if d.status != Status::Running {
            return Err(ManagedError::Conflict(format!(
                "database {} is {}; a backup needs it running",
                d.id,
                d.status.as_str()
            )));
        }
        let m = self.take_backup(&d).await?;
        Ok(recipe.info(&m))
    }

    /// Takes one backup of `d` (one at a time per database: 409 while another runs).
    pub(crate) async fn take_backup(&self, d: &DbRecord) -> Result<Manifest, ManagedError> {
        {
            let mut running = lock(&self.inner.backups.running);
            if running.contains_key(&d.id) {
                return Err(ManagedError::Conflict(format!(
                    "a backup of {} is already running",
                    d.id
                )));
            }
            running.insert(d.id.clone(), Utc::now());
        }
        let events = &self.inner.backups;
        events.event(&d.id, "backup_started", "backup started".into());
        let result = self.take_backup_inner(d).await;
        match &result {
            Ok(m) => events.event(
                &d.id,
                "backup_completed",
                format!(
                    "backup {} completed ({} bytes)",
                    m.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    m.size_bytes
                ),
            ),
            Err(e) => events.event(&d.id, "backup_failed", format!("backup failed: {e}")),
        }
        // Only now: a list that shows no backup in progress shows its outcome's event.
        lock(&self.inner.backups.running).remove(&d.id);
        result
    }

    async fn take_backup_inner(&self, d: &DbRecord) -> Result<Manifest, ManagedError> {
        let recipe = Recipe::of(d.db_type)?;
        let ctx = self.ctx(d)?;
        let staging = ctx.db_dir.join("backup-staging");
        if recipe.point_in_time() {
            // Ship what is archived first: a restore of this backup may need it.
            self.ship_log(&ctx).await;
        }
        let (files, wal_start, binlog_start) = match recipe {
            Recipe::Postgres => {
                let wal = postgres::current_wal(&ctx)
                    .await
                    .map_err(ManagedError::Internal)?;
                let files = postgres::base_backup(&ctx, &staging)
                    .await
                    .map_err(ManagedError::Internal)?;
                (files, Some(wal), None)
            }
            Recipe::MariaDb => {
                let (files, start) = mariadb::base_backup(&ctx, &staging)
                    .await
                    .map_err(ManagedError::Internal)?;
                (files, None, Some(start))
            }
            Recipe::Redis => {
                let files = redis::snapshot(&ctx, &staging)
                    .await
                    .map_err(ManagedError::Internal)?;
                (files, None, None)
            }
        };
        // The backup holds every commit up to its end: the next whole second.
        let now = Utc::now();
        let created_at = DateTime::<Utc>::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
        // Wait out the second the backup claims, so that a restore to it holds everything.
        let wait = (created_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let prefix = format!("{}/base/{}/", d.id, postgres::stamp(&created_at));
        let mut manifest = Manifest {
            db_id: d.id.clone(),
            db_type: d.db_type.to_string(),
            version: d.version.clone(),
            database: ctx.database(),
            created_at,
            wal_start,
            binlog_start,
            files: files.clone(),
            size_bytes: 0,
        };
        let stage = staging.clone();
        let pfx = prefix.clone();
        let stored = self
            .blocking(move |s| {
                let mut size = 0;
                for f in &manifest.files {
                    match s.put(&format!("{pfx}{f}"), &stage.join(f)) {
                        Ok(n) => size += n,
                        Err(e) => {
                            for f in &manifest.files {
                                let _ = s.delete(&format!("{pfx}{f}"));
                            }
                            return Err(e);
                        }
                    }
                }
                manifest.size_bytes = size;
                let bytes =
                    serde_json::to_vec_pretty(&manifest).map_err(|e| StorageError::Io(e.into()))?;
                if let Err(e) = s.put_bytes(&format!("{pfx}manifest.json"), &bytes) {
                    for f in &manifest.files {
                        let _ = s.delete(&format!("{pfx}{f}"));
                    }
                    return Err(e);
                }
                Ok(manifest)
            })
            .await;
        let _ = crate::os::remove_dir(&staging);
        stored.map_err(storage_err)
    }

    /// Ships the server's archived log into the backup storage (PostgreSQL WAL, MariaDB binary
    /// logs); a failure is an event, and the next tick tries again.
    pub(crate) async fn ship_log(&self, ctx: &Ctx) {
        let (kind, result) = match Recipe::of(ctx.db.db_type) {
            Ok(Recipe::Postgres) => ("wal_archive_failed", self.ship_wal(ctx).await),
            Ok(Recipe::MariaDb) => ("binlog_archive_failed", self.ship_binlogs(ctx, false).await),
            Ok(Recipe::Redis) | Err(_) => return,
        };
        if let Err(e) = result {
            self.inner.backups.event(
                &ctx.db.id,
                kind,
                format!("shipping the archived log into the backup storage failed: {e:#}"),
            );
        }
    }

    /// Moves the WAL segments the server archived into the backup storage.
    async fn ship_wal(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let _one_at_a_time = self.inner.backups.log_shipping.lock().await;
        let dir = archive::archive_dir(ctx);
        let id = ctx.db.id.clone();
        self.blocking(move |s| {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(0);
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.ends_with(".part"))
                .collect();
            names.sort();
            let n = names.len();
            for name in names {
                let path = dir.join(&name);
                s.put(&format!("{id}/wal/{name}"), &path)?;
                let _ = std::fs::remove_file(&path);
            }
            Ok(n)
        })
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Removes backups older than the plan's retention (the newest is always kept) and the
    /// archived log that no kept backup needs.
    async fn prune(&self, d: &DbRecord) -> Result<(), StorageError> {
        let Ok(recipe) = Recipe::of(d.db_type) else {
            return Ok(());
        };
        // A backup being taken needs the log from its start on, which no manifest says yet.
        if lock(&self.inner.backups.running).contains_key(&d.id) {
            return Ok(());
        }
        let manifests = self.manifests(&d.id).await?;
        let days = crate::catalog::backup_retention_days(&d.plan_id);
        let cutoff = Utc::now() - TimeDelta::days(days as i64);
        let keep_from = manifests
            .iter()
            .position(|m| m.created_at >= cutoff)
            .unwrap_or(manifests.len().saturating_sub(1));
        let (old, kept) = manifests.split_at(keep_from);
        let (old, kept) = (old.to_vec(), kept.to_vec());
        let id = d.id.clone();
        let log_prefix = recipe.log_prefix(&d.id).filter(|_| !kept.is_empty());
        let removed = self
            .blocking(move |s| {
                let mut removed = 0;
                for m in &old {
                    let pfx = format!("{id}/base/{}/", postgres::stamp(&m.created_at));
                    for o in s.list(&pfx)? {
                        s.delete(&o.key)?;
                    }
                    removed += 1;
                }
                if let Some(prefix) = log_prefix {
                    for o in s.list(&prefix)? {
                        let rel = &o.key[prefix.len()..];
                        if !kept.iter().any(|m| recipe.log_needed(m, rel)) {
                            s.delete(&o.key)?;
                        }
                    }
                }
                Ok(removed)
            })
            .await?;
        if removed > 0 {
            self.inner.backups.event(
                &d.id,
                "backups_pruned",
                format!("{removed} backup(s) older than the plan's {days}-day retention removed"),
            );
        }
        Ok(())
    }

    /// Runs the backup scheduler until `cancel` fires: every `tick`, ships WAL, takes the
    /// backups that are due and prunes.
    pub(crate) fn spawn_backups(&self, cancel: CancellationToken) {
        if !self.inner.backups.config.scheduled {
            return;
        }
        if let Some(rt) = self.platform() {
            tracing::info!(
                runtime = rt.name(),
                "scheduled backups of managed servers are off: not supported on this runtime yet"
            );
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                service.backup_pass().await;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(service.inner.backups.config.tick) => {}
                }
            }
        });
    }

    async fn backup_pass(&self) {
        let Ok(dbs) = self.db(|s| Ok(s.list_active()?)).await else {
            return;
        };
        let interval = self.inner.backups.config.interval;
        for d in dbs {
            let Ok(recipe) = Recipe::of(d.db_type) else {
                continue;
            };
            if d.status != Status::Running {
                continue;
            }
            if lock(&self.inner.backups.running).contains_key(&d.id) {
                continue;
            }
            let service = self.clone();
            tokio::spawn(async move {
                if recipe.point_in_time() {
                    if let Ok(ctx) = service.ctx(&d) {
                        service.ship_log(&ctx).await;
                    }
                }
                let newest = match service.manifests(&d.id).await {
                    Ok(m) => m.last().cloned(),
                    Err(_) => return,
                };
                let lineage = match recipe {
                    Recipe::MariaDb => service
                        .ctx(&d)
                        .ok()
                        .and_then(|ctx| mariadb::origin(&ctx).ok()),
                    Recipe::Postgres | Recipe::Redis => None,
                };
                let due = backup_due(newest.as_ref(), Utc::now(), interval, lineage.as_deref());
                let failed_lately = lock(&service.inner.backups.failed)
                    .get(&d.id)
                    .is_some_and(|t| t.elapsed() < RETRY_AFTER);
                // A primary that does not answer (restarting, failing over) is the reconciler's
                // business: the backup waits for the next tick rather than failing and pausing.
                let answers = || async {
                    match service.ctx(&d) {
                        Ok(ctx) => crate::engines::check_login(&ctx).await.is_ok(),
                        Err(_) => false,
                    }
                };
                if due && !failed_lately && answers().await {
                    let failed = service.take_backup(&d).await.is_err();
                    let mut map = lock(&service.inner.backups.failed);
                    if failed {
                        map.insert(d.id.clone(), std::time::Instant::now());
                    } else {
                        map.remove(&d.id);
                    }
                }
                if let Err(e) = service.prune(&d).await {
                    tracing::warn!(db = %d.id, error = %e, "pruning backups failed");
                }
            });
        }
    }

    // ------------------------------------------------------------------ restore

    /// `POST /api/v1/databases` with `backup_restore`: validates the source and the target,
    /// then creates the database with a restore plan its first node is built from.
    pub(crate) async fn create_restored(
        &self,
        caller: &Caller,
        mut req: CreateDatabaseRequest,
    ) -> Result<CreateDatabaseResponse, ManagedError> {
        caller.need_write()?;
        let Some(br) = req.backup_restore.take() else {
            return self.create_database(caller, req).await;
        };
        self.refuse_on_platform("restoring a backup")?;
        let plan = match self.plan_restore(caller, &req, &br).await {
            Ok(p) => p,
            Err(e) => {
                // An event on the source when the caller may see it; never on another's.
                if !matches!(e, ManagedError::NotFound(_) | ManagedError::Invalid(_)) {
                    if let Ok(src) = self.find_source(caller, &br.database_name).await {
                        self.inner.backups.event(
                            &src.id,
                            "restore_refused",
                            format!("restore refused: {e}"),
                        );
                    }
                }
                return Err(e);
            }
        };
        // A MySQL database's version is the MariaDB that runs it ("MariaDB 10.11"), not a
        // version one may ask for ("8.0"): the default resolves to the installed server, and
        // the check below compares what runs.
        if req.version.is_none() && plan.manifest.db_type != DbType::Mysql.to_string() {
            req.version = Some(serde_json::Value::String(plan.manifest.version.clone()));
        }
        let dir = self.inner.backups.restores_dir.clone();
        let written = std::sync::Mutex::new(None);
        let p = plan.clone();
        let resp = self
            .create_database_with(caller, req, |record| {
                if record.version != p.manifest.version {
                    return Err(ManagedError::Unprocessable(format!(
                        "the backup is of version {}; a restore runs the same version (omit version)",
                        p.manifest.version
                    )));
                }
                let path = dir.join(format!("{}.json", record.id));
                let bytes = serde_json::to_vec(&p).map_err(|e| ManagedError::Internal(e.into()))?;
                std::fs::write(&path, bytes)
                    .map_err(|e| ManagedError::Internal(anyhow::Error::new(e).context("write the restore plan")))?;
                *lock(&written) = Some(path);
                Ok(())
            })
            .await;
        match &resp {
            Ok(r) => {
                let what = match plan.target {
                    Some(t) => format!(
                        "to {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => format!(
                        "from backup {}",
                        plan.manifest
                            .created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                };
                let msg = format!("restore of {} {what} requested as {}", plan.source_id, r.id);
                self.inner
                    .backups
                    .event(&r.id, "restore_requested", msg.clone());
                self.inner
                    .backups
                    .event(&plan.source_id, "restore_requested", msg);
            }
            Err(_) => {
                if let Some(p) = lock(&written).take() {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        resp
    }

    async fn find_source(&self, caller: &Caller, name: &str) -> Result<DbRecord, ManagedError> {
        let customer = caller.customer.clone();
        let dbs = self.db(move |s| Ok(s.list_databases(&customer)?)).await?;
        dbs.iter()
            .find(|d| d.id == name)
            .or_else(|| {
                dbs.iter()
                    .find(|d| d.name == name && d.status != Status::Destroyed)
            })
            .cloned()
            .ok_or_else(|| ManagedError::NotFound(format!("source database {name:?} not found")))
    }

    async fn plan_restore(
        &self,
        caller: &Caller,
        req: &CreateDatabaseRequest,
        br: &BackupRestore,
    ) -> Result<RestorePlan, ManagedError> {
        let parse = |field: &str, s: &str| {
            DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ManagedError::invalid(format!(
                        "backup_restore.{field} must be an RFC 3339 time such as 2026-12-04T20:01:02Z"
                    ))
                })
        };
        let created = br
            .backup_created_at
            .as_deref()
            .map(|s| parse("backup_created_at", s))
            .transpose()?;
        let target = br
            .restore_to
            .as_deref()
            .map(|s| parse("restore_to", s))
            .transpose()?;
        if created.is_some() && target.is_some() {
            return Err(ManagedError::invalid(
                "give backup_restore.backup_created_at or backup_restore.restore_to, not both",
            ));
        }
        let src = self.find_source(caller, &br.database_name).await?;
        if src.db_type.to_string() != req.db_type {
            return Err(ManagedError::Unprocessable(format!(
                "{} is a {} database; a restore creates the same db_type",
                src.id, src.db_type
            )));
        }
        let recipe = Recipe::of(src.db_type).map_err(|e| match e {
            ManagedError::Unprocessable(m) => {
                ManagedError::Unprocessable(format!("{m}, so {} cannot be restored", src.id))
            }
            e => e,
        })?;
        if target.is_some() && !recipe.point_in_time() {
            return Err(ManagedError::Unprocessable(format!(
                "restore_to (point-in-time restore) is supported for postgresql and mysql; {} restores from a backup_created_at",
                src.db_type
            )));
        }
        let manifests = self.manifests(&src.id).await.map_err(storage_err)?;
        let listed = format!("GET /api/v1/databases/{}/backups lists them", src.id);
        let Some(first) = manifests.first() else {
            return Err(ManagedError::Conflict(format!(
                "{} has no completed backup yet; take one with POST /api/v1/databases/{}/backups",
                src.id, src.id
            )));
        };
        let fmt = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let manifest = if let Some(t) = target {
            let latest = self.window_latest(&src, recipe).await;
            if t < first.created_at || t > latest {
                return Err(ManagedError::Unprocessable(format!(
                    "restore_to {} is outside the restore window of {}: {} to {}",
                    fmt(&t),
                    src.id,
                    fmt(&first.created_at),
                    fmt(&latest)
                )));
            }
            manifests
                .iter()
                .rev()
                .find(|m| m.created_at <= t)
                .cloned()
                .unwrap_or_else(|| first.clone())
        } else if let Some(c) = created {
            manifests
                .iter()
                .find(|m| m.created_at == c)
                .cloned()
                .ok_or_else(|| {
                    ManagedError::NotFound(format!(
                        "{} has no backup created at {}; {listed}",
                        src.id,
                        fmt(&c)
                    ))
                })?
        } else {
            manifests.last().cloned().unwrap_or_else(|| first.clone())
        };
        if let (Some(_), Status::Running) = (target, src.status) {
            self.seal(&src, recipe).await?;
        }
        if let Some(t) = target {
            self.check_lineage_reaches(&src, &manifest, t).await?;
        }
        Ok(RestorePlan {
            source_id: src.id.clone(),
            prefix: format!("{}/base/{}/", src.id, postgres::stamp(&manifest.created_at)),
            manifest,
            target,
        })
    }

    /// MariaDB: a point-in-time restore replays the binary log of the server its backup was taken
    /// on. When that is not the running primary (a failover since, or the source is not
    /// running), its archived log ends where it was last shipped, and the file being written then
    /// never was: a target past that would silently miss what was committed before it.
    async fn check_lineage_reaches(
        &self,
        src: &DbRecord,
        backup: &Manifest,
        target: DateTime<Utc>,
    ) -> Result<(), ManagedError> {
        let Some(start) = backup.binlog_start.as_ref() else {
            return Ok(());
        };
        if src.status == Status::Running {
            let ctx = self.ctx(src)?;
            if mariadb::origin(&ctx).ok().as_deref() == Some(start.origin.as_str()) {
                return Ok(());
            }
        }
        let prefix = format!("{}{}/", mariadb::log_prefix(&src.id), start.origin);
        let shipped = self
            .blocking(move |s| s.list(&prefix))
            .await
            .map_err(storage_err)?;
        // A file closed by the server itself is shipped up to one tick later than it closed.
        let tick = TimeDelta::from_std(self.inner.backups.config.tick).unwrap_or_default();
        let reaches = shipped
            .iter()
            .map(|o| o.modified)
            .max()
            .map(|t| t - tick)
            .unwrap_or(backup.created_at);
        if target > reaches {
            return Err(ManagedError::Unprocessable(format!(
                "restore_to {} is past the archived binary log of the server the backup before it was taken on (it is not {}'s running primary; that log reaches {}): pick an earlier second, or a later one once a backup of the current primary is listed",
                target.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                src.id,
                reaches.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        Ok(())
    }

    /// Puts every commit of the running `src` up to now into the storage, before a
    /// point-in-time restore reads it: PostgreSQL commits an empty transaction (recovery needs
    /// a commit past its target), switches and archives the WAL file; MariaDB rotates its
    /// binary log. Then the log is shipped.
    async fn seal(&self, src: &DbRecord, recipe: Recipe) -> Result<(), ManagedError> {
        let ctx = self.ctx(src)?;
        let shipped = if recipe == Recipe::MariaDb {
            self.ship_binlogs(&ctx, true).await
        } else {
            let wal = postgres::seal(&ctx).await.map_err(ManagedError::Internal)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                match postgres::archived(&ctx, &wal).await {
                    Ok(true) => break,
                    _ if std::time::Instant::now() >= deadline => {
                        return Err(ManagedError::Conflict(format!(
                            "{} did not archive its WAL within 60 s; try again",
                            src.id
                        )))
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            self.ship_wal(&ctx).await
        };
        shipped.map_err(|e| {
            ManagedError::Conflict(format!(
                "{} could not put its latest log into the backup storage ({e:#}); try again",
                src.id
            ))
        })
    }

    fn restore_plan(&self, id: &str) -> Option<RestorePlan> {
        let path = self.inner.backups.restores_dir.join(format!("{id}.json"));
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Creates node `node`'s data directory: from the restore plan for a restored database's
    /// primary, else as the engine does.
    pub(crate) async fn prepare_node(&self, ctx: &Ctx, node: usize) -> anyhow::Result<()> {
        let plan = if node == 0 {
            self.restore_plan(&ctx.db.id)
        } else {
            None
        };
        let Some(plan) = plan else {
            return crate::engines::prepare(ctx, node).await;
        };
        let result = self.prepare_restore(ctx, &plan).await;
        if let Err(e) = &result {
            self.inner.backups.event(
                &ctx.db.id,
                "restore_failed",
                format!("restore failed: {e:#}"),
            );
        }
        result
    }

    async fn prepare_restore(&self, ctx: &Ctx, plan: &RestorePlan) -> anyhow::Result<()> {
        crate::os::create_owned_dir(&ctx.db_dir, &ctx.user)?;
        let staging = ctx.db_dir.join("restore-staging");
        let log = ctx.db_dir.join(RESTORE_LOG_DIR);
        for d in [&staging, &log] {
            crate::os::remove_dir(d)?;
            crate::os::create_owned_dir(d, &ctx.user)?;
        }
        // Copy the backup's files and the archived log it may need next to the new server.
        let recipe = Recipe::of(ctx.db.db_type)?;
        let (p, st, w, user) = (plan.clone(), staging.clone(), log.clone(), ctx.user.clone());
        let log_prefix = recipe
            .log_prefix(&plan.source_id)
            .filter(|_| recipe.replays_log(plan));
        self.blocking(move |s| {
            let give = |path: &std::path::Path| {
                crate::os::give(path, &user).map_err(|e| StorageError::Io(e.into()))
            };
            for f in &p.manifest.files {
                let to = st.join(f);
                s.get(&format!("{}{f}", p.prefix), &to)?;
                give(&to)?;
            }
            if let Some(prefix) = log_prefix {
                for o in s.list(&prefix)? {
                    let rel = &o.key[prefix.len()..];
                    if recipe.log_needed(&p.manifest, rel) {
                        // One lineage at most (MariaDB): the file name alone is unique.
                        let to = w.join(rel.rsplit('/').next().unwrap_or(rel));
                        s.get(&o.key, &to)?;
                        give(&to)?;
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("copy the backup: {e}"))?;
        match recipe {
            Recipe::Postgres => {
                let cmds = postgres::prepare_restore(ctx, plan, &staging, &log)?;
                for (program, args) in cmds {
                    ctx.run(&program, &args, &[], None).await?;
                }
                postgres::finish_prepare(ctx)?;
            }
            Recipe::MariaDb => mariadb::prepare_restore(ctx, &staging).await?,
            Recipe::Redis => redis::prepare_restore(ctx, &staging)?,
        }
        crate::os::remove_dir(&staging)?;
        Ok(())
    }

    /// After the first start of node `node`: a restored primary finishes its restore; every
    /// other node bootstraps as the engine does.
    pub(crate) async fn bootstrap_node(&self, ctx: &Ctx, node: usize) -> anyhow::Result<()> {
        let plan = if node == 0 {
            self.restore_plan(&ctx.db.id)
        } else {
            None
        };
        let Some(plan) = plan else {
            return crate::engines::bootstrap(ctx, node).await;
        };
        let started = std::time::Instant::now();
        let result = match Recipe::of(ctx.db.db_type)? {
            Recipe::Postgres => {
                postgres::finish_restore(
                    ctx,
                    &plan,
                    self.inner.config.start_timeout,
                    self.inner.driver.as_ref(),
                )
                .await
            }
            Recipe::MariaDb => {
                mariadb::finish_restore(ctx, &plan, &ctx.db_dir.join(RESTORE_LOG_DIR)).await
            }
            Recipe::Redis => Ok(()),
        };
        match &result {
            Ok(()) => {
                let _ = crate::os::remove_dir(&ctx.db_dir.join(RESTORE_LOG_DIR));
                let _ = std::fs::remove_file(
                    self.inner
                        .backups
                        .restores_dir
                        .join(format!("{}.json", ctx.db.id)),
                );
                self.inner.backups.event(
                    &ctx.db.id,
                    "restore_completed",
                    format!(
                        "restored from {} (recovery took {:.1} s)",
                        plan.source_id,
                        started.elapsed().as_secs_f64()
                    ),
                );
            }
            Err(e) => self.inner.backups.event(
                &ctx.db.id,
                "restore_failed",
                format!("restore failed: {e:#}"),
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_but_mongodb_backs_up_and_the_logged_ones_restore_to_a_second() {
        assert_eq!(Recipe::of(DbType::Mysql).unwrap(), Recipe::MariaDb);
        assert!(Recipe::of(DbType::Mysql).unwrap().point_in_time());
        assert!(Recipe::of(DbType::Postgresql).unwrap().point_in_time());
        assert!(!Recipe::of(DbType::Redis).unwrap().point_in_time());
        match Recipe::of(DbType::Mongodb) {
            Err(ManagedError::Unprocessable(m)) => assert!(m.contains("not supported yet"), "{m}"),
            other => panic!("mongodb: {other:?}"),
        }
    }

    fn manifest(wal: Option<&str>, binlog: Option<(&str, &str)>) -> Manifest {
        Manifest {
            db_id: "db_x".into(),
            db_type: "postgresql".into(),
            version: "15".into(),
            database: "d".into(),
            created_at: Utc::now(),
            wal_start: wal.map(str::to_string),
            binlog_start: binlog.map(|(origin, file)| types::BinlogStart {
                origin: origin.into(),
                file: file.into(),
                position: 4,
                gtid: String::new(),
            }),
            files: vec![],
            size_bytes: 0,
        }
    }

    #[test]
    fn a_backup_is_due_after_the_interval_or_on_a_new_binlog_lineage() {
        let day = Duration::from_secs(24 * 3600);
        let now = Utc::now();
        assert!(backup_due(None, now, day, None));
        let fresh = manifest(None, Some(("o1", "binlog.000002")));
        assert!(!backup_due(Some(&fresh), now, day, Some("o1")));
        assert!(
            backup_due(Some(&fresh), now, day, Some("o2")),
            "a failover's new primary"
        );
        assert!(backup_due(
            Some(&fresh),
            now + TimeDelta::hours(25),
            day,
            Some("o1")
        ));
        let pg = manifest(Some("000000010000000000000005"), None);
        assert!(!backup_due(Some(&pg), now, day, None));
    }

    #[test]
    fn retention_keeps_the_log_a_kept_backup_needs() {
        let m = manifest;
        let pg = m(Some("000000010000000000000005"), None);
        assert!(Recipe::Postgres.log_needed(&pg, "000000020000000000000005"));
        assert!(!Recipe::Postgres.log_needed(&pg, "000000010000000000000004"));
        assert!(Recipe::Postgres.log_needed(&pg, "00000002.history"));
        let my = m(None, Some(("o1", "binlog.000002")));
        assert!(Recipe::MariaDb.log_needed(&my, "o1/binlog.000002"));
        assert!(!Recipe::MariaDb.log_needed(&my, "o1/binlog.000001"));
        assert!(!Recipe::MariaDb.log_needed(&my, "o2/binlog.000005"));
    }
}
