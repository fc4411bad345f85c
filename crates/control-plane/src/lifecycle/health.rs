//! The health poller: every 5 s, `GET /stats` of every live engine into its instance row
//! (`healthStatus`, `snapshotAgeMs`, `swapCount`, `rowCounts`, `lastHealthCheck`), and the
//! database's `replication_paused` flag re-applied to an engine that disagrees (one restarted
//! after a crash starts unfrozen).

use std::time::Duration;

use refract_protocol::{EngineStatus, Health, ReplicationState as EngineReplicationState};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bookkeeping::{admin_token, now};
use crate::api::{Backend, HealthStatus, ReplicationState, ReplicationView};
use crate::store::lifecycle::InstanceRecord;
use crate::store::DatabaseRow;
use crate::Service;

/// How often every engine is checked.
pub const INTERVAL: Duration = Duration::from_secs(5);

pub(super) async fn run(service: Service, cancel: CancellationToken) {
    loop {
        if let Err(e) = poll_all(&service).await {
            tracing::warn!(error = %e, "health poll failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

async fn poll_all(s: &Service) -> crate::store::StoreResult<()> {
    let targets = s
        .read_store(|tx| {
            let mut out = Vec::new();
            for i in tx.lifecycle().live_instances(None)? {
                if let Some(d) = tx.lifecycle().database(i.database_id)? {
                    let backend = tx
                        .get_connection(d.customer_id, d.connection_id)?
                        .map(|c| c.backend);
                    out.push((i, d, backend));
                }
            }
            Ok(out)
        })
        .await?;
    let mut set = JoinSet::new();
    for (inst, db, backend) in targets {
        let s = s.clone();
        set.spawn(async move { check(&s, inst, db, backend).await });
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// `healthStatus` from an engine's `/stats` (or `/health`) answer.
pub(super) fn classify(h: &Health, db: &DatabaseRow, backend: Option<Backend>) -> HealthStatus {
    let state = h.replication.state;
    match h.status {
        EngineStatus::CapExceeded => HealthStatus::CapExceeded,
        EngineStatus::Ok => {
            // A SQLite source is reloaded only when its file changes, so an old snapshot is a
            // fresh one there; a frozen snapshot is old on purpose; a change stream publishes
            // only when the source changes, and `streaming` means it hears the source's
            // heartbeats (the engine reconnects after 30 s of silence), so idle is fresh too.
            let stale = backend != Some(Backend::Sqlite)
                && !h.replication.paused
                && state != EngineReplicationState::Streaming
                && h.snapshot_age_ms
                    .is_some_and(|a| a > 3 * 1000 * db.sync_interval.max(1) as u64);
            if stale || state == EngineReplicationState::Error {
                HealthStatus::Degraded
            } else {
                HealthStatus::Ok
            }
        }
        // `degraded`, or `loading` again after a restart
        EngineStatus::Degraded | EngineStatus::Loading => HealthStatus::Degraded,
    }
}

/// The `replication` of `GET …/instance` from an engine's `/stats`: mode, state, lag, and the
/// last error while the stream is not `streaming`/`polling` (the engine keeps the last error
/// after it recovered; shown only while it matters).
pub(super) fn replication_view(h: &Health) -> ReplicationView {
    let r = &h.replication;
    let state = match r.state {
        EngineReplicationState::Loading => ReplicationState::Loading,
        EngineReplicationState::Polling => ReplicationState::Polling,
        EngineReplicationState::PollFallback => ReplicationState::PollFallback,
        EngineReplicationState::Streaming => ReplicationState::Streaming,
        EngineReplicationState::Reloading => ReplicationState::Reloading,
        EngineReplicationState::Reconnecting => ReplicationState::Reconnecting,
        EngineReplicationState::Paused => ReplicationState::Paused,
        EngineReplicationState::Error => ReplicationState::Error,
    };
    let failing = !matches!(
        state,
        ReplicationState::Streaming
            | ReplicationState::Polling
            | ReplicationState::Paused
            | ReplicationState::Loading
    );
    ReplicationView {
        mode: r.mode.clone(),
        state,
        lag_ms: r.lag_ms,
        error: failing
            .then(|| r.last_error.clone().or_else(|| h.message.clone()))
            .flatten(),
        fatal: failing.then_some(r.fatal.unwrap_or(false)),
    }
}

async fn check(s: &Service, inst: InstanceRecord, db: DatabaseRow, backend: Option<Backend>) {
    let Some(endpoint) = inst.control().map(str::to_string) else {
        return;
    };
    let token = match admin_token(s, db.id) {
        Ok(t) => t,
        Err(_) => return,
    };
    let engine = s.lifecycle.engine();
    let stats = engine.stats(&endpoint, &token).await;
    let t = now();
    let (health, age, swaps, rows) = match &stats {
        Ok(v) => (
            classify(&v.health, &db, backend),
            v.health.snapshot_age_ms.map(|ms| ms as i64),
            Some(v.health.swap_count as i64),
            v.row_counts.clone().map(Value::Object),
        ),
        Err(_) => (HealthStatus::Unreachable, None, None, None),
    };
    let replication = stats.as_ref().ok().map(|v| replication_view(&v.health));
    if let Ok(v) = &stats {
        let engine_paused = v.health.replication.paused;
        if engine_paused != db.replication_paused {
            let path = if db.replication_paused {
                "replication/pause"
            } else {
                "replication/resume"
            };
            if let Err(e) = engine
                .admin(&endpoint, &token, path, Duration::from_secs(5))
                .await
            {
                tracing::warn!(database = %db.id, error = %format!("{e:#}"), "cannot re-apply the replication switch");
            }
        }
    }
    let id = inst.id;
    let _ = s
        .write_store(move |tx| {
            // Re-read: the instance may have been stopped meanwhile.
            let Some(mut i) = tx.lifecycle().instance(id)? else {
                return Ok(());
            };
            if i.stopped_at.is_some() {
                return Ok(());
            }
            i.health_status = Some(health);
            if age.is_some() || swaps.is_some() {
                i.snapshot_age_ms = age;
                i.swap_count = swaps;
            }
            if rows.is_some() {
                i.row_counts = rows;
            }
            if replication.is_some() {
                i.replication = replication;
            }
            i.last_health_check = Some(t);
            i.updated_at = t;
            tx.lifecycle().update_instance(&i)
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Status;
    use crate::lifecycle::bookkeeping::tests::db;

    fn health(v: Value) -> Health {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_idle_stream_is_ok_and_a_failing_one_degraded() {
        let d = db(Status::Running, None); // sync interval 30 s: stale after 90 s
        let pg = Some(Backend::Postgres);
        let idle = health(serde_json::json!({"status": "ok", "snapshotAgeMs": 600_000,
                          "replication": {"mode": "logical", "state": "streaming"}}));
        assert_eq!(classify(&idle, &d, pg), HealthStatus::Ok);
        let reconnecting = health(serde_json::json!({"status": "ok", "snapshotAgeMs": 600_000,
                                  "replication": {"mode": "logical", "state": "reconnecting"}}));
        assert_eq!(classify(&reconnecting, &d, pg), HealthStatus::Degraded);
        let failing = health(serde_json::json!({"status": "ok", "snapshotAgeMs": 10,
                             "replication": {"mode": "binlog", "state": "error", "lastError": "x", "fatal": true}}));
        assert_eq!(classify(&failing, &d, pg), HealthStatus::Degraded);
        let view = replication_view(&failing);
        assert_eq!(view.state, ReplicationState::Error);
        assert_eq!(view.error.as_deref(), Some("x"));
        assert_eq!(view.fatal, Some(true));
        let stale_poll = health(serde_json::json!({"status": "ok", "snapshotAgeMs": 600_000,
                                "replication": {"mode": "poll", "state": "polling"}}));
        assert_eq!(classify(&stale_poll, &d, pg), HealthStatus::Degraded);
        let streaming = replication_view(&idle);
        assert_eq!((streaming.error, streaming.fatal), (None, None));
        let cap = health(serde_json::json!({"status": "cap_exceeded"}));
        assert_eq!(classify(&cap, &d, pg), HealthStatus::CapExceeded);
    }
}
