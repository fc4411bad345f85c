//! What the two backends' SQL has in common, written once: the column lists with the functions
//! that map a row to a record, and the statements both dialects accept.
//!
//! The two stores select the same columns in the same order; only how one column is decoded
//! differs (PostgreSQL has native `uuid`, `timestamptz` and `jsonb`, SQLite stores them as text).
//! [`StoredRow`] is that difference: each backend implements it for its own row type, and the
//! `*_row` functions here map a row to a record through it. A column list and the function that
//! reads it by index therefore live side by side, and a new column is added in one place.

use serde::de::DeserializeOwned;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::lifecycle::{
    BuildRecord, Event, EventRecord, InstanceRecord, OpsRecord, QueryKeyRecord,
};
use super::rows::{
    ConnectionRow, DatabaseInternal, DatabaseRow, ManagementKeyRow, OpKind, OpStep,
    OperationInFlight,
};
use crate::api::*;

/// A column type both backends store and decode natively: text, `bigint`/`INTEGER`, boolean,
/// each nullable or not.
pub(super) trait PlainColumn:
    rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>
{
}

impl<T> PlainColumn for T where T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}

/// One result row of either backend, read by column index.
pub(super) trait StoredRow {
    /// The backend's error (the row-mapping callbacks of `rusqlite` want its own).
    type Error;

    /// A column stored the same way on both backends.
    fn value<T: PlainColumn>(&self, i: usize) -> Result<T, Self::Error>;
    fn uuid(&self, i: usize) -> Result<Uuid, Self::Error>;
    fn uuid_opt(&self, i: usize) -> Result<Option<Uuid>, Self::Error>;
    fn time(&self, i: usize) -> Result<DateTime<Utc>, Self::Error>;
    fn time_opt(&self, i: usize) -> Result<Option<DateTime<Utc>>, Self::Error>;
    /// A JSON column that must decode as `T` (it is corrupt otherwise).
    fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, Self::Error>;
    fn json_opt<T: DeserializeOwned>(&self, i: usize) -> Result<Option<T>, Self::Error>;
    /// A JSON column that may have been written by a newer version: a value that does not decode
    /// as `T` reads as `None` instead of failing the row.
    fn json_lenient<T: DeserializeOwned>(&self, i: usize) -> Result<Option<T>, Self::Error>;
    /// The error for a value this code cannot read back.
    fn corrupt(what: &str, value: &str) -> Self::Error;

    /// A text column holding one of an enum's storage spellings.
    fn enumeration<T>(&self, i: usize, parse: fn(&str) -> Option<T>) -> Result<T, Self::Error> {
        let s: String = self.value(i)?;
        parse(&s).ok_or_else(|| Self::corrupt("enum", &s))
    }

