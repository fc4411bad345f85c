//! A managed Redis: create, AUTH with the returned connection string over raw RESP, write and
//! read, SIGKILL and recover from the AOF, add a replica, stop/start, quota, adoption after a
//! control-plane restart, delete.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use refract_managed::tls::PgTls;
use refract_managed::{DbType, ManagedService, MemoryVault, NoManagementKeys, SecretVault};
use refract_runtime::LocalProcessDriver;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{self, Harness, Options, Url, KEY_A};

/// Sends one command and returns the reply's first line (and a bulk string's payload).
type Conn = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

pub(crate) async fn resp(stream: &mut Conn, args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let line = line.trim_end().to_string();
    if let Some(n) = line.strip_prefix('$') {
        let n: i64 = n.parse().unwrap();
        if n < 0 {
            return "(nil)".into();
        }
        let mut buf = vec![0u8; n as usize + 2];
        stream.read_exact(&mut buf).await.unwrap();
        return String::from_utf8_lossy(&buf[..n as usize]).into();
    }
    line
}

/// A TLS connection to `host:port`, verified against the installation's CA.
pub(crate) async fn open(tls: &PgTls, host: &str, port: u16) -> Option<Conn> {
    let stream = TcpStream::connect((host, port)).await.ok()?;
    let stream = refract_managed::tls::connect(tls.0.clone(), host, stream)
        .await
        .ok()?;
    Some(BufReader::new(stream))
}

/// Logs in with a `rediss://default:password@host:port/0` string.
pub(crate) async fn login(tls: &PgTls, url: &str) -> Option<Conn> {
    let u = Url::parse(url);
    let mut s = open(tls, &u.host, u.port).await?;
    (resp(&mut s, &["AUTH", &u.password]).await == "+OK").then_some(s)
}

pub(crate) async fn get(tls: &PgTls, url: &str, key: &str) -> Option<String> {
    let mut s = login(tls, url).await?;
    Some(resp(&mut s, &["GET", key]).await)
}

