//! The managed metadata store: one SQLite file, `DIR/managed.sqlite`, with versioned migrations
//! (`crates/managed/migrations/`, recorded in `schema_migrations`) — or, when the control plane
//! runs on a PostgreSQL store shared by replicas, schema `managed` of that database
//! (`migrations/postgres/`, `store/postgres.rs`), through the control plane's pool.
//!
//! # What do we store?
//! - **api_tokens**: `dkc_` tokens — customer, name, scopes, the SHA-256 of the secret part,
//!   `last_used_at`. Never the token itself.
//! - **databases**: one row per managed server — what was asked (type, version, plan, storage,
//!   replicas), the **intent** (`desired_state`, `restart_requested`) and the **observed progress**
//!   (`status`, `error_kind`/`error_message`, `nodes_ready`, `ports`, `purged`). Destroyed rows
//!   stay (their ids answer `destroyed`), with `purged` once their files are gone.
//!
//! Never passwords: those are in the secret store under `managed/<id>/<role>`.
//!
//! Why a file of its own rather than tables in `refract.db`: the managed servers have their own
//! lifecycle and their own reconciler, and this crate must not depend on the control plane's
//! store traits (which other work changes concurrently); a separate file keeps the two schemas
//! and their migrations independent. Both live in the same data directory and are backed up together.

use std::path::Path;
use std::sync::{LazyLock, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use crate::api::{DbType, Status};
use crate::error::ManagedError;

/// Versioned migrations, applied in order on open.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "0001_init", include_str!("../migrations/0001_init.sql"))];

/// The managed metadata: the SQLite file (one connection; the managed API writes rarely), or
/// schema `managed` of the control plane's PostgreSQL store when replicas share one.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(postgres::PgStore),
}

type StoreResult<T> = Result<T, StoreError>;

mod postgres;
mod records;
pub use postgres::{apply_migrations, off_runtime, PgClient, PgConnection, PgManager, PgPool};
use records::{db_values, DbValue, DbWrites, DB_COLUMNS, TOKEN_COLUMNS};
pub use records::{
    now, slug, DbRecord, Desired, ErrorKind, Goal, Owner, Placement, StoreError, TokenRecord,
};

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn bad(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?} in managed.sqlite").into(),
    )
}

fn db_from_row(r: &Row<'_>) -> rusqlite::Result<DbRecord> {
    let db_type: String = r.get(5)?;
    let desired: String = r.get(13)?;
    let status: String = r.get(15)?;
    let error_kind: Option<String> = r.get(16)?;
    let ports: String = r.get(19)?;
    Ok(DbRecord {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        project_id: r.get(2)?,
        name: r.get(3)?,
        slug: r.get(4)?,
        db_type: DbType::parse(&db_type).ok_or_else(|| bad("db_type", &db_type))?,
        version: r.get(6)?,
        requested_version: r.get(7)?,
        server_version: r.get(8)?,
        plan_id: r.get(9)?,
        region: r.get(10)?,
        storage_gb: r.get(11)?,
        replicas: r.get(12)?,
        desired: Desired::parse(&desired).ok_or_else(|| bad("desired_state", &desired))?,
        restart_requested: r.get(14)?,
        status: Status::parse(&status).ok_or_else(|| bad("status", &status))?,
        error_kind: match error_kind {
            Some(k) => Some(ErrorKind::parse(&k).ok_or_else(|| bad("error_kind", &k))?),
            None => None,
        },
        error_message: r.get(17)?,
        nodes_ready: r.get::<_, i64>(18)? as usize,
        ports: serde_json::from_str(&ports).map_err(|_| bad("ports", &ports))?,
        purged: r.get(20)?,
        created_at: parse_ts(&r.get::<_, String>(21)?)?,
        updated_at: parse_ts(&r.get::<_, String>(22)?)?,
    })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scopes: String = r.get(5)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        name: r.get(2)?,
        key_id: r.get(3)?,
        secret_sha256: r.get(4)?,
        scopes: serde_json::from_str(&scopes).map_err(|_| bad("scopes", &scopes))?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        last_used_at: match r.get::<_, Option<String>>(7)? {
            Some(t) => Some(parse_ts(&t)?),
            None => None,
        },
    })
}

