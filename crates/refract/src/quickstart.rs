//! `refract quickstart`: the embedded default on one machine, with nothing installed but this
//! binary.
//!
//! It starts the control plane in-process on a temporary data directory, writes a demo source
//! (users, posts, comments with foreign keys; deterministic) — a SQLite file, or with
//! `--source mariadb|postgres` a `demo` database on a throwaway server started in that directory
//! —, registers a connection and a database, provisions it, creates a query key, checks one
//! query, prints the endpoint, the key and a `curl` command that works, and serves until Ctrl-C —
//! then terminates the engine, stops the control plane and the throwaway server, and removes the
//! temporary directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use refract_api::{
    Backend, CreateConnectionRequest, CreateConnectionResponse, CreateInstanceRequest,
    CreateQueryKeyRequest, Database, ErrorBody, InstanceStatusResponse, QueryKey, Status,
};
use refract_managed::{DbType, StandaloneOptions, StandaloneServer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// `println!` that reports a closed stdout as an error (so the quickstart stops and cleans
/// up) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).context("stdout closed")?
    }};
}

/// Arguments of `refract quickstart`.
#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// Demo source: `sqlite` (a file written now; nothing to install), or `mariadb` / `postgres`
    /// (a throwaway server started in the directory; needs `mariadb-server` / `postgresql`).
    #[arg(long, default_value = "sqlite")]
    source: String,
    /// Address of the control plane (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Keep everything in this directory (kept at exit) instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Users in the demo dataset (each with 4 posts; 2–3 comments per post).
    #[arg(long, default_value_t = 500)]
    users: u32,
}

/// The query printed and checked.
const QUERY: &str = "users(LIMIT 3) { id name posts { title } }";

/// Run the quickstart until Ctrl-C.
pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let engine = match args.source.as_str() {
        "sqlite" => None,
        "mariadb" => Some(Engine::MariaDb),
        "postgres" => Some(Engine::Postgres),
        other => bail!("unknown --source {other}: use sqlite, mariadb or postgres"),
    };
    // Fail fast, before creating anything, when the server is not installed.
    let engine = engine.map(Engine::check_installed).transpose()?;
    let temporary = args.dir.is_none();
    let root = match &args.dir {
        // Absolute: the engines it starts run in other directories.
        Some(d) => std::path::absolute(d).with_context(|| format!("{}", d.display()))?,
        None => std::env::temp_dir().join(format!("refract-quickstart-{}", std::process::id())),
    };
    if temporary && root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let result = run_in(&args, &root, engine).await;
    if temporary {
        if let Err(e) = std::fs::remove_dir_all(&root) {
            eprintln!("warning: cannot remove {}: {e}", root.display());
        }
    }
    result
}

/// Writes the demo source (starting its server, if any), serves, then stops the server.
async fn run_in(args: &QuickstartArgs, root: &Path, engine: Option<Engine>) -> anyhow::Result<()> {
    let t = Instant::now();
    let users = args.users.max(1);
    let Some(engine) = engine else {
        let source = root.join("demo.db");
        let rows = tokio::task::spawn_blocking({
            let source = source.clone();
            move || write_demo(&source, users)
        })
        .await??;
        // As root, engines run as their own user (docs/runtime.md, "Users"), which must read the
        // demo file: it becomes theirs, and this directory searchable (not listable) for them.
        let engine_user = refract_runtime::user::engine_user()?;
        refract_runtime::user::ensure_reachable(root, root, &engine_user)?;
        refract_runtime::user::give(&source, &engine_user)?;
        say!(
            "demo source: {} ({rows} rows in users, posts, comments; {} ms)",
            source.display(),
            t.elapsed().as_millis()
        );
        let connection = CreateConnectionRequest {
            backend: Some(Backend::Sqlite),
            sync_interval: Some(5),
            ..demo_connection(source.to_string_lossy().into_owned(), "main")
        };
        return serve(args, root, connection).await;
    };
    let (server, rows) = start_server(engine, root, users).await?;
    let said = (|| -> anyhow::Result<()> {
        say!(
            "demo source: {} on {}:{}, database {} ({rows} rows in users, posts, comments; {} ms)",
            engine.name(),
            server.host(),
            server.port(),
            server.database(),
            t.elapsed().as_millis()
        );
        Ok(())
    })();
    let result = match said {
        Ok(()) => serve(args, root, server_connection(engine, &server)).await,
        Err(e) => Err(e),
    };
    stop_server(&server).await;
    result
}

