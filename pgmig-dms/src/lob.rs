//! LOB sizing: which columns DMS treats as LOBs, the largest value of each
//! measured on a server, and the task's LOB mode chosen from it.
//!
//! In limited LOB mode DMS truncates any value above `LobMaxSize` (with only
//! a warning; a truncated JSON value then fails on the target). So pgmig
//! measures the largest value of every LOB column of a slot's tables, sizes
//! `LobMaxSize` above it with room to grow, and sets the source endpoint's
//! `FailTasksOnLobTruncation` so that a value written later that is larger
//! still stops the task instead of being cut. Above what limited mode allows,
//! the task uses full LOB mode.
//!
//! The measurement is one sequential scan per table that has LOB columns,
//! computing `max(octet_length(…))` of all of them at once. For `text`,
//! `varchar` and `bytea` that reads the size from the TOAST pointer without
//! fetching the value; `json`, `jsonb`, `xml`, `hstore` and arrays are
//! rendered as text (what DMS receives), which reads every value.

use std::collections::BTreeMap;

use pgmig_core::error::Error as CoreError;
use pgmig_core::{QualifiedTable, quote_ident};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{debug, info};

use crate::error::Result;

/// Which kind of LOB a column is for DMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LobKind {
    /// `bytea`: a BLOB, measured in bytes.
    Binary,
    /// `text` and `varchar` without a length: an NCLOB whose size is read
    /// without fetching the value.
    Text,
    /// `json`, `jsonb`, `xml`, `hstore` and arrays: an NCLOB, measured as
    /// their text form.
    Rendered,
}

impl LobKind {
    /// The kind of a column from its base type (domains resolved to their
    /// base type): its name in `pg_type`, its `typcategory` and the column's
    /// `atttypmod`; `None` for a type DMS does not treat as a LOB.
    pub fn of(base_type: &str, category: &str, typmod: i32) -> Option<LobKind> {
        match base_type {
            "bytea" => Some(LobKind::Binary),
            "text" => Some(LobKind::Text),
            "varchar" if typmod < 0 => Some(LobKind::Text),
            "json" | "jsonb" | "xml" | "hstore" => Some(LobKind::Rendered),
            _ if category == "A" => Some(LobKind::Rendered),
            _ => None,
        }
    }

    /// The SQL expression measuring one value of `column` in bytes.
    pub fn size_expr(self, column: &str) -> String {
        match self {
            LobKind::Binary | LobKind::Text => format!("octet_length({})", quote_ident(column)),
            LobKind::Rendered => format!("octet_length({}::text)", quote_ident(column)),
        }
    }

    /// How many bytes DMS may need for a value of `bytes` bytes: character
    /// LOBs count double, the most their UTF-16 form can take (DMS handles
    /// NCLOBs as wide strings).
    pub fn dms_bytes(self, bytes: u64) -> u64 {
        match self {
            LobKind::Binary => bytes,
            LobKind::Text | LobKind::Rendered => bytes.saturating_mul(2),
        }
    }
}

/// A LOB column of a planned table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LobColumn {
    /// Its table.
    pub table: QualifiedTable,
    /// The column name.
    pub column: String,
    /// Its type as `format_type` prints it.
    pub type_name: String,
    /// Its kind.
    pub kind: LobKind,
}

/// The catalog query listing the columns of the tables named by `$1`
/// (schemas) and `$2` (names), two parallel `text[]`, with their base
/// type: `schema, table, column, format_type, base type name, base
/// typcategory, atttypmod`. The same on every supported version (9.6+).
pub const LOB_COLUMNS_SQL: &str = "SELECT n.nspname::text, c.relname::text, a.attname::text, \
       format_type(a.atttypid, a.atttypmod), bt.typname::text, bt.typcategory::text, a.atttypmod \
     FROM pg_attribute a \
     JOIN pg_class c ON c.oid = a.attrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_type t ON t.oid = a.atttypid \
     JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attnum > 0 AND NOT a.attisdropped \
       AND (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
     ORDER BY n.nspname, c.relname, a.attnum";

/// Lists the LOB columns of `tables`, in table then column order.
pub async fn lob_columns(
    client: &impl GenericClient,
    tables: &[QualifiedTable],
) -> Result<Vec<LobColumn>> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(LOB_COLUMNS_SQL, &[&schemas, &names])
        .await
        .map_err(CoreError::query("list the LOB columns"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let kind = LobKind::of(r.get(4), r.get(5), r.get(6))?;
            Some(LobColumn {
                table: QualifiedTable::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                column: r.get(2),
                type_name: r.get(3),
                kind,
            })
        })
        .collect())
}

