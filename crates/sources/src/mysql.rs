//! MySQL and MariaDB: connection check, introspection through `information_schema`, and loads
//! over the binary protocol (`exec_iter`), which hands integers, floats, dates and times over
//! already decoded, so only strings, decimals and bytes touch a buffer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::consts::ColumnType as MyType;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, OptsBuilder, Row, Value};
use refract_schema::{
    Backend, ColumnManifest, ColumnType, ForeignKey, RowSink, SourceColumn, SourceSchema,
    SourceTable, TableManifest, ValueRef,
};

use crate::error::{self, timed_out};
use crate::load::{drive, quote_backtick, refused, select_sql, LoadState, RowCounter};
use crate::types::{days_from_civil, parse_decimal, pow10, MysqlColumnInfo, DAY_MICROS};
use crate::{BinlogReadiness, SourceError, SourceParams, SourcePosition, TestConnectionReport};

/// Schemas that belong to the server, not to users.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "mysql", "sys"];

/// Connect timeout for loads and introspection (test-connection has its own, shorter one).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn opts(params: &SourceParams, db: Option<&str>) -> OptsBuilder {
    let b = OptsBuilder::default()
        .user(Some(params.user.clone()))
        .pass(params.password.clone())
        .db_name(db.map(str::to_owned))
        // TIMESTAMP values arrive in UTC; DATETIME values are unaffected.
        .setup(vec!["SET time_zone = '+00:00'".to_string()])
        .tcp_nodelay(true)
        // Use the configured TCP address as given (not a local socket found through it).
        .prefer_socket(false)
        .stmt_cache_size(0)
        .ssl_opts(crate::tls::mysql_ssl_opts(&params.tls));
    if params.host.starts_with('/') {
        b.socket(Some(params.host.clone()))
    } else {
        b.ip_or_hostname(params.host.clone())
            .tcp_port(if params.port == 0 { 3306 } else { params.port })
    }
}

pub(crate) async fn connect(
    params: &SourceParams,
    db: Option<&str>,
    timeout: Duration,
) -> Result<Conn, SourceError> {
    let attempt = async {
        match Conn::new(opts(params, db)).await {
            // `prefer`: the server offers no TLS, so go on without (as libpq does).
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if params.tls.effective_mode() == crate::SslMode::Prefer => {
                Conn::new(opts(params, db).ssl_opts(None)).await
            }
            other => other,
        }
    };
    let e = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(c)) => return Ok(c),
        Ok(Err(e)) => e,
        Err(_) => return Err(timed_out(params, "connecting to", timeout)),
    };
    // MariaDB answers a plain login on a server with `require_secure_transport=ON` with an
    // ordinary "Access denied" (MySQL: error 3159). With `disable`, when the same login works
    // over TLS (no certificate checks: the password went in plain text already), say so.
    if let mysql_async::Error::Server(se) = &e {
        if se.code == 1045
            && params.tls.mode == crate::SslMode::Disable
            && !params.host.starts_with('/')
        {
            let mut probe = params.clone();
            probe.tls = crate::SourceTls {
                mode: crate::SslMode::Require,
                root_cert: None,
            };
            if let Ok(Ok(c)) = tokio::time::timeout(timeout, Conn::new(opts(&probe, db))).await {
                let _ = c.disconnect().await;
                return Err(SourceError::Tls(error::scrub(
                    format!(
                        "the server requires TLS (the same login works over TLS; MariaDB's \
                         require_secure_transport=ON answers plain logins with: {} (error {})) \
                         and sslMode is disable: set sslMode to prefer or stronger",
                        se.message, se.code
                    ),
                    params,
                )));
            }
        }
    }
    Err(error::mysql(e, params))
}

/// A typed cell of a catalog row, by column name (`None` for NULL or a missing column).
fn get<T: FromValue>(row: &Row, name: &str) -> Option<T> {
    row.get_opt::<Option<T>, _>(name)
        .and_then(Result::ok)
        .flatten()
}

pub(crate) async fn is_mariadb(
    conn: &mut Conn,
    params: &SourceParams,
) -> Result<bool, SourceError> {
    let v: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| error::mysql(e, params))?;
    Ok(v.is_some_and(|v| v.to_ascii_lowercase().contains("mariadb")))
}

