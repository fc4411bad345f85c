//! The lifecycle end to end, with real engines: provisioning a SQLite-backed database to a
//! served query, every action-matrix row a test can reach, queued actions, pause schedules,
//! SIGKILL of the control plane in each transitional status and of a running engine, crash
//! loops, query-key revocation, `refract quickstart`, and real MariaDB / PostgreSQL sources.
//!
//! Each test runs its own `refract serve` (its own harness, so it can pass the test-only
//! `REFRACT_TEST_STEP_DELAY_MS` and restart on the same data dir) and kills every engine it
//! started when it ends, even on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refract_api::{
    ActionResponse, Backend, CreateConnectionRequest, CreateConnectionResponse, Database,
    EventsResponse, InstanceSize, InstanceStatusResponse, Mode, RegisterDatabaseRequest,
    ResizeRequest, Status, TestConnectionResult, UpdateDatabaseRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{
    connection_request, created_database_id, instance_request, refract_bin, sqlite_request,
    wire_answer, wire_body,
};

// ------------------------------------------------------------------ harness

/// A `refract serve` on a data dir, restartable, that kills its engines on drop.
pub(crate) struct Cp {
    child: Option<Child>,
    url: String,
    data: PathBuf,
    admin: String,
    delay_ms: u64,
    /// `--store` (a PostgreSQL URL shared by replicas), or the embedded SQLite file.
    store: Option<String>,
    /// More environment of `refract serve` (another runtime: `REFRACT_RUNTIME`, `KUBECONFIG`, …).
    env: Vec<(String, String)>,
    out: Arc<Mutex<String>>,
    http: reqwest::blocking::Client,
    _tmp: Option<tempfile::TempDir>,
}

impl Cp {
    pub(crate) fn fresh(delay_ms: u64) -> Cp {
        let tmp = crate::common::reachable_tempdir();
        let mut cp = Cp::start(&tmp.path().join("data"), delay_ms);
        cp._tmp = Some(tmp);
        cp
    }

    /// [`Cp::fresh`] with more environment for `refract serve`.
    pub(crate) fn fresh_with_env(delay_ms: u64, env: Vec<(String, String)>) -> Cp {
        let tmp = crate::common::reachable_tempdir();
        let mut cp = Cp::start_with(&tmp.path().join("data"), delay_ms, None, env);
        cp._tmp = Some(tmp);
        cp
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.data.parent().unwrap().to_path_buf()
    }

    pub(crate) fn start(data: &Path, delay_ms: u64) -> Cp {
        Self::start_on(data, delay_ms, None)
    }

    /// A replica on the PostgreSQL store `store` (several may share `data` on one machine: the
    /// local runtime's engines are then adoptable by whichever replica leads).
    pub(crate) fn start_on(data: &Path, delay_ms: u64, store: Option<&str>) -> Cp {
        Self::start_with(data, delay_ms, store, Vec::new())
    }

