//! `refract serve --runtime kubernetes` end to end against the fake API server
//! (`refract_kubernetes::FakeApiServer`: a **test double** of the API server on a loopback port,
//! reached through a kubeconfig — not a cluster). The test plays the parts a cluster would:
//! the Deployment controller and kubelet (`run_pods`, and a real `refract engine` process run
//! from the ConfigMap and Secret the control plane created, as a pod would mount them).
//! What only a real cluster shows (scheduling, probes, DNS, garbage collection, rolling
//! updates) is not tested here: see `docs/kubernetes.md`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use refract_api::{Mode, Status, UpdateDatabaseRequest};
use refract_kubernetes::{FakeApiServer, PodState};
use serde_json::{json, Value};

use crate::common::refract_bin;
use crate::lifecycle::{create_key, query_ok, sqlite_database, Cp, LONG};

pub(crate) const NS: &str = "refract";

/// A pod as the kubelet would run it: the instance's ConfigMap and Secret written as files in
/// a directory (the keys Secret under `keys/`), its environment from the Secret, its command
/// run there. Killed on drop.
struct FakePod {
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakePod {
    /// Plays the kubelet's sync of the keys Secret volume: the file changes in place.
    fn sync_keys(&self, fake: &FakeApiServer, database: &str) {
        let keys: Secret = serde_json::from_value(
            fake.get("v1", "secrets", NS, &format!("refract-keys-{database}"))
                .expect("keys secret"),
        )
        .unwrap();
        write_files(
            &self._dir.path().join("keys"),
            keys.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_files(dir: &Path, data: impl IntoIterator<Item = (String, Vec<u8>)>) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, v) in data {
        std::fs::write(dir.join(k), v).unwrap();
    }
}

/// Runs the pod of Deployment `name` from the objects in the fake.
fn run_pod(fake: &FakeApiServer, name: &str, database: &str, client_port: u16) -> FakePod {
    let dir = tempfile::tempdir().unwrap();
    let cm: ConfigMap =
        serde_json::from_value(fake.get("v1", "configmaps", NS, name).expect("configmap")).unwrap();
    let secret: Secret =
        serde_json::from_value(fake.get("v1", "secrets", NS, name).expect("secret")).unwrap();
    let keys: Secret = serde_json::from_value(
        fake.get("v1", "secrets", NS, &format!("refract-keys-{database}"))
            .expect("keys secret"),
    )
    .unwrap();
    // Mount paths of the pod, mapped onto the directory (the config names them).
    let root = dir.path().to_str().unwrap().to_string();
    let files = cm.data.unwrap_or_default().into_iter().map(|(k, v)| {
        let v = v.replace("/var/run/refract", &root);
        (k, v.into_bytes())
    });
    write_files(dir.path(), files);
    let mut env = Vec::new();
    let secret_files: Vec<(String, Vec<u8>)> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match k.strip_prefix("env.") {
            Some(name) => {
                env.push((name.to_string(), String::from_utf8(v.0).unwrap()));
                None
            }
            None => Some((k, v.0)),
        })
        .collect();
    write_files(dir.path(), secret_files);
    write_files(
        &dir.path().join("keys"),
        keys.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    let dep = fake.get("apps/v1", "deployments", NS, name).unwrap();
    let args: Vec<String> =
        serde_json::from_value(dep["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    let child = Command::new(refract_bin())
        .args(&args)
        .current_dir(dir.path())
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Readiness: the client port listens once the snapshot is loaded.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", client_port)).is_err() {
        assert!(start.elapsed() < LONG, "the pod's engine never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    FakePod { child, _dir: dir }
}

fn engine_deployments(fake: &FakeApiServer) -> Vec<Value> {
    fake.list("apps/v1", "deployments", NS)
}

pub(crate) fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LONG, "waited {LONG:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for an engine Deployment whose name is not in `old`; its name.
fn wait_new_deployment(fake: &FakeApiServer, old: &[&str]) -> String {
    let mut found = None;
    wait_for("a new Deployment", || {
        found = engine_deployments(fake)
            .iter()
            .filter_map(|d| d["metadata"]["name"].as_str())
            .find(|n| !old.contains(n))
            .map(str::to_string);
        found.is_some()
    });
    let name = found.unwrap();
    wait_for("its ConfigMap and Secret", || {
        fake.get("v1", "configmaps", NS, &name).is_some()
            && fake.get("v1", "secrets", NS, &name).is_some()
    });
    name
}

fn started_at(d: &Value) -> Value {
    d["spec"]["template"]["metadata"]["annotations"]["refract.dev/started-at"].clone()
}

/// A `refract serve --runtime kubernetes` on a fake API server served on loopback.
pub(crate) struct Setup {
    pub(crate) _rt: tokio::runtime::Runtime,
    pub(crate) fake: FakeApiServer,
    pub(crate) cp: Cp,
    /// The engines' client port.
    pub(crate) port: u16,
    pub(crate) _kube_dir: tempfile::TempDir,
}

pub(crate) fn setup() -> Setup {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = FakeApiServer::new();
    let server = rt.block_on(fake.serve()).unwrap();
    let kube_dir = tempfile::tempdir().unwrap();
    let kubeconfig: PathBuf = kube_dir.path().join("config");
    std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(&server, NS)).unwrap();
    let (port, control) = (
        refract_runtime::free_port().unwrap(),
        refract_runtime::free_port().unwrap(),
    );
    // `refract serve` flags by their environment variables.
    let env: Vec<(String, String)> = [
        ("REFRACT_RUNTIME", "kubernetes".to_string()),
        (
            "REFRACT_ENGINE_IMAGE",
            "registry.example/refract:test".to_string(),
        ),
        ("REFRACT_ENGINE_PORT", port.to_string()),
        ("REFRACT_ENGINE_CONTROL_PORT", control.to_string()),
        ("KUBECONFIG", kubeconfig.to_str().unwrap().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cp = Cp::fresh_with_env(0, env);
    Setup {
        _rt: rt,
        fake,
        cp,
        port,
        _kube_dir: kube_dir,
    }
}

/// `PATCH /v1/databases/{id}` body setting the engine count.
fn replicas(n: i64) -> UpdateDatabaseRequest {
    UpdateDatabaseRequest {
        replicas: Some(n),
        ..UpdateDatabaseRequest::default()
    }
}

/// An image the cluster cannot pull fails the provision at once, with the reason in `lastError`.
#[test]
fn an_image_pull_error_fails_the_deploy_with_the_reason() {
    let Setup { fake, cp, .. } = &setup();
    let id = sqlite_database(cp, 5);
    cp.ok(&id, "provision", Mode::Immediate);
    let name = wait_new_deployment(fake, &[]);
    fake.run_pods(NS, &name, PodState::ImagePullBackOff);
    let v = cp.wait_until(&id, "failed", LONG, |v| v.database.status == Status::Failed);
    let err = v.database.last_error.as_deref().unwrap_or_default();
    assert!(err.contains("ImagePullBackOff"), "{v:?}");
}

#[test]
fn lifecycle_on_the_fake_api_server() {
    // Named bindings (not `..`): the runtime serving the fake lives to the end.
    let Setup {
        _rt,
        fake,
        mut cp,
        port,
        _kube_dir,
    } = setup();
    // The control plane checked the cluster at start (one list of engine Deployments).
    assert!(fake.requests().iter().any(|r| r.contains("/deployments")));

    // More than one replica is accepted on this runtime.
    let id = sqlite_database(&cp, 30);
    let v = cp.update_database(&id, &replicas(2));
    assert_eq!(v.replicas, 2);
    assert_eq!(v.region, "kubernetes");
    let (key, _) = create_key(&cp, &id, "app");

    // Provision: the objects appear in the cluster.
    cp.ok(&id, "provision", Mode::Immediate);
    wait_for("the engine's Deployment", || {
        !engine_deployments(&fake).is_empty()
    });
    let dep = engine_deployments(&fake).remove(0);
    let name = dep["metadata"]["name"].as_str().unwrap().to_string();
    wait_for("its ConfigMap and Secret", || {
        fake.get("v1", "configmaps", NS, &name).is_some()
            && fake.get("v1", "secrets", NS, &name).is_some()
    });
    assert_eq!(dep["spec"]["replicas"], 2);
    let svc = fake
        .get("v1", "services", NS, &format!("refract-db-{id}"))
        .expect("the database's Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], port);
    assert!(fake
        .get("v1", "secrets", NS, &format!("refract-keys-{id}"))
        .is_some());
    // The admin token is in the Secret and nowhere in the pod spec.
    let secret: Secret =
        serde_json::from_value(fake.get("v1", "secrets", NS, &name).unwrap()).unwrap();
    let token = String::from_utf8(secret.data.unwrap()["admin-token"].0.clone()).unwrap();
    assert!(token.len() > 10);
    let pod_spec = dep["spec"]["template"]["spec"].to_string();
    assert!(
        !pod_spec.contains(&token),
        "the admin token is in the pod spec"
    );
    // Not ready yet: still deploying.
    fake.run_pods(NS, &name, PodState::NotReady);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cp.status(&id), Status::Deploying);

    // Playing the kubelet: the pod runs (a real engine, from the objects), then is ready.
    let pod = run_pod(&fake, &name, &id, port);
    fake.run_pods(NS, &name, PodState::Ready("127.0.0.1".into()));
    let v = cp.wait_for(&id, Status::Running, LONG);
    assert_eq!(
        v.instance.as_ref().and_then(|i| i.endpoint_url.clone()),
        Some(format!("http://refract-db-{id}.{NS}.svc:{port}")),
        "{v:?}"
    );
    // The query key reached the pod through the keys Secret.
    let rows = query_ok(
        &format!("http://127.0.0.1:{port}"),
        &key,
        "users(id = 2) { id name }",
        Duration::from_secs(10),
    );
    assert_eq!(rows, json!([{"id": 2, "name": "user 2"}]));

    // A new key goes into the keys Secret; the answer does not claim it is in force (the
    // kubelet delivers it later); once the kubelet syncs the volume, the engine takes it.
    let (key2, created) = create_key(&cp, &id, "second");
    assert_eq!(created.effective, Some(false), "{created:?}");
    assert!(
        created
            .effective_reason
            .as_deref()
            .is_some_and(|r| r.contains("kubelet")),
        "{created:?}"
    );
    pod.sync_keys(&fake, &id);
    query_ok(
        &format!("http://127.0.0.1:{port}"),
        &key2,
        "users(id = 1) { id }",
        Duration::from_secs(10),
    );

    // The control plane restarts (SIGKILL): the cluster is the truth, nothing is started twice.
    cp.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cp.status(&id), Status::Running);
    assert_eq!(engine_deployments(&fake).len(), 1);
    query_ok(
        &format!("http://127.0.0.1:{port}"),
        &key,
        "users(id = 2) { id }",
        Duration::from_secs(10),
    );

    // A crash: OOMKilled in a loop. The lifecycle counts it and starts the engine again (the
    // Deployment's pod template changes, which rolls its pods).
    drop(pod);
    let before = started_at(&fake.get("apps/v1", "deployments", NS, &name).unwrap());
    let pods = fake.run_pods(NS, &name, PodState::CrashLoop(137));
    fake.set_log(NS, &pods[0], "loading table users\n");
    wait_for("the restart", || {
        let d = fake.get("apps/v1", "deployments", NS, &name);
        assert!(
            d.is_some(),
            "the Deployment is gone:\n{}\n{}\n{:?}",
            cp.events(&id),
            cp.tail_output(),
            fake.requests().iter().rev().take(30).collect::<Vec<_>>()
        );
        started_at(&d.unwrap()) != before
    });
    fake.run_pods(NS, &name, PodState::NotReady);
    let pod = run_pod(&fake, &name, &id, port);
    fake.run_pods(NS, &name, PodState::Ready("127.0.0.1".into()));
    let events = cp.events(&id);
    assert!(events.contains("killed by signal 9"), "{events}");
    cp.wait_until(&id, "the restart event", LONG, |_| {
        cp.events(&id).contains("engine restarted")
    });
    assert_eq!(cp.status(&id), Status::Running);
    query_ok(
        &format!("http://127.0.0.1:{port}"),
        &key,
        "users(id = 2) { id }",
        Duration::from_secs(10),
    );

    // Reconfigure to 3 replicas: a new Deployment of 3 beside the old one behind the one
    // Service; once it is ready, the old one goes.
    let v = cp.update_database(&id, &replicas(3));
    assert!(v.has_pending_changes, "{v:?}");
    cp.ok(&id, "reconfigure", Mode::Immediate);
    let new_name = wait_new_deployment(&fake, &[name.as_str()]);
    let dep = fake.get("apps/v1", "deployments", NS, &new_name).unwrap();
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(fake.list("v1", "services", NS).len(), 1);
    drop(pod);
    let pod = run_pod(&fake, &new_name, &id, port);
    fake.run_pods(NS, &new_name, PodState::Ready("127.0.0.1".into()));
    cp.wait_until(&id, "the reconfigure", LONG, |v| {
        v.database.status == Status::Running && !v.database.has_pending_changes
    });
    wait_for("the old Deployment to go", || {
        fake.get("apps/v1", "deployments", NS, &name).is_none()
    });
    let name = new_name;

    // Pause (scaled to 0, removed) and resume (a new Deployment).
    cp.ok(&id, "pause", Mode::Immediate);
    cp.wait_for(&id, Status::Paused, LONG);
    drop(pod);
    assert!(engine_deployments(&fake).is_empty());
    cp.ok(&id, "resume", Mode::Immediate);
    let name2 = wait_new_deployment(&fake, &[name.as_str()]);
    let pod = run_pod(&fake, &name2, &id, port);
    fake.run_pods(NS, &name2, PodState::Ready("127.0.0.1".into()));
    cp.wait_for(&id, Status::Running, LONG);
    let name = name2;

    // Terminate: scaled to 0 and removed; delete: the database's Service and keys go too.
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    drop(pod);
    assert!(fake.get("apps/v1", "deployments", NS, &name).is_none());
    assert!(fake.get("v1", "configmaps", NS, &name).is_none());
    assert!(fake.get("v1", "secrets", NS, &name).is_none());
    let (s, v) = cp.call("DELETE", &format!("/v1/databases/{id}"), None);
    assert!(s == 204 || s == 200, "{s} {v}");
    let left: Vec<String> = fake
        .names(NS)
        .into_iter()
        .filter(|n| !n.starts_with("pods/"))
        .collect();
    assert!(left.is_empty(), "left in the cluster: {left:?}");
}
