//! `pgmig verify`: compares the target with the replica at P or the source.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

/// `pgmig verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {}

/// Runs the verification.
pub async fn run(_global: &GlobalArgs, _args: &VerifyArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("verify is not implemented yet")
}