    /// [`Cp::start_on`] with more environment for `refract serve`.
    pub(crate) fn start_with(
        data: &Path,
        delay_ms: u64,
        store: Option<&str>,
        env: Vec<(String, String)>,
    ) -> Cp {
        let (child, url, out) = spawn_serve(data, delay_ms, store, &env);
        let admin = std::fs::read_to_string(data.join("admin-key"))
            .unwrap()
            .trim()
            .to_string();
        Cp {
            child: Some(child),
            url,
            data: data.to_path_buf(),
            admin,
            delay_ms,
            store: store.map(str::to_string),
            env,
            out,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _tmp: None,
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A `/v1` call with a wire request body, its answer read as its wire type (the status
    /// checked first).
    pub(crate) fn wire<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        expected: u16,
    ) -> T {
        let answer = self.call(method, path, body.map(wire_body));
        wire_answer(&format!("{method} {path}"), expected, answer)
    }

    /// `POST /v1/connections` (201).
    pub(crate) fn create_connection(
        &self,
        request: &CreateConnectionRequest,
    ) -> CreateConnectionResponse {
        self.wire("POST", "/v1/connections", Some(request), 201)
    }

    /// `POST /v1/databases` (201).
    pub(crate) fn register_database(&self, request: &RegisterDatabaseRequest) -> Database {
        self.wire("POST", "/v1/databases", Some(request), 201)
    }

    /// `GET /v1/databases/{id}`.
    pub(crate) fn database(&self, id: &str) -> Database {
        self.wire::<(), _>("GET", &format!("/v1/databases/{id}"), None, 200)
    }

    /// `PATCH /v1/databases/{id}` (200).
    pub(crate) fn update_database(&self, id: &str, request: &UpdateDatabaseRequest) -> Database {
        self.wire("PATCH", &format!("/v1/databases/{id}"), Some(request), 200)
    }

    /// `GET /v1/databases/{id}/instance`, typed.
    pub(crate) fn instance_status(&self, id: &str) -> InstanceStatusResponse {
        self.wire::<(), _>("GET", &format!("/v1/databases/{id}/instance"), None, 200)
    }

    /// `POST /v1/connections/{id}/test-connection` (always 200).
    pub(crate) fn test_connection(&self, connection: &str) -> TestConnectionResult {
        let path = format!("/v1/connections/{connection}/test-connection");
        self.wire::<(), _>("POST", &path, None, 200)
    }

    /// Waits for a stable `status` (no queued action left).
    pub(crate) fn wait_for(
        &self,
        id: &str,
        status: Status,
        timeout: Duration,
    ) -> InstanceStatusResponse {
        self.wait_until(id, status.as_str(), timeout, |v| {
            v.database.status == status && v.database.desired_state.is_none()
        })
    }

    /// `GET path` (200), read as its wire type.
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        self.wire::<(), _>("GET", path, None, 200)
    }

    /// `POST /v1/databases/{id}/{action}`.
    pub(crate) fn act(&self, id: &str, action: &str, body: Option<Value>) -> (u16, Value) {
        self.call("POST", &format!("/v1/databases/{id}/{action}"), body)
    }

    /// The action (no body) is accepted (202) with this mode.
    pub(crate) fn ok(&self, id: &str, action: &str, mode: Mode) -> ActionResponse {
        self.accepted(id, action, None, mode)
    }

    /// The action with its request body (`resize`, `redeploy`) is accepted (202) with this mode.
    pub(crate) fn ok_with<B: Serialize>(
        &self,
        id: &str,
        action: &str,
        body: &B,
        mode: Mode,
    ) -> ActionResponse {
        self.accepted(id, action, Some(wire_body(body)), mode)
    }

    fn accepted(&self, id: &str, action: &str, body: Option<Value>, mode: Mode) -> ActionResponse {
        let (s, v) = self.act(id, action, body);
        assert_eq!(s, 202, "{action}: {v}\n{}", self.events(id));
        let answer: ActionResponse = wire_answer(action, 202, (s, v));
        assert_eq!(answer.mode, mode, "{action}: {answer:?}");
        answer
    }

    /// The action is refused (409 action_not_allowed) and changes nothing.
    pub(crate) fn refused(&self, id: &str, action: &str) {
        let before = self.database(id);
        let body = match action {
            "redeploy" => Some(wire_body(&refract_api::RedeployRequest {
                build_id: refract_api::Uuid::nil(),
            })),
            "resize" => Some(wire_body(&ResizeRequest {
                instance_size: InstanceSize::Small,
            })),
            _ => None,
        };
        let answer = self.act(id, action, body);
        let e = crate::common::wire_error(
            &format!("{action} in {}", before.status),
            (409, "action_not_allowed"),
            answer,
        );
        assert!(
            e.message.contains(action.split('-').next().unwrap()),
            "{e:?}"
        );
        let after = self.database(id);
        assert_eq!(before.status, after.status);
        assert_eq!(before.desired_state, after.desired_state);
        assert_eq!(before.instance_size, after.instance_size);
    }

    pub(crate) fn status(&self, id: &str) -> Status {
        self.database(id).status
    }

    pub(crate) fn events(&self, id: &str) -> String {
        let (_, v) = self.call("GET", &format!("/v1/databases/{id}/events?limit=50"), None);
        // The event log is for failure messages: an answer that is not one is shown as it is.
        let Ok(log) = serde_json::from_value::<EventsResponse>(v.clone()) else {
            return format!("  (no event log: {v})");
        };
        let mut lines = Vec::new();
        for e in log.events.iter().rev() {
            lines.push(format!(
                "  {:?} {:?} -> {:?} [{:?}] {:?}",
                e.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                e.from.map(|s| s.as_str()),
                e.to.as_str(),
                e.cause,
                e.message
            ));
        }
        lines.join("\n")
    }

    /// Polls until the instance status satisfies `pred`; panics with the event log on timeout.
    pub(crate) fn wait_until(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&InstanceStatusResponse) -> bool,
    ) -> InstanceStatusResponse {
        let start = Instant::now();
        loop {
            let v = self.instance_status(id);
            if pred(&v) {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for {what}; now {} (lastError {:?})\nevents:\n{}\nlog:\n{}",
                    v.database.status,
                    v.database.last_error,
                    self.events(id),
                    self.tail_output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn tail_output(&self) -> String {
        let o = self.out.lock().unwrap();
        let lines: Vec<&str> = o.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL (no graceful shutdown).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful shutdown); the exit status, or `None` when it did not exit within 30 s
    /// (then it is killed).
    pub(crate) fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub(crate) fn restart(&mut self) {
        self.kill();
        let (child, url, out) =
            spawn_serve(&self.data, self.delay_ms, self.store.as_deref(), &self.env);
        self.child = Some(child);
        self.url = url;
        self.out = out;
    }

    /// Pids of live engines started for this data dir (from the runtime driver's state files).
    pub(crate) fn engine_pids(&self) -> Vec<(String, u32)> {
        crate::common::live_engines(&self.data)
    }
}

/// Starts `refract serve` on `data`; returns the process, its URL and its collected output.
fn spawn_serve(
    data: &Path,
    delay_ms: u64,
    store: Option<&str>,
    env: &[(String, String)],
) -> (Child, String, Arc<Mutex<String>>) {
    // The test's SQLite sources are written beside the data dir (`Cp::root`).
    let mut cmd = crate::common::serve_command(data);
    match store {
        Some(url) => cmd.env("REFRACT_STORE", url),
        None => cmd.env_remove("REFRACT_STORE"),
    };
    let mut child = cmd
        .env("REFRACT_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("REFRACT_TEST_STEP_DELAY_MS", delay_ms.to_string())
        .spawn()
        .expect("spawn refract serve");
    let (url, out) = crate::common::wait_until_listening(&mut child);
    (child, url, out)
}

impl Drop for Cp {
    fn drop(&mut self) {
        self.kill();
        for (_, pid) in self.engine_pids() {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{pid}")])
                .status();
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Deterministic blog data: `users`, `posts(user_id → users)`, `comments(post_id → posts)`.
fn blog_sqlite(path: &Path, users: u32) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL);
         CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id),
             body TEXT NOT NULL, approved BOOLEAN NOT NULL);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    for u in 1..=users {
        let plan = if u % 3 == 0 { "pro" } else { "free" };
        tx.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3)",
            rusqlite::params![u, format!("user {u}"), plan],
        )
        .unwrap();
        for k in 0..3 {
            let p = (u - 1) * 3 + k + 1;
            tx.execute(
                "INSERT INTO posts VALUES (?1, ?2, ?3)",
                rusqlite::params![p, u, format!("post {p}")],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO comments VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![p, p, format!("comment {p}"), p % 2 == 0],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// A SQLite source file with `users` rows, a connection and a registered database; the id.
pub(crate) fn sqlite_database(cp: &Cp, users: u32) -> String {
    let path = cp.root().join(format!("blog-{}.db", rand::random::<u32>()));
    blog_sqlite(&path, users);
    created_database_id(&cp.create_connection(&sqlite_request("blog", &path)))
}

pub(crate) fn create_key(cp: &Cp, id: &str, name: &str) -> (String, refract_api::QueryKey) {
    let request = refract_api::CreateQueryKeyRequest {
        name: name.into(),
        expires_at: None,
    };
    let path = format!("/v1/databases/{id}/api-keys");
    let key: refract_api::QueryKey = cp.wire("POST", &path, Some(&request), 201);
    let secret = key.key.clone().unwrap_or_else(|| panic!("no key: {key:?}"));
    (secret, key)
}

pub(crate) fn query(endpoint: &str, key: &str, q: &str) -> (u16, Value) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    match client
        .post(format!("{endpoint}/query"))
        .bearer_auth(key)
        .body(q.to_string())
        .send()
    {
        Ok(r) => {
            let s = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            (
                s,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// Retries a query until it answers 200 (a new key reaches the engine within a second).
pub(crate) fn query_ok(endpoint: &str, key: &str, q: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = query(endpoint, key, q);
        if s == 200 {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "query {q:?} on {endpoint}: {s} {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /v1/databases/{id}/resize` body.
pub(crate) fn resize(instance_size: InstanceSize) -> ResizeRequest {
    ResizeRequest { instance_size }
}

/// `POST /v1/databases/{id}/redeploy` body.
pub(crate) fn redeploy(build_id: refract_api::Uuid) -> refract_api::RedeployRequest {
    refract_api::RedeployRequest { build_id }
}

/// The serving engine of an instance status answer.
pub(crate) fn instance_of(v: &InstanceStatusResponse) -> &refract_api::InstanceView {
    v.instance
        .as_ref()
        .unwrap_or_else(|| panic!("no instance: {v:?}"))
}

/// Rows of `table` the engine reported (`rowCounts` is keyed by the tables' API names).
pub(crate) fn row_count(i: &refract_api::InstanceView, table: &str) -> Option<i64> {
    i.row_counts.as_ref().and_then(|r| r[table].as_i64())
}

/// `instance.replication`, `None` without an instance or a report.
pub(crate) fn replication(v: &InstanceStatusResponse) -> Option<refract_api::ReplicationView> {
    v.instance.as_ref().and_then(|i| i.replication.clone())
}

/// The serving engine's endpoint in an instance status answer.
pub(crate) fn endpoint(v: &InstanceStatusResponse) -> String {
    v.instance
        .as_ref()
        .and_then(|i| i.endpoint_url.clone())
        .unwrap_or_else(|| panic!("no endpoint: {v:?}"))
}

pub(crate) const LONG: Duration = Duration::from_secs(120);
const Q: &str = "users(id = 2) { id name posts { title } }";

// ------------------------------------------------------------------ tests

/// B5 on a small dataset: registered → first query answered; builds, build log, events, schema,
/// health poller, engine files and the action list of a running database.
#[test]
fn provision_sqlite_database_serves_queries() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 200);
    let (key, created) = create_key(&cp, &id, "app");
    assert!(key.starts_with("rxk_"), "{key}");
    assert_eq!(created.key_id, key[4..].split('.').next().unwrap());
    let start = Instant::now();
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let ep = endpoint(&v);
    let rows = query_ok(&ep, &key, Q, Duration::from_secs(10));
    let b5 = start.elapsed();
    eprintln!("B5 (200 users / 600 posts / 600 comments, SQLite): provision → first query {b5:?}");
    assert_eq!(
        rows,
        json!([{"id": 2, "name": "user 2", "posts": [{"title": "post 4"}, {"title": "post 5"}, {"title": "post 6"}]}])
    );
    assert!(b5 < Duration::from_secs(30), "{b5:?}");

    // No key, a wrong key: refused by the engine.
    assert_eq!(query(&ep, "rxk_nope.nope", Q).0, 401);
    let client = reqwest::blocking::Client::new();
    assert_eq!(
        client
            .post(format!("{ep}/query"))
            .body(Q)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    // The instance view: the engine's numbers as soon as it is running, not a poll later.
    let i = instance_of(&v);
    assert_eq!(row_count(i, "users"), Some(200), "{v:?}");
    assert!(i.swap_count.is_some_and(|n| n >= 1), "{v:?}");
    assert_eq!(v.database.endpoint_url.as_deref(), Some(ep.as_str()));
    let deployed = v.deployed_instance_config.as_ref().unwrap();
    assert_eq!(deployed.instance_size, InstanceSize::Nano);
    assert_eq!(deployed.task_memory_mb, 512);
    assert!(!v.has_pending_changes);
    assert_eq!(
        v.latest_build.as_ref().map(|b| b.status),
        Some(refract_api::BuildStatus::Succeeded)
    );
    let a = &v.actions;
    for (name, action) in [
        ("rebuild", &a.rebuild),
        ("reconfigure", &a.reconfigure),
        ("redeploy", &a.redeploy),
        ("resize", &a.resize),
        ("pause", &a.pause),
        ("terminate", &a.terminate),
        ("reload", &a.reload),
        ("pauseSync", &a.pause_sync),
    ] {
        assert!(action.allowed, "{name}: {a:?}");
        assert_eq!(action.mode, Some(Mode::Immediate), "{name}");
    }
    for (name, action) in [
        ("provision", &a.provision),
        ("resume", &a.resume),
        ("delete", &a.delete),
        ("resumeSync", &a.resume_sync),
    ] {
        assert!(!action.allowed, "{name}");
        assert!(
            action.reason.as_deref().is_some_and(|r| r.len() > 10),
            "{name}: {action:?}"
        );
    }

    // Builds, log, events, schema.
    let builds: refract_api::BuildsResponse = cp.get(&format!("/v1/databases/{id}/builds"));
    let b = &builds.builds[0];
    assert!(b.deployable);
    assert_eq!(builds.active_build_id, Some(b.id));
    assert!(b.build_duration_seconds.is_some(), "{b:?}");
    let log = cp
        .http
        .get(format!("{}{}", cp.url, b.logs_url))
        .bearer_auth(&cp.admin)
        .send()
        .unwrap();
    let log = log.text().unwrap();
    assert!(
        log.contains("connection ok") && log.contains("manifest: 3 tables"),
        "{log}"
    );
    let events: EventsResponse = cp.get(&format!("/v1/databases/{id}/events"));
    let path: Vec<Status> = events.events.iter().rev().map(|e| e.to).collect();
    assert_eq!(
        path,
        [
            Status::Registered,
            Status::TestingConnection,
            Status::Queued,
            Status::Building,
            Status::Deploying,
            Status::Running
        ]
    );
    let schema: refract_api::SchemaView = cp.get(&format!("/v1/databases/{id}/schema"));
    let users = schema.tables.iter().find(|t| t.name == "users").unwrap();
    assert_eq!(users.primary_key, ["id"]);
    assert!(
        users
            .relations
            .iter()
            .any(|r| r.name == "posts" && r.kind == "reverse"),
        "{users:?}"
    );

    // The health poller fills the instance fields within ~5 s.
    let v = cp.wait_until(&id, "a health check", Duration::from_secs(15), |v| {
        v.instance
            .as_ref()
            .is_some_and(|i| i.last_health_check.is_some())
    });
    let i = instance_of(&v);
    assert_eq!(
        i.health_status,
        Some(refract_api::HealthStatus::Ok),
        "{v:?}"
    );
    assert_eq!(row_count(i, "users"), Some(200), "{v:?}");
    assert!(i.swap_count.unwrap() >= 1);

    // Secrets reach the engine by 0600 files, never its arguments.
    let inst = i.id.to_string();
    let dir = cp.data.join("instances").join(&inst);
    for f in ["engine.yaml", "admin-token", "manifest.json"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        !state.contains("adm_") && !state.contains("rxk_"),
        "{state}"
    );
    let keys = std::fs::read_to_string(cp.data.join("keys").join(format!("{id}.json"))).unwrap();
    assert!(!keys.contains(&key), "the keys file holds hashes only");
}

/// Every matrix row a test can reach, each allowed action doing its transition and each refused
/// one answering 409 with nothing changed.
#[test]
fn action_matrix_rows() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 50);
    let (key, _) = create_key(&cp, &id, "app");

    // registered
    for a in [
        "rebuild",
        "reconfigure",
        "redeploy",
        "pause",
        "resume",
        "terminate",
        "reload",
        "pause-replication",
        "resume-replication",
    ] {
        cp.refused(&id, a);
    }
    let v = cp.ok_with(&id, "resize", &resize(InstanceSize::Small), Mode::Immediate);
    assert_eq!(v.status, Status::Registered);
    assert_eq!(cp.database(&id).task_memory_mb, 1024);
    let v = cp.ok(&id, "provision", Mode::Immediate);
    assert_eq!(v.status, Status::TestingConnection);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let first_build = v.latest_build.as_ref().unwrap().id;
    let ep1 = endpoint(&v);
    query_ok(&ep1, &key, Q, Duration::from_secs(10));

    // running
    for a in ["provision", "resume", "resume-replication"] {
        cp.refused(&id, a);
    }
    crate::common::wire_error(
        "delete while running",
        (409, "action_not_allowed"),
        cp.call("DELETE", &format!("/v1/databases/{id}"), None),
    );
    let v = cp.ok(&id, "pause-replication", Mode::Immediate);
    assert_eq!(v.replication_paused, Some(true));
    cp.refused(&id, "pause-replication");
    assert!(cp.database(&id).replication_paused);
    let v = cp.ok(&id, "resume-replication", Mode::Immediate);
    assert_eq!(v.replication_paused, Some(false));
    cp.ok(&id, "reload", Mode::Immediate);
    cp.wait_until(&id, "the reload event", Duration::from_secs(30), |_| {
        cp.events(&id).contains("reload done")
    });

    // rebuild: the old engine serves until the new one is healthy and accepts on the same port;
    // the endpoint never moves and no query fails (docs/runtime.md, stable endpoints).
    let first_instance = instance_of(&cp.instance_status(&id)).id;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (ep1, key, stop) = (ep1.clone(), key.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut served, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match query(&ep1, &key, Q) {
                    (200, _) => served += 1,
                    (s, v) => failed.push(format!("{s} {v}")),
                }
            }
            (served, failed)
        })
    };
    cp.ok(&id, "rebuild", Mode::Immediate);
    let v = cp.wait_until(&id, "the new engine", LONG, |v| {
        v.database.status == Status::Running
            && v.instance.as_ref().is_some_and(|i| i.id != first_instance)
    });
    let start = Instant::now();
    while cp.engine_pids().len() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the old engine still runs after the cutover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = prober.join().unwrap();
    assert!(
        served > 0 && failed.is_empty(),
        "queries failed during the rebuild ({served} served): {failed:?}"
    );
    assert_eq!(endpoint(&v), ep1, "the endpoint stays across a rebuild");
    query_ok(&ep1, &key, Q, Duration::from_secs(10));
    assert_ne!(v.latest_build.as_ref().unwrap().id, first_build);

    // reconfigure with a pending change, then redeploy the first build.
    let d = cp.update_database(
        &id,
        &UpdateDatabaseRequest {
            sync_interval: Some(10),
            ..UpdateDatabaseRequest::default()
        },
    );
    assert!(d.has_pending_changes);
    cp.ok(&id, "reconfigure", Mode::Immediate);
    let v = cp.wait_until(&id, "reconfigure", LONG, |v| {
        v.database.status == Status::Running && !v.has_pending_changes
    });
    assert_eq!(
        v.deployed_instance_config.as_ref().unwrap().sync_interval,
        10
    );
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    let (s, v) = cp.act(
        &id,
        "redeploy",
        Some(wire_body(&redeploy(refract_api::Uuid::nil()))),
    );
    assert_eq!(s, 404, "{v}");
    cp.ok_with(&id, "redeploy", &redeploy(first_build), Mode::Immediate);
    let v = cp.wait_until(&id, "redeploy", LONG, |v| {
        v.database.status == Status::Running
            && v.instance
                .as_ref()
                .is_some_and(|i| i.build_id == first_build)
    });
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // resize while running: deploying → running with the new size.
    let v = cp.ok_with(
        &id,
        "resize",
        &resize(InstanceSize::Medium),
        Mode::Immediate,
    );
    assert_eq!(v.status, Status::Deploying);
    let v = cp.wait_until(&id, "resize", LONG, |v| {
        v.database.status == Status::Running
            && v.deployed_instance_config
                .as_ref()
                .is_some_and(|c| c.instance_size == InstanceSize::Medium)
    });
    assert_eq!(
        v.deployed_instance_config.as_ref().unwrap().task_memory_mb,
        2048
    );
    // The engine gets 80 % of the size's memory as its snapshot cap.
    let inst = instance_of(&v).id.to_string();
    let config =
        std::fs::read_to_string(cp.data.join("instances").join(&inst).join("engine.yaml")).unwrap();
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["memory_cap_mb"], 1638, "{config}");
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // pause → paused
    cp.ok(&id, "pause", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Paused, LONG);
    assert!(v.instance.is_none(), "{v:?}");
    assert!(cp.engine_pids().is_empty(), "an engine runs while paused");
    for a in [
        "provision",
        "reconfigure",
        "pause",
        "reload",
        "pause-replication",
        "resume-replication",
    ] {
        cp.refused(&id, a);
    }
    let (s, _) = cp.call("DELETE", &format!("/v1/databases/{id}"), None);
    assert_eq!(s, 409);
    let v = cp.ok_with(&id, "resize", &resize(InstanceSize::Small), Mode::Immediate);
    assert_eq!(v.status, Status::Paused);
    cp.ok(&id, "resume", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    assert_eq!(
        v.deployed_instance_config.as_ref().unwrap().instance_size,
        InstanceSize::Small,
        "resume applies the stored size"
    );
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // paused → rebuild → running
    cp.ok(&id, "pause", Mode::Immediate);
    cp.wait_for(&id, Status::Paused, LONG);
    cp.ok(&id, "rebuild", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // terminate → terminated
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    assert!(
        cp.engine_pids().is_empty(),
        "an engine runs after terminate"
    );
    for a in [
        "rebuild",
        "reconfigure",
        "redeploy",
        "resize",
        "pause",
        "resume",
        "terminate",
        "reload",
    ] {
        cp.refused(&id, a);
    }
    // terminated → provision again → running, then terminate and delete.
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    cp.ok(&id, "pause", Mode::Immediate);
    cp.wait_for(&id, Status::Paused, LONG);
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    let keys_file = cp.data.join("keys").join(format!("{id}.json"));
    assert!(
        keys_file.exists(),
        "the query keys file is kept while terminated"
    );
    let (s, _) = cp.call("DELETE", &format!("/v1/databases/{id}"), None);
    assert_eq!(s, 204);
    let (s, _) = cp.call("GET", &format!("/v1/databases/{id}"), None);
    assert_eq!(s, 404);
    assert!(
        !keys_file.exists(),
        "a deleted database leaves no query keys file"
    );

    // failed: a source that cannot be read fails the provision with a reason a person can act on.
    let missing = cp.root().join("nonexistent").join("nothing.db");
    let request = CreateConnectionRequest {
        instance: Some(instance_request("ghost", "main")),
        ..connection_request("missing", Backend::Sqlite, missing.to_str().unwrap())
    };
    let ghost = created_database_id(&cp.create_connection(&request));
    cp.ok(&ghost, "provision", Mode::Immediate);
    let v = cp.wait_for(&ghost, Status::Failed, LONG);
    let err = v.database.last_error.as_deref().unwrap();
    assert!(
        err.contains("nonexistent/nothing.db") && err.contains("provision again"),
        "{err}"
    );
    let b = v.latest_build.as_ref().unwrap();
    assert_eq!(
        (b.status, b.deployable),
        (refract_api::BuildStatus::Failed, false),
        "{b:?}"
    );
    for a in [
        "rebuild",
        "reconfigure",
        "redeploy",
        "resize",
        "pause",
        "resume",
        "reload",
    ] {
        cp.refused(&ghost, a);
    }
    let e = crate::common::wire_error(
        "rebuild without a build",
        (409, "action_not_allowed"),
        cp.act(&ghost, "rebuild", None),
    );
    assert!(e.message.contains("successful build"), "{e:?}");
    cp.ok(&ghost, "provision", Mode::Immediate);
    cp.wait_for(&ghost, Status::Failed, LONG);
    cp.ok(&ghost, "terminate", Mode::Immediate);
    cp.wait_for(&ghost, Status::Terminated, LONG);
    cp.ok(&ghost, "provision", Mode::Immediate);
    cp.wait_for(&ghost, Status::Failed, LONG);
    let (s, _) = cp.call("DELETE", &format!("/v1/databases/{ghost}"), None);
    assert_eq!(s, 204, "delete is allowed in failed");
}

/// Transitional rows refuse immediate actions and queue pause/resume (terminate is immediate);
/// the queued action runs once a stable status is reached, and the last queued one wins.
#[test]
fn queued_actions_run_when_stable() {
    let cp = Cp::fresh(1500);
    let id = sqlite_database(&cp, 20);
    cp.ok(&id, "provision", Mode::Immediate);
    cp.wait_until(&id, "building", LONG, |v| {
        v.database.status == Status::Building
    });
    for a in [
        "provision",
        "rebuild",
        "reconfigure",
        "resize",
        "resume",
        "reload",
    ] {
        cp.refused(&id, a);
    }
    let v = cp.ok(&id, "pause", Mode::Queued);
    assert_eq!(v.status, Status::Building);
    assert_eq!(
        cp.database(&id).desired_state,
        Some(refract_api::DesiredState::Paused)
    );
    let v = cp.instance_status(&id);
    assert_eq!(v.actions.pause.mode, Some(Mode::Queued));
    // The build goes on, deploys, reaches running, then pauses.
    let v = cp.wait_for(&id, Status::Paused, LONG);
    assert!(v.database.desired_state.is_none());
    let events = cp.events(&id);
    assert!(
        events.contains("running") && events.contains("queued pause"),
        "{events}"
    );

    // Resuming: resize refused, pause queued; terminate is immediate (a resume or deploy that
    // cannot succeed must never block it) and drops the queued pause.
    cp.ok(&id, "resume", Mode::Immediate);
    cp.wait_until(&id, "resuming", LONG, |v| {
        v.database.status == Status::Resuming
    });
    cp.refused(&id, "resize");
    cp.ok(&id, "pause", Mode::Queued);
    assert_eq!(
        cp.database(&id).desired_state,
        Some(refract_api::DesiredState::Paused)
    );
    let v = cp.ok(&id, "terminate", Mode::Immediate);
    assert_eq!(v.status, Status::Terminating);
    assert!(cp.database(&id).desired_state.is_none());
    cp.wait_for(&id, Status::Terminated, LONG);
    assert!(
        cp.engine_pids().is_empty(),
        "the abandoned resume's engine still runs"
    );

    // Pausing: resume is queued and runs after the pause.
    cp.ok(&id, "provision", Mode::Immediate);
    cp.wait_for(&id, Status::Running, LONG);
    cp.ok(&id, "pause", Mode::Immediate);
    cp.wait_until(&id, "pausing", LONG, |v| {
        v.database.status == Status::Pausing
    });
    cp.refused(&id, "pause");
    cp.ok(&id, "resume", Mode::Queued);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let (key, _) = create_key(&cp, &id, "k");
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // Deploying: resize restarts the deploy with the new size.
    cp.ok(&id, "rebuild", Mode::Immediate);
    cp.wait_until(&id, "deploying", LONG, |v| {
        v.database.status == Status::Deploying
    });
    cp.ok_with(&id, "resize", &resize(InstanceSize::Small), Mode::Immediate);
    let v = cp.wait_until(&id, "the resized deploy", LONG, |v| {
        v.database.status == Status::Running
            && v.deployed_instance_config
                .as_ref()
                .is_some_and(|c| c.instance_size == InstanceSize::Small)
    });
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
}

fn hhmm(offset_minutes: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let m = (now / 60 + offset_minutes).rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A schedule window around now pauses the database at once, and its end resumes it.
#[test]
fn pause_schedule_fires() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 20);
    cp.ok(&id, "provision", Mode::Immediate);
    cp.wait_for(&id, Status::Running, LONG);
    // Avoid a window end that falls in the next few seconds.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if secs > 50 {
        std::thread::sleep(Duration::from_secs(61 - secs));
    }
    let schedule = refract_api::PauseSchedule {
        pause_at: hhmm(-1),
        resume_at: hhmm(1),
        days: vec![],
    };
    cp.update_database(
        &id,
        &UpdateDatabaseRequest {
            pause_schedule: Some(Some(schedule)),
            ..UpdateDatabaseRequest::default()
        },
    );
    cp.wait_for(&id, Status::Paused, Duration::from_secs(30));
    let events = cp.events(&id);
    assert!(
        events.contains("\"schedule\"") && events.contains("scheduled pause"),
        "{events}"
    );
    // resumeAt is at most two minutes away.
    let v = cp.wait_for(&id, Status::Running, Duration::from_secs(150));
    assert!(
        cp.events(&id).contains("scheduled resume"),
        "{}",
        cp.events(&id)
    );
    let (key, _) = create_key(&cp, &id, "k");
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
}

/// SIGKILL of the control plane in every transitional status: after a restart the operation
/// finishes (engines are adopted, not duplicated) and queries are served.
#[test]
fn control_plane_killed_in_each_transitional_status() {
    let mut cp = Cp::fresh(2000);
    let id = sqlite_database(&cp, 50);
    let (key, _) = create_key(&cp, &id, "k");
    let kill_in = |cp: &mut Cp, status: Status| {
        cp.wait_until(&id, status.as_str(), LONG, |v| v.database.status == status);
        cp.restart();
        eprintln!("killed the control plane in {status}");
    };
    cp.ok(&id, "provision", Mode::Immediate);
    for status in [
        Status::TestingConnection,
        Status::Queued,
        Status::Building,
        Status::Deploying,
    ] {
        kill_in(&mut cp, status);
    }
    let v = cp.wait_for(&id, Status::Running, LONG);
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    assert_eq!(cp.engine_pids().len(), 1, "one engine, not duplicates");

    // Killed while the new engine of a deploy is up but not yet cut over: it is adopted.
    cp.ok(&id, "reconfigure", Mode::Immediate);
    cp.wait_until(&id, "a started engine", LONG, |v| {
        v.operation
            .as_ref()
            .is_some_and(|o| o.step.as_deref() == Some("wait_healthy"))
    });
    cp.restart();
    let v = cp.wait_until(&id, "running after reconfigure", LONG, |v| {
        v.database.status == Status::Running && v.operation.is_none()
    });
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    let start = Instant::now();
    while cp.engine_pids().len() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "engines: {:?}",
            cp.engine_pids()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    cp.ok(&id, "pause", Mode::Immediate);
    kill_in(&mut cp, Status::Pausing);
    cp.wait_for(&id, Status::Paused, LONG);
    assert!(cp.engine_pids().is_empty());

    cp.ok(&id, "resume", Mode::Immediate);
    kill_in(&mut cp, Status::Resuming);
    let v = cp.wait_for(&id, Status::Running, LONG);
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));

    // While running, the control plane dies: the engine keeps serving, and is adopted.
    cp.kill();
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(5));
    cp.restart();
    let v2 = cp.wait_for(&id, Status::Running, LONG);
    assert_eq!(
        endpoint(&v2),
        endpoint(&v),
        "the adopted engine keeps its endpoint"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cp.engine_pids().len(), 1);