/// Runs the control plane, registers `connection` and serves until Ctrl-C.
async fn serve(
    args: &QuickstartArgs,
    root: &Path,
    connection: CreateConnectionRequest,
) -> anyhow::Result<()> {
    let config = refract_control_plane::ServeConfig {
        data_dir: root.join("data"),
        listen: args.listen.clone(),
        master_key: None,
        engine_binary: std::env::current_exe().context("find the refract binary")?,
        http: Default::default(),
        // The demo SQLite file is written here (the data dir below it is never allowed).
        sqlite_roots: vec![root.to_path_buf()],
        runtime: Default::default(),
        store: None,
        managed_backup_dir: None,
        managed_servers: Default::default(),
        managed_allow_plaintext: false,
    };
    let service = refract_control_plane::open(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(refract_control_plane::run(service, listener, async {
        let _ = stop_rx.await;
    }));
    let admin = std::fs::read_to_string(config.data_dir.join("admin-key"))
        .context("read the admin key")?
        .trim()
        .to_string();
    let api = Client {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: admin.clone(),
    };

    // Listen for Ctrl-C before printing how to use it.
    let stop = tokio::spawn(wait_for_stop());
    let mut database = None;
    let result = demo(&api, connection, &mut database).await;
    let outcome = match result {
        Ok(()) => {
            let _ = stop.await;
            // Best effort: stdout may be what went away.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), "\nstopping…\n".as_bytes());
            Ok(())
        }
        Err(e) => Err(e),
    };
    // Stop everything that was started: the engine (terminate), then the control plane.
    if let Some(id) = &database {
        if api
            .post::<_, refract_api::ActionResponse>(
                &format!("/v1/databases/{id}/terminate"),
                None::<&()>,
            )
            .await
            .is_ok()
        {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match api.get::<Database>(&format!("/v1/databases/{id}")).await {
                    Ok(d) if matches!(d.status, Status::Terminated | Status::Failed) => break,
                    Err(_) => break,
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(15), server).await {
        Ok(Ok(Err(e))) => eprintln!("warning: control plane: {e:#}"),
        Err(_) => eprintln!("warning: the control plane did not stop within 15 s"),
        _ => {}
    }
    outcome
}

/// Register, provision, create a key, check a query, print how to use it.
async fn demo(
    api: &Client,
    connection: CreateConnectionRequest,
    database: &mut Option<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let created: CreateConnectionResponse = api.post("/v1/connections", Some(&connection)).await?;
    let id = created
        .database
        .context("no database in the answer")?
        .id
        .to_string();
    *database = Some(id.clone());
    // The key first: the engine reads its keys file when it starts, so the first query works
    // at once (a key created later reaches a running engine within a second).
    let request = CreateQueryKeyRequest {
        name: "quickstart".into(),
        expires_at: None,
    };
    let key: QueryKey = api
        .post(&format!("/v1/databases/{id}/api-keys"), Some(&request))
        .await?;
    let key = key.key.context("no key in the answer")?;
    api.post::<_, refract_api::ActionResponse>(
        &format!("/v1/databases/{id}/provision"),
        None::<&()>,
    )
    .await?;

    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>3} provisioning: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let endpoint = loop {
        let v: InstanceStatusResponse = api.get(&format!("/v1/databases/{id}/instance")).await?;
        let status = v.database.status;
        bar.set_message(status.to_string());
        match status {
            Status::Running => break v.instance.and_then(|i| i.endpoint_url).unwrap_or_default(),
            Status::Failed | Status::Stopped => {
                bar.finish_and_clear();
                bail!(
                    "provisioning failed: {}",
                    v.database
                        .last_error
                        .as_deref()
                        .unwrap_or("no reason given")
                );
            }
            _ if started.elapsed() > Duration::from_secs(300) => {
                bar.finish_and_clear();
                bail!("still {status} after 5 minutes");
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    bar.finish_and_clear();

    // Check that the printed query works.
    let check = Instant::now();
    let answer = loop {
        let resp = api
            .http
            .post(format!("{endpoint}/query"))
            .bearer_auth(&key)
            .body(QUERY)
            .send()
            .await
            .context("query the engine")?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            break text;
        }
        if check.elapsed() > Duration::from_secs(10) {
            bail!("the engine answered {status}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    say!(
        "\nRefract is running: provisioned and answered a first query in {:.1} s ({rows} rows).\n",
        started.elapsed().as_secs_f64()
    );
    say!("  engine         {endpoint}");
    say!("  query key      {key}");
    say!(
        "  control plane  {}   (management key: {})",
        api.base,
        api.token
    );
    say!(
        "  dashboard      {}/   (sign in once, without the key: {}{})",
        api.base,
        api.base,
        refract_control_plane::sign_in_link(&api.token)
    );
    say!("\nTry a query:\n");
    say!("  curl -H 'Authorization: Bearer {key}' -d '{QUERY}' {endpoint}/query");
    say!("\nOr the control plane:\n");
    say!(
        "  REFRACT_URL={} REFRACT_TOKEN={} refract databases instance {id}",
        api.base,
        api.token
    );
    say!("\nPress Ctrl-C to stop everything.");
    Ok(())
}

/// Until Ctrl-C, SIGTERM, SIGHUP (the terminal closed) or the reader of stdout goes away
/// (`refract quickstart | head -5`): whichever comes first, everything started is stopped.
async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let recv = |s: &mut Option<tokio::signal::unix::Signal>| {
        let s = s.take();
        async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = recv(&mut term) => {}
        _ = recv(&mut hup) => {}
        _ = stdout_closed() => {}
    }
}

/// Resolves once stdout is a pipe or socket whose reader is gone.
async fn stdout_closed() {
    loop {
        let mut fd = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        // SAFETY: one pollfd we own, no wait (timeout 0).
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        if n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Sends a request; the answer as its wire type, an error answer as its `message`.
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .context("call the control plane")?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = serde_json::from_value::<ErrorBody>(v).map(|e| e.message);
            bail!("{}", message.as_deref().unwrap_or(status.as_str()));
        }
        serde_json::from_value(v).context("unexpected answer from the control plane")
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }
}

/// A connection named `demo` to `host` with its first database `demo` on `schema`; the caller
/// sets the rest.
fn demo_connection(host: String, schema: &str) -> CreateConnectionRequest {
    CreateConnectionRequest {
        name: "demo".into(),
        host,
        instance: Some(CreateInstanceRequest {
            name: "demo".into(),
            schema: schema.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A small deterministic pseudo-random sequence (no dependency, same data on every machine).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Linus",
    "Margaret", "Dennis",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman",
    "Hamilton", "Ritchie",
];
const WORDS: &[&str] = &[
    "memory", "index", "snapshot", "query", "replica", "column", "latency", "cache", "stream",
    "schema", "join", "engine",
];
const PLANS: &[&str] = &["free", "free", "pro", "teams"];

/// The demo tables; `{ts}` is the timestamp type (`DATETIME`, or `TIMESTAMP` in PostgreSQL).
const SCHEMA: &str =
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
     plan TEXT NOT NULL, verified BOOLEAN NOT NULL, created_at {ts} NOT NULL);
 CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title TEXT NOT NULL,
     body TEXT NOT NULL, published BOOLEAN NOT NULL, created_at {ts} NOT NULL,
     FOREIGN KEY (user_id) REFERENCES users(id));
 CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
     body TEXT NOT NULL, approved BOOLEAN NOT NULL, created_at {ts} NOT NULL,
     FOREIGN KEY (post_id) REFERENCES posts(id), FOREIGN KEY (user_id) REFERENCES users(id));
 CREATE INDEX posts_user ON posts(user_id);
 CREATE INDEX comments_post ON comments(post_id);";

/// One value of the demo dataset.
enum Field {
    Int(u64),
    Text(String),
    Bool(bool),
}

/// Generates the demo dataset: calls `row(table, values)` for each row, parents before children.
/// Returns the number of rows.
fn demo_rows(
    users: u32,
    mut row: impl FnMut(&'static str, [Field; 6]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    use Field::{Bool, Int, Text};
    let mut rng = Lcg(42);
    let day = |n: u64| {
        Text(format!(
            "2025-{:02}-{:02} {:02}:{:02}:00",
            1 + n % 12,
            1 + n % 28,
            n % 24,
            n % 60
        ))
    };
    let mut rows = 0u64;
    let mut comment_id = 0u64;
    for id in 1..=users as u64 {
        let first = FIRST[rng.below(FIRST.len() as u64) as usize];
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        let name = format!("{first} {last}");
        let email = format!(
            "{}.{}{id}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let plan = PLANS[rng.below(PLANS.len() as u64) as usize];
        let verified = rng.below(3) > 0;
        let created = day(rng.next());
        row(
            "users",
            [
                Int(id),
                Text(name),
                Text(email),
                Text(plan.into()),
                Bool(verified),
                created,
            ],
        )?;
        rows += 1;
        for k in 0..4u64 {
            let post_id = (id - 1) * 4 + k + 1;
            let w1 = WORDS[rng.below(WORDS.len() as u64) as usize];
            let w2 = WORDS[rng.below(WORDS.len() as u64) as usize];
            let title = format!("On {w1} and {w2}");
            let body = format!("Notes about {w1}, {w2} and what {first} learned.");
            let published = rng.below(4) > 0;
            let created = day(rng.next());
            row(
                "posts",
                [
                    Int(post_id),
                    Int(id),
                    Text(title),
                    Text(body),
                    Bool(published),
                    created,
                ],
            )?;
            rows += 1;
            for _ in 0..(2 + rng.below(2)) {
                comment_id += 1;
                let author = 1 + rng.below(id); // an existing user (foreign keys are checked)
                let body = format!(
                    "Nice point about {}.",
                    WORDS[rng.below(WORDS.len() as u64) as usize]
                );
                let approved = rng.below(5) > 0;
                let created = day(rng.next());
                row(
                    "comments",
                    [
                        Int(comment_id),
                        Int(post_id),
                        Int(author),
                        Text(body),
                        Bool(approved),
                        created,
                    ],
                )?;
                rows += 1;
            }
        }
    }
    Ok(rows)
}

/// Writes the demo database: `users`, `posts(user_id → users)`, `comments(post_id → posts,
/// user_id → users)`. Returns the number of rows.
pub fn write_demo(path: &Path, users: u32) -> anyhow::Result<u64> {
    use rusqlite::types::Value as Sql;
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("replace {}", path.display()))?;
    }
    let mut conn =
        rusqlite::Connection::open(path).with_context(|| format!("create {}", path.display()))?;
    conn.execute_batch(&SCHEMA.replace("{ts}", "DATETIME"))?;
    let tx = conn.transaction()?;
    let rows = demo_rows(users, |table, fields| {
        let values = fields.map(|f| match f {
            Field::Int(n) => Sql::Integer(n as i64),
            Field::Text(t) => Sql::Text(t),
            Field::Bool(b) => Sql::Integer(b.into()),
        });
        tx.prepare_cached(&format!(
            "INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ))?
        .execute(rusqlite::params_from_iter(values))?;
        Ok(())
    })?;
    tx.commit()?;
    Ok(rows)
}

/// The demo dataset as SQL for a server (`timestamp`: the type of `created_at`): the tables,
/// then multi-row inserts. Returns the script and the number of rows.
fn demo_sql(users: u32, timestamp: &str) -> anyhow::Result<(String, u64)> {
    let mut tables: Vec<(&str, Vec<String>)> = Vec::new();
    let rows = demo_rows(users, |table, fields| {
        let values: Vec<String> = fields
            .into_iter()
            .map(|f| match f {
                Field::Int(n) => n.to_string(),
                Field::Text(t) => format!("'{}'", t.replace('\'', "''")),
                Field::Bool(b) => if b { "TRUE" } else { "FALSE" }.into(),
            })
            .collect();
        let tuple = format!("({})", values.join(", "));
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, rows)) => rows.push(tuple),
            None => tables.push((table, vec![tuple])),
        }
        Ok(())
    })?;
    let mut sql = SCHEMA.replace("{ts}", timestamp) + "\n";
    for (table, tuples) in &tables {
        for chunk in tuples.chunks(1000) {
            sql += &format!("INSERT INTO {table} VALUES {};\n", chunk.join(",\n"));
        }
    }
    Ok((sql, rows))
}

/// The kind of throwaway server.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    MariaDb,
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::MariaDb => "MariaDB",
            Engine::Postgres => "PostgreSQL",
        }
    }

    fn db_type(self) -> DbType {
        match self {
            Engine::MariaDb => DbType::Mysql,
            Engine::Postgres => DbType::Postgresql,
        }
    }

    /// Fails, naming the Debian package to install, when the server is not installed.
    fn check_installed(self) -> anyhow::Result<Engine> {
        let package = match self {
            Engine::MariaDb => "mariadb-server",
            Engine::Postgres => "postgresql",
        };
        StandaloneServer::check_installed(self.db_type()).map_err(|reason| {
            anyhow::anyhow!(
                "the {} server is not installed ({reason}): apt-get install {package}",
                self.name()
            )
        })?;
        Ok(self)
    }
}

