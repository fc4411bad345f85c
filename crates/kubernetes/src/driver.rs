//! [`KubernetesDriver`]: the [`Driver`] of engines as Deployments, through a `kube::Client`.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::Resource;
use refract_runtime::{
    BoxFuture, Driver, InstanceHandle, InstanceSpec, InstanceStatus, Network, RuntimeError,
    SpecFile,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::objects::{self, Settings, ANNOTATION_STOPPED_AT, KEYS_DIR, LABEL_INSTANCE};
use crate::status;

/// Runs engines on a Kubernetes cluster: one Deployment per instance (with `replicas` pods), its
/// config in a ConfigMap, its secrets and environment in a Secret, a Service per group (database)
/// over the ready pods of its instances, the group's query keys in a Secret of their own.
///
/// Its truth lives in the cluster: after a control-plane restart every method reads the objects
/// again (nothing is kept in the driver object).
#[derive(Clone)]
pub struct KubernetesDriver {
    client: kube::Client,
    settings: Settings,
}

/// Creates `obj` in `api`, or replaces the one of its name (keeping its resourceVersion, so a
/// concurrent writer makes this fail with 409 rather than be overwritten, and its uid and owners).
/// `kind` names it in errors.
pub(crate) async fn upsert_in<K>(api: &Api<K>, obj: &K, kind: &str) -> Result<K, RuntimeError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let what = format!("{kind} {name}");
    match api.get_opt(&name).await.map_err(api_err("read", &what))? {
        None => api
            .create(&PostParams::default(), obj)
            .await
            .map_err(api_err("create", &what)),
        Some(old) => {
            let mut new = obj.clone();
            new.meta_mut().resource_version = old.meta().resource_version.clone();
            new.meta_mut().uid = old.meta().uid.clone();
            if new.meta().owner_references.is_none() {
                new.meta_mut().owner_references = old.meta().owner_references.clone();
            }
            api.replace(&name, &PostParams::default(), &new)
                .await
                .map_err(api_err("replace", &what))
        }
    }
}

/// Deletes `name` from `api` (in the background); an absent object is not an error.
pub(crate) async fn delete_in<K>(api: &Api<K>, name: &str, kind: &str) -> Result<(), RuntimeError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_err("delete", &format!("{kind} {name}"))(e)),
    }
}

pub(crate) fn api_err(action: &str, what: &str) -> impl FnOnce(kube::Error) -> RuntimeError {
    let text = format!("{action} {what}");
    move |e| RuntimeError::Api(format!("cannot {text}: {e}"))
}

pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubernetesDriver {
    /// A driver over `client` (in-cluster config, `KUBECONFIG`, or a test double's router).
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        KubernetesDriver { client, settings }
    }

    /// Connects with the standard configuration (in-cluster service account, else `KUBECONFIG` /
    /// `~/.kube/config`), in `namespace` or else the configuration's own (the kubeconfig
    /// context's, or the service account's), running engines from `image`.
    pub async fn connect(namespace: Option<String>, image: String) -> Result<Self, RuntimeError> {
        let config = kube::Config::infer().await.map_err(|e| {
            RuntimeError::Api(format!(
                "cannot configure a Kubernetes client (in-cluster service account or KUBECONFIG): {e}"
            ))
        })?;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| RuntimeError::Api(format!("cannot create a Kubernetes client: {e}")))?;
        Ok(Self::new(client, Settings::new(namespace, image)))
    }

    /// Its client (shared with [`crate::KubernetesServers`], the managed servers' runtime).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The settings objects are built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changes the settings (ports, grace) before the driver is used.
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    async fn upsert<K>(&self, obj: &K) -> Result<K, RuntimeError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let what = K::kind(&Default::default()).to_string();
        upsert_in(&self.api(), obj, &what).await
    }

    async fn delete<K>(&self, name: &str) -> Result<(), RuntimeError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let what = K::kind(&Default::default()).to_string();
        delete_in(&self.api::<K>(), name, &what).await
    }

    async fn observe(&self, id: &str) -> Result<(Option<Deployment>, Vec<Pod>), RuntimeError> {
        let name = objects::instance_name(id);
        let d = self
            .api::<Deployment>()
            .get_opt(&name)
            .await
            .map_err(api_err("read", &format!("Deployment {name}")))?;
        if d.is_none() {
            return Ok((None, Vec::new()));
        }
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&objects::instance_selector(id)))
            .await
            .map_err(api_err("list", &format!("the pods of {name}")))?;
        Ok((d, pods.items))
    }

    /// Container logs of every pod (the previous container's too after a restart), then the
    /// pods' problems and the events of the instance's objects: the last `tail` lines.
    async fn logs_of(&self, id: &str, tail: usize) -> Result<String, RuntimeError> {
        objects::check_id(id)?;
        let (_, pods) = self.observe(id).await?;
        let name = objects::instance_name(id);
        let pods_api = self.api::<Pod>();
        let mut lines: Vec<String> = Vec::new();
        for p in &pods {
            let pname = p.metadata.name.clone().unwrap_or_default();
            let restarted = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.restart_count > 0));
            for previous in [true, false] {
                if previous && !restarted {
                    continue;
                }
                let lp = LogParams {
                    container: Some("engine".into()),
                    tail_lines: Some(tail as i64),
                    previous,
                    ..Default::default()
                };
                if let Ok(text) = pods_api.logs(&pname, &lp).await {
                    lines.extend(text.lines().map(str::to_string));
                }
            }
            lines.extend(status::pod_problems(p));
        }
        if let Ok(events) = self.api::<Event>().list(&ListParams::default()).await {
            for e in events.items {
                let about = e.involved_object.name.as_deref().unwrap_or("");
                if about.starts_with(&name) && e.type_.as_deref() != Some("Normal") {
                    lines.push(format!(
                        "event {about}: {} {}",
                        e.reason.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        let from = lines.len().saturating_sub(tail);
        Ok(lines[from..].join("\n"))
    }
}

impl Driver for KubernetesDriver {
    fn region(&self) -> &str {
        "kubernetes"
    }

    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<InstanceHandle, RuntimeError>> {
        Box::pin(async move {
            objects::check_id(&spec.id)?;
            let (d, pods) = self.observe(&spec.id).await?;
            let now = Utc::now();
            if d.is_some()
                && status::instance_status(d.as_ref(), &pods, self.settings.control_port, now)
                    .is_alive()
            {
                return Err(RuntimeError::AlreadyRunning(spec.id.clone()));
            }
            let started = now.to_rfc3339_opts(SecondsFormat::Millis, true);
            let built = objects::engine_objects(spec, &self.settings, &started)?;
            // The group's Service first: the instance's objects hang from it (ownerReferences), so
            // deleting it (the database) lets the cluster delete everything else.
            let mut deployment = built.deployment;
            if let Some(g) = &spec.group {
                let svc = self
                    .upsert(&objects::group_service(g, &self.settings)?)
                    .await?;
                deployment.metadata.owner_references = Some(vec![objects::owner_ref(
                    "v1",
                    "Service",
                    svc.metadata.name.as_deref().unwrap_or_default(),
                    svc.metadata.uid.as_deref().unwrap_or_default(),
                )]);
            }
            let dep = self.upsert(&deployment).await?;
            let owner = vec![objects::owner_ref(
                "apps/v1",
                "Deployment",
                dep.metadata.name.as_deref().unwrap_or_default(),
                dep.metadata.uid.as_deref().unwrap_or_default(),
            )];
            let mut cm = built.config_map;
            cm.metadata.owner_references = Some(owner.clone());
            let mut secret = built.secret;
            secret.metadata.owner_references = Some(owner);
            self.upsert(&cm).await?;
            self.upsert(&secret).await?;
            Ok(InstanceHandle {
                id: spec.id.clone(),
                kind: spec.kind,
                started_at: now,
            })
        })
    }

    fn stop<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>> {
        Box::pin(async move {
            objects::check_id(id)?;
            let name = objects::instance_name(id);
            let stopped = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
            // The pods get their template's grace (`Settings::grace_seconds`): changing the
            // template now would not reach them (their ReplicaSet scales down with its own), so
            // `grace` is only logged when it differs.
            if grace.as_secs() as i64 != self.settings.grace_seconds {
                tracing::debug!(instance = %id, grace_s = grace.as_secs(), pod_grace_s = self.settings.grace_seconds,
                "stop: pods end within their template's grace period");
            }
            let patch = json!({
                "metadata": {"annotations": {ANNOTATION_STOPPED_AT: stopped}},
                "spec": {"replicas": 0},
            });
            match self
                .api::<Deployment>()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => return Ok(InstanceStatus::NotFound),
                Err(e) => return Err(api_err("scale to 0", &format!("Deployment {name}"))(e)),
            }
            // Pods end in the background within their grace period; the instance is stopped.
            self.status(id).await
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>> {
        Box::pin(async move {
            objects::check_id(id)?;
            let (d, pods) = self.observe(id).await?;
            Ok(status::instance_status(
                d.as_ref(),
                &pods,
                self.settings.control_port,
                Utc::now(),
            ))
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail_lines: usize) -> BoxFuture<'a, String> {
        Box::pin(async move {
            self.logs_of(id, tail_lines)
                .await
                .unwrap_or_else(|e| e.to_string())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, InstanceStatus)>, RuntimeError>> {
        Box::pin(async move {
            let lp = ListParams::default().labels(&objects::engines_selector());
            let deps = self
                .api::<Deployment>()
                .list(&lp)
                .await
                .map_err(api_err("list", "engine Deployments"))?;
            let pods = self
                .api::<Pod>()
                .list(&lp)
                .await
                .map_err(api_err("list", "engine pods"))?;
            let now = Utc::now();
            let mut out = Vec::new();
            for d in &deps.items {
                let Some(id) = d
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_INSTANCE))
                else {
                    continue;
                };
                let mine: Vec<Pod> = pods
                    .items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_INSTANCE))
                            == Some(id)
                    })
                    .cloned()
                    .collect();
                let st = status::instance_status(Some(d), &mine, self.settings.control_port, now);
                out.push((id.clone(), st));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            objects::check_id(id)?;
            if self.status(id).await?.is_alive() {
                return Err(RuntimeError::StillRunning(id.to_string()));
            }
            let name = objects::instance_name(id);
            // Owned by the Deployment, deleted explicitly too: at once, and on clusters (or test
            // doubles) without a garbage collector.
            self.delete::<Deployment>(&name).await?;
            self.delete::<ConfigMap>(&name).await?;
            self.delete::<Secret>(&name).await
        })
    }

    fn network(&self) -> Network {
        Network::Cluster {
            port: self.settings.port,
            control_port: self.settings.control_port,
        }
    }

    fn group_endpoint(&self, group: &str) -> Option<String> {
        Some(self.settings.group_url(group))
    }

    fn put_group_file<'a>(
        &'a self,
        group: &'a str,
        file: &'a SpecFile,
    ) -> BoxFuture<'a, Result<Option<String>, RuntimeError>> {
        Box::pin(async move {
            let mut secret =
                objects::group_keys_secret(group, &self.settings, &file.name, &file.contents)?;
            if let Ok(Some(svc)) = self
                .api::<Service>()
                .get_opt(&objects::group_service_name(group))
                .await
            {
                secret.metadata.owner_references = Some(vec![objects::owner_ref(
                    "v1",
                    "Service",
                    svc.metadata.name.as_deref().unwrap_or_default(),
                    svc.metadata.uid.as_deref().unwrap_or_default(),
                )]);
            }
            self.upsert(&secret).await?;
            Ok(Some(format!("{KEYS_DIR}/{}", file.name)))
        })
    }

    fn remove_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            objects::check_id(group)?;
            let lp = ListParams::default().labels(&objects::group_selector(group));
            let deps = self
                .api::<Deployment>()
                .list(&lp)
                .await
                .map_err(api_err("list", "the group's Deployments"))?;
            for d in deps.items {
                if let Some(id) = d
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_INSTANCE))
                {
                    let name = objects::instance_name(id);
                    self.delete::<Deployment>(&name).await?;
                    self.delete::<ConfigMap>(&name).await?;
                    self.delete::<Secret>(&name).await?;
                }
            }
            self.delete::<Secret>(&objects::group_keys_name(group))
                .await?;
            self.delete::<Service>(&objects::group_service_name(group))
                .await
        })
    }
}
