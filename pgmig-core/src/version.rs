//! Server versions as ordered values, read once per connection from
//! `server_version_num`, so version-specific SQL is chosen with a comparison
//! right beside it (`if v >= Major::V10 { … }`).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// A PostgreSQL major version that pgmig knows. Ordered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Major {
    /// 9.6: the oldest supported source; WAL functions use the `xlog`/`location` names.
    V9_6,
    /// 10: WAL functions renamed to `wal`/`lsn`; logical replication in core.
    V10,
    /// 11: `pg_replication_slot_advance`.
    V11,
    /// 12: `recovery.conf` replaced by `standby.signal`; generated columns.
    V12,
    /// 13: `pg_get_wal_replay_pause_state()`.
    V13,
    /// 14: TID range scans make ctid chunks cheap.
    V14,
    /// 15.
    V15,
    /// 16.
    V16,
    /// 17.
    V17,
    /// 18.
    V18,
}

impl Major {
    /// Every known major, oldest first.
    pub const ALL: [Major; 10] = [
        Major::V9_6,
        Major::V10,
        Major::V11,
        Major::V12,
        Major::V13,
        Major::V14,
        Major::V15,
        Major::V16,
        Major::V17,
        Major::V18,
    ];

    /// The major of a `server_version_num` (`90624` → 9.6, `150004` → 15),
    /// or `None` for versions pgmig does not support (older than 9.6, or
    /// newer than it knows).
    pub fn from_version_num(num: u32) -> Option<Major> {
        if num >= 100_000 {
            Major::ALL.into_iter().find(|m| m.number() == num / 10_000)
        } else if (90_600..90_700).contains(&num) {
            Some(Major::V9_6)
        } else {
            None
        }
    }

    /// The leading number of the major: `9` for 9.6, `10` … `18`
    /// (`server_version_num / 10000` from 10 on).
    pub fn number(self) -> u32 {
        match self {
            Major::V9_6 => 9,
            Major::V10 => 10,
            Major::V11 => 11,
            Major::V12 => 12,
            Major::V13 => 13,
            Major::V14 => 14,
            Major::V15 => 15,
            Major::V16 => 16,
            Major::V17 => 17,
            Major::V18 => 18,
        }
    }
}

impl fmt::Display for Major {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Major::V9_6 => f.write_str("9.6"),
            other => write!(f, "{}", other.number()),
        }
    }
}

/// A server's version: its known [`Major`] and the full `server_version_num`.
///
/// Ordered by the number, so `v >= ServerVersion::from(Major::V13)` and
/// `v.major() >= Major::V13` both read naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerVersion {
    num: u32,
    major: Major,
}

impl ServerVersion {
    /// Interprets a `server_version_num` (e.g. `150018`); `None` when pgmig
    /// does not support that major.
    pub fn from_num(num: u32) -> Option<ServerVersion> {
        Major::from_version_num(num).map(|major| ServerVersion { num, major })
    }

    /// Reads `server_version_num` from the server. Fails with
    /// [`Error::Protocol`] for majors pgmig does not support.
    pub async fn query(client: &impl GenericClient) -> Result<ServerVersion> {
        let what = "read server_version_num";
        let row = client
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await
            .map_err(Error::query(what))?;
        let text: String = row.get(0);
        let num: u32 = text.trim().parse().map_err(|_| Error::Protocol {
            what: what.into(),
            detail: format!("{text:?} is not a number"),
        })?;
        ServerVersion::from_num(num).ok_or_else(|| Error::Protocol {
            what: what.into(),
            detail: format!(
                "version {num} is not supported: pgmig works with PostgreSQL 9.6 to 18"
            ),
        })
    }

    /// The major version.
    pub fn major(self) -> Major {
        self.major
    }

    /// The full `server_version_num`.
    pub fn num(self) -> u32 {
        self.num
    }
}

impl From<Major> for ServerVersion {
    /// The first release of that major (`x.0`; 9.6.0 for 9.6).
    fn from(major: Major) -> Self {
        let num = match major {
            Major::V9_6 => 90_600,
            m => m.number() * 10_000,
        };
        ServerVersion { num, major }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.major {
            Major::V9_6 => write!(f, "9.6.{}", self.num % 100),
            m => write!(f, "{}.{}", m.number(), self.num % 10_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_map_to_majors() {
        let cases: &[(u32, Option<Major>, &str)] = &[
            (90_624, Some(Major::V9_6), "9.6.24"),
            (100_023, Some(Major::V10), "10.23"),
            (110_022, Some(Major::V11), "11.22"),
            (120_022, Some(Major::V12), "12.22"),
            (130_023, Some(Major::V13), "13.23"),
            (140_023, Some(Major::V14), "14.23"),
            (150_018, Some(Major::V15), "15.18"),
            (160_014, Some(Major::V16), "16.14"),
            (170_010, Some(Major::V17), "17.10"),
            (180_004, Some(Major::V18), "18.4"),
            (90_520, None, ""),
            (190_000, None, ""),
            (0, None, ""),
        ];
        for (num, major, shown) in cases {
            assert_eq!(Major::from_version_num(*num), *major, "{num}");
            if let Some(v) = ServerVersion::from_num(*num) {
                assert_eq!(v.to_string(), *shown);
                assert_eq!(v.num(), *num);
            }
        }
    }

    #[test]
    fn majors_are_ordered() {
        assert!(Major::V9_6 < Major::V10);
        assert!(Major::V10 < Major::V18);
        let v = ServerVersion::from_num(130_001).unwrap();
        assert!(v.major() >= Major::V13);
        assert!(v >= ServerVersion::from(Major::V13));
        assert!(v < ServerVersion::from(Major::V14));
        assert!(Major::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Major::V9_6.to_string(), "9.6");
        assert_eq!(Major::V17.to_string(), "17");
    }
}
