//! The command-line client of the control plane: `refract connections|databases|keys <verb>`.
//!
//! Every command reads `REFRACT_URL` (default `http://127.0.0.1:7700`) and `REFRACT_TOKEN` (or
//! `--url`/`--token`), prints a table by default and the API's JSON with `--json`. An API error
//! prints `error: <message>` and exits non-zero (through `main`).

pub(crate) mod client;
mod lifecycle;
mod query;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Map, Value};

use client::{cell, object, output, table};
pub use client::{Api, ClientOpts};

/// Client subcommands.
#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Source database connections.
    Connections {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: ConnectionsCmd,
    },
    /// Databases (one engine each) on a connection.
    Databases {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: DatabasesCmd,
    },
    /// Management keys of the account.
    Keys {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Run a query against a database's engine and print the answer.
    Query {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: query::QueryArgs,
    },
    /// Managed database servers (/api/v1): PostgreSQL, MySQL, Redis, MongoDB.
    Managed {
        #[command(flatten)]
        opts: crate::managed_cli::ManagedOpts,
        #[command(subcommand)]
        cmd: crate::managed_cli::ManagedCmd,
    },
}

/// Source fields shared by `connections create` and `connections update`.
#[derive(clap::Args, Debug, Default)]
pub struct SourceArgs {
    /// Host name or IP of the source (for sqlite: the database file path).
    #[arg(long)]
    host: Option<String>,
    /// Port (default 3306, 5432 for postgres).
    #[arg(long)]
    port: Option<i64>,
    /// Login user.
    #[arg(long)]
    user: Option<String>,
    /// Login password (prefer the REFRACT_SOURCE_PASSWORD variable: arguments are visible to
    /// other users of the machine).
    #[arg(long, env = "REFRACT_SOURCE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// `refract connections …`
#[derive(clap::Subcommand)]
pub enum ConnectionsCmd {
    /// Create a connection (the source is not contacted; use `test`).
    Create {
        /// Display name, unique in the account.
        #[arg(long)]
        name: String,
        /// mysql (default), postgres, mssql or sqlite.
        #[arg(long)]
        backend: Option<String>,
        #[command(flatten)]
        source: SourceArgs,
        /// Schemas databases may use (repeat or comma-separate).
        #[arg(long = "schema", value_delimiter = ',')]
        schemas: Vec<String>,
        /// poll (default), binlog, logical or cdc.
        #[arg(long)]
        sync_mode: Option<String>,
        /// Seconds, 5–3600 (default 30).
        #[arg(long)]
        sync_interval: Option<i64>,
    },
    /// List connections.
    List,
    /// Show a connection and its databases.
    Get {
        /// Connection id.
        id: String,
    },
    /// Change a connection.
    Update {
        /// Connection id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        source: SourceArgs,
        /// Replace the schema list (repeat or comma-separate).
        #[arg(long = "schema", value_delimiter = ',')]
        schemas: Vec<String>,
        /// Allowed CDC mode (poll, binlog, logical, cdc).
        #[arg(long)]
        sync_mode: Option<String>,
        /// Minimum sync interval, seconds.
        #[arg(long)]
        sync_interval: Option<i64>,
    },
    /// Delete a connection that has no databases.
    Delete {
        /// Connection id.
        id: String,
    },
    /// Test a stored connection (by id) or raw credentials (with --host …).
    Test {
        /// Connection id; omit to test the given --host/--user/--password.
        id: Option<String>,
        /// Backend of raw credentials.
        #[arg(long)]
        backend: Option<String>,
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// `refract databases …` (the lifecycle verbs are in `cli/lifecycle.rs`).
#[derive(clap::Subcommand)]
pub enum DatabasesCmd {
    /// Register a database on a connection (status `registered`).
    Register {
        /// Connection id.
        #[arg(long)]
        connection: String,
        /// Display name, unique on the connection.
        #[arg(long)]
        name: String,
        /// Source schema (must be in the connection's schemas).
        #[arg(long)]
        schema: String,
        /// nano (default), small, medium, large, xlarge, 2xlarge.
        #[arg(long)]
        size: Option<String>,
        /// info (default), debug, warn, error.
        #[arg(long)]
        log_level: Option<String>,
        /// MySQL binlog server id (≥ 1, unique per source).
        #[arg(long)]
        binlog_server_id: Option<i64>,
        /// Engine copies, 1–10 (more than 1 needs the Kubernetes runtime and poll sync).
        #[arg(long)]
        replicas: Option<i64>,
    },
    /// List databases.
    List {
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
        /// Only in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only with this tag label.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Show a database.
    Get {
        /// Database id.
        id: String,
    },
    /// Change a database.
    Update {
        /// Database id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New source schema (only when not running).
        #[arg(long)]
        schema: Option<String>,
        /// New size.
        #[arg(long)]
        size: Option<String>,
        /// New log level.
        #[arg(long)]
        log_level: Option<String>,
        /// Sync mode (one the connection allows).
        #[arg(long)]
        sync_mode: Option<String>,
        /// Sync interval, seconds.
        #[arg(long)]
        sync_interval: Option<i64>,
        /// Engine copies, 1–10 (more than 1 needs the Kubernetes runtime and poll sync; applied
        /// by a reconfigure).
        #[arg(long)]
        replicas: Option<i64>,
        /// Replace tags: `label:color`, repeatable; `--tag ''` clears.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Custom domain; `''` clears.
        #[arg(long)]
        custom_domain: Option<String>,
        /// Any other PATCH fields as a JSON object (merged last), e.g. '{"pauseSchedule": null}'.
        #[arg(long)]
        set: Option<String>,
    },
    /// Delete a database (registered, stopped, terminated or failed).
    Delete {
        /// Database id.
        id: String,
    },
    #[command(flatten)]
    Lifecycle(lifecycle::LifecycleCmd),
}

/// `refract keys …`
#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// Create a management key (printed once).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Expiry, RFC 3339 (e.g. 2026-12-31T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List management keys.
    List,
    /// Revoke a management key (by its id).
    Revoke {
        /// Key record id.
        id: String,
    },
}

/// Run a client subcommand.
pub fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Connections { opts, cmd } => connections(&Api::new(&opts)?, &opts, cmd),
        ClientCommand::Databases { opts, cmd } => databases(&Api::new(&opts)?, &opts, cmd),
        ClientCommand::Keys { opts, cmd } => keys(&Api::new(&opts)?, &opts, cmd),
        ClientCommand::Query { opts, args } => query::run(&Api::new(&opts)?, args),
        ClientCommand::Managed { opts, cmd } => crate::managed_cli::run(&opts, cmd),
    }
}

fn s(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| json!(x))
}

