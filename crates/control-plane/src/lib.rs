//! This crate provides the control plane (`refract serve`): the `/v1` REST API, the metadata
//! store, the secret store and authentication.
//!
//! - [`serve`] runs it from a [`ServeConfig`]: opens `DIR/refract.db` (SQLite, migrated on start)
//!   and `DIR/secrets.enc`, creates the admin customer and its key file on first start, listens
//!   and stops gracefully on SIGINT/SIGTERM.
//! - [`router`] builds the HTTP surface over an [`AppState`] (for `oneshot` tests and embedding).
//! - [`Service`] holds the logic: handlers call one method of it. The lifecycle work (reconciler,
//!   runtime driver) extends it.
//! - [`store`]: the [`Store`]/[`Tx`] traits ("What do we store?") and [`SqliteStore`].
//! - [`SecretStore`]: AES-256-GCM encrypted secrets (source passwords).
//!
//! **Architecture invariant:** passwords live only in the secret store; they are never written to
//! the metadata store, a log line, an error or a response.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = refract_control_plane::ServeConfig {
//!     data_dir: "/var/lib/refract".into(),
//!     listen: "127.0.0.1:7700".into(),
//!     master_key: None,
//!     engine_binary: "/usr/bin/refract".into(),
//!     http: Default::default(),
//!     sqlite_roots: vec!["/srv/sqlite".into()],
//!     runtime: Default::default(),
//!     store: None,
//!     managed_backup_dir: None,
//!     managed_servers: Default::default(),
//!     managed_allow_plaintext: false,
//! };
//! refract_control_plane::serve(config).await
//! # }
//! ```
#![deny(missing_docs)]

pub mod api;
mod dashboard;
mod error;
mod extract;
mod http;
pub mod keys;
pub mod leader;
pub mod lifecycle;
mod managed_hooks;
pub mod plans;
pub mod secrets;
mod service;
pub mod sqlite_roots;
pub mod store;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

pub use dashboard::sign_in_link;
pub use error::ApiError;
pub use extract::{parse_json, ApiJson, AppState, Auth};
pub use http::{metrics_handle, router, router_with, ApiDoc};
pub use managed_hooks::ManagedRuntime;
pub use secrets::SecretStore;
pub use service::{
    password_secret_name, pending, redact_report, Principal, Service, TEST_CONNECTION_TIMEOUT,
};
pub use store::{PostgresStore, SqliteStore, Store, Tx};

/// Configuration of `refract serve`, assembled by the binary from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory holding the metadata store, secret store, admin key and engine files.
    pub data_dir: PathBuf,
    /// `host:port` to listen on.
    pub listen: String,
    /// Master key for the secret store (from `REFRACT_MASTER_KEY`); else a key file in the data dir.
    pub master_key: Option<String>,
    /// The `refract` executable, started as `refract engine` by the local runtime driver.
    pub engine_binary: PathBuf,
    /// Connection limits of the HTTP server.
    pub http: refract_http::HttpLimits,
    /// Directories SQLite source files may be in (`--sqlite-root`); empty = SQLite sources are
    /// refused. The data directory is never allowed (see [`sqlite_roots`]).
    pub sqlite_roots: Vec<PathBuf>,
    /// Where engines run: local processes (the default) or a driver built by the binary (the
    /// Kubernetes driver of `--runtime kubernetes`).
    pub runtime: EngineRuntime,
    /// The metadata store: `None` for the embedded SQLite file `DIR/refract.db`, or a
    /// `postgres://` URL shared by several replicas (`--store`, `REFRACT_STORE`; see
    /// [`leader`] and docs/operations.md).
    pub store: Option<String>,
    /// Where managed servers' backups go (`--managed-backup-dir`); default `DIR/managed/backups`.
    pub managed_backup_dir: Option<PathBuf>,
    /// Where managed database servers run: local processes (the default), or a platform
    /// runtime built by the binary (`refract_kubernetes::KubernetesServers` with
    /// `--runtime kubernetes`).
    pub managed_servers: ManagedRuntime,
    /// Managed PostgreSQL and MySQL servers also accept plain-text logins
    /// (`--managed-allow-plaintext`); TLS only by default.
    pub managed_allow_plaintext: bool,
}

