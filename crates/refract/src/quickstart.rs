//! `refract quickstart`: the embedded default on one machine, with nothing installed but this
//! binary.
//!
//! It starts the control plane in-process on a temporary data directory, writes a demo SQLite
//! source (users, posts, comments with foreign keys; deterministic), registers a connection and
//! a database, provisions it, creates a query key, checks one query, prints the endpoint, the key
//! and a `curl` command that works, and serves until Ctrl-C — then terminates the engine, stops
//! the control plane and removes the temporary directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Arguments of `refract quickstart`.
#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// Demo source: `sqlite` (a file written now; nothing to install). `mariadb` and `postgres`
    /// (a throwaway server) are not available yet.
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
    if args.source != "sqlite" {
        bail!(
            "--source {} is not available yet: quickstart runs on the embedded SQLite demo source \
             (register a MariaDB or PostgreSQL server with `refract connections create`)",
            args.source
        );
    }
    let temporary = args.dir.is_none();
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("refract-quickstart-{}", std::process::id())),
    };
    if temporary && root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let result = run_in(&args, &root).await;
    if temporary {
        if let Err(e) = std::fs::remove_dir_all(&root) {
            eprintln!("warning: cannot remove {}: {e}", root.display());
        }
    }
    result
}

async fn run_in(args: &QuickstartArgs, root: &Path) -> anyhow::Result<()> {
    let source = root.join("demo.db");
    let t = Instant::now();
    let rows = tokio::task::spawn_blocking({
        let (source, users) = (source.clone(), args.users.max(1));
        move || write_demo(&source, users)
    })
    .await??;
    println!(
        "demo source: {} ({rows} rows in users, posts, comments; {} ms)",
        source.display(),
        t.elapsed().as_millis()
    );

    let config = refract_control_plane::ServeConfig {
        data_dir: root.join("data"),
        listen: args.listen.clone(),
        master_key: None,
        engine_binary: std::env::current_exe().context("find the refract binary")?,
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
    let result = demo(&api, &source, &mut database).await;
    let outcome = match result {
        Ok(()) => {
            let _ = stop.await;
            println!("\nstopping…");
            Ok(())
        }
        Err(e) => Err(e),
    };
    // Stop everything that was started: the engine (terminate), then the control plane.
    if let Some(id) = &database {
        if api
            .post(&format!("/v1/databases/{id}/terminate"), None)
            .await
            .is_ok()
        {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match api.get(&format!("/v1/databases/{id}")).await {
                    Ok(v) if v["status"] == "terminated" || v["status"] == "failed" => break,
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
async fn demo(api: &Client, source: &Path, database: &mut Option<String>) -> anyhow::Result<()> {
    let started = Instant::now();
    let created = api
        .post(
            "/v1/connections",
            Some(json!({
                "name": "demo",
                "backend": "sqlite",
                "mysqlHost": source.to_string_lossy(),
                "syncInterval": 5,
                "instance": {"name": "demo", "mysqlDb": "main"},
            })),
        )
        .await?;
    let id = created["database"]["id"]
        .as_str()
        .context("no database in the answer")?
        .to_string();
    *database = Some(id.clone());
    // The key first: the engine reads its keys file when it starts, so the first query works
    // at once (a key created later reaches a running engine within a second).
    let key = api
        .post(
            &format!("/v1/databases/{id}/api-keys"),
            Some(json!({"name": "quickstart"})),
        )
        .await?;
    let key = key["key"]
        .as_str()
        .context("no key in the answer")?
        .to_string();
    api.post(&format!("/v1/databases/{id}/provision"), None)
        .await?;

    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>3} provisioning: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let endpoint = loop {
        let v = api.get(&format!("/v1/databases/{id}/instance")).await?;
        let status = v["database"]["status"].as_str().unwrap_or("?").to_string();
        bar.set_message(status.clone());
        match status.as_str() {
            "running" => {
                break v["instance"]["endpointUrl"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            "failed" | "stopped" => {
                bar.finish_and_clear();
                bail!(
                    "provisioning failed: {}",
                    v["database"]["lastError"]
                        .as_str()
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
    println!(
        "\nRefract is running: provisioned and answered a first query in {:.1} s ({rows} rows).\n",
        started.elapsed().as_secs_f64()
    );
    println!("  engine         {endpoint}");
    println!("  query key      {key}");
    println!(
        "  control plane  {}   (management key: {})",
        api.base, api.token
    );
    println!("\nTry a query:\n");
    println!("  curl -H 'Authorization: Bearer {key}' -d '{QUERY}' {endpoint}/query");
    println!("\nOr the control plane:\n");
    println!(
        "  REFRACT_URL={} REFRACT_TOKEN={} refract databases instance {id}",
        api.base, api.token
    );
    println!("\nPress Ctrl-C to stop everything.");
    Ok(())
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .context("call the control plane")?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}", v["message"].as_str().unwrap_or(status.as_str()));
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
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

/// Writes the demo database: `users`, `posts(user_id → users)`, `comments(post_id → posts,
/// user_id → users)`. Returns the number of rows.
pub fn write_demo(path: &Path, users: u32) -> anyhow::Result<u64> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("replace {}", path.display()))?;
    }
    let mut conn =
        rusqlite::Connection::open(path).with_context(|| format!("create {}", path.display()))?;
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, plan TEXT NOT NULL,
             verified BOOLEAN NOT NULL, created_at DATETIME NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL,
             body TEXT NOT NULL, published BOOLEAN NOT NULL, created_at DATETIME NOT NULL);
         CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id),
             user_id INTEGER NOT NULL REFERENCES users(id), body TEXT NOT NULL, approved BOOLEAN NOT NULL,
             created_at DATETIME NOT NULL);
         CREATE INDEX posts_user ON posts(user_id);
         CREATE INDEX comments_post ON comments(post_id);",
    )?;
    let mut rng = Lcg(42);
    let day = |n: u64| {
        format!(
            "2025-{:02}-{:02} {:02}:{:02}:00",
            1 + n % 12,
            1 + n % 28,
            n % 24,
            n % 60
        )
    };
    let tx = conn.transaction()?;
    let mut rows = 0u64;
    {
        let mut u = tx.prepare("INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        let mut p = tx.prepare("INSERT INTO posts VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        let mut c = tx.prepare("INSERT INTO comments VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
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
            u.execute(rusqlite::params![
                id,
                name,
                email,
                plan,
                rng.below(3) > 0,
                day(rng.next())
            ])?;
            rows += 1;
            for k in 0..4u64 {
                let post_id = (id - 1) * 4 + k + 1;
                let w1 = WORDS[rng.below(WORDS.len() as u64) as usize];
                let w2 = WORDS[rng.below(WORDS.len() as u64) as usize];
                let title = format!("On {w1} and {w2}");
                let body = format!("Notes about {w1}, {w2} and what {first} learned.");
                p.execute(rusqlite::params![
                    post_id,
                    id,
                    title,
                    body,
                    rng.below(4) > 0,
                    day(rng.next())
                ])?;
                rows += 1;
                for _ in 0..(2 + rng.below(2)) {
                    comment_id += 1;
                    let author = 1 + rng.below(id); // an existing user (foreign keys are checked)
                    let body = format!(
                        "Nice point about {}.",
                        WORDS[rng.below(WORDS.len() as u64) as usize]
                    );
                    c.execute(rusqlite::params![
                        comment_id,
                        post_id,
                        author,
                        body,
                        rng.below(5) > 0,
                        day(rng.next())
                    ])?;
                    rows += 1;
                }
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}
