//! The workers: claim a task, do it, mark it done, in one target
//! transaction; stream chunks from the replica into the target.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, pin_mut};
use pgmig_core::admin::{ReplayPauseState, last_replay_lsn, replay_pause_state};
use pgmig_core::catalog::list_sequences;
use pgmig_core::config::ConnConfig;
use pgmig_core::locks::{describe_holders, lock_holders};
use pgmig_core::{ErrorKind, Lsn, ServerRole, ServerVersion};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::LoadError;
use super::format::{KEEPALIVE_SESSION, REPLICA_SESSION, TARGET_SESSION};
use super::plan::copy_sql;
use super::progress::{LoadEvent, ProgressFn, Tracker};
use super::state::{DONE_SQL, Task, TaskKind, claim, remaining};

/// The size of the pieces a chunk's rows are passed to the target in.
const COALESCE: usize = 64 << 10;
/// How often a chunk in flight reports its bytes.
const PROGRESS_EVERY: u64 = 64 << 20;
/// How long a loader with nothing ready waits before looking again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// How long the same tasks may stay held by other sessions before a waiting
/// loader names those sessions in the log.
const HELD_WARNING: Duration = Duration::from_secs(60);

/// How long a worker that lost its replica connection tries to reconnect to
/// tell whether the replica is still frozen at P.
const REPLICA_RECHECK: Duration = Duration::from_secs(15);

/// What the workers share.
pub(crate) struct Ctx {
    pub replica: ConnConfig,
    pub target: ConnConfig,
    pub replica_version: ServerVersion,
    pub p: Lsn,
    pub maintenance_work_mem: String,
    pub lock_timeout: Duration,
    pub stall_timeout: Duration,
    pub worker_name: String,
    pub progress: Option<ProgressFn>,
    pub tracker: Mutex<Tracker>,
    pub cancel: CancellationToken,
    /// Set when a worker failed: the others finish their task and stop.
    pub stop: AtomicBool,
    /// When this process committed its last chunk.
    pub last_chunk_at: Mutex<Option<Instant>>,
}

impl Ctx {
    fn emit(&self, event: impl FnOnce(&mut Tracker) -> LoadEvent) {
        if let Some(progress) = &self.progress {
            let event = {
                let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
                event(&mut tracker)
            };
            progress(&event);
        }
    }

    fn track<T>(&self, f: impl FnOnce(&mut Tracker) -> T) -> T {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tracker)
    }

    /// Awaits one exchange with a server, giving up with
    /// [`LoadError::Stalled`] after `stall_timeout` (plus `extra`) without
    /// an answer: the watchdog that keeps a silent network or server from
    /// hanging the load. TCP keepalives only notice a peer that is gone; a
    /// peer that is there but silent (a stalled middlebox, a hung server)
    /// is noticed only here.
    async fn within<T>(
        &self,
        what: &str,
        role: ServerRole,
        extra: Duration,
        fut: impl Future<Output = Result<T, LoadError>>,
    ) -> Result<T, LoadError> {
        let after = self.stall_timeout + extra;
        match tokio::time::timeout(after, fut).await {
            // Name the server a failed state or catalog call talked to.
            Ok(Err(LoadError::Core(pgmig_core::Error::Query { what, source }))) => {
                Err(LoadError::Step { what, role, source })
            }
            Ok(r) => r,
            Err(_) => Err(LoadError::Stalled {
                what: what.to_string(),
                role,
                after,
            }),
        }
    }
}

/// Fails unless the replica is paused with its replay at exactly P.
pub(crate) async fn check_frozen(
    replica: &Client,
    version: ServerVersion,
    p: Lsn,
) -> Result<(), LoadError> {
    let state = replay_pause_state(replica, version).await?;
    let lsn = last_replay_lsn(replica, version).await?;
    if state == ReplayPauseState::Paused && lsn == p {
        return Ok(());
    }
    let what = match state {
        ReplayPauseState::Paused => "paused",
        ReplayPauseState::PauseRequested => "pause requested, replay still running",
        ReplayPauseState::NotPaused => "replay resumed",
    };
    Err(LoadError::ReplicaMoved {
        p,
        state: format!("{what}, replayed up to {lsn}"),
    })
}