    fn enumeration_opt<T>(
        &self,
        i: usize,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Self::Error> {
        let s: Option<String> = self.value(i)?;
        s.map(|s| parse(&s).ok_or_else(|| Self::corrupt("enum", &s)))
            .transpose()
    }
}

/// The columns [`customer_row`] reads. A macro, so that the statements below can `concat!` to it.
macro_rules! customer_columns {
    () => {
        "id, name, plan, is_admin, created_at, updated_at"
    };
}
pub(super) const CUSTOMER_COLS: &str = customer_columns!();
/// Customer `$1`.
pub(super) const CUSTOMER_BY_ID: &str = concat!(
    "SELECT ",
    customer_columns!(),
    " FROM customers WHERE id = $1"
);
/// Every customer, oldest first.
pub(super) const ALL_CUSTOMERS: &str = concat!(
    "SELECT ",
    customer_columns!(),
    " FROM customers ORDER BY created_at, id"
);

pub(super) fn customer_row<R: StoredRow>(r: &R) -> Result<Customer, R::Error> {
    Ok(Customer {
        id: r.uuid(0)?,
        name: r.value(1)?,
        plan: r.enumeration(2, Plan::parse)?,
        is_admin: r.value(3)?,
        created_at: r.time(4)?,
        updated_at: r.time(5)?,
    })
}

/// The columns [`management_key_row`] reads.
macro_rules! management_key_columns {
    () => {
        "id, customer_id, name, key_id, secret_sha256, expires_at, created_at, last_used_at, revoked_at"
    };
}
pub(super) const MANAGEMENT_KEY_COLS: &str = management_key_columns!();
/// The management keys of customer `$1`, oldest first.
pub(super) const KEYS_OF_CUSTOMER: &str = concat!(
    "SELECT ",
    management_key_columns!(),
    " FROM management_keys WHERE customer_id = $1 ORDER BY created_at, id"
);
/// Management key `$1` of customer `$2`.
pub(super) const KEY_BY_ID: &str = concat!(
    "SELECT ",
    management_key_columns!(),
    " FROM management_keys WHERE id = $1 AND customer_id = $2"
);
/// The management key with public id `$1`.
pub(super) const KEY_BY_KEY_ID: &str = concat!(
    "SELECT ",
    management_key_columns!(),
    " FROM management_keys WHERE key_id = $1"
);

pub(super) fn management_key_row<R: StoredRow>(r: &R) -> Result<ManagementKeyRow, R::Error> {
    Ok(ManagementKeyRow {
        wire: refract_api::ManagementKey {
            id: r.uuid(0)?,
            customer_id: r.uuid(1)?,
            name: r.value(2)?,
            key_id: r.value(3)?,
            key: None,
            expires_at: r.time_opt(5)?,
            created_at: r.time(6)?,
            last_used_at: r.time_opt(7)?,
            revoked_at: r.time_opt(8)?,
        },
        secret_sha256: r.value(4)?,
    })
}

/// The columns [`connection_row`] reads.
macro_rules! connection_columns {
    () => {
        "id, customer_id, name, backend, host, port, available_schemas, username, \
         password_secret, allowed_sync_modes, min_sync_interval, created_at, updated_at, ssl_mode, \
         ssl_root_cert_secret"
    };
}
pub(super) const CONNECTION_COLS: &str = connection_columns!();
/// Connection `$1` of customer `$2`.
pub(super) const CONNECTION_BY_ID: &str = concat!(
    "SELECT ",
    connection_columns!(),
    " FROM connections WHERE id = $1 AND customer_id = $2"
);
/// The connections of customer `$1`, oldest first.
pub(super) const CONNECTIONS_OF_CUSTOMER: &str = concat!(
    "SELECT ",
    connection_columns!(),
    " FROM connections WHERE customer_id = $1 ORDER BY created_at, id"
);

pub(super) fn connection_row<R: StoredRow>(r: &R) -> Result<ConnectionRow, R::Error> {
    let ssl_root_cert_secret: Option<String> = r.value(14)?;
    Ok(ConnectionRow {
        wire: refract_api::Connection {
            id: r.uuid(0)?,
            customer_id: r.uuid(1)?,
            name: r.value(2)?,
            backend: r.enumeration(3, Backend::parse)?,
            host: r.value(4)?,
            port: r.value(5)?,
            available_schemas: r.json(6)?,
            user: r.value(7)?,
            allowed_sync_modes: r.json(9)?,
            min_sync_interval: r.value(10)?,
            created_at: r.time(11)?,
            updated_at: r.time(12)?,
            ssl_mode: r.enumeration(13, SslMode::parse)?,
            ssl_root_cert_set: ssl_root_cert_secret.is_some(),
        },
        password_secret: r.value(8)?,
        ssl_root_cert_secret,
    })
}

/// The columns [`database_row`] reads, of `databases d` and of `i`, the latest live instance of
/// each database (which supplies `endpointUrl` and `healthStatus`); each backend joins `i` its
/// own way. A macro, not a constant, so that the backends can `concat!` their `FROM` to it.
macro_rules! database_columns {
    () => {
        "d.id, d.customer_id, d.connection_id, d.name, d.mysql_db, d.sync_mode, \
         d.sync_interval, d.safety_net, d.instance_size, d.log_level, d.region, d.binlog_server_id, \
         d.build_compute_override, d.custom_domain, d.pause_schedule, d.tags, d.schema_config, d.status, \
         d.desired_state, d.op_kind, d.op_step, d.op_started_at, d.op_attempt, d.last_error, \
         d.deployed_config, d.has_pending_changes, d.replication_paused, d.active_build_id, d.created_at, \
         d.updated_at, d.deleted_at, i.endpoint_url, i.health_status, d.replicas"
    };
}
pub(super) use database_columns;

pub(super) fn database_row<R: StoredRow>(r: &R) -> Result<DatabaseRow, R::Error> {
    let instance_size = r.enumeration(8, InstanceSize::parse)?;
    let (task_cpu, task_memory_mb) = instance_size.resources();
    Ok(DatabaseRow {
        wire: refract_api::Database {
            id: r.uuid(0)?,
            customer_id: r.uuid(1)?,
            connection_id: r.uuid(2)?,
            name: r.value(3)?,
            schema: r.value(4)?,
            sync_mode: r.enumeration(5, SyncMode::parse)?,
            sync_interval: r.value(6)?,
            safety_net: r.value(7)?,
            instance_size,
            task_cpu,
            task_memory_mb,
            log_level: r.enumeration(9, LogLevel::parse)?,
            region: r.value(10)?,
            binlog_server_id: r.value(11)?,
            build_compute_override: r.enumeration_opt(12, BuildCompute::parse)?,
            reflexdb_custom_domain: r.value(13)?,
            pause_schedule: r.json_opt(14)?,
            tags: r.json(15)?,
            status: r.enumeration(17, Status::parse)?,
            desired_state: r.enumeration_opt(18, DesiredState::parse)?,
            last_error: r.value(23)?,
            has_pending_changes: r.value(25)?,
            replication_paused: r.value(26)?,
            created_at: r.time(28)?,
            updated_at: r.time(29)?,
            endpoint_url: r.value(31)?,
            health_status: r.enumeration_opt(32, HealthStatus::parse)?,
            replicas: r.value(33)?,
        },
        internal: DatabaseInternal {
            schema_config: r.value(16)?,
            operation: OperationInFlight::from_columns(
                r.enumeration_opt(19, OpKind::parse)?,
                r.enumeration_opt(20, OpStep::parse)?,
                r.time_opt(21)?,
                r.value(22)?,
            ),
            deployed_config: r.json_opt(24)?,
            active_build_id: r.uuid_opt(27)?,
            deleted_at: r.time_opt(30)?,
        },
    })
}

pub(super) const BUILD_COLS: &str =
    "id, database_id, status, manifest IS NOT NULL, schema_config, sync_mode_used, \
     compute_type_used, log, error, created_at, started_at, finished_at";

pub(super) fn build_row<R: StoredRow>(r: &R) -> Result<BuildRecord, R::Error> {
    Ok(BuildRecord {
        id: r.uuid(0)?,
        database_id: r.uuid(1)?,
        status: r.enumeration(2, BuildStatus::parse)?,
        has_manifest: r.value(3)?,
        schema_config: r.value(4)?,
        sync_mode_used: r.value(5)?,
        compute_type_used: r.value(6)?,
        log: r.value(7)?,
        error: r.value(8)?,
        created_at: r.time(9)?,
        started_at: r.time_opt(10)?,
        finished_at: r.time_opt(11)?,
    })
}

pub(super) const INSTANCE_COLS: &str =
    "id, database_id, build_id, runtime_id, endpoint_url, health_status, snapshot_age_ms, \
     swap_count, row_counts, last_health_check, created_at, updated_at, stopped_at, control_url, replication";

pub(super) fn instance_row<R: StoredRow>(r: &R) -> Result<InstanceRecord, R::Error> {
    Ok(InstanceRecord {
        id: r.uuid(0)?,
        database_id: r.uuid(1)?,
        build_id: r.uuid(2)?,
        runtime_id: r.value::<Option<String>>(3)?.unwrap_or_default(),
        endpoint_url: r.value(4)?,
        health_status: r.enumeration_opt(5, HealthStatus::parse)?,
        snapshot_age_ms: r.value(6)?,
        swap_count: r.value(7)?,
        row_counts: r.json_lenient(8)?,
        last_health_check: r.time_opt(9)?,
        created_at: r.time(10)?,
        updated_at: r.time(11)?,
        stopped_at: r.time_opt(12)?,
        control_url: r.value(13)?,
        // A stored view this version cannot read counts as none (the next health check writes
        // it again).
        replication: r.json_lenient(14)?,
    })
}

pub(super) const QUERY_KEY_COLS: &str =
    "id, database_id, key_id, secret_sha256, name, expires_at, created_at, revoked_at";

pub(super) fn query_key_row<R: StoredRow>(r: &R) -> Result<QueryKeyRecord, R::Error> {
    Ok(QueryKeyRecord {
        id: r.uuid(0)?,
        database_id: r.uuid(1)?,
        key_id: r.value(2)?,
        secret_sha256: r.value(3)?,
        name: r.value(4)?,
        expires_at: r.time_opt(5)?,
        created_at: r.time(6)?,
        revoked_at: r.time_opt(7)?,
    })
}

/// The columns [`ops_row`] reads, of `database_ops o`. A macro, so that the statements below can
/// `concat!` to it.
macro_rules! ops_columns {
    () => {
        "o.database_id, o.op, o.crash, o.cleanup, o.schedule_mark, o.engine_port"
    };
}

/// The ops record of database `$1` (read with [`ops_row`]).
pub(super) const OPS_OF_DATABASE: &str = concat!(
    "SELECT ",
    ops_columns!(),
    " FROM database_ops o WHERE o.database_id = $1"
);

/// The ops records of every non-deleted database (read with [`ops_row`]).
pub(super) const ALL_OPS: &str = concat!(
    "SELECT ",
    ops_columns!(),
    " FROM database_ops o JOIN databases d ON d.id = o.database_id WHERE d.deleted_at IS NULL"
);

/// Every engine port assigned (read with [`engine_port`]).
pub(super) const ENGINE_PORTS: &str =
    "SELECT engine_port FROM database_ops WHERE engine_port IS NOT NULL";

pub(super) fn ops_row<R: StoredRow>(r: &R) -> Result<OpsRecord, R::Error> {
    // A row this code cannot read back (written by a newer version) must not stop the
    // reconciler: an unreadable operation is treated as none and rolled back.
    Ok(OpsRecord {
        database_id: r.uuid(0)?,
        op: r.json_lenient(1)?,
        crash: r.json_lenient(2)?.unwrap_or_default(),
        cleanup: r.json_lenient(3)?.unwrap_or_default(),
        schedule_mark: r.value(4)?,
        engine_port: engine_port(r, 5)?,
    })
}

/// An `engine_port` column; a value that is no TCP port reads as none.
pub(super) fn engine_port<R: StoredRow>(r: &R, i: usize) -> Result<Option<u16>, R::Error> {
    Ok(r.value::<Option<i64>>(i)?
        .and_then(|p| u16::try_from(p).ok()))
}

pub(super) const EVENT_COLS: &str = "id, database_id, at, from_status, to_status, cause, message";

pub(super) fn event_row<R: StoredRow>(r: &R) -> Result<EventRecord, R::Error> {
    Ok(EventRecord {
        id: r.value(0)?,
        event: Event {
            database_id: r.uuid(1)?,
            at: r.time(2)?,
            from_status: r.enumeration_opt(3, Status::parse)?,
            to_status: r.enumeration(4, Status::parse)?,
            cause: r.value(5)?,
            message: r.value(6)?,
        },
    })
}

// Statements both dialects run, each backend binding its own values. Parameters are written
// `$1`, `$2`, …: PostgreSQL's spelling, and to SQLite named parameters, which it numbers by first
// appearance — so every statement here names `$1` first, then `$2`, and so on
// (`shared_statements_number_their_parameters_in_order` checks). Both accept `IS DISTINCT FROM`
// (SQLite since 3.39; the bundled one is 3.50).

/// Whether customer `$1` has another connection (not `$3`, which may be null) named `$2`.
pub(super) const CONNECTION_NAME_TAKEN: &str =
    "SELECT 1 FROM connections WHERE customer_id = $1 AND name = $2 AND id IS DISTINCT FROM $3";

/// Whether connection `$1` has another non-deleted database (not `$3`) named `$2`.
pub(super) const DATABASE_NAME_TAKEN: &str =
    "SELECT 1 FROM databases WHERE connection_id = $1 AND name = $2 AND id IS DISTINCT FROM $3 \
     AND deleted_at IS NULL";

/// Whether another non-deleted database (not `$2`) uses custom domain `$1`.
pub(super) const CUSTOM_DOMAIN_TAKEN: &str =
    "SELECT 1 FROM databases WHERE custom_domain = $1 AND id IS DISTINCT FROM $2 \
     AND deleted_at IS NULL";

/// Revoking management key `$2` at `$1` (a key revoked before keeps its first time).
pub(super) const REVOKE_KEY: &str =
    "UPDATE management_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2";

/// Management key `$2` used at `$1`.
pub(super) const TOUCH_KEY: &str = "UPDATE management_keys SET last_used_at = $1 WHERE id = $2";

/// Soft-deleting database `$2` at `$1`.
pub(super) const SOFT_DELETE_DATABASE: &str =
    "UPDATE databases SET deleted_at = $1, updated_at = $1 WHERE id = $2";

/// Deleting a connection: soft-deleted databases keep pointing at it for audit, so their rows and
/// history go with it, children first, since nothing can reach them any more. The one parameter
/// is the connection id.
pub(super) const DELETE_CONNECTION: [&str; 6] = [
    "DELETE FROM events WHERE database_id IN (SELECT id FROM databases WHERE connection_id = $1)",
    "DELETE FROM query_keys WHERE database_id IN (SELECT id FROM databases WHERE connection_id = $1)",
    "DELETE FROM instances WHERE database_id IN (SELECT id FROM databases WHERE connection_id = $1)",
    "DELETE FROM builds WHERE database_id IN (SELECT id FROM databases WHERE connection_id = $1)",
    "DELETE FROM databases WHERE connection_id = $1",
    "DELETE FROM connections WHERE id = $1",
];

#[cfg(test)]
mod shared_statements {
    use super::*;