// ---------------------------------------------------------------------------------------------
// test-connection

pub(crate) async fn test_connection(
    params: &SourceParams,
    timeout: Duration,
) -> Result<TestConnectionReport, SourceError> {
    let mut conn = connect(params, params.database.as_deref(), timeout).await?;
    let map = |e| error::mysql(e, params);
    // One warm-up round trip, then the measured one.
    conn.query_drop("SELECT 1").await.map_err(map)?;
    let t = Instant::now();
    let _: Option<i64> = conn.query_first("SELECT 1").await.map_err(map)?;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;

    let dbs: Vec<String> = conn.query("SHOW DATABASES").await.map_err(map)?;
    let schemas: Vec<String> = dbs
        .into_iter()
        .filter(|d| !SYSTEM_SCHEMAS.contains(&d.to_ascii_lowercase().as_str()))
        .collect();
    let size: Option<String> = conn
        .query_first(
            "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS CHAR) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys')",
        )
        .await
        .map_err(map)?;
    let size_gb = size
        .and_then(|s| s.parse::<f64>().ok())
        .map(|b| b / (1024.0 * 1024.0 * 1024.0));
    let binlog = binlog_readiness(&mut conn, params).await?;
    // `Ssl_version` is empty on a plain connection.
    let ssl: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .unwrap_or(None);
    let tls_version = ssl.map(|(_, v)| v).filter(|v| !v.is_empty());
    let warnings = key_warnings(&mut conn, params).await.unwrap_or_default();
    let _ = conn.disconnect().await;
    Ok(TestConnectionReport {
        ok: true,
        error: None,
        tls: Some(tls_version.is_some()),
        tls_version,
        latency_ms: Some((latency_ms * 1000.0).round() / 1000.0),
        estimated_size_gb: size_gb,
        available_schemas: Some(schemas),
        binlog: Some(binlog),
        logical: None,
        warnings,
    })
}

/// Test-connection warnings: tables without a primary key (in the connection's schema, else in
/// every visible one), and primary keys visible as indexes but not as key constraints (then the
/// foreign keys, the relations, are hidden too).
async fn key_warnings(
    conn: &mut Conn,
    params: &SourceParams,
) -> Result<Vec<String>, mysql_async::Error> {
    let scope =
        "t.TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') \
                 AND (? IS NULL OR t.TABLE_SCHEMA = ?)";
    let db = params.database.clone();
    let keyless: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t \
                 WHERE t.TABLE_TYPE = 'BASE TABLE' AND {scope} AND NOT EXISTS (SELECT 1 FROM \
                 information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA \
                 AND s.TABLE_NAME = t.TABLE_NAME AND s.INDEX_NAME = 'PRIMARY') \
                 ORDER BY 1, 2"
            ),
            (db.clone(), db.clone()),
        )
        .await?;
    let hidden: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT DISTINCT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.STATISTICS t \
                 WHERE t.INDEX_NAME = 'PRIMARY' AND {scope} AND NOT EXISTS (SELECT 1 FROM \
                 information_schema.KEY_COLUMN_USAGE k WHERE k.TABLE_SCHEMA = t.TABLE_SCHEMA \
                 AND k.TABLE_NAME = t.TABLE_NAME AND k.CONSTRAINT_NAME = 'PRIMARY') ORDER BY 1, 2"
            ),
            (db.clone(), db),
        )
        .await?;
    let names = |rows: &[(String, String)]| -> Vec<String> {
        rows.iter().map(|(s, t)| format!("{s}.{t}")).collect()
    };
    Ok([
        crate::table_warning(
            &names(&keyless),
            keyless.len(),
            "have no primary key (lookups by key scan them; a change stream matches their rows by every column)",
        ),
        crate::table_warning(
            &names(&hidden),
            hidden.len(),
            &format!(
                "have key constraints user {} cannot read (their relations will be missing): grant SELECT on them",
                params.user
            ),
        ),
    ]
    .into_iter()
    .flatten()
    .collect())
}

