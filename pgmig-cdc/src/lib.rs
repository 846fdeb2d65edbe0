//! The native change-data-capture applier: reads each slot's changes after the
//! pause LSN P, applies every transaction that commits after P to the target
//! exactly once, reports lag, syncs sequences and checks the cutover.
//!
//! [`run`] starts one worker per slot of the plan. A worker reads its slot
//! through the slot's two replication sets (`pg_logical_slot_peek_changes`,
//! which does not consume), skips every transaction whose commit ends at or
//! before `max(P, applied)`, applies the rest — a batch of source
//! transactions in one target transaction together with the slot's row in
//! `pgmig.cdc_progress` — and only then advances the slot on the source
//! (`pg_replication_slot_advance` from 11, `pg_logical_slot_get_changes`
//! before). A crash at any point leaves the target and its progress row
//! agreeing; the next start skips what the target holds, so every source
//! transaction is applied exactly once.
//!
//! A slot whose `confirmed_flush_lsn` is already past `max(P, applied)`
//! (created after P, or consumed by another client) is refused before
//! anything is applied: the changes in between are gone.
//!
//! Faults are bounded: a lost connection is reopened (for
//! [`CdcOptions::reconnect_timeout`]); a server that stops answering
//! without closing the connection (a hung server, a stalled network) is
//! given up after [`CdcOptions::stall_timeout`] and treated the same — a
//! server that is merely slow (still running pgmig's statement, as a
//! second connection sees) is waited for — and
//! the applier's abandoned sessions on the servers are ended once it
//! reaches them again, so they cannot keep holding the slot or its lock; a
//! change that waits for a target lock longer than
//! [`CdcOptions::lock_timeout`] rolls its batch back and fails naming the
//! sessions holding the lock. Two runs started at once take their slots'
//! locks one after the other, so of two runs over the same slots one gets
//! them all and the other is refused: a slot is never applied by two
//! appliers (runs over different `--slot`s proceed side by side).
//!
//! A batch streams in: a transaction that began after the applied position
//! goes to the target in chunks as its rows arrive, so no source transaction
//! is held whole in memory — except one that began before the applied
//! position (after a crash, or spanning P), which waits for its commit to
//! say whether the target already holds it.
//!
//! Limits, from reading slots through the SQL interface and pglogical's
//! JSON: a `json`/`jsonb` value `null` arrives as SQL NULL and array lower
//! bounds are not sent (see [`value`]); DDL queued with
//! `pglogical.replicate_ddl_command` stops the applier (it applies data,
//! not schema); sequences are set at cutover only ([`sequence`]). The
//! target session sets `session_replication_role = replica` (no triggers,
//! no foreign-key checks), which needs a superuser (or `rds_superuser`).

pub mod advance;
mod apply;
pub mod cutover;
pub mod dry_run;
pub mod error;
pub mod progress;
pub mod sequence;
pub mod table;
pub mod value;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmig_core::config::ConnConfig;
use pgmig_core::state::{load_migration, table_exists};
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::SlotName;
use pgmig_pglogical::replication_set::{insert_truncate_set_name, update_delete_set_name};
use pgmig_pglogical::slot::find_slot;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

pub use error::CdcError;
pub use worker::LOCK_SQL;

/// How to apply.
#[derive(Debug, Clone)]
pub struct CdcOptions {
    /// Stop each slot once it has applied everything the source had
    /// committed when it started, or when it last read (a read that returned
    /// less than a full batch), whichever comes first; otherwise follow the
    /// source until cancelled. Default: false.
    pub until_caught_up: bool,
    /// Rows read from a slot per batch (whole transactions: a batch may hold
    /// more). The batch's transactions are applied in one target
    /// transaction. Default: 10,000.
    pub batch_changes: i64,
    /// How long a caught-up worker waits before reading again. Default: 500 ms.
    pub poll_interval: Duration,
    /// How long a worker keeps reconnecting after losing the source or the
    /// target without applying anything in between. Default: 10 minutes.
    pub reconnect_timeout: Duration,
    /// How long to wait for the slot's lock on the target (held by another
    /// applier, or by a killed one whose session has not ended yet), and
    /// for a session of the applier's own earlier attempt to end once
    /// terminated (then the worker retries, within `reconnect_timeout`).
    /// Default: 10 s.
    pub lock_wait: Duration,
    /// How long one statement on the target waits for a lock held by
    /// another session (the target's `lock_timeout`) before the batch is
    /// rolled back and the run fails naming the sessions that hold it.
    /// Zero sets no `lock_timeout`: a wait longer than `stall_timeout` then
    /// counts as a stall (the batch is retried on a new connection until
    /// `reconnect_timeout`). Default: 60 s.
    pub lock_timeout: Duration,
    /// How long a worker waits for any answer from the source or the
    /// target (a connect, the next row of a slot read, a window of applied
    /// statements, a commit, a slot advance) before it looks at its session
    /// on that server from a second, short-lived connection (waiting at most
    /// this long, and 30 s). A session still running the statement and not
    /// waiting on the network or on another session's lock (a long slot
    /// advance or read on a big source, a large transaction being applied,
    /// a commit waiting for a synchronous standby) is working: the worker
    /// waits another round. Otherwise (no answer on the second connection
    /// either, the session gone, idle, or blocked sending to or reading from
    /// pgmig) it treats the connection as lost: it drops it, ends its own
    /// abandoned server sessions once it reaches the server again, and
    /// reconnects (within `reconnect_timeout`). A statement that may wait
    /// for a lock gets `lock_timeout` more. Catches stalls that TCP does
    /// not (a hung server or middlebox; keepalives only see a dead peer).
    /// Default: 300 s.
    pub stall_timeout: Duration,
    /// Only these slots of the plan; `None`: all. Default: `None`.
    pub slots: Option<Vec<String>>,
    /// Refuse to start before the full load has finished. Default: true.
    pub require_load: bool,
}

