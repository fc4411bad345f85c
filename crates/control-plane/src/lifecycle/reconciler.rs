//! The reconciler: one loop over every database, and one task per database taking the next step
//! of its operation.
//!
//! Each step follows the same shape: read the database and its operation record, observe the
//! runtime driver, decide ([`plan`], pure), act, then commit the result with [`commit`] — which
//! writes only when the status and operation id it started from are still current, so a step that
//! raced with a new action leaves no trace but its side effects, and those are idempotent or swept
//! up (an engine nobody wants is stopped by the orphan sweep).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use refract_runtime::{InstanceStatus, RuntimeError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::matrix::{self, Action, Decision};
use super::{builds, engine, schedule, step_delay, Runtime};
use crate::api::Database;
use crate::api::{DesiredState, HealthStatus, RuntimeSettings, Status};
use crate::error::ApiError;
use crate::service::pending;
use crate::store::lifecycle::{CrashLog, InstanceRecord, OpData, OpKind, OpsRecord};
use crate::store::{Event, StoreResult, Tx};
use crate::Service;

/// How often the loop runs without being woken.
const TICK: Duration = Duration::from_secs(1);
/// How often instances nobody wants are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Grace of a SIGTERM before SIGKILL when stopping an engine.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);
/// An engine must print its ready line within this.
const READY_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// A first load that keeps failing for this long fails the deploy.
const FIRST_LOAD_FAILING: chrono::TimeDelta = chrono::TimeDelta::seconds(20);
/// The first snapshot must be in within this.
const LOAD_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(30);
/// Crash restarts: this many crashes within [`CRASH_WINDOW`] give up (`failed`).
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Log lines kept in `lastError` after a crash loop or failed deploy.
const LOG_LINES: usize = 20;

pub(super) fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t - chrono::TimeDelta::nanoseconds((t.timestamp_subsec_nanos() % 1000) as i64)
}

/// What a step asks for next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Take the next step now.
    Again,
    /// Nothing to do until the next tick.
    Idle,
}

/// The loop: wakes on actions and every second; spawns a task for each database with work.
pub(super) async fn run(service: Service, cancel: CancellationToken) {
    let Some(rt) = service.lifecycle.runtime().cloned() else {
        return;
    };
    tracing::info!("reconciler started");
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            if let Err(e) = sweep(&service, &rt).await {
                tracing::warn!(error = %format!("{e:#}"), "orphan sweep failed");
            }
            last_sweep = Some(tokio::time::Instant::now());
        }
        if let Err(e) = tick(&service, &rt, &cancel).await {
            tracing::warn!(error = %e, "reconciler tick failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = service.lifecycle.woken() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    tracing::info!("reconciler stopped");
}

async fn tick(s: &Service, rt: &Runtime, cancel: &CancellationToken) -> StoreResult<()> {
    let (dbs, ops) = s
        .read(|tx| Ok((tx.list_all_databases()?, tx.lifecycle().all_ops()?)))
        .await?;
    let t = now();
    for db in dbs {
        let o = ops
            .iter()
            .find(|o| o.database_id == db.id)
            .cloned()
            .unwrap_or(OpsRecord {
                database_id: db.id,
                ..Default::default()
            });
        if let Some(sched) = &db.pause_schedule {
            if let Some((edge, mark)) = schedule::due(sched, t, o.schedule_mark.as_deref()) {
                if let Err(e) = fire_schedule(s, db.id, edge, mark).await {
                    tracing::warn!(database = %db.id, error = %e, "pause schedule");
                }
            }
        }
        if !needs_task(&db, &o) || !s.lifecycle.try_claim(db.id) {
            continue;
        }
        let (s, rt, cancel) = (s.clone(), rt.clone(), cancel.clone());
        tokio::spawn(async move {
            let id = db.id;
            tokio::select! {
                _ = drive(&s, &rt, id) => {}
                _ = cancel.cancelled() => {}
            }
            s.lifecycle.release(id);
        });
    }
    Ok(())
}

fn needs_task(db: &Database, o: &OpsRecord) -> bool {
    !o.cleanup.is_empty()
        || db.desired_state.is_some()
        || !matches!(
            db.status,
            Status::Registered
                | Status::Paused
                | Status::Failed
                | Status::Stopped
                | Status::Terminated
        )
}

/// One database's task: steps until there is nothing to do now.
async fn drive(s: &Service, rt: &Runtime, id: Uuid) {
    for _ in 0..10_000 {
        let found = s
            .read(move |tx| {
                Ok(tx
                    .lifecycle()
                    .database(id)?
                    .map(|d| (d, tx.lifecycle().ops(id))))
            })
            .await;
        let (db, ops) = match found {
            Ok(Some((db, Ok(ops)))) => (db, ops),
            Ok(None) => return,
            Ok(Some((_, Err(e)))) | Err(e) => {
                tracing::warn!(database = %id, error = %e, "reconciler read failed");
                return;
            }
        };
        let next = match step(s, rt, db, ops).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(database = %id, error = %e, "reconciler step failed; retrying");
                metrics::counter!("refract_reconcile_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(500)).await;
                Next::Idle
            }
        };
        if next == Next::Idle {
            return;
        }
    }
}