/// The statement measuring the largest value of each of `columns` (all of
/// one table): one scan, one `max(…)` per column, `ONLY` the table itself.
pub fn measure_sql(table: &QualifiedTable, columns: &[&LobColumn]) -> String {
    let maxes = columns
        .iter()
        .map(|c| format!("max({})::bigint", c.kind.size_expr(&c.column)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {maxes} FROM ONLY {}", table.quoted())
}

/// The largest value found in one LOB column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasuredColumn {
    /// The column.
    #[serde(flatten)]
    pub column: LobColumn,
    /// Its largest value in bytes; 0 when it holds no value.
    pub max_bytes: u64,
}

/// The LOB columns of some tables and their largest values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LobMeasurement {
    /// Every LOB column measured.
    pub columns: Vec<MeasuredColumn>,
}

impl LobMeasurement {
    /// The column with the largest value as DMS counts it
    /// ([`LobKind::dms_bytes`]) among `tables`, if any has a LOB column.
    pub fn largest_in<'a>(&'a self, tables: &[QualifiedTable]) -> Option<&'a MeasuredColumn> {
        self.columns
            .iter()
            .filter(|c| tables.contains(&c.column.table))
            .max_by_key(|c| c.column.kind.dms_bytes(c.max_bytes))
    }
}

/// The settings of the measuring transaction: read only, no statement
/// timeout (the scans are deliberate and a server-wide timeout would cut the
/// largest table's), and a short lock timeout so that a scan waiting behind
/// DDL fails instead of queueing the application's queries behind it.
pub const MEASURE_SESSION_SQL: &str =
    "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '10s'";

/// Where [`measure_lobs`] stands: called before each table's scan.
#[derive(Debug, Clone, Copy)]
pub struct MeasureProgress<'a> {
    /// The table about to be scanned.
    pub table: &'a QualifiedTable,
    /// Its LOB columns.
    pub columns: usize,
    /// Tables scanned so far.
    pub done: usize,
    /// Tables to scan in all (those with LOB columns).
    pub total: usize,
}

/// Measures the largest value of every LOB column of `tables` (one scan per
/// table that has any), in one read-only transaction
/// ([`MEASURE_SESSION_SQL`]), calling `progress` before each scan. Run it
/// where a full scan hurts least: the source, or the paused replica.
///
/// Dropping the future does not stop a scan on the server: cancel it with
/// the client's cancel token (the CLI does on Ctrl-C).
pub async fn measure_lobs(
    client: &mut tokio_postgres::Client,
    tables: &[QualifiedTable],
    progress: &mut (dyn FnMut(MeasureProgress<'_>) + Send),
) -> Result<LobMeasurement> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(CoreError::query(
            "start a read-only transaction to measure LOBs",
        ))?;
    tx.batch_execute(MEASURE_SESSION_SQL)
        .await
        .map_err(CoreError::query("set up the LOB measurement"))?;
    let columns = lob_columns(&tx, tables).await?;
    let mut by_table: BTreeMap<&QualifiedTable, Vec<&LobColumn>> = BTreeMap::new();
    for c in &columns {
        by_table.entry(&c.table).or_default().push(c);
    }
    let total = by_table.len();
    let mut measured = Vec::with_capacity(columns.len());
    for (done, (table, cols)) in by_table.into_iter().enumerate() {
        progress(MeasureProgress {
            table,
            columns: cols.len(),
            done,
            total,
        });
        let sql = measure_sql(table, &cols);
        debug!(%table, columns = cols.len(), "measuring LOB sizes");
        let row = tx
            .query_one(&sql, &[])
            .await
            .map_err(CoreError::query(format!(
                "measure the LOB columns of {table}"
            )))?;
        for (i, c) in cols.into_iter().enumerate() {
            let max: Option<i64> = row.get(i);
            measured.push(MeasuredColumn {
                column: c.clone(),
                max_bytes: max.unwrap_or(0).max(0).unsigned_abs(),
            });
        }
    }
    tx.commit()
        .await
        .map_err(CoreError::query("end the LOB measurement"))?;
    info!(columns = measured.len(), "measured LOB columns");
    Ok(LobMeasurement { columns: measured })
}

/// How the LOB mode is chosen from the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LobPolicy {
    /// Room for values larger than today's, in percent of the largest one.
    /// Default 50.
    pub growth_percent: u64,
    /// The smallest `LobMaxSize` used, in KB. Default 32 (DMS's default).
    pub min_kb: u64,
    /// The largest `LobMaxSize` used in limited mode, in KB; above it the
    /// task uses full LOB mode. Default 102400, DMS's recommended maximum.
    pub limited_max_kb: u64,
    /// `LobChunkSize` in full LOB mode, in KB. Default 64, as DMS recommends.
    pub chunk_kb: u64,
}

