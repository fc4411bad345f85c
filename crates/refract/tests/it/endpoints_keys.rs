//! Issue 18: a database keeps its endpoint for its whole life (rebuild, reconfigure, redeploy, a
//! crash restart, pause + resume, a control-plane restart), queries keep answering across a
//! rebuild, a port taken meanwhile is reported, and query keys take effect (or stop) before the
//! create / revoke call answers.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refract_api::{
    ActionResponse, CreateQueryKeyRequest, EventsResponse, InstanceStatusResponse, QueryKey,
    RedeployRequest, Status,
};
use serde_json::Value;

use crate::common::{created_database_id, sqlite_request, wire_answer, wire_body, ControlPlane};

const LONG: Duration = Duration::from_secs(120);
const Q: &str = "users(id = 2) { id name }";

/// Kills every engine of a data dir when dropped (also when a test fails).
struct Engines(PathBuf);

impl Engines {
    fn pids(&self) -> Vec<u32> {
        crate::common::live_engines(&self.0)
            .into_iter()
            .map(|(_, pid)| pid)
            .collect()
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn sqlite_database(cp: &ControlPlane) -> String {
    let path = cp
        .sqlite_root()
        .join(format!("ep-{}.db", rand::random::<u32>()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger');",
    )
    .unwrap();
    created_database_id(&cp.create_connection(&sqlite_request("ep", &path)))
}

fn instance(cp: &ControlPlane, id: &str) -> InstanceStatusResponse {
    let key = cp.admin_key.clone();
    cp.wire::<(), _>(
        "GET",
        &format!("/v1/databases/{id}/instance"),
        &key,
        None,
        200,
    )
}

fn events(cp: &ControlPlane, id: &str) -> String {
    let answer = cp.admin("GET", &format!("/v1/databases/{id}/events?limit=50"), None);
    // The event log is for failure messages: an answer that is not one is shown as it is.
    let Ok(log) = serde_json::from_value::<EventsResponse>(answer.1.clone()) else {
        return format!("  (no event log: {})", answer.1);
    };
    log.events
        .iter()
        .rev()
        .map(|e| format!("  {:?} -> {} {}", e.from, e.to, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait(
    cp: &ControlPlane,
    id: &str,
    what: &str,
    pred: impl Fn(&InstanceStatusResponse) -> bool,
) -> InstanceStatusResponse {
    let start = Instant::now();
    loop {
        let v = instance(cp, id);
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "waited for {what}; now {} (lastError {:?})\n{}",
            v.database.status,
            v.database.last_error,
            events(cp, id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn act(cp: &ControlPlane, id: &str, action: &str, body: Option<Value>) {
    let answer = cp.admin("POST", &format!("/v1/databases/{id}/{action}"), body);
    let _: ActionResponse = wire_answer(action, 202, answer);
}

fn running(v: &InstanceStatusResponse) -> bool {
    v.database.status == Status::Running && v.database.desired_state.is_none()
}

fn endpoint(v: &InstanceStatusResponse) -> String {
    v.database
        .endpoint_url
        .clone()
        .unwrap_or_else(|| panic!("no endpoint: {v:?}"))
}

/// The serving engine's own endpoint (`instance.endpointUrl`), if any.
fn instance_endpoint(v: &InstanceStatusResponse) -> Option<String> {
    v.instance.as_ref().and_then(|i| i.endpoint_url.clone())
}

/// The serving engine's id.
fn instance_id(v: &InstanceStatusResponse) -> refract_api::Uuid {
    v.instance
        .as_ref()
        .unwrap_or_else(|| panic!("no instance: {v:?}"))
        .id
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn query(http: &reqwest::blocking::Client, ep: &str, key: &str) -> (u16, String) {
    match http
        .post(format!("{ep}/query"))
        .bearer_auth(key)
        .body(Q)
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, format!("{e:?}")),
    }
}

/// `POST /v1/databases/{id}/api-keys`: the answer as served (for its shape) and as its type.
fn create_key(cp: &ControlPlane, id: &str, name: &str) -> (Value, QueryKey) {
    let request = CreateQueryKeyRequest {
        name: name.into(),
        expires_at: None,
    };
    let (s, v) = cp.admin(
        "POST",
        &format!("/v1/databases/{id}/api-keys"),
        Some(wire_body(&request)),
    );
    let key = wire_answer("create key", 201, (s, v.clone()));
    (v, key)
}

/// Queries `ep` from two threads until stopped — one on fresh connections, one on a keep-alive
/// connection (as an application's client pool) — and returns (answered, failures).
struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u32, Vec<String>)>>,
}

impl Prober {
    fn start(ep: &str, key: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [false, true]
            .into_iter()
            .map(|keep_alive| {
                let (ep, key, stop) = (ep.to_string(), key.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let pooled = client();
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let fresh;
                        let http = if keep_alive {
                            &pooled
                        } else {
                            fresh = client();
                            &fresh
                        };
                        match query(http, &ep, &key) {
                            (200, body) if body.contains("grace") => ok += 1,
                            (s, body) => failed.push(format!(
                                "{} {s} {body}",
                                if keep_alive { "keep-alive" } else { "fresh" }
                            )),
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    (ok, failed)
                })
            })
            .collect();
        Prober { stop, threads }
    }

    fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = (0, Vec::new());
        for t in self.threads {
            let (ok, failed) = t.join().unwrap();
            all.0 += ok;
            all.1.extend(failed);
        }
        all
    }
}

/// The instance id changes (a new engine took over) and the database is `running` again.
fn wait_new_engine(
    cp: &ControlPlane,
    id: &str,
    what: &str,
    before: refract_api::Uuid,
) -> InstanceStatusResponse {
    wait(cp, id, what, |v| {
        running(v) && v.instance.as_ref().is_some_and(|i| i.id != before)
    })
}

fn wait_one_engine(engines: &Engines) {
    let start = Instant::now();
    while engines.pids().len() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "engines left: {:?}",
            engines.pids()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_of(ep: &str) -> u16 {
    ep.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn endpoint_is_stable_for_the_database_life() {
    let mut cp = ControlPlane::start_fresh();
    let engines = Engines(cp.dir.clone());
    let id = sqlite_database(&cp);
    let key = create_key(&cp, &id, "app").1.key.unwrap();
    act(&cp, &id, "provision", None);
    let v = wait(&cp, &id, "running", running);
    let ep = endpoint(&v);
    assert_eq!(instance_endpoint(&v), Some(ep.clone()));
    let http = client();
    assert_eq!(query(&http, &ep, &key).0, 200);

    // Blue-green operations: the new engine binds the same port beside the old one and accepts
    // only once loaded; the old one stops at the cutover. Queries never fail.
    let mut total = (0, Vec::new());
    for (action, body) in [
        ("rebuild", None),
        ("reconfigure", None),
        (
            "redeploy",
            Some(wire_body(&RedeployRequest {
                build_id: v.latest_build.as_ref().unwrap().id,
            })),
        ),
    ] {
        let before = instance_id(&instance(&cp, &id));
        let prober = Prober::start(&ep, &key);
        std::thread::sleep(Duration::from_millis(100));
        act(&cp, &id, action, body);
        let v = wait_new_engine(&cp, &id, action, before);
        wait_one_engine(&engines);
        std::thread::sleep(Duration::from_millis(200));
        let (ok, failed) = prober.finish();
        eprintln!(
            "{action}: {ok} queries answered, {} failed during it",
            failed.len()
        );
        assert_eq!(endpoint(&v), ep, "{action} moved the endpoint");
        assert_eq!(instance_endpoint(&v), Some(ep.clone()));
        assert!(ok > 0);
        total.0 += ok;
        total
            .1
            .extend(failed.into_iter().map(|f| format!("{action}: {f}")));
    }
    assert!(
        total.1.is_empty(),
        "queries failed across rebuild/reconfigure/redeploy ({} answered): {:#?}",
        total.0,
        total.1
    );

    // A crashed engine is restarted on the same port.
    let pids = engines.pids();
    assert_eq!(pids.len(), 1);
    Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    while query(&client(), &ep, &key).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not serving again after a crash\n{}",
            events(&cp, &id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(endpoint(&instance(&cp, &id)), ep);

    // Pause + resume.
    act(&cp, &id, "pause", None);
    wait(&cp, &id, "paused", |v| v.database.status == Status::Paused);
    assert!(engines.pids().is_empty());
    act(&cp, &id, "resume", None);
    let v = wait(&cp, &id, "resumed", running);
    assert_eq!(endpoint(&v), ep, "resume moved the endpoint");
    assert_eq!(query(&client(), &ep, &key).0, 200);

    // A control-plane restart (SIGKILL): the engine keeps serving and keeps its endpoint, and a
    // rebuild after the restart keeps it too.
    cp.kill();
    assert_eq!(query(&client(), &ep, &key).0, 200);
    cp = cp.restart();
    let v = wait(&cp, &id, "running after restart", running);
    assert_eq!(
        endpoint(&v),
        ep,
        "a control-plane restart moved the endpoint"
    );
    let before = instance_id(&v);
    let prober = Prober::start(&ep, &key);
    act(&cp, &id, "rebuild", None);
    let v = wait_new_engine(&cp, &id, "rebuild after restart", before);
    wait_one_engine(&engines);
    let (ok, failed) = prober.finish();
    assert_eq!(endpoint(&v), ep);
    assert!(
        ok > 0 && failed.is_empty(),
        "rebuild after a restart: {ok} answered, failed: {failed:#?}"
    );

    // Terminate + provision again: still the same endpoint.
    act(&cp, &id, "terminate", None);
    wait(&cp, &id, "terminated", |v| {
        v.database.status == Status::Terminated
    });
    act(&cp, &id, "provision", None);
    let v = wait(&cp, &id, "provisioned again", running);
    assert_eq!(endpoint(&v), ep);
    drop(engines);
}

/// A port taken by another process while the database is paused: the resume fails and says why;
/// the endpoint is never silently changed.
#[test]
fn a_taken_port_is_reported_not_changed() {
    let cp = ControlPlane::start_fresh();
    let engines = Engines(cp.dir.clone());
    let id = sqlite_database(&cp);
    act(&cp, &id, "provision", None);
    let ep = endpoint(&wait(&cp, &id, "running", running));
    act(&cp, &id, "pause", None);
    wait(&cp, &id, "paused", |v| v.database.status == Status::Paused);
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port_of(&ep))).unwrap();
    act(&cp, &id, "resume", None);
    let v = wait(&cp, &id, "the resume to fail", |v| {
        v.database.status == Status::Failed
    });
    let err = v.database.last_error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "port {} is in use by another process",
            port_of(&ep)
        )),
        "{err}"
    );
    assert!(engines.pids().is_empty());
    // Freed: the same endpoint again.
    drop(squatter);
    act(&cp, &id, "provision", None);
    let v = wait(&cp, &id, "running again", running);
    assert_eq!(endpoint(&v), ep);
}

/// A created key answers at once (never 401), a revoked one is refused at once; the answers say
/// `effective: true`.
#[test]
fn query_keys_take_effect_before_the_call_answers() {
    let cp = ControlPlane::start_fresh();
    let _engines = Engines(cp.dir.clone());
    let id = sqlite_database(&cp);
    // No engine yet: nothing to wait for.
    let (_, k0) = create_key(&cp, &id, "before");
    assert_eq!(k0.effective, Some(true), "{k0:?}");
    act(&cp, &id, "provision", None);
    let ep = endpoint(&wait(&cp, &id, "running", running));
    let http = client();
    let k0 = k0.key.as_deref().unwrap();
    assert_eq!(query(&http, &ep, k0).0, 200);

    for i in 0..20 {
        let (served, created) = create_key(&cp, &id, &format!("k{i}"));
        assert_eq!(created.effective, Some(true), "{created:?}");
        // The served shape: no `effectiveReason` at all when the change is in force.
        assert!(served.get("effectiveReason").is_none(), "{served}");
        let key = created.key.as_deref().unwrap();
        let (s, body) = query(&http, &ep, key);
        assert_eq!(s, 200, "key {i} right after its creation: {body}");

        let revoked: QueryKey = wire_answer(
            "revoke",
            200,
            cp.admin(
                "DELETE",
                &format!("/v1/databases/{id}/api-keys/{}", created.key_id),
                None,
            ),
        );
        assert_eq!(revoked.effective, Some(true), "{revoked:?}");
        let (s, body) = query(&http, &ep, key);
        assert_eq!(s, 401, "key {i} right after its revocation: {body}");
    }
    // The first key was never touched.
    assert_eq!(query(&http, &ep, k0).0, 200);
    // The list has no `effective` (only create and revoke answers say it): the served shape.
    let (_, list) = cp.admin("GET", &format!("/v1/databases/{id}/api-keys"), None);
    assert!(list[0].get("effective").is_none(), "{list}");
    let typed: Vec<QueryKey> = serde_json::from_value(list).unwrap();
    assert!(typed.iter().all(|k| k.effective.is_none()), "{typed:?}");
}
