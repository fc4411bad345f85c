//! Query keys (`rxk_<keyId>.<secret>`) of a database and the keys file its engines read.
//!
//! The store keeps only the SHA-256 of each secret. Every change rewrites
//! `DATA/keys/<database id>.json` (temp file, fsync, rename; mode 0600) in the engine's format
//! `{"keys": [{key_id, secret_sha256, expires_at}]}`; engines check the file every second, so a
//! new key works and a revoked one stops working within about a second, without a restart.

use std::path::PathBuf;

use chrono::SecondsFormat;
use serde_json::json;
use uuid::Uuid;

use super::engine::keys_file;
use super::reconciler::now;
use super::types::{CreateQueryKeyRequest, QueryKey};
use super::Runtime;
use crate::error::ApiError;
use crate::service::Principal;
use crate::store::lifecycle::QueryKeyRecord;
use crate::{keys, validate as v, Service};

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
    }
}

/// Writes the keys file of `database` from the store; returns its path.
pub(super) async fn write_keys_file(
    s: &Service,
    rt: &Runtime,
    database: Uuid,
) -> Result<PathBuf, ApiError> {
    let list = s
        .read(move |tx| tx.lifecycle().query_keys(database))
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
    let path = keys_file(&rt.engine_dir, database);
    let bytes = serde_json::to_vec_pretty(&json!({ "keys": keys })).unwrap_or_default();
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
    Ok(path)
}

impl Service {
    async fn refresh_keys_file(&self, database: Uuid) -> Result<(), ApiError> {
        match self.lifecycle.runtime().cloned() {
            Some(rt) => write_keys_file(self, &rt, database).await.map(|_| ()),
            None => Ok(()),
        }
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
            tx.get_database(customer, id)?
                .ok_or_else(|| ApiError::not_found("database"))?;
            tx.lifecycle().insert_query_key(&r)
        })
        .await?;
        self.refresh_keys_file(id).await?;
        Ok(view(&record, Some(k.token)))
    }

    /// `GET /v1/databases/{id}/api-keys`.
    pub async fn list_query_keys(
        &self,
        p: &Principal,
        id: Uuid,
    ) -> Result<Vec<QueryKey>, ApiError> {
        let customer = p.customer.id;
        self.read(move |tx| {
            tx.get_database(customer, id)?
                .ok_or_else(|| ApiError::not_found("database"))?;
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
    /// revokes it; running engines refuse it within about a second.
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
                tx.get_database(customer, id)?
                    .ok_or_else(|| ApiError::not_found("database"))?;
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
        self.refresh_keys_file(id).await?;
        Ok(revoked)
    }
}
