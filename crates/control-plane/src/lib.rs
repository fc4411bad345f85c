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
//! };
//! refract_control_plane::serve(config).await
//! # }
//! ```
#![deny(missing_docs)]

pub mod api;
mod error;
mod extract;
mod http;
pub mod keys;
pub mod lifecycle;
mod managed;
pub mod plans;
pub mod secrets;
mod service;
pub mod sqlite_roots;
pub mod store;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

pub use error::ApiError;
pub use extract::{parse_json, ApiJson, AppState, Auth};
pub use http::{metrics_handle, router, router_with, ApiDoc};
pub use secrets::SecretStore;
pub use service::{
    password_secret_name, pending, redact_report, Principal, Service, TEST_CONNECTION_TIMEOUT,
};
pub use store::{SqliteStore, Store, Tx};

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

/// Opens the stores in `config.data_dir` (creating them on first start, with the admin customer)
/// and returns the service. Prints the admin key file's path once, when it is created.
pub async fn open(config: &ServeConfig) -> anyhow::Result<Service> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("create data dir {}", dir.display()))?;
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
    let secrets = Arc::new(SecretStore::open(&dir, key)?);
    let db_path = dir.join("refract.db");
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db_path)).await??;
    let mut service = Service::new(Arc::new(store), secrets);
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

/// Run the control plane until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let service = open(&config).await?;
    // Managed database servers (/api/v1, seed 004): their own store file and driver directory.
    let managed = managed::open(&config.data_dir, &service)?;
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
    let mut tasks = service.lifecycle.start(service.clone(), cancel.clone());
    tasks.extend(managed.as_ref().map(|m| m.spawn_reconciler(cancel.clone())));
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
