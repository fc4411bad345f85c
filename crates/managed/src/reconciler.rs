//! The reconciler: drives every managed database from what runs (the runtime driver's truth)
//! toward what is wanted (the store's intent), every `reconcile_interval` and whenever the API
//! wakes it — and after every control-plane restart, so no operation is lost.
//!
//! One pass lists the databases, observes their servers, and asks the pure [`decide`] for one
//! [`Step`] per database. Each step runs as its own task; a database has at most one task in
//! flight (`busy`), and a task records its outcome with an atomic read-modify-write of the row,
//! touching only progress columns (status, nodes, ports), never intent.

use std::time::{Duration, Instant};

use refract_runtime::{free_port_except, InstanceStatus};
use tokio_util::sync::CancellationToken;

use crate::api::Status;
use crate::cluster;
use crate::engines::launch::exit_text;
use crate::engines::{self, instance_id, Ctx};
use crate::error::ManagedError;
use crate::failover::Verdict;
use crate::os;
use crate::service::{lock, ManagedService};
use crate::store::{DbRecord, Desired, ErrorKind, Goal};

/// How long a server gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What the reconciler does next for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// Create node `n` (0 = the primary): data directory, first start, users.
    InitNode(usize),
    /// Start these initialized nodes, which are not running (crash, `start` action, host reboot).
    StartNodes(Vec<usize>),
    /// Stop and start every node (the `restart` action, a new plan).
    Restart,
    /// Stop every node.
    Stop,
    /// Remove standby `n` (replicas lowered).
    RemoveNode(usize),
    /// Everything runs but the status is not `running` yet: log in and say so.
    Verify,
    /// Periodic: storage quota and replication health.
    Check,
    /// Destroyed: stop, remove the servers, their data and their credentials.
    Purge,
    /// The primary is lost: promote the most advanced standby (`failover.rs`), for this reason.
    Failover(String),
    /// The primary is lost and no standby runs: report it, promote nothing.
    NoStandby(String),
}

/// Decides the next step for `db` given which of its nodes are alive (`alive[n]`, at least
/// `nodes_ready` long) and whether its periodic check is due. Pure, so that every rule is tested.
pub fn decide(db: &DbRecord, alive: &[bool], check_due: bool) -> Step {
    let kind = db.current_error();
    match db.goal() {
        Goal::Done => Step::Idle,
        Goal::Purge => Step::Purge,
        Goal::Stop => {
            if alive.iter().any(|a| *a) || db.status != Status::Stopped {
                Step::Stop
            } else {
                Step::Idle
            }
        }
        Goal::Run => {
            if db.nodes_ready == 0 {
                return if kind == Some(ErrorKind::Provision) {
                    Step::Idle
                } else {
                    Step::InitNode(0)
                };
            }
            if db.restart_requested {
                return Step::Restart;
            }
            let dead: Vec<usize> = (0..db.nodes_ready)
                .filter(|n| !alive.get(*n).copied().unwrap_or(false))
                .collect();
            if !dead.is_empty() {
                return if kind == Some(ErrorKind::CrashLoop) {
                    Step::Idle
                } else {
                    Step::StartNodes(dead)
                };
            }
            let want = db.replicas.max(1) as usize;
            if db.nodes_ready < want && kind != Some(ErrorKind::Provision) {
                return Step::InitNode(db.nodes_ready);
            }
            if db.nodes_ready > want {
                return Step::RemoveNode(db.nodes_ready - 1);
            }
            let waits_for_user = matches!(
                kind,
                Some(ErrorKind::Quota | ErrorKind::Provision | ErrorKind::CrashLoop)
            );
            if db.status != Status::Running && !waits_for_user {
                return Step::Verify;
            }
            if check_due {
                return Step::Check;
            }
            Step::Idle
        }
    }
}

/// Removes a database from the busy set (and wakes the reconciler) when its task ends.
struct BusyGuard {
    service: ManagedService,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.service.inner.busy).remove(&self.id);
        self.service.wake();
    }
}