async fn binlog_readiness(
    conn: &mut Conn,
    params: &SourceParams,
) -> Result<BinlogReadiness, SourceError> {
    let vars: Vec<(String, Option<String>)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'server_id', 'binlog_row_image')",
        )
        .await
        .map_err(|e| error::mysql(e, params))?;
    let var = |n: &str| {
        vars.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .and_then(|(_, v)| v.clone())
    };
    let log_bin = var("log_bin").is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1");
    let format = var("binlog_format");
    let server_id = var("server_id").and_then(|v| v.parse::<u64>().ok());
    let row_image = var("binlog_row_image");

    let mut issues = Vec::new();
    if !log_bin {
        issues.push("log_bin is OFF: start the server with --log-bin".to_string());
    }
    if !format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
    {
        issues.push(format!(
            "binlog_format is {}, must be ROW (SET GLOBAL binlog_format = 'ROW')",
            format.as_deref().unwrap_or("unknown")
        ));
    }
    if !row_image
        .as_deref()
        .is_none_or(|f| f.eq_ignore_ascii_case("FULL"))
    {
        issues.push(format!(
            "binlog_row_image is {}, must be FULL (SET GLOBAL binlog_row_image = 'FULL')",
            row_image.as_deref().unwrap_or("unknown")
        ));
    }
    if server_id == Some(0) {
        issues
            .push("server_id is 0: the server needs a non-zero server_id to write a binlog".into());
    }

    let grants: Vec<String> = match conn.query("SHOW GRANTS FOR CURRENT_USER()").await {
        Ok(g) => g,
        Err(_) => conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| error::mysql(e, params))?,
    };
    let privs = global_privileges(&grants);
    let all = privs.contains("ALL PRIVILEGES") || privs.contains("ALL");
    if !all && !privs.contains("REPLICATION SLAVE") && !privs.contains("REPLICATION REPLICA") {
        issues.push(format!(
            "missing grant REPLICATION SLAVE (GRANT REPLICATION SLAVE ON *.* TO '{}')",
            params.user
        ));
    }
    if !all && !privs.contains("REPLICATION CLIENT") && !privs.contains("BINLOG MONITOR") {
        issues.push(format!(
            "missing grant REPLICATION CLIENT (MariaDB: BINLOG MONITOR) (GRANT REPLICATION CLIENT ON *.* TO '{}')",
            params.user
        ));
    }
    Ok(BinlogReadiness {
        log_bin,
        format,
        server_id,
        ready: issues.is_empty(),
        issues,
    })
}

