//! SQLite: the source is a database file (`SourceParams::host` is its path). Everything runs on
//! tokio's blocking threads: `rusqlite` is synchronous.
//!
//! The file is opened read-only. A load reads every table over one connection inside one
//! deferred read transaction (`BEGIN`; the snapshot is taken at the first `SELECT`), so all
//! tables come from one consistent state of the file. There is no change log: the position is
//! [`SourcePosition::None`].
//!
//! SQLite is dynamically typed: a cell may hold a value of another storage class than its
//! column's declared type. Such a value is converted when it can be (`'42'` in an INTEGER
//! column → 42, `3.0` → 3, `'1'` in a BOOLEAN column → true), else it is loaded as NULL. Dates
//! and times follow SQLite's own conventions: ISO-8601 text (a zone suffix is normalized to
//! UTC), INTEGER as Unix seconds, REAL as a Julian day number. See `docs/types.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use refract_schema::{
    Backend, ColumnType, ForeignKey, RowSink, SourceColumn, SourceSchema, SourceTable,
    TableManifest, ValueRef,
};
use rusqlite::types::ValueRef as Sql;
use rusqlite::{Connection, OpenFlags};

use crate::error;
use crate::load::{quote_double, refused, select_sql, LoadState, RowCounter};
use crate::types::{parse_date, parse_decimal, parse_time, parse_timestamp_utc, pow10, DAY_MICROS};
use crate::{SourceError, SourceParams, SourcePosition, TestConnectionReport};

