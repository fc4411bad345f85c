//! PostgreSQL: connection check, introspection through `pg_catalog`, and loads that stream each
//! table with `COPY (SELECT …) TO STDOUT (FORMAT binary)` and decode the binary tuples straight
//! into the sink (no text formatting on the server, no parsing on our side for the common types).
//!
//! Every load connection reads inside one exported snapshot: the first connection runs
//! `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot(), pg_current_wal_lsn()`
//! and the others `SET TRANSACTION SNAPSHOT '…'`. A caller that already holds an exported
//! snapshot (a logical replication slot created with `EXPORT_SNAPSHOT`) passes it in instead
//! ([`crate::LoadOptions::snapshot`]), so the load and the change stream meet exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{pin_mut, StreamExt};
use refract_schema::{
    Backend, ColumnType, ForeignKey, Manifest, RowSink, SourceColumn, SourceSchema, SourceTable,
    TableManifest, ValueRef,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::{Client, Config};

use crate::error::{self, timed_out};
use crate::load::{drive, quote_double, refused, select_sql, LoadState, RowCounter};
use crate::types::{decode_hex, parse_decimal, parse_temporal, pow10, PgColumnInfo, DAY_MICROS};
use crate::{
    ExportedSnapshot, LogicalReadiness, SourceError, SourceParams, SourcePosition,
    TestConnectionReport,
};

/// Connect timeout for loads and introspection (test-connection has its own, shorter one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * DAY_MICROS;

/// The schema exposed when none is configured.
const DEFAULT_SCHEMA: &str = "public";

/// Session settings of every connection: text forms (only used for `::text` fallbacks) in ISO
/// and UTC; no server-side timeout may cut a long load or the idle exporting transaction.
const SESSION_SETUP: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0";

fn config(params: &SourceParams, db: &str, timeout: Duration) -> Config {
    let mut c = Config::new();
    c.host(&params.host)
        .port(if params.port == 0 { 5432 } else { params.port })
        .user(&params.user)
        .dbname(db)
        .application_name("refract")
        .connect_timeout(timeout)
        .keepalives(true)
        .ssl_mode(crate::tls::pg_ssl_mode(&params.tls));
    if let Some(pw) = &params.password {
        c.password(pw.as_bytes());
    }
    c
}

/// Connect and spawn the connection task; the raw driver error on failure.
async fn connect_raw(
    params: &SourceParams,
    db: &str,
    timeout: Duration,
) -> Result<Result<Client, tokio_postgres::Error>, SourceError> {
    let tls = crate::tls::PgTls::new(&params.tls)?;
    match tokio::time::timeout(timeout, config(params, db, timeout).connect(tls)).await {
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres connection ended: {e}");
                }
            });
            Ok(Ok(client))
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(_) => Err(timed_out(params, "connecting to", timeout)),
    }
}

async fn connect(
    params: &SourceParams,
    db: &str,
    timeout: Duration,
) -> Result<Client, SourceError> {
    connect_raw(params, db, timeout)
        .await?
        .map_err(|e| error::pg(e, params))
}

fn schema_name<'a>(params: &'a SourceParams, manifest: Option<&'a Manifest>) -> &'a str {
    manifest
        .and_then(|m| m.pg_schema.as_deref())
        .or(params.pg_schema.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SCHEMA)
}

// ---------------------------------------------------------------------------------------------
// test-connection

pub(crate) async fn test_connection(
    params: &SourceParams,
    timeout: Duration,
) -> Result<TestConnectionReport, SourceError> {
    let client = match params.database.as_deref() {
        Some(db) => connect(params, db, timeout).await?,
        // `postgres` usually exists; `template1` always does (but may refuse connections).
        None => match connect_raw(params, "postgres", timeout).await? {
            Ok(c) => c,
            Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                connect(params, "template1", timeout).await?
            }
            Err(e) => return Err(error::pg(e, params)),
        },
    };
    let map = |e| error::pg(e, params);
    client.simple_query("SELECT 1").await.map_err(map)?;
    let t = Instant::now();
    client.simple_query("SELECT 1").await.map_err(map)?;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;

    let rows = client
        .query(
            "SELECT datname::text, pg_database_size(oid)::float8 FROM pg_database \
             WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT') \
             AND datname NOT IN ('template0', 'template1') ORDER BY datname",
            &[],
        )
        .await
        .map_err(map)?;
    let mut schemas = Vec::with_capacity(rows.len());
    let mut bytes = 0f64;
    for r in &rows {
        schemas.push(r.get::<_, String>(0));
        bytes += r.get::<_, Option<f64>>(1).unwrap_or(0.0);
    }
    let logical = logical_readiness(&client, params).await?;
    // pg_stat_ssl (9.5+): whether this session is encrypted, and how.
    let (tls, tls_version) = match client
        .query_opt(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
    {
        Ok(Some(r)) => (r.get::<_, Option<bool>>(0), r.get::<_, Option<String>>(1)),
        _ => (None, None),
    };
    Ok(TestConnectionReport {
        ok: true,
        error: None,
        tls,
        tls_version,
        latency_ms: Some((latency_ms * 1000.0).round() / 1000.0),
        estimated_size_gb: Some(bytes / (1024.0 * 1024.0 * 1024.0)),
        available_schemas: Some(schemas),
        binlog: None,
        logical: Some(logical),
        warnings: key_warnings(&client).await.unwrap_or_default(),
    })
}

