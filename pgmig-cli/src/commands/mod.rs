//! One module per command; each returns how it ended.

pub mod cdc;
mod check;
pub mod cleanup;
mod common;
mod demo;
pub mod dms;
mod load;
mod lsn;
mod plan;
pub mod run;
mod schema;
mod setup;
mod snapshot;
pub mod status;
pub mod verify;

use crate::cli::{Cli, Command, LsnCommand};
use crate::exit::Outcome;

/// Runs one command.
pub async fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let global = &cli.global;
    match &cli.command {
        Command::Lsn(LsnCommand::Compare { a, b }) => {
            lsn::compare(*a, *b, global.json)?;
            Ok(Outcome::Success)
        }
        Command::Check { slots } => check::run(global, *slots).await,
        Command::Plan(args) => plan::run(global, args).await,
        Command::Setup(args) => setup::run(global, args).await,
        Command::Schema(args) => schema::run(global, args).await,
        Command::Snapshot => snapshot::snapshot(global).await,
        Command::Load(args) => load::run(global, args).await,
        Command::Verify(args) => verify::run(global, args).await,
        Command::Dms(cmd) => dms::run(global, cmd).await,
        Command::Cdc(args) => cdc::run(global, args).await,
        Command::Cutover(args) => cdc::cutover(global, args).await,
        Command::Status(args) => status::run(global, args).await,
        Command::Cleanup(args) => cleanup::run(global, args).await,
        Command::Run(args) => Box::pin(run::run(global, args)).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "pgmig", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
        Command::ResumeReplica => snapshot::resume(global).await,
        Command::Demo => Box::pin(demo::run(global)).await,
    }
}
