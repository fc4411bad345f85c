//! Request and response types of the lifecycle routes (JSON field names as in
//! `control-plane-api.md`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::matrix::Mode;
use crate::api::{ts, Database, HealthStatus, InstanceSize, RuntimeSettings, Status, SyncMode};
use crate::store::lifecycle::BuildStatus;

/// Answer of every action endpoint (202).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionResponse {
    /// The database's status after the request.
    pub status: Status,
    /// `immediate` (started now) or `queued` (recorded as `desiredState`).
    pub mode: Mode,
    /// `pause-replication` / `resume-replication` only.
    #[serde(rename = "replication_paused", skip_serializing_if = "Option::is_none")]
    pub replication_paused: Option<bool>,
}

/// Whether one action is allowed now (from the action matrix).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionInfo {
    /// Allowed now.
    pub allowed: bool,
    /// How it would run, when allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Why not, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `actions` of `GET /v1/databases/{id}/instance`: one entry per column of the matrix.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Actions {
    pub provision: ActionInfo,
    pub rebuild: ActionInfo,
    pub reconfigure: ActionInfo,
    pub redeploy: ActionInfo,
    pub resize: ActionInfo,
    pub pause: ActionInfo,
    pub resume: ActionInfo,
    pub terminate: ActionInfo,
    pub delete: ActionInfo,
    pub reload: ActionInfo,
    pub pause_sync: ActionInfo,
    pub resume_sync: ActionInfo,
}

/// The connection limits a dashboard needs beside a database.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimits {
    /// Smallest allowed `syncInterval`.
    pub min_sync_interval: i64,
    /// Sync modes the connection allows.
    pub allowed_sync_modes: Vec<SyncMode>,
    /// Schemas databases may use.
    pub available_schemas: Vec<String>,
}

/// The running engine of a database.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Instance id.
    pub id: Uuid,
    /// The database.
    pub database_id: Uuid,
    /// The build it runs.
    pub build_id: Uuid,
    /// Base URL (`POST {endpointUrl}/query`).
    pub endpoint_url: Option<String>,
    /// `ok`, `degraded`, `unreachable` or `cap_exceeded` (health poller, every 5 s).
    pub health_status: Option<HealthStatus>,
    /// Age of the snapshot served.
    pub snapshot_age_ms: Option<i64>,
    /// Snapshot swaps since the engine started.
    pub swap_count: Option<i64>,
    /// Rows per table.
    #[schema(value_type = Option<Object>)]
    pub row_counts: Option<serde_json::Value>,
    /// How changes reach the engine, as of the last health check: `mode`, `state` (`streaming`,
    /// `polling`, `reconnecting`, `error`, …), `lagMs`, and while it is failing `error` (cause
    /// and fix) and `fatal` (a source setup problem that retrying does not fix).
    #[schema(value_type = Option<Object>)]
    pub replication: Option<serde_json::Value>,
    /// Last health check.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_health_check: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// The operation in flight, for progress displays.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    /// `provision`, `rebuild`, `redeploy`, `reconfigure`, `resize`, `resume`, `pause`, `terminate`, `restart`.
    pub kind: String,
    /// Current step.
    pub step: Option<String>,
    /// When it started.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
}

/// `GET /v1/databases/{id}/instance`: everything a dashboard polls.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusResponse {
    /// The database.
    pub database: Database,
    /// Its connection's limits.
    pub connection: ConnectionLimits,
    /// Runtime settings of the deployed engine (`null` before the first deploy).
    pub deployed_instance_config: Option<RuntimeSettings>,
    /// Settings changed since the deploy.
    pub has_pending_changes: bool,
    /// The serving engine, or `null`.
    pub instance: Option<InstanceView>,
    /// Newest build.
    pub latest_build: Option<BuildView>,
    /// The action matrix for the current status.
    pub actions: Actions,
    /// The operation in flight (this platform's addition).
    pub operation: Option<OperationView>,
}

