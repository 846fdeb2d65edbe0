//! One result of one check: [`Finding`], its [`Severity`], and the stable
//! check ids scripts can rely on.

use std::fmt;

use pgmig_core::{Error, ErrorKind, ServerRole};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::warn;

/// How much a finding matters. Ordered: `Ok < Warn < Blocker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to do; the summary says what was seen.
    Ok,
    /// The migration can go on, but someone should read this.
    Warn,
    /// The migration cannot go on until this is fixed; `pgmig check` exits 1.
    Blocker,
}

impl Severity {
    /// The lower-case name used in JSON and logs: `ok`, `warn`, `blocker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Blocker => "blocker",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable ids of every check, `<area>.<what>`. Scripts may match on
/// them; they never change meaning. A check may yield several findings with
/// the same id (one per slot, one per table).
pub mod ids {
    /// The source's version is one pgmig supports (9.6 to 18).
    pub const SOURCE_VERSION: &str = "source.version";
    /// The source is a primary, not a standby.
    pub const SOURCE_PRIMARY: &str = "source.primary";
    /// `shared_preload_libraries` contains `pglogical` (blocker; restart needed).
    pub const SOURCE_SHARED_PRELOAD_LIBRARIES: &str = "source.shared_preload_libraries";
    /// `wal_level = logical` (blocker; restart needed).
    pub const SOURCE_WAL_LEVEL: &str = "source.wal_level";
    /// `max_replication_slots` covers the planned slots plus the others (blocker).
    pub const SOURCE_MAX_REPLICATION_SLOTS: &str = "source.max_replication_slots";
    /// `max_wal_senders` covers the planned slots plus the senders in use (blocker).
    pub const SOURCE_MAX_WAL_SENDERS: &str = "source.max_wal_senders";
    /// `wal_sender_timeout = 0` (warn; reload).
    pub const SOURCE_WAL_SENDER_TIMEOUT: &str = "source.wal_sender_timeout";
    /// `max_worker_processes` leaves room for pglogical (warn; restart needed).
    pub const SOURCE_MAX_WORKER_PROCESSES: &str = "source.max_worker_processes";
    /// `track_commit_timestamp = on` (warn; restart needed).
    pub const SOURCE_TRACK_COMMIT_TIMESTAMP: &str = "source.track_commit_timestamp";
    /// The `pglogical` extension is installed in the source database (blocker).
    pub const SOURCE_PGLOGICAL_EXTENSION: &str = "source.pglogical_extension";
    /// The role is a superuser, or has each grant pgmig needs on the source
    /// (`REPLICATION`, schema `pglogical`, reading every table) (blocker).
    pub const SOURCE_PRIVILEGES: &str = "source.privileges";
    /// Replication slots pgmig did not create (warn; loud when active).
    pub const SOURCE_EXISTING_SLOTS: &str = "source.existing_slots";
    /// A replica connection was given and works (blocker).
    pub const REPLICA_REACHABLE: &str = "replica.reachable";
    /// The replica's version matches the source's major (blocker).
    pub const REPLICA_VERSION: &str = "replica.version";
    /// The replica is in recovery (blocker).
    pub const REPLICA_IN_RECOVERY: &str = "replica.in_recovery";
    /// The replica has the source's system identifier (blocker).
    pub const REPLICA_SYSTEM_IDENTIFIER: &str = "replica.system_identifier";
    /// The replica's WAL receiver streams (blocker when absent).
    pub const REPLICA_STREAMING: &str = "replica.streaming";
    /// How many bytes the replica's replay is behind the source.
    pub const REPLICA_LAG: &str = "replica.lag";
    /// The role may pause and resume replay and read every table and
    /// sequence, bypassing row-level security where a table has it (blocker).
    pub const REPLICA_PRIVILEGES: &str = "replica.privileges";
    /// A target connection was given and works (blocker).
    pub const TARGET_REACHABLE: &str = "target.reachable";
    /// The target's major is at least the source's (blocker).
    pub const TARGET_VERSION: &str = "target.version";
    /// The role may create schemas in the target database (blocker).
    pub const TARGET_PRIVILEGES: &str = "target.privileges";
    /// Whether the target connection uses TLS (information only).
    pub const TARGET_TLS: &str = "target.tls";
    /// The target holds no user tables besides pgmig's state (blocker).
    pub const TARGET_EMPTY: &str = "target.empty";
    /// Which migration pgmig's state in the target is of; `pgmig check`
    /// makes it a blocker when that is another source.
    pub const TARGET_STATE: &str = "target.state";
    /// Tables without a primary key (warn, one per table).
    pub const DATA_PRIMARY_KEY: &str = "data.primary_key";
    /// Tables with a primary key and other unique indexes (warn, one per table).
    pub const DATA_UNIQUE_INDEXES: &str = "data.unique_indexes";
    /// Unlogged tables (warn, one per table).
    pub const DATA_UNLOGGED: &str = "data.unlogged";
    /// Large objects (warn).
    pub const DATA_LARGE_OBJECTS: &str = "data.large_objects";

