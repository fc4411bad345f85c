//! Stopping engines: `pausing` / `terminating` ([`stop`]), engines replaced or abandoned by an
//! operation ([`cleanup`]), and engines no database wants ([`sweep`]).

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use super::bookkeeping::{admin_token, clear_op, commit, now, InFlight, Next};
use super::error::StepResult;
use super::state::{step_delay, Runtime};
use crate::api::Status;
use crate::store::lifecycle::{CrashLog, InstanceRecord, OpKind, OpsRecord};
use crate::store::DatabaseRow;
use crate::store::StoreError;
use crate::Service;

/// Grace of a SIGTERM before SIGKILL when stopping an engine.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);

pub(super) async fn cleanup(
    s: &Service,
    rt: &Runtime,
    db: &DatabaseRow,
    o: &OpsRecord,
) -> StepResult<Next> {
    // An engine that cannot be stopped now is dropped from the list anyway: nothing wants it any
    // more, so the orphan sweep keeps trying (and the database's own steps are not held up).
    let done = o.cleanup.clone();
    for id in &done {
        let rid = id.to_string();
        match rt.driver.stop(&rid, STOP_GRACE).await {
            Ok(_) => {
                if let Err(e) = rt.driver.remove(&rid).await {
                    tracing::warn!(instance = %rid, error = %e, "cannot remove a stopped engine");
                }
            }
            Err(e) => {
                tracing::warn!(instance = %rid, error = %e, "cannot stop a replaced engine; the sweep retries")
            }
        }
    }
    let id = db.id;
    s.write_store(move |tx| {
        let mut o = tx.lifecycle().ops(id)?;
        o.cleanup.retain(|c| !done.contains(c));
        tx.lifecycle().put_ops(&o)
    })
    .await?;
    Ok(Next::Again)
}

/// Before a termination: ask the running engines to drop their replication slot and
/// publications, while they can still reach the source, so that the source stops retaining WAL
/// for a database that is gone. Best effort: a source that is down keeps its slot (logged).
async fn drop_replication(s: &Service, database: Uuid, live: &[InstanceRecord]) {
    let Ok(token) = admin_token(s, database) else {
        return;
    };
    for endpoint in live.iter().filter_map(|i| i.control()) {
        let answer = s
            .lifecycle
            .engine()
            .admin(
                endpoint,
                &token,
                "replication/drop",
                Duration::from_secs(45),
            )
            .await;
        if let Err(e) = answer {
            tracing::warn!(%database, error = %e, "cannot drop the replication slot; drop it on the source by hand");
        }
    }
}

/// `pausing` / `terminating`: stop every engine of the database.
pub(super) async fn stop(s: &Service, rt: &Runtime, f: InFlight) -> StepResult<Next> {
    let InFlight { db, o, op, guard } = f;
    step_delay().await;
    let id = db.id;
    let live = s
        .read_store(move |tx| tx.lifecycle().live_instances(Some(id)))
        .await?;
    if op.kind == OpKind::Terminate {
        drop_replication(s, db.id, &live).await;
    }
    let mut ids: Vec<Uuid> = live.iter().map(|i| i.id).collect();
    ids.extend(op.new_instance);
    ids.extend(o.cleanup.iter().copied());
    for i in &ids {
        let rid = i.to_string();
        if let Err(e) = rt.driver.stop(&rid, STOP_GRACE).await {
            tracing::warn!(instance = %rid, error = %e, "cannot stop an engine; retrying");
            return Ok(Next::Idle);
        }
        if let Err(e) = rt.driver.remove(&rid).await {
            tracing::warn!(instance = %rid, error = %e, "cannot remove an engine's files");
        }
    }
    let target = if op.kind == OpKind::Terminate {
        Status::Terminated
    } else {
        Status::Paused
    };
    commit(s, db.id, guard, move |tx, d, o, note| {
        let t = now();
        for mut live in tx.lifecycle().live_instances(Some(d.id))? {
            live.stopped_at = Some(t);
            live.updated_at = t;
            tx.lifecycle().update_instance(&live)?;
        }
        o.cleanup.retain(|c| !ids.contains(c));
        if target == Status::Terminated {
            d.replication_paused = false;
        }
        d.status = target;
        o.crash = CrashLog::default();
        note.cause = op.cause.clone();
        note.message = format!("{}: engine stopped", op.kind.as_str());
        clear_op(d, o);
        Ok(())
    })
    .await?;
    Ok(Next::Again)
}

/// Stops and removes instances the store does not want (any more): engines of deleted databases,
/// of rolled-back deploys, or started by a step that lost a race.
pub(super) async fn sweep(s: &Service, rt: &Runtime) -> anyhow::Result<()> {
    // The driver first, the store second: an instance is recorded before it is started, so
    // everything in this list is already in what is read next.
    let listed = rt.driver.list().await?;
    let wanted: HashSet<Uuid> = s
        .read_store(|tx| {
            let mut w: HashSet<Uuid> = tx
                .lifecycle()
                .live_instances(None)?
                .into_iter()
                .map(|i| i.id)
                .collect();
            for o in tx.lifecycle().all_ops()? {
                if let Some(op) = o.op {
                    w.extend(op.new_instance);
                    w.extend(op.old_instance);
                }
            }
            Ok(w)
        })
        .await
        .map_err(|e: StoreError| anyhow::anyhow!("{e}"))?;
    for (rid, status) in listed {
        let Ok(id) = Uuid::parse_str(&rid) else {
            continue;
        };
        if wanted.contains(&id) {
            continue;
        }
        if status.is_alive() {
            tracing::info!(instance = %rid, "stopping an engine no database wants");
            if let Err(e) = rt.driver.stop(&rid, STOP_GRACE).await {
                tracing::warn!(instance = %rid, error = %e, "cannot stop an unwanted engine");
                continue;
            }
        }
        if let Err(e) = rt.driver.remove(&rid).await {
            tracing::warn!(instance = %rid, error = %e, "cannot remove an unwanted engine's files");
        }
    }
    Ok(())
}