    cp.ok(&id, "terminate", Mode::Immediate);
    kill_in(&mut cp, Status::Terminating);
    cp.wait_for(&id, Status::Terminated, LONG);
    assert!(cp.engine_pids().is_empty());
}

/// B6: a SIGKILLed engine is restarted (first restart within 2 s) on its port and serves again.
#[test]
fn killed_engine_restarts_and_serves_again() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 2000);
    let (key, _) = create_key(&cp, &id, "k");
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let ep = endpoint(&v);
    query_ok(&ep, &key, Q, Duration::from_secs(10));
    let pids = cp.engine_pids();
    assert_eq!(pids.len(), 1);
    let start = Instant::now();
    Command::new("kill")
        .args(["-9", &pids[0].1.to_string()])
        .status()
        .unwrap();
    // The same URL serves again (the engine is restarted on its port).
    let rows = query_ok(&ep, &key, Q, Duration::from_secs(30));
    let b6 = start.elapsed();
    eprintln!(
        "B6 (2000 users / 6000 posts / 6000 comments, SQLite): SIGKILL → serving again {b6:?}"
    );
    assert_eq!(rows[0]["id"], 2, "the engine's answer: {rows}");
    assert!(b6 < Duration::from_secs(10), "{b6:?}");
    let events = cp.events(&id);
    assert!(
        events.contains("[\"crash\"] \"engine exited (killed by signal 9")
            && events.contains("restart 1"),
        "{events}"
    );
    assert_eq!(cp.status(&id), Status::Running);
}

