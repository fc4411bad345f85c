//! [`Service`]: the control plane's logic. Handlers extract, call one method here, respond.
//!
//! The service owns the metadata store and the secret store. The lifecycle work (reconciler,
//! runtime driver, health poller) extends it: new fields for the driver and a wake-up channel,
//! new methods for actions; every action already has what it needs here (databases with status,
//! intent and operation columns; `Tx::list_all_databases`; the event log).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::*;
use crate::error::ApiError;
use crate::keys;
use crate::plans;
use crate::secrets::SecretStore;
use crate::sqlite_roots::SqliteRoots;
use crate::store::{
    ConnectionRow, DatabaseRow, Event, ManagementKeyRow, NameClaim, NewDatabase, ServerIdClaim,
    Store, StoreError, StoreResult, Tx,
};
use crate::validate as v;

/// Timeout of `test-connection` (the spec's bounded 5 s).
pub const TEST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// `lastUsedAt` is written at most this often per key, so that authentication stays a read.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The caller, as established by its token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The customer the token belongs to (plan and admin flag as of this request).
    pub customer: Customer,
    /// The management key record used.
    pub key_record_id: Uuid,
}

impl Principal {
    fn customer_id(&self) -> Uuid {
        self.customer.id
    }
}

/// The control plane's logic over its stores.
#[derive(Clone)]
pub struct Service {
    /// Metadata store.
    pub store: Arc<dyn Store>,
    /// Secret store (source passwords).
    pub secrets: Arc<SecretStore>,
    /// Region name reported for databases (`local` for the process driver).
    pub region: String,
    /// The lifecycle: runtime driver, reconciler wake-up, build slots (see [`crate::lifecycle`]).
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Where SQLite sources may live (none by default: SQLite sources are refused).
    pub sqlite_roots: Arc<SqliteRoots>,
    /// Whether this replica leads (runs the reconcilers); always on the SQLite store.
    pub leadership: crate::leader::Leadership,
    /// The PostgreSQL store's pool, when that is the store (the leader lease, `GET /health`).
    pub postgres: Option<Arc<crate::store::PostgresStore>>,
}

/// How long a request waits for the metadata store before it answers 503 `store_unavailable`
/// (a hung or unreachable PostgreSQL store; what it was doing is rolled back, never applied
/// after the answer).
pub const STORE_ANSWER: std::time::Duration = std::time::Duration::from_secs(15);

/// The secret-store name of a connection's password.
pub fn password_secret_name(connection: Uuid) -> String {
    format!("connection/{connection}/password")
}

/// The secret-store name of a connection's CA certificate (`sslRootCert`).
pub fn ssl_root_cert_secret_name(connection: Uuid) -> String {
    format!("connection/{connection}/ssl-root-cert")
}

/// The TLS settings a source connection is opened with.
fn source_tls(
    backend: Backend,
    mode: crate::api::SslMode,
    root_cert: Option<String>,
) -> refract_sources::SourceTls {
    if backend == Backend::Sqlite {
        return refract_sources::SourceTls::disabled();
    }
    refract_sources::SourceTls {
        mode: mode.to_source(),
        root_cert,
    }
}

fn now() -> DateTime<Utc> {
    // Microseconds: what the store keeps, so values read back compare equal.
    let t = Utc::now();
    t - chrono::TimeDelta::nanoseconds((t.timestamp_subsec_nanos() % 1000) as i64)
}

impl Service {
    /// A service over the given stores.
    pub fn new(store: Arc<dyn Store>, secrets: Arc<SecretStore>) -> Self {
        Service {
            store,
            secrets,
            region: "local".into(),
            lifecycle: Default::default(),
            sqlite_roots: Default::default(),
            leadership: crate::leader::Leadership::single(),
            postgres: None,
        }
    }

    /// The canonical path of a SQLite source file, if [`Self::sqlite_roots`] allow it (422 with a
    /// message naming `field` otherwise).
    pub fn sqlite_path(&self, field: &str, path: &str) -> Result<std::path::PathBuf, ApiError> {
        self.sqlite_roots
            .check(field, path)
            .map_err(|r| ApiError::unprocessable(r.0))
    }

    /// [`Self::source_params`], with a SQLite path checked against the roots again (it may have
    /// become a symlink to elsewhere since it was registered) and replaced by its canonical form,
    /// which is what gets opened. `Err` says why the source may not be read.
    pub fn checked_source_params(
        &self,
        c: &ConnectionRow,
        database: Option<String>,
    ) -> Result<refract_sources::SourceParams, String> {
        let mut params = self.source_params(c, database);
        if c.backend == Backend::Sqlite {
            let path = self
                .sqlite_roots
                .check("mysqlHost", &c.host)
                .map_err(|r| r.0)?;
            params.host = path.to_string_lossy().into_owned();
        }
        Ok(params)
    }