/// Test-connection warnings for the connected database: tables without a primary key, and
/// tables the user may not SELECT (a load of them would fail).
async fn key_warnings(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), \
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'), \
               has_table_privilege(c.oid, 'SELECT') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1",
            &[],
        )
        .await?;
    let mut keyless = Vec::new();
    let mut unreadable = Vec::new();
    for r in &rows {
        let name: String = r.get(0);
        if !r.get::<_, bool>(1) {
            keyless.push(name.clone());
        }
        if !r.get::<_, bool>(2) {
            unreadable.push(name);
        }
    }
    Ok([
        crate::table_warning(
            &keyless,
            keyless.len(),
            "have no primary key (lookups by key scan them; a change stream reloads them on inserts)",
        ),
        crate::table_warning(
            &unreadable,
            unreadable.len(),
            "cannot be read by this user (GRANT SELECT ON … TO the user, or exclude them in the schema config)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// What `logical` sync needs: `wal_level = logical`, a role with `REPLICATION` (or superuser),
/// a free replication slot and WAL sender, and the right to create a publication over the
/// exposed tables (`CREATE` on the database, and owning the tables or being superuser).
async fn logical_readiness(
    client: &Client,
    params: &SourceParams,
) -> Result<LogicalReadiness, SourceError> {
    let map = |e| error::pg(e, params);
    let r = client
        .query_one(
            "SELECT current_setting('wal_level'), \
               COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false), \
               COALESCE((SELECT rolreplication FROM pg_roles WHERE rolname = current_user), false), \
               current_setting('max_replication_slots')::int, \
               (SELECT count(*) FROM pg_replication_slots)::int, \
               current_setting('max_wal_senders')::int, \
               (SELECT count(*) FROM pg_stat_replication)::int, \
               has_database_privilege(current_database(), 'CREATE'), \
               pg_is_in_recovery(), \
               current_setting('server_version_num')::int, \
               current_user::text, current_database()::text",
            &[],
        )
        .await
        .map_err(map)?;
    let wal_level: String = r.get(0);
    let superuser: bool = r.get(1);
    let replication: bool = r.get(2);
    let (max_slots, used_slots): (i32, i32) = (r.get(3), r.get(4));
    let (max_senders, used_senders): (i32, i32) = (r.get(5), r.get(6));
    let can_create: bool = r.get(7);
    let standby: bool = r.get(8);
    let version: i32 = r.get(9);
    let user: String = r.get(10);
    let db: String = r.get(11);

    let mut issues = Vec::new();
    if wal_level != "logical" {
        issues.push(format!(
            "wal_level is {wal_level}, must be logical (ALTER SYSTEM SET wal_level = logical; then restart the server)"
        ));
    }
    if !superuser && !replication {
        issues.push(format!(
            "role {user} lacks the REPLICATION attribute (ALTER ROLE {user} WITH REPLICATION)"
        ));
    }
    if max_slots <= used_slots {
        issues.push(format!(
            "no free replication slot: max_replication_slots = {max_slots}, {used_slots} in use (raise max_replication_slots; then restart the server)"
        ));
    }
    if max_senders <= used_senders {
        issues.push(format!(
            "no free WAL sender: max_wal_senders = {max_senders}, {used_senders} in use (raise max_wal_senders; then restart the server)"
        ));
    }
    if standby && version < 160_000 {
        issues.push(
            "the server is a standby: logical decoding on a standby needs PostgreSQL 16 or later"
                .into(),
        );
    }
    let mut covered = false;
    if !superuser && params.database.is_some() {
        // The engine creates its publication when the user owns every table; else it uses one an
        // owner created that covers every table (inserts, updates, deletes). Same rule here,
        // over the schema's tables (the exposed ones are not known before the build).
        let schema = schema_name(params, None);
        let row = client
            .query_one(
                "WITH t AS (SELECT c.relname::text AS name, pg_has_role(c.relowner, 'USAGE') AS owned \
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname = $1::text AND c.relkind IN ('r', 'p') AND NOT c.relispartition) \
                 SELECT (SELECT count(*) FROM t WHERE NOT owned)::int, \
                   (SELECT string_agg(format('%I.%I', $1::text, name), ', ' ORDER BY name) FROM t), \
                   EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubinsert AND p.pubupdate AND p.pubdelete \
                     AND NOT EXISTS (SELECT 1 FROM t WHERE t.name NOT IN (SELECT pt.tablename::text \
                       FROM pg_publication_tables pt WHERE pt.pubname = p.pubname AND pt.schemaname::text = $1::text)))",
                &[&schema],
            )
            .await
            .map_err(map)?;
        let foreign: i32 = row.get(0);
        let tables: Option<String> = row.get(1);
        covered = row.get(2);
        if foreign > 0 && !covered {
            issues.push(format!(
                "{foreign} table(s) in schema {schema} are not owned by {user} and no publication covers every \
                 table: have an owner of the tables (or a superuser) run `CREATE PUBLICATION refract FOR TABLE {};` \
                 (any name: Refract uses a publication that covers every exposed table), or make {user} their owner",
                tables.unwrap_or_default()
            ));
        }
    }
    if !superuser && !can_create && !covered {
        issues.push(format!(
            "cannot create a publication: missing CREATE on database {db} (GRANT CREATE ON DATABASE {db} TO {user}), \
             or have an owner create one over the exposed tables"
        ));
    }
    Ok(LogicalReadiness {
        wal_level: Some(wal_level),
        ready: issues.is_empty(),
        issues,
    })
}

// ---------------------------------------------------------------------------------------------
// introspection

/// One `pg_type` row, as far as the mapping needs it.
struct TypeRow {
    name: String,
    typtype: String,
    category: String,
    base: u32,
    typmod: i32,
}

pub(crate) async fn introspect(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let db = params
        .database
        .clone()
        .ok_or_else(|| SourceError::Other("no database given to introspect".into()))?;
    let schema = schema_name(params, None).to_string();
    let client = connect(params, &db, CONNECT_TIMEOUT).await?;
    let map = |e| error::pg(e, params);

    let ns = client
        .query_opt(
            "SELECT oid FROM pg_namespace WHERE nspname = $1::text",
            &[&schema],
        )
        .await
        .map_err(map)?;
    let Some(ns) = ns else {
        return Err(SourceError::Other(format!(
            "schema `{schema}` does not exist in database `{db}` (set pg_schema in the schema config)"
        )));
    };
    let ns: u32 = ns.get(0);

    // Base tables and partitioned parents (their partitions are read through the parent).
    let table_rows = client
        .query(
            "SELECT c.oid, c.relname::text, \
               CASE WHEN c.relkind = 'p' THEN \
                 (SELECT COALESCE(sum(pg_table_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t WHERE t.isleaf)::int8 \
               ELSE pg_table_size(c.oid) END, \
               CASE WHEN c.relkind = 'p' THEN \
                 (SELECT sum(p.reltuples) FILTER (WHERE p.reltuples >= 0) FROM pg_partition_tree(c.oid) t \
                  JOIN pg_class p ON p.oid = t.relid WHERE t.isleaf)::float8 \
               ELSE c.reltuples::float8 END \
             FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             AND (has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT')) \
             ORDER BY c.relname",
            &[&ns],
        )
        .await
        .map_err(map)?;
    let mut tables: BTreeMap<String, SourceTable> = BTreeMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    for r in &table_rows {
        let oid: u32 = r.get(0);
        let name: String = r.get(1);
        let bytes: Option<i64> = r.get(2);
        let rows: Option<f64> = r.get(3);
        names.insert(oid, name.clone());
        let bytes = bytes.and_then(|b| u64::try_from(b).ok());
        // reltuples is -1 until the table was first vacuumed or analyzed.
        let rows = rows.filter(|r| *r >= 0.0).map(|r| r.round() as u64);
        tables.insert(name.clone(), SourceTable::named(name, bytes, rows));
    }
    let oids: Vec<u32> = names.keys().copied().collect();

    let column_rows = client
        .query(
            "SELECT a.attrelid, a.attnum, a.attname::text, a.attnotnull, format_type(a.atttypid, a.atttypmod), \
               a.atttypid, a.atttypmod, co.collname::text, co.collisdeterministic \
             FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
             AND has_column_privilege(a.attrelid, a.attnum, 'SELECT') \
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(map)?;

    // Types of the columns, domains resolved down to their base type.
    let mut types: HashMap<u32, TypeRow> = HashMap::new();
    let mut wanted: Vec<u32> = column_rows.iter().map(|r| r.get::<_, u32>(5)).collect();
    for _ in 0..16 {
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|o| !types.contains_key(o));
        if wanted.is_empty() {
            break;
        }
        let rows = client
            .query(
                "SELECT oid, typname::text, typtype::text, typcategory::text, typbasetype, typtypmod \
                 FROM pg_type WHERE oid = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(map)?;
        wanted.clear();
        for r in rows {
            let t = TypeRow {
                name: r.get(1),
                typtype: r.get(2),
                category: r.get(3),
                base: r.get(4),
                typmod: r.get(5),
            };
            if t.typtype == "d" {
                wanted.push(t.base);
            }
            types.insert(r.get(0), t);
        }
    }

    let mut attnames: HashMap<(u32, i16), String> = HashMap::new();
    for r in &column_rows {
        let rel: u32 = r.get(0);
        let attnum: i16 = r.get(1);
        let name: String = r.get(2);
        let notnull: bool = r.get(3);
        let source_type: String = r.get(4);
        let mut oid: u32 = r.get(5);
        let mut typmod: i32 = r.get(6);
        let collation: Option<String> = r.get(7);
        let deterministic: Option<bool> = r.get(8);
        // Follow domains to the base type; the innermost declared modifier wins.
        let mut depth = 0;
        while let Some(t) = types.get(&oid).filter(|t| t.typtype == "d") {
            if typmod < 0 {
                typmod = t.typmod;
            }
            oid = t.base;
            depth += 1;
            if depth > 16 {
                break;
            }
        }
        let ty = match types.get(&oid) {
            Some(t) => {
                let ty = crate::types::pg_type(&PgColumnInfo {
                    typname: &t.name,
                    typtype: &t.typtype,
                    typcategory: &t.category,
                    typmod,
                });
                match ty {
                    // An array is a JSON array when its column type names it (`integer[]`); a
                    // domain over an array, `int2vector`/`oidvector` and `box[]` (whose elements
                    // are separated by `;`) stay text.
                    ColumnType::Json
                        if t.category == "A"
                            && (!source_type.ends_with("[]")
                                || source_type.starts_with("box[")) =>
                    {
                        ColumnType::Text {
                            case_insensitive: false,
                        }
                    }
                    // Nondeterministic collations (ICU, e.g. `und-u-ks-level2`) compare
                    // case-insensitively.
                    ColumnType::Text {
                        case_insensitive: false,
                    } if deterministic == Some(false) => ColumnType::Text {
                        case_insensitive: true,
                    },
                    other => other,
                }
            }
            None => ColumnType::Text {
                case_insensitive: false,
            },
        };
        let Some(tname) = names.get(&rel) else {
            continue;
        };
        let Some(t) = tables.get_mut(tname) else {
            continue;
        };
        attnames.insert((rel, attnum), name.clone());
        t.columns.push(SourceColumn {
            name,
            source_type,
            ty,
            nullable: !notnull,
            collation,
        });
    }

    // Keys. Constraints cloned onto partitions (conparentid <> 0) are left out.
    let key_rows = client
        .query(
            "SELECT conrelid, conname::text, contype::text, conkey, confrelid, confkey FROM pg_constraint \
             WHERE conrelid = ANY($1) AND contype IN ('p', 'f') AND conparentid = 0 \
             ORDER BY conrelid, conname",
            &[&oids],
        )
        .await
        .map_err(map)?;
    for r in &key_rows {
        let rel: u32 = r.get(0);
        let conname: String = r.get(1);
        let kind: String = r.get(2);
        let conkey: Vec<i16> = r.get::<_, Option<Vec<i16>>>(3).unwrap_or_default();
        let frel: u32 = r.get(4);
        let confkey: Vec<i16> = r.get::<_, Option<Vec<i16>>>(5).unwrap_or_default();
        let Some(t) = names.get(&rel).and_then(|n| tables.get_mut(n)) else {
            continue;
        };
        // Keys over columns the user cannot read are left out whole.
        let cols: Option<Vec<String>> = conkey
            .iter()
            .map(|k| attnames.get(&(rel, *k)).cloned())
            .collect();
        let Some(cols) = cols else { continue };
        if kind == "p" {
            t.primary_key = cols;
            continue;
        }
        let Some(ref_table) = names.get(&frel) else {
            continue; // only keys within this schema are relations
        };
        let refs: Option<Vec<String>> = confkey
            .iter()
            .map(|k| attnames.get(&(frel, *k)).cloned())
            .collect();
        let Some(refs) = refs else { continue };
        if refs.len() != cols.len() || cols.is_empty() {
            continue;
        }
        t.foreign_keys.push(ForeignKey {
            name: conname,
            columns: cols,
            referenced_table: ref_table.clone(),
            referenced_columns: refs,
        });
    }
    Ok(SourceSchema {
        backend: Backend::Postgres,
        database: db,
        tables: tables.into_values().collect(),
        warnings: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// loading

/// Load in a snapshot of our own (`snapshot: None`: exported by the first connection) or in a
/// snapshot another session exported and keeps alive until this returns.
pub(crate) async fn load<S: RowSink + Send + 'static>(
    state: &Arc<LoadState<S>>,
    parallelism: usize,
    snapshot: Option<&ExportedSnapshot>,
) -> Result<SourcePosition, SourceError> {
    let (params, manifest) = (&state.params, &state.manifest);
    let db = manifest.database.clone();
    let map = |e| error::pg(e, params);
    let opened = futures_util::future::join_all(
        (0..parallelism.max(1)).map(|_| connect(params, &db, CONNECT_TIMEOUT)),
    )
    .await;
    let mut conns = Vec::with_capacity(opened.len());
    for c in opened {
        let c = c?;
        c.batch_execute(SESSION_SETUP).await.map_err(map)?;
        conns.push(c);
    }

    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    let position;
    match snapshot {
        Some(s) => {
            let set = format!(
                "{BEGIN}; SET TRANSACTION SNAPSHOT '{}'",
                s.name.replace('\'', "''")
            );
            let imports =
                futures_util::future::join_all(conns.iter().map(|c| c.batch_execute(&set))).await;
            for r in imports {
                r.map_err(map)?;
            }
            position = SourcePosition::Lsn { lsn: s.lsn.clone() };
        }
        None => {
            let coord = &conns[0];
            coord.batch_execute(BEGIN).await.map_err(map)?;
            let lsn_sql = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                           ELSE pg_current_wal_lsn() END)::text";
            let exported = if conns.len() > 1 {
                match coord
                    .query_one(&format!("SELECT pg_export_snapshot(), ({lsn_sql})"), &[])
                    .await
                {
                    Ok(r) => Some((r.get::<_, String>(0), r.get::<_, Option<String>>(1))),
                    Err(e) => {
                        tracing::warn!(
                            "cannot export a snapshot ({}); loading over one connection",
                            error::pg(e, params)
                        );
                        coord
                            .batch_execute(&format!("ROLLBACK; {BEGIN}"))
                            .await
                            .map_err(map)?;
                        None
                    }
                }
            } else {
                None
            };
            let lsn = match exported {
                Some((name, lsn)) => {
                    let set = format!(
                        "{BEGIN}; SET TRANSACTION SNAPSHOT '{}'",
                        name.replace('\'', "''")
                    );
                    let imports = futures_util::future::join_all(
                        conns[1..].iter().map(|c| c.batch_execute(&set)),
                    )
                    .await;
                    for r in imports {
                        r.map_err(map)?;
                    }
                    lsn
                }
                None => {
                    conns.truncate(1);
                    let r = conns[0].query_one(lsn_sql, &[]).await.map_err(map)?;
                    r.get::<_, Option<String>>(0)
                }
            };
            position = match lsn {
                Some(lsn) => SourcePosition::Lsn { lsn },
                None => SourcePosition::None,
            };
        }
    }

    let schema = schema_name(params, Some(manifest)).to_string();
    let schema = Arc::new(schema);
    // The first connection holds the exported snapshot: it reads too, so it stays open (and the
    // snapshot valid) until the others have imported it, which they did above.
    let tasks = conns
        .into_iter()
        .map(|c| worker(c, schema.clone(), state.clone()))
        .collect();
    drive(state, tasks).await;
    Ok(position)
}

async fn worker<S: RowSink + Send + 'static>(
    client: Client,
    schema: Arc<String>,
    state: Arc<LoadState<S>>,
) {
    while let Some((i, mut sink)) = state.next() {
        let table = &state.manifest.tables[i];
        let read = load_table(&client, &schema, table, &mut sink, &state, &state.params).await;
        if !state.table_read(i, sink, read) {
            break;
        }
    }
    // After a failure, dropping the client closes the connection, which ends a COPY in flight.
    if !state.stopped() {
        let _ = client.batch_execute("COMMIT").await;
    }
}

/// How one result column arrives in the binary COPY stream and becomes a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// `int2/4/8` into a decimal column.
    IntDecimal(u8),
    Numeric(u8),
    /// Text-like bytes (`text`, `varchar`, `bpchar`, `name`, `citext`, enum labels, `::text`).
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Json,
    /// `jsonb`: a version byte (1), then the text.
    Jsonb,
    /// Selected as `::text`, parsed into the column type.
    Parse(ColumnType),
    /// An array, selected as `::text`, written as a JSON array.
    Array(crate::arrays::Elem),
}

/// The decoding of a result column of PostgreSQL type `pg` into column type `ty`; `None`
/// means: select it as `::text` and parse.
fn wire_for(ty: ColumnType, pg: &Type) -> Option<Wire> {
    let name = pg.name();
    let w = match (ty, name) {
        (ColumnType::Bool, "bool") => Wire::Bool,
        (ColumnType::Int, "int2") => Wire::Int2,
        (ColumnType::Int, "int4") => Wire::Int4,
        (ColumnType::Int, "int8") => Wire::Int8,
        (ColumnType::Int, "oid") => Wire::Oid,
        (ColumnType::Float, "float4") => Wire::Float4,
        (ColumnType::Float, "float8") => Wire::Float8,
        (ColumnType::Decimal { scale }, "numeric") => Wire::Numeric(scale),
        (ColumnType::Decimal { scale }, "int2" | "int4" | "int8") => Wire::IntDecimal(scale),
        (
            ColumnType::Text { .. },
            "text" | "varchar" | "bpchar" | "name" | "citext" | "unknown",
        ) => Wire::Text,
        (ColumnType::Text { .. }, _) if matches!(pg.kind(), Kind::Enum(_)) => Wire::Text,
        (ColumnType::Bytes, "bytea") => Wire::Bytes,
        (ColumnType::Date, "date") => Wire::Date,
        (ColumnType::Time, "time") => Wire::Time,
        (ColumnType::DateTime, "timestamp") => Wire::Timestamp,
        (ColumnType::Timestamp, "timestamptz") => Wire::Timestamptz,
        (ColumnType::Json, "json") => Wire::Json,
        (ColumnType::Json, "jsonb") => Wire::Jsonb,
        _ => return None,
    };
    Some(w)
}

/// Read one table into `sink`. `Ok(false)`: stopped because another worker failed.
async fn load_table<S: RowSink, T>(
    client: &Client,
    schema: &str,
    table: &TableManifest,
    sink: &mut S,
    state: &LoadState<T>,
    params: &SourceParams,
) -> Result<bool, SourceError> {
    let map = |e| error::pg(e, params);
    let from = format!(
        "{}.{}",
        quote_double(schema),
        quote_double(&table.source_name)
    );
    let plain: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_double(&c.source_name))
        .collect();
    // The result types (domains arrive as their base type) decide the decoding of each column.
    let stmt = client
        .prepare(&select_sql(&plain, &from, table.where_sql.as_deref()))
        .await
        .map_err(|e| table_error(table, map(e)))?;
    let mut wires = Vec::with_capacity(table.columns.len());
    let mut exprs = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let pg = stmt
            .columns()
            .get(i)
            .map(|c| c.type_().clone())
            .unwrap_or(Type::TEXT);
        if let Some(elem) = crate::arrays::pg_array_elem(c) {
            wires.push(Wire::Array(elem));
            exprs.push(format!("{}::text", plain[i]));
            continue;
        }
        match wire_for(c.ty, &pg) {
            Some(w) => {
                wires.push(w);
                exprs.push(plain[i].clone());
            }
            None => {
                wires.push(if matches!(c.ty, ColumnType::Text { .. }) {
                    Wire::Text
                } else {
                    Wire::Parse(c.ty)
                });
                exprs.push(format!("{}::text", plain[i]));
            }
        }
    }
    drop(stmt);
    let copy = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        select_sql(&exprs, &from, table.where_sql.as_deref())
    );
    let stream = client
        .copy_out(copy.as_str())
        .await
        .map_err(|e| table_error(table, map(e)))?;
    pin_mut!(stream);

    let mut dec = CopyDecoder::new(&wires);
    let mut counter = RowCounter::new(state);
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| table_error(table, map(e)))?;
        let flow = if carry.is_empty() {
            let (used, flow) = dec.decode(&chunk, sink, &mut counter, table)?;
            if used < chunk.len() && flow == Flow::More {
                carry.extend_from_slice(&chunk[used..]);
            }
            flow
        } else {
            carry.extend_from_slice(&chunk);
            let (used, flow) = dec.decode(&carry, sink, &mut counter, table)?;
            carry.drain(..used);
            flow
        };
        if flow == Flow::Stop {
            return Ok(false);
        }
    }
    if !dec.ended {
        return Err(SourceError::Other(format!(
            "table {}: the COPY stream ended before its trailer",
            table.source_name
        )));
    }
    Ok(true)
}

