//! This crate provides the control plane (`refract serve`).
#![deny(missing_docs)]

use std::path::PathBuf;

/// Configuration of `refract serve`, assembled by the binary from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory holding the metadata store, secret store, admin key and engine files.
    pub data_dir: PathBuf,
    /// `host:port` to listen on.
    pub listen: String,
    /// Master key for the secret store (from `REFRACT_MASTER_KEY`); else a key file in the data dir.
    pub master_key: Option<String>,
    /// The `refract` executable, started as `refract engine` by the local runtime driver.
    pub engine_binary: PathBuf,
}

/// Run the control plane until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("control plane not implemented yet")
}
