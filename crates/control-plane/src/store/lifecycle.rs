//! What the lifecycle stores beside the `databases` row: builds, instances, the event log, query
//! keys and the operation in flight ([`OpsRecord`]).
//!
//! # What do we store?
//!
//! - **builds** ([`BuildRecord`]): one per provision or rebuild; the schema manifest JSON is the
//!   artifact (`deployable` = it exists), with the build log and timings.
//! - **instances** ([`InstanceRecord`]): one per engine that became healthy; the row is "live"
//!   until `stopped_at`. The newest live row gives a database its `endpointUrl`. An engine that is
//!   still starting is only in the operation record (`OpData::new_instance`), so the endpoint moves
//!   only once the new engine is healthy.
//! - **events** ([`EventRecord`]): every status transition, with cause and message.
//! - **query_keys** ([`QueryKeyRecord`]): `rxk_` keys, only the SHA-256 of the secret.
//! - **database_ops** ([`OpsRecord`]): the parameters of the operation in flight, the crash
//!   history, instances left to clean up, the last schedule event fired, and the database's
//!   engine port (its stable endpoint, assigned once). Every step of an
//!   operation is written here (and in the row's `op_*` columns) *before* it is taken.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::StoreResult;
use crate::api::{HealthStatus, RuntimeSettings, Status};
use crate::store::DatabaseRow;

/// One row of the event log.
#[derive(Debug, Clone)]
pub struct Event {
    /// The database.
    pub database_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// Previous status (`None` on registration).
    pub from_status: Option<Status>,
    /// New status.
    pub to_status: Status,
    /// `user`, `schedule`, `crash` or `reconciler`.
    pub cause: String,
    /// Free text.
    pub message: String,
}

/// Status of a build (a wire type; `as_str`/`parse` are also its storage spelling).
pub use refract_api::BuildStatus;

/// One build of a database.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    /// Build id.
    pub id: Uuid,
    /// The database.
    pub database_id: Uuid,
    /// Status.
    pub status: BuildStatus,
    /// Whether the manifest artifact exists (the manifest itself is read with
    /// [`LifecycleTx::build_manifest`]).
    pub has_manifest: bool,
    /// The `reflexdb.yaml` the build applied.
    pub schema_config: Option<String>,
    /// Sync mode the engine runs with (`poll` after a CDC readiness fallback).
    pub sync_mode_used: Option<String>,
    /// Build compute tier.
    pub compute_type_used: Option<String>,
    /// Build log text.
    pub log: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation (queued) time.
    pub created_at: DateTime<Utc>,
    /// When building started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it succeeded or failed.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One engine instance that became healthy (live until `stopped_at`).
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    /// Instance id (also the runtime driver's id).
    pub id: Uuid,
    /// The database.
    pub database_id: Uuid,
    /// The build it runs.
    pub build_id: Uuid,
    /// The driver's handle.
    pub runtime_id: String,
    /// Base URL clients use: the database's stable engine port (see `OpsRecord::engine_port`).
    pub endpoint_url: Option<String>,
    /// The engine's private base URL for the control plane (`/health`, `/stats`, `/admin/*`);
    /// `None` for engines started before stable endpoints (then `endpoint_url` is both).
    pub control_url: Option<String>,
    /// Last health check result.
    pub health_status: Option<HealthStatus>,
    /// Age of the engine's snapshot at the last check.
    pub snapshot_age_ms: Option<i64>,
    /// Snapshot swaps so far.
    pub swap_count: Option<i64>,
    /// Rows per table.
    pub row_counts: Option<serde_json::Value>,
    /// When the health poller last looked.
    pub last_health_check: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was stopped (or replaced).
    pub stopped_at: Option<DateTime<Utc>>,
    /// The change loop at the last check.
    pub replication: Option<refract_api::ReplicationView>,
}

impl InstanceRecord {
    /// The URL the control plane calls this engine at (its private control address).
    pub fn control(&self) -> Option<&str> {
        self.control_url.as_deref().or(self.endpoint_url.as_deref())
    }
}

/// A query key (`rxk_<keyId>.<secret>`) of a database.
#[derive(Debug, Clone)]
pub struct QueryKeyRecord {
    /// Record id.
    pub id: Uuid,
    /// The database.
    pub database_id: Uuid,
    /// Public key id.
    pub key_id: String,
    /// SHA-256 (hex) of the secret.
    pub secret_sha256: String,
    /// Display name.
    pub name: String,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One stored event with its id.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Increasing id.
    pub id: i64,
    /// The event.
    pub event: Event,
}

pub use super::rows::OpKind;

