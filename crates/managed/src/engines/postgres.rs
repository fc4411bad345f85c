//! PostgreSQL: `initdb` (scram-sha-256, superuser `refract_admin`), `postgres -D`, standbys by
//! `pg_basebackup -R` (streaming replication). Settings Refract owns live in `refract.conf`,
//! included by `postgresql.conf` and rewritten on every start (port, memory from the plan).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::context::{
    sql_password, Ctx, ADMIN_USER, APP_USER, HOST, LOGIN_TIMEOUT, REPLICATION_USER,
};
use crate::api::ReplicaHealth;
use crate::os;
use crate::tls;
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

/// Copies the primary (node 0) into `target` with `pg_basebackup`, logged in as the replication
/// user (WAL streamed along, a fast checkpoint, never a password prompt); `extra` options and
/// `env` say what the copy is for (a standby, a backup's tar files).
pub(crate) async fn base_backup_of_primary(
    ctx: &Ctx,
    target: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut args = vec![
        "-h".to_string(),
        HOST.into(),
        "-p".into(),
        ctx.port(0).to_string(),
        "-U".into(),
        REPLICATION_USER.into(),
        "-D".into(),
        target.display().to_string(),
        "-X".into(),
        "stream".into(),
        "-c".into(),
        "fast".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push("-w".into());
    let mut env = env.to_vec();
    env.insert(0, ("PGPASSWORD", ctx.creds.replication.as_str()));
    ctx.run(&bin(ctx, "pg_basebackup")?, &args, &env, None)
        .await
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
        let app_name = format!("{}-n{node}", ctx.db.id);
        // Written into `primary_conninfo` by `-R`: the standby's own copy of the CA certificate
        // (rewritten on every start); libpq's `require` verifies the chain once that file
        // exists (it does not yet during the copy).
        let root_cert = dir.join(tls::CA_FILE).display().to_string();
        base_backup_of_primary(
            ctx,
            &dir,
            &["-R"],
            &[
                ("PGAPPNAME", app_name.as_str()),
                // The primary takes TLS only; `-R` writes this into `primary_conninfo` too.
                ("PGSSLMODE", "require"),
                ("PGSSLROOTCERT", root_cert.as_str()),
            ],
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
    // A primary with standbys commits synchronously (see `write_conf`); the check turns it off
    // while no standby streams.
    write_conf(ctx, node, node == 0 && ctx.db.nodes_ready >= 2)?;
    let dir = ctx.node_dir(node);
    let mut spec = ctx.server_spec(
        node,
        &bin(ctx, "postgres")?,
        vec!["-D".into(), dir.display().to_string()],
    )?;
    // libpq in a standby's WAL receiver looks for `~/.postgresql/postgresql.crt`; a HOME the
    // service user cannot enter (root's) fails the connection, so HOME is the data directory.
    spec.env.push(("HOME".into(), dir.display().to_string()));
    Ok(spec)
}

/// Writes `refract.conf` of node `node`. With `sync`, a commit returns only once one standby has
/// flushed it (`synchronous_standby_names = 'ANY 1 (*)'`), so a promoted standby holds every
/// acknowledged write (docs/managed.md, "Automatic failover").
pub(super) fn write_conf(ctx: &Ctx, node: usize, sync: bool) -> anyhow::Result<()> {
    let dir = ctx.node_dir(node);
    let mut conf = format!(
        "# Written by Refract on every start; change the plan instead.\n\
         port = {port}\n\
         listen_addresses = '{listen}'\n\
         unix_socket_directories = '{socket_dir}'\n\
         shared_buffers = {shared}MB\n\
         max_connections = {conns}\n\
         wal_level = logical\n\
         max_wal_senders = 16\n\
         max_replication_slots = 16\n\
         hot_standby = on\n\
         password_encryption = 'scram-sha-256'\n\
         logging_collector = off\n\
         ssl = {ssl}\n\
         ssl_cert_file = '{cert}'\n\
         ssl_key_file = '{key}'\n\
         ssl_min_protocol_version = 'TLSv1.2'\n\
         {archive}",
        archive = if ctx.overrides.no_wal_archive {
            String::new()
        } else {
            crate::backup::archive::settings(ctx)?
        },
        listen = ctx.listen_addresses().join(","),
        ssl = if ctx.overrides.no_tls { "off" } else { "on" },
        socket_dir = if ctx.overrides.unix_socket {
            dir.display().to_string()
        } else {
            String::new()
        },
        cert = tls::SERVER_CERT_FILE,
        key = tls::SERVER_KEY_FILE,
        port = ctx.port(node),
        shared = ctx.plan.pg_shared_buffers_mb,
        conns = ctx.max_connections(),
    );
    if sync {
        conf.push_str("synchronous_standby_names = 'ANY 1 (*)'\nsynchronous_commit = on\n");
    }
    os::write_owned_file(&dir.join("refract.conf"), conf.as_bytes(), &ctx.user)?;
    // TLS only: a plain-text connection matches no line and is refused — unless the operator
    // allows plain text for clients (`host` matches both); replication stays TLS-only.
    let (clients, replication, said) = if ctx.overrides.no_tls {
        ("host", "host", "plain text only (no TLS)")
    } else if ctx.allow_plaintext {
        (
            "host",
            "hostssl",
            "TLS or plain text (allowed by the operator) for clients, TLS for replication",
        )
    } else {
        ("hostssl", "hostssl", "TLS connections only")
    };
    let mut hba = format!("# Written by Refract on every start: {said}.\n");
    if ctx.overrides.unix_socket {
        hba.push_str("local all all scram-sha-256\n");
    }
    for address in ctx.listen_addresses() {
        hba.push_str(&format!(
            "{clients} all all {address}/32 scram-sha-256\n\
             {replication} replication all {address}/32 scram-sha-256\n"
        ));
    }
    // A restore in progress also lets refract_admin in over its private socket (backup/).
    let hba = format!("{}{hba}", crate::backup::archive::restore_hba(&dir));
    os::write_owned_file(&dir.join("pg_hba.conf"), hba.as_bytes(), &ctx.user)?;
    ctx.write_tls_files(node)?;
    Ok(())
}

pub(crate) async fn connect(
    ctx: &Ctx,
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
    let context = || format!("log in to PostgreSQL on port {port} as {user}");
    if ctx.overrides.no_tls {
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(context)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(client);
    }
    cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, conn) = cfg
        .connect(tls::PgTls(ctx.ca.client_config()))
        .await
        .with_context(context)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Logs in to node `node` as Refract's superuser, on the `postgres` database.
pub(crate) async fn admin_connect(
    ctx: &Ctx,
    node: usize,
) -> anyhow::Result<tokio_postgres::Client> {
    connect(
        ctx,
        ctx.port(node),
        ADMIN_USER,
        &ctx.creds.admin,
        "postgres",
    )
    .await
}

pub(super) async fn bootstrap(ctx: &Ctx) -> anyhow::Result<()> {
    // The port accepts connections a moment before the server does ("the database system is
    // starting up"), which a loaded machine makes long enough to hit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let client = loop {
        match admin_connect(ctx, 0).await {
            Ok(c) => break c,
            Err(e)
                if format!("{e:#}").contains("starting up")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
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
    let client = connect(ctx, ctx.port(0), APP_USER, &ctx.creds.app, &ctx.database()).await?;
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
    let standby = admin_connect(ctx, node).await?;
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
        let primary = admin_connect(ctx, 0).await?;
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