/// The runtime engines run on ([`ServeConfig::runtime`]).
#[derive(Clone, Default)]
pub enum EngineRuntime {
    /// Local processes under `DIR/instances`, as an unprivileged user when root.
    #[default]
    Local,
    /// Another driver (e.g. `refract_kubernetes::KubernetesDriver`); its `region()` names it.
    Driver(Arc<dyn refract_runtime::Driver>),
}

impl std::fmt::Debug for EngineRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineRuntime::Local => f.write_str("Local"),
            EngineRuntime::Driver(d) => write!(f, "Driver({})", d.region()),
        }
    }
}

/// The metadata store a `--store` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://` URL).
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://…`, `postgresql://…` or `sqlite:PATH`; `None` is `DIR/refract.db`.
    pub fn parse(value: Option<&str>, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(StoreLocation::Sqlite(data_dir.join("refract.db")));
        };
        if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(v.to_string()));
        }
        if let Some(path) = v.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            anyhow::ensure!(!path.is_empty(), "--store sqlite:PATH needs a path");
            return Ok(StoreLocation::Sqlite(std::path::absolute(path)?));
        }
        anyhow::bail!(
            "--store: expected postgres://USER:PASSWORD@HOST:PORT/DB or sqlite:PATH (the value given \
             is not shown: it may hold a password)"
        )
    }
}

/// Opens the stores in `config.data_dir` (creating them on first start, with the admin customer)
/// and returns the service. Prints the admin key file's path once, when it is created.
pub async fn open(config: &ServeConfig) -> anyhow::Result<Service> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("create data dir {}", dir.display()))?;
    // Held for the life of the process: offline commands that must not run beside a control
    // plane (`refract store rotate-key`) take it exclusively. Replicas sharing DIR share it.
    static SERVING: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if SERVING.get().is_none() {
        let _ = SERVING.set(data_dir_lock(&dir, false)?);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Only the owner may list what is in there (keys, secrets, database file).
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let key = match &config.master_key {
        Some(k) if !k.trim().is_empty() => secrets::key_from_master(k),
        _ => secrets::key_from_file(&dir)?,
    };
    let mut service = match StoreLocation::parse(config.store.as_deref(), &dir)? {
        StoreLocation::Sqlite(db_path) => {
            let secrets = Arc::new(SecretStore::open(&dir, key)?);
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db_path)).await??;
            Service::new(Arc::new(store), secrets)
        }
        StoreLocation::Postgres(url) => {
            let pg = tokio::task::spawn_blocking(move || PostgresStore::open(&url)).await??;
            let pg = Arc::new(pg);
            let pool = pg.pool();
            let secrets = Arc::new(
                tokio::task::spawn_blocking(move || SecretStore::open_postgres(pool, key))
                    .await??,
            );
            let mut service = Service::new(pg.clone(), secrets);
            service.leadership = leader::Leadership::replica();
            let pool = pg.pool();
            service
                .lifecycle
                .set_peer_wake(Arc::new(move || leader::notify_peers(&pool)));
            tracing::info!(store = %store::redact_url(pg.url()), replica = %service.leadership.replica_name(),
                "metadata store: PostgreSQL (one leader among the replicas runs the reconcilers)");
            service.postgres = Some(pg);
            service
        }
    };
    // Never the data dir (nor the managed servers' fallback directory), whatever the roots say.
    let never = [
        dir.clone(),
        PathBuf::from(refract_managed::FALLBACK_SERVERS_ROOT),
    ];
    service.sqlite_roots = Arc::new(sqlite_roots::SqliteRoots::new(
        &config.sqlite_roots,
        &never,
    )?);
    if service.sqlite_roots.enabled() {
        let roots: Vec<String> = service
            .sqlite_roots
            .roots()
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        tracing::info!(roots = %roots.join(":"), "SQLite sources allowed under these roots");
    } else {
        tracing::info!("no --sqlite-root: SQLite sources are refused");
    }
    // Engines run as local processes under DIR/instances (adopted again after a restart), as an
    // unprivileged user when this process is root: it needs the search bit on DIR (never read).
    let engine_user = refract_runtime::user::engine_user()?;
    let engine_dir = engine_files_dir(&dir, &engine_user)?;
    let driver: Arc<dyn refract_runtime::Driver> = match &config.runtime {
        EngineRuntime::Local => Arc::new(
            refract_runtime::LocalProcessDriver::new(engine_dir.join("instances"))
                .run_as(engine_user.clone()),
        ),
        EngineRuntime::Driver(d) => {
            service.region = d.region().to_string();
            d.clone()
        }
    };
    service.lifecycle.configure(lifecycle::Runtime {
        driver,
        data_dir: dir.clone(),
        engine_dir,
        engine_binary: config.engine_binary.clone(),
        engine_user,
    });
    let key_path = dir.join("admin-key");
    let path = key_path.clone();
    let created = service
        .ensure_admin(move |token| secrets::write_private(&path, format!("{token}\n").as_bytes()))
        .await
        .map_err(|e| anyhow::anyhow!("create the admin customer: {e}"))?;
    if created {
        println!(
            "admin management key written to {} (readable only by this user)",
            key_path.display()
        );
    }
    Ok(service)
}

