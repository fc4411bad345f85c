//! The objects built for a database's engine, compared with reviewed YAML files in
//! `tests/golden/` (regenerate with `REFRACT_UPDATE_GOLDEN=1`, then review the diff).

use std::path::PathBuf;

use refract_kubernetes::objects;

use crate::common::*;

fn check(name: &str, yaml: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("REFRACT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, yaml).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (REFRACT_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(yaml, want, "{name} differs from its golden file");
}

fn yaml<T: serde::Serialize>(v: &T) -> String {
    serde_yaml_ng::to_string(v).unwrap()
}

#[test]
fn engine_objects_match_golden_files() {
    let built =
        objects::engine_objects(&engine_spec(ID, 3), &settings(), "2026-12-04T10:00:00.000Z")
            .unwrap();
    check("engine-deployment.yaml", &yaml(&built.deployment));
    check("engine-configmap.yaml", &yaml(&built.config_map));
    check("engine-secret.yaml", &yaml(&built.secret));
    check(
        "database-service.yaml",
        &yaml(&objects::group_service(DB, &settings()).unwrap()),
    );
    check(
        "database-keys-secret.yaml",
        &yaml(
            &objects::group_keys_secret(DB, &settings(), "keys.json", b"{\"keys\": []}").unwrap(),
        ),
    );
}

#[test]
fn replicas_3_make_one_deployment_of_3_and_one_service() {
    let built = objects::engine_objects(&engine_spec(ID, 3), &settings(), "t").unwrap();
    assert_eq!(built.deployment.spec.as_ref().unwrap().replicas, Some(3));
    let svc = objects::group_service(DB, &settings()).unwrap();
    let sel = svc.spec.unwrap().selector.unwrap();
    // The Service selects the database's pods, whatever instance (engine) they belong to.
    assert_eq!(sel.get(objects::LABEL_GROUP).map(String::as_str), Some(DB));
    assert!(!sel.contains_key(objects::LABEL_INSTANCE));
}

/// The source password and the admin token never appear in the pod spec (env values, args,
/// command, anything): they are in the Secret, mounted as files.
#[test]
fn secrets_never_appear_in_the_pod_spec() {
    let built = objects::engine_objects(&engine_spec(ID, 1), &settings(), "t").unwrap();
    let pod_spec = built.deployment.spec.unwrap().template.spec.unwrap();
    let text = serde_json::to_string(&pod_spec).unwrap();
    for secret in [PASSWORD, TOKEN, "warn,refract_engine=info"] {
        assert!(
            !text.contains(secret),
            "{secret:?} is in the pod spec: {text}"
        );
    }
    let c = &pod_spec.containers[0];
    for e in c.env.iter().flatten() {
        assert!(
            e.value.is_none(),
            "env {} has a value in the pod spec",
            e.name
        );
        assert!(e.value_from.as_ref().unwrap().secret_key_ref.is_some());
    }
    let cm = serde_json::to_string(&built.config_map).unwrap();
    assert!(!cm.contains(PASSWORD) && !cm.contains(TOKEN));
    let secret = built.secret.data.unwrap();
    assert!(secret.contains_key("source-password") && secret.contains_key("admin-token"));
}

#[test]
fn resources_come_from_the_spec() {
    let built = objects::engine_objects(&engine_spec(ID, 1), &settings(), "t").unwrap();
    let c = &built
        .deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0];
    let r = c.resources.as_ref().unwrap();
    for q in [r.requests.as_ref().unwrap(), r.limits.as_ref().unwrap()] {
        assert_eq!(q["memory"].0, "512Mi");
        assert_eq!(q["cpu"].0, "250m");
    }
}

#[test]
fn servers_and_bad_names_are_refused() {
    let mut spec = engine_spec(ID, 1);
    spec.kind = refract_runtime::InstanceKind::Server;
    assert!(objects::engine_objects(&spec, &settings(), "t").is_err());
    let spec = engine_spec("Not_A_Name", 1);
    assert!(objects::engine_objects(&spec, &settings(), "t").is_err());
}

mod servers {
    use refract_kubernetes::servers::{self, ServerObjects};
    use refract_managed::DbType;

    use super::{check, yaml};

    use crate::common::{
        server_plan as plan, SERVER_PASSWORD as PW, SERVER_ROOT_PASSWORD as ROOT_PW,
    };

