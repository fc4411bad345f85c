//! [`PostgresStore`]: the metadata store on a shared PostgreSQL server, for several control-plane
//! replicas (`refract serve --store postgres://…`).
//!
//! Same behaviour as the SQLite store, by the same rules:
//!
//! - **Writes are serialized**, across every replica: each write transaction first takes one
//!   transaction-level advisory lock ([`WRITE_LOCK`]), so a read-then-write transaction (a name
//!   check, then the insert) sees every write committed before it, exactly like SQLite's one
//!   writer. Writes are rare (API calls and lifecycle steps), so one lock costs nothing that
//!   matters, and no transaction ever fails with a serialization error its caller would have to
//!   retry. Waiting for the lock is bounded (`lock_timeout`): a stuck peer is a 503, not a hang.
//! - **Reads** run in `REPEATABLE READ READ ONLY` transactions: one consistent snapshot, never
//!   blocked by writes.
//! - Native types: `uuid`, `timestamptz`, `jsonb`, `boolean` (the manifest, an artifact, stays
//!   `text`, byte for byte).
//! - Migrations are versioned per backend (`migrations/postgres/NNNN_*.sql`) and applied at start
//!   under a session advisory lock ([`MIGRATE_LOCK`]): replicas starting together apply each one
//!   once.
//!
//! The client is the blocking `postgres` crate (tokio-postgres underneath) in an `r2d2` pool:
//! the [`Store`] trait runs each transaction on a blocking thread, which is where a blocking
//! client belongs. Connections time out after a few seconds; a store that cannot be reached is
//! [`StoreError::Unavailable`] (HTTP 503 `store_unavailable`).

use std::cell::RefCell;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use postgres::types::{Json, ToSql};
use postgres::{IsolationLevel, Row};
use uuid::Uuid;

mod lifecycle;

use super::error::{StoreError, StoreResult};
use super::lifecycle::{Event, LifecycleTx};
use super::rows::{ConnectionRow, DatabaseRow, ManagementKeyRow};
use super::sql::*;
use super::tx::{NameClaim, ServerIdClaim, Store, Tx};
use crate::api::*;

/// Versioned migrations of the PostgreSQL backend, applied in order and recorded in
/// `schema_migrations`.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "0002_database_replicas",
        include_str!("../../migrations/postgres/0002_database_replicas.sql"),
    ),
];

/// Advisory-lock keys (one 64-bit space per database): serializing writes, migrations.
pub(crate) const WRITE_LOCK: i64 = 0x5265_6672_6163_7401; // "Refract" + 1
const MIGRATE_LOCK: i64 = 0x5265_6672_6163_7402;

/// How long a request may wait for a connection or for the write lock before the store counts as
/// unavailable.
const WAIT: Duration = Duration::from_secs(5);

/// The connection pool of the PostgreSQL store (the secret store and the managed servers'
/// metadata share it).
pub use refract_managed::store::PgPool;

/// PostgreSQL metadata store.
pub struct PostgresStore {
    pool: PgPool,
    url: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &redact(&self.url))
            .finish_non_exhaustive()
    }
}