    /// Runs `f` in one write transaction on a blocking thread.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.transaction(true, f).await
    }

    /// Runs `f` in one read transaction on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.transaction(false, f).await
    }

    /// [`Self::write`] for a closure that only reads and writes the store.
    pub(crate) async fn write_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.transaction(true, f).await
    }

    /// [`Self::read`] for a closure that only reads the store.
    pub(crate) async fn read_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.transaction(false, f).await
    }

    /// [`Self::write`] for a layer with its own error type `E` (the lifecycle's steps).
    pub(crate) async fn write_as<T: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.transaction(true, f).await
    }

    /// [`Self::write`] (`write`) or [`Self::read`]: `f` runs once, its value is the answer; its
    /// error rolls the transaction back and is the answer too.
    async fn transaction<T: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&dyn Tx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let store = self.store.clone();
        // A request that gave up waiting must not change anything after it answered.
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gave_up = abandoned.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut f = Some(f);
            let mut out = None;
            let mut body = |tx: &dyn Tx| {
                let f = f.take().ok_or(StoreError::Retried)?;
                match f(tx) {
                    Ok(_) if abandoned.load(std::sync::atomic::Ordering::SeqCst) => {
                        Err(StoreError::Aborted)
                    }
                    Ok(v) => {
                        out = Some(Ok(v));
                        Ok(())
                    }
                    Err(e) => {
                        out = Some(Err(e));
                        Err(StoreError::Aborted)
                    }
                }
            };
            let done = if write {
                store.write(&mut body)
            } else {
                store.read(&mut body)
            };
            match (done, out) {
                (_, Some(Err(e))) => Err(e),
                (Ok(()), Some(Ok(v))) => Ok(v),
                (Err(e), _) => Err(E::from(e)),
                (Ok(()), None) => Err(E::from(StoreError::Empty)),
            }
        });
        match tokio::time::timeout(STORE_ANSWER, joined).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(E::from(StoreError::Task(e.to_string())))),
            Err(_) => {
                gave_up.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(E::from(StoreError::Unavailable(format!(
                    "no answer within {} s",
                    STORE_ANSWER.as_secs()
                ))))
            }
        }
    }

    // ------------------------------------------------------------ bootstrap and auth

    /// Creates the admin customer and its first management key if there is no admin yet.
    /// Returns the key token when one was created (the caller writes it to a private file).
    /// `persist_token` runs before the records are committed so that a failure to save the key
    /// leaves no admin without a known key.
    pub async fn ensure_admin(
        &self,
        persist_token: impl FnOnce(&str) -> anyhow::Result<()> + Send + 'static,
    ) -> Result<bool, ApiError> {
        self.write(move |tx| {
            if tx.admin_exists()? {
                return Ok(false);
            }
            let t = now();
            let customer = Customer {
                id: Uuid::new_v4(),
                name: "admin".into(),
                plan: Plan::Enterprise,
                is_admin: true,
                created_at: t,
                updated_at: t,
            };
            tx.insert_customer(&customer)?;
            let (key, token) = new_management_key(customer.id, "admin", None, t);
            tx.insert_management_key(&key)?;
            persist_token(&token)?;
            Ok(true)
        })
        .await
    }

    /// `refract admin new-key`: a fresh management key for the first admin customer, for an
    /// operator who lost or revoked every admin key. `persist_token` writes it before the
    /// transaction commits. Returns the admin customer's id.
    pub async fn recovery_admin_key(
        &self,
        persist_token: impl FnOnce(&str) -> anyhow::Result<()> + Send + 'static,
    ) -> Result<Uuid, ApiError> {
        self.write(move |tx| {
            let admin = tx
                .list_customers()?
                .into_iter()
                .filter(|c| c.is_admin)
                .min_by_key(|c| c.created_at)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "no admin customer in this data directory (start `refract serve` on it once)",
                    )
                })?;
            let (key, token) = new_management_key(admin.id, "recovery", None, now());
            tx.insert_management_key(&key)?;
            persist_token(&token)?;
            Ok(admin.id)
        })
        .await
    }

    /// Checks a `Bearer` token. Every failure is the same 401 so that nothing about keys leaks.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let unauthorized =
            || ApiError::Unauthorized("missing, invalid, expired or revoked management key".into());
        let Some((key_id, secret)) = keys::parse("rmk", token) else {
            return Err(unauthorized());
        };
        let key_id = key_id.to_string();
        let hash = keys::sha256_hex(secret);
        let t = now();
        let found = self
            .read(move |tx| {
                let Some(k) = tx.find_management_key(&key_id)? else {
                    return Ok(None);
                };
                let Some(c) = tx.get_customer(k.customer_id)? else {
                    return Ok(None);
                };
                Ok(Some((k, c)))
            })
            .await?;
        let Some((key, customer)) = found else {
            return Err(unauthorized());
        };
        if !keys::constant_time_eq(&key.secret_sha256, &hash)
            || key.revoked_at.is_some()
            || key.expires_at.is_some_and(|e| e <= t)
        {
            return Err(unauthorized());
        }
        if key.last_used_at.is_none_or(|u| t - u >= TOUCH_EVERY) {
            let id = key.id;
            // Best effort: a failed touch must not fail the request.
            if let Err(e) = self
                .write_store(move |tx| tx.touch_management_key(id, t))
                .await
            {
                tracing::warn!(error = %e, "could not record management key use");
            }
        }
        Ok(Principal {
            customer,
            key_record_id: key.id,
        })
    }

    // ------------------------------------------------------------ admin

    fn require_admin(p: &Principal) -> Result<(), ApiError> {
        if !p.customer.is_admin {
            return Err(ApiError::Forbidden(
                "this route needs an admin management key".into(),
            ));
        }
        Ok(())
    }

    /// `POST /v1/admin/customers`.
    pub async fn create_customer(
        &self,
        p: &Principal,
        req: CreateCustomerRequest,
    ) -> Result<CreateCustomerResponse, ApiError> {
        Self::require_admin(p)?;
        v::name("name", &req.name)?;
        self.write(move |tx| {
            let t = now();
            let customer = Customer {
                id: Uuid::new_v4(),
                name: req.name,
                plan: req.plan.unwrap_or(Plan::Free),
                is_admin: false,
                created_at: t,
                updated_at: t,
            };
            tx.insert_customer(&customer)?;
            let (mut key, token) = new_management_key(customer.id, "default", None, t);
            tx.insert_management_key(&key)?;
            key.key = Some(token);
            Ok(CreateCustomerResponse {
                customer,
                management_key: key.into(),
            })
        })
        .await
    }

    /// `GET /v1/admin/customers`.
    pub async fn list_customers(&self, p: &Principal) -> Result<Vec<Customer>, ApiError> {
        Self::require_admin(p)?;
        Ok(self.read_store(|tx| tx.list_customers()).await?)
    }

    /// `PATCH /v1/admin/customers/{id}/plan`.
    pub async fn set_plan(
        &self,
        p: &Principal,
        id: Uuid,
        req: SetPlanRequest,
    ) -> Result<SetPlanResponse, ApiError> {
        Self::require_admin(p)?;
        self.write(move |tx| {
            if tx.get_customer(id)?.is_none() {
                return Err(ApiError::not_found("customer"));
            }
            tx.set_customer_plan(id, req.plan, now())?;
            Ok(SetPlanResponse {
                id,
                plan: req.plan,
                limits: plans::limits(req.plan).into(),
            })
        })
        .await
    }

    // ------------------------------------------------------------ management keys

    /// `POST /v1/account/management-keys`.
    pub async fn create_management_key(
        &self,
        p: &Principal,
        req: CreateManagementKeyRequest,
    ) -> Result<ManagementKeyRow, ApiError> {
        v::name("name", &req.name)?;
        let t = now();
        if req.expires_at.is_some_and(|e| e <= t) {
            return Err(ApiError::unprocessable("expiresAt must be in the future"));
        }
        let customer = p.customer_id();
        self.write(move |tx| {
            let (mut key, token) = new_management_key(customer, &req.name, req.expires_at, t);
            tx.insert_management_key(&key)?;
            key.key = Some(token);
            Ok(key)
        })
        .await
    }

    /// `GET /v1/account/management-keys`.
    pub async fn list_management_keys(
        &self,
        p: &Principal,
    ) -> Result<Vec<ManagementKeyRow>, ApiError> {
        let customer = p.customer_id();
        Ok(self
            .read_store(move |tx| tx.list_management_keys(customer))
            .await?)
    }

    /// `DELETE /v1/account/management-keys/{id}`: revokes (idempotent); effective at once since
    /// every request reads the key.
    pub async fn revoke_management_key(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<ManagementKeyRow, ApiError> {
        let customer = p.customer_id();
        self.write(move |tx| {
            let Some(key) = tx.get_management_key(customer, id)? else {
                return Err(ApiError::not_found("management key"));
            };
            let at = now();
            let valid = |k: &ManagementKeyRow| {
                k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > at)
            };
            // Revoking the last valid key would lock the customer out for good.
            if valid(&key)
                && !tx
                    .list_management_keys(customer)?
                    .iter()
                    .any(|k| k.id != id && valid(k))
            {
                return Err(ApiError::conflict(
                    "this is the account's last valid management key: create another one \
                     (POST /v1/account/management-keys) before revoking it; an operator who lost \
                     every admin key recovers with `refract admin new-key --data-dir DIR`",
                ));
            }
            tx.revoke_management_key(id, at)?;
            tx.get_management_key(customer, id)?
                .ok_or_else(|| ApiError::not_found("management key"))
        })
        .await
    }

    // ------------------------------------------------------------ connections

    /// `POST /v1/connections`, with the optional first database, in one transaction.
    pub async fn create_connection(
        &self,
        p: &Principal,
        req: CreateConnectionRequest,
    ) -> Result<CreateConnectionResponse, ApiError> {
        let backend = req.backend.unwrap_or(Backend::Mysql);
        v::name("name", &req.name)?;
        // The schema's limit is the longest of any backend (400); this backend's is a 422.
        v::host("mysqlHost", &req.host, Backend::Sqlite)?;
        v::host("mysqlHost", &req.host, backend).map_err(ApiError::semantic)?;
        let port = match req.port {
            Some(port) => {
                v::port("mysqlPort", port)?;
                Some(port)
            }
            None => backend.default_port(),
        };
        let available_schemas = match (&req.available_schemas, backend) {
            (None, Backend::Sqlite) => vec!["main".to_string()],
            (Some(s), Backend::Sqlite) if s != &["main"] => {
                return Err(ApiError::unprocessable(
                    "availableSchemas must be [\"main\"] for backend sqlite",
                ))
            }
            (s, _) => v::required("availableSchemas", s)
                .map_err(ApiError::semantic)?
                .clone(),
        };
        v::schemas("availableSchemas", &available_schemas)?;
        if backend != Backend::Sqlite {
            // Required by the backend: a rule between fields, so a 422 like the others below.
            v::user(
                "mysqlUser",
                v::required("mysqlUser", &req.user).map_err(ApiError::semantic)?,
            )?;
            v::password(
                "mysqlPassword",
                v::required("mysqlPassword", &req.password).map_err(ApiError::semantic)?,
            )?;
        } else {
            if let Some(u) = &req.user {
                v::user("mysqlUser", u)?;
            }
            if let Some(pw) = &req.password {
                v::password("mysqlPassword", pw)?;
            }
        }
        let sync_mode = req.sync_mode.unwrap_or(SyncMode::Poll);
        v::sync_mode_fits("syncMode", sync_mode, backend).map_err(ApiError::semantic)?;
        let sync_interval = req.sync_interval.unwrap_or(30);
        v::sync_interval("syncInterval", sync_interval)?;
        if let Some(pem) = &req.ssl_root_cert {
            v::root_cert("sslRootCert", pem)?;
        }
        v::tls_fits(req.ssl_mode, req.ssl_root_cert.is_some(), backend)?;
        let ssl_mode = match backend {
            Backend::Sqlite => SslMode::Disable,
            _ => req.ssl_mode.unwrap_or(SslMode::Prefer),
        };
        if backend == Backend::Sqlite {
            // Where the file is, after every other field rule (a 422: it depends on the host).
            let roots = self.sqlite_roots.clone();
            let host = req.host.clone();
            blocking(move || {
                roots
                    .check("mysqlHost", &host)
                    .map(|_| ())
                    .map_err(|r| ApiError::unprocessable(r.0))
            })
            .await?;
        }
        if let Some(inst) = &req.instance {
            check_instance_fields("instance.", inst)?;
            self.check_replicas("instance.replicas", inst.replicas)?;
            if !available_schemas.contains(&inst.schema) {
                return Err(ApiError::unprocessable(format!(
                    "instance.mysqlDb {:?} is not in availableSchemas {:?}",
                    inst.schema, available_schemas
                )));
            }
        }

        let t = now();
        let id = Uuid::new_v4();
        let secret_name = password_secret_name(id);
        let ca_secret_name = ssl_root_cert_secret_name(id);
        let connection = ConnectionRow {
            wire: refract_api::Connection {
                id,
                customer_id: p.customer_id(),
                name: req.name,
                backend,
                host: req.host,
                port,
                available_schemas,
                user: req.user,
                allowed_sync_modes: allowed_modes(sync_mode),
                min_sync_interval: sync_interval,
                created_at: t,
                updated_at: t,
                ssl_mode,
                ssl_root_cert_set: req.ssl_root_cert.is_some(),
            },
            password_secret: req.password.as_ref().map(|_| secret_name.clone()),
            ssl_root_cert_secret: req.ssl_root_cert.as_ref().map(|_| ca_secret_name.clone()),
        };
        let customer = p.customer.clone();
        let region = self.region.clone();
        let secrets = self.secrets.clone();
        let password = req.password;
        let root_cert = req.ssl_root_cert;
        let instance = req.instance;
        let result = self
            .write(move |tx| {
                if tx.connection_name_taken(&NameClaim {
                    owner: customer.id,
                    name: &connection.name,
                    except: None,
                })? {
                    return Err(ApiError::conflict(format!(
                        "a connection named {:?} already exists",
                        connection.name
                    )));
                }
                tx.insert_connection(&connection)?;
                let database = match instance {
                    Some(inst) => Some(insert_database(
                        tx,
                        &customer,
                        &connection,
                        inst,
                        "instance.",
                        &region,
                        t,
                    )?),
                    None => None,
                };
                // Last, so that a failed validation above never leaves a secret behind.
                if let Some(pw) = &password {
                    secrets.put(&secret_name, pw)?;
                }
                if let Some(pem) = &root_cert {
                    secrets.put(&ca_secret_name, pem)?;
                }
                Ok(CreateConnectionResponse {
                    connection: connection.into(),
                    database: database.map(Into::into),
                })
            })
            .await;
        if result.is_err() {
            // The commit itself may have failed after the secret was written.
            let _ = self.secrets.delete(&password_secret_name(id));
            let _ = self.secrets.delete(&ssl_root_cert_secret_name(id));
        }
        result
    }

    /// `GET /v1/connections`.
    pub async fn list_connections(&self, p: &Principal) -> Result<Vec<ConnectionRow>, ApiError> {
        let customer = p.customer_id();
        Ok(self
            .read_store(move |tx| tx.list_connections(customer))
            .await?)
    }

    /// `GET /v1/connections/{id}`.
    pub async fn get_connection(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<ConnectionWithDatabases, ApiError> {
        let customer = p.customer_id();
        self.read(move |tx| {
            let connection = tx
                .get_connection(customer, id)?
                .ok_or_else(|| ApiError::not_found("connection"))?;
            let filter = DatabaseFilter {
                connection_id: Some(id),
                ..Default::default()
            };
            let databases = tx.list_databases(customer, &filter)?;
            Ok(ConnectionWithDatabases {
                connection: connection.into(),
                databases: databases.into_iter().map(Into::into).collect(),
            })
        })
        .await
    }

    /// `PATCH /v1/connections/{id}`.
    pub async fn update_connection(
        &self,
        p: &Principal,
        id: Uuid,
        req: UpdateConnectionRequest,
    ) -> Result<ConnectionRow, ApiError> {
        if let Some(n) = &req.name {
            v::name("name", n)?;
        }
        if let Some(h) = &req.host {
            // The backend is known below; the longer (path) cap here, the host cap there.
            v::host("mysqlHost", h, Backend::Sqlite)?;
        }
        if let Some(port) = req.port {
            v::port("mysqlPort", port)?;
        }
        if let Some(s) = &req.available_schemas {
            v::schemas("availableSchemas", s)?;
        }
        if let Some(u) = &req.user {
            v::user("mysqlUser", u)?;
        }
        if let Some(pw) = &req.password {
            v::password("mysqlPassword", pw)?;
        }
        if let Some(i) = req.sync_interval {
            v::sync_interval("syncInterval", i)?;
        }
        if let Some(Some(pem)) = &req.ssl_root_cert {
            v::root_cert("sslRootCert", pem)?;
        }
        let customer = p.customer_id();
        let secrets = self.secrets.clone();
        let roots = self.sqlite_roots.clone();
        self.write(move |tx| {
            let mut c = tx.get_connection(customer, id)?.ok_or_else(|| ApiError::not_found("connection"))?;
            v::tls_fits(req.ssl_mode, matches!(req.ssl_root_cert, Some(Some(_))), c.backend)?;
            if let Some(h) = &req.host {
                v::host("mysqlHost", h, c.backend).map_err(ApiError::semantic)?;
                if c.backend == Backend::Sqlite {
                    roots.check("mysqlHost", h).map_err(|r| ApiError::unprocessable(r.0))?;
                }
            }
            let t = now();
            if let Some(name) = req.name {
                if tx.connection_name_taken(&NameClaim { owner: customer, name: &name, except: Some(id) })? {
                    return Err(ApiError::conflict(format!("a connection named {name:?} already exists")));
                }
                c.name = name;
            }
            if let Some(s) = req.available_schemas {
                if c.backend == Backend::Sqlite && s != ["main"] {
                    return Err(ApiError::unprocessable("availableSchemas must be [\"main\"] for backend sqlite"));
                }
                let removed: Vec<String> = c.available_schemas.iter().filter(|x| !s.contains(x)).cloned().collect();
                let users = tx.databases_using_schemas(id, &removed)?;
                if !users.is_empty() {
                    let list: Vec<String> = users.iter().map(|(d, s)| format!("{d} (uses {s})")).collect();
                    return Err(ApiError::conflict(format!(
                        "availableSchemas cannot drop schemas that databases use: {}",
                        list.join(", ")
                    )));
                }
                c.available_schemas = s;
            }
            let mut databases = tx.list_databases(customer, &DatabaseFilter { connection_id: Some(id), ..Default::default() })?;
            if let Some(mode) = req.sync_mode {
                v::sync_mode_fits("syncMode", mode, c.backend).map_err(ApiError::semantic)?;
                let allowed = allowed_modes(mode);
                let stranded: Vec<&str> =
                    databases.iter().filter(|d| !allowed.contains(&d.sync_mode)).map(|d| d.name.as_str()).collect();
                if !stranded.is_empty() {
                    return Err(ApiError::conflict(format!(
                        "syncMode: databases still use a sync mode this change removes: {}",
                        stranded.join(", ")
                    )));
                }
                c.allowed_sync_modes = allowed;
            }
            let mut raised = Vec::new();
            if let Some(i) = req.sync_interval {
                c.min_sync_interval = i;
                // Databases below the new minimum are raised to it (applied at their next
                // reconfigure), rather than refusing the change.
                for d in databases.iter_mut().filter(|d| d.sync_interval < i) {
                    d.sync_interval = i;
                    raised.push(d.id);
                }
            }
            let moved = req.host.as_ref().is_some_and(|h| *h != c.host)
                || req.port.is_some_and(|p| Some(p) != c.port);
            if let Some(h) = req.host {
                c.host = h;
            }
            if let Some(port) = req.port {
                c.port = Some(port);
            }
            if moved {
                let own: Vec<Uuid> = databases.iter().map(|d| d.id).collect();
                for d in &databases {
                    if let Some(sid) = d.binlog_server_id {
                        if tx.binlog_server_id_taken(&ServerIdClaim { host: &c.host, port: c.port, server_id: sid, except: &own })? {
                            return Err(ApiError::conflict(format!(
                                "binlogServerId {sid} of database {} is already used by another database replicating from {}:{}",
                                d.name,
                                c.host,
                                c.port.unwrap_or(0)
                            )));
                        }
                    }
                }
            }
            if let Some(u) = req.user {
                c.user = Some(u);
            }
            c.updated_at = t;
            for d in databases.iter_mut().filter(|d| raised.contains(&d.id)) {
                d.updated_at = t;
                d.has_pending_changes = pending(d);
                tx.update_database(d)?;
            }
            if let Some(pw) = req.password {
                let name = password_secret_name(id);
                secrets.put(&name, &pw)?;
                c.password_secret = Some(name);
            }
            if let Some(mode) = req.ssl_mode {
                c.ssl_mode = mode;
            }
            match req.ssl_root_cert {
                Some(Some(pem)) => {
                    let name = ssl_root_cert_secret_name(id);
                    secrets.put(&name, &pem)?;
                    c.ssl_root_cert_secret = Some(name);
                }
                Some(None) => {
                    if let Some(name) = c.ssl_root_cert_secret.take() {
                        secrets.delete(&name)?;
                    }
                }
                None => {}
            }
            c.ssl_root_cert_set = c.ssl_root_cert_secret.is_some();
            tx.update_connection(&c)?;
            Ok(c)
        })
        .await
    }

    /// `DELETE /v1/connections/{id}`: refused while non-deleted databases use it; removes the
    /// password from the secret store.
    pub async fn delete_connection(&self, p: &Principal, id: Uuid) -> Result<(), ApiError> {
        let customer = p.customer_id();
        let secret = self
            .write(move |tx| {
                let c = tx
                    .get_connection(customer, id)?
                    .ok_or_else(|| ApiError::not_found("connection"))?;
                let dbs = tx.list_databases(
                    customer,
                    &DatabaseFilter {
                        connection_id: Some(id),
                        ..Default::default()
                    },
                )?;
                if !dbs.is_empty() {
                    let names: Vec<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
                    return Err(ApiError::conflict(format!(
                        "connection still has databases: {}; delete them first",
                        names.join(", ")
                    )));
                }
                tx.delete_connection(id)?;
                Ok([c.password_secret, c.ssl_root_cert_secret])
            })
            .await?;
        for name in secret.into_iter().flatten() {
            self.secrets.delete(&name)?;
        }
        Ok(())
    }

    /// `POST /v1/connections/test-connection`: tries credentials without storing anything.
    /// Non-admin callers get one generic message for every failure but a refused login
    /// (see [`redact_report`]).
    pub async fn test_connection_raw(
        &self,
        p: &Principal,
        req: TestConnectionRequest,
    ) -> Result<TestConnectionResult, ApiError> {
        let backend = req.backend.unwrap_or(Backend::Mysql);
        // The schema's limit is the longest of any backend (400); this backend's is a 422.
        v::host("mysqlHost", &req.host, Backend::Sqlite)?;
        v::host("mysqlHost", &req.host, backend).map_err(ApiError::semantic)?;
        if let Some(u) = &req.user {
            v::user("mysqlUser", u)?;
        }
        if let Some(pw) = &req.password {
            v::password("mysqlPassword", pw)?;
        }
        if let Some(pem) = &req.ssl_root_cert {
            v::root_cert("sslRootCert", pem)?;
        }
        v::tls_fits(req.ssl_mode, req.ssl_root_cert.is_some(), backend)?;
        let port = match req.port {
            Some(port) => {
                v::port("mysqlPort", port)?;
                port
            }
            None => backend.default_port().unwrap_or(0),
        };
        let mut host = req.host;
        if backend == Backend::Sqlite {
            let roots = self.sqlite_roots.clone();
            let h = host.clone();
            let path = blocking(move || {
                roots
                    .check("mysqlHost", &h)
                    .map_err(|r| ApiError::unprocessable(r.0))
            })
            .await?;
            host = path.to_string_lossy().into_owned();
        }
        let params = refract_sources::SourceParams {
            backend: backend.to_source(),
            host,
            port: port as u16,
            user: req.user.unwrap_or_default(),
            password: req.password,
            database: None,
            pg_schema: None,
            tls: source_tls(
                backend,
                req.ssl_mode.unwrap_or(SslMode::Prefer),
                req.ssl_root_cert,
            ),
        };
        let shown = shown_target(backend, &params.host, port, None);
        let report = run_test(params).await;
        Ok(redact_report(report, p.customer.is_admin, backend, &shown))
    }

    /// `POST /v1/connections/{id}/test-connection`: with the stored credentials.
    pub async fn test_connection_stored(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<TestConnectionResult, ApiError> {
        let customer = p.customer_id();
        let c = self
            .read(move |tx| {
                tx.get_connection(customer, id)?
                    .ok_or_else(|| ApiError::not_found("connection"))
            })
            .await?;
        let service = self.clone();
        let conn = c.clone();
        let params = blocking(move || {
            service
                .checked_source_params(&conn, None)
                .map_err(ApiError::Unprocessable)
        })
        .await?;
        let shown = shown_target(c.backend, &params.host, params.port as i64, Some(&c.host));
        let report = run_test(params).await;
        Ok(redact_report(
            report,
            p.customer.is_admin,
            c.backend,
            &shown,
        ))
    }

    /// How to reach a connection's source, password from the secret store (for builds and
    /// engines too).
    pub fn source_params(
        &self,
        c: &ConnectionRow,
        database: Option<String>,
    ) -> refract_sources::SourceParams {
        refract_sources::SourceParams {
            backend: c.backend.to_source(),
            host: c.host.clone(),
            port: c.port.unwrap_or(0) as u16,
            user: c.user.clone().unwrap_or_default(),
            password: c
                .password_secret
                .as_deref()
                .and_then(|n| self.secrets.get(n)),
            database,
            pg_schema: None,
            tls: source_tls(
                c.backend,
                c.ssl_mode,
                c.ssl_root_cert_secret
                    .as_deref()
                    .and_then(|n| self.secrets.get(n)),
            ),
        }
    }

    // ------------------------------------------------------------ databases

    /// `POST /v1/databases`.
    pub async fn register_database(
        &self,
        p: &Principal,
        req: RegisterDatabaseRequest,
    ) -> Result<DatabaseRow, ApiError> {
        let inst = CreateInstanceRequest {
            name: req.name,
            schema: req.schema,
            instance_size: req.instance_size,
            log_level: req.log_level,
            binlog_server_id: req.binlog_server_id,
            replicas: req.replicas,
        };
        check_instance_fields("", &inst)?;
        self.check_replicas("replicas", inst.replicas)?;
        let customer = p.customer.clone();
        let region = self.region.clone();
        let connection_id = req.connection_id;
        self.write(move |tx| {
            let c = tx
                .get_connection(customer.id, connection_id)?
                .ok_or_else(|| ApiError::not_found("connection"))?;
            if !c.available_schemas.contains(&inst.schema) {
                return Err(ApiError::unprocessable(format!(
                    "mysqlDb {:?} is not in the connection's availableSchemas {:?}",
                    inst.schema, c.available_schemas
                )));
            }
            insert_database(tx, &customer, &c, inst, "", &region, now())
        })
        .await
    }

    /// `GET /v1/databases`.
    pub async fn list_databases(
        &self,
        p: &Principal,
        filter: DatabaseFilter,
    ) -> Result<Vec<DatabaseRow>, ApiError> {
        let customer = p.customer_id();
        Ok(self
            .read_store(move |tx| tx.list_databases(customer, &filter))
            .await?)
    }

    /// `GET /v1/databases/{id}`.
    pub async fn get_database(&self, p: &Principal, id: Uuid) -> Result<DatabaseRow, ApiError> {
        let customer = p.customer_id();
        self.read(move |tx| customer_database(tx, customer, id))
            .await
    }

    /// `PATCH /v1/databases/{id}`.
    pub async fn update_database(
        &self,
        p: &Principal,
        id: Uuid,
        req: UpdateDatabaseRequest,
    ) -> Result<DatabaseRow, ApiError> {
        // Field rules first (400), then the ones that need the store.
        if let Some(n) = &req.name {
            v::name("name", n)?;
        }
        if let Some(s) = &req.schema {
            v::schema("mysqlDb", s)?;
        }
        if let Some(Some(sid)) = req.binlog_server_id {
            v::binlog_server_id(sid)?;
        }
        self.check_replicas("replicas", req.replicas)?;
        if let Some(Some(d)) = &req.reflexdb_custom_domain {
            v::custom_domain(d)?;
        }
        if let Some(Some(s)) = &req.pause_schedule {
            v::pause_schedule(s)?;
        }
        if let Some(t) = &req.tags {
            v::tags(t)?;
        }
        if let Some(i) = req.sync_interval {
            v::sync_interval("syncInterval", i)?;
        }
        if let Some(s) = req.safety_net {
            v::safety_net(s)?;
        }
        let customer = p.customer.clone();
        let limits = plans::limits(customer.plan);
        if let Some(size) = req.instance_size {
            check_size(customer.plan, size)?;
        }
        if let Some(Some(_)) = &req.reflexdb_custom_domain {
            if !limits.custom_domains {
                return Err(ApiError::Forbidden(format!(
                    "reflexdbCustomDomain needs the teams plan or higher (this account is on {})",
                    customer.plan
                )));
            }
        }
        self.write(move |tx| {
            let mut d = customer_database(tx, customer.id, id)?;
            let c = tx.get_connection(customer.id, d.connection_id)?.ok_or_else(|| ApiError::not_found("connection"))?;
            if let Some(name) = req.name {
                if name != d.name && tx.database_name_taken(&NameClaim { owner: c.id, name: &name, except: Some(id) })? {
                    return Err(ApiError::conflict(format!("a database named {name:?} already exists on this connection")));
                }
                d.name = name;
            }
            if let Some(db) = req.schema {
                if db != d.schema {
                    if !matches!(d.status, Status::Registered | Status::Failed | Status::Stopped | Status::Terminated) {
                        return Err(ApiError::conflict(format!(
                            "mysqlDb can change only in status registered, failed, stopped or terminated (status is {})",
                            d.status
                        )));
                    }
                    if !c.available_schemas.contains(&db) {
                        return Err(ApiError::unprocessable(format!(
                            "mysqlDb {db:?} is not in the connection's availableSchemas {:?}",
                            c.available_schemas
                        )));
                    }
                    d.schema = db;
                }
            }
            if let Some(size) = req.instance_size {
                d.instance_size = size;
                (d.task_cpu, d.task_memory_mb) = size.resources();
            }
            if let Some(l) = req.log_level {
                d.log_level = l;
            }
            if let Some(r) = req.replicas {
                d.replicas = r;
            }
            if let Some(sid) = req.binlog_server_id {
                if let Some(n) = sid {
                    if tx.binlog_server_id_taken(&ServerIdClaim { host: &c.host, port: c.port, server_id: n, except: &[id] })? {
                        return Err(binlog_conflict(n, &c));
                    }
                }
                d.binlog_server_id = sid;
            }
            if let Some(b) = req.build_compute_override {
                d.build_compute_override = b;
            }
            if let Some(dom) = req.reflexdb_custom_domain {
                if let Some(dom) = &dom {
                    if tx.custom_domain_taken(dom, Some(id))? {
                        return Err(ApiError::conflict(format!("reflexdbCustomDomain {dom:?} is already taken")));
                    }
                }
                d.reflexdb_custom_domain = dom;
            }
            if let Some(s) = req.pause_schedule {
                d.pause_schedule = s;
            }
            if let Some(t) = req.tags {
                d.tags = t;
            }
            if let Some(mode) = req.sync_mode {
                if !c.allowed_sync_modes.contains(&mode) {
                    let allowed: Vec<&str> = c.allowed_sync_modes.iter().map(|m| m.as_str()).collect();
                    return Err(ApiError::unprocessable(format!(
                        "syncMode {mode} is not allowed by the connection (allowedSyncModes: {})",
                        allowed.join(", ")
                    )));
                }
                d.sync_mode = mode;
            }
            if let Some(i) = req.sync_interval {
                if i < c.min_sync_interval {
                    return Err(ApiError::unprocessable(format!(
                        "syncInterval must be at least the connection's minSyncInterval {} (got {i})",
                        c.min_sync_interval
                    )));
                }
                d.sync_interval = i;
            }
            if let Some(s) = req.safety_net {
                d.safety_net = s;
            }
            check_replicas_sync(d.replicas, d.sync_mode, "")?;
            if d.sync_mode == SyncMode::Binlog && d.binlog_server_id.is_none() {
                d.binlog_server_id =
                    Some(pick_server_id(tx, d.id, &c.host, c.port, None)?);
            }
            d.has_pending_changes = pending(&d);
            d.updated_at = now();
            tx.update_database(&d)?;
            Ok(d)
        })
        .await
    }

    /// `DELETE /v1/databases/{id}`: soft delete, allowed in `registered`, `stopped`,
    /// `terminated` and `failed` (the action matrix); frees the name.
    pub async fn delete_database(&self, p: &Principal, id: Uuid) -> Result<(), ApiError> {
        let customer = p.customer_id();
        self.write(move |tx| {
            let d = customer_database(tx, customer, id)?;
            // The one action matrix decides (lifecycle.md).
            let ctx = crate::lifecycle::matrix::Context::default();
            if let crate::lifecycle::matrix::Decision::Refused(reason) =
                crate::lifecycle::matrix::decide(
                    d.status,
                    crate::lifecycle::matrix::Action::Delete,
                    &ctx,
                )
            {
                return Err(ApiError::ActionNotAllowed(reason));
            }
            let t = now();
            tx.soft_delete_database(id, t)?;
            tx.insert_event(&Event {
                database_id: id,
                at: t,
                from_status: Some(d.status),
                to_status: d.status,
                cause: "user".into(),
                message: "deleted".into(),
            })?;
            Ok(())
        })
        .await?;
        // No engine runs in the statuses that allow a delete: what only engines read goes now.
        // A failure here leaves a file or a secret behind, not a wrong answer: logged, not
        // returned (the delete itself is committed).
        if let Err(e) = self
            .secrets
            .delete(&crate::lifecycle::admin_token_secret(id))
        {
            tracing::warn!(database = %id, error = %e, "cannot delete the engines' admin token");
        }
        if let Some(rt) = self.lifecycle.runtime() {
            // What the runtime keeps for the database (Kubernetes: its Service and keys Secret).
            if let Err(e) = rt.driver.remove_group(&id.to_string()).await {
                tracing::warn!(database = %id, error = %e, "cannot delete the database's runtime objects");
            }
            let keys = crate::lifecycle::keys_file(&rt.engine_dir, id);
            if let Err(e) = std::fs::remove_file(&keys) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(database = %id, error = %e, "cannot delete the query keys file");
                }
            }
        }
        Ok(())
    }
}

