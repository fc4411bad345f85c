//! The test suite's shared database servers (what `scripts/testenv` runs), started through the
//! managed engine recipes like every other server Refract starts ([`StandaloneServer`]):
//!
//! - MariaDB (binary log ROW, full row images) and PostgreSQL (`wal_level = logical`) that take
//!   plain text, and a Redis with a plain-text port and no password;
//! - a TLS-only MariaDB and PostgreSQL whose certificates a test CA issued (named `localhost`
//!   and 127.0.0.1), also listening on 127.0.0.2 (host name mismatch tests), plus a second CA
//!   that signed nothing (wrong CA tests).
//!
//! Each runs as an unprivileged user when root, on free loopback ports, with all its files under
//! `DIR/<server>`. The fixed logins below replace the generated ones: these servers live for
//! one test run on loopback only.
//!
//! ```text
//! testenv start DIR   start them (they keep running); writes DIR/env (REFRACT_TEST_* variables)
//! testenv stop DIR    stop them and wait until they have exited (DIR is left to the caller)
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use refract_managed::tls::Ca;
use refract_managed::{DbType, MemoryVault, StandaloneOptions, StandaloneServer};

const USAGE: &str = "usage: testenv start|stop DIR";

/// The admin login of the MariaDB and PostgreSQL servers (for setting up test data).
const ADMIN_USER: &str = "refract";
const ADMIN_PASSWORD: &str = "refract-test-pw";
/// The source user Refract connects as, with exactly the grants docs/engine.md documents.
const SOURCE_USER: &str = "refract_src";
const SOURCE_PASSWORD: &str = "refract-src-pw";

/// The servers' directories under DIR, in the order they are stopped.
const SERVERS: [&str; 5] = [
    "mariadb-tls",
    "postgres-tls",
    "mariadb",
    "postgres",
    "redis",
];

