//! Driver errors → [`SourceError`], with the password scrubbed from every message.

use crate::{SourceError, SourceParams};

/// Replace every occurrence of the password in `msg` (passwords shorter than 3 characters
/// would mangle ordinary words and are left alone).
pub(crate) fn scrub(msg: String, params: &SourceParams) -> String {
    match params.password.as_deref() {
        Some(pw) if pw.len() >= 3 && msg.contains(pw) => msg.replace(pw, "<redacted>"),
        _ => msg,
    }
}

impl SourceError {
    /// The same error with the password removed from its message.
    pub(crate) fn scrubbed(self, params: &SourceParams) -> SourceError {
        match self {
            SourceError::Unreachable(m) => SourceError::Unreachable(scrub(m, params)),
            SourceError::Rejected(m) => SourceError::Rejected(scrub(m, params)),
            SourceError::Stopped(m) => SourceError::Stopped(scrub(m, params)),
            SourceError::Tls(m) => SourceError::Tls(scrub(m, params)),
            SourceError::Other(m) => SourceError::Other(scrub(m, params)),
        }
    }
}

/// Where we tried to connect, for messages.
pub(crate) fn target(params: &SourceParams) -> String {
    format!("{}:{}", params.host, params.port)
}

/// A timeout while connecting or checking.
pub(crate) fn timed_out(
    params: &SourceParams,
    what: &str,
    after: std::time::Duration,
) -> SourceError {
    SourceError::Unreachable(format!(
        "timed out after {:.1} s {what} {}",
        after.as_secs_f64(),
        target(params)
    ))
}

/// MySQL/MariaDB server error codes that mean "not allowed".
const MYSQL_DENIED: &[u16] = &[
    1044, // ER_DBACCESS_DENIED_ERROR
    1045, // ER_ACCESS_DENIED_ERROR
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1143, // ER_COLUMNACCESS_DENIED_ERROR
    1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
    1251, // ER_NOT_SUPPORTED_AUTH_MODE
    1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    1370, // ER_PROCACCESS_DENIED_ERROR
    3118, // ER_ACCOUNT_HAS_BEEN_LOCKED
    4151, // MariaDB ER_ACCOUNT_HAS_BEEN_LOCKED
];

/// MySQL 5.7+/MariaDB 10.5+: `ER_SECURE_TRANSPORT_REQUIRED` (`require_secure_transport=ON`).
const MYSQL_SECURE_TRANSPORT_REQUIRED: u16 = 3159;

/// Map a `mysql_async` error.
pub(crate) fn mysql(e: mysql_async::Error, params: &SourceParams) -> SourceError {
    if let Some(t) = crate::tls::tls_error_of(&e, &params.tls, &params.host) {
        return t.scrubbed(params);
    }
    let err = match e {
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            crate::tls::server_offers_no_tls(&params.tls)
        }
        mysql_async::Error::Server(se) if se.code == MYSQL_SECURE_TRANSPORT_REQUIRED => {
            SourceError::Tls(format!(
                "the server requires TLS (require_secure_transport=ON) and sslMode is {}: set \
                 sslMode to prefer or stronger. Server said: {} (error {})",
                params.tls.mode, se.message, se.code
            ))
        }
        mysql_async::Error::Io(io) => SourceError::Unreachable(format!("{}: {io}", target(params))),
        mysql_async::Error::Server(se) if MYSQL_DENIED.contains(&se.code) => {
            SourceError::Rejected(format!("{} (error {})", se.message, se.code))
        }
        mysql_async::Error::Server(se) => {
            SourceError::Other(format!("{} (error {})", se.message, se.code))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => {
            SourceError::Unreachable(format!(
                "{}: the server closed the connection",
                target(params)
            ))
        }
        other => SourceError::Other(other.to_string()),
    };
    err.scrubbed(params)
}

/// Map a `tokio-postgres` error.
pub(crate) fn pg(e: tokio_postgres::Error, params: &SourceParams) -> SourceError {
    use std::error::Error as _;
    if let Some(t) = crate::tls::tls_error_of(&e, &params.tls, &params.host) {
        return t.scrubbed(params);
    }
    let err = if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let msg = match db.detail() {
            Some(d) => format!("{} ({d}) [SQLSTATE {code}]", db.message()),
            None => format!("{} [SQLSTATE {code}]", db.message()),
        };
        // 28xxx: invalid authorization; 42501: insufficient privilege.
        if code.starts_with("28") && db.message().contains("no encryption") {
            // `no pg_hba.conf entry for host …, no encryption`: only `hostssl` lines match.
            SourceError::Tls(format!(
                "the server requires TLS for this user and host (pg_hba.conf has only hostssl \
                 entries for it) and sslMode is {}: set sslMode to prefer or stronger. Server \
                 said: {msg}",
                params.tls.mode
            ))
        } else if code.starts_with("28") || code == "42501" {
            SourceError::Rejected(msg)
        } else {
            SourceError::Other(msg)
        }
    } else if e.source().is_some_and(|s| s.is::<std::io::Error>()) || e.is_closed() {
        let cause = e
            .source()
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        SourceError::Unreachable(format!("{}: {cause}", target(params)))
    } else {
        let text = e.to_string();
        let cause = e.source().map(|s| s.to_string()).unwrap_or_default();
        if cause.contains("server does not support TLS") {
            crate::tls::server_offers_no_tls(&params.tls)
        } else if text.contains("timeout") || text.contains("timed out") {
            SourceError::Unreachable(format!("{}: {text}", target(params)))
        } else if text.contains("password") || text.contains("authentication") {
            SourceError::Rejected(text)
        } else {
            SourceError::Other(text)
        }
    };
    err.scrubbed(params)
}

/// Map a `rusqlite` error.
pub(crate) fn sqlite(e: rusqlite::Error, params: &SourceParams) -> SourceError {
    let err = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            SourceError::Unreachable(format!("{}: {e}", params.host))
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::PermissionDenied => {
            SourceError::Rejected(format!("{}: {e}", params.host))
        }
        _ => SourceError::Other(e.to_string()),
    };
    err.scrubbed(params)
}