/// Runs `f` on the blocking pool; a panic there is an internal error, not a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!(
            "store task failed: {e}"
        ))),
    }
}

async fn run_test(params: refract_sources::SourceParams) -> TestConnectionResult {
    // The sources crate bounds itself by the timeout; the outer one guards against a driver that
    // does not.
    let report = match tokio::time::timeout(
        TEST_CONNECTION_TIMEOUT + Duration::from_secs(1),
        refract_sources::test_connection(&params, TEST_CONNECTION_TIMEOUT),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => refract_sources::TestConnectionReport {
            ok: false,
            error: Some(format!(
                "timed out after {} s",
                TEST_CONNECTION_TIMEOUT.as_secs()
            )),
            ..Default::default()
        },
    };
    crate::api::test_connection_result(report)
}

/// How a test-connection target is named in the generic message: `host:port`, or for SQLite the
/// path as the caller gave it (`given`) rather than its canonical form.
fn shown_target(backend: Backend, host: &str, port: i64, given: Option<&str>) -> String {
    match backend {
        Backend::Sqlite => given.unwrap_or(host).to_string(),
        _ => format!("{host}:{port}"),
    }
}

/// What a test-connection report may tell its caller. Admins see everything. Anyone else sees
/// the same `could not connect to HOST:PORT as a MySQL server` for every failure — nothing
/// listens, connection refused, not a database server, timeout — so that the route is no port
/// scanner for the control plane's network. What stays specific is what only a real server of
/// that kind can answer, which the caller is talking to anyway and must fix: a refused login,
/// and an error the server itself reported (`Unknown database 'shop' (error 1049)`, `… [SQLSTATE
/// 3D000]`).
pub fn redact_report(
    report: TestConnectionResult,
    admin: bool,
    backend: Backend,
    target: &str,
) -> TestConnectionResult {
    if admin || report.ok {
        return report;
    }
    let error = report.error.as_deref().unwrap_or_default();
    let server_said = match backend {
        Backend::Mysql => {
            // mysql_async's server error packets: "… (error 1049)".
            error
                .strip_suffix(')')
                .and_then(|e| e.rsplit_once("(error "))
                .is_some_and(|(_, code)| {
                    !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit())
                })
        }
        Backend::Postgres => error.ends_with(']') && error.contains("[SQLSTATE "),
        _ => false,
    };
    // A TLS failure comes after a server of that kind answered (MySQL negotiates TLS inside
    // its own handshake, PostgreSQL after its `SSLRequest` answer), and only the caller can fix
    // it (sslMode, sslRootCert, the host name used).
    if backend != Backend::Sqlite
        && (error.starts_with("the source rejected the request:")
            || error.starts_with("TLS to the source failed:")
            || server_said)
    {
        return report;
    }
    let kind = match backend {
        Backend::Mysql => "a MySQL server",
        Backend::Postgres => "a PostgreSQL server",
        Backend::Mssql => "a SQL Server",
        Backend::Sqlite => "a SQLite database",
    };
    let verb = if backend == Backend::Sqlite {
        "open"
    } else {
        "connect to"
    };
    TestConnectionResult {
        ok: false,
        error: Some(format!("could not {verb} {target} as {kind}")),
        ..Default::default()
    }
}

