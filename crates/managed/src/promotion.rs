//! Automatic failover, carried out (the decision is `failover.rs`): the old primary is fenced,
//! the most advanced standby is promoted in place, then restarted as node 0 — on the primary's
//! port, so the `connection_string` does not change — and the other standbys are rebuilt from it
//! by the reconciler (replicas > nodes). docs/managed.md, "Automatic failover", says why.

use std::time::{Duration, Instant};

use refract_runtime::InstanceStatus;

use crate::engines::{self, instance_id};
use crate::error::ManagedError;
use crate::failover::{judge, pick_standby, Seen, Verdict};
use crate::os;
use crate::service::{lock, ManagedService};
use crate::store::{DbRecord, ErrorKind};

/// How long a standby gets to stop cleanly after its promotion (it flushes its data).
const PROMOTED_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long the lost primary's instance gets to stop (it is dead already; this is a fence).
const FENCE_GRACE: Duration = Duration::from_secs(5);
/// How long one standby may take to say how far it replicated.
const POSITION_TIMEOUT: Duration = Duration::from_secs(10);

fn internal(e: impl Into<anyhow::Error>) -> ManagedError {
    ManagedError::Internal(e.into())
}

impl ManagedService {
    /// Observes `db`'s primary for this pass and asks the pure [`judge`] whether it fails over.
    pub(crate) fn failover_verdict(&self, db: &DbRecord, alive: &[bool]) -> Verdict {
        let primary_alive = alive.first().copied().unwrap_or(false);
        let (dead_for, reported) = lock(&self.inner.failover).observe(&db.id, primary_alive);
        if primary_alive || db.nodes_ready < 2 {
            return Verdict::Normal;
        }
        let window = self.inner.config.crash_window;
        let restarts = lock(&self.inner.crashes)
            .get(&db.id)
            .map_or(0, |l| l.iter().filter(|t| t.elapsed() < window).count());
        let n0 = self.database_dir(&db.id).join("n0");
        let seen = Seen {
            dead_for,
            data_lost: !engines::data_present(db.db_type, &n0),
            restarts,
            reported,
        };
        judge(db, alive, &seen)
    }

    /// No standby to promote: an error status and an event, once per loss; nothing promoted.
    pub(crate) async fn failover_impossible(
        &self,
        db: DbRecord,
        reason: String,
    ) -> Result<(), ManagedError> {
        if lock(&self.inner.failover).reported(&db.id) {
            // Said already for this loss (a standby that is starting cannot answer yet): look
            // again shortly, without another event.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        let message = format!("{reason}; no healthy standby to promote, so nothing was promoted (the primary is restarted if it can be)");
        self.record_event(&db.id, "failover_impossible", &message);
        self.fail(&db.id, ErrorKind::Runtime, message).await
    }

    /// Promotes the most advanced standby of `db`, whose primary is lost for `reason`.
    pub(crate) async fn failover(&self, db: DbRecord, reason: String) -> Result<(), ManagedError> {
        let id = db.id.clone();
        let started = Instant::now();
        let ctx = self.ctx(&db)?;
        let driver = &self.inner.driver;

        // Fence the old primary first: whatever is left of its process goes, and nothing starts
        // it again (its instance is removed and its data moved aside below).
        let n0 = instance_id(&id, 0);
        driver.stop(&n0, FENCE_GRACE).await.map_err(internal)?;

        let mut positions = Vec::new();
        for n in 1..db.nodes_ready {
            let alive = driver
                .status(&instance_id(&id, n))
                .await
                .is_ok_and(|s| matches!(s, InstanceStatus::Running { .. }));
            let pos = if alive {
                match tokio::time::timeout(POSITION_TIMEOUT, engines::position(&ctx, n)).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(e)) => {
                        tracing::warn!(db = %id, node = n, error = %format!("{e:#}"), "standby cannot say how far it replicated");
                        None
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            positions.push((n, pos));
        }
        let Some(k) = pick_standby(&positions) else {
            return self.failover_impossible(db, reason).await;
        };
        let position = positions
            .iter()
            .find(|(n, _)| *n == k)
            .and_then(|(_, p)| *p)
            .unwrap_or(0);
        if let Err(e) = engines::promote(&ctx, k).await {
            let message = format!("{reason}; promoting standby n{k} failed: {e:#}");
            self.record_event(&id, "failover_failed", &message);
            return self.fail(&id, ErrorKind::Runtime, message).await;
        }
        // Node k is a primary now. Stop every standby (k cleanly: it flushes what it has), and
        // put k's data where node 0's was; the others are rebuilt from it.
        for n in (1..db.nodes_ready.max(db.ports.len())).rev() {
            let inst = instance_id(&id, n);
            let grace = if n == k {
                PROMOTED_STOP_GRACE
            } else {
                FENCE_GRACE
            };
            driver.stop(&inst, grace).await.map_err(internal)?;
            driver.remove(&inst).await.map_err(internal)?;
        }
        driver.remove(&n0).await.map_err(internal)?;
        let dir = self.database_dir(&id);
        let from = ctx.node_dir(k);
        let old = ctx.node_dir(0);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if old.exists() {
                // Kept for inspection, never started: nothing names this directory.
                let fenced = dir.join(format!("fenced-n0-{}", chrono::Utc::now().timestamp()));
                std::fs::rename(&old, &fenced)?;
            }
            std::fs::rename(&from, &old)?;
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let standby = name
                    .strip_prefix('n')
                    .is_some_and(|r| r != "0" && r.parse::<usize>().is_ok());
                if standby {
                    os::remove_dir(&entry.path())?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| internal(anyhow::anyhow!("failover task: {e}")))?
        .map_err(|e| internal(e.context("move the promoted standby's data to n0")))?;
        let saved = self
            .progress(&id, |d| {
                d.ports.truncate(1);
                d.nodes_ready = 1;
            })
            .await?;
        let Some(fresh) = saved else {
            return Ok(());
        };
        let ctx = self.ctx(&fresh)?;
        let port = ctx.port(0);
        if let Err(e) = self.start_node_retrying(&ctx, 0).await {
            let message = format!(
                "{reason}; standby n{k} was promoted but does not start as the primary: {e:#}"
            );
            self.record_event(&id, "failover_failed", &message);
            return self.fail(&id, ErrorKind::Runtime, message).await;
        }
        let took = started.elapsed();
        {
            lock(&self.inner.failover).forget(&id);
            lock(&self.inner.crashes).remove(&id);
            lock(&self.inner.health).remove(&id);
            lock(&self.inner.checked).remove(&id);
        }
        let message = format!(
            "failover: node 0 → node {k}, reason: {reason}; n{k} (replication position {position}) was promoted and serves as n0 on port {port} in {:.1} s, the old primary is fenced, new standbys are being built",
            took.as_secs_f64()
        );
        self.record_event(&id, "failover", &message);
        match self.wait_login(&ctx).await {
            Ok(version) => {
                self.progress(&id, move |d| {
                    d.status = crate::api::Status::Running;
                    d.error_kind = None;
                    d.error_message = None;
                    d.server_version = Some(version);
                })
                .await?;
                Ok(())
            }
            Err(e) => {
                self.fail(
                    &id,
                    ErrorKind::Runtime,
                    format!("after the failover the server runs but {e:#}"),
                )
                .await
            }
        }
    }
}
