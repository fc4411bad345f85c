//! Request and response types of `/v1`: the only place that knows JSON field names.
//!
//! Field names are camelCase exactly as in the seeds, including the `mysql` prefix for every
//! backend. Request types reject unknown fields so that typos fail loudly. Numbers in requests
//! are `i64` so that an out-of-range value gets our "field must be between" message instead of a
//! serde integer-width error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Timestamps in responses: RFC 3339 UTC with whole seconds (`2026-04-15T12:00:00Z`).
pub(crate) mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// For PATCH bodies: absent → `None` (unchanged), `null` → `Some(None)` (clear), value → `Some(Some(v))`.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

macro_rules! api_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vm])* #[doc = concat!("`", $s, "`")] #[serde(rename = $s)] $variant),+
        }
        impl $name {
            /// Every value, in API order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The API (and storage) spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            /// Parses the API spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

api_enum!(
    /// Source database engine.
    Backend {
        /// MySQL or MariaDB.
        Mysql = "mysql",
        /// PostgreSQL.
        Postgres = "postgres",
        /// SQL Server (accepted; no loader on this platform yet).
        Mssql = "mssql",
        /// A SQLite file on the control plane's host (the embedded default).
        Sqlite = "sqlite",
    }
);

impl Backend {
    /// Default port when none is given.
    pub fn default_port(&self) -> Option<i64> {
        match self {
            Backend::Mysql => Some(3306),
            Backend::Postgres => Some(5432),
            Backend::Mssql => Some(1433),
            Backend::Sqlite => None,
        }
    }

    /// The sources crate's spelling.
    pub fn to_source(self) -> refract_schema::Backend {
        match self {
            Backend::Mysql => refract_schema::Backend::Mysql,
            Backend::Postgres => refract_schema::Backend::Postgres,
            Backend::Mssql => refract_schema::Backend::Mssql,
            Backend::Sqlite => refract_schema::Backend::Sqlite,
        }
    }
}

api_enum!(
    /// How an engine keeps fresh: `poll` periodic full reload; `binlog` MySQL CDC; `logical`
    /// PostgreSQL CDC; `cdc` SQL Server CDC.
    SyncMode { Poll = "poll", Binlog = "binlog", Logical = "logical", Cdc = "cdc" }
);

impl SyncMode {
    /// The backend a CDC mode needs (`None` for `poll`, which fits every backend).
    pub fn required_backend(&self) -> Option<Backend> {
        match self {
            SyncMode::Poll => None,
            SyncMode::Binlog => Some(Backend::Mysql),
            SyncMode::Logical => Some(Backend::Postgres),
            SyncMode::Cdc => Some(Backend::Mssql),
        }
    }
}

api_enum!(
    /// Engine size; sets `taskCpu` and `taskMemoryMb`.
    InstanceSize {
        Nano = "nano", Small = "small", Medium = "medium", Large = "large", Xlarge = "xlarge",
        X2large = "2xlarge",
    }
);

impl InstanceSize {
    /// CPU units (1024 = one vCPU) and memory in MiB.
    pub fn resources(&self) -> (i64, i64) {
        match self {
            InstanceSize::Nano => (256, 512),
            InstanceSize::Small => (512, 1024),
            InstanceSize::Medium => (1024, 2048),
            InstanceSize::Large => (2048, 4096),
            InstanceSize::Xlarge => (4096, 8192),
            InstanceSize::X2large => (8192, 16384),
        }
    }

    /// Position in the size order, for plan limits.
    pub fn rank(&self) -> usize {
        InstanceSize::ALL
            .iter()
            .position(|s| s == self)
            .unwrap_or(0)
    }
}

api_enum!(
    /// Engine log level.
    LogLevel { Info = "info", Debug = "debug", Warn = "warn", Error = "error" }
);

api_enum!(
    /// Lifecycle status of a database (see `lifecycle.md`).
    Status {
        Registered = "registered", TestingConnection = "testing_connection", Queued = "queued",
        Building = "building", Deploying = "deploying", Running = "running", Pausing = "pausing",
        Paused = "paused", Resuming = "resuming", Failed = "failed", Stopped = "stopped",
        Terminating = "terminating", Terminated = "terminated",
    }
);

api_enum!(
    /// The goal a queued action recorded; the reconciler drives the status toward it.
    DesiredState { Running = "running", Paused = "paused", Terminated = "terminated" }
);

api_enum!(
    /// Health of a running engine as the health poller last saw it.
    HealthStatus { Ok = "ok", Degraded = "degraded", Unreachable = "unreachable", CapExceeded = "cap_exceeded" }
);

api_enum!(
    /// Colour of a tag.
    TagColor {
        Gray = "gray", Red = "red", Orange = "orange", Yellow = "yellow", Green = "green",
        Teal = "teal", Blue = "blue", Purple = "purple",
    }
);

api_enum!(
    /// Compute tier forced for builds (`null` = automatic).
    BuildCompute { Small = "small", Medium = "medium", Large = "large" }
);

api_enum!(
    /// A customer's plan (limits in `plans.rs`).
    Plan { Free = "free", Pro = "pro", Teams = "teams", Enterprise = "enterprise" }
);

/// The error body of every failed request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code (`invalid_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `action_not_allowed`, `too_large`, `internal`).
    pub error: String,
    /// A sentence for a person; names the field and rule for validation errors.
    pub message: String,
}