fn table_error(table: &TableManifest, e: SourceError) -> SourceError {
    let prefix = format!("table {}: ", table.source_name);
    match e {
        SourceError::Unreachable(m) => SourceError::Unreachable(m),
        SourceError::Rejected(m) => SourceError::Rejected(prefix + &m),
        SourceError::Stopped(m) => SourceError::Stopped(m),
        SourceError::Tls(m) => SourceError::Tls(m),
        SourceError::Other(m) => SourceError::Other(prefix + &m),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Need more bytes.
    More,
    /// Another worker failed: stop reading.
    Stop,
    /// The trailer was read.
    End,
}

/// Binary COPY signature: `PGCOPY\n\377\r\n\0`.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Decoder of the binary COPY format over chunks that may split tuples anywhere.
struct CopyDecoder<'a> {
    wires: &'a [Wire],
    header_done: bool,
    ended: bool,
    /// (offset, length) of each field of the tuple being decoded; length -1 is NULL.
    fields: Vec<(usize, i32)>,
    scratch: String,
    bytes: Vec<u8>,
}

#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> CopyDecoder<'a> {
    fn new(wires: &'a [Wire]) -> Self {
        CopyDecoder {
            wires,
            header_done: false,
            ended: false,
            fields: Vec::new(),
            scratch: String::new(),
            bytes: Vec::new(),
        }
    }

    /// Decode every complete tuple at the start of `buf`; returns the bytes consumed.
    fn decode<S: RowSink>(
        &mut self,
        buf: &[u8],
        sink: &mut S,
        counter: &mut RowCounter<'_>,
        table: &TableManifest,
    ) -> Result<(usize, Flow), SourceError> {
        let bad = |what: &str| {
            SourceError::Other(format!(
                "table {}: malformed COPY data ({what})",
                table.source_name
            ))
        };
        let mut pos = 0;
        if self.ended {
            return Ok((buf.len(), Flow::End));
        }
        if !self.header_done {
            if buf.len() < 19 {
                return Ok((0, Flow::More));
            }
            if &buf[..11] != SIGNATURE {
                return Err(bad("signature"));
            }
            let ext = be_i32(buf, 15);
            if ext < 0 {
                return Err(bad("header extension"));
            }
            let end = 19 + ext as usize;
            if buf.len() < end {
                return Ok((0, Flow::More));
            }
            pos = end;
            self.header_done = true;
        }
        loop {
            if buf.len() - pos < 2 {
                return Ok((pos, Flow::More));
            }
            let n = be_i16(buf, pos);
            if n == -1 {
                self.ended = true;
                return Ok((buf.len(), Flow::End));
            }
            if n < 0 {
                return Err(bad("field count"));
            }
            // Check that the whole tuple is here before pushing any cell of it.
            self.fields.clear();
            let mut p = pos + 2;
            for _ in 0..n {
                if buf.len() - p < 4 {
                    return Ok((pos, Flow::More));
                }
                let len = be_i32(buf, p);
                p += 4;
                self.fields.push((p, len));
                if len > 0 {
                    if buf.len() - p < len as usize {
                        return Ok((pos, Flow::More));
                    }
                    p += len as usize;
                }
            }
            for (col, (&wire, &(at, len))) in self.wires.iter().zip(self.fields.iter()).enumerate()
            {
                let data = if len < 0 {
                    None
                } else {
                    Some(&buf[at..at + len as usize])
                };
                push_cell(sink, col, wire, data, &mut self.scratch, &mut self.bytes);
            }
            pos = p;
            if !sink.end_row() {
                return Err(refused(table));
            }
            if !counter.row() {
                return Ok((pos, Flow::Stop));
            }
        }
    }
}

