//! `refract managed create|list|get|credentials|update|start|stop|restart|connect|delete` and
//! `refract managed token create|list|delete`: the command-line client of the managed database
//! servers (`/api/v1`, seed 004).
//!
//! Reads `REFRACT_URL` and `REFRACT_TOKEN` (a management key `rmk_…` or an API token `dkc_…`)
//! through the options of the other client commands ([`ClientOpts`]): a table by default, the
//! API's JSON with `--json`, one field of it with `--get`.
//! Errors print the API's `error` message and exit non-zero.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::client::{output, table, urlencode, ClientOpts};

/// `refract managed …`
#[derive(clap::Subcommand, Debug)]
pub enum ManagedCmd {
    /// Create a managed database server (PostgreSQL, MySQL, Redis, MongoDB).
    Create {
        /// Name, unique in the project.
        #[arg(long)]
        name: String,
        /// postgresql, mysql, redis or mongodb.
        #[arg(long = "type")]
        db_type: String,
        /// Engine version, e.g. 16 (default: the newest supported one installed on the server's
        /// host). Named so because `--version` prints refract's own.
        #[arg(long)]
        engine_version: Option<String>,
        /// Plan (db-s-1vcpu-1gb, db-s-1vcpu-2gb, db-s-2vcpu-4gb, db-s-4vcpu-8gb, db-s-8vcpu-16gb).
        #[arg(long, default_value = "db-s-1vcpu-1gb")]
        plan: String,
        /// Region.
        #[arg(long, default_value = "local")]
        region: String,
        /// Storage quota, GB (default 10).
        #[arg(long)]
        storage_gb: Option<i64>,
        /// Number of servers (primary + standbys), 1-5.
        #[arg(long)]
        replicas: Option<i64>,
        /// Project (default proj_default).
        #[arg(long)]
        project: Option<String>,
        /// Wait until it is running (or failed), then print it.
        #[arg(long)]
        wait: bool,
        /// Create it from a backup of this database (name or `db_…` id; same --type).
        #[arg(long)]
        restore_from: Option<String>,
        /// With --restore-from: the backup to restore (its created_at; default the newest).
        #[arg(long, requires = "restore_from", conflicts_with = "restore_to")]
        restore_backup: Option<String>,
        /// With --restore-from (PostgreSQL, MySQL): restore the state at this second (RFC 3339,
        /// e.g. 2026-12-04T20:01:02Z): the transactions committed before it.
        #[arg(long, requires = "restore_from")]
        restore_to: Option<String>,
    },
    /// Backups of a managed database (PostgreSQL base backups + WAL, MySQL `mariadb-backup` +
    /// binary logs, Redis snapshots).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// List managed databases.
    List {
        /// Only this engine.
        #[arg(long = "type")]
        db_type: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one managed database.
    Get {
        /// Database id (`db_…`).
        id: String,
    },
    /// Print the CA certificate (PEM) that verifies the database's TLS certificate
    /// (`refract managed ca db_… > ca.pem`, then `sslmode=verify-full sslrootcert=ca.pem`).
    Ca {
        /// Database id (`db_…`).
        id: String,
    },
    /// Print the connection credentials of a running database.
    Credentials {
        /// Database id (`db_…`).
        id: String,
    },
    /// Change the plan, storage quota or number of servers (`PATCH`); applied by the reconciler.
    Update {
        /// Database id (`db_…`).
        id: String,
        /// New plan.
        #[arg(long)]
        plan: Option<String>,
        /// New storage quota, GB.
        #[arg(long)]
        storage_gb: Option<i64>,
        /// New number of servers (primary + standbys), 1-5.
        #[arg(long)]
        replicas: Option<i64>,
    },
    /// Start a stopped database.
    Start {
        /// Database id (`db_…`).
        id: String,
    },
    /// Stop a database (its data is kept).
    Stop {
        /// Database id (`db_…`).
        id: String,
    },
    /// Restart a running database.
    Restart {
        /// Database id (`db_…`).
        id: String,
    },
    /// Register the database as a `/v1` connection, so read replicas can be provisioned from it.
    Connect {
        /// Database id (`db_…`).
        id: String,
        /// Name of the connection (default: the database's name).
        #[arg(long)]
        name: Option<String>,
        /// Sync mode of the connection: poll, binlog or logical (default poll).
        #[arg(long)]
        sync_mode: Option<String>,
    },
    /// Delete a managed database: its servers, data and credentials (not undoable).
    Delete {
        /// Database id (`db_…`).
        id: String,
    },
    /// API tokens (`dkc_…`) of the managed API.
    #[command(subcommand)]
    Token(TokenCmd),
    /// PgBouncer connection pools of a managed PostgreSQL database.
    #[command(subcommand)]
    Pool(PoolCmd),
}

/// `refract managed pool …`
#[derive(clap::Subcommand, Debug)]
pub enum PoolCmd {
    /// Create a pool; prints its connection string.
    Create {
        /// Database id (`db_…`).
        id: String,
        /// Pool name (the database name clients connect to through PgBouncer).
        #[arg(long)]
        name: String,
        /// Server connections of the pool.
        #[arg(long)]
        size: i64,
        /// `session`, `transaction` or `statement`.
        #[arg(long, default_value = "transaction")]
        mode: String,
        /// Server database (default: the application database).
        #[arg(long)]
        database: Option<String>,
        /// Server user (default: app_user).
        #[arg(long)]
        user: Option<String>,
    },
    /// List the pools of a database.
    List {
        /// Database id (`db_…`).
        id: String,
    },
    /// Delete a pool.
    Delete {
        /// Database id (`db_…`).
        id: String,
        /// Pool name.
        name: String,
    },
}

/// `refract managed backup …`
#[derive(clap::Subcommand, Debug)]
pub enum BackupCmd {
    /// List a database's backups, its restore window and its latest backup events.
    List {
        /// Database id (`db_…`).
        id: String,
    },
    /// Take a backup now (waits until it is stored).
    Create {
        /// Database id (`db_…`).
        id: String,
    },
}

/// `refract managed token …`
#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token; its secret is printed once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Scopes (`databases:read`, `databases:write`), comma-separated; none = full access.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token.
    Delete {
        /// Token id (`tok_…`).
        id: String,
    },
}

