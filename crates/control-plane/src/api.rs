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

/// Integer request fields: JSON Schema counts `5.0` as an integer, so these accept an integral
/// number written with a fraction (`5.0`) as well as `5`; `5.5` stays a 400.
pub(crate) mod int {
    use serde::{de::Error, Deserialize, Deserializer};

    fn to_i64<E: Error>(n: serde_json::Number) -> Result<i64, E> {
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Ok(f as i64)
            }
            _ => Err(E::custom(format!("invalid type: {n}, expected an integer"))),
        }
    }

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(to_i64)
            .transpose()
    }

    pub fn double_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        opt(d).map(Some)
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<serde_json::Number>::deserialize(d)?
            .into_iter()
            .map(to_i64)
            .collect()
    }
}

/// Nested request objects: serde's derived structs also read a JSON array of their fields in
/// order (`"instance": ["d", "shop"]`); these read them only from a JSON object. Field paths in
/// error messages stay as they were (the map is the one the path tracker hands out).
pub(crate) mod obj {
    use std::marker::PhantomData;

    use serde::de::{MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    struct Obj<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_map(V(PhantomData)).map(Obj)
        }
    }

    pub fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(Option::<Obj<T>>::deserialize(d)?.map(|o| o.0))
    }

    pub fn double_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        opt(d).map(Some)
    }

    pub fn vec_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Ok(Option::<Vec<Obj<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|o| o.0).collect()))
    }
}

macro_rules! api_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[doc = concat!("`", $s, "`")] #[serde(rename = $s)] $variant),+
        }
        // Written by hand: the derive does not see `serde(rename)` through a macro literal and
        // documented the Rust names (`Free`) instead of the served ones (`free`).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($s),+]))
                    .into()
            }
        }
        impl ToSchema for $name {}
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
    /// TLS to the source, as libpq's `sslmode`: `disable` never; `prefer` (default) when the
    /// server offers it, without certificate checks; `require` always, without checks (with
    /// `sslRootCert`: as `verify-ca`); `verify-ca` the certificate chain must lead to
    /// `sslRootCert` (else to the built-in public roots); `verify-full` also the host name.
    /// `sqlite` connections are always `disable`.
    SslMode {
        Disable = "disable",
        Prefer = "prefer",
        Require = "require",
        VerifyCa = "verify-ca",
        VerifyFull = "verify-full",
    }
);

impl SslMode {
    /// The sources crate's mode.
    pub fn to_source(self) -> refract_sources::SslMode {
        match self {
            SslMode::Disable => refract_sources::SslMode::Disable,
            SslMode::Prefer => refract_sources::SslMode::Prefer,
            SslMode::Require => refract_sources::SslMode::Require,
            SslMode::VerifyCa => refract_sources::SslMode::VerifyCa,
            SslMode::VerifyFull => refract_sources::SslMode::VerifyFull,
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

/// No control or bidirectional-override character (`validate::forbidden_char`).
const PLAIN_TEXT: &str =
    r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$";

/// `availableSchemas`: ≥ 1 distinct non-empty names (`null` = not given).
/// Longest schema (database) name; MySQL allows 64, PostgreSQL 63.
pub const SCHEMA_MAX: usize = 128;

fn schema_names() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(SCHEMA_MAX))
                .pattern(Some(PLAIN_TEXT)),
        )
        .max_items(Some(1000))
        .min_items(Some(1))
        .unique_items(true)
        .build()
}

/// `pauseSchedule.days`: distinct days 0–6.
fn week_days() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0))
                .maximum(Some(6)),
        )
        .max_items(Some(7))
        .unique_items(true)
        .build()
}

