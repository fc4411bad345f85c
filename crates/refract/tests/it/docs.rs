//! The documentation's examples run: every ```query block of docs/query-language.md and of the
//! README answers 200 with rows on the quickstart's demo data, and every ```query-error block
//! answers 400 `query_error` with the message it names (`# error: …`).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{refract_bin, spawn_quickstart};

/// A block of a Markdown file: its info string and its text.
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

struct Quickstart(Child);

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `refract quickstart` printed: the engine's query URL and key, the control plane's URL
/// and management key.
struct Printed {
    query_url: String,
    query_key: String,
    cp_url: String,
    cp_token: String,
    /// `dashboard  URL/   (sign in once, without the key: LINK)`.
    dashboard: Option<String>,
}

/// Starts `refract quickstart` in `dir`; returns it with what it printed.
fn quickstart(dir: &std::path::Path) -> (Quickstart, Printed) {
    let (child, rx) = spawn_quickstart(&["--users", "50", "--dir", dir.to_str().unwrap()]);
    let qs = Quickstart(child);
    let start = Instant::now();
    let mut curl = None;
    let mut control = None;
    let mut dashboard = None;
    while curl.is_none() || control.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(start.elapsed()))
            .expect("quickstart printed no curl line");
        let line = line.trim();
        if line.starts_with("curl ") {
            curl = Some(line.to_string());
        }
        // `REFRACT_URL=… REFRACT_TOKEN=… refract databases instance ID`
        if line.starts_with("REFRACT_URL=") {
            control = Some(line.to_string());
        }
        if line.starts_with("dashboard ") {
            dashboard = Some(line.to_string());
        }
    }
    let curl = curl.unwrap();
    let control = control.unwrap();
    let mut words = control.split_whitespace();
    let cp_url = words.next().unwrap().trim_start_matches("REFRACT_URL=");
    let cp_token = words.next().unwrap().trim_start_matches("REFRACT_TOKEN=");
    // curl -H 'Authorization: Bearer KEY' -d 'QUERY' URL
    let parts: Vec<&str> = curl.split('\'').collect();
    assert_eq!(parts.len(), 5, "{curl}");
    let key = parts[1]
        .strip_prefix("Authorization: Bearer ")
        .unwrap()
        .to_string();
    let printed = Printed {
        query_url: parts[4].trim().to_string(),
        query_key: key,
        cp_url: cp_url.to_string(),
        cp_token: cp_token.to_string(),
        dashboard,
    };
    (qs, printed)
}

