//! [`ServerRuntime`]: where managed servers run when it is not this host's processes.
//!
//! By default (no `ServerRuntime` set) every server is one or more local processes run through
//! the runtime driver, node by node, exactly as the reconciler's steps describe
//! (`reconciler.rs`: data directories, standbys, failover, TLS files, PgBouncer pools, backups
//! with local tools). A `ServerRuntime` replaces all of that with a platform that runs the
//! whole server itself — the Kubernetes runtime (`refract_kubernetes::KubernetesServers`:
//! CloudNativePG for PostgreSQL, StatefulSets for MySQL and Redis). The managed crate then only
//! declares what should exist ([`ServerSpec`]), reads back what the platform reports
//! ([`ServerState`]), and hands out the platform's [`Endpoint`]; it never depends on the
//! platform's crate (the binary builds the runtime and hands it over).
//!
//! What a platform runtime does not offer is refused by the API with a 422 that names the
//! runtime ([`unsupported`]), never silently skipped (docs/kubernetes.md, "Managed servers").

use refract_runtime::BoxFuture;

use crate::api::{Credentials, DbType};
use crate::catalog::{self, ResolvedVersion};
use crate::engines::{database_name, APP_USER};
use crate::error::ManagedError;
use crate::store::DbRecord;

/// What one managed server should be, as its platform needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The database id (`db_…`); the platform derives its object names from it.
    pub id: String,
    /// The engine.
    pub db_type: DbType,
    /// The engine version to run (an image tag: `16`, `11.4`, `7.2`).
    pub version: String,
    /// Servers: a primary and `nodes - 1` standbys (PostgreSQL only on a platform runtime).
    pub nodes: u32,
    /// Volume size per server, GiB.
    pub storage_gb: u32,
    /// vCPUs of the plan.
    pub vcpus: u32,
    /// Memory of the plan, MiB.
    pub memory_mb: u64,
    /// The application database (PostgreSQL, MySQL).
    pub database: String,
    /// The application user.
    pub user: String,
    /// Its password, from the secret store (the platform keeps it only in its own secret).
    pub password: String,
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpec")
            .field("id", &self.id)
            .field("db_type", &self.db_type)
            .field("version", &self.version)
            .field("nodes", &self.nodes)
            .field("storage_gb", &self.storage_gb)
            .field("password", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl ServerSpec {
    /// What changes the platform's objects, without the password: the reconciler applies again
    /// when it differs from what it last applied (a new plan, more replicas, more storage).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}/{}/{}/{}",
            self.db_type,
            self.version,
            self.nodes,
            self.storage_gb,
            self.vcpus,
            self.memory_mb,
            self.database,
            self.user
        )
    }
}

/// What the platform reports about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Created or starting, not every server ready yet.
    NotReady {
        /// Servers ready so far.
        ready: u32,
    },
    /// Every server ready.
    Ready,
    /// Stopped on request (volumes kept).
    Stopped,
    /// The platform reports a failure, with its reason (a pod in CrashLoopBackOff, an operator's
    /// failed phase).
    Failed(String),
}

/// Where clients reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A host name (a cluster DNS name).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Whether the server serves TLS there (the credentials' `ssl_mode`).
    pub tls: bool,
}

/// A platform that runs whole managed servers (see the module documentation). Every method
/// reads or writes the platform's truth; nothing is cached between calls, so a restarted
/// control plane picks up where it was.
pub trait ServerRuntime: Send + Sync + 'static {
    /// The runtime's name in messages (`kubernetes`).
    fn name(&self) -> &'static str;

    /// The version to record and run for `db_type` (`requested` as the API gave it), or why
    /// it cannot run here (a 422). The default: the catalog's versions (see
    /// [`catalog::resolve_image_version`]).
    fn resolve_version(
        &self,
        db_type: DbType,
        requested: Option<&str>,
    ) -> Result<ResolvedVersion, String> {
        catalog::resolve_image_version(db_type, requested, self.name())
    }

    /// Creates the server's objects, or updates them to `spec` — which also starts a stopped
    /// server. Idempotent.
    fn apply<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, anyhow::Result<()>>;

    /// What the platform reports; `None` when the server has no objects.
    fn state<'a>(
        &'a self,
        id: &'a str,
        db_type: DbType,
    ) -> BoxFuture<'a, anyhow::Result<Option<ServerState>>>;

    /// Stops the server, keeping its volumes; absent objects are not an error.
    fn stop<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Restarts the server's processes in place (a rolling restart).
    fn restart<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Deletes everything of the server, its volumes included; absent objects are not an error.
    fn delete<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Where clients reach the server's primary.
    fn endpoint(&self, id: &str, db_type: DbType) -> Endpoint;
}