/// Where a store URL points, for logs and errors: `postgres://user@host:port/db`, never the
/// password, whichever form it was given in (`user:pw@`, `?password=`, `key=value` pairs).
pub fn redact(url: &str) -> String {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return "<a store URL that does not parse>".into();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
            postgres::config::Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The client config of `url`, with the timeouts every store connection uses.
pub(crate) fn client_config(url: &str) -> anyhow::Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|_| anyhow::anyhow!("the store URL does not parse (not shown: it may hold a password); expected postgres://USER:PASSWORD@HOST:PORT/DB"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    config.keepalives_interval(Duration::from_secs(2));
    // A server that stops acknowledging (a network gone dark) fails the connection within
    // seconds instead of TCP's minutes.
    config.tcp_user_timeout(Duration::from_secs(10));
    // A replica that stops in the middle of a write (hung, SIGSTOPped) holds the write lock:
    // the server ends its session after 5 s idle in the transaction, so the other replicas'
    // writes go on; statements the server is running end after 30 s.
    let options = config.get_options().map(str::to_string).unwrap_or_default();
    config.options(&format!(
        "{options} -c idle_in_transaction_session_timeout=5000 -c statement_timeout=30000"
    ));
    if config.get_application_name().is_none() {
        config.application_name("refract-control-plane");
    }
    Ok(config)
}

impl PostgresStore {
    /// Connects, applies pending migrations (under a lock) and returns the store.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let config = client_config(url)?;
        // One direct connection first: the pool would only say "timed out" where the server
        // said why (password, database, host).
        let probe = config.clone();
        refract_managed::store::off_runtime(move || probe.connect(postgres::NoTls))
            .map(drop)
            .with_context(|| format!("connect to the metadata store {}", redact(url)))?;
        let manager = refract_managed::store::PgManager::new(config);
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(WAIT)
            // A connection the server dropped (restart, failover) is replaced, not handed out.
            .test_on_check_out(true)
            .build(manager)
            .with_context(|| format!("connect to the metadata store {}", redact(url)))?;
        let store = PostgresStore {
            pool,
            url: url.to_string(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> anyhow::Result<()> {
        refract_managed::store::apply_migrations(
            &self.pool,
            MIGRATE_LOCK,
            "SELECT 1",
            "schema_migrations",
            MIGRATIONS,
        )
    }

    /// The URL this store connects to (for the leader lease and wake-ups, which hold their own
    /// connections).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection pool (the secret store's rows live in the same database).
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// A pooled connection, or [`StoreError::Unavailable`].
    pub(crate) fn conn(&self) -> StoreResult<refract_managed::store::PgConnection> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(format!("no connection to PostgreSQL: {e}")))
    }

    fn run(&self, write: bool, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()> {
        let mut conn = self.conn()?;
        let mut builder = conn.build_transaction();
        builder = if write {
            builder.isolation_level(IsolationLevel::ReadCommitted)
        } else {
            builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
        };
        let mut tx = builder.start()?;
        if write {
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '30s'",
                WAIT.as_millis()
            ))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        } else {
            tx.batch_execute("SET LOCAL statement_timeout = '30s'")?;
        }
        let pg = PgTx(RefCell::new(tx));
        f(&pg)?; // an error drops the transaction, which rolls back
        pg.0.into_inner().commit()?;
        Ok(())
    }
}

impl Store for PostgresStore {
    fn write(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()> {
        self.run(true, f)
    }

    fn read(&self, f: &mut dyn FnMut(&dyn Tx) -> StoreResult<()>) -> StoreResult<()> {
        self.run(false, f)
    }
}

// ------------------------------------------------------------------ errors and decoding

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        let code = e.code();
        // Lost or refused connections, a server shutting down, a lock or statement that waited
        // too long: the store is unavailable for now, the request may be retried.
        let unavailable = e.is_closed()
            || code.is_none()
            || [
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .iter()
            .any(|c| Some(c) == code);
        if unavailable {
            StoreError::Unavailable(format!("PostgreSQL: {e}"))
        } else {
            StoreError::Postgres(e.to_string())
        }
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} in metadata store: {value:?}"))
}

fn json<T: serde::Serialize>(v: &T) -> Json<serde_json::Value> {
    Json(serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
}

/// Native types: `uuid`, `timestamptz` and `jsonb` decode as they are.
impl StoredRow for Row {
    type Error = StoreError;

    fn value<T: PlainColumn>(&self, i: usize) -> StoreResult<T> {
        Ok(self.try_get(i)?)
    }

    fn uuid(&self, i: usize) -> StoreResult<Uuid> {
        Ok(self.try_get(i)?)
    }

    fn uuid_opt(&self, i: usize) -> StoreResult<Option<Uuid>> {
        Ok(self.try_get(i)?)
    }

    fn time(&self, i: usize) -> StoreResult<DateTime<Utc>> {
        Ok(self.try_get(i)?)
    }

    fn time_opt(&self, i: usize) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.try_get(i)?)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<T> {
        let v: serde_json::Value = self.try_get(i)?;
        serde_json::from_value(v.clone()).map_err(|_| corrupt("json", &v.to_string()))
    }

    fn json_opt<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<Option<T>> {
        let v: Option<serde_json::Value> = self.try_get(i)?;
        v.map(|v| serde_json::from_value(v.clone()).map_err(|_| corrupt("json", &v.to_string())))
            .transpose()
    }

    fn json_lenient<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<Option<T>> {
        let v: Option<serde_json::Value> = self.try_get(i)?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }

    fn corrupt(what: &str, value: &str) -> StoreError {
        corrupt(what, value)
    }
}

