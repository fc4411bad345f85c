//! The reconciler on a platform runtime ([`ServerRuntime`], e.g. Kubernetes): the platform runs
//! whole servers (its own restarts, standbys and failover), so a step here only declares the
//! server, stops, restarts or deletes it, and records what the platform reports. The decision is
//! pure ([`decide`], table-tested) like the local reconciler's `reconciler::decide`; the steps
//! below it do the IO.

use std::sync::Arc;

use crate::api::{DbType, Status};
use crate::engines::secret_name;
use crate::error::ManagedError;
use crate::server_runtime::{spec_of, ServerRuntime, ServerState};
use crate::service::{lock, ManagedService};
use crate::store::{DbRecord, Desired, ErrorKind, Goal};

/// What the reconciler does next for one database on a platform runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// Create or update the server's objects (also wakes a stopped server).
    Apply,
    /// Apply (a new plan) and restart the server in place; clears `restart_requested`.
    Restart,
    /// Stop it (volumes kept), then record `stopped`.
    Stop,
    /// It is stopped (or has nothing to stop): record `stopped`.
    MarkStopped,
    /// Every server is ready: record `running`.
    MarkRunning,
    /// Not ready (starting again, a rolling update): record `provisioning`.
    MarkNotReady,
    /// The platform reports a failure: record `error` with this message.
    MarkFailed(String),
    /// Destroyed: delete everything (volumes included) and the credentials.
    Purge,
}

/// The message of a failure the platform reports.
pub fn failure_message(reason: &str) -> String {
    format!("the server failed: {reason} (the platform keeps restarting it; status follows)")
}

/// Decides the next step for `db` from what the platform reports (`observed`: `None` when it
/// has no objects) and whether the current spec is what this control plane last applied
/// (`applied`; false after a change of plan, replicas or storage, and once after every start).
pub fn decide(db: &DbRecord, observed: Option<&ServerState>, applied: bool) -> Step {
    match db.goal() {
        Goal::Done => Step::Idle,
        Goal::Purge => Step::Purge,
        Goal::Stop => match observed {
            None | Some(ServerState::Stopped) => {
                if db.status == Status::Stopped {
                    Step::Idle
                } else {
                    Step::MarkStopped
                }
            }
            Some(_) => Step::Stop,
        },
        Goal::Run => {
            let kind = db.current_error();
            if kind == Some(ErrorKind::Provision) {
                // Creating failed (an API error): left alone until a `start` action. A server
                // that is ready with the current spec applied recovered; one that is ready
                // but whose re-apply failed (a rejected change) stays `error` — marking it
                // `running` would re-apply, fail and flip the status on every pass.
                return if observed == Some(&ServerState::Ready) && applied {
                    Step::MarkRunning
                } else {
                    Step::Idle
                };
            }
            match observed {
                None | Some(ServerState::Stopped) => return Step::Apply,
                Some(_) if db.restart_requested => return Step::Restart,
                Some(_) if !applied => return Step::Apply,
                _ => {}
            }
            match observed {
                Some(ServerState::Failed(reason)) => {
                    let message = failure_message(reason);
                    if db.status == Status::Error && db.error_message.as_deref() == Some(&message) {
                        Step::Idle
                    } else {
                        Step::MarkFailed(message)
                    }
                }
                Some(ServerState::NotReady { .. }) => {
                    if db.status == Status::Running || db.status == Status::Error {
                        Step::MarkNotReady
                    } else {
                        Step::Idle
                    }
                }
                _ => {
                    if db.status == Status::Running {
                        Step::Idle
                    } else {
                        Step::MarkRunning
                    }
                }
            }
        }
    }
}

impl ManagedService {
    /// The platform runtime, when servers do not run as local processes.
    pub(crate) fn platform(&self) -> Option<Arc<dyn ServerRuntime>> {
        self.inner.platform.get().cloned()
    }

