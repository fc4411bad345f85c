//! The reconciler's bookkeeping: what every step uses to read the clock and record its result —
//! the operation record ([`new_op`], [`begin_op`], [`clear_op`]), guarded commits ([`Guard`],
//! [`commit`], [`save`]) and the end of a failed operation ([`fail`]). Steps (`deploy`,
//! `supervise`, `stop`, `builds`) and actions import this module, never the reconciler.
//!
//! A commit writes only when the status and operation id its step started from are still
//! current, so a step that raced with a new action leaves no trace but its side effects, and those
//! are idempotent or swept up (an engine nobody wants is stopped by the orphan sweep).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::engine::admin_token_secret;
use super::error::StepResult;
use super::state::Runtime;
use crate::api::Status;
use crate::store::lifecycle::{OpData, OpKind, OpsRecord};
use crate::store::{DatabaseRow, OpStep, OperationInFlight};
use crate::store::{Event, StoreResult, Tx};
use crate::Service;

/// The clock, cut to microseconds (what the store keeps, so a value read back compares equal).
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

/// What a step expects to still be true when it commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    pub status: Status,
    pub op_id: Option<Uuid>,
}

impl Guard {
    pub(super) fn of(db: &DatabaseRow, o: &OpsRecord) -> Self {
        Guard {
            status: db.status,
            op_id: o.op.as_ref().map(|op| op.id),
        }
    }
}

/// What a step of an operation in flight starts from: the database and its ops record as read,
/// the operation, and the guard the step's commits check. The dispatcher builds it once, so no
/// step reads the operation or takes its guard again.
pub(super) struct InFlight {
    pub db: DatabaseRow,
    pub o: OpsRecord,
    pub op: OpData,
    pub guard: Guard,
}

impl InFlight {
    /// `None` when no operation is in flight.
    pub(super) fn of(db: DatabaseRow, o: OpsRecord) -> Option<Self> {
        let op = o.op.clone()?;
        let guard = Guard::of(&db, &o);
        Some(InFlight { db, o, op, guard })
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
    f: impl FnOnce(&dyn Tx, &mut DatabaseRow, &mut OpsRecord, &mut Note) -> StoreResult<T>
        + Send
        + 'static,
) -> StoreResult<Option<T>> {
    let r = s
        .write_store(move |tx| {
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
    d: &mut DatabaseRow,
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

/// Where an operation of each kind starts: its first step and the status the database shows
/// while it runs that step.
pub(super) fn start_of(kind: OpKind) -> (OpStep, Status) {
    match kind {
        OpKind::Provision | OpKind::Rebuild => (OpStep::TestConnection, Status::TestingConnection),
        OpKind::Redeploy | OpKind::Reconfigure | OpKind::Resize | OpKind::Restart => {
            (OpStep::StartEngine, Status::Deploying)
        }
        OpKind::Resume => (OpStep::StartEngine, Status::Resuming),
        OpKind::Pause => (OpStep::StopEngine, Status::Pausing),
        OpKind::Terminate => (OpStep::StopEngine, Status::Terminating),
    }
}

/// Begins `op`: records it on the row and the ops record at its first step, and moves the
/// database to that step's status ([`start_of`]).
pub(super) fn begin_op(d: &mut DatabaseRow, o: &mut OpsRecord, op: OpData) {
    let (step, status) = start_of(op.kind);
    d.internal.operation = Some(OperationInFlight {
        kind: op.kind,
        step,
        started_at: op.started_at,
        attempt: 0,
    });
    d.status = status;
    o.op = Some(op);
}

/// Clears the operation in flight.
pub(super) fn clear_op(d: &mut DatabaseRow, o: &mut OpsRecord) {
    d.internal.operation = None;
    o.op = None;
}

/// Moves the operation in flight to its next step.
pub(super) fn set_step(d: &mut DatabaseRow, step: OpStep) {
    if let Some(op) = &mut d.internal.operation {
        op.step = step;
    }
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

pub(super) async fn still_current(s: &Service, id: Uuid, guard: Guard) -> StoreResult<bool> {
    s.read_store(move |tx| {
        let Some(d) = tx.lifecycle().database(id)? else {
            return Ok(false);
        };
        let o = tx.lifecycle().ops(id)?;
        Ok(d.status == guard.status && o.op.as_ref().map(|op| op.id) == guard.op_id)
    })
    .await
}

/// Ends the operation with an error: back to `running` when the previous engine still serves
/// (a failed rebuild or reconfigure changes nothing for clients), back to `paused` when a rebuild
/// of a paused database failed before starting anything, else `failed`.
pub(super) async fn fail(
    s: &Service,
    rt: &Runtime,
    db: &DatabaseRow,
    o: &OpsRecord,
    message: String,
) -> StepResult<Next> {
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

/// The admin token of a database's engines (created on first use, kept in the secret store).
pub(super) fn admin_token(s: &Service, database: Uuid) -> anyhow::Result<String> {
    let name = admin_token_secret(database);
    // Unreadable is not absent: a new token would lock out the engines that run with the old.
    if let Some(t) = s.secrets.try_get(&name)? {
        return Ok(t);
    }
    let token = crate::keys::generate("adm").token;
    s.secrets.put(&name, &token)?;
    Ok(token)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::{DesiredState, InstanceSize, LogLevel, SyncMode};
    use crate::store::NewDatabase;

    /// Settings deployed before a field existed (`replicas`) are not a pending change: the
    /// missing field reads as its default.
    #[test]
    fn a_field_added_since_the_deploy_is_not_a_pending_change() {
        let mut d = db(Status::Running, None);
        let mut deployed = serde_json::to_value(d.runtime_settings()).unwrap();
        deployed.as_object_mut().unwrap().remove("replicas");
        d.internal.deployed_config = Some(deployed);
        assert!(!crate::service::pending(&d));
        d.replicas = 3;
        assert!(crate::service::pending(&d));
    }

    /// A database row in `status` for pure tests.
    pub(crate) fn db(status: Status, desired: Option<DesiredState>) -> DatabaseRow {
        let mut d = DatabaseRow::registered(NewDatabase {
            id: Uuid::new_v4(),
            customer_id: Uuid::new_v4(),
            connection_id: Uuid::new_v4(),
            name: "db".into(),
            schema: "main".into(),
            sync_mode: SyncMode::Poll,
            sync_interval: 30,
            instance_size: InstanceSize::Nano,
            replicas: 1,
            log_level: LogLevel::Info,
            region: "local".into(),
            binlog_server_id: None,
            at: now(),
        });
        d.status = status;
        d.desired_state = desired;
        d
    }
}
