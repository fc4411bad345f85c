//! Dev-only (never a dependency of a shipped crate): throwaway database servers for tests.
//!
//! [`TestServer`] starts a MariaDB, PostgreSQL or Redis in a temporary directory through the
//! managed service's engine recipes ([`refract_managed::StandaloneServer`]) — the one way
//! Refract starts database servers, so a test's server is configured as a user's managed one
//! (binary log ROW with full images, `wal_level = logical`, TLS, an unprivileged user when the
//! tests run as root) — and stops it when dropped, also on a panic. Plain-text logins are
//! accepted besides TLS.
//!
//! ```no_run
//! # async fn demo() {
//! let pg = refract_testkit::TestServer::postgres().await;
//! let url = format!(
//!     "postgres://{}:{}@{}:{}/postgres",
//!     pg.admin_user(), pg.admin_password(), pg.host(), pg.port()
//! );
//! # let _ = url; }
//! ```

use std::ops::Deref;

pub use refract_managed::{DbType, StandaloneOptions, StandaloneServer};

mod server_url;
pub use server_url::ServerUrl;

/// A running throwaway server (see the crate documentation); every method of
/// [`StandaloneServer`] is available on it (ports, credentials, `stop`, `kill`, `restart`).
pub struct TestServer {
    server: StandaloneServer,
    // Dropped after the server is stopped (fields drop in order; `Drop` runs first).
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A MariaDB (MySQL) server; panics with the reason when it cannot start.
    pub async fn mariadb() -> TestServer {
        TestServer::start(DbType::Mysql).await
    }

    /// A PostgreSQL server (the newest installed version); panics when it cannot start.
    pub async fn postgres() -> TestServer {
        TestServer::start(DbType::Postgresql).await
    }

    /// A Redis server; panics when it cannot start.
    pub async fn redis() -> TestServer {
        TestServer::start(DbType::Redis).await
    }

    /// A server of `db_type` with an application database `test`; panics when it cannot start.
    pub async fn start(db_type: DbType) -> TestServer {
        TestServer::try_start(db_type)
            .await
            .unwrap_or_else(|e| panic!("cannot start a throwaway {db_type} server: {e:#}"))
    }

    /// As [`TestServer::start`], returning the error.
    pub async fn try_start(db_type: DbType) -> anyhow::Result<TestServer> {
        TestServer::try_start_with(db_type, |_| {}).await
    }

    /// As [`TestServer::try_start`], with the options changed by `configure` first (connection
    /// limit, WAL archiving, extra listen addresses).
    pub async fn try_start_with(
        db_type: DbType,
        configure: impl FnOnce(&mut StandaloneOptions),
    ) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let mut opts = StandaloneOptions::new(db_type, dir.path(), "test");
        configure(&mut opts);
        let server = StandaloneServer::start(opts).await?;
        Ok(TestServer { server, _dir: dir })
    }

    /// The superuser login (plain text) as a [`ServerUrl`].
    pub fn admin_url(&self) -> ServerUrl {
        ServerUrl {
            user: self.admin_user().into(),
            password: self.admin_password().into(),
            host: self.host().into(),
            port: self.port(),
            database: String::new(),
        }
    }
}

impl Deref for TestServer {
    type Target = StandaloneServer;

    fn deref(&self) -> &StandaloneServer {
        &self.server
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.stop_now();
    }
}
