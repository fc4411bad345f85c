//! The [`Driver`] trait every runtime (local processes, Kubernetes) implements.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::pin::Pin;
use std::time::Duration;

use crate::{InstanceHandle, InstanceSpec, InstanceStatus, RuntimeError, SpecFile};

/// Where a driver's engines listen, which decides how the caller configures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Instances share this host's loopback: each group (database) gets a port of its own
    /// ([`pick_port`]), on which its engines listen side by side (`SO_REUSEPORT`), and a private
    /// control address on port 0 named by the ready line. Clients use `http://127.0.0.1:PORT`.
    Loopback,
    /// Each instance has an address of its own (a pod): engines listen for clients on
    /// `0.0.0.0:port` (only once their snapshot is loaded) and for the control plane on
    /// `0.0.0.0:control_port` (at once). Clients reach a group at [`Driver::group_endpoint`].
    Cluster {
        /// The client port of every engine.
        port: u16,
        /// The control port of every engine (`/health`, `/stats`, `/admin/*`).
        control_port: u16,
    },
}

/// A boxed, sendable future: the return type of [`Driver`] methods, so that the trait can be used
/// as `Arc<dyn Driver>` without the `async-trait` crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs instances somewhere (local processes, Kubernetes pods) and reports on them.
///
/// Every method is idempotent and keyed by the instance id, so a reconciler can call them again
/// after its own restart: the driver's truth lives in the runtime (processes, pods, the state
/// files of the local driver), not in the driver object.
pub trait Driver: Send + Sync {
    /// Where this driver runs instances (`"local"` for the local process driver).
    fn region(&self) -> &str;

    /// Writes the spec's files and launches the instance; returns without waiting for readiness
    /// (watch [`Driver::status`] go from `Starting` to `Running`). Fails with
    /// [`RuntimeError::AlreadyRunning`] if an instance with this id is starting or running; an
    /// exited one is started again in the same place (its log is kept).
    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<InstanceHandle, RuntimeError>>;

    /// Asks the instance to stop (SIGTERM for processes), waits up to `grace`, then forces it
    /// (SIGKILL). Returns the final status; stopping an exited or unknown instance is not an error.
    /// Keeps the instance's files and logs (see [`Driver::remove`]).
    fn stop<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>>;

    /// The current status, observed now (and adopted from disk after a control-plane restart).
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>>;

    /// The endpoint when the instance is running.
    fn endpoint<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.status(id).await {
                Ok(InstanceStatus::Running { endpoint }) => Some(endpoint),
                _ => None,
            }
        })
    }

    /// The last `tail_lines` lines of the instance's output (stdout and stderr); empty when there
    /// are none or the instance is unknown. For a failure message (`lastError`).
    fn logs<'a>(&'a self, id: &'a str, tail_lines: usize) -> BoxFuture<'a, String>;

    /// Every instance the driver knows, running or exited, sorted by id.
    ///
    /// Fails rather than return a partial list, so that a caller never mistakes an unreadable
    /// runtime for one with no instances.
    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, InstanceStatus)>, RuntimeError>>;

    /// Forgets an exited instance and deletes everything the driver keeps for it (files, logs).
    /// Fails with [`RuntimeError::StillRunning`] while it runs; removing an unknown id is a no-op.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// How this driver's engines listen. [`Network::Loopback`] unless the driver says otherwise.
    fn network(&self) -> Network {
        Network::Loopback
    }

    /// The stable URL at which clients reach every instance of `group` (a Kubernetes Service),
    /// or `None` when the caller assigns addresses itself (the local driver: a port per group).
    fn group_endpoint(&self, group: &str) -> Option<String> {
        let _ = group;
        None
    }

    /// Stores `file` for every instance of `group`, running or to come, replacing it in place
    /// (a database's query keys file, which its engines re-read). Returns the path at which the
    /// instances read it, or `None` when the driver leaves group files to the caller (the local
    /// driver: the caller writes them into a directory the instances can read).
    fn put_group_file<'a>(
        &'a self,
        group: &'a str,
        file: &'a SpecFile,
    ) -> BoxFuture<'a, Result<Option<String>, RuntimeError>> {
        let _ = (group, file);
        Box::pin(async { Ok(None) })
    }

    /// Deletes what the driver keeps for `group` (its endpoint, its group files) once none of its
    /// instances is wanted any more (the database was deleted). A no-op for the local driver and
    /// for an unknown group.
    fn remove_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let _ = group;
        Box::pin(async { Ok(()) })
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server that needs its port chosen
/// before it starts (another process may take it in between; callers retry on a bind failure).
/// See [`free_port_except`].
pub fn free_port() -> Result<u16, RuntimeError> {
    free_port_except(&std::collections::HashSet::new())
}

