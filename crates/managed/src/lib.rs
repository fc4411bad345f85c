//! This crate provides managed database servers (seed 004): `/api/v1/databases` creates
//! PostgreSQL, MySQL (MariaDB), Redis and MongoDB servers by plan and version, runs them through
//! the runtime driver, generates their credentials and returns a connection string.
//!
//! - [`ManagedService`]: the logic (tokens, validation, intent) and, with
//!   [`ManagedService::spawn_reconciler`], the loop that provisions, restarts, stops, scales and
//!   destroys servers. [`ManagedService::router`] is the `/api/v1` surface to merge into the
//!   control plane's router.
//! - [`Authenticator`], [`SecretVault`], [`ConnectionRegistrar`]: what the hosting control plane
//!   provides (management keys, the encrypted secret store, `/v1` connections). This crate does
//!   not depend on the control plane; the control plane implements these traits.
//! - [`catalog`]: the plan table and the supported versions, resolved against the binaries
//!   installed on this host.
//! - [`reconciler::decide`]: the pure rule that picks each database's next step.
//! - [`ServerRuntime`]: where servers run when not as local processes (set with
//!   [`ManagedService::set_server_runtime`]; the Kubernetes one is in `refract-kubernetes`), and
//!   [`cluster::decide`], the pure rule of the reconciler on it.
//!
//! What it stores: `DIR/managed.sqlite` (tokens and databases, no passwords; see [`store`]),
//! `DIR/managed/servers/<db id>/n<k>/` (as root `/var/lib/refract-managed/<hash>/<db id>/n<k>/`, so that `DIR` stays 0700; each server's data, owned by the unprivileged user it
//! runs as), and, through the runtime driver, `DIR/managed/instances/<db id>-n<k>/` (logs, state).
//!
//! ```no_run
//! # async fn demo(vault: std::sync::Arc<dyn refract_managed::SecretVault>) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use refract_managed::{ManagedConfig, ManagedService, NoManagementKeys};
//! use refract_runtime::LocalProcessDriver;
//!
//! let dir = std::path::Path::new("/var/lib/refract");
//! let driver = Arc::new(LocalProcessDriver::new(dir.join("managed/instances")));
//! let service = ManagedService::open(ManagedConfig::new(dir), vault, driver, Arc::new(NoManagementKeys))?;
//! let _reconciler = service.spawn_reconciler(tokio_util::sync::CancellationToken::new());
//! let app: axum::Router = service.router(); // merge into the control plane's router
//! # let _ = app; Ok(()) }
//! ```
//!
//! **Architecture invariant:** generated passwords live only in the secret store (and in the
//! 0600 files a server itself must read: Redis's config, a standby's connection settings); never
//! in `managed.sqlite`, logs, arguments, errors, or any response but `/credentials`.
//! **Architecture invariant:** when the control plane is root, no server runs as root.
#![deny(missing_docs)]

pub mod api;
pub mod backup;
mod ca;
pub mod catalog;
pub mod cluster;
pub mod credentials;
mod engines;
mod error;
mod event_log;
mod events;
pub mod failover;
mod hooks;
mod http;
pub mod os;
pub mod pools;
mod promotion;
pub mod reconciler;
pub mod server_runtime;
mod service;
pub mod standalone;
pub mod store;
pub mod tls;
pub mod tokens;

pub use api::{Credentials, Database, DbType, ReplicaHealth, Status};
pub use engines::{
    database_name, instance_id, secret_name, ADMIN_USER, APP_USER, HOST, REPLICATION_USER,
};
pub use error::ManagedError;
pub use events::Event;
pub use hooks::{
    Authenticator, ConnectionRegistrar, ManagedSource, MemoryVault, NoManagementKeys, Quota,
    QuotaPolicy, RegistrarError, SecretVault, SourceBackend, StaticKeys,
};
pub use http::{Body, ManagedApiDoc, Params};
pub use server_runtime::{Endpoint, ServerRuntime, ServerSpec, ServerState};
pub use service::{Caller, ManagedConfig, ManagedService, DEFAULT_PROJECT, FALLBACK_SERVERS_ROOT};
pub use standalone::{StandaloneOptions, StandaloneServer};
pub use store::slug;
