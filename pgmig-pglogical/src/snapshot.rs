//! The verified snapshot: pause the maintenance replica, capture P, and
//! prove the correctness invariant before a single row is loaded.
//!
//! In order:
//!
//! 1. the target's state names this source, and the replica is a standby of
//!    it (same system identifier) — checked before anything changes;
//! 2. wait (up to [`CATCH_UP_TIMEOUT`]) until the replica has replayed past
//!    every planned slot's `confirmed_flush_lsn` — right after `setup` the
//!    replica may not have replayed the slots' creation yet — then pause
//!    replay (unless already paused) and read P; P is not ahead of the
//!    source's current WAL position (a standby of a diverged timeline would be);
//! 3. every planned slot exists on the source with plugin `pglogical`, is not
//!    being consumed by anyone, and its `confirmed_flush_lsn` ≤ P — a slot
//!    created, or consumed, past P would silently lose the transactions in
//!    between;
//! 4. every slot's replication sets hold exactly its planned tables *in the
//!    paused replica's copy of pglogical's catalogs*: the replica shows the
//!    source's catalogs as of P, so this proves the membership was committed
//!    before P (a check on the source could only say "now");
//! 5. each slot can be peeked with its two sets up to P (a smoke test that
//!    decoding works; nothing is consumed);
//! 6. the replica is still paused at exactly P;
//! 7. P is recorded in the target — atomically, only if no other P is.
//!
//! When any step after the pause fails (a refusal, a timeout, a lost
//! connection), replay is resumed if pgmig paused it, so everything is left as
//! it was; a replica that was already paused (or asked to pause) by someone
//! else stays paused.

use std::time::Duration;

use pgmig_core::admin::{self, ReplayPauseState};
use pgmig_core::ident::quote_literal;
use pgmig_core::plan::Plan;
use pgmig_core::state;
use pgmig_core::{Lsn, ServerVersion};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{info, warn};

use crate::decoder::{decoding_options, peek_changes};
use crate::error::{Error, Refusal};
use crate::replication_set::{
    SetTable, insert_truncate_set_name, update_delete_set_name, verify_membership,
};
use crate::slot::{PLUGIN, SlotName, find_slot, find_slot_sql};
use crate::statement::Statement;

/// How long pausing and resuming may take.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the snapshot waits, before pausing, for the replica to replay
/// past the planned slots' creation (setup just made them: a pause before
/// that would put P before a slot and be refused).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the replay LSN must stand still before 14 to count as paused.
pub const PAUSE_SETTLE: Duration = Duration::from_millis(500);

/// What the snapshot proved for one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotProof {
    /// The slot.
    pub slot: String,
    /// Its `confirmed_flush_lsn` at the check (≤ P).
    pub confirmed_flush_lsn: Lsn,
    /// Its `restart_lsn` at the check.
    pub restart_lsn: Lsn,
    /// How many tables its sets hold.
    pub tables: usize,
    /// How many changes a peek returned (at most [`PEEK_LIMIT`]).
    pub peeked_changes: usize,
}

/// How many changes the smoke-test peek asks for.
pub const PEEK_LIMIT: i32 = 10;

/// The result of a verified snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// P: the replica's replay LSN while paused.
    pub pause_lsn: Lsn,
    /// Whether the replica was already paused before this call.
    pub was_already_paused: bool,
    /// The source's system identifier, shared by the replica.
    pub system_identifier: u64,
    /// One proof per planned slot.
    pub slots: Vec<SlotProof>,
}

