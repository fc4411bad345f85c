//! Connection pools of managed PostgreSQL servers: one PgBouncer (Debian's `pgbouncer`) per
//! database, a runtime-driver instance `<db id>-pool` on its own loopback port, serving every
//! pool of that database as a PgBouncer "database" named after the pool. Pools are kept in
//! `servers/<db id>/pgbouncer/pools.json` (beside the config PgBouncer reads), so they come back
//! with the database after a control-plane restart and go with its directory when it is deleted.
//! The reconciler starts PgBouncer when it is not running (`supervise_pool`) and removes it with
//! the database (`remove_pool_instance`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use refract_runtime::{free_port, InstanceKind, InstanceSpec, InstanceStatus, Readiness};
use serde::{Deserialize, Serialize};

use crate::api::{DbType, Status};
use crate::engines::{Ctx, APP_USER, HOST};
use crate::error::ManagedError;
use crate::os;
use crate::service::{Caller, ManagedService};
use crate::store::DbRecord;
use crate::tls;

/// Pool modes PgBouncer knows.
pub const MODES: &[&str] = &["session", "transaction", "statement"];

/// Serializes changes to the pool files (one writer at a time, per process).
static POOLS_LOCK: Mutex<()> = Mutex::new(());

/// `POST /api/v1/databases/{id}/pools`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    /// Pool name: 1–63 of `[a-z0-9_-]`, starting with a letter; the database name clients
    /// connect to through PgBouncer.
    pub name: String,
    /// The server database the pool leads to; default: the application database.
    pub database: Option<String>,
    /// The server user; default and only choice on the local runtime: `app_user`.
    pub user: Option<String>,
    /// Server connections of the pool, 1 to the plan's `max_connections` (all pools together
    /// too).
    #[serde(deserialize_with = "crate::api::int")]
    #[schema(minimum = 1)]
    pub size: i64,
    /// `session`, `transaction` or `statement`.
    pub mode: String,
}

/// One pool as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pool {
    /// Its name (the database name clients give PgBouncer).
    pub name: String,
    /// The server database.
    pub database: String,
    /// The server user.
    pub user: String,
    /// Server connections.
    pub size: i64,
    /// Pool mode.
    pub mode: String,
    /// PgBouncer's host.
    #[serde(default)]
    pub host: String,
    /// PgBouncer's port.
    #[serde(default)]
    pub port: u16,
    /// `postgresql://app_user:…@host:port/<pool name>?sslmode=require`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connection_string: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PoolsFile {
    port: u16,
    pools: Vec<Pool>,
}

/// The driver instance of a database's PgBouncer.
pub fn pool_instance_id(db_id: &str) -> String {
    format!("{db_id}-pool")
}

fn dir(ctx: &Ctx) -> PathBuf {
    ctx.db_dir.join("pgbouncer")
}

fn read(ctx: &Ctx) -> anyhow::Result<PoolsFile> {
    let path = dir(ctx).join("pools.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PoolsFile::default()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("read {}", path.display()))),
    }
}