fn get_in(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<DbRecord>> {
    conn.query_row(
        &format!("SELECT {DB_COLUMNS} FROM databases WHERE id = ?1"),
        [id],
        db_from_row,
    )
    .optional()
}

/// The statements that write a record here.
static DB_WRITES: LazyLock<DbWrites> =
    LazyLock::new(|| DbWrites::new("databases", |n| format!("?{n}")));

impl rusqlite::ToSql for DbValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            DbValue::Text(s) => s.to_sql(),
            DbValue::MaybeText(s) => s.to_sql(),
            DbValue::Int(n) => n.to_sql(),
            DbValue::Bool(b) => b.to_sql(),
            DbValue::Ports(ports) => Ok(serde_json::to_string(ports)
                .unwrap_or_else(|_| "[]".into())
                .into()),
            DbValue::Time(t) => Ok(ts(t).into()),
        }
    }
}

fn save_in(conn: &rusqlite::Connection, d: &DbRecord) -> rusqlite::Result<()> {
    let values = db_values(d);
    let bound = DB_WRITES.save_binds.iter().map(|i| &values[*i]);
    conn.execute(&DB_WRITES.save, rusqlite::params_from_iter(bound))?;
    Ok(())
}

fn name_taken(conn: &rusqlite::Connection, d: &DbRecord) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM databases WHERE customer_id = ?1 AND project_id = ?2 AND name = ?3 AND status <> 'destroyed')",
        [&d.customer_id, &d.project_id, &d.name],
        |r| r.get(0),
    )
}

/// A customer's databases that are not destroyed, but `except`.
fn live_of(
    conn: &rusqlite::Connection,
    customer: &str,
    except: Option<&str>,
) -> rusqlite::Result<Vec<DbRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DB_COLUMNS} FROM databases WHERE customer_id = ?1 AND status <> 'destroyed' AND id <> ?2 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([customer, except.unwrap_or("")], db_from_row)?;
    rows.collect()
}

fn insert_in(conn: &rusqlite::Connection, d: &DbRecord) -> rusqlite::Result<()> {
    conn.execute(&DB_WRITES.insert, rusqlite::params_from_iter(db_values(d)))?;
    Ok(())
}

impl Store {
    /// Opens (creating, mode 0600) and migrates `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        use anyhow::Context;
        let conn =
            rusqlite::Connection::open(path).with_context(|| format!("open {}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )?;
        let applied: i64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        for (version, name, sql) in MIGRATIONS {
            if *version <= applied {
                continue;
            }
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {name}"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, ts(&now())],
            )?;
            tx.commit()?;
        }
        let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if applied > latest {
            anyhow::bail!(
                "{} was written by a newer Refract (schema version {applied})",
                path.display()
            );
        }
        Ok(Store {
            backend: Backend::Sqlite(Mutex::new(conn)),
        })
    }

    /// The managed metadata in schema `managed` of the control plane's PostgreSQL store
    /// (migrated on open).
    pub fn open_postgres(pool: PgPool) -> anyhow::Result<Store> {
        Ok(Store {
            backend: Backend::Postgres(postgres::PgStore::open(pool)?),
        })
    }

    fn lock(conn: &Mutex<rusqlite::Connection>) -> MutexGuard<'_, rusqlite::Connection> {
        conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ------------------------------------------------------------------ tokens

