//! This crate provides the Kubernetes runtime of Refract (`refract serve --runtime kubernetes`):
//! a [`refract_runtime::Driver`] that runs engines on a cluster through `kube`.
//!
//! - [`KubernetesDriver`]: one Deployment per engine instance (`replicas` pods), its config and
//!   manifest in a ConfigMap, its secrets (source password, admin token) and environment in a
//!   Secret mounted as files, a Service per database (the stable `endpointUrl`) over the ready
//!   pods of its engines, the database's query keys in a Secret its pods re-read.
//! - [`objects`]: the pure builders of those objects (golden-file tested).
//! - [`status`]: the pure mapping of a Deployment and its pods to an
//!   [`refract_runtime::InstanceStatus`] (CrashLoopBackOff and OOMKilled → `Exited`).
//! - [`servers`]: managed database servers as cluster objects (CloudNativePG `Cluster`,
//!   StatefulSets), their status and [`servers::ServerClient`]; [`KubernetesServers`] is the
//!   managed crate's `ServerRuntime` over it (`refract serve --runtime kubernetes`).
//! - [`fake`]: [`FakeApiServer`], an in-memory **test double** of the API server (not a
//!   cluster) that tests drive the driver against.
//!
//! ```no_run
//! # async fn demo() -> Result<(), refract_runtime::RuntimeError> {
//! use refract_kubernetes::KubernetesDriver;
//! let driver = KubernetesDriver::connect(Some("refract".into()), "ghcr.io/example/refract:1".into()).await?;
//! assert_eq!(driver.settings().namespace, "refract");
//! # Ok(()) }
//! ```
//!
//! **Architecture invariant:** a secret reaches a pod only through a Secret mounted as a file or
//! referenced by `secretKeyRef`; never as a value in a pod spec's `env`, `args` or `command`.
#![deny(missing_docs)]

mod driver;
pub mod fake;
pub mod objects;
pub mod server_runtime;
pub mod servers;
pub mod status;

pub use driver::KubernetesDriver;
pub use fake::{FakeApiServer, PodState};
pub use objects::Settings;
pub use server_runtime::KubernetesServers;