/// The latest live instance of each database supplies `endpointUrl` and `healthStatus`.
const DATABASE_SELECT: &str = concat!(
    "SELECT ",
    database_columns!(),
    " FROM databases d LEFT JOIN LATERAL (SELECT endpoint_url, health_status FROM instances \
     WHERE database_id = d.id AND stopped_at IS NULL ORDER BY created_at DESC LIMIT 1) i ON true"
);

/// One transaction. `postgres::Transaction` takes `&mut self`; [`Tx`] reads and writes through
/// `&self`, and a transaction is only ever used by the one thread running the closure.
pub(crate) struct PgTx<'a>(RefCell<postgres::Transaction<'a>>);

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl PgTx<'_> {
    fn execute(&self, sql: &str, params: &Params) -> StoreResult<()> {
        self.0.borrow_mut().execute(sql, params)?;
        Ok(())
    }

    /// Runs `sql`, which writes time `$1` into row `$2`.
    fn stamp(&self, sql: &str, at: DateTime<Utc>, id: Uuid) -> StoreResult<()> {
        self.execute(sql, &[&at, &id])
    }

    fn rows<T>(
        &self,
        sql: &str,
        params: &Params,
        decode: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let rows = self.0.borrow_mut().query(sql, params)?;
        rows.iter().map(decode).collect()
    }

    fn row<T>(
        &self,
        sql: &str,
        params: &Params,
        decode: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = self.0.borrow_mut().query_opt(sql, params)?;
        row.as_ref().map(decode).transpose()
    }

    fn exists(&self, sql: &str, params: &Params) -> StoreResult<bool> {
        let row = self
            .0
            .borrow_mut()
            .query_one(&format!("SELECT EXISTS({sql})"), params)?;
        Ok(row.try_get(0)?)
    }
}

