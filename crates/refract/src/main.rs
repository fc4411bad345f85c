//! `refract`: one binary for every role — control plane (`serve`), engine (`engine`),
//! command-line client (`connections`, `databases`, `keys`, …) and `quickstart`.
//!
//! This is the only crate that reads the process environment and arguments; every other crate
//! takes explicit configuration.

mod cli;
mod managed_cli;
mod quickstart;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Refract: read replicas as an API, and managed database servers.
#[derive(Parser)]
#[command(name = "refract", version, about, propagate_version = true)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane (REST API, stores, reconciler).
    Serve(ServeArgs),
    /// Run one engine instance from a config file (the data plane).
    Engine {
        /// Engine config file (YAML or JSON).
        #[arg(long)]
        config: PathBuf,
        /// Log lines as `text` (colour on a terminal only) or `json` (one object per line).
        #[arg(long, env = "REFRACT_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Start everything on this machine with a demo source, and print a query to try.
    Quickstart(quickstart::QuickstartArgs),
    /// Operator commands that work on the data directory itself, offline.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Metadata store operations (moving an installation to PostgreSQL).
    #[command(subcommand)]
    Store(StoreCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// `refract admin …`.
#[derive(Subcommand)]
enum AdminCommand {
    /// Write a fresh management key of the admin customer to DIR/admin-key (recovery after
    /// every admin key was lost or revoked). Needs the data directory and its master key.
    NewKey {
        /// The control plane's data directory.
        #[arg(long, env = "REFRACT_DATA_DIR", default_value = "./refract-data")]
        data_dir: PathBuf,
    },
}

/// `refract store …`.
#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every record and secret of a SQLite store into an empty PostgreSQL store (stop the
    /// control plane first; then start it with `--store` on the same data directory: keys keep
    /// working and running engines are adopted). The secrets are read with REFRACT_MASTER_KEY or
    /// the master.key beside the SQLite file.
    Migrate {
        /// The SQLite store: `sqlite:DIR/refract.db`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL store: `postgres://USER:PASSWORD@HOST:PORT/DB` (an empty database).
        #[arg(long)]
        to: String,
    },
    /// Seal every secret again under a new master key (random, or REFRACT_NEW_MASTER_KEY) and
    /// replace DIR/master.key. Stop every control plane first; then copy the new master.key to
    /// every replica's data directory.
    RotateKey {
        /// The control plane's data directory (its master.key, or REFRACT_MASTER_KEY).
        #[arg(long, env = "REFRACT_DATA_DIR", default_value = "./refract-data")]
        data_dir: PathBuf,
        /// The metadata store, as given to `refract serve --store` (default: DIR/refract.db).
        #[arg(long, env = "REFRACT_STORE", value_name = "URL")]
        store: Option<String>,
    },
}

/// Arguments of `refract serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for the metadata store, secret store, keys and engine files.
    #[arg(long, env = "REFRACT_DATA_DIR", default_value = "./refract-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "REFRACT_LISTEN", default_value = "127.0.0.1:7700")]
    listen: String,
    /// Log lines as `text` (colour on a terminal only) or `json` (one object per line); engines
    /// started by this control plane log the same way.
    #[arg(long, env = "REFRACT_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Connections served at once; one more is accepted and closed at once (lowered to what
    /// the open-file limit allows).
    #[arg(long, env = "REFRACT_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Milliseconds a connection has to send a request head, from its start or its previous
    /// answer (closes slow and idle keep-alive connections).
    #[arg(long, env = "REFRACT_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a request body has to arrive.
    #[arg(long, env = "REFRACT_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// A directory SQLite source files may be in (repeatable; REFRACT_SQLITE_ROOT takes
    /// ':'-separated directories). Without one, SQLite sources are refused. The data directory
    /// is never allowed.
    #[arg(
        long = "sqlite-root",
        env = "REFRACT_SQLITE_ROOT",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    sqlite_roots: Vec<PathBuf>,
    /// Where engines run: `local` processes, or `kubernetes` (one Deployment per engine, a
    /// Service per database; in-cluster service account, else KUBECONFIG).
    #[arg(long, env = "REFRACT_RUNTIME", default_value = "local")]
    runtime: RuntimeKind,
    /// Kubernetes runtime: the namespace engines go into (default: the kubeconfig's, or the
    /// service account's namespace in a cluster).
    #[arg(long, env = "REFRACT_NAMESPACE")]
    namespace: Option<String>,
    /// Kubernetes runtime: the image engines run (the `refract` binary as `refract engine`).
    #[arg(long, env = "REFRACT_ENGINE_IMAGE")]
    engine_image: Option<String>,
    /// Kubernetes runtime: the port engines serve clients on (and their Services).
    #[arg(long, env = "REFRACT_ENGINE_PORT", default_value_t = 8080)]
    engine_port: u16,
    /// Kubernetes runtime: the port engines answer the control plane on.
    #[arg(long, env = "REFRACT_ENGINE_CONTROL_PORT", default_value_t = 8081)]
    engine_control_port: u16,
    /// The metadata store: `postgres://USER:PASSWORD@HOST:PORT/DB` for several replicas sharing
    /// one store (one of them leads; see docs/operations.md), or `sqlite:PATH`. Default: the
    /// SQLite file DIR/refract.db.
    #[arg(long, env = "REFRACT_STORE", value_name = "URL")]
    store: Option<String>,
    /// Where managed database servers' backups (base backups, archived WAL, snapshots) are kept;
    /// created 0700. Default: DIR/managed/backups. See docs/managed.md, "Backups".
    #[arg(long, env = "REFRACT_MANAGED_BACKUP_DIR", value_name = "DIR")]
    managed_backup_dir: Option<PathBuf>,
    /// Let managed PostgreSQL and MySQL servers also accept plain-text logins, for clients that
    /// cannot speak TLS (they still offer TLS, and their credentials ask for it). Default: TLS
    /// only. Redis stays TLS-only. See docs/managed.md, "TLS".
    #[arg(long, env = "REFRACT_MANAGED_ALLOW_PLAINTEXT")]
    managed_allow_plaintext: bool,
}

