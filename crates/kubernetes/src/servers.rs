//! Managed database servers on Kubernetes: what a managed server (`crates/managed`) becomes on a
//! cluster (pure builders), how its cluster status reads (pure), and [`ServerClient`], the IO.
//! The managed reconciler reaches it through `crate::managed::KubernetesServers` (its
//! `refract_managed::ServerRuntime`); see docs/kubernetes.md.
//!
//! - PostgreSQL: a CloudNativePG `Cluster` (`postgresql.cnpg.io/v1`; instances = the server's
//!   nodes, storage = `storage_gb`, resources from the plan), its credentials in a
//!   `kubernetes.io/basic-auth` Secret created by Refract (`bootstrap.initdb.secret`); endpoint =
//!   the `<name>-rw` Service; ready = condition `Ready`; stopped = annotation
//!   `cnpg.io/hibernation: "on"`.
//! - MySQL (the MariaDB image) and Redis: a StatefulSet of one pod (no standbys yet; its volume
//!   claim deleted with it), a headless Service, a Secret (MariaDB: `secretKeyRef` environment; Redis: its
//!   `redis.conf` with `requirepass`, mounted as a file — never a password in `args`).
//! - MongoDB: refused unless an image is configured.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::ByteString;
use refract_managed::{DbType, ServerSpec};
use refract_runtime::RuntimeError;
use serde_json::{json, Value};

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};

use crate::driver::{api_err, delete_in, is_status, upsert_in};
use crate::objects::{check_id, LABEL_MANAGED_BY};

/// Label: the managed server's id.
pub const LABEL_SERVER: &str = "refract.dev/server";
/// The CloudNativePG annotation that stops (hibernates) a cluster, keeping its volumes.
pub const CNPG_HIBERNATION: &str = "cnpg.io/hibernation";
/// The annotation CloudNativePG reads to restart a cluster's instances (rolling).
pub const CNPG_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The pod-template annotation whose change rolls a server StatefulSet's pods.
pub const ANNOTATION_RESTARTED_AT: &str = "refract.dev/restarted-at";
/// The key of a MySQL server's Secret that holds its `root` password.
pub const ROOT_PASSWORD_KEY: &str = "root-password";

/// What one managed server is on the cluster: the managed crate's [`ServerSpec`], with its `id`
/// already the object id (`crate::server_runtime::object_id`: `db_abc` → `db-abc`; object
/// names are `refract-s-<id>`), and the image for engines without an official default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    /// What the managed crate declares (its `Debug` hides the passwords).
    pub spec: ServerSpec,
    /// An image for engines without an official default (MongoDB).
    pub image: Option<String>,
}

/// The objects of one managed server.
#[derive(Debug, Clone, PartialEq)]
// Built once per server and applied at once, never held in bulk: the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ServerObjects {
    /// PostgreSQL: the credentials Secret and the CNPG `Cluster` (no k8s-openapi type: JSON).
    Cnpg {
        /// `kubernetes.io/basic-auth`.
        secret: Secret,
        /// `postgresql.cnpg.io/v1` `Cluster`.
        cluster: Value,
    },
    /// MySQL, Redis.
    StatefulSet {
        /// Credentials (MariaDB environment) or `redis.conf`.
        secret: Secret,
        /// Headless, for the pods' stable DNS names.
        service: Service,
        /// The pods and their volume claims.
        statefulset: StatefulSet,
    },
}

/// The objects' common name.
pub fn server_name(id: &str) -> String {
    format!("refract-s-{id}")
}

fn labels(id: &str) -> Value {
    json!({
        LABEL_MANAGED_BY: "refract",
        "app.kubernetes.io/component": "server",
        LABEL_SERVER: id,
    })
}

fn resources(p: &ServerSpec) -> Value {
    let q = json!({"cpu": p.vcpus.max(1).to_string(), "memory": format!("{}Mi", p.memory_mb)});
    json!({"requests": q, "limits": q})
}

