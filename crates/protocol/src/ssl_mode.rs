//! TLS modes of a source connection (libpq's `sslmode` names), as configs and the API spell them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a source connection uses TLS; the names and meanings are libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it (no certificate checks), else plain.
    #[default]
    Prefer,
    /// Always TLS, no certificate checks (with a CA given: as [`SslMode::VerifyCa`]).
    Require,
    /// Always TLS; the certificate chain must lead to the CA.
    VerifyCa,
    /// [`SslMode::VerifyCa`] and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in order of strength.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parse a libpq name (exact, lower case).
    pub fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// A connection in this mode never goes on without TLS.
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