/// Decode one binary field and push it (`None`: SQL NULL; a value that does not decode: NULL).
#[inline]
fn push_cell<S: RowSink>(
    sink: &mut S,
    col: usize,
    wire: Wire,
    data: Option<&[u8]>,
    scratch: &mut String,
    bytes: &mut Vec<u8>,
) {
    let Some(b) = data else {
        sink.push(col, ValueRef::Null);
        return;
    };
    let v = match wire {
        Wire::Bool => match b {
            [x] => ValueRef::Bool(*x != 0),
            _ => ValueRef::Null,
        },
        Wire::Int2 => b
            .try_into()
            .map(|a| ValueRef::Int(i64::from(i16::from_be_bytes(a))))
            .unwrap_or(ValueRef::Null),
        Wire::Int4 => b
            .try_into()
            .map(|a| ValueRef::Int(i64::from(i32::from_be_bytes(a))))
            .unwrap_or(ValueRef::Null),
        Wire::Int8 => b
            .try_into()
            .map(|a| ValueRef::Int(i64::from_be_bytes(a)))
            .unwrap_or(ValueRef::Null),
        Wire::Oid => b
            .try_into()
            .map(|a| ValueRef::Int(i64::from(u32::from_be_bytes(a))))
            .unwrap_or(ValueRef::Null),
        // float4: the shortest decimal that reads back as the same f32, as PostgreSQL prints it.
        Wire::Float4 => match <[u8; 4]>::try_from(b) {
            Ok(a) => {
                let f = f32::from_be_bytes(a);
                if f.is_finite() {
                    ValueRef::Float(
                        ryu::Buffer::new()
                            .format_finite(f)
                            .parse::<f64>()
                            .unwrap_or(f64::from(f)),
                    )
                } else {
                    ValueRef::Float(f64::from(f))
                }
            }
            Err(_) => ValueRef::Null,
        },
        Wire::Float8 => b
            .try_into()
            .map(|a| ValueRef::Float(f64::from_be_bytes(a)))
            .unwrap_or(ValueRef::Null),
        Wire::IntDecimal(scale) => {
            let i = match b.len() {
                2 => i128::from(be_i16(b, 0)),
                4 => i128::from(be_i32(b, 0)),
                8 => i128::from(i64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
                _ => {
                    sink.push(col, ValueRef::Null);
                    return;
                }
            };
            i.checked_mul(pow10(u32::from(scale)))
                .map(ValueRef::Decimal)
                .unwrap_or(ValueRef::Null)
        }
        Wire::Numeric(scale) => numeric_binary(b, scale)
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        Wire::Text => match std::str::from_utf8(b) {
            Ok(s) => ValueRef::Text(s),
            Err(_) => {
                scratch.clear();
                scratch.push_str(&String::from_utf8_lossy(b));
                ValueRef::Text(scratch)
            }
        },
        Wire::Bytes => ValueRef::Bytes(b),
        Wire::Date => match <[u8; 4]>::try_from(b).map(i32::from_be_bytes) {
            // ±infinity
            Ok(i32::MAX | i32::MIN) | Err(_) => ValueRef::Null,
            Ok(d) => i32::try_from(i64::from(d) + PG_EPOCH_DAYS)
                .map(ValueRef::Date)
                .unwrap_or(ValueRef::Null),
        },
        Wire::Time => b
            .try_into()
            .map(|a| ValueRef::Time(i64::from_be_bytes(a)))
            .unwrap_or(ValueRef::Null),
        Wire::Timestamp | Wire::Timestamptz => match <[u8; 8]>::try_from(b).map(i64::from_be_bytes)
        {
            Ok(i64::MAX | i64::MIN) | Err(_) => ValueRef::Null,
            Ok(us) => match us.checked_add(PG_EPOCH_MICROS) {
                Some(v) if wire == Wire::Timestamp => ValueRef::DateTime(v),
                Some(v) => ValueRef::Timestamp(v),
                None => ValueRef::Null,
            },
        },
        Wire::Json => std::str::from_utf8(b)
            .map(ValueRef::Json)
            .unwrap_or(ValueRef::Null),
        Wire::Jsonb => match b.split_first() {
            Some((1, rest)) => std::str::from_utf8(rest)
                .map(ValueRef::Json)
                .unwrap_or(ValueRef::Null),
            _ => ValueRef::Null,
        },
        Wire::Parse(ty) => text_value(ty, b, bytes),
        Wire::Array(elem) => crate::arrays::pg_array_json(elem, b, bytes),
    };
    sink.push(col, v);
}

/// A value of column `c` in PostgreSQL's text output format: arrays as JSON arrays, anything
/// else as [`text_value`] decodes it.
pub(crate) fn column_text_value<'a>(
    c: &refract_schema::ColumnManifest,
    b: &'a [u8],
    buf: &'a mut Vec<u8>,
) -> ValueRef<'a> {
    match crate::arrays::pg_array_elem(c) {
        Some(elem) => crate::arrays::pg_array_json(elem, b, buf),
        None => text_value(c.ty, b, buf),
    }
}