/// The control plane client of [`crate::cli`], reading errors the way `/api/v1` writes them.
struct ApiV1(crate::cli::client::Api);

impl ApiV1 {
    fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        crate::cli::client::Api::connect(
            &opts.url,
            opts.token.clone(),
            "no token: set REFRACT_TOKEN or pass --token (the admin key is in DATA_DIR/admin-key)",
        )
        .map(ApiV1)
    }

    /// Calls `/api/v1`; a non-2xx answer becomes an error with the API's `message`.
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.0.send(method, path, body)?;
        if !status.is_success() {
            // `{"error": code, "message": message}`.
            let msg = match (value["error"].as_str(), value["message"].as_str()) {
                (Some(code), Some(m)) => Some(format!("{code}: {m}")),
                (e, m) => e.or(m).map(str::to_string),
            };
            bail!("{}", msg.unwrap_or_else(|| format!("HTTP {status}")));
        }
        Ok(value)
    }
}

/// Runs `refract managed <cmd>`.
pub fn run(opts: &ClientOpts, cmd: ManagedCmd) -> anyhow::Result<()> {
    let api = ApiV1::new(opts)?;
    let out = |v: &Value, table: &dyn Fn(&Value)| -> anyhow::Result<()> {
        output(opts, v, |v| {
            table(v);
            Ok(())
        })
    };
    match cmd {
        ManagedCmd::Create {
            name,
            db_type,
            engine_version,
            plan,
            region,
            storage_gb,
            replicas,
            project,
            wait,
            restore_from,
            restore_backup,
            restore_to,
        } => {
            let mut body = present_fields([
                ("name", Some(name.into())),
                ("db_type", Some(db_type.into())),
                ("plan_id", Some(plan.into())),
                ("region", Some(region.into())),
                ("version", engine_version.map(Value::from)),
                ("project_id", project.map(Value::from)),
                ("storage_gb", storage_gb.map(Value::from)),
                ("replicas", replicas.map(Value::from)),
            ]);
            if let Some(from) = restore_from {
                body["backup_restore"] = present_fields([
                    ("database_name", Some(from.into())),
                    ("backup_created_at", restore_backup.map(Value::from)),
                    ("restore_to", restore_to.map(Value::from)),
                ]);
            }
            let created = api.call(Method::POST, "/api/v1/databases", Some(body))?;
            if !wait {
                return out(&created, &|v| print_table(std::slice::from_ref(v)));
            }
            let id = created["id"]
                .as_str()
                .context("the answer has no id")?
                .to_string();
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let d = api.call(Method::GET, &format!("/api/v1/databases/{id}"), None)?;
                match d["status"].as_str() {
                    Some("running") => return out(&d, &print_object),
                    Some("error") => {
                        out(&d, &print_object)?;
                        bail!(
                            "database {id} failed: {}",
                            d["error_message"].as_str().unwrap_or("unknown error")
                        );
                    }
                    _ if Instant::now() > deadline => {
                        bail!("database {id} is still {} after 300 s", d["status"])
                    }
                    _ => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        }
        ManagedCmd::List {
            db_type,
            status,
            project,
        } => {
            let q: Vec<String> = [
                ("db_type", db_type),
                ("status", status),
                ("project_id", project),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencode(&v))))
            .collect();
            let path = if q.is_empty() {
                "/api/v1/databases".to_string()
            } else {
                format!("/api/v1/databases?{}", q.join("&"))
            };
            let v = api.call(Method::GET, &path, None)?;
            out(&v, &|v| {
                print_table(v.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        ManagedCmd::Get { id } => {
            let v = api.call(
                Method::GET,
                &format!("/api/v1/databases/{}", urlencode(&id)),
                None,
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Ca { id } => {
            let v = api.call(
                Method::GET,
                &format!("/api/v1/databases/{}/ca", urlencode(&id)),
                None,
            )?;
            out(&v, &|v: &Value| {
                print!("{}", v["certificate"].as_str().unwrap_or_default())
            })
        }
        ManagedCmd::Credentials { id } => {
            let v = api.call(
                Method::GET,
                &format!("/api/v1/databases/{}/credentials", urlencode(&id)),
                None,
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Update {
            id,
            plan,
            storage_gb,
            replicas,
        } => {
            let body = present_fields([
                ("plan_id", plan.map(Value::from)),
                ("storage_gb", storage_gb.map(Value::from)),
                ("replicas", replicas.map(Value::from)),
            ]);
            if body.as_object().is_some_and(Map::is_empty) {
                bail!("nothing to change: pass --plan, --storage-gb or --replicas");
            }
            let v = api.call(
                Method::PATCH,
                &format!("/api/v1/databases/{}", urlencode(&id)),
                Some(body),
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Start { id } => action(&api, &id, "start", &out),
        ManagedCmd::Stop { id } => action(&api, &id, "stop", &out),
        ManagedCmd::Restart { id } => action(&api, &id, "restart", &out),
        ManagedCmd::Connect {
            id,
            name,
            sync_mode,
        } => {
            let body = present_fields([
                ("name", name.map(Value::from)),
                ("sync_mode", sync_mode.map(Value::from)),
            ]);
            let v = api.call(
                Method::POST,
                &format!("/api/v1/databases/{}/connection", urlencode(&id)),
                Some(body),
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Backup(BackupCmd::List { id }) => {
            let v = api.call(
                Method::GET,
                &format!("/api/v1/databases/{}/backups", urlencode(&id)),
                None,
            )?;
            out(&v, &|v| {
                let backups = v["backups"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if backups.is_empty() {
                    println!("no backups yet");
                } else {
                    print_table(backups);
                }
                if let Some(w) = v.get("restore_window") {
                    println!(
                        "\npoint-in-time restore window: {} to {}",
                        cell(&w["earliest"]),
                        cell(&w["latest"])
                    );
                }
                if let Some(t) = v.get("in_progress_since") {
                    println!("a backup is running since {}", cell(t));
                }
                for e in v["events"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "{}  {}  {}",
                        cell(&e["at"]),
                        cell(&e["kind"]),
                        cell(&e["message"])
                    );
                }
            })
        }
        ManagedCmd::Backup(BackupCmd::Create { id }) => {
            let v = api.call(
                Method::POST,
                &format!("/api/v1/databases/{}/backups", urlencode(&id)),
                None,
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Token(TokenCmd::Create { name, scopes }) => {
            let v = api.call(
                Method::POST,
                "/api/v1/api-tokens",
                Some(json!({"name": name, "scopes": scopes})),
            )?;
            out(&v, &|v| {
                print_object(v);
                println!("\nthe token is shown only now: store it (REFRACT_TOKEN=…)");
            })
        }
        ManagedCmd::Pool(PoolCmd::Create {
            id,
            name,
            size,
            mode,
            database,
            user,
        }) => {
            let mut body = json!({"name": name, "size": size, "mode": mode});
            if let Some(d) = database {
                body["database"] = json!(d);
            }
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            let v = api.call(
                Method::POST,
                &format!("/api/v1/databases/{}/pools", urlencode(&id)),
                Some(body),
            )?;
            out(&v, &print_object)
        }
        ManagedCmd::Pool(PoolCmd::List { id }) => {
            let v = api.call(
                Method::GET,
                &format!("/api/v1/databases/{}/pools", urlencode(&id)),
                None,
            )?;
            out(&v, &|v| {
                for p in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                    println!(
                        "{}  size={}  mode={}  database={}  {}:{}",
                        cell(&p["name"]),
                        cell(&p["size"]),
                        cell(&p["mode"]),
                        cell(&p["database"]),
                        cell(&p["host"]),
                        cell(&p["port"]),
                    );
                }
            })
        }
        ManagedCmd::Pool(PoolCmd::Delete { id, name }) => {
            let v = api.call(
                Method::DELETE,
                &format!(
                    "/api/v1/databases/{}/pools/{}",
                    urlencode(&id),
                    urlencode(&name)
                ),
                None,
            )?;
            out(&v, &|_| println!("deleted pool {name} of {id}"))
        }
        ManagedCmd::Token(TokenCmd::List) => {
            let v = api.call(Method::GET, "/api/v1/api-tokens", None)?;
            out(&v, &|v| {
                for t in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                    println!(
                        "{}  {}  scopes={}  created={}  last_used={}",
                        cell(&t["id"]),
                        cell(&t["name"]),
                        t["scopes"]
                            .as_array()
                            .filter(|s| !s.is_empty())
                            .map(|s| s.iter().map(cell).collect::<Vec<_>>().join(","))
                            .unwrap_or_else(|| "all".into()),
                        cell(&t["created_at"]),
                        cell(&t["last_used_at"]),
                    );
                }
            })
        }
        ManagedCmd::Token(TokenCmd::Delete { id }) => {
            let v = api.call(
                Method::DELETE,
                &format!("/api/v1/api-tokens/{}", urlencode(&id)),
                None,
            )?;
            out(&v, &|_| println!("revoked API token {id}"))
        }
        ManagedCmd::Delete { id } => {
            let v = api.call(
                Method::DELETE,
                &format!("/api/v1/databases/{}", urlencode(&id)),
                None,
            )?;
            out(&v, &|_| {
                println!("deleted managed database {id}: servers, data and credentials are being removed")
            })
        }
    }
}

/// Prints an answer: its JSON with `--json`, else through the given printer.
type Output<'a> = dyn Fn(&Value, &dyn Fn(&Value)) -> anyhow::Result<()> + 'a;

/// `POST /api/v1/databases/{id}/actions` with `{"type": kind}` (answered 202).
fn action(api: &ApiV1, id: &str, kind: &str, out: &Output<'_>) -> anyhow::Result<()> {
    let v = api.call(
        Method::POST,
        &format!("/api/v1/databases/{}/actions", urlencode(id)),
        Some(json!({ "type": kind })),
    )?;
    out(&v, &|v| {
        println!("{kind} of {id} accepted");
        print_object(v);
    })
}

/// A JSON object of the fields that have a value (absent options are left out, so the API
/// applies its defaults or leaves the setting unchanged).
fn present_fields<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
    )
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_object(v: &Value) {
    if let Some(o) = v.as_object() {
        let w = o.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in o {
            println!("{k:<w$}  {}", cell(val));
        }
    }
}

fn print_table(rows: &[Value]) {
    const COLS: [&str; 7] = [
        "id",
        "name",
        "db_type",
        "version",
        "plan_id",
        "status",
        "created_at",
    ];
    table(&COLS, rows, |r| COLS.iter().map(|c| cell(&r[*c])).collect());
}