    /// Observes `db` on the platform and decides its step (`Idle` when the platform cannot be
    /// read: logged, tried again next pass).
    pub(crate) async fn platform_step(&self, rt: &dyn ServerRuntime, db: &DbRecord) -> Step {
        let observed = match rt.state(&db.id, db.db_type).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(db = %db.id, runtime = rt.name(), error = %format!("{e:#}"), "cannot read a managed server's state");
                return Step::Idle;
            }
        };
        let applied = match spec_of(db, String::new(), String::new()) {
            Ok(s) => lock(&self.inner.applied).get(&db.id) == Some(&s.fingerprint()),
            Err(_) => true,
        };
        decide(db, observed.as_ref(), applied)
    }

    /// Carries out `step` for `db` on the platform.
    pub(crate) async fn run_platform_step(
        &self,
        rt: Arc<dyn ServerRuntime>,
        db: DbRecord,
        step: Step,
    ) -> Result<(), ManagedError> {
        let id = db.id.clone();
        match step {
            Step::Idle => {}
            Step::Apply | Step::Restart => {
                if let Err(e) = self.apply_on_platform(rt.as_ref(), &db).await {
                    self.fail(
                        &id,
                        ErrorKind::Provision,
                        format!(
                            "cannot create or update the server on {}: {e:#}; fix the cause, then use the start action to apply it again",
                            rt.name()
                        ),
                    )
                    .await?;
                    return Ok(());
                }
                let restart = step == Step::Restart;
                if restart {
                    rt.restart(&id, db.db_type)
                        .await
                        .map_err(ManagedError::Internal)?;
                }
                self.progress(&id, move |d| {
                    if restart {
                        d.restart_requested = false;
                    }
                    if d.desired == Desired::Running && (restart || d.status != Status::Running) {
                        d.status = Status::Provisioning;
                        d.error_kind = None;
                        d.error_message = None;
                    }
                })
                .await?;
            }
            Step::Stop | Step::MarkStopped => {
                if step == Step::Stop {
                    rt.stop(&id, db.db_type)
                        .await
                        .map_err(ManagedError::Internal)?;
                }
                self.progress(&id, |d| {
                    if d.desired == Desired::Stopped {
                        d.status = Status::Stopped;
                        d.error_kind = None;
                        d.error_message = None;
                    }
                })
                .await?;
                tracing::info!(db = %id, "managed database stopped");
            }
            Step::MarkRunning => {
                self.progress(&id, |d| {
                    if d.desired == Desired::Running {
                        d.status = Status::Running;
                        d.nodes_ready = d.nodes_ready.max(1);
                        d.error_kind = None;
                        d.error_message = None;
                    }
                })
                .await?;
                tracing::info!(db = %id, "managed database running");
            }
            Step::MarkNotReady => {
                self.progress(&id, |d| {
                    if d.desired == Desired::Running {
                        d.status = Status::Provisioning;
                        d.error_kind = None;
                        d.error_message = None;
                    }
                })
                .await?;
            }
            Step::MarkFailed(message) => self.fail(&id, ErrorKind::Crash, message).await?,
            Step::Purge => {
                rt.delete(&id, db.db_type)
                    .await
                    .map_err(ManagedError::Internal)?;
                lock(&self.inner.applied).remove(&id);
                self.mark_purged(&id).await?;
                tracing::info!(db = %id, runtime = rt.name(), "managed database destroyed: its objects, volumes and credentials removed");
            }
        }
        Ok(())
    }

    async fn apply_on_platform(&self, rt: &dyn ServerRuntime, db: &DbRecord) -> anyhow::Result<()> {
        let password = self
            .inner
            .vault
            .get(&secret_name(&db.id, "app"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the credentials of {} are missing from the secret store",
                    db.id
                )
            })?;
        // MySQL's root password is Refract's admin credential, handed to the image through the
        // server's Secret (a generated one would be printed to the pod's log).
        let admin_password = if db.db_type == DbType::Mysql {
            self.inner
                .vault
                .get(&secret_name(&db.id, "admin"))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the administrator credentials of {} are missing from the secret store",
                        db.id
                    )
                })?
        } else {
            String::new()
        };
        let spec = spec_of(db, password, admin_password).map_err(|e| anyhow::anyhow!("{e}"))?;
        rt.apply(&spec).await?;
        lock(&self.inner.applied).insert(db.id.clone(), spec.fingerprint());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> DbRecord {
        crate::store::test_record("db_x", "x", DbType::Mysql)
    }

    #[test]
    fn a_new_server_is_applied_then_running_when_ready() {
        let mut d = db();
        assert_eq!(decide(&d, None, false), Step::Apply);
        let not_ready = ServerState::NotReady { ready: 0 };
        assert_eq!(decide(&d, Some(&not_ready), true), Step::Idle);
        assert_eq!(
            decide(&d, Some(&ServerState::Ready), true),
            Step::MarkRunning
        );
        d.status = Status::Running;
        assert_eq!(decide(&d, Some(&ServerState::Ready), true), Step::Idle);
        // A change of plan, replicas or storage (or a control-plane start): applied again.
        assert_eq!(decide(&d, Some(&ServerState::Ready), false), Step::Apply);
        d.restart_requested = true;
        assert_eq!(decide(&d, Some(&ServerState::Ready), false), Step::Restart);
    }

    #[test]
    fn failures_show_with_their_reason_and_clear_when_ready() {
        let mut d = db();
        d.status = Status::Running;
        let failed = ServerState::Failed("pod x: CrashLoopBackOff".into());
        let message = failure_message("pod x: CrashLoopBackOff");
        assert_eq!(
            decide(&d, Some(&failed), true),
            Step::MarkFailed(message.clone())
        );
        d.status = Status::Error;
        d.error_kind = Some(ErrorKind::Crash);
        d.error_message = Some(message);
        assert_eq!(decide(&d, Some(&failed), true), Step::Idle);
        let not_ready = ServerState::NotReady { ready: 0 };
        assert_eq!(decide(&d, Some(&not_ready), true), Step::MarkNotReady);
        assert_eq!(
            decide(&d, Some(&ServerState::Ready), true),
            Step::MarkRunning
        );
        // A failed creation waits for the user.
        d.error_kind = Some(ErrorKind::Provision);
        assert_eq!(decide(&d, None, false), Step::Idle);
        // A failed re-apply of a server that still runs the old spec stays `error` (no flip
        // back to `running` and another failing apply on every pass) …
        assert_eq!(decide(&d, Some(&ServerState::Ready), false), Step::Idle);
        // … until the spec is applied (a `start` action re-applies).
        assert_eq!(
            decide(&d, Some(&ServerState::Ready), true),
            Step::MarkRunning
        );
    }

    #[test]
    fn stop_start_and_destroy() {
        let mut d = db();
        d.status = Status::Running;
        d.desired = Desired::Stopped;
        assert_eq!(decide(&d, Some(&ServerState::Ready), true), Step::Stop);
        assert_eq!(
            decide(&d, Some(&ServerState::Stopped), true),
            Step::MarkStopped
        );
        d.status = Status::Stopped;
        assert_eq!(decide(&d, Some(&ServerState::Stopped), true), Step::Idle);
        assert_eq!(decide(&d, None, true), Step::Idle);
        d.desired = Desired::Running;
        assert_eq!(decide(&d, Some(&ServerState::Stopped), true), Step::Apply);
        d.desired = Desired::Destroyed;
        assert_eq!(decide(&d, Some(&ServerState::Stopped), true), Step::Purge);
        d.purged = true;
        assert_eq!(decide(&d, None, true), Step::Idle);
    }
}
