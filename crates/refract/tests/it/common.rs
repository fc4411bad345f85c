//! Helpers shared by the integration tests.

use std::path::PathBuf;

use refract_api::{
    Backend, CreateConnectionRequest, CreateConnectionResponse, CreateInstanceRequest, Database,
    RegisterDatabaseRequest, Uuid,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

// ------------------------------------------------------------------ `/v1` bodies, typed

/// A request body as JSON (the wire type's own serialization: only the fields set).
pub fn wire_body<T: Serialize>(request: &T) -> serde_json::Value {
    serde_json::to_value(request).expect("a wire type serializes")
}

/// An answer read as its wire type, after checking its status; panics with the body otherwise
/// (a field the type lacks, or one of the wrong shape, fails here).
pub fn wire_answer<T: DeserializeOwned>(
    what: &str,
    expected: u16,
    (status, body): (u16, serde_json::Value),
) -> T {
    assert_eq!(status, expected, "{what}: {body}");
    serde_json::from_value(body.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: the answer is no {}: {e}\n{body}",
            std::any::type_name::<T>()
        )
    })
}

/// A failed answer read as `{error, message}`, after checking its status and error code.
#[allow(dead_code)]
pub fn wire_error(
    what: &str,
    (status, code): (u16, &str),
    answer: (u16, serde_json::Value),
) -> refract_api::ErrorBody {
    let e: refract_api::ErrorBody = wire_answer(what, status, answer);
    assert_eq!(e.error, code, "{what}: {e:?}");
    e
}

/// `POST /v1/connections` body of a connection called `name` to `host` (no port, user,
/// password or first database: set them with struct update syntax).
pub fn connection_request(name: &str, backend: Backend, host: &str) -> CreateConnectionRequest {
    CreateConnectionRequest {
        backend: Some(backend),
        name: name.into(),
        host: host.into(),
        ..Default::default()
    }
}

/// [`connection_request`] to a test server `u` as its user, offering `schemas`.
pub fn server_connection_request(
    name: &str,
    backend: Backend,
    u: &ServerUrl,
    schemas: &[&str],
) -> CreateConnectionRequest {
    CreateConnectionRequest {
        port: Some(i64::from(u.port)),
        user: Some(u.user.clone()),
        password: Some(u.password.clone()),
        available_schemas: Some(schemas.iter().map(|s| s.to_string()).collect()),
        ..connection_request(name, backend, &u.host)
    }
}

/// A connection to the SQLite file `path` with one database `name` (its `main` schema),
/// polled every 5 s; the connection's name is `name` and a random suffix.
pub fn sqlite_request(name: &str, path: &std::path::Path) -> CreateConnectionRequest {
    CreateConnectionRequest {
        sync_interval: Some(5),
        instance: Some(instance_request(name, "main")),
        ..connection_request(
            &format!("{name}-{}", rand::random::<u32>()),
            Backend::Sqlite,
            path.to_str().unwrap(),
        )
    }
}

/// The `instance` of `POST /v1/connections`: a first database `name` on `schema`.
pub fn instance_request(name: &str, schema: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        name: name.into(),
        schema: schema.into(),
        ..Default::default()
    }
}

/// `POST /v1/databases` body: database `name` on `schema` of `connection`.
pub fn database_request(connection: Uuid, name: &str, schema: &str) -> RegisterDatabaseRequest {
    RegisterDatabaseRequest {
        connection_id: connection,
        name: name.into(),
        schema: schema.into(),
        ..Default::default()
    }
}

/// A temp dir (0711) that engines can reach when they run as another user (the tests run as
/// root): its data dir and the SQLite files written in it (0644) are theirs to read.
pub fn reachable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    tmp
}

/// The `refract` binary under test.
pub fn refract_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_refract"))
}

/// Runs `cmd` with its stdout and stderr in the files `out` and `err` of `dir`, killing it once
/// `limit` has passed since `start`: its exit status (`None`: killed at the limit) and all it
/// printed.
pub fn run_bounded(
    cmd: &mut std::process::Command,
    dir: &std::path::Path,
    start: std::time::Instant,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    cmd.stdout(std::fs::File::create(dir.join("out")).unwrap())
        .stderr(std::fs::File::create(dir.join("err")).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let printed = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("out")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("err")).unwrap_or_default()
    );
    (status, printed)
}

