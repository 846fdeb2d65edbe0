//! One slot's applier: read the slot's changes through its two sets, skip
//! what the target already holds, apply the rest with the progress row,
//! then advance the slot; reconnect after a lost connection.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use pgmig_core::admin::current_wal_lsn;
use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::decoder::{PEEK_CHANGES_SQL, decoding_options};
use pgmig_pglogical::slot::find_slot;
use pgmig_pglogical::{Change, Message, RawChange, TransactionError};
use tokio_postgres::types::{PgLsn, ToSql};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::advance::advance_slot;
use crate::apply::{Applied, Applier};
use crate::error::CdcError;
use crate::progress::{Progress, init_progress};
use crate::{CdcEvent, CdcOptions, EventFn, SlotReport};

/// The advisory lock an applier holds on the target for its slot.
pub const LOCK_SQL: &str = "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pgmig cdc'), pg_catalog.hashtext($1))";

/// How long a cancelled worker may take to finish the batch in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a slot worker needs.
#[derive(Clone)]
pub(crate) struct SlotJob {
    pub slot: String,
    pub sets: [String; 2],
    pub pause_lsn: Lsn,
    pub source: ConnConfig,
    pub target: ConnConfig,
    pub opts: CdcOptions,
    pub events: Option<EventFn>,
    pub cancel: CancellationToken,
}

impl SlotJob {
    fn emit(&self, event: CdcEvent) {
        if let Some(f) = &self.events {
            f(&event);
        }
    }

    fn sets(&self) -> [&str; 2] {
        [self.sets[0].as_str(), self.sets[1].as_str()]
    }
}

/// Checks that `slot` can be applied from where the target stands: the
/// slot must exist and must not be past `max(P, applied)`.
pub(crate) fn check_position(
    slot: &str,
    confirmed_flush: Option<Lsn>,
    pause_lsn: Lsn,
    progress: Option<&Progress>,
) -> Result<(), CdcError> {
    let applied = progress.map(|p| p.applied_end_lsn).unwrap_or(pause_lsn);
    let start = applied.max(pause_lsn);
    match confirmed_flush {
        Some(c) if c > start => Err(CdcError::SlotAhead {
            slot: slot.to_owned(),
            confirmed_flush: c,
            start,
            why: if start == pause_lsn {
                format!(
                    "P = {pause_lsn}: the slot was created after P, or another client consumed it"
                )
            } else {
                "the last applied commit: another client consumed the slot".to_owned()
            },
        }),
        _ => Ok(()),
    }
}