/// The statements the snapshot runs, per server and in order, for
/// `--dry-run` (a physical standby runs its source's major, so the replica's
/// version serves for both): the pause (the only change, undone when a check fails), the
/// reads that prove the invariant, and the record of P in the target.
pub fn snapshot_sql(replica_version: ServerVersion, plan: &Plan) -> Result<Vec<Statement>, Error> {
    use pgmig_core::ServerRole::{Replica, Source, Target};
    let f = admin::WalFunctions::for_major(replica_version.major());
    let sysid = "SELECT system_identifier FROM pg_control_system()";
    let mut out = vec![
        Statement::new(Source, "read the source's system identifier", sysid),
        Statement::new(Replica, "read the replica's system identifier", sysid),
        Statement::new(
            Replica,
            "pause WAL replay",
            format!("SELECT {}()", f.replay_pause),
        ),
        Statement::new(Replica, "read P", format!("SELECT {}()", f.last_replay_lsn)),
    ];
    for group in &plan.slots {
        let slot = SlotName::new(&group.slot)?;
        out.push(
            Statement::new(
                Source,
                format!("check slot {slot}"),
                find_slot_sql(replica_version),
            )
            .bind(slot.as_str()),
        );
        let sets = [
            update_delete_set_name(&slot),
            insert_truncate_set_name(&slot),
        ];
        let options = decoding_options(&[sets[0].as_str(), sets[1].as_str()]);
        // The peek as psql would run it (the reader binds the same values).
        let args = options
            .iter()
            .map(|o| quote_literal(o))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Statement::new(
            Source,
            format!("peek slot {slot} with its sets"),
            format!(
                "SELECT count(*) FROM pg_catalog.pg_logical_slot_peek_changes({}, NULL, {PEEK_LIMIT}, {args})",
                quote_literal(slot.as_str())
            ),
        ));
    }
    out.push(
        Statement::new(Target, "record P", state::RECORD_PAUSE_LSN_SQL).bind("<P, read above>"),
    );
    Ok(out)
}

/// The session advisory lock on the target that one snapshot holds while it
/// runs ("pgmig_sn"): two snapshots at once could each undo the other's
/// pause when one of them fails.
pub const SNAPSHOT_LOCK: i64 = 0x7067_6d69_675f_736e;

/// Takes [`SNAPSHOT_LOCK`] for the target session (re-entrant; released by
/// [`unlock_snapshot`] or when the session ends), or refuses, naming the
/// session that holds it, when another snapshot runs.
pub async fn lock_snapshot(target: &impl GenericClient) -> Result<(), Error> {
    let row = target
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SNAPSHOT_LOCK])
        .await
        .map_err(pgmig_core::Error::query(
            "take the snapshot lock on the target",
        ))?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    let holder = target
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1",
            &[&SNAPSHOT_LOCK],
        )
        .await
        .ok()
        .flatten()
        .map(|r| format!(" (target session pid {})", r.get::<_, i32>(0)))
        .unwrap_or_default();
    Err(pgmig_core::Error::State {
        detail: format!(
            "another `pgmig snapshot` is running on this migration{holder}; nothing was changed. Wait \
             for it to finish, then run `pgmig snapshot` again to confirm the recorded P"
        ),
    }
    .into())
}

/// Releases one hold of [`SNAPSHOT_LOCK`] taken by [`lock_snapshot`].
pub async fn unlock_snapshot(target: &impl GenericClient) {
    if let Err(e) = target
        .execute("SELECT pg_advisory_unlock($1)", &[&SNAPSHOT_LOCK])
        .await
    {
        warn!(error = %e, "could not release the snapshot lock; it goes with the session");
    }
}

/// Pauses the replica, proves the invariant for every slot of the plan that
/// setup recorded in the target, and records P there; see the module docs.
/// Idempotent: on a replica already paused at the recorded P it re-proves
/// and reports the same P. One snapshot at a time: a second one started
/// meanwhile refuses before changing anything ([`lock_snapshot`]).
pub async fn take_snapshot(
    source: &impl GenericClient,
    replica: &impl GenericClient,
    target: &impl GenericClient,
) -> Result<Snapshot, Error> {
    lock_snapshot(target).await?;
    let result = take_snapshot_locked(source, replica, target).await;
    unlock_snapshot(target).await;
    result
}

