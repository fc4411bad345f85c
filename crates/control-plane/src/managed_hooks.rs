//! Wiring of the managed database servers (`refract-managed`, `/api/v1`) into the control plane:
//! the three traits that crate needs, implemented over this crate's [`Service`] — management
//! keys ([`Authenticator`]), the encrypted secret store ([`SecretVault`]) and `/v1` connections
//! ([`ConnectionRegistrar`]) — and [`open`], used by [`crate::serve`].
//!
//! The managed servers have their own metadata file (`DIR/managed.sqlite`) and their own runtime
//! driver directory (`DIR/managed/instances`), so that the engines' reconciler never sees them.

use std::sync::Arc;

use refract_managed::{
    Authenticator, ConnectionRegistrar, ManagedConfig, ManagedService, ManagedSource, Quota,
    QuotaPolicy, RegistrarError, SecretVault,
};
use refract_runtime::{BoxFuture, LocalProcessDriver};
use uuid::Uuid;

use crate::api::{Backend, CreateConnectionRequest, SslMode, SyncMode};
use crate::error::ApiError;
use crate::secrets::SecretStore;
use crate::service::{Principal, Service};

/// Where managed servers run ([`crate::ServeConfig::managed_servers`]).
#[derive(Clone, Default)]
pub enum ManagedRuntime {
    /// Local processes under `DIR/managed/instances`.
    #[default]
    Local,
    /// A platform that runs whole servers (Kubernetes).
    Platform(Arc<dyn refract_managed::ServerRuntime>),
}

impl std::fmt::Debug for ManagedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagedRuntime::Local => f.write_str("Local"),
            ManagedRuntime::Platform(r) => write!(f, "Platform({})", r.name()),
        }
    }
}

/// Opens the managed service in `data_dir` over `service`'s stores (the reconciler is started
/// by [`crate::run_with_managed`]).
pub fn open(
    data_dir: &std::path::Path,
    backup_dir: Option<std::path::PathBuf>,
    allow_plaintext: bool,
    servers: &ManagedRuntime,
    service: &Service,
) -> anyhow::Result<ManagedService> {
    let driver = Arc::new(LocalProcessDriver::new(
        data_dir.join("managed").join("instances"),
    ));
    let mut config = ManagedConfig::new(data_dir);
    config.postgres = service.postgres.as_ref().map(|pg| pg.pool());
    config.backups.dir = backup_dir;
    config.allow_plaintext = allow_plaintext;
    let managed = ManagedService::open(
        config,
        Arc::new(Vault(service.secrets.clone())),
        driver,
        Arc::new(Keys(service.clone())),
    )?;
    if let ManagedRuntime::Platform(runtime) = servers {
        managed.set_server_runtime(runtime.clone());
    }
    managed.set_registrar(Arc::new(Registrar(service.clone())));
    managed.set_quotas(Arc::new(Quotas(service.clone())));
    Ok(managed)
}

/// Managed-server quotas from the customer's plan (`crate::plans`), set by an admin with
/// `PATCH /v1/admin/customers/{id}/plan` like every other limit; admins are unlimited.
struct Quotas(Service);

impl QuotaPolicy for Quotas {
    fn quota<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Quota> {
        Box::pin(async move {
            let customer = match Uuid::parse_str(customer_id) {
                Ok(id) => self
                    .0
                    .read_store(move |tx| tx.get_customer(id))
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
            let Some(c) = customer else {
                return Quota::default_quota();
            };
            if c.is_admin {
                return Quota::unlimited();
            }
            let limits = crate::plans::limits(c.plan);
            Quota {
                max_servers: limits.managed_servers,
                max_memory_mib: limits.managed_memory_mib,
                source: format!("the {} plan", c.plan),
                how_to_raise: format!(
                    "delete or shrink a database, or ask an admin to move this customer to a larger plan \
                     (PATCH /v1/admin/customers/{}/plan)",
                    c.id
                ),
            }
        })
    }
}

/// The secret store as the managed servers' vault.
struct Vault(Arc<SecretStore>);

impl SecretVault for Vault {
    fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.0.put(name, value)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name)
    }

    fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.0.delete(name)
    }
}

/// Management keys (`rmk_…`), accepted on `/api/v1` with full access.
struct Keys(Service);

impl Authenticator for Keys {
    fn customer_for_management_key<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            self.0
                .authenticate(token)
                .await
                .ok()
                .map(|p| p.customer.id.to_string())
        })
    }
}

/// `/v1` connections over managed servers, created as the customer would with `POST /v1/connections`.
struct Registrar(Service);

impl ConnectionRegistrar for Registrar {
    fn register<'a>(
        &'a self,
        customer_id: &'a str,
        source: ManagedSource,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistrarError>> {
        Box::pin(async move {
            let id = Uuid::parse_str(customer_id)
                .map_err(|e| anyhow::anyhow!("customer id {customer_id:?}: {e}"))?;
            let customer = self
                .0
                .read(move |tx| Ok(tx.get_customer(id)?))
                .await
                .map_err(to_registrar)?
                .ok_or_else(|| anyhow::anyhow!("customer {customer_id} not found"))?;
            let principal = Principal {
                customer,
                key_record_id: Uuid::nil(),
            };
            let backend = Backend::parse(source.backend.as_str()).ok_or_else(|| {
                RegistrarError::Rejected(format!("backend {}", source.backend.as_str()))
            })?;
            let sync_mode = match &source.sync_mode {
                Some(m) => Some(SyncMode::parse(m).ok_or_else(|| {
                    RegistrarError::Rejected(format!(
                        "syncMode {m:?}: use one of {}",
                        SyncMode::ALL
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?),
                None => None,
            };
            let req = CreateConnectionRequest {
                backend: Some(backend),
                name: source.name,
                host: source.host,
                port: Some(i64::from(source.port)),
                available_schemas: Some(vec![source.database]),
                user: Some(source.user),
                password: Some(source.password),
                // Managed servers take TLS only; verified against the installation's CA.
                ssl_mode: source.root_cert.is_some().then_some(SslMode::VerifyFull),
                ssl_root_cert: source.root_cert,
                sync_mode,
                sync_interval: source.sync_interval,
                instance: None,
            };
            let created = self
                .0
                .create_connection(&principal, req)
                .await
                .map_err(to_registrar)?;
            serde_json::to_value(created).map_err(|e| RegistrarError::Internal(e.into()))
        })
    }
}

fn to_registrar(e: ApiError) -> RegistrarError {
    match e {
        ApiError::Conflict(m) | ApiError::ActionNotAllowed(m) => RegistrarError::Conflict(m),
        ApiError::Internal(e) => RegistrarError::Internal(e),
        other => RegistrarError::Rejected(other.to_string()),
    }
}
