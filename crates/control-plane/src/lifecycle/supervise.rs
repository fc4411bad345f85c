//! `running` with nothing in flight: watch the engine, restart it in place after a crash with
//! exponential backoff, give up after too many crashes. The decisions are [`decide::supervise`];
//! this step observes and carries them out.

use refract_runtime::InstanceStatus;

use super::bookkeeping::{begin_op, commit, new_op, now, Guard, Next};
use super::decide::{self, backoff, Addresses, EngineSeen, SuperviseStep, LOG_LINES};
use super::engine;
use super::error::StepResult;
use super::launch::{engine_port, launch, public_endpoint};
use super::state::Runtime;
use crate::api::{HealthStatus, RuntimeSettings, Status};
use crate::store::lifecycle::{CrashLog, OpKind, OpsRecord};
use crate::store::DatabaseRow;
use crate::Service;

/// `running` with nothing in flight: is the engine alive? Restart it after a crash, with
/// exponential backoff; give up after [`decide::CRASH_LIMIT`] crashes in
/// [`decide::CRASH_WINDOW`].
pub(super) async fn supervise(
    s: &Service,
    rt: &Runtime,
    db: DatabaseRow,
    o: OpsRecord,
) -> StepResult<Next> {
    let id = db.id;
    let live = s
        .read_store(move |tx| tx.lifecycle().live_instances(Some(id)))
        .await?;
    let guard = Guard::of(&db, &o);
    let inst = live.into_iter().next();
    let seen = match &inst {
        None => EngineSeen::NoEngine,
        Some(inst) => match rt.driver.status(&inst.runtime_id).await {
            Ok(InstanceStatus::Running { endpoint }) => EngineSeen::Running(endpoint),
            Ok(InstanceStatus::Starting) => EngineSeen::Starting,
            Ok(InstanceStatus::Exited { at, code, signal }) => {
                EngineSeen::Exited { at, code, signal }
            }
            Ok(InstanceStatus::NotFound) => EngineSeen::NotFound,
            Err(e) => {
                tracing::warn!(database = %db.id, error = %e, "runtime status failed");
                return Ok(Next::Idle);
            }
        },
    };
    let recorded = inst
        .as_ref()
        .map(|i| Addresses {
            control: i.control_url.clone(),
            client: i.endpoint_url.clone(),
        })
        .unwrap_or_default();
    let public = public_endpoint(rt, &db, &o);
    let t = now();
    let step = decide::supervise(&seen, &recorded, public.as_deref(), &o.crash, t);
    let Some(inst) = inst else {
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
            begin_op(d, o, op);
            note.message = "no engine found for a running database: starting one".into();
            Ok(())
        })
        .await?;
        return Ok(Next::Again);
    };
    match step {
        SuperviseStep::Redeploy | SuperviseStep::Idle => Ok(Next::Idle),
        SuperviseStep::Readdress { control, client } => {
            let iid = inst.id;
            s.write_store(move |tx| {
                if let Some(mut i) = tx.lifecycle().instance(iid)? {
                    i.endpoint_url = Some(client);
                    i.control_url = Some(control);
                    i.updated_at = now();
                    tx.lifecycle().update_instance(&i)?;
                }
                Ok(())
            })
            .await?;
            Ok(Next::Idle)
        }
        SuperviseStep::Crashed {
            n,
            what,
            restart_in: None,
            ..
        } => {
            let logs = rt.driver.logs(&inst.runtime_id, LOG_LINES).await;
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
            Ok(Next::Again)
        }
        SuperviseStep::Crashed {
            crash,
            n,
            what,
            restart_in: Some(delay),
        } => {
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
            Ok(Next::Again)
        }
        SuperviseStep::Wait(pause) => {
            tokio::time::sleep(pause).await;
            Ok(Next::Again)
        }
        SuperviseStep::Restart { n } => {
            // Restart in place with the settings it was deployed with, on the database's port
            // (so clients keep their URL). A port taken meanwhile makes the engine exit at once
            // with `port P is in use by another process`: counted as a crash, and in `lastError`
            // once they add up.
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
            commit(s, db.id, guard, move |_, _d, o, note| {
                o.crash.next_restart_at = None;
                o.crash.restarted_at = Some(now());
                if result.is_err() {
                    // Count the next observation as a new crash, so that failures add up to the
                    // limit.
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
    }
}