/// Builds the objects of `p` in namespace `ns`.
pub fn server_objects(plan: &ServerPlan, ns: &str) -> Result<ServerObjects, RuntimeError> {
    let p = &plan.spec;
    check_id(&p.id)?;
    let name = server_name(&p.id);
    let meta = |n: &str| json!({"name": n, "namespace": ns, "labels": labels(&p.id)});
    let storage = format!("{}Gi", p.storage_gb.max(1));
    match p.db_type {
        DbType::Postgresql => {
            let secret: Secret = parse(
                &name,
                json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": meta(&format!("{name}-app")),
                    "type": "kubernetes.io/basic-auth",
                    "stringData": {"username": p.user, "password": p.password},
                }),
            )?;
            let cluster = json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Cluster",
                "metadata": meta(&name),
                "spec": {
                    "instances": p.nodes.max(1),
                    "imageName": format!("ghcr.io/cloudnative-pg/postgresql:{}", p.version),
                    "storage": {"size": storage},
                    "resources": resources(p),
                    // TLS only, as on the local runtime: CloudNativePG serves TLS with its own
                    // CA, but its default rule (`host all all all scram-sha-256`) would also
                    // take plain text; user rules come before it.
                    "postgresql": {"pg_hba": ["hostnossl all all all reject"]},
                    "bootstrap": {"initdb": {
                        "database": p.database,
                        "owner": p.user,
                        "secret": {"name": format!("{name}-app")},
                    }},
                },
            });
            Ok(ServerObjects::Cnpg { secret, cluster })
        }
        DbType::Mysql | DbType::Redis | DbType::Mongodb => {
            let (image, port, container) = match p.db_type {
                DbType::Mysql => (
                    format!("mariadb:{}", p.version),
                    3306,
                    json!({
                        "env": [
                            {"name": "MARIADB_DATABASE", "value": p.database},
                            {"name": "MARIADB_USER", "value": p.user},
                            {"name": "MARIADB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
                            {"name": "MARIADB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": ROOT_PASSWORD_KEY}}},
                        ],
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}],
                    }),
                ),
                DbType::Redis => (
                    format!("redis:{}", p.version),
                    6379,
                    json!({
                        "args": ["/etc/redis/redis.conf"],
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "config", "mountPath": "/etc/redis", "readOnly": true},
                        ],
                    }),
                ),
                _ => {
                    let Some(image) = plan.image.clone() else {
                        return Err(RuntimeError::Api(
                            "MongoDB on Kubernetes needs an image configured (no official default is assumed)"
                                .into(),
                        ));
                    };
                    (
                        image,
                        27017,
                        json!({
                            "env": [
                                {"name": "MONGO_INITDB_ROOT_USERNAME", "value": p.user},
                                {"name": "MONGO_INITDB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
                            ],
                            "volumeMounts": [{"name": "data", "mountPath": "/data/db"}],
                        }),
                    )
                }
            };
            let mut data = BTreeMap::new();
            data.insert(
                "password".to_string(),
                ByteString(p.password.clone().into_bytes()),
            );
            if p.db_type == DbType::Mysql {
                if p.admin_password.is_empty() {
                    return Err(RuntimeError::Api(format!(
                        "build {name}: a MySQL server needs its root password (admin_password)"
                    )));
                }
                data.insert(
                    ROOT_PASSWORD_KEY.to_string(),
                    ByteString(p.admin_password.clone().into_bytes()),
                );
            }
            if p.db_type == DbType::Redis {
                let conf = format!(
                    "requirepass {}\nappendonly yes\nmaxmemory {}mb\n",
                    p.password,
                    p.memory_mb * 3 / 4
                );
                data.insert("redis.conf".to_string(), ByteString(conf.into_bytes()));
            }
            let mut secret: Secret = parse(
                &name,
                json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": meta(&name), "type": "Opaque",
                }),
            )?;
            secret.data = Some(data);
            let service: Service = parse(
                &name,
                json!({
                    "apiVersion": "v1", "kind": "Service", "metadata": meta(&name),
                    "spec": {
                        "clusterIP": "None",
                        "selector": {LABEL_SERVER: p.id},
                        "ports": [{"name": "db", "port": port, "targetPort": "db"}],
                    },
                }),
            )?;
            let mut c = json!({
                "name": "server",
                "image": image,
                "ports": [{"name": "db", "containerPort": port}],
                "resources": resources(p),
                "readinessProbe": {"tcpSocket": {"port": "db"}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": "db"}, "initialDelaySeconds": 30, "periodSeconds": 10},
            });
            for (k, v) in container.as_object().into_iter().flatten() {
                c[k] = v.clone();
            }
            let mut volumes = vec![];
            if p.db_type == DbType::Redis {
                volumes.push(json!({"name": "config", "secret": {
                    "secretName": name, "items": [{"key": "redis.conf", "path": "redis.conf"}]}}));
            }
            let statefulset: StatefulSet = parse(
                &name,
                json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(&name),
                    "spec": {
                        "serviceName": name,
                        // One server: standbys (replication between pods) are not built for
                        // these engines on Kubernetes; `nodes` counts for CNPG only.
                        "replicas": 1,
                        "selector": {"matchLabels": {LABEL_SERVER: p.id}},
                        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                        "template": {
                            "metadata": {"labels": labels(&p.id)},
                            "spec": {
                                "automountServiceAccountToken": false,
                                "containers": [c],
                                "volumes": volumes,
                            },
                        },
                        "volumeClaimTemplates": [{
                            "metadata": {"name": "data", "labels": labels(&p.id)},
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": storage}},
                            },
                        }],
                    },
                }),
            )?;
            Ok(ServerObjects::StatefulSet {
                secret,
                service,
                statefulset,
            })
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, RuntimeError> {
    serde_json::from_value(v).map_err(|e| RuntimeError::Api(format!("build {name}: {e}")))
}