fn valid_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_database(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a request against the plan and the existing pools; returns the pool to add.
pub(crate) fn validate(
    req: CreatePoolRequest,
    app_database: &str,
    max_connections: i64,
    existing: &[Pool],
) -> Result<Pool, ManagedError> {
    if !valid_name(&req.name) {
        return Err(ManagedError::invalid(format!(
            "pool name {:?} must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter",
            req.name
        )));
    }
    if !MODES.contains(&req.mode.as_str()) {
        return Err(ManagedError::invalid(format!(
            "unknown pool mode {:?}: use session, transaction or statement",
            req.mode
        )));
    }
    let database = req.database.unwrap_or_else(|| app_database.to_string());
    if !valid_database(&database) {
        return Err(ManagedError::invalid(format!(
            "database {database:?} must be 1-63 characters of a-z, 0-9 and _"
        )));
    }
    let user = req.user.unwrap_or_else(|| APP_USER.to_string());
    if user != APP_USER {
        return Err(ManagedError::Unprocessable(format!(
            "user {user:?} does not exist on this server: pools log in as {APP_USER}"
        )));
    }
    if req.size < 1 {
        return Err(ManagedError::invalid(format!(
            "size must be at least 1, not {}",
            req.size
        )));
    }
    if req.size > max_connections {
        return Err(ManagedError::Unprocessable(format!(
            "a pool of {} server connections is larger than the server's max_connections ({max_connections}); \
             use a smaller size or a larger plan",
            req.size
        )));
    }
    if existing.iter().any(|p| p.name == req.name) {
        return Err(ManagedError::Conflict(format!(
            "a pool named {} already exists on this database",
            req.name
        )));
    }
    let used: i64 = existing.iter().map(|p| p.size).sum();
    if used + req.size > max_connections {
        return Err(ManagedError::Unprocessable(format!(
            "the pools would hold {} server connections together, more than the server's max_connections \
             ({max_connections}); {used} are taken by existing pools",
            used + req.size
        )));
    }
    Ok(Pool {
        name: req.name,
        database,
        user,
        size: req.size,
        mode: req.mode,
        host: String::new(),
        port: 0,
        connection_string: String::new(),
    })
}

/// PgBouncer's configuration: every pool a `[databases]` entry toward the primary, TLS on both
/// sides (clients: `require`, with a certificate from the installation's CA; server:
/// `verify-full` against that CA).
fn ini(ctx: &Ctx, file: &PoolsFile) -> String {
    let d = dir(ctx);
    let mut s =
        String::from("# Written by Refract; change the pools through the API.\n[databases]\n");
    for p in &file.pools {
        s.push_str(&format!(
            "{name} = host={HOST} port={port} dbname={db} user={user} pool_size={size} pool_mode={mode}\n",
            name = p.name,
            port = ctx.port(0),
            db = p.database,
            user = p.user,
            size = p.size,
            mode = p.mode,
        ));
    }
    s.push_str(&format!(
        "[pgbouncer]\n\
         listen_addr = {HOST}\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {d}/userlist.txt\n\
         max_client_conn = 2000\n\
         default_pool_size = 20\n\
         ignore_startup_parameters = extra_float_digits,application_name\n\
         client_tls_sslmode = require\n\
         client_tls_cert_file = {d}/{cert}\n\
         client_tls_key_file = {d}/{key}\n\
         server_tls_sslmode = verify-full\n\
         server_tls_ca_file = {d}/{ca}\n",
        port = file.port,
        d = d.display(),
        cert = tls::SERVER_CERT_FILE,
        key = tls::SERVER_KEY_FILE,
        ca = tls::CA_FILE,
    ));
    s
}

impl ManagedService {
    async fn pool_db(&self, caller: &Caller, id: &str) -> Result<(DbRecord, Ctx), ManagedError> {
        let d = self.owned(caller, id).await?;
        // A pool is a local pgbouncer process beside a local server.
        self.refuse_on_platform("connection pools (PgBouncer)")?;
        if d.db_type != DbType::Postgresql {
            return Err(ManagedError::Unprocessable(format!(
                "connection pools (PgBouncer) are for postgresql databases, not {}",
                d.db_type
            )));
        }
        if d.status == Status::Destroyed {
            return Err(ManagedError::Conflict(format!(
                "database {id} is destroyed"
            )));
        }
        let ctx = self.ctx(&d)?;
        Ok((d, ctx))
    }

    fn show(&self, ctx: &Ctx, port: u16, mut p: Pool) -> Pool {
        p.host = HOST.into();
        p.port = port;
        p.connection_string = format!(
            "postgresql://{user}:{pw}@{HOST}:{port}/{name}?sslmode=require",
            user = p.user,
            pw = ctx.creds.app,
            name = p.name
        );
        p
    }

    /// `POST /api/v1/databases/{id}/pools`.
    pub async fn create_pool(
        &self,
        caller: &Caller,
        id: &str,
        req: CreatePoolRequest,
    ) -> Result<Pool, ManagedError> {
        if !caller.access.write {
            return Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                crate::tokens::SCOPE_WRITE
            )));
        }
        let (d, ctx) = self.pool_db(caller, id).await?;
        if d.nodes_ready == 0 {
            return Err(ManagedError::Conflict(format!(
                "database {id} is {}; add pools once it is running",
                d.status.as_str()
            )));
        }
        if find_pgbouncer().is_none() {
            return Err(ManagedError::Unprocessable(
                "connection pools need pgbouncer, which is not installed on this host".into(),
            ));
        }
        let (pool, port) = {
            let _g = POOLS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let mut file = read(&ctx)?;
            let pool = validate(
                req,
                &ctx.database(),
                ctx.max_connections() as i64,
                &file.pools,
            )?;
            if file.port == 0 {
                file.port = free_port().map_err(anyhow::Error::from)?;
            }
            file.pools.push(pool.clone());
            write(&ctx, &file)?;
            (pool, file.port)
        };
        self.restart_pool(&ctx).await?;
        tracing::info!(db = %id, pool = %pool.name, size = pool.size, mode = %pool.mode, "managed connection pool created");
        Ok(self.show(&ctx, port, pool))
    }

    /// `GET /api/v1/databases/{id}/pools`.
    pub async fn list_pools(&self, caller: &Caller, id: &str) -> Result<Vec<Pool>, ManagedError> {
        if !caller.access.read {
            return Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                crate::tokens::SCOPE_READ
            )));
        }
        let (_, ctx) = self.pool_db(caller, id).await?;
        let file = read(&ctx)?;
        Ok(file
            .pools
            .into_iter()
            .map(|p| self.show(&ctx, file.port, p))
            .collect())
    }

    /// `DELETE /api/v1/databases/{id}/pools/{name}`.
    pub async fn delete_pool(
        &self,
        caller: &Caller,
        id: &str,
        name: &str,
    ) -> Result<(), ManagedError> {
        if !caller.access.write {
            return Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                crate::tokens::SCOPE_WRITE
            )));
        }
        let (_, ctx) = self.pool_db(caller, id).await?;
        let empty = {
            let _g = POOLS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let mut file = read(&ctx)?;
            let before = file.pools.len();
            file.pools.retain(|p| p.name != name);
            if file.pools.len() == before {
                return Err(ManagedError::NotFound(format!(
                    "database {id} has no pool named {name:?}"
                )));
            }
            write(&ctx, &file)?;
            file.pools.is_empty()
        };
        if empty {
            self.remove_pool_instance(id).await?;
        } else {
            self.restart_pool(&ctx).await?;
        }
        tracing::info!(db = %id, pool = %name, "managed connection pool deleted");
        Ok(())
    }

    /// Stops PgBouncer and starts it with the current pools (clients of the database's pools
    /// reconnect).
    async fn restart_pool(&self, ctx: &Ctx) -> Result<(), ManagedError> {
        let inst = pool_instance_id(&ctx.db.id);
        self.inner
            .driver
            .stop(&inst, Duration::from_secs(5))
            .await
            .map_err(anyhow::Error::from)?;
        self.start_pool(ctx).await?;
        // Ready when it accepts on its port.
        for _ in 0..100 {
            if let Ok(InstanceStatus::Running { .. }) = self.inner.driver.status(&inst).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ManagedError::Internal(anyhow::anyhow!(
            "pgbouncer did not start: {}",
            self.inner.driver.logs(&inst, 5).await
        )))
    }

    async fn start_pool(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let file = read(ctx)?;
        if file.pools.is_empty() {
            return Ok(());
        }
        let program = find_pgbouncer().context("pgbouncer is no longer installed on this host")?;
        let d = dir(ctx);
        os::write_owned_file(
            &d.join("pgbouncer.ini"),
            ini(ctx, &file).as_bytes(),
            &ctx.user,
        )?;
        // The password PgBouncer logs in (and checks clients) with: a 0600 file of the service
        // user, as Redis's requirepass.
        os::write_owned_file(
            &d.join("userlist.txt"),
            format!("\"{APP_USER}\" \"{}\"\n", ctx.creds.app).as_bytes(),
            &ctx.user,
        )?;
        ctx.ca
            .write_server_files(&d, &ctx.user, &["localhost", HOST])?;
        let (exe, mut args) = os::wrap(&ctx.user, self.inner.bins.setpriv.as_deref(), &program)?;
        args.push(d.join("pgbouncer.ini").display().to_string());
        let mut spec = InstanceSpec::new(
            pool_instance_id(&ctx.db.id),
            InstanceKind::Server,
            exe,
            Readiness::TcpPort(file.port),
        );
        spec.args = args;
        match self.inner.driver.start(&spec).await {
            Ok(_) | Err(refract_runtime::RuntimeError::AlreadyRunning(_)) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("start pgbouncer")),
        }
    }

    /// Starts a running PostgreSQL database's PgBouncer when it has pools and PgBouncer is not
    /// running (after a crash or a control-plane restart). Called by the reconciler.
    pub(crate) async fn supervise_pool(&self, db: &DbRecord) {
        if db.db_type != DbType::Postgresql || db.status != Status::Running {
            return;
        }
        if !self
            .database_dir(&db.id)
            .join("pgbouncer/pools.json")
            .exists()
        {
            return;
        }
        let inst = pool_instance_id(&db.id);
        let alive = self
            .inner
            .driver
            .status(&inst)
            .await
            .is_ok_and(|s| s.is_alive());
        if alive {
            return;
        }
        let Ok(ctx) = self.ctx(db) else { return };
        if let Err(e) = self.start_pool(&ctx).await {
            tracing::warn!(db = %db.id, error = %format!("{e:#}"), "could not start pgbouncer");
        } else {
            tracing::info!(db = %db.id, "pgbouncer started");
        }
    }

    /// Stops and forgets a database's PgBouncer (no-op when it has none).
    pub(crate) async fn remove_pool_instance(&self, id: &str) -> Result<(), ManagedError> {
        let inst = pool_instance_id(id);
        self.inner
            .driver
            .stop(&inst, Duration::from_secs(5))
            .await
            .map_err(anyhow::Error::from)?;
        self.inner
            .driver
            .remove(&inst)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(())
    }
}

