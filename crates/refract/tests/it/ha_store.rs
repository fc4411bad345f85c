//! Several `refract serve` replicas on one PostgreSQL metadata store (docs/operations.md): each
//! serves the whole API, one leads (runs the reconcilers), and when the leader is SIGKILLed in
//! the middle of a deploy another takes over within seconds and finishes it — once.
//!
//! Both replicas share one data directory, as two replicas on one machine would (the local
//! runtime's engines, `master.key` and the admin key file live there); on several machines the
//! engines run on Kubernetes instead.

use std::time::{Duration, Instant};

use refract_api::{
    Backend, Connection, CreateConnectionRequest, Database, EventsResponse, HealthResponse, Mode,
    Status, TestConnectionResult,
};
use serde_json::Value;

use crate::common::connection_request;
use crate::lifecycle::{create_key, endpoint, query_ok, sqlite_database, Cp, LONG};

/// A PostgreSQL database of the test server for one test's metadata store, dropped after it.
struct StoreDatabase {
    name: String,
    url: String,
}

impl StoreDatabase {
    fn create() -> Self {
        let name = format!("refract_ha_{}", rand::random::<u32>());
        crate::common::postgres_admin("postgres", &format!("CREATE DATABASE {name}"));
        let u = crate::common::postgres();
        let url = format!(
            "postgres://{}:{}@{}:{}/{name}",
            u.user, u.password, u.host, u.port
        );
        StoreDatabase { name, url }
    }
}