/// What the next step of a database is (pure).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Stop and remove replaced or abandoned engines.
    Cleanup,
    /// Run a queued `desiredState`.
    ApplyDesired(DesiredState),
    /// `testing_connection`.
    TestConnection,
    /// `queued` / `building`.
    Build,
    /// `deploying` / `resuming`.
    Deploy,
    /// `pausing` / `terminating`.
    Stop,
    /// `running` with nothing in flight: watch the engine, restart it after a crash.
    Supervise,
    /// A transitional status without its operation record: roll back.
    Lost,
    /// Nothing.
    Nothing,
}

/// Decides the next step from the store alone.
pub(super) fn plan(db: &Database, o: &OpsRecord) -> Plan {
    let transitional = !matches!(
        db.status,
        Status::Registered
            | Status::Running
            | Status::Paused
            | Status::Failed
            | Status::Stopped
            | Status::Terminated
    );
    if transitional && o.op.is_none() {
        return Plan::Lost;
    }
    if !o.cleanup.is_empty() {
        return Plan::Cleanup;
    }
    match db.status {
        Status::TestingConnection => Plan::TestConnection,
        Status::Queued | Status::Building => Plan::Build,
        Status::Deploying | Status::Resuming => Plan::Deploy,
        Status::Pausing | Status::Terminating => Plan::Stop,
        _ if db.desired_state.is_some() => {
            Plan::ApplyDesired(db.desired_state.unwrap_or(DesiredState::Running))
        }
        Status::Running => Plan::Supervise,
        _ => Plan::Nothing,
    }
}

async fn step(s: &Service, rt: &Runtime, db: Database, o: OpsRecord) -> StoreResult<Next> {
    match plan(&db, &o) {
        Plan::Cleanup => cleanup(s, rt, &db, &o).await,
        Plan::ApplyDesired(_) => apply_desired(s, &db).await,
        Plan::TestConnection => builds::test_connection(s, rt, db, o).await,
        Plan::Build => builds::build(s, rt, db, o).await,
        Plan::Deploy => deploy(s, rt, db, o).await,
        Plan::Stop => stop(s, rt, db, o).await,
        Plan::Supervise => supervise(s, rt, db, o).await,
        Plan::Lost => {
            let guard = Guard::of(&db, &o);
            commit(s, db.id, guard, |_, d, o, note| {
                clear_op(d, o);
                d.status = Status::Failed;
                d.last_error = Some(
                    "the operation in flight was lost (unreadable record); provision again".into(),
                );
                note.message = "operation record lost".into();
                Ok(())
            })
            .await?;
            Ok(Next::Again)
        }
        Plan::Nothing => Ok(Next::Idle),
    }
}

// ------------------------------------------------------------------ commits

/// What a step expects to still be true when it commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    pub status: Status,
    pub op_id: Option<Uuid>,
}

impl Guard {
    pub(super) fn of(db: &Database, o: &OpsRecord) -> Self {
        Guard {
            status: db.status,
            op_id: o.op.as_ref().map(|op| op.id),
        }
    }
}

/// The event a commit writes (when the status changes or a message is set).
pub(super) struct Note {
    pub cause: String,
    pub message: String,
}

