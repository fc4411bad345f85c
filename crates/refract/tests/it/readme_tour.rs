//! The README's tour, run verbatim: its `sh tour-serve` block in the background and its `sh tour`
//! block in a shell, from a private working directory (0700, like a home directory) with the
//! relative `--data-dir ./data`, against the test MariaDB. Only the line where a reader fills in
//! their own source is replaced with the test server's address.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{mariadb_admin, mysql_source, refract_bin};

/// The text of the README's fenced block whose info string is `info`.
fn block(readme: &str, info: &str) -> String {
    let mut lines = readme.lines();
    for line in lines.by_ref() {
        if line.trim() == format!("```{info}") {
            break;
        }
    }
    let text: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    assert!(!text.is_empty(), "README.md has no ```{info} block");
    text.join("\n") + "\n"
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_tour_runs_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let serve_block = block(&readme, "sh tour-serve");
    let tour = block(&readme, "sh tour");

    // The schema the tour reads: users with plans, and their posts.
    mariadb_admin(
        "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop;
         CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, plan VARCHAR(10) NOT NULL);
         CREATE TABLE shop.posts (id INT PRIMARY KEY, user_id INT NOT NULL, title VARCHAR(80) NOT NULL,
           FOREIGN KEY (user_id) REFERENCES shop.users(id));
         INSERT INTO shop.users VALUES (1, 'Ada', 'pro'), (2, 'Bob', 'free'), (3, 'Cy', 'pro');
         INSERT INTO shop.posts VALUES (10, 1, 'Hello'), (11, 1, 'Again'), (12, 2, 'Hi');",
    );

    // A private working directory, as a home directory is.
    let work = tempfile::tempdir().unwrap();
    let port = refract_runtime::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let bin_dir = refract_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The reader's environment: refract on the PATH; a free port instead of 7700.
    let env: [(&str, &str); 4] = [
        ("PATH", &path),
        ("REFRACT_LISTEN", &listen),
        ("REFRACT_URL", &url),
        ("REFRACT_LOG", "warn"),
    ];
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {}", serve_block.trim())])
        .current_dir(work.path())
        .envs(env)
        .env_remove("REFRACT_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Serve(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("refract serve did not start");

    // The reader's own source: the test MariaDB, as the least-privilege user the docs describe.
    let m = mysql_source();
    let own = format!(
        "export SOURCE_HOST={} SOURCE_PORT={} SOURCE_USER={} REFRACT_SOURCE_PASSWORD='{}'",
        m.host, m.port, m.user, m.password
    );
    let fill_in = tour
        .lines()
        .find(|l| l.starts_with("export SOURCE_HOST="))
        .expect("the tour sets SOURCE_HOST");
    let script = tour.replace(fill_in, &own);
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(work.path())
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Clean up like a reader would: terminate the database, stop serve.
    let token = std::fs::read_to_string(work.path().join("data/admin-key")).unwrap_or_default();
    let cli = |args: &[&str]| {
        Command::new(refract_bin())
            .args(args)
            .current_dir(work.path())
            .env("REFRACT_URL", &url)
            .env("REFRACT_TOKEN", token.trim())
            .output()
            .unwrap()
    };
    let id = String::from_utf8_lossy(&cli(&["databases", "list", "--get", "0.id"]).stdout)
        .trim()
        .to_string();
    // First, so that a failed tour leaves no engine running behind it.
    let terminated = id.is_empty()
        || cli(&["databases", "terminate", &id, "--wait"])
            .status
            .success();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the tour failed after {:?}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    // The curl query's answer, then the CLI's table.
    // (curl prints no newline after it: the next output follows on the same line.)
    let answer = stdout
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON answer in:\n{stdout}"));
    let rows: serde_json::Value = serde_json::Deserializer::from_str(answer)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        rows,
        serde_json::json!([
            {"id": 1, "name": "Ada", "posts": [{"title": "Hello"}, {"title": "Again"}]},
            {"id": 3, "name": "Cy", "posts": []}
        ])
    );
    assert!(stdout.contains("(2 rows)"), "{stdout}");

    assert!(terminated, "terminate failed");
    drop(serve);
    mariadb_admin("DROP DATABASE IF EXISTS shop");
}
