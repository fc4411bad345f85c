//! MySQL served by MariaDB: `mariadb-install-db`, `mariadbd` with its options on the command line
//! (none secret), binary log on (ROW, full images: a `/v1` binlog source works at once). Users are
//! created over the server's Unix socket, where `root` (or this process's own user) logs in by
//! `unix_socket` authentication, so no password ever sits in a file for the bootstrap. A standby
//! starts from a `mariadb-backup` of the primary and replicates from the GTID position that
//! backup ends at (the primary's binary log may no longer hold its start: it expires, and a
//! restored primary's never did); without `mariadb-backup` it is a fresh server that replays the
//! primary's binary log from its start.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::context::{
    sql_password, Ctx, ADMIN_USER, APP_USER, HOST, LOGIN_TIMEOUT, REPLICATION_USER,
};
use crate::api::ReplicaHealth;
use crate::os;
use crate::tls;
use refract_runtime::InstanceSpec;

/// Unix socket paths are limited to 108 bytes.
const MAX_SOCKET_PATH: usize = 100;

/// Node `node`'s Unix socket (local superuser logins, `mariadb-backup`).
pub(crate) fn socket(ctx: &Ctx, node: usize) -> PathBuf {
    ctx.node_dir(node).join("mysqld.sock")
}

/// Waits (up to [`LOGIN_TIMEOUT`]) for node `node`'s socket, which `mariadbd` creates a moment
/// after it listens on its TCP port (the readiness the runtime checks): a local login right after
/// the start would otherwise fail with `Can't connect … through socket` (`ERROR 2002 … (2)`).
pub(crate) async fn wait_socket(ctx: &Ctx, node: usize) -> anyhow::Result<PathBuf> {
    let path = socket(ctx, node);
    let deadline = std::time::Instant::now() + LOGIN_TIMEOUT;
    while !path.exists() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the server of n{node} listens on its port but has not created its socket {} within {} s",
            path.display(),
            LOGIN_TIMEOUT.as_secs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(path)
}

/// Node `node`'s own directory for temporary tables and files (0700, the server's user),
/// instead of the shared `/tmp`: another server's bootstrap, or anything cleaning `/tmp`,
/// must not touch them (a bootstrap failed once with `Could not remove temporary table
/// '/tmp/#sql-temptable-…'` and `Unknown table 'mysql.tmp_user_sys'`), and other users
/// must not read them.
pub(crate) fn tmpdir(ctx: &Ctx, node: usize) -> PathBuf {
    ctx.node_dir(node).join("tmp")
}

/// Where a standby built from a backup keeps the GTID position that backup ends at, until its
/// bootstrap points replication there.
const STANDBY_GTID_FILE: &str = "refract-standby-gtid";

pub(super) async fn prepare(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    let sock = socket(ctx, node);
    if sock.as_os_str().len() > MAX_SOCKET_PATH {
        bail!("the MariaDB socket path {} is too long for a Unix socket: use a shorter data directory", sock.display());
    }
    let dir = ctx.node_dir(node);
    os::create_owned_dir(&dir, &ctx.user)?;
    os::create_owned_dir(&tmpdir(ctx, node), &ctx.user)?;
    if node > 0 && ctx.bins.mariadb_backup.is_some() {
        return prepare_standby_from_backup(ctx, node).await;
    }
    let install = ctx
        .bins
        .mariadb_install_db
        .as_ref()
        .context("mariadb-install-db is not installed")?;
    let args = [
        "--no-defaults".to_string(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--user={}", ctx.user.name),
        "--skip-test-db".into(),
        "--skip-name-resolve".into(),
        // Passed on to the bootstrap server.
        format!("--tmpdir={}", tmpdir(ctx, node).display()),
    ];
    ctx.run(install, &args, &[], None).await?;
    Ok(())
}

/// Node `node`'s data directory as a prepared `mariadb-backup` of the primary (node 0).
async fn prepare_standby_from_backup(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    let at = backup_primary(ctx, &ctx.node_dir(node).join("data")).await?;
    os::write_owned_file(
        &ctx.node_dir(node).join(STANDBY_GTID_FILE),
        at.gtid.as_bytes(),
        &ctx.user,
    )?;
    Ok(())
}

/// Where the primary's binary log stood at a backup's consistent point (`xtrabackup_binlog_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinlogInfo {
    /// The binary log file (`binlog.000003`).
    pub file: String,
    /// The position in it where the backup's data ends.
    pub position: u64,
    /// The GTID position there (`0-1-45`; empty when nothing was logged yet).
    pub gtid: String,
}

