use refract_kubernetes::servers::ServerPlan;
use refract_kubernetes::{FakeApiServer, KubernetesDriver, Settings};
use refract_managed::{DbType, ServerSpec};
use refract_runtime::{InstanceKind, InstanceSpec, Readiness, SpecFile};

pub const NS: &str = "refract";
pub const ID: &str = "3f6c2a1e-0000-4000-8000-000000000001";
pub const DB: &str = "9a1b2c3d-0000-4000-8000-00000000000a";
pub const PASSWORD: &str = "s3cret-source-password";
pub const TOKEN: &str = "admin-token-value-xyz";

/// The managed server of the server tests (its id already the object id).
pub const SERVER_ID: &str = "5e5e5e5e-0000-4000-8000-000000000005";
/// Its application user's password.
pub const SERVER_PASSWORD: &str = "server-password-123";
/// Its administrator's (MySQL `root`) password.
pub const SERVER_ROOT_PASSWORD: &str = "server-root-password-456";

/// The plan of managed server [`SERVER_ID`] running `db_type` `version`: two nodes of the
/// smallest plan, as the managed crate hands it over.
pub fn server_plan(db_type: DbType, version: &str) -> ServerPlan {
    ServerPlan {
        spec: ServerSpec {
            id: SERVER_ID.into(),
            db_type,
            version: version.into(),
            nodes: 2,
            storage_gb: 10,
            vcpus: 1,
            memory_mb: 1024,
            database: "app".into(),
            user: "app".into(),
            password: SERVER_PASSWORD.into(),
            admin_password: SERVER_ROOT_PASSWORD.into(),
        },
        image: None,
    }
}

pub fn settings() -> Settings {
    Settings::new(NS, "registry.example/refract:0.1.0")
}

/// An engine spec as the control plane builds it (see control-plane `lifecycle/engine.rs`).
pub fn engine_spec(id: &str, replicas: u32) -> InstanceSpec {
    let mut spec = InstanceSpec::new(
        id,
        InstanceKind::Engine,
        "/usr/bin/refract",
        Readiness::engine(),
    );
    spec.args = vec!["engine".into(), "--config".into(), "engine.yaml".into()];
    spec.env
        .push(("REFRACT_LOG".into(), "warn,refract_engine=info".into()));
    spec.files.push(SpecFile::plain(
        "engine.yaml",
        "{\"listen\": \"0.0.0.0:8080\", \"control_listen\": \"0.0.0.0:8081\"}",
    ));
    spec.files
        .push(SpecFile::plain("manifest.json", "{\"tables\": []}"));
    spec.files.push(SpecFile::new("admin-token", TOKEN));
    spec.files.push(SpecFile::new("source-password", PASSWORD));
    spec.group = Some(DB.into());
    spec.replicas = replicas;
    spec.cpu_millis = Some(250);
    spec.memory_limit_mb = Some(512);
    spec
}

pub fn driver(fake: &FakeApiServer) -> KubernetesDriver {
    let client = kube::Client::new(fake.router(), NS);
    KubernetesDriver::new(client, settings())
}
