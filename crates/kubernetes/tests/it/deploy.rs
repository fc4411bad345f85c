//! `deploy/kubernetes`: it renders with `kubectl kustomize` (skipped, with a message, where
//! kubectl is missing), every object parses into its k8s-openapi type, and its Role grants
//! exactly the calls the driver and the managed servers' runtime make (checked against what the
//! fake API server served).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use refract_kubernetes::{objects, FakeApiServer, KubernetesServers, PodState};
use refract_managed::{DbType, ServerRuntime, ServerSpec};
use refract_runtime::{Driver, SpecFile};
use serde::Deserialize;
use serde_json::Value;

use crate::common::*;

fn render() -> Option<Vec<Value>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let out = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: kubectl is not installed ({e}); install kubectl to render deploy/kubernetes");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    Some(docs)
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) {
    if let Err(e) = serde_json::from_value::<T>(v.clone()) {
        panic!("{} {}: {e}", v["kind"], v["metadata"]["name"]);
    }
}

#[test]
fn kustomize_renders_objects_of_their_types() {
    let Some(docs) = render() else { return };
    let mut kinds = BTreeSet::new();
    for v in &docs {
        let kind = v["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Namespace" => parse::<Namespace>(v),
            "ServiceAccount" => parse::<ServiceAccount>(v),
            "Role" => parse::<Role>(v),
            "RoleBinding" => parse::<RoleBinding>(v),
            "Secret" => parse::<Secret>(v),
            "PersistentVolumeClaim" => parse::<PersistentVolumeClaim>(v),
            "Deployment" => parse::<Deployment>(v),
            "Service" => parse::<Service>(v),
            other => panic!("unexpected kind {other}"),
        }
        if kind != "Namespace" {
            assert_eq!(v["metadata"]["namespace"], "refract", "{kind}");
        }
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 8, "{kinds:?}");
    let dep = docs.iter().find(|v| v["kind"] == "Deployment").unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let env = c["env"].as_array().unwrap();
    let image = env
        .iter()
        .find(|e| e["name"] == "REFRACT_ENGINE_IMAGE")
        .unwrap();
    // Engines run the control plane's own image.
    assert_eq!(image["value"], c["image"]);
    // The master key comes from the Secret, never as a value.
    let key = env
        .iter()
        .find(|e| e["name"] == "REFRACT_MASTER_KEY")
        .unwrap();
    assert!(key.get("value").is_none() && key["valueFrom"]["secretKeyRef"].is_object());
    assert_eq!(
        dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}

/// (apiGroup, resource, verb) of a request the fake served.
fn permission(request: &str) -> (String, String, String) {
    let (method, path) = request.split_once(' ').unwrap();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => panic!("{request}"),
    };
    let (resource, named) = match rest {
        ["namespaces", _, r] => (r.to_string(), false),
        ["namespaces", _, r, _] => (r.to_string(), true),
        ["namespaces", _, r, _, sub] => (format!("{r}/{sub}"), true),
        _ => panic!("{request}"),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => panic!("{request}"),
    };
    (group.into(), resource, verb.into())
}

#[tokio::test]
async fn the_role_grants_exactly_what_the_driver_uses() {
    let Some(docs) = render() else { return };
    let role: Role =
        serde_json::from_value(docs.iter().find(|v| v["kind"] == "Role").unwrap().clone()).unwrap();
    let mut granted = BTreeSet::new();
    for r in role.rules.unwrap_or_default() {
        for g in r.api_groups.unwrap_or_default() {
            for res in r.resources.clone().unwrap_or_default() {
                for v in &r.verbs {
                    assert_ne!(v, "*", "no wildcard verbs");
                    assert_ne!(res, "*", "no wildcard resources");
                    granted.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }

    // Every driver operation once, through the fake.
    let fake = FakeApiServer::new();
    let d = driver(&fake);
    d.put_group_file(DB, &SpecFile::new("keys.json", "{}"))
        .await
        .unwrap();
    d.put_group_file(DB, &SpecFile::new("keys.json", "{\"keys\": []}"))
        .await
        .unwrap();
    d.start(&engine_spec(ID, 1)).await.unwrap();
    let name = objects::instance_name(ID);
    fake.run_pods(NS, &name, PodState::CrashLoop(1));
    d.status(ID).await.unwrap();
    d.logs(ID, 10).await;
    d.start(&engine_spec(ID, 1)).await.unwrap();
    d.list().await.unwrap();
    d.stop(ID, Duration::from_secs(1)).await.unwrap();
    fake.run_pods(NS, &name, PodState::NotReady);
    d.remove(ID).await.unwrap();
    d.start(&engine_spec(ID, 1)).await.unwrap();
    d.remove_group(DB).await.unwrap();

    // Every managed-server operation once, for a CloudNativePG Cluster and a StatefulSet.
    let servers = KubernetesServers::new(kube::Client::new(fake.router(), NS), NS);
    for (db_type, version) in [(DbType::Postgresql, "16"), (DbType::Redis, "7.2")] {
        let spec = ServerSpec {
            id: "db_role0test0".into(),
            db_type,
            version: version.into(),
            nodes: 1,
            storage_gb: 1,
            vcpus: 1,
            memory_mb: 1024,
            database: "app".into(),
            user: "app_user".into(),
            password: "pw".into(),
            admin_password: String::new(),
        };
        servers.apply(&spec).await.unwrap();
        servers.apply(&spec).await.unwrap();
        servers.state(&spec.id, db_type).await.unwrap();
        servers.restart(&spec.id, db_type).await.unwrap();
        servers.stop(&spec.id, db_type).await.unwrap();
        fake.put(
            "v1",
            "persistentvolumeclaims",
            NS,
            serde_json::json!({"metadata": {"name": "data-refract-s-db-role0test0-0",
                "labels": {"refract.dev/server": "db-role0test0"}}}),
        );
        servers.delete(&spec.id, db_type).await.unwrap();
    }

    let used: BTreeSet<_> = fake.requests().iter().map(|r| permission(r)).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "the Role lacks {missing:?}");
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the Role grants what the driver never uses: {unused:?}"
    );
}
