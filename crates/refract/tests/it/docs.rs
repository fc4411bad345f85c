//! The documentation's examples run: every ```query block of docs/query-language.md and of the
//! README answers 200 with rows on the quickstart's demo data, and every ```query-error block
//! answers 400 `query_error` with the message it names (`# error: …`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::refract_bin;

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

/// Starts `refract quickstart` in `dir`; returns it with the query URL and key it printed.
fn quickstart(dir: &std::path::Path) -> (Quickstart, String, String) {
    let mut child = Command::new(refract_bin())
        .args(["quickstart", "--users", "50", "--dir"])
        .arg(dir)
        .env("REFRACT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let qs = Quickstart(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let curl = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(start.elapsed()))
            .expect("quickstart printed no curl line");
        if line.trim_start().starts_with("curl ") {
            break line.trim().to_string();
        }
    };
    // curl -H 'Authorization: Bearer KEY' -d 'QUERY' URL
    let parts: Vec<&str> = curl.split('\'').collect();
    assert_eq!(parts.len(), 5, "{curl}");
    let key = parts[1]
        .strip_prefix("Authorization: Bearer ")
        .unwrap()
        .to_string();
    (qs, parts[4].trim().to_string(), key)
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
    let (_qs, url, key) = quickstart(&tmp.path().join("qs"));
    let http = reqwest::blocking::Client::new();
    let mut failures = Vec::new();
    for (file, info, body) in &examples {
        let (query, want_error) = match body.split_once("# error:") {
            Some((q, e)) => (q.trim().to_string(), Some(e.trim().to_string())),
            None => (body.trim().to_string(), None),
        };
        let resp = http
            .post(&url)
            .bearer_auth(&key)
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
}
