//! `pgmig status`: where the migration stands — the current step and the
//! next command, P, per slot its consumer's lag and the WAL it retains on
//! the source, the load's progress per table, CDC progress per slot once
//! it runs — with warnings: a slot retaining more WAL than
//! `--warn-retained` (a forgotten slot fills the source's disk), a lag above
//! `--warn-lag`, a slot that lost its WAL or vanished, a replica left
//! paused (resume it with `pgmig resume-replica`), a server unreachable.
//!
//! Read-only, and it works with any subset of the servers reachable (or
//! configured), before anything was set up: what cannot be read is named,
//! not fatal. Text by default, one JSON document with `--json`; `--watch
//! SECONDS` refreshes the text until interrupted. The exit code is 0 even
//! with warnings (they are printed, and listed under `warnings` in JSON);
//! only bad usage exits 2.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Args;
use pgmig_core::admin::{self, ReplayPauseState};
use pgmig_core::{Lsn, ServerRole, ServerVersion, state};
use pgmig_fullload::load::ByteSize;
use pgmig_pglogical::slot::{SlotInfo, list_slots};
use pgmig_pglogical::slot_state::{self, SlotRecord};
use serde::Serialize;
use tokio_postgres::Client;

use super::common::{connect, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{Outcome, UsageError};
use crate::settings::Settings;

/// How long status waits for each server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `pgmig status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Refresh every SECONDS until interrupted (Ctrl-C); text only.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    /// Warn when a slot retains more WAL than this on the source (bytes, or
    /// with a kB/MB/GB/TB suffix): a slot nobody consumes keeps every WAL
    /// segment from its restart LSN on, until the source's disk is full.
    #[arg(long, value_name = "SIZE", default_value = "10GB")]
    pub warn_retained: ByteSize,
    /// Warn when a slot's consumer is further behind the source than this
    /// (WAL written since its confirmed flush LSN).
    #[arg(long, value_name = "SIZE", default_value = "10GB")]
    pub warn_lag: ByteSize,
}

/// Where the migration stands, from the target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    /// The target cannot be read.
    Unknown,
    /// The target holds no migration.
    NotSetUp,
    /// Slots, sets and node are set up; no P yet.
    SetUp,
    /// P is recorded; the load has not started.
    SnapshotTaken,
    /// The load is planned and not finished.
    Loading,
    /// The load is finished; CDC has not started.
    Loaded,
    /// CDC has applied changes (or started at P).
    Cdc,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Unknown => "unknown (the target cannot be read)",
            Step::NotSetUp => "not set up",
            Step::SetUp => "set up (slots, sets and node on the source), no snapshot yet",
            Step::SnapshotTaken => "snapshot taken (P recorded), load not started",
            Step::Loading => "full load in progress",
            Step::Loaded => "full load finished",
            Step::Cdc => "change data capture",
        }
    }

    fn next(self) -> Option<&'static str> {
        match self {
            Step::Unknown => None,
            Step::NotSetUp => Some("pgmig check, pgmig plan --write pgmig.toml, pgmig setup"),
            Step::SetUp => Some("pgmig schema, pgmig snapshot"),
            Step::SnapshotTaken => Some("pgmig schema (if not done), pgmig load"),
            Step::Loading => Some("pgmig load (continues where it stopped)"),
            Step::Loaded => {
                Some("pgmig verify, pgmig resume-replica, then pgmig cdc or pgmig dms generate")
            }
            Step::Cdc => Some("pgmig cutover once the lag is near zero"),
        }
    }
}

