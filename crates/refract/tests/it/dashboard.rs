//! The web dashboard in a real browser: `dashboard.py` (Playwright for Python driving Debian's
//! chromium) against a real `refract serve`, a real MariaDB source and a managed Redis.
//!
//! `scripts/test` installs Playwright (pinned, in a venv under `target/`) and chromium, and
//! exports `REFRACT_TEST_PLAYWRIGHT_PYTHON`; without them the test fails with the install
//! command (never skipped). `REFRACT_DASHBOARD_SCREENSHOTS=docs` also writes the screenshots of
//! the main pages that the README shows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{mariadb_admin, mysql_source, run_bounded, ControlPlane};
use crate::managed::KillInstances;

/// The Playwright version `scripts/test` installs.
const PLAYWRIGHT: &str = "1.49.1";

/// Hard bound of one browser run (about 15 s alone on 2 cores).
const LIMIT: Duration = Duration::from_secs(420);

fn install_hint() -> String {
    format!(
        "run the tests with ./scripts/test (it installs both), or: apt-get install -y chromium && \
         python3 -m venv /tmp/pw && /tmp/pw/bin/python -m pip install playwright=={PLAYWRIGHT} && \
         export REFRACT_TEST_PLAYWRIGHT_PYTHON=/tmp/pw/bin/python"
    )
}

/// The Python with Playwright, and chromium; panics with the install command when missing.
fn playwright() -> (PathBuf, PathBuf) {
    let python = std::env::var_os("REFRACT_TEST_PLAYWRIGHT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "REFRACT_TEST_PLAYWRIGHT_PYTHON is not set (Playwright for Python): {}",
                install_hint()
            )
        });
    let out = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, playwright.sync_api; print(m.version('playwright'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {}", python.display(), install_hint()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.trim() == PLAYWRIGHT,
        "{} has Playwright {version:?} (expected {PLAYWRIGHT}): {}\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr),
        install_hint()
    );
    let chromium = std::env::var_os("REFRACT_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "chromium is not installed at {}: {}",
        chromium.display(),
        install_hint()
    );
    (python, chromium)
}

/// Redis is installed here (`scripts/test` installs it): the managed scenario runs when it is.
fn redis_installed() -> bool {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .any(|p| Path::new(p).is_file())
}

/// PostgreSQL's server binaries (`scripts/test` installs them): the managed PostgreSQL
/// scenario ("serve it as a read API") runs when they are.
fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|v| v.path().join("bin/postgres").is_file()))
        .unwrap_or(false)
}

#[test]
fn dashboard_scenarios_in_a_real_browser() {
    let (python, chromium) = playwright();
    let src = mysql_source();
    mariadb_admin(
        "DROP DATABASE IF EXISTS dash_shop; CREATE DATABASE dash_shop; USE dash_shop; \
         CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL); \
         CREATE TABLE orders (id INT PRIMARY KEY, item_id INT NOT NULL, qty INT NOT NULL, \
           FOREIGN KEY (item_id) REFERENCES items(id)); \
         INSERT INTO items SELECT seq, CONCAT('widget-', seq) FROM seq_1_to_20; \
         INSERT INTO orders SELECT seq, 1 + seq % 20, seq FROM seq_1_to_50;",
    );
    let cp = ControlPlane::start_fresh();
    let _kill = KillInstances(cp.dir.clone());

    // Another customer with a database of its own: its id must be a 404 in our session.
    let c: refract_api::CreateCustomerResponse = cp.wire(
        "POST",
        "/v1/admin/customers",
        &cp.admin_key,
        Some(&refract_api::CreateCustomerRequest {
            name: "someone else".into(),
            plan: Some(refract_api::Plan::Free),
        }),
        201,
    );
    let other_key = c.management_key.key.unwrap();
    let other_password = "their-source-password-9f3k";
    let theirs = refract_api::CreateConnectionRequest {
        backend: None,
        port: Some(1),
        user: Some("u".into()),
        password: Some(other_password.into()),
        available_schemas: Some(vec!["x".into()]),
        instance: Some(crate::common::instance_request("theirs", "x")),
        ..crate::common::connection_request("theirs", refract_api::Backend::Mysql, "127.0.0.1")
    };
    let created: refract_api::CreateConnectionResponse =
        cp.wire("POST", "/v1/connections", &other_key, Some(&theirs), 201);
    let other_db = created.database.unwrap().id.to_string();

    let secrets = [
        cp.admin_key.as_str(),
        other_key.as_str(),
        src.password.as_str(),
        other_password,
    ];
    let start = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dashboard.py");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .env("DASH_URL", &cp.url)
        .env("DASH_KEY", &cp.admin_key)
        .env("DASH_SECRETS", json!(secrets).to_string())
        .env("DASH_OTHER_DB", &other_db)
        .env(
            "DASH_MYSQL",
            json!({"host": src.host, "port": src.port, "user": src.user, "password": src.password})
                .to_string(),
        )
        .env("DASH_SCHEMA", "dash_shop")
        .env("DASH_CHROMIUM", &chromium)
        .env(
            "DASH_MANAGED_REDIS",
            if redis_installed() { "1" } else { "0" },
        )
        .env(
            "DASH_MANAGED_POSTGRES",
            if postgres_installed() { "1" } else { "0" },
        );
    if let Some(shots) = std::env::var_os("REFRACT_DASHBOARD_SCREENSHOTS") {
        let shots = std::fs::canonicalize(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(shots),
        )
        .expect("REFRACT_DASHBOARD_SCREENSHOTS is a directory of the repository");
        cmd.env("DASH_SCREENSHOTS", shots);
    }
    if !redis_installed() {
        eprintln!("redis-server is not installed: the managed Redis scenario does not run");
    }
    if !postgres_installed() {
        eprintln!("PostgreSQL is not installed: the managed PostgreSQL scenario does not run");
    }
    let (status, report) = run_bounded(&mut cmd, dir.path(), start, LIMIT);
    eprintln!(
        "dashboard.py finished in {:.1}s with {status:?}:\n{report}",
        start.elapsed().as_secs_f64()
    );
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser scenarios failed (or ran over {LIMIT:?}):\n{report}\n--- control plane output (tail) ---\n{}",
        tail(&cp.output())
    );
    // Nothing secret in the server's own output either (the other key is in a response the
    // test itself asked for: its creation).
    cp.assert_no_leak(&[cp.admin_key.as_str(), src.password.as_str(), other_password]);
}
