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

pub use config::{EngineConfig, ReconnectMode, SourceConfig, SyncConfig, SyncMode};
pub use doc::{openapi_json, schema_json};
pub use http::{router, ApiError, MAX_BODY_BYTES};
pub use keys::{constant_time_eq, secret_sha256, AdminToken, AuthError, KeySet, KeyStore};
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
pub async fn run(config: EngineConfig) -> anyhow::Result<()> {
    let state = EngineState::new(config)?;
    let listen = state.config().listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{READY_LINE_PREFIX}http://{addr}").context("writing the ready line")?;
        out.flush().context("writing the ready line")?;
    }
    let signals = tokio::spawn(wait_for_signal(state.clone()));
    let result = serve(state, listener).await;
    signals.abort();
    result
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
    let addr = listener.local_addr().context("reading the bound address")?;
    state.set_local_addr(addr);
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
    let server = refract_http::serve(
        listener,
        router(state.clone()),
        state.config().http,
        token.clone().cancelled_owned(),
    );
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
