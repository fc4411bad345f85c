//! What the managed service needs from the control plane that hosts it, as three small traits:
//! [`Authenticator`] (management keys), [`SecretVault`] (the encrypted secret store) and
//! [`ConnectionRegistrar`] (`/v1` connections). The control plane implements them; this crate
//! never depends on it, so there is no cycle and this crate can be tested alone
//! ([`MemoryVault`], a closure authenticator).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use refract_runtime::BoxFuture;

/// Verifies management keys (`rmk_…`), which `/api/v1` accepts beside its own `dkc_` tokens.
pub trait Authenticator: Send + Sync {
    /// The customer id of a valid, unrevoked, unexpired management key; `None` otherwise.
    fn customer_for_management_key<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<String>>;
}

/// An authenticator that accepts no management key (only `dkc_` tokens then work).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoManagementKeys;

impl Authenticator for NoManagementKeys {
    fn customer_for_management_key<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// A fixed `token → customer` table, for tests and embedding.
#[derive(Clone, Default)]
pub struct StaticKeys(pub Vec<(String, String)>);

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("keys", &self.0.len())
            .finish()
    }
}

impl Authenticator for StaticKeys {
    fn customer_for_management_key<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<String>> {
        let found = self
            .0
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, c)| c.clone());
        Box::pin(async move { found })
    }
}

/// Where managed servers' generated passwords live: the control plane's encrypted secret store.
/// Values must never reach a log, an error or the metadata store.
pub trait SecretVault: Send + Sync {
    /// Stores `value` under `name`, replacing any previous value.
    fn put(&self, name: &str, value: &str) -> anyhow::Result<()>;
    /// The value under `name`.
    fn get(&self, name: &str) -> Option<String>;
    /// Removes `name`; no error when absent.
    fn delete(&self, name: &str) -> anyhow::Result<()>;
}

/// An in-memory [`SecretVault`] for tests (not encrypted, not persistent).
#[derive(Default)]
pub struct MemoryVault(Mutex<BTreeMap<String, String>>);

impl MemoryVault {
    /// Names currently stored (for tests that check what is left after a delete).
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for MemoryVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryVault")
            .field("entries", &self.lock().len())
            .finish()
    }
}

impl SecretVault for MemoryVault {
    fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.lock().insert(name.to_string(), value.to_string());
        Ok(())
    }

    fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.lock().remove(name);
        Ok(())
    }
}

/// The source engine of a `/v1` connection made over a managed server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceBackend {
    /// `/v1` backend `postgres`.
    Postgres,
    /// `/v1` backend `mysql` (MariaDB speaks it).
    Mysql,
}

impl SourceBackend {
    /// The `/v1` name of the backend.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceBackend::Postgres => "postgres",
            SourceBackend::Mysql => "mysql",
        }
    }
}

/// A managed server as the source of a `/v1` connection.
#[derive(Clone)]
pub struct ManagedSource {
    /// Name of the new connection.
    pub name: String,
    /// Source engine.
    pub backend: SourceBackend,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user (the managed server's application user).
    pub user: String,
    /// Its password (to be kept in the secret store, as every `/v1` source password).
    pub password: String,
    /// The database (PostgreSQL database or MySQL schema) the connection may use.
    pub database: String,
    /// `/v1` sync mode; `None` = the `/v1` default.
    pub sync_mode: Option<String>,
    /// `/v1` sync interval (seconds); `None` = the `/v1` default.
    pub sync_interval: Option<i64>,
    /// The CA certificate (PEM) the server's certificate chains to: the connection then uses
    /// TLS with `verify-full` against it. `None`: the server serves no TLS.
    pub root_cert: Option<String>,
}

impl fmt::Debug for ManagedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedSource")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("sync_mode", &self.sync_mode)
            .field("sync_interval", &self.sync_interval)
            .finish_non_exhaustive()
    }
}

/// Why a `/v1` connection could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The `/v1` API refused the request (bad name, plan limit): a 400 with its message.
    #[error("{0}")]
    Rejected(String),
    /// The `/v1` API found a conflict (a connection of that name exists): a 409 with its message.
    #[error("{0}")]
    Conflict(String),
    /// The `/v1` side failed unexpectedly.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Registers `/v1` connections (read replicas as an API) whose source is a managed server.
pub trait ConnectionRegistrar: Send + Sync {
    /// Creates a `/v1` connection for `customer_id` and returns its `/v1` JSON representation.
    fn register<'a>(
        &'a self,
        customer_id: &'a str,
        source: ManagedSource,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistrarError>>;
}

/// A customer's quota of managed servers: how many servers (a database with `replicas: 3` is
/// three servers) and how much plan memory in total (MiB), over every database not destroyed
/// (stopped ones included: they can be started at any time). `None` = unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Servers, at most.
    pub max_servers: Option<i64>,
    /// Sum of the plans' memory over those servers, MiB, at most.
    pub max_memory_mib: Option<i64>,
    /// Where the quota comes from, for messages ("the free plan").
    pub source: String,
    /// How to raise it, for messages.
    pub how_to_raise: String,
}

impl Quota {
    /// Default servers per customer.
    pub const DEFAULT_SERVERS: i64 = 5;
    /// Default plan memory per customer, MiB.
    pub const DEFAULT_MEMORY_MIB: i64 = 8192;

    /// The default quota (5 servers, 8192 MiB), used when no [`QuotaPolicy`] is set.
    pub fn default_quota() -> Quota {
        Quota {
            max_servers: Some(Self::DEFAULT_SERVERS),
            max_memory_mib: Some(Self::DEFAULT_MEMORY_MIB),
            source: "the default quota".into(),
            how_to_raise: "delete a database or ask an admin for a larger quota".into(),
        }
    }

    /// No limit.
    pub fn unlimited() -> Quota {
        Quota {
            max_servers: None,
            max_memory_mib: None,
            source: "no quota".into(),
            how_to_raise: String::new(),
        }
    }
}

/// Gives each customer its managed-server [`Quota`] (the control plane: from the customer's plan).
pub trait QuotaPolicy: Send + Sync {
    /// The quota of `customer_id`.
    fn quota<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Quota>;
}