/// Five crashes in ten minutes: `failed`, with the engine's last log lines in `lastError`.
#[test]
fn crash_loop_gives_up_with_the_engine_log() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 10);
    cp.ok(&id, "provision", Mode::Immediate);
    cp.wait_for(&id, Status::Running, LONG);
    let start = Instant::now();
    loop {
        let status = cp.status(&id);
        if status == Status::Failed {
            break;
        }
        assert_eq!(status, Status::Running);
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{}",
            cp.events(&id)
        );
        for (_, pid) in cp.engine_pids() {
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = cp.instance_status(&id);
    let err = v.database.last_error.as_deref().unwrap();
    assert!(
        err.contains("crashed 5 times") && err.contains("refract runtime"),
        "{err}"
    );
    assert!(v.instance.is_none());
    // Failed allows provision again (and a redeploy of the build it had).
    assert!(v.actions.redeploy.allowed);
    cp.ok(&id, "provision", Mode::Immediate);
    cp.wait_for(&id, Status::Running, LONG);
}

/// A revoked query key stops working within 5 s, without an engine restart; others keep working.
#[test]
fn query_key_revocation_within_5_seconds() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 10);
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let ep = endpoint(&v);
    let (k1, rec1) = create_key(&cp, &id, "one");
    let (k2, _) = create_key(&cp, &id, "two");
    query_ok(&ep, &k1, Q, Duration::from_secs(5));
    query_ok(&ep, &k2, Q, Duration::from_secs(5));
    let list: Vec<refract_api::QueryKey> = cp.get(&format!("/v1/databases/{id}/api-keys"));
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|k| k.key.is_none()),
        "the key is shown only once"
    );
    let pid_before = cp.engine_pids();
    let revoked: refract_api::QueryKey = cp.wire::<(), _>(
        "DELETE",
        &format!("/v1/databases/{id}/api-keys/{}", rec1.key_id),
        None,
        200,
    );
    assert!(revoked.revoked_at.is_some(), "{revoked:?}");
    let start = Instant::now();
    while query(&ep, &k1, Q).0 != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the revoked key still works"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("query key revoked in {:?}", start.elapsed());
    assert_eq!(query(&ep, &k2, Q).0, 200);
    assert_eq!(cp.engine_pids(), pid_before, "no restart");
    let (s, _) = cp.call("DELETE", &format!("/v1/databases/{id}/api-keys/nope"), None);
    assert_eq!(s, 404);
}