#[derive(Debug, Serialize)]
struct ServerState {
    role: ServerRole,
    configured: bool,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReplicaState {
    in_recovery: bool,
    paused: bool,
    replay_lsn: Option<Lsn>,
    at_pause_lsn: Option<bool>,
}

#[derive(Debug, Serialize)]
struct LoggedStep {
    step: String,
    status: String,
    detail: Option<String>,
    at: String,
}

#[derive(Debug, Default, Serialize)]
struct SlotStatus {
    name: String,
    /// Whether pgmig recorded it, and whether it created it (`None`: no record).
    created_by_pgmig: Option<bool>,
    /// Whether it exists on the source (`None`: source unreachable).
    exists: Option<bool>,
    active: bool,
    active_pid: Option<i32>,
    restart_lsn: Option<Lsn>,
    confirmed_flush_lsn: Option<Lsn>,
    wal_status: Option<String>,
    lag_bytes: Option<u64>,
    retained_wal_bytes: Option<u64>,
    cdc_applied_end_lsn: Option<Lsn>,
}

#[derive(Debug, Serialize)]
struct TableLoad {
    table: String,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: i64,
    indexes: i64,
    indexes_done: i64,
    finished: bool,
}

#[derive(Debug, Serialize)]
struct LoadStatus {
    pause_lsn: Lsn,
    finished: bool,
    finished_at: Option<String>,
    tasks: i64,
    tasks_done: i64,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: i64,
    tables: Vec<TableLoad>,
}

#[derive(Debug, Serialize)]
struct CdcStatus {
    slot: String,
    applied_end_lsn: Lsn,
    /// Bytes of source WAL after the applied position (source reachable).
    lag_bytes: Option<u64>,
    transactions: Option<i64>,
    changes: Option<i64>,
    applied_commit_time: Option<String>,
    updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct Thresholds {
    warn_retained_bytes: u64,
    warn_lag_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    step: Step,
    next: Option<&'static str>,
    pause_lsn: Option<Lsn>,
    source_lsn: Option<Lsn>,
    servers: Vec<ServerState>,
    replica: Option<ReplicaState>,
    last_logged_step: Option<LoggedStep>,
    slots: Vec<SlotStatus>,
    load: Option<LoadStatus>,
    cdc: Vec<CdcStatus>,
    thresholds: Thresholds,
    warnings: Vec<String>,
}

/// Connects to `role` if configured, within [`CONNECT_TIMEOUT`].
async fn try_connect(settings: &Settings, role: ServerRole) -> (ServerState, Option<Client>) {
    let mut st = ServerState {
        role,
        configured: settings.has(role),
        reachable: false,
        version: None,
        error: None,
    };
    if !st.configured {
        return (st, None);
    }
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, connect(settings, role)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            st.error = Some(format!("{e:#}"));
            return (st, None);
        }
        Err(_) => {
            st.error = Some(format!(
                "connecting to the {role}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ));
            return (st, None);
        }
    };
    st.reachable = true;
    st.version = ServerVersion::query(&client)
        .await
        .ok()
        .map(|v| v.to_string());
    (st, Some(client))
}

/// What the target's state says.
#[derive(Default)]
struct TargetState {
    migration: Option<state::MigrationRecord>,
    records: Vec<SlotRecord>,
    last_logged_step: Option<LoggedStep>,
    load: Option<LoadStatus>,
    cdc: Vec<CdcStatus>,
}

async fn last_logged_step(target: &Client) -> anyhow::Result<Option<LoggedStep>> {
    if !state::table_exists(target, "pgmig.step_log").await? {
        return Ok(None);
    }
    let row = target
        .query_opt(
            "SELECT step, status, detail, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') \
             FROM pgmig.step_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map(|r| LoggedStep {
        step: r.get(0),
        status: r.get(1),
        detail: r.get(2),
        at: r.get(3),
    }))
}