/// A value in PostgreSQL's text output format (what `col::text` and logical replication's
/// `pgoutput` send) as a cell of column type `ty`, decoded exactly as the binary load decodes
/// it (same rounding, same NULL for `infinity`/`NaN` where the type has no such value).
/// `buf` holds decoded `bytea` bytes. Sessions must use `DateStyle = ISO` (the default).
pub(crate) fn text_value<'a>(ty: ColumnType, b: &'a [u8], buf: &'a mut Vec<u8>) -> ValueRef<'a> {
    let s = || std::str::from_utf8(b).ok().map(str::trim);
    match ty {
        ColumnType::Bool => match b {
            b"t" | b"true" => ValueRef::Bool(true),
            b"f" | b"false" => ValueRef::Bool(false),
            _ => ValueRef::Null,
        },
        ColumnType::Int => match s().and_then(|s| s.parse::<i64>().ok()) {
            Some(i) => ValueRef::Int(i),
            None => match parse_decimal(b, 0) {
                Some(m) if parse_decimal(b, 6) == Some(m * 1_000_000) => i64::try_from(m)
                    .map(ValueRef::Int)
                    .unwrap_or(ValueRef::Null),
                _ => ValueRef::Null,
            },
        },
        ColumnType::Float => s()
            .and_then(|s| s.parse::<f64>().ok())
            .map(ValueRef::Float)
            .unwrap_or(ValueRef::Null),
        ColumnType::Decimal { scale } => parse_decimal(b, scale)
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        ColumnType::Text { .. } => std::str::from_utf8(b)
            .map(ValueRef::Text)
            .unwrap_or(ValueRef::Null),
        // bytea's hex output (`\x00ff`); other text is taken as its bytes.
        ColumnType::Bytes => match b.strip_prefix(b"\\x") {
            Some(hex) => {
                buf.clear();
                match decode_hex(hex, buf) {
                    Some(()) => ValueRef::Bytes(buf),
                    None => ValueRef::Null,
                }
            }
            None => ValueRef::Bytes(b),
        },
        // Only reached when the source type is not json/jsonb (the manifest is older than a type
        // change): the text goes into responses verbatim, so it must be JSON.
        ColumnType::Json => match std::str::from_utf8(b) {
            Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() => ValueRef::Json(s),
            _ => ValueRef::Null,
        },
        ColumnType::Date | ColumnType::Time | ColumnType::DateTime | ColumnType::Timestamp => {
            parse_temporal(ty, b).unwrap_or(ValueRef::Null)
        }
    }
}

