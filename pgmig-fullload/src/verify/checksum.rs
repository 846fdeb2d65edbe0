//! Chunk checksums computed in pgmig: each side streams the chunk's rows as
//! `COPY (SELECT <columns> …) TO STDOUT (FORMAT binary)`, pgmig hashes every
//! row (SipHash-1-3, 128 bits) and adds the hashes up (wrapping), so the
//! digest is independent of row order — no `ORDER BY`, a plain sequential or
//! range scan on each server — and a duplicated row still counts twice.
//!
//! A binary COPY tuple is an exact encoding of a row: a field count, then
//! each field as its length and bytes, NULL as length -1. PostgreSQL sends
//! one tuple per CopyData message (the file header rides in front of the
//! first one, the trailer comes alone), so each message the driver yields is
//! one row once the header is cut off.
//!
//! On a mismatch the chunk is read again with its key (as text) in front of
//! every row, and the two sides' rows are matched by key: keys only on the
//! left (missing on the right), only on the right (extra) and with different
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

/// The hash of one row's binary COPY tuple.
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

/// `COPY (SELECT <exprs> FROM ONLY <table> WHERE <condition>) TO STDOUT
/// (FORMAT binary)`.
pub(crate) fn copy_sql(table: &QualifiedTable, exprs: &[&str], condition: &str) -> String {
    format!(
        "COPY (SELECT {} FROM ONLY {} WHERE {condition}) TO STDOUT (FORMAT binary)",
        exprs.join(", "),
        table.quoted(),
    )
}

/// How often (in rows) a stream looks at the cancellation token.
const CANCEL_CHECK_ROWS: u64 = 1 << 14;

/// The binary COPY file signature.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The tuple in one CopyData message of a binary COPY: the message without
/// the file header (in front of the first message), `None` for the trailer
/// or a message that held only the header.
pub(crate) fn tuple(msg: &[u8], first: bool) -> Result<Option<&[u8]>, String> {
    let mut body = msg;
    if first {
        let Some(rest) = body.strip_prefix(SIGNATURE) else {
            return Err("a binary COPY that does not start with its signature".into());
        };
        // Flags (4 bytes), then the header extension's length and the extension.
        let ext = rest
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("a truncated binary COPY header")?;
        body = rest
            .get(8 + ext..)
            .ok_or("a truncated binary COPY header")?;
    }
    if body.is_empty() || body == [0xff, 0xff] {
        return Ok(None);
    }
    Ok(Some(body))
}

/// Streams `sql` (a binary `COPY … TO STDOUT`) and calls `f` with each row.
async fn for_each_row(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    cancel: &CancellationToken,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), VerifyError> {
    let what = || format!("read the rows of {table}");
    let protocol = |detail: String| VerifyError::Protocol {
        side: side.to_string(),
        what: what(),
        detail,
    };
    let stream = client
        .copy_out(sql)
        .await
        .map_err(VerifyError::query(side, what()))?;
    pin_mut!(stream);
    let mut first = true;
    let mut n: u64 = 0;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(VerifyError::query(side, what()))?;
        if let Some(row) = tuple(&msg, first).map_err(protocol)? {
            f(row).map_err(protocol)?;
        }
        first = false;
        n += 1;
        if n.is_multiple_of(CANCEL_CHECK_ROWS) && cancel.is_cancelled() {
            return Err(VerifyError::Cancelled);
        }
    }
    Ok(())
}