// ---------------------------------------------------------------- customers and keys

/// A customer (tenant). Every resource belongs to exactly one.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// Customer id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Plan, which sets limits.
    pub plan: Plan,
    /// May call `/v1/admin/...`.
    pub is_admin: bool,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/customers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCustomerRequest {
    /// Display name, 1–100 characters.
    pub name: String,
    /// Plan; default `free`.
    pub plan: Option<Plan>,
}

/// The new customer and its first management key (the `key` is shown only here).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomerResponse {
    /// The customer.
    pub customer: Customer,
    /// Its first management key, with `key`.
    pub management_key: ManagementKey,
}

/// `PATCH /v1/admin/customers/{id}/plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPlanRequest {
    /// New plan.
    pub plan: Plan,
}

/// Answer of `PATCH /v1/admin/customers/{id}/plan`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPlanResponse {
    /// Customer id.
    pub id: Uuid,
    /// Its plan now.
    pub plan: Plan,
    /// What the plan allows (admins are unlimited whatever their plan).
    pub limits: PlanLimitsView,
}

/// The limits of a plan (`null` = unlimited).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimitsView {
    /// Non-deleted `/v1` databases.
    pub max_databases: Option<usize>,
    /// Largest `/v1` instance size.
    pub max_instance_size: InstanceSize,
    /// `reflexdbCustomDomain` allowed.
    pub custom_domains: bool,
    /// Managed servers (`/api/v1/databases`; each replica is a server).
    pub max_managed_servers: Option<i64>,
    /// Plan memory of all managed servers together, MiB.
    pub max_managed_memory_mib: Option<i64>,
}

impl From<crate::plans::PlanLimits> for PlanLimitsView {
    fn from(l: crate::plans::PlanLimits) -> Self {
        PlanLimitsView {
            max_databases: l.max_databases,
            max_instance_size: l.max_instance_size,
            custom_domains: l.custom_domains,
            max_managed_servers: l.managed_servers,
            max_managed_memory_mib: l.managed_memory_mib,
        }
    }
}

/// A management key (`rmk_<keyId>.<secret>`); only a SHA-256 of the secret is stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagementKey {
    /// Key record id (used to revoke).
    pub id: Uuid,
    /// Owner.
    pub customer_id: Uuid,
    /// Display name.
    pub name: String,
    /// Non-secret public part of the key.
    pub key_id: String,
    /// The full key; present only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// After this time the key stops working; `null` = never.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last successful use (updated at most once a minute).
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; it stopped working then.
    #[serde(with = "ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of the secret part. Never serialized.
    #[serde(skip)]
    #[schema(ignore)]
    pub secret_sha256: String,
}

/// `POST /v1/account/management-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateManagementKeyRequest {
    /// Display name, 1–100 characters.
    pub name: String,
    /// Optional expiry (RFC 3339, in the future).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- connections