/// Whether `name` is a plain binary-log file name (no path).
pub(crate) fn valid_binlog_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `binlog.000003<TAB>1234<TAB>0-1-45` → its parts.
pub(crate) fn parse_binlog_info(text: &str) -> anyhow::Result<BinlogInfo> {
    let mut cols = text.trim().split('\t');
    let file = cols.next().unwrap_or_default().trim().to_string();
    let position = cols
        .next()
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("unreadable xtrabackup_binlog_info: {text:?}"))?;
    let gtid = cols.next().unwrap_or_default().trim().to_string();
    anyhow::ensure!(
        valid_binlog_name(&file)
            && gtid
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b','),
        "unreadable xtrabackup_binlog_info: {text:?}"
    );
    Ok(BinlogInfo {
        file,
        position,
        gtid,
    })
}

/// Takes a `mariadb-backup` of the primary (node 0) into `target` (absent or empty) and
/// prepares it there, as the server's user over the primary's Unix socket (that user logs in by
/// `unix_socket`); returns where the binary log stood at the backup's consistent point.
pub(crate) async fn backup_primary(ctx: &Ctx, target: &Path) -> anyhow::Result<BinlogInfo> {
    let mb =
        ctx.bins.mariadb_backup.as_deref().context(
            "mariadb-backup is not installed on this host (Debian package mariadb-backup)",
        )?;
    // `--no-defaults` first: the host's my.cnf (Debian's /etc/mysql) must not leak in.
    ctx.run(
        mb,
        &[
            "--no-defaults".to_string(),
            "--backup".into(),
            format!("--target-dir={}", target.display()),
            format!("--user={}", ctx.user.name),
            format!("--socket={}", socket(ctx, 0).display()),
            format!("--datadir={}", ctx.node_dir(0).join("data").display()),
        ],
        &[],
        None,
    )
    .await
    .context("mariadb-backup --backup of the primary")?;
    let info = std::fs::read_to_string(target.join("xtrabackup_binlog_info"))
        .context("mariadb-backup wrote no xtrabackup_binlog_info (is the binary log on?)")?;
    let at = parse_binlog_info(&info)?;
    ctx.run(
        mb,
        &[
            "--no-defaults".to_string(),
            "--prepare".into(),
            format!("--target-dir={}", target.display()),
        ],
        &[],
        None,
    )
    .await
    .context("mariadb-backup --prepare")?;
    Ok(at)
}

