//! B4: change visibility lag, commit on the source → visible in the engine's `/query`.
//!
//! A dedicated database `refract_b4` holds `b4_big` (1M rows, loaded into the snapshot) and the
//! small `b4_probe`. The engine runs in CDC mode (`binlog` for MariaDB, `logical` for PostgreSQL).
//! Writer connections commit single-row `INSERT`s (autocommit) at a fixed rate into the chosen
//! table — by default `b4_big` itself, so a table reload per change would show as seconds of lag.
//! Each id enters a "pending" set just before its commit is sent; concurrent pollers query the
//! engine in a tight loop for the pending ids (`b4_big(id IN (…)) { id }`, a primary-key lookup)
//! and stamp the first answer that contains each one. Lag = stamp − commit acknowledgement; the
//! resolution is one poll round trip (printed). The pollers are also the concurrent query load:
//! their answered queries per second are printed beside the lag.
//!
//! A poll asks for at most [`POLL_IDS`] ids, and successive polls take successive windows of the
//! pending set (wrapping around): with only the lowest ids polled, one slow commit (an id that
//! stays pending, uncommitted, for tens of milliseconds) would hide every id above the window
//! from every poller and show as lag of the engine that never happened.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mysql_async::prelude::Queryable;
use refract_schema::Backend;
use serde_json::{json, Value};

use crate::engines::{reqwest_health, spawn_engine, url_parts, EngineProcess, Source};

/// Database of the benchmark (on both servers).
pub const DB: &str = "refract_b4";
/// Rows of the big table.
const BIG_ROWS: i64 = 1_000_000;
/// First id the writers commit (above the generated rows of either table).
const FIRST_ID: i64 = 10_000_001;
/// Replication slot (PostgreSQL) and replica id (MariaDB) of the benchmark's engine.
const SLOT: &str = "refract_b4_bench";
const SERVER_ID: u32 = 4_204;
/// Most ids asked for in one poll.
const POLL_IDS: usize = 256;

/// Options of one B4 run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Commit rates to measure, commits/s.
    pub rates: Vec<u64>,
    /// Seconds per rate.
    pub seconds: u64,
    /// Concurrent pollers.
    pub pollers: usize,
    /// Commit into `b4_big` (true) or `b4_probe`.
    pub big: bool,
    /// Pause of each poller between two polls (zero: a tight loop, which takes CPU from the engine).
    pub poll_pause: Duration,
}

fn db_url(s: &Source) -> String {
    match s.backend {
        Backend::Mysql => format!("{}/{DB}", s.server_url.trim_end_matches('/')),
        _ => crate::dataset::replace_database(&s.server_url, DB),
    }
}

