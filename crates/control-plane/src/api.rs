//! The `/v1` types as the control plane uses them: every wire type of `refract-api` (the one
//! place that spells their JSON field names), plus what the control plane keeps beside them.
//!
//! Three wire types are stored with fields the API never shows: a [`Database`] with the
//! reconciler's [`DatabaseInternal`], a [`Connection`] and a [`ManagementKey`] with the names
//! of their secrets. Each is the wire value plus those fields; it dereferences to the wire
//! value and serializes (and documents itself) exactly as it, so a handler answers it as is.
//! What the control plane derives from wire values (default ports, sizes, conversions to the
//! sources crate) is in the `…Ext` traits here, since the wire crate holds data only.

use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

pub use refract_api::*;

/// Serializes as its `wire` field, dereferences to it, and documents itself as it (same schema
/// name, so `/v1/openapi.json` names the wire type).
macro_rules! stored_wire_type {
    ($name:ident) => {
        impl Deref for $name {
            type Target = refract_api::$name;
            fn deref(&self) -> &Self::Target {
                &self.wire
            }
        }
        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.wire
            }
        }
        impl From<$name> for refract_api::$name {
            fn from(stored: $name) -> Self {
                stored.wire
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <refract_api::$name as utoipa::PartialSchema>::schema()
            }
        }
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                <refract_api::$name as utoipa::ToSchema>::name()
            }
            fn schemas(
                schemas: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                <refract_api::$name as utoipa::ToSchema>::schemas(schemas)
            }
        }
    };
}

/// A database as stored: the wire [`refract_api::Database`] and the reconciler's bookkeeping.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Database {
    /// What the API shows.
    pub wire: refract_api::Database,
    /// Lifecycle bookkeeping the API does not show.
    #[serde(skip)]
    pub internal: DatabaseInternal,
}
stored_wire_type!(Database);

/// Kind of a lifecycle operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Test, build, deploy.
    Provision,
    /// Test, build, deploy beside the running engine.
    Rebuild,
    /// Deploy a past build.
    Redeploy,
    /// Deploy the active build with the current settings.
    Reconfigure,
    /// Deploy with a new size.
    Resize,
    /// Deploy the active build after a pause.
    Resume,
    /// Stop the engine, keep everything else.
    Pause,
    /// Stop the engine and remove its runtime resources.
    Terminate,
    /// Start a fresh engine for a `running` database that has none.
    Restart,
}

impl OpKind {
    const ALL: [OpKind; 9] = [
        OpKind::Provision,
        OpKind::Rebuild,
        OpKind::Redeploy,
        OpKind::Reconfigure,
        OpKind::Resize,
        OpKind::Resume,
        OpKind::Pause,
        OpKind::Terminate,
        OpKind::Restart,
    ];

    /// The kind named `s` in the `op_kind` column.
    pub fn parse(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Name in the `op_kind` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpKind::Provision => "provision",
            OpKind::Rebuild => "rebuild",
            OpKind::Redeploy => "redeploy",
            OpKind::Reconfigure => "reconfigure",
            OpKind::Resize => "resize",
            OpKind::Resume => "resume",
            OpKind::Pause => "pause",
            OpKind::Terminate => "terminate",
            OpKind::Restart => "restart",
        }
    }
}

/// The step an operation in flight is at (`op_step` column, `operation.step` of
/// `GET /v1/databases/{id}/instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStep {
    /// Checking the source before a build.
    TestConnection,
    /// Waiting for one of the build slots.
    WaitBuildSlot,
    /// Building the manifest.
    Build,
    /// Starting the new engine.
    StartEngine,
    /// Waiting for the new engine's first snapshot.
    WaitHealthy,
    /// Stopping the engine (pause, terminate).
    StopEngine,
}

impl OpStep {
    const ALL: [OpStep; 6] = [
        OpStep::TestConnection,
        OpStep::WaitBuildSlot,
        OpStep::Build,
        OpStep::StartEngine,
        OpStep::WaitHealthy,
        OpStep::StopEngine,
    ];

    /// Name in the `op_step` column and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpStep::TestConnection => "test_connection",
            OpStep::WaitBuildSlot => "wait_build_slot",
            OpStep::Build => "build",
            OpStep::StartEngine => "start_engine",
            OpStep::WaitHealthy => "wait_healthy",
            OpStep::StopEngine => "stop_engine",
        }
    }

    /// The step named `s` in the `op_step` column.
    pub fn parse(s: &str) -> Option<OpStep> {
        OpStep::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The operation in flight as a database row records it: one typed record (the ops record's
/// `OpData` holds the rest: ids, engines, what to roll back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInFlight {
    /// What it does.
    pub kind: OpKind,
    /// Where it is.
    pub step: OpStep,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Retry count of the current step.
    pub attempt: i64,
}

impl OperationInFlight {
    /// From the row's columns: an operation when kind, step and start are all there.
    pub fn from_columns(
        kind: Option<OpKind>,
        step: Option<OpStep>,
        started_at: Option<DateTime<Utc>>,
        attempt: i64,
    ) -> Option<OperationInFlight> {
        Some(OperationInFlight {
            kind: kind?,
            step: step?,
            started_at: started_at?,
            attempt,
        })
    }
}

/// Fields of a database row that belong to the reconciler, not the API.
#[derive(Debug, Clone, Default)]
pub struct DatabaseInternal {
    /// The operation in flight, if any.
    pub operation: Option<OperationInFlight>,
    /// Runtime settings as last deployed (JSON of [`RuntimeSettings`]), `None` if never.
    pub deployed_config: Option<serde_json::Value>,
    /// The build the running engine uses.
    pub active_build_id: Option<Uuid>,
    /// `reflexdb.yaml` text, `None` = default config.
    pub schema_config: Option<String>,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
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

/// A connection as stored: the wire [`refract_api::Connection`] and the names of its secrets.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Connection {
    /// What the API shows.
    pub wire: refract_api::Connection,
    /// Name of the password in the secret store (never the password). Never serialized.
    #[serde(skip)]
    pub password_secret: Option<String>,
    /// Name of the CA certificate in the secret store. Never serialized.
    #[serde(skip)]
    pub ssl_root_cert_secret: Option<String>,
}
stored_wire_type!(Connection);

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

/// A management key as stored: the wire [`refract_api::ManagementKey`] and its secret's hash.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ManagementKey {
    /// What the API shows.
    pub wire: refract_api::ManagementKey,
    /// SHA-256 (hex) of the secret part. Never serialized.
    #[serde(skip)]
    pub secret_sha256: String,
}
stored_wire_type!(ManagementKey);

