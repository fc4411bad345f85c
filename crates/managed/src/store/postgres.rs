//! The managed metadata on the control plane's PostgreSQL store (several replicas): tables in
//! schema `managed` of the same database, through the control plane's connection pool. Same
//! behaviour as the SQLite file: every write takes one advisory lock ([`MANAGED_WRITE_LOCK`]),
//! so "check, then write" (a name, a quota, the reconciler's read-modify-write) is atomic across
//! replicas exactly as the SQLite store's one connection makes it within one process.

use std::sync::LazyLock;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use postgres::types::{IsNull, Json, ToSql, Type};
use postgres::{NoTls, Row};

use super::records::{
    db_values, now, DbRecord, DbValue, DbWrites, Desired, ErrorKind, StoreError, TokenRecord,
    DB_COLUMNS, TOKEN_COLUMNS,
};
use crate::api::{DbType, Status};
use crate::error::ManagedError;

/// A pool of connections to the PostgreSQL metadata store (the control plane's).
pub type PgPool = r2d2::Pool<PgManager>;

/// A pooled connection of [`PgPool`].
pub type PgConnection = r2d2::PooledConnection<PgManager>;

/// The r2d2 manager of [`PgPool`]: blocking `postgres` clients that are dropped off any async
/// runtime. (Dropping a blocking client runs its own small runtime to close the connection,
/// which panics on a thread that drives async tasks — and the last handle of a pool is often
/// dropped there, e.g. when `refract serve` shuts down.)
#[derive(Debug)]
pub struct PgManager {
    config: postgres::Config,
}

impl PgManager {
    /// Connections made with `config`.
    pub fn new(config: postgres::Config) -> Self {
        PgManager { config }
    }
}

/// A blocking client that closes off the async runtime when dropped. Derefs to the client.
pub struct PgClient(Option<postgres::Client>);

impl std::ops::Deref for PgClient {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("a live client")
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("a live client")
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Detached: nothing waits for a closing connection.
                let _ = std::thread::Builder::new()
                    .name("pg-close".into())
                    .spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgClient, postgres::Error> {
        let config = self.config.clone();
        off_runtime(move || config.connect(NoTls)).map(|c| PgClient(Some(c)))
    }

    fn is_valid(&self, conn: &mut PgClient) -> Result<(), postgres::Error> {
        conn.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.is_closed()
    }
}

/// Serializes managed-metadata writes across replicas (its own key: control-plane writes do not
/// wait for it).
const MANAGED_WRITE_LOCK: i64 = 0x5265_6672_6163_7410;
const MIGRATE_LOCK: i64 = 0x5265_6672_6163_7411;

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "0001_init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

/// Runs `f` (blocking PostgreSQL calls) on a thread of its own: the blocking client runs a
/// runtime of its own, which may not start on a thread that drives async tasks, and callers are
/// sometimes async code. The metadata is touched rarely; a thread per call costs nothing here.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Applies the `migrations` not yet recorded in `table` (created if needed, after `setup`), each
/// in its own transaction, under the session advisory lock `lock`: replicas starting together
/// apply each one once. Shared by the control plane's store and this one.
pub fn apply_migrations(
    pool: &PgPool,
    lock: i64,
    setup: &str,
    table: &str,
    migrations: &[(i64, &str, &str)],
) -> anyhow::Result<()> {
    use anyhow::Context;
    off_runtime(|| {
        let mut conn = pool.get().context("connect to the metadata store")?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&lock])?;
        let result = (|| -> anyhow::Result<()> {
            conn.batch_execute(&format!(
                "{setup}; CREATE TABLE IF NOT EXISTS {table} (version bigint PRIMARY KEY, \
                 name text NOT NULL, applied_at timestamptz NOT NULL)"
            ))?;
            for (version, name, sql) in migrations {
                let mut tx = conn.transaction()?;
                let done: bool = tx
                    .query_one(
                        &format!("SELECT EXISTS(SELECT 1 FROM {table} WHERE version = $1)"),
                        &[version],
                    )?
                    .get(0);
                if !done {
                    tx.batch_execute(sql)
                        .with_context(|| format!("migration {name}"))?;
                    tx.execute(
                        &format!(
                            "INSERT INTO {table} (version, name, applied_at) VALUES ($1, $2, now())"
                        ),
                        &[version, name],
                    )?;
                    tracing::info!(migration = name, table, "applied metadata store migration");
                }
                tx.commit()?;
            }
            Ok(())
        })();
        let _ = conn.execute("SELECT pg_advisory_unlock($1)", &[&lock]);
        result
    })
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e.to_string())
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Postgres(format!("no connection to PostgreSQL: {e}"))
    }
}

fn bad(what: &str, value: &str) -> StoreError {
    StoreError::Postgres(format!("unknown {what} {value:?} in the managed metadata"))
}

