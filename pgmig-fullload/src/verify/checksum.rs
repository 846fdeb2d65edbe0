//! Chunk checksums computed in pgmig: each side streams the chunk's rows as
//! `COPY (SELECT <columns> …) TO STDOUT` (text), pgmig hashes every row
//! (SipHash-1-3, 128 bits) and adds the hashes up (wrapping), so the digest
//! is independent of row order — no `ORDER BY`, a plain sequential or range
//! scan on each server — and a duplicated row still counts twice.
//!
//! The text COPY format is an exact encoding of a row: columns are separated
//! by a tab, the row ends with a newline, and tabs, newlines and backslashes
//! inside values are escaped; NULL is `\N`. PostgreSQL sends exactly one row
//! per CopyData message (protocol documentation, COPY OUT), so each message
//! the driver yields is one row.
//!
//! On a mismatch the chunk is read again with its key in front of every row,
//! and the two sides' rows are matched by key: keys only on the left
//! (missing on the right), only on the right (extra) and with different
//! contents (changed). Without a key, rows are matched by their hash as a
//! multiset and only counted.

use std::collections::HashMap;

use futures_util::{StreamExt, pin_mut};
use pgmig_core::QualifiedTable;
use serde::Serialize;
use siphasher::sip128::SipHasher13;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::VerifyError;

/// SipHash keys: fixed, so digests are comparable across runs and machines.
const KEY0: u64 = 0x7067_6d69_672d_7665; // "pgmig-ve"
const KEY1: u64 = 0x7269_6679_2d72_6f77; // "rify-row"

/// The hash of one row's COPY text (with its newline).
pub(crate) fn row_hash(row: &[u8]) -> u128 {
    SipHasher13::new_with_keys(KEY0, KEY1).hash(row).as_u128()
}

/// The order-independent digest of a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Digest {
    /// How many rows.
    pub rows: u64,
    /// The wrapping sum of their [`row_hash`]es.
    pub sum: u128,
}

impl Digest {
    /// Adds one row.
    pub(crate) fn add(&mut self, row: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(row_hash(row));
    }
}

/// `COPY (SELECT <exprs> FROM ONLY <table> WHERE <condition>) TO STDOUT`.
pub(crate) fn copy_sql(table: &QualifiedTable, exprs: &[&str], condition: &str) -> String {
    format!(
        "COPY (SELECT {} FROM ONLY {} WHERE {condition}) TO STDOUT",
        exprs.join(", "),
        table.quoted(),
    )
}

/// How often (in rows) a stream looks at the cancellation token.
const CANCEL_CHECK_ROWS: u64 = 1 << 14;

/// Streams `sql` (a `COPY … TO STDOUT`) and digests its rows.
pub(crate) async fn digest(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<Digest, VerifyError> {
    let what = || format!("read the rows of {table}");
    let stream = client
        .copy_out(sql)
        .await
        .map_err(VerifyError::query(side, what()))?;
    pin_mut!(stream);
    let mut digest = Digest::default();
    while let Some(row) = stream.next().await {
        let row = row.map_err(VerifyError::query(side, what()))?;
        digest.add(&row);
        if digest.rows.is_multiple_of(CANCEL_CHECK_ROWS) && cancel.is_cancelled() {
            return Err(VerifyError::Cancelled);
        }
    }
    Ok(digest)
}

/// Some differing keys and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Keys {
    /// How many rows differ this way.
    pub total: u64,
    /// The first of their keys in key order (COPY text; composite keys as
    /// `(a, b)`), at most the report's limit; empty for a table without a
    /// key.
    pub first: Vec<String>,
}

impl Keys {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// What a drill-down into a differing chunk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DrillDown {
    /// Rows on the left only.
    pub missing: Keys,
    /// Rows on the right only.
    pub extra: Keys,
    /// Keys on both sides with different contents.
    pub changed: Keys,
}

/// Reads a keyed chunk: every row starts with its `key_len` key columns.
/// Returns key text → hash of the remaining columns.
async fn keyed_rows(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    key_len: usize,
    cancel: &CancellationToken,
) -> Result<HashMap<Vec<u8>, u128>, VerifyError> {
    let what = || format!("read the rows of {table} by key");
    let stream = client
        .copy_out(sql)
        .await
        .map_err(VerifyError::query(side, what()))?;
    pin_mut!(stream);
    let mut out: HashMap<Vec<u8>, u128> = HashMap::new();
    let mut n: u64 = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(VerifyError::query(side, what()))?;
        let (key, rest) = split_key(&row, key_len);
        let hash = row_hash(rest);
        out.entry(key.to_vec())
            .and_modify(|h| *h = h.wrapping_add(hash))
            .or_insert(hash);
        n += 1;
        if n.is_multiple_of(CANCEL_CHECK_ROWS) && cancel.is_cancelled() {
            return Err(VerifyError::Cancelled);
        }
    }
    Ok(out)
}

