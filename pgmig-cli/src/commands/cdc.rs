//! `pgmig cdc` and `pgmig cutover`: the native applier and the cutover.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

/// `pgmig cdc` options.
#[derive(Debug, Args)]
pub struct CdcArgs {}

/// `pgmig cutover` options.
#[derive(Debug, Args)]
pub struct CutoverArgs {}

/// Runs the applier.
pub async fn run(_global: &GlobalArgs, _args: &CdcArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("cdc is not implemented yet")
}

/// Runs the cutover.
pub async fn cutover(_global: &GlobalArgs, _args: &CutoverArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("cutover is not implemented yet")
}
