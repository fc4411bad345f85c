//! `refract-bench`: the reference dataset generator and the benchmarks of `docs/benchmarks.md`.
//!
//! Every benchmark prints this system and its baseline side by side from one run on the same
//! data, so ratios stay meaningful on a noisy shared machine.
//!
//! ```text
//! cargo build --release -p refract -p refract-bench
//! target/release/refract-bench gen --scale l
//! target/release/refract-bench all --scale l
//! target/release/refract-bench b4            # CDC lag, its own database refract_b4
//! ```
//! Source servers come from `REFRACT_TEST_MYSQL_URL` / `REFRACT_TEST_PG_URL` (as `scripts/testenv`
//! sets them) or `--mysql-url` / `--pg-url`.

mod baseline;
mod cdc;
mod dataset;
mod engines;
mod loadgen;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dataset::{replace_database, Scale};
use refract_schema::Backend;
use refract_sources::SourceParams;

use engines::{spawn_engine, url_parts, EngineProcess, Source};

#[derive(Parser)]
#[command(
    name = "refract-bench",
    about = "Dataset generator and benchmarks (see docs/benchmarks.md)"
)]
struct Args {
    /// MariaDB server URL (`mysql://user:pw@host:port`).
    #[arg(long, env = "REFRACT_TEST_MYSQL_URL")]
    mysql_url: Option<String>,
    /// PostgreSQL server URL (`postgres://user:pw@host:port/db`).
    #[arg(long, env = "REFRACT_TEST_PG_URL")]
    pg_url: Option<String>,
    /// Dataset scale.
    #[arg(long, value_enum, default_value = "s", global = true)]
    scale: Scale,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and fill the `blog_<scale>` database on both servers.
    Gen,
    /// B1 (load time vs the source's own client) and B2 (memory vs the source's data size).
    Load,
    /// B3: query throughput and latency over HTTP, engine vs SQL-over-HTTP baseline.
    Query {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Only these queries (1–4), e.g. `--only 1,2`.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
        only: Vec<usize>,
    },
    /// B4: commit on the source → visible in `/query` (CDC: MariaDB binlog, PostgreSQL logical),
    /// with a 1M-row table in the snapshot (database `refract_b4`, created on first use).
    B4 {
        /// Commit rates to measure, single-row commits/s.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        rates: Vec<u64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent pollers querying the engine for the committed rows.
        #[arg(long, default_value_t = 2)]
        pollers: usize,
        /// Commit into the small `b4_probe` table instead of the 1M-row `b4_big`.
        #[arg(long)]
        probe_table: bool,
        /// Microseconds each poller pauses between polls (0: tight loop).
        #[arg(long, default_value_t = 1000)]
        poll_pause_us: u64,
    },
    /// The executor alone: each B3 query run in this process on one thread, no HTTP (µs per
    /// query, best of 5 rounds); isolates the query cost from the network stack and the load
    /// generator.
    Exec {
        /// Queries per round.
        #[arg(long, default_value_t = 20_000)]
        per_round: u64,
        /// Only these queries (1–4), e.g. `--only 2` (to profile one).
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
        only: Vec<usize>,
    },
    /// `load` then `query`.
    All,
}

fn db_name(scale: Scale) -> String {
    format!("blog_{scale:?}").to_lowercase()
}

fn sources(args: &Args) -> Vec<Source> {
    let db = db_name(args.scale);
    let mut out = Vec::new();
    if let Some(u) = &args.mysql_url {
        out.push(Source {
            name: "MariaDB",
            backend: Backend::Mysql,
            server_url: u.clone(),
            db_url: format!("{}/{db}", u.trim_end_matches('/')),
        });
    }
    if let Some(u) = &args.pg_url {
        out.push(Source {
            name: "PostgreSQL",
            backend: Backend::Postgres,
            server_url: u.clone(),
            db_url: replace_database(u, &db),
        });
    }
    out
}

