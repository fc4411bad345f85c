//! Request and response types of backups and restores (kept apart from the logic so that
//! `api.rs` can name [`BackupRestore`] without depending on the service).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `backup_restore` of `POST /api/v1/databases` (DigitalOcean's shape, plus `restore_to`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRestore {
    /// The source database: its name (in the caller's databases) or its id (`db_…`).
    pub database_name: String,
    /// Restore this backup (its `created_at`, as listed by `GET …/backups`). Default: the newest.
    #[serde(default)]
    pub backup_created_at: Option<String>,
    /// PostgreSQL and MySQL (MariaDB): restore the state at this second (RFC 3339, e.g. `2026-12-04T20:01:02Z`):
    /// exactly the transactions committed before it. Anywhere in the restore window.
    #[serde(default)]
    pub restore_to: Option<String>,
}

/// One completed backup.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupInfo {
    /// When the backup finished (restoring it gives the state of that second).
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Its size in GiB (DigitalOcean's field).
    pub size_gigabytes: f64,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// `base` (PostgreSQL `pg_basebackup`, MariaDB `mariadb-backup`) or `snapshot` (Redis RDB).
    pub kind: String,
    /// The engine version it was taken from.
    pub version: String,
}

/// The range of seconds a point-in-time restore may target.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RestoreWindow {
    /// The oldest backup's `created_at`.
    #[serde(serialize_with = "rfc3339")]
    pub earliest: DateTime<Utc>,
    /// Now for a running server (its WAL is archived on request); else the last archived WAL.
    #[serde(serialize_with = "rfc3339")]
    pub latest: DateTime<Utc>,
}

/// `GET /api/v1/databases/{id}/backups`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupList {
    /// Completed backups, oldest first.
    pub backups: Vec<BackupInfo>,
    /// PostgreSQL and MySQL: where `restore_to` may point (absent without a backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_window: Option<RestoreWindow>,
    /// When the backup in progress started (absent when none runs).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_time")]
    pub in_progress_since: Option<DateTime<Utc>>,
    /// The latest backup events of this database (failures included).
    pub events: Vec<BackupEvent>,
}

/// `2024-01-15T10:30:00Z`, as every time of the API.
fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One backup event (`GET …/backups` returns the latest ones; also logged).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BackupEvent {
    /// When.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The database it concerns.
    pub database_id: String,
    /// `backup_started`, `backup_completed`, `backup_failed`, `wal_archive_failed`, `binlog_archive_failed`,
    /// `backups_pruned`, `restore_requested`, `restore_refused`, `restore_completed`, `restore_failed`.
    pub kind: String,
    /// What happened, in a sentence.
    pub message: String,
}

fn opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// What a stored backup says about itself (`<db>/base/<stamp>/manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The database backed up.
    pub db_id: String,
    /// Its engine (`postgresql`, `mysql`, `redis`).
    pub db_type: String,
    /// Its version.
    pub version: String,
    /// The application database's name in it (PostgreSQL, MySQL).
    pub database: String,
    /// When the backup finished.
    pub created_at: DateTime<Utc>,
    /// The first WAL segment a restore needs (PostgreSQL).
    #[serde(default)]
    pub wal_start: Option<String>,
    /// Where the binary log stood at the backup's consistent point (MariaDB,
    /// `xtrabackup_binlog_info`): a point-in-time restore replays the archived binary log from
    /// there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_start: Option<BinlogStart>,
    /// Files of the backup (beside the manifest).
    pub files: Vec<String>,
    /// Their total size.
    pub size_bytes: u64,
}

/// A MariaDB backup's binary-log position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogStart {
    /// The lineage of the primary's binary log the file belongs to (its key part in the storage,
    /// `<db>/binlog/<origin>/<file>`): a promoted standby writes files of the same names, so each
    /// server's files are kept apart.
    pub origin: String,
    /// The binary log file (`binlog.000003`).
    pub file: String,
    /// The position in it where the backup's data ends.
    pub position: u64,
    /// The GTID position at that point (`0-1-45`; empty when nothing was logged yet).
    pub gtid: String,
}

/// A restore in progress: written before the new database exists, removed once it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The source database.
    pub source_id: String,
    /// The base backup's key prefix (`<src>/base/<stamp>/`).
    pub prefix: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// The target second, for a point-in-time restore.
    pub target: Option<DateTime<Utc>>,
}

/// The active binary log of a primary as last seen by the archiver: rotated by it when it holds
/// writes (its size grew past `size_at_open`) and was opened at least
/// `mariadb::ROTATE_AFTER` ago.
#[derive(Debug, Clone)]
pub struct ActiveBinlog {
    pub(crate) file: String,
    /// Its size right after Refract rotated to it; 0 when Refract did not (so any content counts).
    pub(crate) size_at_open: u64,
    pub(crate) seen_since: std::time::Instant,
}