/// Where clients reach the server (`host:port`): the CNPG `-rw` Service, or the first pod of the
/// StatefulSet through its headless Service.
pub fn server_endpoint(p: &ServerPlan, ns: &str) -> String {
    endpoint_of(&p.spec.id, p.spec.db_type, ns)
}

/// [`server_endpoint`] of server `id`.
pub fn endpoint_of(id: &str, engine: DbType, ns: &str) -> String {
    let name = server_name(id);
    match engine {
        DbType::Postgresql => format!("{name}-rw.{ns}.svc:5432"),
        DbType::Mysql => format!("{name}-0.{name}.{ns}.svc:3306"),
        DbType::Redis => format!("{name}-0.{name}.{ns}.svc:6379"),
        DbType::Mongodb => format!("{name}-0.{name}.{ns}.svc:27017"),
    }
}

/// The merge patch that stops a server (volumes kept): CNPG hibernation, or 0 replicas.
pub fn stop_patch(engine: DbType) -> Value {
    match engine {
        DbType::Postgresql => json!({"metadata": {"annotations": {CNPG_HIBERNATION: "on"}}}),
        _ => json!({"spec": {"replicas": 0}}),
    }
}

/// What a managed server's cluster objects say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Not ready yet (`ready` of `nodes`).
    Provisioning {
        /// Nodes ready.
        ready: u32,
    },
    /// Every node ready.
    Ready,
    /// Stopped on purpose (hibernated, 0 replicas).
    Stopped,
    /// The operator reports a failure.
    Failed(String),
}

/// The state of a CNPG `Cluster` object (JSON as read from the API).
pub fn cnpg_state(cluster: &Value) -> ServerState {
    if cluster["metadata"]["annotations"][CNPG_HIBERNATION] == "on" {
        return ServerState::Stopped;
    }
    let instances = cluster["spec"]["instances"].as_u64().unwrap_or(1) as u32;
    let ready = cluster["status"]["readyInstances"].as_u64().unwrap_or(0) as u32;
    let conditions = cluster["status"]["conditions"].as_array();
    let cond = |t: &str| conditions.and_then(|c| c.iter().find(|c| c["type"] == t));
    if let Some(c) = cond("Ready") {
        if c["status"] == "True" && ready >= instances {
            return ServerState::Ready;
        }
    }
    let phase = cluster["status"]["phase"].as_str().unwrap_or("");
    if phase.to_ascii_lowercase().contains("fail") || phase.contains("unrecoverable") {
        let why = cluster["status"]["phaseReason"].as_str().unwrap_or(phase);
        return ServerState::Failed(why.to_string());
    }
    ServerState::Provisioning { ready }
}

/// The state of a server's StatefulSet and its pods: a pod that is stuck failing
/// (CrashLoopBackOff, an image pull error, a terminated container) makes it `Failed` with the
/// pods' reasons, whatever the StatefulSet's counts say.
pub fn server_pods_state(s: &StatefulSet, pods: &[Pod]) -> ServerState {
    let state = statefulset_state(s);
    if state == ServerState::Ready || state == ServerState::Stopped {
        return state;
    }
    let problems: Vec<String> = pods
        .iter()
        .filter(|p| crate::status::failed(p).is_some())
        .flat_map(crate::status::pod_problems)
        .collect();
    if problems.is_empty() {
        state
    } else {
        ServerState::Failed(problems.join("; "))
    }
}

/// The state of a server's StatefulSet.
pub fn statefulset_state(s: &StatefulSet) -> ServerState {
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if want == 0 {
        return ServerState::Stopped;
    }
    let ready = s
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready >= want {
        ServerState::Ready
    } else {
        ServerState::Provisioning {
            ready: ready.max(0) as u32,
        }
    }
}

