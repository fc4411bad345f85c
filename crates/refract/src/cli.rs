//! The command-line client of the control plane: `refract connections|databases|keys <verb>`.
//!
//! Every command reads `REFRACT_URL` (default `http://127.0.0.1:7700`) and `REFRACT_TOKEN` (or
//! `--url`/`--token`), prints a table by default and the API's JSON with `--json`. An API error
//! prints `error: <message>` and exits non-zero (through `main`).

pub(crate) mod client;
mod lifecycle;
mod query;

use anyhow::{bail, Context};
use refract_api::{
    Connection, ConnectionWithDatabases, CreateConnectionRequest, CreateConnectionResponse,
    CreateManagementKeyRequest, Database, DatabaseFilter, ManagementKey, RegisterDatabaseRequest,
    Tag, TestConnectionRequest, TestConnectionResult, UpdateConnectionRequest,
    UpdateDatabaseRequest,
};
use reqwest::Method;
use serde_json::{json, Map, Value};

use client::{body, cell, flag, opt_flag, output, read, urlencode, wire_cell, wire_table};
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
        opts: ClientOpts,
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
            let request = CreateConnectionRequest {
                backend: opt_flag("--backend", backend)?,
                name,
                host: source.host.unwrap_or_default(),
                port: source.port,
                available_schemas: (!schemas.is_empty()).then_some(schemas),
                user: source.user,
                password: source.password,
                ssl_mode: None,
                ssl_root_cert: None,
                sync_mode: opt_flag("--sync-mode", sync_mode)?,
                sync_interval,
                instance: None,
            };
            let v = api.call(Method::POST, "/v1/connections", Some(body(&request)?))?;
            output(opts, &v, |v| {
                let created: CreateConnectionResponse = read(v)?;
                print_connections(std::slice::from_ref(&created.connection));
                Ok(())
            })
        }
        ConnectionsCmd::List => {
            let v = api.call(Method::GET, "/v1/connections", None)?;
            output(opts, &v, |v| {
                print_connections(&read::<Vec<Connection>>(v)?);
                Ok(())
            })
        }
        ConnectionsCmd::Get { id } => {
            let v = api.call(Method::GET, &format!("/v1/connections/{id}"), None)?;
            output(opts, &v, |v| {
                let c: ConnectionWithDatabases = read(v)?;
                print_connections(std::slice::from_ref(&c.connection));
                println!();
                print_databases(&c.databases);
                Ok(())
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
            let request = UpdateConnectionRequest {
                name,
                host: source.host,
                port: source.port,
                available_schemas: (!schemas.is_empty()).then_some(schemas),
                user: source.user,
                password: source.password,
                sync_mode: opt_flag("--sync-mode", sync_mode)?,
                sync_interval,
                ..Default::default()
            };
            let v = api.call(
                Method::PATCH,
                &format!("/v1/connections/{id}"),
                Some(body(&request)?),
            )?;
            output(opts, &v, |v| {
                print_connections(&[read::<Connection>(v)?]);
                Ok(())
            })
        }
        ConnectionsCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/connections/{id}"), None)?;
            output(opts, &json!({"deleted": id}), |_| {
                println!("deleted connection {id}");
                Ok(())
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
                    let request = TestConnectionRequest {
                        backend: opt_flag("--backend", backend)?,
                        host: source.host.unwrap_or_default(),
                        port: source.port,
                        user: source.user,
                        password: source.password,
                        ssl_mode: None,
                        ssl_root_cert: None,
                    };
                    api.call(
                        Method::POST,
                        "/v1/connections/test-connection",
                        Some(body(&request)?),
                    )?
                }
            };
            let result: TestConnectionResult = read(&v)?;
            output(opts, &v, |_| {
                print_test_result(&result);
                Ok(())
            })?;
            if !result.ok {
                bail!("connection test failed");
            }
            Ok(())
        }
    }
}