/// `safetyNet`: 0 (off) or 60–86400.
fn safety_net() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([0])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(60))
                .maximum(Some(86400)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

pub use crate::error::ErrorBody;

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
    /// Display name, 1–100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
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
    /// Display name, 1–100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
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
    #[serde(rename = "mysqlHost")]
    pub host: String,
    /// Port (`null` for `sqlite`).
    #[serde(rename = "mysqlPort")]
    pub port: Option<i64>,
    /// Schemas (PostgreSQL: databases) that databases may use.
    pub available_schemas: Vec<String>,
    /// Login user (`null` for `sqlite` when not given).
    #[serde(rename = "mysqlUser")]
    pub user: Option<String>,
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
    /// TLS to the source (`disable` for `sqlite`).
    pub ssl_mode: SslMode,
    /// A CA certificate (`sslRootCert`) is stored for this connection; the certificate itself
    /// is kept in the secret store and never returned.
    pub ssl_root_cert_set: bool,
    /// Name of the password in the secret store (never the password). Never serialized.
    #[serde(skip)]
    #[schema(ignore)]
    pub password_secret: Option<String>,
    /// Name of the CA certificate in the secret store. Never serialized.
    #[serde(skip)]
    #[schema(ignore)]
    pub ssl_root_cert_secret: Option<String>,
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
    /// Display name, 1–100 characters (not only spaces), unique per customer.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// Host (≥ 1 character); for `sqlite` the database file path.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlHost")]
    pub host: String,
    /// Port 1–65535; default 3306 (5432 for postgres).
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(rename = "mysqlPort")]
    pub port: Option<i64>,
    /// ≥ 1 schema names; for `sqlite` `["main"]` (the default).
    #[schema(schema_with = schema_names)]
    pub available_schemas: Option<Vec<String>>,
    /// Login user (≥ 1 character; optional for `sqlite`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    pub user: Option<String>,
    /// Password (≥ 1 character; optional for `sqlite`). Kept only in the encrypted secret store.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    pub password: Option<String>,
    /// TLS to the source; default `prefer`. `sqlite`: only `disable` (or leave it out).
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s) to trust, PEM text (`-----BEGIN CERTIFICATE-----`…), at most 64 KiB;
    /// checked on input (422 when it is no certificate). Kept only in the encrypted secret
    /// store, like the password. Not for `sqlite`.
    #[schema(min_length = 1, max_length = 65536)]
    pub ssl_root_cert: Option<String>,
    /// Default `poll`; a CDC mode must fit the backend.
    pub sync_mode: Option<SyncMode>,
    /// 5–3600 seconds, default 30; becomes `minSyncInterval`.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    pub sync_interval: Option<i64>,
    /// Optional first database, created in the same transaction.
    #[serde(default, deserialize_with = "obj::opt")]
    pub instance: Option<CreateInstanceRequest>,
}

/// The optional `instance` of `POST /v1/connections`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstanceRequest {
    /// Display name, 1–100 characters (not only spaces), unique within the connection.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// Schema to use; must be in `availableSchemas`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlDb")]
    pub schema: String,
    /// Default `nano`.
    pub instance_size: Option<InstanceSize>,
    /// Default `info`.
    pub log_level: Option<LogLevel>,
    /// 1–4294967295, unique per source host and port.
    #[schema(minimum = 1, maximum = 4294967295_i64)]
    #[serde(default, deserialize_with = "int::opt")]
    pub binlog_server_id: Option<i64>,
    /// Engine copies, 1–10; default 1. More than 1 needs the Kubernetes runtime.
    #[schema(minimum = 1, maximum = 10)]
    #[serde(default, deserialize_with = "int::opt")]
    pub replicas: Option<i64>,
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
    /// 1–100 characters (not only spaces), unique per customer.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: Option<String>,
    /// ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlHost")]
    pub host: Option<String>,
    /// 1–65535.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(rename = "mysqlPort")]
    pub port: Option<i64>,
    /// ≥ 1 item; removing a schema in use is a 409.
    #[schema(schema_with = schema_names)]
    pub available_schemas: Option<Vec<String>>,
    /// ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    pub user: Option<String>,
    /// ≥ 1 character; used from the next provision, rebuild or resume.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    pub password: Option<String>,
    /// TLS to the source; used from the next provision, rebuild or resume. `sqlite`: only
    /// `disable`.
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s), PEM, at most 64 KiB (see create); `null` removes the stored one.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 65536)]
    pub ssl_root_cert: Option<Option<String>>,
    /// Sets `allowedSyncModes` to `poll` plus this CDC mode.
    pub sync_mode: Option<SyncMode>,
    /// 5–3600; becomes `minSyncInterval`.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    pub sync_interval: Option<i64>,
}

/// `POST /v1/connections/test-connection`: credentials to try, nothing is stored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConnectionRequest {
    /// Default `mysql`.
    pub backend: Option<Backend>,
    /// Host (≥ 1 character) or, for `sqlite`, the file path.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlHost")]
    pub host: String,
    /// 1–65535; default per backend.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(rename = "mysqlPort")]
    pub port: Option<i64>,
    /// Login user (1–128 characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    pub user: Option<String>,
    /// Password (1–1024 characters).
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    pub password: Option<String>,
    /// TLS to the source; default `prefer`. `sqlite`: only `disable`.
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s), PEM, at most 64 KiB (see `POST /v1/connections`).
    #[schema(min_length = 1, max_length = 65536)]
    pub ssl_root_cert: Option<String>,
}

/// Result of a connection test (always HTTP 200; `ok:false` with `error` when it failed). The
/// served body is `refract_sources::TestConnectionReport`; a test keeps the two field for field.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConnectionResult {
    /// The login worked.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// The session was encrypted with TLS (absent when the login failed, and for `sqlite`).
    pub tls: Option<bool>,
    /// The TLS version (`TLSv1.3`) when TLS was used.
    pub tls_version: Option<String>,
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
    /// What works but not as expected (tables without a primary key, key constraints or tables
    /// the user cannot read); absent when there is nothing to say.
    pub warnings: Option<Vec<String>>,
}

/// Whether a MySQL/MariaDB source can feed `binlog` mode.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    #[schema(
        min_length = 1,
        max_length = 30,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub label: String,
    /// One of the fixed colours.
    pub color: TagColor,
}

