//! Lifecycle actions and the read routes of a database's lifecycle (instance status, builds,
//! events, schema, schema config), as methods of [`Service`].
//!
//! An action is one write transaction: check the matrix, then either record a `desiredState`
//! (queued) or start the operation — a new status and the operation record — and wake the
//! reconciler, which does the work. `reload` and the replication switches talk to the running
//! engine directly: they change no status.

use std::time::Duration;

use uuid::Uuid;

use super::bookkeeping::{admin_token, begin_op, new_op, now, save, set_step, Note};
use super::error::ActionError;
use super::matrix::{self, Action, Context, Decision, Mode};
use super::types::*;
use crate::api::InstanceSizeExt;
use crate::api::{DesiredState, InstanceSize, RuntimeSettings, Status};
use crate::error::ApiError;
use crate::plans;
use crate::service::{customer_database, pending, Principal};
use crate::store::lifecycle::{BuildRecord, BuildStatus, OpKind, OpsRecord};
use crate::store::{DatabaseRow, OpStep};
use crate::store::{Event, StoreResult, Tx};
use crate::Service;

/// Parameters some actions take.
#[derive(Debug, Clone, Default)]
pub struct ActionParams {
    /// `redeploy`: the build to run.
    pub build_id: Option<Uuid>,
    /// `resize`: the new size.
    pub instance_size: Option<InstanceSize>,
}

/// The matrix's side conditions for a database, read in `tx`.
pub(super) fn context(tx: &dyn Tx, d: &DatabaseRow) -> StoreResult<Context> {
    Ok(Context {
        has_deployable_build: tx.lifecycle().latest_deployable_build(d.id)?.is_some(),
        replication_paused: d.replication_paused,
    })
}

/// The `desiredState` a queued action records.
fn desired_of(action: Action) -> DesiredState {
    match action {
        Action::Pause => DesiredState::Paused,
        Action::Terminate => DesiredState::Terminated,
        _ => DesiredState::Running,
    }
}

fn live_instance(tx: &dyn Tx, d: &DatabaseRow) -> StoreResult<Option<Uuid>> {
    Ok(tx
        .lifecycle()
        .live_instances(Some(d.id))?
        .first()
        .map(|i| i.id))
}

/// What [`apply_action`] did.
#[derive(Debug)]
pub(super) enum Applied {
    /// Started now; the message of [`begin`] for the event log (empty for the actions that only
    /// talk to the running engine: `reload`, `pauseSync`, `resumeSync`).
    Begun(String),
    /// Recorded as `desiredState`: runs when the operation in flight finishes.
    Queued,
    /// Not allowed now (the reason), or queued where queueing is not allowed; nothing changed.
    Refused(String),
}

/// An action as asked: which, with what parameters, and by whom (`user`, `schedule` or
/// `reconciler`: the cause an operation it begins records).
pub(super) struct Ask<'a> {
    pub action: Action,
    pub params: &'a ActionParams,
    pub cause: &'a str,
}

/// The one path of an action, whoever asks (an endpoint, a pause schedule, the reconciler running
/// a queued `desiredState`): decide through the matrix, then begin it, queue it (when
/// `may_queue`) or refuse it, inside `tx`. The caller saves the row and writes the event.
pub(super) fn apply_action(
    tx: &dyn Tx,
    d: &mut DatabaseRow,
    o: &mut OpsRecord,
    ask: &Ask,
    may_queue: bool,
) -> Result<Applied, ActionError> {
    let ctx = context(tx, d)?;
    let action = ask.action;
    match matrix::decide(d.status, action, &ctx) {
        Decision::Immediate => Ok(Applied::Begun(begin(tx, d, o, ask)?)),
        Decision::Queued if may_queue => {
            d.desired_state = Some(desired_of(action));
            Ok(Applied::Queued)
        }
        Decision::Queued => Ok(Applied::Refused(format!(
            "{} would wait for the operation in flight",
            action.name()
        ))),
        Decision::Refused(reason) => Ok(Applied::Refused(reason)),
    }
}