/// `poll` plus the requested CDC mode, if any.
fn allowed_modes(mode: SyncMode) -> Vec<SyncMode> {
    if mode == SyncMode::Poll {
        vec![SyncMode::Poll]
    } else {
        vec![SyncMode::Poll, mode]
    }
}

/// The database `id` of `customer` (not deleted), or a 404: another customer's id looks the same.
pub(crate) fn customer_database(
    tx: &dyn Tx,
    customer: Uuid,
    id: Uuid,
) -> Result<DatabaseRow, ApiError> {
    tx.get_database(customer, id)?
        .ok_or_else(|| ApiError::not_found("database"))
}

/// Runtime settings differ from the deployed ones (never pending before a first deploy).
pub fn pending(d: &DatabaseRow) -> bool {
    match &d.internal.deployed_config {
        None => false,
        // Compared as settings, not JSON: a field added since the deploy (`replicas`) reads as
        // its default, so an upgrade alone never makes a change pending.
        Some(deployed) => match serde_json::from_value::<RuntimeSettings>(deployed.clone()) {
            Ok(was) => was != d.runtime_settings(),
            Err(_) => serde_json::to_value(d.runtime_settings()).ok().as_ref() != Some(deployed),
        },
    }
}

fn check_size(plan: Plan, size: InstanceSize) -> Result<(), ApiError> {
    let max = plans::limits(plan).max_instance_size;
    if size.rank() > max.rank() {
        return Err(ApiError::Forbidden(format!(
            "instanceSize {size} exceeds the {plan} plan's largest size {max}"
        )));
    }
    Ok(())
}