/// Privileges granted `ON *.*`, upper case (`REPLICATION SLAVE`, `ALL PRIVILEGES`, ...).
pub(crate) fn global_privileges(grants: &[String]) -> HashSet<String> {
    let mut out = HashSet::new();
    for g in grants {
        let upper = g.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some(on) = rest.find(" ON ") else {
            continue;
        };
        let object = rest[on + 4..].trim_start();
        if !object.starts_with("*.*") {
            continue;
        }
        for p in rest[..on].split(',') {
            out.insert(p.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// introspection

pub(crate) async fn introspect(params: &SourceParams) -> Result<SourceSchema, SourceError> {
    let db = params
        .database
        .clone()
        .ok_or_else(|| SourceError::Other("no database (schema) given to introspect".into()))?;
    let mut conn = connect(params, None, CONNECT_TIMEOUT).await?;
    let map = |e| error::mysql(e, params);
    let maria = is_mariadb(&mut conn, params).await?;

    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db.as_str(),),
        )
        .await
        .map_err(map)?;
    if exists.is_none() {
        return Err(SourceError::Other(format!(
            "database `{db}` does not exist or is not visible"
        )));
    }

    let table_rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME AS name, DATA_LENGTH AS data_length, TABLE_ROWS AS table_rows \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' \
             ORDER BY TABLE_NAME",
            (db.as_str(),),
        )
        .await
        .map_err(map)?;
    let column_rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME AS tbl, COLUMN_NAME AS name, COLUMN_TYPE AS column_type, \
             DATA_TYPE AS data_type, IS_NULLABLE AS nullable, COLLATION_NAME AS coll, \
             NUMERIC_PRECISION AS num_precision, NUMERIC_SCALE AS num_scale \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (db.as_str(),),
        )
        .await
        .map_err(map)?;
    let key_rows: Vec<Row> = conn
        .exec(
            // Not joined with TABLE_CONSTRAINTS: MariaDB hides that view from a user with only
            // SELECT (and the replication grants), while KEY_COLUMN_USAGE stays visible. A primary
            // key is always named `PRIMARY` there; a foreign key is a row with a referenced table.
            "SELECT TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, \
             CASE WHEN CONSTRAINT_NAME = 'PRIMARY' THEN 'PRIMARY KEY' ELSE 'FOREIGN KEY' END AS kind, \
             COLUMN_NAME AS col, REFERENCED_TABLE_SCHEMA AS ref_schema, \
             REFERENCED_TABLE_NAME AS ref_table, REFERENCED_COLUMN_NAME AS ref_col \
             FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_NAME IS NOT NULL) \
             ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
            (db.as_str(),),
        )
        .await
        .map_err(map)?;
    // The primary key as an index, from a second view: where KEY_COLUMN_USAGE shows none (a
    // server that hides it too) this still finds the key, and the mismatch becomes a warning.
    let index_rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME AS tbl, COLUMN_NAME AS col FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
            (db.as_str(),),
        )
        .await
        .map_err(map)?;
    // MariaDB's JSON is LONGTEXT with a CHECK (json_valid(`col`)) constraint.
    let mut json_checks: HashSet<(String, String)> = HashSet::new();
    if maria {
        let checks: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME AS tbl, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ?",
                (db.as_str(),),
            )
            .await
            .unwrap_or_default();
        for r in &checks {
            let (Some(t), Some(clause)) = (get::<String>(r, "tbl"), get::<String>(r, "clause"))
            else {
                continue;
            };
            let c: String = clause
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '`')
                .collect();
            let c = c.to_ascii_lowercase();
            if let Some(col) = c
                .strip_prefix("json_valid(")
                .and_then(|s| s.strip_suffix(')'))
            {
                json_checks.insert((t, col.to_string()));
            }
        }
    }
    let _ = conn.disconnect().await;

    let mut tables: BTreeMap<String, SourceTable> = BTreeMap::new();
    for r in &table_rows {
        let Some(name) = get::<String>(r, "name") else {
            continue;
        };
        let (bytes, rows) = (get::<u64>(r, "data_length"), get::<u64>(r, "table_rows"));
        tables.insert(name.clone(), SourceTable::named(name, bytes, rows));
    }
    for r in &column_rows {
        let (Some(tbl), Some(name)) = (get::<String>(r, "tbl"), get::<String>(r, "name")) else {
            continue;
        };
        let Some(t) = tables.get_mut(&tbl) else {
            continue;
        };
        let column_type = get::<String>(r, "column_type").unwrap_or_default();
        let data_type = get::<String>(r, "data_type").unwrap_or_default();
        let collation = get::<String>(r, "coll");
        let info = MysqlColumnInfo {
            data_type: &data_type,
            column_type: &column_type,
            collation: collation.as_deref(),
            precision: get::<u64>(r, "num_precision"),
            scale: get::<u64>(r, "num_scale"),
            json_check: json_checks.contains(&(tbl.clone(), name.to_ascii_lowercase())),
        };
        let ty = crate::types::mysql_type(&info);
        let source_type = if ty == ColumnType::Json && info.json_check && data_type != "json" {
            "json".to_string()
        } else {
            column_type
        };
        t.columns.push(SourceColumn {
            nullable: get::<String>(r, "nullable").is_some_and(|v| v.eq_ignore_ascii_case("YES")),
            name,
            source_type,
            ty,
            collation,
        });
    }
    // Keys: rows are ordered by table, constraint, ordinal position.
    let mut fks: HashMap<(String, String), ForeignKey> = HashMap::new();
    let mut fk_order: Vec<(String, String)> = Vec::new();
    for r in &key_rows {
        let (Some(tbl), Some(name), Some(kind), Some(col)) = (
            get::<String>(r, "tbl"),
            get::<String>(r, "name"),
            get::<String>(r, "kind"),
            get::<String>(r, "col"),
        ) else {
            continue;
        };
        let Some(t) = tables.get_mut(&tbl) else {
            continue;
        };
        if kind == "PRIMARY KEY" {
            t.primary_key.push(col);
            continue;
        }
        let ref_schema = get::<String>(r, "ref_schema");
        let (Some(ref_table), Some(ref_col)) =
            (get::<String>(r, "ref_table"), get::<String>(r, "ref_col"))
        else {
            continue;
        };
        if ref_schema.as_deref().is_some_and(|s| s != db) {
            continue; // only keys within this schema are relations
        }
        let key = (tbl.clone(), name.clone());
        let fk = fks.entry(key.clone()).or_insert_with(|| {
            fk_order.push(key.clone());
            ForeignKey {
                name,
                columns: Vec::new(),
                referenced_table: ref_table,
                referenced_columns: Vec::new(),
            }
        });
        fk.columns.push(col);
        fk.referenced_columns.push(ref_col);
    }
    for key in fk_order {
        if let (Some(fk), Some(t)) = (fks.remove(&key), tables.get_mut(&key.0)) {
            t.foreign_keys.push(fk);
        }
    }
    let mut hidden: Vec<String> = Vec::new();
    for r in &index_rows {
        let (Some(tbl), Some(col)) = (get::<String>(r, "tbl"), get::<String>(r, "col")) else {
            continue;
        };
        if let Some(t) = tables.get_mut(&tbl) {
            if t.primary_key.is_empty() || hidden.last() == Some(&tbl) {
                if hidden.last() != Some(&tbl) {
                    hidden.push(tbl.clone());
                }
                t.primary_key.push(col);
            }
        }
    }
    let warnings = if hidden.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "the source user {} cannot read the key constraints of {} table(s) ({}) in \
             information_schema.KEY_COLUMN_USAGE: their primary keys come from the indexes, and \
             their foreign keys (relations) are missing. Grant the user SELECT on the tables \
             (GRANT SELECT ON `{db}`.* TO …)",
            params.user,
            hidden.len(),
            hidden.join(", ")
        )]
    };
    Ok(SourceSchema {
        backend: Backend::Mysql,
        database: db,
        tables: tables.into_values().collect(),
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// loading

pub(crate) async fn load<S: RowSink + Send + 'static>(
    state: &Arc<LoadState<S>>,
    parallelism: usize,
) -> Result<SourcePosition, SourceError> {
    let params = &state.params;
    let db = state.manifest.database.clone();
    let mut coord = connect(params, Some(&db), CONNECT_TIMEOUT).await?;
    let maria = is_mariadb(&mut coord, params).await?;
    let map = |e| error::mysql(e, params);

    // MariaDB reports the exact position of a single consistent-snapshot transaction, so one
    // connection needs no global lock there. Otherwise every worker starts its snapshot while
    // the coordinator holds FLUSH TABLES WITH READ LOCK (opened first, so the lock is brief).
    let use_lock = parallelism > 1 || !maria;
    let mut workers: Vec<Conn> = Vec::with_capacity(parallelism);
    if use_lock {
        let opened = futures_util::future::join_all(
            (0..parallelism).map(|_| connect(params, Some(&db), CONNECT_TIMEOUT)),
        )
        .await;
        for c in opened {
            workers.push(c?);
        }
    }
    let _ = coord.query_drop("SET SESSION lock_wait_timeout = 60").await;
    let locked = if use_lock {
        match coord.query_drop("FLUSH TABLES WITH READ LOCK").await {
            Ok(()) => true,
            Err(mysql_async::Error::Server(se)) => {
                tracing::warn!(
                    code = se.code,
                    "FLUSH TABLES WITH READ LOCK refused ({}); loading over one connection",
                    se.message
                );
                false
            }
            Err(e) => return Err(map(e)),
        }
    } else {
        false
    };

    let position;
    if locked {
        let starts = workers.iter_mut().map(|w| async move {
            w.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            w.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
        });
        let started = futures_util::future::join_all(starts).await;
        let pos = read_position(&mut coord, maria, params).await;
        coord.query_drop("UNLOCK TABLES").await.map_err(map)?;
        for s in started {
            s.map_err(map)?;
        }
        position = pos;
        let _ = coord.disconnect().await;
    } else {
        for w in workers.drain(..) {
            let _ = w.disconnect().await;
        }
        coord
            .query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(map)?;
        coord
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(map)?;
        position = if maria {
            snapshot_position(&mut coord, params).await
        } else {
            // MySQL has no per-transaction snapshot position: the position read right after
            // the snapshot started may include a few transactions the snapshot already shows,
            // which a row-apply CDC stream replays idempotently.
            read_position(&mut coord, maria, params).await
        };
        workers.push(coord);
    }

    let tasks = workers
        .into_iter()
        .map(|conn| worker(conn, state.clone()))
        .collect();
    drive(state, tasks).await;
    Ok(position)
}

/// Binlog file/offset (`SHOW MASTER STATUS`, or `SHOW BINARY LOG STATUS` on MySQL 8.4+) and the
/// GTID state; [`SourcePosition::None`] when the binlog is off or not readable.
pub(crate) async fn read_position(
    conn: &mut Conn,
    maria: bool,
    params: &SourceParams,
) -> SourcePosition {
    let rows: Result<Vec<Row>, _> = match conn.query("SHOW MASTER STATUS").await {
        Ok(r) => Ok(r),
        Err(_) => conn.query("SHOW BINARY LOG STATUS").await,
    };
    let row = match rows {
        Ok(rows) => rows.into_iter().next(),
        Err(e) => {
            tracing::warn!(
                "cannot read the binlog position: {}",
                error::mysql(e, params)
            );
            return SourcePosition::None;
        }
    };
    let Some(row) = row else {
        return SourcePosition::None;
    };
    let (Some(file), Some(position)) = (get::<String>(&row, "File"), get::<u64>(&row, "Position"))
    else {
        return SourcePosition::None;
    };
    let gtid = if maria {
        maria_gtid(conn, &file, position).await
    } else {
        match get::<String>(&row, "Executed_Gtid_Set") {
            Some(g) => Some(g),
            None => conn
                .query_first::<String, _>("SELECT @@GLOBAL.gtid_executed")
                .await
                .ok()
                .flatten(),
        }
    };
    let gtid = gtid
        .map(|g| g.replace(['\n', ' '], ""))
        .filter(|g| !g.is_empty());
    SourcePosition::Binlog {
        file,
        position,
        gtid,
    }
}

/// MariaDB: the GTID position of a binlog file/offset, else `@@gtid_current_pos`.
async fn maria_gtid(conn: &mut Conn, file: &str, position: u64) -> Option<String> {
    let exact: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, position))
        .await
        .ok()
        .flatten();
    match exact.flatten().filter(|g| !g.is_empty()) {
        Some(g) => Some(g),
        None => conn
            .query_first::<String, _>("SELECT @@GLOBAL.gtid_current_pos")
            .await
            .ok()
            .flatten(),
    }
}

