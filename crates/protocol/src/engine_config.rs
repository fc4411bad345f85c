//! The engine config file (YAML or JSON), `engine.yaml`: where the source is, what to load, how
//! to sync, where the keys are. The control plane writes it for every engine it launches and the
//! engine reads it: one typed definition for both sides. Secrets are never in the file itself:
//! the source password comes from a file or an environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use refract_schema::Backend;
use serde::{Deserialize, Serialize};

use crate::{HttpLimits, SslMode};

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
    pub http: HttpLimits,
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
    pub ssl_mode: Option<SslMode>,
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
    /// Every mode.
    pub const ALL: [SyncMode; 4] = [
        SyncMode::Poll,
        SyncMode::Binlog,
        SyncMode::Logical,
        SyncMode::Cdc,
    ];

    /// The mode of a config name (`poll`, `binlog`, `logical`, `cdc`).
    pub fn parse(name: &str) -> Option<SyncMode> {
        SyncMode::ALL.into_iter().find(|m| m.as_str() == name)
    }

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
    /// A config reading `source`, everything else at its default (what a file with only a
    /// `source:` section gives).
    pub fn with_source(source: SourceConfig) -> EngineConfig {
        EngineConfig {
            listen: default_listen(),
            reuse_port: false,
            takeover: false,
            control_listen: None,
            source,
            manifest: None,
            schema_config: None,
            sync: SyncConfig::default(),
            memory_cap_mb: None,
            log_level: default_log_level(),
            keys_file: None,
            admin_token_file: None,
            default_limit: default_limit(),
            load_parallelism: default_parallelism(),
            default_nested_limit: default_nested_limit(),
            max_response_bytes: default_max_response_bytes(),
            max_query_ms: default_max_query_ms(),
            http: HttpLimits::default(),
            database_id: None,
            metrics_table_labels: false,
        }
    }

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
    /// A source of `backend` at `host` (for SQLite: the database file), everything else unset.
    pub fn new(backend: Backend, host: impl Into<String>) -> SourceConfig {
        SourceConfig {
            backend,
            host: host.into(),
            path: None,
            port: None,
            user: String::new(),
            password_file: None,
            password_env: None,
            database: None,
            pg_schema: None,
            ssl_mode: None,
            ssl_root_cert_file: None,
        }
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_with_only_a_source_parses_to_with_source() {
        let parsed = EngineConfig::parse("source: {backend: sqlite, host: /x.db}").unwrap();
        assert_eq!(
            parsed,
            EngineConfig::with_source(SourceConfig::new(Backend::Sqlite, "/x.db"))
        );
    }

    #[test]
    fn written_configs_read_back_the_same() {
        let mut c = EngineConfig::with_source(SourceConfig::new(Backend::Postgres, "db.internal"));
        c.source.user = "reader".into();
        c.source.database = Some("shop".into());
        c.source.ssl_mode = Some(SslMode::VerifyFull);
        c.sync.mode = SyncMode::Logical;
        c.sync.slot_name = Some("refract_1".into());
        c.control_listen = Some("127.0.0.1:0".parse().unwrap());
        let text = serde_json::to_string_pretty(&c).unwrap();
        assert_eq!(EngineConfig::parse(&text).unwrap(), c);
    }

    #[test]
    fn sync_modes_parse_by_name() {
        for m in SyncMode::ALL {
            assert_eq!(SyncMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SyncMode::parse("Poll"), None);
    }
}
