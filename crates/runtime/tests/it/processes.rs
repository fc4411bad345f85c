//! Processes of an instance that `state.json` does not name (a control plane died between spawn
//! and recording it) are found and stopped; instances run as the driver's user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use refract_runtime::user::{engine_user, is_root};
use refract_runtime::{
    Driver, InstanceKind, InstanceSpec, LocalProcessDriver, Readiness, SpecFile, INSTANCE_DIR_ENV,
    STATE_FILE,
};

const GRACE: Duration = Duration::from_secs(2);

fn sleeper(id: &str) -> InstanceSpec {
    let mut spec = InstanceSpec::new(id, InstanceKind::Engine, "/bin/sh", Readiness::engine());
    spec.args = vec![
        "-c".into(),
        r#"echo "refract engine listening on http://127.0.0.1:1"; exec sleep 60"#.into(),
    ];
    spec
}

/// What a control plane killed right after spawning leaves: a process of the instance directory
/// (its working directory and marker) that no state file names.
fn stray(dir: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exec sleep 60"])
        .env(INSTANCE_DIR_ENV, &dir)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn a stray");
    // Until it has exec'd, /proc shows the test's own environment and directory, not the
    // marker; while `sh` execs `sleep`, /proc/<pid>/environ can read empty for a moment. A real
    // stray (its control plane died) has long exec'd its program when anybody looks, so wait
    // until this one runs `sleep` with the marker (a scan at the exec instant missed it once
    // under load).
    let marker = format!("{INSTANCE_DIR_ENV}=");
    for _ in 0..500 {
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(&marker) && cmdline.starts_with(b"sleep\0") {
            return child;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the stray never exec'd");
}

/// Waits until the child has ended (killed by the driver), at most 10 s.
fn assert_ends(child: &mut Child, what: &str) {
    for _ in 0..500 {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("{what}: the stray process {} was not stopped", child.id());
}

fn recorded_pid(base: &Path, id: &str) -> u32 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join(id).join(STATE_FILE)).unwrap()).unwrap();
    state["pid"].as_u64().unwrap() as u32
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 1..].trim_start().chars().next();
            !matches!(state, Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn processes_no_state_file_names_are_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("instances");
    let first = LocalProcessDriver::new(&base);
    first.start(&sleeper("a")).await.expect("start a");
    let pid_a = recorded_pid(&base, "a");

    // The control plane "died" after spawning a second process in a's directory: a new driver's
    // list (the reconciler's sweep after a restart) stops it and keeps the recorded one.
    let mut orphan = stray(&base.join("a"));
    let second = LocalProcessDriver::new(&base);
    let listed = second.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_ends(&mut orphan, "list");
    assert!(alive(pid_a), "the recorded process must keep running");

    // Stop ends every process of the directory, the recorded one and any stray.
    let mut orphan = stray(&base.join("a"));
    second.stop("a", GRACE).await.expect("stop");
    assert_ends(&mut orphan, "stop");
    assert!(!alive(pid_a));

    // A start in a directory with a stray (its state file says exited) stops the stray first.
    let mut orphan = stray(&base.join("a"));
    second.start(&sleeper("a")).await.expect("start again");
    assert_ends(&mut orphan, "start");
    let pid_a2 = recorded_pid(&base, "a");
    assert!(alive(pid_a2));

    // Remove of an exited instance stops what is left in its directory; so does a start of a
    // new id whose directory has a process but no state file yet.
    second.stop("a", GRACE).await.unwrap();
    let mut orphan = stray(&base.join("a"));
    second.remove("a").await.expect("remove");
    assert_ends(&mut orphan, "remove");
    assert!(!base.join("a").exists());

    let mut orphan = stray(&base.join("b"));
    second.start(&sleeper("b")).await.expect("start b");
    assert_ends(&mut orphan, "start of a new id");
    second.stop("b", GRACE).await.unwrap();
}