/// How long a statement waits for a writer's lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn open(params: &SourceParams) -> Result<Connection, SourceError> {
    if params.host.trim().is_empty() {
        return Err(SourceError::Other(
            "no SQLite database file given (host is empty)".into(),
        ));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(&params.host, flags).map_err(|e| error::sqlite(e, params))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| error::sqlite(e, params))?;
    Ok(conn)
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError::Other(format!("a SQLite task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// test-connection

pub(crate) async fn test_connection(
    params: &SourceParams,
) -> Result<TestConnectionReport, SourceError> {
    let params = params.clone();
    blocking(move || {
        let conn = open(&params)?;
        let map = |e| error::sqlite(e, &params);
        // Reading the schema is what tells a database from any other file.
        let _: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(map)?;
        let t = Instant::now();
        let _: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).map_err(map)?;
        let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
        let size = std::fs::metadata(Path::new(&params.host))
            .map(|m| m.len())
            .ok();
        Ok(TestConnectionReport {
            ok: true,
            error: None,
            latency_ms: Some((latency_ms * 1000.0).round() / 1000.0),
            estimated_size_gb: size.map(|b| b as f64 / (1024.0 * 1024.0 * 1024.0)),
            available_schemas: Some(vec!["main".to_string()]),
            binlog: None,
            logical: None,
            tls: None,
            tls_version: None,
            warnings: Vec::new(),
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// introspection

pub(crate) async fn introspect(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let params = params.clone();
    blocking(move || introspect_blocking(&params)).await
}

fn introspect_blocking(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let conn = open(params)?;
    let map = |e| error::sqlite(e, params);
    let mut names: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 ORDER BY name",
            )
            .map_err(map)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(map)?;
        rows.collect::<Result<_, _>>().map_err(map)?
    };
    names.sort();

    // Page bytes per table (and its indexes are left out), when the dbstat table is compiled in.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    if let Ok(mut stmt) = conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name") {
        if let Ok(rows) = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        {
            for (n, b) in rows.flatten() {
                sizes.insert(n, u64::try_from(b).unwrap_or(0));
            }
        }
    }

    let mut tables: BTreeMap<String, SourceTable> = BTreeMap::new();
    // Lower-case name → real name, for foreign keys (SQLite names are case-insensitive).
    let mut by_lower: HashMap<String, String> = HashMap::new();
    for name in &names {
        // hidden: 0 normal, 1 hidden column of a virtual table, 2/3 generated columns.
        let mut stmt = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1) WHERE hidden <> 1 ORDER BY cid")
            .map_err(map)?;
        let cols: Vec<(String, String, bool, i64)> = stmt
            .query_map([name], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .map_err(map)?
            .collect::<Result<_, _>>()
            .map_err(map)?;
        let mut pk: Vec<(i64, String)> = cols
            .iter()
            .filter(|c| c.3 > 0)
            .map(|c| (c.3, c.0.clone()))
            .collect();
        pk.sort();
        // An INTEGER PRIMARY KEY is the rowid: never NULL even without NOT NULL.
        let rowid_pk = pk.len() == 1;
        let columns = cols
            .into_iter()
            .map(|(cname, decl, notnull, pkpos)| {
                let int_pk = rowid_pk && pkpos == 1 && decl.trim().eq_ignore_ascii_case("INTEGER");
                SourceColumn {
                    ty: crate::types::sqlite_type(&decl),
                    source_type: decl,
                    nullable: !notnull && !int_pk,
                    name: cname,
                    collation: None,
                }
            })
            .collect();
        by_lower.insert(name.to_lowercase(), name.clone());
        tables.insert(
            name.clone(),
            SourceTable {
                name: name.clone(),
                columns,
                primary_key: pk.into_iter().map(|(_, n)| n).collect(),
                foreign_keys: Vec::new(),
                estimated_bytes: sizes.get(name).copied(),
                estimated_rows: None,
            },
        );
    }

    for name in &names {
        let mut stmt = conn
            .prepare("SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
            .map_err(map)?;
        let rows: Vec<(i64, String, String, Option<String>)> = stmt
            .query_map([name], |r| Ok((r.get(0)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .map_err(map)?
            .collect::<Result<_, _>>()
            .map_err(map)?;
        let mut fks: Vec<(i64, ForeignKey, bool)> = Vec::new();
        for (id, parent, from, to) in rows {
            let Some(parent) = by_lower.get(&parent.to_lowercase()).cloned() else {
                continue;
            };
            if fks.last().is_none_or(|(last, ..)| *last != id) {
                fks.push((
                    id,
                    ForeignKey {
                        name: String::new(),
                        columns: Vec::new(),
                        referenced_table: parent,
                        referenced_columns: Vec::new(),
                    },
                    false,
                ));
            }
            let Some((_, fk, implicit)) = fks.last_mut() else {
                continue;
            };
            fk.columns.push(from);
            match to {
                Some(to) => fk.referenced_columns.push(to),
                None => *implicit = true,
            }
        }
        let mut resolved = Vec::new();
        for (_, mut fk, implicit) in fks {
            if implicit {
                // `REFERENCES parent` without columns: the parent's primary key.
                fk.referenced_columns = tables
                    .get(&fk.referenced_table)
                    .map(|t| t.primary_key.clone())
                    .unwrap_or_default();
            }
            if fk.columns.is_empty() || fk.columns.len() != fk.referenced_columns.len() {
                continue;
            }
            // SQLite keeps no constraint names here: PostgreSQL's default naming.
            fk.name = format!("{}_{}_fkey", name, fk.columns.join("_"));
            resolved.push(fk);
        }
        if let Some(t) = tables.get_mut(name) {
            t.foreign_keys = resolved;
        }
    }
    Ok(SourceSchema {
        backend: Backend::Sqlite,
        database: "main".to_string(),
        tables: tables.into_values().collect(),
        warnings: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// loading

pub(crate) async fn load<S: RowSink + Send + 'static>(
    state: &Arc<LoadState<S>>,
) -> Result<SourcePosition, SourceError> {
    let st = state.clone();
    let r = blocking(move || load_blocking(&st)).await;
    if let Err(e) = r {
        state.fail(e);
    }
    Ok(SourcePosition::None)
}

fn load_blocking<S: RowSink>(state: &LoadState<S>) -> Result<(), SourceError> {
    let (params, manifest) = (&state.params, &state.manifest);
    let conn = open(params)?;
    conn.execute_batch("BEGIN")
        .map_err(|e| error::sqlite(e, params))?;
    while let Some((i, mut sink)) = state.next() {
        let read = load_table(&conn, &manifest.tables[i], &mut sink, state, params);
        if !state.table_read(i, sink, read) {
            break;
        }
    }
    if !state.stopped() {
        let _ = conn.execute_batch("COMMIT");
    }
    Ok(())
}

fn load_table<S: RowSink, T>(
    conn: &Connection,
    table: &TableManifest,
    sink: &mut S,
    state: &LoadState<T>,
    params: &SourceParams,
) -> Result<bool, SourceError> {
    let map = |e| {
        let e = error::sqlite(e, params);
        match e {
            SourceError::Other(m) => {
                SourceError::Other(format!("table {}: {m}", table.source_name))
            }
            other => other,
        }
    };
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_double(&c.source_name))
        .collect();
    let sql = select_sql(
        &cols,
        &quote_double(&table.source_name),
        table.where_sql.as_deref(),
    );
    let mut stmt = conn.prepare(&sql).map_err(map)?;
    let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
    let mut rows = stmt.query([]).map_err(map)?;
    let mut counter = RowCounter::new(state);
    let mut scratch = String::new();
    while let Some(row) = rows.next().map_err(map)? {
        for (i, ty) in types.iter().enumerate() {
            let v = row.get_ref(i).map_err(map)?;
            push_value(sink, i, *ty, v, &mut scratch);
        }
        if !sink.end_row() {
            return Err(refused(table));
        }
        if !counter.row() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Julian day number of 1970-01-01T00:00:00.
const UNIX_EPOCH_JULIAN_DAY: f64 = 2_440_587.5;

/// A date/time cell as microseconds since the epoch (UTC): ISO text, INTEGER Unix seconds, REAL
/// Julian day.
fn instant_micros(v: Sql<'_>) -> Option<i64> {
    match v {
        Sql::Text(t) => parse_timestamp_utc(trim(t)),
        Sql::Integer(s) => s.checked_mul(1_000_000),
        Sql::Real(jd) if jd.is_finite() => {
            let us = ((jd - UNIX_EPOCH_JULIAN_DAY) * DAY_MICROS as f64).round();
            (us.abs() < 9.0e18).then_some(us as i64)
        }
        _ => None,
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn bool_text(t: &[u8]) -> Option<bool> {
    let t = trim(t);
    let is = |w: &[u8]| t.eq_ignore_ascii_case(w);
    if is(b"1") || is(b"true") || is(b"t") || is(b"yes") || is(b"y") || is(b"on") {
        Some(true)
    } else if is(b"0") || is(b"false") || is(b"f") || is(b"no") || is(b"n") || is(b"off") {
        Some(false)
    } else {
        None
    }
}

/// An integral float as an `i64`.
fn integral(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

/// Convert one cell to the column's type (see the module doc) and push it.
fn push_value<S: RowSink>(
    sink: &mut S,
    col: usize,
    ty: ColumnType,
    v: Sql<'_>,
    scratch: &mut String,
) {
    use std::fmt::Write;
    let out = match (ty, v) {
        (_, Sql::Null) => ValueRef::Null,
        (ColumnType::Int, Sql::Integer(i)) => ValueRef::Int(i),
        (ColumnType::Int, Sql::Real(f)) => integral(f).map(ValueRef::Int).unwrap_or(ValueRef::Null),
        (ColumnType::Int, Sql::Text(t)) => {
            let s = std::str::from_utf8(trim(t)).unwrap_or("");
            match s.parse::<i64>() {
                Ok(i) => ValueRef::Int(i),
                Err(_) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(integral)
                    .map(ValueRef::Int)
                    .unwrap_or(ValueRef::Null),
            }
        }
        (ColumnType::Float, Sql::Real(f)) => ValueRef::Float(f),
        (ColumnType::Float, Sql::Integer(i)) => ValueRef::Float(i as f64),
        (ColumnType::Float, Sql::Text(t)) => std::str::from_utf8(trim(t))
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(ValueRef::Float)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Decimal { scale }, Sql::Integer(i)) => i128::from(i)
            .checked_mul(pow10(u32::from(scale)))
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        // A REAL is exactly the shortest decimal that reads back as it (`0.1`, not 0.1000…0555).
        (ColumnType::Decimal { scale }, Sql::Real(f)) if f.is_finite() => {
            parse_decimal(ryu::Buffer::new().format_finite(f).as_bytes(), scale)
                .map(ValueRef::Decimal)
                .unwrap_or(ValueRef::Null)
        }
        (ColumnType::Decimal { scale }, Sql::Text(t)) => parse_decimal(trim(t), scale)
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Bool, Sql::Integer(i)) => ValueRef::Bool(i != 0),
        (ColumnType::Bool, Sql::Real(f)) => ValueRef::Bool(f != 0.0),
        (ColumnType::Bool, Sql::Text(t)) => {
            bool_text(t).map(ValueRef::Bool).unwrap_or(ValueRef::Null)
        }
        (ColumnType::Text { .. }, Sql::Text(t) | Sql::Blob(t)) => match std::str::from_utf8(t) {
            Ok(s) => ValueRef::Text(s),
            Err(_) if matches!(v, Sql::Text(_)) => {
                scratch.clear();
                scratch.push_str(&String::from_utf8_lossy(t));
                ValueRef::Text(scratch)
            }
            Err(_) => ValueRef::Null,
        },
        (ColumnType::Text { .. }, Sql::Integer(i)) => {
            scratch.clear();
            let _ = write!(scratch, "{i}");
            ValueRef::Text(scratch)
        }
        (ColumnType::Text { .. }, Sql::Real(f)) => {
            scratch.clear();
            scratch.push_str(ryu::Buffer::new().format(f));
            ValueRef::Text(scratch)
        }
        // As SQLite's CAST(x AS BLOB): text as its bytes, numbers as their text.
        (ColumnType::Bytes, Sql::Blob(b) | Sql::Text(b)) => ValueRef::Bytes(b),
        (ColumnType::Bytes, Sql::Integer(i)) => {
            scratch.clear();
            let _ = write!(scratch, "{i}");
            ValueRef::Bytes(scratch.as_bytes())
        }
        (ColumnType::Bytes, Sql::Real(f)) => {
            scratch.clear();
            scratch.push_str(ryu::Buffer::new().format(f));
            ValueRef::Bytes(scratch.as_bytes())
        }
        // JSON text goes into responses verbatim: only valid JSON is kept.
        (ColumnType::Json, Sql::Text(t)) => match std::str::from_utf8(t) {
            Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() => ValueRef::Json(s),
            _ => ValueRef::Null,
        },
        (ColumnType::Json, Sql::Integer(i)) => {
            scratch.clear();
            let _ = write!(scratch, "{i}");
            ValueRef::Json(scratch)
        }
        (ColumnType::Json, Sql::Real(f)) if f.is_finite() => {
            scratch.clear();
            scratch.push_str(ryu::Buffer::new().format_finite(f));
            ValueRef::Json(scratch)
        }
        (ColumnType::Date, Sql::Text(t)) => match parse_date(trim(t)) {
            Some(d) => ValueRef::Date(d),
            None => instant_micros(v)
                .and_then(|us| i32::try_from(us.div_euclid(DAY_MICROS)).ok())
                .map(ValueRef::Date)
                .unwrap_or(ValueRef::Null),
        },
        (ColumnType::Date, _) => instant_micros(v)
            .and_then(|us| i32::try_from(us.div_euclid(DAY_MICROS)).ok())
            .map(ValueRef::Date)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Time, Sql::Text(t)) => match parse_time(trim(t)) {
            Some(us) if (0..DAY_MICROS).contains(&us) => ValueRef::Time(us),
            Some(_) => ValueRef::Null,
            None => instant_micros(v)
                .map(|us| ValueRef::Time(us.rem_euclid(DAY_MICROS)))
                .unwrap_or(ValueRef::Null),
        },
        (ColumnType::Time, _) => instant_micros(v)
            .map(|us| ValueRef::Time(us.rem_euclid(DAY_MICROS)))
            .unwrap_or(ValueRef::Null),
        (ColumnType::DateTime, _) => instant_micros(v)
            .map(ValueRef::DateTime)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Timestamp, _) => instant_micros(v)
            .map(ValueRef::Timestamp)
            .unwrap_or(ValueRef::Null),
        _ => ValueRef::Null,
    };
    sink.push(col, out);
}
