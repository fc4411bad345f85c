//! Background tasks of a running engine: the poll loop (first load, then a full reload every
//! `sync.interval` seconds) or, in `binlog`/`logical` mode, the CDC loop (`crate::cdc`), the
//! keys-file watcher and metrics upkeep.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::SyncMode;
use crate::state::{EngineState, Trigger};

/// Start the background tasks; they stop when the engine's shutdown token is cancelled.
pub fn spawn_background(state: &Arc<EngineState>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    if crate::cdc::cdc_mode(state) {
        tasks.spawn(crate::cdc::cdc_loop(state.clone()));
    } else {
        tasks.spawn(poll_loop(state.clone()));
    }
    if state.keys.is_enforced() {
        tasks.spawn(keys_watcher(state.clone()));
    }
    tasks.spawn(metrics_upkeep(state.clone()));
    tasks
}

async fn poll_loop(state: Arc<EngineState>) {
    let mode = state.config().sync.mode;
    if mode != SyncMode::Poll {
        // binlog on a non-MySQL source, logical on a non-PostgreSQL one, or SQL Server cdc.
        tracing::warn!(
            requested = mode.as_str(),
            "{} sync is not implemented yet: running in poll mode (see /health replication)",
            mode.as_str()
        );
    }
    let interval = Duration::from_secs(state.config().sync.interval);
    let cancel = state.shutdown_token().clone();
    loop {
        if state.poll_due() {
            // Run the load on its own task so that shutdown does not wait for it.
            let s = state.clone();
            let load = tokio::spawn(async move {
                let _ = s.reload(Trigger::Poll).await;
            });
            tokio::select! {
                _ = load => {}
                _ = cancel.cancelled() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn keys_watcher(state: Arc<EngineState>) {
    let cancel = state.shutdown_token().clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => return,
        }
        let s = state.clone();
        // File IO off the async workers.
        let _ = tokio::task::spawn_blocking(move || s.keys.refresh()).await;
    }
}

async fn metrics_upkeep(state: Arc<EngineState>) {
    let cancel = state.shutdown_token().clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancel.cancelled() => return,
        }
        state.metrics.upkeep();
    }
}