fn db_from_row(r: &Row) -> Result<DbRecord, StoreError> {
    let db_type: String = r.try_get(5)?;
    let desired: String = r.try_get(13)?;
    let status: String = r.try_get(15)?;
    let error_kind: Option<String> = r.try_get(16)?;
    let Json(ports): Json<Vec<u16>> = r.try_get(19)?;
    Ok(DbRecord {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        project_id: r.try_get(2)?,
        name: r.try_get(3)?,
        slug: r.try_get(4)?,
        db_type: DbType::parse(&db_type).ok_or_else(|| bad("db_type", &db_type))?,
        version: r.try_get(6)?,
        requested_version: r.try_get(7)?,
        server_version: r.try_get(8)?,
        plan_id: r.try_get(9)?,
        region: r.try_get(10)?,
        storage_gb: r.try_get(11)?,
        replicas: r.try_get(12)?,
        desired: Desired::parse(&desired).ok_or_else(|| bad("desired_state", &desired))?,
        restart_requested: r.try_get(14)?,
        status: Status::parse(&status).ok_or_else(|| bad("status", &status))?,
        error_kind: match error_kind {
            Some(k) => Some(ErrorKind::parse(&k).ok_or_else(|| bad("error_kind", &k))?),
            None => None,
        },
        error_message: r.try_get(17)?,
        nodes_ready: r.try_get::<_, i64>(18)? as usize,
        ports,
        purged: r.try_get(20)?,
        created_at: r.try_get(21)?,
        updated_at: r.try_get(22)?,
    })
}

fn token_from_row(r: &Row) -> Result<TokenRecord, StoreError> {
    let Json(scopes): Json<Vec<String>> = r.try_get(5)?;
    Ok(TokenRecord {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        name: r.try_get(2)?,
        key_id: r.try_get(3)?,
        secret_sha256: r.try_get(4)?,
        scopes,
        created_at: r.try_get(6)?,
        last_used_at: r.try_get(7)?,
    })
}

type Client<'a> = postgres::Transaction<'a>;

fn get_in(c: &mut Client<'_>, id: &str) -> Result<Option<DbRecord>, StoreError> {
    c.query_opt(
        &format!("SELECT {DB_COLUMNS} FROM managed.databases WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(db_from_row)
    .transpose()
}

/// The statements that write a record here.
static DB_WRITES: LazyLock<DbWrites> =
    LazyLock::new(|| DbWrites::new("managed.databases", |n| format!("${n}")));

impl ToSql for DbValue<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql_checked(ty, out)
    }

    /// Each kind checks the column's type itself, in `to_sql_checked`.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            DbValue::Text(s) => s.to_sql_checked(ty, out),
            DbValue::MaybeText(s) => s.to_sql_checked(ty, out),
            DbValue::Int(n) => n.to_sql_checked(ty, out),
            DbValue::Bool(b) => b.to_sql_checked(ty, out),
            DbValue::Ports(ports) => Json(ports).to_sql_checked(ty, out),
            DbValue::Time(t) => t.to_sql_checked(ty, out),
        }
    }
}

fn save_in(c: &mut Client<'_>, d: &DbRecord) -> Result<(), StoreError> {
    let values = db_values(d);
    let bound: Vec<&(dyn ToSql + Sync)> = DB_WRITES
        .save_binds
        .iter()
        .map(|i| &values[*i] as &(dyn ToSql + Sync))
        .collect();
    c.execute(&DB_WRITES.save, &bound)?;
    Ok(())
}

fn name_taken(c: &mut Client<'_>, d: &DbRecord) -> Result<bool, StoreError> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM managed.databases WHERE customer_id = $1 AND project_id = $2 \
         AND name = $3 AND status <> 'destroyed')",
        &[&d.customer_id, &d.project_id, &d.name],
    )?
    .try_get(0)?)
}

fn live_of(
    c: &mut Client<'_>,
    customer: &str,
    except: Option<&str>,
) -> Result<Vec<DbRecord>, StoreError> {
    c.query(
        &format!(
            "SELECT {DB_COLUMNS} FROM managed.databases WHERE customer_id = $1 AND status <> 'destroyed' \
             AND id <> $2 ORDER BY created_at, id"
        ),
        &[&customer, &except.unwrap_or("")],
    )?
    .iter()
    .map(db_from_row)
    .collect()
}

fn insert_in(c: &mut Client<'_>, d: &DbRecord) -> Result<(), StoreError> {
    let values = db_values(d);
    let bound: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    c.execute(&DB_WRITES.insert, &bound)?;
    Ok(())
}

