//! Where each slot's applier stands, kept in the target's `pgmig` schema:
//! one row per slot, updated in the same target transaction as the changes
//! it records, so a crash at any moment leaves data and position agreeing.

use pgmig_core::admin::current_wal_lsn;
use pgmig_core::error::{Error, Result};
use pgmig_core::state::{ensure_schema, table_exists};
use pgmig_core::{Lsn, ServerVersion};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

/// The statement that creates the progress table; idempotent.
pub const PROGRESS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS pgmig.cdc_progress (\
       slot text PRIMARY KEY, \
       applied_end_lsn pg_lsn NOT NULL, \
       applied_commit_time timestamptz, \
       transactions bigint NOT NULL DEFAULT 0, \
       changes bigint NOT NULL DEFAULT 0, \
       started_at timestamptz NOT NULL DEFAULT now(), \
       updated_at timestamptz NOT NULL DEFAULT now())";

/// Starts a slot's row at P (`$1` slot, `$2` P); an existing row is kept.
pub const INIT_PROGRESS_SQL: &str = "INSERT INTO pgmig.cdc_progress (slot, applied_end_lsn) VALUES ($1, $2) \
     ON CONFLICT (slot) DO NOTHING";

/// Moves a slot's row from `$2` to `$3` (`$1` slot, `$4` the last commit
/// time as text or NULL, `$5` transactions and `$6` changes applied). Zero
/// rows updated means another applier moved it first.
pub const RECORD_PROGRESS_SQL: &str = "UPDATE pgmig.cdc_progress SET applied_end_lsn = $3, \
       applied_commit_time = coalesce($4::text::timestamptz, applied_commit_time), \
       transactions = transactions + $5, changes = changes + $6, updated_at = now() \
     WHERE slot = $1 AND applied_end_lsn = $2";

/// One slot's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The slot.
    pub slot: String,
    /// The end LSN of the last applied source commit (P before the first).
    pub applied_end_lsn: Lsn,
    /// When that commit happened on the source, when known.
    pub applied_commit_time: Option<String>,
    /// Source transactions applied so far (with changes or not).
    pub transactions: i64,
    /// Row changes applied so far.
    pub changes: i64,
}

/// Creates the progress table when missing.
pub async fn ensure_progress_table(client: &impl GenericClient) -> Result<()> {
    ensure_schema(client).await?;
    client
        .batch_execute(PROGRESS_TABLE_SQL)
        .await
        .map_err(Error::query(
            "create pgmig's CDC progress table in the target",
        ))
}

/// Starts the slot's row at `p` unless it exists, and returns the row.
pub async fn init_progress(client: &impl GenericClient, slot: &str, p: Lsn) -> Result<Progress> {
    client
        .execute(INIT_PROGRESS_SQL, &[&slot, &PgLsn::from(p)])
        .await
        .map_err(Error::query(format!(
            "start the CDC progress of slot {slot}"
        )))?;
    read_progress(client, slot)
        .await?
        .ok_or_else(|| Error::Protocol {
            what: format!("start the CDC progress of slot {slot}"),
            detail: "the row is missing after the insert".into(),
        })
}

const SELECT: &str = "SELECT slot, applied_end_lsn, \
       to_char(applied_commit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
       transactions, changes FROM pgmig.cdc_progress";

fn progress_of(row: &tokio_postgres::Row) -> Progress {
    Progress {
        slot: row.get(0),
        applied_end_lsn: Lsn::from(row.get::<_, PgLsn>(1)),
        applied_commit_time: row.get(2),
        transactions: row.get(3),
        changes: row.get(4),
    }
}

/// One slot's row, if any.
pub async fn read_progress(client: &impl GenericClient, slot: &str) -> Result<Option<Progress>> {
    if !table_exists(client, "pgmig.cdc_progress").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(&format!("{SELECT} WHERE slot = $1"), &[&slot])
        .await
        .map_err(Error::query(format!(
            "read the CDC progress of slot {slot}"
        )))?;
    Ok(row.as_ref().map(progress_of))
}

/// Every slot's row, by slot; empty when CDC never ran.
pub async fn all_progress(client: &impl GenericClient) -> Result<Vec<Progress>> {
    if !table_exists(client, "pgmig.cdc_progress").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(&format!("{SELECT} ORDER BY slot"), &[])
        .await
        .map_err(Error::query("read the CDC progress"))?;
    Ok(rows.iter().map(progress_of).collect())
}

/// How far one slot's applier is behind the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotLag {
    /// The slot.
    pub slot: String,
    /// The last applied commit's end LSN.
    pub applied_end_lsn: Lsn,
    /// The source's current WAL LSN.
    pub source_lsn: Lsn,
    /// Bytes of WAL between them (0 when the applied position is ahead).
    pub lag_bytes: u64,
    /// When the last applied commit happened on the source.
    pub applied_commit_time: Option<String>,
}

/// The lag of every slot that CDC has started, for `pgmig status`.
pub async fn slot_lags(
    source: &impl GenericClient,
    source_version: ServerVersion,
    target: &impl GenericClient,
) -> Result<Vec<SlotLag>> {
    let head = current_wal_lsn(source, source_version).await?;
    Ok(all_progress(target)
        .await?
        .into_iter()
        .map(|p| SlotLag {
            lag_bytes: head.checked_distance(p.applied_end_lsn).unwrap_or(0),
            slot: p.slot,
            applied_end_lsn: p.applied_end_lsn,
            source_lsn: head,
            applied_commit_time: p.applied_commit_time,
        })
        .collect())
}