/// The operation in flight: everything needed to take its next step, or to roll it back, after a
/// control-plane restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpData {
    /// Changes whenever an operation (or a new deploy attempt) starts: a step only commits its
    /// result when the id it started with is still current.
    pub id: Uuid,
    /// What it does.
    pub kind: OpKind,
    /// `user`, `schedule`, `crash` or `reconciler`.
    pub cause: String,
    /// Status before the operation (where a failed rebuild returns).
    pub origin: Status,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The build being built or deployed.
    #[serde(default)]
    pub build_id: Option<Uuid>,
    /// The engine being started (recorded before it is started).
    #[serde(default)]
    pub new_instance: Option<Uuid>,
    /// When that engine was launched.
    #[serde(default)]
    pub instance_started_at: Option<DateTime<Utc>>,
    /// The engine that serves until the new one is healthy.
    #[serde(default)]
    pub old_instance: Option<Uuid>,
    /// The runtime settings the new engine was started with.
    #[serde(default)]
    pub settings: Option<RuntimeSettings>,
    /// A warning to keep in `lastError` on success (e.g. a CDC fallback to poll).
    #[serde(default)]
    pub note: Option<String>,
}

/// Crash-restart history of a database's engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CrashLog {
    /// When each recent crash was seen (kept for 10 minutes).
    #[serde(default)]
    pub crashes: Vec<DateTime<Utc>>,
    /// The exit already counted (so that one exit is one crash).
    #[serde(default)]
    pub last_exit: Option<String>,
    /// When the next restart is due.
    #[serde(default)]
    pub next_restart_at: Option<DateTime<Utc>>,
    /// When the engine was last restarted.
    #[serde(default)]
    pub restarted_at: Option<DateTime<Utc>>,
}

/// The `database_ops` row of a database.
#[derive(Debug, Clone, Default)]
pub struct OpsRecord {
    /// The database.
    pub database_id: Uuid,
    /// Operation in flight.
    pub op: Option<OpData>,
    /// Crash history.
    pub crash: CrashLog,
    /// Instances to stop and remove (replaced or abandoned engines).
    pub cleanup: Vec<Uuid>,
    /// Key of the last schedule event fired.
    pub schedule_mark: Option<String>,
    /// The database's client-facing engine port, assigned once (first deploy) and kept for its
    /// whole life: every engine of the database listens on it. Unique across databases.
    pub engine_port: Option<u16>,
}

impl OpsRecord {
    /// What a database without a `database_ops` row has: no operation, crash or cleanup.
    pub fn none(database_id: Uuid) -> Self {
        OpsRecord {
            database_id,
            ..Default::default()
        }
    }
}

/// Lifecycle reads and writes inside one transaction (see the module doc). Unlike [`super::Tx`]'s
/// customer-scoped lookups these take bare ids: callers are the reconciler, or service methods
/// that already checked the database belongs to the caller.
#[allow(missing_docs)] // names say it
pub trait LifecycleTx {
    /// A non-deleted database of any customer.
    fn database(&self, id: Uuid) -> StoreResult<Option<DatabaseRow>>;
    /// Every engine port assigned (also of deleted databases: the unique index covers them).
    fn engine_ports(&self) -> StoreResult<Vec<u16>>;
    /// The ops row (a default one when none was written yet).
    fn ops(&self, database: Uuid) -> StoreResult<OpsRecord>;
    fn put_ops(&self, ops: &OpsRecord) -> StoreResult<()>;
    /// Ops rows of every non-deleted database.
    fn all_ops(&self) -> StoreResult<Vec<OpsRecord>>;

    fn insert_build(&self, b: &BuildRecord) -> StoreResult<()>;
    /// Every column but the manifest.
    fn update_build(&self, b: &BuildRecord) -> StoreResult<()>;
    fn set_build_manifest(&self, build: Uuid, manifest: &str) -> StoreResult<()>;
    fn build(&self, database: Uuid, id: Uuid) -> StoreResult<Option<BuildRecord>>;
    fn build_manifest(&self, build: Uuid) -> StoreResult<Option<String>>;
    /// Newest first.
    fn builds(&self, database: Uuid) -> StoreResult<Vec<BuildRecord>>;
    /// The newest build with an artifact.
    fn latest_deployable_build(&self, database: Uuid) -> StoreResult<Option<Uuid>>;

    fn insert_instance(&self, i: &InstanceRecord) -> StoreResult<()>;
    fn update_instance(&self, i: &InstanceRecord) -> StoreResult<()>;
    fn instance(&self, id: Uuid) -> StoreResult<Option<InstanceRecord>>;
    /// Live (not stopped) instances, newest first; of one database or of all.
    fn live_instances(&self, database: Option<Uuid>) -> StoreResult<Vec<InstanceRecord>>;
    /// The newest instance of a database, live or not.
    fn latest_instance(&self, database: Uuid) -> StoreResult<Option<InstanceRecord>>;

    /// Newest first, at most `limit`, with ids below `before` when given.
    fn events(
        &self,
        database: Uuid,
        limit: usize,
        before: Option<i64>,
    ) -> StoreResult<Vec<EventRecord>>;

    fn insert_query_key(&self, k: &QueryKeyRecord) -> StoreResult<()>;
    /// Oldest first, revoked ones included.
    fn query_keys(&self, database: Uuid) -> StoreResult<Vec<QueryKeyRecord>>;
    fn revoke_query_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
}
