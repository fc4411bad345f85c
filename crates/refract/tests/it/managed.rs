//! Seed 004 end to end with the real binary: a managed PostgreSQL created through `/api/v1`,
//! filled with a real client, turned into a `/v1` connection in one call and served by an engine
//! answering `/query`; the `refract managed` CLI verbs; then deleted, leaving nothing behind.
//!
//! Skipped (with a message) when PostgreSQL's server binaries are not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{refract_bin, ControlPlane};

/// Kills every server and engine started under a data dir when the test ends, even on failure
/// (managed servers and engines outlive a killed control plane by design).
pub(crate) struct KillInstances(pub(crate) PathBuf);

impl Drop for KillInstances {
    fn drop(&mut self) {
        for base in [self.0.join("managed/instances"), self.0.join("instances")] {
            let Ok(dir) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in dir.flatten() {
                let Ok(text) = std::fs::read_to_string(e.path().join("state.json")) else {
                    continue;
                };
                let Ok(state) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(pid) = state["pid"].as_u64().filter(|_| state["exit"].is_null()) {
                    let _ = Command::new("kill")
                        .args(["-9", "--", &format!("-{pid}")])
                        .status();
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
    }
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn cli(cp: &ControlPlane, args: &[&str]) -> Value {
    let out = Command::new(refract_bin())
        .args(["managed"])
        .args(args)
        .arg("--json")
        .env("REFRACT_URL", &cp.url)
        .env("REFRACT_TOKEN", &cp.admin_key)
        .output()
        .expect("run refract managed");
    assert!(
        out.status.success(),
        "refract managed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .any(|e| Path::new(&e.path()).join("bin/initdb").exists())
        })
        .unwrap_or(false)
}

#[test]
fn managed_postgres_serves_a_v1_engine() {
    if !postgres_installed() {
        eprintln!("skipping: PostgreSQL is not installed");
        return;
    }
    let cp = ControlPlane::start_fresh();
    let _cleanup = KillInstances(cp.dir.clone());

    // A managed PostgreSQL, created with the CLI and waited for.
    let created = cli(
        &cp,
        &[
            "create",
            "--name",
            "shop",
            "--type",
            "postgresql",
            "--region",
            "nyc1",
            "--wait",
        ],
    );
    assert_eq!(created["status"], "running", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let listed = cli(&cp, &["list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str()),
        "{listed}"
    );
    let creds = cli(&cp, &["credentials", &id]);
    let url = creds["connection_string"].as_str().unwrap().to_string();
    let password = creds["password"].as_str().unwrap().to_string();
    assert_eq!(creds["ssl_mode"], "require", "{creds}");
    // The CA that verifies the server (`refract managed ca`), for a verify-full login.
    let ca = cli(&cp, &["ca", &id])["certificate"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    // Data written with a real client through the returned connection string.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = refract_managed::tls::PgTls(refract_managed::tls::client_config(&ca).unwrap());
        let (client, conn) = tokio_postgres::connect(&url, tls).await.expect("log in over TLS");
        tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
                 CREATE TABLE posts (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), title text NOT NULL);
                 INSERT INTO users VALUES (1, 'ada'), (2, 'grace');
                 INSERT INTO posts VALUES (1, 2, 'compilers'), (2, 2, 'cobol'), (3, 1, 'engines');",
            )
            .await
            .unwrap();
    });

    // Backups with the CLI: the scheduler's first one, one taken now, a restore of it into a
    // new server that holds the rows.
    wait(
        "the scheduled first backup",
        Duration::from_secs(90),
        || {
            let v = cli(&cp, &["backup", "list", &id]);
            (!v["backups"].as_array().unwrap().is_empty() && v.get("in_progress_since").is_none())
                .then_some(())
        },
    );
    let backup = cli(&cp, &["backup", "create", &id]);
    assert_eq!(backup["kind"], "base", "{backup}");
    let listed = cli(&cp, &["backup", "list", &id]);
    assert!(
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["created_at"] == backup["created_at"]),
        "{listed}"
    );
    let restored = cli(
        &cp,
        &[
            "create",
            "--name",
            "shop-restored",
            "--type",
            "postgresql",
            "--region",
            "nyc1",
            "--restore-from",
            "shop",
            "--restore-backup",
            backup["created_at"].as_str().unwrap(),
            "--wait",
        ],
    );
    assert_eq!(restored["status"], "running", "{restored}");
    let restored_url = cli(&cp, &["credentials", restored["id"].as_str().unwrap()])
        ["connection_string"]
        .as_str()
        .unwrap()
        .to_string();
    let posts: i64 = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &restored_url,
            refract_managed::tls::PgTls(refract_managed::tls::client_config(&ca).unwrap()),
        )
        .await
        .expect("log in to the restored server");
        tokio::spawn(conn);
        client
            .query_one("SELECT count(*) FROM posts", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(posts, 3);
    cli(&cp, &["delete", restored["id"].as_str().unwrap()]);

    // One call makes it a /v1 source; then the usual /v1 flow serves it.
    let v: refract_api::CreateConnectionResponse =
        serde_json::from_value(cli(&cp, &["connect", &id, "--name", "managed-shop"])).unwrap();
    let connection = v.connection.id;
    assert_eq!(
        v.connection.backend,
        refract_api::Backend::Postgres,
        "{v:?}"
    );
    // `creds` is the managed API's answer (`/api/v1`, its own field names).
    let schema = creds["database"].as_str().unwrap();
    let db = cp
        .register_database(&crate::common::database_request(connection, "shop", schema))
        .id;
    let key: refract_api::QueryKey = cp.wire(
        "POST",
        &format!("/v1/databases/{db}/api-keys"),
        &cp.admin_key,
        Some(&refract_api::CreateQueryKeyRequest {
            name: "app".into(),
            expires_at: None,
        }),
        201,
    );
    let key = key.key.unwrap();
    let _: refract_api::ActionResponse = cp.wire::<(), _>(
        "POST",
        &format!("/v1/databases/{db}/provision"),
        &cp.admin_key,
        None,
        202,
    );
    let endpoint = wait("a running engine", Duration::from_secs(120), || {
        let v: refract_api::InstanceStatusResponse = cp.wire::<(), _>(
            "GET",
            &format!("/v1/databases/{db}/instance"),
            &cp.admin_key,
            None,
            200,
        );
        assert_ne!(v.database.status, refract_api::Status::Failed, "{v:?}");
        (v.database.status == refract_api::Status::Running)
            .then(|| v.instance.and_then(|i| i.endpoint_url))
            .flatten()
    });
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let rows = wait("a query answer", Duration::from_secs(30), || {
        let r = http
            .post(format!("{endpoint}/query"))
            .bearer_auth(&key)
            .body("users(id = 2) { name posts { title } }")
            .send()
            .ok()?;
        (r.status().as_u16() == 200)
            .then(|| r.json::<Value>().ok())
            .flatten()
    });
    let text = rows.to_string();
    assert!(
        text.contains("grace") && text.contains("compilers") && text.contains("cobol"),
        "{rows}"
    );

    // The engine goes first (it reads the server), then the managed server, with the CLI.
    let _: refract_api::ActionResponse = cp.wire::<(), _>(
        "POST",
        &format!("/v1/databases/{db}/terminate"),
        &cp.admin_key,
        None,
        202,
    );

    // The other verbs: a bigger quota, a stop and a start, API tokens.
    let updated = cli(&cp, &["update", &id, "--storage-gb", "20"]);
    assert_eq!(updated["storage_gb"], 20, "{updated}");
    cli(&cp, &["stop", &id]);
    wait("the server to stop", Duration::from_secs(60), || {
        (cli(&cp, &["get", &id])["status"] == "stopped").then_some(())
    });
    cli(&cp, &["start", &id]);
    wait("the server to run again", Duration::from_secs(60), || {
        (cli(&cp, &["get", &id])["status"] == "running").then_some(())
    });
    // The control plane's metrics count managed servers by status.
    wait(
        "managed servers in /metrics",
        Duration::from_secs(30),
        || {
            let text = reqwest::blocking::get(format!("{}/metrics", cp.url))
                .ok()?
                .text()
                .ok()?;
            (text.contains("refract_managed_servers{status=\"running\"} 1")
                && text.contains("refract_managed_servers{status=\"error\"} 0"))
            .then_some(())
        },
    );
    let token = cli(
        &cp,
        &[
            "token",
            "create",
            "--name",
            "ci",
            "--scopes",
            "databases:read",
        ],
    );
    assert!(
        token["token"].as_str().unwrap().starts_with("dkc_"),
        "{token}"
    );
    let token_id = token["id"].as_str().unwrap().to_string();
    let tokens = cli(&cp, &["token", "list"]);
    let listed = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("{tokens}"));
    assert_eq!(listed["scopes"], json!(["databases:read"]));
    assert!(
        listed.get("token").is_none(),
        "a listed token shows no secret"
    );
    cli(&cp, &["token", "delete", &token_id]);
    let tokens = cli(&cp, &["token", "list"]);
    assert!(
        !tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == token_id.as_str()),
        "{tokens}"
    );

    let deleted = cli(&cp, &["delete", &id]);
    assert_eq!(deleted["status"], "destroyed");
    let server_dir = cp.dir.join("managed/servers").join(&id);
    wait(
        "the managed server's data to be removed",
        Duration::from_secs(60),
        || (!server_dir.exists()).then_some(()),
    );
    let instance = cp.dir.join("managed/instances").join(format!("{id}-n0"));
    wait(
        "the managed server's instance to be removed",
        Duration::from_secs(30),
        || (!instance.exists()).then_some(()),
    );
    cp.assert_no_leak(&[&password]);
}