fn binlog_conflict(n: i64, c: &ConnectionRow) -> ApiError {
    ApiError::conflict(format!(
        "binlogServerId {n} is already used by another database replicating from {}:{}",
        c.host,
        c.port.unwrap_or(0)
    ))
}

impl Service {
    /// `replicas`: 1–10, and more than 1 only where the runtime runs engines side by side in
    /// pods of their own (the local runtime runs one engine process per database).
    fn check_replicas(&self, field: &str, replicas: Option<i64>) -> Result<(), ApiError> {
        let Some(n) = replicas else {
            return Ok(());
        };
        v::range(field, n, 1, 10)?;
        let network = self.lifecycle.runtime().map(|rt| rt.driver.network());
        if n > 1 && !matches!(network, Some(refract_runtime::Network::Cluster { .. })) {
            // 422, not 400: the body matches the schema; what the runtime can run decides.
            return Err(ApiError::unprocessable(format!(
                "{field}: {n} needs the Kubernetes runtime (`refract serve --runtime kubernetes`); the local runtime runs one engine per database"
            )));
        }
        Ok(())
    }
}

/// A change stream belongs to one engine (a binlog replica's `server_id`, a PostgreSQL
/// replication slot): more than one replica polls.
fn check_replicas_sync(replicas: i64, mode: SyncMode, prefix: &str) -> Result<(), ApiError> {
    if replicas > 1 && mode != SyncMode::Poll {
        return Err(ApiError::unprocessable(format!(
            "{prefix}replicas: {replicas} needs syncMode poll (a {mode} change stream belongs to one engine); set syncMode to poll or replicas to 1"
        )));
    }
    Ok(())
}

