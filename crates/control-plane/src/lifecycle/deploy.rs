//! `deploying` / `resuming`: start (or find) the new engine, wait until it is healthy, then move
//! the endpoint to it in one commit (the cutover).

use refract_runtime::InstanceStatus;
use uuid::Uuid;

use super::bookkeeping::{
    admin_token, clear_op, commit, fail, now, set_step, still_current, Guard, InFlight, Next,
};
use super::decide::{self, DeployObserved, DeployStep, Health, LOG_LINES};
use super::error::StepResult;
use super::launch::{any_alive, engine_port, launch, public_endpoint};
use super::state::{step_delay, Runtime};
use crate::api::{HealthStatus, Status};
use crate::service::pending;
use crate::store::lifecycle::{CrashLog, InstanceRecord, OpData};
use crate::store::{DatabaseRow, OpStep};
use crate::Service;

/// Starts (or finds) the new engine and waits until it is healthy, then moves the endpoint to it:
/// observes, asks [`decide::deploy`], carries the verdict out.
pub(super) async fn deploy(s: &Service, rt: &Runtime, f: InFlight) -> StepResult<Next> {
    let InFlight { db, o, op, guard } = f;
    let t = now();
    let since = op.instance_started_at.unwrap_or(t);
    let mut endpoint = None;
    let seen = match op.new_instance {
        None => DeployObserved::Unrecorded,
        Some(new) => match rt.driver.status(&new.to_string()).await {
            Err(e) => {
                tracing::warn!(database = %db.id, error = %e, "runtime status failed");
                return Ok(Next::Idle);
            }
            Ok(InstanceStatus::NotFound) => DeployObserved::NotFound,
            Ok(InstanceStatus::Starting) => DeployObserved::Starting,
            Ok(InstanceStatus::Exited { code, signal, .. }) => {
                DeployObserved::Exited { code, signal }
            }
            Ok(InstanceStatus::Running { endpoint: ep }) => {
                let seen = match s.lifecycle.engine().health(&ep).await {
                    Ok(h) => DeployObserved::Answered(Health::of(&h)),
                    Err(e) => DeployObserved::Unreachable(format!("{e:#}")),
                };
                endpoint = Some(ep);
                seen
            }
        },
    };
    match decide::deploy(&seen, t - since) {
        DeployStep::Record => {
            // Recorded before anything is started: after a crash the same id is found or started.
            let new = Uuid::new_v4();
            commit(s, db.id, guard, move |_, d, o, _| {
                if let Some(op) = o.op.as_mut() {
                    op.new_instance = Some(new);
                    op.instance_started_at = None;
                }
                set_step(d, OpStep::StartEngine);
                Ok(())
            })
            .await?;
            Ok(Next::Again)
        }
        DeployStep::Launch => {
            let new = op.new_instance.unwrap_or_default();
            step_delay().await;
            if !still_current(s, db.id, guard).await? {
                return Ok(Next::Again);
            }
            let Some(build) = op.build_id else {
                return fail(s, rt, &db, &o, "no build to deploy".into()).await;
            };
            let port = match engine_port(s, &db, &o, None).await? {
                Ok(p) => p,
                Err(e) => return fail(s, rt, &db, &o, e.to_string()).await,
            };
            // A live engine of the database (a rebuild's, reconfigure's, …) serves on the port
            // until the cutover: the new one binds beside it and accepts once loaded.
            let takeover = any_alive(s, rt, db.id, new).await?;
            let settings = db.runtime_settings();
            match launch(s, rt, &db, new, build, &settings, port, takeover).await {
                Ok(()) => {
                    commit(s, db.id, guard, move |_, d, o, _| {
                        if let Some(op) = o.op.as_mut() {
                            op.instance_started_at = Some(now());
                            op.settings = Some(settings);
                        }
                        set_step(d, OpStep::WaitHealthy);
                        Ok(())
                    })
                    .await?;
                    Ok(Next::Again)
                }
                Err(e) => fail(s, rt, &db, &o, e.to_string()).await,
            }
        }
        DeployStep::Wait(pause) => {
            tokio::time::sleep(pause).await;
            Ok(Next::Again)
        }
        DeployStep::Cutover => {
            step_delay().await;
            let public = public_endpoint(rt, &db, &o);
            let (new, endpoint) = (
                op.new_instance.unwrap_or_default(),
                endpoint.unwrap_or_default(),
            );
            cutover(s, &db, guard, &op, new, endpoint, public).await
        }
        DeployStep::Fail(why) => {
            let logs = match (why.wants_logs(), op.new_instance) {
                (true, Some(new)) => rt.driver.logs(&new.to_string(), LOG_LINES).await,
                _ => String::new(),
            };
            fail(s, rt, &db, &o, why.message(&db, &logs)).await
        }
    }
}

