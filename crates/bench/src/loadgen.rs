//! A closed-loop HTTP load generator: `connections` keep-alive connections, each sending the next
//! request as soon as the previous answer arrives, for a fixed duration. Latency is measured per
//! request; the figures are a median, a p99 and a rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered with 200.
    pub ok: u64,
    /// Requests answered otherwise (or failed).
    pub errors: u64,
    /// Requests per second.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// A sample response body, to check both sides return the same thing.
    pub sample: String,
}

/// Builds the body of request number `i`.
pub type BodyFn = Arc<dyn Fn(u64) -> (String, String) + Send + Sync>;

/// POST to `base + path(i)` with `body(i)`, from `connections` concurrent clients for `duration`.
pub async fn run(
    base: &str,
    auth: Option<String>,
    connections: usize,
    duration: Duration,
    request: BodyFn,
) -> LoadResult {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http();
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = client.clone();
        let base = base.to_string();
        let auth = auth.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut sample = String::new();
            let mut i = c as u64 * 1_000_003;
            while Instant::now() < deadline {
                i += 1;
                let (path, body) = request(i);
                let mut req = hyper::Request::post(format!("{base}{path}"));
                if let Some(a) = &auth {
                    req = req.header("authorization", a.as_str());
                }
                let req = req.body(Full::new(Bytes::from(body))).expect("request");
                let start = Instant::now();
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        match (ok, body) {
                            (true, Ok(b)) => {
                                lat.push(start.elapsed());
                                if sample.is_empty() {
                                    sample = String::from_utf8_lossy(&b).into_owned();
                                }
                            }
                            (_, Ok(b)) => {
                                errors += 1;
                                if sample.is_empty() {
                                    sample = format!("error: {}", String::from_utf8_lossy(&b));
                                }
                            }
                            _ => errors += 1,
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, errors, sample)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut sample = String::new();
    for t in tasks {
        if let Ok((lat, e, s)) = t.await {
            all.extend(lat);
            errors += e;
            if sample.is_empty() || sample.starts_with("error") {
                sample = s;
            }
        }
    }
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default();
    LoadResult {
        ok: all.len() as u64,
        errors,
        rate: all.len() as f64 / duration.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        sample,
    }
}