/// What the control plane derives from a [`RuntimeSettings`].
pub trait RuntimeSettingsExt {
    /// The engine copies to run (at least 1).
    fn replica_count(&self) -> u32;
}

impl RuntimeSettingsExt for RuntimeSettings {
    fn replica_count(&self) -> u32 {
        self.replicas.clamp(1, i64::from(u32::MAX)) as u32
    }
}

/// What the control plane derives from a [`Backend`].
pub trait BackendExt {
    /// Default port when none is given.
    fn default_port(&self) -> Option<i64>;
    /// The sources crate's spelling.
    fn to_source(self) -> refract_schema::Backend;
}

impl BackendExt for Backend {
    fn default_port(&self) -> Option<i64> {
        match self {
            Backend::Mysql => Some(3306),
            Backend::Postgres => Some(5432),
            Backend::Mssql => Some(1433),
            Backend::Sqlite => None,
        }
    }

    fn to_source(self) -> refract_schema::Backend {
        match self {
            Backend::Mysql => refract_schema::Backend::Mysql,
            Backend::Postgres => refract_schema::Backend::Postgres,
            Backend::Mssql => refract_schema::Backend::Mssql,
            Backend::Sqlite => refract_schema::Backend::Sqlite,
        }
    }
}

/// What the control plane derives from an [`SslMode`].
pub trait SslModeExt {
    /// The sources crate's mode.
    fn to_source(self) -> refract_sources::SslMode;
}

impl SslModeExt for SslMode {
    fn to_source(self) -> refract_sources::SslMode {
        match self {
            SslMode::Disable => refract_sources::SslMode::Disable,
            SslMode::Prefer => refract_sources::SslMode::Prefer,
            SslMode::Require => refract_sources::SslMode::Require,
            SslMode::VerifyCa => refract_sources::SslMode::VerifyCa,
            SslMode::VerifyFull => refract_sources::SslMode::VerifyFull,
        }
    }
}

/// What the control plane derives from a [`SyncMode`].
pub trait SyncModeExt {
    /// The backend a CDC mode needs (`None` for `poll`, which fits every backend).
    fn required_backend(&self) -> Option<Backend>;
}

impl SyncModeExt for SyncMode {
    fn required_backend(&self) -> Option<Backend> {
        match self {
            SyncMode::Poll => None,
            SyncMode::Binlog => Some(Backend::Mysql),
            SyncMode::Logical => Some(Backend::Postgres),
            SyncMode::Cdc => Some(Backend::Mssql),
        }
    }
}

/// What the control plane derives from an [`InstanceSize`].
pub trait InstanceSizeExt {
    /// CPU units (1024 = one vCPU) and memory in MiB.
    fn resources(&self) -> (i64, i64);
    /// Position in the size order, for plan limits.
    fn rank(&self) -> usize;
}

impl InstanceSizeExt for InstanceSize {
    fn resources(&self) -> (i64, i64) {
        match self {
            InstanceSize::Nano => (256, 512),
            InstanceSize::Small => (512, 1024),
            InstanceSize::Medium => (1024, 2048),
            InstanceSize::Large => (2048, 4096),
            InstanceSize::Xlarge => (4096, 8192),
            InstanceSize::X2large => (8192, 16384),
        }
    }

    fn rank(&self) -> usize {
        InstanceSize::ALL
            .iter()
            .position(|s| s == self)
            .unwrap_or(0)
    }
}

/// The served body of a connection test, from the sources crate's report (field for field).
pub fn test_connection_result(r: refract_sources::TestConnectionReport) -> TestConnectionResult {
    TestConnectionResult {
        ok: r.ok,
        error: r.error,
        tls: r.tls,
        tls_version: r.tls_version,
        latency_ms: r.latency_ms,
        estimated_size_gb: r.estimated_size_gb,
        available_schemas: r.available_schemas,
        binlog: r.binlog.map(|b| BinlogReadiness {
            log_bin: b.log_bin,
            format: b.format,
            server_id: b.server_id,
            ready: b.ready,
            issues: b.issues,
        }),
        logical: r.logical.map(|l| LogicalReadiness {
            wal_level: l.wal_level,
            ready: l.ready,
            issues: l.issues,
        }),
        warnings: r.warnings,
    }
}

#[cfg(test)]
mod operation_names {
    use super::{OpKind, OpStep};

    /// The names in the `op_kind` / `op_step` columns read back as what wrote them.
    #[test]
    fn every_kind_and_step_reads_back_from_its_name() {
        for k in OpKind::ALL {
            assert_eq!(OpKind::parse(k.as_str()), Some(k));
        }
        for s in OpStep::ALL {
            assert_eq!(OpStep::parse(s.as_str()), Some(s));
        }
        assert_eq!(OpKind::parse("deploying"), None);
        assert_eq!(OpStep::parse("provision"), None);
    }
}