    /// Inserts a token.
    pub fn insert_token(&self, t: &TokenRecord) -> StoreResult<()> {
        match &self.backend {
            Backend::Postgres(pg) => pg.insert_token(t),
            Backend::Sqlite(conn) => {
                Self::lock(conn).execute(
                    &format!(
                        "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ),
                    params![
                        t.id,
                        t.customer_id,
                        t.name,
                        t.key_id,
                        t.secret_sha256,
                        serde_json::to_string(&t.scopes).unwrap_or_else(|_| "[]".into()),
                        ts(&t.created_at),
                        t.last_used_at.as_ref().map(ts),
                    ],
                )?;
                Ok(())
            }
        }
    }

    /// The token with this public key id.
    pub fn find_token(&self, key_id: &str) -> StoreResult<Option<TokenRecord>> {
        match &self.backend {
            Backend::Postgres(pg) => pg.find_token(key_id),
            Backend::Sqlite(conn) => Ok(Self::lock(conn)
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE key_id = ?1"),
                    [key_id],
                    token_from_row,
                )
                .optional()?),
        }
    }

    /// A customer's tokens, oldest first.
    pub fn list_tokens(&self, customer: &str) -> StoreResult<Vec<TokenRecord>> {
        match &self.backend {
            Backend::Postgres(pg) => pg.list_tokens(customer),
            Backend::Sqlite(conn) => {
                let conn = Self::lock(conn);
                let mut stmt = conn.prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE customer_id = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([customer], token_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
        }
    }

    /// Deletes a customer's token; false when there is none.
    pub fn delete_token(&self, customer: &str, id: &str) -> StoreResult<bool> {
        match &self.backend {
            Backend::Postgres(pg) => pg.delete_token(customer, id),
            Backend::Sqlite(conn) => Ok(Self::lock(conn).execute(
                "DELETE FROM api_tokens WHERE customer_id = ?1 AND id = ?2",
                [customer, id],
            )? > 0),
        }
    }

    /// Records a use of a token.
    pub fn touch_token(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        match &self.backend {
            Backend::Postgres(pg) => pg.touch_token(id, at),
            Backend::Sqlite(conn) => {
                Self::lock(conn).execute(
                    "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                    params![id, ts(&at)],
                )?;
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------------ databases

    /// Inserts a database, unless a live one of the same customer and project has its name
    /// (then `Ok(false)`, nothing inserted).
    pub fn insert_database(&self, d: &DbRecord) -> Result<bool, ManagedError> {
        self.insert_database_checked(d, |_| Ok(()))
    }

    /// [`Store::insert_database`], after `check` accepted the customer's live databases (not
    /// destroyed) — atomically, so two requests cannot both pass a quota check.
    pub fn insert_database_checked(
        &self,
        d: &DbRecord,
        check: impl FnOnce(&[DbRecord]) -> Result<(), ManagedError> + Send,
    ) -> Result<bool, ManagedError> {
        match &self.backend {
            Backend::Postgres(pg) => pg.insert_database_checked(d, check),
            Backend::Sqlite(conn) => {
                let conn = Self::lock(conn);
                if name_taken(&conn, d)? {
                    return Ok(false);
                }
                check(&live_of(&conn, &d.customer_id, None)?)?;
                insert_in(&conn, d)?;
                Ok(true)
            }
        }
    }

    /// Replaces every mutable column of a database with `d`'s values.
    pub fn save_database(&self, d: &DbRecord) -> StoreResult<()> {
        match &self.backend {
            Backend::Postgres(pg) => pg.save_database(d),
            Backend::Sqlite(conn) => Ok(save_in(&Self::lock(conn), d)?),
        }
    }

    /// One database (any customer; callers check ownership).
    pub fn get_database(&self, id: &str) -> StoreResult<Option<DbRecord>> {
        match &self.backend {
            Backend::Postgres(pg) => pg.get_database(id),
            Backend::Sqlite(conn) => Ok(get_in(&Self::lock(conn), id)?),
        }
    }

    /// Reads a database, lets `f` change it, and saves it (with a new `updated_at`) when `f`
    /// succeeds — atomically with respect to every other write, so that the API (intent) and the
    /// reconciler (progress) never lose each other's changes. `Ok(None)` when there is no such id.
    pub fn update<T: Send>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DbRecord) -> Result<T, ManagedError> + Send,
    ) -> Result<Option<(T, DbRecord)>, ManagedError> {
        self.update_with_others(id, |d, _| f(d))
    }

    /// [`Store::update`], where `f` also sees the owner's other live databases (for quotas).
    pub fn update_with_others<T: Send>(
        &self,
        id: &str,
        f: impl FnOnce(&mut DbRecord, &[DbRecord]) -> Result<T, ManagedError> + Send,
    ) -> Result<Option<(T, DbRecord)>, ManagedError> {
        match &self.backend {
            Backend::Postgres(pg) => pg.update_with_others(id, f),
            Backend::Sqlite(conn) => {
                let conn = Self::lock(conn);
                let Some(mut d) = get_in(&conn, id)? else {
                    return Ok(None);
                };
                let others = live_of(&conn, &d.customer_id, Some(id))?;
                let out = f(&mut d, &others)?;
                d.updated_at = now();
                save_in(&conn, &d)?;
                Ok(Some((out, d)))
            }
        }
    }

    /// A customer's databases, oldest first (destroyed ones included; callers filter).
    pub fn list_databases(&self, customer: &str) -> StoreResult<Vec<DbRecord>> {
        match &self.backend {
            Backend::Postgres(pg) => pg.list_databases(customer),
            Backend::Sqlite(conn) => {
                let conn = Self::lock(conn);
                let mut stmt = conn.prepare(&format!(
                    "SELECT {DB_COLUMNS} FROM databases WHERE customer_id = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([customer], db_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
        }
    }

    /// Every database the reconciler still has work for (all but the purged ones).
    pub fn list_active(&self) -> StoreResult<Vec<DbRecord>> {
        match &self.backend {
            Backend::Postgres(pg) => pg.list_active(),
            Backend::Sqlite(conn) => {
                let conn = Self::lock(conn);
                let mut stmt = conn.prepare(&format!(
                    "SELECT {DB_COLUMNS} FROM databases WHERE purged = 0 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([], db_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
        }
    }
}

/// A fresh record as the service creates it (wanted running, `provisioning`, no servers), for
/// the unit tests of this crate; tests change the fields they are about.
#[cfg(test)]
pub(crate) fn test_record(id: &str, name: &str, db_type: DbType) -> DbRecord {
    let version = match db_type {
        DbType::Postgresql => "15",
        DbType::Mysql => "10.11",
        DbType::Redis | DbType::Mongodb => "7.0",
    };
    DbRecord::new(
        id.into(),
        Owner {
            customer_id: "c1".into(),
            project_id: "proj_default".into(),
        },
        name.into(),
        db_type,
        crate::catalog::ResolvedVersion {
            version: version.into(),
            requested: None,
        },
        Placement {
            plan_id: "db-s-1vcpu-1gb".into(),
            region: "local".into(),
            storage_gb: 10,
            replicas: 1,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> DbRecord {
        test_record(id, name, DbType::Redis)
    }

    /// A PostgreSQL database of the test server (`REFRACT_TEST_PG_URL`, from `scripts/testenv`)
    /// for one test, and a pool on it; dropped after the test.
    struct PgDatabase {
        admin_url: String,
        name: String,
        pool: PgPool,
    }

    impl PgDatabase {
        fn create() -> PgDatabase {
            let admin_url = std::env::var("REFRACT_TEST_PG_URL").unwrap_or_else(|_| {
                panic!("REFRACT_TEST_PG_URL is not set: run the tests with ./scripts/test")
            });
            let name = format!("refract_managed_{}", rand::random::<u32>());
            ::postgres::Client::connect(&admin_url, ::postgres::NoTls)
                .unwrap()
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            let config: ::postgres::Config = format!("{base}/{name}").parse().unwrap();
            let pool = r2d2::Pool::builder()
                .max_size(4)
                .build(PgManager::new(config))
                .unwrap();
            PgDatabase {
                admin_url,
                name,
                pool,
            }
        }
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            if let Ok(mut c) = ::postgres::Client::connect(&self.admin_url, ::postgres::NoTls) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    /// The same checks on both backends.
    fn both(check: fn(&dyn Fn() -> Store)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.sqlite");
        check(&|| Store::open(&path).unwrap());
        let pg = PgDatabase::create();
        check(&|| Store::open_postgres(pg.pool.clone()).unwrap());
    }

    #[test]
    fn databases_round_trip_and_names_are_unique_while_live() {
        both(|open| {
            let store = open();
            let mut a = record("db_a", "cache");
            assert!(store.insert_database(&a).unwrap());
            assert!(
                !store.insert_database(&record("db_b", "cache")).unwrap(),
                "duplicate live name"
            );
            a.status = Status::Destroyed;
            a.desired = Desired::Destroyed;
            a.error_kind = Some(ErrorKind::Quota);
            a.ports = vec![1234, 1235];
            store.save_database(&a).unwrap();
            assert_eq!(store.get_database("db_a").unwrap().unwrap(), a);
            assert!(
                store.insert_database(&record("db_b", "cache")).unwrap(),
                "name free once destroyed"
            );
            drop(store);
            let again = open();
            assert_eq!(again.list_databases("c1").unwrap().len(), 2);
            assert_eq!(again.list_active().unwrap().len(), 2);
            let (n, d) = again
                .update("db_b", |d| {
                    d.nodes_ready = 2;
                    Ok(7)
                })
                .unwrap()
                .unwrap();
            assert_eq!((n, d.nodes_ready), (7, 2));
            assert_eq!(again.get_database("db_b").unwrap().unwrap(), d);
            assert!(again.update("db_none", |_| Ok(())).unwrap().is_none());
        });
    }

    #[test]
    fn tokens_round_trip() {
        both(|open| {
            let store = open();
            let t = TokenRecord {
                id: "tok_1".into(),
                customer_id: "c1".into(),
                name: "ci".into(),
                key_id: "k1".into(),
                secret_sha256: "ab".into(),
                scopes: vec!["database:read".into()],
                created_at: now(),
                last_used_at: None,
            };
            store.insert_token(&t).unwrap();
            assert!(store.insert_token(&t).is_err(), "key ids are unique");
            assert_eq!(store.find_token("k1").unwrap().unwrap(), t);
            let at = now();
            store.touch_token("tok_1", at).unwrap();
            assert_eq!(store.list_tokens("c1").unwrap()[0].last_used_at, Some(at));
            assert!(store.list_tokens("c2").unwrap().is_empty());
            assert!(
                !store.delete_token("c2", "tok_1").unwrap(),
                "another customer's"
            );
            assert!(store.delete_token("c1", "tok_1").unwrap());
            assert!(store.find_token("k1").unwrap().is_none());
        });
    }

    /// A quota check and its insert are atomic: of several requests racing for the last slot,
    /// one wins (on PostgreSQL across connections, as across replicas).
    #[test]
    fn quota_checks_are_atomic() {
        both(|open| {
            let store = std::sync::Arc::new(open());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        store
                            .insert_database_checked(
                                &record(&format!("db_{i}"), &format!("n{i}")),
                                |live| {
                                    std::thread::sleep(std::time::Duration::from_millis(30));
                                    if live.is_empty() {
                                        Ok(())
                                    } else {
                                        Err(ManagedError::Internal(anyhow::anyhow!("quota")))
                                    }
                                },
                            )
                            .is_ok()
                    })
                })
                .collect();
            let won = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(won, 1);
            assert_eq!(store.list_active().unwrap().len(), 1);
        });
    }
}
