//! One throwaway server started straight through the engine recipes, without the service around
//! them (no store, secret store, reconciler or API): what `refract quickstart --source` and the
//! dev-only test kit (`crates/testkit`) run, so that every database server Refract starts for a
//! user, a test or the quickstart is set up the one way the managed service sets up its own
//! (binary log ROW / `wal_level = logical`, TLS, an unprivileged user when root).
//!
//! The steps are the reconciler's for a new primary: `prepare` (new data directory), `spec` and
//! a start through a [`LocalProcessDriver`], `bootstrap` (users and database), then a login with
//! the generated credentials. The server is never replicated, backed up or restarted by anyone
//! but its owner, who stops it ([`StandaloneServer::stop`], or [`StandaloneServer::stop_now`]
//! from a `Drop`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use refract_runtime::{process, Driver, LocalProcessDriver, STATE_FILE};

use crate::api::DbType;
use crate::catalog::{self, Binaries};
use crate::engines::{self, Creds, Ctx, ServerOverrides};
use crate::os;
use crate::store::{DbRecord, Owner, Placement};

/// The plan a standalone server gets: the smallest (its memory settings and connection limit).
const PLAN: &str = "db-s-1vcpu-1gb";
/// The id of its record (its instance is `standalone-n0`).
const DB_ID: &str = "standalone";
/// How long [`StandaloneServer::run_sql`] may take.
const SQL_TIMEOUT: Duration = Duration::from_secs(300);

/// What to start.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// PostgreSQL, MySQL (MariaDB) or Redis.
    pub db_type: DbType,
    /// Where everything lives (data, certificates, the driver's log); created if absent. It
    /// should be short: a MariaDB socket path inside it is limited to about 100 bytes.
    pub dir: PathBuf,
    /// The application database's name (its slug: `-` becomes `_`).
    pub name: String,
    /// Plain-text logins accepted besides TLS (tests and the quickstart connect without TLS).
    pub allow_plaintext: bool,
    /// How long the server may take to listen and accept the generated login.
    pub start_timeout: Duration,
    /// Connection limit (PostgreSQL, MariaDB) instead of the smallest plan's 100 (a parallel
    /// test suite needs more).
    pub max_connections: Option<u32>,
    /// PostgreSQL WAL archiving, which the managed service's backups use. A standalone server
    /// is never backed up, so its archive only grows: off for a server that takes many writes.
    pub wal_archive: bool,
    /// Addresses it listens on besides 127.0.0.1 (loopback aliases, e.g. 127.0.0.2: an address
    /// its TLS certificate does not name).
    pub extra_listen_addresses: Vec<Ipv4Addr>,
    /// The certificate authority that issues the server's TLS certificate (named `localhost`
    /// and 127.0.0.1); a new one when `None`.
    pub ca: Option<Arc<crate::tls::Ca>>,
    /// PostgreSQL: a Unix socket in the data directory too ([`StandaloneServer::socket_path`];
    /// MariaDB always has one).
    pub unix_socket: bool,
    /// Redis: a plain-text port besides the TLS one ([`StandaloneServer::plaintext_port`]).
    pub redis_plaintext_port: bool,
    /// PostgreSQL and MariaDB: TLS offered. Without, plain text only (for tests of clients
    /// against a server that offers no TLS); `allow_plaintext` is then implied.
    pub tls: bool,
}

impl StandaloneOptions {
    /// A server of `db_type` in `dir`, database `name`, TLS and plain text, 120 s to start.
    pub fn new(db_type: DbType, dir: impl Into<PathBuf>, name: &str) -> StandaloneOptions {
        StandaloneOptions {
            db_type,
            dir: dir.into(),
            name: name.into(),
            allow_plaintext: true,
            start_timeout: Duration::from_secs(120),
            max_connections: None,
            wal_archive: true,
            extra_listen_addresses: Vec::new(),
            ca: None,
            unix_socket: false,
            redis_plaintext_port: false,
            tls: true,
        }
    }
}

/// A running standalone server (see the module documentation). Dropping it does not stop it:
/// call [`StandaloneServer::stop`] or [`StandaloneServer::stop_now`].
pub struct StandaloneServer {
    ctx: Ctx,
    driver: LocalProcessDriver,
    version: String,
    start_timeout: Duration,
}

impl std::fmt::Debug for StandaloneServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneServer")
            .field("db_type", &self.ctx.db.db_type)
            .field("port", &self.port())
            .field("dir", &self.ctx.db_dir)
            .finish_non_exhaustive()
    }
}

impl StandaloneServer {
    /// Whether a server of `db_type` can start on this host: `Err` says in one sentence what
    /// is missing.
    pub fn check_installed(db_type: DbType) -> Result<(), String> {
        if db_type == DbType::Mongodb {
            return Err(UNSUPPORTED.into());
        }
        catalog::resolve_version(db_type, None, &detect_binaries()).map(|_| ())
    }

