//! Each engine the test kit offers starts, takes its generated login, survives a clean stop
//! and a restart on the same port, and is gone once its `TestServer` is dropped.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use refract_testkit::{DbType, StandaloneOptions, StandaloneServer, TestServer};

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// Whether `port` stops accepting connections within 10 s.
fn closes(port: u16) -> bool {
    let t = Instant::now();
    while accepts(port) {
        if t.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

async fn lifecycle(db_type: DbType) {
    let server = TestServer::start(db_type).await;
    let port = server.port();
    // The version comes from a login with the generated application credentials.
    assert!(
        !server.server_version().is_empty(),
        "{db_type}: no version from the login"
    );
    assert!(accepts(port), "{db_type} does not listen on {port}");
    server.stop().await.unwrap();
    assert!(closes(port), "{db_type} still listens after stop");
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert!(accepts(port), "{db_type} does not listen again on {port}");
    drop(server);
    assert!(closes(port), "{db_type} still listens after the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_starts_restarts_and_stops_on_drop() {
    lifecycle(DbType::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_starts_restarts_and_stops_on_drop() {
    lifecycle(DbType::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_starts_restarts_and_stops_on_drop() {
    lifecycle(DbType::Redis).await;
}

fn accepts_on(address: [u8; 4], port: u16) -> bool {
    TcpStream::connect_timeout(&(address, port).into(), Duration::from_millis(500)).is_ok()
}

/// The options a shared test server needs take effect: a raised connection limit, no WAL
/// archive, a second loopback address (where the generated login works too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_takes_connection_limit_archive_and_extra_address() {
    let server = TestServer::try_start_with(DbType::Postgresql, |o| {
        o.max_connections = Some(201);
        o.wal_archive = false;
        o.extra_listen_addresses = vec![[127, 0, 0, 2].into()];
    })
    .await
    .unwrap();
    let connect = |host: &str| {
        format!(
            "host={host} port={} user={} password={} dbname={}",
            server.port(),
            server.app_user(),
            server.app_password(),
            server.database()
        )
    };
    for host in ["127.0.0.1", "127.0.0.2"] {
        let (client, conn) = tokio_postgres::connect(&connect(host), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("login on {host}: {e}"));
        tokio::spawn(conn);
        let show = |name: &'static str| {
            let client = &client;
            async move {
                let row = client
                    .query_one(&format!("SHOW {name}"), &[])
                    .await
                    .unwrap();
                row.get::<_, String>(0)
            }
        };
        assert_eq!(show("max_connections").await, "201");
        assert_eq!(show("archive_mode").await, "off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_and_redis_listen_on_an_extra_address() {
    for db_type in [DbType::Mysql, DbType::Redis] {
        let plain = TestServer::start(db_type).await;
        assert!(
            !accepts_on([127, 0, 0, 2], plain.port()),
            "{db_type} listens on 127.0.0.2 without being asked"
        );
        drop(plain);
        let server = TestServer::try_start_with(db_type, |o| {
            o.extra_listen_addresses = vec![[127, 0, 0, 2].into()];
        })
        .await
        .unwrap();
        assert!(
            accepts_on([127, 0, 0, 1], server.port()),
            "{db_type} on 127.0.0.1"
        );
        assert!(
            accepts_on([127, 0, 0, 2], server.port()),
            "{db_type} on 127.0.0.2"
        );
    }
}

/// A server outlives the handle (and process) that started it, and `stop_in` stops it by its
/// directory alone (what `testenv stop DIR` does in a later process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_stopped_by_its_directory_alone() {
    for db_type in [DbType::Mysql, DbType::Postgresql, DbType::Redis] {
        let dir = tempfile::tempdir().unwrap();
        let opts = StandaloneOptions::new(db_type, dir.path(), "test");
        let server = StandaloneServer::start(opts).await.unwrap();
        let port = server.port();
        drop(server);
        std::thread::sleep(Duration::from_millis(300));
        assert!(accepts(port), "{db_type} stopped with its handle");
        StandaloneServer::stop_in(dir.path()).await.unwrap();
        assert!(!accepts(port), "{db_type} still listens after stop_in");
        // Nothing left running: a second stop finds nothing and succeeds.
        StandaloneServer::stop_in(dir.path()).await.unwrap();
    }
}

/// A TLS-only server whose certificate a given CA issued: plain text is refused, a TLS login
/// verified with that CA (host name 127.0.0.1 checked) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_only_with_a_given_ca() {
    use std::sync::Arc;

    use refract_managed::tls::{Ca, PgTls};

    let ca = Arc::new(Ca::load_or_create(&refract_managed::MemoryVault::default()).unwrap());
    let server = TestServer::try_start_with(DbType::Postgresql, |o| {
        o.allow_plaintext = false;
        o.ca = Some(ca.clone());
    })
    .await
    .unwrap();
    assert_eq!(server.ca_pem(), ca.cert_pem());
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} password={} dbname={}",
        server.port(),
        server.app_user(),
        server.app_password(),
        server.database()
    );
    let plain = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await;
    assert!(plain.is_err(), "a plain-text login was accepted");
    let (client, conn) = tokio_postgres::connect(
        &format!("{conninfo} sslmode=require"),
        PgTls(ca.client_config()),
    )
    .await
    .expect("a TLS login verified with the given CA");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session is not TLS");
}

/// Without TLS, PostgreSQL takes plain text and offers no TLS; with a Unix socket, a password
/// login over it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_tls_and_with_a_unix_socket() {
    let server = TestServer::try_start_with(DbType::Postgresql, |o| {
        o.tls = false;
        o.unix_socket = true;
    })
    .await
    .unwrap();
    let login = format!(
        "port={} user={} password={} dbname={}",
        server.port(),
        server.app_user(),
        server.app_password(),
        server.database()
    );
    let (_client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 {login}"), tokio_postgres::NoTls)
            .await
            .expect("a plain-text login");
    tokio::spawn(conn);
    let tls = tokio_postgres::connect(
        &format!("host=127.0.0.1 sslmode=require {login}"),
        refract_managed::tls::PgTls(refract_managed::tls::client_config(server.ca_pem()).unwrap()),
    )
    .await;
    let error = tls.err().expect("TLS was offered").to_string();
    assert!(error.contains("TLS") || error.contains("SSL"), "{error}");
    let socket = server.socket_path().expect("a socket");
    assert!(socket.exists(), "{} missing", socket.display());
    let (_client, conn) = tokio_postgres::connect(
        &format!("host={} {login}", socket.parent().unwrap().display()),
        tokio_postgres::NoTls,
    )
    .await
    .expect("a login over the Unix socket");
    tokio::spawn(conn);
}

/// A Redis plain-text port answers (a PING without the password is refused as NOAUTH, so the
/// server, not just a socket, answers there); without the option there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_plaintext_port() {
    use std::io::{Read, Write};

    let plain = TestServer::start(DbType::Redis).await;
    assert_eq!(plain.plaintext_port(), None);
    drop(plain);
    let server = TestServer::try_start_with(DbType::Redis, |o| o.redis_plaintext_port = true)
        .await
        .unwrap();
    let port = server.plaintext_port().expect("a plain-text port");
    assert_ne!(port, server.port());
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut reply = [0u8; 64];
    let n = s.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("-NOAUTH"), "{reply}");
}