    /// Every check id, in the order `run_checks` reports them.
    pub const ALL: &[&str] = &[
        SOURCE_VERSION,
        SOURCE_PRIMARY,
        SOURCE_SHARED_PRELOAD_LIBRARIES,
        SOURCE_WAL_LEVEL,
        SOURCE_MAX_REPLICATION_SLOTS,
        SOURCE_MAX_WAL_SENDERS,
        SOURCE_WAL_SENDER_TIMEOUT,
        SOURCE_MAX_WORKER_PROCESSES,
        SOURCE_TRACK_COMMIT_TIMESTAMP,
        SOURCE_PGLOGICAL_EXTENSION,
        SOURCE_PRIVILEGES,
        SOURCE_EXISTING_SLOTS,
        REPLICA_REACHABLE,
        REPLICA_VERSION,
        REPLICA_IN_RECOVERY,
        REPLICA_SYSTEM_IDENTIFIER,
        REPLICA_STREAMING,
        REPLICA_LAG,
        REPLICA_PRIVILEGES,
        TARGET_REACHABLE,
        TARGET_VERSION,
        TARGET_PRIVILEGES,
        TARGET_TLS,
        TARGET_EMPTY,
        TARGET_STATE,
        DATA_PRIMARY_KEY,
        DATA_UNIQUE_INDEXES,
        DATA_UNLOGGED,
        DATA_LARGE_OBJECTS,
    ];

    /// The static id spelled `id`, or `None` for an unknown one.
    pub fn lookup(id: &str) -> Option<&'static str> {
        ALL.iter().copied().find(|known| *known == id)
    }
}

/// One result of one check on one server.
///
/// Serialized for `--json` as
/// `{"server":"source","check":"source.wal_level","severity":"blocker","summary":"…","fix":"…"}`
/// (`fix` is `null` when there is nothing to do). Deserializing accepts only
/// the ids in [`ids::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The server the finding is about (data findings are about the source).
    pub server: ServerRole,
    /// The stable check id, e.g. `source.wal_level` (see [`ids`]).
    pub check: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// What was found, in one line, naming the objects concerned.
    pub summary: String,
    /// What to do about it — exact `postgresql.conf` lines or SQL, and
    /// whether a restart is needed; `None` when nothing needs doing.
    pub fix: Option<String>,
}

/// A [`Finding`] as read from JSON, before its check id is matched to the
/// static one.
#[derive(Deserialize)]
struct RawFinding {
    server: ServerRole,
    check: String,
    severity: Severity,
    summary: String,
    fix: Option<String>,
}

impl<'de> Deserialize<'de> for Finding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Finding, D::Error> {
        let raw = RawFinding::deserialize(d)?;
        Finding::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawFinding> for Finding {
    type Error = String;

    fn try_from(raw: RawFinding) -> Result<Finding, String> {
        let check =
            ids::lookup(&raw.check).ok_or_else(|| format!("unknown check id {:?}", raw.check))?;
        Ok(Finding {
            server: raw.server,
            check,
            severity: raw.severity,
            summary: raw.summary,
            fix: raw.fix,
        })
    }
}

impl Finding {
    /// A finding of any severity, without a fix.
    pub fn new(
        server: ServerRole,
        check: &'static str,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Finding {
        Finding {
            server,
            check,
            severity,
            summary: summary.into(),
            fix: None,
        }
    }

