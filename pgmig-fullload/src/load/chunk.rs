//! Splitting a table into chunks that can be copied, committed and retried
//! independently.
//!
//! A table no larger than the chunk size is one chunk, copied with
//! `TRUNCATE` + `COPY … FREEZE` in one transaction (its rows arrive frozen and
//! all-visible, so nothing rewrites them later). A larger table is split,
//! from 14 on, into ranges of heap pages (`ctid` ranges, read by a TID range
//! scan: each chunk reads only its pages); before 14 on an integer key (a
//! single-column primary key, or a unique index on one `NOT NULL` integer
//! column) into equal ranges of its values. Before 14 a table without such
//! a key stays one chunk: a ctid range would be a full scan per chunk there.
//!
//! The ranges are computed on the paused replica, whose data cannot change,
//! and their outer ends are open (`key < hi` for the first, `key >= lo` for
//! the last), so every row belongs to exactly one chunk.

use pgmig_core::catalog::{TableInfo, TableKind};
use pgmig_core::ident::quote_ident;
use pgmig_core::{Error, Major, ServerVersion};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

/// How a chunk selects its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "split", rename_all = "snake_case")]
pub enum Split {
    /// The whole table.
    Whole,
    /// `lo <= key < hi` on an integer key column (`None`: open end).
    Key {
        /// The key column.
        column: String,
        /// Inclusive lower bound.
        lo: Option<i64>,
        /// Exclusive upper bound.
        hi: Option<i64>,
    },
    /// Heap pages `lo <= block < hi` (`None`: open end); 14+.
    Pages {
        /// First page.
        lo: i64,
        /// Page after the last (`None`: to the end).
        hi: Option<i64>,
    },
}

impl Split {
    /// The stored name of the split kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Split::Whole => "whole",
            Split::Key { .. } => "key",
            Split::Pages { .. } => "pages",
        }
    }

    /// The `WHERE` condition selecting the chunk's rows, if any.
    pub fn condition(&self) -> Option<String> {
        match self {
            Split::Whole => None,
            Split::Key { column, lo, hi } => {
                let c = quote_ident(column);
                let parts: Vec<String> = lo
                    .map(|lo| format!("{c} >= {lo}"))
                    .into_iter()
                    .chain(hi.map(|hi| format!("{c} < {hi}")))
                    .collect();
                if parts.is_empty() {
                    None
                } else {
                    Some(parts.join(" AND "))
                }
            }
            Split::Pages { lo, hi } => {
                let mut s = format!("ctid >= '({lo},0)'::tid");
                if let Some(hi) = hi {
                    s.push_str(&format!(" AND ctid < '({hi},0)'::tid"));
                }
                Some(s)
            }
        }
    }
}

/// The integer key column a table can be split on: its single-column
/// primary key or a single-column unique index on a `NOT NULL` column, of
/// type `smallint`, `integer` or `bigint`.
pub fn integer_key(table: &TableInfo) -> Option<&str> {
    let is_int = |name: &str| {
        table.columns.iter().any(|c| {
            c.name == name
                && c.not_null
                && matches!(c.type_name.as_str(), "smallint" | "integer" | "bigint")
        })
    };
    if let [pk] = table.primary_key.as_slice()
        && is_int(pk)
    {
        return Some(pk);
    }
    table
        .unique_indexes
        .iter()
        .filter(|u| !u.partial)
        .find_map(|u| match u.columns.as_slice() {
            [c] if is_int(c) => Some(c.as_str()),
            _ => None,
        })
}

/// Equal ranges over `min..=max` in `n` parts, the outer ends left open.
pub fn key_ranges(min: i64, max: i64, n: u64) -> Vec<(Option<i64>, Option<i64>)> {
    let (min, max) = (min as i128, max as i128);
    let span = max - min + 1;
    let n = (n as i128).clamp(1, span.max(1));
    let width = (span + n - 1) / n;
    // Inner bounds stay within min..=max (computed in i128, so nothing
    // wraps near the ends of i64); the outer ends are open.
    let mut bounds: Vec<i64> = (1..n)
        .map(|i| min + i * width)
        .filter(|b| *b <= max)
        .map(|b| b as i64)
        .collect();
    bounds.dedup();
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut lo = None;
    for b in bounds {
        out.push((lo, Some(b)));
        lo = Some(b);
    }
    out.push((lo, None));
    out
}

