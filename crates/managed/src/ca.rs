//! `GET /api/v1/databases/{id}/ca`: the installation's CA certificate, which verifies every
//! managed server's certificate (`sslmode=verify-full sslrootcert=ca.pem`).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use crate::api::{DbType, ErrorBody};
use crate::error::ManagedError;
use crate::service::{Caller, ManagedService};

/// The answer of `GET /api/v1/databases/{id}/ca`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaCertificate {
    /// The CA certificate, PEM text (`-----BEGIN CERTIFICATE-----` …); save it as `ca.pem`.
    pub certificate: String,
}

impl ManagedService {
    /// The installation's CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// A client TLS configuration that verifies managed servers (for embedding and tests).
    pub fn client_tls(&self) -> crate::tls::PgTls {
        crate::tls::PgTls(self.inner.ca.client_config())
    }

    /// The CA certificate that verifies database `id`'s servers.
    pub async fn ca_certificate(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CaCertificate, ManagedError> {
        if !caller.access.read {
            return Err(ManagedError::Forbidden(format!(
                "this token lacks the {} scope",
                crate::tokens::SCOPE_READ
            )));
        }
        let d = self.owned(caller, id).await?;
        // CloudNativePG issues its servers' certificates from its own CA (in the cluster's
        // `<cluster>-ca` Secret), not Refract's; the StatefulSet servers serve no TLS.
        self.refuse_on_platform("Refract's CA certificate for managed servers")?;
        if d.db_type == DbType::Mongodb {
            return Err(ManagedError::Unprocessable(
                "mongodb servers serve no TLS on the local runtime, so they have no CA certificate"
                    .into(),
            ));
        }
        Ok(CaCertificate {
            certificate: self.inner.ca.cert_pem().to_string(),
        })
    }
}

#[utoipa::path(get, path = "/api/v1/databases/{id}/ca", tag = "managed", params(("id" = String, Path, description = "Database id (`db_…`)")), security(("bearer" = [])), responses((status = 200, body = CaCertificate), (status = 403, body = ErrorBody, description = "the token lacks the scope the route needs"), (status = 422, body = ErrorBody, description = "the engine serves no TLS (mongodb), or servers run on Kubernetes (CloudNativePG has its own CA)")))]
pub(crate) async fn get_ca(
    State(s): State<ManagedService>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaCertificate>, ManagedError> {
    Ok(Json(s.ca_certificate(&caller, &id).await?))
}
