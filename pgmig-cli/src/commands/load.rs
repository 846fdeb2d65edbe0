//! `pgmig load`: the full load. All behaviour lives in `pgmig_fullload::load`.

use crate::cli::{GlobalArgs, LoadArgs};
use crate::exit::Outcome;

/// Runs the load.
pub async fn run(_global: &GlobalArgs, _args: &LoadArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("load is not implemented yet")
}