/// Splits a COPY text row after its first `key_len` columns: (key, rest).
pub(crate) fn split_key(row: &[u8], key_len: usize) -> (&[u8], &[u8]) {
    let mut seen = 0;
    for (i, b) in row.iter().enumerate() {
        if *b == b'\t' {
            seen += 1;
            if seen == key_len {
                return (&row[..i], &row[i + 1..]);
            }
        }
    }
    // Every column is part of the key: the key is the row without its newline.
    let end = row.strip_suffix(b"\n").map_or(row.len(), <[u8]>::len);
    (&row[..end], &row[end..])
}

/// A key's COPY text for people: one column as is, several as `(a, b)`.
pub(crate) fn display_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    if text.contains('\t') {
        format!("({})", text.replace('\t', ", "))
    } else {
        text.into_owned()
    }
}

/// Sorts keys for the report: numerically for a single integer key, else by
/// their text.
pub(crate) fn sort_keys(keys: &mut [Vec<u8>], integer: bool) {
    if integer {
        keys.sort_by_key(|k| {
            std::str::from_utf8(k)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(i64::MAX)
        });
    } else {
        keys.sort();
    }
}

fn keys_of(mut keys: Vec<Vec<u8>>, integer: bool, limit: usize) -> Keys {
    sort_keys(&mut keys, integer);
    Keys {
        total: keys.len() as u64,
        first: keys.iter().take(limit).map(|k| display_key(k)).collect(),
    }
}

/// Compares two keyed chunks.
pub(crate) fn compare_keyed(
    left: &HashMap<Vec<u8>, u128>,
    right: &HashMap<Vec<u8>, u128>,
    integer: bool,
    limit: usize,
) -> DrillDown {
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for (key, hash) in left {
        match right.get(key) {
            None => missing.push(key.clone()),
            Some(other) if other != hash => changed.push(key.clone()),
            Some(_) => {}
        }
    }
    let extra = right
        .keys()
        .filter(|k| !left.contains_key(*k))
        .cloned()
        .collect();
    DrillDown {
        missing: keys_of(missing, integer, limit),
        extra: keys_of(extra, integer, limit),
        changed: keys_of(changed, integer, limit),
    }
}

/// The rows of one side of a chunk, as a multiset of row hashes.
async fn row_multiset(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<HashMap<u128, i64>, VerifyError> {
    let what = || format!("read the rows of {table}");
    let stream = client
        .copy_out(sql)
        .await
        .map_err(VerifyError::query(side, what()))?;
    pin_mut!(stream);
    let mut out: HashMap<u128, i64> = HashMap::new();
    let mut n: u64 = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(VerifyError::query(side, what()))?;
        *out.entry(row_hash(&row)).or_default() += 1;
        n += 1;
        if n.is_multiple_of(CANCEL_CHECK_ROWS) && cancel.is_cancelled() {
            return Err(VerifyError::Cancelled);
        }
    }
    Ok(out)
}

/// Compares two multisets of rows: how many rows only each side has.
pub(crate) fn compare_multisets(
    left: &HashMap<u128, i64>,
    right: &HashMap<u128, i64>,
) -> DrillDown {
    let mut missing = 0u64;
    let mut extra = 0u64;
    for (hash, n) in left {
        let m = right.get(hash).copied().unwrap_or(0);
        missing += (n - m).max(0) as u64;
    }
    for (hash, m) in right {
        let n = left.get(hash).copied().unwrap_or(0);
        extra += (m - n).max(0) as u64;
    }
    DrillDown {
        missing: Keys {
            total: missing,
            first: Vec::new(),
        },
        extra: Keys {
            total: extra,
            first: Vec::new(),
        },
        changed: Keys::default(),
    }
}

/// One side of a drill-down: where to read and which SQL expressions.
pub(crate) struct DrillSide<'a> {
    /// The connection.
    pub client: &'a Client,
    /// The side's name, for errors.
    pub side: &'a str,
    /// Key expressions (empty: no key).
    pub key_exprs: Vec<&'a str>,
    /// The compared columns' expressions.
    pub exprs: Vec<&'a str>,
}

