//! The accept loop of Refract's two HTTP servers (the control plane and every engine).
//!
//! `axum::serve` has no deadline for a request head, none for an idle keep-alive connection and
//! no cap on connections: 1,100 idle TCP connections under the common 1,024 open-file limit made
//! every query time out. [`serve`] adds, per [`HttpLimits`]:
//!
//! - a cap on connections served at once; one past it is accepted and closed at once, so a
//!   client fails fast instead of waiting in the kernel's backlog. The cap never exceeds what
//!   the open-file limit leaves ([`raise_open_file_limit`] lifts the soft limit to the hard one);
//! - a deadline for each request head, counted from the connection's start or from its previous
//!   answer (hyper's header read timeout), which closes slow-header clients and idle keep-alive
//!   connections alike;
//! - a deadline for each request body;
//! - `Connection: close` on a 413 or 408, answered before the body was read to its end: hyper
//!   cannot reuse that connection, and a client not told so sends its next request into it;
//! - graceful shutdown: stop accepting, let in-flight requests finish; with a drain period
//!   ([`serve_draining`]) keep-alive connections are first closed one by one after their next
//!   answer (`Connection: close`), so a client never races a close of an idle connection while
//!   another process takes over the port (an engine handover, `docs/runtime.md`).
#![deny(missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use refract_protocol::HttpLimits;

/// File descriptors kept free of connections for everything else a server opens (its store,
/// its logs, source connections, child processes' pipes).
const RESERVED_FDS: u64 = 256;

/// Raise this process's open-file soft limit to its hard limit; returns the soft limit in
/// force afterwards (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return None;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl = raised;
            }
        }
    }
    Some(rl.rlim_cur)
}

/// The connection cap in force: the configured one, lowered to what the open-file limit leaves.
pub fn effective_max_connections(limits: &HttpLimits) -> usize {
    let by_files = raise_open_file_limit()
        .map(|n| n.saturating_sub(RESERVED_FDS).max(16))
        .unwrap_or(u64::MAX);
    limits
        .max_connections
        .min(usize::try_from(by_files).unwrap_or(usize::MAX))
}

/// Serve `app` on `listener` within `limits` until `shutdown` completes, then stop accepting
/// and wait for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_draining(listener, app, limits, shutdown, Duration::ZERO).await
}

