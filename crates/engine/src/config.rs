//! The engine config file (YAML or JSON): where the source is, what to load, how to sync, where
//! the keys are. Secrets are never in the file itself: the source password comes from a file or an
//! environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use refract_schema::Backend;
use refract_sources::SourceParams;
use serde::{Deserialize, Serialize};

/// A whole engine config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Address to listen on; port 0 picks a free port (reported on stdout and in `/health`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bind `listen` with `SO_REUSEPORT` (Linux), so that a replacement engine of the same OS user
    /// can bind the same port while this one still serves (a handover, see `docs/runtime.md`).
    /// Unless `takeover` is set, the port must be free at start: an engine never joins a port
    /// another process holds.
    #[serde(default)]
    pub reuse_port: bool,
    /// This engine replaces one serving on `listen` (with `reuse_port`): it binds beside it.
    #[serde(default)]
    pub takeover: bool,
    /// A second, private address for the control plane (`/health`, `/stats`, `/admin/*`; port 0
    /// = any). When set, the ready line names this address, and `listen` accepts connections only
    /// once the first snapshot is published — clients of `listen` never see `not_ready`.
    #[serde(default)]
    pub control_listen: Option<SocketAddr>,
    /// The source database.
    pub source: SourceConfig,
    /// The schema manifest (JSON) to run from. Without one the engine introspects the source
    /// itself and applies [`EngineConfig::schema_config`] if given.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// A `reflexdb.yaml` applied when the engine introspects the source (no `manifest`).
    #[serde(default)]
    pub schema_config: Option<PathBuf>,
    /// How the snapshot is kept fresh.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Memory limit of a snapshot in MiB; a load that would pass it stops with `cap_exceeded`.
    #[serde(default)]
    pub memory_cap_mb: Option<u64>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`). The `refract` binary sets its log
    /// filter from `REFRACT_LOG`; this value is checked and reported.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Query keys (JSON, see `docs/engine.md`). Without it `/query` needs no key.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// File holding the bearer token of `/stats` and `/admin/*`. Without it those are refused.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Rows returned at top level when a query has no `LIMIT`.
    #[serde(default = "default_limit")]
    pub default_limit: usize,
    /// Tables loaded at once (source connections).
    #[serde(default = "default_parallelism")]
    pub load_parallelism: usize,
    /// Rows per parent row of a nested to-many selection without `LIMIT`.
    #[serde(default = "default_nested_limit")]
    pub default_nested_limit: usize,
    /// Largest answer of one query in bytes; past it the query ends with `result_too_large`.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Longest run of one query in milliseconds; past it the query ends with `query_timeout`.
    #[serde(default = "default_max_query_ms")]
    pub max_query_ms: u64,
    /// Connection limits of the HTTP server.
    #[serde(default)]
    pub http: refract_http::HttpLimits,
    /// The control plane's id of the database this engine serves: a `database` label on every
    /// metric.
    #[serde(default)]
    pub database_id: Option<String>,
    /// Label the per-table metrics (`refract_table_rows{table}`) with table names. Off by
    /// default: `/metrics` needs no key, and table names are the schema.
    #[serde(default)]
    pub metrics_table_labels: bool,
}

/// Where the source database is.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `mysql`, `postgres` or `sqlite`.
    pub backend: Backend,
    /// Host name or IP; for SQLite the database file (or use `path`).
    #[serde(default)]
    pub host: String,
    /// SQLite only: the database file (same as `host`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// TCP port (default 3306 for MySQL, 5432 for PostgreSQL).
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user.
    #[serde(default)]
    pub user: String,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Database (MySQL schema, PostgreSQL database; `main` for SQLite).
    #[serde(default)]
    pub database: Option<String>,
    /// PostgreSQL schema (default `public`).
    #[serde(default)]
    pub pg_schema: Option<String>,
    /// TLS to the source, libpq's names: `disable`, `prefer` (default), `require`,
    /// `verify-ca`, `verify-full` (ignored for SQLite).
    #[serde(default)]
    pub ssl_mode: Option<refract_sources::SslMode>,
    /// File holding the CA certificate(s) to trust, PEM (a file, like the password: never
    /// inline in the config).
    #[serde(default)]
    pub ssl_root_cert_file: Option<PathBuf>,
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("backend", &self.backend)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("database", &self.database)
            .field("pg_schema", &self.pg_schema)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert_file", &self.ssl_root_cert_file)
            .finish()
    }
}

/// The `sync:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Requested mode. Only `poll` is implemented; the others run as `poll` and say so in
    /// `/health` (`replication.state = poll_fallback`).
    #[serde(default)]
    pub mode: SyncMode,
    /// Seconds between poll reloads (at least 1).
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// CDC modes: seconds between safety-net full reloads (0 = off).
    #[serde(default = "default_safety_net")]
    pub safety_net: u64,
    /// CDC modes: what to do after a disconnect.
    #[serde(default)]
    pub reconnect: ReconnectMode,
    /// MySQL binlog mode: the replica `server_id`.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// PostgreSQL logical mode: name of the replication slot and publication (default
    /// `refract_<source database>`; the control plane passes one per Refract database).
    #[serde(default)]
    pub slot_name: Option<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            mode: SyncMode::Poll,
            interval: default_interval(),
            safety_net: default_safety_net(),
            reconnect: ReconnectMode::Full,
            server_id: None,
            slot_name: None,
        }
    }
}

/// How changes reach the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Full reload every `interval` seconds.
    #[default]
    Poll,
    /// MySQL/MariaDB binary log, applied row by row.
    Binlog,
    /// PostgreSQL logical replication (`pgoutput`), applied row by row.
    Logical,
    /// SQL Server change tables (not implemented: runs as `poll`).
    Cdc,
}

impl SyncMode {
    /// The name used in configs and `/health`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncMode::Poll => "poll",
            SyncMode::Binlog => "binlog",
            SyncMode::Logical => "logical",
            SyncMode::Cdc => "cdc",
        }
    }
}

/// What a CDC stream does after a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconnectMode {
    /// Reload every table, then stream from the new position.
    #[default]
    Full,
    /// Stream from the last applied position when the source still has it.
    Resume,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_limit() -> usize {
    10_000
}
fn default_parallelism() -> usize {
    4
}
fn default_nested_limit() -> usize {
    1_000
}
fn default_max_response_bytes() -> usize {
    64 << 20
}
fn default_max_query_ms() -> u64 {
    10_000
}
fn default_interval() -> u64 {
    30
}
fn default_safety_net() -> u64 {
    3600
}

impl EngineConfig {
    /// Parse a config text (YAML or JSON) and check it. Relative paths stay as written; see
    /// [`EngineConfig::load`] for resolving them against the file's directory.
    pub fn parse(text: &str) -> anyhow::Result<EngineConfig> {
        let config: EngineConfig =
            serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Read and parse a config file; relative paths in it are taken relative to its directory.
    pub fn load(path: &Path) -> anyhow::Result<EngineConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading engine config {}", path.display()))?;
        let mut config = EngineConfig::parse(&text)
            .with_context(|| format!("invalid engine config {}", path.display()))?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Make every relative path absolute against `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for p in [
            &mut self.manifest,
            &mut self.schema_config,
            &mut self.keys_file,
            &mut self.admin_token_file,
            &mut self.source.password_file,
            &mut self.source.ssl_root_cert_file,
            &mut self.source.path,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if self.source.backend == Backend::Sqlite && !self.source.host.is_empty() {
            let mut p = PathBuf::from(&self.source.host);
            fix(&mut p);
            self.source.host = p.to_string_lossy().into_owned();
        }
    }

    /// Check values that the types alone do not.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.sync.interval < 1 {
            bail!("sync.interval must be at least 1 second");
        }
        if self.default_limit == 0 {
            bail!("default_limit must be at least 1");
        }
        if self.default_nested_limit == 0 {
            bail!("default_nested_limit must be at least 1");
        }
        if self.max_response_bytes < 1024 {
            bail!("max_response_bytes must be at least 1024");
        }
        if self.max_query_ms == 0 {
            bail!("max_query_ms must be at least 1");
        }
        self.http.validate().map_err(anyhow::Error::msg)?;
        if self.load_parallelism == 0 || self.load_parallelism > 64 {
            bail!("load_parallelism must be between 1 and 64");
        }
        if self.memory_cap_mb == Some(0) {
            bail!("memory_cap_mb must be at least 1 (or absent for no cap)");
        }
        if !matches!(
            self.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            bail!(
                "log_level must be one of error, warn, info, debug, trace (found '{}')",
                self.log_level
            );
        }
        if self.manifest.is_some() && self.schema_config.is_some() {
            bail!("give either manifest or schema_config, not both (a manifest already has the schema config applied)");
        }
        let s = &self.source;
        if s.password_file.is_some() && s.password_env.is_some() {
            bail!("source: give either password_file or password_env, not both");
        }
        match s.backend {
            Backend::Sqlite => {
                if s.host.is_empty() && s.path.is_none() {
                    bail!("source: a sqlite source needs `path` (or `host`): the database file");
                }
                if !s.host.is_empty() && s.path.is_some() {
                    bail!("source: give either path or host for a sqlite source, not both");
                }
            }
            Backend::Mysql | Backend::Postgres => {
                if s.host.is_empty() {
                    bail!(
                        "source.host is required for a {} source",
                        s.backend.as_str()
                    );
                }
                if s.user.is_empty() {
                    bail!(
                        "source.user is required for a {} source",
                        s.backend.as_str()
                    );
                }
                if s.database.as_deref().unwrap_or("").is_empty() {
                    bail!(
                        "source.database is required for a {} source",
                        s.backend.as_str()
                    );
                }
            }
            Backend::Mssql => bail!("source.backend mssql has no loader in this version"),
        }
        Ok(())
    }
}

impl SourceConfig {
    /// The SQLite database file, for a SQLite source.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        Some(
            self.path
                .clone()
                .unwrap_or_else(|| PathBuf::from(&self.host)),
        )
    }

    /// Read the password (from its file or environment variable) and build the connection
    /// parameters the source crate takes.
    pub fn params(&self) -> anyhow::Result<SourceParams> {
        let password = if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading source.password_file {}", file.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        } else if let Some(var) = &self.password_env {
            match std::env::var(var) {
                Ok(v) => Some(v),
                Err(_) => bail!("source.password_env: environment variable {var} is not set"),
            }
        } else {
            None
        };
        let (host, port, database) = match self.backend {
            Backend::Sqlite => (
                self.sqlite_path()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                0,
                Some(self.database.clone().unwrap_or_else(|| "main".to_string())),
            ),
            Backend::Postgres => (
                self.host.clone(),
                self.port.unwrap_or(5432),
                self.database.clone(),
            ),
            _ => (
                self.host.clone(),
                self.port.unwrap_or(3306),
                self.database.clone(),
            ),
        };
        let root_cert = match &self.ssl_root_cert_file {
            Some(file) => {
                let pem = std::fs::read_to_string(file).with_context(|| {
                    format!("reading source.ssl_root_cert_file {}", file.display())
                })?;
                refract_sources::parse_root_cert(&pem).map_err(|e| {
                    anyhow::anyhow!("source.ssl_root_cert_file {}: {e}", file.display())
                })?;
                Some(pem)
            }
            None => None,
        };
        let tls = match self.backend {
            Backend::Sqlite => refract_sources::SourceTls::disabled(),
            _ => refract_sources::SourceTls {
                mode: self.ssl_mode.unwrap_or_default(),
                root_cert,
            },
        };
        Ok(SourceParams {
            backend: self.backend,
            host,
            port,
            user: self.user.clone(),
            password,
            database,
            pg_schema: self.pg_schema.clone(),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let c = EngineConfig::parse(
            "listen: 127.0.0.1:0\n\
             source: {backend: mysql, host: 127.0.0.1, port: 3306, user: reader, password_file: /p, database: shop}\n\
             manifest: /path/manifest.json\n\
             sync: {mode: binlog, interval: 30, safety_net: 3600, reconnect: full, server_id: 1001}\n\
             memory_cap_mb: 409\nlog_level: info\nkeys_file: /k.json\nadmin_token_file: /a\n",
        )
        .unwrap();
        assert_eq!(c.sync.mode, SyncMode::Binlog);
        assert_eq!(c.sync.server_id, Some(1001));
        assert_eq!(c.memory_cap_mb, Some(409));
        assert_eq!(c.default_limit, 10_000);
        assert_eq!(c.load_parallelism, 4);
        assert_eq!(c.source.port, Some(3306));
    }

    #[test]
    fn tls_settings_and_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EngineConfig::parse(
            "source: {backend: mysql, host: db, user: u, database: d, ssl_mode: verify-full, ssl_root_cert_file: ca.pem}\n",
        )
        .unwrap();
        c.resolve_paths(dir.path());
        assert_eq!(
            c.source.ssl_root_cert_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
        // A missing or broken file is an error that names it.
        let e = c.source.params().unwrap_err().to_string();
        assert!(e.contains("ssl_root_cert_file"), "{e}");
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let e = format!("{:#}", c.source.params().unwrap_err());
        assert!(e.contains("no PEM certificate"), "{e}");
        // No ssl_mode: libpq's default, prefer; unknown names are refused.
        let c =
            EngineConfig::parse("source: {backend: postgres, host: db, user: u, database: d}\n")
                .unwrap();
        let p = c.source.params().unwrap();
        assert_eq!(p.tls.mode, refract_sources::SslMode::Prefer);
        assert!(p.tls.root_cert.is_none());
        assert!(EngineConfig::parse(
            "source: {backend: postgres, host: db, user: u, database: d, ssl_mode: verify_full}\n"
        )
        .is_err());
    }

    #[test]
    fn json_and_defaults() {
        let c = EngineConfig::parse(r#"{"source": {"backend": "sqlite", "path": "db.sqlite"}}"#)
            .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.sync.mode, SyncMode::Poll);
        assert_eq!(c.sync.interval, 30);
        assert_eq!(c.sync.reconnect, ReconnectMode::Full);
        assert!(c.keys_file.is_none());
        let p = c.source.params().unwrap();
        assert_eq!(p.host, "db.sqlite");
        assert_eq!(p.database.as_deref(), Some("main"));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let e = EngineConfig::parse("source: {backend: sqlite, path: x}\nlisten_port: 3\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("listen_port"), "{e:#}");
        let e =
            EngineConfig::parse("source: {backend: sqlite, path: x, pasword: y}\n").unwrap_err();
        assert!(format!("{e:#}").contains("pasword"), "{e:#}");
        let e = EngineConfig::parse("source: {backend: sqlite, path: x}\nsync: {mode: push}\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("push"), "{e:#}");
    }

    #[test]
    fn checks_values() {
        for (text, needle) in [
            (
                "source: {backend: sqlite, path: x}\nsync: {interval: 0}\n",
                "interval",
            ),
            (
                "source: {backend: mysql, host: h, database: d}\n",
                "source.user",
            ),
            (
                "source: {backend: postgres, host: h, user: u}\n",
                "source.database",
            ),
            ("source: {backend: sqlite}\n", "path"),
            (
                "source: {backend: sqlite, path: x, password_file: a, password_env: B}\n",
                "either",
            ),
            (
                "source: {backend: sqlite, path: x}\nlog_level: loud\n",
                "log_level",
            ),
            (
                "source: {backend: sqlite, path: x}\nmemory_cap_mb: 0\n",
                "memory_cap_mb",
            ),
        ] {
            let e = EngineConfig::parse(text).unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }

    #[test]
    fn password_from_file_or_env_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(
            dir.path().join("engine.yaml"),
            "source: {backend: postgres, host: db, user: u, database: d, password_file: pw}\nkeys_file: keys.json\n",
        )
        .unwrap();
        let c = EngineConfig::load(&dir.path().join("engine.yaml")).unwrap();
        assert_eq!(
            c.keys_file.as_deref(),
            Some(dir.path().join("keys.json").as_path())
        );
        let p = c.source.params().unwrap();
        assert_eq!(p.password.as_deref(), Some("s3cret"));
        assert_eq!(p.port, 5432);
        assert!(!format!("{p:?}").contains("s3cret"));

        let mut c = c;
        c.source.password_file = None;
        c.source.password_env = Some("REFRACT_ENGINE_TEST_UNSET_VAR".into());
        assert!(c.source.params().is_err());
    }
}
