//! PostgreSQL base backups (`pg_basebackup -Ft -X stream` as the server's user, through the
//! replication role) and restores: the base backup unpacked into a new data directory, archived
//! WAL replayed by `restore_command` up to the target (`recovery_target_time`, exclusive) or the
//! backup's end (`recovery_target = 'immediate'`), then promoted. The restored cluster keeps the
//! source's roles: during the restore only, a Unix socket in the new data directory (0700, so
//! only the server's user and root reach it) accepts `refract_admin` without a password, which
//! sets the new database's generated passwords and renames the application database; the socket's
//! trust line is then removed and the configuration reloaded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::archive::tar;
use super::types::RestorePlan;
use crate::engines::postgres::{admin_connect, base_backup_of_primary};
use crate::engines::{Ctx, ADMIN_USER, APP_USER, REPLICATION_USER};
use crate::os;

use super::archive::{RESTORE_CONF, TRUST_LINE};

/// The segment part of a WAL file name (without the timeline), for ordering.
pub fn segment(name: &str) -> Option<&str> {
    (name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| &name[8..])
}

/// The WAL file the server writes now (a base backup taken next starts at or after it).
pub async fn current_wal(ctx: &Ctx) -> anyhow::Result<String> {
    let c = admin_connect(ctx, 0).await?;
    let row = c
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await?;
    Ok(row.get(0))
}

/// Runs `pg_basebackup` into `staging` (created for the server's user); returns its files.
pub async fn base_backup(ctx: &Ctx, staging: &Path) -> anyhow::Result<Vec<String>> {
    os::remove_dir(staging)?;
    os::create_owned_dir(staging, &ctx.user)?;
    base_backup_of_primary(
        ctx,
        staging,
        &["-F", "t"],
        &[("PGAPPNAME", "refract-backup")],
    )
    .await
    .context("pg_basebackup")?;
    let mut files: Vec<String> = std::fs::read_dir(staging)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    anyhow::ensure!(
        files.iter().any(|f| f == "base.tar"),
        "pg_basebackup wrote no base.tar"
    );
    Ok(files)
}

/// Makes the source write a commit after `target` and archive it, so that a restore to
/// `target` finds a commit past it in the archive (PostgreSQL refuses to end a recovery before
/// its target). Returns the WAL file to wait for.
pub async fn seal(ctx: &Ctx) -> anyhow::Result<String> {
    let c = admin_connect(ctx, 0).await?;
    c.batch_execute("SELECT txid_current()").await?;
    let row = c
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await?;
    let wal: String = row.get(0);
    c.batch_execute("SELECT pg_switch_wal()").await?;
    Ok(wal)
}

/// Whether the server has archived `wal` (or a later file).
pub async fn archived(ctx: &Ctx, wal: &str) -> anyhow::Result<bool> {
    let c = admin_connect(ctx, 0).await?;
    let row = c
        .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
        .await?;
    let last: Option<String> = row.get(0);
    Ok(match (last.as_deref().and_then(segment), segment(wal)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    })
}

/// Writes the restored data directory of node 0 (`ctx` is the new database): `files` maps each
/// backup file to a local copy, `wal` is a directory holding the archived WAL it may need.
pub fn prepare_restore(
    ctx: &Ctx,
    plan: &RestorePlan,
    staging: &Path,
    wal: &Path,
) -> anyhow::Result<Vec<(PathBuf, Vec<String>)>> {
    let node = ctx.node_dir(0);
    os::create_owned_dir(&node, &ctx.user)?;
    let d = node.display().to_string();
    let w = wal.display().to_string();
    for s in [&d, &w] {
        anyhow::ensure!(
            !s.contains(['\'', '"', '%', '\\', '$', '`', '\n']),
            "the directory {s} has a character PostgreSQL settings cannot quote"
        );
    }
    let target = match plan.target {
        Some(t) => format!(
            "recovery_target_time = '{}'\nrecovery_target_inclusive = off\n",
            t.format("%Y-%m-%d %H:%M:%S+00")
        ),
        None => "recovery_target = 'immediate'\n".to_string(),
    };
    let conf = format!(
        "# Written by Refract for a restore; removed once it is done.\n\
         restore_command = 'cp \"{w}/%f\" \"%p\"'\n\
         {target}\
         recovery_target_action = 'promote'\n\
         unix_socket_directories = '{d}'\n"
    );
    // The commands to run as the server's user: unpack the base backup and its WAL.
    let mut cmds = vec![(
        tar(),
        vec![
            "-xf".to_string(),
            staging.join("base.tar").display().to_string(),
            "-C".into(),
            d.clone(),
        ],
    )];
    if plan.manifest.files.iter().any(|f| f == "pg_wal.tar") {
        cmds.push((
            tar(),
            vec![
                "-xf".to_string(),
                staging.join("pg_wal.tar").display().to_string(),
                "-C".into(),
                format!("{d}/pg_wal"),
            ],
        ));
    }
    os::write_owned_file(&node.join(RESTORE_CONF), conf.as_bytes(), &ctx.user)?;
    Ok(cmds)
}

