//! Engine processes (issue 12): engines never run as root and keep their files to their own
//! user, two engines never share an instance directory, and no engine outlives a control plane
//! that was SIGKILLed while starting it.
//!
//! Engines are found the way an operator would: every `refract engine` process in `/proc` whose
//! working directory is an instance directory under the test's data dir.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use refract_api::{Backend, CreateConnectionRequest, Database, Status};

use crate::common::{
    connection_request, created_database_id, instance_request, refract_bin, ControlPlane,
};

const LONG: Duration = Duration::from_secs(60);

fn euid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap()
}

/// Live `refract engine` processes whose working directory is under `data`, by that directory.
fn engines_under(data: &Path) -> BTreeMap<PathBuf, Vec<u32>> {
    let data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let mut out: BTreeMap<PathBuf, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.get(1) != Some(&b"engine".as_slice()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let state = stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .chars()
            .next();
        if matches!(state, Some('Z') | Some('X')) {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        // A deleted directory reads "DIR (deleted)": still under the data dir, still an engine.
        if cwd.to_string_lossy().starts_with(&*data.to_string_lossy()) {
            out.entry(cwd).or_default().push(pid);
        }
    }
    out
}

/// Kills every engine under `data` when dropped (a failed test leaves none behind).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pids in engines_under(&self.0).values() {
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// A small SQLite source (0644) beside the data dir, its connection and database; the id.
fn sqlite_database(cp: &ControlPlane, name: &str) -> String {
    let path = cp.dir.parent().unwrap().join(format!("{name}.db"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada'), (2, 'grace');",
    )
    .unwrap();
    drop(conn);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let request = CreateConnectionRequest {
        sync_interval: Some(5),
        instance: Some(instance_request(name, "main")),
        ..connection_request(name, Backend::Sqlite, path.to_str().unwrap())
    };
    created_database_id(&cp.create_connection(&request))
}

fn wait_status(cp: &ControlPlane, id: &str, status: Status) -> Database {
    let start = Instant::now();
    loop {
        let v = cp.database(id.parse().unwrap());
        if v.status == status && v.desired_state.is_none() {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "database {id} did not reach {status}: {v:?}\n{}",
            cp.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn provision(cp: &ControlPlane, id: &str) {
    let (s, v) = cp.admin("POST", &format!("/v1/databases/{id}/provision"), None);
    assert_eq!(s, 202, "{v}");
}

fn terminate_and_delete(cp: &ControlPlane, id: &str) {
    let (s, v) = cp.admin("POST", &format!("/v1/databases/{id}/terminate"), None);
    assert!(s == 202 || s == 409, "terminate: {s} {v}");
    wait_status(cp, id, Status::Terminated);
    let (s, v) = cp.admin("DELETE", &format!("/v1/databases/{id}"), None);
    assert!(s == 200 || s == 204, "delete: {s} {v}");
}

/// Waits until exactly one engine runs per instance directory and `dirs` directories have one.
fn one_engine_per_directory(data: &Path, dirs: usize) -> BTreeMap<PathBuf, Vec<u32>> {
    let start = Instant::now();
    loop {
        let found = engines_under(data);
        if found.len() == dirs && found.values().all(|p| p.len() == 1) {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "want one engine in each of {dirs} instance directories, found {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn no_engines_left(data: &Path) {
    let start = Instant::now();
    loop {
        let found = engines_under(data);
        if found.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "engines outlived terminate and delete: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn query(endpoint: &str, key: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("{endpoint}/query"))
        .bearer_auth(key)
        .body("users(id = 2) { name }")
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// With the control plane as root the engine runs as an unprivileged user (as any other user,
/// as that same user), owns its instance directory and secret files, and nobody else can read
/// them; a query key created afterwards still reaches it (the rewritten keys file stays its).
#[test]
fn engines_run_unprivileged_and_keep_their_files_private() {
    let cp = ControlPlane::start_fresh();
    let _reaper = Reaper(cp.dir.clone());
    let id = sqlite_database(&cp, "unprivileged");
    provision(&cp, &id);
    let v = wait_status(&cp, &id, Status::Running);
    let endpoint = v.endpoint_url.expect("endpoint");

    let found = one_engine_per_directory(&cp.dir, 1);
    let (dir, pids) = found.iter().next().unwrap();
    let pid = pids[0];
    let uids: Vec<u32> = status_field(pid, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    let engine_uid = uids[0];
    assert!(uids.iter().all(|&u| u == engine_uid), "Uid: {uids:?}");
    if euid() == 0 {
        assert_ne!(engine_uid, 0, "an engine runs as root");
        assert!(
            status_field(pid, "Gid")
                .split_whitespace()
                .all(|g| g != "0"),
            "an engine runs in group root"
        );
        assert_eq!(status_field(pid, "Groups"), "", "supplementary groups kept");
    } else {
        assert_eq!(engine_uid, euid(), "no switch as another user");
    }

    // The instance directory and everything in it: the engine's or the control plane's, never
    // readable (or searchable) by group or others.
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(
        meta.uid(),
        engine_uid,
        "{} is not the engine's",
        dir.display()
    );
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "{} is open: {:o}",
        dir.display(),
        meta.mode()
    );
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        assert_eq!(meta.mode() & 0o077, 0, "{name} is open: {:o}", meta.mode());
        assert!(
            meta.uid() == engine_uid || meta.uid() == euid(),
            "{name} belongs to uid {}",
            meta.uid()
        );
        names.push(name);
    }
    for secret in ["engine.yaml", "admin-token", "manifest.json"] {
        assert!(
            names.iter().any(|n| n == secret),
            "{secret} missing: {names:?}"
        );
        let meta = std::fs::metadata(dir.join(secret)).unwrap();
        assert_eq!(meta.uid(), engine_uid, "{secret} is not the engine's");
    }
    assert!(
        names.iter().any(|n| n == "engine.lock"),
        "no lock file: {names:?}"
    );

    // The keys file, rewritten when a key is created, stays the engine's and private.
    let k: refract_api::QueryKey = cp.wire(
        "POST",
        &format!("/v1/databases/{id}/api-keys"),
        &cp.admin_key,
        Some(&refract_api::CreateQueryKeyRequest {
            name: "app".into(),
            expires_at: None,
        }),
        201,
    );
    let key = k.key.as_deref().unwrap();
    let keys = cp.dir.join("keys").join(format!("{id}.json"));
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o077),
        (engine_uid, 0),
        "keys file"
    );
    let meta = std::fs::metadata(keys.parent().unwrap()).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o077),
        (engine_uid, 0),
        "keys dir"
    );
    let start = Instant::now();
    while query(&endpoint, key) != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the engine never accepted the new key"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A SQLite file the engine's user cannot read fails the build, saying what to do.
    if euid() == 0 {
        let closed = sqlite_database(&cp, "closed");
        let path = cp.dir.parent().unwrap().join("closed.db");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        provision(&cp, &closed);
        let v = wait_status(&cp, &closed, Status::Failed);
        let err = v.last_error.as_deref().unwrap_or_default();
        assert!(
            err.contains("cannot read the SQLite file") && err.contains("readable by that user"),
            "{err}"
        );
    }

    terminate_and_delete(&cp, &id);
    no_engines_left(&cp.dir);
}

/// A second engine started in a running engine's directory refuses to start (non-zero exit,
/// a clear message), and the first keeps serving.
#[test]
fn a_second_engine_in_the_same_directory_refuses_to_start() {
    let cp = ControlPlane::start_fresh();
    let _reaper = Reaper(cp.dir.clone());
    let id = sqlite_database(&cp, "locked");
    provision(&cp, &id);
    let v = wait_status(&cp, &id, Status::Running);
    let endpoint = v.endpoint_url.unwrap();
    let found = one_engine_per_directory(&cp.dir, 1);
    let dir = found.keys().next().unwrap().clone();

    let mut child = Command::new(refract_bin())
        .args(["engine", "--config", "engine.yaml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second engine started in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("refusing to start") && text.contains("engine.lock"),
        "{text}"
    );
    assert!(!text.contains("listening on"), "{text}");
    let health = reqwest::blocking::get(format!("{endpoint}/health")).unwrap();
    assert_eq!(health.status().as_u16(), 200);
    one_engine_per_directory(&cp.dir, 1);

    terminate_and_delete(&cp, &id);
    no_engines_left(&cp.dir);
}

/// The control plane dies between spawning an engine and recording it (reproduced by removing
/// the state file the driver wrote): after the restart exactly one engine runs in the directory
/// and terminate + delete leave none.
#[test]
fn an_engine_the_driver_never_recorded_is_stopped() {
    let cp = ControlPlane::start_fresh();
    let _reaper = Reaper(cp.dir.clone());
    let id = sqlite_database(&cp, "unrecorded");
    provision(&cp, &id);
    wait_status(&cp, &id, Status::Running);
    let found = one_engine_per_directory(&cp.dir, 1);
    let dir = found.keys().next().unwrap().clone();
    cp.kill();
    std::fs::remove_file(dir.join("state.json")).unwrap();

    let cp = cp.restart();
    wait_status(&cp, &id, Status::Running);
    // Give the reconciler time to act on what it found (a duplicate would appear now).
    std::thread::sleep(Duration::from_secs(2));
    wait_status(&cp, &id, Status::Running);
    one_engine_per_directory(&cp.dir, 1);

    terminate_and_delete(&cp, &id);
    no_engines_left(&cp.dir);
}

/// SIGKILL of the control plane at stepped moments of provisioning, a restart after each. The
/// steps are centred on when an engine appears (measured on a first database): the driver spawns
/// it and records it in `state.json` moments later, the window in which a kill used to leave an
/// engine no state file named. Once everything is reconciled: exactly one engine per instance
/// directory; after terminate + delete, none.
#[test]
fn sigkill_during_provision_leaves_one_engine_per_directory() {
    let started = Instant::now();
    let mut cp = ControlPlane::start_fresh();
    let _reaper = Reaper(cp.dir.clone());
    // Calibrate: from the provision request to the engine's process.
    let first = sqlite_database(&cp, "calibrate");
    let t = Instant::now();
    provision(&cp, &first);
    while engines_under(&cp.dir).is_empty() {
        assert!(t.elapsed() < LONG, "no engine appeared\n{}", cp.output());
        std::thread::sleep(Duration::from_millis(1));
    }
    let spawn_ms = t.elapsed().as_millis() as i64;
    wait_status(&cp, &first, Status::Running);
    let mut ids = vec![first];
    for step in 0..14i64 {
        let id = sqlite_database(&cp, &format!("crash{step}"));
        let delay = (spawn_ms - 24 + step * 4).max(0) as u64;
        provision(&cp, &id);
        std::thread::sleep(Duration::from_millis(delay));
        cp.kill();
        ids.push(id);
        cp = cp.restart();
    }
    for id in &ids {
        wait_status(&cp, id, Status::Running);
    }
    // Sweeps and crash restarts have had their chance to duplicate something.
    std::thread::sleep(Duration::from_secs(2));
    one_engine_per_directory(&cp.dir, ids.len());

    for id in &ids {
        let (s, v) = cp.admin("POST", &format!("/v1/databases/{id}/terminate"), None);
        assert_eq!(s, 202, "terminate: {v}");
    }
    for id in &ids {
        terminate_and_delete(&cp, id);
    }
    no_engines_left(&cp.dir);
    eprintln!(
        "engine spawned {spawn_ms} ms after the provision request; test took {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
