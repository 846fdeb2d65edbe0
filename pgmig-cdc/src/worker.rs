//! One slot's applier: read the slot's changes through its two sets, skip
//! what the target already holds, apply the rest with the progress row,
//! then advance the slot; reconnect after a lost connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use pgmig_core::admin::current_wal_lsn;
use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::decoder::{PEEK_CHANGES_SQL, decoding_options};
use pgmig_pglogical::slot::find_slot;
use pgmig_pglogical::{Change, Message, RawChange, TransactionError};
use tokio_postgres::types::{PgLsn, ToSql};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::advance::advance_slot;
use crate::apply::{Applied, Applier};
use crate::error::CdcError;
use crate::progress::{Progress, init_progress};
use crate::{CdcEvent, CdcOptions, EventFn, SlotReport};

/// The advisory lock an applier holds on the target for its slot.
pub const LOCK_SQL: &str = "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pgmig cdc'), pg_catalog.hashtext($1))";

/// The advisory lock a run holds on the target while its workers take
/// their slots' locks (a space keeps it apart from every slot name).
pub const GATE_SQL: &str = "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pgmig cdc'), pg_catalog.hashtext('pgmig cdc start'))";

/// How an applier's target session is set up: as a replica (no triggers,
/// no foreign-key checks), and waiting at most `lock_timeout` for a lock.
pub(crate) fn session_sql(lock_timeout: Duration) -> String {
    format!(
        "SET session_replication_role = replica; SET lock_timeout = '{}ms'",
        lock_timeout.as_millis()
    )
}

/// How long a cancelled worker may take to finish the batch in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Notices when a session gets no answer for too long: the session marks
/// each step it starts and each answer it gets; [`Watchdog::expired`]
/// resolves once none came for `limit`. It also knows the attempt's
/// server sessions, so [`stalled`] can look at what they are doing.
pub(crate) struct Watchdog {
    limit: Duration,
    last: std::sync::Mutex<(Instant, &'static str, &'static str)>,
    backends: std::sync::Mutex<Vec<Backend>>,
}

impl Watchdog {
    fn new(limit: Duration) -> Watchdog {
        Watchdog {
            limit,
            last: std::sync::Mutex::new((Instant::now(), "source", "connecting")),
            backends: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// An answer came, or a new step begins on `server`.
    fn step(&self, server: &'static str, doing: &'static str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = (Instant::now(), server, doing);
    }

    /// An answer came (or the server is working on the step): the step goes on.
    pub(crate) fn touch(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.0 = Instant::now();
    }

    /// Resolves with the stalled server, step and wait once no answer came
    /// for the limit.
    async fn expired(&self) -> (&'static str, &'static str, Duration) {
        loop {
            let (at, server, doing) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
            let idle = at.elapsed();
            if idle >= self.limit {
                return (server, doing, idle);
            }
            tokio::time::sleep((self.limit - idle).max(Duration::from_millis(100))).await;
        }
    }

    /// This attempt's session on a server is `backend`.
    fn record(&self, backend: Backend) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.retain(|b| b.server != backend.server);
        backends.push(backend);
    }

    /// This attempt's session on `server`, once known.
    fn backend(&self, server: &str) -> Option<Backend> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.iter().find(|b| b.server == server).cloned()
    }

    /// This attempt's sessions.
    fn backends(&self) -> Vec<Backend> {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A server session of one attempt of an applier: its backend pid, its
/// start time (`pg_stat_activity.backend_start` as text, so a reused pid is
/// told apart) and the attempt's own `application_name` (so a server
/// backend that a pooler handed on to another client is told apart too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    server: &'static str,
    pid: i32,
    started: String,
    application_name: String,
}

const BACKEND_SQL: &str = "SELECT pg_catalog.pg_backend_pid(), backend_start::text, application_name \
     FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()";

/// What a session of this applier is doing, seen from another connection.
const ACTIVITY_SQL: &str = "SELECT state, wait_event_type, wait_event FROM pg_catalog.pg_stat_activity \
     WHERE pid = $1 AND backend_start::text = $2 AND application_name = $3";

/// Ends a backend of this applier's earlier attempt if it still runs: after
/// a stall or a partition the server may not have noticed that pgmig gave
/// it up, and it would keep holding the slot (source) or the slot's lock and
/// the rows of a batch that will never commit (target). A commit waiting for
/// a synchronous standby (`wait_event` `SyncRep`) is not cut short: ending
/// it would leave a commit on the target that the standby may not have.
/// The first column says whether it waits so.
const END_SESSION_SQL: &str = "SELECT wait_event IS NOT DISTINCT FROM 'SyncRep', \
     CASE WHEN wait_event IS DISTINCT FROM 'SyncRep' THEN pg_catalog.pg_terminate_backend(pid) END \
     FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND backend_start::text = $2 AND application_name = $3";

/// The most an `application_name` holds (`NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;

/// A new `application_name` for one attempt on `slot`:
/// `pgmig cdc <slot> <random>`, printable ASCII, at most 63 bytes with the
/// random part kept whole.
fn attempt_name(slot: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let tag = format!("{:012x}", h.finish() & 0xffff_ffff_ffff);
    let mut name: String = format!("pgmig cdc {slot}")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_NAME - 1 - tag.len())
        .collect();
    name.push(' ');
    name.push_str(&tag);
    name
}