/// The address the TLS servers also listen on, which their certificate does not name.
const MISMATCH_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, dir] if cmd == "start" => start(Path::new(dir)).await,
        [cmd, dir] if cmd == "stop" => stop(Path::new(dir)).await,
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testenv: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    // The servers' users walk through it (mktemp makes it 0700).
    set_mode(&dir, 0o755)?;
    let ca = Arc::new(Ca::load_or_create(&MemoryVault::default())?);
    let other_ca = other_ca()?;
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let ca_file = tls_dir.join("ca.pem");
    let other_ca_file = tls_dir.join("other-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem())?;
    std::fs::write(&other_ca_file, other_ca)?;

    let opts = |db_type, name: &str| {
        let mut o = StandaloneOptions::new(db_type, dir.join(name), "testenv");
        o.wal_archive = false;
        o.ca = Some(ca.clone());
        o
    };
    // The plain servers offer no TLS (tests of clients against such a server).
    let mut mariadb = opts(DbType::Mysql, "mariadb");
    mariadb.max_connections = Some(500);
    mariadb.tls = false;
    let mut postgres = opts(DbType::Postgresql, "postgres");
    postgres.max_connections = Some(200);
    postgres.tls = false;
    let mut redis = opts(DbType::Redis, "redis");
    redis.redis_plaintext_port = true;
    let mut mariadb_tls = opts(DbType::Mysql, "mariadb-tls");
    mariadb_tls.allow_plaintext = false;
    mariadb_tls.max_connections = Some(200);
    mariadb_tls.extra_listen_addresses = vec![MISMATCH_HOST];
    let mut postgres_tls = opts(DbType::Postgresql, "postgres-tls");
    postgres_tls.allow_plaintext = false;
    postgres_tls.extra_listen_addresses = vec![MISMATCH_HOST];
    // The tests set up data over its local socket (TCP takes TLS only).
    postgres_tls.unix_socket = true;

    let started = tokio::join!(
        StandaloneServer::start(mariadb),
        StandaloneServer::start(postgres),
        StandaloneServer::start(redis),
        StandaloneServer::start(mariadb_tls),
        StandaloneServer::start(postgres_tls),
    );
    let servers = match started {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => [a, b, c, d, e],
        (a, b, c, d, e) => {
            let mut first_error = None;
            for result in [a, b, c, d, e] {
                match result {
                    Ok(server) => server.stop_now(),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.expect("one start failed"));
        }
    };
    if let Err(e) = set_up(&dir, &servers, &ca_file, &other_ca_file).await {
        for server in &servers {
            server.stop_now();
        }
        return Err(e);
    }
    Ok(())
}

/// The fixed logins, the source user, the socket link and the env file.
async fn set_up(
    dir: &Path,
    servers: &[StandaloneServer; 5],
    ca_file: &Path,
    other_ca_file: &Path,
) -> anyhow::Result<()> {
    let [mariadb, postgres, redis, mariadb_tls, postgres_tls] = servers;
    let source_user = format!(
        "CREATE USER '{SOURCE_USER}'@'%' IDENTIFIED BY '{SOURCE_PASSWORD}';\n\
         GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{SOURCE_USER}'@'%';\n\
         CREATE USER '{SOURCE_USER}'@'localhost' IDENTIFIED BY '{SOURCE_PASSWORD}';\n\
         GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{SOURCE_USER}'@'localhost';\n"
    );
    mariadb
        .run_admin_sql(&format!("{}{source_user}", mariadb_admin()))
        .await
        .context("set up the MariaDB users")?;
    mariadb_tls
        .run_admin_sql(&mariadb_admin())
        .await
        .context("set up the TLS MariaDB users")?;
    // The documented source role: LOGIN REPLICATION, and SELECT on every table
    // (pg_read_all_data, since the tests create databases and tables as they go).
    postgres
        .run_admin_sql(&format!(
            "{}CREATE ROLE {SOURCE_USER} LOGIN REPLICATION PASSWORD '{SOURCE_PASSWORD}';\n\
             GRANT pg_read_all_data TO {SOURCE_USER};",
            postgres_admin()
        ))
        .await
        .context("set up the PostgreSQL roles")?;
    postgres_tls
        .run_admin_sql(&postgres_admin())
        .await
        .context("set up the TLS PostgreSQL roles")?;
    let redis_port = redis
        .plaintext_port()
        .context("Redis has no plain-text port")?;
    // The suite's Redis takes any client.
    redis
        .redis_command(&["CONFIG", "SET", "requirepass", ""])
        .await
        .context("take the password off Redis")?;

    // The TLS PostgreSQL's socket where the tests look for it: in DIR/postgres-tls.
    let pg_socket = postgres_tls
        .socket_path()
        .context("the TLS PostgreSQL has no socket")?;
    std::os::unix::fs::symlink(
        &pg_socket,
        dir.join("postgres-tls")
            .join(pg_socket.file_name().expect("a socket file name")),
    )
    .context("link the TLS PostgreSQL's socket")?;

    let mysql_socket = mariadb.socket_path().context("MariaDB has no socket")?;
    let (my, pg, my_tls, pg_tls) = (
        mariadb.port(),
        postgres.port(),
        mariadb_tls.port(),
        postgres_tls.port(),
    );
    let env = format!(
        "export REFRACT_TEST_MYSQL_URL=mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{my}\n\
         export REFRACT_TEST_MYSQL_SOCKET={socket}\n\
         export REFRACT_TEST_PG_URL=postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{pg}/postgres\n\
         export REFRACT_TEST_MYSQL_SOURCE_URL=mysql://{SOURCE_USER}:{SOURCE_PASSWORD}@127.0.0.1:{my}\n\
         export REFRACT_TEST_PG_SOURCE_URL=postgres://{SOURCE_USER}:{SOURCE_PASSWORD}@127.0.0.1:{pg}/postgres\n\
         export REFRACT_TEST_REDIS_URL=redis://127.0.0.1:{redis_port}\n\
         export REFRACT_TEST_ENV_DIR={dir}\n\
         export REFRACT_TEST_MYSQL_TLS_URL=mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{my_tls}\n\
         export REFRACT_TEST_PG_TLS_URL=postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{pg_tls}/postgres\n\
         export REFRACT_TEST_TLS_CA={ca}\n\
         export REFRACT_TEST_TLS_OTHER_CA={other_ca}\n\
         export REFRACT_TEST_TLS_MISMATCH_HOST={MISMATCH_HOST}\n",
        socket = mysql_socket.display(),
        dir = dir.display(),
        ca = ca_file.display(),
        other_ca = other_ca_file.display(),
    );
    std::fs::write(dir.join("env"), env).context("write the env file")?;
    println!(
        "testenv: MariaDB on {my}, PostgreSQL on {pg}, Redis on {redis_port} (env in {}/env)",
        dir.display()
    );
    println!(
        "testenv: TLS-only MariaDB on {my_tls}, TLS-only PostgreSQL on {pg_tls} (CA {})",
        ca_file.display()
    );
    Ok(())
}

/// The fixed-password admin (`'%'`, and `'localhost'` for logins over the socket).
fn mariadb_admin() -> String {
    format!(
        "CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;\n\
         CREATE USER '{ADMIN_USER}'@'localhost' IDENTIFIED BY '{ADMIN_PASSWORD}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'localhost' WITH GRANT OPTION;\n"
    )
}

/// The fixed-password superuser.
fn postgres_admin() -> String {
    format!("CREATE ROLE {ADMIN_USER} SUPERUSER LOGIN PASSWORD '{ADMIN_PASSWORD}';\n")
}

/// A second CA (PEM certificate), which signed nothing the servers use, with a subject of its
/// own: a server verified with it fails as "not signed by this CA".
fn other_ca() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "refract other test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}

/// Stops every server under `dir`, waiting until each has exited; all are tried.
async fn stop(dir: &Path) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for name in SERVERS {
        let server_dir: PathBuf = dir.join(name);
        if !server_dir.is_dir() {
            continue;
        }
        if let Err(e) = StandaloneServer::stop_in(&server_dir).await {
            eprintln!("testenv: stop {name}: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("could not stop {}", failed.join(", "));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
