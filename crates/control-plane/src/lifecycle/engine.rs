//! Everything about one engine process the control plane needs: its [`InstanceSpec`] (config,
//! manifest and secrets as 0600 files, never arguments) and an HTTP client of its `/health`,
//! `/stats` and `/admin/*` routes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use refract_protocol::engine_config::{EngineConfig, SourceConfig, SyncMode};
use refract_runtime::{InstanceKind, InstanceSpec, Network, Readiness, SpecFile};
use serde_json::Value;
use uuid::Uuid;

use crate::api::{Backend, RuntimeSettings};
use crate::api::{BackendExt, SslModeExt};
use crate::store::{ConnectionRow, DatabaseRow};

/// Files of an engine's directory.
const CONFIG_FILE: &str = "engine.yaml";
const MANIFEST_FILE: &str = "manifest.json";
const PASSWORD_FILE: &str = "source-password";
const ROOT_CERT_FILE: &str = "source-ca.pem";
const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Share of the size's memory an engine's snapshot may use (the rest is for queries and the
/// process itself).
const MEMORY_CAP_PERCENT: i64 = 80;

/// The snapshot memory cap of a size: 80 % of `taskMemoryMb`.
pub fn memory_cap_mb(settings: &RuntimeSettings) -> u64 {
    (settings.task_memory_mb * MEMORY_CAP_PERCENT / 100).max(1) as u64
}

/// The query keys file of a database (shared by the engines that serve it).
pub fn keys_file(data_dir: &Path, database: Uuid) -> PathBuf {
    data_dir.join("keys").join(format!("{database}.json"))
}

/// What goes into one engine.
pub struct Launch<'a> {
    /// The instance id (also the driver's id).
    pub instance: Uuid,
    /// The `refract` binary.
    pub program: &'a Path,
    /// The database.
    pub database: &'a DatabaseRow,
    /// Its connection.
    pub connection: &'a ConnectionRow,
    /// Source password, from the secret store.
    pub password: Option<String>,
    /// The connection's CA certificate (`sslRootCert`, PEM), from the secret store.
    pub ssl_root_cert: Option<String>,
    /// Manifest JSON of the build.
    pub manifest: &'a str,
    /// Settings to run with.
    pub settings: &'a RuntimeSettings,
    /// Sync mode the build chose (`poll` after a CDC readiness fallback).
    pub sync_mode: &'a str,
    /// Admin token of `/stats` and `/admin/*`.
    pub admin_token: &'a str,
    /// Absolute path of the keys file.
    pub keys_file: &'a Path,
    /// The database's client-facing port (0 = any free port: a database without one).
    pub port: u16,
    /// An engine of the database still serves on `port`: bind beside it (`SO_REUSEPORT`).
    pub takeover: bool,
    /// How the runtime's engines listen (loopback ports, or pods of their own).
    pub network: Network,
    /// Copies of the engine serving side by side (the database's `replicas`; one locally).
    pub replicas: u32,
}