impl Tx for PgTx<'_> {
    fn lifecycle(&self) -> &dyn LifecycleTx {
        self
    }

    fn insert_customer(&self, c: &Customer) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO customers ({CUSTOMER_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &c.id,
                &c.name,
                &c.plan.as_str(),
                &c.is_admin,
                &c.created_at,
                &c.updated_at,
            ],
        )
    }

    fn get_customer(&self, id: Uuid) -> StoreResult<Option<Customer>> {
        self.row(CUSTOMER_BY_ID, &[&id], customer_row)
    }

    fn list_customers(&self) -> StoreResult<Vec<Customer>> {
        self.rows(ALL_CUSTOMERS, &[], customer_row)
    }

    fn set_customer_plan(&self, id: Uuid, plan: Plan, at: DateTime<Utc>) -> StoreResult<()> {
        self.execute(
            "UPDATE customers SET plan = $2, updated_at = $3 WHERE id = $1",
            &[&id, &plan.as_str(), &at],
        )
    }

    fn admin_exists(&self) -> StoreResult<bool> {
        self.exists("SELECT 1 FROM customers WHERE is_admin", &[])
    }

    fn insert_management_key(&self, k: &ManagementKeyRow) -> StoreResult<()> {
        self.execute(
            &format!(
                "INSERT INTO management_keys ({MANAGEMENT_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &k.id,
                &k.customer_id,
                &k.name,
                &k.key_id,
                &k.secret_sha256,
                &k.expires_at,
                &k.created_at,
                &k.last_used_at,
                &k.revoked_at,
            ],
        )
    }

    fn list_management_keys(&self, customer: Uuid) -> StoreResult<Vec<ManagementKeyRow>> {
        self.rows(KEYS_OF_CUSTOMER, &[&customer], management_key_row)
    }

    fn get_management_key(
        &self,
        customer: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<ManagementKeyRow>> {
        self.row(KEY_BY_ID, &[&id, &customer], management_key_row)
    }

    fn find_management_key(&self, key_id: &str) -> StoreResult<Option<ManagementKeyRow>> {
        self.row(KEY_BY_KEY_ID, &[&key_id], management_key_row)
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
                "INSERT INTO connections ({CONNECTION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15)"
            ),
            &[
                &c.id,
                &c.customer_id,
                &c.name,
                &c.backend.as_str(),
                &c.host,
                &c.port,
                &json(&c.available_schemas),
                &c.user,
                &c.password_secret,
                &json(&c.allowed_sync_modes),
                &c.min_sync_interval,
                &c.created_at,
                &c.updated_at,
                &c.ssl_mode.as_str(),
                &c.ssl_root_cert_secret,
            ],
        )
    }

    fn update_connection(&self, c: &ConnectionRow) -> StoreResult<()> {
        self.execute(
            "UPDATE connections SET name = $2, host = $3, port = $4, available_schemas = $5, username = $6, \
             password_secret = $7, allowed_sync_modes = $8, min_sync_interval = $9, updated_at = $10, \
             ssl_mode = $11, ssl_root_cert_secret = $12 WHERE id = $1",
            &[
                &c.id,
                &c.name,
                &c.host,
                &c.port,
                &json(&c.available_schemas),
                &c.user,
                &c.password_secret,
                &json(&c.allowed_sync_modes),
                &c.min_sync_interval,
                &c.updated_at,
                &c.ssl_mode.as_str(),
                &c.ssl_root_cert_secret,
            ],
        )
    }

    fn get_connection(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<ConnectionRow>> {
        self.row(CONNECTION_BY_ID, &[&id, &customer], connection_row)
    }

    fn list_connections(&self, customer: Uuid) -> StoreResult<Vec<ConnectionRow>> {
        self.rows(CONNECTIONS_OF_CUSTOMER, &[&customer], connection_row)
    }

    fn delete_connection(&self, id: Uuid) -> StoreResult<()> {
        for sql in DELETE_CONNECTION {
            self.execute(sql, &[&id])?;
        }
        Ok(())
    }

    fn connection_name_taken(&self, claim: &NameClaim) -> StoreResult<bool> {
        self.exists(
            CONNECTION_NAME_TAKEN,
            &[&claim.owner, &claim.name, &claim.except],
        )
    }

    fn insert_database(&self, d: &DatabaseRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO databases (id, customer_id, connection_id, name, mysql_db, sync_mode, sync_interval, \
             safety_net, instance_size, log_level, region, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &d.id,
                &d.customer_id,
                &d.connection_id,
                &d.name,
                &d.schema,
                &d.sync_mode.as_str(),
                &d.sync_interval,
                &d.safety_net,
                &d.instance_size.as_str(),
                &d.log_level.as_str(),
                &d.region,
                &d.status.as_str(),
                &d.created_at,
                &d.updated_at,
            ],
        )?;
        // Everything else through one code path.
        self.update_database(d)
    }

    fn update_database(&self, d: &DatabaseRow) -> StoreResult<()> {
        let i = &d.internal;
        self.execute(
            "UPDATE databases SET name = $2, mysql_db = $3, sync_mode = $4, sync_interval = $5, safety_net = $6, \
             instance_size = $7, log_level = $8, region = $9, binlog_server_id = $10, build_compute_override = $11, \
             custom_domain = $12, pause_schedule = $13, tags = $14, schema_config = $15, status = $16, \
             desired_state = $17, op_kind = $18, op_step = $19, op_started_at = $20, op_attempt = $21, \
             last_error = $22, deployed_config = $23, has_pending_changes = $24, replication_paused = $25, \
             active_build_id = $26, updated_at = $27, deleted_at = $28, replicas = $29 WHERE id = $1",
            &[
                &d.id,
                &d.name,
                &d.schema,
                &d.sync_mode.as_str(),
                &d.sync_interval,
                &d.safety_net,
                &d.instance_size.as_str(),
                &d.log_level.as_str(),
                &d.region,
                &d.binlog_server_id,
                &d.build_compute_override.map(|b| b.as_str()),
                &d.reflexdb_custom_domain,
                &d.pause_schedule.as_ref().map(json),
                &json(&d.tags),
                &i.schema_config,
                &d.status.as_str(),
                &d.desired_state.map(|s| s.as_str()),
                &i.operation.map(|o| o.kind.as_str()),
                &i.operation.map(|o| o.step.as_str()),
                &i.operation.map(|o| o.started_at),
                &i.operation.map_or(0, |o| o.attempt),
                &d.last_error,
                &i.deployed_config.as_ref().map(json),
                &d.has_pending_changes,
                &d.replication_paused,
                &i.active_build_id,
                &d.updated_at,
                &i.deleted_at,
                &d.replicas,
            ],
        )
    }

    fn get_database(&self, customer: Uuid, id: Uuid) -> StoreResult<Option<DatabaseRow>> {
        self.row(
            &format!(
                "{DATABASE_SELECT} WHERE d.id = $1 AND d.customer_id = $2 AND d.deleted_at IS NULL"
            ),
            &[&id, &customer],
            database_row,
        )
    }

    fn list_databases(
        &self,
        customer: Uuid,
        filter: &DatabaseFilter,
    ) -> StoreResult<Vec<DatabaseRow>> {
        let status = filter.status.map(|s| s.as_str());
        self.rows(
            &format!(
                "{DATABASE_SELECT} WHERE d.customer_id = $1 AND d.deleted_at IS NULL \
                 AND ($2::uuid IS NULL OR d.connection_id = $2) \
                 AND ($3::text IS NULL OR d.status = $3) \
                 AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements(d.tags) t \
                 WHERE t->>'label' = $4)) \
                 ORDER BY d.created_at, d.id"
            ),
            &[&customer, &filter.connection_id, &status, &filter.tag],
            database_row,
        )
    }

    fn list_all_databases(&self) -> StoreResult<Vec<DatabaseRow>> {
        self.rows(
            &format!("{DATABASE_SELECT} WHERE d.deleted_at IS NULL ORDER BY d.created_at, d.id"),
            &[],
            database_row,
        )
    }

    fn count_databases(&self, customer: Uuid) -> StoreResult<usize> {
        let row = self.0.borrow_mut().query_one(
            "SELECT COUNT(*) FROM databases WHERE customer_id = $1 AND deleted_at IS NULL",
            &[&customer],
        )?;
        let n: i64 = row.try_get(0)?;
        Ok(n as usize)
    }

    fn database_name_taken(&self, claim: &NameClaim) -> StoreResult<bool> {
        self.exists(
            DATABASE_NAME_TAKEN,
            &[&claim.owner, &claim.name, &claim.except],
        )
    }

    fn databases_using_schemas(
        &self,
        connection: Uuid,
        schemas: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        self.rows(
            "SELECT name, mysql_db FROM databases WHERE connection_id = $1 AND deleted_at IS NULL \
             AND mysql_db = ANY($2) ORDER BY name",
            &[&connection, &schemas],
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
    }

    fn binlog_server_id_taken(&self, claim: &ServerIdClaim) -> StoreResult<bool> {
        self.exists(
            "SELECT 1 FROM databases d JOIN connections c ON c.id = d.connection_id \
             WHERE d.deleted_at IS NULL AND d.binlog_server_id = $1 AND lower(c.host) = lower($2) \
             AND c.port IS NOT DISTINCT FROM $3 AND NOT (d.id = ANY($4))",
            &[&claim.server_id, &claim.host, &claim.port, &claim.except],
        )
    }

    fn custom_domain_taken(&self, domain: &str, except: Option<Uuid>) -> StoreResult<bool> {
        self.exists(CUSTOM_DOMAIN_TAKEN, &[&domain, &except])
    }

    fn soft_delete_database(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        self.stamp(SOFT_DELETE_DATABASE, at, id)
    }

    fn insert_event(&self, e: &Event) -> StoreResult<()> {
        self.execute(
            "INSERT INTO events (database_id, at, from_status, to_status, cause, message) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &e.database_id,
                &e.at,
                &e.from_status.map(|s| s.as_str()),
                &e.to_status.as_str(),
                &e.cause,
                &e.message,
            ],
        )
    }
}