impl Default for LobPolicy {
    fn default() -> Self {
        LobPolicy {
            growth_percent: 50,
            min_kb: 32,
            limited_max_kb: 102_400,
            chunk_kb: 64,
        }
    }
}

/// The LOB mode of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LobMode {
    /// Limited LOB mode: values up to `max_kb` KB; larger ones fail the task
    /// (the endpoint's `FailTasksOnLobTruncation`).
    Limited {
        /// `LobMaxSize`, in KB.
        max_kb: u64,
    },
    /// Full LOB mode: every value whole, fetched in chunks of `chunk_kb` KB
    /// (slower; needs a primary key to look the value up).
    Full {
        /// `LobChunkSize`, in KB.
        chunk_kb: u64,
    },
}

impl LobPolicy {
    /// The mode for a largest value of `dms_bytes` bytes (as DMS counts it,
    /// see [`LobKind::dms_bytes`]): limited mode with a `LobMaxSize` above it
    /// by [`LobPolicy::growth_percent`] (never below
    /// [`LobPolicy::min_kb`]), or full LOB mode when that exceeds
    /// [`LobPolicy::limited_max_kb`].
    pub fn mode_for(&self, dms_bytes: u64) -> LobMode {
        let kb = dms_bytes.div_ceil(1024);
        let with_room = kb
            .saturating_mul(100 + self.growth_percent)
            .div_ceil(100)
            .max(kb.saturating_add(1));
        let max_kb = with_room.max(self.min_kb);
        if max_kb > self.limited_max_kb {
            LobMode::Full {
                chunk_kb: self.chunk_kb,
            }
        } else {
            LobMode::Limited { max_kb }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lob_kinds_from_base_types() {
        let cases = [
            ("text", "S", -1, Some(LobKind::Text)),
            ("varchar", "S", -1, Some(LobKind::Text)),
            ("varchar", "S", 24, None),
            ("bpchar", "S", -1, None),
            ("bytea", "U", -1, Some(LobKind::Binary)),
            ("json", "U", -1, Some(LobKind::Rendered)),
            ("jsonb", "U", -1, Some(LobKind::Rendered)),
            ("xml", "U", -1, Some(LobKind::Rendered)),
            ("hstore", "U", -1, Some(LobKind::Rendered)),
            ("_int4", "A", -1, Some(LobKind::Rendered)),
            ("int4", "N", -1, None),
            ("timestamptz", "D", -1, None),
        ];
        for (ty, cat, typmod, kind) in cases {
            assert_eq!(LobKind::of(ty, cat, typmod), kind, "{ty}");
        }
    }

    #[test]
    fn measure_sql_quotes_and_scans_once() {
        let t = QualifiedTable::new("Sales", "Order Items");
        let col = |name: &str, kind| LobColumn {
            table: t.clone(),
            column: name.into(),
            type_name: String::new(),
            kind,
        };
        let (a, b) = (col("doc", LobKind::Rendered), col("Raw", LobKind::Binary));
        assert_eq!(
            measure_sql(&t, &[&a, &b]),
            "SELECT max(octet_length(\"doc\"::text))::bigint, max(octet_length(\"Raw\"))::bigint \
             FROM ONLY \"Sales\".\"Order Items\""
        );
    }

    #[test]
    fn limited_mode_above_the_largest_value_else_full() {
        let p = LobPolicy::default();
        assert_eq!(p.mode_for(0), LobMode::Limited { max_kb: 32 });
        assert_eq!(p.mode_for(10_000), LobMode::Limited { max_kb: 32 });
        // 1 MiB: 1024 KB + 50 %.
        assert_eq!(p.mode_for(1 << 20), LobMode::Limited { max_kb: 1536 });
        // Always strictly above the largest value, even with no growth room.
        let tight = LobPolicy {
            growth_percent: 0,
            min_kb: 1,
            ..p
        };
        assert_eq!(tight.mode_for(4096), LobMode::Limited { max_kb: 5 });
        assert_eq!(tight.mode_for(4097), LobMode::Limited { max_kb: 6 });
        // Past DMS's recommended 100 MB: full LOB mode.
        assert_eq!(p.mode_for(80 << 20), LobMode::Full { chunk_kb: 64 });
        assert_eq!(p.mode_for(u64::MAX), LobMode::Full { chunk_kb: 64 });
        // Character LOBs count double.
        assert_eq!(LobKind::Text.dms_bytes(10), 20);
        assert_eq!(LobKind::Binary.dms_bytes(10), 10);
    }
}