pub(super) fn spec(ctx: &Ctx, node: usize) -> anyhow::Result<InstanceSpec> {
    let server = ctx
        .bins
        .mariadbd
        .as_ref()
        .context("mariadbd is no longer installed on this host")?;
    let dir = ctx.node_dir(node);
    // Servers created before their own tmpdir existed get it at their next start.
    os::create_owned_dir(&tmpdir(ctx, node), &ctx.user)?;
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--port={}", ctx.port(node)),
        format!("--tmpdir={}", tmpdir(ctx, node).display()),
        format!("--bind-address={}", ctx.listen_addresses().join(",")),
        format!("--socket={}", socket(ctx, node).display()),
        format!("--pid-file={}", dir.join("mysqld.pid").display()),
        "--skip-name-resolve".into(),
        format!(
            "--innodb-buffer-pool-size={}M",
            ctx.plan.innodb_buffer_pool_mb
        ),
        format!("--max-connections={}", ctx.max_connections()),
        format!("--server-id={}", node + 1),
        "--log-bin=binlog".into(),
        "--binlog-format=ROW".into(),
        "--binlog-row-image=FULL".into(),
        // Binary logs are shipped into the backup storage every backup tick (seconds after they
        // close, backup/mariadb.rs), so the server keeps them locally for the plan's backup
        // retention only: long enough that none goes before it is shipped, short enough that
        // the disk does not fill.
        format!(
            "--expire-logs-days={}",
            crate::catalog::backup_retention_days(&ctx.db.plan_id)
        ),
        // A standby logs what it applies, so that once promoted its binary log holds everything
        // and new standbys can be built from it (automatic failover).
        "--log-slave-updates".into(),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_unicode_ci".into(),
        // TLS only over TCP (the Unix socket the bootstrap uses counts as secure), unless the
        // operator allows plain text too (Refract's own connections use TLS either way).
        format!(
            "--require-secure-transport={}",
            if ctx.allow_plaintext || ctx.overrides.no_tls {
                "OFF"
            } else {
                "ON"
            }
        ),
    ];
    if !ctx.overrides.no_tls {
        args.extend([
            format!("--ssl-cert={}", dir.join(tls::SERVER_CERT_FILE).display()),
            format!("--ssl-key={}", dir.join(tls::SERVER_KEY_FILE).display()),
            format!("--ssl-ca={}", dir.join(tls::CA_FILE).display()),
        ]);
    }
    // Semi-synchronous replication (built into MariaDB): a commit returns once a standby has
    // the transaction in its relay log (AFTER_SYNC), or after 10 s without one; with no
    // standby connected it does not wait at all.
    args.extend([
        "--rpl-semi-sync-master-enabled=ON".to_string(),
        "--rpl-semi-sync-slave-enabled=ON".into(),
        "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        "--rpl-semi-sync-master-wait-no-slave=OFF".into(),
        "--rpl-semi-sync-master-timeout=10000".into(),
    ]);
    ctx.write_tls_files(node)?;
    if node > 0 {
        args.push("--read-only".into());
        args.push("--relay-log=relay-bin".into());
    }
    ctx.server_spec(node, &server.path, args)
}

/// Runs SQL (from stdin, never argv) over node `node`'s socket as the local superuser.
pub(crate) async fn socket_sql(
    ctx: &Ctx,
    node: usize,
    sql: &str,
    vertical: bool,
) -> anyhow::Result<String> {
    socket_script(ctx, node, sql, vertical, LOGIN_TIMEOUT * 6).await
}

/// [`socket_sql`] allowed to run for `timeout` (a long script: a data load).
pub(crate) async fn socket_script(
    ctx: &Ctx,
    node: usize,
    sql: &str,
    vertical: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    let client = ctx
        .bins
        .mariadb_client
        .as_ref()
        .context("the mariadb client is not installed")?;
    // unix_socket authentication maps this process's OS user to the MariaDB user of that name:
    // `root` when the control plane is root, else the user mariadb-install-db was run as.
    let me = os::current_user().name;
    let socket = wait_socket(ctx, node).await?;
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--user={me}"),
        format!("--socket={}", socket.display()),
        "--batch".into(),
    ];
    if vertical {
        args.push("--vertical".into());
    }
    let no_switch = os::ServiceUser {
        switch: false,
        ..os::current_user()
    };
    os::run_as(
        &no_switch,
        None,
        os::Setup {
            program: client,
            args: &args,
            env: &[],
            stdin: Some(sql.as_bytes()),
            cwd: &ctx.db_dir,
            timeout,
        },
    )
    .await
}

