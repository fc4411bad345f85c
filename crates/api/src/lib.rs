//! `refract-api`: the `/v1` wire types of the control plane, the only place that spells their JSON
//! field names. The server answers and reads them, the CLI, the quickstart and the tests build
//! and read them, and `/v1/openapi.json` is generated from them (`utoipa::ToSchema`).
//!
//! Data only: no logic, no IO (what the control plane does with a value lives there, in
//! extension traits of `refract_control_plane::api`).
//!
//! Field names are camelCase exactly as in the seeds, including the `mysql` prefix for every
//! backend. Request types reject unknown fields so that typos fail loudly, and leave out the
//! fields a client did not set when serialized (`null` means "clear" in PATCH bodies). Numbers
//! in requests are `i64` so that an out-of-range value gets the server's "field must be
//! between" message instead of a serde integer-width error.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The id and time types of the wire types, re-exported so that a client builds them with the
/// same crates.
pub use chrono::{DateTime, Utc};
pub use uuid::Uuid;

/// Timestamps in responses: RFC 3339 UTC with whole seconds (`2026-04-15T12:00:00Z`).
pub mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes RFC 3339 UTC with whole seconds.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// Reads any RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    /// The same for optional times (`null` when absent).
    pub mod option {
        use super::*;

        /// Reads any RFC 3339 time, or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<DateTime<Utc>>::deserialize(d)
        }

        /// Writes RFC 3339 UTC with whole seconds, or `null`.
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
pub mod int {
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
pub mod obj {
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

api_enum!(
    /// How an engine keeps fresh: `poll` periodic full reload; `binlog` MySQL CDC; `logical`
    /// PostgreSQL CDC; `cdc` SQL Server CDC.
    SyncMode { Poll = "poll", Binlog = "binlog", Logical = "logical", Cdc = "cdc" }
);

api_enum!(
    /// Engine size; sets `taskCpu` and `taskMemoryMb`.
    InstanceSize {
        Nano = "nano", Small = "small", Medium = "medium", Large = "large", Xlarge = "xlarge",
        X2large = "2xlarge",
    }
);

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
    /// What an engine's change loop does now (`InstanceView::replication.state`).
    ReplicationState {
        /// First load (CDC: before the first stream).
        Loading = "loading",
        /// Poll mode, loads succeed.
        Polling = "polling",
        /// A CDC mode that cannot run here was requested; the engine polls.
        PollFallback = "poll_fallback",
        /// A change stream runs.
        Streaming = "streaming",
        /// CDC: a full resync runs.
        Reloading = "reloading",
        /// CDC: the stream was lost; reconnecting with backoff.
        Reconnecting = "reconnecting",
        /// Replication paused (the snapshot is frozen).
        Paused = "paused",
        /// The last load (poll) or the stream's setup (CDC) failed.
        Error = "error",
    }
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

/// The error body of every failed request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_request` (400, or 422 for a rule the schema cannot state),
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `action_not_allowed`, `too_large`,
    /// `method_not_allowed`, `not_implemented` (`/api/v1`), `store_unavailable` (503: the PostgreSQL
    /// metadata store cannot be reached), `internal`.
    pub error: String,
    /// A sentence for a person; names the field and rule for validation errors.
    pub message: String,
}

// ---------------------------------------------------------------- customers and keys

/// A customer (tenant). Every resource belongs to exactly one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// The new customer and its first management key (the `key` is shown only here).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomerResponse {
    /// The customer.
    pub customer: Customer,
    /// Its first management key, with `key`.
    pub management_key: ManagementKey,
}

/// `PATCH /v1/admin/customers/{id}/plan`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPlanRequest {
    /// New plan.
    pub plan: Plan,
}

/// Answer of `PATCH /v1/admin/customers/{id}/plan`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
}

/// `POST /v1/account/management-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- connections

/// A source database connection shared by one or more databases. The password is never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
}

/// `GET /v1/connections/{id}`: the connection and its non-deleted databases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionWithDatabases {
    /// The connection's fields.
    #[serde(flatten)]
    pub connection: Connection,
    /// Its non-deleted databases.
    pub databases: Vec<Database>,
}

/// `POST /v1/connections` (seed 001).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConnectionRequest {
    /// Source engine; default `mysql`.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// ≥ 1 schema names; for `sqlite` `["main"]` (the default).
    #[schema(schema_with = schema_names)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_schemas: Option<Vec<String>>,
    /// Login user (≥ 1 character; optional for `sqlite`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (≥ 1 character; optional for `sqlite`). Kept only in the encrypted secret store.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to the source; default `prefer`. `sqlite`: only `disable` (or leave it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s) to trust, PEM text (`-----BEGIN CERTIFICATE-----`…), at most 64 KiB;
    /// checked on input (422 when it is no certificate). Kept only in the encrypted secret
    /// store, like the password. Not for `sqlite`.
    #[schema(min_length = 1, max_length = 65536)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<String>,
    /// Default `poll`; a CDC mode must fit the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_mode: Option<SyncMode>,
    /// 5–3600 seconds, default 30; becomes `minSyncInterval`.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<i64>,
    /// Optional first database, created in the same transaction.
    #[serde(default, deserialize_with = "obj::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<CreateInstanceRequest>,
}

