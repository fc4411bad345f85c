//! Automatic failover with real servers (`replicas: 2`): acknowledged writes through the
//! connection string, then the primary's process AND data directory destroyed; within 30 s
//! writes succeed again through the unchanged connection string, every acknowledged write is
//! there, the old primary is gone for good, a failover event is in the API, and a new standby is
//! rebuilt and streams. The failover time is printed (docs/benchmarks.md records it).

use std::process::Command;
use std::time::{Duration, Instant};

use refract_managed::tls::PgTls;
use refract_managed::DbType;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{alive, node_url, wait_streaming, Harness, Options, Url};

/// The done-when bound.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);
/// Writes acknowledged before the primary is destroyed.
const ROWS: i64 = 50;

/// Removes the primary's data directory and kills its whole process group (a lost machine).
/// The directory goes first, in one rename: the reconciler never sees the primary dead with its
/// data still in place, which it would restart in place (a crash) instead of failing over.
/// Returns the pid of the server killed.
pub(crate) fn destroy_primary(h: &Harness, id: &str) -> i32 {
    let n0 = h.server_dir(id).join("n0");
    let lost = h.server_dir(id).join("n0.lost");
    std::fs::rename(&n0, &lost).expect("move the primary's data directory away");
    let pid = h.pid(id, 0);
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{pid}")])
        .status();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    // The killed server may still be writing for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = std::fs::remove_dir_all(&lost) {
        if e.kind() == std::io::ErrorKind::NotFound {
            break;
        }
        assert!(Instant::now() < deadline, "remove {}: {e}", lost.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    pid
}

/// Retries `write` until it succeeds; returns how long that took from `since`.
pub(crate) async fn first_write_after<F, Fut>(since: Instant, mut write: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if write().await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < FAILOVER_WITHIN,
            "no write succeeded within {} s of losing the primary",
            FAILOVER_WITHIN.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The database's events, asserting one failover from node 0 to node 1 is among them.
async fn assert_failover_event(h: &Harness, id: &str) -> Value {
    let path = format!("/api/v1/databases/{id}/events");
    h.wait_for("the failover event", Duration::from_secs(10), || async {
        let (_, v) = h.get(&path).await;
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let (status, v) = h.get(&path).await;
    assert_eq!(status, 200, "{v}");
    let failovers: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "failover")
        .collect();
    assert_eq!(failovers.len(), 1, "{v}");
    let message = failovers[0]["message"].as_str().unwrap();
    eprintln!("event: {message}");
    assert!(
        message.starts_with(
            "failover: node 0 → node 1, reason: primary n0 lost: its data directory is gone"
        ),
        "{message}"
    );
    v
}

/// Logs in over TLS, verifying the server against the installation's CA.
async fn pg(tls: &PgTls, url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(2));
    let (client, conn) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Synchronous commit once the standby streams: an acknowledged commit is on the standby.
async fn wait_synchronous(h: &Harness, url: &str) {
    let tls = h.service.client_tls();
    h.wait_for("synchronous commit", Duration::from_secs(30), || {
        let url = url.to_string();
        let tls = tls.clone();
        async move {
            let Ok(c) = pg(&tls, &url).await else {
                return false;
            };
            c.query_one("SHOW synchronous_standby_names", &[])
                .await
                .is_ok_and(|r| r.get::<_, String>(0) == "ANY 1 (*)")
        }
    })
    .await;
}

/// One engine in the failover scenario ([`fails_over`]): rows `1..=n` are written as the
/// engine's own items (table rows, keys), each through a fresh login to a connection string.
trait Engine: Clone {
    /// `db_type` of the API.
    const DB_TYPE: &'static str;

    /// Writes rows `1..=rows` through `url` (the primary), each acknowledged by the standby
    /// once this returns: the replication that makes a write durable across a failover runs
    /// first.
    async fn write_acknowledged(&self, h: &Harness, url: &str, rows: i64);

    /// Writes row `n` through a fresh login to `url`; false on any failure.
    async fn try_write(&self, url: &str, n: i64) -> bool;

    /// Asserts that `url` reaches a primary that holds rows `1..=n` and no other.
    async fn assert_primary_holds(&self, url: &str, n: i64);

    /// Whether the server at `url` holds `n` rows.
    async fn holds(&self, url: &str, n: i64) -> bool;
}

/// The scenario of this file for one engine: acknowledged writes, the primary destroyed, writes
/// again within [`FAILOVER_WITHIN`] through the same connection string with every acknowledged
/// write there, the old primary gone, the failover event, and a new standby that replicates.
async fn fails_over<E: Engine>(h: &Harness, engine: E) {
    let name = E::DB_TYPE;
    let (id, _) = h
        .create_running(json!({"name": format!("ha-{name}"), "db_type": name, "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "replicas": 2}))
        .await;
    wait_streaming(h, &id).await;
    let url = h.connection_string(&id).await;
    engine.write_acknowledged(h, &url, ROWS).await;

    let since = Instant::now();
    let old_pid = destroy_primary(h, &id);
    let took = first_write_after(since, || engine.try_write(&url, ROWS + 1)).await;
    eprintln!("{name} failover: writes succeed again {took:?} after the primary was destroyed");
    engine.assert_primary_holds(&url, ROWS + 1).await;
    assert!(!alive(old_pid), "the old primary is gone");
    assert_failover_event(h, &id).await;

    // A new standby is rebuilt from the new primary and receives its writes.
    let standby = wait_streaming(h, &id).await;
    assert!(
        engine.try_write(&url, ROWS + 2).await,
        "a write to the new primary"
    );
    let standby_url = node_url(&url, &standby);
    h.wait_for(
        "the new standby to replicate",
        Duration::from_secs(30),
        || engine.holds(&standby_url, ROWS + 2),
    )
    .await;
    h.delete_and_check_gone(&id).await;
}

/// PostgreSQL: table `items`, synchronous commit once the standby streams.
#[derive(Clone)]
struct Postgres(PgTls);

impl Engine for Postgres {
    const DB_TYPE: &'static str = "postgresql";

    async fn write_acknowledged(&self, h: &Harness, url: &str, rows: i64) {
        wait_synchronous(h, url).await;
        let client = pg(&self.0, url).await.unwrap();
        client
            .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        for i in 1..=rows {
            client
                .execute("INSERT INTO items VALUES ($1)", &[&i])
                .await
                .unwrap();
        }
    }

    async fn try_write(&self, url: &str, n: i64) -> bool {
        let Ok(c) = pg(&self.0, url).await else {
            return false;
        };
        c.execute("INSERT INTO items VALUES ($1)", &[&n])
            .await
            .is_ok()
    }

    async fn assert_primary_holds(&self, url: &str, n: i64) {
        let c = pg(&self.0, url).await.unwrap();
        let row = c
            .query_one("SELECT count(*), min(id), max(id) FROM items", &[])
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2)
            ),
            (n, 1, n),
            "every acknowledged write survives"
        );
        let in_recovery: bool = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            !in_recovery,
            "the connection string reaches the new primary"
        );
    }

    async fn holds(&self, url: &str, n: i64) -> bool {
        let Ok(c) = pg(&self.0, url).await else {
            return false;
        };
        c.query_one("SELECT count(*) FROM items", &[])
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_fails_over_to_its_standby() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Postgresql) {
        return;
    }
    fails_over(&h, Postgres(h.service.client_tls())).await;
}

type RedisConn = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

/// One RESP command over a fresh or given connection; `None` on any failure.
async fn redis_call(s: &mut RedisConn, args: &[&str]) -> Option<String> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.get_mut().write_all(out.as_bytes()).await.ok()?;
    let mut line = String::new();
    if s.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_string();
    if let Some(n) = line.strip_prefix('$') {
        let n: i64 = n.parse().ok()?;
        if n < 0 {
            return Some("(nil)".into());
        }
        let mut buf = vec![0u8; n as usize + 2];
        s.read_exact(&mut buf).await.ok()?;
        return Some(String::from_utf8_lossy(&buf[..n as usize]).into());
    }
    Some(line)
}

/// A TLS connection (verified against the installation's CA), logged in with a
/// `rediss://default:password@host:port/0` string.
async fn redis_login(tls: &PgTls, url: &str) -> Option<RedisConn> {
    let u = Url::parse(url);
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((u.host.as_str(), u.port)),
    )
    .await
    .ok()?
    .ok()?;
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        refract_managed::tls::connect(tls.0.clone(), &u.host, stream),
    )
    .await
    .ok()?
    .ok()?;
    let mut s = BufReader::new(stream);
    (redis_call(&mut s, &["AUTH", &u.password]).await.as_deref() == Some("+OK")).then_some(s)
}

