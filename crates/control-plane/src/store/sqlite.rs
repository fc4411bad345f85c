//! [`SqliteStore`]: the default metadata store, one SQLite file in WAL mode.
//!
//! One writer connection (SQLite allows one writer at a time anyway; `BEGIN IMMEDIATE` takes the
//! write lock up front so a read-then-write transaction never fails to upgrade) and a few reader
//! connections that WAL lets run beside it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::types::ToSql;
use rusqlite::{params, OptionalExtension, Params, Row, TransactionBehavior};
use uuid::Uuid;

mod lifecycle;

use super::error::StoreResult;
use super::lifecycle::{Event, LifecycleTx};
use super::rows::{ConnectionRow, DatabaseRow, ManagementKeyRow};
use super::sql::*;
use super::tx::{NameClaim, ServerIdClaim, Store, Tx};
use crate::api::*;

/// Versioned migrations, applied in order on start and recorded in `schema_migrations`.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_lifecycle",
        include_str!("../../migrations/0002_lifecycle.sql"),
    ),
    (
        3,
        "0003_engine_port",
        include_str!("../../migrations/0003_engine_port.sql"),
    ),
    (
        4,
        "0004_source_tls",
        include_str!("../../migrations/0004_source_tls.sql"),
    ),
    (
        5,
        "0005_instance_replication",
        include_str!("../../migrations/0005_instance_replication.sql"),
    ),
    (
        6,
        "0006_database_replicas",
        include_str!("../../migrations/0006_database_replicas.sql"),
    ),
];

const READERS: usize = 4;

/// SQLite metadata store.
pub struct SqliteStore {
    writer: Mutex<rusqlite::Connection>,
    readers: Vec<Mutex<rusqlite::Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

fn open_conn(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. synchronous=FULL: a committed answer survives power
    // loss, not only a process kill; API writes are rare enough to afford the fsync.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut writer = open_conn(path)?;
        migrate(&mut writer)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let readers = (0..READERS)
            .map(|_| open_conn(path).map(Mutex::new))
            .collect::<anyhow::Result<_>>()?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
            next: Default::default(),
        })
    }

    fn reader(&self) -> MutexGuard<'_, rusqlite::Connection> {
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        // All busy: queue on one, round robin.
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut rusqlite::Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    for (version, name, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {name}"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, ts(&Utc::now())],
            )?;
            tracing::info!(migration = name, "applied metadata store migration");
        }
        tx.commit()?;
    }
    Ok(())
}

fn run(
    conn: &mut rusqlite::Connection,
    behavior: TransactionBehavior,
    f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>,
) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(behavior)?;
    f(&SqlTx(&tx))?; // an error drops `tx`, which rolls back
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    fn write(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        run(&mut conn, TransactionBehavior::Immediate, f)
    }

    fn read(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()> {
        let mut conn = self.reader();
        run(&mut conn, TransactionBehavior::Deferred, f)
    }
}

// ------------------------------------------------------------------ encoding helpers

/// Fixed-width RFC 3339 with microseconds, so text order is time order.
fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn ts_opt(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(ts)
}

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("bad {what} in metadata store: {value:?}").into(),
    )
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| corrupt("timestamp", s))
}

fn parse_uuid(s: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| corrupt("uuid", s))
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|_| corrupt("json", s))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// UUIDs, timestamps and JSON are stored as text and parsed here.
impl StoredRow for Row<'_> {
    type Error = rusqlite::Error;

    fn value<T: PlainColumn>(&self, i: usize) -> rusqlite::Result<T> {
        self.get(i)
    }

    fn uuid(&self, i: usize) -> rusqlite::Result<Uuid> {
        parse_uuid(&self.get::<_, String>(i)?)
    }

    fn uuid_opt(&self, i: usize) -> rusqlite::Result<Option<Uuid>> {
        let s: Option<String> = self.get(i)?;
        s.as_deref().map(parse_uuid).transpose()
    }

    fn time(&self, i: usize) -> rusqlite::Result<DateTime<Utc>> {
        parse_ts(&self.get::<_, String>(i)?)
    }

    fn time_opt(&self, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
        let s: Option<String> = self.get(i)?;
        s.as_deref().map(parse_ts).transpose()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> rusqlite::Result<T> {
        parse_json(&self.get::<_, String>(i)?)
    }

    fn json_opt<T: serde::de::DeserializeOwned>(&self, i: usize) -> rusqlite::Result<Option<T>> {
        let s: Option<String> = self.get(i)?;
        s.as_deref().map(parse_json).transpose()
    }

    fn json_lenient<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
    ) -> rusqlite::Result<Option<T>> {
        let s: Option<String> = self.get(i)?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    }

    fn corrupt(what: &str, value: &str) -> rusqlite::Error {
        corrupt(what, value)
    }
}

