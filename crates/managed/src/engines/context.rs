//! What every engine recipe shares: the generated users, node ids and names, and [`Ctx`], the
//! database a step works on (with its helpers to build a server spec and run setup programs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use refract_runtime::{InstanceKind, InstanceSpec, Readiness};

use crate::api::DbType;
use crate::catalog::{Binaries, Plan};
use crate::os::{self, ServiceUser};
use crate::store::DbRecord;

/// Host every local server listens on.
pub const HOST: &str = "127.0.0.1";
/// The application user of PostgreSQL, MySQL and MongoDB servers.
pub use crate::credentials::APP_USER;
/// The generated superuser.
pub const ADMIN_USER: &str = "refract_admin";
/// The user standbys replicate with.
pub const REPLICATION_USER: &str = "refract_replicator";

/// How long a setup command (`initdb`, `pg_basebackup`, …) may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one login attempt may take.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Roles of the generated passwords, each a secret-store entry `managed/<db id>/<role>`.
pub const SECRET_ROLES: &[&str] = &["admin", "app", "replication"];

/// The secret-store name of one generated password.
pub fn secret_name(db_id: &str, role: &str) -> String {
    format!("managed/{db_id}/{role}")
}

/// The runtime-driver instance id of node `node` of a database.
pub fn instance_id(db_id: &str, node: usize) -> String {
    format!("{db_id}-n{node}")
}

/// The system user the engine's package creates (servers run as it when the control plane is root).
pub fn preferred_user(db_type: DbType) -> &'static str {
    match db_type {
        DbType::Postgresql => "postgres",
        DbType::Mysql => "mysql",
        DbType::Redis => "redis",
        DbType::Mongodb => "mongodb",
    }
}

/// The database (PostgreSQL database, MySQL schema) created for the application: the slug with
/// `_` for `-` (the seed's `main-postgres` → `main_postgres`), prefixed when it starts with a digit.
pub fn database_name(slug: &str) -> String {
    let mut name = slug.replace('-', "_");
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("db_{name}");
    }
    name.truncate(63);
    name
}

/// The generated passwords of one database.
#[derive(Clone)]
pub struct Creds {
    /// The superuser's.
    pub admin: String,
    /// The application user's (Redis: `requirepass`).
    pub app: String,
    /// The replication user's.
    pub replication: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Creds { .. }")
    }
}

/// Everything an engine step needs about one database.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The stored record (ports, plan, slug).
    pub db: DbRecord,
    /// Its plan.
    pub plan: &'static Plan,
    /// Installed binaries.
    pub bins: Arc<Binaries>,
    /// The user its servers run as.
    pub user: ServiceUser,
    /// `servers/<db id>`.
    pub db_dir: PathBuf,
    /// Its passwords.
    pub creds: Creds,
    /// The installation's CA: servers get certificates from it, Refract's own connections
    /// verify them with it.
    pub ca: Arc<crate::tls::Ca>,
    /// Plain-text logins accepted too ([`crate::ManagedConfig::allow_plaintext`]).
    pub allow_plaintext: bool,
    /// Departures from the plan's server settings (none for the managed service's servers;
    /// a standalone server's options, [`crate::StandaloneOptions`]).
    pub overrides: ServerOverrides,
}

/// Server settings that differ from what the plan and the service give every server; the
/// default changes nothing.
#[derive(Debug, Clone, Default)]
pub struct ServerOverrides {
    /// Connection limit instead of the plan's.
    pub max_connections: Option<u32>,
    /// No PostgreSQL WAL archiving (a server nobody backs up: its archive would only grow).
    pub no_wal_archive: bool,
    /// Addresses the server listens on besides [`HOST`] (loopback aliases such as 127.0.0.2).
    pub extra_listen_addresses: Vec<std::net::Ipv4Addr>,
    /// PostgreSQL: a Unix socket in the data directory too (password logins).
    pub unix_socket: bool,
    /// Redis: a plain-text port besides its TLS one.
    pub redis_plaintext_port: Option<u16>,
    /// PostgreSQL and MariaDB: no TLS at all, plain text only (a test of clients against a
    /// server that offers no TLS).
    pub no_tls: bool,
}

impl Ctx {
    /// Data directory of node `node`.
    pub fn node_dir(&self, node: usize) -> PathBuf {
        self.db_dir.join(format!("n{node}"))
    }

    /// The connection limit: the plan's unless overridden.
    pub fn max_connections(&self) -> u32 {
        self.overrides
            .max_connections
            .unwrap_or(self.plan.max_connections)
    }

    /// The addresses the servers listen on: [`HOST`] and any extra ones.
    pub fn listen_addresses(&self) -> Vec<String> {
        std::iter::once(HOST.to_string())
            .chain(
                self.overrides
                    .extra_listen_addresses
                    .iter()
                    .map(|a| a.to_string()),
            )
            .collect()
    }

    /// Port of node `node` (0 until allocated).
    pub fn port(&self, node: usize) -> u16 {
        self.db.ports.get(node).copied().unwrap_or(0)
    }

    /// Writes a fresh server certificate, its key and the CA certificate into node `node`'s
    /// directory (0600); see [`crate::tls::Ca::write_server_files`].
    pub(super) fn write_tls_files(&self, node: usize) -> anyhow::Result<()> {
        self.ca
            .write_server_files(&self.node_dir(node), &self.user, &["localhost", HOST])
    }

    /// The application database's name.
    pub fn database(&self) -> String {
        database_name(&self.db.slug)
    }

    pub(super) fn wrap(&self, program: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
        Ok(os::wrap(&self.user, self.bins.setpriv.as_deref(), program)?)
    }

    /// A server spec running `program args…` as the service user, ready when its port accepts.
    pub(super) fn server_spec(
        &self,
        node: usize,
        program: &Path,
        args: Vec<String>,
    ) -> anyhow::Result<InstanceSpec> {
        let (exe, mut full) = self.wrap(program)?;
        full.extend(args);
        let mut spec = InstanceSpec::new(
            instance_id(&self.db.id, node),
            InstanceKind::Server,
            exe,
            Readiness::TcpPort(self.port(node)),
        );
        spec.args = full;
        spec.memory_limit_mb = Some(self.plan.memory_mb);
        Ok(spec)
    }

    /// Runs a setup program as the service user in the database's directory.
    pub(crate) async fn run(
        &self,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> anyhow::Result<String> {
        os::run_as(
            &self.user,
            self.bins.setpriv.as_deref(),
            os::Setup {
                program,
                args,
                env,
                stdin,
                cwd: &self.db_dir,
                timeout: SETUP_TIMEOUT,
            },
        )
        .await
    }
}

/// A password as an SQL string literal. Generated passwords are alphanumeric; anything else is
/// refused rather than escaped.
pub(crate) fn sql_password(pw: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !pw.is_empty() && pw.bytes().all(|b| b.is_ascii_alphanumeric()),
        "a stored password is not alphanumeric"
    );
    Ok(format!("'{pw}'"))
}
