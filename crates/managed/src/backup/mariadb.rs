//! MariaDB base backups, binary-log archiving and restores.
//!
//! - A base backup is `mariadb-backup --backup` of the primary (as the server's user, over its Unix
//!   socket, where that user logs in by `unix_socket`), `--prepare`d at once and packed into
//!   `base.tar`; `xtrabackup_binlog_info` (the binary-log file, position and GTID at the backup's
//!   consistent point) goes into the manifest as [`BinlogStart`].
//! - The primary's closed binary logs are copied into the storage every backup tick under
//!   `<db>/binlog/<origin>/<file>` (`origin`: a random id kept in the primary's node directory, so
//!   that a promoted standby's files, which restart at `binlog.000001`, never overwrite the old
//!   primary's). The file being written is rotated (`FLUSH BINARY LOGS`) once it holds writes and
//!   has been open for [`ROTATE_AFTER`], so an idle server's last writes reach the storage within
//!   a minute or so, as PostgreSQL's `archive_timeout`.
//! - A restore copies the prepared backup back into the new server's data directory
//!   (`mariadb-backup --copy-back`), starts it, and for a point-in-time restore pipes
//!   `mariadb-binlog --start-position=<backup's> --stop-datetime=<target>` (in UTC) into the new
//!   server; then it sets the new database's passwords and moves the tables to its database name.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::archive::tar;
use super::storage::StorageError;
use super::types::ActiveBinlog;
use super::types::{BinlogStart, RestorePlan};
use crate::engines::mariadb::{backup_primary, socket_sql, valid_binlog_name, wait_socket};
use crate::engines::{sql_password, Ctx, ADMIN_USER, APP_USER, HOST, REPLICATION_USER};
use crate::os;
use crate::service::{lock, ManagedService};

/// The file being written is rotated once it has been open this long with writes in it.
pub const ROTATE_AFTER: Duration = Duration::from_secs(60);
/// Where a node keeps the id of its binary log's lineage (beside `data/`, never copied by a backup).
const ORIGIN_FILE: &str = "refract-binlog-origin";
/// How long the replay of archived binary logs may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(3600);

fn program<'a>(p: &'a Option<PathBuf>, what: &str) -> anyhow::Result<&'a Path> {
    p.as_deref().with_context(|| {
        format!(
            "{what} is not installed on this host (Debian package mariadb-backup / mariadb-client)"
        )
    })
}

/// The storage prefix of `db_id`'s archived binary logs.
pub fn log_prefix(db_id: &str) -> String {
    format!("{db_id}/binlog/")
}

/// Whether the archived binary log `rel` (`<origin>/<file>`, relative to [`log_prefix`]) is
/// needed by a restore of the backup that starts at `start`.
pub fn log_needed(start: &BinlogStart, rel: &str) -> bool {
    match rel.split_once('/') {
        Some((origin, file)) => origin == start.origin && file >= start.file.as_str(),
        None => false,
    }
}

/// The lineage id of node 0's binary log, created on first use.
pub fn origin(ctx: &Ctx) -> anyhow::Result<String> {
    let path = ctx.node_dir(0).join(ORIGIN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(id);
        }
    }
    // A lost primary's directory is not given a new lineage (promotion puts the standby's there).
    anyhow::ensure!(
        ctx.node_dir(0).join("data").is_dir(),
        "node 0 has no data directory"
    );
    let id = format!("{:016x}", rand::random::<u64>());
    os::write_owned_file(&path, id.as_bytes(), &ctx.user)?;
    Ok(id)
}

/// The primary's binary logs (`SHOW BINARY LOGS`: name and size), oldest first; the last one is
/// the file being written.
pub async fn binary_logs(ctx: &Ctx) -> anyhow::Result<Vec<(String, u64)>> {
    let out = socket_sql(ctx, 0, "SHOW BINARY LOGS;\n", false).await?;
    let logs: Vec<(String, u64)> = out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let name = cols.next()?.trim();
            let size = cols.next()?.trim().parse().ok()?;
            valid_binlog_name(name).then(|| (name.to_string(), size))
        })
        .collect();
    anyhow::ensure!(
        !logs.is_empty(),
        "the server has no binary log (log_bin is off)"
    );
    Ok(logs)
}

