//! The reconciler: one loop over every database, and one task per database taking the next step
//! of its operation.
//!
//! Each step follows the same shape: read the database and its operation record, observe the
//! runtime driver, decide (pure, [`super::decide`]), act, then commit the result with
//! [`super::bookkeeping::commit`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::actions::{self, Applied, Ask};
use super::bookkeeping::{clear_op, commit, now, save, Guard, InFlight, Next, Note};
use super::decide::{self, Work};
use super::error::StepResult;
use super::matrix::Action;
use super::state::Runtime;
use super::{builds, deploy, schedule, stop, supervise};
use crate::api::{DesiredState, Status};
use crate::store::lifecycle::OpsRecord;
use crate::store::{DatabaseRow, StoreResult};
use crate::Service;

/// How often the loop runs without being woken.
const TICK: Duration = Duration::from_secs(1);

/// How often instances nobody wants are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The loop: wakes on actions and every second; spawns a task for each database with work.
pub(super) async fn run(service: Service, cancel: CancellationToken) {
    let Some(rt) = service.lifecycle.runtime().cloned() else {
        return;
    };
    tracing::info!("reconciler started");
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            if let Err(e) = stop::sweep(&service, &rt).await {
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
        .read_store(|tx| Ok((tx.list_all_databases()?, tx.lifecycle().all_ops()?)))
        .await?;
    let t = now();
    for db in dbs {
        let o = ops
            .iter()
            .find(|o| o.database_id == db.id)
            .cloned()
            .unwrap_or_else(|| OpsRecord::none(db.id));
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

fn needs_task(db: &DatabaseRow, o: &OpsRecord) -> bool {
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
            .read_store(move |tx| {
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

async fn step(s: &Service, rt: &Runtime, db: DatabaseRow, o: OpsRecord) -> StepResult<Next> {
    match decide::work(&db, &o) {
        Work::Cleanup => stop::cleanup(s, rt, &db, &o).await,
        Work::ApplyDesired(_) => apply_desired(s, &db).await,
        Work::TestConnection => with_op(db, o, |f| builds::test_connection(s, rt, f)).await,
        Work::Build => with_op(db, o, |f| builds::build(s, rt, f)).await,
        Work::Deploy => with_op(db, o, |f| deploy::deploy(s, rt, f)).await,
        Work::Stop => with_op(db, o, |f| stop::stop(s, rt, f)).await,
        Work::Supervise => supervise::supervise(s, rt, db, o).await,
        Work::Lost => {
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
        Work::Nothing => Ok(Next::Idle),
    }
}

/// Runs a step of the operation in flight; idle when there is none (`decide::work` picks these
/// steps only with one, so that is a record changed under us).
async fn with_op<F: Future<Output = StepResult<Next>>>(
    db: DatabaseRow,
    o: OpsRecord,
    step: impl FnOnce(InFlight) -> F,
) -> StepResult<Next> {
    match InFlight::of(db, o) {
        Some(in_flight) => step(in_flight).await,
        None => Ok(Next::Idle),
    }
}

/// Runs a queued action now that a stable status is reached, or drops it when the matrix no
/// longer allows it.
async fn apply_desired(s: &Service, db: &DatabaseRow) -> StepResult<Next> {
    let id = db.id;
    let r = s
        .write_as(move |tx| -> StepResult<()> {
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
                let action = actions::action_of(want);
                let ask = Ask {
                    action,
                    params: &Default::default(),
                    cause: "reconciler",
                };
                note.message = match actions::apply_action(tx, &mut d, &mut o, &ask, false)? {
                    Applied::Begun(msg) => format!("queued {}: {msg}", action.name()),
                    Applied::Queued | Applied::Refused(_) => format!(
                        "queued {} dropped: not allowed in status {}",
                        action.name(),
                        d.status
                    ),
                };
            }
            Ok(save(tx, &mut d, &o, before, note)?)
        })
        .await;
    r?;
    s.lifecycle.wake();
    Ok(Next::Again)
}

/// Fires a pause-schedule edge: the same decision as a user's action, with cause `schedule`.
async fn fire_schedule(
    s: &Service,
    id: Uuid,
    edge: schedule::Edge,
    mark: String,
) -> StepResult<()> {
    s.write_as(move |tx| -> StepResult<()> {
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
        let ask = Ask {
            action,
            params: &Default::default(),
            cause: "schedule",
        };
        match actions::apply_action(tx, &mut d, &mut o, &ask, true)? {
            Applied::Begun(msg) => note.message = format!("scheduled {}: {msg}", action.name()),
            Applied::Queued => note.message = format!("scheduled {} queued", action.name()),
            Applied::Refused(reason) => {
                tracing::debug!(database = %id, %reason, "schedule edge not applicable");
            }
        }
        Ok(save(tx, &mut d, &o, before, note)?)
    })
    .await?;
    s.lifecycle.wake();
    Ok(())
}
