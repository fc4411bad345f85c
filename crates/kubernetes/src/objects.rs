//! Pure builders: an [`InstanceSpec`] and the driver's [`Settings`] → the Kubernetes objects of
//! one engine (Deployment, ConfigMap, Secret), of its group (Service, keys Secret). No IO; the
//! golden files of `tests/golden/` pin what they produce.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, Secret, SecretKeySelector,
    SecretProjection, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use refract_runtime::{InstanceKind, InstanceSpec, RuntimeError};

/// An engine's working directory (a writable emptyDir) into which its files are mounted one by
/// one, so the relative paths of its config resolve there.
pub const FILES_DIR: &str = "/var/run/refract";
/// Where a group's shared files (the query keys) are mounted.
pub const KEYS_DIR: &str = "/var/run/refract/keys";

/// Label: who manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: `engine` (also `app.kubernetes.io/name: refract-engine`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: the instance id (the driver's id of an engine).
pub const LABEL_INSTANCE: &str = "refract.dev/instance";
/// Label: the group (the database id).
pub const LABEL_GROUP: &str = "refract.dev/database";
/// Annotation on a Deployment scaled to 0 by [`crate::KubernetesDriver`]'s `stop`: when.
pub const ANNOTATION_STOPPED_AT: &str = "refract.dev/stopped-at";
/// Annotation on the pod template: when `start` last (re)started the instance; a new value
/// rolls its pods.
pub const ANNOTATION_STARTED_AT: &str = "refract.dev/started-at";

const MANAGED_BY: &str = "refract";
const COMPONENT: &str = "engine";
/// Key prefix of environment values in an instance's Secret (`env.NAME`).
const ENV_KEY_PREFIX: &str = "env.";
/// Mode of the mounted files: read by the owner (root) and the pod's `fsGroup` (the engine's
/// group) only — 0400 would leave them unreadable to the non-root engine.
const FILE_MODE: i32 = 0o440;
/// UID and GID engines run as (the image's `refract` user; never root).
pub const ENGINE_UID: i64 = 65532;

/// How the driver builds engines' objects (from `refract serve --runtime kubernetes` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace every object goes into.
    pub namespace: String,
    /// The engine image (the `refract` binary as its entrypoint).
    pub image: String,
    /// The command that starts the `refract` binary in the image.
    pub command: Vec<String>,
    /// The engines' client port (listens once the snapshot is loaded: the readiness probe).
    pub port: u16,
    /// The engines' control port (`/health` at once: the liveness probe; the control plane).
    pub control_port: u16,
    /// Seconds a pod gets between SIGTERM and SIGKILL.
    pub grace_seconds: i64,
}

impl Settings {
    /// Defaults for `namespace` and `image`: ports 8080 (clients) and 8081 (control), 10 s grace.
    pub fn new(namespace: impl Into<String>, image: impl Into<String>) -> Self {
        Settings {
            namespace: namespace.into(),
            image: image.into(),
            command: vec!["refract".into()],
            port: 8080,
            control_port: 8081,
            grace_seconds: 10,
        }
    }

    /// The in-cluster URL of a group's Service.
    pub fn group_url(&self, group: &str) -> String {
        format!(
            "http://{}.{}.svc:{}",
            group_service_name(group),
            self.namespace,
            self.port
        )
    }
}

/// The name of an instance's Deployment, ConfigMap and Secret.
pub fn instance_name(id: &str) -> String {
    format!("refract-e-{id}")
}

/// The name of a group's Service (its stable DNS name).
pub fn group_service_name(group: &str) -> String {
    format!("refract-db-{group}")
}

/// The name of a group's keys Secret.
pub fn group_keys_name(group: &str) -> String {
    format!("refract-keys-{group}")
}

/// Checks that `id` makes valid object names and label values: 1–40 characters of `[a-z0-9-]`,
/// starting and ending alphanumeric (a UUID fits; names stay within DNS's 63).
pub fn check_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}

/// Labels of every object of an instance.
pub fn instance_labels(spec_id: &str, group: Option<&str>) -> BTreeMap<String, String> {
    let mut l = group_labels(group);
    l.insert(LABEL_INSTANCE.into(), spec_id.into());
    l
}

