//! `running` with nothing in flight: watch the engine, restart it in place after a crash with
//! exponential backoff, give up after too many crashes.

use std::time::Duration;

use refract_runtime::InstanceStatus;

use super::bookkeeping::{commit, new_op, now, set_op, Guard, Next};
use super::deploy::{exit_text, LOG_LINES};
use super::engine;
use super::launch::{engine_port, launch};
use super::state::Runtime;
use crate::api::{Database, HealthStatus, RuntimeSettings, Status};
use crate::store::lifecycle::{CrashLog, OpKind, OpsRecord};
use crate::store::StoreResult;
use crate::Service;

/// Crash restarts: this many crashes within [`CRASH_WINDOW`] give up (`failed`).
const CRASH_LIMIT: usize = 5;

const CRASH_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// `running` with nothing in flight: is the engine alive? Restart it after a crash, with
/// exponential backoff; give up after [`CRASH_LIMIT`] crashes in [`CRASH_WINDOW`].
pub(super) async fn supervise(
    s: &Service,
    rt: &Runtime,
    db: Database,
    o: OpsRecord,
) -> StoreResult<Next> {
    let id = db.id;
    let live = s
        .read(move |tx| tx.lifecycle().live_instances(Some(id)))
        .await?;
    let guard = Guard::of(&db, &o);
    let Some(inst) = live.into_iter().next() else {
        // Running without an engine (should not happen): deploy the active build again.
        let build = db.internal.active_build_id;
        commit(s, db.id, guard, move |tx, d, o, note| {
            let build = match build {
                Some(b) => Some(b),
                None => tx.lifecycle().latest_deployable_build(d.id)?,
            };
            if build.is_none() {
                d.status = Status::Stopped;
                d.last_error = Some("running without an engine or a build; provision again".into());
                return Ok(());
            }
            let op = new_op(OpKind::Restart, "reconciler", d.status, build, None);
            set_op(d, o, op, "start_engine");
            d.status = Status::Deploying;
            note.message = "no engine found for a running database: starting one".into();
            Ok(())
        })
        .await?;
        return Ok(Next::Again);
    };
    let rid = inst.runtime_id.clone();
    let observed = match rt.driver.status(&rid).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(database = %db.id, error = %e, "runtime status failed");
            return Ok(Next::Idle);
        }
    };
    let t = now();
    let exit_key = match &observed {
        InstanceStatus::Running { endpoint } => {
            let public = o.engine_port.map(engine::public_url);
            let want = public.clone().unwrap_or_else(|| endpoint.clone());
            if inst.control_url.as_deref() != Some(endpoint.as_str())
                || inst.endpoint_url.as_deref() != Some(want.as_str())
            {
                // Restarted: its private control address follows; the client-facing one is the
                // database's port (the engine's own address for a database without one).
                let (iid, ep) = (inst.id, endpoint.clone());
                s.write(move |tx| {
                    if let Some(mut i) = tx.lifecycle().instance(iid)? {
                        i.endpoint_url = Some(want);
                        i.control_url = Some(ep);
                        i.updated_at = now();
                        tx.lifecycle().update_instance(&i)?;
                    }
                    Ok(())
                })
                .await?;
            }
            return Ok(Next::Idle);
        }
        InstanceStatus::Starting => return Ok(Next::Idle),
        InstanceStatus::Exited { at, .. } => at.to_rfc3339(),
        InstanceStatus::NotFound => "not_found".to_string(),
    };
    let mut crash = o.crash.clone();
    if crash.last_exit.as_deref() != Some(exit_key.as_str()) {
        // A new crash.
        crash.crashes.retain(|c| t - *c < CRASH_WINDOW);
        crash.crashes.push(t);
        crash.last_exit = Some(exit_key);
        let n = crash.crashes.len();
        let logs = rt.driver.logs(&rid, LOG_LINES).await;
        let what = match &observed {
            InstanceStatus::Exited { code, signal, .. } => exit_text(*code, *signal),
            _ => "its process is gone".into(),
        };
        if n >= CRASH_LIMIT {
            commit(s, db.id, guard, move |tx, d, o, note| {
                for mut live in tx.lifecycle().live_instances(Some(d.id))? {
                    live.stopped_at = Some(t);
                    live.health_status = Some(HealthStatus::Unreachable);
                    live.updated_at = t;
                    tx.lifecycle().update_instance(&live)?;
                    o.cleanup.push(live.id);
                }
                d.status = Status::Failed;
                d.last_error = Some(format!(
                    "the engine crashed {n} times in 10 minutes ({what}); last log lines:\n{logs}"
                ));
                o.crash = CrashLog::default();
                note.cause = "crash".into();
                note.message =
                    format!("engine crashed {n} times in 10 minutes ({what}): giving up");
                Ok(())
            })
            .await?;
            return Ok(Next::Again);
        }
        let delay = backoff(n);
        crash.next_restart_at = Some(t + delay);
        let iid = inst.id;
        commit(s, db.id, guard, move |tx, _d, o, note| {
            if let Some(mut i) = tx.lifecycle().instance(iid)? {
                i.health_status = Some(HealthStatus::Unreachable);
                i.updated_at = t;
                tx.lifecycle().update_instance(&i)?;
            }
            o.crash = crash;
            note.cause = "crash".into();
            note.message = format!(
                "engine exited ({what}); restart {n} in {} ms",
                delay.num_milliseconds()
            );
            Ok(())
        })
        .await?;
        tokio::time::sleep(delay.to_std().unwrap_or_default()).await;
        return Ok(Next::Again);
    }
    let Some(due) = crash.next_restart_at else {
        return Ok(Next::Idle);
    };
    if t < due {
        tokio::time::sleep(
            (due - t)
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(1)),
        )
        .await;
        return Ok(Next::Again);
    }
    // Restart in place with the settings it was deployed with, on the database's port (so
    // clients keep their URL). A port taken meanwhile makes the engine exit at once with `port P
    // is in use by another process`: counted as a crash, and in `lastError` once they add up.
    let settings: RuntimeSettings = db
        .internal
        .deployed_config
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| db.runtime_settings());
    // A database from before stable endpoints keeps the port its engine had, when it can.
    let had = inst.endpoint_url.as_deref().and_then(engine::endpoint_port);
    let port = match engine_port(s, &db, &o, had).await? {
        Ok(p) => p,
        Err(_) => had.unwrap_or(0),
    };
    let result = launch(s, rt, &db, inst.id, inst.build_id, &settings, port, false).await;
    let n = crash.crashes.len();
    commit(s, db.id, guard, move |_, _d, o, note| {
        o.crash.next_restart_at = None;
        o.crash.restarted_at = Some(now());
        if result.is_err() {
            // Count the next observation as a new crash, so that failures add up to the limit.
            o.crash.last_exit = None;
            o.crash.next_restart_at = Some(now() + backoff(n + 1));
        }
        note.cause = "crash".into();
        note.message = match &result {
            Ok(()) => format!("engine restarted (restart {n})"),
            Err(e) => format!("engine restart {n} failed: {e}"),
        };
        Ok(())
    })
    .await?;
    Ok(Next::Idle)
}

/// Crash backoff: 0.5 s, 1 s, 2 s, 4 s, … (at most a minute).
pub(super) fn backoff(crashes: usize) -> chrono::TimeDelta {
    let ms = 500u64.saturating_mul(1 << (crashes.saturating_sub(1)).min(7));
    chrono::TimeDelta::milliseconds(ms.min(60_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_starts_fast() {
        assert_eq!(backoff(1).num_milliseconds(), 500);
        assert_eq!(backoff(2).num_milliseconds(), 1000);
        assert_eq!(backoff(4).num_milliseconds(), 4000);
        assert_eq!(backoff(30).num_milliseconds(), 60_000);
    }
}
