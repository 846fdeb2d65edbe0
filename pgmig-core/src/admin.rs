//! Version-aware admin calls: one small async function per question or
//! action, generic over [`GenericClient`] so each works on a client, a
//! transaction or a pooled connection.
//!
//! PostgreSQL 10 renamed the WAL functions (`xlog` → `wal`, `location` →
//! `lsn`); [`WalFunctions::for_major`] picks the names once, next to the
//! comparison that needs them, and every call below uses it.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::version::{Major, ServerVersion};

/// The names of the WAL functions on one major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFunctions {
    /// Current write LSN on a primary.
    pub current_lsn: &'static str,
    /// Last LSN replayed by a standby.
    pub last_replay_lsn: &'static str,
    /// Last LSN received (and flushed) by a standby's WAL receiver.
    pub last_receive_lsn: &'static str,
    /// Pause replay on a standby.
    pub replay_pause: &'static str,
    /// Resume replay on a standby.
    pub replay_resume: &'static str,
    /// Whether a pause was requested (before 14: and, by then, taken).
    pub is_replay_paused: &'static str,
    /// Byte distance of two LSNs.
    pub lsn_diff: &'static str,
    /// The detailed pause state (`not paused`, `pause requested`, `paused`),
    /// from 14 on; `None` before.
    pub replay_pause_state: Option<&'static str>,
}

impl WalFunctions {
    /// The function names of `major`.
    pub fn for_major(major: Major) -> WalFunctions {
        if major >= Major::V10 {
            WalFunctions {
                current_lsn: "pg_current_wal_lsn",
                last_replay_lsn: "pg_last_wal_replay_lsn",
                last_receive_lsn: "pg_last_wal_receive_lsn",
                replay_pause: "pg_wal_replay_pause",
                replay_resume: "pg_wal_replay_resume",
                is_replay_paused: "pg_is_wal_replay_paused",
                lsn_diff: "pg_wal_lsn_diff",
                // pg_get_wal_replay_pause_state() arrived in 14; before it,
                // "paused" only means that a pause was requested.
                replay_pause_state: (major >= Major::V14)
                    .then_some("pg_get_wal_replay_pause_state"),
            }
        } else {
            WalFunctions {
                current_lsn: "pg_current_xlog_location",
                last_replay_lsn: "pg_last_xlog_replay_location",
                last_receive_lsn: "pg_last_xlog_receive_location",
                replay_pause: "pg_xlog_replay_pause",
                replay_resume: "pg_xlog_replay_resume",
                is_replay_paused: "pg_is_xlog_replay_paused",
                lsn_diff: "pg_xlog_location_diff",
                replay_pause_state: None,
            }
        }
    }
}

/// Where a standby's WAL replay stands with respect to a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPauseState {
    /// Replay runs.
    NotPaused,
    /// A pause was requested and replay has not stopped yet (14+ only).
    PauseRequested,
    /// Replay has stopped.
    Paused,
}

/// The polling interval of the waits below.
const POLL: Duration = Duration::from_millis(50);

fn lsn_of(value: Option<PgLsn>) -> Option<Lsn> {
    value.map(Lsn::from)
}

/// Runs `sql`, whose first column is `pg_is_in_recovery()`, and fails with
/// [`Error::NotAStandby`] when the server is a primary.
async fn standby_query(
    client: &impl GenericClient,
    what: &str,
    sql: &str,
) -> Result<tokio_postgres::Row> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(Error::query(what))?;
    if !row.get::<_, bool>(0) {
        return Err(Error::NotAStandby { what: what.into() });
    }
    Ok(row)
}

/// Whether the server is a standby (`pg_is_in_recovery()`).
pub async fn is_in_recovery(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(Error::query("check whether the server is in recovery"))?;
    Ok(row.get(0))
}

/// The cluster's system identifier (`pg_control_system()`, 9.6+), the same on
/// a primary and every physical standby made from it, as `pg_controldata`
/// prints it.
pub async fn system_identifier(client: &impl GenericClient) -> Result<u64> {
    let row = client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .map_err(Error::query("read the system identifier"))?;
    // The server stores a uint64 and shows it as a signed bigint: reinterpret the bits.
    let signed: i64 = row.get(0);
    Ok(u64::from_ne_bytes(signed.to_ne_bytes()))
}

