//! Each engine the test kit offers starts, takes its generated login, survives a clean stop
//! and a restart on the same port, and is gone once its `TestServer` is dropped.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use refract_testkit::{DbType, TestServer};

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