/// A source database connection shared by one or more databases. The password is never returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Connection id.
    pub id: Uuid,
    /// Owner.
    pub customer_id: Uuid,
    /// Display name, unique per customer.
    pub name: String,
    /// Source database engine.
    pub backend: Backend,
    /// Host name or IP (for `sqlite`: the database file path).
    pub mysql_host: String,
    /// Port (`null` for `sqlite`).
    pub mysql_port: Option<i64>,
    /// Schemas (PostgreSQL: databases) that databases may use.
    pub available_schemas: Vec<String>,
    /// Login user (`null` for `sqlite` when not given).
    pub mysql_user: Option<String>,
    /// Sync modes available to databases on this connection.
    pub allowed_sync_modes: Vec<SyncMode>,
    /// Smallest `syncInterval` a database may use, in seconds.
    pub min_sync_interval: i64,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// Name of the password in the secret store (never the password). Never serialized.
    #[serde(skip)]
    #[schema(ignore)]
    pub password_secret: Option<String>,
}

impl Connection {
    /// The sync mode new databases start with: the CDC mode when one is allowed, else `poll`.
    pub fn default_sync_mode(&self) -> SyncMode {
        self.allowed_sync_modes
            .iter()
            .copied()
            .find(|m| *m != SyncMode::Poll)
            .unwrap_or(SyncMode::Poll)
    }
}

/// `GET /v1/connections/{id}`: the connection and its non-deleted databases.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionWithDatabases {
    /// The connection's fields.
    #[serde(flatten)]
    pub connection: Connection,
    /// Its non-deleted databases.
    pub databases: Vec<Database>,
}

/// `POST /v1/connections` (seed 001).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConnectionRequest {
    /// Source engine; default `mysql`.
    pub backend: Option<Backend>,
    /// Display name, 1–100 characters, unique per customer.
    pub name: String,
    /// Host (≥ 1 character); for `sqlite` the database file path.
    pub mysql_host: String,
    /// Port 1–65535; default 3306 (5432 for postgres).
    pub mysql_port: Option<i64>,
    /// ≥ 1 schema names; for `sqlite` `["main"]` (the default).
    pub available_schemas: Option<Vec<String>>,
    /// Login user (≥ 1 character; optional for `sqlite`).
    pub mysql_user: Option<String>,
    /// Password (≥ 1 character; optional for `sqlite`). Kept only in the encrypted secret store.
    pub mysql_password: Option<String>,
    /// Default `poll`; a CDC mode must fit the backend.
    pub sync_mode: Option<SyncMode>,
    /// 5–3600 seconds, default 30; becomes `minSyncInterval`.
    pub sync_interval: Option<i64>,
    /// Optional first database, created in the same transaction.
    pub instance: Option<CreateInstanceRequest>,
}

/// The optional `instance` of `POST /v1/connections`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstanceRequest {
    /// Display name, 1–100 characters, unique within the connection.
    pub name: String,
    /// Schema to use; must be in `availableSchemas`.
    pub mysql_db: String,
    /// Default `nano`.
    pub instance_size: Option<InstanceSize>,
    /// Default `info`.
    pub log_level: Option<LogLevel>,
    /// ≥ 1, unique per source host and port.
    pub binlog_server_id: Option<i64>,
}

/// Answer of `POST /v1/connections`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateConnectionResponse {
    /// The new connection.
    pub connection: Connection,
    /// The database created from `instance`, or `null`.
    pub database: Option<Database>,
}

/// `PATCH /v1/connections/{id}` (seed 003): every field optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConnectionRequest {
    /// 1–100 characters, unique per customer.
    pub name: Option<String>,
    /// ≥ 1 character.
    pub mysql_host: Option<String>,
    /// 1–65535.
    pub mysql_port: Option<i64>,
    /// ≥ 1 item; removing a schema in use is a 409.
    pub available_schemas: Option<Vec<String>>,
    /// ≥ 1 character.
    pub mysql_user: Option<String>,
    /// ≥ 1 character; used from the next provision, rebuild or resume.
    pub mysql_password: Option<String>,
    /// Sets `allowedSyncModes` to `poll` plus this CDC mode.
    pub sync_mode: Option<SyncMode>,
    /// 5–3600; becomes `minSyncInterval`.
    pub sync_interval: Option<i64>,
}

/// `POST /v1/connections/test-connection`: credentials to try, nothing is stored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConnectionRequest {
    /// Default `mysql`.
    pub backend: Option<Backend>,
    /// Host (≥ 1 character) or, for `sqlite`, the file path.
    pub mysql_host: String,
    /// Default per backend.
    pub mysql_port: Option<i64>,
    /// Login user.
    pub mysql_user: Option<String>,
    /// Password.
    pub mysql_password: Option<String>,
}

