//! How busy each table is, from the statistics collector.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::ident::QualifiedTable;

/// Rows written per table: `n_tup_ins + n_tup_upd + n_tup_del` since the
/// statistics were last reset. Tables it lacks count as 0.
pub type WriteRates = BTreeMap<QualifiedTable, i64>;

/// The write-rate query (identical on every supported version).
pub const WRITE_RATES_SQL: &str = "SELECT schemaname::text, relname::text, \
     (COALESCE(n_tup_ins, 0) + COALESCE(n_tup_upd, 0) + COALESCE(n_tup_del, 0))::bigint \
     FROM pg_stat_user_tables";

/// Reads [`WriteRates`] from `pg_stat_user_tables`: meaningful on the source
/// primary (a standby counts no writes).
pub async fn write_rates(client: &impl GenericClient) -> Result<WriteRates> {
    let rows = client
        .query(WRITE_RATES_SQL, &[])
        .await
        .map_err(Error::query(
            "read the write rates from pg_stat_user_tables",
        ))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                QualifiedTable::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                r.get::<_, i64>(2),
            )
        })
        .collect())
}
