//! PostgreSQL: `initdb` (scram-sha-256, superuser `refract_admin`), `postgres -D`, standbys by
//! `pg_basebackup -R` (streaming replication). Settings Refract owns live in `refract.conf`,
//! included by `postgresql.conf` and rewritten on every start (port, memory from the plan).

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::context::{
    sql_password, Ctx, ADMIN_USER, APP_USER, HOST, LOGIN_TIMEOUT, REPLICATION_USER,
};
use crate::api::ReplicaHealth;
use crate::os;
use refract_runtime::InstanceSpec;

pub(crate) fn bin(ctx: &Ctx, program: &str) -> anyhow::Result<PathBuf> {
    let dir = ctx.bins.postgres.get(&ctx.db.version).with_context(|| {
        format!(
            "PostgreSQL {} is no longer installed on this host",
            ctx.db.version
        )
    })?;
    Ok(dir.join(program))
}

pub(super) async fn prepare(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    let dir = ctx.node_dir(node);
    if node == 0 {
        // The superuser's password reaches initdb in a file only the service user can read.
        let pwfile = ctx.db_dir.join(".pwfile");
        os::write_owned_file(
            &pwfile,
            format!("{}\n", ctx.creds.admin).as_bytes(),
            &ctx.user,
        )?;
        let args = [
            "-D".to_string(),
            dir.display().to_string(),
            "-U".into(),
            ADMIN_USER.into(),
            format!("--pwfile={}", pwfile.display()),
            "--auth=scram-sha-256".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C.UTF-8".into(),
        ];
        let result = ctx.run(&bin(ctx, "initdb")?, &args, &[], None).await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
    } else {
        // A copy of the primary, configured as a standby (`standby.signal`, `primary_conninfo`).
        let args = [
            "-h".to_string(),
            HOST.into(),
            "-p".into(),
            ctx.port(0).to_string(),
            "-U".into(),
            REPLICATION_USER.into(),
            "-D".into(),
            dir.display().to_string(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            "-R".into(),
            "-w".into(),
        ];
        let app_name = format!("{}-n{node}", ctx.db.id);
        ctx.run(
            &bin(ctx, "pg_basebackup")?,
            &args,
            &[
                ("PGPASSWORD", ctx.creds.replication.as_str()),
                ("PGAPPNAME", app_name.as_str()),
            ],
            None,
        )
        .await?;
    }
    let conf = dir.join("postgresql.conf");
    let text =
        std::fs::read_to_string(&conf).with_context(|| format!("read {}", conf.display()))?;
    if !text.contains("include_if_exists = 'refract.conf'") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .with_context(|| format!("open {}", conf.display()))?;
        f.write_all(b"\n# Settings managed by Refract (rewritten on every start).\ninclude_if_exists = 'refract.conf'\n")
            .with_context(|| format!("write {}", conf.display()))?;
    }
    Ok(())
}

pub(super) fn spec(ctx: &Ctx, node: usize) -> anyhow::Result<InstanceSpec> {
    let dir = ctx.node_dir(node);
    let conf = format!(
        "# Written by Refract on every start; change the plan instead.\n\
         port = {port}\n\
         listen_addresses = '{HOST}'\n\
         unix_socket_directories = ''\n\
         shared_buffers = {shared}MB\n\
         max_connections = {conns}\n\
         wal_level = logical\n\
         max_wal_senders = 16\n\
         max_replication_slots = 16\n\
         hot_standby = on\n\
         password_encryption = 'scram-sha-256'\n\
         logging_collector = off\n\
         {archive}",
        archive = crate::backup::archive::settings(ctx)?,
        port = ctx.port(node),
        shared = ctx.plan.pg_shared_buffers_mb,
        conns = ctx.plan.max_connections,
    );
    os::write_owned_file(&dir.join("refract.conf"), conf.as_bytes(), &ctx.user)?;
    ctx.server_spec(
        node,
        &bin(ctx, "postgres")?,
        vec!["-D".into(), dir.display().to_string()],
    )
}

pub(crate) async fn connect(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(HOST)
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(LOGIN_TIMEOUT);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("log in to PostgreSQL on port {port} as {user}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub(super) async fn bootstrap(ctx: &Ctx) -> anyhow::Result<()> {
    let client = connect(ctx.port(0), ADMIN_USER, &ctx.creds.admin, "postgres").await?;
    let db = ctx.database();
    // A failing statement must not be logged with its text: it holds a password.
    let sql = format!(
        "SET log_min_error_statement = panic; \
         SET log_statement = 'none'; \
         CREATE ROLE {APP_USER} LOGIN REPLICATION PASSWORD {app}; \
         CREATE ROLE {REPLICATION_USER} LOGIN REPLICATION PASSWORD {repl};",
        app = sql_password(&ctx.creds.app)?,
        repl = sql_password(&ctx.creds.replication)?,
    );
    client
        .batch_execute(&sql)
        .await
        .context("create the application and replication users")?;
    client
        .batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER {APP_USER}"))
        .await
        .with_context(|| format!("create database {db}"))?;
    Ok(())
}

pub(super) async fn check_login(ctx: &Ctx) -> anyhow::Result<String> {
    let client = connect(ctx.port(0), APP_USER, &ctx.creds.app, &ctx.database()).await?;
    let row = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await?;
    let v: String = row.get(0);
    Ok(v.split_whitespace().next().unwrap_or_default().to_string())
}

fn valid_lsn(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit())
    })
}

pub(super) async fn replica_health(
    ctx: &Ctx,
    node: usize,
    health: &mut ReplicaHealth,
) -> anyhow::Result<()> {
    let standby = connect(ctx.port(node), ADMIN_USER, &ctx.creds.admin, "postgres").await?;
    let row = standby
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver LIMIT 1), pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await?;
    let in_recovery: bool = row.get(0);
    let receiver: Option<String> = row.get(1);
    let replayed: Option<String> = row.get(2);
    if !in_recovery {
        bail!("node {node} is not a standby");
    }
    health.status = match receiver.as_deref() {
        Some("streaming") => "streaming".into(),
        Some(_) => "starting".into(),
        None => "down".into(),
    };
    if let Some(lsn) = replayed.filter(|l| valid_lsn(l)) {
        let primary = connect(ctx.port(0), ADMIN_USER, &ctx.creds.admin, "postgres").await?;
        let row = primary
            .query_one(
                &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')::bigint"),
                &[],
            )
            .await?;
        health.lag_bytes = Some(row.get::<_, i64>(0).max(0));
    }
    Ok(())
}
