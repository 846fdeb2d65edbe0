//! The cutover's CDC side: apply every slot up to the source's current LSN,
//! set the sequences, and check afterwards that nothing new was written.
//! Verification of the data itself is the full load's `verify`.

use pgmig_core::admin::current_wal_lsn;
use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::{Message, group_transactions, peek_changes};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::CdcError;
use crate::progress::read_progress;
use crate::sequence::{SequenceSync, sync_sequences};
use crate::{CdcOptions, CdcReport, EventFn, preflight, run};

/// The result of [`catch_up`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// The source's WAL LSN when the cutover started: every slot applied
    /// everything committed before it.
    pub source_lsn: Lsn,
    /// What the applier did.
    pub cdc: CdcReport,
}

/// Applies every slot until it holds everything the source committed
/// before this call: the source's current LSN is read first, then each
/// slot runs until a read returns less than a full batch — and every read
/// starts after that LSN was taken.
pub async fn catch_up(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &CdcOptions,
    events: Option<EventFn>,
    cancel: CancellationToken,
) -> Result<CatchUp, CdcError> {
    let sc = source.connect().await?;
    let sv = ServerVersion::query(&sc).await?;
    let source_lsn = current_wal_lsn(&sc, sv).await?;
    let opts = CdcOptions {
        until_caught_up: true,
        ..opts.clone()
    };
    let cdc = run(source, target, &opts, events, cancel).await?;
    Ok(CatchUp { source_lsn, cdc })
}

/// Sets the target's sequences from the source; see [`sync_sequences`].
pub async fn sequences(
    source: &ConnConfig,
    target: &ConnConfig,
) -> Result<Vec<SequenceSync>, CdcError> {
    let sc = source.connect().await?;
    let tc = target.connect().await?;
    Ok(sync_sequences(&sc, &tc).await?)
}

/// Changes waiting in one slot that the target does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The slot.
    pub slot: String,
    /// Transactions with at least one change committed after the applied
    /// position (up to one read's worth).
    pub transactions: u64,
    /// Their changes.
    pub changes: u64,
}

/// Reads each slot once more (without consuming) and counts the changes
/// committed after what the target holds: writes that reached the source
/// after the catch-up. Transactions without changes (other tables,
/// maintenance) do not count.
pub async fn pending_changes(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &CdcOptions,
) -> Result<Vec<Pending>, CdcError> {
    let opts = CdcOptions {
        require_load: false,
        ..opts.clone()
    };
    let (p, slots) = preflight(source, target, &opts).await?;
    let sc = source.connect().await?;
    let tc = target.connect().await?;
    let mut out = Vec::new();
    for (slot, sets) in slots {
        let applied = read_progress(&tc, &slot)
            .await?
            .map_or(p, |pr| pr.applied_end_lsn.max(p));
        let sets = [sets[0].as_str(), sets[1].as_str()];
        let changes = peek_changes(&sc, &slot, &sets, None, Some(opts.batch_changes)).await?;
        let transactions = group_transactions(changes)
            .map_err(|source| pgmig_pglogical::Error::Transaction {
                slot: slot.clone(),
                source,
            })?
            .into_parts()
            .0;
        let mut pending = Pending {
            slot: slot.clone(),
            transactions: 0,
            changes: 0,
        };
        for t in transactions.iter().filter(|t| t.commit_end_lsn > applied) {
            let n = t
                .changes
                .iter()
                .filter(|c| {
                    matches!(
                        c.message,
                        Message::Insert(_)
                            | Message::Update(_)
                            | Message::Delete(_)
                            | Message::Truncate(_)
                    )
                })
                .count() as u64;
            if n > 0 {
                pending.transactions += 1;
                pending.changes += n;
            }
        }
        out.push(pending);
    }
    Ok(out)
}
