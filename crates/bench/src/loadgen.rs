//! A closed-loop HTTP load generator: `connections` keep-alive connections, each sending the next
//! request as soon as the previous answer arrives, for a fixed duration. Latency is measured per
//! request; the figures are a median, a p99 and a rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

async fn connect(authority: &str) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(authority).await.ok()?;
    tcp.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

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
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    for c in 0..connections {
        let authority = authority.clone();
        let auth = auth.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut sample = String::new();
            let mut i = c as u64 * 1_000_003;
            // One keep-alive HTTP/1.1 connection per task, driven directly (no pool checkout per
            // request: the generator shares the cores with the servers it measures).
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
            while Instant::now() < deadline {
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    sender = connect(&authority).await;
                    if sender.is_none() {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                let s = sender.as_mut().expect("connected");
                i += 1;
                let (path, body) = request(i);
                let mut req =
                    hyper::Request::post(path).header(hyper::header::HOST, authority.as_str());
                if let Some(a) = &auth {
                    req = req.header("authorization", a.as_str());
                }
                let req = req.body(Full::new(Bytes::from(body))).expect("request");
                let start = Instant::now();
                if s.ready().await.is_err() {
                    sender = None;
                    errors += 1;
                    continue;
                }
                match s.send_request(req).await {
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
                    Err(_) => {
                        sender = None;
                        errors += 1;
                    }
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
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadResult {
        ok: all.len() as u64,
        errors,
        rate: all.len() as f64 / duration.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        sample,
    }
}
