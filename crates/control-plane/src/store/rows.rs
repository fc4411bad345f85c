//! The rows the store keeps for three wire types, and the reconciler's typed record of the
//! operation in flight.
//!
//! A [`DatabaseRow`] is the wire [`Database`] plus the reconciler's [`DatabaseInternal`]; a
//! [`ConnectionRow`] and a [`ManagementKeyRow`] are the wire [`Connection`] and
//! [`ManagementKey`] plus the names (or hash) of their secrets. Each dereferences to its wire
//! value and converts into it; a row is deliberately not `Serialize`, so a handler answers (and
//! `/v1/openapi.json` documents) the wire value and what the API never shows cannot leak into a
//! body. Inside the control plane a bare `Database`, `Connection` or `ManagementKey` is always
//! the wire value.

use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use crate::api::{
    Connection, Database, DateTime, InstanceSize, InstanceSizeExt, LogLevel, ManagementKey,
    RuntimeSettings, Status, SyncMode, Utc, Uuid,
};

/// `Row => Wire`: the row dereferences to its `wire` field (of the wire type `Wire`) and converts
/// into it.
macro_rules! stored_wire_type {
    ($row:ident => $wire:ident) => {
        impl Deref for $row {
            type Target = refract_api::$wire;
            fn deref(&self) -> &Self::Target {
                &self.wire
            }
        }
        impl DerefMut for $row {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.wire
            }
        }
        impl From<$row> for refract_api::$wire {
            fn from(stored: $row) -> Self {
                stored.wire
            }
        }
    };
}

/// A database as stored: the wire [`Database`] and the reconciler's bookkeeping.
#[derive(Debug, Clone)]
pub struct DatabaseRow {
    /// What the API shows.
    pub wire: Database,
    /// Lifecycle bookkeeping the API does not show.
    pub internal: DatabaseInternal,
}
stored_wire_type!(DatabaseRow => Database);

/// What a new database is registered with; everything else starts empty (no error, endpoint,
/// tags, intent or operation) and its resources follow its size.
#[derive(Debug, Clone)]
pub struct NewDatabase {
    /// The new database's id.
    pub id: Uuid,
    /// Owner.
    pub customer_id: Uuid,
    /// The connection it reads from.
    pub connection_id: Uuid,
    /// Name, unique per connection.
    pub name: String,
    /// Source schema it serves.
    pub schema: String,
    /// How it follows the source.
    pub sync_mode: SyncMode,
    /// Seconds between polls.
    pub sync_interval: i64,
    /// Size; sets CPU and memory.
    pub instance_size: InstanceSize,
    /// Engine copies to run.
    pub replicas: i64,
    /// Engine log level.
    pub log_level: LogLevel,
    /// Where it runs.
    pub region: String,
    /// Replica id on a MariaDB/MySQL source (binlog mode).
    pub binlog_server_id: Option<i64>,
    /// Creation time.
    pub at: DateTime<Utc>,
}

impl DatabaseRow {
    /// A database as registered: status `registered`, nothing deployed yet.
    pub fn registered(new: NewDatabase) -> DatabaseRow {
        let (task_cpu, task_memory_mb) = new.instance_size.resources();
        DatabaseRow {
            wire: Database {
                id: new.id,
                customer_id: new.customer_id,
                connection_id: new.connection_id,
                name: new.name,
                schema: new.schema,
                sync_mode: new.sync_mode,
                sync_interval: new.sync_interval,
                safety_net: 3600,
                task_cpu,
                task_memory_mb,
                replicas: new.replicas,
                log_level: new.log_level,
                status: Status::Registered,
                last_error: None,
                endpoint_url: None,
                health_status: None,
                build_compute_override: None,
                instance_size: new.instance_size,
                region: new.region,
                binlog_server_id: new.binlog_server_id,
                desired_state: None,
                reflexdb_custom_domain: None,
                pause_schedule: None,
                tags: Vec::new(),
                has_pending_changes: false,
                replication_paused: false,
                created_at: new.at,
                updated_at: new.at,
            },
            internal: DatabaseInternal::default(),
        }
    }
}

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
    /// Every kind.
    pub const ALL: [OpKind; 9] = [
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

impl DatabaseRow {
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

/// A connection as stored: the wire [`Connection`] and the names of its secrets.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    /// What the API shows.
    pub wire: Connection,
    /// Name of the password in the secret store (never the password).
    pub password_secret: Option<String>,
    /// Name of the CA certificate in the secret store.
    pub ssl_root_cert_secret: Option<String>,
}
stored_wire_type!(ConnectionRow => Connection);

impl ConnectionRow {
    /// The sync mode new databases start with: the CDC mode when one is allowed, else `poll`.
    pub fn default_sync_mode(&self) -> SyncMode {
        self.allowed_sync_modes
            .iter()
            .copied()
            .find(|m| *m != SyncMode::Poll)
            .unwrap_or(SyncMode::Poll)
    }
}

/// A management key as stored: the wire [`ManagementKey`] and its secret's hash.
#[derive(Debug, Clone)]
pub struct ManagementKeyRow {
    /// What the API shows.
    pub wire: ManagementKey,
    /// SHA-256 (hex) of the secret part.
    pub secret_sha256: String,
}
stored_wire_type!(ManagementKeyRow => ManagementKey);

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
