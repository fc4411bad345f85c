//! What the benchmarks measure against: the source servers ([`Source`]) and the real `refract
//! engine` processes started on them ([`EngineProcess`]). Shared by the load/query benchmarks
//! (`main.rs`) and the CDC benchmark (`cdc.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use refract_schema::Backend;
use tokio::io::AsyncBufReadExt;

/// One source server of a benchmark run.
pub(crate) struct Source {
    pub(crate) name: &'static str,
    pub(crate) backend: Backend,
    pub(crate) server_url: String,
    pub(crate) db_url: String,
}

/// user, password, host, port of a URL.
pub(crate) fn url_parts(url: &str) -> (String, String, String, u16) {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, pw) = auth.split_once(':').unwrap_or((auth, ""));
    let hostport = hostpart.split('/').next().unwrap_or("");
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "0"));
    (
        user.into(),
        pw.into(),
        host.into(),
        port.parse().unwrap_or(0),
    )
}

/// A running `refract engine` child process.
pub(crate) struct EngineProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

fn refract_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("refract");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p refract)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Start `refract engine` with `config` (written into `dir`), wait for its first snapshot.
/// The engine's stderr goes to `log` when given.
pub(crate) async fn spawn_engine(
    config: serde_json::Value,
    dir: tempfile::TempDir,
    log: Option<&std::path::Path>,
) -> anyhow::Result<EngineProcess> {
    let config_path = dir.path().join("engine.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let stderr = match log {
        Some(p) => Stdio::from(std::fs::File::create(p)?),
        None => Stdio::null(),
    };
    let mut child = tokio::process::Command::new(refract_binary()?)
        .args(["engine", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("engine stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = loop {
        match lines.next_line().await? {
            Some(l) => {
                if let Some(u) = l.strip_prefix("refract engine listening on ") {
                    break u.trim().to_string();
                }
            }
            None => bail!("engine exited before listening"),
        }
    };
    // Wait for the first snapshot.
    let t = Instant::now();
    loop {
        let body = reqwest_health(&url).await.unwrap_or_default();
        if body.contains("\"ok\"") {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("engine did not load within 10 minutes: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(EngineProcess {
        child,
        url,
        _dir: dir,
    })
}

pub(crate) async fn reqwest_health(url: &str) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Empty};
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let resp = client.get(format!("{url}/health").parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
