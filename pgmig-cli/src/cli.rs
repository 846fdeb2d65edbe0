//! Command-line arguments, parsed by clap.

use clap::{Args, Parser, Subcommand};
use pgmig_core::Lsn;

/// Move a large, live PostgreSQL database onto a newer server with
/// near-zero downtime: pglogical slots on the source, a paused maintenance
/// replica as the frozen snapshot, a fast parallel full load, then change
/// data capture from the replica's pause LSN.
#[derive(Debug, Parser)]
#[command(name = "pgmig", version, propagate_version = true)]
pub struct Cli {
    /// Options that every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options that every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log more on stderr: -v info, -vv debug, -vvv trace (RUST_LOG also works).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print one JSON document on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

/// pgmig's commands. More arrive with each step of the runbook.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with log sequence numbers (LSNs).
    #[command(subcommand)]
    Lsn(LsnCommand),
    /// Start a local lab (source, maintenance replica, target) and run a whole
    /// migration under live writes.
    #[command(after_help = "Example:\n  pgmig demo")]
    Demo,
}

/// `pgmig lsn …`
#[derive(Debug, Subcommand)]
pub enum LsnCommand {
    /// Compare two LSNs: prints `<`, `=` or `>` and the distance in bytes.
    ///
    /// LSNs are compared as 64-bit positions, never as text (`9/0` < `10/0`).
    #[command(after_help = "Example:\n  $ pgmig lsn compare 35FE3/B63D4718 35FE3/B63D4717\n  > 1")]
    Compare {
        /// The first LSN, as PostgreSQL prints it (`X/Y` in hex).
        a: Lsn,
        /// The second LSN.
        b: Lsn,
    },
}
