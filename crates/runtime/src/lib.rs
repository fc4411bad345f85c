//! This crate provides the runtime drivers that run Refract's instances: engines
//! (`refract engine --config FILE`) and managed database servers (`postgres`, `mariadbd`,
//! `redis-server`, …).
//!
//! - [`Driver`]: the trait the control plane's reconciler uses — `start`, `stop`, `status`,
//!   `endpoint`, `logs`, `list`, `remove` — keyed by instance id and idempotent. It knows nothing
//!   about processes, so a Kubernetes driver can implement it too.
//! - [`InstanceSpec`]: what to run (program, arguments, environment, files, readiness);
//!   [`InstanceStatus`]: `Starting`, `Running { endpoint }`, `Exited { code, signal, at }`, `NotFound`.
//! - [`LocalProcessDriver`]: the default driver, one child process and one directory per instance;
//!   instances outlive the control plane and are adopted again after its restart, and run as an
//!   unprivileged user when the control plane is root ([`user`]).
//! - [`process`]: liveness, children and signals by pid (one `/proc` reader), for the one
//!   caller that is local by definition besides the local driver: the managed crate's
//!   standalone servers.
//!
//! ```no_run
//! use std::time::Duration;
//! use refract_runtime::{Driver, InstanceKind, InstanceSpec, LocalProcessDriver, Readiness, SpecFile};
//!
//! # async fn demo() -> Result<(), refract_runtime::RuntimeError> {
//! let driver = LocalProcessDriver::new("/var/lib/refract/instances");
//! let mut spec = InstanceSpec::new("3f6c…", InstanceKind::Engine, "/usr/bin/refract", Readiness::engine());
//! spec.args = vec!["engine".into(), "--config".into(), "engine.yaml".into()];
//! spec.files.push(SpecFile::new("engine.yaml", "listen: 127.0.0.1:0\n"));
//! driver.start(&spec).await?;
//! // … later: status() turns from Starting into Running { endpoint: "http://127.0.0.1:PORT" }
//! driver.stop("3f6c…", Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! **Architecture invariant:** secrets reach an instance only through its environment or its
//! files; they never appear in arguments, `Debug` output, errors, or the driver's state files.
#![deny(missing_docs)]

mod driver;
mod error;
mod local;
pub mod process;
mod spec;
pub mod user;

pub use driver::{
    free_port, free_port_except, pick_port, BoxFuture, Driver, Network, STABLE_PORTS,
};
pub use error::RuntimeError;
pub use local::{LocalProcessDriver, INSTANCE_DIR_ENV, LOG_FILE, RUNNABLE_COPIES, STATE_FILE};
pub use spec::{
    InstanceHandle, InstanceKind, InstanceSpec, InstanceStatus, Readiness, SpecFile,
    DEFAULT_FILE_MODE, ENGINE_READY_PREFIX,
};