    /// SQLite numbers `$N` parameters by first appearance, so a shared statement that named `$2`
    /// before `$1` would bind its values to the wrong places there.
    #[test]
    fn shared_statements_number_their_parameters_in_order() {
        let shared = [
            CUSTOMER_BY_ID,
            ALL_CUSTOMERS,
            KEYS_OF_CUSTOMER,
            KEY_BY_ID,
            KEY_BY_KEY_ID,
            CONNECTION_BY_ID,
            CONNECTIONS_OF_CUSTOMER,
            REVOKE_KEY,
            TOUCH_KEY,
            SOFT_DELETE_DATABASE,
            OPS_OF_DATABASE,
            ALL_OPS,
            ENGINE_PORTS,
            CONNECTION_NAME_TAKEN,
            DATABASE_NAME_TAKEN,
            CUSTOM_DOMAIN_TAKEN,
        ]
        .into_iter()
        .chain(DELETE_CONNECTION);
        for sql in shared {
            let mut seen: Vec<u32> = Vec::new();
            for (i, _) in sql.match_indices('$') {
                let digits: String = sql[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                let n: u32 = digits
                    .parse()
                    .unwrap_or_else(|_| panic!("bare `$` in {sql}"));
                if !seen.contains(&n) {
                    assert_eq!(
                        n as usize,
                        seen.len() + 1,
                        "`${n}` comes too early in {sql}"
                    );
                    seen.push(n);
                }
            }
        }
    }
}
