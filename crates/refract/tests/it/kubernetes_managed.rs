//! Managed database servers (`/api/v1`) on `refract serve --runtime kubernetes`, end to end
//! against the fake API server (`refract_kubernetes::FakeApiServer`: a **test double** on a
//! loopback port, reached through a kubeconfig — not a cluster). The test plays the parts a
//! cluster would: CloudNativePG (it writes the `Cluster`'s `status`), the StatefulSet
//! controller and the kubelet (`run_statefulset_pods`), and the garbage collector (the pods of
//! a deleted StatefulSet). No database server runs: what is verified is the objects Refract
//! writes and how it follows their status (docs/kubernetes.md, "What was verified").

use std::time::{Duration, Instant};

use refract_kubernetes::{FakeApiServer, PodState};
use serde_json::{json, Value};

use crate::kubernetes::{setup, wait_for, Setup, NS};
use crate::lifecycle::{Cp, LONG};

const CNPG: &str = "postgresql.cnpg.io/v1";

/// `GET /api/v1/databases/{id}` until `pred` holds; the last answer.
fn wait_db(cp: &Cp, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = cp.call("GET", &format!("/api/v1/databases/{id}"), None);
        assert_eq!(s, 200, "{v}");
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "waited {LONG:?} for {what}; last: {v}\n{}",
            cp.tail_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A 422 whose message says `says` (why the kubernetes runtime refuses); `what` was asked.
fn assert_refused_on_kubernetes(st: u16, v: &Value, says: &str, what: &str) {
    assert_eq!(st, 422, "{what}: {v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(says), "{what}: {v}");
}

fn wait_status(cp: &Cp, id: &str, status: &str) -> Value {
    wait_db(cp, id, status, |v| v["status"] == status)
}

fn action(cp: &Cp, id: &str, kind: &str) {
    let (s, v) = cp.call(
        "POST",
        &format!("/api/v1/databases/{id}/actions"),
        Some(json!({"type": kind})),
    );
    assert_eq!(s, 202, "{kind}: {v}");
}

/// Every object of the fake whose name holds `name`, as `resource/name`.
fn objects_of(fake: &FakeApiServer, name: &str) -> Vec<String> {
    fake.names(NS)
        .into_iter()
        .filter(|n| n.contains(name))
        .collect()
}

/// Plays CloudNativePG: writes the `Cluster`'s status.
fn cnpg_status(fake: &FakeApiServer, name: &str, status: Value) {
    let mut c = fake.get(CNPG, "clusters", NS, name).expect("the Cluster");
    c["status"] = status;
    fake.put(CNPG, "clusters", NS, c);
}

fn cnpg_ready(fake: &FakeApiServer, name: &str) {
    let instances = fake.get(CNPG, "clusters", NS, name).unwrap()["spec"]["instances"].clone();
    cnpg_status(
        fake,
        name,
        json!({"phase": "Cluster in healthy state", "instances": instances, "readyInstances": instances,
               "conditions": [{"type": "Ready", "status": "True"}]}),
    );
}

/// A second customer's management key.
fn other_customer(cp: &Cp) -> String {
    let created: refract_api::CreateCustomerResponse = cp.wire(
        "POST",
        "/v1/admin/customers",
        Some(&refract_api::CreateCustomerRequest {
            name: "other".into(),
            plan: Some(refract_api::Plan::Free),
        }),
        201,
    );
    created.management_key.key.unwrap()
}

fn call_as(cp: &Cp, key: &str, method: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", cp.url()),
        )
        .bearer_auth(key)
        .json(&json!({"type": "stop"}))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// create → objects → (played) ready → `running` with the cluster endpoint → stop → start →
/// crash with its reason → recovery → (another customer: 404) → delete → nothing left.
fn server_lifecycle(s: &mut Setup, other_key: &str, db_type: &str, replicas: i64) {
    let (fake, cp) = (&s.fake, &mut s.cp);
    let (st, v) = cp.call(
        "POST",
        "/api/v1/databases",
        Some(json!({"name": format!("k8s-{db_type}"), "db_type": db_type,
                    "plan_id": "db-s-1vcpu-2gb", "region": "nyc1", "storage_gb": 20, "replicas": replicas})),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let oid = id.replace('_', "-");
    let name = format!("refract-s-{oid}");
    let postgres = db_type == "postgresql";

    // The objects appear; nothing of the local runtime (no process, no instance directory).
    wait_for("the server's objects", || {
        if postgres {
            fake.get(CNPG, "clusters", NS, &name).is_some()
        } else {
            fake.get("apps/v1", "statefulsets", NS, &name).is_some()
        }
    });
    let (st, creds) = cp.call("GET", &format!("/api/v1/databases/{id}/credentials"), None);
    assert_eq!(st, 409, "credentials before the server first ran: {creds}");
    assert_eq!(
        wait_status(cp, &id, "provisioning")["status"],
        "provisioning"
    );
    let password;
    if postgres {
        let c = fake.get(CNPG, "clusters", NS, &name).unwrap();
        assert_eq!(c["spec"]["instances"], replicas, "{c}");
        assert_eq!(c["spec"]["storage"]["size"], "20Gi");
        assert_eq!(c["spec"]["resources"]["limits"]["memory"], "2048Mi");
        assert_eq!(
            c["spec"]["bootstrap"]["initdb"]["database"],
            "k8s_postgresql"
        );
        let secret = fake
            .get("v1", "secrets", NS, &format!("{name}-app"))
            .expect("the basic-auth Secret");
        assert_eq!(secret["type"], "kubernetes.io/basic-auth");
        assert_eq!(secret["stringData"]["username"], "app_user");
        password = secret["stringData"]["password"]
            .as_str()
            .unwrap()
            .to_string();
    } else {
        let sts = fake.get("apps/v1", "statefulsets", NS, &name).unwrap();
        assert_eq!(sts["spec"]["replicas"], 1);
        assert!(
            fake.get("v1", "services", NS, &name).is_some(),
            "headless Service"
        );
        let secret = fake.get("v1", "secrets", NS, &name).expect("the Secret");
        let b64 = secret["data"]["password"].as_str().unwrap();
        password = String::from_utf8(base64_decode(b64)).unwrap();
        let spec = serde_json::to_string(&sts["spec"]["template"]).unwrap();
        assert!(
            !spec.contains(&password),
            "the password is in the pod template"
        );
        if db_type == "mysql" {
            // Root's password is Refract's admin credential from the Secret: never one the
            // image generates (it would print it to the pod's log).
            assert!(!spec.contains("RANDOM_ROOT_PASSWORD"), "{spec}");
            let b64 = secret["data"]["root-password"]
                .as_str()
                .expect("root-password");
            let root = String::from_utf8(base64_decode(b64)).unwrap();
            assert!(root.len() >= 20 && root != password, "{root:?}");
            assert!(
                !spec.contains(&root),
                "the root password is in the pod template"
            );
        }
    }
    assert!(password.len() >= 20, "a generated password: {password:?}");

    // Playing CloudNativePG / the StatefulSet controller: ready → running, endpoint in the
    // credentials.
    let ready = |fake: &FakeApiServer| {
        if postgres {
            cnpg_ready(fake, &name);
        } else {
            fake.run_statefulset_pods(NS, &name, PodState::Ready("10.1.0.7".into()));
        }
    };
    ready(fake);
    wait_status(cp, &id, "running");
    let (st, creds) = cp.call("GET", &format!("/api/v1/databases/{id}/credentials"), None);
    assert_eq!(st, 200, "{creds}");
    let (host, port) = match db_type {
        "postgresql" => (format!("{name}-rw.{NS}.svc"), 5432),
        "mysql" => (format!("{name}-0.{name}.{NS}.svc"), 3306),
        _ => (format!("{name}-0.{name}.{NS}.svc"), 6379),
    };
    assert_eq!(creds["host"], host.as_str(), "{creds}");
    assert_eq!(creds["port"], port, "{creds}");
    assert_eq!(creds["password"], password.as_str());
    let url = creds["connection_string"].as_str().unwrap();
    assert!(url.contains(&format!("@{host}:{port}")), "{url}");

    // A control-plane restart (SIGKILL) adopts the server: still running, its objects left as
    // they were (same uid, same generation: nothing recreated or changed).
    let kind = if postgres {
        (CNPG, "clusters")
    } else {
        ("apps/v1", "statefulsets")
    };
    let before = fake.get(kind.0, kind.1, NS, &name).unwrap();
    cp.restart();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(wait_status(cp, &id, "running")["status"], "running");
    let after = fake.get(kind.0, kind.1, NS, &name).unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "{after}"
    );
    let cp = &*cp;

    // Another customer: the same 404 as an unknown id, for every route.
    for (method, path) in [
        ("GET", format!("/api/v1/databases/{id}")),
        ("GET", format!("/api/v1/databases/{id}/credentials")),
        ("DELETE", format!("/api/v1/databases/{id}")),
        ("POST", format!("/api/v1/databases/{id}/actions")),
    ] {
        let (st, v) = call_as(cp, other_key, method, &path);
        assert_eq!(st, 404, "{method} {path} as another customer: {v}");
        assert_eq!(v["error"], "not_found", "{v}");
    }

    // Stop: hibernation / 0 replicas, status `stopped`.
    action(cp, &id, "stop");
    wait_status(cp, &id, "stopped");
    if postgres {
        let c = fake.get(CNPG, "clusters", NS, &name).unwrap();
        assert_eq!(
            c["metadata"]["annotations"]["cnpg.io/hibernation"], "on",
            "{c}"
        );
        // CloudNativePG stops the instances.
        cnpg_status(
            fake,
            &name,
            json!({"phase": "Cluster hibernated", "readyInstances": 0,
            "conditions": [{"type": "Ready", "status": "False"}]}),
        );
    } else {
        let sts = fake.get("apps/v1", "statefulsets", NS, &name).unwrap();
        assert_eq!(sts["spec"]["replicas"], 0, "{sts}");
        assert!(fake
            .run_statefulset_pods(NS, &name, PodState::NotReady)
            .is_empty());
    }
    // Still stopped on later passes (not woken by the reconciler).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(wait_status(cp, &id, "stopped")["status"], "stopped");

    // Start: applied again (hibernation off / 1 replica), running once ready.
    action(cp, &id, "start");
    wait_for("the server woken", || {
        if postgres {
            fake.get(CNPG, "clusters", NS, &name).unwrap()["metadata"]["annotations"]
                ["cnpg.io/hibernation"]
                .is_null()
        } else {
            fake.get("apps/v1", "statefulsets", NS, &name).unwrap()["spec"]["replicas"] == 1
        }
    });
    assert_eq!(
        wait_status(cp, &id, "provisioning")["status"],
        "provisioning"
    );
    ready(fake);
    wait_status(cp, &id, "running");

    // A crash, as the platform reports it: `error` with the reason; back to running when ready.
    let reason = if postgres {
        cnpg_status(
            fake,
            &name,
            json!({"phase": "Failed", "phaseReason": "instance refract-s-1 in CrashLoopBackOff: exit code 1",
            "readyInstances": 0, "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        "CrashLoopBackOff: exit code 1"
    } else {
        fake.run_statefulset_pods(NS, &name, PodState::CrashLoop(137));
        "OOMKilled"
    };
    let v = wait_status(cp, &id, "error");
    let message = v["error_message"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{v}");
    ready(fake);
    wait_status(cp, &id, "running");

    // Delete: every object, volume claims included. The claims are the controllers' (the
    // StatefulSet's template, CloudNativePG's instances): the test writes them as they would.
    let claim = if postgres {
        json!({"metadata": {"name": format!("{name}-1"), "labels": {"cnpg.io/cluster": name}}})
    } else {
        json!({"metadata": {"name": format!("data-{name}-0"), "labels": {"refract.dev/server": oid}}})
    };
    fake.put("v1", "persistentvolumeclaims", NS, claim);
    let (st, v) = cp.call("DELETE", &format!("/api/v1/databases/{id}"), None);
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["status"], "destroyed");
    wait_for("the server's objects deleted", || {
        objects_of(fake, &name)
            .iter()
            .all(|o| o.starts_with("pods/"))
    });
    // Playing the garbage collector: the deleted StatefulSet's pods go.
    for pod in objects_of(fake, &name) {
        let pod = pod.strip_prefix("pods/").unwrap();
        fake.remove("v1", "pods", NS, pod);
    }
    assert!(objects_of(fake, &oid).is_empty(), "{:?}", fake.names(NS));
    let (st, v) = cp.call("GET", &format!("/api/v1/databases/{id}/credentials"), None);
    assert_eq!(st, 409, "credentials of a destroyed database: {v}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn managed_servers_on_the_fake_api_server() {
    let mut s = setup();
    let other = other_customer(&s.cp);
    // PostgreSQL with a standby: CloudNativePG's instances.
    server_lifecycle(&mut s, &other, "postgresql", 2);
    server_lifecycle(&mut s, &other, "mysql", 1);
    server_lifecycle(&mut s, &other, "redis", 1);
}

/// What needs local processes is refused with a 422 naming the runtime, never attempted.
#[test]
fn local_only_features_are_refused_on_kubernetes() {
    let s = setup();
    let (fake, cp) = (&s.fake, &s.cp);
    let create = |body: Value| cp.call("POST", "/api/v1/databases", Some(body));
    let (st, v) = create(
        json!({"name": "m", "db_type": "mongodb", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}),
    );
    assert_refused_on_kubernetes(st, &v, "kubernetes runtime", "a MongoDB server");
    let (st, v) = create(
        json!({"name": "r", "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "replicas": 2}),
    );
    assert_refused_on_kubernetes(
        st,
        &v,
        "not supported on the kubernetes runtime",
        "Redis with a standby",
    );
    // Growing a StatefulSet server's storage (its claim template cannot change), or giving it
    // a standby.
    let (st, v) = create(
        json!({"name": "r1", "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}),
    );
    assert_eq!(st, 201, "{v}");
    let redis = v["id"].as_str().unwrap().to_string();
    for body in [json!({"storage_gb": 30}), json!({"replicas": 2})] {
        let (st, v) = cp.call(
            "PATCH",
            &format!("/api/v1/databases/{redis}"),
            Some(body.clone()),
        );
        assert_refused_on_kubernetes(
            st,
            &v,
            "not supported on the kubernetes runtime",
            &body.to_string(),
        );
    }
    let (st, v) = create(
        json!({"name": "p", "db_type": "postgresql", "version": "16", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"}),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let name = format!("refract-s-{}", id.replace('_', "-"));
    wait_for("the Cluster", || {
        fake.get(CNPG, "clusters", NS, &name).is_some()
    });
    assert_eq!(
        fake.get(CNPG, "clusters", NS, &name).unwrap()["spec"]["imageName"],
        "ghcr.io/cloudnative-pg/postgresql:16"
    );
    cnpg_ready(fake, &name);
    wait_status(cp, &id, "running");
    for (method, path, body) in [
        (
            "POST",
            format!("/api/v1/databases/{id}/pools"),
            json!({"name": "web", "mode": "transaction", "size": 5}),
        ),
        ("GET", format!("/api/v1/databases/{id}/pools"), Value::Null),
        (
            "POST",
            format!("/api/v1/databases/{id}/backups"),
            Value::Null,
        ),
        ("GET", format!("/api/v1/databases/{id}/ca"), Value::Null),
        (
            "POST",
            format!("/api/v1/databases/{id}/connection"),
            json!({}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (st, v) = cp.call(method, &path, body);
        assert_refused_on_kubernetes(
            st,
            &v,
            "not supported on the kubernetes runtime yet",
            &format!("{method} {path}"),
        );
        assert_eq!(v["error"], "invalid_request", "{v}");
    }
    // Growing to three instances is CloudNativePG's: the Cluster follows.
    let (st, v) = cp.call(
        "PATCH",
        &format!("/api/v1/databases/{id}"),
        Some(json!({"replicas": 3})),
    );
    assert_eq!(st, 200, "{v}");
    wait_for("3 instances", || {
        fake.get(CNPG, "clusters", NS, &name).unwrap()["spec"]["instances"] == 3
    });
    assert!(
        fake.get(CNPG, "clusters", NS, &name).unwrap()["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_null(),
        "more instances restart nothing"
    );
    // A new plan: the Cluster gets its resources, then CloudNativePG's rolling restart.
    cnpg_ready(fake, &name);
    wait_status(cp, &id, "running");
    let (st, v) = cp.call(
        "PATCH",
        &format!("/api/v1/databases/{id}"),
        Some(json!({"plan_id": "db-s-2vcpu-4gb", "storage_gb": 40})),
    );
    assert_eq!(st, 200, "{v}");
    wait_for("the new plan and a restart", || {
        let c = fake.get(CNPG, "clusters", NS, &name).unwrap();
        c["spec"]["resources"]["limits"]["memory"] == "4096Mi"
            && c["spec"]["resources"]["limits"]["cpu"] == "2"
            && c["spec"]["storage"]["size"] == "40Gi"
            && c["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string()
    });
    // The `restart` action: a new restart annotation (seconds: wait for the next one).
    let first = fake.get(CNPG, "clusters", NS, &name).unwrap()["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .clone();
    std::thread::sleep(Duration::from_millis(1100));
    let (st, v) = cp.call(
        "POST",
        &format!("/api/v1/databases/{id}/actions"),
        Some(json!({"type": "restart"})),
    );
    assert_eq!(st, 202, "{v}");
    wait_for("a second restart", || {
        let c = fake.get(CNPG, "clusters", NS, &name).unwrap();
        let at = &c["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
        at.is_string() && *at != first
    });
    // Once: no restart on later passes.
    let second = fake.get(CNPG, "clusters", NS, &name).unwrap()["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .clone();
    std::thread::sleep(Duration::from_millis(2500));
    let c = fake.get(CNPG, "clusters", NS, &name).unwrap();
    assert_eq!(
        c["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        second
    );
}

/// `--managed-allow-plaintext` changes local servers' settings only: on Kubernetes it is refused
/// at start rather than silently ignored.
#[test]
fn managed_allow_plaintext_is_refused_on_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::refract_bin())
        .args([
            "serve",
            "--runtime",
            "kubernetes",
            "--managed-allow-plaintext",
        ])
        .args(["--engine-image", "registry.example/refract:1", "--data-dir"])
        .arg(dir.path())
        .env_remove("REFRACT_MASTER_KEY")
        .env_remove("REFRACT_MANAGED_ALLOW_PLAINTEXT")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--managed-allow-plaintext") && stderr.contains("kubernetes"),
        "{stderr}"
    );
}