impl Default for CdcOptions {
    fn default() -> Self {
        CdcOptions {
            until_caught_up: false,
            batch_changes: 10_000,
            poll_interval: Duration::from_millis(500),
            reconnect_timeout: Duration::from_secs(600),
            lock_wait: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(300),
            slots: None,
            require_load: true,
        }
    }
}

/// Progress of the applier, as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CdcEvent {
    /// A worker connected and starts from `applied_end_lsn`.
    Started {
        /// The slot.
        slot: String,
        /// Where it starts (P, or the last applied commit).
        applied_end_lsn: Lsn,
    },
    /// A batch was applied and committed.
    Applied {
        /// The slot.
        slot: String,
        /// Source transactions in the batch.
        transactions: u64,
        /// Row changes in the batch.
        changes: u64,
        /// The last applied commit's end LSN.
        applied_end_lsn: Lsn,
        /// Bytes of WAL the source has written since.
        lag_bytes: u64,
        /// Time to read and decode the batch from the slot.
        read_ms: u64,
        /// Time to apply and commit it on the target.
        apply_ms: u64,
    },
    /// The slot applied everything the source had committed (only with
    /// `until_caught_up`).
    CaughtUp {
        /// The slot.
        slot: String,
        /// The last applied commit's end LSN.
        applied_end_lsn: Lsn,
    },
    /// A connection was lost; the worker reconnects.
    Reconnecting {
        /// The slot.
        slot: String,
        /// The error, with its causes.
        error: String,
    },
}

/// Where progress events go.
pub type EventFn = Arc<dyn Fn(&CdcEvent) + Send + Sync>;