pub(super) async fn bootstrap(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    if node == 0 {
        let db = ctx.database();
        let sql = format!(
            "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
             CREATE USER '{APP_USER}'@'%' IDENTIFIED BY {app};\n\
             GRANT ALL PRIVILEGES ON `{db}`.* TO '{APP_USER}'@'%';\n\
             GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{APP_USER}'@'%';\n\
             CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY {admin};\n\
             GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;\n\
             CREATE USER '{REPLICATION_USER}'@'{HOST}' IDENTIFIED BY {repl};\n\
             GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{HOST}';\n",
            app = sql_password(&ctx.creds.app)?,
            admin = sql_password(&ctx.creds.admin)?,
            repl = sql_password(&ctx.creds.replication)?,
        );
        socket_sql(ctx, 0, &sql, false)
            .await
            .context("create the database and its users")?;
    } else {
        // A standby built from a backup replicates from where the backup ends; an empty
        // position (or a fresh server) from the start of the primary's binary log.
        let gtid_file = ctx.node_dir(node).join(STANDBY_GTID_FILE);
        let gtid = std::fs::read_to_string(&gtid_file).unwrap_or_default();
        let gtid = gtid.trim();
        anyhow::ensure!(
            gtid.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b','),
            "unexpected GTID position {gtid:?} in {}",
            gtid_file.display()
        );
        let sql = format!(
            "SET GLOBAL gtid_slave_pos = '{gtid}';\n\
             CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={port}, MASTER_USER='{REPLICATION_USER}', \
             MASTER_PASSWORD={repl}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_SSL=1, MASTER_SSL_CA='{ca}', MASTER_SSL_VERIFY_SERVER_CERT=1;\n\
             START SLAVE;\n",
            port = ctx.port(0),
            ca = ctx.node_dir(node).join(tls::CA_FILE).display(),
            repl = sql_password(&ctx.creds.replication)?,
        );
        socket_sql(ctx, node, &sql, false)
            .await
            .context("start replication from the primary")?;
    }
    Ok(())
}

pub(super) async fn check_login(ctx: &Ctx) -> anyhow::Result<String> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(HOST)
        .tcp_port(ctx.port(0))
        .user(Some(APP_USER))
        .pass(Some(ctx.creds.app.clone()))
        .db_name(Some(ctx.database()))
        .ssl_opts((!ctx.overrides.no_tls).then(|| {
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ctx.ca.cert_pem().as_bytes().to_vec().into()])
                .with_disable_built_in_roots(true)
        }));
    tls::install_provider();
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .with_context(|| format!("log in to MariaDB on port {} as {APP_USER}", ctx.port(0)))?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let _ = conn.disconnect().await;
    let version = version.unwrap_or_default();
    // "10.11.14-MariaDB-0+deb12u2" → "10.11.14-MariaDB"
    Ok(match version.find("-MariaDB") {
        Some(i) => version[..i + "-MariaDB".len()].to_string(),
        None => version,
    })
}

pub(super) async fn replica_health(
    ctx: &Ctx,
    node: usize,
    health: &mut ReplicaHealth,
) -> anyhow::Result<()> {
    let out = socket_sql(ctx, node, "SHOW SLAVE STATUS;\n", true).await?;
    let field = |name: &str| {
        out.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            (k == name).then(|| v.trim().to_string())
        })
    };
    let io = field("Slave_IO_Running");
    let sql = field("Slave_SQL_Running");
    health.status = match (io.as_deref(), sql.as_deref()) {
        (Some("Yes"), Some("Yes")) => "streaming".into(),
        (Some("Connecting"), _) => "starting".into(),
        _ => "down".into(),
    };
    health.lag_seconds = field("Seconds_Behind_Master").and_then(|s| s.parse().ok());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_info_is_parsed_and_checked() {
        assert_eq!(
            parse_binlog_info("binlog.000003\t1234\t0-1-45\n").unwrap(),
            BinlogInfo {
                file: "binlog.000003".into(),
                position: 1234,
                gtid: "0-1-45".into()
            }
        );
        assert_eq!(
            parse_binlog_info("binlog.000001\t329\t\n").unwrap().gtid,
            ""
        );
        assert!(parse_binlog_info("").is_err());
        assert!(parse_binlog_info("../x\t4\t").is_err(), "a path");
        assert!(parse_binlog_info("binlog.000001\t4\t0-1-1'; DROP").is_err());
    }
}
