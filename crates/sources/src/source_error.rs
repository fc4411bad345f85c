//! [`SourceError`]: why talking to a source failed (a leaf: every module of the crate may use it).

/// A failure talking to a source. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached (DNS, refused, timeout).
    #[error("cannot reach the source: {0}")]
    Unreachable(String),
    /// The server refused the login or a statement for lack of rights.
    #[error("the source rejected the request: {0}")]
    Rejected(String),
    /// The load stopped before its end because a sink refused more rows (memory cap).
    #[error("the load stopped: {0}")]
    Stopped(String),
    /// TLS could not be set up as the connection's `sslMode` asks (certificate not trusted,
    /// host name mismatch, server without TLS, server requiring TLS).
    #[error("TLS to the source failed: {0}")]
    Tls(String),
    /// Anything else the server or driver reported.
    #[error("source error: {0}")]
    Other(String),
}
