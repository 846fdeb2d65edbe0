//! The full load (`pgmig load`): every planned table copied from the
//! replica, paused at P, into the target; then each table's indexes, its
//! constraints and statistics; then the rest of post-data and the
//! sequences.
//!
//! - **Exact at P.** Before the first chunk and around every chunk the
//!   replica must be paused with its replay at exactly P (DESIGN.md
//!   invariant 4): checked before the chunk's read starts and again after it
//!   ends, before the chunk commits — replay only moves forward, so equal
//!   readings prove the read saw P. Otherwise the load stops with
//!   [`LoadError::ReplicaMoved`] and the chunk is rolled back.
//! - **Streaming.** `COPY … TO STDOUT` on the replica feeds `COPY … FROM
//!   STDIN` on the target; the bytes pass through untouched, with the
//!   driver's bounded buffers as the only memory, whatever the table size.
//!   Columns are always named (live, not generated, the replica's order).
//!   Binary where the types allow it ([`format`]), text otherwise.
//! - **Exactly once.** Each task's work and its "done" mark commit in one
//!   target transaction ([`state`]); rerun after any crash, the load goes on
//!   with what is not done. Several loaders share one load.
//! - **Deferred indexes.** A table's indexes are built as soon as its last
//!   chunk is in, while other tables are still copying; primary keys and
//!   unique constraints as a unique index first, attached afterwards.

mod chunk;
mod engine;
mod error;
pub mod format;
mod options;
mod plan;
pub mod postdata;
mod progress;
pub mod state;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgmig_core::admin::system_identifier;
use pgmig_core::config::ConnConfig;
use pgmig_core::state::load_migration;
use pgmig_core::{Lsn, QualifiedTable, ServerRole, ServerVersion};
use serde::Serialize;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use chunk::{Split, integer_key, key_ranges, page_ranges};
pub use error::LoadError;
pub use options::{ByteSize, CopyFormat, FormatChoice};
pub use plan::{LoadPlan, copy_sql, task_statements};
pub use progress::{LoadEvent, ProgressFn, TableProgress, Totals};
pub use state::{Task, TaskKind};

use engine::{Ctx, check_frozen, worker};
use progress::Tracker;
use state::{all_tasks, ensure_schema, insert_plan, planned_at};

/// How a load runs.
#[derive(Debug, Clone, Serialize)]
pub struct LoadOptions {
    /// Workers in this process; each holds one replica and one target
    /// connection. Default: the number of CPUs, at least 2.
    pub jobs: usize,
    /// Tables larger than this are split into chunks of about this size.
    /// Default 1 GB.
    pub chunk_bytes: ByteSize,
    /// The COPY format. Default [`FormatChoice::Auto`].
    pub format: FormatChoice,
    /// Empty the loaded tables, drop the indexes the load built and plan
    /// again. Refused once post-data ran.
    pub restart: bool,
    /// `maintenance_work_mem` for index builds. Default `512MB`.
    pub maintenance_work_mem: String,
    /// How long a chunk's COPY (and `TRUNCATE` of a one-chunk table), an
    /// index build, a constraint or a post-data statement waits for a lock
    /// on the target before failing with [`LoadError::LockTimeout`] (which
    /// names the sessions holding the table). Default 60 s.
    pub lock_timeout: Duration,
    /// How long a chunk's COPY (or a short statement around it) may go
    /// without an answer from a server before the load gives up with
    /// [`LoadError::Stalled`] instead of hanging. Long statements (index
    /// builds, constraints, post-data) are not bounded by it. Default 300 s.
    pub stall_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            jobs: default_jobs(),
            chunk_bytes: ByteSize(1 << 30),
            format: FormatChoice::Auto,
            restart: false,
            maintenance_work_mem: "512MB".into(),
            lock_timeout: Duration::from_secs(60),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// The default of [`LoadOptions::stall_timeout`]: 5 minutes.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The number of CPUs, at least 2.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: QualifiedTable,
    /// Rows copied.
    pub rows: i64,
    /// COPY bytes streamed.
    pub bytes: i64,
    /// Its chunks.
    pub chunks: usize,
    /// Its COPY format.
    pub format: CopyFormat,
    /// Index builds.
    pub indexes: usize,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// The pause LSN the data is exact at.
    pub pause_lsn: Lsn,
    /// The load was already complete: nothing ran.
    pub already_done: bool,
    /// Per table, largest first.
    pub tables: Vec<TableReport>,
    /// Rows copied (all loaders).
    pub rows: i64,
    /// COPY bytes (all loaders).
    pub bytes: i64,
    /// Chunks.
    pub chunks: usize,
    /// Index builds.
    pub indexes: usize,
    /// Sequences set from the replica.
    pub sequences: i64,
    /// Wall time of this run.
    pub elapsed_ms: u64,
    /// From the start of this run until its last chunk committed.
    pub data_elapsed_ms: u64,
    /// Indexes and constraints of the source's tables missing (or invalid)
    /// on the target; empty when the load is complete. `None` when not
    /// checked (an already complete load).
    pub missing_objects: Option<Vec<String>>,
}