/// Starts a throwaway server in `ROOT/mariadb` or `ROOT/postgres` as the managed service starts
/// its own (`refract_managed::StandaloneServer`: MariaDB with its binlog in ROW format,
/// PostgreSQL with `wal_level=logical`, on a free loopback port, as the package's system user or
/// `nobody` when this process is root) and loads its `demo` database with the demo dataset.
/// Returns the server and the number of rows.
async fn start_server(
    engine: Engine,
    root: &Path,
    users: u32,
) -> anyhow::Result<(StandaloneServer, u64)> {
    let dir = root.join(match engine {
        Engine::MariaDb => "mariadb",
        Engine::Postgres => "postgres",
    });
    if refract_runtime::user::is_root() {
        // The process umask (077) made ROOT 0700: the server's user must walk through it to
        // its own directory. Searchable, not listable; the control plane's data dir in it
        // stays 0700.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("let the server's user reach {}", dir.display()))?;
    }
    let server = StandaloneServer::start(StandaloneOptions::new(engine.db_type(), dir, "demo"))
        .await
        .with_context(|| format!("start the {} server", engine.name()))?;
    let (sql, rows) = demo_sql(
        users,
        match engine {
            Engine::MariaDb => "DATETIME",
            Engine::Postgres => "TIMESTAMP",
        },
    )?;
    if let Err(e) = server.run_sql(&sql).await {
        stop_server(&server).await;
        return Err(e.context("load the demo database"));
    }
    Ok((server, rows))
}

/// The `POST /v1/connections` body for the `demo` database of `server`, as its application user.
fn server_connection(engine: Engine, server: &StandaloneServer) -> CreateConnectionRequest {
    CreateConnectionRequest {
        backend: Some(match engine {
            Engine::MariaDb => Backend::Mysql,
            Engine::Postgres => Backend::Postgres,
        }),
        port: Some(i64::from(server.port())),
        user: Some(server.app_user().into()),
        password: Some(server.app_password().into()),
        available_schemas: Some(vec![server.database()]),
        sync_interval: Some(5),
        ..demo_connection(server.host().into(), "demo")
    }
}

/// Shuts the server down (SIGTERM for MariaDB, SIGINT — fast shutdown — for PostgreSQL).
async fn stop_server(server: &StandaloneServer) {
    if let Err(e) = server.stop().await {
        eprintln!("warning: the demo server did not stop: {e:#}");
    }
}