/// Create (once) and reset the benchmark database: 1M rows in `b4_big`, 100 in `b4_probe`, no
/// row from an earlier run.
async fn prepare(s: &Source) -> anyhow::Result<()> {
    match s.backend {
        Backend::Mysql => {
            let mut c = mysql_async::Conn::from_url(s.server_url.as_str())
                .await
                .context("connect to MariaDB")?;
            c.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{DB}`"))
                .await?;
            c.query_drop(format!("USE `{DB}`")).await?;
            c.query_drop(
                "CREATE TABLE IF NOT EXISTS b4_big (id BIGINT NOT NULL PRIMARY KEY, k BIGINT NOT NULL, \
                 label VARCHAR(64) NOT NULL, created_at TIMESTAMP NOT NULL)",
            )
            .await?;
            c.query_drop("CREATE TABLE IF NOT EXISTS b4_probe (id BIGINT NOT NULL PRIMARY KEY, k BIGINT NOT NULL, label VARCHAR(64) NOT NULL)")
                .await?;
            c.query_drop(format!("DELETE FROM b4_big WHERE id > {BIG_ROWS}"))
                .await?;
            let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM b4_big").await?;
            if n != Some(BIG_ROWS) {
                c.query_drop("TRUNCATE b4_big").await?;
                c.query_drop(format!(
                    "INSERT INTO b4_big SELECT seq, seq * 7 % 1000, CONCAT('row ', seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{BIG_ROWS}"
                ))
                .await?;
            }
            c.query_drop("TRUNCATE b4_probe").await?;
            c.query_drop(
                "INSERT INTO b4_probe SELECT seq, seq, CONCAT('probe ', seq) FROM seq_1_to_100",
            )
            .await?;
            c.disconnect().await?;
        }
        _ => {
            let (c, conn) = tokio_postgres::connect(&s.server_url, tokio_postgres::NoTls)
                .await
                .context("connect to PostgreSQL")?;
            tokio::spawn(conn);
            // A slot left by an interrupted run would hold WAL and block the name.
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[&SLOT]).await?;
            if c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB])
                .await?
                .is_none()
            {
                c.batch_execute(&format!("CREATE DATABASE \"{DB}\""))
                    .await?;
            }
            let (c, conn) = tokio_postgres::connect(&db_url(s), tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            c.batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {SLOT}; DROP PUBLICATION IF EXISTS {SLOT}_nk;
                 CREATE TABLE IF NOT EXISTS b4_big (id BIGINT NOT NULL PRIMARY KEY, k BIGINT NOT NULL,
                   label VARCHAR(64) NOT NULL, created_at TIMESTAMP NOT NULL);
                 CREATE TABLE IF NOT EXISTS b4_probe (id BIGINT NOT NULL PRIMARY KEY, k BIGINT NOT NULL, label VARCHAR(64) NOT NULL);
                 DELETE FROM b4_big WHERE id > {BIG_ROWS};"
            ))
            .await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM b4_big", &[])
                .await?
                .get(0);
            if n != BIG_ROWS {
                c.batch_execute(&format!(
                    "TRUNCATE b4_big; INSERT INTO b4_big SELECT s, s * 7 % 1000, 'row ' || s, \
                     TIMESTAMP '2024-01-01 00:00:00' + s * INTERVAL '1 second' FROM generate_series(1::bigint, {BIG_ROWS}) s"
                ))
                .await?;
            }
            c.batch_execute(
                "TRUNCATE b4_probe; INSERT INTO b4_probe SELECT s, s, 'probe ' || s FROM generate_series(1::bigint, 100) s",
            )
            .await?;
            c.batch_execute("VACUUM ANALYZE b4_big").await?;
            c.batch_execute("VACUUM ANALYZE b4_probe").await?;
        }
    }
    Ok(())
}

/// After the run: the PostgreSQL slot and publications must not outlive the benchmark.
async fn cleanup(s: &Source) -> anyhow::Result<()> {
    if s.backend == Backend::Postgres {
        let (c, conn) = tokio_postgres::connect(&db_url(s), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        for _ in 0..50 {
            let left = c
                .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[&SLOT])
                .await?;
            let active = c
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                    &[&SLOT],
                )
                .await?;
            if left > 0 || active.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {SLOT}; DROP PUBLICATION IF EXISTS {SLOT}_nk"
        ))
        .await?;
    }
    Ok(())
}

/// One writer connection.
enum Writer {
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client, tokio_postgres::Statement),
}

impl Writer {
    async fn open(s: &Source, table: &str) -> anyhow::Result<Writer> {
        Ok(match s.backend {
            Backend::Mysql => Writer::Mysql(mysql_async::Conn::from_url(db_url(s).as_str()).await?),
            _ => {
                let (c, conn) = tokio_postgres::connect(&db_url(s), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let stmt = c.prepare(&insert_sql(table, "$1")).await?;
                Writer::Postgres(c, stmt)
            }
        })
    }

    /// Commit one row (autocommit: the answer is the commit acknowledgement).
    async fn commit(&mut self, table: &str, id: i64) -> anyhow::Result<()> {
        match self {
            Writer::Mysql(c) => c.exec_drop(insert_sql(table, "?"), (id,)).await?,
            Writer::Postgres(c, stmt) => {
                c.execute(&*stmt, &[&id]).await?;
            }
        }
        Ok(())
    }
}

fn insert_sql(table: &str, p: &str) -> String {
    if table == "b4_big" {
        format!("INSERT INTO b4_big (id, k, label, created_at) VALUES ({p}, 1, 'b4', CURRENT_TIMESTAMP)")
    } else {
        format!("INSERT INTO b4_probe (id, k, label) VALUES ({p}, 1, 'b4')")
    }
}

/// Stamps of one id, in ns since the run's base instant (0 = not yet).
#[derive(Default)]
struct Stamp {
    sent: AtomicU64,
    acked: AtomicU64,
    seen: AtomicU64,
}

struct Shared {
    base: Instant,
    stamps: Vec<Stamp>,
    pending: Mutex<BTreeSet<i64>>,
    poll_rtt: Mutex<Vec<u64>>,
    /// Window of the pending set the next poll asks for (see the module comment).
    poll_window: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
    errors: AtomicU64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    fn stamp(&self, id: i64) -> &Stamp {
        &self.stamps[(id - FIRST_ID) as usize]
    }
}

/// What one rate measured.
struct RateResult {
    source: &'static str,
    rate: u64,
    achieved: f64,
    commits: usize,
    unseen: usize,
    before_ack: usize,
    commit_p50: f64,
    commit_p99: f64,
    p50: f64,
    p99: f64,
    max: f64,
    rtt_p50: f64,
    /// Queries the pollers had answered per second while the writers ran.
    queries_per_s: f64,
    load: String,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1e6
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Ids found in a `/query` answer (objects with an `id`, at any depth).
fn ids_in(v: &Value, out: &mut Vec<i64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| ids_in(x, out)),
        Value::Object(o) => {
            if let Some(id) = o.get("id").and_then(|x| {
                x.as_i64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            }) {
                out.push(id);
            } else {
                o.values().for_each(|x| ids_in(x, out));
            }
        }
        _ => {}
    }
}

async fn poller(url: String, table: &'static str, sh: Arc<Shared>, pause: Duration) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut found = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let ids: Vec<i64> = {
            let pending = sh.pending.lock().expect("pending");
            let windows = pending.len().div_ceil(POLL_IDS).max(1);
            let window = sh.poll_window.fetch_add(1, Ordering::Relaxed) % windows;
            pending
                .iter()
                .skip(window * POLL_IDS)
                .take(POLL_IDS)
                .copied()
                .collect()
        };
        if ids.is_empty() {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let body = format!("{table}(id IN ({})) {{ id }}", list.join(", "));
        let req = hyper::Request::post(format!("{url}/query"))
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let start = Instant::now();
        let answer = match client.request(req).await {
            Ok(resp) if resp.status().is_success() => {
                resp.into_body().collect().await.ok().map(|b| b.to_bytes())
            }
            _ => None,
        };
        let now = sh.now();
        sh.poll_rtt
            .lock()
            .expect("rtt")
            .push(start.elapsed().as_nanos() as u64);
        let Some(answer) = answer else {
            sh.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        found.clear();
        if let Ok(v) = serde_json::from_slice::<Value>(&answer) {
            ids_in(&v, &mut found);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if !found.is_empty() {
            for &id in &found {
                if id >= FIRST_ID {
                    let _ = sh.stamp(id).seen.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            let mut p = sh.pending.lock().expect("pending");
            for id in &found {
                p.remove(id);
            }
        }
    }
}

/// Commit at `rate` for `seconds` with `writers` connections, ids from `next` on. Returns the ids.
async fn write_phase(
    s: &Source,
    table: &'static str,
    sh: &Arc<Shared>,
    next: &Arc<AtomicU64>,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(i64, i64, f64)> {
    let writers = rate.div_ceil(100).max(1) as usize;
    let first = next.load(Ordering::Relaxed) as i64;
    let end = first + (rate * seconds) as i64;
    let period = Duration::from_secs_f64(writers as f64 / rate as f64);
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for w in 0..writers {
        let mut conn = Writer::open(s, table).await?;
        let sh = sh.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period.mul_f64(w as f64 / writers as f64);
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tick.tick().await;
                let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                if id >= end {
                    break;
                }
                let st = sh.stamp(id);
                sh.pending.lock().expect("pending").insert(id);
                st.sent.store(sh.now(), Ordering::Relaxed);
                match conn.commit(table, id).await {
                    Ok(()) => st.acked.store(sh.now(), Ordering::Relaxed),
                    Err(e) => {
                        sh.pending.lock().expect("pending").remove(&id);
                        if sh.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("commit {id}: {e:#}");
                        }
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    next.store(end as u64, Ordering::Relaxed);
    Ok((first, end, elapsed))
}

fn engine_config(s: &Source, dir: &std::path::Path) -> anyhow::Result<Value> {
    let (user, pw, host, port) = url_parts(&s.server_url);
    let pw_file = dir.join("source-password");
    std::fs::write(&pw_file, pw)?;
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, "b4-admin-token")?;
    let sync = match s.backend {
        Backend::Mysql => {
            json!({"mode": "binlog", "server_id": SERVER_ID, "interval": 3600, "safety_net": 0})
        }
        _ => json!({"mode": "logical", "slot_name": SLOT, "interval": 3600, "safety_net": 0}),
    };
    Ok(json!({
        "listen": "127.0.0.1:0",
        "source": {"backend": s.backend.as_str(), "host": host, "port": port, "user": user,
                   "password_file": pw_file, "database": DB},
        "sync": sync,
        "admin_token_file": token_file,
        "log_level": "warn",
    }))
}

async fn admin_post(url: &str, path: &str) -> anyhow::Result<()> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("{url}{path}"))
        .header("authorization", "Bearer b4-admin-token")
        .body(Full::new(Bytes::new()))?;
    let resp = client.request(req).await?;
    if !resp.status().is_success() {
        bail!("{path}: {}", resp.status());
    }
    Ok(())
}

/// Wait until the engine reports `streaming`.
async fn wait_streaming(url: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let body = reqwest_health(url).await.unwrap_or_default();
        if body.contains("\"streaming\"") {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("engine not streaming after 2 minutes: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_source(s: &Source, opts: &Options) -> anyhow::Result<Vec<RateResult>> {
    let table: &'static str = if opts.big { "b4_big" } else { "b4_probe" };
    let t = Instant::now();
    prepare(s).await.context("prepare the B4 database")?;
    eprintln!(
        "{}: B4 database ready in {:.1} s",
        s.name,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let config = engine_config(s, dir.path())?;
    let log = std::path::PathBuf::from(format!(
        "/tmp/refract-b4-engine-{}.log",
        s.name.to_lowercase()
    ));
    let t = Instant::now();
    let mut engine: EngineProcess = spawn_engine(config, dir, Some(&log)).await?;
    wait_streaming(&engine.url).await?;
    eprintln!(
        "{}: engine loaded and streaming in {:.1} s (log {})",
        s.name,
        t.elapsed().as_secs_f64(),
        log.display()
    );

    let warm = 50u64;
    let capacity = warm + opts.rates.iter().map(|r| r * opts.seconds).sum::<u64>() + 16;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        stamps: (0..capacity).map(|_| Stamp::default()).collect(),
        pending: Mutex::new(BTreeSet::new()),
        poll_rtt: Mutex::new(Vec::new()),
        poll_window: Default::default(),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });
    let pollers: Vec<_> = (0..opts.pollers)
        .map(|_| {
            tokio::spawn(poller(
                engine.url.clone(),
                table,
                sh.clone(),
                opts.poll_pause,
            ))
        })
        .collect();
    let next = Arc::new(AtomicU64::new(FIRST_ID as u64));

    let result = async {
        // Warm-up: a few commits, all of them visible, before anything is measured.
        let (wf, we, _) = write_phase(s, table, &sh, &next, warm, 1).await?;
        wait_seen(&sh, wf, we, Duration::from_secs(30)).await;
        if (wf..we).any(|id| sh.stamp(id).seen.load(Ordering::Relaxed) == 0) {
            bail!("warm-up rows never became visible: is the engine streaming? see the engine log");
        }
        let mut out = Vec::new();
        for &rate in &opts.rates {
            sh.poll_rtt.lock().expect("rtt").clear();
            let load = load_average();
            let (first, end, elapsed) =
                write_phase(s, table, &sh, &next, rate, opts.seconds).await?;
            let queries = sh.poll_rtt.lock().expect("rtt").len();
            wait_seen(&sh, first, end, Duration::from_secs(10)).await;
            out.push(summarize(
                s.name,
                rate,
                &sh,
                (first, end),
                (elapsed, queries),
                load,
            ));
        }
        anyhow::Ok(out)
    }
    .await;
    sh.stop.store(true, Ordering::Relaxed);
    for p in pollers {
        let _ = p.await;
    }
    if s.backend == Backend::Postgres {
        if let Err(e) = admin_post(&engine.url, "/admin/replication/drop").await {
            eprintln!("{}: drop replication: {e:#}", s.name);
        }
    }
    let _ = engine.child.kill().await;
    let _ = engine.child.wait().await;
    cleanup(s).await?;
    if sh.errors.load(Ordering::Relaxed) > 0 {
        eprintln!(
            "{}: {} errors (commits or polls)",
            s.name,
            sh.errors.load(Ordering::Relaxed)
        );
    }
    result
}

async fn wait_seen(sh: &Shared, first: i64, end: i64, limit: Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        let done = (first..end).all(|id| {
            let st = sh.stamp(id);
            st.seen.load(Ordering::Relaxed) != 0 || st.acked.load(Ordering::Relaxed) == 0
        });
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summarize(
    source: &'static str,
    rate: u64,
    sh: &Shared,
    (first, end): (i64, i64),
    (elapsed, queries): (f64, usize),
    load: String,
) -> RateResult {
    let mut lags = Vec::new();
    let mut commit = Vec::new();
    let (mut unseen, mut before_ack, mut commits) = (0, 0, 0);
    for id in first..end {
        let st = sh.stamp(id);
        let (sent, acked, seen) = (
            st.sent.load(Ordering::Relaxed),
            st.acked.load(Ordering::Relaxed),
            st.seen.load(Ordering::Relaxed),
        );
        if acked == 0 {
            continue;
        }
        commits += 1;
        commit.push(acked - sent);
        if seen == 0 {
            unseen += 1;
        } else if seen < acked {
            before_ack += 1;
            lags.push(0);
        } else {
            lags.push(seen - acked);
        }
    }
    lags.sort_unstable();
    commit.sort_unstable();
    let mut rtt = sh.poll_rtt.lock().expect("rtt").clone();
    rtt.sort_unstable();
    RateResult {
        source,
        rate,
        achieved: commits as f64 / elapsed,
        commits,
        unseen,
        before_ack,
        commit_p50: pct(&commit, 0.5),
        commit_p99: pct(&commit, 0.99),
        p50: pct(&lags, 0.5),
        p99: pct(&lags, 0.99),
        max: lags.last().map(|&x| x as f64 / 1e6).unwrap_or(f64::NAN),
        rtt_p50: pct(&rtt, 0.5),
        queries_per_s: queries as f64 / elapsed,
        load,
    }
}

/// Run B4 on every source and print the table.
pub async fn bench(srcs: &[Source], opts: &Options) -> anyhow::Result<()> {
    let table = if opts.big {
        "b4_big (1M rows)"
    } else {
        "b4_probe (100 rows; b4_big 1M rows also loaded)"
    };
    println!(
        "\n## B4 commit → visible ({} s per rate, {} pollers pausing {} µs between polls, single-row INSERT into {table})\n",
        opts.seconds,
        opts.pollers,
        opts.poll_pause.as_micros()
    );
    println!("| source | mode | target commits/s | achieved/s | commits | lag p50 ms | lag p99 ms | lag max ms | not seen | seen before ack | commit p50 / p99 ms | poll RTT p50 ms | queries/s (pollers) | load avg (1/5/15 min) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in srcs {
        let mode = if s.backend == Backend::Mysql {
            "binlog"
        } else {
            "logical"
        };
        for r in run_source(s, opts).await? {
            println!(
                "| {} | {mode} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} / {:.2} | {:.2} | {:.0} | {} |",
                r.source, r.rate, r.achieved, r.commits, r.p50, r.p99, r.max, r.unseen, r.before_ack, r.commit_p50, r.commit_p99, r.rtt_p50, r.queries_per_s, r.load
            );
        }
    }
    println!("\nBaseline (ReflexDB): a batch window of 30 s by default, 1–5 s recommended.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_answers() {
        let mut out = Vec::new();
        ids_in(&json!([{"id": 3}, {"id": "9007199254740993"}]), &mut out);
        ids_in(&json!({"data": [{"id": 5}]}), &mut out);
        assert_eq!(out, vec![3, 9007199254740993, 5]);
    }

    #[test]
    fn percentiles() {
        assert!(pct(&[], 0.5).is_nan());
        assert_eq!(pct(&[1_000_000, 2_000_000, 3_000_000], 0.5), 2.0);
        assert_eq!(pct(&[1_000_000, 2_000_000, 3_000_000], 0.99), 3.0);
    }
}