fn group_labels(group: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    l.insert(LABEL_COMPONENT.into(), COMPONENT.into());
    l.insert("app.kubernetes.io/name".into(), "refract-engine".into());
    if let Some(g) = group {
        l.insert(LABEL_GROUP.into(), g.into());
    }
    l
}

/// The label selector (`k=v,…`) of every engine object Refract manages.
pub fn engines_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT}")
}

/// The label selector of one instance's objects.
pub fn instance_selector(id: &str) -> String {
    format!("{},{LABEL_INSTANCE}={id}", engines_selector())
}

/// The label selector of one group's objects.
pub fn group_selector(group: &str) -> String {
    format!("{},{LABEL_GROUP}={group}", engines_selector())
}

/// An owner reference to `owner` (kind and name given), so that the cluster's garbage collector
/// deletes the owned object with it.
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn meta(name: String, ns: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(ns.into()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The objects of one engine instance.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineObjects {
    /// The plain files (`SpecFile::secret == false`): config, manifest.
    pub config_map: ConfigMap,
    /// Secret files and every environment value.
    pub secret: Secret,
    /// The pods: `spec.replicas` copies behind the group's Service.
    pub deployment: Deployment,
}

/// Builds the objects of `spec`. `keys_group_file`: whether the group's keys Secret is mounted
/// too (it exists once [`crate::KubernetesDriver`]'s `put_group_file` stored it).
pub fn engine_objects(
    spec: &InstanceSpec,
    s: &Settings,
    started_at: &str,
) -> Result<EngineObjects, RuntimeError> {
    check_id(&spec.id)?;
    if let Some(g) = &spec.group {
        check_id(g)?;
    }
    if spec.kind != InstanceKind::Engine {
        return Err(RuntimeError::Api(format!(
            "the Kubernetes driver runs engines only; instance {} is a {:?}",
            spec.id, spec.kind
        )));
    }
    let name = instance_name(&spec.id);
    let labels = instance_labels(&spec.id, spec.group.as_deref());
    let ns = s.namespace.as_str();

    let mut plain = BTreeMap::new();
    let mut secret = BTreeMap::new();
    let (mut plain_items, mut secret_items) = (Vec::new(), Vec::new());
    for f in &spec.files {
        if !valid_key(&f.name) || f.name.starts_with(ENV_KEY_PREFIX) {
            return Err(RuntimeError::InvalidFileName(f.name.clone()));
        }
        let item = KeyToPath {
            key: f.name.clone(),
            path: f.name.clone(),
            mode: Some(FILE_MODE),
        };
        if f.secret {
            secret.insert(f.name.clone(), ByteString(f.contents.clone()));
            secret_items.push(item);
        } else {
            let text = String::from_utf8(f.contents.clone())
                .map_err(|_| RuntimeError::InvalidFileName(f.name.clone()))?;
            plain.insert(f.name.clone(), text);
            plain_items.push(item);
        }
    }
    // Environment values may be secret (the runtime's contract): they live in the Secret and
    // reach the container through `secretKeyRef`, never as values in the pod spec.
    let mut env = Vec::new();
    for (k, v) in &spec.env {
        let key = format!("{ENV_KEY_PREFIX}{k}");
        if !valid_key(&key) {
            return Err(RuntimeError::InvalidFileName(key));
        }
        secret.insert(key.clone(), ByteString(v.clone().into_bytes()));
        env.push(EnvVar {
            name: k.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.clone(),
                    key,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }

    let config_map = ConfigMap {
        metadata: meta(name.clone(), ns, labels.clone()),
        data: Some(plain),
        ..Default::default()
    };
    let secret_obj = Secret {
        metadata: meta(name.clone(), ns, labels.clone()),
        type_: Some("Opaque".into()),
        data: Some(secret),
        ..Default::default()
    };

    // The instance's own files: one projected volume (ConfigMap + Secret), each file mounted
    // into the writable working directory by subPath (the engine takes its `engine.lock` in the
    // config file's directory, so that directory cannot be a read-only volume). They are
    // replaced by a restart, never in place.
    let file_names: Vec<String> = spec.files.iter().map(|f| f.name.clone()).collect();
    let sources = vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.clone(),
                items: Some(plain_items),
                optional: Some(false),
            }),
            ..Default::default()
        },
        VolumeProjection {
            secret: Some(SecretProjection {
                name: name.clone(),
                items: Some(secret_items),
                optional: Some(false),
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "work".into(),
            mount_path: FILES_DIR.into(),
            ..Default::default()
        },
        // The root filesystem is read-only; a scratch /tmp for what the process may need.
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    for f in &file_names {
        mounts.push(VolumeMount {
            name: "files".into(),
            mount_path: format!("{FILES_DIR}/{f}"),
            sub_path: Some(f.clone()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut volumes = vec![
        Volume {
            name: "work".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "files".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(FILE_MODE),
                sources: Some(sources),
            }),
            ..Default::default()
        },
    ];
    if let Some(g) = &spec.group {
        // The group's query keys: a directory mount of its Secret (never subPath, which would
        // freeze it), updated in place by the kubelet; the engine re-reads the file.
        mounts.push(VolumeMount {
            name: "keys".into(),
            mount_path: KEYS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(group_keys_name(g)),
                default_mode: Some(FILE_MODE),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let mut limits = BTreeMap::new();
    if let Some(mb) = spec.memory_limit_mb {
        limits.insert("memory".to_string(), Quantity(format!("{mb}Mi")));
    }
    if let Some(m) = spec.cpu_millis {
        limits.insert("cpu".to_string(), Quantity(format!("{}m", m.max(1))));
    }

    let probe = |port: u16, initial: i32, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".into()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    };

    let container = Container {
        name: "engine".into(),
        image: Some(s.image.clone()),
        command: Some(s.command.clone()),
        args: Some(spec.args.clone()),
        working_dir: Some(FILES_DIR.into()),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(s.port),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("control".into()),
                container_port: i32::from(s.control_port),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            // Requests = limits: the engine sizes its snapshot cap from the memory it is given.
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..Default::default()
        }),
        // The client port listens only once the first snapshot is in: ready = loaded.
        readiness_probe: Some(probe(s.port, 1, 2, 1)),
        // The control port answers at once; three missed answers restart the container.
        liveness_probe: Some(probe(s.control_port, 10, 10, 3)),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut template_annotations = BTreeMap::new();
    template_annotations.insert(ANNOTATION_STARTED_AT.to_string(), started_at.to_string());
    let deployment = Deployment {
        metadata: meta(name.clone(), ns, labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas.max(1) as i32),
            selector: LabelSelector {
                match_labels: Some(
                    [(LABEL_INSTANCE.to_string(), spec.id.clone())]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
            // A restart or a resize replaces pods one by one, a new one ready before an old one
            // goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(template_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(s.grace_seconds),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(ENGINE_UID),
                        run_as_group: Some(ENGINE_UID),
                        fs_group: Some(ENGINE_UID),
                        ..Default::default()
                    }),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(EngineObjects {
        config_map,
        secret: secret_obj,
        deployment,
    })
}

/// The Service of a group: its stable DNS name, over the ready pods of all its instances (during
/// a cutover the old and the new engine's, like two listeners on one port locally).
pub fn group_service(group: &str, s: &Settings) -> Result<Service, RuntimeError> {
    check_id(group)?;
    let labels = group_labels(Some(group));
    let selector = [
        (LABEL_COMPONENT.to_string(), COMPONENT.to_string()),
        (LABEL_GROUP.to_string(), group.to_string()),
    ]
    .into_iter()
    .collect();
    Ok(Service {
        metadata: meta(group_service_name(group), &s.namespace, labels),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(s.port),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Secret of a group's shared files (the query keys file).
pub fn group_keys_secret(
    group: &str,
    s: &Settings,
    name: &str,
    contents: &[u8],
) -> Result<Secret, RuntimeError> {
    check_id(group)?;
    if !valid_key(name) {
        return Err(RuntimeError::InvalidFileName(name.into()));
    }
    Ok(Secret {
        metadata: meta(
            group_keys_name(group),
            &s.namespace,
            group_labels(Some(group)),
        ),
        type_: Some("Opaque".into()),
        data: Some(
            [(name.to_string(), ByteString(contents.to_vec()))]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    })
}

/// A valid ConfigMap/Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_make_dns_names() {
        assert!(check_id("3f6c2a1e-0000-4000-8000-000000000001").is_ok());
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"a".repeat(41)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