/// A connection test for a person: the login, then readiness per sync mode.
fn print_test_result(r: &TestConnectionResult) {
    if !r.ok {
        println!("failed: {}", r.error.as_deref().unwrap_or("unknown error"));
        return;
    }
    println!(
        "ok ({} ms)",
        r.latency_ms.map(|l| format!("{l:.1}")).unwrap_or_default()
    );
    if let Some(names) = &r.available_schemas {
        println!("schemas: {}", names.join(", "));
    }
    // Per sync mode: `ok` above is only the login.
    println!("poll: ready");
    let modes = [
        ("binlog", r.binlog.as_ref().map(|b| (b.ready, &b.issues))),
        ("logical", r.logical.as_ref().map(|l| (l.ready, &l.issues))),
    ];
    for (mode, readiness) in modes {
        let Some((ready, issues)) = readiness else {
            continue;
        };
        if ready {
            println!("{mode}: ready");
        } else {
            println!("{mode}: NOT ready");
            for issue in issues {
                println!("  - {issue}");
            }
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
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
            let request = RegisterDatabaseRequest {
                connection_id: flag("--connection", &connection)?,
                name,
                schema,
                instance_size: opt_flag("--size", size)?,
                log_level: opt_flag("--log-level", log_level)?,
                binlog_server_id,
                replicas,
            };
            let v = api.call(Method::POST, "/v1/databases", Some(body(&request)?))?;
            output(opts, &v, |v| {
                print_databases(&[read::<Database>(v)?]);
                Ok(())
            })
        }
        DatabasesCmd::List {
            connection,
            status,
            tag,
        } => {
            let filter = DatabaseFilter {
                connection_id: opt_flag("--connection", connection)?,
                status: opt_flag("--status", status)?,
                tag,
            };
            let mut q = Vec::new();
            if let Value::Object(fields) = body(&filter)? {
                for (k, v) in fields {
                    q.push(format!("{k}={}", urlencode(&cell(&v))));
                }
            }
            let path = if q.is_empty() {
                "/v1/databases".to_string()
            } else {
                format!("/v1/databases?{}", q.join("&"))
            };
            let v = api.call(Method::GET, &path, None)?;
            output(opts, &v, |v| {
                print_databases(&read::<Vec<Database>>(v)?);
                Ok(())
            })
        }
        DatabasesCmd::Get { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}"), None)?;
            output(opts, &v, |v| {
                print_object(v);
                Ok(())
            })
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
                    out.push(Tag {
                        label: label.to_string(),
                        color: flag("--tag", color)?,
                    });
                }
                Some(out)
            };
            let request = UpdateDatabaseRequest {
                name,
                schema,
                instance_size: opt_flag("--size", size)?,
                log_level: opt_flag("--log-level", log_level)?,
                sync_mode: opt_flag("--sync-mode", sync_mode)?,
                sync_interval,
                replicas,
                tags,
                // `''` clears it (`null`).
                reflexdb_custom_domain: custom_domain.map(|d| (!d.is_empty()).then_some(d)),
                ..Default::default()
            };
            let mut body = body(&request)?;
            // `--set` is the user's own JSON, merged as given.
            if let Some(extra) = set {
                let extra: Map<String, Value> =
                    serde_json::from_str(&extra).context("--set must be a JSON object")?;
                if let Value::Object(m) = &mut body {
                    m.extend(extra);
                }
            }
            let v = api.call(Method::PATCH, &format!("/v1/databases/{id}"), Some(body))?;
            output(opts, &v, |v| {
                print_object(v);
                Ok(())
            })
        }
        DatabasesCmd::Lifecycle(cmd) => lifecycle::run(api, opts, cmd),
        DatabasesCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/databases/{id}"), None)?;
            output(opts, &json!({"deleted": id}), |_| {
                println!("deleted database {id}");
                Ok(())
            })
        }
    }
}

fn keys(api: &Api, opts: &ClientOpts, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { name, expires_at } => {
            let request = CreateManagementKeyRequest {
                name,
                expires_at: opt_flag("--expires-at", expires_at)?,
            };
            let v = api.call(
                Method::POST,
                "/v1/account/management-keys",
                Some(body(&request)?),
            )?;
            output(opts, &v, |v| {
                let key: ManagementKey = read(v)?;
                print_keys(std::slice::from_ref(&key));
                println!(
                    "\nkey (shown only now): {}",
                    key.key.as_deref().unwrap_or("")
                );
                Ok(())
            })
        }
        KeysCmd::List => {
            let v = api.call(Method::GET, "/v1/account/management-keys", None)?;
            output(opts, &v, |v| {
                print_keys(&read::<Vec<ManagementKey>>(v)?);
                Ok(())
            })
        }
        KeysCmd::Revoke { id } => {
            let v = api.call(
                Method::DELETE,
                &format!("/v1/account/management-keys/{id}"),
                None,
            )?;
            output(opts, &v, |v| {
                print_keys(&[read::<ManagementKey>(v)?]);
                Ok(())
            })
        }
    }
}

fn print_connections(rows: &[Connection]) {
    wire_table(
        rows,
        &[
            ("ID", |r| wire_cell(&r.id)),
            ("NAME", |r| wire_cell(&r.name)),
            ("BACKEND", |r| wire_cell(&r.backend)),
            ("HOST", |r| wire_cell(&r.host)),
            ("PORT", |r| wire_cell(&r.port)),
            ("SCHEMAS", |r| wire_cell(&r.available_schemas)),
            ("SYNC MODES", |r| wire_cell(&r.allowed_sync_modes)),
            ("MIN INTERVAL", |r| wire_cell(&r.min_sync_interval)),
        ],
    );
}

fn print_databases(rows: &[Database]) {
    wire_table(
        rows,
        &[
            ("ID", |r| wire_cell(&r.id)),
            ("NAME", |r| wire_cell(&r.name)),
            ("SCHEMA", |r| wire_cell(&r.schema)),
            ("STATUS", |r| wire_cell(&r.status)),
            ("SIZE", |r| wire_cell(&r.instance_size)),
            ("SYNC", |r| wire_cell(&r.sync_mode)),
            ("INTERVAL", |r| wire_cell(&r.sync_interval)),
            ("ENDPOINT", |r| wire_cell(&r.endpoint_url)),
            ("HEALTH", |r| wire_cell(&r.health_status)),
            ("TAGS", |r| wire_cell(&r.tags)),
        ],
    );
}

fn print_keys(rows: &[ManagementKey]) {
    wire_table(
        rows,
        &[
            ("ID", |r| wire_cell(&r.id)),
            ("NAME", |r| wire_cell(&r.name)),
            ("KEY ID", |r| wire_cell(&r.key_id)),
            ("CREATED", |r| wire_cell(&r.created_at)),
            ("EXPIRES", |r| wire_cell(&r.expires_at)),
            ("LAST USED", |r| wire_cell(&r.last_used_at)),
            ("REVOKED", |r| wire_cell(&r.revoked_at)),
        ],
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