/// Recurring pause/resume schedule (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseSchedule {
    /// `HH:MM` UTC.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub pause_at: String,
    /// `HH:MM` UTC, not the same as `pauseAt`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub resume_at: String,
    /// 0 = Sunday … 6 = Saturday, each at most once; empty = every day.
    #[serde(default, deserialize_with = "int::vec")]
    #[schema(schema_with = week_days)]
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
    #[serde(rename = "mysqlDb")]
    pub schema: String,
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
    /// Engine copies serving side by side, 1–10 (more than 1 needs the Kubernetes runtime:
    /// one Deployment of this many pods behind the database's Service).
    pub replicas: i64,
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
    /// Engine copies (1 when deployed before `replicas` existed).
    #[serde(default = "one")]
    pub replicas: i64,
}

fn one() -> i64 {
    1
}

impl RuntimeSettings {
    /// The engine copies to run (at least 1).
    pub fn replicas(&self) -> u32 {
        self.replicas.clamp(1, i64::from(u32::MAX)) as u32
    }
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
            replicas: self.replicas,
        }
    }
}

/// `POST /v1/databases` (seed 000).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterDatabaseRequest {
    /// The connection providing the source credentials.
    pub connection_id: Uuid,
    /// 1–100 characters (not only spaces), unique within the connection.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// Must be in the connection's `availableSchemas`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlDb")]
    pub schema: String,
    /// Default `nano`.
    pub instance_size: Option<InstanceSize>,
    /// Default `info`.
    pub log_level: Option<LogLevel>,
    /// 1–4294967295, unique per source host and port.
    #[schema(minimum = 1, maximum = 4294967295_i64)]
    #[serde(default, deserialize_with = "int::opt")]
    pub binlog_server_id: Option<i64>,
    /// Engine copies, 1–10; default 1. More than 1 needs the Kubernetes runtime.
    #[schema(minimum = 1, maximum = 10)]
    #[serde(default, deserialize_with = "int::opt")]
    pub replicas: Option<i64>,
}

/// `PATCH /v1/databases/{id}`: every field optional; `null` clears the nullable ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDatabaseRequest {
    /// 1–100 characters (not only spaces), unique within the connection.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: Option<String>,
    /// Only in `registered`, `failed`, `stopped`, `terminated`; ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlDb")]
    pub schema: Option<String>,
    /// Engine size (within the plan's largest).
    pub instance_size: Option<InstanceSize>,
    /// Log level.
    pub log_level: Option<LogLevel>,
    /// 1–4294967295 and unique per source host and port; `null` clears.
    #[serde(default, deserialize_with = "int::double_opt")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    pub binlog_server_id: Option<Option<i64>>,
    /// Engine copies, 1–10 (a pending change until a reconfigure). More than 1 needs the
    /// Kubernetes runtime.
    #[schema(minimum = 1, maximum = 10)]
    #[serde(default, deserialize_with = "int::opt")]
    pub replicas: Option<i64>,
    /// `small` `medium` `large` or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BuildCompute>)]
    pub build_compute_override: Option<Option<BuildCompute>>,
    /// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, unique, Teams plan and up; `null` clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub reflexdb_custom_domain: Option<Option<String>>,
    /// Schedule or `null`.
    #[serde(default, deserialize_with = "obj::double_opt")]
    #[schema(value_type = Option<PauseSchedule>)]
    pub pause_schedule: Option<Option<PauseSchedule>>,
    /// ≤ 5 tags with distinct labels (replaces the list).
    #[schema(max_items = 5)]
    #[serde(default, deserialize_with = "obj::vec_opt")]
    pub tags: Option<Vec<Tag>>,
    /// Must be in the connection's `allowedSyncModes`.
    pub sync_mode: Option<SyncMode>,
    /// ≥ the connection's `minSyncInterval`, ≤ 3600.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    pub sync_interval: Option<i64>,
    /// 0 (off) or 60–86400 seconds.
    #[schema(schema_with = safety_net)]
    #[serde(default, deserialize_with = "int::opt")]
    pub safety_net: Option<i64>,
}

/// Filters of `GET /v1/databases`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DatabaseFilter {
    /// Only databases of this connection.
    pub connection_id: Option<Uuid>,
    /// Only databases in this status.
    pub status: Option<Status>,
    /// Only databases with a tag of this label.
    pub tag: Option<String>,
}

/// `GET /health`: this replica answers and reads its metadata store (a store it cannot reach
/// is a 503 `store_unavailable`), and whether it leads.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// Always `ok` when the process answers and the store is readable.
    pub status: String,
    /// The metadata store: `sqlite` (embedded, one process) or `postgres` (shared by replicas).
    pub store: String,
    /// This replica's id (host name, process id, random suffix).
    pub replica: String,
    /// Whether this replica runs the reconcilers, schedules and health pollers now (always true
    /// on the SQLite store).
    pub leader: bool,
    /// The replica holding the leader lease now (PostgreSQL store; none while nobody holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_replica: Option<String>,
}
