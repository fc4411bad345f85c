//! Query keys (`rxk_<keyId>.<secret>`) of a database and the keys file its engines read.
//!
//! The store keeps only the SHA-256 of each secret. Every change rewrites
//! `DATA/keys/<database id>.json` (temp file, fsync, rename; mode 0600) in the engine's format
//! `{"keys": [{key_id, secret_sha256, expires_at}]}`. Then every running engine of the database
//! is told to re-read it (`POST /admin/keys/reload`, bounded by [`ACK_TIMEOUT`] in all), so a new
//! key works and a revoked one stops before the create/revoke call answers; the answer says
//! whether every engine acknowledged (`effective`). Engines also check the file every second,
//! which covers an engine that missed the call.

use std::time::Duration;

use std::path::PathBuf;

use chrono::SecondsFormat;
use serde_json::json;
use uuid::Uuid;

use super::bookkeeping::{admin_token, now};
use super::engine::keys_file;
use super::state::Runtime;
use super::types::{CreateQueryKeyRequest, QueryKey};
use crate::error::ApiError;
use crate::service::{customer_database, Principal};
use crate::store::lifecycle::QueryKeyRecord;
use crate::{keys, validate as v, Service};
use refract_runtime::InstanceStatus;

/// The name of the keys file where the runtime stores it (see [`write_keys_file`]).
const KEYS_FILE_NAME: &str = "keys.json";

/// How long a key change waits for the engines' acknowledgement, in all.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

fn view(k: &QueryKeyRecord, token: Option<String>) -> QueryKey {
    QueryKey {
        id: k.id,
        database_id: k.database_id,
        name: k.name.clone(),
        key_id: k.key_id.clone(),
        key: token,
        expires_at: k.expires_at,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
        effective: None,
        effective_reason: None,
    }
}

/// Writes the keys file of `database` from the store; returns its path, and whether the runtime
/// stores it (then it reaches running engines on the runtime's schedule, not at once).
pub(super) async fn write_keys_file(
    s: &Service,
    rt: &Runtime,
    database: Uuid,
) -> Result<(PathBuf, bool), ApiError> {
    // One writer at a time: each write reads the store after its caller's change, so a later
    // write never drops a key an earlier one added (nor brings back one it revoked).
    let _serial = s.lifecycle.keys_lock().await;
    let list = s
        .read_store(move |tx| tx.lifecycle().query_keys(database))
        .await?;
    let keys: Vec<serde_json::Value> = list
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| {
            json!({
                "key_id": k.key_id,
                "secret_sha256": k.secret_sha256,
                "expires_at": k.expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            })
        })
        .collect();
    let bytes = serde_json::to_vec_pretty(&json!({ "keys": keys })).unwrap_or_default();
    // A runtime that keeps a database's shared files itself (Kubernetes: a Secret its pods
    // mount) stores it; the local runtime leaves the file to us.
    let shared = refract_runtime::SpecFile::new(KEYS_FILE_NAME, bytes.clone());
    let stored = rt
        .driver
        .put_group_file(&database.to_string(), &shared)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("store the query keys file: {e}")))?;
    if let Some(at) = stored {
        return Ok((PathBuf::from(at), true));
    }
    let path = keys_file(&rt.engine_dir, database);
    let p = path.clone();
    let user = rt.engine_user.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
            // The engines' user owns the directory and the file (0700/0600): they read it.
            refract_runtime::user::create_owned_dir(dir, &user)?;
        }
        crate::secrets::write_private_as(&p, &bytes, user.owner())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("keys file task: {e}")))?
    .map_err(ApiError::Internal)?;
    Ok((path, false))
}

/// The control addresses of the running engines of `database`: its live instances and the
/// engine an operation is starting (which serves after its cutover).
async fn engine_targets(
    s: &Service,
    rt: &Runtime,
    database: Uuid,
) -> Result<Vec<String>, ApiError> {
    let (live, ops) = s
        .read(move |tx| {
            Ok((
                tx.lifecycle().live_instances(Some(database))?,
                tx.lifecycle().ops(database)?,
            ))
        })
        .await?;
    let mut ids: Vec<String> = live.iter().map(|i| i.runtime_id.clone()).collect();
    if let Some(new) = ops.op.and_then(|op| op.new_instance) {
        ids.push(new.to_string());
    }
    let mut out = Vec::new();
    for id in ids {
        // What the driver reports now: an engine still starting re-reads the file right before
        // it accepts its first client (after this write), a crashed one has nothing to
        // acknowledge.
        if let Ok(InstanceStatus::Running { endpoint }) = rt.driver.status(&id).await {
            if !out.contains(&endpoint) {
                out.push(endpoint);
            }
        }
    }
    Ok(out)
}

