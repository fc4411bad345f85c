use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use refract_runtime::{
    free_port, Driver, InstanceKind, InstanceSpec, InstanceStatus, LocalProcessDriver, Readiness,
    RuntimeError, SpecFile, LOG_FILE, STATE_FILE,
};
use tempfile::TempDir;

const GRACE: Duration = Duration::from_secs(2);

fn driver() -> (TempDir, LocalProcessDriver) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let driver = LocalProcessDriver::new(tmp.path().join("instances"));
    (tmp, driver)
}

/// A shell script as an engine-like instance.
fn sh(id: &str, script: &str) -> InstanceSpec {
    let mut spec = InstanceSpec::new(id, InstanceKind::Engine, "/bin/sh", Readiness::engine());
    spec.args = vec!["-c".into(), script.into()];
    spec
}

const READY_THEN_SLEEP: &str = r#"echo "starting up"; echo "refract engine listening on http://127.0.0.1:1234"; exec sleep 30"#;

/// Polls `status` until `pred` holds (at most 5 s).
async fn wait_until(
    driver: &LocalProcessDriver,
    id: &str,
    pred: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = driver.status(id).await.expect("status");
        if pred(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_running(status: &InstanceStatus) -> bool {
    matches!(status, InstanceStatus::Running { .. })
}

fn is_exited(status: &InstanceStatus) -> bool {
    matches!(status, InstanceStatus::Exited { .. })
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn ready_line_gives_endpoint_files_are_private_and_stop_ends_it() {
    let (_tmp, driver) = driver();
    let mut spec = sh("engine-1", READY_THEN_SLEEP);
    spec.files
        .push(SpecFile::new("engine.yaml", "listen: 127.0.0.1:0\n"));
    spec.files
        .push(SpecFile::new("admin_token", "s3cret-token"));
    spec.memory_limit_mb = Some(409);

    let handle = driver.start(&spec).await.expect("start");
    assert_eq!(handle.id, "engine-1");
    assert_eq!(driver.region(), "local");

    let status = wait_until(&driver, "engine-1", is_running).await;
    assert_eq!(status.endpoint(), Some("http://127.0.0.1:1234"));
    assert_eq!(
        driver.endpoint("engine-1").await.as_deref(),
        Some("http://127.0.0.1:1234")
    );

    let dir = driver.instance_dir("engine-1").expect("dir");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("engine.yaml")), 0o600);
    assert_eq!(mode(&dir.join("admin_token")), 0o600);
    assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("admin_token")).expect("read"),
        "s3cret-token"
    );
    let state = std::fs::read_to_string(dir.join(STATE_FILE)).expect("state");
    assert!(!state.contains("s3cret-token"));
    assert!(state.contains("\"memory_limit_mb\": 409"));

    let log = std::fs::read_to_string(dir.join(LOG_FILE)).expect("log");
    assert!(log.contains("starting up"), "{log}");
    assert!(driver.logs("engine-1", 10).await.contains("listening on"));

    let list = driver.list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, "engine-1");

    let stopped = driver.stop("engine-1", GRACE).await.expect("stop");
    assert!(
        matches!(
            stopped,
            InstanceStatus::Exited {
                code: None,
                signal: Some(15),
                ..
            }
        ),
        "{stopped:?}"
    );
    assert_eq!(driver.endpoint("engine-1").await, None);
    // Idempotent, and files are kept until remove.
    assert!(is_exited(
        &driver.stop("engine-1", GRACE).await.expect("stop again")
    ));
    assert!(dir.join("engine.yaml").exists());

    driver.remove("engine-1").await.expect("remove");
    assert!(!dir.exists());
    assert_eq!(
        driver.status("engine-1").await.expect("status"),
        InstanceStatus::NotFound
    );
    assert_eq!(
        driver.stop("engine-1", GRACE).await.expect("stop unknown"),
        InstanceStatus::NotFound
    );
}

#[tokio::test]
async fn process_that_exits_reports_its_code_and_can_start_again() {
    let (_tmp, driver) = driver();
    let spec = sh("quitter", "echo 'bye now' >&2; exit 3");
    driver.start(&spec).await.expect("start");
    let status = wait_until(&driver, "quitter", is_exited).await;
    assert!(
        matches!(
            status,
            InstanceStatus::Exited {
                code: Some(3),
                signal: None,
                ..
            }
        ),
        "{status:?}"
    );
    let tail = driver.logs("quitter", 2).await;
    assert!(tail.contains("bye now"), "{tail}");
    assert!(tail.contains("exited with code 3"), "{tail}");

    // An exited instance starts again in place, and its log is appended to.
    driver.start(&spec).await.expect("start again");
    wait_until(&driver, "quitter", |s| {
        matches!(s, InstanceStatus::Exited { code: Some(3), .. })
    })
    .await;
    let log = driver.logs("quitter", 100).await;
    assert_eq!(log.matches("bye now").count(), 2, "{log}");
}