/// What one slot's worker did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotReport {
    /// The slot.
    pub slot: String,
    /// Where this run started.
    pub start_lsn: Lsn,
    /// The last applied commit's end LSN.
    pub applied_end_lsn: Lsn,
    /// Source transactions applied by this run.
    pub transactions: u64,
    /// Row changes applied by this run.
    pub changes: u64,
    /// Whether it stopped caught up.
    pub caught_up: bool,
    /// With `until_caught_up`: the source's WAL LSN when the worker began.
    /// A caught-up worker has applied every transaction committed before
    /// it (and everything committed before its last read began).
    pub until_lsn: Option<Lsn>,
    /// Connections re-established after a loss.
    pub reconnects: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdcReport {
    /// P.
    pub pause_lsn: Lsn,
    /// Per slot, by name.
    pub slots: Vec<SlotReport>,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// A slot of the plan with its two replication sets.
fn planned_slots(
    plan: &pgmig_core::plan::Plan,
    only: Option<&[String]>,
) -> Result<Vec<(String, [String; 2])>, CdcError> {
    let mut out = Vec::new();
    for group in &plan.slots {
        if only.is_some_and(|only| !only.contains(&group.slot)) {
            continue;
        }
        let name = SlotName::new(group.slot.clone()).map_err(pgmig_pglogical::Error::from)?;
        out.push((
            group.slot.clone(),
            [
                update_delete_set_name(&name),
                insert_truncate_set_name(&name),
            ],
        ));
    }
    if let Some(only) = only
        && let Some(missing) = only.iter().find(|s| !out.iter().any(|(n, _)| n == *s))
    {
        return Err(CdcError::NotReady(format!(
            "slot {missing} is not in the migration's plan"
        )));
    }
    Ok(out)
}

/// Checks that CDC may start: a migration with P, the full load finished,
/// and every slot at or before where the target stands. Returns P and the
/// slots with their sets. Reads only.
pub async fn preflight(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &CdcOptions,
) -> Result<(Lsn, Vec<(String, [String; 2])>), CdcError> {
    let tc = target.connect().await?;
    let migration = load_migration(&tc).await?.ok_or_else(|| {
        CdcError::NotReady("the target holds no migration: run `pgmig setup` first".into())
    })?;
    let p = migration.pause_lsn.ok_or_else(|| {
        CdcError::NotReady(
            "no pause LSN P is recorded: run `pgmig snapshot` and `pgmig load` first".into(),
        )
    })?;
    if opts.require_load {
        let finished = if table_exists(&tc, "pgmig.load").await? {
            tc.query_opt(
                "SELECT finished_at IS NOT NULL, pause_lsn FROM pgmig.load WHERE id = 1",
                &[],
            )
            .await
            .map_err(pgmig_core::Error::query("read the load state"))?
            .map(|r| {
                r.get::<_, bool>(0) && Lsn::from(r.get::<_, tokio_postgres::types::PgLsn>(1)) == p
            })
            .unwrap_or(false)
        } else {
            false
        };
        if !finished {
            return Err(CdcError::NotReady(format!(
                "the full load at P = {p} has not finished: run `pgmig load` until it completes first"
            )));
        }
    }
    let slots = planned_slots(&migration.plan, opts.slots.as_deref())?;
    let sc = source.connect().await?;
    let sv = ServerVersion::query(&sc).await?;
    for (slot, _) in &slots {
        let info = find_slot(&sc, sv, slot)
            .await
            .map_err(pgmig_pglogical::Error::from)?
            .ok_or_else(|| CdcError::SlotMissing { slot: slot.clone() })?;
        let progress = progress::read_progress(&tc, slot).await?;
        worker::check_position(slot, info.confirmed_flush_lsn, p, progress.as_ref())?;
    }
    Ok((p, slots))
}

/// Applies every slot of the plan to the target; see the crate docs.
///
/// Refuses ([`CdcError::is_refusal`]) when the migration has no P, the load
/// has not finished, or a slot is past where the target stands. Returns
/// when every slot caught up (`until_caught_up`), when `cancel` fires (the
/// batches in flight roll back or commit whole), or with the first slot's
/// failure (the others are stopped).
pub async fn run(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &CdcOptions,
    events: Option<EventFn>,
    cancel: CancellationToken,
) -> Result<CdcReport, CdcError> {
    let started = Instant::now();
    // Bounded like every step of the workers: a server that never answers
    // fails the run instead of hanging it.
    let limit = opts.stall_timeout + opts.lock_timeout;
    let stalled = |doing: &'static str, idle: Duration| CdcError::Stalled {
        slot: String::new(),
        server: "source or the target",
        doing,
        idle_s: idle.as_secs_f64(),
    };
    let (pause_lsn, slots) = tokio::time::timeout(limit, preflight(source, target, opts))
        .await
        .map_err(|_| stalled("checking that CDC may start", limit))??;
    // One run at a time creates the progress table and takes its slots'
    // locks: two runs started together cannot split the slots between them
    // (each then refusing the other's), one gets them all and the other is
    // refused.
    let gate_client = tokio::time::timeout(limit + opts.lock_wait, async {
        let client = target.connect().await?;
        worker::take_gate(&client, opts, &cancel).await?;
        // Under the gate: two runs creating the table at once would collide.
        progress::ensure_progress_table(&client).await?;
        Ok::<_, CdcError>(client)
    })
    .await
    .map_err(|_| stalled("taking the start lock", limit + opts.lock_wait))??;
    let (gate, mut gate_open) = tokio::sync::mpsc::channel::<()>(1);
    let stop = cancel.child_token();
    let mut set = JoinSet::new();
    for (slot, sets) in slots {
        let job = worker::SlotJob {
            slot: slot.clone(),
            sets,
            pause_lsn,
            source: source.clone(),
            target: target.clone(),
            opts: opts.clone(),
            events: events.clone(),
            cancel: stop.clone(),
        };
        set.spawn(
            worker::run_slot(job, Some(gate.clone())).instrument(info_span!("cdc", slot = %slot)),
        );
    }
    // Every worker drops its sender once it tried its slot's lock (or
    // ended); then the gate opens for the next run.
    drop(gate);
    let mut gate_client = Some(gate_client);
    let mut reports = Vec::new();
    let mut failure = None;
    loop {
        let joined = tokio::select! {
            joined = set.join_next() => joined,
            _ = gate_open.recv(), if gate_client.is_some() => {
                gate_client = None;
                continue;
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(e)) => {
                stop.cancel();
                if failure.is_none() || matches!(failure, Some(CdcError::Cancelled)) {
                    failure = Some(e);
                }
            }
            Err(join) => {
                stop.cancel();
                failure.get_or_insert(CdcError::NotReady(format!("a slot worker failed: {join}")));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    reports.sort_by(|a, b| a.slot.cmp(&b.slot));
    Ok(CdcReport {
        pause_lsn,
        slots: reports,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