fn params(src: &Source, scale: Scale) -> SourceParams {
    let (user, password, host, port) = url_parts(&src.server_url);
    SourceParams {
        backend: src.backend,
        host,
        port,
        user,
        password: Some(password),
        database: Some(db_name(scale)),
        pg_schema: None,
        tls: Default::default(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let srcs = sources(&args);
    if srcs.is_empty() {
        bail!("no source server: set REFRACT_TEST_MYSQL_URL and/or REFRACT_TEST_PG_URL (scripts/testenv start DIR prints them)");
    }
    println!(
        "# refract-bench, scale {:?}, {} cores",
        args.scale,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    match &args.command {
        Cmd::Gen => {
            for s in &srcs {
                let t = Instant::now();
                match s.backend {
                    Backend::Mysql => {
                        dataset::fill_mysql(&s.server_url, &db_name(args.scale), args.scale).await?
                    }
                    _ => {
                        dataset::fill_postgres(&s.server_url, &db_name(args.scale), args.scale)
                            .await?
                    }
                }
                println!(
                    "{}: generated {} in {:.1} s",
                    s.name,
                    db_name(args.scale),
                    t.elapsed().as_secs_f64()
                );
            }
        }
        Cmd::Load => load_bench(&srcs, args.scale).await?,
        Cmd::Query {
            seconds,
            connections,
            only,
        } => {
            query_bench(
                &srcs,
                args.scale,
                Duration::from_secs(*seconds),
                *connections,
                only,
            )
            .await?
        }
        Cmd::B4 {
            rates,
            seconds,
            pollers,
            probe_table,
            poll_pause_us,
        } => {
            let opts = cdc::Options {
                rates: rates.clone(),
                seconds: *seconds,
                pollers: *pollers,
                big: !*probe_table,
                poll_pause: Duration::from_micros(*poll_pause_us),
            };
            cdc::bench(&srcs, &opts).await?
        }
        Cmd::Exec { per_round, only } => exec_bench(&srcs, args.scale, *per_round, only).await?,
        Cmd::All => {
            load_bench(&srcs, args.scale).await?;
            query_bench(&srcs, args.scale, Duration::from_secs(5), 32, &[1, 2, 3, 4]).await?;
        }
    }
    Ok(())
}

/// B1 and B2.
async fn load_bench(srcs: &[Source], scale: Scale) -> anyhow::Result<()> {
    println!("\n## B1 load time and B2 memory\n");
    println!("| source | rows | engine load s | client read s | ratio | storage MiB | source data MiB | ratio | engine RSS MiB | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in srcs {
        let p = params(s, scale);
        let manifest = manifest_of(&p).await?;
        let source_bytes: u64 = source_data_size(s, &db_name(scale)).await?;

        // Baseline first, so both read with a warm cache.
        let client_s = client_read_time(s, &manifest, scale)?;

        let t = Instant::now();
        let tables = refract_engine::load_tables_once(&p, &manifest, 4).await?;
        let load_s = t.elapsed().as_secs_f64();
        let rows: usize = tables.iter().map(|t| t.row_count()).sum();
        let mem: usize = tables.iter().map(|t| t.memory_bytes()).sum();
        drop(tables);
        // The real thing: a `refract engine` process after its first full load, allocator
        // slack, HTTP server and runtime included.
        let mut engine = start_engine(s, scale).await?;
        let rss = engine.child.id().and_then(rss_bytes).unwrap_or(0);
        let _ = engine.child.kill().await;
        let mib = |b: f64| b / 1048576.0;
        println!(
            "| {} | {rows} | {load_s:.2} | {client_s:.2} | {:.2}× | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× |",
            s.name,
            load_s / client_s,
            mib(mem as f64),
            mib(source_bytes as f64),
            mem as f64 / source_bytes as f64,
            mib(rss as f64),
            rss as f64 / source_bytes as f64
        );
    }
    Ok(())
}

/// Resident memory of process `pid` (`VmRSS`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The default manifest of the source's dataset (every table, every column).
async fn manifest_of(p: &SourceParams) -> anyhow::Result<refract_schema::Manifest> {
    let schema = refract_sources::introspect(p).await.context("introspect")?;
    refract_schema::build_manifest(&schema, None).map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// The executor alone, per query.
async fn exec_bench(
    srcs: &[Source],
    scale: Scale,
    per_round: u64,
    only: &[usize],
) -> anyhow::Result<()> {
    println!("\n## Executor alone (one thread, no HTTP; best of 5 rounds of {per_round} queries or 1 s)\n");
    println!("| source | query | µs per query | response bytes |");
    println!("|---|---|---|---|");
    for s in srcs {
        let p = params(s, scale);
        let manifest = manifest_of(&p).await?;
        let tables = refract_engine::load_tables_once(&p, &manifest, 4).await?;
        let tables = tables.into_iter().map(Arc::new).collect();
        let snapshot = refract_storage::Snapshot::new(Arc::new(manifest), tables);
        // As the engine does after a load.
        refract_storage::advise_huge_pages();
        let options = refract_query::QueryOptions::default();
        for (qi, (name, q)) in b3_queries().into_iter().enumerate() {
            if !only.contains(&(qi + 1)) {
                continue;
            }
            let mut best = f64::MAX;
            let mut bytes = 0;
            for round in 0..5u64 {
                let t = Instant::now();
                let mut done = 0;
                // A round stops after one second too, so slow queries (Q4) finish.
                while done < per_round && t.elapsed() < Duration::from_secs(1) {
                    let text = q(b3_arg(scale, round * per_round + done));
                    let out = refract_query::execute(&snapshot, &text, &options)
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                    bytes = out.body.len();
                    done += 1;
                }
                best = best.min(t.elapsed().as_secs_f64() * 1e6 / done as f64);
            }
            println!("| {} | {name} | {best:.1} | {bytes} |", s.name);
        }
    }
    Ok(())
}

/// The source's own data size of the dataset's tables.
async fn source_data_size(s: &Source, db: &str) -> anyhow::Result<u64> {
    match s.backend {
        Backend::Mysql => {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::from_url(s.server_url.as_str()).await?;
            let v: Option<u64> = c
                .exec_first("SELECT CAST(SUM(data_length) AS UNSIGNED) FROM information_schema.tables WHERE table_schema = ?", (db,))
                .await?;
            Ok(v.unwrap_or(0))
        }
        _ => {
            let (c, conn) = tokio_postgres::connect(&s.db_url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let row = c
                .query_one(
                    "SELECT SUM(pg_table_size(c.oid))::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'public' AND c.relkind = 'r'",
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        }
    }
}

/// Time for the source's own command-line client to read every row of the dataset to /dev/null.
fn client_read_time(
    s: &Source,
    manifest: &refract_schema::Manifest,
    scale: Scale,
) -> anyhow::Result<f64> {
    let (user, pw, host, port) = url_parts(&s.server_url);
    let t = Instant::now();
    for table in &manifest.tables {
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| c.source_name.clone())
            .collect();
        let status = match s.backend {
            Backend::Mysql => std::process::Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "--quick",
                    "-h",
                    &host,
                    "-P",
                    &port.to_string(),
                    "-u",
                    &user,
                    &db_name(scale),
                    "-e",
                ])
                .arg(format!(
                    "SELECT {} FROM {}",
                    cols.join(", "),
                    table.source_name
                ))
                .env("MYSQL_PWD", &pw)
                .stdout(Stdio::null())
                .status(),
            _ => std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    &host,
                    "-p",
                    &port.to_string(),
                    "-U",
                    &user,
                    "-d",
                    &db_name(scale),
                    "-c",
                ])
                .arg(format!(
                    "COPY (SELECT {} FROM {}) TO STDOUT",
                    cols.join(", "),
                    table.source_name
                ))
                .env("PGPASSWORD", &pw)
                .stdout(Stdio::null())
                .status(),
        }
        .context("run the source's client (mariadb / psql)")?;
        if !status.success() {
            bail!("client read of {} failed", table.source_name);
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn start_engine(s: &Source, scale: Scale) -> anyhow::Result<EngineProcess> {
    let dir = tempfile::tempdir()?;
    let (user, pw, host, port) = url_parts(&s.server_url);
    let pw_file = dir.path().join("source-password");
    std::fs::write(&pw_file, pw)?;
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "source": {"backend": s.backend.as_str(), "host": host, "port": port, "user": user,
                   "password_file": pw_file, "database": db_name(scale)},
        "sync": {"mode": "poll", "interval": 3600},
        "log_level": "warn",
    });
    spawn_engine(config, dir, None).await
}

/// Builds a benchmark query's text from its parameter.
type QueryFn = Arc<dyn Fn(i64) -> String + Send + Sync>;

/// The four queries of B3, by name, built from their parameter.
fn b3_queries() -> [(&'static str, QueryFn); 4] {
    [
        (
            "Q1 pk lookup",
            Arc::new(|n| format!("users(id = {n}) {{ id name email }}")),
        ),
        (
            "Q2 include",
            Arc::new(|n| format!("posts(user_id = {n}) {{ id title comments {{ id body }} }}")),
        ),
        (
            "Q3 relation filter",
            Arc::new(|n| {
                format!("users(posts.comments.approved = false AND plan = \"pro\" AND id >= {n} ORDER BY id LIMIT 50) {{ id }}")
            }),
        ),
        (
            "Q4 filter+order",
            Arc::new(|n| {
                format!("posts(published = true AND user_id >= {n} ORDER BY created_at DESC, id LIMIT 20) {{ id title }}")
            }),
        ),
    ]
}

/// The parameter of request `i`: user ids spread over the whole table.
fn b3_arg(scale: Scale, i: u64) -> i64 {
    1 + (i.wrapping_mul(2654435761) % scale.users()) as i64
}

/// B3.
async fn query_bench(
    srcs: &[Source],
    scale: Scale,
    duration: Duration,
    connections: usize,
    only: &[usize],
) -> anyhow::Result<()> {
    let queries = b3_queries();
    println!(
        "\n## B3 queries over HTTP ({connections} connections, {} s each; load average {})\n",
        duration.as_secs(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| source | query | engine q/s | engine p50 ms | engine p99 ms | SQL baseline q/s | baseline p50 ms | baseline p99 ms | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in srcs {
        let mut engine = start_engine(s, scale).await?;
        let pool = baseline::Pool::open(&s.db_url, connections.min(16)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let server =
            tokio::spawn(async move { axum::serve(listener, baseline::router(pool)).await });
        for (qi, (name, q)) in queries.iter().enumerate() {
            if !only.contains(&(qi + 1)) {
                continue;
            }
            let q = q.clone();
            let arg = move |i: u64| b3_arg(scale, i);
            let engine_req: loadgen::BodyFn = Arc::new(move |i| ("/query".to_string(), q(arg(i))));
            let e = loadgen::run(&engine.url, None, connections, duration, engine_req).await;
            let path = format!("/q/{}", qi + 1);
            let base_req: loadgen::BodyFn = Arc::new(move |i| (path.clone(), arg(i).to_string()));
            let b = loadgen::run(&base_url, None, connections, duration, base_req).await;
            if e.errors > 0 || b.errors > 0 {
                eprintln!(
                    "{name}: errors engine={}/{} baseline={}/{} (engine sample: {:.200})",
                    e.errors,
                    e.ok + e.errors,
                    b.errors,
                    b.ok + b.errors,
                    e.sample
                );
            }
            println!(
                "| {} | {name} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.1}× |",
                s.name,
                e.rate,
                e.p50.as_secs_f64() * 1e3,
                e.p99.as_secs_f64() * 1e3,
                b.rate,
                b.p50.as_secs_f64() * 1e3,
                b.p99.as_secs_f64() * 1e3,
                e.rate / b.rate.max(1e-9)
            );
        }
        server.abort();
        let _ = engine.child.kill().await;
    }
    Ok(())
}
