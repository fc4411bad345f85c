//! Redis: `redis-server redis.conf` with `requirepass`, AOF persistence (`appendonly yes`,
//! `appendfsync everysec`), `maxmemory` from the plan; standbys with `replicaof` + `masterauth`.
//! The config file (0600, owned by the service user) is rewritten from the vault on every start.
//! Logins use a raw RESP exchange (no client crate).

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::context::{Ctx, HOST};
use crate::api::ReplicaHealth;
use crate::os;
use crate::tls;
use refract_runtime::InstanceSpec;

pub(super) async fn prepare(ctx: &Ctx, node: usize) -> anyhow::Result<()> {
    Ok(os::create_owned_dir(&ctx.node_dir(node), &ctx.user)?)
}

pub(super) fn spec(ctx: &Ctx, node: usize) -> anyhow::Result<InstanceSpec> {
    let server = ctx
        .bins
        .redis_server
        .as_ref()
        .context("redis-server is no longer installed on this host")?;
    let dir = ctx.node_dir(node);
    let mut conf = format!(
        "# Written by Refract on every start; change the plan instead.\n\
         port {plain_port}\n\
         tls-port {port}\n\
         tls-cert-file {dir}/{cert}\n\
         tls-key-file {dir}/{key}\n\
         tls-ca-cert-file {dir}/{ca}\n\
         tls-auth-clients no\n\
         tls-replication yes\n\
         bind {listen}\n\
         protected-mode yes\n\
         daemonize no\n\
         dir {dir}\n\
         appendonly yes\n\
         appendfsync everysec\n\
         save \"\"\n\
         maxmemory {mem}mb\n\
         maxmemory-policy noeviction\n\
         requirepass {pw}\n",
        port = ctx.port(node),
        dir = dir.display(),
        mem = ctx.plan.redis_maxmemory_mb,
        listen = ctx.listen_addresses().join(" "),
        // TLS only (no plain-text port) unless a standalone server asks for one.
        plain_port = ctx.overrides.redis_plaintext_port.unwrap_or(0),
        pw = ctx.creds.app,
        cert = tls::SERVER_CERT_FILE,
        key = tls::SERVER_KEY_FILE,
        ca = tls::CA_FILE,
    );
    if node > 0 {
        conf.push_str(&format!(
            "replicaof {HOST} {primary}\nmasterauth {pw}\nreplica-read-only yes\n",
            primary = ctx.port(0),
            pw = ctx.creds.app
        ));
    }
    let path = dir.join("redis.conf");
    os::write_owned_file(&path, conf.as_bytes(), &ctx.user)?;
    ctx.write_tls_files(node)?;
    ctx.server_spec(node, &server.path, vec![path.display().to_string()])
}

/// A minimal RESP client: commands as arrays of bulk strings; replies read as text.
pub struct Resp {
    stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
}

/// One RESP reply, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR …`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$…` (None for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*…`.
    Array(Vec<Reply>),
}

impl Resp {
    /// Connects to `127.0.0.1:port` over TLS, verifying the server against `ca`.
    pub async fn connect(ca: &tls::Ca, port: u16) -> anyhow::Result<Resp> {
        let stream = TcpStream::connect((HOST, port))
            .await
            .with_context(|| format!("connect to Redis on port {port}"))?;
        let stream = tls::connect(ca.client_config(), HOST, stream)
            .await
            .with_context(|| format!("TLS handshake with Redis on port {port}"))?;
        Ok(Resp {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&out).await?;
        self.read().await
    }

    fn read(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Reply>> + Send + '_>>
    {
        Box::pin(async move {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("Redis closed the connection");
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let (kind, rest) = line.split_at(1.min(line.len()));
            Ok(match kind {
                "+" => Reply::Status(rest.to_string()),
                "-" => Reply::Error(rest.to_string()),
                ":" => Reply::Int(rest.parse()?),
                "$" => {
                    let n: i64 = rest.parse()?;
                    if n < 0 {
                        Reply::Bulk(None)
                    } else {
                        let mut buf = vec![0u8; n as usize + 2];
                        self.stream.read_exact(&mut buf).await?;
                        buf.truncate(n as usize);
                        Reply::Bulk(Some(buf))
                    }
                }
                "*" => {
                    let n: i64 = rest.parse()?;
                    let mut items = Vec::new();
                    for _ in 0..n.max(0) {
                        items.push(self.read().await?);
                    }
                    Reply::Array(items)
                }
                _ => bail!("unexpected Redis reply {line:?}"),
            })
        })
    }

    /// `AUTH password`; fails unless `+OK`.
    pub async fn auth(&mut self, password: &str) -> anyhow::Result<()> {
        match self.call(&[b"AUTH", password.as_bytes()]).await? {
            Reply::Status(s) if s == "OK" => Ok(()),
            Reply::Error(e) => bail!("Redis refused the login: {e}"),
            other => bail!("unexpected reply to AUTH: {other:?}"),
        }
    }

    /// `INFO section` as `key → value` lines.
    pub async fn info(&mut self, section: &str) -> anyhow::Result<Vec<(String, String)>> {
        match self.call(&[b"INFO", section.as_bytes()]).await? {
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| {
                    l.split_once(':')
                        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                })
                .collect()),
            Reply::Error(e) => bail!("INFO failed: {e}"),
            other => bail!("unexpected reply to INFO: {other:?}"),
        }
    }
}

pub(super) fn get<'a>(info: &'a [(String, String)], key: &str) -> Option<&'a str> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(super) async fn check_login(ctx: &Ctx) -> anyhow::Result<String> {
    let mut c = Resp::connect(&ctx.ca, ctx.port(0)).await?;
    c.auth(&ctx.creds.app).await?;
    match c.call(&[b"PING"]).await? {
        Reply::Status(s) if s == "PONG" => {}
        // LOADING: the AOF is being replayed.
        Reply::Error(e) => bail!("Redis is not ready: {e}"),
        other => bail!("unexpected reply to PING: {other:?}"),
    }
    let info = c.info("server").await?;
    Ok(get(&info, "redis_version").unwrap_or_default().to_string())
}

pub(super) async fn replica_health(
    ctx: &Ctx,
    node: usize,
    health: &mut ReplicaHealth,
) -> anyhow::Result<()> {
    let mut replica = Resp::connect(&ctx.ca, ctx.port(node)).await?;
    replica.auth(&ctx.creds.app).await?;
    let info = replica.info("replication").await?;
    health.status = match get(&info, "master_link_status") {
        Some("up") => "streaming".into(),
        Some(_) if get(&info, "master_sync_in_progress") == Some("1") => "starting".into(),
        _ => "down".into(),
    };
    let replica_offset: Option<i64> = get(&info, "slave_repl_offset").and_then(|v| v.parse().ok());
    let mut primary = Resp::connect(&ctx.ca, ctx.port(0)).await?;
    primary.auth(&ctx.creds.app).await?;
    let pinfo = primary.info("replication").await?;
    let primary_offset: Option<i64> =
        get(&pinfo, "master_repl_offset").and_then(|v| v.parse().ok());
    if let (Some(p), Some(r)) = (primary_offset, replica_offset) {
        health.lag_bytes = Some((p - r).max(0));
    }
    Ok(())
}