/// [`serve`], with a drain period at shutdown: the listener is closed at once (new connections
/// go elsewhere, e.g. to a replacement sharing the port with `SO_REUSEPORT`), then for up to
/// `drain` every answer carries `Connection: close` — each open connection ends cleanly after its
/// next request — and only then are the connections still idle closed and in-flight requests
/// awaited. Ends early once no connection is open.
pub async fn serve_draining(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let draining = Arc::new(AtomicBool::new(false));
    let flag = draining.clone();
    let app = app.layer(axum::middleware::map_response(
        move |mut resp: axum::response::Response| {
            // A 413 or 408 is answered before the request body was read to its end: the
            // connection cannot serve another request (hyper closes it), and a client told so
            // does not send its next request into a closing connection.
            let body_unread = matches!(
                resp.status(),
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
            );
            let closing = flag.load(Ordering::Relaxed) || body_unread;
            async move {
                if closing {
                    resp.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                resp
            }
        },
    ));
    let max = effective_max_connections(&limits);
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            in_force = max,
            "the open-file limit lowers the connection cap; raise `ulimit -n` to serve more"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let service = TowerToHyperService::new(
        RequestBodyTimeoutLayer::new(Duration::from_millis(limits.body_read_timeout_ms)).layer(app),
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut last_refusal_logged: Option<Instant> = None;
    let mut refused_since_log = 0u64;
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Per-connection errors (reset before accept) need no pause; running out of
                    // file descriptors does, or the loop would spin.
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // At the cap: close it now rather than let it wait unanswered.
            refused_since_log += 1;
            if last_refusal_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = max,
                    refused = refused_since_log,
                    "connection cap reached; refusing new connections"
                );
                last_refusal_logged = Some(Instant::now());
                refused_since_log = 0;
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(tcp), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request): nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if !drain.is_zero() {
        draining.store(true, Ordering::Relaxed);
        let until = Instant::now() + drain;
        while slots.available_permits() < max && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: HttpLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn request(addr: std::net::SocketAddr) -> String {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Reads until the server closes the connection; how long that took.
    async fn time_to_close(c: &mut tokio::net::TcpStream) -> Duration {
        let t = Instant::now();
        let mut buf = [0u8; 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
        t.elapsed()
    }

    #[tokio::test]
    async fn slow_headers_and_idle_connections_are_closed_at_the_deadline() {
        let (addr, _stop) = start(HttpLimits {
            header_read_timeout_ms: 300,
            ..HttpLimits::default()
        })
        .await;
        // Half a request head, then nothing.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let waited = time_to_close(&mut slow).await;
        assert!(
            waited < Duration::from_secs(2),
            "slow header kept {waited:?}"
        );
        // A keep-alive connection after its answer.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\na")
            .await
            .unwrap();
        let waited = time_to_close(&mut idle).await;
        assert!(
            waited < Duration::from_secs(2),
            "idle connection kept {waited:?}"
        );
        assert!(request(addr).await.ends_with("\r\n\r\n3"));
    }

    #[tokio::test]
    async fn past_the_cap_connections_are_closed_and_served_again_when_a_slot_frees() {
        let (addr, _stop) = start(HttpLimits {
            max_connections: 2,
            header_read_timeout_ms: 60_000,
            ..HttpLimits::default()
        })
        .await;
        let a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = third
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let _ = third.read_to_end(&mut out).await;
        assert!(
            out.is_empty(),
            "served past the cap: {}",
            String::from_utf8_lossy(&out)
        );
        drop((a, b));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(request(addr).await.ends_with("\r\n\r\n3"));
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_is_cut_at_the_deadline() {
        let (addr, _stop) = start(HttpLimits {
            body_read_timeout_ms: 300,
            ..HttpLimits::default()
        })
        .await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
            .await
            .unwrap();
        let waited = time_to_close(&mut c).await;
        assert!(waited < Duration::from_secs(2), "slow body kept {waited:?}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_connection_close() {
        let (addr, _stop) = start(HttpLimits::default()).await;
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = c.into_split();
        let size = 3 * 1024 * 1024;
        // The body goes on being written while the answer is read (the server stops reading it).
        tokio::spawn(async move {
            let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n");
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write.write_all(&vec![b'x'; size]).await;
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }

    #[tokio::test]
    async fn draining_closes_the_listener_and_each_connection_after_its_next_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "ok" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_draining(
            listener,
            app,
            HttpLimits::default(),
            async {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        let ask = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(ask).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        assert!(
            first.ends_with("ok") && !first.contains("connection: close"),
            "{first}"
        );
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The listener is closed at once ...
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        // ... while the open connection is still served, told to close, and closed.
        let t = Instant::now();
        c.write_all(ask).await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        let second = String::from_utf8_lossy(&out).to_lowercase();
        assert!(
            second.contains("connection: close") && second.ends_with("ok"),
            "{second}"
        );
        // No connection left: the drain ends early.
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the drain did not end once no connection was left")
            .unwrap()
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn the_open_file_limit_is_raised_and_bounds_the_cap() {
        let soft = raise_open_file_limit().expect("getrlimit");
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        assert_eq!(soft, rl.rlim_max, "soft limit not raised to the hard one");
        let cap = effective_max_connections(&HttpLimits {
            max_connections: usize::MAX,
            ..HttpLimits::default()
        });
        assert!(
            (cap as u64) < soft,
            "cap {cap} not below the open-file limit {soft}"
        );
    }
}