impl LoadReport {
    /// Whether the target now holds every table, index and constraint.
    pub fn is_complete(&self) -> bool {
        self.missing_objects.as_ref().is_none_or(|m| m.is_empty())
    }
}

/// A preview of a load for `--dry-run`: the tasks and their statements.
#[derive(Debug, Clone, Serialize)]
pub struct LoadPreview {
    /// P.
    pub pause_lsn: Lsn,
    /// Whether the tasks come from a load already planned in the target.
    pub existing: bool,
    /// The tasks with the statements each runs and whether it is done.
    pub tasks: Vec<PreviewTask>,
}

/// One task of a preview.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewTask {
    /// The task.
    #[serde(flatten)]
    pub task: Task,
    /// Done already.
    pub done: bool,
    /// (server, statement) in order.
    pub statements: Vec<(ServerRole, String)>,
}

fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pgmig".into());
    format!("{host}:{}", std::process::id())
}

struct Servers {
    target: Client,
    target_version: ServerVersion,
    p: Lsn,
    migration: pgmig_core::state::MigrationRecord,
}

async fn open_target(target: &ConnConfig) -> Result<Servers, LoadError> {
    let client = target.connect().await?;
    let target_version = ServerVersion::query(&client).await?;
    let migration = load_migration(&client)
        .await?
        .ok_or(LoadError::NoSnapshot)?;
    let p = migration.pause_lsn.ok_or(LoadError::NoSnapshot)?;
    Ok(Servers {
        target: client,
        target_version,
        p,
        migration,
    })
}

/// Awaits `fut`, giving up with [`LoadError::Stalled`] after `after`: a
/// server that accepts the connection but never answers does not hang the
/// load before its workers start.
async fn bounded<T>(
    after: Duration,
    what: &str,
    role: ServerRole,
    fut: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(LoadError::Stalled {
            what: what.to_string(),
            role,
            after,
        })
    })
}

/// Connects to the replica and proves it is the source's standby, frozen at
/// P.
async fn open_replica(
    replica: &ConnConfig,
    servers: &Servers,
) -> Result<(Client, ServerVersion), LoadError> {
    let client = replica.connect().await?;
    let version = ServerVersion::query(&client).await?;
    let sysid = system_identifier(&client).await?;
    if sysid != servers.migration.source_system_identifier {
        return Err(LoadError::WrongReplica {
            expected: servers.migration.source_system_identifier,
            found: sysid,
        });
    }
    check_frozen(&client, version, servers.p).await?;
    Ok((client, version))
}