/// Redis: keys `k1`, `k2`, …; a write is acknowledged once `WAIT 1` says the replica has it
/// (Redis replicates asynchronously: the documented RPO of plain writes is the replication lag).
#[derive(Clone)]
struct Redis(PgTls);

impl Engine for Redis {
    const DB_TYPE: &'static str = "redis";

    async fn write_acknowledged(&self, _: &Harness, url: &str, rows: i64) {
        let mut s = redis_login(&self.0, url).await.expect("log in");
        for i in 1..=rows {
            let key = format!("k{i}");
            assert_eq!(
                redis_call(&mut s, &["SET", &key, "v"]).await.as_deref(),
                Some("+OK")
            );
            assert_eq!(
                redis_call(&mut s, &["WAIT", "1", "5000"]).await.as_deref(),
                Some(":1"),
                "the replica acknowledges {key}"
            );
        }
    }

    async fn try_write(&self, url: &str, n: i64) -> bool {
        let Some(mut s) = redis_login(&self.0, url).await else {
            return false;
        };
        redis_call(&mut s, &["SET", &format!("k{n}"), "v"])
            .await
            .as_deref()
            == Some("+OK")
    }

    async fn assert_primary_holds(&self, url: &str, n: i64) {
        let mut s = redis_login(&self.0, url).await.unwrap();
        assert_eq!(
            redis_call(&mut s, &["DBSIZE"]).await.as_deref(),
            Some(format!(":{n}").as_str()),
            "every acknowledged write survives"
        );
        for i in [1, n / 2, n] {
            assert_eq!(
                redis_call(&mut s, &["GET", &format!("k{i}")])
                    .await
                    .as_deref(),
                Some("v")
            );
        }
        let info = redis_call(&mut s, &["INFO", "replication"]).await.unwrap();
        assert!(info.contains("role:master"), "{info}");
    }