async fn take_snapshot_locked(
    source: &impl GenericClient,
    replica: &impl GenericClient,
    target: &impl GenericClient,
) -> Result<Snapshot, Error> {
    // 1. State and wiring, before any change.
    let migration = state::load_migration(target)
        .await?
        .ok_or(Refusal::NoMigration)?;
    let source_sysid = admin::system_identifier(source).await?;
    if migration.source_system_identifier != source_sysid {
        return Err(Refusal::StateOfOtherSource {
            recorded: migration.source_system_identifier,
            source_id: source_sysid,
        }
        .into());
    }
    if !admin::is_in_recovery(replica).await? {
        return Err(Refusal::ReplicaNotStandby.into());
    }
    let replica_sysid = admin::system_identifier(replica).await?;
    if replica_sysid != source_sysid {
        return Err(Refusal::ReplicaOfOtherSource {
            source_id: source_sysid,
            replica: replica_sysid,
        }
        .into());
    }
    let sv = ServerVersion::query(source).await?;
    let rv = ServerVersion::query(replica).await?;
    // A pause someone else requested (14+: not taken yet) is theirs too.
    let was_already_paused =
        admin::replay_pause_state(replica, rv).await? != ReplayPauseState::NotPaused;
    if !was_already_paused && migration.pause_lsn.is_none() {
        catch_up_with_slots(source, replica, sv, rv, &migration.plan).await?;
    }

    // 2.–7., undone on any failure once the pause may have been requested.
    let proven = async {
        let p = admin::pause_replay(replica, rv, PAUSE_TIMEOUT, PAUSE_SETTLE).await?;
        info!(pause_lsn = %p, already = was_already_paused, "replica paused");
        let head = admin::current_wal_lsn(source, sv).await?;
        if p > head {
            return Err(Error::from(Refusal::ReplicaAhead {
                pause_lsn: p,
                source_lsn: head,
            }));
        }
        if let Some(old) = migration.pause_lsn
            && old != p
        {
            return Err(Refusal::PauseLsnChanged {
                recorded: old,
                now: p,
            }
            .into());
        }
        let slots = prove(source, replica, sv, rv, &migration.plan, p).await?;
        state::set_pause_lsn(target, p).await?;
        Ok((p, slots))
    }
    .await;
    match proven {
        Ok((pause_lsn, slots)) => {
            // The step log is a record for people, not part of the proof.
            if let Err(err) = state::log_step(
                target,
                "snapshot",
                "done",
                Some(&format!("P = {pause_lsn}")),
            )
            .await
            {
                warn!(error = %err, "could not log the snapshot step");
            }
            Ok(Snapshot {
                pause_lsn,
                was_already_paused,
                system_identifier: source_sysid,
                slots,
            })
        }
        Err(err) => {
            if !was_already_paused {
                warn!(error = %err, "snapshot failed; resuming the replica as it was");
                if let Err(resume) = admin::resume_replay(replica, rv, PAUSE_TIMEOUT).await {
                    return Err(Error::ResumeAfterFailure {
                        original: Box::new(err),
                        source: resume,
                    });
                }
            }
            Err(err)
        }
    }
}

/// What resuming the replica found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resumed {
    /// Whether replay was paused before.
    pub was_paused: bool,
    /// The replay LSN when resumed (P if the snapshot's pause was undone).
    pub replay_lsn: Lsn,
}

/// Resumes WAL replay on the replica (the runbook's step 11) and confirms
/// that it runs. Resuming a running replica is not an error.
pub async fn resume_replica(replica: &impl GenericClient) -> Result<Resumed, Error> {
    let rv = ServerVersion::query(replica).await?;
    let was_paused = admin::is_replay_paused(replica, rv).await?;
    let replay_lsn = admin::last_replay_lsn(replica, rv).await?;
    admin::resume_replay(replica, rv, PAUSE_TIMEOUT).await?;
    info!(was_paused, %replay_lsn, "replica resumed");
    Ok(Resumed {
        was_paused,
        replay_lsn,
    })
}

/// The statements `resume-replica` runs, for `--dry-run`.
pub fn resume_sql(replica_version: ServerVersion) -> Vec<Statement> {
    let f = admin::WalFunctions::for_major(replica_version.major());
    vec![Statement::new(
        pgmig_core::ServerRole::Replica,
        "resume WAL replay",
        format!("SELECT {}()", f.replay_resume),
    )]
}