/// The managed metadata in PostgreSQL.
pub(super) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Creates schema `managed` and applies pending migrations (under a lock: replicas starting
    /// together apply each once).
    pub(super) fn open(pool: PgPool) -> anyhow::Result<PgStore> {
        apply_migrations(
            &pool,
            MIGRATE_LOCK,
            "CREATE SCHEMA IF NOT EXISTS managed",
            "managed.schema_migrations",
            MIGRATIONS,
        )?;
        Ok(PgStore { pool })
    }

    /// Runs `f` in one transaction (a write one: under the managed write lock) off the runtime.
    fn tx<T: Send>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Client<'_>) -> Result<T, ManagedError> + Send,
    ) -> Result<T, ManagedError> {
        off_runtime(|| {
            let mut conn = self.pool.get().map_err(StoreError::from)?;
            let mut tx = conn.transaction().map_err(StoreError::from)?;
            if write {
                tx.batch_execute("SET LOCAL lock_timeout = '5s'")
                    .map_err(StoreError::from)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MANAGED_WRITE_LOCK])
                    .map_err(StoreError::from)?;
            }
            let out = f(&mut tx)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(out)
        })
    }

    fn store_tx<T: Send>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Client<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.tx(write, |c| f(c).map_err(ManagedError::from))
            .map_err(|e| match e {
                ManagedError::Internal(e) => StoreError::Postgres(format!("{e:#}")),
                other => StoreError::Postgres(other.to_string()),
            })
    }

    pub(super) fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.store_tx(true, |c| {
            c.execute(
                &format!(
                    "INSERT INTO managed.api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &t.id,
                    &t.customer_id,
                    &t.name,
                    &t.key_id,
                    &t.secret_sha256,
                    &Json(&t.scopes),
                    &t.created_at,
                    &t.last_used_at,
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn find_token(&self, key_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.store_tx(false, |c| {
            c.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM managed.api_tokens WHERE key_id = $1"),
                &[&key_id],
            )?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    pub(super) fn list_tokens(&self, customer: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.store_tx(false, |c| {
            c.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM managed.api_tokens WHERE customer_id = $1 ORDER BY created_at, id"
                ),
                &[&customer],
            )?
            .iter()
            .map(token_from_row)
            .collect()
        })
    }

    pub(super) fn delete_token(&self, customer: &str, id: &str) -> Result<bool, StoreError> {
        self.store_tx(true, |c| {
            Ok(c.execute(
                "DELETE FROM managed.api_tokens WHERE customer_id = $1 AND id = $2",
                &[&customer, &id],
            )? > 0)
        })
    }

    pub(super) fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.store_tx(true, |c| {
            c.execute(
                "UPDATE managed.api_tokens SET last_used_at = $2 WHERE id = $1",
                &[&id, &at],
            )?;
            Ok(())
        })
    }

    pub(super) fn insert_database_checked(
        &self,
        d: &DbRecord,
        check: impl FnOnce(&[DbRecord]) -> Result<(), ManagedError> + Send,
    ) -> Result<bool, ManagedError> {
        self.tx(true, |c| {
            if name_taken(c, d)? {
                return Ok(false);
            }
            check(&live_of(c, &d.customer_id, None)?)?;
            insert_in(c, d)?;
            Ok(true)
        })
    }

    pub(super) fn save_database(&self, d: &DbRecord) -> Result<(), StoreError> {
        self.store_tx(true, |c| save_in(c, d))
    }

    pub(super) fn get_database(&self, id: &str) -> Result<Option<DbRecord>, StoreError> {
        self.store_tx(false, |c| get_in(c, id))
    }

    pub(super) fn update_with_others<T: Send>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DbRecord, &[DbRecord]) -> Result<T, ManagedError> + Send,
    ) -> Result<Option<(T, DbRecord)>, ManagedError> {
        self.tx(true, |c| {
            let Some(mut d) = get_in(c, id)? else {
                return Ok(None);
            };
            let others = live_of(c, &d.customer_id, Some(id))?;
            let out = f(&mut d, &others)?;
            d.updated_at = now();
            save_in(c, &d)?;
            Ok(Some((out, d)))
        })
    }

    pub(super) fn list_databases(&self, customer: &str) -> Result<Vec<DbRecord>, StoreError> {
        self.store_tx(false, |c| {
            c.query(
                &format!(
                    "SELECT {DB_COLUMNS} FROM managed.databases WHERE customer_id = $1 ORDER BY created_at, id"
                ),
                &[&customer],
            )?
            .iter()
            .map(db_from_row)
            .collect()
        })
    }

    pub(super) fn list_active(&self) -> Result<Vec<DbRecord>, StoreError> {
        self.store_tx(false, |c| {
            c.query(
                &format!(
                    "SELECT {DB_COLUMNS} FROM managed.databases WHERE NOT purged ORDER BY created_at, id"
                ),
                &[],
            )?
            .iter()
            .map(db_from_row)
            .collect()
        })
    }
}
