//! Request and response types of `/api/v1` (snake_case JSON, as in seed 004) and the small enums
//! they share with the store. No logic beyond parsing names.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

pub use crate::catalog::DbType;

/// What a managed server is doing, as reported by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ManagedStatus)]
pub enum Status {
    /// Being created or started; not accepting the generated login yet.
    Provisioning,
    /// Accepts a login with the generated credentials.
    Running,
    /// Stopped on request; data kept.
    Stopped,
    /// Provisioning failed, the server crashed (and is being restarted) or its storage is full;
    /// `error_message` says which.
    Error,
    /// Deleted: processes stopped, data and credentials removed.
    Destroyed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Provisioning,
        Status::Running,
        Status::Stopped,
        Status::Error,
        Status::Destroyed,
    ];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "provisioning",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Error => "error",
            Status::Destroyed => "destroyed",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Required integer fields, accepted like [`int_opt`].
pub(crate) fn int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    int_opt(d)?.ok_or_else(|| D::Error::custom("invalid type: null, expected an integer"))
}

/// Integer fields: `10.0` is an integer to JSON Schema, so it is accepted like `10` (`10.5` is not).
fn int_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(Some(f as i64))
        }
        _ => Err(D::Error::custom(format!(
            "invalid type: {n}, expected an integer"
        ))),
    }
}

fn string_enum(values: Vec<&'static str>, nullable: bool) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    let mut values: Vec<Option<&str>> = values.into_iter().map(Some).collect();
    if nullable {
        values.push(None);
    }
    ObjectBuilder::new()
        .schema_type(ty)
        .enum_values(Some(values))
        .build()
}

fn plan_ids() -> utoipa::openapi::schema::Object {
    string_enum(crate::catalog::PLANS.iter().map(|p| p.id).collect(), false)
}

fn plan_ids_or_null() -> utoipa::openapi::schema::Object {
    string_enum(crate::catalog::PLANS.iter().map(|p| p.id).collect(), true)
}

fn action_types() -> utoipa::openapi::schema::Object {
    string_enum(vec!["stop", "start", "restart"], false)
}

fn sync_modes() -> utoipa::openapi::schema::Object {
    string_enum(vec!["poll", "binlog", "logical"], true)
}

fn scopes() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::ArrayBuilder;
    ArrayBuilder::new()
        .items(string_enum(crate::tokens::SCOPES.to_vec(), false))
        .build()
}

/// `version`: `"16"`, `16` or `null`.
fn version_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Null,
        ]))
        .into()
}

/// Serializes a time as the seed does: `2024-01-15T10:30:00Z`.
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// `POST /api/v1/databases`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabaseRequest {
    /// 1–63 characters, unique among the project's databases that are not destroyed.
    #[schema(
        max_length = 63,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[A-Za-z0-9][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// `postgresql`, `mysql`, `redis` or `mongodb`.
    #[schema(value_type = DbType)]
    pub db_type: String,
    /// Engine version (`"16"`; a JSON number is accepted too); default: the newest supported one
    /// installed here.
    #[serde(default)]
    #[schema(schema_with = version_schema)]
    pub version: Option<serde_json::Value>,
    /// A plan of the plan table (`db-s-1vcpu-1gb`, …).
    #[schema(schema_with = plan_ids)]
    pub plan_id: String,
    /// Deployment region (recorded; the local driver runs every region on this host).
    #[schema(pattern = "^[a-z0-9-]{1,32}$")]
    pub region: String,
    /// 1–16384, default 10.
    #[serde(default)]
    #[serde(deserialize_with = "int_opt")]
    #[schema(minimum = 1, maximum = 16384)]
    pub storage_gb: Option<i64>,
    /// Number of servers (1 = no standby), 1–5, default 1.
    #[serde(default)]
    #[serde(deserialize_with = "int_opt")]
    #[schema(minimum = 1, maximum = 5)]
    pub replicas: Option<i64>,
    /// Default `proj_default`.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub project_id: Option<String>,
    /// Create the new server from a backup of another (see docs/managed.md, "Backups").
    #[serde(default)]
    pub backup_restore: Option<crate::backup::types::BackupRestore>,
}