async fn backend(client: &tokio_postgres::Client, server: &'static str) -> Option<Backend> {
    let row = client.query_opt(BACKEND_SQL, &[]).await.ok()??;
    Some(Backend {
        server,
        pid: row.get(0),
        started: row.get(1),
        application_name: row.try_get::<_, Option<String>>(2).ok()??,
    })
}

/// What a backend was doing: its `state`, `wait_event_type` and
/// `wait_event` in `pg_stat_activity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    state: Option<String>,
    wait_event_type: Option<String>,
    wait_event: Option<String>,
}

impl Activity {
    /// Whether the server is working on our statement: it runs it and is
    /// not waiting on us (`Client`: blocked sending to or reading from a
    /// network that stalled) nor on another session's lock (`Lock`: bounded
    /// by `lock_timeout`; with none, such a wait counts as a stall). Busy
    /// on CPU, I/O, an LWLock or a synchronous standby (`IPC`/`SyncRep`) is
    /// working.
    fn working(&self) -> bool {
        self.state.as_deref() == Some("active")
            && !matches!(self.wait_event_type.as_deref(), Some("Client" | "Lock"))
    }
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.state.as_deref().unwrap_or("no state"))?;
        match (&self.wait_event_type, &self.wait_event) {
            (Some(t), Some(e)) => write!(f, ", waiting on {t}/{e}"),
            _ => Ok(()),
        }
    }
}

/// The most one look at a session may take (connect and query); less
/// when the stall timeout is shorter.
const LOOK_LIMIT: Duration = Duration::from_secs(30);

/// What `backend` is doing, asked on a new short-lived connection.
async fn look_at(config: &ConnConfig, backend: &Backend) -> Result<Option<Activity>, CdcError> {
    let client = config
        .clone()
        .with_application_name("pgmig cdc watchdog")
        .connect()
        .await?;
    let row = client
        .query_opt(
            ACTIVITY_SQL,
            &[&backend.pid, &backend.started, &backend.application_name],
        )
        .await
        .map_err(pgmig_core::Error::query("read pg_stat_activity"))?;
    Ok(row.map(|r| Activity {
        state: r.get(0),
        wait_event_type: r.get(1),
        wait_event: r.get(2),
    }))
}

/// Resolves once a step of the attempt is stalled: no answer came for the
/// watchdog's limit, and the server is not working on it either. When the
/// limit passes, the step's session is looked at from a second connection
/// (bounded by the stall timeout, at most [`LOOK_LIMIT`]); a server still
/// running our statement (a long slot advance or read, a large apply, a
/// commit waiting for a synchronous standby) restarts the wait. A stall is
/// a second connection that gets no answer either, or a session that is
/// gone, idle, or blocked on the network.
async fn stalled(job: &SlotJob, watchdog: &Watchdog) -> (&'static str, &'static str, Duration) {
    let slot = job.slot.as_str();
    loop {
        let (server, doing, idle) = watchdog.expired().await;
        let Some(backend) = watchdog.backend(server) else {
            return (server, doing, idle);
        };
        let config = if server == "source" {
            &job.source
        } else {
            &job.target
        };
        let limit = job.opts.stall_timeout.min(LOOK_LIMIT);
        match tokio::time::timeout(limit, look_at(config, &backend)).await {
            Ok(Ok(Some(activity))) if activity.working() => {
                info!(slot, server, pid = backend.pid, doing, activity = %activity,
                    idle_s = idle.as_secs(), "no answer yet, but the server is working on it; waiting");
                watchdog.touch();
            }
            Ok(Ok(Some(activity))) => {
                warn!(slot, server, pid = backend.pid, doing, activity = %activity,
                    "no answer, and the session is not working on it");
                return (server, doing, idle);
            }
            Ok(Ok(None)) => {
                warn!(
                    slot,
                    server,
                    pid = backend.pid,
                    doing,
                    "no answer, and the session is gone"
                );
                return (server, doing, idle);
            }
            Ok(Err(e)) => {
                warn!(slot, server, doing, error = %error_chain(&e),
                    "no answer, and a second connection could not look at the session");
                return (server, doing, idle);
            }
            Err(_) => {
                warn!(
                    slot,
                    server,
                    doing,
                    waited_s = limit.as_secs(),
                    "no answer, and none on a second connection either"
                );
                return (server, doing, idle);
            }
        }
    }
}