/// Takes a base backup of node 0 into `staging/base.tar`; returns its files and the binary-log
/// position it ends at.
pub async fn base_backup(ctx: &Ctx, staging: &Path) -> anyhow::Result<(Vec<String>, BinlogStart)> {
    os::remove_dir(staging)?;
    os::create_owned_dir(staging, &ctx.user)?;
    let target = staging.join("backup");
    let origin = origin(ctx)?;
    let at = backup_primary(ctx, &target).await?;
    ctx.run(
        &tar(),
        &[
            "-cf".to_string(),
            staging.join("base.tar").display().to_string(),
            "-C".into(),
            target.display().to_string(),
            ".".into(),
        ],
        &[],
        None,
    )
    .await
    .context("pack the backup")?;
    os::remove_dir(&target)?;
    Ok((
        vec!["base.tar".into()],
        BinlogStart {
            origin,
            file: at.file,
            position: at.position,
            gtid: at.gtid,
        },
    ))
}

impl ManagedService {
    /// Copies the primary's closed binary logs into the storage (those not there yet) and rotates
    /// the one being written when it is due ([`ROTATE_AFTER`]), or at once with `rotate_now`
    /// (a point-in-time restore needs every commit up to its request in the storage).
    pub(super) async fn ship_binlogs(&self, ctx: &Ctx, rotate_now: bool) -> anyhow::Result<()> {
        let _one_at_a_time = self.inner.backups.log_shipping.lock().await;
        let mut logs = binary_logs(ctx).await?;
        let (active, size) = logs.last().cloned().unwrap_or_default();
        let due = {
            let mut seen = lock(&self.inner.backups.active_binlogs);
            match seen.get(&ctx.db.id) {
                Some(a) if a.file == active => {
                    size > a.size_at_open && a.seen_since.elapsed() >= ROTATE_AFTER
                }
                _ => {
                    seen.insert(
                        ctx.db.id.clone(),
                        ActiveBinlog {
                            file: active.clone(),
                            size_at_open: 0,
                            seen_since: Instant::now(),
                        },
                    );
                    false
                }
            }
        };
        if rotate_now || due {
            socket_sql(ctx, 0, "FLUSH BINARY LOGS;\n", false)
                .await
                .context("rotate the binary log")?;
            logs = binary_logs(ctx).await?;
            if let Some((file, size)) = logs.last().cloned() {
                lock(&self.inner.backups.active_binlogs).insert(
                    ctx.db.id.clone(),
                    ActiveBinlog {
                        file,
                        size_at_open: size,
                        seen_since: Instant::now(),
                    },
                );
            }
        }
        let closed: Vec<(String, u64)> = logs[..logs.len().saturating_sub(1)].to_vec();
        let prefix = format!("{}{}/", log_prefix(&ctx.db.id), origin(ctx)?);
        let data = ctx.node_dir(0).join("data");
        self.blocking(move |s| {
            let stored: std::collections::HashMap<String, u64> = s
                .list(&prefix)?
                .into_iter()
                .map(|o| (o.key, o.size))
                .collect();
            for (name, size) in closed {
                let key = format!("{prefix}{name}");
                if stored.get(&key) != Some(&size) {
                    s.put(&key, &data.join(&name))?;
                }
            }
            Ok::<_, StorageError>(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Writes node 0's data directory from the prepared backup unpacked in `staging` (`ctx` is the
/// new database).
pub async fn prepare_restore(ctx: &Ctx, staging: &Path) -> anyhow::Result<()> {
    let mb = program(&ctx.bins.mariadb_backup, "mariadb-backup")?;
    let node = ctx.node_dir(0);
    os::create_owned_dir(&node, &ctx.user)?;
    let unpacked = staging.join("backup");
    os::create_owned_dir(&unpacked, &ctx.user)?;
    ctx.run(
        &tar(),
        &[
            "-xf".to_string(),
            staging.join("base.tar").display().to_string(),
            "-C".into(),
            unpacked.display().to_string(),
        ],
        &[],
        None,
    )
    .await
    .context("unpack the backup")?;
    ctx.run(
        mb,
        &[
            "--no-defaults".to_string(),
            "--copy-back".into(),
            format!("--target-dir={}", unpacked.display()),
            format!("--datadir={}", node.join("data").display()),
        ],
        &[],
        None,
    )
    .await
    .context("mariadb-backup --copy-back")?;
    Ok(())
}

/// The first file missing from a sorted run of binary logs (`binlog.000003`, `binlog.000004`, …).
fn first_gap(files: &[String]) -> Option<String> {
    let number = |f: &str| {
        let (stem, n) = f.rsplit_once('.')?;
        Some((stem.to_string(), n.len(), n.parse::<u64>().ok()?))
    };
    for pair in files.windows(2) {
        let (Some((stem, width, a)), Some((_, _, b))) = (number(&pair[0]), number(&pair[1])) else {
            continue;
        };
        if b != a + 1 {
            return Some(format!("{stem}.{:0width$}", a + 1));
        }
    }
    None
}

/// `mariadb-binlog`'s `--stop-datetime` for `target`, read in UTC (the replay runs with `TZ=UTC`).
fn stop_datetime(target: &DateTime<Utc>) -> String {
    target.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// After the restored server started: replays the archived binary logs in `logs` from the
/// backup's position up to the target (a point-in-time restore), then gives the server the new
/// database's passwords and name.
pub async fn finish_restore(ctx: &Ctx, plan: &RestorePlan, logs: &Path) -> anyhow::Result<()> {
    if let Some(target) = plan.target {
        let start = plan
            .manifest
            .binlog_start
            .as_ref()
            .context("the backup has no binary-log position")?;
        replay(ctx, start, &target, logs).await?;
    }
    let (from, to) = (plan.manifest.database.clone(), ctx.database());
    let mut sql = format!(
        "SET SESSION sql_log_bin = 0;\n\
         ALTER USER '{APP_USER}'@'%' IDENTIFIED BY {app};\n\
         ALTER USER '{ADMIN_USER}'@'%' IDENTIFIED BY {admin};\n\
         ALTER USER '{REPLICATION_USER}'@'{HOST}' IDENTIFIED BY {repl};\n\
         SET SESSION sql_log_bin = 1;\n",
        app = sql_password(&ctx.creds.app)?,
        admin = sql_password(&ctx.creds.admin)?,
        repl = sql_password(&ctx.creds.replication)?,
    );
    if from != to {
        sql.push_str(&rename_database(ctx, &from, &to).await?);
    }
    socket_sql(ctx, 0, &sql, false)
        .await
        .context("set the new passwords and database name")?;
    Ok(())
}

/// MariaDB has no `RENAME DATABASE`: the SQL that creates `to`, moves every table of `from` into
/// it, moves the application user's grant and drops `from`. Views, routines, triggers and events
/// cannot move between databases this way, so a database holding them is refused clearly.
async fn rename_database(ctx: &Ctx, from: &str, to: &str) -> anyhow::Result<String> {
    for name in [from, to] {
        anyhow::ensure!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "unexpected database name {name:?}"
        );
    }
    let others = socket_sql(
        ctx,
        0,
        &format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.views WHERE table_schema = '{from}') \
             + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = '{from}') \
             + (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = '{from}') \
             + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = '{from}');\n"
        ),
        false,
    )
    .await?;
    if others.lines().nth(1).map(str::trim) != Some("0") {
        bail!(
            "database {from} holds views, routines, triggers or events, which cannot be moved to the new name {to}; restore into a database of the same name ({from:?})"
        );
    }
    let tables = socket_sql(
        ctx,
        0,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{from}' AND table_type = 'BASE TABLE';\n"
        ),
        false,
    )
    .await?;
    let mut sql = format!(
        "CREATE DATABASE `{to}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
         GRANT ALL PRIVILEGES ON `{to}`.* TO '{APP_USER}'@'%';\n"
    );
    for table in tables.lines().skip(1).filter(|l| !l.is_empty()) {
        // The batch client escapes tabs, newlines and backslashes; anything else is literal.
        anyhow::ensure!(
            !table.contains('\\'),
            "table {table:?} has a name this restore cannot move"
        );
        let t = table.replace('`', "``");
        sql.push_str(&format!("RENAME TABLE `{from}`.`{t}` TO `{to}`.`{t}`;\n"));
    }
    sql.push_str(&format!(
        "REVOKE ALL PRIVILEGES ON `{from}`.* FROM '{APP_USER}'@'%';\nDROP DATABASE `{from}`;\n"
    ));
    Ok(sql)
}

