//! This crate provides the engine service (`refract engine --config FILE`): the data plane of one
//! database. It loads the source's tables into an in-memory [`refract_storage::Snapshot`], keeps
//! it fresh (poll sync), and answers `POST /query` over HTTP.
//!
//! The main types:
//! - [`EngineConfig`]: the config file (YAML or JSON);
//! - [`EngineState`]: the published snapshot behind one atomic pointer, load bookkeeping, keys,
//!   metrics; [`EngineState::reload`] builds and publishes a new snapshot;
//! - [`router`]: the HTTP API over a state (tests drive it with `tower::ServiceExt::oneshot`);
//! - [`run`] / [`serve`]: bind, print the ready line, load, sync, serve until shut down.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let config = refract_engine::EngineConfig::parse("source: {backend: sqlite, path: shop.db}")?;
//! refract_engine::run(config).await
//! # }
//! ```
//!
//! **Architecture invariant:** the engine never writes to a source, and a query never waits for
//! a load: loads build a new snapshot aside and publish it with one swap.
#![deny(missing_docs)]

mod cdc;
mod config;
mod doc;
mod http;
mod keys;
mod loader;
pub mod lock;
mod metrics;
mod state;
mod sync;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::{source_params, EngineConfig, ReconnectMode, SourceConfig, SyncConfig, SyncMode};
pub use doc::{openapi_json, schema_json};
pub use http::{router, ApiError, MAX_BODY_BYTES};
pub use keys::{constant_time_eq, secret_sha256, AdminToken, AuthError, KeySet, KeyStore};
pub use loader::load_tables_once;
pub use metrics::{Metrics, QueryStatus};
pub use state::{EngineState, LoadError, ReloadReport, Trigger};
pub use sync::spawn_background;

/// The start of the line printed on stdout once the engine listens; the URL follows.
pub const READY_LINE_PREFIX: &str = "refract engine listening on ";

/// How long a graceful stop waits for in-flight requests before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Run an engine from its config file until it is shut down. First takes the exclusive lock of
/// the config file's directory ([`lock::lock_dir`]), held until the process exits: a second
/// engine in the same directory refuses to start.
pub async fn run_from_file(config: PathBuf) -> anyhow::Result<()> {
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let _lock = lock::lock_dir(&dir)?;
    let config = EngineConfig::load(&config)?;
    run(config).await
}

/// Run an engine: bind the listener, print `refract engine listening on http://IP:PORT` on
/// stdout, then load and serve until `POST /admin/shutdown`, SIGTERM or SIGINT.
///
/// With `control_listen`, the ready line names the control address and `listen` (bound at once,
/// so a taken port fails the start) accepts connections only once the first snapshot is in.
pub async fn run(config: EngineConfig) -> anyhow::Result<()> {
    let state = EngineState::new(config)?;
    let cfg = state.config();
    let (listen, control) = (cfg.listen, cfg.control_listen);
    let public = bind_public(listen, cfg.reuse_port, cfg.takeover)?;
    let (listener, deferred) = match control {
        Some(addr) => {
            let control = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding control_listen {addr}"))?;
            (control, Some(public))
        }
        None => (public.listen(LISTEN_BACKLOG).context("listening")?, None),
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{READY_LINE_PREFIX}http://{addr}").context("writing the ready line")?;
        out.flush().context("writing the ready line")?;
    }
    let signals = tokio::spawn(wait_for_signal(state.clone()));
    let result = serve_with(state, listener, deferred).await;
    signals.abort();
    result
}

/// Pending connections of a listener.
const LISTEN_BACKLOG: u32 = 1024;

/// How long a stopping engine with `reuse_port` keeps its open connections, answering each
/// next request with `Connection: close`, before closing the idle ones.
const HANDOVER_DRAIN: Duration = Duration::from_secs(2);

/// Binds (without listening) the client-facing address. With `reuse_port` the socket gets
/// `SO_REUSEPORT`; unless `takeover`, the port must then be free: a plain bind is tried first,
/// so this engine never silently shares a port with a process that holds it.
fn bind_public(
    addr: std::net::SocketAddr,
    reuse_port: bool,
    takeover: bool,
) -> anyhow::Result<tokio::net::TcpSocket> {
    let in_use = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} is in use by another process: cannot listen on {addr} ({e})",
                addr.port()
            )
        } else {
            anyhow::anyhow!("binding {addr}: {e}")
        }
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("creating a socket")?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    if reuse_port && addr.port() != 0 {
        if !takeover {
            // Free now? (A bind without SO_REUSEPORT fails while anyone holds the port.)
            drop(std::net::TcpListener::bind(addr).map_err(in_use)?);
        }
        #[cfg(unix)]
        socket.set_reuseport(true).context("SO_REUSEPORT")?;
    }
    socket.bind(addr).map_err(in_use)?;
    Ok(socket)
}
async fn wait_for_signal(state: Arc<EngineState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                state.shutdown();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    }
    state.shutdown();
}

