//! The reconciler: one loop over every database, and one task per database taking the next step
//! of its operation.
//!
//! Each step follows the same shape: read the database and its operation record, observe the
//! runtime driver, decide (pure, [`super::decide`]), act, then commit the result with
//! [`super::bookkeeping::commit`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bookkeeping::{clear_op, commit, now, save, Guard, Next, Note};
use super::matrix::{self, Action, Decision};
use super::state::Runtime;
use super::{builds, deploy, schedule, stop, supervise};
use crate::api::Database;
use crate::api::{DesiredState, Status};
use crate::store::lifecycle::OpsRecord;
use crate::store::StoreResult;
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
        Plan::Cleanup => stop::cleanup(s, rt, &db, &o).await,
        Plan::ApplyDesired(_) => apply_desired(s, &db).await,
        Plan::TestConnection => builds::test_connection(s, rt, db, o).await,
        Plan::Build => builds::build(s, rt, db, o).await,
        Plan::Deploy => deploy::deploy(s, rt, db, o).await,
        Plan::Stop => stop::stop(s, rt, db, o).await,
        Plan::Supervise => supervise::supervise(s, rt, db, o).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::bookkeeping::new_op;
    use crate::lifecycle::bookkeeping::tests::db;
    use crate::store::lifecycle::OpKind;

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
}