/// How long [`free_port_except`] keeps a port it handed out from anyone else in this process:
/// longer than any server takes to start and bind it.
const HANDED_OUT_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// [`free_port`], never one of `taken` (ports recorded for servers that may be stopped now and
/// start again on them) nor one this process handed out in the last ten minutes: a server given a
/// port may not listen yet, and a second server handed the same port would fail to bind while
/// the first one answers for it.
pub fn free_port_except(taken: &std::collections::HashSet<u16>) -> Result<u16, RuntimeError> {
    use std::time::Instant;
    static HANDED_OUT: std::sync::Mutex<Vec<(u16, Instant)>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    handed_out.retain(|(_, at)| at.elapsed() < HANDED_OUT_FOR);
    // Listeners on ports that will not do stay open until a new one is found, so that the
    // kernel offers another port each time.
    let mut held = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(RuntimeError::io("bind a free port on", "127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(RuntimeError::io("read the address of", "127.0.0.1:0"))?
            .port();
        if !taken.contains(&port) && handed_out.iter().all(|(p, _)| *p != port) {
            handed_out.push((port, Instant::now()));
            return Ok(port);
        }
        held.push(listener);
    }
    Err(RuntimeError::io(
        "find a port not handed out before on",
        "127.0.0.1:0",
    )(std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

/// Ports [`pick_port`] chooses from: below Linux's default ephemeral range (32768–60999), so an
/// outgoing connection's local port never holds a database's port when its engine starts.
pub const STABLE_PORTS: std::ops::Range<u16> = 20000..32000;

/// A port of [`STABLE_PORTS`] that is not in `taken` and that nobody listens on now (a plain
/// bind on 127.0.0.1 succeeds), looked for from a random place of the range onwards — for a port
/// an instance keeps for its whole life (the caller records it). `None` after 200 failed binds or
/// when every port is taken.
pub fn pick_port(taken: &std::collections::HashSet<u16>) -> Option<u16> {
    use std::hash::{BuildHasher, Hasher};
    let width = STABLE_PORTS.end - STABLE_PORTS.start;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let from = (h.finish() % u64::from(width)) as u16;
    let mut binds = 0;
    for i in 0..width {
        let port = STABLE_PORTS.start + (from + i) % width;
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Some(port);
        }
        binds += 1;
        if binds >= 200 {
            break;
        }
    }
    None
}

/// Validates an instance id or file name: one safe path component.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_in_range_free_and_not_taken() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut taken: std::collections::HashSet<u16> = STABLE_PORTS.clone().collect();
        // Everything taken but one port: that one (or none, if another process holds it).
        let free = (STABLE_PORTS.start..STABLE_PORTS.end)
            .find(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).is_ok())
            .unwrap();
        taken.remove(&free);
        assert_eq!(pick_port(&taken), Some(free));
        taken.insert(free);
        assert_eq!(pick_port(&taken), None);
        let p = pick_port(&Default::default()).unwrap();
        assert!(STABLE_PORTS.contains(&p));
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        drop(held);
    }
}
