//! The slots pgmig created or adopted, recorded in the target's `pgmig`
//! schema beside the migration: their LSNs at creation, whether pgmig owns
//! them (only those are dropped without `--force`), and where the source
//! stood when setup verified their replication sets.

use pgmig_core::Lsn;
use pgmig_core::error::{Error, Result};
use pgmig_core::state::{ensure_schema, table_exists};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

/// The statement that creates the slot table; idempotent.
pub const SLOT_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS pgmig.slot (\
       name text PRIMARY KEY, \
       plugin text NOT NULL, \
       created_by_pgmig boolean NOT NULL, \
       restart_lsn pg_lsn NOT NULL, \
       confirmed_flush_lsn pg_lsn NOT NULL, \
       sets_verified_lsn pg_lsn, \
       recorded_at timestamptz NOT NULL DEFAULT now())";

/// Records a slot: `$1` name, `$2` plugin, `$3` created by pgmig, `$4`
/// restart LSN, `$5` confirmed flush LSN.
pub const RECORD_SLOT_SQL: &str = "INSERT INTO pgmig.slot (name, plugin, created_by_pgmig, restart_lsn, confirmed_flush_lsn) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING";

/// Records where the source stood when a slot's sets were verified: `$1`
/// slot, `$2` LSN.
pub const SETS_VERIFIED_SQL: &str = "UPDATE pgmig.slot SET sets_verified_lsn = $2 WHERE name = $1";

/// Creates pgmig's state schema and the slot table when missing.
pub async fn ensure_slot_table(client: &impl GenericClient) -> Result<()> {
    ensure_schema(client).await?;
    client
        .batch_execute(SLOT_TABLE_SQL)
        .await
        .map_err(Error::query("create pgmig's slot table in the target"))
}

/// What pgmig recorded about one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotRecord {
    /// The slot name.
    pub name: String,
    /// Its output plugin (`pglogical`).
    pub plugin: String,
    /// Whether pgmig created it (only those are dropped without `--force`).
    pub created_by_pgmig: bool,
    /// `restart_lsn` when pgmig created or adopted it.
    pub restart_lsn: Lsn,
    /// `confirmed_flush_lsn` when pgmig created or adopted it.
    pub confirmed_flush_lsn: Lsn,
    /// The source's WAL position when its replication sets were last
    /// verified complete; the snapshot needs this to be ≤ P.
    pub sets_verified_lsn: Option<Lsn>,
}

/// Records a slot; a slot already recorded keeps its original creation LSNs
/// and ownership.
pub async fn record_slot(client: &impl GenericClient, slot: &SlotRecord) -> Result<()> {
    ensure_slot_table(client).await?;
    client
        .execute(
            RECORD_SLOT_SQL,
            &[
                &slot.name,
                &slot.plugin,
                &slot.created_by_pgmig,
                &PgLsn::from(slot.restart_lsn),
                &PgLsn::from(slot.confirmed_flush_lsn),
            ],
        )
        .await
        .map_err(Error::query(format!("record slot {}", slot.name)))?;
    Ok(())
}

/// Sets a recorded slot's LSNs (after pgmig created it, or filled in a
/// record written just before creating it).
pub async fn update_slot_lsns(
    client: &impl GenericClient,
    slot: &str,
    restart_lsn: Lsn,
    confirmed_flush_lsn: Lsn,
) -> Result<()> {
    client
        .execute(
            "UPDATE pgmig.slot SET restart_lsn = $2, confirmed_flush_lsn = $3, recorded_at = now() \
             WHERE name = $1",
            &[
                &slot,
                &PgLsn::from(restart_lsn),
                &PgLsn::from(confirmed_flush_lsn),
            ],
        )
        .await
        .map_err(Error::query(format!("record the LSNs of slot {slot}")))?;
    Ok(())
}

/// Records that the slot's replication sets were verified complete while the
/// source was at `lsn`.
pub async fn set_sets_verified(client: &impl GenericClient, slot: &str, lsn: Lsn) -> Result<()> {
    client
        .execute(SETS_VERIFIED_SQL, &[&slot, &PgLsn::from(lsn)])
        .await
        .map_err(Error::query(format!("record the set check of slot {slot}")))?;
    Ok(())
}

/// Forgets a slot (after pgmig dropped it).
pub async fn forget_slot(client: &impl GenericClient, slot: &str) -> Result<()> {
    if table_exists(client, "pgmig.slot").await? {
        client
            .execute("DELETE FROM pgmig.slot WHERE name = $1", &[&slot])
            .await
            .map_err(Error::query(format!("forget slot {slot}")))?;
    }
    Ok(())
}

/// The recorded slots, by name; empty when the target holds no state.
pub async fn slots(client: &impl GenericClient) -> Result<Vec<SlotRecord>> {
    if !table_exists(client, "pgmig.slot").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT name, plugin, created_by_pgmig, restart_lsn, confirmed_flush_lsn, sets_verified_lsn \
             FROM pgmig.slot ORDER BY name",
            &[],
        )
        .await
        .map_err(Error::query("read the recorded slots"))?;
    Ok(rows
        .iter()
        .map(|r| SlotRecord {
            name: r.get(0),
            plugin: r.get(1),
            created_by_pgmig: r.get(2),
            restart_lsn: Lsn::from(r.get::<_, PgLsn>(3)),
            confirmed_flush_lsn: Lsn::from(r.get::<_, PgLsn>(4)),
            sets_verified_lsn: r.get::<_, Option<PgLsn>>(5).map(Lsn::from),
        })
        .collect())
}
