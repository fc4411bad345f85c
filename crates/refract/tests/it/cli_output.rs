//! The binary's output as people pipe and redirect it: a reader that goes away (`| head`),
//! logs in a file (no colour codes), JSON logs, and the quickstart stopping and cleaning up when
//! its stdout closes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use refract_api::{Backend, CreateConnectionRequest, Database};
use serde_json::Value;

use crate::common::{connection_request, instance_request, refract_bin, ControlPlane};

/// `sh -c SCRIPT` with `refract` on its PATH; returns (exit code, stderr).
fn sh(script: &str, env: &[(&str, &str)]) -> (i32, String) {
    let bin_dir = refract_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", script])
        .env("PATH", path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn client_commands_end_quietly_when_the_reader_goes_away() {
    let cp = ControlPlane::start_fresh();
    cp.create_connection(&CreateConnectionRequest {
        backend: None,
        available_schemas: Some(vec!["shop".into()]),
        user: Some("reader".into()),
        password: Some("pw".into()),
        instance: Some(instance_request("shop-replica", "shop")),
        ..connection_request("shop", Backend::Mysql, "db.internal")
    });
    let dbs: Vec<Database> = crate::common::wire_answer(
        "GET /v1/databases",
        200,
        cp.admin("GET", "/v1/databases", None),
    );
    let id = dbs
        .first()
        .unwrap_or_else(|| panic!("no database in {dbs:?}"))
        .id
        .to_string();
    let env = [
        ("REFRACT_URL", cp.url.as_str()),
        ("REFRACT_TOKEN", cp.admin_key.as_str()),
    ];
    for script in [
        format!("refract databases events {id} | head -1"),
        // A reader that leaves before anything is written.
        format!("refract databases events {id} | true"),
        "refract databases list | true".to_string(),
    ] {
        let (code, stderr) = sh(&script, &env);
        assert_eq!(code, 0, "{script}: {stderr}");
        assert!(!stderr.contains("panicked"), "{script}: {stderr}");
    }
}

/// Starts `refract serve` with stderr in a file, makes a few requests, stops it; the log text.
fn serve_log(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(refract_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("REFRACT_LOG", "info,tower_http=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("refract control plane listening on ")
                .map(str::to_string)
        })
        .expect("the listening line");
    for path in ["/health", "/v1/connections", "/nope"] {
        let _ = reqwest::blocking::get(format!("{url}{path}"));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn logs_in_a_file_have_no_colour_codes_and_json_logs_are_json() {
    let text = serve_log(&[]);
    assert!(text.lines().count() >= 3, "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape characters in a log file:\n{text}"
    );

    let text = serve_log(&["--log-format", "json"]);
    assert!(text.lines().count() >= 3, "{text}");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.starts_with("sh -c") {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn quickstart_under_head_stops_everything_and_removes_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // The quickstart's temporary directory is under TMPDIR: a private one to look into.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmpdir = tmp.path().to_str().unwrap();
    let started = Instant::now();
    let (code, stderr) = sh(
        "refract quickstart --users 20 | head -5",
        &[("TMPDIR", tmpdir), ("REFRACT_LOG", "warn")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120));
    // Everything it started is gone, and so is its directory (with the master key).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = processes_mentioning(tmpdir);
        let dirs: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        if left.is_empty() && dirs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, files {:?}",
            dirs.iter().map(|d| d.path()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
