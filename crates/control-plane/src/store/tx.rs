//! The two traits a metadata store implements: [`Store`] runs transactions, [`Tx`] reads and
//! writes inside one (see the module doc of [`crate::store`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::StoreResult;
use super::lifecycle::{Event, LifecycleTx};
use crate::api::{Customer, DatabaseFilter, Plan};
use crate::store::{ConnectionRow, DatabaseRow, ManagementKeyRow};

/// A metadata store backend.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in one write transaction (serialized with other writes); commits when it returns
    /// `Ok`, rolls back otherwise. Blocking: call from a blocking thread.
    fn write(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()>;
    /// Runs `f` in a read-only transaction (a consistent snapshot; may run beside writes).
    fn read(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()>;
}

/// A name wanted inside its owner (a customer's connections, a connection's databases), by a
/// record other than `except` (the one being renamed, if any).
#[derive(Debug, Clone, Copy)]
pub struct NameClaim<'a> {
    /// The customer (of a connection) or connection (of a database) the name is unique in.
    pub owner: Uuid,
    /// The name wanted.
    pub name: &'a str,
    /// The record whose own name does not count.
    pub except: Option<Uuid>,
}

/// A binlog server id wanted on a MariaDB/MySQL source: `server_id` on `host:port` (host
/// compared without case), by a database other than those in `except`.
#[derive(Debug, Clone, Copy)]
pub struct ServerIdClaim<'a> {
    /// The source's host.
    pub host: &'a str,
    /// The source's port (`None`: the default).
    pub port: Option<i64>,
    /// The replica id wanted.
    pub server_id: i64,
    /// Databases whose own ids do not count (the ones asking).
    pub except: &'a [Uuid],
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
    fn insert_management_key(&self, k: &ManagementKeyRow) -> StoreResult<()>;
    fn list_management_keys(&self, customer: Uuid) -> StoreResult<Vec<ManagementKeyRow>>;
    fn get_management_key(&self, customer: Uuid, id: Uuid)
        -> StoreResult<Option<ManagementKeyRow>>;
    /// By public key id, any customer (authentication).
    fn find_management_key(&self, key_id: &str) -> StoreResult<Option<ManagementKeyRow>>;
    fn revoke_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    fn touch_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    // connections
    fn insert_connection(&self, c: &ConnectionRow) -> StoreResult<()>;
    fn update_connection(&self, c: &ConnectionRow) -> StoreResult<()>;
    fn get_connection(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<ConnectionRow>>;
    fn list_connections(&self, customer: Uuid) -> StoreResult<Vec<ConnectionRow>>;
    fn delete_connection(&self, id: Uuid) -> StoreResult<()>;
    /// Whether customer `claim.owner` has another connection named `claim.name`.
    fn connection_name_taken(&self, claim: &NameClaim) -> StoreResult<bool>;

    // databases
    fn insert_database(&self, d: &DatabaseRow) -> StoreResult<()>;
    /// Writes every column, the lifecycle ones included.
    fn update_database(&self, d: &DatabaseRow) -> StoreResult<()>;
    /// A non-deleted database of `customer`, with its latest endpoint and health.
    fn get_database(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<DatabaseRow>>;
    /// Non-deleted databases of `customer`, oldest first.
    fn list_databases(
        &self,
        customer: Uuid,
        filter: &DatabaseFilter,
    ) -> StoreResult<Vec<DatabaseRow>>;
    /// Every non-deleted database of every customer (for the reconciler).
    fn list_all_databases(&self) -> StoreResult<Vec<DatabaseRow>>;
    fn count_databases(&self, customer: Uuid) -> StoreResult<usize>;
    /// Whether connection `claim.owner` has another non-deleted database named `claim.name`.
    fn database_name_taken(&self, claim: &NameClaim) -> StoreResult<bool>;
    /// `(database name, schema)` of non-deleted databases of `connection` using one of `schemas`.
    fn databases_using_schemas(
        &self,
        connection: Uuid,
        schemas: &[String],
    ) -> StoreResult<Vec<(String, String)>>;
    /// Whether a non-deleted database (any customer, not one of `claim.except`) replicating from
    /// the claim's `host:port` uses its `server_id`.
    fn binlog_server_id_taken(&self, claim: &ServerIdClaim) -> StoreResult<bool>;
    fn custom_domain_taken(&self, domain: &str, except: Option<Uuid>) -> StoreResult<bool>;
    fn soft_delete_database(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    // events
    fn insert_event(&self, e: &Event) -> StoreResult<()>;

    /// Lifecycle reads and writes (builds, instances, events, query keys, operations) in this
    /// same transaction.
    fn lifecycle(&self) -> &dyn LifecycleTx;
}