/// Ends the sessions of earlier attempts on `server` (see
/// [`END_SESSION_SQL`]) and waits until they are gone, so that the slot
/// and its lock are free. Waits at most `opts.lock_wait` (then fails
/// transiently: the next attempt goes on waiting, within
/// `opts.reconnect_timeout`); `abandoned` keeps the sessions that remain.
async fn end_abandoned(
    client: &tokio_postgres::Client,
    job: &SlotJob,
    server: &'static str,
    abandoned: &mut Vec<Backend>,
    watchdog: &Watchdog,
) -> Result<(), CdcError> {
    let slot = job.slot.as_str();
    let began = Instant::now();
    let mut said: Option<bool> = None;
    while let Some(b) = abandoned.iter().find(|b| b.server == server).cloned() {
        watchdog.touch();
        let row = match client
            .query_opt(END_SESSION_SQL, &[&b.pid, &b.started, &b.application_name])
            .await
        {
            Ok(row) => row,
            Err(e) => {
                warn!(slot, server, pid = b.pid, error = %e,
                    "could not end this applier's abandoned session");
                abandoned.retain(|a| *a != b);
                continue;
            }
        };
        let Some(row) = row else {
            if said.is_some() {
                info!(
                    slot,
                    server,
                    pid = b.pid,
                    "this applier's abandoned session ended"
                );
            }
            abandoned.retain(|a| *a != b);
            said = None;
            continue;
        };
        let sync_rep: bool = row.get(0);
        if said != Some(sync_rep) {
            if sync_rep {
                warn!(
                    slot,
                    server,
                    pid = b.pid,
                    "this applier's abandoned session waits for a synchronous standby to confirm its \
                     commit; waiting for it"
                );
            } else {
                warn!(
                    slot,
                    server,
                    pid = b.pid,
                    "ending this applier's abandoned session"
                );
            }
            said = Some(sync_rep);
        }
        if began.elapsed() >= job.opts.lock_wait {
            return Err(CdcError::AbandonedSession {
                slot: slot.to_owned(),
                server,
                pid: b.pid,
                waited_s: began.elapsed().as_secs_f64(),
                sync_rep,
            });
        }
        tokio::select! {
            _ = job.cancel.cancelled() => return Err(CdcError::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    Ok(())
}

/// What a slot worker needs.
#[derive(Clone)]
pub(crate) struct SlotJob {
    pub slot: String,
    pub sets: [String; 2],
    pub pause_lsn: Lsn,
    pub source: ConnConfig,
    pub target: ConnConfig,
    pub opts: CdcOptions,
    pub events: Option<EventFn>,
    pub cancel: CancellationToken,
}

impl SlotJob {
    fn emit(&self, event: CdcEvent) {
        if let Some(f) = &self.events {
            f(&event);
        }
    }

    fn sets(&self) -> [&str; 2] {
        [self.sets[0].as_str(), self.sets[1].as_str()]
    }
}

/// Checks that `slot` can be applied from where the target stands: the
/// slot must exist and must not be past `max(P, applied)`.
pub(crate) fn check_position(
    slot: &str,
    confirmed_flush: Option<Lsn>,
    pause_lsn: Lsn,
    progress: Option<&Progress>,
) -> Result<(), CdcError> {
    let applied = progress.map(|p| p.applied_end_lsn).unwrap_or(pause_lsn);
    let start = applied.max(pause_lsn);
    match confirmed_flush {
        Some(c) if c > start => Err(CdcError::SlotAhead {
            slot: slot.to_owned(),
            confirmed_flush: c,
            start,
            why: if start == pause_lsn {
                format!(
                    "P = {pause_lsn}: the slot was created after P, or another client consumed it"
                )
            } else {
                "the last applied commit: another client consumed the slot".to_owned()
            },
        }),
        _ => Ok(()),
    }
}

/// Runs one slot until caught up (with `until_caught_up`), cancelled, or
/// failed for good; lost connections are retried for
/// `opts.reconnect_timeout`.
///
/// `gate` is dropped once the worker tried its slot's lock (or ends).
pub(crate) async fn run_slot(
    job: SlotJob,
    mut gate: Option<tokio::sync::mpsc::Sender<()>>,
) -> Result<SlotReport, CdcError> {
    let mut report = SlotReport {
        slot: job.slot.clone(),
        start_lsn: job.pause_lsn,
        applied_end_lsn: job.pause_lsn,
        transactions: 0,
        changes: 0,
        caught_up: false,
        until_lsn: None,
        reconnects: 0,
    };
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    let mut abandoned: Vec<Backend> = Vec::new();
    let limit = job.opts.stall_timeout + job.opts.lock_timeout;
    loop {
        let before = (report.transactions, report.applied_end_lsn);
        let watchdog = Arc::new(Watchdog::new(limit));
        let outcome = {
            let mut running = Box::pin(session(
                &job,
                &mut report,
                &watchdog,
                &mut gate,
                &mut abandoned,
            ));
            tokio::select! {
                r = &mut running => Some(r),
                (server, doing, idle) = stalled(&job, &watchdog) => Some(Err(CdcError::Stalled {
                    slot: job.slot.clone(),
                    server,
                    doing,
                    idle_s: idle.as_secs_f64(),
                })),
                _ = job.cancel.cancelled() => {
                    // Let a batch in flight commit; a connection that does not
                    // come back is abandoned (its transaction rolls back).
                    tokio::time::timeout(STOP_GRACE, &mut running).await.ok()
                }
            }
        };
        // The next attempt ends what is left of this one's sessions.
        abandoned.extend(watchdog.backends());
        let Some(outcome) = outcome else {
            return Ok(report);
        };
        match outcome {
            Ok(()) => return Ok(report),
            // Stopping on request is not a failure, wherever it happens.
            Err(CdcError::Cancelled) if job.cancel.is_cancelled() => return Ok(report),
            Err(e) if e.is_transient() && !job.cancel.is_cancelled() => {
                if (report.transactions, report.applied_end_lsn) != before {
                    failing_since = None;
                    backoff = Duration::from_millis(250);
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > job.opts.reconnect_timeout {
                    return Err(e);
                }
                report.reconnects += 1;
                warn!(slot = %job.slot, error = %error_chain(&e), "lost a connection; reconnecting");
                job.emit(CdcEvent::Reconnecting {
                    slot: job.slot.clone(),
                    error: error_chain(&e),
                });
                tokio::select! {
                    _ = job.cancel.cancelled() => return Ok(report),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// One connected attempt: connect, end the abandoned sessions of earlier
/// attempts, lock the slot, then read, apply and advance until done.
/// The watchdog gets this attempt's sessions as soon as they are known;
/// `abandoned` keeps the earlier ones that could not be ended yet.
async fn session(
    job: &SlotJob,
    report: &mut SlotReport,
    watchdog: &Arc<Watchdog>,
    gate: &mut Option<tokio::sync::mpsc::Sender<()>>,
    abandoned: &mut Vec<Backend>,
) -> Result<(), CdcError> {
    let slot = job.slot.as_str();
    let sets = job.sets();
    // A name of this attempt's own: its sessions are told apart from any
    // other client's, also behind a pooler that reuses server backends.
    let name = attempt_name(slot);
    watchdog.step("source", "connecting");
    let source = job
        .source
        .clone()
        .with_application_name(&name)
        .connect()
        .await?;
    if let Some(b) = backend(&source, "source").await {
        watchdog.record(b);
    }
    let source_version = ServerVersion::query(&source).await?;
    watchdog.step("source", "ending the abandoned sessions");
    end_abandoned(&source, job, "source", abandoned, watchdog).await?;
    watchdog.step("target", "connecting");
    let target = job
        .target
        .clone()
        .with_application_name(&name)
        .connect()
        .await?;
    if let Some(b) = backend(&target, "target").await {
        watchdog.record(b);
    }
    let target_version = ServerVersion::query(&target).await?;
    watchdog.step("target", "ending the abandoned sessions");
    end_abandoned(&target, job, "target", abandoned, watchdog).await?;
    target
        .batch_execute(&session_sql(job.opts.lock_timeout))
        .await
        .map_err(|source| CdcError::Query {
            slot: slot.to_owned(),
            what: "set session_replication_role = replica and lock_timeout on the target".into(),
            source,
        })?;
    watchdog.step("target", "locking the slot");
    let locked = take_lock(job, &target, watchdog).await;
    gate.take();
    locked?;

    watchdog.step("target", "reading the applied position");
    let progress = init_progress(&target, slot, job.pause_lsn).await?;
    watchdog.step("source", "reading the slot's position");
    let info = find_slot(&source, source_version, slot)
        .await
        .map_err(pgmig_pglogical::Error::from)?
        .ok_or_else(|| CdcError::SlotMissing {
            slot: slot.to_owned(),
        })?;
    check_position(
        slot,
        info.confirmed_flush_lsn,
        job.pause_lsn,
        Some(&progress),
    )?;
    let mut applied = progress.applied_end_lsn.max(job.pause_lsn);
    if report.transactions == 0 && report.reconnects == 0 {
        report.start_lsn = applied;
    }
    report.applied_end_lsn = applied;
    if job.opts.until_caught_up && report.until_lsn.is_none() {
        watchdog.step("source", "reading its WAL position");
        report.until_lsn = Some(current_wal_lsn(&source, source_version).await?);
    }
    // Skip the transactions already in the target (before P, or applied
    // before a crash) without decoding them again.
    if info.confirmed_flush_lsn.is_some_and(|c| c < applied) {
        watchdog.step("source", "advancing the slot");
        advance_slot(&source, source_version, slot, &sets, applied).await?;
    }
    info!(slot, from = %applied, "applying");
    job.emit(CdcEvent::Started {
        slot: slot.to_owned(),
        applied_end_lsn: applied,
    });

    let mut applier = Applier::new(
        slot,
        target,
        target_version,
        job.opts.lock_timeout,
        watchdog.clone(),
    );
    let options = decoding_options(&sets);
    loop {
        if job.cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let read = read_batch(job, &source, &options, &mut applier, applied, watchdog).await;
        let batch = match read {
            Ok(batch) => batch,
            Err(e) => {
                applier.rollback().await;
                return Err(e);
            }
        };
        if batch.transactions > 0 {
            let committing = Instant::now();
            let done = Applied {
                transactions: batch.transactions,
                changes: batch.changes,
            };
            watchdog.step("target", "committing a batch");
            if let Err(e) = applier
                .commit(applied, batch.last_end, batch.commit_time, done)
                .await
            {
                applier.rollback().await;
                return Err(e);
            }
            let apply_ms = (batch.apply_time + committing.elapsed()).as_millis() as u64;
            applied = batch.last_end;
            report.applied_end_lsn = applied;
            report.transactions += done.transactions;
            report.changes += done.changes;
            watchdog.step("source", "reading its WAL position");
            let head = current_wal_lsn(&source, source_version).await?;
            job.emit(CdcEvent::Applied {
                slot: slot.to_owned(),
                transactions: done.transactions,
                changes: done.changes,
                applied_end_lsn: applied,
                lag_bytes: head.checked_distance(applied).unwrap_or(0),
                read_ms: (started.elapsed().as_millis() as u64).saturating_sub(apply_ms),
                apply_ms,
            });
        }
        watchdog.step("source", "advancing the slot");
        let before = advance_slot(&source, source_version, slot, &sets, applied).await?;
        if before > applied {
            return Err(CdcError::SlotAhead {
                slot: slot.to_owned(),
                confirmed_flush: before,
                start: applied,
                why: "the last applied commit: another client consumed the slot while pgmig applied it"
                    .into(),
            });
        }
        // Everything committed before the read began is applied.
        let drained = (batch.rows as i64) < job.opts.batch_changes;
        // Or everything committed before the worker began: under a write
        // load faster than one batch per read, reads may never come back
        // short.
        let passed = report.until_lsn.is_some_and(|goal| applied >= goal);
        if drained || passed {
            if job.opts.until_caught_up {
                report.caught_up = true;
                job.emit(CdcEvent::CaughtUp {
                    slot: slot.to_owned(),
                    applied_end_lsn: applied,
                });
                return Ok(());
            }
            watchdog.step("source", "waiting to read again");
            tokio::select! {
                _ = job.cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(job.opts.poll_interval) => {}
            }
        }
    }
}

/// What [`read_batch`] read and added to the open target transaction.
struct ReadBatch {
    /// Rows the slot returned.
    rows: usize,
    /// Source transactions committed after the applied position.
    transactions: u64,
    /// Their row changes and truncates.
    changes: u64,
    /// The last one's commit end LSN.
    last_end: Lsn,
    /// The last known commit time among them.
    commit_time: Option<String>,
    /// Time spent adding their changes to the target.
    apply_time: Duration,
}

/// A source transaction being read.
struct OpenTransaction {
    xid: u32,
    first_lsn: Lsn,
    /// Whether it certainly commits after the applied position: it began
    /// after it. Its changes go to the target as they stream in; the others
    /// wait for their commit, which says whether the target holds them.
    after_applied: bool,
    commit_time: Option<String>,
    changes: Vec<Change>,
}

/// Changes of a transaction sent to the target at once while it streams in.
const CHUNK_CHANGES: usize = 1000;

/// Reads one batch of the slot (up to `batch_changes` rows, whole
/// transactions) as the server streams it, and adds every transaction
/// committed after `applied` to the applier's target transaction, without
/// committing it. A source transaction is never held whole in memory
/// unless it began before `applied` (only after a crash).
async fn read_batch(
    job: &SlotJob,
    source: &tokio_postgres::Client,
    options: &[String],
    applier: &mut Applier,
    applied: Lsn,
    watchdog: &Watchdog,
) -> Result<ReadBatch, CdcError> {
    let slot = job.slot.as_str();
    let pg = |source| {
        CdcError::Pglogical(pgmig_pglogical::Error::Postgres {
            slot: slot.to_owned(),
            what: "pg_logical_slot_peek_changes",
            source,
        })
    };
    let order = |source| {
        CdcError::Pglogical(pgmig_pglogical::Error::Transaction {
            slot: slot.to_owned(),
            source,
        })
    };
    let limit = i32::try_from(job.opts.batch_changes).unwrap_or(i32::MAX);
    let params: [&(dyn ToSql + Sync); 4] = [&slot, &None::<PgLsn>, &Some(limit), &options];
    watchdog.step("source", "reading the slot's changes");
    let rows = source
        .query_raw(PEEK_CHANGES_SQL, params)
        .await
        .map_err(pg)?;
    let mut rows = std::pin::pin!(rows);
    let mut out = ReadBatch {
        rows: 0,
        transactions: 0,
        changes: 0,
        last_end: applied,
        commit_time: None,
        apply_time: Duration::ZERO,
    };
    let mut open: Option<OpenTransaction> = None;
    while let Some(row) = {
        watchdog.step("source", "reading the slot's changes");
        rows.try_next().await.map_err(pg)?
    } {
        out.rows += 1;
        let lsn: PgLsn = row.try_get(0).map_err(pg)?;
        let xid: String = row.try_get(1).map_err(pg)?;
        let raw = RawChange {
            lsn: lsn.into(),
            xid: xid.parse().map_err(|_| {
                CdcError::Pglogical(pgmig_pglogical::Error::Protocol {
                    slot: slot.to_owned(),
                    detail: format!("pg_logical_slot_peek_changes returned xid {xid:?}"),
                })
            })?,
            data: row.try_get(2).map_err(pg)?,
        };
        let change = raw.decode().map_err(|source| {
            CdcError::Pglogical(pgmig_pglogical::Error::Decode {
                slot: slot.to_owned(),
                lsn: raw.lsn,
                xid: raw.xid,
                source,
                consumed: Vec::new(),
            })
        })?;
        let Change { lsn, xid, message } = change;
        match message {
            Message::Startup(_) if open.is_none() => {}
            Message::Begin(begin) if open.is_none() => {
                open = Some(OpenTransaction {
                    xid,
                    first_lsn: begin.first_lsn,
                    after_applied: begin.first_lsn >= applied,
                    commit_time: begin.commit_time.map(|t| t.to_string()),
                    changes: Vec::new(),
                });
            }
            message @ (Message::Begin(_) | Message::Startup(_)) => {
                let tx = open.take().unwrap_or_else(|| unreachable!());
                return Err(order(TransactionError::BeginWithoutCommit {
                    xid: tx.xid,
                    first_lsn: tx.first_lsn,
                    next: message.kind(),
                    at: lsn,
                }));
            }
            Message::Commit(commit) => {
                let Some(mut tx) = open.take() else {
                    return Err(order(TransactionError::CommitWithoutBegin { at: lsn, xid }));
                };
                if commit.end_lsn > applied {
                    if !tx.changes.is_empty() {
                        let adding = Instant::now();
                        watchdog.step("target", "applying a batch");
                        out.changes += applier.add(&std::mem::take(&mut tx.changes)).await?;
                        out.apply_time += adding.elapsed();
                    }
                    out.transactions += 1;
                    out.last_end = commit.end_lsn;
                    out.commit_time = tx.commit_time.or(out.commit_time);
                } else if tx.after_applied {
                    // Cannot be: it began after the position and ended before.
                    return Err(CdcError::Pglogical(pgmig_pglogical::Error::Protocol {
                        slot: slot.to_owned(),
                        detail: format!(
                            "transaction {xid} began at {} after the applied position {applied} but its \
                             commit ends at {}, before it",
                            tx.first_lsn, commit.end_lsn
                        ),
                    }));
                }
            }
            message => {
                let Some(tx) = open.as_mut() else {
                    return Err(order(TransactionError::OutsideTransaction {
                        kind: message.kind(),
                        at: lsn,
                        xid,
                    }));
                };
                if tx.xid != xid {
                    return Err(order(TransactionError::XidMismatch {
                        expected: tx.xid,
                        found: xid,
                        at: lsn,
                    }));
                }
                let truncate = matches!(message, Message::Truncate(_));
                tx.changes.push(Change { lsn, xid, message });
                if tx.after_applied && tx.changes.len() >= CHUNK_CHANGES && !truncate {
                    let adding = Instant::now();
                    watchdog.step("target", "applying a batch");
                    out.changes += applier.add(&std::mem::take(&mut tx.changes)).await?;
                    out.apply_time += adding.elapsed();
                }
            }
        }
    }
    if let Some(tx) = open {
        return Err(order(TransactionError::Incomplete {
            xid: tx.xid,
            first_lsn: tx.first_lsn,
            changes: tx.changes.len(),
        }));
    }
    Ok(out)
}

/// Takes the run's gate on `target` (see [`GATE_SQL`]), waiting up to
/// `opts.lock_wait` for another run to finish taking its slots' locks.
pub(crate) async fn take_gate(
    target: &tokio_postgres::Client,
    opts: &CdcOptions,
    cancel: &CancellationToken,
) -> Result<(), CdcError> {
    let deadline = Instant::now() + opts.lock_wait;
    loop {
        let got: bool = target
            .query_one(GATE_SQL, &[])
            .await
            .map_err(pgmig_core::Error::query(
                "take the lock of a starting `pgmig cdc` on the target",
            ))?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CdcError::RunBusy {
                waited_s: opts.lock_wait.as_secs_f64(),
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(CdcError::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn take_lock(
    job: &SlotJob,
    target: &tokio_postgres::Client,
    watchdog: &Watchdog,
) -> Result<(), CdcError> {
    // A killed applier's session may linger a moment on the target.
    let deadline = Instant::now() + job.opts.lock_wait;
    loop {
        watchdog.touch();
        let got: bool = target
            .query_one(LOCK_SQL, &[&job.slot])
            .await
            .map_err(|source| CdcError::Query {
                slot: job.slot.clone(),
                what: "lock the slot on the target".into(),
                source,
            })?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CdcError::SlotBusy {
                slot: job.slot.clone(),
            });
        }
        tokio::select! {
            _ = job.cancel.cancelled() => return Err(CdcError::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watchdog_names_the_step_that_got_no_answer() {
        let watchdog = Watchdog::new(Duration::from_millis(50));
        watchdog.step("source", "reading the slot's changes");
        watchdog.touch();
        watchdog.step("target", "committing a batch");
        let (server, doing, idle) =
            tokio::time::timeout(Duration::from_secs(30), watchdog.expired())
                .await
                .expect("the watchdog fires");
        assert_eq!((server, doing), ("target", "committing a batch"));
        assert!(idle >= Duration::from_millis(50));
        let err = CdcError::Stalled {
            slot: "s1".into(),
            server,
            doing,
            idle_s: 300.2,
        };
        assert_eq!(
            err.to_string(),
            "slot s1: no answer from the target for 300 s while committing a batch (--stall-timeout); \
             treating the connection as lost"
        );
        assert!(err.is_transient() && !err.is_refusal());
        let before = CdcError::Stalled {
            slot: String::new(),
            server: "source or the target",
            doing: "checking that CDC may start",
            idle_s: 360.0,
        };
        assert!(
            before
                .to_string()
                .starts_with("no answer from the source or the target for 360 s")
        );
    }

    #[test]
    fn a_session_is_working_only_when_running_and_not_waiting_on_us_or_a_lock() {
        let activity = |state: Option<&str>, wait: Option<(&str, &str)>| Activity {
            state: state.map(str::to_owned),
            wait_event_type: wait.map(|w| w.0.to_owned()),
            wait_event: wait.map(|w| w.1.to_owned()),
        };
        for (state, wait, working) in [
            // Decoding WAL on CPU, reading it, or an LWLock: busy for us.
            (Some("active"), None, true),
            (Some("active"), Some(("IO", "WALRead")), true),
            (Some("active"), Some(("LWLock", "WALWrite")), true),
            // A commit waiting for a synchronous standby.
            (Some("active"), Some(("IPC", "SyncRep")), true),
            // Blocked on the network to pgmig: a stalled link.
            (Some("active"), Some(("Client", "ClientWrite")), false),
            (Some("active"), Some(("Client", "ClientRead")), false),
            // Another session's lock: bounded by lock_timeout, not by us.
            (Some("active"), Some(("Lock", "transactionid")), false),
            // Waiting for a statement that never arrived.
            (Some("idle"), Some(("Client", "ClientRead")), false),
            (
                Some("idle in transaction"),
                Some(("Client", "ClientRead")),
                false,
            ),
            (None, None, false),
        ] {
            let a = activity(state, wait);
            assert_eq!(a.working(), working, "{a}");
        }
        assert_eq!(
            activity(Some("active"), Some(("IPC", "SyncRep"))).to_string(),
            "active, waiting on IPC/SyncRep"
        );
    }

    #[test]
    fn each_attempt_has_a_name_of_its_own() {
        let a = attempt_name("pgmig_s1");
        let b = attempt_name("pgmig_s1");
        assert_ne!(a, b);
        assert!(a.starts_with("pgmig cdc pgmig_s1 "), "{a}");
        let long = attempt_name(&format!("{}\u{e9}\n", "x".repeat(80)));
        assert!(long.len() <= MAX_NAME, "{long}");
        assert!(
            long.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{long}"
        );
        let tag = long.rsplit(' ').next().unwrap();
        assert_eq!(tag.len(), 12, "{long}");
    }

    #[test]
    fn an_abandoned_session_that_does_not_end_is_retried() {
        let err = CdcError::AbandonedSession {
            slot: "s1".into(),
            server: "target",
            pid: 42,
            waited_s: 10.0,
            sync_rep: true,
        };
        assert!(err.is_transient() && !err.is_refusal());
        assert!(
            err.to_string().starts_with(
                "slot s1: the session of an earlier attempt on the target (pid 42) did not end within 10 s; \
                 its commit waits for a synchronous standby"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_slot_past_the_target_is_refused() {
        let p = Lsn(0x100);
        let progress = |lsn| Progress {
            slot: "s".into(),
            applied_end_lsn: Lsn(lsn),
            applied_commit_time: None,
            transactions: 0,
            changes: 0,
        };
        assert!(check_position("s", Some(Lsn(0x80)), p, None).is_ok());
        assert!(check_position("s", Some(p), p, None).is_ok());
        assert!(check_position("s", None, p, None).is_ok());
        assert!(check_position("s", Some(Lsn(0x180)), p, Some(&progress(0x200))).is_ok());
        let err = check_position("s", Some(Lsn(0x101)), p, Some(&progress(0x100))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "slot s is ahead of the target: its confirmed_flush_lsn 0/101 is after 0/100 (P = 0/100: the slot \
             was created after P, or another client consumed it); the changes in between are not in the slot \
             any more, so CDC from it would lose them"
        );
        assert!(err.is_refusal());
        let err = check_position("s", Some(Lsn(0x300)), p, Some(&progress(0x200))).unwrap_err();
        assert!(
            err.to_string()
                .contains("after 0/200 (the last applied commit"),
            "{err}"
        );
    }
}