/// Runs one slot until caught up (with `until_caught_up`), cancelled, or
/// failed for good; lost connections are retried for
/// `opts.reconnect_timeout`.
pub(crate) async fn run_slot(job: SlotJob) -> Result<SlotReport, CdcError> {
    let mut report = SlotReport {
        slot: job.slot.clone(),
        start_lsn: job.pause_lsn,
        applied_end_lsn: job.pause_lsn,
        transactions: 0,
        changes: 0,
        caught_up: false,
        until_lsn: None,
        reconnects: 0,
    };
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let before = (report.transactions, report.applied_end_lsn);
        let outcome = {
            let mut running = Box::pin(session(&job, &mut report));
            tokio::select! {
                r = &mut running => Some(r),
                _ = job.cancel.cancelled() => {
                    // Let a batch in flight commit; a connection that does not
                    // come back is abandoned (its transaction rolls back).
                    tokio::time::timeout(STOP_GRACE, &mut running).await.ok()
                }
            }
        };
        let Some(outcome) = outcome else {
            return Ok(report);
        };
        match outcome {
            Ok(()) => return Ok(report),
            // Stopping on request is not a failure, wherever it happens.
            Err(CdcError::Cancelled) if job.cancel.is_cancelled() => return Ok(report),
            Err(e) if e.is_transient() && !job.cancel.is_cancelled() => {
                if (report.transactions, report.applied_end_lsn) != before {
                    failing_since = None;
                    backoff = Duration::from_millis(250);
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > job.opts.reconnect_timeout {
                    return Err(e);
                }
                report.reconnects += 1;
                warn!(slot = %job.slot, error = %error_chain(&e), "lost a connection; reconnecting");
                job.emit(CdcEvent::Reconnecting {
                    slot: job.slot.clone(),
                    error: error_chain(&e),
                });
                tokio::select! {
                    _ = job.cancel.cancelled() => return Ok(report),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

async fn session(job: &SlotJob, report: &mut SlotReport) -> Result<(), CdcError> {
    let slot = job.slot.as_str();
    let sets = job.sets();
    let source = job.source.connect().await?;
    let source_version = ServerVersion::query(&source).await?;
    let target = job.target.connect().await?;
    let target_version = ServerVersion::query(&target).await?;
    target
        .batch_execute("SET session_replication_role = replica")
        .await
        .map_err(|source| CdcError::Query {
            slot: slot.to_owned(),
            what: "set session_replication_role = replica on the target".into(),
            source,
        })?;
    take_lock(job, &target).await?;

    let progress = init_progress(&target, slot, job.pause_lsn).await?;
    let info = find_slot(&source, source_version, slot)
        .await
        .map_err(pgmig_pglogical::Error::from)?
        .ok_or_else(|| CdcError::SlotMissing {
            slot: slot.to_owned(),
        })?;
    check_position(
        slot,
        info.confirmed_flush_lsn,
        job.pause_lsn,
        Some(&progress),
    )?;
    let mut applied = progress.applied_end_lsn.max(job.pause_lsn);
    if report.transactions == 0 && report.reconnects == 0 {
        report.start_lsn = applied;
    }
    report.applied_end_lsn = applied;
    if job.opts.until_caught_up && report.until_lsn.is_none() {
        report.until_lsn = Some(current_wal_lsn(&source, source_version).await?);
    }
    // Skip the transactions already in the target (before P, or applied
    // before a crash) without decoding them again.
    if info.confirmed_flush_lsn.is_some_and(|c| c < applied) {
        advance_slot(&source, source_version, slot, &sets, applied).await?;
    }
    info!(slot, from = %applied, "applying");
    job.emit(CdcEvent::Started {
        slot: slot.to_owned(),
        applied_end_lsn: applied,
    });

    let mut applier = Applier::new(slot, target, target_version);
    let options = decoding_options(&sets);
    loop {
        if job.cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let read = read_batch(job, &source, &options, &mut applier, applied).await;
        let batch = match read {
            Ok(batch) => batch,
            Err(e) => {
                applier.rollback().await;
                return Err(e);
            }
        };
        if batch.transactions > 0 {
            let committing = Instant::now();
            let done = Applied {
                transactions: batch.transactions,
                changes: batch.changes,
            };
            if let Err(e) = applier
                .commit(applied, batch.last_end, batch.commit_time, done)
                .await
            {
                applier.rollback().await;
                return Err(e);
            }
            let apply_ms = (batch.apply_time + committing.elapsed()).as_millis() as u64;
            applied = batch.last_end;
            report.applied_end_lsn = applied;
            report.transactions += done.transactions;
            report.changes += done.changes;
            let head = current_wal_lsn(&source, source_version).await?;
            job.emit(CdcEvent::Applied {
                slot: slot.to_owned(),
                transactions: done.transactions,
                changes: done.changes,
                applied_end_lsn: applied,
                lag_bytes: head.checked_distance(applied).unwrap_or(0),
                read_ms: (started.elapsed().as_millis() as u64).saturating_sub(apply_ms),
                apply_ms,
            });
        }
        let before = advance_slot(&source, source_version, slot, &sets, applied).await?;
        if before > applied {
            return Err(CdcError::SlotAhead {
                slot: slot.to_owned(),
                confirmed_flush: before,
                start: applied,
                why: "the last applied commit: another client consumed the slot while pgmig applied it"
                    .into(),
            });
        }
        // Everything committed before the read began is applied.
        let drained = (batch.rows as i64) < job.opts.batch_changes;
        // Or everything committed before the worker began: under a write
        // load faster than one batch per read, reads may never come back
        // short.
        let passed = report.until_lsn.is_some_and(|goal| applied >= goal);
        if drained || passed {
            if job.opts.until_caught_up {
                report.caught_up = true;
                job.emit(CdcEvent::CaughtUp {
                    slot: slot.to_owned(),
                    applied_end_lsn: applied,
                });
                return Ok(());
            }
            tokio::select! {
                _ = job.cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(job.opts.poll_interval) => {}
            }
        }
    }
}

/// What [`read_batch`] read and added to the open target transaction.
struct ReadBatch {
    /// Rows the slot returned.
    rows: usize,
    /// Source transactions committed after the applied position.
    transactions: u64,
    /// Their row changes and truncates.
    changes: u64,
    /// The last one's commit end LSN.
    last_end: Lsn,
    /// The last known commit time among them.
    commit_time: Option<String>,
    /// Time spent adding their changes to the target.
    apply_time: Duration,
}

/// A source transaction being read.
struct OpenTransaction {
    xid: u32,
    first_lsn: Lsn,
    /// Whether it certainly commits after the applied position: it began
    /// after it. Its changes go to the target as they stream in; the others
    /// wait for their commit, which says whether the target holds them.
    after_applied: bool,
    commit_time: Option<String>,
    changes: Vec<Change>,
}

/// Changes of a transaction sent to the target at once while it streams in.
const CHUNK_CHANGES: usize = 1000;

/// Reads one batch of the slot (up to `batch_changes` rows, whole
/// transactions) as the server streams it, and adds every transaction
/// committed after `applied` to the applier's target transaction, without
/// committing it. A source transaction is never held whole in memory
/// unless it began before `applied` (only after a crash).
async fn read_batch(
    job: &SlotJob,
    source: &tokio_postgres::Client,
    options: &[String],
    applier: &mut Applier,
    applied: Lsn,
) -> Result<ReadBatch, CdcError> {
    let slot = job.slot.as_str();
    let pg = |source| {
        CdcError::Pglogical(pgmig_pglogical::Error::Postgres {
            slot: slot.to_owned(),
            what: "pg_logical_slot_peek_changes",
            source,
        })
    };
    let order = |source| {
        CdcError::Pglogical(pgmig_pglogical::Error::Transaction {
            slot: slot.to_owned(),
            source,
        })
    };
    let limit = i32::try_from(job.opts.batch_changes).unwrap_or(i32::MAX);
    let params: [&(dyn ToSql + Sync); 4] = [&slot, &None::<PgLsn>, &Some(limit), &options];
    let rows = source
        .query_raw(PEEK_CHANGES_SQL, params)
        .await
        .map_err(pg)?;
    let mut rows = std::pin::pin!(rows);
    let mut out = ReadBatch {
        rows: 0,
        transactions: 0,
        changes: 0,
        last_end: applied,
        commit_time: None,
        apply_time: Duration::ZERO,
    };
    let mut open: Option<OpenTransaction> = None;
    while let Some(row) = rows.try_next().await.map_err(pg)? {
        out.rows += 1;
        let lsn: PgLsn = row.try_get(0).map_err(pg)?;
        let xid: String = row.try_get(1).map_err(pg)?;
        let raw = RawChange {
            lsn: lsn.into(),
            xid: xid.parse().map_err(|_| {
                CdcError::Pglogical(pgmig_pglogical::Error::Protocol {
                    slot: slot.to_owned(),
                    detail: format!("pg_logical_slot_peek_changes returned xid {xid:?}"),
                })
            })?,
            data: row.try_get(2).map_err(pg)?,
        };
        let change = raw.decode().map_err(|source| {
            CdcError::Pglogical(pgmig_pglogical::Error::Decode {
                slot: slot.to_owned(),
                lsn: raw.lsn,
                xid: raw.xid,
                source,
                consumed: Vec::new(),
            })
        })?;
        let Change { lsn, xid, message } = change;
        match message {
            Message::Startup(_) if open.is_none() => {}
            Message::Begin(begin) if open.is_none() => {
                open = Some(OpenTransaction {
                    xid,
                    first_lsn: begin.first_lsn,
                    after_applied: begin.first_lsn >= applied,
                    commit_time: begin.commit_time.map(|t| t.to_string()),
                    changes: Vec::new(),
                });
            }
            message @ (Message::Begin(_) | Message::Startup(_)) => {
                let tx = open.take().unwrap_or_else(|| unreachable!());
                return Err(order(TransactionError::BeginWithoutCommit {
                    xid: tx.xid,
                    first_lsn: tx.first_lsn,
                    next: message.kind(),
                    at: lsn,
                }));
            }
            Message::Commit(commit) => {
                let Some(mut tx) = open.take() else {
                    return Err(order(TransactionError::CommitWithoutBegin { at: lsn, xid }));
                };
                if commit.end_lsn > applied {
                    if !tx.changes.is_empty() {
                        let adding = Instant::now();
                        out.changes += applier.add(&std::mem::take(&mut tx.changes)).await?;
                        out.apply_time += adding.elapsed();
                    }
                    out.transactions += 1;
                    out.last_end = commit.end_lsn;
                    out.commit_time = tx.commit_time.or(out.commit_time);
                } else if tx.after_applied {
                    // Cannot be: it began after the position and ended before.
                    return Err(CdcError::Pglogical(pgmig_pglogical::Error::Protocol {
                        slot: slot.to_owned(),
                        detail: format!(
                            "transaction {xid} began at {} after the applied position {applied} but its \
                             commit ends at {}, before it",
                            tx.first_lsn, commit.end_lsn
                        ),
                    }));
                }
            }
            message => {
                let Some(tx) = open.as_mut() else {
                    return Err(order(TransactionError::OutsideTransaction {
                        kind: message.kind(),
                        at: lsn,
                        xid,
                    }));
                };
                if tx.xid != xid {
                    return Err(order(TransactionError::XidMismatch {
                        expected: tx.xid,
                        found: xid,
                        at: lsn,
                    }));
                }
                let truncate = matches!(message, Message::Truncate(_));
                tx.changes.push(Change { lsn, xid, message });
                if tx.after_applied && tx.changes.len() >= CHUNK_CHANGES && !truncate {
                    let adding = Instant::now();
                    out.changes += applier.add(&std::mem::take(&mut tx.changes)).await?;
                    out.apply_time += adding.elapsed();
                }
            }
        }
    }
    if let Some(tx) = open {
        return Err(order(TransactionError::Incomplete {
            xid: tx.xid,
            first_lsn: tx.first_lsn,
            changes: tx.changes.len(),
        }));
    }
    Ok(out)
}

async fn take_lock(job: &SlotJob, target: &tokio_postgres::Client) -> Result<(), CdcError> {
    // A killed applier's session may linger a moment on the target.
    let deadline = Instant::now() + job.opts.lock_wait;
    loop {
        let got: bool = target
            .query_one(LOCK_SQL, &[&job.slot])
            .await
            .map_err(|source| CdcError::Query {
                slot: job.slot.clone(),
                what: "lock the slot on the target".into(),
                source,
            })?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CdcError::SlotBusy {
                slot: job.slot.clone(),
            });
        }
        tokio::select! {
            _ = job.cancel.cancelled() => return Err(CdcError::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_past_the_target_is_refused() {
        let p = Lsn(0x100);
        let progress = |lsn| Progress {
            slot: "s".into(),
            applied_end_lsn: Lsn(lsn),
            applied_commit_time: None,
            transactions: 0,
            changes: 0,
        };
        assert!(check_position("s", Some(Lsn(0x80)), p, None).is_ok());
        assert!(check_position("s", Some(p), p, None).is_ok());
        assert!(check_position("s", None, p, None).is_ok());
        assert!(check_position("s", Some(Lsn(0x180)), p, Some(&progress(0x200))).is_ok());
        let err = check_position("s", Some(Lsn(0x101)), p, Some(&progress(0x100))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "slot s is ahead of the target: its confirmed_flush_lsn 0/101 is after 0/100 (P = 0/100: the slot \
             was created after P, or another client consumed it); the changes in between are not in the slot \
             any more, so CDC from it would lose them"
        );
        assert!(err.is_refusal());
        let err = check_position("s", Some(Lsn(0x300)), p, Some(&progress(0x200))).unwrap_err();
        assert!(
            err.to_string()
                .contains("after 0/200 (the last applied commit"),
            "{err}"
        );
    }
}
