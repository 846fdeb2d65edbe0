//! One slot's applier: read the slot's changes through its two sets, skip
//! what the target already holds, apply the rest with the progress row,
//! then advance the slot; reconnect after a lost connection.

use std::time::{Duration, Instant};

use pgmig_core::admin::current_wal_lsn;
use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::slot::find_slot;
use pgmig_pglogical::{group_transactions, peek_changes};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::advance::advance_slot;
use crate::apply::Applier;
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
    loop {
        if job.cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let changes =
            peek_changes(&source, slot, &sets, None, Some(job.opts.batch_changes)).await?;
        let rows = changes.len();
        let batch =
            group_transactions(changes).map_err(|source| pgmig_pglogical::Error::Transaction {
                slot: slot.to_owned(),
                source,
            })?;
        let transactions =
            batch
                .into_complete()
                .map_err(|source| pgmig_pglogical::Error::Transaction {
                    slot: slot.to_owned(),
                    source,
                })?;
        let fresh: Vec<_> = transactions
            .into_iter()
            .filter(|t| t.commit_end_lsn > applied)
            .collect();
        let read_ms = started.elapsed().as_millis() as u64;
        if !fresh.is_empty() {
            let applying = Instant::now();
            let done = applier.apply(&fresh, applied).await?;
            let apply_ms = applying.elapsed().as_millis() as u64;
            applied = fresh.last().map_or(applied, |t| t.commit_end_lsn);
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
                read_ms,
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
        let drained = (rows as i64) < job.opts.batch_changes;
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