fn check_instance_fields(prefix: &str, inst: &CreateInstanceRequest) -> Result<(), ApiError> {
    v::name(&format!("{prefix}name"), &inst.name)?;
    v::schema(&format!("{prefix}mysqlDb"), &inst.schema)?;
    if let Some(sid) = inst.binlog_server_id {
        v::range(&format!("{prefix}binlogServerId"), sid, 1, u32::MAX as i64)?;
    }
    Ok(())
}

/// A binlog replica `server_id` for database `db` on `host:port`: derived from the database id
/// (stable if picked again), stepped past ids other databases on that source use and the
/// source's own id.
pub(crate) fn pick_server_id(
    tx: &dyn Tx,
    db: Uuid,
    host: &str,
    port: Option<i64>,
    source_server_id: Option<u64>,
) -> StoreResult<i64> {
    const FIRST: i64 = 100_000;
    const SPAN: i64 = 1 << 30;
    let seed = i64::from(u32::from_be_bytes(
        db.as_bytes()[..4].try_into().unwrap_or_default(),
    ));
    let mut id = FIRST + seed % SPAN;
    loop {
        if Some(id as u64) != source_server_id
            && !tx.binlog_server_id_taken(&ServerIdClaim {
                host,
                port,
                server_id: id,
                except: &[db],
            })?
        {
            return Ok(id);
        }
        id = FIRST + (id - FIRST + 1) % SPAN;
    }
}