#[tokio::test]
async fn start_of_a_running_instance_is_refused_and_remove_waits_for_stop() {
    let (_tmp, driver) = driver();
    let spec = sh("busy", READY_THEN_SLEEP);
    driver.start(&spec).await.expect("start");
    assert!(matches!(
        driver.start(&spec).await,
        Err(RuntimeError::AlreadyRunning(id)) if id == "busy"
    ));
    assert!(matches!(
        driver.remove("busy").await,
        Err(RuntimeError::StillRunning(_))
    ));
    assert!(is_exited(&driver.stop("busy", GRACE).await.expect("stop")));
    driver.remove("busy").await.expect("remove");
}

#[tokio::test]
async fn new_driver_adopts_running_process_and_stops_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().join("instances");
    let first = LocalProcessDriver::new(&base);
    first
        .start(&sh("adoptee", READY_THEN_SLEEP))
        .await
        .expect("start");
    // The first driver never looks at the instance (the endpoint is not in state.json yet) and
    // goes away, like a control plane that crashes.
    let log = base.join("adoptee").join(LOG_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(std::time::Instant::now() < deadline, "no ready line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);

    let second = LocalProcessDriver::new(&base);
    let status = second.status("adoptee").await.expect("status");
    assert_eq!(status.endpoint(), Some("http://127.0.0.1:1234"));
    let list = second.list().await.expect("list");
    assert_eq!(list, vec![("adoptee".to_string(), status)]);

    let stopped = second.stop("adoptee", GRACE).await.expect("stop");
    // Not our child any more: the exit code is unknown.
    assert!(
        matches!(
            stopped,
            InstanceStatus::Exited {
                code: None,
                signal: None,
                ..
            }
        ),
        "{stopped:?}"
    );

    // A third driver reads the recorded exit.
    let third = LocalProcessDriver::new(&base);
    assert!(is_exited(&third.status("adoptee").await.expect("status")));
}

/// Rewrites one field of an instance's state.json.
fn edit_state(base: &std::path::Path, id: &str, field: &str, value: serde_json::Value) {
    let path = base.join(id).join(STATE_FILE);
    let text = std::fs::read_to_string(&path).expect("state");
    let mut state: serde_json::Value = serde_json::from_str(&text).expect("json");
    state[field] = value;
    std::fs::write(&path, state.to_string()).expect("write state");
}

#[tokio::test]
async fn adoption_rejects_a_reused_pid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().join("instances");
    let first = LocalProcessDriver::new(&base);
    for id in ["other-start-time", "other-program", "same-program"] {
        first
            .start(&sh(id, "echo hello; sleep 30"))
            .await
            .expect("start");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The pid now belongs to a process started at another time.
    edit_state(&base, "other-start-time", "proc_start_ticks", 1.into());
    // Without a recorded start time, the command line decides.
    for id in ["other-program", "same-program"] {
        edit_state(&base, id, "proc_start_ticks", serde_json::Value::Null);
    }
    edit_state(
        &base,
        "other-program",
        "program",
        "/usr/bin/postgres".into(),
    );

    let second = LocalProcessDriver::new(&base);
    assert!(is_exited(
        &second.status("other-start-time").await.expect("status")
    ));
    assert!(is_exited(
        &second.status("other-program").await.expect("status")
    ));
    assert_eq!(
        second.status("same-program").await.expect("status"),
        InstanceStatus::Starting
    );

    // The real processes are still the first driver's to stop.
    for id in ["other-start-time", "other-program", "same-program"] {
        assert!(is_exited(&first.stop(id, GRACE).await.expect("stop")));
    }
}

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigterm() {
    let (_tmp, driver) = driver();
    let spec = sh("stubborn", "trap '' TERM; echo ready; exec sleep 30");
    driver.start(&spec).await.expect("start");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = driver
        .stop("stubborn", Duration::from_millis(200))
        .await
        .expect("stop");
    assert!(
        matches!(
            status,
            InstanceStatus::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn tcp_port_readiness() {
    let (_tmp, driver) = driver();
    let port = free_port().expect("free port");
    let script = format!(
        "import socket, time\n\
         time.sleep(0.2)\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         print('listening', flush=True)\n\
         time.sleep(30)\n"
    );
    let mut spec = InstanceSpec::new(
        "server-1",
        InstanceKind::Server,
        "python3",
        Readiness::TcpPort(port),
    );
    spec.args = vec!["-c".into(), script];
    driver.start(&spec).await.expect("start");
    assert_eq!(
        driver.status("server-1").await.expect("status"),
        InstanceStatus::Starting
    );
    let status = wait_until(&driver, "server-1", is_running).await;
    assert_eq!(
        status.endpoint(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert!(is_exited(
        &driver.stop("server-1", GRACE).await.expect("stop")
    ));
}

/// Two servers handed the same port: the second fails to bind and exits, and the first one,
/// which accepts on that port, must not make it look ready in between.
#[tokio::test]
async fn tcp_port_readiness_ignores_another_process_on_the_port() {
    let (_tmp, driver) = driver();
    // The other server is another process, as in life (a listener of this test process would
    // also be seen, for a moment, in the new instance's forked copy of it before its exec).
    let port = free_port().expect("free port");
    let mut squatter = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, time\n\
                 s = socket.socket()\n\
                 s.bind(('127.0.0.1', {port}))\n\
                 s.listen()\n\
                 print('listening', flush=True)\n\
                 time.sleep(30)\n"
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the other server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(squatter.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    let mut spec = InstanceSpec::new(
        "late-server",
        InstanceKind::Server,
        "python3",
        Readiness::TcpPort(port),
    );
    spec.args = vec!["-c".into(), "import time\ntime.sleep(30)\n".into()];
    driver.start(&spec).await.expect("start");
    for _ in 0..10 {
        assert_eq!(
            driver.status("late-server").await.expect("status"),
            InstanceStatus::Starting,
            "ready although only another process listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(is_exited(
        &driver.stop("late-server", GRACE).await.expect("stop")
    ));
    let _ = squatter.kill();
    let _ = squatter.wait();
}

#[test]
fn free_port_never_hands_out_a_port_twice() {
    let ports: std::collections::HashSet<u16> =
        (0..200).map(|_| free_port().expect("free port")).collect();
    assert_eq!(ports.len(), 200);
}

#[tokio::test]
async fn env_reaches_the_instance_but_the_control_planes_does_not() {
    let (_tmp, driver) = driver();
    let mut spec = sh(
        "env",
        r#"echo "secret=$REFRACT_TEST_SECRET pkg=$CARGO_PKG_NAME path_set=${PATH:+yes}""#,
    );
    spec.env
        .push(("REFRACT_TEST_SECRET".into(), "hunter2-value".into()));
    spec.files.push(SpecFile::new("password", "file-secret"));
    // Neither Debug output nor errors show secret values.
    let debug = format!("{spec:?}");
    assert!(debug.contains("REFRACT_TEST_SECRET"));
    assert!(!debug.contains("hunter2-value"));
    assert!(!debug.contains("file-secret"));

    driver.start(&spec).await.expect("start");
    wait_until(&driver, "env", is_exited).await;
    let log = driver.logs("env", 5).await;
    // CARGO_PKG_NAME is set for this test process; instances must not inherit it.
    assert!(
        log.contains("secret=hunter2-value pkg= path_set=yes"),
        "{log}"
    );
}

#[tokio::test]
async fn invalid_ids_file_names_and_missing_programs_are_errors() {
    let (_tmp, driver) = driver();
    for id in ["", "..", "a/b", "../escape", "white space"] {
        let err = driver.start(&sh(id, "true")).await.expect_err(id);
        assert!(matches!(err, RuntimeError::InvalidId(_)), "{id}: {err}");
    }
    for name in ["a/b", "..", STATE_FILE, LOG_FILE] {
        let mut spec = sh("files", "true");
        spec.files.push(SpecFile::new(name, "x"));
        let err = driver.start(&spec).await.expect_err(name);
        assert!(
            matches!(err, RuntimeError::InvalidFileName(_)),
            "{name}: {err}"
        );
    }

    let mut spec = InstanceSpec::new(
        "missing",
        InstanceKind::Server,
        "/nonexistent/postgres",
        Readiness::TcpPort(1),
    );
    spec.env.push(("PGPASSWORD".into(), "hunter2-value".into()));
    let err = driver.start(&spec).await.expect_err("missing program");
    assert!(matches!(err, RuntimeError::Spawn { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("/nonexistent/postgres"), "{message}");
    assert!(!message.contains("hunter2-value"));
    assert_eq!(
        driver.status("missing").await.expect("status"),
        InstanceStatus::NotFound
    );
    assert!(driver.logs("missing", 5).await.contains("cannot start"));
    assert!(driver.list().await.expect("list").is_empty());
}
