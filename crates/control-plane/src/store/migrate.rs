//! `refract store migrate --from sqlite:PATH --to postgres://…`: moves an installation from the
//! embedded SQLite store to PostgreSQL without losing a record.
//!
//! Every row of every table (and of the managed servers' `managed.sqlite` beside it, into schema
//! `managed`) is copied as it is (ids, hashes of keys, timestamps, the event ids
//! and their sequence), converting each SQLite value to the PostgreSQL column's type (read from
//! the target's catalog, so a column added by a later migration on both sides needs no change
//! here). The secrets move too: read from `secrets.enc` beside the SQLite file with the master
//! key, sealed again row by row in the target. Everything goes in one PostgreSQL transaction:
//! a failed migration leaves the target empty. The target must be empty (no customer yet).
//! Management and query keys keep working (their hashes move), and a control plane started on
//! the same data directory with `--store` adopts the running engines.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use postgres::types::{Json, ToSql};

use super::postgres::WRITE_LOCK;
use super::{PostgresStore, SqliteStore};
use crate::secrets::SecretStore;

/// Tables in dependency order (parents first).
const TABLES: &[&str] = &[
    "customers",
    "management_keys",
    "connections",
    "databases",
    "builds",
    "instances",
    "events",
    "query_keys",
    "database_ops",
];

/// The managed servers' tables (`managed.sqlite` → schema `managed`).
const MANAGED_TABLES: &[&str] = &["api_tokens", "databases"];

/// What a migration copied.
#[derive(Debug, Default)]
pub struct MigrationReport {
    /// Rows per table, in [`TABLES`] order.
    pub rows: Vec<(String, usize)>,
    /// Secrets sealed again in the target.
    pub secrets: usize,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, n) in &self.rows {
            writeln!(f, "{table:<16} {n} rows")?;
        }
        write!(f, "{:<16} {}", "secrets", self.secrets)
    }
}

/// Copies the SQLite store `sqlite_path` (with `secrets.enc` beside it, opened with `key`) into
/// the empty PostgreSQL store at `url` (migrated to the current schema first).
pub fn sqlite_to_postgres(
    sqlite_path: &Path,
    url: &str,
    key: [u8; 32],
) -> anyhow::Result<MigrationReport> {
    anyhow::ensure!(
        sqlite_path.is_file(),
        "{} does not exist (the SQLite metadata store is DIR/refract.db)",
        sqlite_path.display()
    );
    // Opening applies pending SQLite migrations, so both sides have the current schema.
    drop(SqliteStore::open(sqlite_path)?);
    let dir = sqlite_path.parent().unwrap_or(Path::new("."));
    let secrets = SecretStore::open(dir, key)
        .with_context(|| format!("open the secret store in {}", dir.display()))?
        .entries()?;
    let source = rusqlite::Connection::open_with_flags(
        sqlite_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    // Only into an empty database: never beside another application's tables, never over a
    // store that already holds an installation.
    let config = super::postgres::client_config(url)?;
    let tables: i64 = refract_managed::store::off_runtime(move || -> anyhow::Result<i64> {
        let mut c = config.connect(postgres::NoTls)?;
        Ok(c.query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )?
        .get(0))
    })
    .with_context(|| format!("connect to {}", super::postgres::redact(url)))?;
    if tables > 0 {
        bail!(
            "the target database is not empty ({tables} tables): migrate into a new, empty database \
             (CREATE DATABASE …)"
        );
    }
    let target = PostgresStore::open(url)?;
    // The managed servers' metadata, when there is any: its own file beside, its own schema.
    let managed_path = dir.join("managed.sqlite");
    let managed = if managed_path.is_file() {
        drop(refract_managed::store::Store::open(&managed_path)?);
        drop(refract_managed::store::Store::open_postgres(target.pool())?);
        Some(rusqlite::Connection::open_with_flags(
            &managed_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?)
    } else {
        None
    };
    let mut conn = target.conn()?;
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    let existing: i64 = tx.query_one("SELECT count(*) FROM customers", &[])?.get(0);
    if existing > 0 {
        bail!("the target store is not empty ({existing} customers): migrate into a new database");
    }
    let mut report = MigrationReport::default();
    let schema: String = tx.query_one("SELECT current_schema()", &[])?.get(0);
    for table in TABLES {
        let n = copy_table(&source, &mut tx, table, &schema, table)
            .with_context(|| format!("copy {table}"))?;
        report.rows.push((table.to_string(), n));
    }
    if let Some(managed) = &managed {
        for table in MANAGED_TABLES {
            let n = copy_table(managed, &mut tx, table, "managed", table)
                .with_context(|| format!("copy managed {table}"))?;
            report.rows.push((format!("managed.{table}"), n));
        }
    }
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('events', 'id'), GREATEST((SELECT max(id) FROM events), 1))",
        &[],
    )?;
    let pool = target.pool();
    tx.commit()?;
    drop(conn);
    let sealed = SecretStore::open_postgres(pool, key)?;
    for (name, value) in &secrets {
        sealed.put(name, value)?;
    }
    report.secrets = secrets.len();
    Ok(report)
}