/// Waits until the replica has replayed the highest `confirmed_flush_lsn`
/// of the plan's slots (those that exist; the proof names missing ones).
/// After [`CATCH_UP_TIMEOUT`] it stops waiting and lets the proof refuse
/// with both LSNs named: a lagging replica is the operator's to look at.
async fn catch_up_with_slots(
    source: &impl GenericClient,
    replica: &impl GenericClient,
    sv: ServerVersion,
    rv: ServerVersion,
    plan: &Plan,
) -> Result<(), Error> {
    let mut highest = Lsn::INVALID;
    for group in &plan.slots {
        let name = SlotName::new(&group.slot)?;
        if let Some(row) = find_slot(source, sv, name.as_str()).await? {
            highest = highest.max(row.confirmed_flush_lsn.unwrap_or(Lsn::INVALID));
        }
    }
    if highest.is_invalid() {
        return Ok(());
    }
    match admin::wait_for_replay(replica, rv, highest, CATCH_UP_TIMEOUT).await {
        Ok(_) => Ok(()),
        Err(pgmig_core::Error::Timeout { .. }) => {
            warn!(slots_at = %highest, "the replica did not replay past the slots' creation in time");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn prove(
    source: &impl GenericClient,
    replica: &impl GenericClient,
    sv: ServerVersion,
    rv: ServerVersion,
    plan: &Plan,
    p: Lsn,
) -> Result<Vec<SlotProof>, Error> {
    let mut proofs = Vec::with_capacity(plan.slots.len());
    for group in &plan.slots {
        let name = SlotName::new(&group.slot)?;
        let slot = name.as_str();
        // 3. The slot existed, unconsumed, at P, and nobody consumes it.
        let row = find_slot(source, sv, slot)
            .await?
            .filter(|s| s.in_current_database)
            .ok_or_else(|| Refusal::SlotMissing {
                slot: slot.to_owned(),
            })?;
        let plugin = row.plugin.clone().unwrap_or_default();
        if plugin != PLUGIN {
            return Err(Refusal::SlotWrongPlugin {
                slot: slot.to_owned(),
                plugin,
            }
            .into());
        }
        if row.active {
            return Err(Refusal::SlotInUse {
                slot: slot.to_owned(),
                pid: row.active_pid,
            }
            .into());
        }
        let confirmed = row.confirmed_flush_lsn.unwrap_or(Lsn::INVALID);
        if confirmed.is_invalid() || confirmed > p {
            return Err(Refusal::SlotAfterPause {
                slot: slot.to_owned(),
                confirmed_flush_lsn: confirmed,
                pause_lsn: p,
            }
            .into());
        }
        // 4. Its sets held exactly its tables at P: read on the paused replica.
        let expected: Vec<SetTable> = group.tables.iter().map(SetTable::from).collect();
        let problems = verify_membership(replica, &name, &expected).await?;
        if !problems.is_empty() {
            return Err(Refusal::MembershipAtPause {
                slot: slot.to_owned(),
                pause_lsn: p,
                problems: problems.iter().map(ToString::to_string).collect(),
            }
            .into());
        }
        // 5. Decoding works for this slot and its sets (bounded by P).
        let sets = [
            update_delete_set_name(&name),
            insert_truncate_set_name(&name),
        ];
        let peeked = peek_changes(
            source,
            slot,
            &[sets[0].as_str(), sets[1].as_str()],
            Some(p),
            Some(i64::from(PEEK_LIMIT)),
        )
        .await?
        .len();
        proofs.push(SlotProof {
            slot: slot.to_owned(),
            confirmed_flush_lsn: confirmed,
            restart_lsn: row.restart_lsn.unwrap_or(Lsn::INVALID),
            tables: group.tables.len(),
            peeked_changes: peeked,
        });
    }
    // 6. Still frozen at exactly P.
    let now = admin::last_replay_lsn(replica, rv).await?;
    if now != p || !admin::is_replay_paused(replica, rv).await? {
        return Err(Refusal::ReplayMoved { pause_lsn: p, now }.into());
    }
    Ok(proofs)
}
