//! The runbook's special case — tables with a primary key and other unique
//! indexes — as statements a DBA can run by hand: drop each extra unique
//! index (or constraint) before the load, recreate it after.

use pgmig_core::{Major, ServerVersion, quote_ident};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// One unique index (or unique constraint) of a table that also has a
/// primary key, with the statements that drop and recreate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UniqueRebuild {
    /// The table, quoted: `"s1"."Orders"`.
    pub table: String,
    /// The index name.
    pub index: String,
    /// Run before the load.
    pub drop: String,
    /// Run after the load.
    pub recreate: String,
}

/// Lists the extra unique indexes of tables with a primary key on the
/// source (schemas `pgmig` and `pglogical` excluded; partitions skipped,
/// their parent's index covers them).
pub async fn unique_rebuilds(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<Vec<UniqueRebuild>, pgmig_core::Error> {
    // relispartition exists from 10 on.
    let not_partition = if version.major() >= Major::V10 {
        "AND NOT c.relispartition"
    } else {
        ""
    };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, i.relname::text, con.conname::text, \
                pg_catalog.pg_get_indexdef(x.indexrelid), \
                CASE WHEN con.oid IS NULL THEN NULL ELSE pg_catalog.pg_get_constraintdef(con.oid) END \
           FROM pg_catalog.pg_index x \
           JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
           LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = x.indexrelid AND con.contype = 'u' \
          WHERE x.indisunique AND NOT x.indisprimary \
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_index p WHERE p.indrelid = x.indrelid AND p.indisprimary) \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgmig', 'pglogical') \
            AND n.nspname NOT LIKE 'pg\\_toast%' \
            AND c.relkind IN ('r', 'p') {not_partition} \
          ORDER BY 1, 2, 3"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pgmig_core::Error::query(
            "list unique indexes of tables with a primary key",
        ))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let (schema, table, index): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let constraint: Option<String> = row.get(3);
            // NULL when the index was dropped meanwhile (catalog snapshot
            // race): nothing to rebuild.
            let indexdef: Option<String> = row.get(4);
            let indexdef = indexdef?;
            let condef: Option<String> = row.get(5);
            let qt = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
            let (drop, recreate) = match (constraint, condef) {
                (Some(con), Some(def)) => (
                    format!("ALTER TABLE {qt} DROP CONSTRAINT {};", quote_ident(&con)),
                    format!(
                        "ALTER TABLE {qt} ADD CONSTRAINT {} {def};",
                        quote_ident(&con)
                    ),
                ),
                _ => (
                    format!(
                        "DROP INDEX {}.{};",
                        quote_ident(&schema),
                        quote_ident(&index)
                    ),
                    format!("{indexdef};"),
                ),
            };
            Some(UniqueRebuild {
                table: qt,
                index,
                drop,
                recreate,
            })
        })
        .collect())
}