/// Inserts a new `registered` database under `c` after the store-backed checks (name per
/// connection, binlog server id per source, plan limits). `mysqlDb` was checked by the caller.
fn insert_database(
    tx: &dyn Tx,
    customer: &Customer,
    c: &ConnectionRow,
    inst: CreateInstanceRequest,
    prefix: &str,
    region: &str,
    t: DateTime<Utc>,
) -> Result<DatabaseRow, ApiError> {
    let size = inst.instance_size.unwrap_or(InstanceSize::Nano);
    check_size(customer.plan, size)?;
    let limits = plans::limits(customer.plan);
    if let Some(max) = limits.max_databases {
        if tx.count_databases(customer.id)? >= max {
            return Err(ApiError::Forbidden(format!(
                "the {} plan allows {max} databases; delete one or ask an admin for a larger plan",
                customer.plan
            )));
        }
    }
    if tx.database_name_taken(&NameClaim {
        owner: c.id,
        name: &inst.name,
        except: None,
    })? {
        return Err(ApiError::conflict(format!(
            "{prefix}name: a database named {:?} already exists on this connection",
            inst.name
        )));
    }
    if let Some(sid) = inst.binlog_server_id {
        if tx.binlog_server_id_taken(&ServerIdClaim {
            host: &c.host,
            port: c.port,
            server_id: sid,
            except: &[],
        })? {
            return Err(binlog_conflict(sid, c));
        }
    }
    let id = Uuid::new_v4();
    let sync_mode = c.default_sync_mode();
    check_replicas_sync(inst.replicas.unwrap_or(1), sync_mode, prefix)?;
    // Binlog mode needs a replica id unique on the source: picked now, shown, kept.
    let binlog_server_id = match inst.binlog_server_id {
        None if sync_mode == SyncMode::Binlog => {
            Some(pick_server_id(tx, id, &c.host, c.port, None)?)
        }
        given => given,
    };
    let d = DatabaseRow::registered(NewDatabase {
        id,
        customer_id: customer.id,
        connection_id: c.id,
        name: inst.name,
        schema: inst.schema,
        sync_mode,
        sync_interval: c.min_sync_interval,
        instance_size: size,
        replicas: inst.replicas.unwrap_or(1),
        log_level: inst.log_level.unwrap_or(LogLevel::Info),
        region: region.to_string(),
        binlog_server_id,
        at: t,
    });
    tx.insert_database(&d)?;
    tx.insert_event(&Event {
        database_id: d.id,
        at: t,
        from_status: None,
        to_status: Status::Registered,
        cause: "user".into(),
        message: "registered".into(),
    })?;
    Ok(d)
}