/// Result of a connection test (always HTTP 200; `ok:false` with `error` when it failed).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestConnectionResult {
    /// The login worked.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Round trip of a trivial query, ms.
    pub latency_ms: Option<f64>,
    /// Data size of the visible schemas, GB.
    pub estimated_size_gb: Option<f64>,
    /// Visible schemas without system ones.
    pub available_schemas: Option<Vec<String>>,
    /// MySQL/MariaDB binlog readiness.
    pub binlog: Option<BinlogReadiness>,
    /// PostgreSQL logical replication readiness.
    pub logical: Option<LogicalReadiness>,
}

/// Whether a MySQL/MariaDB source can feed `binlog` mode.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogReadiness {
    /// `log_bin=ON`.
    pub log_bin: bool,
    /// `binlog_format`.
    pub format: Option<String>,
    /// The server's `server_id`.
    pub server_id: Option<u64>,
    /// Every prerequisite met.
    pub ready: bool,
    /// Each missing setting or grant.
    pub issues: Vec<String>,
}

/// Whether a PostgreSQL source can feed `logical` mode.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogicalReadiness {
    /// `wal_level`.
    pub wal_level: Option<String>,
    /// Every prerequisite met.
    pub ready: bool,
    /// Each missing setting or right.
    pub issues: Vec<String>,
}

// ---------------------------------------------------------------- databases

/// A label attached to a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tag {
    /// 1–30 characters.
    pub label: String,
    /// One of the fixed colours.
    pub color: TagColor,
}

/// Recurring pause/resume schedule (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseSchedule {
    /// `HH:MM` UTC.
    pub pause_at: String,
    /// `HH:MM` UTC.
    pub resume_at: String,
    /// 0 = Sunday … 6 = Saturday; empty = every day.
    #[serde(default)]
    pub days: Vec<i64>,
}

/// A database (one engine instance's config) and its lifecycle status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    /// Database id.
    pub id: Uuid,
    /// Owner.
    pub customer_id: Uuid,
    /// The connection that provides the source credentials.
    pub connection_id: Uuid,
    /// Display name, unique within the connection.
    pub name: String,
    /// The schema on the source server.
    pub mysql_db: String,
    /// Sync mode.
    pub sync_mode: SyncMode,
    /// Poll interval, seconds (≥ the connection's `minSyncInterval`).
    pub sync_interval: i64,
    /// CDC modes: full reload every this many seconds (0 = off).
    pub safety_net: i64,
    /// CPU units (256 = 0.25 vCPU), from `instanceSize`.
    pub task_cpu: i64,
    /// Memory in MiB, from `instanceSize`.
    pub task_memory_mb: i64,
    /// Engine log level.
    pub log_level: LogLevel,
    /// Lifecycle status.
    pub status: Status,
    /// Why the last operation failed.
    pub last_error: Option<String>,
    /// Base URL of the running engine.
    pub endpoint_url: Option<String>,
    /// Last health check result.
    pub health_status: Option<HealthStatus>,
    /// Forced build compute tier; `null` = automatic.
    pub build_compute_override: Option<BuildCompute>,
    /// Engine size.
    pub instance_size: InstanceSize,
    /// Runtime region (`local` for the process driver).
    pub region: String,
    /// MySQL binlog server id, unique per source host and port.
    pub binlog_server_id: Option<i64>,
    /// Queued goal the reconciler drives toward.
    pub desired_state: Option<DesiredState>,
    /// Vanity subdomain (Teams plan and up).
    pub reflexdb_custom_domain: Option<String>,
    /// Pause/resume schedule or `null`.
    pub pause_schedule: Option<PauseSchedule>,
    /// Labels.
    pub tags: Vec<Tag>,
    /// Runtime settings differ from the deployed ones until a reconfigure, rebuild or redeploy.
    pub has_pending_changes: bool,
    /// Snapshot frozen by `pause-replication`.
    #[serde(rename = "replication_paused")]
    pub replication_paused: bool,
    /// Creation time.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// Lifecycle bookkeeping the API does not show.
    #[serde(skip)]
    #[schema(ignore)]
    pub internal: DatabaseInternal,
}

