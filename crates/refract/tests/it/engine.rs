//! The real `refract engine` binary against a SQLite file: ready line, first load, a query over
//! HTTP, then a graceful stop through `POST /admin/shutdown` (exit code 0).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::refract_bin;

/// Kills the engine if the test fails before it stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256_hex(secret: &str) -> String {
    // The engine exports the helper the keys file needs.
    refract_engine::secret_sha256(secret)
}

#[test]
fn engine_binary_serves_a_sqlite_file_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob');
         INSERT INTO posts VALUES (10, 1, 'Hello'), (11, 2, 'Hi');",
    )
    .unwrap();
    drop(conn);
    let keys = json!({"keys": [{"key_id": "k1", "secret_sha256": sha256_hex("sekret"), "expires_at": null}]});
    std::fs::write(dir.path().join("keys.json"), keys.to_string()).unwrap();
    std::fs::write(dir.path().join("admin-token"), "adm1n\n").unwrap();
    let config = dir.path().join("engine.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\n\
         source: {backend: sqlite, path: shop.db}\n\
         sync: {mode: poll, interval: 60}\n\
         keys_file: keys.json\n\
         admin_token_file: admin-token\n",
    )
    .unwrap();

    let child = Command::new(refract_bin())
        .args(["engine", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start refract engine");
    let mut engine = Running(child);
    let url = crate::common::engine_ready_url(&mut engine.0);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let health: Value = http
            .get(format!("{url}/health"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if health["status"] == "ok" {
            assert_eq!(health["swapCount"], 1);
            break;
        }
        assert!(health["status"] == "loading", "{health}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no snapshot after 60 s: {health}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let resp = http
        .post(format!("{url}/query"))
        .bearer_auth("rxk_k1.sekret")
        .body("users { id name }")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let rows: Value = resp.json().unwrap();
    assert_eq!(
        rows,
        json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}])
    );
    let resp = http
        .post(format!("{url}/query"))
        .body("users { id }")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"], "unauthorized");

    let resp = http
        .post(format!("{url}/admin/shutdown"))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = engine.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not exit after /admin/shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "engine exit status: {status}");
}