/// The action that reaches a `desiredState`.
pub(super) fn action_of(want: DesiredState) -> Action {
    match want {
        DesiredState::Running => Action::Resume,
        DesiredState::Paused => Action::Pause,
        DesiredState::Terminated => Action::Terminate,
    }
}

/// Starts an allowed, immediate action inside `tx` (the matrix was checked by the caller):
/// sets the new status and records the operation. Returns a message for the event log.
fn begin(
    tx: &dyn Tx,
    d: &mut DatabaseRow,
    o: &mut OpsRecord,
    ask: &Ask,
) -> Result<String, ActionError> {
    let Ask {
        action,
        params,
        cause,
    } = *ask;
    let origin = d.status;
    let old = if origin == Status::Running {
        live_instance(tx, d)?
    } else {
        None
    };
    let deploy_build = |tx: &dyn Tx, d: &DatabaseRow| -> StoreResult<Option<Uuid>> {
        match d.internal.active_build_id {
            Some(b) if tx.lifecycle().build_manifest(b)?.is_some() => Ok(Some(b)),
            _ => tx.lifecycle().latest_deployable_build(d.id),
        }
    };
    let message = match action {
        Action::Provision | Action::Rebuild => {
            let t = now();
            let build = BuildRecord {
                id: Uuid::new_v4(),
                database_id: d.id,
                status: BuildStatus::Queued,
                has_manifest: false,
                schema_config: d.internal.schema_config.clone(),
                sync_mode_used: None,
                compute_type_used: None,
                log: format!(
                    "{} build queued ({} by {cause})\n",
                    t.format("%H:%M:%S%.3f"),
                    action.name()
                ),
                error: None,
                created_at: t,
                started_at: None,
                finished_at: None,
            };
            tx.lifecycle().insert_build(&build)?;
            let kind = if action == Action::Provision {
                OpKind::Provision
            } else {
                OpKind::Rebuild
            };
            begin_op(d, o, new_op(kind, cause, origin, Some(build.id), old));
            if action == Action::Provision {
                d.last_error = None;
            }
            format!("build {} queued", build.id)
        }
        Action::Reconfigure | Action::Redeploy => {
            if action == Action::Redeploy {
                let b = params.build_id.ok_or(ActionError::BuildIdRequired)?;
                let build = tx
                    .lifecycle()
                    .build(d.id, b)?
                    .ok_or(ActionError::BuildNotFound)?;
                if !build.has_manifest {
                    return Err(ActionError::NotDeployable {
                        build: b,
                        status: build.status.as_str(),
                    });
                }
            }
            let build = match (action, params.build_id) {
                (Action::Redeploy, Some(b)) => Some(b),
                _ => deploy_build(tx, d)?,
            };
            let kind = if action == Action::Redeploy {
                OpKind::Redeploy
            } else {
                OpKind::Reconfigure
            };
            begin_op(d, o, new_op(kind, cause, origin, build, old));
            format!(
                "deploying build {}",
                build.map(|b| b.to_string()).unwrap_or_default()
            )
        }
        Action::Resize => {
            let size = params.instance_size.unwrap_or(d.instance_size);
            d.instance_size = size;
            (d.task_cpu, d.task_memory_mb) = size.resources();
            d.has_pending_changes = pending(d);
            match origin {
                Status::Running => {
                    let build = deploy_build(tx, d)?;
                    begin_op(d, o, new_op(OpKind::Resize, cause, origin, build, old));
                    format!("resizing to {size}")
                }
                Status::Deploying => {
                    // Restart the deploy with the new size (recovers an out-of-memory deploy): the
                    // engine being started is abandoned, the operation gets a new id so that the
                    // step in flight drops its result.
                    if let Some(op) = o.op.as_mut() {
                        o.cleanup.extend(op.new_instance.take());
                        op.id = Uuid::new_v4();
                        op.instance_started_at = None;
                        op.settings = None;
                    }
                    set_step(d, OpStep::StartEngine);
                    format!("resized to {size}; deploying again")
                }
                _ => format!("resized to {size} (applied at the next provision or resume)"),
            }
        }
        Action::Pause => {
            begin_op(d, o, new_op(OpKind::Pause, cause, origin, None, old));
            "pausing".into()
        }
        Action::Resume => {
            let build = deploy_build(tx, d)?;
            begin_op(d, o, new_op(OpKind::Resume, cause, origin, build, None));
            "resuming".into()
        }
        Action::Terminate => {
            // A terminate that finds an operation in flight (started now, or queued behind it)
            // takes over its engine, which the stop step stops with the others.
            let abandoned = o.op.as_ref().and_then(|op| op.new_instance);
            o.cleanup.extend(abandoned);
            // A terminate is the last word: an action queued behind the operation it ends is
            // dropped with it.
            d.desired_state = None;
            begin_op(d, o, new_op(OpKind::Terminate, cause, origin, None, old));
            "terminating".into()
        }
        Action::Delete | Action::Reload | Action::PauseSync | Action::ResumeSync => String::new(),
    };
    Ok(message)
}