/// Applies, observes, stops, restarts and deletes managed servers' objects through a
/// `kube::Client` (the IO half of this module).
#[derive(Clone)]
pub struct ServerClient {
    client: kube::Client,
    namespace: String,
}

/// A 404 on `clusters` means the cluster has no CloudNativePG: say so.
fn cnpg_hint(e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Api(m) if m.contains("could not find the requested resource") => {
            RuntimeError::Api(format!(
                "{m} — the API server has no postgresql.cnpg.io/v1 clusters: install CloudNativePG for managed PostgreSQL (docs/kubernetes.md, \"Prerequisites\")"
            ))
        }
        e => e,
    }
}

fn cnpg_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    )
}

impl ServerClient {
    /// A client of `namespace`.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        ServerClient {
            client,
            namespace: namespace.into(),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &cnpg_resource())
    }

    /// Creates or replaces the server's objects (which also undoes a stop).
    /// The last restart's annotation is carried over, so that applying again (a new plan, a
    /// control-plane start) does not restart the server once more.
    pub async fn apply(&self, p: &ServerPlan) -> Result<(), RuntimeError> {
        let name = server_name(&p.spec.id);
        match server_objects(p, &self.namespace)? {
            ServerObjects::Cnpg {
                secret,
                mut cluster,
            } => {
                upsert_in(&self.api::<Secret>(), &secret, "Secret").await?;
                let old = self
                    .clusters()
                    .get_opt(&name)
                    .await
                    .map_err(api_err("read", &format!("Cluster {name}")))?;
                if let Some(at) =
                    old.and_then(|c| c.metadata.annotations?.remove(CNPG_RESTARTED_AT))
                {
                    cluster["metadata"]["annotations"] = json!({CNPG_RESTARTED_AT: at});
                }
                let obj: DynamicObject = parse(&name, cluster)?;
                upsert_in(&self.clusters(), &obj, "Cluster")
                    .await
                    .map_err(cnpg_hint)?;
            }
            ServerObjects::StatefulSet {
                secret,
                service,
                mut statefulset,
            } => {
                upsert_in(&self.api::<Secret>(), &secret, "Secret").await?;
                upsert_in(&self.api::<Service>(), &service, "Service").await?;
                let old = self
                    .api::<StatefulSet>()
                    .get_opt(&name)
                    .await
                    .map_err(api_err("read", &format!("StatefulSet {name}")))?;
                let restarted = old.and_then(|s| {
                    s.spec?
                        .template
                        .metadata?
                        .annotations?
                        .remove(ANNOTATION_RESTARTED_AT)
                });
                if let (Some(at), Some(spec)) = (restarted, statefulset.spec.as_mut()) {
                    spec.template
                        .metadata
                        .get_or_insert_with(Default::default)
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(ANNOTATION_RESTARTED_AT.to_string(), at);
                }
                upsert_in(&self.api::<StatefulSet>(), &statefulset, "StatefulSet").await?;
            }
        }
        Ok(())
    }

    /// The server's state; `None` when it has no objects.
    pub async fn state(
        &self,
        id: &str,
        engine: DbType,
    ) -> Result<Option<ServerState>, RuntimeError> {
        let name = server_name(id);
        if engine == DbType::Postgresql {
            let c = self
                .clusters()
                .get_opt(&name)
                .await
                .map_err(api_err("read", &format!("Cluster {name}")))?;
            return Ok(c.map(|c| cnpg_state(&serde_json::to_value(c).unwrap_or_default())));
        }
        let Some(s) = self
            .api::<StatefulSet>()
            .get_opt(&name)
            .await
            .map_err(api_err("read", &format!("StatefulSet {name}")))?
        else {
            return Ok(None);
        };
        if matches!(
            statefulset_state(&s),
            ServerState::Ready | ServerState::Stopped
        ) {
            return Ok(Some(statefulset_state(&s)));
        }
        // Not ready: its pods say whether it is starting or failing, and why.
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("{LABEL_SERVER}={id}")))
            .await
            .map_err(api_err("list", &format!("the pods of {name}")))?;
        Ok(Some(server_pods_state(&s, &pods.items)))
    }

    /// Restarts the server's processes in place: CloudNativePG's rolling restart (the
    /// `kubectl.kubernetes.io/restartedAt` annotation on the Cluster, as `kubectl cnpg restart`
    /// sets it), or a new pod-template annotation that makes the StatefulSet controller roll
    /// its pods.
    pub async fn restart(&self, id: &str, engine: DbType) -> Result<(), RuntimeError> {
        let name = server_name(id);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let pp = PatchParams::default();
        let done = if engine == DbType::Postgresql {
            let patch = json!({"metadata": {"annotations": {CNPG_RESTARTED_AT: now}}});
            self.clusters()
                .patch(&name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        } else {
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: now}}}}});
            self.api::<StatefulSet>()
                .patch(&name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        done.map_err(api_err("restart", &name))
    }

    /// Stops the server, keeping its volumes ([`stop_patch`]).
    pub async fn stop(&self, id: &str, engine: DbType) -> Result<(), RuntimeError> {
        let name = server_name(id);
        let patch = stop_patch(engine);
        let pp = PatchParams::default();
        let done = if engine == DbType::Postgresql {
            self.clusters()
                .patch(&name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        } else {
            self.api::<StatefulSet>()
                .patch(&name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        match done {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_err("stop", &name)(e)),
        }
    }

    /// Deletes everything of the server, its volume claims included.
    pub async fn delete(&self, id: &str, engine: DbType) -> Result<(), RuntimeError> {
        let name = server_name(id);
        if engine == DbType::Postgresql {
            delete_in(&self.clusters(), &name, "Cluster").await?;
            delete_in(&self.api::<Secret>(), &format!("{name}-app"), "Secret").await?;
        } else {
            delete_in(&self.api::<StatefulSet>(), &name, "StatefulSet").await?;
            delete_in(&self.api::<Service>(), &name, "Service").await?;
            delete_in(&self.api::<Secret>(), &name, "Secret").await?;
        }
        // Claims of the StatefulSet's template carry its labels; CloudNativePG labels its own
        // with `cnpg.io/cluster`.
        let pvcs = self.api::<PersistentVolumeClaim>();
        for selector in [
            format!("{LABEL_SERVER}={id}"),
            format!("cnpg.io/cluster={name}"),
        ] {
            let list = pvcs
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(api_err("list", &format!("the volume claims of {name}")))?;
            for c in list.items {
                if let Some(n) = c.metadata.name.as_deref() {
                    delete_in(&pvcs, n, "PersistentVolumeClaim").await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(status: Value, annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations}, "spec": {"instances": 2}, "status": status})
    }

    #[test]
    fn cnpg_states() {
        let ready = json!({"type": "Ready", "status": "True"});
        let cases = [
            (
                "new",
                cluster(json!({}), json!({})),
                ServerState::Provisioning { ready: 0 },
            ),
            (
                "1 of 2",
                cluster(
                    json!({"readyInstances": 1, "conditions": [{"type": "Ready", "status": "False"}]}),
                    json!({}),
                ),
                ServerState::Provisioning { ready: 1 },
            ),
            (
                "ready",
                cluster(
                    json!({"readyInstances": 2, "conditions": [ready]}),
                    json!({}),
                ),
                ServerState::Ready,
            ),
            (
                "hibernated",
                cluster(
                    json!({"readyInstances": 0}),
                    json!({CNPG_HIBERNATION: "on"}),
                ),
                ServerState::Stopped,
            ),
            (
                "failed",
                cluster(
                    json!({"phase": "Failed", "phaseReason": "no storage"}),
                    json!({}),
                ),
                ServerState::Failed("no storage".into()),
            ),
        ];
        for (what, c, want) in cases {
            assert_eq!(cnpg_state(&c), want, "{what}");
        }
    }

    #[test]
    fn statefulset_states() {
        let s = |replicas: i32, ready: i32| -> StatefulSet {
            serde_json::from_value(json!({
                "spec": {"replicas": replicas, "selector": {}, "serviceName": "x", "template": {}},
                "status": {"replicas": replicas, "readyReplicas": ready},
            }))
            .unwrap()
        };
        assert_eq!(
            statefulset_state(&s(1, 0)),
            ServerState::Provisioning { ready: 0 }
        );
        assert_eq!(statefulset_state(&s(1, 1)), ServerState::Ready);
        assert_eq!(statefulset_state(&s(0, 0)), ServerState::Stopped);
        assert_eq!(stop_patch(DbType::Mysql)["spec"]["replicas"], 0);
        assert_eq!(
            stop_patch(DbType::Postgresql)["metadata"]["annotations"][CNPG_HIBERNATION],
            "on"
        );
    }
}