/// The id of the database that creating a connection with an instance made.
pub fn created_database_id(created: &CreateConnectionResponse) -> String {
    created.database.as_ref().unwrap().id.to_string()
}

/// Starts `refract quickstart ARGS` (log level `warn`, stderr to the test's) and reads its stdout
/// on a thread: the child, and the lines it prints as they come.
pub fn spawn_quickstart(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(refract_bin())
        .arg("quickstart")
        .args(args)
        .env("REFRACT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// A required environment variable set by `scripts/test`; a test that needs a server fails
/// loudly when it is missing instead of passing silently.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test, which starts the database servers")
    })
}

pub use refract_testkit::ServerUrl;

/// The test MariaDB server.
pub fn mysql() -> ServerUrl {
    ServerUrl::from_env("REFRACT_TEST_MYSQL_URL")
}

/// The test PostgreSQL server.
pub fn postgres() -> ServerUrl {
    ServerUrl::from_env("REFRACT_TEST_PG_URL")
}

/// The test MariaDB server as the documented source user (`GRANT SELECT, REPLICATION SLAVE,
/// REPLICATION CLIENT ON *.*`, see `scripts/testenv`): what Refract connects as. [`mysql`] is
/// an admin, for setting up data.
pub fn mysql_source() -> ServerUrl {
    ServerUrl::from_env("REFRACT_TEST_MYSQL_SOURCE_URL")
}

