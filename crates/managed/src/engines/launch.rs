//! Starting a server through a runtime driver and waiting until it serves: the steps the
//! reconciler and a standalone server ([`crate::StandaloneServer`]) share.

use std::time::{Duration, Instant};

use refract_runtime::{Driver, InstanceStatus, RuntimeError};

use super::Ctx;
use crate::os;

/// Lines of a server's output quoted in an error.
pub(crate) const LOG_LINES: usize = 6;

/// The last [`LOG_LINES`] lines of `instance`'s output, without the runtime's own markers.
pub(crate) async fn log_tail(driver: &dyn Driver, instance: &str) -> String {
    let logs = driver.logs(instance, LOG_LINES * 4).await;
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| !l.starts_with("=== refract runtime"))
        .collect();
    os::tail(&lines.join("\n"), LOG_LINES)
}

/// How a process ended, for a person.
pub(crate) fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(9)) => "killed by signal 9 (SIGKILL or out of memory)".into(),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "gone".into(),
    }
}

/// Starts node `node` (a stale exited instance again in place; a running one is left alone)
/// and waits until it listens, at most `timeout`.
pub(crate) async fn start(
    driver: &dyn Driver,
    ctx: &Ctx,
    node: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let spec = super::spec(ctx, node)?;
    let inst = spec.id.clone();
    match driver.start(&spec).await {
        Ok(_) | Err(RuntimeError::AlreadyRunning(_)) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("start server n{node}"))),
    }
    let deadline = Instant::now() + timeout;
    loop {
        match driver.status(&inst).await? {
            InstanceStatus::Running { .. } => return Ok(()),
            InstanceStatus::Starting if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            InstanceStatus::Starting => {
                anyhow::bail!(
                    "server n{node} did not listen on port {} within {} s: {}",
                    ctx.port(node),
                    timeout.as_secs(),
                    log_tail(driver, &inst).await
                )
            }
            InstanceStatus::Exited { code, signal, .. } => {
                anyhow::bail!(
                    "server n{node} exited at start ({}): {}",
                    exit_text(code, signal),
                    log_tail(driver, &inst).await
                )
            }
            InstanceStatus::NotFound => anyhow::bail!("server n{node} vanished while starting"),
        }
    }
}

/// [`start`], retried a few times when the server exits at once (a PostgreSQL whose killed
/// predecessor's children still hold its shared memory for a moment).
pub(crate) async fn start_retrying(
    driver: &dyn Driver,
    ctx: &Ctx,
    node: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match start(driver, ctx, node, timeout).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 4 && e.to_string().contains("exited at start") => {
                attempt += 1;
                tracing::debug!(db = %ctx.db.id, node, error = %format!("{e:#}"), "server exited at start; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Logs in with the generated credentials until it works or `timeout` passes; the server's
/// version.
pub(crate) async fn wait_login(ctx: &Ctx, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match super::check_login(ctx).await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("the generated login does not work"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