/// What an action endpoint does after its transaction (talk to the running engine).
enum After {
    Nothing,
    Reload { endpoint: String },
    Replication { endpoint: String, pause: bool },
}

impl Service {
    /// `POST /v1/databases/{id}/<action>`: 202 `{status, mode}` or 409 `action_not_allowed`.
    pub async fn database_action(
        &self,
        p: &Principal,
        id: Uuid,
        action: Action,
        params: ActionParams,
    ) -> Result<ActionResponse, ApiError> {
        if action == Action::Delete {
            self.delete_database(p, id).await?;
            return Ok(ActionResponse {
                status: Status::Terminated,
                mode: Mode::Immediate,
                replication_paused: None,
            });
        }
        let customer = p.customer.clone();
        if let Some(size) = params.instance_size {
            let max = plans::limits(customer.plan).max_instance_size;
            if size.rank() > max.rank() {
                return Err(ApiError::Forbidden(format!(
                    "instanceSize {size} exceeds the {} plan's largest size {max}",
                    customer.plan
                )));
            }
        }
        let (resp, after) = self
            .write(move |tx| {
                let mut d = customer_database(tx, customer.id, id)?;
                let mut o = tx.lifecycle().ops(id)?;
                let before = d.status;
                let mut note = Note {
                    cause: "user".into(),
                    message: String::new(),
                };
                let mut after = After::Nothing;
                let mut replication = None;
                let ask = Ask {
                    action,
                    params: &params,
                    cause: "user",
                };
                let mode = match apply_action(tx, &mut d, &mut o, &ask, true)? {
                    Applied::Refused(reason) => return Err(ApiError::ActionNotAllowed(reason)),
                    Applied::Queued => {
                        note.message = format!(
                            "{} queued until the current operation finishes",
                            action.name()
                        );
                        Mode::Queued
                    }
                    Applied::Begun(message) => {
                        match action {
                            Action::Reload | Action::PauseSync | Action::ResumeSync => {
                                let endpoint = tx
                                    .lifecycle()
                                    .live_instances(Some(id))?
                                    .into_iter()
                                    .find_map(|i| i.control().map(str::to_string))
                                    .ok_or_else(|| {
                                        ApiError::ActionNotAllowed(
                                            "the database has no serving engine right now".into(),
                                        )
                                    })?;
                                if action == Action::Reload {
                                    note.message = "full reload requested".into();
                                    after = After::Reload { endpoint };
                                } else {
                                    let pause = action == Action::PauseSync;
                                    d.replication_paused = pause;
                                    replication = Some(pause);
                                    note.message = if pause {
                                        "replication paused"
                                    } else {
                                        "replication resumed"
                                    }
                                    .into();
                                    after = After::Replication { endpoint, pause };
                                }
                            }
                            _ => note.message = message,
                        }
                        Mode::Immediate
                    }
                };
                save(tx, &mut d, &o, before, note)?;
                Ok((
                    ActionResponse {
                        status: d.status,
                        mode,
                        replication_paused: replication,
                    },
                    after,
                ))
            })
            .await?;
        self.lifecycle.wake();
        match after {
            After::Nothing => {}
            After::Reload { endpoint } => {
                let s = self.clone();
                tokio::spawn(async move { s.run_reload(id, endpoint).await });
            }
            After::Replication { endpoint, pause } => {
                // Best effort now; the health poller re-applies the flag to any engine that
                // disagrees (a restarted one, or one that did not answer).
                if let Ok(token) = admin_token(self, id) {
                    let path = if pause {
                        "replication/pause"
                    } else {
                        "replication/resume"
                    };
                    if let Err(e) = self
                        .lifecycle
                        .engine()
                        .admin(&endpoint, &token, path, Duration::from_secs(5))
                        .await
                    {
                        tracing::warn!(database = %id, error = %format!("{e:#}"), "replication switch not applied yet");
                    }
                }
            }
        }
        Ok(resp)
    }

