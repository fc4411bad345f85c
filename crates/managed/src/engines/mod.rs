//! Engine recipes: how each engine's servers are initialized, started, bootstrapped (users and
//! database), checked (a login with the generated credentials) and replicated.
//!
//! Every server is one runtime-driver instance `<db id>-n<k>` (node 0 is the primary, 1… are
//! standbys) with its data in `servers/<db id>/n<k>/`, owned by the engine's [`ServiceUser`].
//! The functions here dispatch on the engine; each engine module has the same five steps:
//! `prepare` (new data directory), `spec` (config files + how to run), `bootstrap` (first start of
//! the primary), `check_login`, `replica_health`.

mod context;
pub(crate) mod launch;
pub(crate) mod mariadb;
mod mongodb;
pub(crate) mod postgres;
pub(crate) mod redis;
mod standby;

use refract_runtime::InstanceSpec;

use crate::api::{Credentials, DbType, ReplicaHealth};
use crate::credentials::Endpoint;
use crate::os;

pub(crate) use context::sql_password;
use context::LOGIN_TIMEOUT;
pub use context::{
    database_name, instance_id, preferred_user, secret_name, Creds, Ctx, ServerOverrides,
    ADMIN_USER, APP_USER, HOST, REPLICATION_USER, SECRET_ROLES,
};
pub use standby::{data_present, position, promote, set_sync};

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
    let endpoint = Endpoint {
        host: HOST.into(),
        port: ctx.port(0),
        // MongoDB serves no TLS yet (docs/managed.md, "TLS").
        tls: ctx.db.db_type != DbType::Mongodb,
    };
    let db = ctx.database();
    // The local MongoDB's user lives in its own database.
    crate::credentials::document(ctx.db.db_type, &db, &endpoint, &ctx.creds.app, &db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_the_slug() {
        assert_eq!(database_name("main-postgres"), "main_postgres");
        assert_eq!(database_name("1st"), "db_1st");
        assert_eq!(instance_id("db_abc", 2), "db_abc-n2");
        assert!(context::sql_password("abc'--").is_err());
    }
}