/// Schema config routes: validation by line, GET/PUT/DELETE, and a rebuild applies it.
#[test]
fn schema_config_routes_and_rebuild() {
    let cp = Cp::fresh(0);
    let id = sqlite_database(&cp, 10);
    let url = format!("{}/v1/databases/{id}/schema-config", cp.url);
    let get = || cp.http.get(&url).bearer_auth(&cp.admin).send().unwrap();
    // The default config: the database exists, it has no config of its own.
    let none = get();
    assert_eq!(none.status().as_u16(), 204);
    assert_eq!(none.text().unwrap(), "");
    let put = |text: &str| {
        let r = cp
            .http
            .put(&url)
            .bearer_auth(&cp.admin)
            .body(text.to_string())
            .send()
            .unwrap();
        let s = r.status().as_u16();
        (s, r.text().unwrap_or_default())
    };
    let (s, body) = put("version: 1\ntables:\n  - name: users\n    bogus: 3\n");
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("line"), "{body}");
    let yaml = "version: 1\ntables:\n  - name: users\n    alias: people\n  - name: posts\n";
    let (s, body) = put(yaml);
    assert_eq!(s, 204, "{body}");
    assert_eq!(get().text().unwrap(), yaml);
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let (key, _) = create_key(&cp, &id, "k");
    let rows = query_ok(
        &endpoint(&v),
        &key,
        "people(id = 1) { id name }",
        Duration::from_secs(10),
    );
    assert_eq!(rows[0]["name"], "user 1");
    let schema: refract_api::SchemaView = cp.get(&format!("/v1/databases/{id}/schema"));
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"people"), "{names:?}");
    let r = cp.http.delete(&url).bearer_auth(&cp.admin).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    cp.ok(&id, "rebuild", Mode::Immediate);
    let v = cp.wait_until(&id, "rebuild", LONG, |v| {
        let latest = v.latest_build.as_ref();
        v.database.status == Status::Running
            && v.operation.is_none()
            && latest.is_some_and(|b| b.status == refract_api::BuildStatus::Succeeded)
            && v.instance.as_ref().map(|i| i.build_id) == latest.map(|b| b.id)
    });
    query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
}

