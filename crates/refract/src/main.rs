//! `refract`: one binary for every role — control plane (`serve`), engine (`engine`),
//! command-line client (`connections`, `databases`, `keys`, …) and `quickstart`.
//!
//! This is the only crate that reads the process environment and arguments; every other crate
//! takes explicit configuration.

mod cli;
mod managed;
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
    #[command(flatten)]
    Client(cli::ClientCommand),
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

fn main() -> std::process::ExitCode {
    let args = Args::parse();
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

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
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
    let config = refract_control_plane::ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        master_key: std::env::var("REFRACT_MASTER_KEY").ok(),
        engine_binary: std::env::current_exe()?,
        http: refract_http::HttpLimits {
            max_connections: args.max_connections,
            header_read_timeout_ms: args.header_timeout_ms,
            body_read_timeout_ms: args.body_timeout_ms,
        },
    };
    config.http.validate().map_err(anyhow::Error::msg)?;
    refract_control_plane::serve(config).await
}