async fn load_status(target: &Client) -> anyhow::Result<Option<LoadStatus>> {
    if !state::table_exists(target, "pgmig.load").await?
        || !state::table_exists(target, "pgmig.load_task").await?
    {
        return Ok(None);
    }
    let Some(head) = target
        .query_opt(
            "SELECT pause_lsn::text, finished_at IS NOT NULL, \
             to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') \
             FROM pgmig.load WHERE id = 1",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let totals = target
        .query_one(
            "SELECT count(*), count(done_at), \
               count(*) FILTER (WHERE kind = 'copy'), count(done_at) FILTER (WHERE kind = 'copy'), \
               coalesce(sum(rows) FILTER (WHERE kind = 'copy' AND done_at IS NOT NULL), 0)::bigint, \
               coalesce(sum(bytes) FILTER (WHERE kind = 'copy' AND done_at IS NOT NULL), 0)::bigint \
             FROM pgmig.load_task",
            &[],
        )
        .await?;
    let rows = target
        .query(
            "SELECT format('%I.%I', table_schema, table_name), \
               count(*) FILTER (WHERE kind = 'copy'), count(done_at) FILTER (WHERE kind = 'copy'), \
               coalesce(sum(rows) FILTER (WHERE kind = 'copy' AND done_at IS NOT NULL), 0)::bigint, \
               coalesce(sum(bytes) FILTER (WHERE kind = 'copy' AND done_at IS NOT NULL), 0)::bigint, \
               count(*) FILTER (WHERE kind = 'index'), count(done_at) FILTER (WHERE kind = 'index'), \
               bool_and(done_at IS NOT NULL) \
             FROM pgmig.load_task WHERE table_name IS NOT NULL \
             GROUP BY table_schema, table_name ORDER BY table_schema, table_name",
            &[],
        )
        .await?;
    let pause_text: String = head.get(0);
    Ok(Some(LoadStatus {
        pause_lsn: pause_text.parse()?,
        finished: head.get(1),
        finished_at: head.get(2),
        tasks: totals.get(0),
        tasks_done: totals.get(1),
        chunks: totals.get(2),
        chunks_done: totals.get(3),
        rows: totals.get(4),
        bytes: totals.get(5),
        tables: rows
            .iter()
            .map(|r| TableLoad {
                table: r.get(0),
                chunks: r.get(1),
                chunks_done: r.get(2),
                rows: r.get(3),
                bytes: r.get(4),
                indexes: r.get(5),
                indexes_done: r.get(6),
                finished: r.get(7),
            })
            .collect(),
    }))
}

/// CDC progress, read loosely (the table belongs to pgmig-cdc): `slot` and
/// `applied_end_lsn` are required, the other columns are shown when present.
async fn cdc_status(target: &Client) -> anyhow::Result<Vec<CdcStatus>> {
    if !state::table_exists(target, "pgmig.cdc_progress").await? {
        return Ok(Vec::new());
    }
    let rows = target
        .query(
            "SELECT c.slot::text, c.applied_end_lsn::text, to_jsonb(c)::text \
             FROM pgmig.cdc_progress c ORDER BY 1",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let lsn: String = r.get(1);
        let extra: serde_json::Value = serde_json::from_str(&r.get::<_, String>(2))?;
        let int = |k: &str| extra.get(k).and_then(serde_json::Value::as_i64);
        let text = |k: &str| {
            extra
                .get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        out.push(CdcStatus {
            slot: r.get(0),
            applied_end_lsn: lsn.parse()?,
            lag_bytes: None,
            transactions: int("transactions"),
            changes: int("changes"),
            applied_commit_time: text("applied_commit_time"),
            updated_at: text("updated_at"),
        });
    }
    Ok(out)
}

async fn read_target(target: &Client, warnings: &mut Vec<String>) -> TargetState {
    let mut t = TargetState::default();
    let mut note = |what: &str, e: &dyn std::fmt::Display| {
        warnings.push(format!("could not read {what} from the target: {e}"));
    };
    match state::load_migration(target).await {
        Ok(m) => t.migration = m,
        Err(e) => note("the migration", &e),
    }
    match slot_state::slots(target).await {
        Ok(r) => t.records = r,
        Err(e) => note("the slot records", &e),
    }
    match last_logged_step(target).await {
        Ok(s) => t.last_logged_step = s,
        Err(e) => note("the step log", &format!("{e:#}")),
    }
    match load_status(target).await {
        Ok(l) => t.load = l,
        Err(e) => note("the load state", &format!("{e:#}")),
    }
    match cdc_status(target).await {
        Ok(c) => t.cdc = c,
        Err(e) => note("the CDC progress", &format!("{e:#}")),
    }
    t
}

async fn read_replica(
    replica: &Client,
    pause_lsn: Option<Lsn>,
) -> Result<ReplicaState, pgmig_core::Error> {
    let version = ServerVersion::query(replica).await?;
    let in_recovery = admin::is_in_recovery(replica).await?;
    if !in_recovery {
        return Ok(ReplicaState {
            in_recovery,
            paused: false,
            replay_lsn: None,
            at_pause_lsn: None,
        });
    }
    let paused = admin::replay_pause_state(replica, version).await? != ReplayPauseState::NotPaused;
    let replay_lsn = admin::last_replay_lsn(replica, version).await?;
    Ok(ReplicaState {
        in_recovery,
        paused,
        replay_lsn: Some(replay_lsn),
        at_pause_lsn: pause_lsn.map(|p| p == replay_lsn),
    })
}

/// Reads everything reachable and derives the step and the warnings.
async fn gather(settings: &Settings, args: &StatusArgs) -> Report {
    let ((source_st, source), (replica_st, replica), (target_st, target)) = tokio::join!(
        try_connect(settings, ServerRole::Source),
        try_connect(settings, ServerRole::Replica),
        try_connect(settings, ServerRole::Target),
    );
    let mut warnings = Vec::new();
    for st in [&source_st, &replica_st, &target_st] {
        if let Some(e) = &st.error {
            warnings.push(format!("the {} is unreachable: {e}", st.role));
        }
    }

    let t = match &target {
        Some(target) => read_target(target, &mut warnings).await,
        None => TargetState::default(),
    };
    let pause_lsn = t.migration.as_ref().and_then(|m| m.pause_lsn);

    // The source: every slot, and where its WAL stands.
    let mut source_slots: Option<Vec<SlotInfo>> = None;
    let mut source_lsn = None;
    if let Some(source) = &source {
        match ServerVersion::query(source).await {
            Ok(v) => {
                match list_slots(source, v).await {
                    Ok(s) => source_slots = Some(s),
                    Err(e) => warnings.push(format!("could not list the source's slots: {e}")),
                }
                if let Ok(lsn) = admin::current_wal_lsn(source, v).await {
                    source_lsn = Some(lsn);
                }
            }
            Err(e) => warnings.push(format!("could not read the source's version: {e}")),
        }
    }

    // pgmig's slots: recorded, planned (target's plan, else the config's).
    let mut names: BTreeSet<String> = t.records.iter().map(|r| r.name.clone()).collect();
    let plan = t
        .migration
        .as_ref()
        .map(|m| &m.plan)
        .or(settings.plan.as_ref());
    if let Some(plan) = plan {
        names.extend(plan.slots.iter().map(|g| g.slot.clone()));
    }
    let threshold_retained = args.warn_retained.0;
    let threshold_lag = args.warn_lag.0;
    let mut slots = Vec::new();
    for name in names {
        let record = t.records.iter().find(|r| r.name == name);
        let mut s = SlotStatus {
            name: name.clone(),
            created_by_pgmig: record.map(|r| r.created_by_pgmig),
            cdc_applied_end_lsn: t
                .cdc
                .iter()
                .find(|c| c.slot == name)
                .map(|c| c.applied_end_lsn),
            ..SlotStatus::default()
        };
        if let Some(all) = &source_slots {
            let info = all.iter().find(|i| i.name == name);
            s.exists = Some(info.is_some());
            if let Some(i) = info {
                s.active = i.active;
                s.active_pid = i.active_pid;
                s.restart_lsn = i.restart_lsn;
                s.confirmed_flush_lsn = i.confirmed_flush_lsn;
                s.wal_status = i.wal_status.clone();
                s.lag_bytes = i.lag_bytes;
                s.retained_wal_bytes = i.retained_wal_bytes;
            } else if record.is_some() {
                warnings.push(format!(
                    "slot {name} is recorded by pgmig but does not exist on the source: CDC cannot start \
                     from P without it; run `pgmig cleanup` and start over"
                ));
            }
        }
        if let Some(r) = s.retained_wal_bytes.filter(|r| *r > threshold_retained) {
            warnings.push(format!(
                "slot {name} retains {} of WAL on the source (warning above {}): the source's disk \
                 fills until it is consumed (`pgmig cdc`, a DMS task) or dropped (`pgmig cleanup`)",
                human_bytes(r),
                human_bytes(threshold_retained)
            ));
        }
        if let Some(l) = s.lag_bytes.filter(|l| *l > threshold_lag) {
            warnings.push(format!(
                "slot {name}'s consumer is {} behind the source (warning above {})",
                human_bytes(l),
                human_bytes(threshold_lag)
            ));
        }
        if s.wal_status.as_deref() == Some("lost") {
            warnings.push(format!(
                "slot {name} has lost WAL it needs (wal_status = lost): it cannot be used any more; \
                 run `pgmig cleanup` and start over"
            ));
        }
        slots.push(s);
    }

    // The replica.
    let mut replica_state = None;
    if let Some(replica) = &replica {
        match read_replica(replica, pause_lsn).await {
            Ok(r) => {
                if !r.in_recovery {
                    warnings.push(
                        "the replica is not a standby (not in recovery): point --replica at the \
                         maintenance replica"
                            .into(),
                    );
                } else if r.paused {
                    let at = r.replay_lsn.map(|l| l.to_string()).unwrap_or_default();
                    let p = match (pause_lsn, r.at_pause_lsn) {
                        (Some(p), Some(true)) => format!(" = P ({p})"),
                        (Some(p), _) => format!(", not at P = {p}"),
                        (None, _) => String::new(),
                    };
                    warnings.push(format!(
                        "the replica is PAUSED at {at}{p}: WAL from the source piles up on it while it \
                         stays paused; once the load is verified, resume it with `pgmig resume-replica`"
                    ));
                }
                replica_state = Some(r);
            }
            Err(e) => warnings.push(format!("could not read the replica's replay state: {e}")),
        }
    }

    let mut cdc = t.cdc;
    for c in &mut cdc {
        c.lag_bytes = source_lsn.map(|s| s.checked_distance(c.applied_end_lsn).unwrap_or(0));
    }
    let step = if target.is_none() {
        Step::Unknown
    } else if !cdc.is_empty() {
        Step::Cdc
    } else if let Some(load) = &t.load {
        if load.finished {
            Step::Loaded
        } else {
            Step::Loading
        }
    } else if pause_lsn.is_some() {
        Step::SnapshotTaken
    } else if t.migration.is_some() {
        Step::SetUp
    } else {
        Step::NotSetUp
    };
    if matches!(step, Step::SnapshotTaken | Step::Loading)
        && let Some(r) = &replica_state
        && r.in_recovery
        && r.at_pause_lsn == Some(false)
    {
        warnings.push(format!(
            "the load needs the replica paused at P = {}, but it is not there: the load will refuse",
            pause_lsn.unwrap_or_default()
        ));
    }
    Report {
        step,
        next: step.next(),
        pause_lsn,
        source_lsn,
        servers: vec![source_st, replica_st, target_st],
        replica: replica_state,
        last_logged_step: t.last_logged_step,
        slots,
        load: t.load,
        cdc,
        thresholds: Thresholds {
            warn_retained_bytes: threshold_retained,
            warn_lag_bytes: threshold_lag,
        },
        warnings,
    }
}

/// Bytes in binary units, one decimal: `1.5 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), human_bytes)
}

/// The report as text.
fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "step: {}", r.step.describe());
    if let Some(next) = r.next {
        let _ = writeln!(o, "next: {next}");
    }
    let _ = writeln!(o, "P: {}", opt(r.pause_lsn));
    let servers: Vec<String> = r
        .servers
        .iter()
        .map(|s| {
            let state = if !s.configured {
                "not configured".to_owned()
            } else if s.reachable {
                format!("ok ({})", s.version.as_deref().unwrap_or("?"))
            } else {
                "UNREACHABLE".to_owned()
            };
            format!("{} {state}", s.role)
        })
        .collect();
    let _ = writeln!(o, "servers: {}", servers.join(", "));
    if let Some(rep) = &r.replica {
        let _ = writeln!(
            o,
            "replica: {}{}",
            if !rep.in_recovery {
                "not a standby"
            } else if rep.paused {
                "PAUSED"
            } else {
                "replaying"
            },
            rep.replay_lsn
                .map(|l| format!(" at {l}"))
                .unwrap_or_default()
        );
    }
    if let Some(l) = &r.last_logged_step {
        let _ = writeln!(
            o,
            "last logged step: {} {} at {}{}",
            l.step,
            l.status,
            l.at,
            l.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    if r.slots.is_empty() {
        let _ = writeln!(o, "\nslots: none known");
    } else {
        let _ = writeln!(
            o,
            "\n{:<20} {:<8} {:<9} {:>14} {:>11} {:>11} {:<10} {:>14}",
            "SLOT", "ORIGIN", "STATE", "CONFIRMED", "LAG", "RETAINED", "WAL", "CDC APPLIED"
        );
        for s in &r.slots {
            let origin = match s.created_by_pgmig {
                Some(true) => "pgmig",
                Some(false) => "adopted",
                None => "planned",
            };
            let state = match s.exists {
                None => "?".to_owned(),
                Some(false) => "MISSING".to_owned(),
                Some(true) if s.active => format!("active:{}", opt(s.active_pid)),
                Some(true) => "idle".to_owned(),
            };
            let _ = writeln!(
                o,
                "{:<20} {:<8} {:<9} {:>14} {:>11} {:>11} {:<10} {:>14}",
                s.name,
                origin,
                state,
                opt(s.confirmed_flush_lsn),
                opt_bytes(s.lag_bytes),
                opt_bytes(s.retained_wal_bytes),
                s.wal_status.as_deref().unwrap_or("-"),
                opt(s.cdc_applied_end_lsn)
            );
        }
    }
    if let Some(l) = &r.load {
        let _ = writeln!(
            o,
            "\nload (at P = {}): {} — {}/{} tasks, {}/{} chunks, {} rows, {} copied",
            l.pause_lsn,
            if l.finished {
                format!("finished {}", l.finished_at.as_deref().unwrap_or(""))
            } else {
                "in progress".to_owned()
            },
            l.tasks_done,
            l.tasks,
            l.chunks_done,
            l.chunks,
            l.rows,
            human_bytes(l.bytes.max(0) as u64)
        );
        let _ = writeln!(
            o,
            "{:<40} {:>9} {:>12} {:>11} {:>9} {:>5}",
            "TABLE", "CHUNKS", "ROWS", "BYTES", "INDEXES", "DONE"
        );
        for t in &l.tables {
            let _ = writeln!(
                o,
                "{:<40} {:>9} {:>12} {:>11} {:>9} {:>5}",
                t.table,
                format!("{}/{}", t.chunks_done, t.chunks),
                t.rows,
                human_bytes(t.bytes.max(0) as u64),
                format!("{}/{}", t.indexes_done, t.indexes),
                if t.finished { "yes" } else { "no" }
            );
        }
    }
    if !r.cdc.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<20} {:>14} {:>11} {:>12} {:>12}  LAST COMMIT",
            "CDC SLOT", "APPLIED", "LAG", "XACTS", "CHANGES"
        );
        for c in &r.cdc {
            let _ = writeln!(
                o,
                "{:<20} {:>14} {:>11} {:>12} {:>12}  {}",
                c.slot,
                c.applied_end_lsn.to_string(),
                opt_bytes(c.lag_bytes),
                opt(c.transactions),
                opt(c.changes),
                c.applied_commit_time.as_deref().unwrap_or("-")
            );
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &r.warnings {
            let _ = writeln!(o, "  ! {w}");
        }
    }
    o
}