/// The 422 of a feature a platform runtime does not offer (yet).
pub fn unsupported(what: &str, runtime: &str) -> ManagedError {
    ManagedError::Unprocessable(format!(
        "{what} is not supported on the {runtime} runtime yet (docs/kubernetes.md, \"Managed servers on Kubernetes\")"
    ))
}

/// The spec of database `d` with application password `password`.
pub fn spec_of(d: &DbRecord, password: String) -> Result<ServerSpec, ManagedError> {
    let plan = catalog::plan(&d.plan_id).ok_or_else(|| {
        ManagedError::Internal(anyhow::anyhow!(
            "database {} has unknown plan {}",
            d.id,
            d.plan_id
        ))
    })?;
    Ok(ServerSpec {
        id: d.id.clone(),
        db_type: d.db_type,
        version: image_tag(d),
        nodes: d.replicas.max(1) as u32,
        storage_gb: d.storage_gb.max(1) as u32,
        vcpus: plan.vcpus,
        memory_mb: plan.memory_mb,
        database: database_name(&d.slug),
        user: APP_USER.into(),
        password,
    })
}

/// The version recorded for a platform server is `16`, `MariaDB 11.4` or `7.2`: its image tag
/// is the number.
fn image_tag(d: &DbRecord) -> String {
    d.version
        .rsplit(' ')
        .next()
        .unwrap_or(&d.version)
        .to_string()
}

/// The credentials document of a platform server reached at `e`.
pub fn credentials_at(d: &DbRecord, e: &Endpoint, password: &str) -> Credentials {
    let (host, port, pw) = (&e.host, e.port, password);
    let db = database_name(&d.slug);
    let ssl = if e.tls { "require" } else { "disable" };
    match d.db_type {
        DbType::Postgresql => Credentials {
            host: host.clone(),
            port,
            username: Some(APP_USER.into()),
            password: pw.into(),
            database: Some(db.clone()),
            ssl_mode: Some(ssl.into()),
            connection_string: format!(
                "postgresql://{APP_USER}:{pw}@{host}:{port}/{db}?sslmode={ssl}"
            ),
        },
        DbType::Mysql => Credentials {
            host: host.clone(),
            port,
            username: Some(APP_USER.into()),
            password: pw.into(),
            database: Some(db.clone()),
            ssl_mode: Some(ssl.into()),
            connection_string: format!(
                "mysql://{APP_USER}:{pw}@{host}:{port}/{db}?ssl-mode={}",
                if e.tls { "REQUIRED" } else { "DISABLED" }
            ),
        },
        DbType::Redis => Credentials {
            host: host.clone(),
            port,
            username: None,
            password: pw.into(),
            database: None,
            ssl_mode: Some(ssl.into()),
            connection_string: format!(
                "{}://default:{pw}@{host}:{port}/0",
                if e.tls { "rediss" } else { "redis" }
            ),
        },
        DbType::Mongodb => Credentials {
            host: host.clone(),
            port,
            username: Some(APP_USER.into()),
            password: pw.into(),
            database: Some(db.clone()),
            ssl_mode: Some(ssl.into()),
            connection_string: format!(
                "mongodb://{APP_USER}:{pw}@{host}:{port}/{db}?authSource=admin"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_and_credentials_of_a_platform_server() {
        let mut d = crate::store::test_record("db_abc", "main-pg", DbType::Postgresql);
        d.version = "16".into();
        d.replicas = 3;
        let s = spec_of(&d, "pw".into()).unwrap();
        assert_eq!((s.version.as_str(), s.nodes), ("16", 3));
        assert_eq!(s.database, "main_pg");
        assert!(!format!("{s:?}").contains("pw\""), "{s:?}");
        d.version = "MariaDB 11.4".into();
        assert_eq!(image_tag(&d), "11.4");
        let e = Endpoint {
            host: "refract-s-db-abc-rw.ns.svc".into(),
            port: 5432,
            tls: true,
        };
        d.db_type = DbType::Postgresql;
        let c = credentials_at(&d, &e, "pw");
        assert_eq!(
            c.connection_string,
            "postgresql://app_user:pw@refract-s-db-abc-rw.ns.svc:5432/main_pg?sslmode=require"
        );
        d.db_type = DbType::Redis;
        let e = Endpoint {
            tls: false,
            port: 6379,
            ..e
        };
        assert!(credentials_at(&d, &e, "pw")
            .connection_string
            .starts_with("redis://default:pw@"));
    }
}