/// A `numeric` in binary form (`ndigits`, `weight`, `sign`, `dscale`, then base-10000 digits,
/// most significant first) as a mantissa at `scale` fraction digits, rounded half away from
/// zero when it has more. `None` for NaN, ±Infinity and values that do not fit an `i128`.
pub(crate) fn numeric_binary(b: &[u8], scale: u8) -> Option<i128> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let weight = i32::from(be_i16(b, 2));
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let neg = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return None, // NaN 0xC000, +Inf 0xD000, -Inf 0xF000
    };
    if b.len() < 8 + 2 * ndigits {
        return None;
    }
    let scale = i32::from(scale);
    let mut m: i128 = 0;
    let mut round_up = None;
    for i in 0..ndigits {
        let d = i32::from(be_i16(b, 8 + 2 * i));
        if !(0..10_000).contains(&d) {
            return None;
        }
        // The power of ten of this digit group's last digit, at the target scale.
        let e = 4 * (weight - i as i32) + scale;
        if e >= 0 {
            if d != 0 {
                if e > 38 {
                    return None;
                }
                m = m.checked_add(i128::from(d).checked_mul(pow10(e as u32))?)?;
            }
        } else if e > -4 {
            let div = 10i32.pow((-e) as u32);
            m = m.checked_add(i128::from(d / div))?;
            if round_up.is_none() {
                round_up = Some((d % div) * 10 / div >= 5);
            }
        } else if round_up.is_none() {
            round_up = Some(d / 1000 >= 5);
        }
    }
    if round_up == Some(true) {
        m = m.checked_add(1)?;
    }
    Some(if neg { -m } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary numeric from its parts.
    fn num(weight: i16, neg: bool, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        // 12345.67 = [1, 2345, 6700], weight 1
        assert_eq!(
            numeric_binary(&num(1, false, 2, &[1, 2345, 6700]), 2),
            Some(1_234_567)
        );
        assert_eq!(
            numeric_binary(&num(1, true, 2, &[1, 2345, 6700]), 2),
            Some(-1_234_567)
        );
        assert_eq!(
            numeric_binary(&num(1, false, 2, &[1, 2345, 6700]), 4),
            Some(123_456_700)
        );
        // rounding: 0.125 at scale 2 → 0.13; -0.125 → -0.13; 0.124 → 0.12
        assert_eq!(numeric_binary(&num(-1, false, 3, &[1250]), 2), Some(13));
        assert_eq!(numeric_binary(&num(-1, true, 3, &[1250]), 2), Some(-13));
        assert_eq!(numeric_binary(&num(-1, false, 3, &[1240]), 2), Some(12));
        // 0.00005 at scale 4 → 0.0001 (the dropped group is a whole group)
        assert_eq!(numeric_binary(&num(-2, false, 5, &[5000]), 4), Some(1));
        // zero
        assert_eq!(numeric_binary(&num(0, false, 2, &[]), 2), Some(0));
        // 10^8 = [1, 0, 0] with weight 2, trailing zeros stripped → [1]
        assert_eq!(
            numeric_binary(&num(2, false, 0, &[1]), 0),
            Some(100_000_000)
        );
        // 38 nines at scale 3: integer part 35 digits, fraction 3
        let v: i128 = "99999999999999999999999999999999999999".parse().unwrap();
        let digits = [999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9990];
        assert_eq!(numeric_binary(&num(8, false, 3, &digits), 3), Some(v));
        // NaN
        let mut nan = num(0, false, 0, &[]);
        nan[4] = 0xC0;
        assert_eq!(numeric_binary(&nan, 2), None);
        // too large
        assert_eq!(numeric_binary(&num(10, false, 0, &[1]), 0), None);
    }

    #[test]
    fn text_values_decode_like_the_binary_load() {
        let mut buf = Vec::new();
        let mut tv = |ty, s: &str| format!("{:?}", text_value(ty, s.as_bytes(), &mut buf));
        assert_eq!(tv(ColumnType::Bool, "t"), "Bool(true)");
        assert_eq!(tv(ColumnType::Int, "-42"), "Int(-42)");
        assert_eq!(
            tv(ColumnType::Decimal { scale: 2 }, "12.345"),
            "Decimal(1235)"
        );
        assert_eq!(tv(ColumnType::Decimal { scale: 2 }, "NaN"), "Null");
        assert_eq!(tv(ColumnType::Float, "1.1"), "Float(1.1)");
        assert_eq!(tv(ColumnType::Bytes, "\\x00ff10"), "Bytes([0, 255, 16])");
        assert_eq!(
            tv(ColumnType::Date, "0044-03-15 BC"),
            format!(
                "Date({})",
                crate::types::days_from_civil(-43, 3, 15).unwrap()
            )
        );
        assert_eq!(tv(ColumnType::Date, "infinity"), "Null");
        assert_eq!(
            tv(ColumnType::Timestamp, "1970-01-01 01:00:00+01"),
            "Timestamp(0)"
        );
        assert_eq!(
            tv(ColumnType::DateTime, "1970-01-01 00:00:01.5"),
            "DateTime(1500000)"
        );
        assert_eq!(
            tv(ColumnType::Json, "{\"a\": 1}"),
            "Json(\"{\\\"a\\\": 1}\")"
        );
        assert_eq!(tv(ColumnType::Json, "{1,2}"), "Null");
    }

    #[test]
    fn copy_decoder_handles_split_tuples() {
        struct V(Vec<String>, usize);
        impl RowSink for V {
            fn push(&mut self, _c: usize, v: ValueRef<'_>) {
                self.0.push(format!("{v:?}"));
            }
            fn end_row(&mut self) -> bool {
                self.1 += 1;
                true
            }
        }
        let mut data = Vec::new();
        data.extend_from_slice(SIGNATURE);
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        for (i, s) in [(1i32, Some("ab")), (2, None)] {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&4i32.to_be_bytes());
            data.extend_from_slice(&i.to_be_bytes());
            match s {
                Some(s) => {
                    data.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    data.extend_from_slice(s.as_bytes());
                }
                None => data.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let wires = [Wire::Int4, Wire::Text];
        let table = TableManifest {
            source_name: "t".into(),
            api_name: "t".into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            where_sql: None,
            relations: Vec::new(),
            estimated_bytes: None,
        };
        let progress = Arc::new(crate::LoadProgress::default());
        let state: Arc<LoadState<()>> = LoadState::new(
            &SourceParams::sqlite_file(std::path::Path::new("unused")),
            &Manifest {
                warnings: Vec::new(),
                version: 1,
                backend: Backend::Postgres,
                database: "d".into(),
                pg_schema: None,
                tables: vec![],
            },
            vec![],
            progress,
        );
        // Every split point, fed in two chunks.
        for cut in 0..data.len() {
            let mut sink = V(Vec::new(), 0);
            let mut counter = RowCounter::new(&state);
            let mut dec = CopyDecoder::new(&wires);
            let mut carry = Vec::new();
            for chunk in [&data[..cut], &data[cut..]] {
                carry.extend_from_slice(chunk);
                let (used, _) = dec.decode(&carry, &mut sink, &mut counter, &table).unwrap();
                carry.drain(..used);
            }
            assert!(dec.ended, "cut {cut}");
            assert_eq!(sink.1, 2, "cut {cut}");
            assert_eq!(
                sink.0,
                ["Int(1)", "Text(\"ab\")", "Int(2)", "Null"],
                "cut {cut}"
            );
        }
    }
}
