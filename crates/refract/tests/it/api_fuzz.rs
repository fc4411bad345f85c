//! The control-plane API (`/v1` and the managed `/api/v1`, one document at `/v1/openapi.json`)
//! fuzzed from its own OpenAPI document with schemathesis: every check
//! (no 5xx, only documented statuses, bodies and content types as documented, schema-valid
//! requests accepted, schema-breaking ones rejected, auth enforced), a fixed seed, bounded.
//!
//! `scripts/test` installs schemathesis and exports `REFRACT_TEST_SCHEMATHESIS` (the `st`
//! executable); without it the test looks for `st` on `PATH` and fails loudly when there is none.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{run_bounded, ControlPlane};

/// The schemathesis version `scripts/test` installs.
const VERSION: &str = "4.32.5";

/// Hard bound of one run (alone on 2 cores a run takes 3–15 s; the rest of the suite runs beside it).
const LIMIT: Duration = Duration::from_secs(120);

/// `positive_data_acceptance`: 422 is the answer to a body that matches the schema but breaks a
/// rule the schema cannot state (between fields, against stored state, the clock or what is
/// installed on the host; see docs/api.md), so it is not a schema-valid request refused.
///
const CONFIG: &str = r#"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"#;

/// `POST /api/v1/databases` is not fuzzed: every body it accepts starts a real PostgreSQL,
/// MariaDB or Redis server, too heavy for a fuzz run and outliving a control plane that is
/// killed (`crates/managed/tests` covers its validation and creates servers for real). Neither a
/// per-operation `generation.mode = "negative"` (the stateful phase still creates one) nor
/// `--mode negative` alone (a valid body sent as `text/plain` is a "negative" case, and the API
/// reads JSON whatever the Content-Type) keeps it from starting servers.
const MANAGED_CREATE: &str = "POST /api/v1/databases";

fn schemathesis() -> PathBuf {
    let install = format!(
        "run the tests with ./scripts/test (it installs schemathesis), or: \
         python3 -m venv /tmp/st && /tmp/st/bin/python -m pip install schemathesis=={VERSION} \
         && export REFRACT_TEST_SCHEMATHESIS=/tmp/st/bin/st"
    );
    let st = match std::env::var_os("REFRACT_TEST_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("st"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("schemathesis (`st`) is not installed: {install}")),
    };
    let out = Command::new(&st)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {install}", st.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.contains(VERSION),
        "{} --version says {version:?}, expected {VERSION}: {install}",
        st.display()
    );
    st
}

/// One bounded schemathesis run against `cp` with `key`; panics with the report on failure.
/// `config_extra` is appended to [`CONFIG`].
fn run(
    st: &PathBuf,
    cp: &ControlPlane,
    key: &str,
    label: &str,
    config_extra: &str,
    extra: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, format!("{CONFIG}{config_extra}")).unwrap();
    let start = Instant::now();
    let mut cmd = Command::new(st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/v1/openapi.json", cp.url))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "all",
            "--seed",
            "20261204",
            "--max-examples",
            "25",
        ])
        // One worker: hypothesis on CPython 3.11 can fail parsing lambdas from several threads.
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--no-shrink", "--generation-database", "none", "--no-color"])
        .args(extra)
        .current_dir(dir.path())
        .env("NO_COLOR", "1");
    // A hard bound (`--max-time` would not be one: it makes fuzzing repeat until it is spent).
    let (status, report) = run_bounded(&mut cmd, dir.path(), start, LIMIT);
    eprintln!(
        "schemathesis ({label}) finished in {:.1}s with {status:?}; summary:\n{}",
        start.elapsed().as_secs_f64(),
        tail(&report, 40)
    );
    let Some(status) = status else {
        panic!("schemathesis ({label}) ran over {LIMIT:?} and was stopped:\n{report}");
    };
    assert!(
        status.success(),
        "schemathesis ({label}) found failures:\n{report}\n--- control plane output (tail) ---\n{}",
        tail(&cp.output(), 60)
    );
}

/// The runs leave `POST /api/v1/databases` out: no managed server may have been started (one
/// that was is deleted, so that it does not outlive the test).
fn assert_no_managed_database(cp: &ControlPlane, key: &str) {
    let (s, list) = cp.call("GET", "/api/v1/databases", Some(key), None);
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    for d in &list {
        let path = format!("/api/v1/databases/{}", d["id"].as_str().unwrap());
        cp.call("DELETE", &path, Some(key), None);
    }
    if !list.is_empty() {
        std::thread::sleep(Duration::from_secs(10)); // the reconciler stops them
    }
    assert!(
        list.is_empty(),
        "the fuzz run created managed databases: {list:?}"
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Fuzzes the whole API as the admin, as a customer (admin routes answer 403), and last the
/// revocation of management keys, alone and as the customer: the fuzzer revokes every key it
/// lists, and revoking the key a run uses leaves the rest of that run with nothing but 401s.
#[test]
fn openapi_contract_holds_under_fuzzing() {
    let st = schemathesis();
    let cp = ControlPlane::start_fresh();
    let (s, doc) = cp.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(s, 200, "{doc}");

    // Something to work on: without it every `{id}` route only ever answers 404. A connection
    // to a port where nothing listens (provisioning fails at its connection test; no engine
    // starts), one database every `/v1/databases/{id}…` route gets, and one for DELETE alone
    // (the fuzzer runs DELETE first, and the others would see only 404 after it).
    let seed = |name: &str, db: &str| {
        let created = cp.create_connection(&refract_api::CreateConnectionRequest {
            backend: None,
            port: Some(1),
            user: Some("u".into()),
            password: Some("p".into()),
            available_schemas: Some(vec!["shop".into()]),
            instance: Some(crate::common::instance_request(db, "shop")),
            ..crate::common::connection_request(name, refract_api::Backend::Mysql, "127.0.0.1")
        });
        (
            created.connection.id.to_string(),
            created.database.unwrap().id.to_string(),
        )
    };
    let (cid, did) = seed("fuzzed", "fuzzed");
    let (_, doomed) = seed("deleted", "deleted");
    let seeded = format!(
        r#"
[[operations]]
include-name = "DELETE /v1/databases/{{id}}"
parameters = {{ "path.id" = "{doomed}" }}

[[operations]]
include-path-regex = "^/v1/databases/\\{{id\\}}"
parameters = {{ "path.id" = "{did}" }}

[[operations]]
include-path-regex = "^/v1/connections/\\{{id\\}}"
parameters = {{ "path.id" = "{cid}" }}
"#
    );
    let revoke = [
        "--exclude-path",
        "/v1/account/management-keys/{id}",
        "--exclude-name",
        MANAGED_CREATE,
    ];
    run(&st, &cp, &cp.admin_key.clone(), "admin", &seeded, &revoke);
    assert_no_managed_database(&cp, &cp.admin_key);

    let c: refract_api::CreateCustomerResponse = cp.wire(
        "POST",
        "/v1/admin/customers",
        &cp.admin_key,
        Some(&refract_api::CreateCustomerRequest {
            name: "fuzzed customer".into(),
            plan: Some(refract_api::Plan::Free),
        }),
        201,
    );
    let customer_key = c.management_key.key.unwrap();
    run(&st, &cp, &customer_key, "customer", "", &revoke);
    assert_no_managed_database(&cp, &customer_key);

    run(
        &st,
        &cp,
        &customer_key,
        "key revocation",
        "",
        &["--include-path-regex", "^/v1/account/management-keys"],
    );

    // The server is still up and the admin key still works.
    let (s, body) = cp.admin("GET", "/v1/connections", None);
    assert_eq!(s, 200, "{body}");
}