    #[test]
    fn postgres_is_a_cnpg_cluster() {
        let ServerObjects::Cnpg { secret, cluster } =
            servers::server_objects(&plan(DbType::Postgresql, "15"), "refract").unwrap()
        else {
            panic!("not a CNPG cluster")
        };
        check("server-postgres-cluster.yaml", &yaml(&cluster));
        check("server-postgres-secret.yaml", &yaml(&secret));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert!(!cluster.to_string().contains(PW));
        assert_eq!(
            servers::server_endpoint(&plan(DbType::Postgresql, "15"), "refract"),
            "refract-s-5e5e5e5e-0000-4000-8000-000000000005-rw.refract.svc:5432"
        );
    }

    #[test]
    fn mysql_and_redis_are_statefulsets_without_passwords_in_the_pod_spec() {
        for (engine, version, file) in [
            (DbType::Mysql, "10.11", "server-mysql-statefulset.yaml"),
            (DbType::Redis, "7.0", "server-redis-statefulset.yaml"),
        ] {
            let ServerObjects::StatefulSet {
                statefulset,
                service,
                secret,
            } = servers::server_objects(&plan(engine, version), "refract").unwrap()
            else {
                panic!("not a StatefulSet")
            };
            check(file, &yaml(&statefulset));
            assert_eq!(
                service.spec.as_ref().unwrap().cluster_ip.as_deref(),
                Some("None")
            );
            let spec = statefulset.spec.unwrap();
            // One server pod: standbys are CNPG's only.
            assert_eq!(spec.replicas, Some(1));
            assert!(!serde_json::to_string(&spec.template).unwrap().contains(PW));
            assert_eq!(spec.volume_claim_templates.unwrap().len(), 1);
            assert!(secret.data.unwrap().contains_key("password"));
        }
    }

    /// The MariaDB image's `MARIADB_RANDOM_ROOT_PASSWORD` prints the root password it generates
    /// to the pod's log (and `root@'%'` logs in with it from anywhere): the root password is
    /// Refract's, from the Secret, and a plan without one is refused.
    /// Managed PostgreSQL on CloudNativePG refuses plain text, as on the local runtime: a
    /// `hostnossl … reject` user rule ahead of CNPG's default `host all all all` rule.
    #[test]
    fn postgres_on_cnpg_refuses_plain_text() {
        let p = plan(DbType::Postgresql, "16");
        let ServerObjects::Cnpg { cluster, .. } = servers::server_objects(&p, "refract").unwrap()
        else {
            panic!("not a CNPG Cluster")
        };
        let hba = cluster["spec"]["postgresql"]["pg_hba"].as_array().unwrap();
        assert_eq!(
            hba.first().unwrap(),
            "hostnossl all all all reject",
            "{hba:?}"
        );
    }

    #[test]
    fn mysql_root_password_comes_from_the_secret_never_the_log() {
        let mut p = plan(DbType::Mysql, "10.11");
        let ServerObjects::StatefulSet {
            statefulset,
            secret,
            ..
        } = servers::server_objects(&p, "refract").unwrap()
        else {
            panic!("not a StatefulSet")
        };
        let template = serde_json::to_value(&statefulset.spec.unwrap().template).unwrap();
        let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(
            !env.iter()
                .any(|e| e["name"].as_str().unwrap().contains("RANDOM_ROOT_PASSWORD")),
            "a generated root password is printed to the pod's log: {env:?}"
        );
        let root = env
            .iter()
            .find(|e| e["name"] == "MARIADB_ROOT_PASSWORD")
            .expect("MARIADB_ROOT_PASSWORD");
        assert_eq!(
            root["valueFrom"]["secretKeyRef"]["key"],
            servers::ROOT_PASSWORD_KEY,
            "{root}"
        );
        assert!(!template.to_string().contains(ROOT_PW));
        let data = secret.data.unwrap();
        assert_eq!(data[servers::ROOT_PASSWORD_KEY].0, ROOT_PW.as_bytes());
        p.spec.admin_password.clear();
        let err = servers::server_objects(&p, "refract").unwrap_err();
        assert!(err.to_string().contains("root password"), "{err}");
    }

    #[test]
    fn mongodb_needs_an_image() {
        let mut p = plan(DbType::Mongodb, "7");
        let err = servers::server_objects(&p, "refract").unwrap_err();
        assert!(err.to_string().contains("needs an image"), "{err}");
        p.image = Some("registry.example/mongo:7".into());
        assert!(servers::server_objects(&p, "refract").is_ok());
    }
}
