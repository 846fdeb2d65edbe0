//! `pgmig status`.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

/// `pgmig status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Runs `pgmig status`.
pub async fn run(_global: &GlobalArgs, _args: &StatusArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("status is not implemented yet")
}
