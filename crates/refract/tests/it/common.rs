//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The `refract` binary under test.
pub fn refract_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_refract"))
}

/// A required environment variable set by `scripts/test`; a test that needs a server fails
/// loudly when it is missing instead of passing silently.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test, which starts the database servers")
    })
}

/// Parts of a `scheme://user:password@host:port[/db]` URL.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
}

fn parse_url(url: &str) -> ServerUrl {
    let rest = url.split_once("://").expect("scheme").1;
    let (auth, hostpart) = rest.rsplit_once('@').expect("user@host");
    let (user, password) = auth.split_once(':').expect("user:password");
    let hostport = hostpart.split('/').next().unwrap();
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    ServerUrl {
        user: user.to_string(),
        password: password.to_string(),
        host: host.to_string(),
        port: port.parse().expect("port"),
    }
}

/// The test MariaDB server.
pub fn mysql() -> ServerUrl {
    parse_url(&required_env("REFRACT_TEST_MYSQL_URL"))
}

/// The test PostgreSQL server.
pub fn postgres() -> ServerUrl {
    parse_url(&required_env("REFRACT_TEST_PG_URL"))
}