/// One build.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildView {
    /// Build id.
    pub id: Uuid,
    /// `queued`, `in_progress`, `succeeded`, `failed`.
    pub status: BuildStatus,
    /// The manifest artifact exists (a redeploy can use it).
    pub deployable: bool,
    /// Where the build log is.
    pub logs_url: String,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When building started.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to end of building (introspection and manifest), seconds.
    pub build_duration_seconds: Option<f64>,
    /// Build compute tier (`small` unless `buildComputeOverride` says otherwise).
    pub compute_type_used: Option<String>,
    /// Always 0 on a self-hosted platform.
    pub cost_estimate_cents: i64,
    /// Why it failed.
    pub error: Option<String>,
}

/// `GET /v1/databases/{id}/builds`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildsResponse {
    /// Newest first.
    pub builds: Vec<BuildView>,
    /// The build the running engine uses.
    pub active_build_id: Option<Uuid>,
}

/// One status transition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Increasing id (use as `before` to page).
    pub id: i64,
    /// When.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// Previous status.
    pub from: Option<Status>,
    /// New status.
    pub to: Status,
    /// `user`, `schedule`, `crash` or `reconciler`.
    pub cause: String,
    /// What happened.
    pub message: String,
}

/// `GET /v1/databases/{id}/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsResponse {
    /// Newest first.
    pub events: Vec<EventView>,
}

/// Paging of `GET /v1/databases/{id}/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only events with a smaller id.
    pub before: Option<i64>,
}

/// `POST /v1/databases/{id}/redeploy`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeployRequest {
    /// A deployable build of this database.
    pub build_id: Uuid,
}

/// `POST /v1/databases/{id}/resize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResizeRequest {
    /// New size.
    pub instance_size: InstanceSize,
}

/// `POST /v1/databases/{id}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateQueryKeyRequest {
    /// Display name, 1–100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// Optional expiry (in the future).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A query key (`rxk_<keyId>.<secret>`) of a database; only a SHA-256 of the secret is stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryKey {
    /// Record id.
    pub id: Uuid,
    /// The database.
    pub database_id: Uuid,
    /// Display name.
    pub name: String,
    /// Public part of the key (also accepted by DELETE).
    pub key_id: String,
    /// The full key: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Expiry.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Only in the answers of create and revoke: whether the change is in force in every running
    /// engine of the database when the call answers (each engine re-read the keys and
    /// acknowledged within 2 s). `true` also when no engine runs (an engine reads the keys when
    /// it starts). `false`: see `effectiveReason`; the engines still pick the change up within
    /// about a second from their keys file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<bool>,
    /// Why `effective` is `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_reason: Option<String>,
}

/// `GET /v1/databases/{id}/schema`: the active build's manifest as the API sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaView {
    /// The build the schema comes from.
    pub build_id: Uuid,
    /// Source database.
    pub database: String,
    /// Source backend.
    pub backend: String,
    /// Exposed tables.
    pub tables: Vec<SchemaTable>,
    /// What the build wants a person to know: tables without a primary key, keys or relations
    /// the source user could not read, generated relation names (empty when all is well).
    pub warnings: Vec<String>,
}

/// One table of [`SchemaView`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaTable {
    /// API name.
    pub name: String,
    /// Source name.
    pub source_name: String,
    /// Primary key fields (API names).
    pub primary_key: Vec<String>,
    /// Fields.
    pub fields: Vec<SchemaField>,
    /// Relations derived from foreign keys.
    pub relations: Vec<SchemaRelation>,
    /// Rows in the running engine, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count: Option<i64>,
}

/// One field of [`SchemaTable`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaField {
    /// API name.
    pub name: String,
    /// Source column.
    pub source_name: String,
    /// Stored type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Source type text.
    pub source_type: String,
    /// NULL allowed.
    pub nullable: bool,
    /// Note from the schema config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One relation of [`SchemaTable`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRelation {
    /// Name used in queries.
    pub name: String,
    /// `forward` (to one) or `reverse` (to many).
    pub kind: String,
    /// Related table (API name).
    pub table: String,
    /// Local fields.
    pub columns: Vec<String>,
    /// Related fields.
    pub target_columns: Vec<String>,
}

/// Row counts by table, as the health poller stores them.
pub type RowCounts = BTreeMap<String, i64>;