/// Declares a request that creates a database: its own fields first, then the settings every
/// new database takes (one declaration for `POST /v1/databases` and the `instance` of `POST
/// /v1/connections`; serde's `flatten` cannot be used with `deny_unknown_fields`).
macro_rules! new_database_request {
    (
        $(#[$attr:meta])* pub struct $name:ident { $($own:tt)* }
        name: $name_doc:literal, schema: $schema_doc:literal
    ) => {
        $(#[$attr])*
        pub struct $name {
            $($own)*
            #[doc = $name_doc]
            #[schema(
                min_length = 1,
                max_length = 100,
                pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
            )]
            pub name: String,
            #[doc = $schema_doc]
            #[schema(
                min_length = 1,
                max_length = 128,
                pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
            )]
            #[serde(rename = "mysqlDb")]
            pub schema: String,
            /// Default `nano`.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub instance_size: Option<InstanceSize>,
            /// Default `info`.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub log_level: Option<LogLevel>,
            /// 1–4294967295, unique per source host and port.
            #[schema(minimum = 1, maximum = 4294967295_i64)]
            #[serde(default, deserialize_with = "int::opt")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub binlog_server_id: Option<i64>,
            /// Engine copies, 1–10; default 1. More than 1 needs the Kubernetes runtime.
            #[schema(minimum = 1, maximum = 10)]
            #[serde(default, deserialize_with = "int::opt")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub replicas: Option<i64>,
        }
    };
}

new_database_request! {
    /// The optional `instance` of `POST /v1/connections`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct CreateInstanceRequest {}
    name: "Display name, 1–100 characters (not only spaces), unique within the connection.",
    schema: "Schema to use; must be in `availableSchemas`."
}

/// Answer of `POST /v1/connections`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateConnectionResponse {
    /// The new connection.
    pub connection: Connection,
    /// The database created from `instance`, or `null`.
    pub database: Option<Database>,
}

/// `PATCH /v1/connections/{id}` (seed 003): every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConnectionRequest {
    /// 1–100 characters (not only spaces), unique per customer.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlHost")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// 1–65535.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(rename = "mysqlPort")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// ≥ 1 item; removing a schema in use is a 409.
    #[schema(schema_with = schema_names)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_schemas: Option<Vec<String>>,
    /// ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// ≥ 1 character; used from the next provision, rebuild or resume.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to the source; used from the next provision, rebuild or resume. `sqlite`: only
    /// `disable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s), PEM, at most 64 KiB (see create); `null` removes the stored one.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 65536)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<Option<String>>,
    /// Sets `allowedSyncModes` to `poll` plus this CDC mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_mode: Option<SyncMode>,
    /// 5–3600; becomes `minSyncInterval`.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<i64>,
}

/// `POST /v1/connections/test-connection`: credentials to try, nothing is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConnectionRequest {
    /// Default `mysql`.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Login user (1–128 characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlUser")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (1–1024 characters).
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    #[serde(rename = "mysqlPassword")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to the source; default `prefer`. `sqlite`: only `disable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// CA certificate(s), PEM, at most 64 KiB (see `POST /v1/connections`).
    #[schema(min_length = 1, max_length = 65536)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<String>,
}

/// Result of a connection test (always HTTP 200; `ok:false` with `error` when it failed). This is
/// the served body: the control plane converts the sources crate's report into it field for
/// field, so the document and the answer cannot drift apart. Fields without a value are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestConnectionResult {
    /// The login worked.
    pub ok: bool,
    /// Why not, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The session was encrypted with TLS (absent when the login failed, and for `sqlite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// The TLS version (`TLSv1.3`) when TLS was used and the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Round trip of a trivial query, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Data size of the visible schemas, GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_size_gb: Option<f64>,
    /// Visible schemas (MySQL) or databases (PostgreSQL), without system ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_schemas: Option<Vec<String>>,
    /// MySQL/MariaDB binlog readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogReadiness>,
    /// PostgreSQL logical replication readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical: Option<LogicalReadiness>,
    /// What works but not as expected, for a person (tables without a primary key, key
    /// constraints or tables the user cannot read, at most 20 names each); absent when there is
    /// nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Whether a MySQL/MariaDB source can feed `binlog` mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

