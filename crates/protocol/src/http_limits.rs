//! The connection limits of an HTTP server (the engine's `http:` config section; the control
//! plane's own server takes the same).

use serde::{Deserialize, Serialize};

/// Connection limits of one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Connections served at once (default 10,000, and never more than the open-file limit
    /// leaves); one more is accepted and closed at once.
    pub max_connections: usize,
    /// A connection must send a complete request head within this many milliseconds of opening
    /// or of its previous answer, or it is closed: slow headers and idle keep-alive connections
    /// alike (default 10,000).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds (default 10,000).
    pub body_read_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
        }
    }
}

impl HttpLimits {
    /// Check the values the types alone do not.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("http.max_connections must be at least 1".into());
        }
        if self.header_read_timeout_ms == 0 || self.body_read_timeout_ms == 0 {
            return Err(
                "http.header_read_timeout_ms and http.body_read_timeout_ms must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}
