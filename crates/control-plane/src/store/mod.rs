//! The metadata store: everything the control plane knows except secrets.
//!
//! # What do we store?
//!
//! - **customers** — tenants: name, plan, admin flag. The admin customer is created on first start.
//! - **management_keys** — `rmk_` keys: public `key_id`, SHA-256 of the secret (never the secret),
//!   expiry, revocation, last use (written at most once a minute).
//! - **connections** — how to reach a source: backend, host, port, user, the schemas databases may
//!   use, allowed sync modes and minimum interval, and the *name* of the password in the secret
//!   store (`connection/<id>/password`). The password itself is never here.
//! - **databases** — one engine's config (schema, sync mode and interval, size, log level, tags,
//!   pause schedule, custom domain, schema config text) and its lifecycle: observed `status`,
//!   intent `desired_state`, the one operation in flight (`op_kind`, `op_step`, `op_started_at`,
//!   `op_attempt`: one typed [`OperationInFlight`] in memory), `last_error`, the runtime
//!   settings last deployed (`deployed_config`) and `has_pending_changes`, `active_build_id`. Deleting is soft (`deleted_at`), which frees the name.
//! - **builds** — one per build: status, the schema manifest artifact (JSON, null until built),
//!   the log text, timings.
//! - **instances** — one per engine started: build, runtime handle, endpoint, health fields.
//! - **events** — every status transition of a database, with cause and message (audit).
//! - **query_keys** — `rxk_` keys of a database, hashed like management keys.
//! - **schema_migrations** — which versioned migrations (`migrations/NNNN_*.sql`) ran.
//!
//! Intent (what the user asked for) and observed state (what the runtime reported) are separate
//! columns so the reconciler can compare them after any restart.
//!
//! # Shape
//!
//! [`Store`] runs a closure in one transaction on a blocking thread; the closure gets a [`Tx`]
//! with typed reads and writes. Returning an error rolls everything back, which is how "nothing is
//! written when a request fails" holds even for multi-row requests. [`SqliteStore`] is the default;
//! [`PostgresStore`] implements the same two traits on a shared PostgreSQL server for several
//! control-plane replicas (`refract serve --store postgres://…`).

mod error;
pub mod lifecycle;
pub mod migrate;
mod postgres;
pub mod rows;
mod sql;
mod sqlite;
mod tx;

#[cfg(test)]
pub(crate) mod tests;

pub use error::{StoreError, StoreResult};
pub use lifecycle::{Event, LifecycleTx};
pub use postgres::{redact as redact_url, PgPool, PostgresStore};
pub use rows::{
    ConnectionRow, DatabaseInternal, DatabaseRow, ManagementKeyRow, NewDatabase, OpKind, OpStep,
    OperationInFlight,
};
pub use sqlite::SqliteStore;
pub use tx::{NameClaim, ServerIdClaim, Store, Tx};