/// After unpacking: the recovery signal, the restore settings' include and the trust line.
pub fn finish_prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let node = ctx.node_dir(0);
    os::write_owned_file(&node.join("recovery.signal"), b"", &ctx.user)?;
    for f in ["standby.signal", "postmaster.pid"] {
        let _ = std::fs::remove_file(node.join(f));
    }
    let conf = node.join("postgresql.conf");
    let text =
        std::fs::read_to_string(&conf).with_context(|| format!("read {}", conf.display()))?;
    let line = format!("include_if_exists = '{RESTORE_CONF}'");
    if !text.contains(&line) {
        let text = format!("{text}\n{line}\n");
        os::write_owned_file(&conf, text.as_bytes(), &ctx.user)?;
    }
    let hba = node.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).with_context(|| format!("read {}", hba.display()))?;
    os::write_owned_file(&hba, format!("{TRUST_LINE}{text}").as_bytes(), &ctx.user)?;
    Ok(())
}

async fn socket_client(ctx: &Ctx, dbname: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(ctx.node_dir(0))
        .port(ctx.port(0))
        .user(ADMIN_USER)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// After the restored server started: waits for the end of recovery (its promotion), sets the
/// new passwords, renames the application database, closes the restore's socket access.
/// `alive` says whether the server still runs (a failed recovery exits).
pub async fn finish_restore(
    ctx: &Ctx,
    plan: &RestorePlan,
    timeout: Duration,
    driver: &dyn refract_runtime::Driver,
) -> anyhow::Result<()> {
    let inst = crate::engines::instance_id(&ctx.db.id, 0);
    let deadline = Instant::now() + timeout;
    let client = loop {
        let last = match socket_client(ctx, "postgres").await {
            Ok(c) => match c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                Ok(row) if !row.get::<_, bool>(0) => break c,
                Ok(_) => anyhow::anyhow!("still replaying WAL"),
                Err(e) => e.into(),
            },
            Err(e) => e,
        };
        let alive = driver
            .status(&inst)
            .await
            .map(|s| s.is_alive())
            .unwrap_or(false);
        if !alive {
            bail!("the server stopped during recovery");
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!(
                "recovery did not finish within {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sql = format!(
        "SET log_min_error_statement = panic; \
         SET log_statement = 'none'; \
         ALTER ROLE {ADMIN_USER} PASSWORD {admin}; \
         ALTER ROLE {APP_USER} PASSWORD {app}; \
         ALTER ROLE {REPLICATION_USER} PASSWORD {repl};",
        admin = sql_literal(&ctx.creds.admin)?,
        app = sql_literal(&ctx.creds.app)?,
        repl = sql_literal(&ctx.creds.replication)?,
    );
    client
        .batch_execute(&sql)
        .await
        .context("set the new passwords")?;
    let (from, to) = (plan.manifest.database.clone(), ctx.database());
    if from != to {
        client
            .batch_execute(&format!("ALTER DATABASE \"{from}\" RENAME TO \"{to}\""))
            .await
            .with_context(|| format!("rename database {from} to {to}"))?;
    }
    let node = ctx.node_dir(0);
    let hba = node.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba)?;
    os::write_owned_file(&hba, text.replace(TRUST_LINE, "").as_bytes(), &ctx.user)?;
    let _ = std::fs::remove_file(node.join(RESTORE_CONF));
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .context("reload the configuration")?;
    Ok(())
}

fn sql_literal(pw: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !pw.is_empty() && pw.bytes().all(|b| b.is_ascii_alphanumeric()),
        "a stored password is not alphanumeric"
    );
    Ok(format!("'{pw}'"))
}

/// Parses a manifest's `created_at` stamp into a key part (`20261204T200102Z`).
pub fn stamp(t: &DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}