fn body(name: &str) -> serde_json::Value {
    json!({"name": name, "db_type": "redis", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lifecycle() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Redis) {
        return;
    }
    let id = h.create(body("cache-redis")).await;
    h.wait_status(&id, "running", Duration::from_secs(60)).await;
    let c = h.credentials(&id).await;
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["host", "port", "password", "ssl_mode", "connection_string"],
        "the seed's Redis fields, and ssl_mode: TLS only"
    );
    let url = c["connection_string"].as_str().unwrap().to_string();
    assert!(url.starts_with("rediss://default:"), "{url}");
    assert_eq!(c["ssl_mode"], "require");
    let tls = h.service.client_tls();
    // The connection string works as given in the standard client, over TLS verified with the
    // CA from `/ca`; plain text is refused.
    let ca = h.ca_file(&id).await;
    let cli = std::process::Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            ca.to_str().unwrap(),
            "-u",
            &url,
            "PING",
        ])
        .output()
        .expect("redis-cli (redis-tools) is installed with redis-server");
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "PONG",
        "redis-cli --tls -u {url}: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let plain_url = url.replacen("rediss://", "redis://", 1);
    let cli = std::process::Command::new("redis-cli")
        .args(["-u", &plain_url, "PING"])
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "PONG",
        "a plain-text connection must be refused"
    );

    // The password is required.
    let u = Url::parse(&url);
    let mut anon = open(&tls, &u.host, u.port).await.unwrap();
    assert!(resp(&mut anon, &["GET", "k"]).await.starts_with("-NOAUTH"));
    let mut s = login(&tls, &url)
        .await
        .expect("AUTH with the generated password");
    assert_eq!(resp(&mut s, &["SET", "greeting", "hello"]).await, "+OK");
    assert_eq!(resp(&mut s, &["GET", "greeting"]).await, "hello");
    drop(s);
    harness::assert_no_password_outside_vault(&h, &id, c["password"].as_str().unwrap());

    // SIGKILL: restarted from the append-only file.
    h.kill_primary_and_wait(
        &id,
        "a restarted Redis with its data",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            let tls = tls.clone();
            async move { get(&tls, &url, "greeting").await.as_deref() == Some("hello") }
        },
    )
    .await;

    // A replica receives writes.
    let replica = h.scale_and_wait_streaming(&id, 2).await;
    let mut s = login(&tls, &url).await.unwrap();
    assert_eq!(resp(&mut s, &["SET", "fresh", "42"]).await, "+OK");
    let replica_url = format!(
        "rediss://default:{}@127.0.0.1:{}/0",
        u.password, replica["port"]
    );
    h.wait_for("the write on the replica", Duration::from_secs(30), || {
        let replica_url = replica_url.clone();
        let tls = tls.clone();
        async move { get(&tls, &replica_url, "fresh").await.as_deref() == Some("42") }
    })
    .await;

    // Stop and start keep the data.
    h.act_and_wait(&id, "stop", "stopped", Duration::from_secs(60))
        .await;
    assert!(get(&tls, &url, "greeting").await.is_none());
    h.act_and_wait(&id, "start", "running", Duration::from_secs(60))
        .await;
    assert_eq!(get(&tls, &url, "fresh").await.as_deref(), Some("42"));
    let (status, _) = h
        .post(
            &format!("/api/v1/databases/{id}/actions"),
            json!({"type": "restart"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.wait_for("a restart", Duration::from_secs(60), || {
        let (h, id, url, tls) = (&h, id.clone(), url.clone(), tls.clone());
        async move {
            let (_, d) = h.get(&format!("/api/v1/databases/{id}")).await;
            d["status"] == "running"
                && get(&tls, &url, "greeting").await.as_deref() == Some("hello")
        }
    })
    .await;

    h.delete_and_check_gone(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_storage_quota_is_watched() {
    // One "GB" is 1 MiB here, so that a quota is reached with a few writes.
    let h = Harness::new(Options {
        storage_unit_bytes: 1 << 20,
        ..Options::default()
    });
    if !h.installed(DbType::Redis) {
        return;
    }
    let mut b = body("small");
    b["storage_gb"] = json!(1);
    let id = h.create(b).await;
    h.wait_status(&id, "running", Duration::from_secs(60)).await;
    let url = h.connection_string(&id).await;
    let tls = h.service.client_tls();
    let mut s = login(&tls, &url).await.unwrap();
    let big = "x".repeat(600 << 10);
    for i in 0..4 {
        assert_eq!(resp(&mut s, &["SET", &format!("k{i}"), &big]).await, "+OK");
    }
    let d = h.wait_status(&id, "error", Duration::from_secs(30)).await;
    assert!(
        d["error_message"]
            .as_str()
            .unwrap()
            .contains("storage full"),
        "{d}"
    );
    // Growing the quota brings it back.
    let (status, _) = h
        .call(
            Method::PATCH,
            &format!("/api/v1/databases/{id}"),
            Some(KEY_A),
            Some(json!({"storage_gb": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.wait_status(&id, "running", Duration::from_secs(30)).await;
    h.delete_and_check_gone(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_outlive_a_control_plane_restart() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Redis) {
        return;
    }
    let id = h.create(body("survivor")).await;
    h.wait_status(&id, "running", Duration::from_secs(60)).await;
    let pid = h.pid(&id, 0);

    // A second service on the same directory (a restarted control plane: new driver, same vault).
    let vault: Arc<dyn SecretVault> = h.vault.clone() as Arc<MemoryVault>;
    let driver = Arc::new(LocalProcessDriver::new(h.data.join("managed/instances")));
    let again = ManagedService::open(
        harness::config(&h.data, &Options::default()),
        vault,
        driver,
        Arc::new(NoManagementKeys),
    )
    .unwrap();
    assert_eq!(
        again.ca_pem(),
        h.service.ca_pem(),
        "the CA is created once and kept in the secret store"
    );
    for _ in 0..5 {
        again.reconcile_once().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        h.pid(&id, 0),
        pid,
        "the running server was adopted, not started again"
    );
    assert!(harness::alive(pid));
    h.delete_and_check_gone(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_closed_to_other_users_still_works_as_root() {
    // `refract serve --data-dir /root/data` (inside a 0700 directory) as root: the servers (never root)
    // could not enter it, so their data goes under /var/lib/refract-managed.
    let h = Harness::new(Options {
        nested: true,
        ..Options::default()
    });
    if !h.installed(DbType::Redis) {
        return;
    }
    if refract_managed::os::is_root() {
        assert!(
            h.service
                .servers_dir()
                .starts_with(refract_managed::FALLBACK_SERVERS_ROOT),
            "{}",
            h.service.servers_dir().display()
        );
    }
    let id = h.create(body("nested")).await;
    h.wait_status(&id, "running", Duration::from_secs(60)).await;
    let url = h.connection_string(&id).await;
    let tls = h.service.client_tls();
    assert!(login(&tls, &url).await.is_some());
    h.delete_and_check_gone(&id).await;
    if h.service
        .servers_dir()
        .starts_with(refract_managed::FALLBACK_SERVERS_ROOT)
    {
        std::fs::remove_dir(h.service.servers_dir()).unwrap();
    }
}