    async fn run_reload(&self, id: Uuid, endpoint: String) {
        let Ok(token) = admin_token(self, id) else {
            return;
        };
        let result = self
            .lifecycle
            .engine()
            .admin(&endpoint, &token, "reload", Duration::from_secs(3600))
            .await;
        let message = match result {
            Ok(v) => format!(
                "reload done: {} rows in {} ms (swap {})",
                v.get("rows").and_then(|x| x.as_u64()).unwrap_or(0),
                v.get("durationMs").and_then(|x| x.as_u64()).unwrap_or(0),
                v.get("swapCount").and_then(|x| x.as_u64()).unwrap_or(0)
            ),
            Err(e) => format!("reload failed: {e:#}"),
        };
        let _ = self
            .write_store(move |tx| {
                let Some(d) = tx.lifecycle().database(id)? else {
                    return Ok(());
                };
                tx.insert_event(&Event {
                    database_id: id,
                    at: now(),
                    from_status: Some(d.status),
                    to_status: d.status,
                    cause: "user".into(),
                    message,
                })
            })
            .await;
    }

    /// `GET /v1/databases/{id}/instance`.
    pub async fn instance_status(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<InstanceStatusResponse, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| {
            let d = customer_database(tx, customer, id)?;
            let c = tx
                .get_connection(customer, d.connection_id)?
                .ok_or_else(|| ApiError::not_found("connection"))?;
            let ctx = context(tx, &d)?;
            let info = |a: Action| match matrix::decide(d.status, a, &ctx) {
                Decision::Immediate => ActionInfo {
                    allowed: true,
                    mode: Some(Mode::Immediate),
                    reason: None,
                },
                Decision::Queued => ActionInfo {
                    allowed: true,
                    mode: Some(Mode::Queued),
                    reason: None,
                },
                Decision::Refused(r) => ActionInfo {
                    allowed: false,
                    mode: None,
                    reason: Some(r),
                },
            };
            let actions = Actions {
                provision: info(Action::Provision),
                rebuild: info(Action::Rebuild),
                reconfigure: info(Action::Reconfigure),
                redeploy: info(Action::Redeploy),
                resize: info(Action::Resize),
                pause: info(Action::Pause),
                resume: info(Action::Resume),
                terminate: info(Action::Terminate),
                delete: info(Action::Delete),
                reload: info(Action::Reload),
                pause_sync: info(Action::PauseSync),
                resume_sync: info(Action::ResumeSync),
            };
            let instance = tx
                .lifecycle()
                .live_instances(Some(id))?
                .into_iter()
                .next()
                .map(|i| InstanceView {
                    id: i.id,
                    database_id: i.database_id,
                    build_id: i.build_id,
                    endpoint_url: i.endpoint_url,
                    health_status: i.health_status,
                    snapshot_age_ms: i.snapshot_age_ms,
                    swap_count: i.swap_count,
                    row_counts: i.row_counts,
                    replication: i.replication,
                    last_health_check: i.last_health_check,
                    created_at: i.created_at,
                    updated_at: i.updated_at,
                });
            let latest_build = tx
                .lifecycle()
                .builds(id)?
                .into_iter()
                .next()
                .map(|b| build_view(&d, &b));
            let deployed: Option<RuntimeSettings> = d
                .internal
                .deployed_config
                .clone()
                .and_then(|v| serde_json::from_value(v).ok());
            let operation = d.internal.operation.map(|op| OperationView {
                kind: op.kind.as_str().into(),
                step: Some(op.step.as_str().into()),
                started_at: Some(op.started_at),
            });
            Ok(InstanceStatusResponse {
                connection: ConnectionLimits {
                    min_sync_interval: c.min_sync_interval,
                    allowed_sync_modes: c.wire.allowed_sync_modes,
                    available_schemas: c.wire.available_schemas,
                },
                deployed_instance_config: deployed,
                has_pending_changes: d.has_pending_changes,
                instance,
                latest_build,
                actions,
                operation,
                database: d.into(),
            })
        })
        .await
    }

    /// `GET /v1/databases/{id}/builds`.
    pub async fn list_builds(&self, p: &Principal, id: Uuid) -> Result<BuildsResponse, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| {
            let d = customer_database(tx, customer, id)?;
            let builds = tx
                .lifecycle()
                .builds(id)?
                .iter()
                .map(|b| build_view(&d, b))
                .collect();
            Ok(BuildsResponse {
                builds,
                active_build_id: d.internal.active_build_id,
            })
        })
        .await
    }

    /// `GET /v1/databases/{id}/builds/{buildId}/logs`.
    pub async fn build_log(
        &self,
        p: &Principal,
        id: Uuid,
        build: Uuid,
    ) -> Result<String, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| {
            customer_database(tx, customer, id)?;
            Ok(tx
                .lifecycle()
                .build(id, build)?
                .ok_or_else(|| ApiError::not_found("build"))?
                .log)
        })
        .await
    }

    /// `GET /v1/databases/{id}/events`.
    pub async fn list_events(
        &self,
        p: &Principal,
        id: Uuid,
        q: EventsQuery,
    ) -> Result<EventsResponse, ApiError> {
        let customer = p.customer.id;
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and 1000 (got {limit})"
            )));
        }
        self.read(move |tx| {
            customer_database(tx, customer, id)?;
            let events = tx
                .lifecycle()
                .events(id, limit, q.before)?
                .into_iter()
                .map(|e| EventView {
                    id: e.id,
                    at: e.event.at,
                    from: e.event.from_status,
                    to: e.event.to_status,
                    cause: e.event.cause,
                    message: e.event.message,
                })
                .collect();
            Ok(EventsResponse { events })
        })
        .await
    }

    /// `GET /v1/databases/{id}/schema`: the active build's manifest (else the newest deployable
    /// build's), with row counts from the running engine.
    pub async fn database_schema(&self, p: &Principal, id: Uuid) -> Result<SchemaView, ApiError> {
        let customer = p.customer.id;
        let (build, manifest, rows) = self
            .read(move |tx| {
                let d = customer_database(tx, customer, id)?;
                let build = match d.internal.active_build_id {
                    Some(b) => Some(b),
                    None => tx.lifecycle().latest_deployable_build(id)?,
                };
                let build = build.ok_or_else(|| {
                    ApiError::NotFound(
                        "this database has no successful build yet: provision it first".into(),
                    )
                })?;
                let manifest = tx
                    .lifecycle()
                    .build_manifest(build)?
                    .ok_or_else(|| ApiError::not_found("build artifact"))?;
                let rows = tx
                    .lifecycle()
                    .live_instances(Some(id))?
                    .into_iter()
                    .next()
                    .and_then(|i| i.row_counts);
                Ok((build, manifest, rows))
            })
            .await?;
        let m: refract_schema::Manifest = serde_json::from_str(&manifest).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("stored manifest of build {build}: {e}"))
        })?;
        Ok(schema_view(build, &m, rows.as_ref()))
    }

    /// `GET /v1/databases/{id}/schema-config`: the text, or `None` (default config).
    pub async fn get_schema_config(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<Option<String>, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| Ok(customer_database(tx, customer, id)?.internal.schema_config))
            .await
    }

    /// `PUT /v1/databases/{id}/schema-config`: validated (400 with line and reason); used by the
    /// next provision or rebuild. `None` (DELETE) returns to the default config.
    pub async fn set_schema_config(
        &self,
        p: &Principal,
        id: Uuid,
        text: Option<String>,
    ) -> Result<(), ApiError> {
        if let Some(t) = &text {
            if t.trim().is_empty() {
                return Err(ApiError::invalid(
                    "the schema config is empty (DELETE it to use the default config)",
                ));
            }
            if let Err(errors) = refract_schema::parse_schema_config(t) {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                return Err(ApiError::unprocessable(format!(
                    "invalid schema config: {}",
                    list.join("; ")
                )));
            }
        }
        let customer = p.customer.id;
        self.write(move |tx| {
            let mut d = customer_database(tx, customer, id)?;
            let before = d.status;
            let o = tx.lifecycle().ops(id)?;
            let message = if text.is_some() {
                "schema config set"
            } else {
                "schema config removed"
            };
            d.internal.schema_config = text;
            save(
                tx,
                &mut d,
                &o,
                before,
                Note {
                    cause: "user".into(),
                    message: format!("{message} (applied at the next build)"),
                },
            )?;
            Ok(())
        })
        .await
    }
}

