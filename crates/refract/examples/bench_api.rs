//! B7: control plane API latency and throughput.
//!
//! Starts `refract serve` on a temp dir, registers 1,000 databases (one connection), then measures
//! `GET /v1/databases` (the full list, ~1,000 items): p50/p99 of sequential requests on one
//! keep-alive connection, and requests/s with several concurrent clients.
//!
//! ```sh
//! cargo build --release -p refract --bins --examples
//! target/release/examples/bench_api [--databases 1000] [--requests 300] [--clients 4] [--seconds 5]
//! target/release/examples/bench_api --store postgres://USER:PASSWORD@HOST:PORT/EMPTY_DB
//! ```
//! `--store` runs the control plane on that PostgreSQL metadata store instead of SQLite.
//! The `refract` binary is taken from the same target dir (or `REFRACT_BIN`). The goal of the
//! foundation issue is p99 < 50 ms; the run prints whether it was met and exits 1 when not.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Kills the server however `main` ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let databases = arg("--databases", 1000);
    let requests = arg("--requests", 300);
    let clients = arg("--clients", 4);
    let seconds = arg("--seconds", 5);
    let args: Vec<String> = std::env::args().collect();
    let store = args
        .iter()
        .position(|a| a == "--store")
        .and_then(|i| args.get(i + 1))
        .cloned();

    let bin = match std::env::var_os("REFRACT_BIN") {
        Some(b) => b.into(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("refract"))
            .ok_or_else(|| anyhow::anyhow!("cannot locate the target dir; set REFRACT_BIN"))?,
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p refract --bins --examples) or set REFRACT_BIN",
        bin.display()
    );
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut child = Server(
        Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(store.iter().flat_map(|s| ["--store", s.as_str()]))
            .env("REFRACT_LOG", "warn")
            .env_remove("REFRACT_MASTER_KEY")
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading stdout for the whole run: a closed pipe would fail the server's next print.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("refract control plane listening on ") {
                let _ = tx.send(u.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("no listening line from {}", bin.display()))?;
    let token = std::fs::read_to_string(data.join("admin-key"))?
        .trim()
        .to_string();
    let client = reqwest::blocking::Client::new();
    let auth = format!("Bearer {token}");

    let c: Value = client
        .post(format!("{url}/v1/connections"))
        .header("authorization", &auth)
        .json(&json!({"name": "bench", "mysqlHost": "db.bench", "availableSchemas": ["app"], "mysqlUser": "u", "mysqlPassword": "p"}))
        .send()?
        .json()?;
    let cid = c["connection"]["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    for i in 0..databases {
        let r = client
            .post(format!("{url}/v1/databases"))
            .header("authorization", &auth)
            .json(&json!({"connectionId": cid, "name": format!("db-{i:04}"), "mysqlDb": "app"}))
            .send()?;
        anyhow::ensure!(r.status() == 201, "register failed: {}", r.text()?);
    }
    let register = t.elapsed();

    // Warm-up, and the response size.
    let body = client
        .get(format!("{url}/v1/databases"))
        .header("authorization", &auth)
        .send()?
        .bytes()?;
    let items = serde_json::from_slice::<Vec<Value>>(&body)?.len();

    let mut lat = Vec::with_capacity(requests as usize);
    for _ in 0..requests {
        let t = Instant::now();
        let r = client
            .get(format!("{url}/v1/databases"))
            .header("authorization", &auth)
            .send()?;
        let _ = r.bytes()?;
        lat.push(t.elapsed());
    }
    lat.sort();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (url, auth) = (url.clone(), auth.clone());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let client = reqwest::blocking::Client::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let r = client
                        .get(format!("{url}/v1/databases"))
                        .header("authorization", &auth)
                        .send()?;
                    anyhow::ensure!(r.status() == 200);
                    let _ = r.bytes()?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let rps = total as f64 / seconds as f64;

    drop(child);
    println!(
        "B7 control plane API: GET /v1/databases with {items} databases ({} KiB per answer)",
        body.len() / 1024
    );
    println!(
        "register {databases} databases: {:.2} s ({:.1} ms each)",
        register.as_secs_f64(),
        register.as_secs_f64() * 1e3 / databases as f64
    );
    println!(
        "sequential ({requests} requests, 1 keep-alive connection): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    println!("throughput ({clients} clients, {seconds} s): {rps:.0} requests/s");
    let p99 = percentile(&lat, 0.99);
    let met = p99 < Duration::from_millis(50);
    println!("goal p99 < 50 ms: {}", if met { "met" } else { "NOT met" });
    anyhow::ensure!(
        met,
        "p99 {:.2} ms is above the 50 ms goal",
        p99.as_secs_f64() * 1e3
    );
    Ok(())
}
