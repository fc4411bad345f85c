//! The `/v1` types as the control plane uses them: every wire type of `refract-api` (the one
//! place that spells their JSON field names), plus what the control plane keeps beside them.
//!
//! Three wire types are stored with fields the API never shows: their rows
//! ([`crate::store::DatabaseRow`], `ConnectionRow`, `ManagementKeyRow`) live in the store, so a
//! bare `Database`, `Connection` or `ManagementKey` here is always the wire value.
//! What the control plane derives from wire values (default ports, sizes, conversions to the
//! sources crate) is in the `…Ext` traits here, since the wire crate holds data only.

pub use refract_api::*;

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