/// The spec of one engine: `refract engine --config engine.yaml` with its files.
pub fn spec(l: &Launch<'_>) -> InstanceSpec {
    let c = l.connection;
    let mut source = SourceConfig::new(c.backend.to_source(), c.host.clone());
    if c.backend == Backend::Sqlite {
        source.database = Some("main".into());
    } else {
        source.port = c.port.and_then(|p| u16::try_from(p).ok());
        source.user = c.user.clone().unwrap_or_default();
        source.database = Some(l.database.schema.clone());
        source.ssl_mode = Some(c.ssl_mode.to_source());
        if l.ssl_root_cert.is_some() {
            source.ssl_root_cert_file = Some(ROOT_CERT_FILE.into());
        }
    }
    if l.password.is_some() {
        source.password_file = Some(PASSWORD_FILE.into());
    }
    let mut config = EngineConfig::with_source(source);
    config.sync.mode = SyncMode::parse(l.sync_mode).unwrap_or_default();
    config.sync.interval = l.settings.sync_interval.max(1) as u64;
    config.sync.safety_net = l.settings.safety_net.max(0) as u64;
    config.sync.server_id = l
        .settings
        .binlog_server_id
        .and_then(|id| u32::try_from(id).ok());
    // PostgreSQL: the slot and publication belong to this Refract database (two databases on one
    // source database must not share them); created and dropped by its lifecycle.
    if c.backend == Backend::Postgres {
        config.sync.slot_name = Some(slot_name(l.database.id));
    }
    // Clients use `listen` (the database's port, for its whole life); the control plane talks to
    // the private `control_listen`, whose address the ready line names (docs/runtime.md). In a
    // pod of its own (Kubernetes) the engine listens on fixed ports of every interface; its
    // client port still listens only once the snapshot is in (the pod's readiness).
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let every_interface = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
    match l.network {
        Network::Loopback => {
            config.listen = loopback(l.port);
            config.reuse_port = l.port != 0;
            config.takeover = l.takeover && l.port != 0;
            // Without a port of its own (0) the engine's one listener is its endpoint.
            config.control_listen = (l.port != 0).then(|| loopback(0));
        }
        Network::Cluster { port, control_port } => {
            config.listen = every_interface(port);
            config.control_listen = Some(every_interface(control_port));
        }
    }
    config.manifest = Some(MANIFEST_FILE.into());
    config.memory_cap_mb = Some(memory_cap_mb(l.settings));
    config.log_level = l.settings.log_level.as_str().to_string();
    config.keys_file = Some(l.keys_file.to_path_buf());
    config.admin_token_file = Some(ADMIN_TOKEN_FILE.into());
    config.database_id = Some(l.database.id.to_string());
    let mut spec = InstanceSpec::new(
        l.instance.to_string(),
        InstanceKind::Engine,
        l.program,
        Readiness::engine(),
    );
    spec.args = vec!["engine".into(), "--config".into(), CONFIG_FILE.into()];
    // The engine's log filter; its own crates at the database's level, the rest at warn.
    let level = l.settings.log_level.as_str();
    spec.env.push((
        "REFRACT_LOG".into(),
        format!("warn,refract_engine={level},refract_sources={level}"),
    ));
    // Config and manifest hold no secret (the password and tokens are files of their own).
    spec.files.push(SpecFile::plain(
        CONFIG_FILE,
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    ));
    spec.files.push(SpecFile::plain(
        MANIFEST_FILE,
        l.manifest.as_bytes().to_vec(),
    ));
    spec.files.push(SpecFile::new(
        ADMIN_TOKEN_FILE,
        l.admin_token.as_bytes().to_vec(),
    ));
    if let Some(pw) = &l.password {
        spec.files
            .push(SpecFile::new(PASSWORD_FILE, pw.as_bytes().to_vec()));
    }
    if let Some(pem) = l
        .ssl_root_cert
        .as_ref()
        .filter(|_| c.backend != Backend::Sqlite)
    {
        spec.files
            .push(SpecFile::new(ROOT_CERT_FILE, pem.as_bytes().to_vec()));
    }
    spec.memory_limit_mb = Some(l.settings.task_memory_mb.max(1) as u64);
    spec.cpu_millis = Some(cpu_millis(l.settings));
    spec.group = Some(l.database.id.to_string());
    spec.replicas = l.replicas.max(1);
    spec
}

/// The CPU share of a size in thousandths of a core: `taskCpu` units are 1024 per core.
pub fn cpu_millis(settings: &RuntimeSettings) -> u64 {
    (settings.task_cpu.max(1) as u64 * 1000).div_ceil(1024)
}

/// The replication slot and publication name of a database: `refract_` and its id's 32 hex digits
/// (40 bytes, within PostgreSQL's 63).
pub fn slot_name(database: Uuid) -> String {
    format!("refract_{}", database.simple())
}

/// The client-facing URL of an engine port.
pub fn public_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The port of an endpoint URL (`http://127.0.0.1:PORT`).
pub fn endpoint_port(endpoint: &str) -> Option<u16> {
    endpoint
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// HTTP client of engines.
#[derive(Clone)]
pub struct EngineClient {
    http: reqwest::Client,
}

impl Default for EngineClient {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineClient {
    /// A client with short timeouts (engines are local and answer these routes at once).
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap_or_default();
        EngineClient { http }
    }

    /// `GET /health` (no auth).
    pub async fn health(&self, endpoint: &str) -> anyhow::Result<refract_protocol::Health> {
        let resp = self
            .http
            .get(format!("{endpoint}/health"))
            .send()
            .await
            .context("GET /health")?;
        resp.json().await.context("read /health")
    }

    /// `GET /stats` with the admin token.
    pub async fn stats(
        &self,
        endpoint: &str,
        token: &str,
    ) -> anyhow::Result<refract_protocol::StatsHead> {
        let resp = self
            .http
            .get(format!("{endpoint}/stats"))
            .bearer_auth(token)
            .send()
            .await
            .context("GET /stats")?;
        if !resp.status().is_success() {
            anyhow::bail!("GET /stats answered {}", resp.status());
        }
        resp.json().await.context("read /stats")
    }

    /// `POST /admin/<path>` with the admin token; the answer's JSON, or its error message.
    pub async fn admin(
        &self,
        endpoint: &str,
        token: &str,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{endpoint}/admin/{path}"))
            .bearer_auth(token)
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("POST /admin/{path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            anyhow::bail!("POST /admin/{path} answered {status}: {msg}");
        }
        Ok(body)
    }
}

/// The secret-store name of a database's engine admin token.
pub(crate) fn admin_token_secret(database: Uuid) -> String {
    format!("database/{database}/admin-token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_endpoints() {
        assert_eq!(endpoint_port("http://127.0.0.1:4312"), Some(4312));
        assert_eq!(endpoint_port("http://127.0.0.1:4312/"), Some(4312));
        assert_eq!(endpoint_port("nothing"), None);
    }
}