fn new_management_key(
    customer: Uuid,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    t: DateTime<Utc>,
) -> (ManagementKeyRow, String) {
    let k = keys::generate("rmk");
    let record = ManagementKeyRow {
        wire: refract_api::ManagementKey {
            id: Uuid::new_v4(),
            customer_id: customer,
            name: name.to_string(),
            key_id: k.key_id,
            key: None,
            expires_at,
            created_at: t,
            last_used_at: None,
            revoked_at: None,
        },
        secret_sha256: k.secret_sha256,
    };
    (record, k.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_connection_failures_are_one_message_for_customers() {
        let failed = |e: &str| TestConnectionResult {
            ok: false,
            error: Some(e.into()),
            ..Default::default()
        };
        let report = failed;
        let generic = failed("could not connect to h:1 as a MySQL server");
        for e in [
            "cannot reach the source: h:1: Connection refused (os error 111)",
            "cannot reach the source: h:1: the server closed the connection",
            "cannot reach the source: timed out after 5 s connecting to h:1",
            "source error: Input/output error: unexpected end of file",
            "source error: bad handshake (error x)",
        ] {
            assert_eq!(
                redact_report(report(e), false, Backend::Mysql, "h:1"),
                generic,
                "{e}"
            );
            assert_eq!(
                redact_report(report(e), true, Backend::Mysql, "h:1"),
                report(e),
                "{e}"
            );
        }
        for e in [
            "the source rejected the request: Access denied for user 'u'@'h' (error 1045)",
            "source error: Unknown database 'shop' (error 1049)",
        ] {
            assert_eq!(
                redact_report(report(e), false, Backend::Mysql, "h:1"),
                report(e),
                "{e}"
            );
        }
        let pg = "source error: database \"x\" does not exist [SQLSTATE 3D000]";
        assert_eq!(
            redact_report(report(pg), false, Backend::Postgres, "h:1"),
            report(pg)
        );
        assert_eq!(
            redact_report(
                report("source error: unexpected message from server"),
                false,
                Backend::Postgres,
                "h:1"
            ),
            failed("could not connect to h:1 as a PostgreSQL server")
        );
        assert_eq!(
            redact_report(
                report("file is not a database"),
                false,
                Backend::Sqlite,
                "/r/a.db"
            )
            .error
            .as_deref(),
            Some("could not open /r/a.db as a SQLite database")
        );
        let ok = TestConnectionResult {
            ok: true,
            latency_ms: Some(1.0),
            ..Default::default()
        };
        assert_eq!(redact_report(ok.clone(), false, Backend::Mysql, "h:1"), ok);
    }
}
