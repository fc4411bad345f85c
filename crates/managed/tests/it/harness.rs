//! A managed service in a temp dir, with its reconciler, a local process driver, two customers'
//! management keys, and helpers to call the router and wait for statuses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use refract_managed::{DbType, ManagedConfig, ManagedService, MemoryVault, StaticKeys};
use refract_runtime::{Driver, LocalProcessDriver};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Management key of customer A.
pub const KEY_A: &str = "rmk_testA.secretA";
/// Management key of customer B.
pub const KEY_B: &str = "rmk_testB.secretB";

pub struct Harness {
    /// Keeps the temp dir alive (removed on drop).
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub service: ManagedService,
    pub vault: Arc<MemoryVault>,
    pub driver: Arc<LocalProcessDriver>,
    cancel: CancellationToken,
}

pub struct Options {
    pub reconcile: bool,
    pub storage_unit_bytes: u64,
    /// Use `TMP/data` as the data dir, inside the 0700 temp dir (as `refract serve` tests do).
    pub nested: bool,
    /// Run the backup scheduler (every 500 ms); off by default so other tests take no backups.
    pub backups: bool,
    /// A byte limit for the backup directory.
    pub backup_max_bytes: Option<u64>,
    /// `ManagedConfig::allow_plaintext` (`refract serve --managed-allow-plaintext`).
    pub allow_plaintext: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reconcile: true,
            storage_unit_bytes: 1 << 30,
            nested: false,
            backups: false,
            backup_max_bytes: None,
            allow_plaintext: false,
        }
    }
}

pub fn config(dir: &std::path::Path, opts: &Options) -> ManagedConfig {
    let mut config = ManagedConfig::new(dir);
    config.reconcile_interval = Duration::from_millis(200);
    config.check_interval = Duration::from_millis(500);
    config.start_timeout = Duration::from_secs(90);
    config.storage_unit_bytes = opts.storage_unit_bytes;
    config.backups.scheduled = opts.backups;
    config.backups.tick = Duration::from_millis(500);
    config.backups.max_bytes = opts.backup_max_bytes;
    config.allow_plaintext = opts.allow_plaintext;
    config
}

impl Harness {
    pub fn new(opts: Options) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        if opts.nested {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let data = if opts.nested {
            dir.path().join("data")
        } else {
            dir.path().to_path_buf()
        };
        let vault = Arc::new(MemoryVault::default());
        let driver = Arc::new(LocalProcessDriver::new(data.join("managed/instances")));
        let keys = StaticKeys(vec![
            (KEY_A.into(), "cust_a".into()),
            (KEY_B.into(), "cust_b".into()),
        ]);
        let service = ManagedService::open(
            config(&data, &opts),
            vault.clone(),
            driver.clone(),
            Arc::new(keys),
        )
        .expect("open the managed service");
        let cancel = CancellationToken::new();
        if opts.reconcile {
            service.spawn_reconciler(cancel.clone());
        }
        Harness {
            _dir: dir,
            data,
            service,
            vault,
            driver,
            cancel,
        }
    }