/// Reads the rows matching `condition` on both sides and names what
/// differs: by key when the sides have key expressions, else as multisets.
pub(crate) async fn drill_down(
    table: &QualifiedTable,
    condition: &str,
    left: DrillSide<'_>,
    right: DrillSide<'_>,
    integer_key: bool,
    limit: usize,
    cancel: &CancellationToken,
) -> Result<DrillDown, VerifyError> {
    if left.key_exprs.is_empty() {
        let lsql = copy_sql(table, &left.exprs, condition);
        let rsql = copy_sql(table, &right.exprs, condition);
        let (l, r) = tokio::try_join!(
            row_multiset(left.client, left.side, table, &lsql, cancel),
            row_multiset(right.client, right.side, table, &rsql, cancel)
        )?;
        return Ok(compare_multisets(&l, &r));
    }
    let key_len = left.key_exprs.len();
    let all = |s: &DrillSide<'_>| -> Vec<String> {
        s.key_exprs
            .iter()
            .chain(s.exprs.iter())
            .map(|e| e.to_string())
            .collect()
    };
    let (lall, rall) = (all(&left), all(&right));
    let lsql = copy_sql(
        table,
        &lall.iter().map(String::as_str).collect::<Vec<_>>(),
        condition,
    );
    let rsql = copy_sql(
        table,
        &rall.iter().map(String::as_str).collect::<Vec<_>>(),
        condition,
    );
    let (l, r) = tokio::try_join!(
        keyed_rows(left.client, left.side, table, &lsql, key_len, cancel),
        keyed_rows(right.client, right.side, table, &rsql, key_len, cancel)
    )?;
    Ok(compare_keyed(&l, &r, integer_key, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_order_independent_and_counts_duplicates() {
        let rows: [&[u8]; 3] = [b"1\ta\n", b"2\tb\n", b"3\t\\N\n"];
        let mut a = Digest::default();
        let mut b = Digest::default();
        for r in rows {
            a.add(r);
        }
        for r in rows.iter().rev() {
            b.add(r);
        }
        assert_eq!(a, b);
        let mut dup = a;
        dup.add(rows[0]);
        assert_ne!(dup.sum, a.sum);
        // NULL and the empty string are different rows.
        assert_ne!(row_hash(b"3\t\\N\n"), row_hash(b"3\t\n"));
    }

    #[test]
    fn keys_split_after_the_key_columns() {
        assert_eq!(split_key(b"1\tx\ty\n", 1), (&b"1"[..], &b"x\ty\n"[..]));
        assert_eq!(split_key(b"1\tx\ty\n", 2), (&b"1\tx"[..], &b"y\n"[..]));
        assert_eq!(split_key(b"1\tx\n", 2), (&b"1\tx"[..], &b"\n"[..]));
        assert_eq!(display_key(b"1\tx"), "(1, x)");
        assert_eq!(display_key(b"42"), "42");
    }

    #[test]
    fn keyed_comparison_names_missing_extra_and_changed() {
        let l: HashMap<Vec<u8>, u128> =
            [(b"10".to_vec(), 1), (b"9".to_vec(), 2), (b"3".to_vec(), 3)]
                .into_iter()
                .collect();
        let r: HashMap<Vec<u8>, u128> =
            [(b"10".to_vec(), 1), (b"3".to_vec(), 4), (b"11".to_vec(), 5)]
                .into_iter()
                .collect();
        let d = compare_keyed(&l, &r, true, 10);
        assert_eq!(d.missing.first, vec!["9"]);
        assert_eq!(d.extra.first, vec!["11"]);
        assert_eq!(d.changed.first, vec!["3"]);
        let mut keys = vec![b"10".to_vec(), b"9".to_vec(), b"-1".to_vec()];
        sort_keys(&mut keys, true);
        assert_eq!(keys, vec![b"-1".to_vec(), b"9".to_vec(), b"10".to_vec()]);
    }

    #[test]
    fn multisets_count_rows_on_one_side() {
        let l: HashMap<u128, i64> = [(1, 2), (2, 1)].into_iter().collect();
        let r: HashMap<u128, i64> = [(1, 1), (3, 1)].into_iter().collect();
        let d = compare_multisets(&l, &r);
        assert_eq!((d.missing.total, d.extra.total), (2, 1));
    }
}