impl ManagedService {
    /// Runs the reconciler until `cancel` fires. Servers keep running when it stops (as engines
    /// do when the control plane is down); the next start adopts them.
    pub fn spawn_reconciler(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.spawn_backups(cancel.clone());
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                service.reconcile_once().await;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = service.inner.wake.notified() => {}
                    _ = tokio::time::sleep(service.inner.config.reconcile_interval) => {}
                }
            }
            tracing::info!("managed reconciler stopped");
        })
    }

    /// One pass: decide a step for every database not busy, and start it.
    pub async fn reconcile_once(&self) {
        let dbs = match self.db(|s| Ok(s.list_active()?)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "managed reconciler cannot read its store");
                return;
            }
        };
        // `refract_managed_servers{status}` on the control plane's /metrics, every status (0
        // included) at every pass.
        for st in crate::api::Status::ALL {
            let n = dbs.iter().filter(|d| d.status == st).count();
            metrics::gauge!("refract_managed_servers", "status" => st.as_str()).set(n as f64);
        }
        let platform = self.platform();
        for db in dbs {
            if lock(&self.inner.busy).contains(&db.id) {
                continue;
            }
            if let Some(rt) = &platform {
                // The platform runs the whole server (`cluster.rs`); none of the local steps
                // below (nodes, failover, pools) apply.
                let step = self.platform_step(rt.as_ref(), &db).await;
                if step == cluster::Step::Idle || !lock(&self.inner.busy).insert(db.id.clone()) {
                    continue;
                }
                tracing::debug!(db = %db.id, ?step, "managed reconcile step on the platform");
                let guard = BusyGuard {
                    service: self.clone(),
                    id: db.id.clone(),
                };
                let (service, rt) = (self.clone(), rt.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let id = db.id.clone();
                    if let Err(e) = service.run_platform_step(rt, db, step.clone()).await {
                        tracing::warn!(db = %id, ?step, error = %format!("{e:#}"), "managed reconcile step failed");
                    }
                });
                continue;
            }
            let nodes = db.nodes_ready.max(db.ports.len());
            let mut alive = Vec::with_capacity(nodes);
            let mut observed = Vec::with_capacity(nodes);
            for n in 0..nodes {
                let status = self
                    .inner
                    .driver
                    .status(&instance_id(&db.id, n))
                    .await
                    .unwrap_or(InstanceStatus::NotFound);
                alive.push(status.is_alive());
                observed.push(status);
            }
            if alive.first() == Some(&true) {
                self.supervise_pool(&db).await;
            }
            let check_due = lock(&self.inner.checked)
                .get(&db.id)
                .is_none_or(|t| t.elapsed() >= self.inner.config.check_interval);
            let step = match self.failover_verdict(&db, &alive) {
                Verdict::Normal => decide(&db, &alive, check_due),
                Verdict::Wait => Step::Idle,
                Verdict::Failover(reason) => Step::Failover(reason),
                Verdict::NoStandby(reason) => Step::NoStandby(reason),
            };
            if step == Step::Idle {
                continue;
            }
            if !lock(&self.inner.busy).insert(db.id.clone()) {
                continue;
            }
            tracing::debug!(db = %db.id, ?step, "managed reconcile step");
            let guard = BusyGuard {
                service: self.clone(),
                id: db.id.clone(),
            };
            let service = self.clone();
            tokio::spawn(async move {
                let _guard = guard;
                service.run_step(db, step, observed).await;
            });
        }
    }

    async fn run_step(&self, db: DbRecord, step: Step, observed: Vec<InstanceStatus>) {
        let id = db.id.clone();
        let result = match step.clone() {
            Step::Idle => Ok(()),
            Step::InitNode(n) => self.init_node(db, n).await,
            Step::StartNodes(nodes) => self.start_nodes(db, nodes, observed).await,
            Step::Restart => self.restart(db).await,
            Step::Stop => self.stop_all(db).await,
            Step::RemoveNode(n) => self.remove_node(db, n).await,
            Step::Verify => self.verify(db).await,
            Step::Check => self.check(db).await,
            Step::Purge => self.purge(db).await,
            Step::Failover(reason) => self.failover(db, reason).await,
            Step::NoStandby(reason) => self.failover_impossible(db, reason).await,
        };
        if let Err(e) = result {
            tracing::warn!(db = %id, ?step, error = %format!("{e:#}"), "managed reconcile step failed");
        }
    }

    /// Records progress unless the database was destroyed meanwhile (then intent wins).
    pub(crate) async fn progress(
        &self,
        id: &str,
        f: impl FnOnce(&mut DbRecord) + Send + 'static,
    ) -> Result<Option<DbRecord>, ManagedError> {
        let key = id.to_string();
        let out = self
            .db(move |s| {
                s.update(&key, |d| {
                    if d.status != Status::Destroyed {
                        f(d);
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(out.map(|(_, d)| d))
    }

    pub(crate) async fn fail(
        &self,
        id: &str,
        kind: ErrorKind,
        message: String,
    ) -> Result<(), ManagedError> {
        tracing::warn!(db = %id, kind = ?kind, %message, "managed database error");
        self.progress(id, move |d| {
            d.status = Status::Error;
            d.error_kind = Some(kind);
            d.error_message = Some(message);
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn log_tail(&self, instance: &str) -> String {
        engines::launch::log_tail(self.inner.driver.as_ref(), instance).await
    }

    async fn start_node(&self, ctx: &Ctx, node: usize) -> anyhow::Result<()> {
        self.ensure_servers_reachable()?;
        let timeout = self.inner.config.start_timeout;
        engines::launch::start(self.inner.driver.as_ref(), ctx, node, timeout).await
    }

    /// Starts a node, retrying a few times when it exits at once ([`engines::launch::start_retrying`]).
    pub(crate) async fn start_node_retrying(&self, ctx: &Ctx, node: usize) -> anyhow::Result<()> {
        self.ensure_servers_reachable()?;
        let timeout = self.inner.config.start_timeout;
        engines::launch::start_retrying(self.inner.driver.as_ref(), ctx, node, timeout).await
    }

    /// Logs in with the generated credentials until it works or `start_timeout` passes.
    pub(crate) async fn wait_login(&self, ctx: &Ctx) -> anyhow::Result<String> {
        engines::launch::wait_login(ctx, self.inner.config.start_timeout).await
    }

    async fn init_node(&self, db: DbRecord, node: usize) -> Result<(), ManagedError> {
        let id = db.id.clone();
        let mut ctx = self.ctx(&db)?;
        let inst = instance_id(&id, node);
        let result: anyhow::Result<()> = async {
            self.ensure_servers_reachable()?;
            // Forget any earlier, interrupted attempt.
            self.inner
                .driver
                .stop(&inst, Duration::from_secs(10))
                .await?;
            self.inner.driver.remove(&inst).await?;
            os::remove_dir(&ctx.node_dir(node))?;
            // Not a port another node of any database keeps (stopped now, it starts on it again).
            let recorded = self.db(|s| Ok(s.list_active()?)).await?;
            let taken = recorded
                .iter()
                .flat_map(|d| d.ports.iter().copied())
                .collect();
            let port = free_port_except(&taken)?;
            let saved = self
                .progress(&id, move |d| {
                    d.ports.truncate(node);
                    d.ports.push(port);
                })
                .await?;
            if let Some(d) = saved {
                ctx.db.ports = d.ports;
            }
            self.prepare_node(&ctx, node).await?;
            self.start_node(&ctx, node).await?;
            self.bootstrap_node(&ctx, node).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = self.inner.driver.stop(&inst, Duration::from_secs(10)).await;
            let what = if node == 0 {
                "provisioning failed".to_string()
            } else {
                format!("adding standby n{node} failed")
            };
            self.fail(&id, ErrorKind::Provision, format!("{what}: {e:#}"))
                .await?;
            return Ok(());
        }
        if node == 0 {
            match self.wait_login(&ctx).await {
                Ok(version) => {
                    self.progress(&id, move |d| {
                        d.nodes_ready = 1;
                        d.server_version = Some(version);
                        d.status = Status::Running;
                        d.error_kind = None;
                        d.error_message = None;
                    })
                    .await?;
                    tracing::info!(db = %id, "managed database running");
                }
                Err(e) => {
                    let _ = self.inner.driver.stop(&inst, Duration::from_secs(10)).await;
                    self.fail(
                        &id,
                        ErrorKind::Provision,
                        format!("provisioning failed: {e:#}"),
                    )
                    .await?;
                }
            }
        } else {
            self.progress(&id, move |d| d.nodes_ready = d.nodes_ready.max(node + 1))
                .await?;
            lock(&self.inner.checked).remove(&id);
            tracing::info!(db = %id, node, "managed standby added");
        }
        Ok(())
    }

    async fn start_nodes(
        &self,
        db: DbRecord,
        nodes: Vec<usize>,
        observed: Vec<InstanceStatus>,
    ) -> Result<(), ManagedError> {
        let id = db.id.clone();
        let crashed = matches!(db.status, Status::Running)
            || matches!(
                db.current_error(),
                Some(ErrorKind::Crash | ErrorKind::Runtime | ErrorKind::Quota)
            );
        if crashed {
            let how: Vec<String> = nodes
                .iter()
                .map(|n| match observed.get(*n) {
                    Some(InstanceStatus::Exited { code, signal, .. }) => {
                        format!("n{n} exited ({})", exit_text(*code, *signal))
                    }
                    _ => format!("n{n} is not running"),
                })
                .collect();
            let window = self.inner.config.crash_window;
            let count = {
                let mut crashes = lock(&self.inner.crashes);
                let list = crashes.entry(id.clone()).or_default();
                list.retain(|t| t.elapsed() < window);
                list.push(Instant::now());
                list.len()
            };
            if count > self.inner.config.crash_limit {
                let tail = self.log_tail(&instance_id(&id, nodes[0])).await;
                self.fail(
                    &id,
                    ErrorKind::CrashLoop,
                    format!(
                        "{}; restarted {} times within {} minutes, so it is left stopped (use the start action to try again): {tail}",
                        how.join(", "),
                        count - 1,
                        window.as_secs() / 60
                    ),
                )
                .await?;
                return Ok(());
            }
            self.fail(
                &id,
                ErrorKind::Crash,
                format!("{}; restarting", how.join(", ")),
            )
            .await?;
        }
        let ctx = self.ctx(&db)?;
        // Every node is tried: a standby still starts when a lost primary cannot (it may then
        // be promoted, `failover.rs`).
        let mut errors = Vec::new();
        if !nodes.contains(&0) {
            // A standby is down: the running primary must not wait for it to commit (the check
            // turns synchronous commit on again once a standby streams).
            if let Err(e) = engines::set_sync(&ctx, false).await {
                tracing::debug!(db = %id, error = %format!("{e:#}"), "cannot turn synchronous commit off");
            }
        }
        for n in &nodes {
            if let Err(e) = self.start_node_retrying(&ctx, *n).await {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            self.fail(
                &id,
                ErrorKind::Runtime,
                format!("cannot start: {}", errors.join("; ")),
            )
            .await?;
            return Ok(());
        }
        self.verify(db).await
    }

    async fn verify(&self, db: DbRecord) -> Result<(), ManagedError> {
        let id = db.id.clone();
        let ctx = self.ctx(&db)?;
        match self.wait_login(&ctx).await {
            Ok(version) => {
                self.progress(&id, move |d| {
                    if d.desired == Desired::Running {
                        d.status = Status::Running;
                        d.error_kind = None;
                        d.error_message = None;
                    }
                    d.server_version = Some(version);
                })
                .await?;
                lock(&self.inner.checked).remove(&id);
            }
            Err(e) => {
                self.fail(
                    &id,
                    ErrorKind::Runtime,
                    format!("the server runs but {e:#}"),
                )
                .await?
            }
        }
        Ok(())
    }

    async fn stop_nodes(&self, db: &DbRecord) -> Result<(), ManagedError> {
        let nodes = db.nodes_ready.max(db.ports.len()).max(1);
        // Standbys first, so that they do not spin reconnecting to a stopped primary.
        for n in (0..nodes).rev() {
            self.inner
                .driver
                .stop(&instance_id(&db.id, n), STOP_GRACE)
                .await
                .map_err(|e| {
                    ManagedError::Internal(
                        anyhow::Error::new(e).context(format!("stop server n{n}")),
                    )
                })?;
        }
        Ok(())
    }

    async fn stop_all(&self, db: DbRecord) -> Result<(), ManagedError> {
        self.stop_nodes(&db).await?;
        self.progress(&db.id, |d| {
            if d.desired == Desired::Stopped {
                d.status = Status::Stopped;
                d.error_kind = None;
                d.error_message = None;
            }
        })
        .await?;
        tracing::info!(db = %db.id, "managed database stopped");
        Ok(())
    }

    async fn restart(&self, db: DbRecord) -> Result<(), ManagedError> {
        let id = db.id.clone();
        self.progress(&id, |d| {
            d.restart_requested = false;
            d.status = Status::Provisioning;
            d.error_kind = None;
            d.error_message = None;
        })
        .await?;
        self.stop_nodes(&db).await?;
        // The plan may have changed: the context is built from the row as it is now.
        let key = id.clone();
        let fresh = self
            .db(move |s| Ok(s.get_database(&key)?))
            .await?
            .unwrap_or(db);
        let ctx = self.ctx(&fresh)?;
        for n in 0..fresh.nodes_ready {
            if let Err(e) = self.start_node_retrying(&ctx, n).await {
                self.fail(&id, ErrorKind::Runtime, format!("cannot restart: {e:#}"))
                    .await?;
                return Ok(());
            }
        }
        self.verify(fresh).await
    }

    async fn remove_node(&self, db: DbRecord, node: usize) -> Result<(), ManagedError> {
        let inst = instance_id(&db.id, node);
        self.inner
            .driver
            .stop(&inst, STOP_GRACE)
            .await
            .map_err(|e| ManagedError::Internal(anyhow::Error::new(e).context("stop standby")))?;
        self.inner
            .driver
            .remove(&inst)
            .await
            .map_err(|e| ManagedError::Internal(e.into()))?;
        os::remove_dir(&self.database_dir(&db.id).join(format!("n{node}")))?;
        self.progress(&db.id, move |d| {
            d.nodes_ready = d.nodes_ready.min(node);
            d.ports.truncate(node);
        })
        .await?;
        if let Some(h) = lock(&self.inner.health).get_mut(&db.id) {
            h.retain(|r| r.node < node);
        }
        if node == 1 {
            // No standby left to wait for.
            if let Err(e) = engines::set_sync(&self.ctx(&db)?, false).await {
                tracing::warn!(db = %db.id, error = %format!("{e:#}"), "cannot turn synchronous commit off");
            }
        }
        tracing::info!(db = %db.id, node, "managed standby removed");
        Ok(())
    }

    async fn check(&self, db: DbRecord) -> Result<(), ManagedError> {
        let id = db.id.clone();
        lock(&self.inner.checked).insert(id.clone(), Instant::now());
        let limit = db.storage_gb as u64 * self.inner.config.storage_unit_bytes;
        let dir = self.database_dir(&id);
        let nodes = db.nodes_ready;
        let usage = tokio::task::spawn_blocking(move || {
            (0..nodes)
                .map(|n| os::disk_usage(&dir.join(format!("n{n}"))))
                .collect::<Vec<u64>>()
        })
        .await
        .map_err(|e| ManagedError::Internal(anyhow::anyhow!("disk usage task: {e}")))?;
        let over = usage.iter().enumerate().find(|(_, u)| **u > limit);
        match over {
            Some((n, used)) => {
                let gib = *used as f64 / self.inner.config.storage_unit_bytes as f64;
                if db.current_error() != Some(ErrorKind::Quota) {
                    self.fail(
                        &id,
                        ErrorKind::Quota,
                        format!(
                            "storage full: server n{n} uses {gib:.2} GB of its {} GB (storage_gb); free space or grow storage_gb with PATCH",
                            db.storage_gb
                        ),
                    )
                    .await?;
                }
            }
            None if db.current_error() == Some(ErrorKind::Quota) => {
                self.progress(&id, |d| {
                    if d.error_kind == Some(ErrorKind::Quota) {
                        d.status = Status::Running;
                        d.error_kind = None;
                        d.error_message = None;
                    }
                })
                .await?;
            }
            None => {}
        }
        if db.nodes_ready > 1 {
            let ctx = self.ctx(&db)?;
            let mut health = Vec::new();
            for n in 1..db.nodes_ready {
                health.push(engines::replica_health(&ctx, n).await);
            }
            // Synchronous commit while a standby streams (docs/managed.md, "Automatic failover").
            let streaming = health.iter().any(|h| h.status == "streaming");
            if let Err(e) = engines::set_sync(&ctx, streaming).await {
                tracing::warn!(db = %id, error = %format!("{e:#}"), "cannot set synchronous commit");
            }
            lock(&self.inner.health).insert(id, health);
        } else {
            lock(&self.inner.health).remove(&id);
        }
        Ok(())
    }

    async fn purge(&self, db: DbRecord) -> Result<(), ManagedError> {
        let id = db.id.clone();
        self.stop_nodes(&db).await?;
        let nodes = db
            .nodes_ready
            .max(db.ports.len())
            .max(db.replicas.max(1) as usize);
        for n in 0..nodes {
            self.inner
                .driver
                .remove(&instance_id(&id, n))
                .await
                .map_err(|e| {
                    ManagedError::Internal(
                        anyhow::Error::new(e).context(format!("remove server n{n}")),
                    )
                })?;
        }
        self.remove_pool_instance(&id).await?;
        os::remove_dir(&self.database_dir(&id))?;
        self.mark_purged(&id).await?;
        lock(&self.inner.health).remove(&id);
        lock(&self.inner.checked).remove(&id);
        lock(&self.inner.crashes).remove(&id);
        tracing::info!(db = %id, "managed database destroyed: servers, data and credentials removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DbType;

    fn db() -> DbRecord {
        DbRecord {
            customer_id: "c".into(),
            ..crate::store::test_record("db_x", "x", DbType::Postgresql)
        }
    }

    #[test]
    fn a_new_database_is_provisioned_then_verified() {
        let mut d = db();
        assert_eq!(decide(&d, &[], false), Step::InitNode(0));
        d.nodes_ready = 1;
        d.ports = vec![5000];
        assert_eq!(decide(&d, &[true], false), Step::Verify);
        d.status = Status::Running;
        assert_eq!(decide(&d, &[true], false), Step::Idle);
        assert_eq!(decide(&d, &[true], true), Step::Check);
    }

    #[test]
    fn a_dead_server_is_restarted_unless_it_crash_loops() {
        let mut d = db();
        d.nodes_ready = 2;
        d.replicas = 2;
        d.status = Status::Running;
        assert_eq!(decide(&d, &[false, true], false), Step::StartNodes(vec![0]));
        d.status = Status::Error;
        d.error_kind = Some(ErrorKind::CrashLoop);
        assert_eq!(decide(&d, &[false, true], false), Step::Idle);
    }

    #[test]
    fn failed_provisioning_waits_for_the_user() {
        let mut d = db();
        d.status = Status::Error;
        d.error_kind = Some(ErrorKind::Provision);
        assert_eq!(decide(&d, &[], false), Step::Idle);
        // A standby that failed does not stop crash restarts of the primary.
        d.nodes_ready = 1;
        d.replicas = 2;
        assert_eq!(decide(&d, &[false], false), Step::StartNodes(vec![0]));
        assert_eq!(decide(&d, &[true], false), Step::Idle);
    }

    #[test]
    fn replicas_follow_intent() {
        let mut d = db();
        d.status = Status::Running;
        d.nodes_ready = 1;
        d.replicas = 3;
        assert_eq!(decide(&d, &[true], false), Step::InitNode(1));
        d.nodes_ready = 3;
        d.replicas = 2;
        assert_eq!(decide(&d, &[true, true, true], false), Step::RemoveNode(2));
    }

    #[test]
    fn stop_restart_and_destroy() {
        let mut d = db();
        d.nodes_ready = 1;
        d.status = Status::Running;
        d.restart_requested = true;
        assert_eq!(decide(&d, &[true], false), Step::Restart);
        d.desired = Desired::Stopped;
        assert_eq!(decide(&d, &[true], false), Step::Stop);
        d.status = Status::Stopped;
        assert_eq!(decide(&d, &[false], false), Step::Idle);
        d.desired = Desired::Destroyed;
        assert_eq!(decide(&d, &[false], false), Step::Purge);
        d.purged = true;
        assert_eq!(decide(&d, &[false], false), Step::Idle);
    }

    #[test]
    fn quota_errors_are_only_rechecked() {
        let mut d = db();
        d.nodes_ready = 1;
        d.status = Status::Error;
        d.error_kind = Some(ErrorKind::Quota);
        assert_eq!(decide(&d, &[true], false), Step::Idle);
        assert_eq!(decide(&d, &[true], true), Step::Check);
    }
}
