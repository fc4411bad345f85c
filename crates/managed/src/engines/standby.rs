//! What automatic failover needs from each engine: whether a node's data is still there, how far
//! a standby has received the primary's changes, promoting one in place, and (PostgreSQL)
//! turning synchronous commit on or off on the primary. The decision and the orchestration are
//! in `failover.rs` and `promotion.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::context::Ctx;
use super::{mariadb, postgres, redis};
use crate::api::DbType;

/// How long a promotion may wait for a standby to apply what it received.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a node's data directory `dir` still holds a server's data (a lost disk or machine
/// removes it).
pub fn data_present(db_type: DbType, dir: &Path) -> bool {
    match db_type {
        DbType::Postgresql => dir.join("PG_VERSION").is_file(),
        DbType::Mysql => dir.join("data").join("mysql").is_dir(),
        DbType::Redis | DbType::Mongodb => dir.is_dir(),
    }
}

/// How far standby `node` has received the primary's changes, comparable between the standbys
/// of one database: PostgreSQL the received (or replayed) WAL position in bytes, MariaDB the sum
/// of the sequence numbers of its received GTID position, Redis its replication offset. Fails
/// when the node is not a standby or does not answer.
pub async fn position(ctx: &Ctx, node: usize) -> anyhow::Result<u64> {
    match ctx.db.db_type {
        DbType::Postgresql => {
            let c = postgres::admin_connect(ctx, node).await?;
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint",
                    &[],
                )
                .await?;
            let standby: bool = row.get(0);
            let pos: Option<i64> = row.get(1);
            if !standby {
                bail!("node {node} is not a standby");
            }
            Ok(pos.unwrap_or(0).max(0) as u64)
        }
        DbType::Mysql => {
            let status = mariadb::socket_sql(ctx, node, "SHOW SLAVE STATUS;\n", true).await?;
            let io = field(&status, "Gtid_IO_Pos")
                .with_context(|| format!("node {node} is not a standby"))?;
            Ok(gtid_seq(&io))
        }
        DbType::Redis => {
            let mut c = redis::Resp::connect(&ctx.ca, ctx.port(node)).await?;
            c.auth(&ctx.creds.app).await?;
            let info = c.info("replication").await?;
            if redis::get(&info, "role") != Some("slave") {
                bail!("node {node} is not a replica");
            }
            redis::get(&info, "slave_repl_offset")
                .and_then(|v| v.parse::<i64>().ok())
                .map(|v| v.max(0) as u64)
                .context("no slave_repl_offset in INFO replication")
        }
        DbType::Mongodb => bail!("MongoDB has no standbys on the local runtime"),
    }
}

/// Promotes standby `node` in place, after it applied everything it received: PostgreSQL
/// `pg_promote()`; MariaDB stops fetching, waits for its relay log to be applied, then `STOP
/// SLAVE`, `RESET SLAVE ALL` and `read_only = 0`; Redis `REPLICAOF NO ONE`, then waits for a
/// running AOF rewrite so that the stop which follows keeps its data.
pub async fn promote(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    match ctx.db.db_type {
        DbType::Postgresql => {
            let c = postgres::admin_connect(ctx, node).await?;
            let row = c
                .query_one(
                    &format!("SELECT pg_promote(true, {})", APPLY_TIMEOUT.as_secs()),
                    &[],
                )
                .await
                .context("pg_promote()")?;
            if !row.get::<_, bool>(0) {
                bail!(
                    "pg_promote() did not finish within {} s",
                    APPLY_TIMEOUT.as_secs()
                );
            }
            Ok(())
        }
        DbType::Mysql => {
            mariadb::socket_sql(ctx, node, "STOP SLAVE IO_THREAD;\n", false).await?;
            let status = mariadb::socket_sql(ctx, node, "SHOW SLAVE STATUS;\n", true).await?;
            let io = field(&status, "Gtid_IO_Pos").unwrap_or_default();
            anyhow::ensure!(
                io.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b','),
                "unexpected Gtid_IO_Pos {io:?}"
            );
            if !io.is_empty() {
                let out = mariadb::socket_sql(
                    ctx,
                    node,
                    &format!(
                        "SELECT MASTER_GTID_WAIT('{io}', {});\n",
                        APPLY_TIMEOUT.as_secs()
                    ),
                    false,
                )
                .await?;
                if out.lines().last().map(str::trim) != Some("0") {
                    bail!("node {node} did not apply its relay log up to {io}: {out}");
                }
            }
            mariadb::socket_sql(
                ctx,
                node,
                "STOP SLAVE;\nRESET SLAVE ALL;\nSET GLOBAL read_only = 0;\n",
                false,
            )
            .await?;
            Ok(())
        }
        DbType::Redis => {
            let mut c = redis::Resp::connect(&ctx.ca, ctx.port(node)).await?;
            c.auth(&ctx.creds.app).await?;
            match c.call(&[b"REPLICAOF", b"NO", b"ONE"]).await? {
                redis::Reply::Status(s) if s == "OK" => {}
                other => bail!("REPLICAOF NO ONE answered {other:?}"),
            }
            let deadline = Instant::now() + APPLY_TIMEOUT;
            loop {
                let info = c.info("persistence").await?;
                let busy = redis::get(&info, "aof_rewrite_in_progress") != Some("0")
                    || redis::get(&info, "aof_rewrite_scheduled") != Some("0")
                    || redis::get(&info, "loading") == Some("1");
                if !busy {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    bail!("node {node} kept rewriting its AOF");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        DbType::Mongodb => bail!("MongoDB has no standbys on the local runtime"),
    }
}

/// PostgreSQL: rewrites the primary's `refract.conf` with synchronous commit `on` or off and
/// reloads it (only when that changes it). A no-op for the other engines.
pub async fn set_sync(ctx: &Ctx, on: bool) -> anyhow::Result<()> {
    if ctx.db.db_type != DbType::Postgresql {
        return Ok(());
    }
    let current = std::fs::read_to_string(ctx.node_dir(0).join("refract.conf")).unwrap_or_default();
    if current.contains("synchronous_standby_names") == on {
        return Ok(());
    }
    postgres::write_conf(ctx, 0, on)?;
    let c = postgres::admin_connect(ctx, 0).await?;
    c.batch_execute("SELECT pg_reload_conf()").await?;
    Ok(())
}

/// A field of `--vertical` output (`  Gtid_IO_Pos: 0-1-42`).
fn field(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// The sum of the sequence numbers of a GTID position (`0-1-42,1-2-5` → 47); with one domain
/// (Refract's servers) the sequence number of the last received transaction.
pub fn gtid_seq(pos: &str) -> u64 {
    pos.split(',')
        .filter_map(|g| g.trim().rsplit('-').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_compare_by_sequence() {
        assert_eq!(gtid_seq(""), 0);
        assert_eq!(gtid_seq("0-1-42"), 42);
        assert_eq!(gtid_seq("0-1-42,1-2-5"), 47);
        assert_eq!(gtid_seq("garbage"), 0);
        assert_eq!(
            field("*** 1. row ***\n  Gtid_IO_Pos: 0-1-9\n", "Gtid_IO_Pos").as_deref(),
            Some("0-1-9")
        );
        assert_eq!(
            field("  Gtid_IO_Pos: \n", "Gtid_IO_Pos").as_deref(),
            Some("")
        );
    }
}
