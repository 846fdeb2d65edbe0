//! Advancing a slot on the source once the target holds its changes, so the
//! source can release WAL. Idempotent: a slot already at or past the LSN is
//! left alone (PostgreSQL refuses to move a slot backwards).

use pgmig_core::{Lsn, Major, ServerVersion};
use pgmig_pglogical::decoder::decoding_options;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

use crate::error::CdcError;

/// The statement that moves slot `$1` to `$2` on a server of `version`
/// (`$3`, before 11 only, the decoding options).
///
/// From 11 `pg_replication_slot_advance`; before, the changes up to the LSN
/// are consumed with `pg_logical_slot_get_changes` (pgmig already applied
/// them), which moves the slot to the end of the last commit read.
pub fn advance_sql(version: ServerVersion) -> &'static str {
    if version.major() >= Major::V11 {
        "SELECT s.confirmed_flush_lsn, CASE WHEN s.confirmed_flush_lsn < $2::pg_lsn THEN \
           (SELECT a.end_lsn FROM pg_catalog.pg_replication_slot_advance(s.slot_name, $2::pg_lsn) a) END \
         FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1::name"
    } else {
        "SELECT s.confirmed_flush_lsn, CASE WHEN s.confirmed_flush_lsn < $2::pg_lsn THEN \
           (SELECT max(c.lsn) FROM pg_catalog.pg_logical_slot_get_changes(s.slot_name, $2::pg_lsn, NULL::int4, \
              VARIADIC $3::text[]) c) END \
         FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1::name"
    }
}

/// Moves `slot` (read through `sets`) to `lsn` unless it is there already,
/// and returns where the slot stood before: past `lsn` means another client
/// consumed it.
pub async fn advance_slot(
    source: &impl GenericClient,
    version: ServerVersion,
    slot: &str,
    sets: &[&str],
    lsn: Lsn,
) -> Result<Lsn, CdcError> {
    let query = |source| CdcError::Query {
        slot: slot.to_owned(),
        what: format!("advance the slot to {lsn}"),
        source,
    };
    let sql = advance_sql(version);
    let row = if version.major() >= Major::V11 {
        source
            .query_opt(sql, &[&slot, &PgLsn::from(lsn)])
            .await
            .map_err(query)?
    } else {
        source
            .query_opt(sql, &[&slot, &PgLsn::from(lsn), &decoding_options(sets)])
            .await
            .map_err(query)?
    };
    let row = row.ok_or_else(|| CdcError::SlotMissing {
        slot: slot.to_owned(),
    })?;
    let before: Option<PgLsn> = row.try_get(0).map_err(query)?;
    Ok(before.map_or(Lsn(0), Lsn::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_by_version() {
        let v10 = ServerVersion::from_num(100_005).unwrap();
        let v11 = ServerVersion::from_num(110_000).unwrap();
        assert!(advance_sql(v11).contains("pg_replication_slot_advance"));
        assert!(advance_sql(v10).contains("pg_logical_slot_get_changes"));
        for sql in [advance_sql(v10), advance_sql(v11)] {
            assert!(sql.starts_with("SELECT s.confirmed_flush_lsn, CASE WHEN s.confirmed_flush_lsn < $2::pg_lsn THEN"), "{sql}");
        }
    }
}