fn n(v: Option<i64>) -> Option<Value> {
    v.map(|x| json!(x))
}

fn connections(api: &Api, opts: &ClientOpts, cmd: ConnectionsCmd) -> anyhow::Result<()> {
    match cmd {
        ConnectionsCmd::Create {
            name,
            backend,
            source,
            schemas,
            sync_mode,
            sync_interval,
        } => {
            let body = object(vec![
                ("name", Some(json!(name))),
                ("backend", s(&backend)),
                ("mysqlHost", Some(json!(source.host.unwrap_or_default()))),
                ("mysqlPort", n(source.port)),
                (
                    "availableSchemas",
                    (!schemas.is_empty()).then(|| json!(schemas)),
                ),
                ("mysqlUser", s(&source.user)),
                ("mysqlPassword", s(&source.password)),
                ("syncMode", s(&sync_mode)),
                ("syncInterval", n(sync_interval)),
            ]);
            let v = api.call(Method::POST, "/v1/connections", Some(body))?;
            output(opts, &v, |v| {
                print_connections(std::slice::from_ref(&v["connection"]))
            })
        }
        ConnectionsCmd::List => {
            let v = api.call(Method::GET, "/v1/connections", None)?;
            output(opts, &v, |v| {
                print_connections(v.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        ConnectionsCmd::Get { id } => {
            let v = api.call(Method::GET, &format!("/v1/connections/{id}"), None)?;
            output(opts, &v, |v| {
                print_connections(std::slice::from_ref(v));
                println!();
                print_databases(
                    v["databases"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
            })
        }
        ConnectionsCmd::Update {
            id,
            name,
            source,
            schemas,
            sync_mode,
            sync_interval,
        } => {
            let body = object(vec![
                ("name", s(&name)),
                ("mysqlHost", s(&source.host)),
                ("mysqlPort", n(source.port)),
                (
                    "availableSchemas",
                    (!schemas.is_empty()).then(|| json!(schemas)),
                ),
                ("mysqlUser", s(&source.user)),
                ("mysqlPassword", s(&source.password)),
                ("syncMode", s(&sync_mode)),
                ("syncInterval", n(sync_interval)),
            ]);
            let v = api.call(Method::PATCH, &format!("/v1/connections/{id}"), Some(body))?;
            output(opts, &v, |v| print_connections(std::slice::from_ref(v)))
        }
        ConnectionsCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/connections/{id}"), None)?;
            output(opts, &json!({"deleted": id}), |_| {
                println!("deleted connection {id}")
            })
        }
        ConnectionsCmd::Test {
            id,
            backend,
            source,
        } => {
            let v = match id {
                Some(id) => api.call(
                    Method::POST,
                    &format!("/v1/connections/{id}/test-connection"),
                    None,
                )?,
                None => {
                    let body = object(vec![
                        ("backend", s(&backend)),
                        ("mysqlHost", Some(json!(source.host.unwrap_or_default()))),
                        ("mysqlPort", n(source.port)),
                        ("mysqlUser", s(&source.user)),
                        ("mysqlPassword", s(&source.password)),
                    ]);
                    api.call(Method::POST, "/v1/connections/test-connection", Some(body))?
                }
            };
            output(opts, &v, |v| {
                if v["ok"].as_bool() == Some(true) {
                    println!(
                        "ok ({} ms)",
                        v["latencyMs"]
                            .as_f64()
                            .map(|l| format!("{l:.1}"))
                            .unwrap_or_default()
                    );
                    if let Some(s) = v["availableSchemas"].as_array() {
                        let names: Vec<&str> = s.iter().filter_map(Value::as_str).collect();
                        println!("schemas: {}", names.join(", "));
                    }
                    // Per sync mode: `ok` above is only the login.
                    println!("poll: ready");
                    for (mode, key) in [("binlog", "binlog"), ("logical", "logical")] {
                        let r = &v[key];
                        if r.is_null() {
                            continue;
                        }
                        if r["ready"].as_bool() == Some(true) {
                            println!("{mode}: ready");
                        } else {
                            println!("{mode}: NOT ready");
                            for issue in r["issues"].as_array().into_iter().flatten() {
                                println!("  - {}", issue.as_str().unwrap_or_default());
                            }
                        }
                    }
                    for w in v["warnings"].as_array().into_iter().flatten() {
                        println!("warning: {}", w.as_str().unwrap_or_default());
                    }
                } else {
                    println!("failed: {}", v["error"].as_str().unwrap_or("unknown error"));
                }
            })?;
            if v["ok"].as_bool() != Some(true) {
                bail!("connection test failed");
            }
            Ok(())
        }
    }
}

fn databases(api: &Api, opts: &ClientOpts, cmd: DatabasesCmd) -> anyhow::Result<()> {
    match cmd {
        DatabasesCmd::Register {
            connection,
            name,
            schema,
            size,
            log_level,
            binlog_server_id,
            replicas,
        } => {
            let body = object(vec![
                ("connectionId", Some(json!(connection))),
                ("name", Some(json!(name))),
                ("mysqlDb", Some(json!(schema))),
                ("instanceSize", s(&size)),
                ("logLevel", s(&log_level)),
                ("binlogServerId", n(binlog_server_id)),
                ("replicas", n(replicas)),
            ]);
            let v = api.call(Method::POST, "/v1/databases", Some(body))?;
            output(opts, &v, |v| print_databases(std::slice::from_ref(v)))
        }
        DatabasesCmd::List {
            connection,
            status,
            tag,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("connectionId", connection),
                ("status", status),
                ("tag", tag),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let path = if q.is_empty() {
                "/v1/databases".to_string()
            } else {
                format!("/v1/databases?{}", q.join("&"))
            };
            let v = api.call(Method::GET, &path, None)?;
            output(opts, &v, |v| {
                print_databases(v.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        DatabasesCmd::Get { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}"), None)?;
            output(opts, &v, print_object)
        }
        DatabasesCmd::Update {
            id,
            name,
            schema,
            size,
            log_level,
            sync_mode,
            sync_interval,
            replicas,
            tags,
            custom_domain,
            set,
        } => {
            let tags = if tags.is_empty() {
                None
            } else {
                let mut out = Vec::new();
                for t in tags.iter().filter(|t| !t.is_empty()) {
                    let (label, color) = t
                        .rsplit_once(':')
                        .with_context(|| format!("--tag {t:?}: expected label:color"))?;
                    out.push(json!({"label": label, "color": color}));
                }
                Some(Value::Array(out))
            };
            let mut body = object(vec![
                ("name", s(&name)),
                ("mysqlDb", s(&schema)),
                ("instanceSize", s(&size)),
                ("logLevel", s(&log_level)),
                ("syncMode", s(&sync_mode)),
                ("syncInterval", n(sync_interval)),
                ("replicas", n(replicas)),
                ("tags", tags),
                (
                    "reflexdbCustomDomain",
                    custom_domain.map(|d| if d.is_empty() { Value::Null } else { json!(d) }),
                ),
            ]);
            if let Some(extra) = set {
                let extra: Map<String, Value> =
                    serde_json::from_str(&extra).context("--set must be a JSON object")?;
                if let Value::Object(m) = &mut body {
                    m.extend(extra);
                }
            }
            let v = api.call(Method::PATCH, &format!("/v1/databases/{id}"), Some(body))?;
            output(opts, &v, print_object)
        }
        DatabasesCmd::Lifecycle(cmd) => lifecycle::run(api, opts, cmd),
        DatabasesCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/databases/{id}"), None)?;
            output(opts, &json!({"deleted": id}), |_| {
                println!("deleted database {id}")
            })
        }
    }
}

fn keys(api: &Api, opts: &ClientOpts, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { name, expires_at } => {
            let body = object(vec![
                ("name", Some(json!(name))),
                ("expiresAt", s(&expires_at)),
            ]);
            let v = api.call(Method::POST, "/v1/account/management-keys", Some(body))?;
            output(opts, &v, |v| {
                print_keys(std::slice::from_ref(v));
                println!(
                    "\nkey (shown only now): {}",
                    v["key"].as_str().unwrap_or("")
                );
            })
        }
        KeysCmd::List => {
            let v = api.call(Method::GET, "/v1/account/management-keys", None)?;
            output(opts, &v, |v| {
                print_keys(v.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        KeysCmd::Revoke { id } => {
            let v = api.call(
                Method::DELETE,
                &format!("/v1/account/management-keys/{id}"),
                None,
            )?;
            output(opts, &v, |v| print_keys(std::slice::from_ref(v)))
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_connections(rows: &[Value]) {
    table(
        &[
            "ID",
            "NAME",
            "BACKEND",
            "HOST",
            "PORT",
            "SCHEMAS",
            "SYNC MODES",
            "MIN INTERVAL",
        ],
        &[
            "id",
            "name",
            "backend",
            "mysqlHost",
            "mysqlPort",
            "availableSchemas",
            "allowedSyncModes",
            "minSyncInterval",
        ],
        rows,
    );
}

fn print_databases(rows: &[Value]) {
    table(
        &[
            "ID", "NAME", "SCHEMA", "STATUS", "SIZE", "SYNC", "INTERVAL", "ENDPOINT", "HEALTH",
            "TAGS",
        ],
        &[
            "id",
            "name",
            "mysqlDb",
            "status",
            "instanceSize",
            "syncMode",
            "syncInterval",
            "endpointUrl",
            "healthStatus",
            "tags",
        ],
        rows,
    );
}

fn print_keys(rows: &[Value]) {
    table(
        &[
            "ID",
            "NAME",
            "KEY ID",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "REVOKED",
        ],
        &[
            "id",
            "name",
            "keyId",
            "createdAt",
            "expiresAt",
            "lastUsedAt",
            "revokedAt",
        ],
        rows,
    );
}

/// One object as `field  value` lines.
fn print_object(v: &Value) {
    if let Some(o) = v.as_object() {
        let w = o.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in o {
            println!("{k:<w$}  {}", cell(val));
        }
    }
}