#[test]
fn documented_queries_answer_on_the_quickstart_data() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut examples = Vec::new();
    for file in ["docs/query-language.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (info, body) in blocks(&text) {
            if info == "query" || info == "query-error" {
                examples.push((file, info, body));
            }
        }
    }
    assert!(
        examples.iter().filter(|e| e.0 == "README.md").count() >= 1,
        "the README's headline query is not a ```query block"
    );
    assert!(
        examples.len() >= 20,
        "only {} examples found",
        examples.len()
    );

    let tmp = tempfile::tempdir().unwrap();
    let (_qs, printed) = quickstart(&tmp.path().join("qs"));
    let (url, key) = (&printed.query_url, &printed.query_key);
    let http = reqwest::blocking::Client::new();
    let mut failures = Vec::new();
    for (file, info, body) in &examples {
        let (query, want_error) = match body.split_once("# error:") {
            Some((q, e)) => (q.trim().to_string(), Some(e.trim().to_string())),
            None => (body.trim().to_string(), None),
        };
        let resp = http
            .post(url)
            .bearer_auth(key)
            .body(query.clone())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().unwrap_or(Value::Null);
        let ok = match (info.as_str(), &want_error) {
            ("query", None) => {
                status == 200 && answer.as_array().is_some_and(|rows| !rows.is_empty())
            }
            ("query-error", Some(fragment)) => {
                status == 400
                    && answer["error"] == "query_error"
                    && answer["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(fragment.as_str()))
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{file}: {query}\n  → {status} {answer}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} documented examples fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    quickstart_sign_in_link_works_once(&printed);
}

/// The quickstart prints the dashboard's URL and a one-time sign-in link (docs/dashboard.md).
fn quickstart_sign_in_link_works_once(printed: &Printed) {
    let line = printed
        .dashboard
        .as_deref()
        .expect("quickstart printed no dashboard line");
    assert!(!line.contains(&printed.cp_token), "{line}");
    let link = line
        .split_whitespace()
        .find(|w| w.contains("/ui/sign-in/link/"))
        .unwrap_or_else(|| panic!("no sign-in link in {line:?}"))
        .trim_end_matches(')');
    assert!(link.starts_with(&printed.cp_url), "{link}");
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(http.get(link).send().unwrap().status().as_u16(), 200);
    let token = link.rsplit('/').next().unwrap();
    let sign_in = format!("{}/ui/sign-in", printed.cp_url);
    let r = http
        .post(&sign_in)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("link={token}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers().contains_key("set-cookie"));
    let again = http
        .post(&sign_in)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("link={token}"))
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 404, "a sign-in link works once");
}

/// `refract query` runs a query from the command line: the account's only running database, a
/// temporary key (revoked after), JSON or a table; errors are the engine's message.
#[test]
fn refract_query_prints_json_and_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let (_qs, printed) = quickstart(&tmp.path().join("qs"));
    let run = |args: &[&str]| {
        let out = Command::new(refract_bin())
            .arg("query")
            .args(args)
            .env("REFRACT_URL", &printed.cp_url)
            .env("REFRACT_TOKEN", &printed.cp_token)
            .env_remove("REFRACT_QUERY_KEY")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["users(LIMIT 2) { id name posts(LIMIT 1) { id } }"]);
    assert!(ok, "{err}");
    let rows: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[0]["id"], 1);

    let (ok, out, err) = run(&[
        "--table",
        "users(LIMIT 2) { id name posts(LIMIT 1) { id } }",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("id") && lines[0].contains("name") && lines[0].contains("posts"),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"(2 rows)"), "{out}");

    let (ok, _, err) = run(&["users { nope }"]);
    assert!(!ok);
    assert!(
        err.contains("unknown field") || err.contains("nope"),
        "{err}"
    );

    // The temporary keys were revoked.
    let databases: Vec<refract_api::Database> = reqwest::blocking::Client::new()
        .get(format!("{}/v1/databases", printed.cp_url))
        .bearer_auth(&printed.cp_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let db = databases[0].id;
    let list: Vec<refract_api::QueryKey> = reqwest::blocking::Client::new()
        .get(format!("{}/v1/databases/{db}/api-keys", printed.cp_url))
        .bearer_auth(&printed.cp_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let temporary: Vec<&refract_api::QueryKey> = list
        .iter()
        .filter(|k| k.name == "refract query (temporary)")
        .collect();
    assert_eq!(temporary.len(), 3, "{list:?}");
    assert!(
        temporary.iter().all(|k| k.revoked_at.is_some()),
        "{temporary:?}"
    );
}

/// The control plane's `/metrics` count databases by status and unhealthy engines by cause, and
/// builds; every engine metric carries its database's id.
#[test]
fn metrics_count_databases_and_label_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let (_qs, printed) = quickstart(&tmp.path().join("qs"));
    let get = |url: String| reqwest::blocking::get(url).unwrap().text().unwrap();
    let cp = get(format!("{}/metrics", printed.cp_url));
    for needle in [
        "refract_databases{status=\"running\"} 1",
        "refract_databases{status=\"failed\"} 0",
        "refract_databases_unhealthy{health=\"degraded\"} 0",
        "refract_databases_unhealthy{health=\"unreachable\"} 0",
        "refract_builds_total{result=\"succeeded\"} 1",
        "refract_build_duration_seconds",
    ] {
        assert!(
            cp.contains(needle),
            "control plane metrics lack {needle}:\n{cp}"
        );
    }
    let engine = get(printed.query_url.replace("/query", "/metrics"));
    let line = engine
        .lines()
        .find(|l| l.starts_with("refract_snapshot_swaps_total"))
        .unwrap_or_else(|| panic!("{engine}"));
    assert!(line.contains("database=\""), "{line}");
}