impl Drop for StoreDatabase {
    fn drop(&mut self) {
        crate::common::postgres_admin(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `refract ARGS` (no master key or store from the environment); success and what it
/// printed (stdout, then stderr).
fn refract(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(crate::common::refract_bin())
        .args(args)
        .env_remove("REFRACT_MASTER_KEY")
        .env_remove("REFRACT_STORE")
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

fn health(cp: &Cp) -> HealthResponse {
    cp.get("/health")
}

/// A MySQL connection `name` to a host nobody resolves (nothing connects to it here).
fn unreachable_connection(name: &str) -> CreateConnectionRequest {
    CreateConnectionRequest {
        available_schemas: Some(vec!["app".into()]),
        user: Some("u".into()),
        password: Some("p".into()),
        ..connection_request(name, Backend::Mysql, "db.example")
    }
}

/// Waits until exactly one of `replicas` leads; its index.
fn leader_of(replicas: &[&Cp], timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let views: Vec<HealthResponse> = replicas.iter().map(|r| health(r)).collect();
        let leaders: Vec<usize> = (0..views.len()).filter(|i| views[*i].leader).collect();
        if leaders.len() == 1 {
            let holder = &views[leaders[0]].replica;
            assert!(
                views
                    .iter()
                    .all(|v| v.leader_replica.as_ref() == Some(holder)),
                "every replica names the same leader: {views:?}"
            );
            return leaders[0];
        }
        assert!(leaders.len() < 2, "two leaders at once: {views:?}");
        assert!(
            start.elapsed() < timeout,
            "no leader after {timeout:?}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_replicas_share_a_postgres_store_and_fail_over() {
    let store = StoreDatabase::create();
    let tmp = crate::common::reachable_tempdir();
    let data = tmp.path().join("data");
    // Steps are slowed down so that the leader can be killed while `deploying`.
    let mut replicas = vec![
        Cp::start_on(&data, 1500, Some(&store.url)),
        Cp::start_on(&data, 1500, Some(&store.url)),
    ];
    for r in &replicas {
        let h = health(r);
        assert_eq!(h.status, "ok", "{h:?}");
        assert_eq!(h.store, "postgres", "{h:?}");
    }
    leader_of(&[&replicas[0], &replicas[1]], Duration::from_secs(10));

    // Written through one replica, read through the other.
    let id = sqlite_database(&replicas[0], 50);
    let seen = replicas[1].database(&id);
    assert_eq!(seen.status, Status::Registered, "{seen:?}");
    let (key, _) = create_key(&replicas[1], &id, "k");
    let listed: Vec<refract_api::QueryKey> =
        replicas[0].get(&format!("/v1/databases/{id}/api-keys"));
    assert_eq!(listed.len(), 1, "{listed:?}");
    // The managed servers' API too: a token created through one replica is listed by the other.
    let (s, tok) = replicas[0].call(
        "POST",
        "/api/v1/api-tokens",
        Some(serde_json::json!({"name": "shared"})),
    );
    assert_eq!(s, 201, "{tok}");
    let tokens: Value = replicas[1].get("/api/v1/api-tokens");
    assert_eq!(tokens[0]["name"], "shared", "{tokens}");

    // Provisioned through the follower: the leader picks it up.
    let leader = leader_of(&[&replicas[0], &replicas[1]], Duration::from_secs(10));
    let follower = 1 - leader;
    replicas[follower].ok(&id, "provision", Mode::Immediate);
    replicas[leader].wait_until(&id, "deploying", LONG, |v| {
        v.database.status == Status::Deploying
    });

    // The leader dies in the middle of the deploy.
    replicas[leader].kill();
    let killed = Instant::now();
    let survivor = &replicas[follower];
    loop {
        let h = health(survivor);
        if h.leader {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the surviving replica did not take over within 5 s: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "takeover after the leader's SIGKILL: {:?}",
        killed.elapsed()
    );

    let v = survivor.wait_for(&id, Status::Running, LONG);
    query_ok(
        &endpoint(&v),
        &key,
        "users(id = 2) { id name }",
        Duration::from_secs(10),
    );
    // Resumed, not repeated: one deploy in the event log, one engine.
    let events: EventsResponse = survivor.get(&format!("/v1/databases/{id}/events?limit=100"));
    let deploys = events
        .events
        .iter()
        .filter(|e| e.to == Status::Deploying)
        .count();
    assert_eq!(deploys, 1, "{}", survivor.events(&id));
    assert_eq!(
        survivor.engine_pids().len(),
        1,
        "{:?}",
        survivor.engine_pids()
    );

    // The killed replica comes back as a follower; the API works through it again.
    replicas[leader].restart();
    assert_eq!(
        leader_of(&[&replicas[0], &replicas[1]], Duration::from_secs(10)),
        follower,
        "the new leader keeps the lease"
    );
    let again: Database = replicas[leader].database(&id);
    assert_eq!(again.status, Status::Running, "{again:?}");
    replicas.clear(); // stop both (and the engine) before the store database is dropped
}

/// An installation on the embedded store moves to PostgreSQL: `refract store migrate`, then the
/// control plane on the same data directory with `--store`. Keys keep working, the running
/// engine is adopted (not restarted), secrets moved (a new query key reaches the engine, which
/// needs its admin token), and a second migration into the same store is refused.
#[test]
fn sqlite_installation_migrates_to_postgres() {
    let store = StoreDatabase::create();
    let mut old = Cp::fresh(0);
    let data = old.root().join("data");
    let id = sqlite_database(&old, 30);
    let (key, _) = create_key(&old, &id, "before");
    old.ok(&id, "provision", Mode::Immediate);
    let before = old.wait_for(&id, Status::Running, LONG);
    let q = "users(id = 2) { id name }";
    let answer = query_ok(&endpoint(&before), &key, q, Duration::from_secs(10));
    let engines = old.engine_pids();
    assert_eq!(engines.len(), 1);
    // A managed-servers API token (its metadata is in managed.sqlite).
    let (s, tok) = old.call(
        "POST",
        "/api/v1/api-tokens",
        Some(serde_json::json!({"name": "ops"})),
    );
    assert_eq!(s, 201, "{tok}");
    let managed_token = tok["token"].as_str().unwrap().to_string();
    old.kill();

    let migrate = || {
        refract(&[
            "store",
            "migrate",
            "--from",
            &format!("sqlite:{}", data.join("refract.db").display()),
            "--to",
            &store.url,
        ])
    };
    let (ok, printed) = migrate();
    assert!(ok, "{printed}");
    assert!(
        printed.contains("databases") && printed.contains("secrets"),
        "{printed}"
    );
    let u = crate::common::postgres();
    assert!(
        !printed.contains(&u.password),
        "the password is never printed: {printed}"
    );

    let new = Cp::start_on(&data, 0, Some(&store.url));
    assert_eq!(health(&new).store, "postgres");
    let after = new.wait_for(&id, Status::Running, LONG);
    assert_eq!(endpoint(&after), endpoint(&before), "same endpoint");
    assert_eq!(
        query_ok(&endpoint(&after), &key, q, Duration::from_secs(10)),
        answer,
        "the old query key still works"
    );
    let (fresh, _) = create_key(&new, &id, "after");
    query_ok(&endpoint(&after), &fresh, q, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        new.engine_pids(),
        engines,
        "the engine was adopted, not restarted"
    );
    let events = new.events(&id);
    assert!(events.contains("registered"), "the history moved: {events}");
    let tokens: Value = new.get("/api/v1/api-tokens");
    assert_eq!(tokens[0]["name"], "ops", "{tokens}");
    let (s, v) = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/databases", new.url()))
        .bearer_auth(&managed_token)
        .send()
        .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
        .unwrap();
    assert_eq!(s, 200, "the managed API token still works: {v}");

    // The target is no longer empty: a second migration changes nothing.
    let (ok, printed) = migrate();
    assert!(!ok && printed.contains("not empty"), "{printed}");
    drop(new);
    drop(old);
}

/// A TCP proxy in front of the test PostgreSQL server that the test can cut (every open
/// connection closed, new ones closed at once) and restore: a store that becomes unreachable.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CuttableProxy {
    fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        from.set_read_timeout(Some(Duration::from_millis(100)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if c.load(Ordering::SeqCst) {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableProxy { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The store becomes unreachable: writes answer 503 `store_unavailable` within seconds (never a
/// hang, nothing half-applied), `/health` says so, the leader steps down; when the store is
/// back, the same process leads and serves again without a restart.
#[test]
fn unreachable_store_answers_503_and_recovers_without_restart() {
    let store = StoreDatabase::create();
    let u = crate::common::postgres();
    let proxy = CuttableProxy::start(format!("{}:{}", u.host, u.port));
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        u.user, u.password, proxy.port, store.name
    );
    let tmp = crate::common::reachable_tempdir();
    let cp = Cp::start_on(&tmp.path().join("data"), 0, Some(&url));
    leader_of(&[&cp], Duration::from_secs(10));
    let leader_metric = |cp: &Cp| -> Option<String> {
        let (_, text) = cp.call("GET", "/metrics", None);
        text.as_str()?
            .lines()
            .find(|l| l.starts_with("refract_control_plane_leader "))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(leader_metric(&cp).as_deref(), Some("1"));

    proxy.set_cut(true);
    let started = Instant::now();
    crate::common::wire_error(
        "a write during the outage",
        (503, "store_unavailable"),
        cp.call(
            "POST",
            "/v1/connections",
            Some(crate::common::wire_body(&unreachable_connection(
                "during-outage",
            ))),
        ),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    crate::common::wire_error(
        "/health during the outage",
        (503, "store_unavailable"),
        cp.call("GET", "/health", None),
    );
    // The leader steps down (it cannot renew its lease).
    let waited = Instant::now();
    while leader_metric(&cp).as_deref() != Some("0") {
        assert!(waited.elapsed() < Duration::from_secs(10), "still leading");
        std::thread::sleep(Duration::from_millis(100));
    }

    proxy.set_cut(false);
    leader_of(&[&cp], Duration::from_secs(15));
    cp.create_connection(&unreachable_connection("after-outage"));
    let list: Vec<Connection> = cp.get("/v1/connections");
    let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["after-outage"],
        "nothing of the refused write was kept"
    );
}

/// `refract store rotate-key` on a stopped installation: every secret sealed again, a new
/// `master.key`; the control plane starts with it and still reads the source password (a
/// test-connection as the least-privilege source user succeeds).
#[test]
fn master_key_rotation_keeps_every_secret() {
    let mut cp = Cp::fresh(0);
    let data = cp.root().join("data");
    let src = crate::common::mysql_source();
    let request = crate::common::server_connection_request("src", Backend::Mysql, &src, &["mysql"]);
    let id = cp.create_connection(&request).connection.id.to_string();
    let test = |cp: &Cp| {
        let t: TestConnectionResult = cp.test_connection(&id);
        assert!(t.ok, "{t:?}");
    };
    test(&cp);
    // Refused while a control plane runs on the directory.
    let (ok, printed) = refract(&["store", "rotate-key", "--data-dir", data.to_str().unwrap()]);
    assert!(!ok && printed.contains("stop every replica"), "{printed}");
    cp.kill();
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    // A key from the environment needs the new one from the environment too (a random one
    // would be lost).
    let out = std::process::Command::new(crate::common::refract_bin())
        .args(["store", "rotate-key", "--data-dir", data.to_str().unwrap()])
        .env("REFRACT_MASTER_KEY", old_key.trim())
        .env_remove("REFRACT_NEW_MASTER_KEY")
        .env_remove("REFRACT_STORE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("REFRACT_NEW_MASTER_KEY"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("master.key")).unwrap(),
        old_key
    );
    let (ok, printed) = refract(&["store", "rotate-key", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{printed}");
    assert!(printed.contains("resealed"), "{printed}");
    let new_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_ne!(old_key, new_key);
    assert!(
        !printed.contains(new_key.trim()),
        "the key is never printed"
    );
    assert!(!data.join("master.key.next").exists());
    cp.restart();
    test(&cp);
}

/// The dashboard on two replicas: a session started on one works on the other (no sticky load
/// balancer needed), and signing out on the other ends it on the first too.
#[test]
fn dashboard_sessions_work_on_every_replica() {
    let store = StoreDatabase::create();
    let tmp = crate::common::reachable_tempdir();
    let data = tmp.path().join("data");
    // Both replicas start at the same moment on a new data directory: one master key for both
    // (the second start reads the key the first created).
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Cp::start_on(&data, 0, Some(&store.url)));
        let b = scope.spawn(|| Cp::start_on(&data, 0, Some(&store.url)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let admin_key = std::fs::read_to_string(data.join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let host = |cp: &Cp| cp.url().trim_start_matches("http://").to_string();
    // Sign in on A.
    let resp = http
        .post(format!("{}/ui/sign-in", a.url()))
        .header("origin", format!("http://{}", host(&a)))
        .form(&[("key", admin_key.as_str())])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "sign-in answers a redirect");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    assert!(!cookie.contains(&admin_key), "the key is not in the cookie");
    let page = |cp: &Cp| {
        http.get(format!("{}/ui/", cp.url()))
            .header("cookie", &cookie)
            .send()
            .unwrap()
    };
    // The session works on B.
    let on_b = page(&b);
    assert_eq!(
        on_b.status().as_u16(),
        200,
        "signed in on the other replica"
    );
    let html = on_b.text().unwrap();
    assert!(!html.contains(&admin_key), "no key in the page");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    // Sign out on B: the session is gone on A too.
    let out = http
        .post(format!("{}/ui/sign-out", b.url()))
        .header("origin", format!("http://{}", host(&b)))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let on_a = page(&a);
    assert!(
        on_a.status().is_redirection()
            && on_a
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|l| l.contains("/ui/sign-in")),
        "signed out everywhere: {} {:?}",
        on_a.status(),
        on_a.headers().get("location")
    );
    // A replica stops cleanly on SIGTERM (its connections to the store closed off the runtime).
    let mut a = a;
    let status = a.terminate().expect("exits on SIGTERM");
    assert!(status.success(), "SIGTERM: {status:?}");
    drop(b);
}
