//! `pgmig dms …`: AWS DMS artifacts for phase II.

use clap::Subcommand;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

/// `pgmig dms` subcommands.
#[derive(Debug, Subcommand)]
pub enum DmsCommand {}

/// Runs a `dms` subcommand.
pub async fn run(_global: &GlobalArgs, _cmd: &DmsCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("dms is not implemented yet")
}
