//! `pgmig snapshot` and `pgmig resume-replica`.

use pgmig_core::{ServerRole, ServerVersion, state};
use pgmig_pglogical::snapshot::{resume_replica, resume_sql, snapshot_sql, take_snapshot};

use super::common::{connect, print_dry_run, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{Outcome, UsageError};
use crate::settings::Settings;

/// Pauses the replica, proves the invariant, records and prints P.
pub async fn snapshot(global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
    let replica = connect(&settings, ServerRole::Replica).await?;
    let target = connect(&settings, ServerRole::Target).await?;
    if global.dry_run {
        let migration = state::load_migration(&target).await?.ok_or_else(|| {
            UsageError("the target holds no migration state: run `pgmig setup` first".into())
        })?;
        let rv = ServerVersion::query(&replica).await?;
        print_dry_run(&snapshot_sql(rv, &migration.plan)?, global.json)?;
        return Ok(Outcome::Success);
    }
    let snap = take_snapshot(&source, &replica, &target).await?;
    if global.json {
        print_json(&snap)?;
    } else {
        println!("P = {}", snap.pause_lsn);
        println!(
            "replica {} at P; every slot verified:",
            if snap.was_already_paused {
                "was already paused"
            } else {
                "paused"
            }
        );
        println!(
            "{:<16} {:>14} {:>14} {:>7} {:>7}",
            "SLOT", "CONFIRMED", "RESTART", "TABLES", "PEEKED"
        );
        for s in &snap.slots {
            println!(
                "{:<16} {:>14} {:>14} {:>7} {:>7}",
                s.slot,
                s.confirmed_flush_lsn.to_string(),
                s.restart_lsn.to_string(),
                s.tables,
                s.peeked_changes
            );
        }
        println!(
            "the replica stays paused until `pgmig resume-replica`; WAL accumulates on it meanwhile"
        );
    }
    Ok(Outcome::Success)
}

/// Resumes replay on the replica and confirms it.
pub async fn resume(global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let replica = connect(&settings, ServerRole::Replica).await?;
    if global.dry_run {
        let rv = ServerVersion::query(&replica).await?;
        print_dry_run(&resume_sql(rv), global.json)?;
        return Ok(Outcome::Success);
    }
    let resumed = resume_replica(&replica).await?;
    if global.json {
        print_json(&resumed)?;
    } else if resumed.was_paused {
        println!("replica resumed (it was paused at {})", resumed.replay_lsn);
    } else {
        println!(
            "replica was not paused; replay runs (at {})",
            resumed.replay_lsn
        );
    }
    Ok(Outcome::Success)
}