/// `refract quickstart`: parse the printed curl command, run it, then Ctrl-C stops everything.
#[test]
fn quickstart_prints_a_working_curl_command() {
    quickstart_works("sqlite");
}

/// `refract quickstart --source mariadb`: the same on a throwaway MariaDB server, stopped at exit.
#[test]
fn quickstart_on_mariadb_prints_a_working_curl_command() {
    let tmp = quickstart_works("mariadb");
    // The managed recipe's layout (refract_managed::StandaloneServer): data in `server/n0`.
    let node = tmp.path().join("qs/mariadb/server/n0");
    assert!(node.join("data").is_dir(), "no MariaDB data in {node:?}");
    assert!(!node.join("mysqld.pid").exists(), "MariaDB still runs");
}

/// `refract quickstart --source postgres`: the same on a throwaway PostgreSQL server, stopped at
/// exit.
#[test]
fn quickstart_on_postgres_prints_a_working_curl_command() {
    let tmp = quickstart_works("postgres");
    let node = tmp.path().join("qs/postgres/server/n0");
    assert!(
        node.join("PG_VERSION").is_file(),
        "no PostgreSQL data in {node:?}"
    );
    assert!(
        !node.join("postmaster.pid").exists(),
        "PostgreSQL still runs"
    );
}

/// Runs `refract quickstart --source SOURCE`, checks the printed curl command, sends Ctrl-C and
/// checks that the engine stopped. Returns the temporary directory (quickstart's is `qs` in it).
fn quickstart_works(source: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    // A throwaway server may run as another user (when the tests run as root): let it in.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("qs");
    let (mut child, rx) =
        crate::common::spawn_quickstart(&["--source", source, "--dir", dir.to_str().unwrap()]);
    let mut curl = None;
    let start = Instant::now();
    while curl.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(start.elapsed()))
            .expect("no curl line");
        if line.trim_start().starts_with("curl ") {
            curl = Some(line.trim().to_string());
        }
    }
    let curl = curl.unwrap();
    // curl -H 'Authorization: Bearer KEY' -d 'QUERY' URL
    let parts: Vec<&str> = curl.split('\'').collect();
    assert_eq!(parts.len(), 5, "{curl}");
    let key = parts[1].strip_prefix("Authorization: Bearer ").unwrap();
    let q = parts[3];
    let url = parts[4].trim();
    assert!(url.ends_with("/query"), "{curl}");
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .header("Authorization", format!("Bearer {key}"))
        .body(q.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let rows: Value = resp.json().unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    assert!(
        rows[0]["posts"].as_array().is_some_and(|p| !p.is_empty()),
        "{rows}"
    );
    // Ctrl-C: the engine and the control plane stop.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "quickstart did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let engine = url.trim_end_matches("/query");
    assert!(
        reqwest::blocking::get(format!("{engine}/health")).is_err(),
        "the engine still runs"
    );
    tmp
}

