//! `pgmig snapshot` and `pgmig resume-replica`.

use anyhow::Context;
use pgmig_core::admin::{self, ReplayPauseState};
use pgmig_core::{ServerRole, ServerVersion, state};
use pgmig_pglogical::snapshot::{
    PAUSE_TIMEOUT, lock_snapshot, resume_replica, resume_sql, snapshot_sql, take_snapshot,
};

use super::common::{connect, print_dry_run, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{CheckFailed, Outcome, UsageError};
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
    refuse_concurrent(&target).await?;
    // Interrupted (Ctrl-C, SIGTERM) while the snapshot runs: stop the
    // target's statement, then leave things consistent — either P was
    // recorded (the snapshot completed: the replica stays paused at it) or
    // not (replay goes back to how it was before).
    super::setup::refuse_swapped(&source, &target).await?;
    // A primary given as the replica is refused by name before its replay
    // state is read (which only a standby has).
    if !admin::is_in_recovery(&replica).await? {
        return Err(
            pgmig_pglogical::Error::from(pgmig_pglogical::Refusal::ReplicaNotStandby).into(),
        );
    }
    let rv = ServerVersion::query(&replica).await?;
    let paused_before =
        admin::replay_pause_state(&replica, rv).await? != ReplayPauseState::NotPaused;
    let target_cancel = target.cancel_token();
    let target_tls = settings.conn(ServerRole::Target)?.tls_connector()?;
    let snap = tokio::select! {
        biased;
        signal = interrupted() => {
            let signal = signal?;
            // Best effort: the statement may also have finished meanwhile.
            let _ = target_cancel.cancel_query(target_tls).await;
            // Runs after the interrupted statement resolved on this connection.
            let recorded = state::load_migration(&target).await?.and_then(|m| m.pause_lsn);
            let replay = admin::last_replay_lsn(&replica, rv).await?;
            if recorded == Some(replay) && admin::is_replay_paused(&replica, rv).await? {
                anyhow::bail!(
                    "interrupted by {signal} after P = {replay} was recorded: the snapshot is complete \
                     and the replica stays paused at P"
                );
            }
            if !paused_before {
                admin::resume_replay(&replica, rv, PAUSE_TIMEOUT).await.context(
                    "interrupted, and resuming the replica failed: it may still be PAUSED; run `pgmig resume-replica`",
                )?;
            }
            anyhow::bail!(
                "interrupted by {signal}: nothing was recorded{}",
                if paused_before {
                    "; the replica stays paused as it was"
                } else {
                    "; the replica's replay was resumed"
                }
            );
        }
        snap = take_snapshot(&source, &replica, &target) => snap?,
    };
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

/// Takes the snapshot lock for this process's target session (held until
/// the process ends, so the interrupt handling below runs under it too), or
/// refuses with exit 1 when another snapshot holds it.
async fn refuse_concurrent(target: &tokio_postgres::Client) -> anyhow::Result<()> {
    match lock_snapshot(target).await {
        Ok(()) => Ok(()),
        Err(pgmig_pglogical::Error::Core(pgmig_core::Error::State { detail })) => {
            Err(CheckFailed(detail).into())
        }
        Err(e) => Err(e.into()),
    }
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

/// Resolves on the first SIGINT or SIGTERM, naming it.
pub(super) async fn interrupted() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r?; Ok("SIGINT") }
        _ = term.recv() => Ok("SIGTERM"),
    }
}