/// The current WAL write LSN of a primary. Fails with
/// [`Error::NotAPrimary`] on a standby.
pub async fn current_wal_lsn(client: &impl GenericClient, version: ServerVersion) -> Result<Lsn> {
    let f = WalFunctions::for_major(version.major());
    let what = "read the current WAL LSN";
    let sql = format!(
        "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE {}() END",
        f.current_lsn
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(Error::query(what))?;
    if row.get::<_, bool>(0) {
        return Err(Error::NotAPrimary { what: what.into() });
    }
    lsn_of(row.get(1)).ok_or_else(|| Error::Protocol {
        what: what.into(),
        detail: "NULL".into(),
    })
}

/// The last LSN a standby has replayed. Fails with [`Error::NotAStandby`] on a
/// primary.
pub async fn last_replay_lsn(client: &impl GenericClient, version: ServerVersion) -> Result<Lsn> {
    let f = WalFunctions::for_major(version.major());
    let what = "read the last replayed LSN";
    let sql = format!("SELECT pg_is_in_recovery(), {}()", f.last_replay_lsn);
    let row = standby_query(client, what, &sql).await?;
    lsn_of(row.get(1)).ok_or_else(|| Error::Protocol {
        what: what.into(),
        detail: "NULL: the standby has not replayed any WAL yet".into(),
    })
}

/// The last LSN a standby's WAL receiver has received and flushed, or `None`
/// when the standby is not streaming (it restores from an archive, or its
/// receiver has not started). Fails with [`Error::NotAStandby`] on a primary.
pub async fn last_receive_lsn(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<Option<Lsn>> {
    let f = WalFunctions::for_major(version.major());
    let what = "read the last received LSN";
    let sql = format!("SELECT pg_is_in_recovery(), {}()", f.last_receive_lsn);
    let row = standby_query(client, what, &sql).await?;
    Ok(lsn_of(row.get(1)))
}

/// The standby's replay pause state. Before 14 the server cannot tell a
/// requested pause from a taken one and this answers
/// [`ReplayPauseState::Paused`] as soon as a pause was requested; see
/// [`pause_replay`] for how pgmig waits for the real stop there. Fails with
/// [`Error::NotAStandby`] on a primary.
pub async fn replay_pause_state(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<ReplayPauseState> {
    let f = WalFunctions::for_major(version.major());
    let what = "read the replay pause state";
    // The recovery control functions raise an error on a primary: only call
    // them when in recovery, so a primary gets our NotAStandby.
    let sql = match f.replay_pause_state {
        Some(state) => {
            format!("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN {state}() END")
        }
        None => format!(
            "SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() THEN NULL \
             WHEN {}() THEN 'paused' ELSE 'not paused' END",
            f.is_replay_paused
        ),
    };
    let row = standby_query(client, what, &sql).await?;
    let state: String = row.get::<_, Option<String>>(1).unwrap_or_default();
    match state.as_str() {
        "not paused" => Ok(ReplayPauseState::NotPaused),
        "pause requested" => Ok(ReplayPauseState::PauseRequested),
        "paused" => Ok(ReplayPauseState::Paused),
        other => Err(Error::Protocol {
            what: what.into(),
            detail: format!("unknown state {other:?}"),
        }),
    }
}

/// Whether the standby's replay is paused (see [`replay_pause_state`]).
pub async fn is_replay_paused(client: &impl GenericClient, version: ServerVersion) -> Result<bool> {
    Ok(replay_pause_state(client, version).await? == ReplayPauseState::Paused)
}

/// Pauses WAL replay on a standby and returns the LSN it stopped at, once the
/// standby has really stopped.
///
/// From 14 on, this waits until `pg_get_wal_replay_pause_state()` says
/// `paused`. Before 14 the server only records the request and replay stops
/// before the next WAL record, so this waits until the replay LSN reads the
/// same twice, `settle` apart, with the pause still requested. That is a
/// heuristic: before 14 no server function tells a requested pause from a
/// taken one (10–12 sleep in the pause without a wait event), so a single
/// record whose replay takes longer than `settle` (a recovery conflict wait)
/// could still move the LSN; the snapshot re-checks P after its proofs.
/// Fails with [`Error::NotAStandby`] on a primary and with
/// [`Error::Timeout`] after `timeout` (the pause request then stays in place:
/// call [`resume_replay`] to undo it).
pub async fn pause_replay(
    client: &impl GenericClient,
    version: ServerVersion,
    timeout: Duration,
    settle: Duration,
) -> Result<Lsn> {
    let f = WalFunctions::for_major(version.major());
    let what = "pause WAL replay";
    if !is_in_recovery(client).await? {
        return Err(Error::NotAStandby { what: what.into() });
    }
    client
        .execute(&format!("SELECT {}()", f.replay_pause), &[])
        .await
        .map_err(Error::query(what))?;
    let deadline = Instant::now() + timeout;
    let mut last: Option<Lsn> = None;
    loop {
        let state = replay_pause_state(client, version).await?;
        if state == ReplayPauseState::NotPaused {
            return Err(Error::Protocol {
                what: what.into(),
                detail: "the pause was undone by another session while pgmig waited".into(),
            });
        }
        let lsn = last_replay_lsn(client, version).await?;
        if state == ReplayPauseState::Paused {
            if f.replay_pause_state.is_some() || last == Some(lsn) {
                return Ok(lsn);
            }
            last = Some(lsn);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.into(),
                after: timeout,
            });
        }
        let wait = if f.replay_pause_state.is_some() {
            POLL
        } else {
            settle
        };
        sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Resumes WAL replay on a standby and returns once the server reports that
/// replay runs. Resuming a standby that is not paused is not an error. Fails
/// with [`Error::NotAStandby`] on a primary and [`Error::Timeout`] after
/// `timeout`.
pub async fn resume_replay(
    client: &impl GenericClient,
    version: ServerVersion,
    timeout: Duration,
) -> Result<()> {
    let f = WalFunctions::for_major(version.major());
    let what = "resume WAL replay";
    if !is_in_recovery(client).await? {
        return Err(Error::NotAStandby { what: what.into() });
    }
    client
        .execute(&format!("SELECT {}()", f.replay_resume), &[])
        .await
        .map_err(Error::query(what))?;
    let deadline = Instant::now() + timeout;
    while replay_pause_state(client, version).await? != ReplayPauseState::NotPaused {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.into(),
                after: timeout,
            });
        }
        sleep(POLL).await;
    }
    Ok(())
}

