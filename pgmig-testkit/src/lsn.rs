//! WAL positions as the lab sees them: `X/Y` text parsed into a `u64`.
//!
//! LSNs are always compared as numbers: as strings `0/10000000` sorts before
//! `0/9000000`. The lab parses them itself so that it can test pgmig's own
//! `Lsn` type rather than share its bugs.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::LabError;

/// Parses PostgreSQL's `X/Y` LSN text (each half 1–8 hexadecimal digits).
pub fn parse_lsn(text: &str) -> Result<u64, LabError> {
    let invalid = || LabError::InvalidLsn {
        text: text.to_owned(),
    };
    let (hi, lo) = text.trim().split_once('/').ok_or_else(invalid)?;
    let half = |h: &str| {
        if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        u32::from_str_radix(h, 16).map_err(|_| invalid())
    };
    Ok((u64::from(half(hi)?) << 32) | u64::from(half(lo)?))
}

/// Formats an LSN as PostgreSQL does (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Something that names an LSN: a `u64`, or `X/Y` text.
pub trait LsnTarget {
    /// The LSN as a number.
    fn to_lsn(&self) -> Result<u64, LabError>;
}

impl LsnTarget for u64 {
    fn to_lsn(&self) -> Result<u64, LabError> {
        Ok(*self)
    }
}

impl LsnTarget for &str {
    fn to_lsn(&self) -> Result<u64, LabError> {
        parse_lsn(self)
    }
}

impl LsnTarget for String {
    fn to_lsn(&self) -> Result<u64, LabError> {
        parse_lsn(self)
    }
}

impl LsnTarget for &String {
    fn to_lsn(&self) -> Result<u64, LabError> {
        parse_lsn(self)
    }
}

/// The first column of the first row of `sql`, as text (`None` for no row or NULL).
pub(crate) async fn query_text(client: &Client, sql: &str) -> Result<Option<String>, LabError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| LabError::pg(format!("running {sql:?}"), e))?;
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(row.get(0).map(str::to_owned));
        }
    }
    Ok(None)
}

/// The primary's current WAL write position (`pg_current_wal_lsn()`, PG10+).
pub async fn current_wal_lsn(primary: &Client) -> Result<u64, LabError> {
    let sql = "SELECT pg_current_wal_lsn()";
    let text = query_text(primary, sql)
        .await?
        .ok_or_else(|| LabError::Unexpected {
            context: sql.into(),
            detail: "NULL".into(),
        })?;
    parse_lsn(&text)
}

/// A standby's last replayed position (`pg_last_wal_replay_lsn()`, PG10+);
/// `None` on a server that is not (and never was) in recovery.
pub async fn replay_lsn(standby: &Client) -> Result<Option<u64>, LabError> {
    query_text(standby, "SELECT pg_last_wal_replay_lsn()")
        .await?
        .map(|t| parse_lsn(&t))
        .transpose()
}

/// Polls a standby until it has replayed at least `target`; returns the
/// replay LSN reached.
///
/// Fails with [`LabError::Timeout`] after `timeout` (naming the last replay
/// LSN seen), or at once if the server is not a standby.
pub async fn wait_for_replay(
    standby: &Client,
    target: impl LsnTarget,
    timeout: Duration,
) -> Result<u64, LabError> {
    let target = target.to_lsn()?;
    let started = Instant::now();
    let mut last = None;
    loop {
        match replay_lsn(standby).await? {
            Some(lsn) if lsn >= target => return Ok(lsn),
            Some(lsn) => last = Some(lsn),
            None => {
                let in_recovery = query_text(standby, "SELECT pg_is_in_recovery()").await?;
                if in_recovery.as_deref() != Some("t") {
                    return Err(LabError::Unexpected {
                        context: "pg_last_wal_replay_lsn()".into(),
                        detail: "NULL: the server is not a standby".into(),
                    });
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(LabError::Timeout {
                what: format!(
                    "replay to reach {} (last replayed: {})",
                    format_lsn(target),
                    last.map_or_else(|| "none".to_owned(), format_lsn)
                ),
                waited: started.elapsed(),
                log_tail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0/0", Some(0)),
            ("0/16B3748", Some(0x16B3748)),
            ("16/B374D848", Some(0x16_B374_D848)),
            ("FFFFFFFF/FFFFFFFF", Some(u64::MAX)),
            ("ffffffff/0", Some(0xFFFF_FFFF_0000_0000)),
            (" 1/2 ", Some(0x1_0000_0002)),
            ("", None),
            ("0", None),
            ("/1", None),
            ("1/", None),
            ("1/2/3", None),
            ("100000000/0", None),
            ("-1/0", None),
            ("+1/0", None),
            ("g/0", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_lsn(text).ok(), *want, "{text:?}");
            if let Some(lsn) = want {
                assert_eq!(parse_lsn(&format_lsn(*lsn)).ok(), Some(*lsn));
            }
        }
    }

    #[test]
    fn compares_numerically_not_as_text() {
        let small = parse_lsn("0/9000000").unwrap();
        let big = parse_lsn("0/10000000").unwrap();
        assert!(small < big);
        assert!("0/9000000" > "0/10000000");
    }
}