/// Where the files engines read live: the data directory when the engine user can reach it
/// (its search bit is set for others, never read), else — as root with the data directory under
/// a directory other users cannot search, e.g. `/root` — `/var/lib/refract/engines/<hash of DIR>`.
fn engine_files_dir(
    dir: &std::path::Path,
    user: &refract_runtime::user::ServiceUser,
) -> anyhow::Result<PathBuf> {
    let Err(e) = refract_runtime::user::ensure_reachable(dir, dir, user) else {
        return Ok(dir.to_path_buf());
    };
    use std::os::unix::fs::PermissionsExt;
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let hash = keys::sha256_hex(&canonical.display().to_string());
    let fallback = PathBuf::from(lifecycle::ENGINE_FILES_FALLBACK).join(&hash[..16]);
    let mut at = PathBuf::new();
    for part in fallback.components() {
        at.push(part);
        if at.starts_with("/var/lib") && at != std::path::Path::new("/var/lib") {
            std::fs::create_dir_all(&at).with_context(|| format!("create {}", at.display()))?;
            // Searchable by the engine user, listable by nobody else.
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("set the mode of {}", at.display()))?;
        }
    }
    refract_runtime::user::ensure_reachable(&fallback, &fallback, user)
        .map_err(|e2| anyhow::anyhow!("{e}; and the fallback {}: {e2}", fallback.display()))?;
    tracing::info!(
        data_dir = %dir.display(),
        engine_dir = %fallback.display(),
        reason = %e,
        "engines cannot reach the data directory: their files live in a directory of their own"
    );
    Ok(fallback)
}

/// `refract admin new-key --data-dir DIR`: writes a fresh management key of the admin customer
/// to `DIR/admin-key` (0600, replacing the file) and returns its path. Offline recovery for an
/// operator who lost or revoked every admin key: needs the data directory and its master key
/// (`master.key` or `REFRACT_MASTER_KEY`), nothing else. Works while `refract serve` runs.
pub async fn new_admin_key(
    data_dir: &std::path::Path,
    master_key: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let db_path = data_dir.join("refract.db");
    anyhow::ensure!(
        db_path.exists(),
        "{} is not a Refract data directory (no refract.db)",
        data_dir.display()
    );
    let key = match master_key {
        Some(k) if !k.trim().is_empty() => secrets::key_from_master(k),
        _ => secrets::key_from_file(data_dir)?,
    };
    let secrets = Arc::new(SecretStore::open(data_dir, key)?);
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db_path)).await??;
    let service = Service::new(Arc::new(store), secrets);
    let key_path = data_dir.join("admin-key");
    let path = key_path.clone();
    service
        .recovery_admin_key(move |token| {
            secrets::write_private(&path, format!("{token}\n").as_bytes())
        })
        .await
        .map_err(|e| anyhow::anyhow!("create a recovery key: {e}"))?;
    Ok(key_path)
}