/// Waits until a standby has replayed at least `target`; returns the replay
/// LSN reached. Fails with [`Error::Timeout`] after `timeout`.
pub async fn wait_for_replay(
    client: &impl GenericClient,
    version: ServerVersion,
    target: Lsn,
    timeout: Duration,
) -> Result<Lsn> {
    let deadline = Instant::now() + timeout;
    loop {
        let lsn = last_replay_lsn(client, version).await?;
        if lsn >= target {
            return Ok(lsn);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("replay up to {target} (replayed {lsn})"),
                after: timeout,
            });
        }
        sleep(POLL).await;
    }
}

/// The byte distance `a - b` computed by the server (`pg_wal_lsn_diff`, 9.6:
/// `pg_xlog_location_diff`); negative when `b` is ahead. pgmig computes
/// distances itself with [`Lsn::signed_distance`]; this exists to cross-check
/// against the server and for SQL shown to DBAs.
pub async fn lsn_distance_on_server(
    client: &impl GenericClient,
    version: ServerVersion,
    a: Lsn,
    b: Lsn,
) -> Result<i128> {
    let f = WalFunctions::for_major(version.major());
    let what = "compute an LSN distance";
    let sql = format!("SELECT {}($1, $2)::text", f.lsn_diff);
    let row = client
        .query_one(&sql, &[&PgLsn::from(a), &PgLsn::from(b)])
        .await
        .map_err(Error::query(what))?;
    let text: String = row.get(0);
    // numeric, printed without a fraction for whole numbers.
    text.trim_end_matches(".0")
        .parse()
        .map_err(|_| Error::Protocol {
            what: what.into(),
            detail: format!("{text:?} is not an integer"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_per_major() {
        let old = WalFunctions::for_major(Major::V9_6);
        assert_eq!(old.current_lsn, "pg_current_xlog_location");
        assert_eq!(old.last_replay_lsn, "pg_last_xlog_replay_location");
        assert_eq!(old.last_receive_lsn, "pg_last_xlog_receive_location");
        assert_eq!(old.replay_pause, "pg_xlog_replay_pause");
        assert_eq!(old.replay_resume, "pg_xlog_replay_resume");
        assert_eq!(old.is_replay_paused, "pg_is_xlog_replay_paused");
        assert_eq!(old.lsn_diff, "pg_xlog_location_diff");
        assert_eq!(old.replay_pause_state, None);

        for major in Major::ALL.into_iter().filter(|m| *m >= Major::V10) {
            let f = WalFunctions::for_major(major);
            assert_eq!(f.current_lsn, "pg_current_wal_lsn", "{major}");
            assert_eq!(f.last_replay_lsn, "pg_last_wal_replay_lsn", "{major}");
            assert_eq!(f.last_receive_lsn, "pg_last_wal_receive_lsn", "{major}");
            assert_eq!(f.replay_pause, "pg_wal_replay_pause", "{major}");
            assert_eq!(f.replay_resume, "pg_wal_replay_resume", "{major}");
            assert_eq!(f.is_replay_paused, "pg_is_wal_replay_paused", "{major}");
            assert_eq!(f.lsn_diff, "pg_wal_lsn_diff", "{major}");
            let state = (major >= Major::V14).then_some("pg_get_wal_replay_pause_state");
            assert_eq!(f.replay_pause_state, state, "{major}");
        }
    }

    #[test]
    fn no_version_mixes_old_and_new_names() {
        for major in Major::ALL {
            let f = WalFunctions::for_major(major);
            let names = [
                f.current_lsn,
                f.last_replay_lsn,
                f.last_receive_lsn,
                f.replay_pause,
                f.replay_resume,
                f.is_replay_paused,
                f.lsn_diff,
            ];
            let old = names.iter().filter(|n| n.contains("xlog")).count();
            assert!(old == 0 || old == names.len(), "{major}: {names:?}");
            assert_eq!(old == names.len(), major == Major::V9_6, "{major}");
        }
    }
}