/// Writes a step's result when `guard` still holds; `None` when it did not (the step lost a race
/// with an action and its result is dropped).
pub(super) async fn commit<T: Send + 'static>(
    s: &Service,
    id: Uuid,
    guard: Guard,
    f: impl FnOnce(&dyn Tx, &mut Database, &mut OpsRecord, &mut Note) -> StoreResult<T> + Send + 'static,
) -> StoreResult<Option<T>> {
    let r = s
        .write(move |tx| {
            let Some(mut d) = tx.lifecycle().database(id)? else {
                return Ok(None);
            };
            let mut o = tx.lifecycle().ops(id)?;
            if d.status != guard.status || o.op.as_ref().map(|op| op.id) != guard.op_id {
                return Ok(None);
            }
            let before = d.status;
            let mut note = Note {
                cause: "reconciler".into(),
                message: String::new(),
            };
            let out = f(tx, &mut d, &mut o, &mut note)?;
            save(tx, &mut d, &o, before, note)?;
            Ok(Some(out))
        })
        .await?;
    if r.is_some() {
        s.lifecycle.wake();
    }
    Ok(r)
}

/// Writes the row, the ops record and, when the status changed or there is a message, an event.
pub(super) fn save(
    tx: &dyn Tx,
    d: &mut Database,
    o: &OpsRecord,
    before: Status,
    note: Note,
) -> StoreResult<()> {
    let t = now();
    d.updated_at = t;
    tx.update_database(d)?;
    tx.lifecycle().put_ops(o)?;
    if d.status != before || !note.message.is_empty() {
        tx.insert_event(&Event {
            database_id: d.id,
            at: t,
            from_status: Some(before),
            to_status: d.status,
            cause: note.cause,
            message: note.message,
        })?;
    }
    Ok(())
}

/// Records a new operation on the row and the ops record.
pub(super) fn set_op(d: &mut Database, o: &mut OpsRecord, op: OpData, step: &str) {
    d.internal.op_kind = Some(op.kind.as_str().to_string());
    d.internal.op_step = Some(step.to_string());
    d.internal.op_started_at = Some(op.started_at);
    d.internal.op_attempt = 0;
    o.op = Some(op);
}

/// Clears the operation in flight.
pub(super) fn clear_op(d: &mut Database, o: &mut OpsRecord) {
    d.internal.op_kind = None;
    d.internal.op_step = None;
    d.internal.op_started_at = None;
    d.internal.op_attempt = 0;
    o.op = None;
}

fn set_step(d: &mut Database, step: &str) {
    d.internal.op_step = Some(step.to_string());
}

// ------------------------------------------------------------------ steps

async fn cleanup(s: &Service, rt: &Runtime, db: &Database, o: &OpsRecord) -> StoreResult<Next> {
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
    s.write(move |tx| {
        let mut o = tx.lifecycle().ops(id)?;
        o.cleanup.retain(|c| !done.contains(c));
        tx.lifecycle().put_ops(&o)
    })
    .await?;
    Ok(Next::Again)
}

/// Runs a queued action now that a stable status is reached, or drops it when the matrix no
/// longer allows it.
async fn apply_desired(s: &Service, db: &Database) -> StoreResult<Next> {
    let id = db.id;
    let r = s
        .write(move |tx| {
            let Some(mut d) = tx.lifecycle().database(id)? else {
                return Ok(());
            };
            let Some(want) = d.desired_state else {
                return Ok(());
            };
            let mut o = tx.lifecycle().ops(id)?;
            let before = d.status;
            let mut note = Note {
                cause: "reconciler".into(),
                message: String::new(),
            };
            let reached = matches!(
                (want, d.status),
                (DesiredState::Running, Status::Running)
                    | (DesiredState::Paused, Status::Paused)
                    | (DesiredState::Terminated, Status::Terminated)
            );
            d.desired_state = None;
            if !reached {
                let action = match want {
                    DesiredState::Running => Action::Resume,
                    DesiredState::Paused => Action::Pause,
                    DesiredState::Terminated => Action::Terminate,
                };
                let ctx = super::actions::context(tx, &d)?;
                match matrix::decide(d.status, action, &ctx) {
                    Decision::Immediate => {
                        let msg = super::actions::begin(
                            tx,
                            &mut d,
                            &mut o,
                            action,
                            &Default::default(),
                            "reconciler",
                        )?;
                        note.message = format!("queued {}: {msg}", action.name());
                    }
                    Decision::Queued | Decision::Refused(_) => {
                        note.message = format!(
                            "queued {} dropped: not allowed in status {}",
                            action.name(),
                            d.status
                        );
                    }
                }
            }
            save(tx, &mut d, &o, before, note)
        })
        .await;
    r?;
    s.lifecycle.wake();
    Ok(Next::Again)
}

