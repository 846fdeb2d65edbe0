//! How a table is split for checksums: the load's key chunks when the target
//! records them, else ranges of the key's leading integer column, else the
//! whole table. Every split covers the whole key space (the first range is
//! unbounded below, the last above), so a row the other side has beyond the
//! first side's keys still falls into a chunk.

use std::collections::HashMap;
use std::fmt;

use pgmig_core::{QualifiedTable, quote_ident};
use serde::Serialize;
use tokio_postgres::Client;

use super::VerifyError;

/// A range of one integer key column, `lo <= key < hi`; `None` is unbounded.
/// The whole table when there is no column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRange {
    /// The key column; `None` for the whole table.
    pub column: Option<String>,
    /// Inclusive lower bound; `None`: unbounded.
    pub lo: Option<i64>,
    /// Exclusive upper bound; `None`: unbounded.
    pub hi: Option<i64>,
}

impl KeyRange {
    /// The whole table.
    pub fn whole() -> KeyRange {
        KeyRange {
            column: None,
            lo: None,
            hi: None,
        }
    }

    /// The SQL condition selecting the range (`true` for the whole table).
    pub fn condition(&self) -> String {
        let Some(column) = &self.column else {
            return "true".into();
        };
        let col = quote_ident(column);
        match (self.lo, self.hi) {
            (None, None) => "true".into(),
            (Some(lo), None) => format!("{col} >= {lo}"),
            (None, Some(hi)) => format!("{col} < {hi}"),
            (Some(lo), Some(hi)) => format!("{col} >= {lo} AND {col} < {hi}"),
        }
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(column) = &self.column else {
            return f.write_str("whole table");
        };
        // Quoted where SQL needs it: `"Id" < 9`.
        let column = pgmig_core::ident::display_ident(column);
        match (self.lo, self.hi) {
            (None, None) => f.write_str("whole table"),
            (Some(lo), None) => write!(f, "{column} >= {lo}"),
            (None, Some(hi)) => write!(f, "{column} < {hi}"),
            (Some(lo), Some(hi)) => write!(f, "{lo} <= {column} < {hi}"),
        }
    }
}

/// The load's key chunks per table, read from `pgmig.load_task` when that
/// table exists on the server (empty otherwise).
pub(crate) async fn load_chunks(
    client: &Client,
    side: &str,
) -> Result<HashMap<QualifiedTable, Vec<KeyRange>>, VerifyError> {
    let what = "read the load's chunks";
    let exists: bool = client
        .query_one("SELECT to_regclass('pgmig.load_task') IS NOT NULL", &[])
        .await
        .map_err(VerifyError::query(side, what))?
        .get(0);
    let mut out: HashMap<QualifiedTable, Vec<KeyRange>> = HashMap::new();
    if !exists {
        return Ok(out);
    }
    let rows = client
        .query(
            "SELECT table_schema::text, table_name::text, key_column::text, lo::int8, hi::int8 \
             FROM pgmig.load_task WHERE kind = 'copy' AND split = 'key' AND key_column IS NOT NULL \
             ORDER BY 1, 2, lo NULLS FIRST",
            &[],
        )
        .await
        .map_err(VerifyError::query(side, what))?;
    for row in rows {
        let table = QualifiedTable::new(row.get::<_, String>(0), row.get::<_, String>(1));
        out.entry(table).or_default().push(KeyRange {
            column: Some(row.get(2)),
            lo: row.get(3),
            hi: row.get(4),
        });
    }
    out.retain(|_, ranges| covers_everything(ranges));
    Ok(out)
}

/// Whether sorted ranges of one column tile the whole key space: the first
/// unbounded below, each ending where the next starts, the last unbounded
/// above.
pub(crate) fn covers_everything(ranges: &[KeyRange]) -> bool {
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return false;
    };
    first.lo.is_none()
        && last.hi.is_none()
        && ranges.iter().all(|r| r.column == first.column)
        && ranges
            .windows(2)
            .all(|w| w[0].hi.is_some() && w[0].hi == w[1].lo)
}