/// The recorded process's own children (its process group: a server's forks) are not strays.
#[tokio::test]
async fn children_of_the_recorded_process_are_not_strays() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("instances");
    let driver = LocalProcessDriver::new(&base);
    let mut spec = InstanceSpec::new("g", InstanceKind::Server, "/bin/sh", Readiness::engine());
    spec.args = vec![
        "-c".into(),
        r#"sleep 60 & echo $! > child.pid; echo "refract engine listening on http://127.0.0.1:1"; wait"#.into(),
    ];
    driver.start(&spec).await.expect("start");
    let pid_file = base.join("g").join("child.pid");
    for _ in 0..250 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));
    LocalProcessDriver::new(&base).list().await.expect("list");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        alive(child),
        "a child of the recorded process was taken for a stray"
    );
    driver.stop("g", GRACE).await.unwrap();
    for _ in 0..250 {
        if !alive(child) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the child outlived stop");
}

fn proc_status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn instances_run_as_the_drivers_user_and_own_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    // The user must be able to reach the base directory (tempdirs are 0700).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let base = tmp.path().join("instances");
    let user = engine_user().expect("engine user");
    let driver = LocalProcessDriver::new(&base).run_as(user.clone());
    let mut spec = sleeper("u");
    spec.files.push(SpecFile::new("secret", "s3cret"));
    driver.start(&spec).await.expect("start");
    let pid = recorded_pid(&base, "u");

    let uids = proc_status_field(pid, "Uid");
    let gids = proc_status_field(pid, "Gid");
    let want_uid = if is_root() {
        user.uid
    } else {
        unsafe { libc::geteuid() }
    };
    assert!(
        uids.split_whitespace().all(|u| u == want_uid.to_string()),
        "Uid: {uids}"
    );
    if is_root() {
        assert_ne!(want_uid, 0);
        assert!(
            gids.split_whitespace().all(|g| g == user.gid.to_string()),
            "Gid: {gids}"
        );
        assert_eq!(
            proc_status_field(pid, "Groups"),
            "",
            "supplementary groups are dropped"
        );
    }
    let dir = base.join("u");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.uid(), want_uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let meta = std::fs::metadata(dir.join("secret")).unwrap();
    assert_eq!(meta.uid(), want_uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The driver's own state stays the driver's.
    let meta = std::fs::metadata(dir.join(STATE_FILE)).unwrap();
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Others may only search the base directory, never list it.
    assert_eq!(
        std::fs::metadata(&base).unwrap().permissions().mode() & 0o007,
        if is_root() { 0o001 } else { 0 }
    );
    driver.stop("u", GRACE).await.unwrap();
}

/// A program under a directory the instance user cannot search (a checkout under `/root`, as
/// root) runs from a link or copy in `BASE/.bin/`.
#[tokio::test]
async fn a_program_the_user_cannot_reach_runs_from_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // A private directory (0700) holding the program, like /root.
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let program = private.join("sh");
    std::fs::copy("/bin/sh", &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = tmp.path().join("instances");
    let driver = LocalProcessDriver::new(&base).run_as(engine_user().expect("engine user"));
    let mut spec = sleeper("p");
    spec.program = program.clone();
    driver
        .start(&spec)
        .await
        .expect("start from a reachable copy");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join("p").join(STATE_FILE)).unwrap()).unwrap();
    let started = std::path::PathBuf::from(state["program"].as_str().unwrap());
    if is_root() {
        assert!(
            started.starts_with(refract_runtime::RUNNABLE_COPIES),
            "{}",
            started.display()
        );
    } else {
        assert_eq!(started, program);
    }
    driver.stop("p", GRACE).await.unwrap();
    // A second start reuses the same copy.
    driver.start(&spec).await.expect("start again");
    driver.stop("p", GRACE).await.unwrap();
    if is_root() {
        let name = started.file_name().unwrap().to_string_lossy().into_owned();
        let copies = std::fs::read_dir(refract_runtime::RUNNABLE_COPIES)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy() == name)
            .count();
        assert_eq!(copies, 1);
    }
}