    async fn holds(&self, url: &str, n: i64) -> bool {
        let Some(mut r) = redis_login(&self.0, url).await else {
            return false;
        };
        redis_call(&mut r, &["DBSIZE"]).await == Some(format!(":{n}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fails_over_to_its_replica() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Redis) {
        return;
    }
    fails_over(&h, Redis(h.service.client_tls())).await;
}

/// Logs in over TLS verified against the CA (`ca`, PEM); the string's `?ssl-mode=REQUIRED` is
/// the MySQL clients' spelling, which `mysql_async` does not parse.
pub(crate) async fn my(ca: &str, url: &str) -> Option<mysql_async::Conn> {
    let opts = crate::mariadb::opts(ca, url);
    tokio::time::timeout(Duration::from_secs(3), mysql_async::Conn::new(opts))
        .await
        .ok()?
        .ok()
}

/// MariaDB: table `items`, semi-synchronous replication once the standby is connected (an
/// acknowledged commit is in its relay log). Holds the CA, PEM.
#[derive(Clone)]
struct Mariadb(String);

impl Engine for Mariadb {
    const DB_TYPE: &'static str = "mysql";

    async fn write_acknowledged(&self, h: &Harness, url: &str, rows: i64) {
        use mysql_async::prelude::Queryable;
        h.wait_for(
            "semi-synchronous replication",
            Duration::from_secs(30),
            || async {
                let Some(mut c) = my(&self.0, url).await else {
                    return false;
                };
                let on: Option<(String, String)> = c
                    .query_first("SHOW STATUS LIKE 'Rpl_semi_sync_master_status'")
                    .await
                    .ok()
                    .flatten();
                on.is_some_and(|(_, v)| v == "ON")
            },
        )
        .await;
        let mut c = my(&self.0, url).await.unwrap();
        c.query_drop("CREATE TABLE items (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        for i in 1..=rows {
            c.exec_drop("INSERT INTO items VALUES (?)", (i,))
                .await
                .unwrap();
        }
        let waits: Option<(String, String)> = c
            .query_first("SHOW STATUS LIKE 'Rpl_semi_sync_master_yes_tx'")
            .await
            .unwrap();
        let yes: i64 = waits.unwrap().1.parse().unwrap();
        assert!(
            yes >= rows,
            "every insert was acknowledged by the standby ({yes})"
        );
    }

    async fn try_write(&self, url: &str, n: i64) -> bool {
        use mysql_async::prelude::Queryable;
        let Some(mut c) = my(&self.0, url).await else {
            return false;
        };
        c.exec_drop("INSERT INTO items VALUES (?)", (n,))
            .await
            .is_ok()
    }

    async fn assert_primary_holds(&self, url: &str, n: i64) {
        use mysql_async::prelude::Queryable;
        let mut c = my(&self.0, url).await.unwrap();
        let row: Option<(i64, i64, i64)> = c
            .query_first("SELECT COUNT(*), MIN(id), MAX(id) FROM items")
            .await
            .unwrap();
        assert_eq!(row, Some((n, 1, n)), "every acknowledged write survives");
        let read_only: Option<i64> = c.query_first("SELECT @@read_only").await.unwrap();
        assert_eq!(
            read_only,
            Some(0),
            "the connection string reaches the new primary"
        );
    }

    async fn holds(&self, url: &str, n: i64) -> bool {
        use mysql_async::prelude::Queryable;
        let Some(mut s) = my(&self.0, url).await else {
            return false;
        };
        let count: Option<i64> = s
            .query_first("SELECT COUNT(*) FROM items")
            .await
            .ok()
            .flatten();
        count == Some(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_fails_over_to_its_standby() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Mysql) {
        return;
    }
    fails_over(&h, Mariadb(h.service.ca_pem().to_string())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_standby_means_no_promotion_until_one_runs() {
    let h = Harness::new(Options::default());
    if !h.installed(DbType::Postgresql) {
        return;
    }
    let engine = Postgres(h.service.client_tls());
    let (id, _) = h.create_running(json!({"name": "ha-none", "db_type": "postgresql", "plan_id": "db-s-1vcpu-1gb", "region": "nyc1", "replicas": 2})).await;
    wait_streaming(&h, &id).await;
    let url = h.connection_string(&id).await;
    engine.write_acknowledged(&h, &url, 1).await;

    // The standby dies with the primary: nothing can be promoted, and the API says so. The
    // primary goes first: from then on the reconciler waits (confirming the loss) and restarts
    // nothing, so the standby, killed a moment later, is still dead when it decides. (Killed
    // first, the standby could be restarted while the primary still ran, and then promoted.)
    let standby_pid = h.pid(&id, 1);
    destroy_primary(&h, &id);
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{standby_pid}")])
        .status();
    let path = format!("/api/v1/databases/{id}/events");
    h.wait_for(
        "a failover_impossible event",
        Duration::from_secs(30),
        || async {
            let (_, v) = h.get(&path).await;
            v.as_array()
                .is_some_and(|a| a.iter().any(|e| e["kind"] == "failover_impossible"))
        },
    )
    .await;
    let (_, events) = h.get(&path).await;
    let first = &events.as_array().unwrap()[0];
    assert_eq!(first["kind"], "failover_impossible", "{events}");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("no healthy standby to promote, so nothing was promoted"),
        "{events}"
    );

    // The reconciler restarts the standby (the primary has nothing to start from); once it runs,
    // it is promoted and the committed row is served through the same connection string.
    let since = Instant::now();
    let took = first_write_after(since, || engine.try_write(&url, 2)).await;
    eprintln!("recovered {took:?} after the impossible failover was reported");
    engine.assert_primary_holds(&url, 2).await;
    h.wait_for("the failover event", Duration::from_secs(10), || async {
        let (_, v) = h.get(&path).await;
        v.as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "failover"))
    })
    .await;
    let (_, events) = h.get(&path).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["failover_impossible", "failover"], "{events}");
    h.delete_and_check_gone(&id).await;
}
