//! The command-line client of the control plane.

/// Client subcommands (filled in by the CLI work).
#[derive(clap::Subcommand)]
pub enum ClientCommand {}

/// Run a client subcommand.
pub fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {}
}
