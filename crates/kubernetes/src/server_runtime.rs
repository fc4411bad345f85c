//! [`KubernetesServers`]: the managed crate's [`ServerRuntime`] on a cluster, over
//! [`ServerClient`] — PostgreSQL as a CloudNativePG `Cluster`, MySQL (the MariaDB image) and
//! Redis as StatefulSets (`crate::servers`). Chosen by `refract serve --runtime kubernetes`.

use refract_managed::{DbType, Endpoint, ServerRuntime, ServerSpec, ServerState};
use refract_runtime::BoxFuture;

use crate::servers::{self, ServerClient, ServerPlan};

/// Managed servers as cluster objects in one namespace.
#[derive(Clone)]
pub struct KubernetesServers {
    client: ServerClient,
    namespace: String,
}

impl KubernetesServers {
    /// Servers in `namespace` through `client` (the engines' driver's client, or a test double's).
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        KubernetesServers {
            client: ServerClient::new(client, namespace.clone()),
            namespace,
        }
    }
}

/// The id of a managed database in object names and labels: `db_abc` → `db-abc` (a DNS label
/// has no `_`; managed ids are `db_` and lowercase letters and digits, so this is one-to-one).
pub fn object_id(id: &str) -> String {
    id.replace('_', "-")
}

fn plan(s: &ServerSpec) -> ServerPlan {
    ServerPlan {
        spec: ServerSpec {
            id: object_id(&s.id),
            ..s.clone()
        },
        image: None,
    }
}

impl ServerRuntime for KubernetesServers {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn apply<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.client.apply(&plan(spec)).await?) })
    }

    fn state<'a>(
        &'a self,
        id: &'a str,
        db_type: DbType,
    ) -> BoxFuture<'a, anyhow::Result<Option<ServerState>>> {
        Box::pin(async move {
            let state = self.client.state(&object_id(id), db_type).await?;
            Ok(state.map(|s| match s {
                servers::ServerState::Provisioning { ready } => ServerState::NotReady { ready },
                servers::ServerState::Ready => ServerState::Ready,
                servers::ServerState::Stopped => ServerState::Stopped,
                servers::ServerState::Failed(why) => ServerState::Failed(why),
            }))
        })
    }

    fn stop<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.client.stop(&object_id(id), db_type).await?) })
    }

    fn restart<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.client.restart(&object_id(id), db_type).await?) })
    }

    fn delete<'a>(&'a self, id: &'a str, db_type: DbType) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(self.client.delete(&object_id(id), db_type).await?) })
    }

    fn endpoint(&self, id: &str, db_type: DbType) -> Endpoint {
        let at = servers::endpoint_of(&object_id(id), db_type, &self.namespace);
        let (host, port) = at.rsplit_once(':').unwrap_or((&at, "0"));
        Endpoint {
            host: host.to_string(),
            port: port.parse().unwrap_or(0),
            // CloudNativePG serves TLS with its own CA; the StatefulSet servers serve none yet.
            tls: db_type == DbType::Postgresql,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_and_object_ids() {
        assert_eq!(object_id("db_abc123"), "db-abc123");
        let client = kube::Client::new(crate::FakeApiServer::new().router(), "ns");
        let s = KubernetesServers::new(client, "ns");
        let e = s.endpoint("db_abc", DbType::Postgresql);
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("refract-s-db-abc-rw.ns.svc", 5432, true)
        );
        let e = s.endpoint("db_abc", DbType::Redis);
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("refract-s-db-abc-0.refract-s-db-abc.ns.svc", 6379, false)
        );
    }
}