    /// Whether the engine can run here (the test prints why not and returns early otherwise).
    pub fn installed(&self, db_type: DbType) -> bool {
        let b = self.service.binaries();
        let ok = match db_type {
            DbType::Postgresql => !b.postgres.is_empty(),
            DbType::Mysql => {
                b.mariadbd.is_some() && b.mariadb_install_db.is_some() && b.mariadb_client.is_some()
            }
            DbType::Redis => b.redis_server.is_some(),
            DbType::Mongodb => b.mongod.is_some() && b.mongosh.is_some(),
        };
        if !ok {
            eprintln!("skipping: {db_type} is not installed on this host");
        }
        ok
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.service.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(KEY_A), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(KEY_A), Some(body)).await
    }

    /// Creates a database for customer A and returns its id.
    pub async fn create(&self, body: Value) -> String {
        let (status, v) = self.post("/api/v1/databases", body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "provisioning");
        v["id"].as_str().unwrap().to_string()
    }

    /// [`Harness::create`], then waits (two minutes at most) until it runs; returns its id and
    /// the running database.
    pub async fn create_running(&self, body: Value) -> (String, Value) {
        let id = self.create(body).await;
        let db = self
            .wait_status(&id, "running", Duration::from_secs(120))
            .await;
        (id, db)
    }

    /// Waits until the database's status is `want` (failing fast on an unexpected `error`).
    pub async fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, v) = self.get(&format!("/api/v1/databases/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["status"] == want {
                return v;
            }
            let message = v["error_message"].as_str().unwrap_or("");
            let fatal = message.contains("failed") || message.contains("left stopped");
            if want != "error" && v["status"] == "error" && fatal {
                panic!("database {id} failed: {v}");
            }
            assert!(
                Instant::now() < deadline,
                "database {id} did not become {want}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `f` returns true.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !f().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILLs the primary's server and waits until the reconciler restarted it (a new pid)
    /// and `data_back` says the committed data is there, then until the status is `running`.
    pub async fn kill_primary_and_wait<F, Fut>(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        mut data_back: F,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let pid = self.pid(id, 0);
        sigkill(pid);
        self.wait_for(what, timeout, || {
            let restarted = self.pid(id, 0) != pid;
            let check = data_back();
            async move { restarted && check.await }
        })
        .await;
        self.wait_status(id, "running", Duration::from_secs(60))
            .await;
    }

    /// `PATCH … {"replicas": n}` and waits until the first standby streams; returns its
    /// replication entry.
    pub async fn scale_and_wait_streaming(&self, id: &str, replicas: u32) -> Value {
        let (status, v) = self
            .call(
                Method::PATCH,
                &format!("/api/v1/databases/{id}"),
                Some(KEY_A),
                Some(serde_json::json!({"replicas": replicas})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        wait_streaming(self, id).await
    }

    pub async fn credentials(&self, id: &str) -> Value {
        let (status, v) = self
            .get(&format!("/api/v1/databases/{id}/credentials"))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// `POST …/actions {"type": kind}` (accepted), then waits until the status is `then`.
    pub async fn act_and_wait(&self, id: &str, kind: &str, then: &str, timeout: Duration) -> Value {
        let (status, v) = self
            .post(
                &format!("/api/v1/databases/{id}/actions"),
                serde_json::json!({ "type": kind }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        self.wait_status(id, then, timeout).await
    }

    /// The database's `connection_string` from its credentials.
    pub async fn connection_string(&self, id: &str) -> String {
        let c = self.credentials(id).await;
        c["connection_string"]
            .as_str()
            .expect("a connection string")
            .to_string()
    }

    /// The database's application password from its credentials.
    pub async fn password(&self, id: &str) -> String {
        let c = self.credentials(id).await;
        c["password"].as_str().expect("a password").to_string()
    }

    /// The pid of node `node`'s server, from the local driver's state file.
    /// `GET /api/v1/databases/{id}/ca`, written to `DIR/ca-<id>.pem` (for the command-line
    /// clients' `sslrootcert` / `--ssl-ca` / `--cacert`).
    pub async fn ca_file(&self, id: &str) -> PathBuf {
        let (status, body) = self.get(&format!("/api/v1/databases/{id}/ca")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let pem = body["certificate"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert_eq!(pem, self.service.ca_pem());
        let path = self.data.join(format!("ca-{id}.pem"));
        std::fs::write(&path, pem).unwrap();
        path
    }

    pub fn pid(&self, id: &str, node: usize) -> i32 {
        let inst = refract_managed::instance_id(id, node);
        let path = self
            .driver
            .instance_dir(&inst)
            .unwrap()
            .join(refract_runtime::STATE_FILE);
        let state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        state["pid"].as_i64().unwrap() as i32
    }

    pub fn server_dir(&self, id: &str) -> PathBuf {
        self.service.database_dir(id)
    }

    /// Deletes the database and checks that no process, data directory or credential is left.
    pub async fn delete_and_check_gone(&self, id: &str) {
        let nodes: Vec<i32> = (0..5)
            .filter_map(|n| {
                let inst = refract_managed::instance_id(id, n);
                let path = self
                    .driver
                    .instance_dir(&inst)
                    .ok()?
                    .join(refract_runtime::STATE_FILE);
                path.exists().then(|| self.pid(id, n))
            })
            .collect();
        assert!(!nodes.is_empty());
        let (status, v) = self
            .call(
                Method::DELETE,
                &format!("/api/v1/databases/{id}"),
                Some(KEY_A),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "destroyed");
        let dir = self.server_dir(id);
        self.wait_for(
            "the data directory to be removed",
            Duration::from_secs(60),
            || {
                let gone = !dir.exists();
                async move { gone }
            },
        )
        .await;
        for pid in nodes {
            self.wait_for(
                "the server process to exit",
                Duration::from_secs(30),
                || async move { !alive(pid) },
            )
            .await;
        }
        let leftover: Vec<String> = self
            .vault
            .names()
            .into_iter()
            .filter(|n| n.contains(id))
            .collect();
        assert!(leftover.is_empty(), "credentials left: {leftover:?}");
        let (_, list) = self.get("/api/v1/databases").await;
        assert!(
            !list.as_array().unwrap().iter().any(|d| d["id"] == id),
            "destroyed databases are hidden"
        );
        let (status, v) = self.get(&format!("/api/v1/databases/{id}")).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (StatusCode::OK, Some("destroyed"))
        );
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    if !exists {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
                .unwrap_or(true)
        })
        .unwrap_or(false)
}

pub fn sigkill(pid: i32) {
    // SAFETY: sends a signal to a process this test started.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {pid}");
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
        // Leave no server running after a failed test.
        let driver = self.driver.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(list) = driver.list().await {
                    for (id, status) in list {
                        if status.is_alive() {
                            let _ = driver.stop(&id, Duration::from_secs(10)).await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

pub use refract_testkit::ServerUrl as Url;

/// `psql` as `u`'s user to its database at `host` with `sslmode={mode}`, trusting `ca`, running
/// `sql`.
pub fn psql(
    u: &Url,
    host: &str,
    mode: &str,
    ca: &std::path::Path,
    sql: &str,
) -> std::process::Output {
    std::process::Command::new("psql")
        .arg(format!(
            "host={host} port={} user={} dbname={} sslmode={mode} sslrootcert={}",
            u.port,
            u.user,
            u.database,
            ca.display()
        ))
        .args(["-XAtc", sql])
        .env("PGPASSWORD", &u.password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql is installed with PostgreSQL")
}

/// The credentials' fields of a SQL server (PostgreSQL, MySQL), in the order the API writes them.
pub const SQL_CREDENTIAL_FIELDS: [&str; 7] = [
    "host",
    "port",
    "username",
    "password",
    "database",
    "ssl_mode",
    "connection_string",
];

/// The field names of the JSON object `v`, in order.
pub fn field_names(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// The connection string `url` pointed at one server of the database instead (`node`: its
/// replication entry, with `host` and `port`): the same scheme, login, database and parameters.
pub fn node_url(url: &str, node: &Value) -> String {
    let u = Url::parse(url);
    let host = node["host"].as_str().expect("the node's host");
    url.replacen(
        &format!("@{}:{}", u.host, u.port),
        &format!("@{host}:{}", node["port"]),
        1,
    )
}

/// Checks that a password appears neither in `managed.sqlite` nor in the driver's files of the
/// database's servers (state, logs).
pub fn assert_no_password_outside_vault(h: &Harness, id: &str, password: &str) {
    let mut files = vec![
        h.data.join("managed.sqlite"),
        h.data.join("managed.sqlite-wal"),
    ];
    for n in 0..5 {
        if let Ok(dir) = h.driver.instance_dir(&refract_managed::instance_id(id, n)) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "the password appears in {}",
                f.display()
            );
        }
    }
}

/// Waits until the database's first standby reports `streaming`; returns its replication entry.
pub async fn wait_streaming(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, d) = h.get(&format!("/api/v1/databases/{id}")).await;
        assert_ne!(d["status"], "error", "{d}");
        if let Some(r) = d["replication"].as_array().and_then(|r| r.first()) {
            if r["status"] == "streaming" {
                return r.clone();
            }
        }
        assert!(Instant::now() < deadline, "no streaming standby: {d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