/// Serve `state` on an already bound listener: start the background tasks (first load, poll
/// sync, keys watcher), answer requests, and return once the engine is shut down
/// ([`EngineState::shutdown`]) and in-flight requests are done.
pub async fn serve(state: Arc<EngineState>, listener: TcpListener) -> anyhow::Result<()> {
    serve_with(state, listener, None).await
}

/// [`serve`], plus a client-facing socket (bound, not listening) that starts listening once the
/// first snapshot is published.
async fn serve_with(
    state: Arc<EngineState>,
    listener: TcpListener,
    deferred: Option<tokio::net::TcpSocket>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the bound address")?;
    let public_addr = match &deferred {
        Some(s) => s.local_addr().context("reading the bound address")?,
        None => addr,
    };
    state.set_local_addr(public_addr);
    if !state.keys.is_enforced() {
        tracing::warn!(
            "no keys_file configured: POST /query, /query/explain and /schema need no key"
        );
    }
    if state.config().admin_token_file.is_none() {
        tracing::warn!("no admin_token_file configured: /stats and /admin/* are refused");
    }
    tracing::info!(%addr, source = state.config().source.backend.as_str(), "engine listening");
    let mut tasks = spawn_background(&state);
    let token = state.shutdown_token().clone();
    let drain = if state.config().reuse_port {
        HANDOVER_DRAIN
    } else {
        Duration::ZERO
    };
    // Only clients' connections are drained; the control address has nobody to hand over to.
    let control_drain = if deferred.is_some() {
        Duration::ZERO
    } else {
        drain
    };
    let control = refract_http::serve_draining(
        listener,
        router(state.clone()),
        state.config().http,
        token.clone().cancelled_owned(),
        control_drain,
    );
    let public = serve_when_loaded(state.clone(), deferred, drain);
    let server = async move {
        let (a, b) = tokio::join!(control, public);
        a.and(b)
    };
    let mut server = tokio::spawn(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = token.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    state.shutdown();
    tasks.shutdown().await;
    tracing::info!("engine stopped");
    result
        .context("server task failed")?
        .context("HTTP server failed")
}

/// Makes the kernel give every new connection of the port to this engine, the newest listener of
/// its `SO_REUSEPORT` group: a classic BPF program on the group that answers index 1 (the
/// second socket; the first is the engine being replaced). Without it both would share new
/// connections, and connections waiting in the old engine's accept queue when it closes its
/// listener at the cutover would be reset. Once the old engine is gone, index 1 is out of range
/// and the kernel falls back to its hash over the one socket left; the next replacement joins
/// as index 1 again.
#[cfg(target_os = "linux")]
fn steer_to_newest(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 1,
    }];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `code`, both alive for the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn steer_to_newest(_: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

/// Listens on `socket` once the first snapshot is published (or never, if the engine stops
/// first), then serves the same routes there.
async fn serve_when_loaded(
    state: Arc<EngineState>,
    socket: Option<tokio::net::TcpSocket>,
    drain: Duration,
) -> std::io::Result<()> {
    let Some(socket) = socket else {
        return Ok(());
    };
    let token = state.shutdown_token().clone();
    while state.snapshot().is_none() {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    // The keys as they are now: a key changed while this engine started (the control plane
    // pushes changes only to engines that already announced their control address) is in force
    // before the first client connection.
    if state.keys.is_enforced() {
        let s = state.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.keys.reload_now()).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot re-read the keys file; keeping the keys read at start");
        }
    }
    let listener = socket.listen(LISTEN_BACKLOG)?;
    if state.config().takeover && state.config().reuse_port {
        if let Err(e) = steer_to_newest(&listener) {
            tracing::warn!(error = %e, "cannot steer new connections to this engine; they are spread over both until the old one stops");
        }
    }
    state.set_accepting();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "first snapshot in: accepting client connections");
    }
    refract_http::serve_draining(
        listener,
        router(state.clone()),
        state.config().http,
        token.cancelled_owned(),
        drain,
    )
    .await
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Two listeners share a port; once the second steers, every new connection goes to it, and
    /// after the first closes, the second still gets them all.
    #[tokio::test]
    async fn the_newest_listener_gets_every_new_connection() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let old = bind_public(addr, true, false).unwrap().listen(64).unwrap();
        let new = bind_public(addr, true, true).unwrap().listen(64).unwrap();
        steer_to_newest(&new).unwrap();
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (_c, _) = tokio::time::timeout(Duration::from_secs(2), new.accept())
                .await
                .expect("a connection went to the old listener")
                .unwrap();
        }
        let nothing = tokio::time::timeout(Duration::from_millis(100), old.accept()).await;
        assert!(nothing.is_err(), "the old listener got a connection");
        drop(old);
        for _ in 0..5 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            tokio::time::timeout(Duration::from_secs(2), new.accept())
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[test]
    fn a_taken_port_is_refused_without_takeover() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = squatter.local_addr().unwrap();
        let e = bind_public(addr, true, false).unwrap_err();
        assert!(
            format!("{e:#}").contains(&format!(
                "port {} is in use by another process",
                addr.port()
            )),
            "{e:#}"
        );
    }
}