/// The latest live instance of each database supplies `endpointUrl` and `healthStatus`.
const DATABASE_SELECT: &str = concat!(
    "SELECT ",
    database_columns!(),
    " FROM databases d LEFT JOIN instances i ON i.id = (SELECT id FROM instances \
     WHERE database_id = d.id AND stopped_at IS NULL ORDER BY created_at DESC LIMIT 1)"
);

struct SqlTx<'a>(&'a rusqlite::Connection);

/// The row mappings of [`super::sql`] are generic over the row type, so they are passed to
/// [`SqlTx::rows`] and [`SqlTx::row`] in a closure (`|r| customer_row(r)`): `rusqlite` wants a
/// callback for a row of any statement lifetime, which one instance of a generic function is not.
impl SqlTx<'_> {
    fn execute(&self, sql: &str, params: impl Params) -> StoreResult<()> {
        self.0.execute(sql, params)?;
        Ok(())
    }

    /// Whether `sql` finds `claim`'s name taken (owner `$1`, name `$2`, except `$3`).
    fn name_taken(&self, sql: &str, claim: &NameClaim) -> StoreResult<bool> {
        let except = claim.except.map(|u| u.to_string());
        self.exists(sql, params![claim.owner.to_string(), claim.name, except])
    }

    /// Runs `sql`, which writes time `$1` into row `$2`.
    fn stamp(&self, sql: &str, at: DateTime<Utc>, id: Uuid) -> StoreResult<()> {
        self.execute(sql, params![ts(&at), id.to_string()])
    }

    /// Every row `sql` returns, decoded.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let rows = stmt
            .query_map(params, decode)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The first row `sql` returns, decoded, if any.
    fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.query_row(params, decode).optional()?)
    }

    /// Whether `sql` returns a row.
    fn exists(&self, sql: &str, params: impl Params) -> StoreResult<bool> {
        Ok(self
            .0
            .query_row(&format!("SELECT EXISTS({sql})"), params, |r| r.get(0))?)
    }
}