/// Answer of `POST /api/v1/databases` (201).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreateDatabaseResponse {
    /// `db_…`.
    pub id: String,
    /// As given.
    pub name: String,
    /// As given.
    pub db_type: DbType,
    /// `provisioning`.
    pub status: Status,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A managed database server (`GET /api/v1/databases/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ManagedDatabase)]
pub struct Database {
    /// `db_` + 12 lowercase alphanumerics.
    pub id: String,
    /// `proj_default` unless given at creation.
    pub project_id: String,
    /// Display name.
    pub name: String,
    /// From the name: lowercase, `[a-z0-9-]`.
    pub slug: String,
    /// The engine.
    pub db_type: DbType,
    /// The version that runs (`"15"`, `"7.0"`; `"MariaDB 10.11"` for `mysql` served by MariaDB).
    pub version: String,
    /// The version asked for, when it differs from `version` (`"8.0"` served by MariaDB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_version: Option<String>,
    /// The server's own full version once it has answered a login (`"15.18"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The plan.
    pub plan_id: String,
    /// Current status.
    pub status: Status,
    /// Why `status` is `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Region as requested.
    pub region: String,
    /// Storage quota per server, GiB.
    pub storage_gb: i64,
    /// Number of servers (primary + standbys).
    pub replicas: i64,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Standbys and their replication health (only when `replicas` > 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<ReplicaHealth>,
}

/// Health of one standby, observed by the reconciler.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReplicaHealth {
    /// 1 for the first standby (0 is the primary).
    pub node: usize,
    /// Where the standby listens (read-only; same credentials as the primary).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `streaming` (replicating), `starting`, `down` (not replicating) or `provisioning`.
    pub status: String,
    /// How far the standby is behind, in bytes of WAL or replication stream (PostgreSQL, Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// How far it is behind in seconds (MariaDB's `Seconds_Behind_Master`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
}

/// `GET /api/v1/databases/{id}/credentials`.
#[derive(Clone, Serialize, ToSchema)]
pub struct Credentials {
    /// Host clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user (absent for Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Generated password (≥ 24 characters).
    pub password: String,
    /// Database name (absent for Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// TLS mode clients should use: `disable` (the local runtime offers no TLS). Absent for Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
    /// A URL with all of the above.
    pub connection_string: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// `PATCH /api/v1/databases/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ManagedUpdateDatabaseRequest)]
pub struct UpdateDatabaseRequest {
    /// New plan (applied by a restart of a running server).
    #[serde(default)]
    #[schema(schema_with = plan_ids_or_null)]
    pub plan_id: Option<String>,
    /// New quota; storage only grows.
    #[serde(default)]
    #[serde(deserialize_with = "int_opt")]
    #[schema(minimum = 1, maximum = 16384)]
    pub storage_gb: Option<i64>,
    /// New number of servers, 1–5.
    #[serde(default)]
    #[serde(deserialize_with = "int_opt")]
    #[schema(minimum = 1, maximum = 5)]
    pub replicas: Option<i64>,
}

/// `POST /api/v1/databases/{id}/actions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `stop`, `start` or `restart`.
    #[serde(rename = "type")]
    #[schema(schema_with = action_types)]
    pub kind: String,
}

/// `POST /api/v1/databases/{id}/connection` (every field optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ManagedConnectionRequest)]
pub struct CreateConnectionRequest {
    /// Name of the `/v1` connection; default: the database's name.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: Option<String>,
    /// `/v1` sync mode (`poll`, `binlog`, `logical`); default `poll`.
    #[serde(default)]
    #[schema(schema_with = sync_modes)]
    pub sync_mode: Option<String>,
    /// `/v1` sync interval in seconds.
    #[serde(default)]
    #[serde(deserialize_with = "int_opt")]
    #[schema(minimum = 5, maximum = 3600)]
    pub sync_interval: Option<i64>,
}

/// `POST /api/v1/api-tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Display name, 1–100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// `databases:read`, `databases:write`; empty or absent = full access.
    #[serde(default)]
    #[schema(schema_with = scopes)]
    pub scopes: Vec<String>,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiToken {
    /// `tok_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Scopes; empty = full access.
    pub scopes: Vec<String>,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last successful authentication (updated at most once a minute).
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Answer of `POST /api/v1/api-tokens` (201): the only time `token` is shown.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreateTokenResponse {
    /// `tok_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `dkc_<keyId>.<secret>`.
    pub token: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for CreateTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `GET /api/v1/databases` query string.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// Only this project.
    pub project_id: Option<String>,
    /// Only this engine.
    #[param(value_type = Option<DbType>)]
    pub db_type: Option<String>,
    /// Only this status (`destroyed` lists deleted ones).
    #[param(value_type = Option<Status>)]
    pub status: Option<String>,
}

/// The `{"error": "<code>", "message": "<sentence>"}` body of every failure (the same shape as
/// `/v1`'s).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `not_implemented`, `internal`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
}
