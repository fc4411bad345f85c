//! This crate provides the engine service (`refract engine --config FILE`).
#![deny(missing_docs)]

/// Run an engine from its config file until it is shut down.
pub async fn run_from_file(config: std::path::PathBuf) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("engine not implemented yet")
}
