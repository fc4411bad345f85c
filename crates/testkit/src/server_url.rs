//! A test server's URL (`REFRACT_TEST_*_URL`, written by `scripts/testenv`) as its parts.

use refract_schema::Backend;
use refract_sources::SourceParams;

/// `scheme://user:password@host:port[/database][?…]`, percent-escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Login user.
    pub user: String,
    /// Login password (empty when the URL has none).
    pub password: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The path without its `/` and query (a database name), empty when there is none.
    pub database: String,
}

impl ServerUrl {
    /// The parts of `url`; panics on a URL without a host and a port (a test setup error).
    pub fn parse(url: &str) -> ServerUrl {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("test server URL: {e}"));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        ServerUrl {
            user: decode(parsed.username()),
            password: decode(parsed.password().unwrap_or("")),
            host: parsed
                .host_str()
                .expect("test server URL without a host")
                .to_string(),
            port: parsed.port().expect("test server URL without a port"),
            database: decode(parsed.path().trim_start_matches('/')),
        }
    }

    /// The URL in environment variable `var`; panics telling how to set the test servers up.
    pub fn from_env(var: &str) -> ServerUrl {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => ServerUrl::parse(&url),
            _ => panic!(
                "{var} is not set: run ./scripts/test, or start the test servers with \
                 `scripts/testenv start DIR` and source DIR/env"
            ),
        }
    }

    /// What a source connection to `database` on this server logs in with (plain text, no
    /// TLS; `None`: no database, for checks that are not about one).
    pub fn source_params(&self, backend: Backend, database: Option<&str>) -> SourceParams {
        SourceParams {
            backend,
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: Some(self.password.clone()),
            database: database.map(str::to_string),
            pg_schema: None,
            tls: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_decoded() {
        let u = ServerUrl::parse("mysql://app%40x:p%3Aw+d@127.0.0.1:3307/db");
        assert_eq!(u.user, "app@x");
        assert_eq!(u.password, "p:w+d");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 3307);
        assert_eq!(u.database, "db");
        let p = ServerUrl::parse("postgres://u@localhost:5433")
            .source_params(Backend::Postgres, Some("d"));
        assert_eq!(p.password.as_deref(), Some(""));
        assert_eq!(p.database.as_deref(), Some("d"));
    }
}
