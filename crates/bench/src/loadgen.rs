//! A closed-loop HTTP load generator in the style of `wrk`: `connections` keep-alive
//! connections, each sending the next request as soon as the previous answer arrives, for a
//! fixed duration. Latency is measured per request; the figures are a median, a p99 and a rate.
//!
//! Like `wrk -t1`, it runs on one thread of its own (a single-threaded runtime) and speaks just
//! enough HTTP/1.1 by hand (requests written whole, responses framed by `Content-Length`): the
//! generator shares the two cores with the servers it measures, so every microsecond it spends
//! per request is taken from them, and a thread pool would add wakeups between its own threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(authority: &str) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(authority).await?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            tcp,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Send one request and read its response: the status and the body (borrowed from the
    /// connection's buffer, so the hot path copies nothing).
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        self.tcp.write_all(request).await?;
        self.buf.clear();
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let (head_len, status, body_len) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head =
                    std::str::from_utf8(&self.buf[..end]).map_err(|_| invalid("response head"))?;
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid("status line"))?;
                let body_len = head
                    .split("\r\n")
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| invalid("no Content-Length"))?;
                break (end + 4, status, body_len);
            }
            self.read_more().await?;
        };
        while self.buf.len() < head_len + body_len {
            self.read_more().await?;
        }
        Ok((status, &self.buf[head_len..head_len + body_len]))
    }

    /// Append what the socket has to the buffer (into its spare capacity, no zeroing).
    async fn read_more(&mut self) -> std::io::Result<()> {
        self.buf.reserve(8 * 1024);
        if self.tcp.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of one POST request.
fn request_bytes(authority: &str, auth: Option<&str>, path: &str, body: &str) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        r.push_str("Authorization: ");
        r.push_str(a);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
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

/// POST to `base + path(i)` with `body(i)`, from `connections` concurrent clients for `duration`
/// (on a thread of its own; see the module docs).
pub async fn run(
    base: &str,
    auth: Option<String>,
    connections: usize,
    duration: Duration,
    request: BodyFn,
) -> LoadResult {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let generator = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a single-threaded runtime");
        rt.block_on(drive(authority, auth, connections, duration, request))
    });
    tokio::task::spawn_blocking(move || generator.join().expect("the load generator panicked"))
        .await
        .expect("joining the load generator")
}

async fn drive(
    authority: String,
    auth: Option<String>,
    connections: usize,
    duration: Duration,
    request: BodyFn,
) -> LoadResult {
    let deadline = Instant::now() + duration;
    let authority: Arc<str> = authority.into();
    let auth: Option<Arc<str>> = auth.map(Into::into);
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let authority = authority.clone();
        let auth = auth.clone();
        let request = request.clone();
        tasks.push(local.spawn_local(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut sample = String::new();
            let mut i = c as u64 * 1_000_003;
            let mut conn: Option<Conn> = None;
            while Instant::now() < deadline {
                if conn.is_none() {
                    match Conn::open(&authority).await {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected");
                i += 1;
                let (path, body) = request(i);
                let req = request_bytes(&authority, auth.as_deref(), &path, &body);
                let start = Instant::now();
                match c.exchange(&req).await {
                    Ok((status, body)) if (200..300).contains(&status) => {
                        lat.push(start.elapsed());
                        if sample.is_empty() {
                            sample = String::from_utf8_lossy(body).into_owned();
                        }
                    }
                    Ok((_, body)) => {
                        errors += 1;
                        if sample.is_empty() {
                            sample = format!("error: {}", String::from_utf8_lossy(body));
                        }
                    }
                    Err(_) => {
                        conn = None;
                        errors += 1;
                    }
                }
            }
            (lat, errors, sample)
        }));
    }
    let results = local
        .run_until(async move {
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await);
            }
            results
        })
        .await;
    let mut all = Vec::new();
    let mut errors = 0;
    let mut sample = String::new();
    for (lat, e, s) in results.into_iter().flatten() {
        all.extend(lat);
        errors += e;
        if sample.is_empty() || sample.starts_with("error") {
            sample = s;
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