/// The new engine is healthy: one transaction moves the endpoint to it, records what is deployed,
/// and queues the old engine for cleanup (stopped right after, by the next step).
async fn cutover(
    s: &Service,
    db: &DatabaseRow,
    guard: Guard,
    op: &OpData,
    new: Uuid,
    endpoint: String,
    public: Option<String>,
) -> StepResult<Next> {
    let build = op.build_id;
    let settings = op.settings.clone().unwrap_or_else(|| db.runtime_settings());
    let note_text = op.note.clone();
    let kind = op.kind;
    // The new engine's numbers, so `GET …/instance` shows them as soon as it is `running`
    // rather than after the next health poll.
    let stats = match admin_token(s, db.id) {
        Ok(token) => s.lifecycle.engine().stats(&endpoint, &token).await.ok(),
        Err(_) => None,
    };
    let swap_count = stats.as_ref().map(|v| v.health.swap_count as i64);
    let snapshot_age_ms = stats
        .as_ref()
        .and_then(|v| v.health.snapshot_age_ms)
        .map(|ms| ms as i64);
    let row_counts = stats
        .as_ref()
        .and_then(|v| v.row_counts.clone())
        .map(serde_json::Value::Object);
    commit(s, db.id, guard, move |tx, d, o, note| {
        let t = now();
        for mut old in tx.lifecycle().live_instances(Some(d.id))? {
            if old.id != new {
                old.stopped_at = Some(t);
                old.updated_at = t;
                tx.lifecycle().update_instance(&old)?;
                o.cleanup.push(old.id);
            }
        }
        let checked = swap_count.is_some().then_some(t);
        match tx.lifecycle().instance(new)? {
            None => tx.lifecycle().insert_instance(&InstanceRecord {
                id: new,
                database_id: d.id,
                build_id: build.unwrap_or_default(),
                runtime_id: new.to_string(),
                endpoint_url: Some(public.clone().unwrap_or_else(|| endpoint.clone())),
                control_url: Some(endpoint.clone()),
                health_status: Some(HealthStatus::Ok),
                snapshot_age_ms,
                swap_count,
                row_counts: row_counts.clone(),
                last_health_check: checked,
                created_at: t,
                updated_at: t,
                stopped_at: None,
                replication: None,
            })?,
            Some(mut i) if i.swap_count.is_none() && swap_count.is_some() => {
                i.swap_count = swap_count;
                i.snapshot_age_ms = snapshot_age_ms;
                i.row_counts = row_counts.clone();
                i.last_health_check = checked;
                i.updated_at = t;
                tx.lifecycle().update_instance(&i)?;
            }
            Some(_) => {}
        }
        d.internal.active_build_id = build;
        d.internal.deployed_config = serde_json::to_value(&settings).ok();
        d.has_pending_changes = pending(d);
        d.status = Status::Running;
        d.last_error = note_text;
        clear_op(d, o);
        o.crash = CrashLog::default();
        note.message = format!(
            "{}: engine healthy at {}",
            kind.as_str(),
            public.as_deref().unwrap_or(&endpoint)
        );
        Ok(())
    })
    .await?;
    Ok(Next::Again)
}
