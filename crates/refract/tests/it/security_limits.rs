//! Attacks on an engine with an ordinary query key, against the real `refract engine` binary:
//! a cyclic query that would build gigabytes, a slow one, a client that hangs up mid-answer,
//! thousands of idle connections, a client that never finishes its request head. Each must be
//! refused or bounded, and the engine must keep answering. The control plane's server has the
//! same connection limits (last test).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::refract_bin;

const SECRET: &str = "security-test-secret";
/// The query key (`rxk_<keyId>.<secret>`).
const KEY: &str = "rxk_k1.security-test-secret";

/// A running `refract engine` over a SQLite file of users with `posts_per_user` posts each.
struct Engine {
    child: Child,
    addr: SocketAddr,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Engine {
    fn start(users: usize, posts_per_user: usize, extra_config: &str) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("blog.db");
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE posts (id INTEGER PRIMARY KEY,
                                 user_id INTEGER NOT NULL REFERENCES users(id),
                                 title TEXT NOT NULL);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        for u in 1..=users {
            tx.execute(
                "INSERT INTO users VALUES (?1, ?2)",
                rusqlite::params![u as i64, format!("user {u}")],
            )
            .unwrap();
            for p in 0..posts_per_user {
                let id = (u * posts_per_user + p) as i64;
                tx.execute(
                    "INSERT INTO posts VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, u as i64, format!("post {id} of user {u}")],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
        drop(conn);
        let keys = json!({"keys": [{"key_id": "k1", "secret_sha256": refract_engine::secret_sha256(SECRET), "expires_at": null}]});
        std::fs::write(dir.path().join("keys.json"), keys.to_string()).unwrap();
        let config = dir.path().join("engine.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:0\n\
                 source: {{backend: sqlite, path: blog.db}}\n\
                 sync: {{mode: poll, interval: 3600}}\n\
                 keys_file: keys.json\n{extra_config}"
            ),
        )
        .unwrap();
        let mut child = Command::new(refract_bin())
            .args(["engine", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start refract engine");
        let url = crate::common::engine_ready_url(&mut child);
        let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        let engine = Engine {
            child,
            addr,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = engine.get("/health");
            if status == 200 && body.contains("\"status\":\"ok\"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "engine never became healthy: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        engine
    }

    fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    fn get(&self, path: &str) -> (u16, String) {
        match Self::client().get(format!("{}{path}", self.url)).send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    fn query(&self, q: &str) -> (u16, Value) {
        let r = Self::client()
            .post(format!("{}/query", self.url))
            .bearer_auth(KEY)
            .body(q.to_string())
            .send()
            .expect("query");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// A metric's value (the first sample whose line starts with `name`).
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Sends a raw HTTP/1.1 query request on a new connection.
    fn raw_query(&self, q: &str) -> TcpStream {
        let mut c = TcpStream::connect(self.addr).unwrap();
        write!(
            c,
            "POST /query HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{q}",
            q.len()
        )
        .unwrap();
        c
    }
}

/// `users(LIMIT 1) { id posts { id author { id posts { … } } } }`, `levels` relations deep.
fn cyclic(levels: usize) -> String {
    let mut q = String::from("id");
    for level in (0..levels).rev() {
        let rel = if level % 2 == 0 { "posts" } else { "user" };
        q = format!("id {rel} {{ {q} }}");
    }
    format!("users(LIMIT 1) {{ {q} }}")
}

#[test]
fn a_cyclic_query_ends_at_the_byte_cap_and_the_engine_keeps_serving() {
    // 20 posts per user: 12 levels would be 20^6 = 64 million posts in one answer.
    let e = Engine::start(50, 20, "");
    let (s, rows) = e.query("users(id = 1) { id posts(LIMIT 2) { id } }");
    assert_eq!(s, 200, "{rows}");
    let rss_before_mb = e.status_kb("VmRSS:") / 1024;

    let started = Instant::now();
    let mut c = e.raw_query(&cyclic(12));
    let mut raw = Vec::new();
    // The server cuts the connection mid-answer: reading ends with an error or at EOF.
    let _ = c.read_to_end(&mut raw);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    // Chunked: the error line is the last thing sent, and the closing chunk never comes.
    assert!(
        body.contains("{\"error\":\"result_too_large\""),
        "no cap error at the end of {} bytes: …{}",
        body.len(),
        &body[body.len().saturating_sub(300)..]
    );
    assert!(
        !body.ends_with("0\r\n\r\n"),
        "the answer must not look complete"
    );
    assert!(
        body.len() >= 60 << 20 && body.len() < 80 << 20,
        "{} bytes sent for a 64 MiB cap",
        body.len()
    );
    let peak_mb = e.status_kb("VmHWM:") / 1024;
    assert!(
        peak_mb < rss_before_mb + 64 + 100,
        "the engine peaked at {peak_mb} MB (was {rss_before_mb} MB before the query)"
    );
    eprintln!(
        "cyclic query: {} MB streamed in {took:?}, peak RSS {peak_mb} MB",
        body.len() >> 20
    );
    assert_eq!(
        e.metric("refract_queries_total{status=\"result_too_large\"}"),
        1.0
    );

    // Through a JSON client the answer does not parse.
    let r = Engine::client()
        .post(format!("{}/query", e.url))
        .bearer_auth(KEY)
        .body(cyclic(12))
        .send()
        .unwrap();
    assert!(r
        .text()
        .map(|t| serde_json::from_str::<Value>(&t).is_err())
        .unwrap_or(true));

    let (s, rows) = e.query("users(id = 1) { id posts(LIMIT 2) { id } }");
    assert_eq!(s, 200, "the engine keeps serving: {rows}");
}

#[test]
fn caps_hit_before_the_first_byte_answer_413_and_408() {
    let e = Engine::start(50, 20, "max_response_bytes: 100000\n");
    let (s, body) = e.query(&cyclic(8));
    assert_eq!(s, 413, "{body}");
    assert_eq!(body["error"], "result_too_large");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("100000") && msg.contains("LIMIT"), "{msg}");
    drop(e);

    let e = Engine::start(50, 20, "max_query_ms: 1\n");
    let (s, body) = e.query(&cyclic(12));
    assert_eq!(s, 408, "{body}");
    assert_eq!(body["error"], "query_timeout");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_query_ms (1 ms)"),
        "{body}"
    );
    let (s, _) = e.query("users(id = 1) { id }");
    assert_eq!(s, 200);
}

#[test]
fn nested_selections_without_limit_are_cut_by_the_nested_default() {
    let e = Engine::start(3, 20, "default_nested_limit: 5\n");
    let r = Engine::client()
        .post(format!("{}/query", e.url))
        .bearer_auth(KEY)
        .body("users(id = 1) { posts { id } }")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-refract-truncated"], "true");
    let rows: Value = r.json().unwrap();
    assert_eq!(rows[0]["posts"].as_array().unwrap().len(), 5, "{rows}");
    let plan = Engine::client()
        .post(format!("{}/query/explain", e.url))
        .bearer_auth(KEY)
        .body("users { posts { id } }")
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(plan["children"][0]["default_limit"], 5, "{plan}");
}

#[test]
fn a_client_that_hangs_up_frees_the_work_within_a_second() {
    let e = Engine::start(
        50,
        20,
        "max_response_bytes: 100000000000\nmax_query_ms: 600000\n",
    );
    let mut c = e.raw_query(&cyclic(14));
    let mut first = [0u8; 4096];
    let n = c.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(
        e.metric("refract_queries_running"),
        1.0,
        "the query is running"
    );
    drop(c);
    let hung_up = Instant::now();
    while e.metric("refract_queries_running") != 0.0 {
        assert!(
            hung_up.elapsed() < Duration::from_secs(1),
            "the query still runs {:?} after the client left",
            hung_up.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.metric("refract_queries_total{status=\"cancelled\"}"), 1.0);
}

/// Lift this test process's open-file limit so it can hold thousands of sockets.
fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}

#[test]
fn two_thousand_idle_connections_do_not_stop_queries() {
    let limit = raise_nofile();
    assert!(
        limit > 2_200,
        "the test needs 2,200 open files; the hard limit is {limit}"
    );
    let e = Engine::start(10, 2, "");
    let idle: Vec<TcpStream> = (0..2_000)
        .map(|i| TcpStream::connect(e.addr).unwrap_or_else(|err| panic!("connection {i}: {err}")))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        let (s, rows) = e.query("users(id = 2) { name posts { id } }");
        assert_eq!(s, 200, "{rows}");
        assert_eq!(rows[0]["name"], "user 2");
    }
    drop(idle);
}

/// Reads until the peer closes; panics if it is still open after 5 s.
fn wait_closed(c: &mut TcpStream, started: Instant) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("kept for {:?}", started.elapsed())
            }
            // A reset is a close too.
            Err(_) => break,
        }
    }
}

#[test]
fn slow_and_idle_clients_are_dropped_at_the_header_deadline() {
    let e = Engine::start(2, 1, "http: {header_read_timeout_ms: 500}\n");
    let mut slow = TcpStream::connect(e.addr).unwrap();
    slow.write_all(b"POST /query HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(e.addr).unwrap();
    let started = Instant::now();
    for c in [&mut slow, &mut idle] {
        wait_closed(c, started);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    let (s, _) = e.query("users { id }");
    assert_eq!(s, 200);
}

#[test]
fn the_control_plane_drops_slow_clients_and_caps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, url) = crate::common::serve(
        &dir.path().join("data"),
        dir.path(),
        &["--header-timeout-ms", "500", "--max-connections", "4"],
        &[],
    );
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let health = || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("{url}/health"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(health(), 200);
    // Let the client's connection close before counting.
    std::thread::sleep(Duration::from_millis(300));
    // Four silent connections fill the cap: a fifth is closed at once, unanswered.
    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = TcpStream::connect(addr).unwrap();
    let _ = fifth.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = fifth.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "served past the connection cap: {}",
        String::from_utf8_lossy(&answer)
    );
    // They are dropped at the header deadline, and the server answers again.
    let started = Instant::now();
    for c in &mut silent {
        wait_closed(c, started);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(health(), 200);
    drop(serve);
}