/// MariaDB: the exact binlog position of the current consistent-snapshot transaction.
async fn snapshot_position(conn: &mut Conn, params: &SourceParams) -> SourcePosition {
    let rows: Vec<(String, String)> = match conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "cannot read the snapshot position: {}",
                error::mysql(e, params)
            );
            return SourcePosition::None;
        }
    };
    let var = |n: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    match (
        var("Binlog_snapshot_file"),
        var("Binlog_snapshot_position").and_then(|p| p.parse().ok()),
    ) {
        (Some(file), Some(position)) if !file.is_empty() => {
            let gtid = maria_gtid(conn, &file, position).await;
            SourcePosition::Binlog {
                file,
                position,
                gtid,
            }
        }
        _ => SourcePosition::None,
    }
}

async fn worker<S: RowSink + Send + 'static>(mut conn: Conn, state: Arc<LoadState<S>>) {
    while let Some((i, mut sink)) = state.next() {
        let table = &state.manifest.tables[i];
        let read = load_table(
            &mut conn,
            &state.manifest.database,
            table,
            &mut sink,
            &state,
            &state.params,
        )
        .await;
        if !state.table_read(i, sink, read) {
            break;
        }
    }
    // After a failure the connection may be mid-result; dropping it is the quickest way out.
    if !state.stopped() {
        let _ = conn.query_drop("COMMIT").await;
        let _ = conn.disconnect().await;
    }
}