/// One worker: its own replica and target connections, tasks until none is
/// left.
pub(crate) async fn worker(ctx: Arc<Ctx>, n: usize) -> Result<(), LoadError> {
    let result = worker_loop(&ctx, n).await;
    if result.is_err() {
        ctx.stop.store(true, Ordering::SeqCst);
    }
    result
}

async fn worker_loop(ctx: &Ctx, n: usize) -> Result<(), LoadError> {
    let none = Duration::ZERO;
    let replica = ctx
        .within("connect", ServerRole::Replica, none, async {
            let replica = ctx.replica.connect().await?;
            replica
                .batch_execute(&format!("{REPLICA_SESSION}; {KEEPALIVE_SESSION}"))
                .await
                .map_err(LoadError::step(
                    "set the replica session",
                    ServerRole::Replica,
                ))?;
            Ok(replica)
        })
        .await?;
    // A crash can lose the last commits, but each one whole: a chunk's data
    // and its record are lost together and copied again.
    let mut target = ctx
        .within("connect", ServerRole::Target, none, async {
            let target = ctx.target.connect().await?;
            target
                .batch_execute(&format!(
                    "{TARGET_SESSION}; {KEEPALIVE_SESSION}; SET synchronous_commit = off"
                ))
                .await
                .map_err(LoadError::step(
                    "set the target session",
                    ServerRole::Target,
                ))?;
            Ok(target)
        })
        .await?;
    let worker = format!("{}/{n}", ctx.worker_name);
    let mut last_waiting = None;
    let mut waiting_since = Instant::now();
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(LoadError::Cancelled);
        }
        if ctx.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let tx = ctx
            .within("begin a task", ServerRole::Target, none, async {
                target
                    .transaction()
                    .await
                    .map_err(LoadError::step("begin", ServerRole::Target))
            })
            .await?;
        let claimed = ctx
            .within("claim a task", ServerRole::Target, none, async {
                Ok(claim(&tx).await?)
            })
            .await?;
        let Some(task) = claimed else {
            ctx.within("end the claim", ServerRole::Target, none, async {
                tx.rollback()
                    .await
                    .map_err(LoadError::step("rollback", ServerRole::Target))
            })
            .await?;
            let left = ctx
                .within("count the tasks left", ServerRole::Target, none, async {
                    Ok(remaining(&target).await?)
                })
                .await?;
            if left == 0 {
                return Ok(());
            }
            if last_waiting != Some(left) {
                last_waiting = Some(left);
                waiting_since = Instant::now();
                ctx.emit(|_| LoadEvent::Waiting { remaining: left });
            } else if n == 0 && waiting_since.elapsed() >= HELD_WARNING {
                // The same tasks held for long: name who holds them, in case
                // their loader is gone and its sessions linger.
                waiting_since = Instant::now();
                let table = pgmig_core::QualifiedTable::new("pgmig", "load_task");
                if let Ok(Ok(holders)) =
                    tokio::time::timeout(ctx.stall_timeout, lock_holders(&target, &table)).await
                {
                    warn!(
                        remaining = left,
                        holders = %describe_holders(&holders),
                        "tasks held by other sessions for a while; if their loader is gone, end them \
                         with pg_terminate_backend(pid) on the target"
                    );
                }
            }
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(LoadError::Cancelled),
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        };
        debug!(task = task.id, kind = task.kind.name(), worker = %worker, "claimed");
        let run = run_task(ctx, &replica, tx, &task, &worker);
        let result = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Err(LoadError::Cancelled),
            r = run => r,
        };
        if let Err(e) = result {
            return Err(explain(ctx, &task, e).await);
        }
    }
}