/// A MariaDB source: provision, query; a refused login fails with an actionable `lastError`.
#[test]
fn mariadb_source_provisions_and_refused_login_fails() {
    // Refract connects as the documented least-privilege user: it still sees the primary keys and
    // the relation (MariaDB hides TABLE_CONSTRAINTS from it).
    let src = crate::common::mysql_source();
    let cp = Cp::fresh(0);
    let schema = format!("lc_{}", rand::random::<u32>());
    let setup = crate::common::mariadb_admin;
    setup(&format!(
        "CREATE DATABASE {schema}; CREATE TABLE {schema}.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         CREATE TABLE {schema}.posts (id INT PRIMARY KEY, user_id INT NOT NULL, title VARCHAR(80) NOT NULL,
           FOREIGN KEY (user_id) REFERENCES {schema}.users(id));
         INSERT INTO {schema}.users VALUES (1, 'Ada'), (2, 'Bob');
         INSERT INTO {schema}.posts VALUES (1, 2, 'hello'), (2, 2, 'again');"
    ));
    let conn = |name: &str, password: &str| {
        let request = CreateConnectionRequest {
            password: Some(password.into()),
            instance: Some(instance_request("db", &schema)),
            ..crate::common::server_connection_request(name, Backend::Mysql, &src, &[&schema])
        };
        created_database_id(&cp.create_connection(&request))
    };
    let t0 = Instant::now();
    let good = conn("good", &src.password);
    let bad = conn("bad", "wrong-password-123");
    cp.ok(&good, "provision", Mode::Immediate);
    cp.ok(&bad, "provision", Mode::Immediate);
    let v = cp.wait_for(&good, Status::Running, LONG);
    eprintln!("mariadb: running after {:?}", t0.elapsed());
    let (key, _) = create_key(&cp, &good, "k");
    let rows = query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    assert_eq!(
        rows,
        json!([{"id": 2, "name": "Bob", "posts": [{"title": "hello"}, {"title": "again"}]}])
    );
    let v = cp.wait_for(&bad, Status::Failed, LONG);
    let err = v.database.last_error.as_deref().unwrap();
    assert!(
        err.contains("refused the login") && err.contains("PATCH /v1/connections/"),
        "{err}"
    );
    assert!(!err.contains("wrong-password-123"));
    // The password reached the engine by file only.
    let inst = instance_of(&cp.instance_status(&good)).id.to_string();
    let dir = cp.data.join("instances").join(&inst);
    assert_eq!(
        std::fs::read_to_string(dir.join("source-password")).unwrap(),
        src.password
    );
    assert!(!std::fs::read_to_string(dir.join("state.json"))
        .unwrap()
        .contains(&src.password));
    assert!(!std::fs::read_to_string(dir.join("engine.yaml"))
        .unwrap()
        .contains(&src.password));
    cp.ok(&good, "terminate", Mode::Immediate);
    cp.wait_for(&good, Status::Terminated, LONG);
    setup(&format!("DROP DATABASE {schema}"));
}

/// A PostgreSQL source: provision and query.
#[test]
fn postgres_source_provisions() {
    let p = crate::common::postgres();
    let cp = Cp::fresh(0);
    let db = crate::common::new_postgres_database(
        "lc",
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE posts (id INT PRIMARY KEY, user_id INT NOT NULL REFERENCES users(id), title TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob'); INSERT INTO posts VALUES (1, 2, 'hello');",
    );
    let run = crate::common::postgres_admin;
    let request = CreateConnectionRequest {
        sync_mode: Some(refract_api::SyncMode::Logical),
        instance: Some(instance_request("db", &db)),
        ..crate::common::server_connection_request("pg", Backend::Postgres, &p, &[&db])
    };
    let id = created_database_id(&cp.create_connection(&request));
    cp.update_database(
        &id,
        &UpdateDatabaseRequest {
            sync_mode: Some(refract_api::SyncMode::Logical),
            ..UpdateDatabaseRequest::default()
        },
    );
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let (key, _) = create_key(&cp, &id, "k");
    let rows = query_ok(&endpoint(&v), &key, Q, Duration::from_secs(10));
    assert_eq!(
        rows,
        json!([{"id": 2, "name": "Bob", "posts": [{"title": "hello"}]}])
    );
    let slot_check = format!(
        "DO $$ BEGIN IF (SELECT count(*) FROM pg_replication_slots WHERE database = '{db}') <> {{}} \
         THEN RAISE EXCEPTION 'replication slots of {db}: expected {{}}'; END IF; END $$"
    );
    // Logical mode: the engine created a slot on the source...
    run("postgres", &slot_check.replace("{}", "1"));
    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    // ...and terminating the database dropped it.
    run("postgres", &slot_check.replace("{}", "0"));
    run("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// A Sakila-like PostgreSQL schema whose derived relation names clash (two foreign keys from
/// `film` to `language`; `staff.store_id` → `store` beside `store.manager_staff_id` → `staff`; a
/// self-reference named like its table) provisions with no schema config: the clashing relations
/// get generated names, listed as build warnings, and every relation answers a query.
#[test]
fn sakila_like_schema_provisions_without_a_config() {
    let p = crate::common::postgres();
    let cp = Cp::fresh(0);
    let db = crate::common::new_postgres_database(
        "sk",
        "CREATE TABLE language (language_id INT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE film (film_id INT PRIMARY KEY, title TEXT NOT NULL,
           language_id INT NOT NULL REFERENCES language(language_id),
           original_language_id INT REFERENCES language(language_id));
         CREATE TABLE store (store_id INT PRIMARY KEY, manager_staff_id INT);
         CREATE TABLE staff (staff_id INT PRIMARY KEY, name TEXT NOT NULL,
           store_id INT NOT NULL REFERENCES store(store_id));
         ALTER TABLE store ADD FOREIGN KEY (manager_staff_id) REFERENCES staff(staff_id);
         CREATE TABLE employee (id INT PRIMARY KEY, name TEXT NOT NULL,
           employee_id INT REFERENCES employee(id));
         INSERT INTO language VALUES (1, 'English'), (2, 'Italian');
         INSERT INTO film VALUES (10, 'Cinema Paradiso', 1, 2), (11, 'Airport', 1, NULL);
         INSERT INTO store VALUES (100, NULL);
         INSERT INTO staff VALUES (7, 'Mike', 100);
         UPDATE store SET manager_staff_id = 7;
         INSERT INTO employee VALUES (1, 'Boss', NULL), (2, 'Worker', 1);",
    );
    let run = crate::common::postgres_admin;
    let request = CreateConnectionRequest {
        instance: Some(instance_request("db", &db)),
        ..crate::common::server_connection_request("pg", Backend::Postgres, &p, &[&db])
    };
    let id = created_database_id(&cp.create_connection(&request));
    cp.ok(&id, "provision", Mode::Immediate);
    let v = cp.wait_for(&id, Status::Running, LONG);
    let (key, _) = create_key(&cp, &id, "k");
    let ep = endpoint(&v);

    // Every relation, generated names included.
    let rows = query_ok(
        &ep,
        &key,
        "language(ORDER BY language_id) { name film(ORDER BY film_id) { title } film_by_original_language_id { title } }",
        Duration::from_secs(10),
    );
    assert_eq!(
        rows,
        json!([
            {"name": "English", "film": [{"title": "Cinema Paradiso"}, {"title": "Airport"}], "film_by_original_language_id": []},
            {"name": "Italian", "film": [], "film_by_original_language_id": [{"title": "Cinema Paradiso"}]},
        ])
    );
    let rows = query_ok(
        &ep,
        &key,
        "film(film_id = 10) { title language { name } original_language { name } }",
        Duration::from_secs(10),
    );
    assert_eq!(
        rows,
        json!([{"title": "Cinema Paradiso", "language": {"name": "English"}, "original_language": {"name": "Italian"}}])
    );
    let rows = query_ok(
        &ep,
        &key,
        "staff { name store { store_id } store_by_manager_staff_id { store_id } }",
        Duration::from_secs(10),
    );
    assert_eq!(
        rows,
        json!([{"name": "Mike", "store": {"store_id": 100}, "store_by_manager_staff_id": [{"store_id": 100}]}])
    );
    let rows = query_ok(
        &ep,
        &key,
        "store { store_id manager_staff { name } staff { name } }",
        Duration::from_secs(10),
    );
    assert_eq!(
        rows,
        json!([{"store_id": 100, "manager_staff": {"name": "Mike"}, "staff": [{"name": "Mike"}]}])
    );
    let rows = query_ok(
        &ep,
        &key,
        "employee(ORDER BY id) { name employee { name } employee_by_employee_id { name } }",
        Duration::from_secs(10),
    );
    assert_eq!(
        rows,
        json!([
            {"name": "Boss", "employee": null, "employee_by_employee_id": [{"name": "Worker"}]},
            {"name": "Worker", "employee": {"name": "Boss"}, "employee_by_employee_id": []},
        ])
    );

    // The generated names are build warnings, in GET …/schema and in the build log.
    let schema: refract_api::SchemaView = cp.get(&format!("/v1/databases/{id}/schema"));
    let warnings: Vec<&str> = schema.warnings.iter().map(String::as_str).collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    for generated in [
        "`film_by_original_language_id`",
        "`store_by_manager_staff_id`",
        "`employee_by_employee_id`",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(generated)),
            "{generated}: {warnings:#?}"
        );
    }
    let builds: refract_api::BuildsResponse = cp.get(&format!("/v1/databases/{id}/builds"));
    let log = cp
        .http
        .get(format!("{}{}", cp.url, builds.builds[0].logs_url))
        .bearer_auth(&cp.admin)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("3 warnings"), "{log}");
    assert!(log.contains("film_by_original_language_id"), "{log}");

    cp.ok(&id, "terminate", Mode::Immediate);
    cp.wait_for(&id, Status::Terminated, LONG);
    run("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// Scale S of the reference dataset (10k users, 100k posts, 300k comments) in SQLite.
fn blog_sqlite_scale_s(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, plan TEXT NOT NULL,
             verified BOOLEAN NOT NULL, created_at DATETIME NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL,
             body TEXT NOT NULL, published BOOLEAN NOT NULL, created_at DATETIME NOT NULL);
         CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id),
             user_id INTEGER NOT NULL REFERENCES users(id), body TEXT NOT NULL, approved BOOLEAN NOT NULL,
             created_at DATETIME NOT NULL);
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000)
         INSERT INTO users SELECT n, 'user ' || n, 'user' || n || '@example.com',
             CASE n % 3 WHEN 0 THEN 'pro' ELSE 'free' END, n % 2, datetime(1700000000 + n * 60, 'unixepoch') FROM s;
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000)
         INSERT INTO posts SELECT n, 1 + (n * 7919) % 10000, 'Post ' || n, 'Body of post ' || n || ' with some text',
             n % 4 <> 0, datetime(1700000000 + n * 30, 'unixepoch') FROM s;
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300000)
         INSERT INTO comments SELECT n, 1 + (n * 104729) % 100000, 1 + (n * 31) % 10000, 'Comment ' || n || ' says hello',
             n % 5 <> 0, datetime(1700000000 + n * 10, 'unixepoch') FROM s;",
    )
    .unwrap();
}

