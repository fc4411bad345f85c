//! `refract quickstart`: the embedded default on one machine.

/// Arguments of `refract quickstart`.
#[derive(clap::Args)]
pub struct QuickstartArgs {}

/// Run the quickstart until Ctrl-C.
pub async fn run(_args: QuickstartArgs) -> anyhow::Result<()> {
    anyhow::bail!("quickstart is not implemented yet")
}