    /// Creates the server's data directory, starts it on a free port, creates its users and
    /// database, and waits until the generated application login works.
    pub async fn start(opts: StandaloneOptions) -> anyhow::Result<StandaloneServer> {
        let db_type = opts.db_type;
        if db_type == DbType::Mongodb {
            bail!(UNSUPPORTED);
        }
        let bins = detect_binaries();
        let version = catalog::resolve_version(db_type, None, &bins).map_err(anyhow::Error::msg)?;
        let user = os::service_user(engines::preferred_user(db_type))?;
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("create {}", opts.dir.display()))?;
        let dir = opts
            .dir
            .canonicalize()
            .context("resolve the server directory")?;
        // The server's own user must walk down to its data when it is another user (root).
        os::ensure_reachable(&dir, &dir, &user)?;
        let ca = match &opts.ca {
            Some(ca) => ca.clone(),
            None => Arc::new(crate::tls::Ca::load_or_create(
                &crate::MemoryVault::default(),
            )?),
        };
        let db = DbRecord {
            ports: vec![refract_runtime::free_port()?],
            ..DbRecord::new(
                DB_ID.into(),
                Owner::default(),
                opts.name.clone(),
                db_type,
                version,
                Placement {
                    plan_id: PLAN.into(),
                    region: "local".into(),
                    storage_gb: 0,
                    replicas: 1,
                },
            )
        };
        let ctx = Ctx {
            db,
            plan: catalog::plan(PLAN).context("the standalone plan")?,
            bins: Arc::new(bins),
            user,
            db_dir: dir.join("server"),
            creds: Creds {
                admin: crate::tokens::password(),
                app: crate::tokens::password(),
                replication: crate::tokens::password(),
            },
            ca,
            allow_plaintext: opts.allow_plaintext || !opts.tls,
            overrides: ServerOverrides {
                max_connections: opts.max_connections,
                no_wal_archive: !opts.wal_archive,
                extra_listen_addresses: opts.extra_listen_addresses.clone(),
                unix_socket: opts.unix_socket,
                no_tls: !opts.tls && db_type != DbType::Redis,
                redis_plaintext_port: if opts.redis_plaintext_port && db_type == DbType::Redis {
                    Some(refract_runtime::free_port()?)
                } else {
                    None
                },
            },
        };
        let mut server = StandaloneServer {
            driver: LocalProcessDriver::new(dir.join("instances")),
            ctx,
            version: String::new(),
            start_timeout: opts.start_timeout,
        };
        let setup = async {
            engines::prepare(&server.ctx, 0).await?;
            server.launch().await?;
            engines::bootstrap(&server.ctx, 0).await?;
            server.wait_login().await
        };
        match setup.await {
            Ok(version) => server.version = version,
            Err(e) => {
                server.stop_now();
                return Err(e);
            }
        }
        Ok(server)
    }

    /// The engine.
    pub fn db_type(&self) -> DbType {
        self.ctx.db.db_type
    }

    /// The host it listens on (`127.0.0.1`).
    pub fn host(&self) -> &'static str {
        engines::HOST
    }

    /// The port it listens on (kept across [`StandaloneServer::restart`]).
    pub fn port(&self) -> u16 {
        self.ctx.port(0)
    }

    /// The plain-text port of a Redis started with
    /// [`StandaloneOptions::redis_plaintext_port`].
    pub fn plaintext_port(&self) -> Option<u16> {
        self.ctx.overrides.redis_plaintext_port
    }

    /// The server's Unix socket: MariaDB's, or PostgreSQL's with [`StandaloneOptions::unix_socket`]
    /// (the file, `.s.PGSQL.<port>`, in [`StandaloneServer::data_dir`]).
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self.ctx.db.db_type {
            DbType::Mysql => Some(engines::mariadb::socket(&self.ctx, 0)),
            DbType::Postgresql if self.ctx.overrides.unix_socket => {
                Some(self.data_dir().join(format!(".s.PGSQL.{}", self.port())))
            }
            _ => None,
        }
    }

    /// The superuser (`refract_admin`; Redis has none: use the application password).
    pub fn admin_user(&self) -> &'static str {
        engines::ADMIN_USER
    }

    /// The superuser's generated password.
    pub fn admin_password(&self) -> &str {
        &self.ctx.creds.admin
    }

    /// The application user, owner of [`StandaloneServer::database`] (`refract`).
    pub fn app_user(&self) -> &'static str {
        engines::APP_USER
    }

    /// The application user's generated password (Redis: `requirepass`).
    pub fn app_password(&self) -> &str {
        &self.ctx.creds.app
    }

    /// The application database (PostgreSQL database, MySQL schema).
    pub fn database(&self) -> String {
        self.ctx.database()
    }

    /// The CA certificate (PEM) the server's TLS certificate is verified with.
    pub fn ca_pem(&self) -> &str {
        self.ctx.ca.cert_pem()
    }

    /// The server's version (`16.4`, `10.11.14-MariaDB`, `7.0.15`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The server's data directory (its files, its pid file).
    pub fn data_dir(&self) -> PathBuf {
        self.ctx.node_dir(0)
    }

    /// The end of the server's output (for a failure message).
    pub async fn logs(&self) -> String {
        self.driver.logs(&self.instance(), 40).await
    }

    fn instance(&self) -> String {
        engines::instance_id(&self.ctx.db.id, 0)
    }

    /// Starts the server (a few times when it exits at once) and waits until its port accepts.
    async fn launch(&self) -> anyhow::Result<()> {
        engines::launch::start_retrying(&self.driver, &self.ctx, 0, self.start_timeout).await
    }

    /// Waits until the generated application login works; the server's version.
    async fn wait_login(&self) -> anyhow::Result<String> {
        match engines::launch::wait_login(&self.ctx, self.start_timeout).await {
            Ok(version) => Ok(version),
            Err(e) => Err(anyhow::anyhow!("{e:#}: {}", self.logs().await)),
        }
    }

    /// Runs an SQL script in the application database (a data load): on PostgreSQL as the
    /// application user, its owner; on MariaDB as the local superuser over the server's socket.
    /// Fails with the error of the first statement that fails.
    pub async fn run_sql(&self, sql: &str) -> anyhow::Result<()> {
        match self.ctx.db.db_type {
            DbType::Postgresql => {
                let client = engines::postgres::connect(
                    &self.ctx,
                    self.port(),
                    engines::APP_USER,
                    &self.ctx.creds.app,
                    &self.database(),
                )
                .await?;
                client.batch_execute(sql).await?;
            }
            DbType::Mysql => {
                let script = format!("USE `{}`;\n{sql}", self.database());
                engines::mariadb::socket_script(&self.ctx, 0, &script, false, SQL_TIMEOUT).await?;
            }
            other => bail!("{other} takes no SQL"),
        }
        Ok(())
    }

    /// Runs an SQL script as the superuser, outside the application database (users, roles,
    /// grants): on PostgreSQL as the generated admin in `postgres`, over TLS verified with the
    /// server's CA unless it offers none; on MariaDB as the local superuser over its socket.
    pub async fn run_admin_sql(&self, sql: &str) -> anyhow::Result<()> {
        match self.ctx.db.db_type {
            DbType::Postgresql => {
                let client = engines::postgres::admin_connect(&self.ctx, 0).await?;
                client.batch_execute(sql).await?;
            }
            DbType::Mysql => {
                engines::mariadb::socket_script(&self.ctx, 0, sql, false, SQL_TIMEOUT).await?;
            }
            other => bail!("{other} takes no SQL"),
        }
        Ok(())
    }

    /// Runs one Redis command as the application user (over TLS, verified with the server's
    /// CA); fails unless the answer is `+OK`.
    pub async fn redis_command(&self, args: &[&str]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ctx.db.db_type == DbType::Redis,
            "{} takes no Redis commands",
            self.ctx.db.db_type
        );
        let mut c = engines::redis::Resp::connect(&self.ctx.ca, self.port()).await?;
        c.auth(&self.ctx.creds.app).await?;
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match c.call(&args).await? {
            engines::redis::Reply::Status(s) if s == "OK" => Ok(()),
            other => bail!(
                "Redis {}: {other:?}",
                args.first()
                    .map_or("", |a| std::str::from_utf8(a).unwrap_or(""))
            ),
        }
    }

    /// The server's main process, from its pid file (`None` when it is not running).
    fn pid(&self) -> Option<u32> {
        running_pid(self.ctx.db.db_type, &self.data_dir())
    }

    /// A clean shutdown (PostgreSQL: a fast shutdown, SIGINT, which ends the sessions and
    /// writes a checkpoint; the others: SIGTERM), waiting until the server has exited; SIGKILL
    /// after 2 minutes.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let postgres = (self.ctx.db.db_type == DbType::Postgresql).then(|| self.pid());
        stop_cleanly(
            &self.driver,
            &self.instance(),
            postgres.flatten(),
            "the server",
        )
        .await
    }

    /// Stops the standalone server whose directory is `dir` ([`StandaloneOptions::dir`]) from
    /// another process than the one that started it (the server outlives its starter: the
    /// runtime driver records it in the directory), as [`StandaloneServer::stop`] does: a clean
    /// shutdown, waiting until it has exited. Nothing running there is not an error.
    pub async fn stop_in(dir: &Path) -> anyhow::Result<()> {
        let dir = dir.canonicalize().context("resolve the server directory")?;
        let postgres = running_pid(DbType::Postgresql, &dir.join("server").join("n0"));
        let driver = LocalProcessDriver::new(dir.join("instances"));
        let what = format!("the server in {}", dir.display());
        stop_cleanly(&driver, &engines::instance_id(DB_ID, 0), postgres, &what).await
    }

    /// A crash: SIGKILL to the server and all its processes at once (PostgreSQL's backends too,
    /// which are not in its process group), waiting until they are gone. PostgreSQL and MariaDB
    /// only.
    pub async fn kill(&self) -> anyhow::Result<()> {
        let Some(pid) = self.pid() else {
            bail!("no running {} server to kill", self.ctx.db.db_type);
        };
        let pids = kill_with_children(pid);
        let deadline = Instant::now() + Duration::from_secs(60);
        while pids.iter().any(|&p| process::is_alive(p)) {
            anyhow::ensure!(Instant::now() < deadline, "server processes still alive");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Lets the driver see the exit.
        self.driver.stop(&self.instance(), Duration::ZERO).await?;
        if self.ctx.db.db_type == DbType::Postgresql {
            // The crashed server's SysV segment (line 7 of postmaster.pid: key and id) is left
            // behind, and the next start does not reuse it: remove it, nothing is attached.
            let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid"));
            if let Some(id) = pidfile.ok().and_then(|t| {
                t.lines()
                    .nth(6)
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<libc::c_int>().ok())
            }) {
                // SAFETY: IPC_RMID on a segment id takes no pointer argument worth anything.
                unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            }
        }
        Ok(())
    }

    /// Starts the stopped (or killed) server again, on the same port and data directory.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.launch().await?;
        self.wait_login().await?;
        Ok(())
    }

    /// Stops the server without an async runtime (for a `Drop`): the clean signal, then
    /// SIGKILL to it and its processes after 20 s. Returns once they are gone.
    pub fn stop_now(&self) {
        let Some(pid) = self.pid().or_else(|| self.recorded_pid()) else {
            return;
        };
        let clean = match self.ctx.db.db_type {
            DbType::Postgresql => libc::SIGINT,
            _ => libc::SIGTERM,
        };
        let _ = process::send_signal(pid, clean, false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while process::is_alive(pid) {
            if Instant::now() > deadline {
                kill_with_children(pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid the driver recorded (Redis writes no pid file).
    fn recorded_pid(&self) -> Option<u32> {
        let dir = self.driver.instance_dir(&self.instance()).ok()?;
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE)).ok()?).ok()?;
        let pid = u32::try_from(state["pid"].as_u64()?).ok()?;
        process::is_alive(pid).then_some(pid)
    }
}

const UNSUPPORTED: &str = "standalone servers are PostgreSQL, MySQL (MariaDB) or Redis";

/// The server programs installed here (PostgreSQL in Debian's `/usr/lib/postgresql`, as the
/// managed service's default).
fn detect_binaries() -> Binaries {
    Binaries::detect(Path::new(crate::service::DEFAULT_PG_ROOT))
}

/// A clean shutdown of `instance` through `driver`, waiting until it has exited (SIGKILL after 2
/// minutes). `postgres`: the main process of a PostgreSQL server, which gets a fast shutdown
/// (SIGINT: ends the sessions, writes a checkpoint) first, since the driver's SIGTERM is
/// PostgreSQL's smart shutdown, which waits for every client. `what` names the server in the
/// error.
async fn stop_cleanly(
    driver: &LocalProcessDriver,
    instance: &str,
    postgres: Option<u32>,
    what: &str,
) -> anyhow::Result<()> {
    if let Some(pid) = postgres {
        let _ = process::send_signal(pid, libc::SIGINT, false);
    }
    let status = driver.stop(instance, Duration::from_secs(120)).await?;
    anyhow::ensure!(!status.is_alive(), "{what} is still running: {status:?}");
    Ok(())
}

/// SIGKILL to `pid` and its children at once (PostgreSQL's backends are not in its process
/// group); the processes signalled.
fn kill_with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    pids.extend(process::children(pid));
    for &p in &pids {
        let _ = process::send_signal(p, libc::SIGKILL, false);
    }
    pids
}

/// The live main process of a `db_type` server whose data directory is `node_dir`, from its pid
/// file (PostgreSQL and MariaDB; Redis writes none).
fn running_pid(db_type: DbType, node_dir: &Path) -> Option<u32> {
    let file = match db_type {
        DbType::Postgresql => "postmaster.pid",
        DbType::Mysql => "mysqld.pid",
        _ => return None,
    };
    let text = std::fs::read_to_string(node_dir.join(file)).ok()?;
    let pid = text.lines().next()?.trim().parse().ok()?;
    process::is_alive(pid).then_some(pid)
}