/// Fields of a database row that belong to the reconciler, not the API.
#[derive(Debug, Clone, Default)]
pub struct DatabaseInternal {
    /// Kind of the operation in flight (`provision`, `rebuild`, …).
    pub op_kind: Option<String>,
    /// Its current step.
    pub op_step: Option<String>,
    /// When it started.
    pub op_started_at: Option<DateTime<Utc>>,
    /// Retry count of the current step.
    pub op_attempt: i64,
    /// Runtime settings as last deployed (JSON of [`RuntimeSettings`]), `None` if never.
    pub deployed_config: Option<serde_json::Value>,
    /// The build the running engine uses.
    pub active_build_id: Option<Uuid>,
    /// `reflexdb.yaml` text, `None` = default config.
    pub schema_config: Option<String>,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The settings a running engine was started with; a difference from the database's current
/// values means `hasPendingChanges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    /// Engine size.
    pub instance_size: InstanceSize,
    /// CPU units.
    pub task_cpu: i64,
    /// Memory MiB.
    pub task_memory_mb: i64,
    /// Sync mode.
    pub sync_mode: SyncMode,
    /// Poll interval.
    pub sync_interval: i64,
    /// Log level.
    pub log_level: LogLevel,
    /// Safety-net reload period.
    pub safety_net: i64,
    /// Binlog server id.
    pub binlog_server_id: Option<i64>,
}

impl Database {
    /// The runtime settings as they stand now (what a reconfigure would deploy).
    pub fn runtime_settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            instance_size: self.instance_size,
            task_cpu: self.task_cpu,
            task_memory_mb: self.task_memory_mb,
            sync_mode: self.sync_mode,
            sync_interval: self.sync_interval,
            log_level: self.log_level,
            safety_net: self.safety_net,
            binlog_server_id: self.binlog_server_id,
        }
    }
}

/// `POST /v1/databases` (seed 000).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterDatabaseRequest {
    /// The connection providing the source credentials.
    pub connection_id: Uuid,
    /// 1–100 characters, unique within the connection.
    pub name: String,
    /// Must be in the connection's `availableSchemas`.
    pub mysql_db: String,
    /// Default `nano`.
    pub instance_size: Option<InstanceSize>,
    /// Default `info`.
    pub log_level: Option<LogLevel>,
    /// ≥ 1, unique per source host and port.
    pub binlog_server_id: Option<i64>,
}

/// `PATCH /v1/databases/{id}`: every field optional; `null` clears the nullable ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDatabaseRequest {
    /// 1–100 characters, unique within the connection.
    pub name: Option<String>,
    /// Only in `registered`, `failed`, `stopped`, `terminated`.
    pub mysql_db: Option<String>,
    /// Engine size (within the plan's largest).
    pub instance_size: Option<InstanceSize>,
    /// Log level.
    pub log_level: Option<LogLevel>,
    /// ≥ 1 and unique per source host and port; `null` clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub binlog_server_id: Option<Option<i64>>,
    /// `small` `medium` `large` or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BuildCompute>)]
    pub build_compute_override: Option<Option<BuildCompute>>,
    /// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, unique, Teams plan and up; `null` clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub reflexdb_custom_domain: Option<Option<String>>,
    /// Schedule or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<PauseSchedule>)]
    pub pause_schedule: Option<Option<PauseSchedule>>,
    /// ≤ 5 tags (replaces the list).
    pub tags: Option<Vec<Tag>>,
    /// Must be in the connection's `allowedSyncModes`.
    pub sync_mode: Option<SyncMode>,
    /// ≥ the connection's `minSyncInterval`, ≤ 3600.
    pub sync_interval: Option<i64>,
    /// 0 (off) or 60–86400 seconds.
    pub safety_net: Option<i64>,
}

/// Filters of `GET /v1/databases`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DatabaseFilter {
    /// Only databases of this connection.
    pub connection_id: Option<Uuid>,
    /// Only databases in this status.
    pub status: Option<Status>,
    /// Only databases with a tag of this label.
    pub tag: Option<String>,
}

/// `{"databases": [...]}`-less list answers are plain arrays; this documents `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok` when the process answers and the store is readable.
    pub status: String,
}