/// Equal page ranges over `pages` pages in `n` parts, the last one open.
pub fn page_ranges(pages: i64, n: u64) -> Vec<(i64, Option<i64>)> {
    let n = (n as i64).clamp(1, pages.max(1));
    let per = (pages + n - 1) / n;
    (0..n)
        .map(|i| (i * per, (i < n - 1).then_some((i + 1) * per)))
        .collect()
}

/// Splits `table` into chunks of about `chunk_bytes` (by its size on the
/// replica), reading the key range or page count there.
pub async fn plan_chunks(
    replica: &impl GenericClient,
    version: ServerVersion,
    table: &TableInfo,
    chunk_bytes: u64,
) -> Result<Vec<Split>, Error> {
    let bytes = table.table_bytes.max(0) as u64;
    let n = bytes.div_ceil(chunk_bytes.max(1)).max(1);
    if n == 1 || table.kind == TableKind::PartitionedParent {
        return Ok(vec![Split::Whole]);
    }
    let name = table.table.quoted();
    // From 14 a page range is read by a TID range scan: each chunk reads
    // only its own pages. A key range is read by whatever plan the
    // replica picks, often a scan of the whole table per chunk.
    if version.major() >= Major::V14 {
        let row = replica
            .query_one(
                &format!(
                    "SELECT (pg_relation_size({}::regclass) / current_setting('block_size')::int8)::int8",
                    pgmig_core::ident::quote_literal(&name)
                ),
                &[],
            )
            .await
            .map_err(Error::query(format!("read the page count of {}", table.table)))?;
        let pages: i64 = row.get(0);
        if pages > 1 {
            return Ok(page_ranges(pages, n)
                .into_iter()
                .map(|(lo, hi)| Split::Pages { lo, hi })
                .collect());
        }
    }
    if let Some(key) = integer_key(table) {
        let k = quote_ident(key);
        let row = replica
            .query_one(
                &format!("SELECT min({k})::int8, max({k})::int8 FROM ONLY {name}"),
                &[],
            )
            .await
            .map_err(Error::query(format!(
                "read the key range of {}",
                table.table
            )))?;
        let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get(1)) else {
            return Ok(vec![Split::Whole]);
        };
        return Ok(key_ranges(min, max, n)
            .into_iter()
            .map(|(lo, hi)| Split::Key {
                column: key.to_string(),
                lo,
                hi,
            })
            .collect());
    }
    Ok(vec![Split::Whole])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(ranges: &[(Option<i64>, Option<i64>)], min: i64, max: i64) {
        assert_eq!(ranges.first().unwrap().0, None);
        assert_eq!(ranges.last().unwrap().1, None);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "ranges must meet: {ranges:?}");
            assert!(pair[1].0.unwrap() > min && pair[1].0.unwrap() <= max);
        }
    }

    #[test]
    fn key_ranges_cover_everything_once() {
        for (min, max, n) in [
            (1, 4_000_000, 4),
            (1, 10, 3),
            (-5, 5, 2),
            (7, 7, 4),
            (1, 3, 10),
            (i64::MIN, i64::MAX, 5),
            (i64::MAX - 4, i64::MAX, 4),
            (i64::MIN, i64::MIN + 2, 3),
            (0, 1, 1),
        ] {
            let r = key_ranges(min, max, n);
            assert!(
                !r.is_empty() && r.len() as u64 <= n,
                "{min} {max} {n}: {r:?}"
            );
            covers(&r, min, max);
        }
        assert_eq!(
            key_ranges(1, 100, 4),
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        assert_eq!(key_ranges(7, 7, 4), vec![(None, None)]);
    }

    #[test]
    fn page_ranges_cover_everything_once() {
        assert_eq!(
            page_ranges(10, 3),
            vec![(0, Some(4)), (4, Some(8)), (8, None)]
        );
        assert_eq!(page_ranges(2, 5), vec![(0, Some(1)), (1, None)]);
        assert_eq!(page_ranges(0, 5), vec![(0, None)]);
    }

    #[test]
    fn conditions_quote_the_key() {
        let s = Split::Key {
            column: "Order Id".into(),
            lo: Some(5),
            hi: None,
        };
        assert_eq!(s.condition().unwrap(), "\"Order Id\" >= 5");
        let s = Split::Key {
            column: "id".into(),
            lo: None,
            hi: Some(-3),
        };
        assert_eq!(s.condition().unwrap(), "\"id\" < -3");
        assert_eq!(
            Split::Pages { lo: 4, hi: Some(8) }.condition().unwrap(),
            "ctid >= '(4,0)'::tid AND ctid < '(8,0)'::tid"
        );
        assert_eq!(Split::Whole.condition(), None);
    }
}