    /// An [`Severity::Ok`] finding.
    pub fn ok(server: ServerRole, check: &'static str, summary: impl Into<String>) -> Finding {
        Finding::new(server, check, Severity::Ok, summary)
    }

    /// A [`Severity::Warn`] finding.
    pub fn warn(server: ServerRole, check: &'static str, summary: impl Into<String>) -> Finding {
        Finding::new(server, check, Severity::Warn, summary)
    }

    /// A [`Severity::Blocker`] finding.
    pub fn blocker(server: ServerRole, check: &'static str, summary: impl Into<String>) -> Finding {
        Finding::new(server, check, Severity::Blocker, summary)
    }

    /// The same finding with `fix` as what to do.
    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    /// The blocker for a server that could not be reached; `error` is the
    /// connection error (its whole chain is shown; pgmig's errors never
    /// contain a password).
    pub fn unreachable(
        server: ServerRole,
        check: &'static str,
        error: &(dyn std::error::Error + 'static),
    ) -> Finding {
        Finding::blocker(
            server,
            check,
            format!("cannot connect: {}", error_text(error)),
        )
        .with_fix(format!(
            "check the {server} connection string (--{server}, PGMIG_{upper}, [{server}] dsn), \
             the network path and pg_hba.conf; if the server requires TLS (e.g. rds.force_ssl \
             on RDS 15+), use sslmode=require or verify-full",
            upper = server.as_str().to_uppercase()
        ))
    }
}

/// The text of an error and all its sources, joined by `: `, without the
/// driver's content-free `db error` level.
pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if text != "db error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// What a failed check query becomes: a blocker naming the error — or, when
/// the connection itself is gone, the error, which ends the whole check.
pub(crate) fn query_failed(
    server: ServerRole,
    check: &'static str,
    err: Error,
) -> pgmig_core::Result<Finding> {
    if err.kind() == ErrorKind::Connection {
        return Err(err);
    }
    let text = error_text(&err);
    warn!(server = %server, check, error = %text, "check query failed");
    let finding = Finding::blocker(server, check, format!("could not check: {text}"));
    Ok(if err.kind() == ErrorKind::Privilege {
        finding.with_fix(
            "run pgmig check as a role that may read this (a superuser, a member of \
             rds_superuser, or of pg_monitor / pg_read_all_settings on 10+)",
        )
    } else {
        finding
    })
}

/// Byte counts as people read them: `512 B`, `1.5 MiB`, `12.0 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Ok < Severity::Warn);
        assert!(Severity::Warn < Severity::Blocker);
        assert_eq!(
            serde_json::to_string(&Severity::Blocker).unwrap(),
            "\"blocker\""
        );
    }

    #[test]
    fn check_ids_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for id in ids::ALL {
            assert!(seen.insert(*id), "{id} twice");
            let (area, what) = id.split_once('.').expect("area.what");
            assert!(
                ["source", "replica", "target", "data"].contains(&area),
                "{id}"
            );
            assert!(!what.is_empty() && what.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(ids::lookup("source.wal_level"), Some(ids::SOURCE_WAL_LEVEL));
        assert_eq!(ids::lookup("source.nope"), None);
    }

    #[test]
    fn findings_round_trip_through_json() {
        let f = Finding::blocker(
            ServerRole::Source,
            ids::SOURCE_WAL_LEVEL,
            "wal_level is replica",
        )
        .with_fix("wal_level = logical");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"server":"source","check":"source.wal_level","severity":"blocker","summary":"wal_level is replica","fix":"wal_level = logical"}"#
        );
        assert_eq!(serde_json::from_str::<Finding>(&json).unwrap(), f);
        let unknown = json.replace("source.wal_level", "source.bogus");
        assert!(serde_json::from_str::<Finding>(&unknown).is_err());
    }

    #[test]
    fn error_text_walks_the_chain_once() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ERROR: permission denied")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("read the settings failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            error_text(&Outer(Inner)),
            "read the settings failed: ERROR: permission denied"
        );
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536 * 1024, "1.5 MiB"),
            (12 * 1024 * 1024 * 1024, "12.0 GiB"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(human_bytes(bytes), shown);
        }
    }
}
