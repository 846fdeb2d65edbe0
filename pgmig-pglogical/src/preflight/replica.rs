//! Checks of the maintenance replica: a standby, of *this* source (same
//! system identifier), streaming, and how far its replay is behind.

use pgmig_core::admin::{self, ReplayPauseState};
use pgmig_core::{Lsn, Major, Result, ServerRole, ServerVersion};
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;
use tracing::debug;

use super::finding::{Finding, human_bytes, ids, query_failed};

const REPLICA: ServerRole = ServerRole::Replica;

/// The WAL receiver query for `major`. `pg_stat_wal_receiver` exists from
/// 9.6; 13 replaced `received_lsn` by `written_lsn` and `flushed_lsn` (the
/// same meaning as the old column is `flushed_lsn`); 11 added
/// `sender_host` and `sender_port`.
pub(crate) fn wal_receiver_sql(major: Major) -> String {
    let flushed = if major >= Major::V13 {
        "flushed_lsn"
    } else {
        "received_lsn"
    };
    let sender = if major >= Major::V11 {
        "sender_host::text, sender_port"
    } else {
        "NULL::text, NULL::int4"
    };
    format!("SELECT status::text, {flushed}, {sender}, slot_name::text FROM pg_stat_wal_receiver")
}

/// What `pg_stat_wal_receiver` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalReceiver {
    /// `streaming`, `starting`, `waiting`, …; `None` when hidden from this
    /// role (10+: only superusers and `pg_read_all_stats` see it).
    pub(crate) status: Option<String>,
    pub(crate) flushed: Option<Lsn>,
    pub(crate) sender: Option<String>,
    pub(crate) slot: Option<String>,
}

