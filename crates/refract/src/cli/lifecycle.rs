//! `refract databases <action> ID [--wait]` and the other lifecycle verbs: instance status,
//! builds, build logs, events, schema, schema config and query keys.
//!
//! `--wait` polls `GET /v1/databases/{id}/instance` and shows the status as it moves (a spinner
//! with the current step, one line per status), until the database reaches a stable status; it
//! fails with the database's `lastError` when the action did not end where it should.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{object, output, table, Api, ClientOpts};

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
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            bail!(
                "{}",
                v.get("message").and_then(Value::as_str).unwrap_or(&text)
            );
        }
        Ok(text)
    }
}

/// Run a lifecycle verb.
pub fn run(api: &Api, opts: &ClientOpts, cmd: LifecycleCmd) -> anyhow::Result<()> {
    let action = |args: &ActionArgs,
                  path: &str,
                  body: Option<Value>,
                  target: Option<&str>|
     -> anyhow::Result<()> {
        let before = api.call(
            Method::GET,
            &format!("/v1/databases/{}/instance", args.id),
            None,
        )?;
        let v = api.call(
            Method::POST,
            &format!("/v1/databases/{}/{path}", args.id),
            body,
        )?;
        if !args.wait || opts.json {
            output(opts, &v, |v| {
                println!(
                    "{path}: {} ({})",
                    v["status"].as_str().unwrap_or("?"),
                    v["mode"].as_str().unwrap_or("?")
                )
            })?;
            if !args.wait {
                return Ok(());
            }
        }
        wait(
            api,
            &args.id,
            target,
            &before["database"]["lastError"],
            Duration::from_secs(args.timeout),
            opts.json,
        )
    };
    match cmd {
        LifecycleCmd::Provision(a) => action(&a, "provision", None, Some("running")),
        LifecycleCmd::Rebuild(a) => action(&a, "rebuild", None, Some("running")),
        LifecycleCmd::Reconfigure(a) => action(&a, "reconfigure", None, Some("running")),
        LifecycleCmd::Redeploy { args, build } => action(
            &args,
            "redeploy",
            Some(json!({"buildId": build})),
            Some("running"),
        ),
        LifecycleCmd::Resize { args, size } => {
            action(&args, "resize", Some(json!({"instanceSize": size})), None)
        }
        LifecycleCmd::Pause(a) => action(&a, "pause", None, Some("paused")),
        LifecycleCmd::Resume(a) => action(&a, "resume", None, Some("running")),
        LifecycleCmd::Terminate(a) => action(&a, "terminate", None, Some("terminated")),
        LifecycleCmd::Reload(a) => action(&a, "reload", None, None),
        LifecycleCmd::PauseReplication(a) => action(&a, "pause-replication", None, None),
        LifecycleCmd::ResumeReplication(a) => action(&a, "resume-replication", None, None),
        LifecycleCmd::Instance { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/instance"), None)?;
            output(opts, &v, print_instance)
        }
        LifecycleCmd::Builds { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/builds"), None)?;
            output(opts, &v, |v| {
                table(
                    &[
                        "ID",
                        "STATUS",
                        "DEPLOYABLE",
                        "CREATED",
                        "DURATION S",
                        "ERROR",
                    ],
                    &[
                        "id",
                        "status",
                        "deployable",
                        "createdAt",
                        "buildDurationSeconds",
                        "error",
                    ],
                    v["builds"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
                println!(
                    "\nactive build: {}",
                    v["activeBuildId"].as_str().unwrap_or("-")
                );
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
                table(
                    &["AT", "FROM", "TO", "CAUSE", "MESSAGE"],
                    &["at", "from", "to", "cause", "message"],
                    v["events"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                )
            })
        }
        LifecycleCmd::Schema { id } => {
            let v = api.call(Method::GET, &format!("/v1/databases/{id}/schema"), None)?;
            output(opts, &v, |v| {
                for t in v["tables"].as_array().into_iter().flatten() {
                    let fields: Vec<String> = t["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            format!(
                                "{} {}",
                                f["name"].as_str().unwrap_or(""),
                                f["type"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    let rels: Vec<String> = t["relations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            format!(
                                "{} → {}",
                                r["name"].as_str().unwrap_or(""),
                                r["table"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    println!(
                        "{} ({})",
                        t["name"].as_str().unwrap_or(""),
                        fields.join(", ")
                    );
                    if !rels.is_empty() {
                        println!("  relations: {}", rels.join(", "));
                    }
                }
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
                let body = object(vec![
                    ("name", Some(json!(name))),
                    ("expiresAt", expires_at.map(|e| json!(e))),
                ]);
                let v = api.call(
                    Method::POST,
                    &format!("/v1/databases/{id}/api-keys"),
                    Some(body),
                )?;
                output(opts, &v, |v| {
                    print_keys(std::slice::from_ref(v));
                    println!(
                        "\nkey (shown only now): {}",
                        v["key"].as_str().unwrap_or("")
                    );
                })
            }
            ApiKeysCmd::List { id } => {
                let v = api.call(Method::GET, &format!("/v1/databases/{id}/api-keys"), None)?;
                output(opts, &v, |v| {
                    print_keys(v.as_array().map(Vec::as_slice).unwrap_or_default())
                })
            }
            ApiKeysCmd::Revoke { id, key } => {
                let v = api.call(
                    Method::DELETE,
                    &format!("/v1/databases/{id}/api-keys/{key}"),
                    None,
                )?;
                output(opts, &v, |v| print_keys(std::slice::from_ref(v)))
            }
        },
    }
}

fn print_keys(rows: &[Value]) {
    table(
        &["ID", "NAME", "KEY ID", "CREATED", "EXPIRES", "REVOKED"],
        &["id", "name", "keyId", "createdAt", "expiresAt", "revokedAt"],
        rows,
    );
}

fn print_instance(v: &Value) {
    let d = &v["database"];
    println!("status        {}", d["status"].as_str().unwrap_or("?"));
    if let Some(op) = v["operation"].as_object() {
        println!(
            "operation     {} ({})",
            op["kind"].as_str().unwrap_or(""),
            op["step"].as_str().unwrap_or("")
        );
    }
    if let Some(want) = d["desiredState"].as_str() {
        println!("queued        {want}");
    }
    if let Some(e) = d["lastError"].as_str() {
        println!("last error    {e}");
    }
    if let Some(i) = v["instance"].as_object() {
        println!("endpoint      {}", i["endpointUrl"].as_str().unwrap_or("-"));
        println!(
            "health        {}",
            i["healthStatus"].as_str().unwrap_or("-")
        );
        if let Some(rows) = i["rowCounts"].as_object() {
            let parts: Vec<String> = rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!("rows          {}", parts.join(", "));
        }
    }
    if let Some(b) = v["latestBuild"].as_object() {
        println!(
            "latest build  {} ({})",
            b["id"].as_str().unwrap_or(""),
            b["status"].as_str().unwrap_or("")
        );
    }
    println!("pending       {}", v["hasPendingChanges"]);
    let allowed: Vec<String> = v["actions"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, a)| a["allowed"].as_bool() == Some(true))
        .map(|(k, a)| {
            if a["mode"] == "queued" {
                format!("{k} (queued)")
            } else {
                k.clone()
            }
        })
        .collect();
    println!("actions       {}", allowed.join(", "));
}

const TRANSITIONAL: &[&str] = &[
    "testing_connection",
    "queued",
    "building",
    "deploying",
    "pausing",
    "resuming",
    "terminating",
];

/// Polls the instance status until it is stable; a spinner shows the status and step.
fn wait(
    api: &Api,
    id: &str,
    target: Option<&str>,
    error_before: &Value,
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
        let v = api.call(Method::GET, &format!("/v1/databases/{id}/instance"), None)?;
        let d = &v["database"];
        let status = d["status"].as_str().unwrap_or("?").to_string();
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
        let step = v["operation"]["step"].as_str().unwrap_or("");
        bar.set_message(if step.is_empty() {
            status.clone()
        } else {
            format!("{status}: {step}")
        });
        let stable = !TRANSITIONAL.contains(&status.as_str()) && d["desiredState"].is_null();
        if stable {
            bar.finish_and_clear();
            let error = &d["lastError"];
            let ok = target.is_none_or(|t| t == status);
            if !ok {
                bail!(
                    "{status}: {}",
                    error.as_str().unwrap_or("the action did not complete")
                );
            }
            if !error.is_null() && error != error_before {
                eprintln!("warning: {}", error.as_str().unwrap_or(""));
            }
            let endpoint = v["instance"]["endpointUrl"].as_str();
            if !quiet {
                match endpoint {
                    Some(e) if status == "running" => {
                        println!("{status} at {e} ({:.1} s)", start.elapsed().as_secs_f64())
                    }
                    _ => println!("{status} ({:.1} s)", start.elapsed().as_secs_f64()),
                }
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
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