/// `refract store migrate --from sqlite:PATH --to postgres://…`: copies the SQLite store at
/// `from` (and the secrets beside it, opened with `REFRACT_MASTER_KEY` or that directory's
/// `master.key`) into the empty PostgreSQL store `to`. See [`store::migrate`].
pub async fn migrate_store(
    from: &str,
    to: &str,
    master_key: Option<&str>,
) -> anyhow::Result<store::migrate::MigrationReport> {
    let StoreLocation::Sqlite(path) = StoreLocation::parse(Some(from), std::path::Path::new("."))?
    else {
        anyhow::bail!("--from must be sqlite:PATH (the SQLite store file, DIR/refract.db)");
    };
    let StoreLocation::Postgres(url) = StoreLocation::parse(Some(to), std::path::Path::new("."))?
    else {
        anyhow::bail!("--to must be a postgres:// URL");
    };
    let dir = path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let key = match master_key {
        Some(k) if !k.trim().is_empty() => secrets::key_from_master(k),
        _ => {
            anyhow::ensure!(
                dir.join("master.key").is_file(),
                "no master key: {} has no master.key (set REFRACT_MASTER_KEY to the key the \
                 control plane used)",
                dir.display()
            );
            secrets::key_from_file(&dir)?
        }
    };
    tokio::task::spawn_blocking(move || store::migrate::sqlite_to_postgres(&path, &url, key))
        .await?
}

/// `DIR/control-plane.lock` under `flock`: shared (`refract serve`, every replica on this
/// machine) or exclusive and non-blocking (offline maintenance); released when the file closes.
fn data_dir_lock(dir: &std::path::Path, exclusive: bool) -> anyhow::Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("control-plane.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let op = if exclusive {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("lock {}", path.display()));
    }
    Ok(file)
}

/// `refract store rotate-key`: seals every secret again under a new master key (`new_key`, or a
/// random one) and, when the key came from `DIR/master.key`, replaces that file; returns how
/// many secrets were resealed and where the new key is. Stop every control plane first; copy the
/// new `master.key` to every replica before starting them.
pub async fn rotate_master_key(
    data_dir: &std::path::Path,
    store: Option<&str>,
    master_key: Option<&str>,
    new_key: Option<&str>,
) -> anyhow::Result<(usize, String)> {
    let old = match master_key {
        Some(k) if !k.trim().is_empty() => secrets::key_from_master(k),
        _ => {
            anyhow::ensure!(
                data_dir.join("master.key").is_file(),
                "{} has no master.key (set REFRACT_MASTER_KEY to the current key)",
                data_dir.display()
            );
            secrets::key_from_file(data_dir)?
        }
    };
    let env_key = master_key.is_some_and(|k| !k.trim().is_empty());
    let from_env = new_key.is_some_and(|k| !k.trim().is_empty());
    // A key from the environment is the operator's to keep: a random new one would be lost.
    anyhow::ensure!(
        !env_key || from_env,
        "the master key comes from REFRACT_MASTER_KEY: set REFRACT_NEW_MASTER_KEY to the new key \
         (and, afterwards, REFRACT_MASTER_KEY to it on every replica)"
    );
    // Nothing may seal or read a secret with the old key meanwhile.
    let _serving = data_dir_lock(data_dir, true).map_err(|_| {
        anyhow::anyhow!(
            "a control plane is running on {}: stop every replica first",
            data_dir.display()
        )
    })?;
    let next = match new_key.filter(|k| !k.trim().is_empty()) {
        Some(k) => secrets::key_from_master(k),
        None => {
            let mut k = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
            k
        }
    };
    anyhow::ensure!(next != old, "the new key is the current key");
    let dir = data_dir.to_path_buf();
    let location = StoreLocation::parse(store, data_dir)?;
    let key_file = dir.join("master.key");
    tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, String)> {
        let secrets = match &location {
            StoreLocation::Sqlite(_) => SecretStore::open(&dir, old)?,
            StoreLocation::Postgres(url) => {
                let pool = PostgresStore::open(url)?.pool();
                // Replicas on other machines: the lease says whether one still runs.
                if let Some(holder) = leader::holder(&pool)? {
                    anyhow::bail!(
                        "replica {holder} is running on this store: stop every replica first \
                         (its lease ends {} s after it stops)",
                        leader::TTL.as_secs()
                    );
                }
                SecretStore::open_postgres(pool, old)?
            }
        };
        // The new key is on disk before any secret depends on it.
        let staged = dir.join("master.key.next");
        if !env_key && !from_env {
            secrets::write_private(&staged, hex::encode(next).as_bytes())?;
        }
        let n = secrets.reseal(next)?;
        let whereto = if env_key || from_env {
            "set REFRACT_MASTER_KEY to the new key (REFRACT_NEW_MASTER_KEY) on every replica"
                .to_string()
        } else {
            std::fs::rename(&staged, &key_file)
                .with_context(|| format!("replace {}", key_file.display()))?;
            format!(
                "the new key is in {}: copy it to every replica",
                key_file.display()
            )
        };
        Ok((n, whereto))
    })
    .await?
}