async fn wal_receiver(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<Option<WalReceiver>> {
    let row = client
        .query_opt(&wal_receiver_sql(version.major()), &[])
        .await
        .map_err(pgmig_core::Error::query("read pg_stat_wal_receiver"))?;
    Ok(row.map(|r| {
        let host: Option<String> = r.get(2);
        let port: Option<i32> = r.get(3);
        WalReceiver {
            status: r.get(0),
            flushed: r.get::<_, Option<PgLsn>>(1).map(Lsn::from),
            sender: host.map(|h| match port {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }),
            slot: r.get(4),
        }
    }))
}

/// Checks the maintenance replica against the source: its version (the
/// source's major), that it is in recovery, that it has the source's system
/// identifier, that its WAL receiver streams, and how many bytes its replay
/// is behind the source's current WAL position.
///
/// A query that fails becomes a blocker; a lost connection (on either
/// server) is the error.
#[tracing::instrument(name = "check_replica", skip_all)]
pub async fn check_replica(
    replica: &impl GenericClient,
    source: &impl GenericClient,
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let version = match ServerVersion::query(replica).await {
        Ok(v) => v,
        Err(e) => {
            out.push(query_failed(REPLICA, ids::REPLICA_VERSION, e)?);
            return Ok(out);
        }
    };
    let source_version = ServerVersion::query(source).await.ok();
    out.push(match source_version {
        Some(sv) if sv.major() != version.major() => Finding::blocker(
            REPLICA,
            ids::REPLICA_VERSION,
            format!(
                "the replica runs PostgreSQL {version}, the source {sv}: a physical standby \
                 has its primary's major version"
            ),
        )
        .with_fix("point --replica at a physical standby of the source"),
        _ => Finding::ok(
            REPLICA,
            ids::REPLICA_VERSION,
            format!("PostgreSQL {version}"),
        ),
    });

    let in_recovery = match admin::is_in_recovery(replica).await {
        Ok(true) => {
            out.push(Finding::ok(
                REPLICA,
                ids::REPLICA_IN_RECOVERY,
                "a standby (in recovery)",
            ));
            true
        }
        Ok(false) => {
            out.push(
                Finding::blocker(
                    REPLICA,
                    ids::REPLICA_IN_RECOVERY,
                    "not a standby: pg_is_in_recovery() is false, so replay cannot be paused at P",
                )
                .with_fix(
                    "point --replica (PGMIG_REPLICA, [replica] dsn) at the maintenance replica: a \
                     physical standby streaming from the source (pg_basebackup -R), not a promoted \
                     server or the source itself",
                ),
            );
            false
        }
        Err(e) => {
            out.push(query_failed(REPLICA, ids::REPLICA_IN_RECOVERY, e)?);
            false
        }
    };

    out.push(system_identifier_finding(replica, source).await?);

    if in_recovery {
        out.push(match wal_receiver(replica, version).await {
            Ok(receiver) => streaming_finding(receiver.as_ref()),
            Err(e) => query_failed(REPLICA, ids::REPLICA_STREAMING, e)?,
        });
        out.push(lag_finding(replica, version, source, source_version).await?);
    }
    debug!(findings = out.len(), "replica checked");
    Ok(out)
}

async fn system_identifier_finding(
    replica: &impl GenericClient,
    source: &impl GenericClient,
) -> Result<Finding> {
    let id = ids::REPLICA_SYSTEM_IDENTIFIER;
    let theirs = match admin::system_identifier(replica).await {
        Ok(s) => s,
        Err(e) => return query_failed(REPLICA, id, e),
    };
    let ours = match admin::system_identifier(source).await {
        Ok(s) => s,
        Err(e) => return query_failed(REPLICA, id, e),
    };
    Ok(if theirs == ours {
        Finding::ok(
            REPLICA,
            id,
            format!("same system identifier as the source: {ours}"),
        )
    } else {
        Finding::blocker(
            REPLICA,
            id,
            format!(
                "the replica streams from a different primary: system identifier {theirs} ≠ {ours} (source)"
            ),
        )
        .with_fix(
            "point --replica at a physical standby made from this source (pg_basebackup from \
             the source); P taken on another cluster would say nothing about this source's slots",
        )
    })
}

/// Judges `pg_stat_wal_receiver`; pure.
pub(crate) fn streaming_finding(receiver: Option<&WalReceiver>) -> Finding {
    let id = ids::REPLICA_STREAMING;
    let Some(r) = receiver else {
        return Finding::blocker(
            REPLICA,
            id,
            "no WAL receiver: the replica does not stream from a primary (it may replay from \
             an archive only, or fail to connect)",
        )
        .with_fix(
            "check primary_conninfo on the replica and its server log; the source's \
             pg_hba.conf must allow its replication connection",
        );
    };
    let from = r
        .sender
        .as_deref()
        .map(|s| format!(" from {s}"))
        .unwrap_or_default();
    let slot = r
        .slot
        .as_deref()
        .map(|s| format!(", slot {s}"))
        .unwrap_or_default();
    let flushed = r
        .flushed
        .map(|l| format!(", received up to {l}"))
        .unwrap_or_default();
    match r.status.as_deref() {
        Some("streaming") => Finding::ok(REPLICA, id, format!("streaming{from}{slot}{flushed}")),
        Some(other) => Finding::warn(
            REPLICA,
            id,
            format!("the WAL receiver is {other}, not streaming{from}{slot}"),
        )
        .with_fix("wait until it streams, or read the replica's server log for why it does not"),
        None => Finding::warn(
            REPLICA,
            id,
            "the WAL receiver's status is hidden from this role",
        )
        .with_fix("run pgmig check as a superuser, or GRANT pg_read_all_stats to the role (10+)"),
    }
}

async fn lag_finding(
    replica: &impl GenericClient,
    version: ServerVersion,
    source: &impl GenericClient,
    source_version: Option<ServerVersion>,
) -> Result<Finding> {
    let id = ids::REPLICA_LAG;
    let replayed = match admin::last_replay_lsn(replica, version).await {
        Ok(l) => l,
        Err(e) if e.kind() == pgmig_core::ErrorKind::Connection => return Err(e),
        Err(e) => {
            return Ok(Finding::warn(
                REPLICA,
                id,
                format!(
                    "cannot tell how far behind: {}",
                    super::finding::error_text(&e)
                ),
            ));
        }
    };
    let paused = match admin::replay_pause_state(replica, version).await {
        Ok(ReplayPauseState::NotPaused) => "",
        Ok(ReplayPauseState::PauseRequested) => "; a replay pause is requested",
        Ok(ReplayPauseState::Paused) => "; replay is paused",
        Err(e) => return query_failed(REPLICA, id, e),
    };
    let head = match source_version {
        Some(sv) => match admin::current_wal_lsn(source, sv).await {
            Ok(l) => l,
            Err(e) => return query_failed(REPLICA, id, e),
        },
        None => {
            return Ok(Finding::warn(
                REPLICA,
                id,
                format!("replayed up to {replayed}; the source's position is unknown{paused}"),
            ));
        }
    };
    Ok(judge_lag(replayed, head, paused))
}

/// Judges the replay position against the source's current position; pure.
pub(crate) fn judge_lag(replayed: Lsn, head: Lsn, paused: &str) -> Finding {
    let id = ids::REPLICA_LAG;
    match head.checked_distance(replayed) {
        Some(behind) => Finding::ok(
            REPLICA,
            id,
            format!(
                "{behind} bytes ({}) behind: replayed {replayed}, source at {head}{paused}",
                human_bytes(behind)
            ),
        ),
        None => Finding::warn(
            REPLICA,
            id,
            format!(
                "replayed {replayed}, ahead of the source's current {head}: the replica's WAL \
                 does not come from this source"
            ),
        )
        .with_fix("point --replica at a physical standby of this source"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::finding::Severity;

    #[test]
    fn wal_receiver_sql_is_gated_per_version() {
        let cases: &[(Major, &str, bool)] = &[
            (Major::V9_6, "received_lsn", false),
            (Major::V10, "received_lsn", false),
            (Major::V11, "received_lsn", true),
            (Major::V12, "received_lsn", true),
            (Major::V13, "flushed_lsn", true),
            (Major::V18, "flushed_lsn", true),
        ];
        for (major, lsn_column, sender) in cases {
            let sql = wal_receiver_sql(*major);
            assert!(sql.contains(lsn_column), "{major}: {sql}");
            assert_eq!(sql.contains("sender_host"), *sender, "{major}: {sql}");
        }
        for major in Major::ALL {
            let sql = wal_receiver_sql(major);
            assert_eq!(sql.contains("received_lsn"), major < Major::V13, "{major}");
        }
        assert_eq!(
            wal_receiver_sql(Major::V9_6),
            "SELECT status::text, received_lsn, NULL::text, NULL::int4, slot_name::text FROM pg_stat_wal_receiver"
        );
    }

    #[test]
    fn streaming_states() {
        assert_eq!(streaming_finding(None).severity, Severity::Blocker);
        let mut r = WalReceiver {
            status: Some("streaming".into()),
            flushed: Some(Lsn(0x0100_0000)),
            sender: Some("10.0.0.1:5432".into()),
            slot: None,
        };
        let ok = streaming_finding(Some(&r));
        assert_eq!(ok.severity, Severity::Ok);
        assert_eq!(
            ok.summary,
            "streaming from 10.0.0.1:5432, received up to 0/1000000"
        );
        r.status = Some("waiting".into());
        assert_eq!(streaming_finding(Some(&r)).severity, Severity::Warn);
        r.status = None;
        assert!(
            streaming_finding(Some(&r))
                .fix
                .unwrap()
                .contains("pg_read_all_stats")
        );
    }

    #[test]
    fn lag_is_counted_in_bytes() {
        let ok = judge_lag(Lsn(0x1_0000_0000), Lsn(0x1_0010_0000), "; replay is paused");
        assert_eq!(ok.severity, Severity::Ok);
        assert_eq!(
            ok.summary,
            "1048576 bytes (1.0 MiB) behind: replayed 1/0, source at 1/100000; replay is paused"
        );
        let ahead = judge_lag(Lsn(0x3000000), Lsn(0x19207D8), "");
        assert_eq!(ahead.severity, Severity::Warn);
        assert!(
            ahead
                .summary
                .contains("ahead of the source's current 0/19207D8")
        );
    }
}