fn build_view(d: &DatabaseRow, b: &BuildRecord) -> BuildView {
    BuildView {
        id: b.id,
        status: b.status,
        deployable: b.has_manifest,
        logs_url: format!("/v1/databases/{}/builds/{}/logs", d.id, b.id),
        created_at: b.created_at,
        started_at: b.started_at,
        finished_at: b.finished_at,
        build_duration_seconds: match (b.started_at, b.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
            _ => None,
        },
        compute_type_used: b.compute_type_used.clone(),
        cost_estimate_cents: 0,
        error: b.error.clone(),
    }
}

fn schema_view(
    build: Uuid,
    m: &refract_schema::Manifest,
    rows: Option<&serde_json::Value>,
) -> SchemaView {
    let tables = m
        .tables
        .iter()
        .map(|t| {
            let col = |i: &usize| {
                t.columns
                    .get(*i)
                    .map(|c| c.api_name.clone())
                    .unwrap_or_default()
            };
            SchemaTable {
                name: t.api_name.clone(),
                source_name: t.source_name.clone(),
                primary_key: t.primary_key.iter().map(col).collect(),
                fields: t
                    .columns
                    .iter()
                    .map(|c| SchemaField {
                        name: c.api_name.clone(),
                        source_name: c.source_name.clone(),
                        ty: c.ty.name().to_string(),
                        source_type: c.source_type.clone(),
                        nullable: c.nullable,
                        note: c.note.clone(),
                    })
                    .collect(),
                relations: t
                    .relations
                    .iter()
                    .map(|r| {
                        let target = m.table(&r.target_table);
                        SchemaRelation {
                            name: r.name.clone(),
                            kind: match r.kind {
                                refract_schema::RelationKind::Forward => "forward".into(),
                                refract_schema::RelationKind::Reverse => "reverse".into(),
                            },
                            table: r.target_table.clone(),
                            columns: r.local_columns.iter().map(col).collect(),
                            target_columns: r
                                .target_columns
                                .iter()
                                .map(|i| {
                                    target
                                        .and_then(|tt| tt.columns.get(*i))
                                        .map(|c| c.api_name.clone())
                                        .unwrap_or_default()
                                })
                                .collect(),
                        }
                    })
                    .collect(),
                row_count: rows
                    .and_then(|r| r.get(&t.api_name))
                    .and_then(|v| v.as_i64()),
            }
        })
        .collect();
    SchemaView {
        build_id: build,
        database: m.database.clone(),
        backend: m.backend.as_str().to_string(),
        tables,
        warnings: m.warnings.clone(),
    }
}
