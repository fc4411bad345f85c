//! The driver through `kube::Client` against [`FakeApiServer`] (a test double of the API server,
//! not a cluster): the test plays the Deployment controller and the kubelet with `run_pods`.

use std::time::Duration;

use refract_kubernetes::{objects, FakeApiServer, PodState};
use refract_runtime::{Driver, InstanceStatus, Network, RuntimeError, SpecFile};

use crate::common::*;

fn dep_name(id: &str) -> String {
    objects::instance_name(id)
}

#[tokio::test]
async fn provision_run_crash_stop_and_remove() {
    let fake = FakeApiServer::new();
    let d = driver(&fake);
    assert_eq!(
        d.network(),
        Network::Cluster {
            port: 8080,
            control_port: 8081
        }
    );
    assert_eq!(d.status(ID).await.unwrap(), InstanceStatus::NotFound);

    // The keys file first (the control plane writes it before it launches).
    let path = d
        .put_group_file(DB, &SpecFile::new("keys.json", "{\"keys\": []}"))
        .await
        .unwrap();
    assert_eq!(path.as_deref(), Some("/var/run/refract/keys/keys.json"));

    d.start(&engine_spec(ID, 3)).await.unwrap();
    let mut names = fake.names(NS);
    names.sort();
    let n = dep_name(ID);
    let mut want = vec![
        format!("configmaps/{n}"),
        format!("deployments/{n}"),
        format!("secrets/{n}"),
        format!("secrets/refract-keys-{DB}"),
        format!("services/refract-db-{DB}"),
    ];
    want.sort();
    assert_eq!(names, want);
    // Ownership: instance objects → Deployment → the database's Service.
    let dep = fake.get("apps/v1", "deployments", NS, &n).unwrap();
    assert_eq!(dep["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(dep["spec"]["replicas"], 3);
    let cm = fake.get("v1", "configmaps", NS, &n).unwrap();
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        cm["metadata"]["ownerReferences"][0]["uid"],
        dep["metadata"]["uid"]
    );
    assert_eq!(
        d.group_endpoint(DB).unwrap(),
        format!("http://refract-db-{DB}.{NS}.svc:8080")
    );

    // No pods yet, then pods loading: starting.
    assert_eq!(d.status(ID).await.unwrap(), InstanceStatus::Starting);
    assert!(matches!(
        d.start(&engine_spec(ID, 3)).await,
        Err(RuntimeError::AlreadyRunning(_))
    ));
    fake.run_pods(NS, &n, PodState::NotReady);
    assert_eq!(d.status(ID).await.unwrap(), InstanceStatus::Starting);
    // Ready (the snapshot is loaded in every replica): running, at a pod's control address.
    fake.run_pods(NS, &n, PodState::Ready("10.1.2.3".into()));
    assert_eq!(
        d.status(ID).await.unwrap(),
        InstanceStatus::Running {
            endpoint: "http://10.1.2.3:8081".into()
        }
    );
    assert_eq!(d.list().await.unwrap().len(), 1);

    // OOMKilled in a loop: exited with signal 9, and the logs say why.
    let pods = fake.run_pods(NS, &n, PodState::CrashLoop(137));
    fake.set_log(NS, &pods[0], "line 1\nline 2: loading table orders\n");
    match d.status(ID).await.unwrap() {
        InstanceStatus::Exited { code, signal, .. } => assert_eq!((code, signal), (None, Some(9))),
        other => panic!("{other:?}"),
    }
    let logs = d.logs(ID, 20).await;
    assert!(logs.contains("loading table orders"), "{logs}");
    assert!(logs.contains("OOMKilled"), "{logs}");

    // The lifecycle restarts an exited instance in place: same objects, a new pod template.
    let before = fake.get("apps/v1", "deployments", NS, &n).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    d.start(&engine_spec(ID, 3)).await.unwrap();
    let after = fake.get("apps/v1", "deployments", NS, &n).unwrap();
    assert_ne!(
        before["spec"]["template"]["metadata"]["annotations"],
        after["spec"]["template"]["metadata"]["annotations"],
        "a restart rolls the pods"
    );
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    fake.run_pods(NS, &n, PodState::Ready("10.1.2.4".into()));
    assert!(d.status(ID).await.unwrap().is_alive());

    // Removing a running instance is refused; stop scales to 0, then remove deletes it all.
    assert!(matches!(
        d.remove(ID).await,
        Err(RuntimeError::StillRunning(_))
    ));
    let st = d.stop(ID, Duration::from_secs(3)).await.unwrap();
    assert!(matches!(st, InstanceStatus::Exited { .. }), "{st:?}");
    let dep = fake.get("apps/v1", "deployments", NS, &n).unwrap();
    assert_eq!(dep["spec"]["replicas"], 0);
    assert_eq!(
        dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        10
    );
    fake.run_pods(NS, &n, PodState::NotReady);
    d.remove(ID).await.unwrap();
    d.remove(ID).await.unwrap(); // idempotent
    assert_eq!(d.status(ID).await.unwrap(), InstanceStatus::NotFound);
    // The database's objects stay until its group goes.
    d.remove_group(DB).await.unwrap();
    let left: Vec<String> = fake
        .names(NS)
        .into_iter()
        .filter(|n| !n.starts_with("pods/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn image_pull_errors_end_the_start_with_a_reason() {
    let fake = FakeApiServer::new();
    let d = driver(&fake);
    d.start(&engine_spec(ID, 1)).await.unwrap();
    fake.run_pods(NS, &dep_name(ID), PodState::ImagePullBackOff);
    assert!(matches!(
        d.status(ID).await.unwrap(),
        InstanceStatus::Exited {
            code: None,
            signal: None,
            ..
        }
    ));
    assert!(d.logs(ID, 10).await.contains("ImagePullBackOff"));
}

#[tokio::test]
async fn blue_green_two_instances_share_the_database_service() {
    let fake = FakeApiServer::new();
    let d = driver(&fake);
    let new = "3f6c2a1e-0000-4000-8000-000000000002";
    d.start(&engine_spec(ID, 1)).await.unwrap();
    d.start(&engine_spec(new, 1)).await.unwrap();
    assert_eq!(fake.list("v1", "services", NS).len(), 1);
    assert_eq!(fake.list("apps/v1", "deployments", NS).len(), 2);
    d.stop(ID, Duration::from_secs(1)).await.unwrap();
    d.remove(ID).await.unwrap();
    assert_eq!(fake.list("apps/v1", "deployments", NS).len(), 1);
    assert_eq!(fake.list("v1", "services", NS).len(), 1);
}

#[tokio::test]
async fn the_fake_answers_like_an_api_server() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let fake = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(kube::Client::new(fake.router(), NS), NS);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let err = api.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));
    // A stale resourceVersion is a conflict.
    let mut stale = created.clone();
    api.replace("a", &PostParams::default(), &created)
        .await
        .unwrap();
    stale.data = Some([("k".to_string(), "w".to_string())].into_iter().collect());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let err = api.get("b").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));
    let listed = api
        .list(&kube::api::ListParams::default().labels("x=1"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let listed = api
        .list(&kube::api::ListParams::default().labels("x=2"))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

/// The same fake on a loopback port, through a kubeconfig (what `refract serve --runtime
/// kubernetes` does with `KUBECONFIG`).
#[tokio::test]
async fn through_a_kubeconfig_on_loopback() {
    let fake = FakeApiServer::new();
    let server = fake.serve().await.unwrap();
    let yaml = FakeApiServer::kubeconfig(&server, NS);
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let d = refract_kubernetes::KubernetesDriver::new(client, settings());
    d.start(&engine_spec(ID, 1)).await.unwrap();
    assert!(fake
        .get("apps/v1", "deployments", NS, &dep_name(ID))
        .is_some());
}
