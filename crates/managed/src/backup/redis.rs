//! Redis snapshots: `BGSAVE`, wait for it, copy `dump.rdb`. A restore puts the snapshot in the new
//! server's directory before its first start (Redis loads it and starts its AOF from it).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::engines::redis::{Reply, Resp};
use crate::engines::Ctx;
use crate::os;

/// Takes a snapshot of node 0 into `staging/dump.rdb`; returns the file names.
pub async fn snapshot(ctx: &Ctx, staging: &Path) -> anyhow::Result<Vec<String>> {
    let mut r = Resp::connect(&ctx.ca, ctx.port(0)).await?;
    r.auth(&ctx.creds.app).await?;
    match r.call(&[b"BGSAVE"]).await? {
        Reply::Status(_) => {}
        Reply::Error(e) => bail!("BGSAVE failed: {e}"),
        other => bail!("unexpected reply to BGSAVE: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let info = r.info("persistence").await?;
        let get = |k: &str| info.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        if get("rdb_bgsave_in_progress") == Some("0") {
            if get("rdb_last_bgsave_status") != Some("ok") {
                bail!("BGSAVE failed (rdb_last_bgsave_status is not ok)");
            }
            break;
        }
        if Instant::now() >= deadline {
            bail!("BGSAVE did not finish within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    os::remove_dir(staging)?;
    os::create_owned_dir(staging, &ctx.user)?;
    let from = ctx.node_dir(0).join("dump.rdb");
    std::fs::copy(&from, staging.join("dump.rdb"))
        .with_context(|| format!("copy {}", from.display()))?;
    Ok(vec!["dump.rdb".into()])
}

/// Puts the snapshot into the new server's directory as the base of its AOF: with
/// `appendonly yes` Redis 7 loads only the AOF, whose base may be an RDB file
/// (`appendonlydir/appendonly.aof.1.base.rdb`, listed by its manifest).
pub fn prepare_restore(ctx: &Ctx, staging: &Path) -> anyhow::Result<()> {
    let node = ctx.node_dir(0);
    os::create_owned_dir(&node, &ctx.user)?;
    let aof = node.join("appendonlydir");
    os::create_owned_dir(&aof, &ctx.user)?;
    let to = aof.join("appendonly.aof.1.base.rdb");
    std::fs::copy(staging.join("dump.rdb"), &to).context("copy the snapshot")?;
    os::give(&to, &ctx.user)?;
    os::write_owned_file(
        &aof.join("appendonly.aof.manifest"),
        b"file appendonly.aof.1.base.rdb seq 1 type b\n",
        &ctx.user,
    )?;
    Ok(())
}
