//! Engine recipes: how each engine's servers are initialized, started, bootstrapped (users and
//! database), checked (a login with the generated credentials) and replicated.
//!
//! Every server is one runtime-driver instance `<db id>-n<k>` (node 0 is the primary, 1… are
//! standbys) with its data in `servers/<db id>/n<k>/`, owned by the engine's [`ServiceUser`].
//! The functions here dispatch on the engine; each engine module has the same five steps:
//! `prepare` (new data directory), `spec` (config files + how to run), `bootstrap` (first start of
//! the primary), `check_login`, `replica_health`.

mod mariadb;
mod mongodb;
mod postgres;
mod redis;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use refract_runtime::{InstanceKind, InstanceSpec, Readiness};

use crate::api::{Credentials, DbType, ReplicaHealth};
use crate::catalog::{Binaries, Plan};
use crate::os::{self, ServiceUser};
use crate::store::DbRecord;

/// Host every local server listens on.
pub const HOST: &str = "127.0.0.1";
/// The application user of PostgreSQL, MySQL and MongoDB servers.
pub const APP_USER: &str = "app_user";
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
}

impl Ctx {
    /// Data directory of node `node`.
    pub fn node_dir(&self, node: usize) -> PathBuf {
        self.db_dir.join(format!("n{node}"))
    }

    /// Port of node `node` (0 until allocated).
    pub fn port(&self, node: usize) -> u16 {
        self.db.ports.get(node).copied().unwrap_or(0)
    }

    /// The application database's name.
    pub fn database(&self) -> String {
        database_name(&self.db.slug)
    }

    fn wrap(&self, program: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
        Ok(os::wrap(&self.user, self.bins.setpriv.as_deref(), program)?)
    }

    /// A server spec running `program args…` as the service user, ready when its port accepts.
    fn server_spec(
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
    async fn run(
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

/// Creates node `node`'s data directory (the caller removed any previous one): `initdb`,
/// `mariadb-install-db`, `pg_basebackup` from the primary, …
pub async fn prepare(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    os::create_owned_dir(&ctx.db_dir, &ctx.user)?;
    match ctx.db.db_type {
        DbType::Postgresql => postgres::prepare(ctx, node).await,
        DbType::Mysql => mariadb::prepare(ctx, node).await,
        DbType::Redis => redis::prepare(ctx, node).await,
        DbType::Mongodb => mongodb::prepare(ctx, node).await,
    }
}

/// Writes node `node`'s config files (from the plan and the vault, on every start) and returns
/// how to run it.
pub fn spec(ctx: &Ctx, node: usize) -> anyhow::Result<InstanceSpec> {
    match ctx.db.db_type {
        DbType::Postgresql => postgres::spec(ctx, node),
        DbType::Mysql => mariadb::spec(ctx, node),
        DbType::Redis => redis::spec(ctx, node),
        DbType::Mongodb => mongodb::spec(ctx, node),
    }
}

/// After the first start of node `node`: the primary gets its users and database; a MariaDB
/// standby is pointed at the primary.
pub async fn bootstrap(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    match ctx.db.db_type {
        DbType::Postgresql if node == 0 => postgres::bootstrap(ctx).await,
        DbType::Mysql => mariadb::bootstrap(ctx, node).await,
        DbType::Mongodb if node == 0 => mongodb::bootstrap(ctx).await,
        _ => Ok(()),
    }
}

/// Logs in to the primary with the generated application credentials; returns the server's
/// version (`15.18`, `10.11.14-MariaDB`, `7.0.15`).
pub async fn check_login(ctx: &Ctx) -> anyhow::Result<String> {
    let login = async {
        match ctx.db.db_type {
            DbType::Postgresql => postgres::check_login(ctx).await,
            DbType::Mysql => mariadb::check_login(ctx).await,
            DbType::Redis => redis::check_login(ctx).await,
            DbType::Mongodb => mongodb::check_login(ctx).await,
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT * 2, login)
        .await
        .map_err(|_| anyhow::anyhow!("login timed out"))?
}

/// Replication health of standby `node`.
pub async fn replica_health(ctx: &Ctx, node: usize) -> ReplicaHealth {
    let mut health = ReplicaHealth {
        node,
        host: HOST.into(),
        port: ctx.port(node),
        status: "down".into(),
        lag_bytes: None,
        lag_seconds: None,
    };
    let probe = async {
        match ctx.db.db_type {
            DbType::Postgresql => postgres::replica_health(ctx, node, &mut health).await,
            DbType::Mysql => mariadb::replica_health(ctx, node, &mut health).await,
            DbType::Redis => redis::replica_health(ctx, node, &mut health).await,
            DbType::Mongodb => Ok(()),
        }
    };
    match tokio::time::timeout(LOGIN_TIMEOUT * 2, probe).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(db = %ctx.db.id, node, error = %format!("{e:#}"), "replica health probe failed")
        }
        Err(_) => tracing::debug!(db = %ctx.db.id, node, "replica health probe timed out"),
    }
    health
}

/// The seed's credentials document for the primary.
pub fn credentials(ctx: &Ctx) -> Credentials {
    let port = ctx.port(0);
    let pw = &ctx.creds.app;
    let db = ctx.database();
    match ctx.db.db_type {
        DbType::Postgresql => Credentials {
            host: HOST.into(),
            port,
            username: Some(APP_USER.into()),
            password: pw.clone(),
            database: Some(db.clone()),
            ssl_mode: Some("disable".into()),
            connection_string: format!(
                "postgresql://{APP_USER}:{pw}@{HOST}:{port}/{db}?sslmode=disable"
            ),
        },
        DbType::Mysql => Credentials {
            host: HOST.into(),
            port,
            username: Some(APP_USER.into()),
            password: pw.clone(),
            database: Some(db.clone()),
            ssl_mode: Some("disable".into()),
            connection_string: format!("mysql://{APP_USER}:{pw}@{HOST}:{port}/{db}"),
        },
        DbType::Redis => Credentials {
            host: HOST.into(),
            port,
            username: None,
            password: pw.clone(),
            database: None,
            ssl_mode: None,
            // `default` is Redis 6+'s user for `requirepass`: `redis-cli -u` (7.x) and most
            // clients reject an empty user name with WRONGPASS.
            connection_string: format!("redis://default:{pw}@{HOST}:{port}/0"),
        },
        DbType::Mongodb => Credentials {
            host: HOST.into(),
            port,
            username: Some(APP_USER.into()),
            password: pw.clone(),
            database: Some(db.clone()),
            ssl_mode: Some("disable".into()),
            connection_string: format!(
                "mongodb://{APP_USER}:{pw}@{HOST}:{port}/{db}?authSource={db}"
            ),
        },
    }
}

/// A password as an SQL string literal. Generated passwords are alphanumeric; anything else is
/// refused rather than escaped.
fn sql_password(pw: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !pw.is_empty() && pw.bytes().all(|b| b.is_ascii_alphanumeric()),
        "a stored password is not alphanumeric"
    );
    Ok(format!("'{pw}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_the_slug() {
        assert_eq!(database_name("main-postgres"), "main_postgres");
        assert_eq!(database_name("1st"), "db_1st");
        assert_eq!(instance_id("db_abc", 2), "db_abc-n2");
        assert!(sql_password("abc'--").is_err());
    }
}
