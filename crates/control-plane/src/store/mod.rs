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
//!   `op_attempt`), `last_error`, the runtime settings last deployed (`deployed_config`) and
//!   `has_pending_changes`, `active_build_id`. Deleting is soft (`deleted_at`), which frees the name.
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
//! a PostgreSQL store implements the same two traits.

pub mod lifecycle;
mod sqlite;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use lifecycle::LifecycleTx;
pub use sqlite::SqliteStore;

use crate::api::{Connection, Customer, Database, DatabaseFilter, ManagementKey, Plan, Status};
use crate::error::ApiError;

/// Result of store operations; store failures are [`ApiError::Internal`], and closures may
/// return any other variant to roll back with a client error.
pub type StoreResult<T> = Result<T, ApiError>;

/// One row of the event log.
#[derive(Debug, Clone)]
pub struct Event {
    /// The database.
    pub database_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// Previous status (`None` on registration).
    pub from_status: Option<Status>,
    /// New status.
    pub to_status: Status,
    /// `user`, `schedule`, `crash` or `reconciler`.
    pub cause: String,
    /// Free text.
    pub message: String,
}

/// A metadata store backend.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in one write transaction (serialized with other writes); commits when it returns
    /// `Ok`, rolls back otherwise. Blocking: call from a blocking thread.
    fn write(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()>;
    /// Runs `f` in a read-only transaction (a consistent snapshot; may run beside writes).
    fn read(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()>;
}

/// Typed reads and writes inside one transaction. Lookups by id that take a `customer` only
/// return that customer's rows: tenant isolation is enforced here, not in each caller.
#[allow(missing_docs)] // names say it; the rules are on the trait and the module
pub trait Tx {
    // customers
    fn insert_customer(&self, c: &Customer) -> StoreResult<()>;
    fn get_customer(&self, id: Uuid) -> StoreResult<Option<Customer>>;
    fn list_customers(&self) -> StoreResult<Vec<Customer>>;
    fn set_customer_plan(&self, id: Uuid, plan: Plan, at: DateTime<Utc>) -> StoreResult<()>;
    fn admin_exists(&self) -> StoreResult<bool>;

    // management keys
    fn insert_management_key(&self, k: &ManagementKey) -> StoreResult<()>;
    fn list_management_keys(&self, customer: Uuid) -> StoreResult<Vec<ManagementKey>>;
    fn get_management_key(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<ManagementKey>>;
    /// By public key id, any customer (authentication).
    fn find_management_key(&self, key_id: &str) -> StoreResult<Option<ManagementKey>>;
    fn revoke_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    fn touch_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    // connections
    fn insert_connection(&self, c: &Connection) -> StoreResult<()>;
    fn update_connection(&self, c: &Connection) -> StoreResult<()>;
    fn get_connection(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<Connection>>;
    fn list_connections(&self, customer: Uuid) -> StoreResult<Vec<Connection>>;
    fn delete_connection(&self, id: Uuid) -> StoreResult<()>;
    fn connection_name_taken(
        &self,
        customer: Uuid,
        name: &str,
        except: Option<Uuid>,
    ) -> StoreResult<bool>;

    // databases
    fn insert_database(&self, d: &Database) -> StoreResult<()>;
    /// Writes every column, the lifecycle ones included.
    fn update_database(&self, d: &Database) -> StoreResult<()>;
    /// A non-deleted database of `customer`, with its latest endpoint and health.
    fn get_database(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<Database>>;
    /// Non-deleted databases of `customer`, oldest first.
    fn list_databases(&self, customer: Uuid, filter: &DatabaseFilter)
        -> StoreResult<Vec<Database>>;
    /// Every non-deleted database of every customer (for the reconciler).
    fn list_all_databases(&self) -> StoreResult<Vec<Database>>;
    fn count_databases(&self, customer: Uuid) -> StoreResult<usize>;
    fn database_name_taken(
        &self,
        connection: Uuid,
        name: &str,
        except: Option<Uuid>,
    ) -> StoreResult<bool>;
    /// `(database name, schema)` of non-deleted databases of `connection` using one of `schemas`.
    fn databases_using_schemas(
        &self,
        connection: Uuid,
        schemas: &[String],
    ) -> StoreResult<Vec<(String, String)>>;
    /// Whether a non-deleted database (any customer) replicating from `host:port` uses `server_id`.
    fn binlog_server_id_taken(
        &self,
        host: &str,
        port: Option<i64>,
        server_id: i64,
        except: &[Uuid],
    ) -> StoreResult<bool>;
    fn custom_domain_taken(&self, domain: &str, except: Option<Uuid>) -> StoreResult<bool>;
    fn soft_delete_database(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    // events
    fn insert_event(&self, e: &Event) -> StoreResult<()>;

    /// Lifecycle reads and writes (builds, instances, events, query keys, operations) in this
    /// same transaction.
    fn lifecycle(&self) -> &dyn LifecycleTx;
}
