//! `refract databases <action> ID [--wait]` and the other lifecycle verbs: instance status,
//! builds, build logs, events, schema, schema config and query keys.
//!
//! `--wait` polls `GET /v1/databases/{id}/instance` and shows the status as it moves (a spinner
//! with the current step, one line per status), until the database reaches a stable status; it
//! fails with the database's `lastError` when the action did not end where it should.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use refract_api::{
    ActionInfo, ActionResponse, BuildsResponse, CreateQueryKeyRequest, EventsResponse,
    InstanceStatusResponse, QueryKey, RedeployRequest, ResizeRequest, SchemaView, Status,
};
use reqwest::Method;
use serde_json::Value;

use super::client::{body, flag, opt_flag, output, read, wire_cell, wire_table, Api, ClientOpts};

/// Arguments of every action verb.
#[derive(clap::Args, Debug)]
pub struct ActionArgs {
    /// Database id.
    id: String,
    /// Wait until the action is done, showing its progress.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

/// Lifecycle verbs of `refract databases`.
#[derive(clap::Subcommand)]
pub enum LifecycleCmd {
    /// Provision: test the connection, build, start the engine.
    Provision(ActionArgs),
    /// Build again and replace the engine without downtime.
    Rebuild(ActionArgs),
    /// Apply changed runtime settings (same build) without downtime.
    Reconfigure(ActionArgs),
    /// Deploy a past build.
    Redeploy {
        #[command(flatten)]
        args: ActionArgs,
        /// Build id (see `databases builds ID`).
        #[arg(long)]
        build: String,
    },
    /// Change the instance size.
    Resize {
        #[command(flatten)]
        args: ActionArgs,
        /// nano, small, medium, large, xlarge, 2xlarge.
        #[arg(long)]
        size: String,
    },
    /// Stop the engine (scale to zero).
    Pause(ActionArgs),
    /// Start the engine of a paused database.
    Resume(ActionArgs),
    /// Stop the engine and remove its runtime resources.
    Terminate(ActionArgs),
    /// Reload every table now.
    Reload(ActionArgs),
    /// Freeze the snapshot.
    PauseReplication(ActionArgs),
    /// Unfreeze the snapshot.
    ResumeReplication(ActionArgs),
    /// Status, engine, latest build and the actions allowed now.
    Instance {
        /// Database id.
        id: String,
    },
    /// Builds, newest first.
    Builds {
        /// Database id.
        id: String,
    },
    /// The log of one build.
    BuildLog {
        /// Database id.
        id: String,
        /// Build id.
        build: String,
    },
    /// Status transitions, newest first.
    Events {
        /// Database id.
        id: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Tables, fields and relations of the active build.
    Schema {
        /// Database id.
        id: String,
    },
    /// The schema config (`reflexdb.yaml`).
    SchemaConfig {
        #[command(subcommand)]
        cmd: SchemaConfigCmd,
    },
    /// Query keys (`rxk_…`) of a database.
    ApiKeys {
        #[command(subcommand)]
        cmd: ApiKeysCmd,
    },
}

/// `refract databases schema-config …`
#[derive(clap::Subcommand)]
pub enum SchemaConfigCmd {
    /// Print it.
    Get {
        /// Database id.
        id: String,
    },
    /// Set it from a file (checked; used by the next provision or rebuild).
    Set {
        /// Database id.
        id: String,
        /// The reflexdb.yaml file.
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Remove it (every table and column is exposed).
    Delete {
        /// Database id.
        id: String,
    },
}

/// `refract databases api-keys …`
#[derive(clap::Subcommand)]
pub enum ApiKeysCmd {
    /// Create a query key (printed once).
    Create {
        /// Database id.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Expiry, RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List query keys.
    List {
        /// Database id.
        id: String,
    },
    /// Revoke a query key (engines refuse it within seconds).
    Revoke {
        /// Database id.
        id: String,
        /// keyId or record id.
        key: String,
    },
}

impl Api {
    fn raw(&self, method: Method, path: &str, body: Option<String>) -> anyhow::Result<String> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/yaml").body(b);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<refract_api::ErrorBody>(&text)
                .map(|e| e.message)
                .unwrap_or(text);
            bail!("{message}");
        }
        Ok(text)
    }
}

/// Run a lifecycle verb.
pub fn run(api: &Api, opts: &ClientOpts, cmd: LifecycleCmd) -> anyhow::Result<()> {
    let action = |args: &ActionArgs,
                  path: &str,
                  body: Option<Value>,
                  target: Option<Status>|
     -> anyhow::Result<()> {
        let before: InstanceStatusResponse = read(&api.call(
            Method::GET,
            &format!("/v1/databases/{}/instance", args.id),
            None,
        )?)?;
        let v = api.call(
            Method::POST,
            &format!("/v1/databases/{}/{path}", args.id),
            body,
        )?;
        if !args.wait || opts.json {
            output(opts, &v, |v| {
                let answer: ActionResponse = read(v)?;
                println!("{path}: {} ({})", answer.status, wire_cell(&answer.mode));
                Ok(())
            })?;
            if !args.wait {
                return Ok(());
            }
        }
        wait(
            api,
            &args.id,
            target,
            before.database.last_error.as_deref(),
            Duration::from_secs(args.timeout),
            opts.json,
        )
    };
    match cmd {
        LifecycleCmd::Provision(a) => action(&a, "provision", None, Some(Status::Running)),
        LifecycleCmd::Rebuild(a) => action(&a, "rebuild", None, Some(Status::Running)),
        LifecycleCmd::Reconfigure(a) => action(&a, "reconfigure", None, Some(Status::Running)),
        LifecycleCmd::Redeploy { args, build } => {
            let request = RedeployRequest {
                build_id: flag("BUILD", &build)?,
            };
            action(
                &args,
                "redeploy",
                Some(body(&request)?),
                Some(Status::Running),
            )
        }
        LifecycleCmd::Resize { args, size } => {
            let request = ResizeRequest {
                instance_size: flag("SIZE", &size)?,
            };
            action(&args, "resize", Some(body(&request)?), None)
        }
        LifecycleCmd::Pause(a) => action(&a, "pause", None, Some(Status::Paused)),
        LifecycleCmd::Resume(a) => action(&a, "resume", None, Some(Status::Running)),
        LifecycleCmd::Terminate(a) => action(&a, "terminate", None, Some(Status::Terminated)),
        LifecycleCmd::Reload(a) => action(&a, "reload", None, None),
        LifecycleCmd::PauseReplication(a) => action(&a, "pause-replication", None, None),
        LifecycleCmd::ResumeReplication(a) => action(&a, "resume-replication", None, None),
        LifecycleCmd::Instance { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/instance"), None)?;
            output(opts, &v, |v| {
                print_instance(&read(v)?);
                Ok(())
            })
        }
        LifecycleCmd::Builds { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/builds"), None)?;
            output(opts, &v, |v| {
                let builds: BuildsResponse = read(v)?;
                wire_table(
                    &builds.builds,
                    &[
                        ("ID", |b| wire_cell(&b.id)),
                        ("STATUS", |b| wire_cell(&b.status)),
                        ("DEPLOYABLE", |b| wire_cell(&b.deployable)),
                        ("CREATED", |b| wire_cell(&b.created_at)),
                        ("DURATION S", |b| wire_cell(&b.build_duration_seconds)),
                        ("ERROR", |b| wire_cell(&b.error)),
                    ],
                );
                println!(
                    "\nactive build: {}",
                    builds
                        .active_build_id
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                Ok(())
            })
        }
        LifecycleCmd::BuildLog { id, build } => {
            print!(
                "{}",
                api.raw(
                    Method::GET,
                    &format!("/v1/databases/{id}/builds/{build}/logs"),
                    None
                )?
            );
            Ok(())
        }
        LifecycleCmd::Events { id, limit } => {
            let v = api.call(
                Method::GET,
                &format!("/v1/databases/{id}/events?limit={limit}"),
                None,
            )?;
            output(opts, &v, |v| {
                let events: EventsResponse = read(v)?;
                wire_table(
                    &events.events,
                    &[
                        ("AT", |e| wire_cell(&e.at)),
                        ("FROM", |e| wire_cell(&e.from)),
                        ("TO", |e| wire_cell(&e.to)),
                        ("CAUSE", |e| wire_cell(&e.cause)),
                        ("MESSAGE", |e| wire_cell(&e.message)),
                    ],
                );
                Ok(())
            })
        }
        LifecycleCmd::Schema { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/schema"), None)?;
            output(opts, &v, |v| {
                let schema: SchemaView = read(v)?;
                for t in &schema.tables {
                    let fields: Vec<String> = t
                        .fields
                        .iter()
                        .map(|f| format!("{} {}", f.name, f.ty))
                        .collect();
                    let rels: Vec<String> = t
                        .relations
                        .iter()
                        .map(|r| format!("{} → {}", r.name, r.table))
                        .collect();
                    println!("{} ({})", t.name, fields.join(", "));
                    if !rels.is_empty() {
                        println!("  relations: {}", rels.join(", "));
                    }
                }
                Ok(())
            })
        }
        LifecycleCmd::SchemaConfig { cmd } => match cmd {
            SchemaConfigCmd::Get { id } => {
                let text = api.raw(
                    Method::GET,
                    &format!("/v1/databases/{id}/schema-config"),
                    None,
                )?;
                if text.is_empty() {
                    eprintln!("no schema config: every table and column is exposed (the default)");
                }
                print!("{text}");
                Ok(())
            }
            SchemaConfigCmd::Set { id, file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("read {}", file.display()))?;
                api.raw(
                    Method::PUT,
                    &format!("/v1/databases/{id}/schema-config"),
                    Some(text),
                )?;
                println!("schema config set (applied at the next provision or rebuild)");
                Ok(())
            }
            SchemaConfigCmd::Delete { id } => {
                api.raw(
                    Method::DELETE,
                    &format!("/v1/databases/{id}/schema-config"),
                    None,
                )?;
                println!("schema config removed");
                Ok(())
            }
        },
        LifecycleCmd::ApiKeys { cmd } => match cmd {
            ApiKeysCmd::Create {
                id,
                name,
                expires_at,
            } => {
                let request = CreateQueryKeyRequest {
                    name,
                    expires_at: opt_flag("--expires-at", expires_at)?,
                };
                let v = api.call(
                    Method::POST,
                    &format!("/v1/databases/{id}/api-keys"),
                    Some(body(&request)?),
                )?;
                output(opts, &v, |v| {
                    let key: QueryKey = read(v)?;
                    print_keys(std::slice::from_ref(&key));
                    println!(
                        "\nkey (shown only now): {}",
                        key.key.as_deref().unwrap_or("")
                    );
                    Ok(())
                })
            }
            ApiKeysCmd::List { id } => {
                let v = api.call(Method::GET, &format!("/v1/databases/{id}/api-keys"), None)?;
                output(opts, &v, |v| {
                    print_keys(&read::<Vec<QueryKey>>(v)?);
                    Ok(())
                })
            }
            ApiKeysCmd::Revoke { id, key } => {
                let v = api.call(
                    Method::DELETE,
                    &format!("/v1/databases/{id}/api-keys/{key}"),
                    None,
                )?;
                output(opts, &v, |v| {
                    print_keys(&[read::<QueryKey>(v)?]);
                    Ok(())
                })
            }
        },
    }
}

fn print_keys(rows: &[QueryKey]) {
    wire_table(
        rows,
        &[
            ("ID", |k| wire_cell(&k.id)),
            ("NAME", |k| wire_cell(&k.name)),
            ("KEY ID", |k| wire_cell(&k.key_id)),
            ("CREATED", |k| wire_cell(&k.created_at)),
            ("EXPIRES", |k| wire_cell(&k.expires_at)),
            ("REVOKED", |k| wire_cell(&k.revoked_at)),
        ],
    );
}

fn print_instance(v: &InstanceStatusResponse) {
    let d = &v.database;
    println!("status        {}", d.status);
    if let Some(op) = &v.operation {
        println!(
            "operation     {} ({})",
            op.kind,
            op.step.as_deref().unwrap_or("")
        );
    }
    if let Some(want) = d.desired_state {
        println!("queued        {want}");
    }
    if let Some(e) = &d.last_error {
        println!("last error    {e}");
    }
    if let Some(i) = &v.instance {
        println!("endpoint      {}", i.endpoint_url.as_deref().unwrap_or("-"));
        println!(
            "health        {}",
            i.health_status.map(|h| h.as_str()).unwrap_or("-")
        );
        // Table name → rows: a free-form map.
        if let Some(Value::Object(rows)) = &i.row_counts {
            let parts: Vec<String> = rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!("rows          {}", parts.join(", "));
        }
    }
    if let Some(b) = &v.latest_build {
        println!("latest build  {} ({})", b.id, b.status.as_str());
    }
    println!("pending       {}", v.has_pending_changes);
    // Each action under its API name, in the API's order.
    let mut allowed = Vec::new();
    if let Ok(Value::Object(actions)) = serde_json::to_value(&v.actions) {
        for (name, info) in actions {
            let Ok(info) = serde_json::from_value::<ActionInfo>(info) else {
                continue;
            };
            if info.allowed {
                allowed.push(if info.mode == Some(refract_api::Mode::Queued) {
                    format!("{name} (queued)")
                } else {
                    name
                });
            }
        }
    }
    println!("actions       {}", allowed.join(", "));
}

const TRANSITIONAL: &[Status] = &[
    Status::TestingConnection,
    Status::Queued,
    Status::Building,
    Status::Deploying,
    Status::Pausing,
    Status::Resuming,
    Status::Terminating,
];

/// Polls the instance status until it is stable; a spinner shows the status and step.
fn wait(
    api: &Api,
    id: &str,
    target: Option<Status>,
    error_before: Option<&str>,
    timeout: Duration,
    quiet: bool,
) -> anyhow::Result<()> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let start = Instant::now();
    let mut last_status = String::new();
    let mut since = Instant::now();
    loop {
        let answer = api.call(Method::GET, &format!("/v1/databases/{id}/instance"), None)?;
        let v: InstanceStatusResponse = read(&answer)?;
        let d = &v.database;
        let status = d.status.to_string();
        if status != last_status {
            if !last_status.is_empty() {
                // Progress goes to stderr (stdout keeps the result); without a terminal the
                // spinner is hidden, so the lines are printed plainly.
                let line = format!("  {last_status} ({:.1} s)", since.elapsed().as_secs_f64());
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            last_status = status.clone();
            since = Instant::now();
        }
        let step = v
            .operation
            .as_ref()
            .and_then(|o| o.step.as_deref())
            .unwrap_or("");
        bar.set_message(if step.is_empty() {
            status.clone()
        } else {
            format!("{status}: {step}")
        });
        let stable = !TRANSITIONAL.contains(&d.status) && d.desired_state.is_none();
        if stable {
            bar.finish_and_clear();
            let error = d.last_error.as_deref();
            let ok = target.is_none_or(|t| t == d.status);
            if !ok {
                bail!(
                    "{status}: {}",
                    error.unwrap_or("the action did not complete")
                );
            }
            if let Some(e) = error.filter(|e| Some(*e) != error_before) {
                eprintln!("warning: {e}");
            }
            let endpoint = v.instance.as_ref().and_then(|i| i.endpoint_url.as_deref());
            if !quiet {
                match endpoint {
                    Some(e) if d.status == Status::Running => {
                        println!("{status} at {e} ({:.1} s)", start.elapsed().as_secs_f64())
                    }
                    _ => println!("{status} ({:.1} s)", start.elapsed().as_secs_f64()),
                }
            } else {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            }
            return Ok(());
        }
        if start.elapsed() > timeout {
            bar.finish_and_clear();
            bail!("still {status} after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