/// Plans the load (or reads the plan already in the target) and returns
/// what it would run, changing nothing.
pub async fn preview(
    replica: &ConnConfig,
    target: &ConnConfig,
    opts: &LoadOptions,
) -> Result<LoadPreview, LoadError> {
    let servers = open_target(target).await?;
    if pgmig_core::state::table_exists(&servers.target, "pgmig.load_task").await?
        && planned_at(&servers.target).await?.is_some()
        && !opts.restart
    {
        let tasks = all_tasks(&servers.target).await?;
        return Ok(LoadPreview {
            pause_lsn: servers.p,
            existing: true,
            tasks: tasks
                .into_iter()
                .map(|(task, fig)| PreviewTask {
                    statements: task_statements(&task),
                    task,
                    done: fig.done,
                })
                .collect(),
        });
    }
    let (rclient, rversion) = open_replica(replica, &servers).await?;
    let plan = plan::plan_load(
        &rclient,
        rversion,
        &servers.target,
        servers.target_version,
        &servers.migration,
        opts,
    )
    .await?;
    Ok(LoadPreview {
        pause_lsn: servers.p,
        existing: false,
        tasks: plan
            .tasks
            .into_iter()
            .map(|task| PreviewTask {
                statements: task_statements(&task),
                task,
                done: false,
            })
            .collect(),
    })
}

/// Runs (or resumes, or joins) the load of the migration recorded in the
/// target. `progress` receives [`LoadEvent`]s; `cancel` stops every worker
/// and rolls back the chunks in flight.
pub async fn load(
    replica: &ConnConfig,
    target: &ConnConfig,
    opts: &LoadOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
) -> Result<LoadReport, LoadError> {
    let span = info_span!("load", jobs = opts.jobs);
    run(replica, target, opts, progress, cancel)
        .instrument(span)
        .await
}