/// `--runtime`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    /// Local processes.
    Local,
    /// A Kubernetes cluster.
    Kubernetes,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Plain text; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("REFRACT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Files and directories this process creates are its user's alone (0600/0700): keys, secrets,
/// metadata stores with their WAL/SHM files, engine files, logs.
fn private_umask() {
    // SAFETY: `umask` only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !matches!(args.command, Command::Client(_)) {
        private_umask();
    }
    let result = match args.command {
        Command::Serve(serve) => {
            init_tracing(serve.log_format);
            // Engines this control plane starts inherit the format.
            std::env::set_var("REFRACT_LOG_FORMAT", serve.log_format.as_str());
            run_async(serve_main(serve))
        }
        Command::Engine { config, log_format } => {
            init_tracing(log_format);
            run_async(refract_engine::run_from_file(config))
        }
        Command::Quickstart(q) => {
            init_tracing(LogFormat::Text);
            run_async(quickstart::run(q))
        }
        Command::Admin(AdminCommand::NewKey { data_dir }) => run_async(async move {
            let master = std::env::var("REFRACT_MASTER_KEY").ok();
            let data_dir = absolute(&data_dir)?;
            let path = refract_control_plane::new_admin_key(&data_dir, master.as_deref()).await?;
            println!(
                "new admin management key written to {} (readable only by this user)",
                path.display()
            );
            Ok(())
        }),
        Command::Store(StoreCommand::Migrate { from, to }) => run_async(async move {
            let master = std::env::var("REFRACT_MASTER_KEY").ok();
            let report =
                refract_control_plane::migrate_store(&from, &to, master.as_deref()).await?;
            println!("{report}");
            println!(
                "migrated: start the control plane with --store {} on the same data directory",
                refract_control_plane::store::redact_url(&to)
            );
            Ok(())
        }),
        Command::Store(StoreCommand::RotateKey { data_dir, store }) => run_async(async move {
            let master = std::env::var("REFRACT_MASTER_KEY").ok();
            let new_key = std::env::var("REFRACT_NEW_MASTER_KEY").ok();
            let data_dir = absolute(&data_dir)?;
            let (n, whereto) = refract_control_plane::rotate_master_key(
                &data_dir,
                store.as_deref(),
                master.as_deref(),
                new_key.as_deref(),
            )
            .await?;
            println!("resealed {n} secrets under the new master key; {whereto}");
            Ok(())
        }),
        Command::Client(c) => {
            // Like any Unix filter: `refract databases events ID | head -1` ends quietly when
            // the reader goes away (Rust ignores SIGPIPE, and `println!` would panic).
            // SAFETY: restoring a signal's default disposition before any thread starts.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            cli::run(c)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `path` made absolute against the current directory (not resolved: symlinks stay).
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// The runtime of `--runtime`: the Kubernetes driver is configured from the in-cluster service
/// account or `KUBECONFIG`, and checked with one list call before the control plane starts.
async fn engine_runtime(
    args: &ServeArgs,
) -> anyhow::Result<(
    refract_control_plane::EngineRuntime,
    refract_control_plane::ManagedRuntime,
)> {
    use anyhow::Context;
    if args.runtime == RuntimeKind::Local {
        anyhow::ensure!(
            args.namespace.is_none() && args.engine_image.is_none(),
            "--namespace and --engine-image are options of --runtime kubernetes"
        );
        return Ok((
            refract_control_plane::EngineRuntime::Local,
            refract_control_plane::ManagedRuntime::Local,
        ));
    }
    // The flag rewrites local servers' pg_hba.conf / MariaDB options; on Kubernetes those are the
    // platform's (CloudNativePG's rules; the StatefulSet servers serve no TLS yet), so it would
    // silently do nothing.
    anyhow::ensure!(
        !args.managed_allow_plaintext,
        "--managed-allow-plaintext (REFRACT_MANAGED_ALLOW_PLAINTEXT) applies to managed servers run as local processes; on --runtime kubernetes it would change nothing (docs/kubernetes.md, \"Managed servers on Kubernetes\")"
    );
    let image = args
        .engine_image
        .clone()
        .context("--runtime kubernetes needs --engine-image (REFRACT_ENGINE_IMAGE)")?;
    anyhow::ensure!(
        args.engine_port != args.engine_control_port && args.engine_port != 0,
        "--engine-port and --engine-control-port must be two different ports"
    );
    let mut driver =
        refract_kubernetes::KubernetesDriver::connect(args.namespace.clone(), image).await?;
    driver.settings_mut().port = args.engine_port;
    driver.settings_mut().control_port = args.engine_control_port;
    let namespace = driver.settings().namespace.clone();
    use refract_runtime::Driver;
    driver
        .list()
        .await
        .with_context(|| format!("list engine Deployments in namespace {namespace}"))?;
    tracing::info!(%namespace, "engines and managed servers run on Kubernetes");
    // Managed servers go to the same namespace through the same client (CloudNativePG
    // Clusters, StatefulSets; docs/kubernetes.md).
    let servers = refract_kubernetes::KubernetesServers::new(driver.client(), namespace);
    Ok((
        refract_control_plane::EngineRuntime::Driver(std::sync::Arc::new(driver)),
        refract_control_plane::ManagedRuntime::Platform(std::sync::Arc::new(servers)),
    ))
}

async fn serve_main(args: ServeArgs) -> anyhow::Result<()> {
    // Test hook: a pause before each lifecycle step, so that tests can kill the control plane
    // in a given transitional status.
    if let Some(ms) = std::env::var("REFRACT_TEST_STEP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        refract_control_plane::lifecycle::set_step_delay(std::time::Duration::from_millis(ms));
    }
    let master_key = std::env::var("REFRACT_MASTER_KEY").ok();
    // deploy/kubernetes ships a placeholder: never encrypt secrets with a published key.
    if master_key
        .as_deref()
        .is_some_and(|k| k.trim().starts_with("REPLACE-ME"))
    {
        anyhow::bail!(
            "REFRACT_MASTER_KEY is the placeholder of deploy/kubernetes: set a random key first (docs/kubernetes.md, \"Master key\")"
        );
    }
    let (runtime, managed_servers) = engine_runtime(&args).await?;
    let config = refract_control_plane::ServeConfig {
        // Made absolute once, here: engines, keys files and managed servers run in other
        // directories, and nothing may depend on the directory `serve` started in.
        data_dir: absolute(&args.data_dir)?,
        listen: args.listen,
        master_key,
        engine_binary: std::env::current_exe()?,
        http: refract_http::HttpLimits {
            max_connections: args.max_connections,
            header_read_timeout_ms: args.header_timeout_ms,
            body_read_timeout_ms: args.body_timeout_ms,
        },
        sqlite_roots: args.sqlite_roots,
        runtime,
        store: args.store,
        managed_backup_dir: args
            .managed_backup_dir
            .as_deref()
            .map(absolute)
            .transpose()?,
        managed_servers,
        managed_allow_plaintext: args.managed_allow_plaintext,
    };
    config.http.validate().map_err(anyhow::Error::msg)?;
    refract_control_plane::serve(config).await
}