/// Starts (or finds) the new engine and waits until it is healthy, then moves the endpoint to it.
async fn deploy(s: &Service, rt: &Runtime, db: Database, o: OpsRecord) -> StoreResult<Next> {
    let Some(op) = o.op.clone() else {
        return Ok(Next::Idle);
    };
    let guard = Guard::of(&db, &o);
    let Some(new) = op.new_instance else {
        // Recorded before anything is started: after a crash the same id is found or started.
        let new = Uuid::new_v4();
        commit(s, db.id, guard, move |_, d, o, _| {
            if let Some(op) = o.op.as_mut() {
                op.new_instance = Some(new);
                op.instance_started_at = None;
            }
            set_step(d, "start_engine");
            Ok(())
        })
        .await?;
        return Ok(Next::Again);
    };
    let rid = new.to_string();
    let t = now();
    let since = op.instance_started_at.unwrap_or(t);
    match rt.driver.status(&rid).await {
        Err(e) => {
            tracing::warn!(database = %db.id, error = %e, "runtime status failed");
            Ok(Next::Idle)
        }
        Ok(InstanceStatus::NotFound) => {
            step_delay().await;
            if !still_current(s, db.id, guard).await? {
                return Ok(Next::Again);
            }
            let Some(build) = op.build_id else {
                return fail(s, rt, &db, &o, "no build to deploy".into()).await;
            };
            let port = match engine_port(s, &db, &o, None).await? {
                Ok(p) => p,
                Err(msg) => return fail(s, rt, &db, &o, msg).await,
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
                        set_step(d, "wait_healthy");
                        Ok(())
                    })
                    .await?;
                    Ok(Next::Again)
                }
                Err(msg) => fail(s, rt, &db, &o, msg).await,
            }
        }
        Ok(InstanceStatus::Starting) => {
            if t - since > READY_TIMEOUT {
                let logs = rt.driver.logs(&rid, LOG_LINES).await;
                return fail(
                    s,
                    rt,
                    &db,
                    &o,
                    format!("the engine did not start within 60 s; last log lines:\n{logs}"),
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Next::Again)
        }
        Ok(InstanceStatus::Running { endpoint }) => {
            match s.lifecycle.engine().health(&endpoint).await {
                Ok(h)
                    if h.pointer("/replication/fatal") == Some(&serde_json::Value::Bool(true)) =>
                {
                    // A setup problem of the source (grants, publication, server id, binlog
                    // off): retrying will not fix it, so the deploy ends now with the cause.
                    let cause = h
                        .pointer("/replication/lastError")
                        .and_then(|v| v.as_str())
                        .unwrap_or("unknown error");
                    fail(
                        s,
                        rt,
                        &db,
                        &o,
                        format!(
                            "the engine cannot stream changes in {} mode: {cause}",
                            db.sync_mode
                        ),
                    )
                    .await
                }
                Ok(h) => {
                    let status = h.get("status").and_then(|v| v.as_str()).unwrap_or("");
                    let message = h
                        .get("message")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    match status {
                        // Not yet listening on the database's port (a few ms after the load).
                        "ok" | "degraded"
                            if h.get("accepting").and_then(|v| v.as_bool()) == Some(false) =>
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Ok(Next::Again)
                        }
                        "ok" | "degraded" => {
                            step_delay().await;
                            let public = o.engine_port.map(engine::public_url);
                            cutover(s, &db, guard, &op, new, endpoint, public).await
                        }
                        "cap_exceeded" => {
                            let cap = engine::memory_cap_mb(&db.runtime_settings());
                            fail(
                            s,
                            rt,
                            &db,
                            &o,
                            format!(
                                "the data does not fit in instanceSize {} (snapshot memory cap {cap} MB): {}; \
                                 resize to a larger size (POST /v1/databases/{}/resize)",
                                db.instance_size,
                                message.unwrap_or_default(),
                                db.id
                            ),
                        )
                        .await
                        }
                        _ if message.is_some() && t - since > FIRST_LOAD_FAILING => {
                            fail(
                                s,
                                rt,
                                &db,
                                &o,
                                format!(
                                    "the engine cannot load its first snapshot: {}",
                                    message.unwrap_or_default()
                                ),
                            )
                            .await
                        }
                        _ if t - since > LOAD_TIMEOUT => {
                            fail(
                                s,
                                rt,
                                &db,
                                &o,
                                "the first snapshot did not load within 30 minutes".into(),
                            )
                            .await
                        }
                        _ => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok(Next::Again)
                        }
                    }
                }
                Err(e) if t - since > READY_TIMEOUT => {
                    fail(
                        s,
                        rt,
                        &db,
                        &o,
                        format!("the engine does not answer /health: {e:#}"),
                    )
                    .await
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(Next::Again)
                }
            }
        }
        Ok(InstanceStatus::Exited { code, signal, .. }) => {
            let logs = rt.driver.logs(&rid, LOG_LINES).await;
            fail(
                s,
                rt,
                &db,
                &o,
                format!(
                    "the engine exited during deploy ({}); last log lines:\n{logs}",
                    exit_text(code, signal)
                ),
            )
            .await
        }
    }
}

fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(9)) => "killed by signal 9 — out of memory?".into(),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "exit status unknown".into(),
    }
}

async fn still_current(s: &Service, id: Uuid, guard: Guard) -> StoreResult<bool> {
    s.read(move |tx| {
        let Some(d) = tx.lifecycle().database(id)? else {
            return Ok(false);
        };
        let o = tx.lifecycle().ops(id)?;
        Ok(d.status == guard.status && o.op.as_ref().map(|op| op.id) == guard.op_id)
    })
    .await
}

/// The new engine is healthy: one transaction moves the endpoint to it, records what is deployed,
/// and queues the old engine for cleanup (stopped right after, by the next step).
async fn cutover(
    s: &Service,
    db: &Database,
    guard: Guard,
    op: &OpData,
    new: Uuid,
    endpoint: String,
    public: Option<String>,
) -> StoreResult<Next> {
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
    let stat = |key: &str| stats.as_ref().and_then(|v| v.get(key)).cloned();
    let swap_count = stat("swapCount").and_then(|v| v.as_i64());
    let snapshot_age_ms = stat("snapshotAgeMs").and_then(|v| v.as_i64());
    let row_counts = stat("rowCounts");
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

/// Ends the operation with an error: back to `running` when the previous engine still serves
/// (a failed rebuild or reconfigure changes nothing for clients), back to `paused` when a rebuild
/// of a paused database failed before starting anything, else `failed`.
pub(super) async fn fail(
    s: &Service,
    rt: &Runtime,
    db: &Database,
    o: &OpsRecord,
    message: String,
) -> StoreResult<Next> {
    let Some(op) = o.op.clone() else {
        return Ok(Next::Idle);
    };
    let old_alive = match op.old_instance {
        Some(old) => rt
            .driver
            .status(&old.to_string())
            .await
            .map(|st| st.is_alive())
            .unwrap_or(false),
        None => false,
    };
    let guard = Guard::of(db, o);
    tracing::warn!(database = %db.id, op = op.kind.as_str(), %message, "operation failed");
    metrics::counter!("refract_operations_failed_total", "op" => op.kind.as_str()).increment(1);

    commit(s, db.id, guard, move |tx, d, o, note| {
        let t = now();
        if let Some(b) = op.build_id {
            if let Some(mut build) = tx.lifecycle().build(d.id, b)? {
                if !build.has_manifest {
                    build.status = crate::store::lifecycle::BuildStatus::Failed;
                    build.error = Some(message.clone());
                    build.finished_at.get_or_insert(t);
                    build.log.push_str(&format!(
                        "{} build failed: {message}\n",
                        t.format("%H:%M:%S")
                    ));
                    tx.lifecycle().update_build(&build)?;
                    metrics::counter!("refract_builds_total", "result" => "failed").increment(1);
                }
            }
        }
        if let Some(new) = op.new_instance {
            o.cleanup.push(new);
        }
        let target = if old_alive {
            Status::Running
        } else if op.origin == Status::Paused && op.new_instance.is_none() {
            Status::Paused
        } else {
            Status::Failed
        };
        if target == Status::Failed {
            for mut live in tx.lifecycle().live_instances(Some(d.id))? {
                live.stopped_at = Some(t);
                live.updated_at = t;
                tx.lifecycle().update_instance(&live)?;
                o.cleanup.push(live.id);
            }
        }
        d.last_error = Some(match target {
            Status::Running => format!(
                "{} failed: {message} (the previous engine keeps serving)",
                op.kind.as_str()
            ),
            _ => message.clone(),
        });
        d.status = target;
        clear_op(d, o);
        note.cause = op.cause.clone();
        note.message = format!("{} failed: {message}", op.kind.as_str());
        Ok(())
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
async fn stop(s: &Service, rt: &Runtime, db: Database, o: OpsRecord) -> StoreResult<Next> {
    let Some(op) = o.op.clone() else {
        return Ok(Next::Idle);
    };
    let guard = Guard::of(&db, &o);
    step_delay().await;
    let id = db.id;
    let live = s
        .read(move |tx| tx.lifecycle().live_instances(Some(id)))
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

/// `running` with nothing in flight: is the engine alive? Restart it after a crash, with
/// exponential backoff; give up after [`CRASH_LIMIT`] crashes in [`CRASH_WINDOW`].
async fn supervise(s: &Service, rt: &Runtime, db: Database, o: OpsRecord) -> StoreResult<Next> {
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
fn backoff(crashes: usize) -> chrono::TimeDelta {
    let ms = 500u64.saturating_mul(1 << (crashes.saturating_sub(1)).min(7));
    chrono::TimeDelta::milliseconds(ms.min(60_000) as i64)
}

/// A new operation record.
pub(super) fn new_op(
    kind: OpKind,
    cause: &str,
    origin: Status,
    build: Option<Uuid>,
    old: Option<Uuid>,
) -> OpData {
    OpData {
        id: Uuid::new_v4(),
        kind,
        cause: cause.to_string(),
        origin,
        started_at: now(),
        build_id: build,
        new_instance: None,
        instance_started_at: None,
        old_instance: old,
        settings: None,
        note: None,
    }
}

/// The database's client-facing engine port: the one recorded, or (first deploy) a free one,
/// recorded before any engine uses it. `Err` when none can be found.
/// `prefer`: a port to take when no database has it (the port of an engine started before
/// stable endpoints).
async fn engine_port(
    s: &Service,
    db: &Database,
    o: &OpsRecord,
    prefer: Option<u16>,
) -> StoreResult<Result<u16, String>> {
    if let Some(p) = o.engine_port {
        return Ok(Ok(p));
    }
    let taken: HashSet<u16> = s
        .read(|tx| tx.lifecycle().engine_ports())
        .await?
        .into_iter()
        .collect();
    let found = match prefer {
        Some(p) if p != 0 && !taken.contains(&p) => Some(p),
        _ => refract_runtime::pick_port(&taken),
    };
    let Some(port) = found else {
        return Ok(Err(format!(
            "no free port for the engine in {}–{}",
            refract_runtime::STABLE_PORTS.start,
            refract_runtime::STABLE_PORTS.end - 1
        )));
    };
    let guard = Guard::of(db, o);
    // No event of its own: the cutover's "engine healthy at URL" names it.
    let set = commit(s, db.id, guard, move |_, _d, o, _| {
        o.engine_port = Some(port);
        Ok(())
    })
    .await?;
    match set {
        Some(()) => Ok(Ok(port)),
        // Lost a race with an action: the next step reads the record again.
        None => Err(ApiError::Conflict("the operation changed meanwhile".into())),
    }
}

/// Whether an engine of `database` other than `except` runs (a live instance row the driver
/// reports alive).
async fn any_alive(s: &Service, rt: &Runtime, database: Uuid, except: Uuid) -> StoreResult<bool> {
    let live = s
        .read(move |tx| tx.lifecycle().live_instances(Some(database)))
        .await?;
    for i in live.iter().filter(|i| i.id != except) {
        if let Ok(st) = rt.driver.status(&i.runtime_id).await {
            if st.is_alive() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Starts engine `instance` running `build` with `settings` (secrets as 0600 files), listening
/// for clients on `port` (beside a live engine of the database when `takeover`).
#[allow(clippy::too_many_arguments)]
async fn launch(
    s: &Service,
    rt: &Runtime,
    db: &Database,
    instance: Uuid,
    build: Uuid,
    settings: &RuntimeSettings,
    port: u16,
    takeover: bool,
) -> Result<(), String> {
    let (dbid, customer, conn_id) = (db.id, db.customer_id, db.connection_id);
    let found = s
        .read(move |tx| {
            let c = tx.get_connection(customer, conn_id)?;
            let b = tx.lifecycle().build(dbid, build)?;
            let m = tx.lifecycle().build_manifest(build)?;
            Ok((c, b, m))
        })
        .await
        .map_err(|e| format!("cannot read the deploy's records: {e}"))?;
    let (Some(conn), Some(_build), Some(manifest)) = found else {
        return Err(format!(
            "build {build} has no manifest (or the connection is gone): redeploy another build"
        ));
    };
    // The engine opens the SQLite file itself: give it the path checked now, canonical.
    let mut conn = conn;
    if conn.backend == crate::api::Backend::Sqlite {
        let (service, c) = (s.clone(), conn.clone());
        let params = tokio::task::spawn_blocking(move || service.checked_source_params(&c, None))
            .await
            .map_err(|e| format!("checking the source failed: {e}"))?
            .map_err(|msg| format!("the source may not be read: {msg}"))?;
        conn.mysql_host = params.host;
    }
    let password = conn
        .password_secret
        .as_deref()
        .and_then(|n| s.secrets.get(n));
    let ssl_root_cert = conn
        .ssl_root_cert_secret
        .as_deref()
        .and_then(|n| s.secrets.get(n));
    let token = admin_token(s, db.id)
        .map_err(|e| format!("cannot create the engine's admin token: {e:#}"))?;
    let keys = super::querykeys::write_keys_file(s, rt, db.id)
        .await
        .map_err(|e| format!("cannot write the keys file: {e}"))?;
    // The mode of the settings being deployed, not the build's: `reconfigure` applies a changed
    // sync mode (a CDC mode the source cannot serve fails the deploy fast, see `deploy`).
    let sync_mode = settings.sync_mode.as_str().to_string();
    let spec = engine::spec(&engine::Launch {
        instance,
        program: &rt.engine_binary,
        database: db,
        connection: &conn,
        password,
        ssl_root_cert,
        manifest: &manifest,
        settings,
        sync_mode: &sync_mode,
        admin_token: &token,
        keys_file: &keys,
        port,
        takeover,
    });
    match rt.driver.start(&spec).await {
        Ok(_) | Err(RuntimeError::AlreadyRunning(_)) => Ok(()),
        Err(e) => Err(format!("cannot start the engine: {e}")),
    }
}

/// The secret-store name of a database's engine admin token.
pub(crate) fn admin_token_secret(database: Uuid) -> String {
    format!("database/{database}/admin-token")
}

/// The admin token of a database's engines (created on first use, kept in the secret store).
pub(super) fn admin_token(s: &Service, database: Uuid) -> anyhow::Result<String> {
    let name = admin_token_secret(database);
    if let Some(t) = s.secrets.get(&name) {
        return Ok(t);
    }
    let token = crate::keys::generate("adm").token;
    s.secrets.put(&name, &token)?;
    Ok(token)
}

/// Fires a pause-schedule edge: the same decision as a user's action, with cause `schedule`.
async fn fire_schedule(
    s: &Service,
    id: Uuid,
    edge: schedule::Edge,
    mark: String,
) -> StoreResult<()> {
    s.write(move |tx| {
        let Some(mut d) = tx.lifecycle().database(id)? else {
            return Ok(());
        };
        let mut o = tx.lifecycle().ops(id)?;
        o.schedule_mark = Some(mark);
        let before = d.status;
        let action = match edge {
            schedule::Edge::Pause => Action::Pause,
            schedule::Edge::Resume => Action::Resume,
        };
        let mut note = Note {
            cause: "schedule".into(),
            message: String::new(),
        };
        let ctx = super::actions::context(tx, &d)?;
        match matrix::decide(d.status, action, &ctx) {
            Decision::Immediate => {
                let msg = super::actions::begin(
                    tx,
                    &mut d,
                    &mut o,
                    action,
                    &Default::default(),
                    "schedule",
                )?;
                note.message = format!("scheduled {}: {msg}", action.name());
            }
            Decision::Queued => {
                d.desired_state = Some(super::actions::desired_of(action));
                note.message = format!("scheduled {} queued", action.name());
            }
            Decision::Refused(reason) => {
                tracing::debug!(database = %id, %reason, "schedule edge not applicable");
            }
        }
        save(tx, &mut d, &o, before, note)
    })
    .await?;
    s.lifecycle.wake();
    Ok(())
}

/// Stops and removes instances the store does not want (any more): engines of deleted databases,
/// of rolled-back deploys, or started by a step that lost a race.
async fn sweep(s: &Service, rt: &Runtime) -> anyhow::Result<()> {
    // The driver first, the store second: an instance is recorded before it is started, so
    // everything in this list is already in what is read next.
    let listed = rt.driver.list().await?;
    let wanted: HashSet<Uuid> = s
        .read(|tx| {
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
        .map_err(|e: ApiError| anyhow::anyhow!("{e}"))?;
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::{DesiredState, InstanceSize, LogLevel, Status, SyncMode};
    use crate::store::lifecycle::OpKind;

    pub(crate) fn db(status: Status, desired: Option<DesiredState>) -> Database {
        let t = now();
        Database {
            id: Uuid::new_v4(),
            customer_id: Uuid::new_v4(),
            connection_id: Uuid::new_v4(),
            name: "db".into(),
            mysql_db: "main".into(),
            sync_mode: SyncMode::Poll,
            sync_interval: 30,
            safety_net: 3600,
            task_cpu: 256,
            task_memory_mb: 512,
            log_level: LogLevel::Info,
            status,
            last_error: None,
            endpoint_url: None,
            health_status: None,
            build_compute_override: None,
            instance_size: InstanceSize::Nano,
            region: "local".into(),
            binlog_server_id: None,
            desired_state: desired,
            reflexdb_custom_domain: None,
            pause_schedule: None,
            tags: Vec::new(),
            has_pending_changes: false,
            replication_paused: false,
            created_at: t,
            updated_at: t,
            internal: Default::default(),
        }
    }

    fn ops(op: bool, cleanup: bool) -> OpsRecord {
        OpsRecord {
            op: op.then(|| new_op(OpKind::Provision, "user", Status::Registered, None, None)),
            cleanup: if cleanup {
                vec![Uuid::new_v4()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn plan_follows_status_intent_and_cleanup() {
        assert_eq!(
            plan(&db(Status::TestingConnection, None), &ops(true, false)),
            Plan::TestConnection
        );
        assert_eq!(
            plan(&db(Status::Queued, None), &ops(true, false)),
            Plan::Build
        );
        assert_eq!(
            plan(&db(Status::Building, None), &ops(true, false)),
            Plan::Build
        );
        assert_eq!(
            plan(&db(Status::Resuming, None), &ops(true, false)),
            Plan::Deploy
        );
        assert_eq!(
            plan(&db(Status::Terminating, None), &ops(true, false)),
            Plan::Stop
        );
        // A queued action waits for a stable status, then runs.
        let building = db(Status::Building, Some(DesiredState::Paused));
        assert_eq!(plan(&building, &ops(true, false)), Plan::Build);
        let running = db(Status::Running, Some(DesiredState::Paused));
        assert_eq!(
            plan(&running, &ops(false, false)),
            Plan::ApplyDesired(DesiredState::Paused)
        );
        assert_eq!(
            plan(&db(Status::Running, None), &ops(false, false)),
            Plan::Supervise
        );
        assert_eq!(
            plan(&db(Status::Paused, None), &ops(false, false)),
            Plan::Nothing
        );
        // Replaced engines are stopped first; a transitional status without its record rolls back.
        assert_eq!(
            plan(&db(Status::Running, None), &ops(false, true)),
            Plan::Cleanup
        );
        assert_eq!(
            plan(&db(Status::Deploying, None), &ops(false, false)),
            Plan::Lost
        );
    }

    #[test]
    fn backoff_doubles_and_starts_fast() {
        assert_eq!(backoff(1).num_milliseconds(), 500);
        assert_eq!(backoff(2).num_milliseconds(), 1000);
        assert_eq!(backoff(4).num_milliseconds(), 4000);
        assert_eq!(backoff(30).num_milliseconds(), 60_000);
    }
}