/// Streams `sql` (a binary `COPY … TO STDOUT`) and digests its rows.
pub(crate) async fn digest(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<Digest, VerifyError> {
    let mut digest = Digest::default();
    for_each_row(client, side, table, sql, cancel, |row| {
        digest.add(row);
        Ok(())
    })
    .await?;
    Ok(digest)
}

/// Some differing keys and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Keys {
    /// How many rows differ this way.
    pub total: u64,
    /// The first of their keys in key order (as text; composite keys as
    /// `(a, b)`, NULL as `NULL`), at most the report's limit; empty for a
    /// table without a key.
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
/// Returns key fields → hash of the remaining fields.
async fn keyed_rows(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    sql: &str,
    key_len: usize,
    cancel: &CancellationToken,
) -> Result<HashMap<Vec<u8>, u128>, VerifyError> {
    let mut out: HashMap<Vec<u8>, u128> = HashMap::new();
    for_each_row(client, side, table, sql, cancel, |row| {
        let (key, rest) =
            split_key(row, key_len).ok_or_else(|| "a truncated binary COPY tuple".to_string())?;
        let hash = row_hash(rest);
        out.entry(key.to_vec())
            .and_modify(|h| *h = h.wrapping_add(hash))
            .or_insert(hash);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// The fields of a binary COPY tuple: (length or -1, bytes) each.
fn fields(mut data: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        let len = i32::from_be_bytes(data.get(..4)?.try_into().ok()?);
        data = &data[4..];
        if len < 0 {
            return Some(None);
        }
        let (value, rest) = data.split_at_checked(len as usize)?;
        data = rest;
        Some(Some(value))
    })
}

/// Splits a binary COPY tuple after its first `key_len` fields: (the key
/// fields with their lengths, the remaining fields). `None` when the tuple
/// is shorter.
pub(crate) fn split_key(tuple: &[u8], key_len: usize) -> Option<(&[u8], &[u8])> {
    let body = tuple.get(2..)?;
    let mut pos = 0usize;
    for _ in 0..key_len {
        let len = i32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        if len > 0 {
            pos += len as usize;
        }
    }
    Some((body.get(..pos)?, body.get(pos..)?))
}

/// A key (its fields as [`split_key`] cuts them) for people: one column as
/// is, several as `(a, b)`; NULL as `NULL`.
pub(crate) fn display_key(key: &[u8]) -> String {
    let parts: Vec<String> = fields(key)
        .map(|f| {
            f.map_or_else(
                || "NULL".to_string(),
                |v| String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Sorts displayed keys for the report: numerically for a single integer
/// key, else by their text.
pub(crate) fn sort_keys(keys: &mut [String], integer: bool) {
    if integer {
        keys.sort_by_key(|k| k.parse::<i64>().unwrap_or(i64::MAX));
    } else {
        keys.sort();
    }
}

fn keys_of(keys: Vec<Vec<u8>>, integer: bool, limit: usize) -> Keys {
    let mut shown: Vec<String> = keys.iter().map(|k| display_key(k)).collect();
    sort_keys(&mut shown, integer);
    shown.truncate(limit);
    Keys {
        total: keys.len() as u64,
        first: shown,
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
    let mut out: HashMap<u128, i64> = HashMap::new();
    for_each_row(client, side, table, sql, cancel, |row| {
        *out.entry(row_hash(row)).or_default() += 1;
        Ok(())
    })
    .await?;
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
    }

    /// A binary COPY tuple of text fields (`None`: NULL).
    fn tuple_of(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => out.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    out.extend((v.len() as i32).to_be_bytes());
                    out.extend(v.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn keys_split_after_the_key_columns() {
        let t = tuple_of(&[Some("12"), Some("x"), None]);
        let (key, rest) = split_key(&t, 1).unwrap();
        assert_eq!(display_key(key), "12");
        assert_eq!(rest, &t[2 + 4 + 2..]);
        let (key, rest) = split_key(&t, 2).unwrap();
        assert_eq!(display_key(key), "(12, x)");
        assert_eq!(rest, (-1i32).to_be_bytes());
        let with_null = tuple_of(&[None, Some("a")]);
        let (key, _) = split_key(&with_null, 2).unwrap();
        assert_eq!(display_key(key), "(NULL, a)");
        assert_eq!(split_key(&t[..5], 1), None);
        assert_eq!(split_key(&t, 4), None);
    }

    #[test]
    fn the_header_and_trailer_are_not_rows() {
        let row = tuple_of(&[Some("1")]);
        let mut first = SIGNATURE.to_vec();
        first.extend(0u32.to_be_bytes());
        first.extend(0u32.to_be_bytes());
        let header_only = first.clone();
        first.extend(&row);
        assert_eq!(tuple(&first, true).unwrap(), Some(&row[..]));
        assert_eq!(tuple(&header_only, true).unwrap(), None);
        assert_eq!(tuple(&row, false).unwrap(), Some(&row[..]));
        assert_eq!(tuple(&[0xff, 0xff], false).unwrap(), None);
        assert!(tuple(b"1\tx\n", true).is_err());
        // NULL and the empty string are different rows.
        assert_ne!(
            row_hash(&tuple_of(&[Some("3"), None])),
            row_hash(&tuple_of(&[Some("3"), Some("")]))
        );
    }

    #[test]
    fn keyed_comparison_names_missing_extra_and_changed() {
        let k = |s: &str| tuple_of(&[Some(s)])[2..].to_vec();
        let l: HashMap<Vec<u8>, u128> = [(k("10"), 1), (k("9"), 2), (k("3"), 3)]
            .into_iter()
            .collect();
        let r: HashMap<Vec<u8>, u128> = [(k("10"), 1), (k("3"), 4), (k("11"), 5)]
            .into_iter()
            .collect();
        let d = compare_keyed(&l, &r, true, 10);
        assert_eq!(d.missing.first, vec!["9"]);
        assert_eq!(d.extra.first, vec!["11"]);
        assert_eq!(d.changed.first, vec!["3"]);
        let mut keys = vec!["10".to_string(), "9".into(), "-1".into()];
        sort_keys(&mut keys, true);
        assert_eq!(keys, ["-1", "9", "10"]);
    }

    #[test]
    fn multisets_count_rows_on_one_side() {
        let l: HashMap<u128, i64> = [(1, 2), (2, 1)].into_iter().collect();
        let r: HashMap<u128, i64> = [(1, 1), (3, 1)].into_iter().collect();
        let d = compare_multisets(&l, &r);
        assert_eq!((d.missing.total, d.extra.total), (2, 1));
    }
}