async fn run(
    replica: &ConnConfig,
    target: &ConnConfig,
    opts: &LoadOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let mut servers = bounded(
        opts.stall_timeout,
        "connect and read the migration",
        ServerRole::Target,
        open_target(target),
    )
    .await?;
    let p = servers.p;
    // A load not planned yet proves the replica (the source's standby,
    // frozen at P) before creating its state on the target: a wrongly
    // wired replica changes nothing.
    if planned_at(&servers.target).await?.is_none() {
        bounded(
            opts.stall_timeout,
            "connect and check that the replica is frozen at P",
            ServerRole::Replica,
            open_replica(replica, &servers),
        )
        .await?;
    }
    ensure_schema(&servers.target).await?;
    if opts.restart {
        restart(&mut servers.target).await?;
    }
    match planned_at(&servers.target).await? {
        Some(planned) if planned != p => return Err(LoadError::OtherSnapshot { planned, p }),
        Some(_) if state::remaining(&servers.target).await? == 0 => {
            let mut report = report_from_state(&servers.target, p, started).await?;
            report.already_done = true;
            return Ok(report);
        }
        _ => {}
    }
    let (rclient, rversion) = bounded(
        opts.stall_timeout,
        "connect and check that the replica is frozen at P",
        ServerRole::Replica,
        open_replica(replica, &servers),
    )
    .await?;
    let mut planned_now = false;
    if planned_at(&servers.target).await?.is_none() {
        let plan = plan::plan_load(
            &rclient,
            rversion,
            &servers.target,
            servers.target_version,
            &servers.migration,
            opts,
        )
        .await?;
        let tx = servers
            .target
            .transaction()
            .await
            .map_err(LoadError::step("begin", ServerRole::Target))?;
        tx.batch_execute("LOCK TABLE pgmig.load IN EXCLUSIVE MODE")
            .await
            .map_err(LoadError::step("lock the load state", ServerRole::Target))?;
        if planned_at(&tx).await?.is_none() {
            let mut seen = std::collections::HashSet::new();
            for task in &plan.tasks {
                if let (Some(t), TaskKind::Copy { .. }) = (&task.table, &task.kind)
                    && seen.insert(t.clone())
                {
                    {
                        let q = t.quoted();
                        let row = tx
                            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM ONLY {q})"), &[])
                            .await
                            .map_err(LoadError::step(
                                format!("look into {q}"),
                                ServerRole::Target,
                            ))?;
                        if row.get::<_, bool>(0) {
                            return Err(LoadError::TargetNotEmpty { table: t.clone() });
                        }
                    }
                }
            }
            let options = serde_json::to_string(opts).unwrap_or_else(|_| "{}".into());
            insert_plan(&tx, p, &options, &plan.tasks).await?;
            planned_now = true;
            info!(
                tasks = plan.tasks.len(),
                moved = plan.moved.len(),
                "load planned"
            );
        }
        tx.commit()
            .await
            .map_err(LoadError::step("commit the load plan", ServerRole::Target))?;
    }

    let tasks = all_tasks(&servers.target).await?;
    let mut per_table: BTreeMap<QualifiedTable, (usize, i64, usize)> = BTreeMap::new();
    let mut done = 0;
    for (task, fig) in &tasks {
        if fig.done {
            done += 1;
        }
        if let (Some(t), TaskKind::Copy { .. }) = (&task.table, &task.kind) {
            let e = per_table.entry(t.clone()).or_insert((0, task.weight, 0));
            e.0 += 1;
            if fig.done {
                e.2 += 1;
            }
        }
    }
    let tracker = Tracker::new(
        per_table
            .iter()
            .map(|(t, (chunks, bytes, done))| (t.clone(), *chunks, *bytes, *done)),
        tasks.len(),
        done,
    );
    if let Some(progress) = &progress {
        progress(&LoadEvent::Planned {
            tables: per_table.len(),
            chunks: per_table.values().map(|v| v.0).sum(),
            tasks: tasks.len(),
            done,
            table_bytes: per_table.values().map(|v| v.1).sum(),
            planned_now,
        });
    }
    let ctx = Arc::new(Ctx {
        replica: replica.clone(),
        target: target.clone(),
        replica_version: rversion,
        p,
        maintenance_work_mem: opts.maintenance_work_mem.clone(),
        lock_timeout: opts.lock_timeout,
        stall_timeout: opts.stall_timeout,
        worker_name: worker_name(),
        progress,
        tracker: Mutex::new(tracker),
        cancel,
        stop: AtomicBool::new(false),
        last_chunk_at: Mutex::new(None),
    });
    let mut set = tokio::task::JoinSet::new();
    for n in 0..opts.jobs.max(1) {
        set.spawn(worker(ctx.clone(), n));
    }
    let mut first_error: Option<LoadError> = None;
    while let Some(joined) = set.join_next().await {
        let result = match joined {
            Ok(r) => r,
            Err(e) => Err(LoadError::Core(pgmig_core::Error::Protocol {
                what: "a load worker".into(),
                detail: e.to_string(),
            })),
        };
        if let Err(e) = result {
            warn!(error = %e, "load worker stopped");
            // Keep the cause, not the cancellations it triggered.
            if first_error
                .as_ref()
                .is_none_or(|f| matches!(f, LoadError::Cancelled))
            {
                first_error = Some(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let data_done = *ctx.last_chunk_at.lock().unwrap_or_else(|e| e.into_inner());
    let mut report = report_from_state(&servers.target, p, started).await?;
    report.data_elapsed_ms = data_done
        .map(|t| t.duration_since(started).as_millis() as u64)
        .unwrap_or(0);
    let tables: Vec<QualifiedTable> = report.tables.iter().map(|t| t.table.clone()).collect();
    let missing = postdata::missing_objects(&rclient, &servers.target, &tables).await?;
    servers
        .target
        .execute(
            "UPDATE pgmig.load SET finished_at = now() WHERE id = 1 AND finished_at IS NULL",
            &[],
        )
        .await
        .map_err(LoadError::step(
            "record the end of the load",
            ServerRole::Target,
        ))?;
    report.missing_objects = Some(missing);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn report_from_state(
    target: &Client,
    p: Lsn,
    started: Instant,
) -> Result<LoadReport, LoadError> {
    let tasks = all_tasks(target).await?;
    let mut tables: BTreeMap<QualifiedTable, TableReport> = BTreeMap::new();
    let mut weights: BTreeMap<QualifiedTable, i64> = BTreeMap::new();
    let mut sequences = 0;
    for (task, fig) in &tasks {
        match (&task.table, &task.kind) {
            (Some(t), TaskKind::Copy { format, .. }) => {
                weights.insert(t.clone(), task.weight);
                let e = tables.entry(t.clone()).or_insert(TableReport {
                    table: t.clone(),
                    rows: 0,
                    bytes: 0,
                    chunks: 0,
                    format: *format,
                    indexes: 0,
                });
                e.rows += fig.rows;
                e.bytes += fig.bytes;
                e.chunks += 1;
            }
            (Some(t), TaskKind::Index { .. }) => {
                if let Some(e) = tables.get_mut(t) {
                    e.indexes += 1;
                }
            }
            (None, TaskKind::Sequences) => sequences = fig.rows,
            _ => {}
        }
    }
    let mut list: Vec<TableReport> = tables.into_values().collect();
    list.sort_by(|a, b| {
        weights
            .get(&b.table)
            .cmp(&weights.get(&a.table))
            .then_with(|| a.table.cmp(&b.table))
    });
    Ok(LoadReport {
        pause_lsn: p,
        already_done: false,
        rows: list.iter().map(|t| t.rows).sum(),
        bytes: list.iter().map(|t| t.bytes).sum(),
        chunks: list.iter().map(|t| t.chunks).sum(),
        indexes: list.iter().map(|t| t.indexes).sum(),
        tables: list,
        sequences,
        elapsed_ms: started.elapsed().as_millis() as u64,
        data_elapsed_ms: 0,
        missing_objects: None,
    })
}

/// `--restart`: drops what the load built, empties its tables and forgets
/// its plan, in one transaction.
async fn restart(target: &mut Client) -> Result<(), LoadError> {
    let tx = target
        .transaction()
        .await
        .map_err(LoadError::step("begin", ServerRole::Target))?;
    tx.batch_execute("LOCK TABLE pgmig.load, pgmig.load_task IN ACCESS EXCLUSIVE MODE")
        .await
        .map_err(LoadError::step("lock the load state", ServerRole::Target))?;
    let tasks = all_tasks(&tx).await?;
    if tasks
        .iter()
        .any(|(t, f)| f.done && matches!(t.kind, TaskKind::PostData { .. }))
    {
        return Err(LoadError::RestartAfterPostData);
    }
    let mut drops: Vec<&str> = Vec::new();
    for phase in [state::PHASE_FINISH_TABLE, state::PHASE_INDEX] {
        for (task, fig) in &tasks {
            if !fig.done || task.kind.phase() != phase {
                continue;
            }
            match &task.kind {
                TaskKind::Index { drop_sql, .. } | TaskKind::FinishTable { drop_sql, .. }
                    if !drop_sql.is_empty() =>
                {
                    drops.push(drop_sql)
                }
                _ => {}
            }
        }
    }
    for sql in drops {
        tx.batch_execute(sql).await.map_err(LoadError::step(
            format!("restart: {sql}"),
            ServerRole::Target,
        ))?;
    }
    let mut tables: Vec<String> = tasks
        .iter()
        .filter(|(t, _)| matches!(t.kind, TaskKind::Copy { .. }))
        .filter_map(|(t, _)| t.table.as_ref().map(|q| q.quoted()))
        .collect();
    tables.dedup();
    if !tables.is_empty() {
        tx.batch_execute(&format!("TRUNCATE ONLY {}", tables.join(", ")))
            .await
            .map_err(LoadError::step(
                "restart: empty the loaded tables",
                ServerRole::Target,
            ))?;
    }
    tx.batch_execute("DELETE FROM pgmig.load_task; DELETE FROM pgmig.load")
        .await
        .map_err(LoadError::step(
            "restart: forget the load plan",
            ServerRole::Target,
        ))?;
    tx.commit()
        .await
        .map_err(LoadError::step("restart: commit", ServerRole::Target))?;
    info!(
        tables = tables.len(),
        "load restarted: tables emptied, plan forgotten"
    );
    Ok(())
}
