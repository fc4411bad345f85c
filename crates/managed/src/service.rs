//! [`ManagedService`]: the logic behind `/api/v1` — tokens, validation, intent changes — over the
//! store, the vault and the runtime driver. The work on servers themselves (provisioning, crash
//! restarts, quota, replicas, deletion) is the reconciler's (`reconciler.rs`); API calls only
//! record intent and wake it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use refract_runtime::Driver;
use tokio::sync::Notify;

use crate::api::*;
use crate::catalog::{self, Binaries};
use crate::engines::{self, Creds, Ctx};
use crate::error::ManagedError;
use crate::hooks::{
    Authenticator, ConnectionRegistrar, ManagedSource, Quota, QuotaPolicy, RegistrarError,
    SecretVault, SourceBackend,
};
use crate::os;
use crate::server_runtime::{self, ServerRuntime};
use crate::store::{now, DbRecord, Desired, Owner, Placement, Store, TokenRecord};
use crate::tokens::{self, Access};

/// The default project of databases created without `project_id`.
pub const DEFAULT_PROJECT: &str = "proj_default";

/// Where servers' data goes when the control plane runs as root in a data directory that other
/// users cannot enter (so neither could the servers, which never run as root).
pub const FALLBACK_SERVERS_ROOT: &str = "/var/lib/refract-managed";
/// Where PostgreSQL's versions are installed by default (Debian: `<root>/<major>/bin`).
pub(crate) const DEFAULT_PG_ROOT: &str = "/usr/lib/postgresql";

/// `last_used_at` of a token is written at most this often, so authentication stays a read.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Configuration of the managed service (the binary builds it; tests shorten the intervals).
#[derive(Debug, Clone)]
pub struct ManagedConfig {
    /// The control plane's data directory: `managed.sqlite` and `managed/` go in it.
    pub data_dir: PathBuf,
    /// How often the reconciler compares intent and runtime when nothing wakes it.
    pub reconcile_interval: Duration,
    /// How often each running server's storage and replication health are checked.
    pub check_interval: Duration,
    /// How long a server may take to start and accept its login.
    pub start_timeout: Duration,
    /// Crash restarts allowed within `crash_window` before the server is left in `error`.
    pub crash_limit: usize,
    /// See `crash_limit`.
    pub crash_window: Duration,
    /// Bytes in one `storage_gb` (1 GiB; tests use less to exercise the quota).
    pub storage_unit_bytes: u64,
    /// Where PostgreSQL versions are installed (`<root>/<major>/bin`).
    pub pg_root: PathBuf,
    /// Where the servers' data directories go; default `DIR/managed/servers` (see
    /// [`FALLBACK_SERVERS_ROOT`] for the one exception).
    pub servers_dir: Option<PathBuf>,
    /// The control plane's PostgreSQL store, when replicas share one: the metadata then lives in
    /// its schema `managed` instead of `managed.sqlite`.
    pub postgres: Option<crate::store::PgPool>,
    /// Backups (see `crate::backup`): where, how much, how often.
    pub backups: crate::backup::storage::BackupConfig,
    /// PostgreSQL and MySQL servers also accept plain-text logins (`refract serve
    /// --managed-allow-plaintext`, for clients that cannot speak TLS). Off: TLS only. TLS is
    /// offered and the credentials ask for it either way; Redis stays TLS-only (it cannot
    /// serve both on one port).
    pub allow_plaintext: bool,
}

impl ManagedConfig {
    /// Defaults for `data_dir`: reconcile every second, check every 10 s, 120 s to start, five
    /// crashes in ten minutes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ManagedConfig {
            data_dir: data_dir.into(),
            reconcile_interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(10),
            start_timeout: Duration::from_secs(120),
            crash_limit: 5,
            crash_window: Duration::from_secs(600),
            storage_unit_bytes: 1 << 30,
            pg_root: PathBuf::from(DEFAULT_PG_ROOT),
            servers_dir: None,
            postgres: None,
            backups: crate::backup::storage::BackupConfig::default(),
            allow_plaintext: false,
        }
    }
}

/// The authenticated caller of `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The customer its token belongs to.
    pub customer: String,
    /// What its token allows.
    pub access: Access,
}

impl Caller {
    pub(crate) fn need_read(&self) -> Result<(), ManagedError> {
        if self.access.read {
            Ok(())
        } else {
            Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                tokens::SCOPE_READ
            )))
        }
    }

    pub(crate) fn need_write(&self) -> Result<(), ManagedError> {
        if self.access.write {
            Ok(())
        } else {
            Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                tokens::SCOPE_WRITE
            )))
        }
    }

    fn need_tokens(&self) -> Result<(), ManagedError> {
        if self.access.tokens {
            Ok(())
        } else {
            Err(ManagedError::Forbidden(
                "managing API tokens needs a management key or a token without scopes".into(),
            ))
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: ManagedConfig,
    pub(crate) store: Store,
    pub(crate) vault: Arc<dyn SecretVault>,
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) registrar: OnceLock<Arc<dyn ConnectionRegistrar>>,
    pub(crate) quotas: OnceLock<Arc<dyn QuotaPolicy>>,
    pub(crate) bins: Arc<Binaries>,
    /// The installation's CA for managed servers' TLS (`tls.rs`).
    pub(crate) ca: Arc<crate::tls::Ca>,
    /// `DIR/managed/servers`: one directory per database, owned by its service user.
    pub(crate) servers_dir: PathBuf,
    /// From here down to `servers_dir`, other users get the search bit when a server runs.
    pub(crate) reach_from: PathBuf,
    pub(crate) wake: Notify,
    /// Databases with an operation in flight (at most one each).
    pub(crate) busy: Mutex<HashSet<String>>,
    /// Recent crash restarts per database.
    pub(crate) crashes: Mutex<HashMap<String, Vec<Instant>>>,
    /// Replication health per database, from the last check.
    pub(crate) health: Mutex<HashMap<String, Vec<ReplicaHealth>>>,
    /// When each database was last checked (storage, replication).
    pub(crate) checked: Mutex<HashMap<String, Instant>>,
    /// How long each primary has been seen dead (automatic failover).
    pub(crate) failover: Mutex<crate::failover::Watch>,
    /// Backup storage, runs in flight and events.
    pub(crate) backups: crate::backup::storage::Backups,
    /// The platform that runs whole servers (Kubernetes), when they are not local processes.
    pub(crate) platform: OnceLock<Arc<dyn ServerRuntime>>,
    /// The spec fingerprint last applied per database on the platform (`cluster.rs`).
    pub(crate) applied: Mutex<HashMap<String, String>>,
}