impl Tx for SqlTx<'_> {
    fn lifecycle(&self) -> &dyn LifecycleTx {
        self
    }

    fn insert_customer(&self, c: &Customer) -> StoreResult<()> {
        self.execute(
            "INSERT INTO customers (id, name, plan, is_admin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![c.id.to_string(), c.name, c.plan.as_str(), c.is_admin, ts(&c.created_at), ts(&c.updated_at)],
        )
    }

    fn get_customer(&self, id: Uuid) -> StoreResult<Option<Customer>> {
        self.row(CUSTOMER_BY_ID, [id.to_string()], |r| customer_row(r))
    }

    fn list_customers(&self) -> StoreResult<Vec<Customer>> {
        self.rows(ALL_CUSTOMERS, [], |r| customer_row(r))
    }

    fn set_customer_plan(&self, id: Uuid, plan: Plan, at: DateTime<Utc>) -> StoreResult<()> {
        self.execute(
            "UPDATE customers SET plan = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.to_string(), plan.as_str(), ts(&at)],
        )
    }

    fn admin_exists(&self) -> StoreResult<bool> {
        self.exists("SELECT 1 FROM customers WHERE is_admin = 1", [])
    }

    fn insert_management_key(&self, k: &ManagementKeyRow) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO management_keys ({MANAGEMENT_KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                k.id.to_string(),
                k.customer_id.to_string(),
                k.name,
                k.key_id,
                k.secret_sha256,
                ts_opt(&k.expires_at),
                ts(&k.created_at),
                ts_opt(&k.last_used_at),
                ts_opt(&k.revoked_at)
            ],
        )
    }

    fn list_management_keys(&self, customer: Uuid) -> StoreResult<Vec<ManagementKeyRow>> {
        self.rows(KEYS_OF_CUSTOMER, [customer.to_string()], |r| {
            management_key_row(r)
        })
    }

    fn get_management_key(
        &self,
        customer: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<ManagementKeyRow>> {
        self.row(KEY_BY_ID, [id.to_string(), customer.to_string()], |r| {
            management_key_row(r)
        })
    }

    fn find_management_key(&self, key_id: &str) -> StoreResult<Option<ManagementKeyRow>> {
        self.row(KEY_BY_KEY_ID, [key_id], |r| management_key_row(r))
    }

    fn revoke_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.stamp(REVOKE_KEY, at, id)
    }

    fn touch_management_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.stamp(TOUCH_KEY, at, id)
    }

    fn insert_connection(&self, c: &ConnectionRow) -> StoreResult<()> {
        self.execute(
            &format!(
                "INSERT INTO connections ({CONNECTION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            params![
                c.id.to_string(),
                c.customer_id.to_string(),
                c.name,
                c.backend.as_str(),
                c.host,
                c.port,
                json(&c.available_schemas),
                c.user,
                c.password_secret,
                json(&c.allowed_sync_modes),
                c.min_sync_interval,
                ts(&c.created_at),
                ts(&c.updated_at),
                c.ssl_mode.as_str(),
                c.ssl_root_cert_secret
            ],
        )
    }

    fn update_connection(&self, c: &ConnectionRow) -> StoreResult<()> {
        self.execute(
            "UPDATE connections SET name = ?2, host = ?3, port = ?4, available_schemas = ?5, username = ?6, \
             password_secret = ?7, allowed_sync_modes = ?8, min_sync_interval = ?9, updated_at = ?10, \
             ssl_mode = ?11, ssl_root_cert_secret = ?12 WHERE id = ?1",
            params![
                c.id.to_string(),
                c.name,
                c.host,
                c.port,
                json(&c.available_schemas),
                c.user,
                c.password_secret,
                json(&c.allowed_sync_modes),
                c.min_sync_interval,
                ts(&c.updated_at),
                c.ssl_mode.as_str(),
                c.ssl_root_cert_secret
            ],
        )
    }

    fn get_connection(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<ConnectionRow>> {
        self.row(
            CONNECTION_BY_ID,
            [id.to_string(), customer.to_string()],
            |r| connection_row(r),
        )
    }

    fn list_connections(&self, customer: Uuid) -> StoreResult<Vec<ConnectionRow>> {
        self.rows(CONNECTIONS_OF_CUSTOMER, [customer.to_string()], |r| {
            connection_row(r)
        })
    }

    fn delete_connection(&self, id: Uuid) -> StoreResult<()> {
        let id = id.to_string();
        for sql in DELETE_CONNECTION {
            self.execute(sql, [&id])?;
        }
        Ok(())
    }

    fn connection_name_taken(&self, claim: &NameClaim) -> StoreResult<bool> {
        self.name_taken(CONNECTION_NAME_TAKEN, claim)
    }

    fn insert_database(&self, d: &DatabaseRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO databases (id, customer_id, connection_id, name, mysql_db, sync_mode, sync_interval, \
             safety_net, instance_size, log_level, region, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                d.id.to_string(),
                d.customer_id.to_string(),
                d.connection_id.to_string(),
                d.name,
                d.schema,
                d.sync_mode.as_str(),
                d.sync_interval,
                d.safety_net,
                d.instance_size.as_str(),
                d.log_level.as_str(),
                d.region,
                d.status.as_str(),
                ts(&d.created_at),
                ts(&d.updated_at)
            ],
        )?;
        // Everything else through one code path.
        self.update_database(d)
    }

    fn update_database(&self, d: &DatabaseRow) -> StoreResult<()> {
        let i = &d.internal;
        self.execute(
            "UPDATE databases SET name = ?2, mysql_db = ?3, sync_mode = ?4, sync_interval = ?5, safety_net = ?6, \
             instance_size = ?7, log_level = ?8, region = ?9, binlog_server_id = ?10, build_compute_override = ?11, \
             custom_domain = ?12, pause_schedule = ?13, tags = ?14, schema_config = ?15, status = ?16, \
             desired_state = ?17, op_kind = ?18, op_step = ?19, op_started_at = ?20, op_attempt = ?21, \
             last_error = ?22, deployed_config = ?23, has_pending_changes = ?24, replication_paused = ?25, \
             active_build_id = ?26, updated_at = ?27, deleted_at = ?28, replicas = ?29 WHERE id = ?1",
            params![
                d.id.to_string(),
                d.name,
                d.schema,
                d.sync_mode.as_str(),
                d.sync_interval,
                d.safety_net,
                d.instance_size.as_str(),
                d.log_level.as_str(),
                d.region,
                d.binlog_server_id,
                d.build_compute_override.map(|b| b.as_str()),
                d.reflexdb_custom_domain,
                d.pause_schedule.as_ref().map(json),
                json(&d.tags),
                i.schema_config,
                d.status.as_str(),
                d.desired_state.map(|s| s.as_str()),
                i.operation.map(|o| o.kind.as_str()),
                i.operation.map(|o| o.step.as_str()),
                ts_opt(&i.operation.map(|o| o.started_at)),
                i.operation.map_or(0, |o| o.attempt),
                d.last_error,
                i.deployed_config.as_ref().map(json),
                d.has_pending_changes,
                d.replication_paused,
                i.active_build_id.map(|u| u.to_string()),
                ts(&d.updated_at),
                ts_opt(&i.deleted_at),
                d.replicas
            ],
        )
    }

    fn get_database(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<DatabaseRow>> {
        self.row(
            &format!(
                "{DATABASE_SELECT} WHERE d.id = ?1 AND d.customer_id = ?2 AND d.deleted_at IS NULL"
            ),
            [id.to_string(), customer.to_string()],
            |r| database_row(r),
        )
    }

    fn list_databases(
        &self,
        customer: Uuid,
        filter: &DatabaseFilter,
    ) -> StoreResult<Vec<DatabaseRow>> {
        let mut sql =
            format!("{DATABASE_SELECT} WHERE d.customer_id = ?1 AND d.deleted_at IS NULL");
        let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(customer.to_string())];
        if let Some(c) = filter.connection_id {
            args.push(Box::new(c.to_string()));
            sql.push_str(&format!(" AND d.connection_id = ?{}", args.len()));
        }
        if let Some(s) = filter.status {
            args.push(Box::new(s.as_str()));
            sql.push_str(&format!(" AND d.status = ?{}", args.len()));
        }
        if let Some(t) = &filter.tag {
            args.push(Box::new(t.clone()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(d.tags) WHERE json_extract(value, '$.label') = ?{})",
                args.len()
            ));
        }
        sql.push_str(" ORDER BY d.created_at, d.id");
        let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        self.rows(&sql, refs.as_slice(), |r| database_row(r))
    }

    fn list_all_databases(&self) -> StoreResult<Vec<DatabaseRow>> {
        self.rows(
            &format!("{DATABASE_SELECT} WHERE d.deleted_at IS NULL ORDER BY d.created_at, d.id"),
            [],
            |r| database_row(r),
        )
    }

    fn count_databases(&self, customer: Uuid) -> StoreResult<usize> {
        let n: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM databases WHERE customer_id = ?1 AND deleted_at IS NULL",
            [customer.to_string()],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    fn database_name_taken(&self, claim: &NameClaim) -> StoreResult<bool> {
        self.name_taken(DATABASE_NAME_TAKEN, claim)
    }

    fn databases_using_schemas(
        &self,
        connection: Uuid,
        schemas: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        self.rows(
            "SELECT name, mysql_db FROM databases WHERE connection_id = ?1 AND deleted_at IS NULL \
             AND mysql_db IN (SELECT value FROM json_each(?2)) ORDER BY name",
            params![connection.to_string(), json(&schemas)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn binlog_server_id_taken(&self, claim: &ServerIdClaim) -> StoreResult<bool> {
        let except: Vec<String> = claim.except.iter().map(|u| u.to_string()).collect();
        self.exists(
            "SELECT 1 FROM databases d JOIN connections c ON c.id = d.connection_id \
             WHERE d.deleted_at IS NULL AND d.binlog_server_id = ?1 AND lower(c.host) = lower(?2) AND c.port IS ?3 \
             AND d.id NOT IN (SELECT value FROM json_each(?4))",
            params![claim.server_id, claim.host, claim.port, json(&except)],
        )
    }

    fn custom_domain_taken(&self, domain: &str, except: Option<Uuid>) -> StoreResult<bool> {
        self.exists(
            CUSTOM_DOMAIN_TAKEN,
            params![domain, except.map(|u| u.to_string())],
        )
    }

    fn soft_delete_database(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.stamp(SOFT_DELETE_DATABASE, at, id)
    }

    fn insert_event(&self, e: &Event) -> StoreResult<()> {
        self.execute(
            "INSERT INTO events (database_id, at, from_status, to_status, cause, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                e.database_id.to_string(),
                ts(&e.at),
                e.from_status.map(|s| s.as_str()),
                e.to_status.as_str(),
                e.cause,
                e.message
            ],
        )
    }
}