/// B5 and B6 at scale S (SQLite source): provision → first query, SIGKILL of the engine →
/// serving again. A measurement, not a check: `cargo test --release -p refract --test it
/// lifecycle::b5_b6 -- --ignored --nocapture`.
#[test]
#[ignore]
fn b5_b6_scale_s() {
    let cp = Cp::fresh(0);
    let path = cp.root().join("blog-s.db");
    let t = Instant::now();
    blog_sqlite_scale_s(&path);
    eprintln!("dataset S written in {:?}", t.elapsed());
    let request = CreateConnectionRequest {
        instance: Some(refract_api::CreateInstanceRequest {
            instance_size: Some(InstanceSize::Small),
            ..instance_request("s", "main")
        }),
        ..connection_request("s", Backend::Sqlite, path.to_str().unwrap())
    };
    let id = created_database_id(&cp.create_connection(&request));
    let (key, _) = create_key(&cp, &id, "k");
    let q = "users(id = 42) { id name posts { title comments { body } } }";
    let mut b5 = Vec::new();
    for round in 0..3 {
        let start = Instant::now();
        cp.ok(&id, "provision", Mode::Immediate);
        let v = cp.wait_for(&id, Status::Running, LONG);
        query_ok(&endpoint(&v), &key, q, Duration::from_secs(10));
        b5.push(start.elapsed());
        eprintln!(
            "B5 round {round}: registered → first query {:?}",
            start.elapsed()
        );
        if round < 2 {
            cp.ok(&id, "terminate", Mode::Immediate);
            cp.wait_for(&id, Status::Terminated, LONG);
        }
    }
    let v = cp.instance_status(&id);
    let ep = endpoint(&v);
    let mut b6 = Vec::new();
    for round in 0..3 {
        let pids = cp.engine_pids();
        let start = Instant::now();
        Command::new("kill")
            .args(["-9", &pids[0].1.to_string()])
            .status()
            .unwrap();
        query_ok(&ep, &key, q, Duration::from_secs(60));
        b6.push(start.elapsed());
        eprintln!(
            "B6 round {round}: SIGKILL → serving again {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_secs(4));
    }
    let stats = cp
        .http
        .get(format!("{ep}/health"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    eprintln!("B5 {b5:?}\nB6 {b6:?}\nhealth after: {stats}");
}

/// The CLI's action verbs: `provision --wait` follows the action to `running` and prints the
/// endpoint; a refused action exits 1 with the matrix's reason; the read verbs work.
#[test]
fn cli_action_verbs_and_wait() {
    let cp = Cp::fresh(700);
    let id = sqlite_database(&cp, 20);
    let cli = |args: &[&str]| {
        let out = Command::new(refract_bin())
            .args(args)
            .env("REFRACT_URL", &cp.url)
            .env("REFRACT_TOKEN", &cp.admin)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&["databases", "provision", &id, "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("running at http://127.0.0.1:"), "{out}");
    for status in ["testing_connection", "queued", "building", "deploying"] {
        assert!(
            err.contains(status),
            "progress lines name each status: {err}"
        );
    }
    let (ok, _, err) = cli(&["databases", "resume", &id]);
    assert!(!ok);
    assert!(
        err.contains("resume is not allowed in status running"),
        "{err}"
    );
    let (ok, out, _) = cli(&["databases", "instance", &id]);
    assert!(
        ok && out.contains("status        running") && out.contains("pause"),
        "{out}"
    );
    let (ok, out, err) = cli(&["databases", "api-keys", "create", &id, "--name", "cli"]);
    assert!(ok && out.contains("rxk_"), "{out}{err}");
    let (ok, out, _) = cli(&["databases", "builds", &id]);
    assert!(ok && out.contains("succeeded"), "{out}");
    let (ok, out, _) = cli(&["databases", "events", &id]);
    assert!(ok && out.contains("testing_connection"), "{out}");
    let (ok, out, err) = cli(&["databases", "pause", &id, "--wait"]);
    assert!(ok && out.contains("paused"), "{out}{err}");
    let (ok, out, err) = cli(&["databases", "terminate", &id, "--wait"]);
    assert!(ok && out.contains("terminated"), "{out}{err}");
    assert!(cp.engine_pids().is_empty());
}

/// Builds run two at once; a third provision waits in `queued`.
#[test]
fn build_pool_runs_two_at_once() {
    let cp = Cp::fresh(1500);
    let ids: Vec<String> = (0..3).map(|_| sqlite_database(&cp, 5)).collect();
    for id in &ids {
        cp.ok(id, "provision", Mode::Immediate);
    }
    let start = Instant::now();
    let mut saw_waiting = false;
    loop {
        let statuses: Vec<Status> = ids.iter().map(|id| cp.status(id)).collect();
        let building = statuses.iter().filter(|s| **s == Status::Building).count();
        assert!(building <= 2, "{statuses:?}");
        if building == 2 && statuses.contains(&Status::Queued) {
            saw_waiting = true;
        }
        if statuses.iter().all(|s| *s == Status::Running) {
            break;
        }
        assert!(start.elapsed() < LONG, "{statuses:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(saw_waiting, "a third build never waited for a slot");
}