/// The PostgreSQL type of each column of `table` in the target.
fn column_types(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    table: &str,
) -> anyhow::Result<HashMap<String, String>> {
    Ok(tx
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn copy_table(
    source: &rusqlite::Connection,
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    schema: &str,
    target: &str,
) -> anyhow::Result<usize> {
    let types = column_types(tx, schema, target)?;
    anyhow::ensure!(
        !types.is_empty(),
        "no table {schema}.{target} in the target"
    );
    let mut stmt = source.prepare(&format!("SELECT * FROM {table}"))?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    for c in &columns {
        anyhow::ensure!(
            types.contains_key(c),
            "column {table}.{c} has no place in the PostgreSQL schema"
        );
    }
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = tx.prepare(&format!(
        "INSERT INTO {schema}.{target} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            let v = row.get_ref(i)?;
            values.push(
                convert(v, &types[c]).with_context(|| format!("{table}.{c} of row {}", n + 1))?,
            );
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        tx.execute(&insert, &params)?;
        n += 1;
    }
    Ok(n)
}

/// One SQLite value as the PostgreSQL column type `pg_type` wants it.
fn convert(
    v: rusqlite::types::ValueRef<'_>,
    pg_type: &str,
) -> anyhow::Result<Box<dyn ToSql + Sync>> {
    use rusqlite::types::ValueRef as V;
    let text = |v: V<'_>| -> anyhow::Result<String> {
        match v {
            V::Text(t) => Ok(String::from_utf8(t.to_vec())?),
            other => bail!("expected text, found {:?}", other.data_type()),
        }
    };
    if let V::Null = v {
        return Ok(match pg_type {
            "uuid" => Box::new(None::<uuid::Uuid>),
            "timestamp with time zone" => Box::new(None::<DateTime<Utc>>),
            "jsonb" => Box::new(None::<Json<serde_json::Value>>),
            "boolean" => Box::new(None::<bool>),
            "bigint" => Box::new(None::<i64>),
            "integer" => Box::new(None::<i32>),
            _ => Box::new(None::<String>),
        });
    }
    Ok(match pg_type {
        "uuid" => Box::new(uuid::Uuid::parse_str(&text(v)?)?),
        "timestamp with time zone" => Box::new(
            DateTime::parse_from_rfc3339(&text(v)?)
                .context("a timestamp")?
                .with_timezone(&Utc),
        ),
        "jsonb" => Box::new(Json(serde_json::from_str::<serde_json::Value>(&text(v)?)?)),
        "boolean" => match v {
            V::Integer(i) => Box::new(i != 0),
            other => bail!("expected a boolean, found {:?}", other.data_type()),
        },
        "bigint" => match v {
            V::Integer(i) => Box::new(i),
            other => bail!("expected an integer, found {:?}", other.data_type()),
        },
        "integer" => match v {
            V::Integer(i) => Box::new(i32::try_from(i)?),
            other => bail!("expected an integer, found {:?}", other.data_type()),
        },
        _ => Box::new(text(v)?),
    })
}
