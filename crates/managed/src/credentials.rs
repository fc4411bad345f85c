//! The credentials document (`GET /api/v1/databases/{id}/credentials`, the seed's shape) of a
//! server reached at an [`Endpoint`]: one builder for local servers
//! ([`crate::engines::credentials`]) and platform ones
//! ([`crate::server_runtime::credentials_at`]).

use crate::api::{Credentials, DbType};

/// The user applications log in as (every engine but Redis).
pub const APP_USER: &str = "app_user";

/// Where clients reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A host name (a cluster DNS name, or the local host).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Whether the server serves TLS there (the credentials' `ssl_mode`).
    pub tls: bool,
}

/// The document for database `db` of a `db_type` server at `e`, with the app user's `password`;
/// `mongo_auth_db` is where MongoDB keeps that user.
pub fn document(
    db_type: DbType,
    db: &str,
    e: &Endpoint,
    password: &str,
    mongo_auth_db: &str,
) -> Credentials {
    let (host, port, pw) = (&e.host, e.port, password);
    let ssl = if e.tls { "require" } else { "disable" };
    let (username, database, connection_string) = match db_type {
        DbType::Postgresql => (
            Some(APP_USER),
            Some(db),
            format!("postgresql://{APP_USER}:{pw}@{host}:{port}/{db}?sslmode={ssl}"),
        ),
        DbType::Mysql => (
            Some(APP_USER),
            Some(db),
            format!(
                "mysql://{APP_USER}:{pw}@{host}:{port}/{db}?ssl-mode={}",
                if e.tls { "REQUIRED" } else { "DISABLED" }
            ),
        ),
        // `default` is Redis 6+'s user for `requirepass`: `redis-cli -u` (7.x) and most
        // clients reject an empty user name with WRONGPASS. `rediss`: TLS.
        DbType::Redis => (
            None,
            None,
            format!(
                "{}://default:{pw}@{host}:{port}/0",
                if e.tls { "rediss" } else { "redis" }
            ),
        ),
        DbType::Mongodb => (
            Some(APP_USER),
            Some(db),
            format!("mongodb://{APP_USER}:{pw}@{host}:{port}/{db}?authSource={mongo_auth_db}"),
        ),
    };
    Credentials {
        host: host.clone(),
        port,
        username: username.map(Into::into),
        password: pw.into(),
        database: database.map(Into::into),
        ssl_mode: Some(ssl.into()),
        connection_string,
    }
}