/// The `SELECT` of one table.
pub(crate) fn table_sql(db: &str, table: &TableManifest) -> String {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_backtick(&c.source_name))
        .collect();
    let from = format!(
        "{}.{}",
        quote_backtick(db),
        quote_backtick(&table.source_name)
    );
    select_sql(&cols, &from, table.where_sql.as_deref())
}

/// Read one table into `sink`. `Ok(false)`: stopped because another worker failed.
async fn load_table<S: RowSink, T>(
    conn: &mut Conn,
    db: &str,
    table: &TableManifest,
    sink: &mut S,
    state: &LoadState<T>,
    params: &SourceParams,
) -> Result<bool, SourceError> {
    let sql = table_sql(db, table);
    let map = |e| error::mysql(e, params);
    let mut result = conn.exec_iter(sql.as_str(), ()).await.map_err(map)?;
    let is_bit: Vec<bool> = result
        .columns_ref()
        .iter()
        .map(|c| c.column_type() == MyType::MYSQL_TYPE_BIT)
        .collect();
    let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
    let sets: Vec<bool> = table.columns.iter().map(is_set_column).collect();
    let mut counter = RowCounter::new(state);
    let mut scratch = String::new();
    while let Some(row) = result.next().await.map_err(map)? {
        for (i, ty) in types.iter().enumerate() {
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
            let kind = if sets[i] {
                Kind::Set
            } else if is_bit.get(i).copied().unwrap_or(false) {
                Kind::Bit
            } else {
                Kind::Plain
            };
            push_value(sink, i, *ty, v, kind, &mut scratch);
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

/// A `BIT(n)` value (big-endian bytes) as an unsigned number.
fn bits(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn civil_micros(y: u16, m: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Option<i64> {
    let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d))?;
    Some(
        i64::from(days) * DAY_MICROS
            + ((i64::from(h) * 60 + i64::from(mi)) * 60 + i64::from(s)) * 1_000_000
            + i64::from(us),
    )
}

/// Whether a manifest column is a MySQL `SET` stored as a JSON array.
pub(crate) fn is_set_column(c: &ColumnManifest) -> bool {
    c.ty == ColumnType::Json
        && c.source_type
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("set("))
}

/// What a binary-protocol value's source column is, beyond its storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    /// `BIT(n)`: big-endian bytes.
    Bit,
    /// `SET`: comma-separated members, stored as a JSON array.
    Set,
}

/// Decode one binary-protocol value into the column's type and push it.
pub(crate) fn push_value<S: RowSink>(
    sink: &mut S,
    col: usize,
    ty: ColumnType,
    v: &Value,
    kind: Kind,
    scratch: &mut String,
) {
    let is_bit = kind == Kind::Bit;
    let out = match (ty, v) {
        (_, Value::NULL) => ValueRef::Null,
        (ColumnType::Bool, Value::Int(i)) => ValueRef::Bool(*i != 0),
        (ColumnType::Bool, Value::UInt(u)) => ValueRef::Bool(*u != 0),
        (ColumnType::Bool, Value::Bytes(b)) if is_bit => ValueRef::Bool(bits(b) != 0),
        (ColumnType::Bool, Value::Bytes(b)) => match b.as_slice() {
            b"1" | b"true" | b"TRUE" => ValueRef::Bool(true),
            b"0" | b"false" | b"FALSE" => ValueRef::Bool(false),
            _ => ValueRef::Null,
        },
        (ColumnType::Int, Value::Int(i)) => ValueRef::Int(*i),
        (ColumnType::Int, Value::UInt(u)) => i64::try_from(*u)
            .map(ValueRef::Int)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Int, Value::Bytes(b)) if is_bit => ValueRef::Int(bits(b) as i64),
        (ColumnType::Int, Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(ValueRef::Int)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Decimal { scale }, Value::Bytes(b)) if is_bit => {
            ValueRef::Decimal(i128::from(bits(b)) * pow10(u32::from(scale)))
        }
        (ColumnType::Decimal { scale }, Value::Bytes(b)) => parse_decimal(b, scale)
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Decimal { scale }, Value::Int(i)) => i128::from(*i)
            .checked_mul(pow10(u32::from(scale)))
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Decimal { scale }, Value::UInt(u)) => i128::from(*u)
            .checked_mul(pow10(u32::from(scale)))
            .map(ValueRef::Decimal)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Float, Value::Double(d)) => ValueRef::Float(*d),
        // FLOAT: the shortest decimal that reads back as the same f32, as MySQL prints it.
        (ColumnType::Float, Value::Float(f)) => ValueRef::Float(
            ryu::Buffer::new()
                .format(*f)
                .parse::<f64>()
                .unwrap_or(f64::from(*f)),
        ),
        (ColumnType::Float, Value::Int(i)) => ValueRef::Float(*i as f64),
        (ColumnType::Float, Value::UInt(u)) => ValueRef::Float(*u as f64),
        (ColumnType::Float, Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(ValueRef::Float)
            .unwrap_or(ValueRef::Null),
        (ColumnType::Text { .. }, Value::Bytes(b)) => match std::str::from_utf8(b) {
            Ok(s) => ValueRef::Text(s),
            Err(_) => {
                scratch.clear();
                scratch.push_str(&String::from_utf8_lossy(b));
                ValueRef::Text(scratch)
            }
        },
        (ColumnType::Json, Value::Bytes(b)) if kind == Kind::Set => {
            crate::arrays::set_json(&String::from_utf8_lossy(b), scratch);
            ValueRef::Json(scratch)
        }
        (ColumnType::Json, Value::Bytes(b)) => match std::str::from_utf8(b) {
            Ok(s) => ValueRef::Json(s),
            Err(_) => ValueRef::Null,
        },
        (ColumnType::Bytes, Value::Bytes(b)) => ValueRef::Bytes(b),
        (ColumnType::Date, Value::Date(y, m, d, ..)) => {
            days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d))
                .map(ValueRef::Date)
                .unwrap_or(ValueRef::Null)
        }
        (ColumnType::DateTime, Value::Date(y, m, d, h, mi, s, us)) => {
            civil_micros(*y, *m, *d, *h, *mi, *s, *us)
                .map(ValueRef::DateTime)
                .unwrap_or(ValueRef::Null)
        }
        (ColumnType::Timestamp, Value::Date(y, m, d, h, mi, s, us)) => {
            civil_micros(*y, *m, *d, *h, *mi, *s, *us)
                .map(ValueRef::Timestamp)
                .unwrap_or(ValueRef::Null)
        }
        (ColumnType::Time, Value::Time(neg, days, h, mi, s, us)) => {
            // i128: no field of the wire format can overflow it; out of range is NULL.
            let v = ((i128::from(*days) * 24 + i128::from(*h)) * 3600
                + i128::from(*mi) * 60
                + i128::from(*s))
                * 1_000_000
                + i128::from(*us);
            match i64::try_from(if *neg { -v } else { v }) {
                Ok(v) => ValueRef::Time(v),
                Err(_) => ValueRef::Null,
            }
        }
        (
            ColumnType::Date | ColumnType::DateTime | ColumnType::Timestamp | ColumnType::Time,
            Value::Bytes(b),
        ) => crate::types::parse_temporal(ty, b).unwrap_or(ValueRef::Null),
        (ColumnType::Text { .. }, other) => {
            use std::fmt::Write;
            scratch.clear();
            match other {
                Value::Int(i) => write!(scratch, "{i}").ok(),
                Value::UInt(u) => write!(scratch, "{u}").ok(),
                Value::Float(f) => write!(scratch, "{f}").ok(),
                Value::Double(d) => write!(scratch, "{d}").ok(),
                // As `as_sql` writes it, which overflows on out-of-range days.
                Value::Time(neg, days, h, mi, s, us) => {
                    let sign = if *neg { "-" } else { "" };
                    let hours = u64::from(*days) * 24 + u64::from(*h);
                    if *us == 0 {
                        write!(scratch, "{sign}{hours:03}:{mi:02}:{s:02}").ok()
                    } else {
                        write!(scratch, "{sign}{hours:03}:{mi:02}:{s:02}.{us:06}").ok()
                    }
                }
                _ => {
                    scratch.push_str(other.as_sql(true).trim_matches('\''));
                    Some(())
                }
            };
            ValueRef::Text(scratch)
        }
        _ => ValueRef::Null,
    };
    sink.push(col, out);
}