/// Run the control plane until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let service = open(&config).await?;
    // Managed database servers (/api/v1, seed 004): their own store file and driver directory.
    let managed = managed_hooks::open(
        &config.data_dir,
        config.managed_backup_dir.clone(),
        config.managed_allow_plaintext,
        &config.managed_servers,
        &service,
    )?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts parse this line for the real port (`--listen 127.0.0.1:0`).
    println!("refract control plane listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "control plane started");
    serve_with(
        service,
        Some(managed),
        listener,
        config.http,
        shutdown_signal(),
    )
    .await
}

/// Serves an opened [`Service`] on `listener` with its reconciler and health poller until
/// `shutdown` completes (for embedding, e.g. `refract quickstart`). Engines keep running after
/// it returns; the next start adopts them.
pub async fn run(
    service: Service,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_managed(service, None, listener, shutdown).await
}

/// [`run`], plus the managed database servers: their `/api/v1` routes and their reconciler
/// (`refract-managed`). Managed servers, like engines, keep running after it returns.
pub async fn run_with_managed(
    service: Service,
    managed: Option<refract_managed::ManagedService>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(service, managed, listener, Default::default(), shutdown).await
}

async fn serve_with(
    service: Service,
    managed: Option<refract_managed::ManagedService>,
    listener: tokio::net::TcpListener,
    limits: refract_http::HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    match service.postgres.clone() {
        // The embedded store: this process is the only one, always the leader.
        None => {
            tasks = service.lifecycle.start(service.clone(), cancel.clone());
            tasks.extend(managed.as_ref().map(|m| m.spawn_reconciler(cancel.clone())));
        }
        // Several replicas: the holder of the lease runs the reconcilers; every replica listens
        // for wake-ups (only the leader's reconciler acts on them).
        Some(pg) => {
            let lifecycle = service.lifecycle.clone();
            tasks.push(tokio::spawn(leader::listen(
                pg.url().to_string(),
                cancel.clone(),
                move || lifecycle.wake_local(),
            )));
            let (s, m) = (service.clone(), managed.clone());
            tasks.push(tokio::spawn(leader::run(
                pg,
                service.leadership.clone(),
                cancel.clone(),
                move |term| {
                    let mut t = s.lifecycle.start(s.clone(), term.clone());
                    t.extend(m.as_ref().map(|m| m.spawn_reconciler(term)));
                    t
                },
            )));
        }
    }
    // The managed routes go behind the same request-id, tracing and metrics layers as `/v1`.
    let app = router_with(AppState { service }, managed.as_ref().map(|m| m.router()));
    let served = refract_http::serve(listener, app, limits, shutdown)
        .await
        .context("serve HTTP");
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("control plane stopped");
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests;