/// Locks a mutex of plain data, ignoring poisoning (a panic cannot leave it half-changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The managed database service: `/api/v1` logic plus the reconciler that runs the servers.
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ManagedService {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ManagedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedService")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl ManagedService {
    /// Opens (creating and migrating) `DIR/managed.sqlite`, creates `DIR/managed/servers`, and
    /// finds the installed server binaries. Call [`ManagedService::spawn_reconciler`] to run servers.
    pub fn open(
        config: ManagedConfig,
        vault: Arc<dyn SecretVault>,
        driver: Arc<dyn Driver>,
        auth: Arc<dyn Authenticator>,
    ) -> anyhow::Result<ManagedService> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create data dir {}", dir.display()))?;
        let store = match &config.postgres {
            Some(pool) => Store::open_postgres(pool.clone())?,
            None => Store::open(&dir.join("managed.sqlite"))?,
        };
        let (servers_dir, reach_from) = prepare_servers_dir(&config)?;
        let bins = Binaries::detect(&config.pg_root);
        tracing::info!(
            postgres = ?bins.postgres.keys().collect::<Vec<_>>(),
            mariadb = ?bins.mariadbd.as_ref().map(|p| &p.version),
            redis = ?bins.redis_server.as_ref().map(|p| &p.version),
            mongodb = ?bins.mongod.as_ref().map(|p| &p.version),
            "managed database servers available"
        );
        let has_servers = !store.list_active()?.is_empty();
        let ca = Arc::new(crate::tls::Ca::load_or_create(vault.as_ref())?);
        let backups = crate::backup::storage::Backups::open(dir, &config.backups)?;
        let service = ManagedService {
            inner: Arc::new(Inner {
                config,
                store,
                vault,
                driver,
                auth,
                registrar: OnceLock::new(),
                quotas: OnceLock::new(),
                bins: Arc::new(bins),
                ca,
                servers_dir,
                reach_from,
                wake: Notify::new(),
                busy: Mutex::new(HashSet::new()),
                crashes: Mutex::new(HashMap::new()),
                health: Mutex::new(HashMap::new()),
                checked: Mutex::new(HashMap::new()),
                failover: Mutex::new(crate::failover::Watch::default()),
                backups,
                platform: OnceLock::new(),
                applied: Mutex::new(HashMap::new()),
            }),
        };
        if has_servers {
            // The control plane may have reset the data dir to 0700 on this start.
            if let Err(e) = service.ensure_servers_reachable() {
                tracing::warn!(error = %format!("{e:#}"), "managed servers may not reach their data directories");
            }
        }
        Ok(service)
    }

    /// When servers run as other users (the control plane is root), gives other users the search
    /// bit from the data dir down to the servers' directory (0711: nothing becomes listable, and
    /// the control plane's secret files are 0600). A no-op otherwise.
    pub(crate) fn ensure_servers_reachable(&self) -> anyhow::Result<()> {
        if !os::is_root() {
            return Ok(());
        }
        Ok(os::ensure_reachable(
            &self.inner.reach_from,
            &self.inner.servers_dir,
            &os::any_other_user(),
        )?)
    }

    /// Runs servers on `runtime` (e.g. Kubernetes) instead of as local processes; only the first
    /// call has an effect, and it must come before [`ManagedService::spawn_reconciler`].
    /// Features that need local processes are then refused with a 422 (`server_runtime.rs`).
    pub fn set_server_runtime(&self, runtime: Arc<dyn ServerRuntime>) {
        tracing::info!(
            runtime = runtime.name(),
            "managed servers run on a platform runtime"
        );
        let _ = self.inner.platform.set(runtime);
    }

    /// The 422 of a feature the platform runtime does not offer, if servers run on one.
    pub(crate) fn refuse_on_platform(&self, what: &str) -> Result<(), ManagedError> {
        match self.inner.platform.get() {
            Some(rt) => Err(server_runtime::unsupported(what, rt.name())),
            None => Ok(()),
        }
    }

    /// On a platform runtime, standbys exist for PostgreSQL only (CloudNativePG's instances).
    fn check_platform_replicas(&self, db_type: DbType, replicas: i64) -> Result<(), ManagedError> {
        match self.platform() {
            Some(rt) => platform_replicas(rt.name(), db_type, replicas),
            None => Ok(()),
        }
    }

    /// Sets the registrar of `/v1` connections (`POST /api/v1/databases/{id}/connection`); only
    /// the first call has an effect.
    pub fn set_registrar(&self, registrar: Arc<dyn ConnectionRegistrar>) {
        let _ = self.inner.registrar.set(registrar);
    }

    /// Sets where customers' managed-server quotas come from; only the first call has an
    /// effect. Without one, every customer has [`Quota::default_quota`].
    pub fn set_quotas(&self, quotas: Arc<dyn QuotaPolicy>) {
        let _ = self.inner.quotas.set(quotas);
    }

    /// The managed-server quota of `customer`.
    pub async fn quota(&self, customer: &str) -> Quota {
        match self.inner.quotas.get() {
            Some(q) => q.quota(customer).await,
            None => Quota::default_quota(),
        }
    }

    /// The server binaries found on this host.
    pub fn binaries(&self) -> &Binaries {
        &self.inner.bins
    }

    /// The directory holding every database's server directories.
    pub fn servers_dir(&self) -> &Path {
        &self.inner.servers_dir
    }

    /// The directory of one database's servers (whether or not it exists).
    pub fn database_dir(&self, id: &str) -> PathBuf {
        self.inner.servers_dir.join(id)
    }

    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ManagedError> + Send + 'static,
    ) -> Result<T, ManagedError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner.store))
            .await
            .map_err(|e| ManagedError::Internal(anyhow::anyhow!("store task failed: {e}")))?
    }

    /// Wakes the reconciler now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    // ------------------------------------------------------------------ auth and tokens

    /// Checks a bearer token: a `dkc_` API token of this service, or a management key (`rmk_`)
    /// through the [`Authenticator`]. Every failure is the same 401.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ManagedError> {
        let unauthorized =
            || ManagedError::Unauthorized("missing, invalid or revoked API token".into());
        if token.starts_with("rmk_") {
            let customer = self
                .inner
                .auth
                .customer_for_management_key(token)
                .await
                .ok_or_else(unauthorized)?;
            return Ok(Caller {
                customer,
                access: Access::FULL,
            });
        }
        let Some((key_id, secret)) = tokens::parse(token) else {
            return Err(unauthorized());
        };
        let key_id = key_id.to_string();
        let hash = tokens::sha256_hex(secret);
        let found = self.db(move |s| Ok(s.find_token(&key_id)?)).await?;
        let Some(t) = found.filter(|t| tokens::constant_time_eq(&t.secret_sha256, &hash)) else {
            return Err(unauthorized());
        };
        let at = now();
        if t.last_used_at.is_none_or(|u| at - u >= TOUCH_EVERY) {
            let id = t.id.clone();
            if let Err(e) = self.db(move |s| Ok(s.touch_token(&id, at)?)).await {
                tracing::warn!(error = %e, "could not record API token use");
            }
        }
        Ok(Caller {
            customer: t.customer_id,
            access: Access::from_scopes(&t.scopes),
        })
    }

    /// `POST /api/v1/api-tokens`.
    pub async fn create_token(
        &self,
        caller: &Caller,
        req: CreateTokenRequest,
    ) -> Result<CreateTokenResponse, ManagedError> {
        caller.need_tokens()?;
        let name = req.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ManagedError::invalid("name must be 1-100 characters"));
        }
        if name.chars().any(forbidden_char) {
            return Err(ManagedError::invalid(
                "name must not contain control or bidirectional-override characters",
            ));
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in req.scopes {
            if !tokens::SCOPES.contains(&s.as_str()) {
                return Err(ManagedError::invalid(format!(
                    "unknown scope {s:?}: use {}",
                    tokens::SCOPES.join(" or ")
                )));
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let new = tokens::generate();
        let record = TokenRecord {
            id: tokens::random_id("tok_", 12),
            customer_id: caller.customer.clone(),
            name,
            key_id: new.key_id,
            secret_sha256: new.secret_sha256,
            scopes,
            created_at: now(),
            last_used_at: None,
        };
        let r = record.clone();
        self.db(move |s| Ok(s.insert_token(&r)?)).await?;
        Ok(CreateTokenResponse {
            id: record.id,
            name: record.name,
            token: new.token,
            scopes: record.scopes,
            created_at: record.created_at,
        })
    }

    /// `GET /api/v1/api-tokens`.
    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>, ManagedError> {
        caller.need_tokens()?;
        let customer = caller.customer.clone();
        let list = self.db(move |s| Ok(s.list_tokens(&customer)?)).await?;
        Ok(list
            .into_iter()
            .map(|t| ApiToken {
                id: t.id,
                name: t.name,
                scopes: t.scopes,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
            })
            .collect())
    }

    /// `DELETE /api/v1/api-tokens/{id}`: the token stops working at once.
    pub async fn delete_token(&self, caller: &Caller, id: &str) -> Result<(), ManagedError> {
        caller.need_tokens()?;
        let customer = caller.customer.clone();
        let token = id.to_string();
        if self
            .db(move |s| Ok(s.delete_token(&customer, &token)?))
            .await?
        {
            Ok(())
        } else {
            Err(ManagedError::NotFound(format!("API token {id} not found")))
        }
    }

    // ------------------------------------------------------------------ databases

    /// `POST /api/v1/databases`: validates everything before creating anything, generates the
    /// passwords into the vault, records the intent and wakes the reconciler.
    pub async fn create_database(
        &self,
        caller: &Caller,
        req: CreateDatabaseRequest,
    ) -> Result<CreateDatabaseResponse, ManagedError> {
        self.create_database_with(caller, req, |_| Ok(())).await
    }

    /// [`Self::create_database`], with `before_insert` run on the new record once it is
    /// validated and before the reconciler can see it (a restore writes its plan there).
    pub(crate) async fn create_database_with(
        &self,
        caller: &Caller,
        req: CreateDatabaseRequest,
        before_insert: impl FnOnce(&DbRecord) -> Result<(), ManagedError>,
    ) -> Result<CreateDatabaseResponse, ManagedError> {
        caller.need_write()?;
        let name = validate_name(&req.name)?;
        let db_type = DbType::parse(&req.db_type).ok_or_else(|| {
            ManagedError::invalid(format!(
                "unknown db_type {:?}: use postgresql, mysql, redis or mongodb",
                req.db_type
            ))
        })?;
        let requested = match &req.version {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.trim().to_string()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ManagedError::invalid(
                    "version must be a string such as \"16\"",
                ))
            }
        };
        let plan = catalog::plan(&req.plan_id).ok_or_else(|| unknown_plan(&req.plan_id))?;
        let region = req.region.trim();
        if region.is_empty()
            || region.len() > 32
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ManagedError::invalid(
                "region must be 1-32 characters of a-z, 0-9 and '-' (e.g. nyc1)",
            ));
        }
        let storage_gb = req.storage_gb.unwrap_or(10);
        validate_storage(storage_gb)?;
        let replicas = req.replicas.unwrap_or(1);
        validate_replicas(db_type, replicas)?;
        self.check_platform_replicas(db_type, replicas)?;
        let project_id = req
            .project_id
            .as_deref()
            .unwrap_or(DEFAULT_PROJECT)
            .to_string();
        if project_id.is_empty()
            || project_id.len() > 64
            || !project_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(ManagedError::invalid(
                "project_id must be 1-64 characters of a-z, 0-9, '_' and '-'",
            ));
        }
        let resolved = match self.inner.platform.get() {
            Some(rt) => rt.resolve_version(db_type, requested.as_deref()),
            None => catalog::resolve_version(db_type, requested.as_deref(), &self.inner.bins),
        }
        .map_err(ManagedError::Unprocessable)?;

        let record = DbRecord::new(
            tokens::random_id("db_", 12),
            Owner {
                customer_id: caller.customer.clone(),
                project_id,
            },
            name,
            db_type,
            resolved,
            Placement {
                plan_id: plan.id.to_string(),
                region: region.to_string(),
                storage_gb,
                replicas,
            },
        );
        let roles: &[&str] = if db_type == DbType::Redis {
            &["app"]
        } else {
            engines::SECRET_ROLES
        };
        for role in roles {
            if let Err(e) = self
                .inner
                .vault
                .put(&engines::secret_name(&record.id, role), &tokens::password())
            {
                self.forget_secrets(&record.id);
                return Err(ManagedError::Internal(
                    e.context("store generated credentials"),
                ));
            }
        }
        if let Err(e) = before_insert(&record) {
            self.forget_secrets(&record.id);
            return Err(e);
        }
        let r = record.clone();
        let quota = self.quota(&caller.customer).await;
        let inserted = self
            .db(move |s| {
                s.insert_database_checked(&r, |live| {
                    check_quota(&quota, live.iter(), live.iter().chain([&r]))
                })
            })
            .await;
        match inserted {
            Ok(true) => {}
            Ok(false) => {
                self.forget_secrets(&record.id);
                return Err(ManagedError::Conflict(format!(
                    "a database named {:?} already exists in project {}",
                    record.name, record.project_id
                )));
            }
            Err(e) => {
                self.forget_secrets(&record.id);
                return Err(e);
            }
        }
        tracing::info!(db = %record.id, db_type = %db_type, plan = %record.plan_id, "managed database requested");
        self.wake();
        Ok(CreateDatabaseResponse {
            id: record.id,
            name: record.name,
            db_type,
            status: record.status,
            created_at: record.created_at,
        })
    }

    /// The last step of a destroy, wherever the servers ran: the credentials leave the vault
    /// and the record is marked purged (kept for its events).
    pub(crate) async fn mark_purged(&self, id: &str) -> Result<(), ManagedError> {
        self.forget_secrets(id);
        let key = id.to_string();
        self.db(move |s| {
            s.update(&key, |d| {
                d.purged = true;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    pub(crate) fn forget_secrets(&self, id: &str) {
        for role in engines::SECRET_ROLES {
            if let Err(e) = self.inner.vault.delete(&engines::secret_name(id, role)) {
                tracing::warn!(db = %id, error = %format!("{e:#}"), "cannot delete a managed credential");
            }
        }
    }

    /// The record of `id` if it belongs to the caller (404 otherwise, for other customers too).
    pub(crate) async fn owned(&self, caller: &Caller, id: &str) -> Result<DbRecord, ManagedError> {
        let key = id.to_string();
        match self.db(move |s| Ok(s.get_database(&key)?)).await? {
            Some(d) if d.customer_id == caller.customer => Ok(d),
            _ => Err(ManagedError::no_database(id)),
        }
    }

    /// Applies `f` to the caller's database `id` atomically; 404 when it is not theirs.
    async fn change(
        &self,
        caller: &Caller,
        id: &str,
        f: impl FnOnce(&mut DbRecord) -> Result<(), ManagedError> + Send + 'static,
    ) -> Result<DbRecord, ManagedError> {
        let customer = caller.customer.clone();
        let key = id.to_string();
        let changed = self
            .db(move |s| {
                s.update(&key, |d| {
                    if d.customer_id != customer {
                        return Err(ManagedError::no_database(&d.id));
                    }
                    f(d)
                })
            })
            .await?;
        let (_, d) = changed.ok_or_else(|| ManagedError::no_database(id))?;
        self.wake();
        Ok(d)
    }

    /// [`Self::change`], where `f` also sees the caller's other live databases.
    async fn change_with_others(
        &self,
        caller: &Caller,
        id: &str,
        f: impl FnOnce(&mut DbRecord, &[DbRecord]) -> Result<(), ManagedError> + Send + 'static,
    ) -> Result<DbRecord, ManagedError> {
        let customer = caller.customer.clone();
        let key = id.to_string();
        let changed = self
            .db(move |s| {
                s.update_with_others(&key, |d, others| {
                    if d.customer_id != customer {
                        return Err(ManagedError::no_database(&d.id));
                    }
                    f(d, others)
                })
            })
            .await?;
        let (_, d) = changed.ok_or_else(|| ManagedError::no_database(id))?;
        self.wake();
        Ok(d)
    }

    pub(crate) fn to_api(&self, d: &DbRecord) -> Database {
        let replication = if d.status == Status::Destroyed {
            Vec::new()
        } else {
            lock(&self.inner.health)
                .get(&d.id)
                .cloned()
                .unwrap_or_default()
        };
        Database {
            id: d.id.clone(),
            project_id: d.project_id.clone(),
            name: d.name.clone(),
            slug: d.slug.clone(),
            db_type: d.db_type,
            version: d.version.clone(),
            requested_version: d.requested_version.clone(),
            server_version: d.server_version.clone(),
            plan_id: d.plan_id.clone(),
            status: d.status,
            error_message: if d.status == Status::Error {
                d.error_message.clone()
            } else {
                None
            },
            region: d.region.clone(),
            storage_gb: d.storage_gb,
            replicas: d.replicas,
            created_at: d.created_at,
            replication,
        }
    }

    /// `GET /api/v1/databases` (destroyed ones only when `status=destroyed` is asked for).
    pub async fn list_databases(
        &self,
        caller: &Caller,
        filter: ListFilter,
    ) -> Result<Vec<Database>, ManagedError> {
        caller.need_read()?;
        let db_type = match filter.db_type.as_deref() {
            Some(t) => Some(
                DbType::parse(t)
                    .ok_or_else(|| ManagedError::invalid(format!("unknown db_type {t:?}")))?,
            ),
            None => None,
        };
        let status = match filter.status.as_deref() {
            Some(s) => Some(
                Status::parse(s)
                    .ok_or_else(|| ManagedError::invalid(format!("unknown status {s:?}")))?,
            ),
            None => None,
        };
        let customer = caller.customer.clone();
        let all = self.db(move |s| Ok(s.list_databases(&customer)?)).await?;
        Ok(all
            .iter()
            .filter(|d| match status {
                Some(s) => d.status == s,
                None => d.status != Status::Destroyed,
            })
            .filter(|d| db_type.is_none_or(|t| d.db_type == t))
            .filter(|d| {
                filter
                    .project_id
                    .as_ref()
                    .is_none_or(|p| &d.project_id == p)
            })
            .map(|d| self.to_api(d))
            .collect())
    }

    /// `GET /api/v1/databases/{id}` (standbys' health observed now).
    pub async fn get_database(&self, caller: &Caller, id: &str) -> Result<Database, ManagedError> {
        caller.need_read()?;
        let d = self.owned(caller, id).await?;
        if d.nodes_ready > 1 && d.status != Status::Destroyed && self.platform().is_none() {
            if let Ok(ctx) = self.ctx(&d) {
                let mut health = Vec::new();
                for node in 1..d.nodes_ready {
                    health.push(engines::replica_health(&ctx, node).await);
                }
                lock(&self.inner.health).insert(d.id.clone(), health);
            }
        }
        Ok(self.to_api(&d))
    }

    /// `DELETE /api/v1/databases/{id}`: status `destroyed` at once; the reconciler stops the
    /// servers and removes their data and credentials. Deleting again answers the same.
    pub async fn delete_database(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Database, ManagedError> {
        caller.need_write()?;
        let d = self
            .change(caller, id, |d| {
                d.desired = Desired::Destroyed;
                d.status = Status::Destroyed;
                d.restart_requested = false;
                d.error_kind = None;
                d.error_message = None;
                Ok(())
            })
            .await?;
        tracing::info!(db = %d.id, "managed database deleted");
        Ok(self.to_api(&d))
    }

    /// `GET /api/v1/databases/{id}/credentials`: 409 until the server has first run.
    pub async fn credentials(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Credentials, ManagedError> {
        caller.need_read()?;
        let d = self.owned(caller, id).await?;
        if d.status == Status::Destroyed {
            return Err(ManagedError::Conflict(format!(
                "database {id} is destroyed; its credentials are gone"
            )));
        }
        if d.nodes_ready == 0 {
            return Err(ManagedError::Conflict(format!(
                "database {id} is {}; credentials are available once it is running",
                d.status.as_str()
            )));
        }
        if let Some(rt) = self.platform() {
            let password = self
                .inner
                .vault
                .get(&engines::secret_name(&d.id, "app"))
                .ok_or_else(|| {
                    ManagedError::Internal(anyhow::anyhow!(
                        "the credentials of {} are missing from the secret store",
                        d.id
                    ))
                })?;
            let endpoint = rt.endpoint(&d.id, d.db_type);
            return Ok(server_runtime::credentials_at(&d, &endpoint, &password));
        }
        let ctx = self.ctx(&d)?;
        Ok(engines::credentials(&ctx))
    }

    /// `POST /api/v1/databases/{id}/actions`.
    pub async fn action(
        &self,
        caller: &Caller,
        id: &str,
        req: ActionRequest,
    ) -> Result<Database, ManagedError> {
        caller.need_write()?;
        let kind = req.kind.clone();
        if !["stop", "start", "restart"].contains(&kind.as_str()) {
            return Err(ManagedError::invalid(format!(
                "unknown action type {kind:?}: use stop, start or restart"
            )));
        }
        let d = self
            .change(caller, id, move |d| {
                if d.status == Status::Destroyed {
                    return Err(ManagedError::Conflict(format!(
                        "database {} is destroyed",
                        d.id
                    )));
                }
                match kind.as_str() {
                    "stop" => {
                        d.desired = Desired::Stopped;
                        d.restart_requested = false;
                    }
                    "start" => {
                        d.desired = Desired::Running;
                        if d.status != Status::Running {
                            d.status = Status::Provisioning;
                            d.error_kind = None;
                            d.error_message = None;
                        }
                    }
                    _ => {
                        if d.desired != Desired::Running {
                            return Err(ManagedError::Conflict(format!(
                                "database {} is stopped: use the start action",
                                d.id
                            )));
                        }
                        if d.nodes_ready == 0 {
                            return Err(ManagedError::Conflict(format!(
                                "database {} is still being provisioned",
                                d.id
                            )));
                        }
                        d.restart_requested = true;
                    }
                }
                Ok(())
            })
            .await?;
        if req.kind == "start" {
            lock(&self.inner.crashes).remove(&d.id);
        }
        tracing::info!(db = %d.id, action = %req.kind, "managed database action");
        Ok(self.to_api(&d))
    }

    /// `PATCH /api/v1/databases/{id}`: a new plan restarts a running server to apply its memory
    /// settings; storage only grows; replicas are added or removed by the reconciler.
    pub async fn update_database(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateDatabaseRequest,
    ) -> Result<Database, ManagedError> {
        caller.need_write()?;
        if req.plan_id.is_none() && req.storage_gb.is_none() && req.replicas.is_none() {
            return Err(ManagedError::Unprocessable(
                "nothing to change: give plan_id, storage_gb or replicas".into(),
            ));
        }
        if let Some(p) = &req.plan_id {
            catalog::plan(p).ok_or_else(|| unknown_plan(p))?;
        }
        if let Some(s) = req.storage_gb {
            validate_storage(s)?;
        }
        let platform = self.platform().map(|r| r.name());
        let quota = self.quota(&caller.customer).await;
        let d = self
            .change_with_others(caller, id, move |d, others| {
                let before = d.clone();
                if d.status == Status::Destroyed {
                    return Err(ManagedError::Conflict(format!(
                        "database {} is destroyed",
                        d.id
                    )));
                }
                if let Some(r) = req.replicas {
                    validate_replicas(d.db_type, r)?;
                    if let Some(runtime) = platform {
                        platform_replicas(runtime, d.db_type, r)?;
                    }
                }
                if let (Some(runtime), Some(s)) = (platform, req.storage_gb) {
                    // A StatefulSet's volume claim template cannot change; CloudNativePG
                    // resizes its claims (where the StorageClass allows expansion).
                    if s != d.storage_gb && d.db_type != DbType::Postgresql {
                        return Err(server_runtime::unsupported(
                            &format!("changing storage_gb of a {} server", d.db_type),
                            runtime,
                        ));
                    }
                }
                if let Some(s) = req.storage_gb {
                    if s < d.storage_gb {
                        return Err(ManagedError::Unprocessable(format!(
                            "storage_gb can only grow: it is {} and {s} is smaller",
                            d.storage_gb
                        )));
                    }
                    d.storage_gb = s;
                }
                if let Some(p) = req.plan_id {
                    if p != d.plan_id {
                        d.plan_id = p;
                        if d.desired == Desired::Running && d.nodes_ready > 0 {
                            d.restart_requested = true;
                        }
                    }
                }
                if let Some(r) = req.replicas {
                    d.replicas = r;
                }
                check_quota(
                    &quota,
                    others.iter().chain([&before]),
                    others.iter().chain([&*d]),
                )
            })
            .await?;
        Ok(self.to_api(&d))
    }

    /// `POST /api/v1/databases/{id}/connection`: registers a `/v1` connection whose source is
    /// this server (PostgreSQL or MySQL), as its application user, limited to its database.
    pub async fn create_connection(
        &self,
        caller: &Caller,
        id: &str,
        req: CreateConnectionRequest,
    ) -> Result<serde_json::Value, ManagedError> {
        caller.need_write()?;
        let d = self.owned(caller, id).await?;
        self.refuse_on_platform("registering a managed server as a /v1 connection")?;
        let backend = match d.db_type {
            DbType::Postgresql => SourceBackend::Postgres,
            DbType::Mysql => SourceBackend::Mysql,
            other => {
                return Err(ManagedError::Unprocessable(format!(
                    "a /v1 connection needs a postgresql or mysql database, not {other}"
                )))
            }
        };
        if d.status == Status::Destroyed || d.nodes_ready == 0 {
            return Err(ManagedError::Conflict(format!(
                "database {id} is {}; connect it once it is running",
                d.status.as_str()
            )));
        }
        let registrar = self.inner.registrar.get().cloned().ok_or_else(|| {
            ManagedError::NotImplemented(
                "this control plane has no /v1 API to register a connection with".into(),
            )
        })?;
        let ctx = self.ctx(&d)?;
        let source = ManagedSource {
            name: req.name.unwrap_or_else(|| d.name.clone()),
            backend,
            host: engines::HOST.into(),
            port: ctx.port(0),
            user: engines::APP_USER.into(),
            password: ctx.creds.app.clone(),
            database: ctx.database(),
            sync_mode: req.sync_mode,
            sync_interval: req.sync_interval,
            root_cert: Some(self.inner.ca.cert_pem().to_string()),
        };
        registrar
            .register(&caller.customer, source)
            .await
            .map_err(|e| match e {
                RegistrarError::Rejected(m) => ManagedError::Unprocessable(m),
                RegistrarError::Conflict(m) => ManagedError::Conflict(m),
                RegistrarError::Internal(e) => ManagedError::Internal(e),
            })
    }

    /// The engine context of a database: plan, service user, directory, passwords from the vault.
    pub(crate) fn ctx(&self, d: &DbRecord) -> Result<Ctx, ManagedError> {
        let plan = catalog::plan(&d.plan_id).ok_or_else(|| unknown_plan(&d.plan_id))?;
        let user =
            os::service_user(engines::preferred_user(d.db_type)).map_err(anyhow::Error::from)?;
        let get = |role: &str| self.inner.vault.get(&engines::secret_name(&d.id, role));
        let app = get("app").ok_or_else(|| {
            ManagedError::Internal(anyhow::anyhow!(
                "the credentials of {} are missing from the secret store",
                d.id
            ))
        })?;
        Ok(Ctx {
            db: d.clone(),
            plan,
            bins: self.inner.bins.clone(),
            user,
            db_dir: self.database_dir(&d.id),
            ca: self.inner.ca.clone(),
            allow_plaintext: self.inner.config.allow_plaintext,
            overrides: Default::default(),
            creds: Creds {
                admin: get("admin").unwrap_or_default(),
                app,
                replication: get("replication").unwrap_or_default(),
            },
        })
    }
}

/// Where the servers' directories go: `servers_dir` if configured, else `DIR/managed/servers` —
/// unless the control plane is root: then the servers run as other users (never root), who could
/// only reach a directory inside `DIR` if `DIR` gave others the search bit; `DIR` stays 0700
/// instead, and the servers' data goes to `/var/lib/refract-managed/<hash of DIR>`. Returns it
/// with the directory from which the search bit must be given to other users ([`ManagedService`]
/// does so only once it runs a server; for a directory inside `DIR` that is never needed).
fn prepare_servers_dir(config: &ManagedConfig) -> anyhow::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    let make = |d: &Path, mode: u32| -> anyhow::Result<()> {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("set permissions of {}", d.display()))
    };
    // Searchable, not listable: each database's own directory below is 0700 and its user's.
    let open_up = |d: &Path| make(d, 0o711);
    let servers = match &config.servers_dir {
        Some(d) => {
            open_up(d)?;
            d.clone()
        }
        // Servers created as root by an earlier version live in `DIR/managed/servers`: they stay
        // there (with its old 0711 path), or their data would not be found after an upgrade.
        None if os::is_root()
            && std::fs::read_dir(dir.join("managed").join("servers"))
                .is_ok_and(|mut d| d.next().is_some()) =>
        {
            let d = dir.join("managed").join("servers");
            tracing::warn!(
                servers_dir = %d.display(),
                "managed servers created by an earlier version keep their data inside the data directory, \
                 which keeps the search bit for other users; new installations keep it 0700"
            );
            open_up(&dir.join("managed"))?;
            open_up(&d)?;
            d
        }
        None if os::is_root() => {
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            let hash = tokens::sha256_hex(&canonical.display().to_string());
            let base = PathBuf::from(FALLBACK_SERVERS_ROOT);
            open_up(&base)?;
            let d = base.join(&hash[..16]);
            open_up(&d)?;
            tracing::info!(
                data_dir = %dir.display(),
                servers_dir = %d.display(),
                "running as root: managed servers (run as other users) keep their data outside the 0700 data directory"
            );
            d
        }
        None => {
            // The servers run as this user: nothing needs to be opened to others.
            let managed = dir.join("managed");
            make(&managed, 0o700)?;
            let d = managed.join("servers");
            make(&d, 0o700)?;
            d
        }
    };
    let from = if servers.starts_with(dir) {
        dir.clone()
    } else {
        servers.clone()
    };
    Ok((servers, from))
}

/// On platform runtime `runtime`, standbys exist for PostgreSQL only (CloudNativePG's
/// instances): more than one server of another engine is a 422.
fn platform_replicas(runtime: &str, db_type: DbType, replicas: i64) -> Result<(), ManagedError> {
    if replicas > 1 && db_type != DbType::Postgresql {
        return Err(server_runtime::unsupported(
            &format!("replicas > 1 (standby servers) for {db_type}"),
            runtime,
        ));
    }
    Ok(())
}

/// Servers and plan memory (MiB) of databases that are not destroyed.
fn usage<'a>(dbs: impl Iterator<Item = &'a DbRecord>) -> (i64, i64) {
    dbs.filter(|d| d.status != Status::Destroyed)
        .fold((0, 0), |(servers, mem), d| {
            let plan_mem = catalog::plan(&d.plan_id).map_or(0, |p| p.memory_mb as i64);
            (servers + d.replicas, mem + plan_mem * d.replicas)
        })
}

/// Refuses a change that makes the usage (`after`) exceed `quota` on a dimension where it grows
/// over `before` (a customer over a lowered quota may still shrink or stop).
fn check_quota<'a>(
    quota: &Quota,
    before: impl Iterator<Item = &'a DbRecord>,
    after: impl Iterator<Item = &'a DbRecord>,
) -> Result<(), ManagedError> {
    let (s0, m0) = usage(before);
    let (s1, m1) = usage(after);
    let raise = if quota.how_to_raise.is_empty() {
        String::new()
    } else {
        format!("; {}", quota.how_to_raise)
    };
    if let Some(max) = quota.max_servers {
        if s1 > max && s1 > s0 {
            return Err(ManagedError::QuotaExceeded(format!(
                "managed server quota exceeded: {} allows {max} servers (every replica is a server), this would make {s1}{raise}",
                quota.source
            )));
        }
    }
    if let Some(max) = quota.max_memory_mib {
        if m1 > max && m1 > m0 {
            return Err(ManagedError::QuotaExceeded(format!(
                "managed memory quota exceeded: {} allows {max} MiB of plan memory in total, this would make {m1} MiB{raise}",
                quota.source
            )));
        }
    }
    Ok(())
}

fn unknown_plan(id: &str) -> ManagedError {
    let ids: Vec<&str> = catalog::PLANS.iter().map(|p| p.id).collect();
    ManagedError::invalid(format!(
        "unknown plan_id {id:?}: use one of {}",
        ids.join(", ")
    ))
}

fn validate_name(name: &str) -> Result<String, ManagedError> {
    let n = name.trim();
    let len = n.chars().count();
    if len == 0 || len > 63 {
        return Err(ManagedError::invalid("name must be 1-63 characters"));
    }
    if n.chars().any(forbidden_char) {
        return Err(ManagedError::invalid(
            "name must not contain control or bidirectional-override characters",
        ));
    }
    if !n.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(ManagedError::invalid(
            "name must contain at least one letter or digit",
        ));
    }
    Ok(n.to_string())
}

/// Control characters and the Unicode bidirectional overrides, isolates and marks (the same rule
/// as the control plane's names).
fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

fn validate_storage(gb: i64) -> Result<(), ManagedError> {
    if !(1..=16384).contains(&gb) {
        return Err(ManagedError::invalid(format!(
            "storage_gb must be between 1 and 16384, not {gb}"
        )));
    }
    Ok(())
}

fn validate_replicas(db_type: DbType, replicas: i64) -> Result<(), ManagedError> {
    if !(1..=5).contains(&replicas) {
        return Err(ManagedError::invalid(format!(
            "replicas must be between 1 and 5, not {replicas}"
        )));
    }
    if db_type == DbType::Mongodb && replicas > 1 {
        return Err(ManagedError::Unprocessable(
            "replicas > 1 is not supported for mongodb by the local runtime".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_servers_and_memory_and_lets_usage_shrink() {
        let rec = |plan: &str, replicas: i64, status: Status| DbRecord {
            customer_id: "c".into(),
            project_id: DEFAULT_PROJECT.into(),
            plan_id: plan.into(),
            region: "nyc1".into(),
            replicas,
            status,
            ..crate::store::test_record("db_x", "x", DbType::Redis)
        };
        let q = Quota::default_quota();
        let small = rec("db-s-1vcpu-1gb", 1, Status::Running);
        let four: Vec<DbRecord> = (0..4).map(|_| small.clone()).collect();
        let gone = rec("db-s-8vcpu-16gb", 5, Status::Destroyed);
        assert_eq!(usage(four.iter().chain([&gone])), (4, 4096));
        assert!(check_quota(&q, four.iter(), four.iter().chain([&small])).is_ok());
        let three = rec("db-s-1vcpu-1gb", 2, Status::Running);
        let e = check_quota(&q, four.iter(), four.iter().chain([&three])).unwrap_err();
        assert!(
            matches!(e, ManagedError::QuotaExceeded(ref m) if m.contains("allows 5 servers")),
            "{e}"
        );
        let big = rec("db-s-8vcpu-16gb", 1, Status::Running);
        let e = check_quota(&q, [].iter(), [&big].into_iter()).unwrap_err();
        assert!(e.to_string().contains("8192 MiB"), "{e}");
        // Over quota already (a lowered quota): shrinking is allowed, growing is not.
        let over: Vec<DbRecord> = (0..7).map(|_| small.clone()).collect();
        assert!(check_quota(&q, over.iter(), over[..6].iter()).is_ok());
        assert!(check_quota(&Quota::unlimited(), [].iter(), over.iter()).is_ok());
    }

    #[test]
    fn validation_messages() {
        assert!(validate_name("").is_err());
        assert!(validate_name(&"x".repeat(64)).is_err());
        assert_eq!(validate_name(" ok ").unwrap(), "ok");
        for bad in ["a\nb", "a\rb", "a\0b", "a\u{202E}b", "a\u{2067}b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(
            validate_storage(0).is_err()
                && validate_storage(16385).is_err()
                && validate_storage(1).is_ok()
        );
        assert!(validate_replicas(DbType::Redis, 6).is_err());
        assert!(validate_replicas(DbType::Mongodb, 2).is_err());
    }
}
