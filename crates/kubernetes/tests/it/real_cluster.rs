//! Against a real cluster: run only with `KUBECONFIG` set, `--ignored`
//! (`KUBECONFIG=~/.kube/config cargo test -p refract-kubernetes -- --ignored`). Uses the
//! namespace `REFRACT_TEST_NAMESPACE` (default `refract-test`, which must exist) and creates one
//! engine Deployment with an image that does not exist, to see the pull error come back, and one
//! managed Redis server.

use std::time::Duration;

use refract_kubernetes::KubernetesDriver;
use refract_runtime::{Driver, InstanceStatus};

use crate::common::*;

#[tokio::test]
#[ignore = "needs a real cluster: set KUBECONFIG and run with --ignored"]
async fn a_missing_image_is_reported_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set");
        return;
    }
    let ns = std::env::var("REFRACT_TEST_NAMESPACE").unwrap_or_else(|_| "refract-test".into());
    let driver = KubernetesDriver::connect(Some(ns), "registry.invalid/refract:none".into())
        .await
        .unwrap();
    let id = "0000aaaa-0000-4000-8000-0000000000ff";
    let _ = driver.stop(id, Duration::from_secs(1)).await;
    let _ = driver.remove(id).await;
    driver.start(&engine_spec(id, 1)).await.unwrap();
    let mut last = InstanceStatus::NotFound;
    for _ in 0..60 {
        last = driver.status(id).await.unwrap();
        if matches!(last, InstanceStatus::Exited { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let logs = driver.logs(id, 50).await;
    driver.stop(id, Duration::from_secs(1)).await.unwrap();
    driver.remove(id).await.unwrap();
    driver.remove_group(DB).await.unwrap();
    assert!(matches!(last, InstanceStatus::Exited { .. }), "{last:?}");
    assert!(logs.contains("Image") || logs.contains("image"), "{logs}");
}

/// A managed Redis (`redis:7.2` StatefulSet) through the managed crate's runtime on a real
/// cluster: ready, stopped, started again, deleted with its claim. Needs a default StorageClass.
#[tokio::test]
#[ignore = "needs a real cluster: set KUBECONFIG and run with --ignored"]
async fn a_managed_redis_runs_on_a_real_cluster() {
    use refract_kubernetes::KubernetesServers;
    use refract_managed::{DbType, ServerRuntime, ServerSpec, ServerState};

    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set");
        return;
    }
    let ns = std::env::var("REFRACT_TEST_NAMESPACE").unwrap_or_else(|_| "refract-test".into());
    let client = kube::Client::try_default().await.unwrap();
    let servers = KubernetesServers::new(client, ns);
    let spec = ServerSpec {
        id: "db_realcluster1".into(),
        db_type: DbType::Redis,
        version: "7.2".into(),
        nodes: 1,
        storage_gb: 1,
        vcpus: 1,
        memory_mb: 256,
        database: "app".into(),
        user: "app_user".into(),
        password: "realclusterpassword0123".into(),
        admin_password: String::new(),
    };
    let wait_for = |want: ServerState| {
        let servers = servers.clone();
        async move {
            let mut last = None;
            for _ in 0..120 {
                last = servers
                    .state("db_realcluster1", DbType::Redis)
                    .await
                    .unwrap();
                if last.as_ref() == Some(&want) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            panic!("waited 4 minutes for {want:?}; last {last:?}");
        }
    };
    servers.apply(&spec).await.unwrap();
    wait_for(ServerState::Ready).await;
    servers.stop(&spec.id, spec.db_type).await.unwrap();
    wait_for(ServerState::Stopped).await;
    servers.apply(&spec).await.unwrap();
    wait_for(ServerState::Ready).await;
    servers.delete(&spec.id, spec.db_type).await.unwrap();
    assert_eq!(servers.state(&spec.id, spec.db_type).await.unwrap(), None);
}