new_database_request! {
    /// `POST /v1/databases` (seed 000).
    #[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct RegisterDatabaseRequest {
        /// The connection providing the source credentials.
        pub connection_id: Uuid,
    }
    name: "1–100 characters (not only spaces), unique within the connection.",
    schema: "Must be in the connection's `availableSchemas`."
}

/// `PATCH /v1/databases/{id}`: every field optional; `null` clears the nullable ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDatabaseRequest {
    /// 1–100 characters (not only spaces), unique within the connection.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only in `registered`, `failed`, `stopped`, `terminated`; ≥ 1 character.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    #[serde(rename = "mysqlDb")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Engine size (within the plan's largest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_size: Option<InstanceSize>,
    /// Log level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// 1–4294967295 and unique per source host and port; `null` clears.
    #[serde(default, deserialize_with = "int::double_opt")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binlog_server_id: Option<Option<i64>>,
    /// Engine copies, 1–10 (a pending change until a reconfigure). More than 1 needs the
    /// Kubernetes runtime.
    #[schema(minimum = 1, maximum = 10)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// `small` `medium` `large` or `null`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BuildCompute>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_compute_override: Option<Option<BuildCompute>>,
    /// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, unique, Teams plan and up; `null` clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflexdb_custom_domain: Option<Option<String>>,
    /// Schedule or `null`.
    #[serde(default, deserialize_with = "obj::double_opt")]
    #[schema(value_type = Option<PauseSchedule>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_schedule: Option<Option<PauseSchedule>>,
    /// ≤ 5 tags with distinct labels (replaces the list).
    #[schema(max_items = 5)]
    #[serde(default, deserialize_with = "obj::vec_opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Must be in the connection's `allowedSyncModes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_mode: Option<SyncMode>,
    /// ≥ the connection's `minSyncInterval`, ≤ 3600.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<i64>,
    /// 0 (off) or 60–86400 seconds.
    #[schema(schema_with = safety_net)]
    #[serde(default, deserialize_with = "int::opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_net: Option<i64>,
}

/// Filters of `GET /v1/databases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DatabaseFilter {
    /// Only databases of this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<Uuid>,
    /// Only databases in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Only databases with a tag of this label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `GET /health`: this replica answers and reads its metadata store (a store it cannot reach
/// is a 503 `store_unavailable`), and whether it leads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

// ---------------------------------------------------------------- lifecycle routes

/// `mode` of an allowed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Done now.
    Immediate,
    /// Recorded as `desiredState`; done when a stable status is reached.
    Queued,
}

/// Status of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Waiting for the connection test or a build slot.
    Queued,
    /// Introspecting the source and producing the manifest.
    InProgress,
    /// The manifest (artifact) exists.
    Succeeded,
    /// The build stopped; `error` says why.
    Failed,
}

impl BuildStatus {
    /// Storage and API spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::InProgress => "in_progress",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => BuildStatus::Queued,
            "in_progress" => BuildStatus::InProgress,
            "succeeded" => BuildStatus::Succeeded,
            "failed" => BuildStatus::Failed,
            _ => return None,
        })
    }
}

/// Answer of every action endpoint (202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimits {
    /// Smallest allowed `syncInterval`.
    pub min_sync_interval: i64,
    /// Sync modes the connection allows.
    pub allowed_sync_modes: Vec<SyncMode>,
    /// Schemas databases may use.
    pub available_schemas: Vec<String>,
}

/// How changes reach a running engine, as of the last health check (`InstanceView::replication`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationView {
    /// The mode that runs: `poll`, `binlog` or `logical` (`poll` when a CDC mode fell back).
    pub mode: String,
    /// What the change loop does now.
    pub state: ReplicationState,
    /// Poll: age of the data; CDC: age of the open batch (0 when caught up). `null` before the
    /// first load.
    pub lag_ms: Option<u64>,
    /// While the loop is failing (`state` neither `loading`, `polling`, `streaming` nor
    /// `paused`): the cause and the fix, when the engine knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While the loop is failing: whether the cause is a source setup problem (grants,
    /// publication, server id, binlog off) that retrying does not fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
}

/// The running engine of a database.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// How changes reach the engine, as of the last health check.
    pub replication: Option<ReplicationView>,
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildsResponse {
    /// Newest first.
    pub builds: Vec<BuildView>,
    /// The build the running engine uses.
    pub active_build_id: Option<Uuid>,
}

/// One status transition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    /// Newest first.
    pub events: Vec<EventView>,
}

/// Paging of `GET /v1/databases/{id}/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only events with a smaller id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// `POST /v1/databases/{id}/redeploy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeployRequest {
    /// A deployable build of this database.
    pub build_id: Uuid,
}

/// `POST /v1/databases/{id}/resize`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResizeRequest {
    /// New size.
    pub instance_size: InstanceSize,
}

/// `POST /v1/databases/{id}/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A query key (`rxk_<keyId>.<secret>`) of a database; only a SHA-256 of the secret is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