/// Tells every running engine of `database` to re-read its keys file now; `Err(reason)` when
/// one did not acknowledge within [`ACK_TIMEOUT`].
async fn push_keys(s: &Service, rt: &Runtime, database: Uuid) -> Result<(), String> {
    let work = async {
        let targets = engine_targets(s, rt, database)
            .await
            .map_err(|e| format!("cannot list the database's engines: {e}"))?;
        if targets.is_empty() {
            return Ok(());
        }
        let token = admin_token(s, database)
            .map_err(|e| format!("no admin token for the engines: {e:#}"))?;
        for endpoint in targets {
            s.lifecycle
                .engine()
                .admin(&endpoint, &token, "keys/reload", ACK_TIMEOUT)
                .await
                .map_err(|e| format!("an engine did not confirm: {e:#}"))?;
        }
        Ok(())
    };
    match tokio::time::timeout(ACK_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "an engine did not confirm within {} s",
            ACK_TIMEOUT.as_secs()
        )),
    }
}

impl Service {
    /// Writes the keys file and pushes it to the running engines; what to say in `effective`.
    async fn refresh_keys_file(&self, database: Uuid) -> Result<(bool, Option<String>), ApiError> {
        let Some(rt) = self.lifecycle.runtime().cloned() else {
            return Ok((true, None));
        };
        let (_, by_runtime) = write_keys_file(self, &rt, database).await?;
        let pushed = push_keys(self, &rt, database).await;
        if by_runtime {
            // The engines' file changes when the runtime delivers it (Kubernetes: the kubelet's
            // next sync of the Secret volume); a reload before that reads the old file.
            return Ok((
                false,
                Some(
                    "the runtime delivers the keys file to running engines on its own schedule (Kubernetes: the kubelet's next sync of the keys Secret, up to about a minute); engines re-read it then"
                        .into(),
                ),
            ));
        }
        Ok(match pushed {
            Ok(()) => (true, None),
            Err(reason) => {
                tracing::warn!(%database, %reason, "query keys change not confirmed by every engine");
                (
                    false,
                    Some(format!(
                        "{reason}; running engines pick the change up from their keys file within about a second"
                    )),
                )
            }
        })
    }

    /// `POST /v1/databases/{id}/api-keys`: the key is in this answer only.
    pub async fn create_query_key(
        &self,
        p: &Principal,
        id: Uuid,
        req: CreateQueryKeyRequest,
    ) -> Result<QueryKey, ApiError> {
        v::name("name", &req.name)?;
        let t = now();
        if req.expires_at.is_some_and(|e| e <= t) {
            return Err(ApiError::unprocessable("expiresAt must be in the future"));
        }
        let customer = p.customer.id;
        let k = keys::generate("rxk");
        let record = QueryKeyRecord {
            id: Uuid::new_v4(),
            database_id: id,
            key_id: k.key_id,
            secret_sha256: k.secret_sha256,
            name: req.name,
            expires_at: req.expires_at,
            created_at: t,
            revoked_at: None,
        };
        let r = record.clone();
        self.write(move |tx| {
            customer_database(tx, customer, id)?;
            tx.lifecycle().insert_query_key(&r)?;
            Ok(())
        })
        .await?;
        let (effective, reason) = self.refresh_keys_file(id).await?;
        let mut out = view(&record, Some(k.token));
        out.effective = Some(effective);
        out.effective_reason = reason;
        Ok(out)
    }

    /// `GET /v1/databases/{id}/api-keys`.
    pub async fn list_query_keys(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<Vec<QueryKey>, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| {
            customer_database(tx, customer, id)?;
            Ok(tx
                .lifecycle()
                .query_keys(id)?
                .iter()
                .map(|k| view(k, None))
                .collect())
        })
        .await
    }

    /// `DELETE /v1/databases/{id}/api-keys/{keyId}` (the public key id or the record id):
    /// revokes it; running engines refuse it before this answers (see `effective`).
    pub async fn revoke_query_key(
        &self,
        p: &Principal,
        id: Uuid,
        key: &str,
    ) -> Result<QueryKey, ApiError> {
        let customer = p.customer.id;
        let key = key.to_string();
        let revoked = self
            .write(move |tx| {
                customer_database(tx, customer, id)?;
                let found = tx
                    .lifecycle()
                    .query_keys(id)?
                    .into_iter()
                    .find(|k| k.key_id == key || k.id.to_string() == key)
                    .ok_or_else(|| ApiError::not_found("query key"))?;
                tx.lifecycle().revoke_query_key(found.id, now())?;
                let again = tx
                    .lifecycle()
                    .query_keys(id)?
                    .into_iter()
                    .find(|k| k.id == found.id)
                    .unwrap_or(found);
                Ok(view(&again, None))
            })
            .await?;
        let (effective, reason) = self.refresh_keys_file(id).await?;
        let mut revoked = revoked;
        revoked.effective = Some(effective);
        revoked.effective_reason = reason;
        Ok(revoked)
    }
}