/// Pipes `mariadb-binlog` of the archived files (from the backup's file and position, up to
/// the first event at or after `target`: exactly the transactions logged before that second)
/// into the new server's client over its socket.
async fn replay(
    ctx: &Ctx,
    start: &BinlogStart,
    target: &DateTime<Utc>,
    logs: &Path,
) -> anyhow::Result<()> {
    let binlog = program(&ctx.bins.mariadb_binlog, "mariadb-binlog")?;
    let client = program(&ctx.bins.mariadb_client, "the mariadb client")?;
    let mut files: Vec<String> = std::fs::read_dir(logs)
        .with_context(|| format!("read {}", logs.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| valid_binlog_name(n) && n.as_str() >= start.file.as_str())
        .collect();
    files.sort();
    if files.first() != Some(&start.file) {
        bail!(
            "the archived binary log {} where the backup ends is missing from the backup storage",
            start.file
        );
    }
    if let Some(missing) = first_gap(&files) {
        // Replaying past a gap would silently skip its transactions.
        bail!("the archived binary log {missing} is missing from the backup storage");
    }
    let mut reader_args = vec![
        "--no-defaults".to_string(),
        format!("--start-position={}", start.position),
        format!("--stop-datetime={}", stop_datetime(target)),
    ];
    reader_args.extend(files.iter().map(|f| logs.join(f).display().to_string()));
    let me = os::current_user().name;
    let socket = wait_socket(ctx, 0).await?;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut reader = tokio::process::Command::new(binlog)
        .args(&reader_args)
        .env_clear()
        .env("PATH", &path)
        .env("LANG", "C.UTF-8")
        // --stop-datetime is read in the local time zone: make it UTC, as the API's times are.
        .env("TZ", "UTC")
        .current_dir(&ctx.db_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start mariadb-binlog")?;
    let events: Stdio = reader
        .stdout
        .take()
        .context("mariadb-binlog's output")?
        .try_into()
        .context("pipe mariadb-binlog into the client")?;
    let writer = tokio::process::Command::new(client)
        .args([
            "--no-defaults".to_string(),
            format!("--user={me}"),
            format!("--socket={}", socket.display()),
            // Row events carry binary data (mariadb-binlog's output is meant for this mode).
            "--binary-mode".into(),
        ])
        .env_clear()
        .env("PATH", &path)
        .env("LANG", "C.UTF-8")
        .current_dir(&ctx.db_dir)
        .stdin(events)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the mariadb client")?;
    let both = async { tokio::join!(reader.wait_with_output(), writer.wait_with_output()) };
    let (r, w) = tokio::time::timeout(REPLAY_TIMEOUT, both)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the binary-log replay did not finish within {} s",
                REPLAY_TIMEOUT.as_secs()
            )
        })?;
    let (r, w) = (
        r.context("run mariadb-binlog")?,
        w.context("run the mariadb client")?,
    );
    if !r.status.success() {
        bail!(
            "mariadb-binlog failed ({}): {}",
            r.status,
            os::tail(&String::from_utf8_lossy(&r.stderr), 8)
        );
    }
    if !w.status.success() {
        bail!(
            "replaying the binary log failed ({}): {}",
            w.status,
            os::tail(&String::from_utf8_lossy(&w.stderr), 8)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_files_gaps_and_the_stop_time() {
        let s = BinlogStart {
            origin: "abc".into(),
            file: "binlog.000003".into(),
            position: 1234,
            gtid: "0-1-45".into(),
        };
        assert!(log_needed(&s, "abc/binlog.000003"));
        assert!(log_needed(&s, "abc/binlog.000010"));
        assert!(!log_needed(&s, "abc/binlog.000002"));
        assert!(
            !log_needed(&s, "other/binlog.000004"),
            "another server's lineage"
        );
        let run = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(first_gap(&run(&["binlog.000009", "binlog.000010"])), None);
        assert_eq!(
            first_gap(&run(&["binlog.000001", "binlog.000002", "binlog.000004"])).as_deref(),
            Some("binlog.000003")
        );
        assert_eq!(
            stop_datetime(
                &DateTime::parse_from_rfc3339("2026-12-04T20:01:02Z")
                    .unwrap()
                    .to_utc()
            ),
            "2026-12-04 20:01:02"
        );
    }
}