fn write(ctx: &Ctx, file: &PoolsFile) -> anyhow::Result<()> {
    let d = dir(ctx);
    os::create_owned_dir(&d, &ctx.user)?;
    let body = serde_json::to_vec_pretty(file)?;
    os::write_owned_file(&d.join("pools.json"), &body, &ctx.user)?;
    Ok(())
}

/// Where pgbouncer is installed, if it is.
pub fn find_pgbouncer() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, size: i64, mode: &str) -> CreatePoolRequest {
        CreatePoolRequest {
            name: name.into(),
            database: None,
            user: None,
            size,
            mode: mode.into(),
        }
    }

    #[test]
    fn pool_requests_are_checked_against_the_plan_and_each_other() {
        let p = validate(req("web", 20, "transaction"), "shop", 100, &[]).unwrap();
        assert_eq!((p.database.as_str(), p.user.as_str()), ("shop", APP_USER));
        let e = validate(req("big", 101, "session"), "shop", 100, &[]).unwrap_err();
        assert!(
            matches!(e, ManagedError::Unprocessable(ref m) if m.contains("max_connections (100)")),
            "{e}"
        );
        let e = validate(req("x", 5, "sometimes"), "shop", 100, &[]).unwrap_err();
        assert!(
            matches!(e, ManagedError::Invalid(ref m) if m.contains("unknown pool mode")),
            "{e}"
        );
        let e = validate(
            req("web", 5, "session"),
            "shop",
            100,
            std::slice::from_ref(&p),
        )
        .unwrap_err();
        assert!(matches!(e, ManagedError::Conflict(_)), "{e}");
        let e = validate(
            req("more", 90, "session"),
            "shop",
            100,
            std::slice::from_ref(&p),
        )
        .unwrap_err();
        assert!(e.to_string().contains("110 server connections"), "{e}");
        for bad in ["", "Web", "1st", "a b", "a;b"] {
            assert!(
                validate(req(bad, 1, "session"), "shop", 100, &[]).is_err(),
                "{bad:?}"
            );
        }
        assert!(validate(req("z", 0, "session"), "shop", 100, &[]).is_err());
        let mut r = req("other", 1, "session");
        r.user = Some("postgres".into());
        assert!(validate(r, "shop", 100, &[]).is_err());
    }
}
