//! `pgmig cleanup`.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

/// `pgmig cleanup` options.
#[derive(Debug, Args)]
pub struct CleanupArgs {}

/// Runs `pgmig cleanup`.
pub async fn run(_global: &GlobalArgs, _args: &CleanupArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("cleanup is not implemented yet")
}