/// Splits `[min, max]` of `column` into `n` ranges of equal width, the first
/// unbounded below and the last unbounded above.
pub(crate) fn split_range(column: &str, min: i64, max: i64, n: u64) -> Vec<KeyRange> {
    let span = (max as i128 - min as i128 + 1).max(1);
    let n = (n.max(1) as i128).min(span);
    let width = (span + n - 1) / n;
    let mut out = Vec::with_capacity(n as usize);
    let mut lo: Option<i64> = None;
    for i in 1..n {
        let bound = min as i128 + i * width;
        if bound > max as i128 {
            break;
        }
        let hi = bound as i64;
        out.push(KeyRange {
            column: Some(column.to_string()),
            lo,
            hi: Some(hi),
        });
        lo = Some(hi);
    }
    out.push(KeyRange {
        column: Some(column.to_string()),
        lo,
        hi: None,
    });
    out
}

/// Own ranges on `column` of `table`: about `chunk_rows` rows each from the
/// row estimate, or one range over the whole key space for a small table.
pub(crate) async fn own_chunks(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    column: &str,
    estimated_rows: Option<i64>,
    chunk_rows: i64,
) -> Result<Vec<KeyRange>, VerifyError> {
    let whole = vec![KeyRange {
        column: Some(column.to_string()),
        lo: None,
        hi: None,
    }];
    let rows = estimated_rows.unwrap_or(0);
    if rows <= chunk_rows.max(1) {
        return Ok(whole);
    }
    let col = quote_ident(column);
    let row = client
        .query_one(
            &format!(
                "SELECT min({col})::int8, max({col})::int8 FROM ONLY {}",
                table.quoted()
            ),
            &[],
        )
        .await
        .map_err(VerifyError::query(
            side,
            format!("read the key range of {table}"),
        ))?;
    let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
    else {
        return Ok(whole);
    };
    let n = (rows as u64).div_ceil(chunk_rows.max(1) as u64);
    Ok(split_range(column, min, max, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lo: Option<i64>, hi: Option<i64>) -> KeyRange {
        KeyRange {
            column: Some("id".into()),
            lo,
            hi,
        }
    }

    #[test]
    fn split_covers_everything_in_equal_widths() {
        assert_eq!(
            split_range("id", 1, 100, 4),
            vec![
                r(None, Some(26)),
                r(Some(26), Some(51)),
                r(Some(51), Some(76)),
                r(Some(76), None)
            ]
        );
        assert_eq!(split_range("id", 5, 5, 4), vec![r(None, None)]);
        assert_eq!(split_range("id", 1, 3, 10).len(), 3);
        let extreme = split_range("id", i64::MIN, i64::MAX, 3);
        assert!(covers_everything(&extreme), "{extreme:?}");
        for n in 1..20 {
            assert!(covers_everything(&split_range("id", -7, 1000, n)));
        }
    }

    #[test]
    fn coverage_needs_open_ends_and_no_gaps() {
        assert!(covers_everything(&[r(None, None)]));
        assert!(covers_everything(&[r(None, Some(5)), r(Some(5), None)]));
        assert!(!covers_everything(&[]));
        assert!(!covers_everything(&[r(Some(1), None)]));
        assert!(!covers_everything(&[r(None, Some(5))]));
        assert!(!covers_everything(&[r(None, Some(5)), r(Some(6), None)]));
    }

    #[test]
    fn ranges_print_and_select() {
        assert_eq!(r(Some(1), Some(9)).to_string(), "1 <= id < 9");
        assert_eq!(r(None, Some(9)).condition(), "\"id\" < 9");
        assert_eq!(KeyRange::whole().condition(), "true");
        assert_eq!(KeyRange::whole().to_string(), "whole table");
        let hostile = KeyRange {
            column: Some("a < \"b\"".into()),
            ..r(Some(1), Some(2))
        };
        assert_eq!(hostile.to_string(), r#"1 <= "a < ""b""" < 2"#);
        assert_eq!(
            hostile.condition(),
            r#""a < ""b""" >= 1 AND "a < ""b""" < 2"#
        );
    }
}