/// Runs `pgmig status`.
pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<Outcome> {
    if global.dry_run {
        return Err(UsageError("status changes nothing; run it without --dry-run".into()).into());
    }
    let settings = Settings::load(global)?;
    let Some(every) = args.watch else {
        let report = gather(&settings, args).await;
        if global.json {
            print_json(&report)?;
        } else {
            print!("{}", render(&report));
        }
        return Ok(Outcome::Success);
    };
    if global.json {
        return Err(UsageError(
            "--watch refreshes text on a terminal; for scripts, run `pgmig --json status` repeatedly"
                .into(),
        )
        .into());
    }
    if every == 0 {
        return Err(UsageError("--watch needs at least 1 second".into()).into());
    }
    loop {
        let report = gather(&settings, args).await;
        // Clear the screen and go home, then the report.
        print!("\x1b[2J\x1b[H{}", render(&report));
        println!("\n(refreshing every {every}s; Ctrl-C to stop)");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_do() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
    }

    #[test]
    fn every_step_but_unknown_names_the_next_command() {
        for step in [
            Step::NotSetUp,
            Step::SetUp,
            Step::SnapshotTaken,
            Step::Loading,
            Step::Loaded,
            Step::Cdc,
        ] {
            assert!(step.next().unwrap().contains("pgmig "), "{step:?}");
        }
        assert!(Step::Unknown.next().is_none());
    }
}