/// The test PostgreSQL server as the documented source role (`LOGIN REPLICATION`, SELECT on the
/// tables): what Refract connects as. [`postgres`] is a superuser, for setting up data.
pub fn postgres_source() -> ServerUrl {
    ServerUrl::from_env("REFRACT_TEST_PG_SOURCE_URL")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `sql` (several statements allowed) on a MariaDB server as `u`.
pub fn mariadb_exec(u: &ServerUrl, sql: &str) {
    let url = format!("mysql://{}:{}@{}:{}", u.user, u.password, u.host, u.port);
    block_on(async {
        use mysql_async::prelude::Queryable;
        let pool = mysql_async::Pool::new(url.as_str());
        let mut c = pool.get_conn().await.unwrap();
        c.query_drop(sql).await.unwrap();
        drop(c);
        pool.disconnect().await.unwrap();
    });
}

/// Runs `sql` (several statements allowed) on database `db` of a PostgreSQL server as `u`
/// (`u.host` may be a Unix socket directory).
pub fn postgres_exec(u: &ServerUrl, db: &str, sql: &str) {
    let conf = format!(
        "host={} port={} user={} password={} dbname={db}",
        u.host, u.port, u.user, u.password
    );
    block_on(async move {
        let (client, conn) = tokio_postgres::connect(&conf, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    });
}

/// Live engine processes of a control plane's data dir, by instance id, from the runtime
/// driver's state files (a zombie or an exited one is not live).
pub fn live_engines(data_dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(data_dir.join("instances")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(pid) = state["pid"].as_u64() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if state["exit"].is_null() && cmdline.contains("engine") && !zombie {
            out.push((e.file_name().to_string_lossy().to_string(), pid as u32));
        }
    }
    out
}

/// Waits (30 s at most) for a `refract engine` child's ready line on its piped stdout; returns
/// the URL it listens on. Keeps draining stdout so the engine never blocks on a full pipe.
pub fn engine_ready_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("the engine's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("refract engine listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the engine prints its ready line")
}

/// Sets up data on the test MariaDB as its admin.
pub fn mariadb_admin(sql: &str) {
    mariadb_exec(&mysql(), sql)
}

/// Sets up data in database `db` of the test PostgreSQL as its superuser.
pub fn postgres_admin(db: &str, sql: &str) {
    postgres_exec(&postgres(), db, sql)
}

/// A new database `PREFIX_N` on the test PostgreSQL, filled by `setup` (SQL run in it as the
/// superuser); its name. The test drops it.
pub fn new_postgres_database(prefix: &str, setup: &str) -> String {
    let db = format!("{prefix}_{}", rand::random::<u32>());
    postgres_admin("postgres", &format!("CREATE DATABASE {db}"));
    postgres_admin(&db, setup);
    db
}

/// A running `refract serve` on a temp data dir, driven over HTTP. Records everything the
/// process printed and every response body, so tests can check that no secret leaked.
pub struct ControlPlane {
    child: std::sync::Mutex<Option<std::process::Child>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data dir.
    pub dir: PathBuf,
    /// The admin's management key (from `DIR/admin-key`).
    pub admin_key: String,
    tmp: Option<tempfile::TempDir>,
    master_key: Option<String>,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    past_output: Vec<std::sync::Arc<std::sync::Mutex<String>>>,
    responses: std::sync::Mutex<Vec<String>>,
    client: reqwest::blocking::Client,
}

impl ControlPlane {
    /// Starts on a new temp dir (key file, no `REFRACT_MASTER_KEY`).
    pub fn start_fresh() -> Self {
        let tmp = reachable_tempdir();
        let data = tmp.path().join("data");
        Self::start_with(&data, None, Some(tmp))
    }

    /// Starts on `data` (kept alive by `tmp`), with an optional `REFRACT_MASTER_KEY`.
    pub fn start_with(
        data: &std::path::Path,
        master_key: Option<&str>,
        tmp: Option<tempfile::TempDir>,
    ) -> Self {
        let mut cmd = serve_command(data);
        // Debug logs: a password must not show up even there.
        cmd.env(
            "REFRACT_LOG",
            "info,refract_control_plane=debug,tower_http=debug",
        );
        if let Some(k) = master_key {
            cmd.env("REFRACT_MASTER_KEY", k);
        }
        let mut child = cmd.spawn().expect("spawn refract serve");
        let (url, output) = wait_until_listening(&mut child);
        let admin_key = std::fs::read_to_string(data.join("admin-key"))
            .expect("admin-key")
            .trim()
            .to_string();
        ControlPlane {
            child: std::sync::Mutex::new(Some(child)),
            url,
            dir: data.to_path_buf(),
            admin_key,
            tmp,
            master_key: master_key.map(str::to_string),
            output,
            past_output: Vec::new(),
            responses: std::sync::Mutex::new(Vec::new()),
            client: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The directory SQLite sources may be in (`--sqlite-root`): the data dir's parent.
    #[allow(dead_code)]
    pub fn sqlite_root(&self) -> PathBuf {
        self.dir.parent().unwrap().to_path_buf()
    }

    /// Sends a request with an optional JSON body; returns status and parsed body (`Null` if empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let raw = body.map(|b| b.to_string());
        self.send(method, path, token, raw.as_deref())
    }

    /// Sends a raw body text.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        raw: &str,
    ) -> (u16, serde_json::Value) {
        self.send(method, path, token, Some(raw))
    }

    /// As the admin.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.call(method, path, Some(&self.admin_key.clone()), body)
    }

    /// A `/v1` call as `token` with a wire request body, its answer read as its wire type (the
    /// status checked first).
    #[allow(dead_code)]
    pub fn wire<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&B>,
        expected: u16,
    ) -> T {
        let answer = self.call(method, path, Some(token), body.map(wire_body));
        wire_answer(&format!("{method} {path}"), expected, answer)
    }

    /// `POST /v1/connections` as the admin (201).
    #[allow(dead_code)]
    pub fn create_connection(&self, request: &CreateConnectionRequest) -> CreateConnectionResponse {
        let answer = self.admin("POST", "/v1/connections", Some(wire_body(request)));
        wire_answer("POST /v1/connections", 201, answer)
    }

    /// `POST /v1/databases` as the admin (201).
    #[allow(dead_code)]
    pub fn register_database(&self, request: &RegisterDatabaseRequest) -> Database {
        let answer = self.admin("POST", "/v1/databases", Some(wire_body(request)));
        wire_answer("POST /v1/databases", 201, answer)
    }

    /// `GET /v1/databases/{id}` as the admin (200).
    #[allow(dead_code)]
    pub fn database(&self, id: Uuid) -> Database {
        let path = format!("/v1/databases/{id}");
        let answer = self.admin("GET", &path, None);
        wire_answer(&path, 200, answer)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        self.responses.lock().unwrap().push(text.clone());
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, value)
    }

    /// SIGKILLs the process (no graceful shutdown) and returns what it printed.
    pub fn kill(&self) -> String {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(std::time::Duration::from_millis(100)); // let the readers drain
        self.output()
    }

    /// Kills (if running) and starts again on the same data dir.
    pub fn restart(mut self) -> Self {
        self.kill();
        let tmp = self.tmp.take();
        let mut next = Self::start_with(&self.dir, self.master_key.as_deref(), tmp);
        next.past_output = std::mem::take(&mut self.past_output);
        next.past_output.push(self.output.clone());
        next.responses
            .lock()
            .unwrap()
            .extend(self.responses.lock().unwrap().drain(..));
        next
    }

    /// Stops and hands back the temp dir and data dir.
    pub fn stop_keep_dir(mut self) -> (Option<tempfile::TempDir>, PathBuf) {
        self.kill();
        (self.tmp.take(), self.dir.clone())
    }

    /// What the current process printed (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// None of `secrets` appears in any output of any process so far or in any response body.
    pub fn assert_no_leak(&self, secrets: &[&str]) {
        let mut all: Vec<String> = self
            .past_output
            .iter()
            .map(|o| o.lock().unwrap().clone())
            .collect();
        all.push(self.output());
        for s in secrets {
            for o in &all {
                assert!(
                    !o.contains(s),
                    "a secret appears in the control plane's output"
                );
            }
            for r in self.responses.lock().unwrap().iter() {
                assert!(!r.contains(s), "a secret appears in a response: {r}");
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(mut g) = self.child.lock() {
            if let Some(mut c) = g.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A `refract serve` started by [`serve`]; killed when dropped (also when a test fails).
pub struct Serve(std::process::Child);

impl Serve {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `refract serve --data-dir DATA --listen 127.0.0.1:0` (a free port), to complete and run.
pub fn serve_on_free_port(data: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(refract_bin());
    cmd.args([
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd
}

/// `refract serve` with `args` and `env`, in `cwd`; its child and URL.
pub fn serve(
    data: &std::path::Path,
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Serve, String) {
    let mut cmd = serve_on_free_port(data);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("REFRACT_MASTER_KEY")
        .env_remove("REFRACT_SQLITE_ROOT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Serve(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("refract control plane listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("refract serve started");
    (child, url)
}

/// `refract serve` on `data`, listening on a free port, with its output piped (for
/// [`wait_until_listening`]) and without the caller's `REFRACT_MASTER_KEY`. The directory of
/// `data` is the SQLite root, as an operator would set it (tests write their SQLite sources
/// there; the data dir inside it stays refused).
pub(crate) fn serve_command(data: &std::path::Path) -> std::process::Command {
    use std::process::Stdio;
    let root = data.parent().unwrap();
    let mut cmd = serve_on_free_port(data);
    cmd.args(["--sqlite-root", root.to_str().unwrap()])
        .env_remove("REFRACT_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collects the output of a `refract serve` child (stdout line by line, stderr as it comes) and
/// waits up to 30 s for its listening line. Returns the control plane's URL and the output,
/// which keeps growing; a child that does not start is killed, failing the test with what it
/// printed.
pub(crate) fn wait_until_listening(
    child: &mut std::process::Child,
) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{BufRead, BufReader, Read};
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let out = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("refract control plane listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
            let mut o = out.lock().unwrap();
            o.push_str(&line);
            o.push('\n');
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let out = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(url) => (url, output),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "refract serve did not print its listening line:\n{}",
                output.lock().unwrap()
            );
        }
    }
}
