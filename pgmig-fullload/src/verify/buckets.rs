//! The runbook's QA: rows per month of a timestamp column, side by side.

use std::collections::BTreeMap;

use pgmig_core::catalog::TableInfo;
use pgmig_core::{QualifiedTable, quote_ident};
use serde::Serialize;
use tokio_postgres::Client;

use super::VerifyError;

/// Column names chosen first, in this order, when no bucket column is given.
pub const PREFERRED_BUCKET_COLUMNS: &[&str] = &[
    "created_at",
    "created",
    "created_on",
    "inserted_at",
    "creation_time",
    "ts",
    "timestamp",
    "time",
    "date",
];

/// The bucket label of NULL values.
pub const NULL_BUCKET: &str = "NULL";

/// One month's row counts on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketRow {
    /// The month, `YYYY-MM` (in UTC for `timestamptz`), or `NULL`.
    pub bucket: String,
    /// Rows on the left.
    pub left: u64,
    /// Rows on the right.
    pub right: u64,
}

/// Whether a `format_type` spelling is a timestamp or date type (not an
/// array of one).
fn is_time_type(type_name: &str) -> bool {
    !type_name.ends_with("[]") && (type_name == "date" || type_name.starts_with("timestamp"))
}

/// The bucket column of a table: `wanted` when the table has it as a
/// timestamp or date column; else the first [`PREFERRED_BUCKET_COLUMNS`]
/// name it has as such; else its first timestamp or date column; `None`
/// when it has none.
pub fn choose_bucket_column(info: &TableInfo, wanted: Option<&str>) -> Option<String> {
    let time_columns: Vec<&str> = info
        .columns
        .iter()
        .filter(|c| is_time_type(&c.type_name))
        .map(|c| c.name.as_str())
        .collect();
    if let Some(w) = wanted.filter(|w| time_columns.contains(w)) {
        return Some(w.to_string());
    }
    PREFERRED_BUCKET_COLUMNS
        .iter()
        .find(|p| time_columns.contains(p))
        .or(time_columns.first())
        .map(|c| c.to_string())
}

/// Rows per month of `column`: `(bucket, rows)` ordered by bucket, NULL last.
pub(crate) fn bucket_sql(table: &QualifiedTable, column: &str) -> String {
    format!(
        "SELECT COALESCE(to_char(date_trunc('month', {col}), 'YYYY-MM'), '{NULL_BUCKET}'), count(*)::int8 \
         FROM ONLY {table} GROUP BY 1 ORDER BY 1",
        col = quote_ident(column),
        table = table.quoted()
    )
}

/// Reads one side's buckets.
pub(crate) async fn buckets(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    column: &str,
) -> Result<Vec<(String, u64)>, VerifyError> {
    let rows = client
        .query(&bucket_sql(table, column), &[])
        .await
        .map_err(VerifyError::query(
            side,
            format!("count the rows of {table} per month"),
        ))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect())
}

/// Both sides' buckets side by side, in bucket order (NULL last).
pub(crate) fn side_by_side(left: &[(String, u64)], right: &[(String, u64)]) -> Vec<BucketRow> {
    let mut all: BTreeMap<(bool, &str), (u64, u64)> = BTreeMap::new();
    for (b, n) in left {
        all.entry((b == NULL_BUCKET, b)).or_default().0 += n;
    }
    for (b, n) in right {
        all.entry((b == NULL_BUCKET, b)).or_default().1 += n;
    }
    all.into_iter()
        .map(|((_, bucket), (left, right))| BucketRow {
            bucket: bucket.to_string(),
            left,
            right,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_types_are_timestamps_and_dates_not_their_arrays() {
        for t in [
            "date",
            "timestamp with time zone",
            "timestamp(3) without time zone",
        ] {
            assert!(is_time_type(t), "{t}");
        }
        for t in [
            "timestamp with time zone[]",
            "date[]",
            "time without time zone",
            "text",
        ] {
            assert!(!is_time_type(t), "{t}");
        }
    }

    #[test]
    fn side_by_side_merges_and_puts_null_last() {
        let l = vec![("2020-01".to_string(), 3), (NULL_BUCKET.to_string(), 1)];
        let r = vec![("2020-01".to_string(), 3), ("2020-02".to_string(), 2)];
        let rows = side_by_side(&l, &r);
        let got: Vec<(&str, u64, u64)> = rows
            .iter()
            .map(|b| (b.bucket.as_str(), b.left, b.right))
            .collect();
        assert_eq!(
            got,
            vec![("2020-01", 3, 3), ("2020-02", 0, 2), ("NULL", 1, 0)]
        );
    }
}