/// Turns a task's failure into the error that tells the operator what to
/// do: a lock timeout names the sessions holding the table; a full disk
/// says so; a replica connection lost because the replica restarted
/// reports that replay is no longer frozen at P when that is what it finds.
async fn explain(ctx: &Ctx, task: &Task, err: LoadError) -> LoadError {
    let LoadError::Step { what, role, source } = err else {
        return err;
    };
    let code = source.code().cloned();
    if code == Some(SqlState::LOCK_NOT_AVAILABLE)
        && let Some(table) = &task.table
    {
        // Bounded like every other exchange: naming the blocker must not
        // hang the load that gave up waiting for it.
        let listed = tokio::time::timeout(ctx.stall_timeout, async {
            let client = ctx.target.connect().await?;
            lock_holders(&client, table).await
        })
        .await;
        let holders = match listed {
            Ok(Ok(h)) => describe_holders(&h),
            Ok(Err(e)) => format!("could not list the sessions holding it ({e})"),
            Err(_) => format!(
                "could not list the sessions holding it (no answer from the target for {} s)",
                ctx.stall_timeout.as_secs()
            ),
        };
        return LoadError::LockTimeout {
            what,
            table: table.clone(),
            waited: ctx.lock_timeout,
            holders,
            source,
        };
    }
    if code == Some(SqlState::DISK_FULL) {
        return LoadError::OutOfSpace { what, role, source };
    }
    let err = LoadError::Step { what, role, source };
    if role == ServerRole::Replica && err.kind() == ErrorKind::Connection {
        // The replica went away (restarted?): if it is back, say whether
        // it is still frozen at P — a restarted standby resumes replay.
        // A restarting server refuses connections for a moment: try for up
        // to REPLICA_RECHECK.
        let check = async {
            loop {
                match ctx.replica.connect().await {
                    Ok(client) => return check_frozen(&client, ctx.replica_version, ctx.p).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        };
        match tokio::time::timeout(REPLICA_RECHECK, check).await {
            Ok(Err(moved @ LoadError::ReplicaMoved { .. })) => {
                warn!(error = %err, "replica connection lost; the replica is no longer frozen at P");
                return moved;
            }
            _ => return err,
        }
    }
    err
}

async fn run_task(
    ctx: &Ctx,
    replica: &Client,
    tx: Transaction<'_>,
    task: &Task,
    worker: &str,
) -> Result<(), LoadError> {
    let started = Instant::now();
    let table = task.table.clone();
    let quoted = table.as_ref().map(|t| t.quoted()).unwrap_or_default();
    let (rows, bytes): (i64, i64) = match &task.kind {
        TaskKind::Copy {
            split,
            chunk,
            chunks,
            format,
            columns,
        } => {
            let t = table.clone().unwrap_or_else(unnamed);
            let whole = *chunks == 1;
            let what = format!("copy chunk {} of {} of {t}", chunk + 1, chunks);
            let none = Duration::ZERO;
            ctx.within(&what, ServerRole::Replica, none, async {
                check_frozen(replica, ctx.replica_version, ctx.p)
                    .await
                    .map_err(in_step(&what, ServerRole::Replica))
            })
            .await?;
            ctx.within(&what, ServerRole::Target, none, set_local(&tx, ctx, false))
                .await?;
            ctx.emit(|_| LoadEvent::ChunkStarted {
                table: t.clone(),
                chunk: *chunk,
                chunks: *chunks,
                format: *format,
            });
            if whole {
                // It may wait for a lock, up to lock_timeout.
                ctx.within(&what, ServerRole::Target, ctx.lock_timeout, async {
                    tx.batch_execute(&format!("TRUNCATE ONLY {quoted}"))
                        .await
                        .map_err(LoadError::step(
                            format!("{what}: truncate"),
                            ServerRole::Target,
                        ))
                })
                .await?;
            }
            let (out_sql, in_sql) = copy_sql(&quoted, columns, split, *format, whole);
            // Starting COPY FROM takes the table's lock: up to lock_timeout.
            let sink = ctx
                .within(&what, ServerRole::Target, ctx.lock_timeout, async {
                    tx.copy_in::<_, Bytes>(&in_sql)
                        .await
                        .map_err(LoadError::step(what.clone(), ServerRole::Target))
                })
                .await?;
            let stream = ctx
                .within(&what, ServerRole::Replica, none, async {
                    replica
                        .copy_out(&out_sql)
                        .await
                        .map_err(LoadError::step(what.clone(), ServerRole::Replica))
                })
                .await?;
            pin_mut!(sink);
            pin_mut!(stream);
            let mut streamed: u64 = 0;
            let mut reported: u64 = 0;
            // The replica sends one CopyData message per row; coalescing
            // them into COALESCE-byte pieces passes the same bytes to the
            // target in far fewer channel messages and socket writes.
            let mut pending = BytesMut::with_capacity(COALESCE);
            // Every read and write is under the stall watchdog: a COPY that
            // moves no byte for stall_timeout gives up. The replica sends
            // one message per row, so the read side's watchdog is one timer
            // that, when it fires, looks whether bytes arrived since it was
            // set (a stall is noticed after one to two stall_timeouts)
            // rather than a timer per row.
            let mut watchdog = Box::pin(tokio::time::sleep(ctx.stall_timeout));
            let mut streamed_at_tick: u64 = 0;
            loop {
                let next = tokio::select! {
                    biased;
                    next = stream.next() => next,
                    () = &mut watchdog => {
                        if streamed == streamed_at_tick {
                            return Err(LoadError::Stalled {
                                what: what.clone(),
                                role: ServerRole::Replica,
                                after: ctx.stall_timeout,
                            });
                        }
                        streamed_at_tick = streamed;
                        watchdog
                            .as_mut()
                            .reset(tokio::time::Instant::now() + ctx.stall_timeout);
                        continue;
                    }
                };
                let Some(piece) = next else { break };
                let piece =
                    piece.map_err(|e| LoadError::step(what.clone(), ServerRole::Replica)(e))?;
                streamed += piece.len() as u64;
                pending.extend_from_slice(&piece);
                if pending.len() >= COALESCE {
                    let full = pending.split().freeze();
                    pending.reserve(COALESCE);
                    ctx.within(&what, ServerRole::Target, none, async {
                        sink.feed(full)
                            .await
                            .map_err(LoadError::step(what.clone(), ServerRole::Target))
                    })
                    .await?;
                }
                if streamed - reported >= PROGRESS_EVERY {
                    let delta = streamed - reported;
                    reported = streamed;
                    ctx.track(|tr| tr.streamed(delta));
                    ctx.emit(|tr| LoadEvent::ChunkProgress {
                        table: t.clone(),
                        chunk: *chunk,
                        bytes: streamed,
                        totals: tr.totals(),
                    });
                }
            }
            if !pending.is_empty() {
                let last = pending.split().freeze();
                ctx.within(&what, ServerRole::Target, none, async {
                    sink.feed(last)
                        .await
                        .map_err(LoadError::step(what.clone(), ServerRole::Target))
                })
                .await?;
            }
            let rows = ctx
                .within(&what, ServerRole::Target, none, async {
                    sink.as_mut()
                        .finish()
                        .await
                        .map_err(LoadError::step(what.clone(), ServerRole::Target))
                })
                .await?;
            ctx.track(|tr| tr.streamed(streamed - reported));
            // Replay is monotonic: at P before the read and at P after it
            // means the read saw exactly P.
            ctx.within(&what, ServerRole::Replica, none, async {
                check_frozen(replica, ctx.replica_version, ctx.p)
                    .await
                    .map_err(in_step(&what, ServerRole::Replica))
            })
            .await?;
            (rows as i64, streamed as i64)
        }
        TaskKind::Index { sql, .. } => {
            set_local(&tx, ctx, true).await?;
            tx.batch_execute(sql).await.map_err(LoadError::step(
                format!("{} on {quoted}", first_line(sql)),
                ServerRole::Target,
            ))?;
            (0, 0)
        }
        TaskKind::FinishTable { sql, .. } => {
            set_local(&tx, ctx, false).await?;
            if !sql.is_empty() {
                tx.batch_execute(sql).await.map_err(LoadError::step(
                    format!("attach the constraints of {quoted}"),
                    ServerRole::Target,
                ))?;
            }
            tx.batch_execute(&format!("ANALYZE {quoted}"))
                .await
                .map_err(LoadError::step(
                    format!("ANALYZE {quoted}"),
                    ServerRole::Target,
                ))?;
            (0, 0)
        }
        TaskKind::PostData { sql } => {
            set_local(&tx, ctx, false).await?;
            if !sql.trim().is_empty() {
                tx.batch_execute(sql).await.map_err(LoadError::step(
                    "the rest of post-data (foreign keys, triggers, …)",
                    ServerRole::Target,
                ))?;
            }
            (0, 0)
        }
        TaskKind::Sequences => {
            let n = set_sequences(replica, &tx).await?;
            (n, 0)
        }
    };
    let none = Duration::ZERO;
    let marked = ctx
        .within("record the task as done", ServerRole::Target, none, async {
            tx.execute(DONE_SQL, &[&task.id, &rows, &bytes, &worker])
                .await
                .map_err(LoadError::step(
                    "record the task as done",
                    ServerRole::Target,
                ))
        })
        .await?;
    if marked != 1 {
        // Impossible while the claim's row lock holds; never commit work
        // without its record.
        return Err(LoadError::Core(pgmig_core::Error::Protocol {
            what: format!("record task {} as done", task.id),
            detail: "the task was already done or is gone; its work was rolled back".into(),
        }));
    }
    // Without an answer the commit may or may not have happened; either
    // way the task's data and its done mark went together.
    ctx.within(
        "commit a task (it may have committed: a rerun resumes either way)",
        ServerRole::Target,
        none,
        async {
            tx.commit()
                .await
                .map_err(LoadError::step("commit", ServerRole::Target))
        },
    )
    .await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &task.kind {
        TaskKind::Copy { chunk, .. } => {
            let t = table.clone().unwrap_or_else(unnamed);
            *ctx.last_chunk_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            info!(table = %t, chunk, rows, bytes, elapsed_ms, "chunk committed");
            let progress = ctx.track(|tr| tr.chunk_done(&t, rows as u64, bytes as u64));
            ctx.emit(|tr| LoadEvent::ChunkDone {
                table: t.clone(),
                chunk: *chunk,
                rows: rows as u64,
                bytes: bytes as u64,
                elapsed_ms,
                table_progress: progress,
                totals: tr.totals(),
            });
        }
        TaskKind::Index { sql, .. } | TaskKind::FinishTable { sql, .. } => {
            ctx.track(|tr| tr.task_done());
            let step = task.kind.name();
            info!(table = %quoted, step, elapsed_ms, "table step done");
            ctx.emit(|tr| LoadEvent::TableStep {
                table: table.clone().unwrap_or_else(unnamed),
                step: if step == "index" {
                    "index"
                } else {
                    "finish_table"
                },
                what: if sql.is_empty() {
                    format!("ANALYZE {quoted}")
                } else {
                    first_line(sql).to_string()
                },
                elapsed_ms,
                totals: tr.totals(),
            });
        }
        TaskKind::PostData { .. } | TaskKind::Sequences => {
            ctx.track(|tr| tr.task_done());
            let step = if matches!(task.kind, TaskKind::Sequences) {
                "sequences"
            } else {
                "post_data"
            };
            info!(step, elapsed_ms, "final step done");
            ctx.emit(|_| LoadEvent::FinalStep { step, elapsed_ms });
        }
    }
    Ok(())
}

/// Names the step (table and chunk) in a failed state or catalog call made
/// for it.
fn in_step(step: &str, role: ServerRole) -> impl FnOnce(LoadError) -> LoadError {
    move |e| match e {
        LoadError::Core(pgmig_core::Error::Query { what, source }) => LoadError::Step {
            what: format!("{step}: {what}"),
            role,
            source,
        },
        e => e,
    }
}

fn unnamed() -> pgmig_core::QualifiedTable {
    pgmig_core::QualifiedTable::new("", "")
}

fn first_line(sql: &str) -> &str {
    sql.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// `SET LOCAL` the lock timeout (and the index build memory).
async fn set_local(tx: &Transaction<'_>, ctx: &Ctx, index: bool) -> Result<(), LoadError> {
    let mut sql = format!(
        "SET LOCAL lock_timeout = '{}ms'",
        ctx.lock_timeout.as_millis()
    );
    if index {
        sql.push_str(&format!(
            "; SET LOCAL maintenance_work_mem = {}",
            pgmig_core::ident::quote_literal(&ctx.maintenance_work_mem)
        ));
    }
    tx.batch_execute(&sql).await.map_err(LoadError::step(
        "set the lock timeout and maintenance_work_mem",
        ServerRole::Target,
    ))
}

/// Sets every sequence of the replica that exists on the target to the
/// replica's value; returns how many.
async fn set_sequences(replica: &Client, tx: &Transaction<'_>) -> Result<i64, LoadError> {
    let sequences = list_sequences(replica).await?;
    let mut n = 0;
    for s in sequences {
        let name = s.sequence.quoted();
        let row = tx
            .query_opt(
                "SELECT setval(c.oid::regclass, $3, $4) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'S'",
                &[
                    &s.sequence.schema,
                    &s.sequence.name,
                    &s.last_value,
                    &s.is_called,
                ],
            )
            .await
            .map_err(LoadError::step(
                format!("set sequence {name}"),
                ServerRole::Target,
            ))?;
        if row.is_some() {
            n += 1;
        }
    }
    Ok(n)
}
