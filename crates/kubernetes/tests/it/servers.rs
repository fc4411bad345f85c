//! Managed servers' objects through `ServerClient` against the fake API server (a test double);
//! the test plays CloudNativePG and the StatefulSet controller by writing `status`.

use refract_kubernetes::servers::{ServerClient, ServerPlan, ServerState};
use refract_kubernetes::FakeApiServer;
use refract_managed::DbType;
use serde_json::json;

use crate::common::{server_plan, NS, SERVER_ID, SERVER_PASSWORD};

const ID: &str = SERVER_ID;
const NAME: &str = "refract-s-5e5e5e5e-0000-4000-8000-000000000005";

fn client(fake: &FakeApiServer) -> ServerClient {
    ServerClient::new(kube::Client::new(fake.router(), NS), NS)
}

/// What `c` reports for the server of plan `p`.
async fn state_of(c: &ServerClient, p: &ServerPlan) -> Option<ServerState> {
    c.state(ID, p.spec.db_type).await.unwrap()
}

/// Deleting the server of plan `p` removes every object of it, `claim` too: a
/// PersistentVolumeClaim that the platform (not the client) made for its data.
async fn delete_removes_everything(
    fake: &FakeApiServer,
    c: &ServerClient,
    p: &ServerPlan,
    claim: serde_json::Value,
) {
    fake.put("v1", "persistentvolumeclaims", NS, claim);
    c.delete(ID, p.spec.db_type).await.unwrap();
    assert!(fake.names(NS).is_empty(), "{:?}", fake.names(NS));
}

#[tokio::test]
async fn postgres_cluster_provision_ready_stop_start_delete() {
    let fake = FakeApiServer::new();
    let c = client(&fake);
    let p = server_plan(DbType::Postgresql, "15");
    assert_eq!(state_of(&c, &p).await, None);
    c.apply(&p).await.unwrap();
    let cluster = fake
        .get("postgresql.cnpg.io/v1", "clusters", NS, NAME)
        .unwrap();
    assert_eq!(cluster["spec"]["instances"], 2);
    let secret = fake
        .get("v1", "secrets", NS, &format!("{NAME}-app"))
        .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");
    assert_eq!(
        state_of(&c, &p).await,
        Some(ServerState::Provisioning { ready: 0 })
    );
    // Playing CloudNativePG: both instances ready.
    let mut obj = cluster.clone();
    obj["status"] =
        json!({"readyInstances": 2, "conditions": [{"type": "Ready", "status": "True"}]});
    fake.put("postgresql.cnpg.io/v1", "clusters", NS, obj);
    assert_eq!(state_of(&c, &p).await, Some(ServerState::Ready));
    // Stop = hibernation; apply again wakes it.
    c.stop(ID, p.spec.db_type).await.unwrap();
    assert_eq!(state_of(&c, &p).await, Some(ServerState::Stopped));
    c.apply(&p).await.unwrap();
    assert_eq!(state_of(&c, &p).await, Some(ServerState::Ready));
    // Delete removes the cluster, the secret and the claims CNPG made.
    delete_removes_everything(
        &fake,
        &c,
        &p,
        json!({"metadata": {"name": format!("{NAME}-1"), "labels": {"cnpg.io/cluster": NAME}}}),
    )
    .await;
}

#[tokio::test]
async fn mysql_statefulset_provision_ready_stop_delete() {
    let fake = FakeApiServer::new();
    let c = client(&fake);
    let p = server_plan(DbType::Mysql, "10.11");
    c.apply(&p).await.unwrap();
    let mut names = fake.names(NS);
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("secrets/{NAME}"),
            format!("services/{NAME}"),
            format!("statefulsets/{NAME}"),
        ]
    );
    assert_eq!(
        state_of(&c, &p).await,
        Some(ServerState::Provisioning { ready: 0 })
    );
    let mut s = fake.get("apps/v1", "statefulsets", NS, NAME).unwrap();
    s["status"] = json!({"replicas": 1, "readyReplicas": 1});
    fake.put("apps/v1", "statefulsets", NS, s);
    assert_eq!(state_of(&c, &p).await, Some(ServerState::Ready));
    c.stop(ID, p.spec.db_type).await.unwrap();
    assert_eq!(state_of(&c, &p).await, Some(ServerState::Stopped));
    delete_removes_everything(
        &fake,
        &c,
        &p,
        json!({"metadata": {"name": format!("data-{NAME}-0"), "labels": {"refract.dev/server": ID}}}),
    )
    .await;
}

#[tokio::test]
async fn a_crashing_server_pod_is_failed_with_its_reason_and_restart_rolls_the_pods() {
    let fake = FakeApiServer::new();
    let c = client(&fake);
    let p = server_plan(DbType::Redis, "7.2");
    c.apply(&p).await.unwrap();
    // Playing the StatefulSet controller and the kubelet: the pod is OOM-killed in a loop.
    let pods = fake.run_statefulset_pods(NS, NAME, refract_kubernetes::PodState::CrashLoop(137));
    assert_eq!(pods, vec![format!("{NAME}-0")]);
    match state_of(&c, &p).await {
        Some(ServerState::Failed(why)) => {
            assert!(
                why.contains("CrashLoopBackOff") && why.contains("OOMKilled"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Starting (not ready, nothing failing) is not a failure.
    fake.run_statefulset_pods(NS, NAME, refract_kubernetes::PodState::NotReady);
    assert_eq!(
        state_of(&c, &p).await,
        Some(ServerState::Provisioning { ready: 0 })
    );
    c.restart(ID, p.spec.db_type).await.unwrap();
    let s = fake.get("apps/v1", "statefulsets", NS, NAME).unwrap();
    assert!(
        s["spec"]["template"]["metadata"]["annotations"]["refract.dev/restarted-at"].is_string(),
        "{s}"
    );
    // Applying again (a new plan, a control-plane start) keeps it: no second restart.
    let at = s["spec"]["template"]["metadata"]["annotations"]["refract.dev/restarted-at"].clone();
    c.apply(&p).await.unwrap();
    let s = fake.get("apps/v1", "statefulsets", NS, NAME).unwrap();
    assert_eq!(
        s["spec"]["template"]["metadata"]["annotations"]["refract.dev/restarted-at"],
        at
    );
    // CloudNativePG's restart is an annotation on the Cluster.
    let pg = server_plan(DbType::Postgresql, "15");
    c.apply(&pg).await.unwrap();
    c.restart(ID, pg.spec.db_type).await.unwrap();
    let cluster = fake
        .get("postgresql.cnpg.io/v1", "clusters", NS, NAME)
        .unwrap();
    let at = cluster["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].clone();
    assert!(at.is_string(), "{cluster}");
    c.stop(ID, pg.spec.db_type).await.unwrap();
    c.apply(&pg).await.unwrap();
    let cluster = fake
        .get("postgresql.cnpg.io/v1", "clusters", NS, NAME)
        .unwrap();
    let annotations = &cluster["metadata"]["annotations"];
    assert_eq!(annotations["kubectl.kubernetes.io/restartedAt"], at);
    assert!(annotations["cnpg.io/hibernation"].is_null(), "{cluster}");
}

#[tokio::test]
async fn without_cloudnativepg_the_error_says_to_install_it() {
    let fake = FakeApiServer::new().without_resource("postgresql.cnpg.io/v1", "clusters");
    let c = client(&fake);
    let e = c
        .apply(&server_plan(DbType::Postgresql, "15"))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("install CloudNativePG"), "{m}");
    assert!(!m.contains(SERVER_PASSWORD), "{m}");
}
