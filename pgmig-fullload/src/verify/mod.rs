//! Verification: proof that the target holds the same data as the replica at
//! P (after the load) or as the source (at cutover, once writes stopped).
//!
//! [`verify`] compares two servers, "left" (the replica or the source) and
//! "right" (the target), table by table, in one of four [`Mode`]s:
//!
//! - [`Mode::Counts`]: exact `count(*)` per table;
//! - [`Mode::Checksums`]: per chunk, an order-independent digest of every
//!   row's contents (see `checksum`); a differing chunk names its key range
//!   and is drilled down to the first missing, extra and changed keys (a
//!   large one is narrowed by key ranges first). Chunks are the load's key
//!   chunks when `pgmig.load_task` records them, else ranges of the key's
//!   leading integer column, else the whole table (a table without a key:
//!   an order-independent whole-table checksum, differing rows counted);
//! - [`Mode::Buckets`]: the runbook's QA, rows per month of a timestamp
//!   column, side by side;
//! - [`Mode::Sample`]: N random keys compared row by row.
//!
//! Equal data compares equal across majors and settings, different data
//! never does: rows are read with binary COPY where the built-in types'
//! send formats are portable, as text under a pinned session otherwise
//! (see `columns` and `session`).
//!
//! Cost: the servers do the work of a binary `COPY … TO STDOUT` per side
//! (no sort, no server-side hashing); pgmig hashes the rows as they stream,
//! each side on its own task. Measured on the shared bench dataset at scale
//! 4 (PG15 paused replica against a PG16 target on one 2-core machine shared
//! with other work, so single runs vary widely): `--jobs` 2–4 took a median
//! 1.41–1.53× (single runs 1.07–2.2×) the wall time of reading the same
//! tables from one side with `COPY … TO STDOUT` into /dev/null, and about
//! as long as reading both sides at once; in CPU, ~12 s (servers ~8.3 s for
//! both sides, pgmig's hashing ~4 s) against ~5.5 s for the one-side read.
//!
//! With [`VerifyOptions::left_paused_at`] the left side must be a standby
//! paused at exactly that LSN before anything is read and after everything
//! was, so the comparison is against the frozen snapshot.

mod buckets;
mod checksum;
mod chunk;
mod columns;
mod freeze;
mod sample;
mod session;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgmig_core::catalog::{self, TableInfo, TableKind};
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::Filters;
use pgmig_core::{Lsn, QualifiedTable, ServerVersion};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

pub use buckets::{BucketRow, NULL_BUCKET, PREFERRED_BUCKET_COLUMNS, choose_bucket_column};
pub use checksum::Keys;
pub use chunk::KeyRange;
pub use session::SESSION_SQL;

use checksum::{Digest, DrillDown, DrillSide};
use columns::Column;

/// What to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Exact row count per table.
    Counts,
    /// Per-chunk checksums of every row's contents, drilled down to keys.
    Checksums,
    /// Rows per month of a timestamp column, side by side.
    Buckets,
    /// Random keys compared row by row.
    Sample,
}

impl Mode {
    /// The mode's name as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Counts => "counts",
            Mode::Checksums => "checksums",
            Mode::Buckets => "buckets",
            Mode::Sample => "sample",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "counts" => Ok(Mode::Counts),
            "checksums" => Ok(Mode::Checksums),
            "buckets" => Ok(Mode::Buckets),
            "sample" => Ok(Mode::Sample),
            other => Err(format!(
                "unknown verify mode {other:?} (counts, checksums, buckets, sample)"
            )),
        }
    }
}

/// Progress of a verification, sent as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyEvent {
    /// The work is planned: how many tables and units (chunks or tables).
    Planned {
        /// Tables to compare.
        tables: usize,
        /// Units of work.
        units: usize,
    },
    /// One unit of work finished.
    UnitDone {
        /// Its table.
        table: QualifiedTable,
        /// Whether it found no difference.
        passed: bool,
    },
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// What to compare. Default: [`Mode::Checksums`].
    pub mode: Mode,
    /// Connection pairs working in parallel. Default: 4.
    pub jobs: usize,
    /// The tables to compare (e.g. the plan's); `None`: every user table of
    /// the left side (partitioned parents are compared through their
    /// partitions). Default: `None`.
    pub tables: Option<Vec<QualifiedTable>>,
    /// Include/exclude patterns applied on top (a partition follows its
    /// root). Default: everything.
    pub filters: Filters,
    /// The bucket column for [`Mode::Buckets`], where a table has it; other
    /// tables choose theirs (see [`choose_bucket_column`]). Default: `None`.
    pub bucket_column: Option<String>,
    /// Keys per table for [`Mode::Sample`]. Default: 1000.
    pub sample_size: usize,
    /// When set, the left side must be a standby paused at exactly this LSN
    /// (P) before and after reading. Default: `None`.
    pub left_paused_at: Option<Lsn>,
    /// Rows per own checksum chunk (when the load's chunks are unknown).
    /// Default: 1,000,000.
    pub chunk_rows: i64,
    /// Differing keys reported per kind and chunk. Default: 10.
    pub max_keys: usize,
    /// Rows per side up to which a differing chunk is drilled down at once
    /// (drilling keeps one entry per row in memory); larger chunks of an
    /// integer key are narrowed to such ranges first, others are reported
    /// without keys. Default: 200,000.
    pub drill_down_rows: u64,
    /// The left side's name in messages, e.g. `replica`. Default: `left`.
    pub left_name: String,
    /// The right side's name in messages, e.g. `target`. Default: `right`.
    pub right_name: String,
    /// Stops the work when cancelled (connections are dropped, which ends
    /// the servers' statements). Default: a token never cancelled.
    pub cancel: CancellationToken,
    /// Where progress events go. Default: nowhere.
    pub progress: Option<UnboundedSender<VerifyEvent>>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            mode: Mode::Checksums,
            jobs: 4,
            tables: None,
            filters: Filters::default(),
            bucket_column: None,
            sample_size: 1000,
            left_paused_at: None,
            chunk_rows: 1_000_000,
            max_keys: 10,
            drill_down_rows: 200_000,
            left_name: "left".into(),
            right_name: "right".into(),
            cancel: CancellationToken::new(),
            progress: None,
        }
    }
}

/// Why verification could not be done (a difference in the data is not an
/// error: it is a failed [`TableReport`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Connecting, the catalog or an admin call failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
    /// A statement failed on one side.
    #[error("{what} on the {side} failed")]
    Query {
        /// The side's name.
        side: String,
        /// What pgmig was doing.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The left side is not the frozen snapshot: not paused, or not at P.
    #[error(
        "the {side} is not frozen at P = {expected} {when} reading: replay is {} at {replay}; \
         the comparison would not be against the snapshot the load copied",
        pause_word(.paused)
    )]
    NotFrozen {
        /// The side's name.
        side: String,
        /// `before` or `after`.
        when: &'static str,
        /// P.
        expected: Lsn,
        /// The replay LSN found.
        replay: Lsn,
        /// Whether replay was paused.
        paused: bool,
    },
    /// A server sent something verification cannot read.
    #[error("unexpected data from the {side} for {what}: {detail}")]
    Protocol {
        /// The side's name.
        side: String,
        /// What pgmig was doing.
        what: String,
        /// What was odd.
        detail: String,
    },
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The cancellation token fired.
    #[error("verification cancelled")]
    Cancelled,
    /// A worker task ended abnormally (a panic).
    #[error("a verification worker failed: {0}")]
    Worker(String),
}

fn pause_word(paused: &bool) -> &'static str {
    if *paused { "paused" } else { "not paused" }
}

impl VerifyError {
    fn query(
        side: &str,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> VerifyError {
        let side = side.to_string();
        let what = what.into();
        move |source| VerifyError::Query { side, what, source }
    }

    /// Whether this is a usage mistake (bad options, a wrong kind of server).
    pub fn is_usage(&self) -> bool {
        match self {
            VerifyError::Usage(_) => true,
            VerifyError::Core(e) => e.kind() == pgmig_core::ErrorKind::Usage,
            _ => false,
        }
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideInfo {
    /// Its name, e.g. `replica`.
    pub name: String,
    /// Its server version.
    pub version: String,
}

/// A difference between the two sides of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Difference {
    /// The table exists on one side only.
    TableMissing {
        /// The side that lacks it.
        side: String,
    },
    /// The compared columns differ by name.
    Columns {
        /// Columns only the left has.
        only_left: Vec<String>,
        /// Columns only the right has.
        only_right: Vec<String>,
    },
    /// The row counts differ.
    RowCount {
        /// Rows on the left.
        left: u64,
        /// Rows on the right.
        right: u64,
    },
    /// A checksum chunk differs.
    Chunk {
        /// The chunk's key range.
        range: KeyRange,
        /// Rows in it on the left.
        rows_left: u64,
        /// Rows in it on the right.
        rows_right: u64,
        /// Rows only on the left.
        missing: Keys,
        /// Rows only on the right.
        extra: Keys,
        /// Keys whose rows differ.
        changed: Keys,
        /// Why it was not drilled down, if it was not.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A month's row counts differ.
    Bucket {
        /// The column.
        column: String,
        /// The month (`YYYY-MM`) or `NULL`.
        bucket: String,
        /// Rows on the left.
        left: u64,
        /// Rows on the right.
        right: u64,
    },
    /// Sampled keys differ.
    Sample {
        /// Sampled keys the right lacks.
        missing: Keys,
        /// Sampled keys whose rows differ.
        changed: Keys,
    },
}

impl Difference {
    /// The difference in words, naming sides `left` and `right`.
    pub fn describe(&self, left: &str, right: &str) -> String {
        let keys = |what: &str, k: &Keys| -> Option<String> {
            (!k.is_empty()).then(|| {
                if k.first.is_empty() {
                    format!("{} row(s) {what}", k.total)
                } else {
                    let more = if k.total as usize > k.first.len() {
                        format!(" (+{} more)", k.total as usize - k.first.len())
                    } else {
                        String::new()
                    };
                    format!("{} row(s) {what}: {}{more}", k.total, k.first.join(", "))
                }
            })
        };
        match self {
            Difference::TableMissing { side } => format!("table missing on the {side}"),
            Difference::Columns {
                only_left,
                only_right,
            } => format!(
                "columns differ: only on the {left}: [{}]; only on the {right}: [{}]",
                only_left.join(", "),
                only_right.join(", ")
            ),
            Difference::RowCount { left: l, right: r } => {
                format!("row count differs: {left} {l}, {right} {r}")
            }
            Difference::Chunk {
                range,
                rows_left,
                rows_right,
                missing,
                extra,
                changed,
                note,
            } => {
                let mut parts = vec![format!(
                    "chunk {range} differs ({left} {rows_left} rows, {right} {rows_right})"
                )];
                parts.extend(keys(&format!("missing on the {right}"), missing));
                parts.extend(keys(&format!("extra on the {right}"), extra));
                parts.extend(keys("changed", changed));
                parts.extend(note.clone());
                parts.join("; ")
            }
            Difference::Bucket {
                column,
                bucket,
                left: l,
                right: r,
            } => format!("{column} month {bucket}: {left} {l}, {right} {r}"),
            Difference::Sample { missing, changed } => {
                let mut parts = vec!["sampled rows differ".to_string()];
                parts.extend(keys(&format!("missing on the {right}"), missing));
                parts.extend(keys("changed", changed));
                parts.join("; ")
            }
        }
    }
}

/// The result for one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: QualifiedTable,
    /// No difference found.
    pub passed: bool,
    /// Rows on the left (counted, or hashed), when read.
    pub rows_left: Option<u64>,
    /// Rows on the right, when read.
    pub rows_right: Option<u64>,
    /// Wall time from its first statement to its last, in milliseconds.
    pub elapsed_ms: u64,
    /// How it was compared, e.g. `4 chunks on id (load)`.
    pub method: String,
    /// What differs; empty when passed.
    pub differences: Vec<Difference>,
    /// [`Mode::Buckets`]: every month side by side.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<BucketRow>,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The mode.
    pub mode: Mode,
    /// The left side.
    pub left: SideInfo,
    /// The right side.
    pub right: SideInfo,
    /// P, when the left side was checked to be frozen there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_paused_at: Option<Lsn>,
    /// No difference in any table.
    pub passed: bool,
    /// Per table, in name order.
    pub tables: Vec<TableReport>,
    /// Total wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl VerifyReport {
    /// The tables with differences.
    pub fn failed(&self) -> impl Iterator<Item = &TableReport> {
        self.tables.iter().filter(|t| !t.passed)
    }
}

/// A table to compare, with what both sides read of it.
#[derive(Debug)]
struct TablePlan {
    info: TableInfo,
    /// Compared columns, aligned by name: (left, right).
    columns: Vec<(Column, Column)>,
    /// Row key columns (possibly empty), with their expressions per side.
    key: Vec<String>,
    key_left: Vec<String>,
    key_right: Vec<String>,
    /// The single integer key column, when the key is one.
    integer_key: bool,
    /// The key's leading column, when it is an integer: chunks are its
    /// ranges.
    chunk_column: Option<String>,
    method: String,
    /// Found while planning (missing table, column differences).
    differences: Vec<Difference>,
    /// Whether to read rows at all.
    comparable: bool,
}

impl TablePlan {
    fn left_exprs(&self) -> Vec<&str> {
        self.columns.iter().map(|(l, _)| l.expr.as_str()).collect()
    }

    fn right_exprs(&self) -> Vec<&str> {
        self.columns.iter().map(|(_, r)| r.expr.as_str()).collect()
    }
}

/// One unit of work.
#[derive(Debug, Clone)]
enum Unit {
    Count(usize),
    Checksum(usize, KeyRange),
    Buckets(usize, String),
    Sample(usize),
}

impl Unit {
    fn table(&self) -> usize {
        match self {
            Unit::Count(t) | Unit::Checksum(t, _) | Unit::Buckets(t, _) | Unit::Sample(t) => *t,
        }
    }
}

/// What a unit found.
#[derive(Debug, Default)]
struct UnitResult {
    table: usize,
    started: Option<Instant>,
    ended: Option<Instant>,
    rows_left: Option<u64>,
    rows_right: Option<u64>,
    differences: Vec<Difference>,
    buckets: Vec<BucketRow>,
}

/// Everything the workers share.
struct Context {
    left: ConnConfig,
    right: ConnConfig,
    opts: VerifyOptions,
    tables: Vec<TablePlan>,
    queue: Mutex<VecDeque<Unit>>,
}

/// Compares `left` (the replica at P, or the source) with `right` (the
/// target) as `opts` says.
///
/// Returns a report whose `passed` is false when any table differs;
/// errors only when the comparison itself could not be made (connection,
/// SQL, a left side that is not frozen at P, cancellation).
pub async fn verify(
    left: &ConnConfig,
    right: &ConnConfig,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let span =
        info_span!("verify", mode = %opts.mode, left = %opts.left_name, right = %opts.right_name);
    Box::pin(verify_inner(left, right, opts))
        .instrument(span)
        .await
}

async fn verify_inner(
    left: &ConnConfig,
    right: &ConnConfig,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if opts.jobs == 0 {
        return Err(VerifyError::Usage("--jobs must be at least 1".into()));
    }
    if opts.mode == Mode::Sample && opts.sample_size == 0 {
        return Err(VerifyError::Usage("--sample must be at least 1".into()));
    }
    let start = Instant::now();
    let (ln, rn) = (opts.left_name.as_str(), opts.right_name.as_str());
    let lc = session::connect(left, ln).await?;
    let rc = session::connect(right, rn).await?;
    let lv = ServerVersion::query(&lc).await?;
    let rv = ServerVersion::query(&rc).await?;
    if let Some(p) = opts.left_paused_at {
        freeze::check_paused_at(&lc, lv, p, ln, "before").await?;
    }

    let tables = plan_tables(&lc, lv, &rc, rv, opts).await?;
    let units = plan_units(&lc, &rc, &tables, opts).await?;
    info!(
        tables = tables.len(),
        units = units.len(),
        "verification planned"
    );
    if let Some(tx) = &opts.progress {
        let _ = tx.send(VerifyEvent::Planned {
            tables: tables.len(),
            units: units.len(),
        });
    }
    drop((lc, rc));

    let jobs = opts.jobs.min(units.len()).max(1);
    let ctx = Arc::new(Context {
        left: left.clone(),
        right: right.clone(),
        // A worker's failure stops the others without cancelling the
        // caller's token.
        opts: VerifyOptions {
            cancel: opts.cancel.child_token(),
            ..opts.clone()
        },
        tables,
        queue: Mutex::new(units.into()),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let ctx = Arc::clone(&ctx);
        workers.spawn(async move { worker(&ctx).await }.in_current_span());
    }
    let mut results = Vec::new();
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let failed = match joined {
            Ok(Ok(mut r)) => {
                results.append(&mut r);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(join) => Some(VerifyError::Worker(join.to_string())),
        };
        if let Some(e) = failed {
            // Stop the others; keep the first real cause, not their
            // cancellations.
            ctx.opts.cancel.cancel();
            if first_error.is_none() || matches!(first_error, Some(VerifyError::Cancelled)) {
                first_error = Some(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(p) = opts.left_paused_at {
        let lc = session::connect(left, ln).await?;
        freeze::check_paused_at(&lc, lv, p, ln, "after").await?;
    }

    let report = assemble(&ctx, results, opts, lv, rv, start.elapsed());
    info!(
        passed = report.passed,
        elapsed_ms = report.elapsed_ms,
        "verification finished"
    );
    Ok(report)
}

/// Chooses the tables and reads both sides' columns.
async fn plan_tables(
    lc: &Client,
    lv: ServerVersion,
    rc: &Client,
    rv: ServerVersion,
    opts: &VerifyOptions,
) -> Result<Vec<TablePlan>, VerifyError> {
    let (ln, rn) = (opts.left_name.as_str(), opts.right_name.as_str());
    let left_tables = catalog::list_tables(lc, lv).await?;
    let right_tables = catalog::list_tables(rc, rv).await?;
    let right_by_name: HashMap<&QualifiedTable, &TableInfo> =
        right_tables.iter().map(|t| (&t.table, t)).collect();
    let keep = opts.filters.keeper(&left_tables);
    let wanted: Option<HashSet<&QualifiedTable>> = opts.tables.as_ref().map(|t| t.iter().collect());
    let left_by_name: HashMap<&QualifiedTable, &TableInfo> =
        left_tables.iter().map(|t| (&t.table, t)).collect();
    // A table is wanted when it or one of its ancestors (a partition's
    // parents) is named.
    let is_wanted = |info: &TableInfo| {
        let Some(w) = &wanted else { return true };
        let mut t = info;
        // Partition trees are shallow; the bound guards a corrupt catalog.
        for _ in 0..64 {
            if w.contains(&t.table) {
                return true;
            }
            match t.parent.as_ref().and_then(|p| left_by_name.get(p)) {
                Some(parent) => t = parent,
                None => return false,
            }
        }
        false
    };
    let binary_times =
        columns::integer_datetimes(lc, ln).await? && columns::integer_datetimes(rc, rn).await?;
    let mut plans = Vec::new();
    for info in &left_tables {
        // As the planner: partitioned parents hold no rows (their leaves
        // are compared), unlogged tables are not migrated (a standby cannot
        // even read them).
        if !pgmig_core::plan::is_plannable(info) || !keep(info) || !is_wanted(info) {
            continue;
        }
        let Some(rinfo) = right_by_name.get(&info.table) else {
            plans.push(unreadable(
                info.clone(),
                Difference::TableMissing { side: rn.into() },
            ));
            continue;
        };
        let lcols = columns::columns(lc, ln, info, binary_times).await?;
        let rcols = columns::columns(rc, rn, rinfo, binary_times).await?;
        plans.push(align(info.clone(), lcols, rcols));
    }
    // Named tables the left does not have.
    if let Some(named) = &opts.tables {
        let left_names: HashSet<&QualifiedTable> = left_tables.iter().map(|t| &t.table).collect();
        for t in named {
            if !left_names.contains(t) && opts.filters.matches(t) {
                let info = TableInfo {
                    oid: 0,
                    table: t.clone(),
                    kind: TableKind::Table,
                    parent: None,
                    table_bytes: 0,
                    total_bytes: 0,
                    estimated_rows: None,
                    primary_key: Vec::new(),
                    unique_indexes: Vec::new(),
                    replica_identity: catalog::ReplicaIdentity::Default,
                    unlogged: false,
                    columns: Vec::new(),
                    dropped_columns: 0,
                };
                plans.push(unreadable(
                    info,
                    Difference::TableMissing { side: ln.into() },
                ));
            }
        }
    }
    plans.sort_by(|a, b| a.info.table.cmp(&b.info.table));
    Ok(plans)
}

fn unreadable(info: TableInfo, diff: Difference) -> TablePlan {
    TablePlan {
        info,
        columns: Vec::new(),
        key: Vec::new(),
        key_left: Vec::new(),
        key_right: Vec::new(),
        integer_key: false,
        chunk_column: None,
        method: "not compared".into(),
        differences: vec![diff],
        comparable: false,
    }
}

/// Pairs both sides' columns by name (in the left's order); columns one
/// side lacks are a difference, the common ones are still compared.
fn align(info: TableInfo, lcols: Vec<Column>, rcols: Vec<Column>) -> TablePlan {
    let mut differences = Vec::new();
    let only_left: Vec<String> = lcols
        .iter()
        .filter(|l| !rcols.iter().any(|r| r.name == l.name))
        .map(|c| c.name.clone())
        .collect();
    let only_right: Vec<String> = rcols
        .iter()
        .filter(|r| !lcols.iter().any(|l| l.name == r.name))
        .map(|c| c.name.clone())
        .collect();
    if !only_left.is_empty() || !only_right.is_empty() {
        differences.push(Difference::Columns {
            only_left,
            only_right,
        });
    }
    let mut key = columns::row_key(&info);
    let columns: Vec<(Column, Column)> = lcols
        .iter()
        .filter_map(|l| {
            rcols.iter().find(|r| r.name == l.name).map(|r| {
                if l.type_key == r.type_key {
                    (l.clone(), r.clone())
                } else {
                    // Different types (a widened integer, say): equal
                    // values still print the same text.
                    (l.as_text(), r.as_text())
                }
            })
        })
        .collect();
    if !key
        .iter()
        .all(|k| columns.iter().any(|(l, _)| &l.name == k))
    {
        key.clear();
    }
    // Keys are read as text on both sides: what a report shows.
    let key_left: Vec<String> = key.iter().map(|k| columns::key_expr(k)).collect();
    let key_right = key_left.clone();
    let lefts: Vec<Column> = columns.iter().map(|(l, _)| l.clone()).collect();
    let integer_key = columns::integer_key(&key, &lefts).is_some();
    let chunk_column = columns::chunk_column(&key, &lefts);
    TablePlan {
        info,
        columns,
        key,
        key_left,
        key_right,
        integer_key,
        chunk_column,
        method: String::new(),
        differences,
        comparable: true,
    }
}

/// The units of work of the mode, largest tables first.
async fn plan_units(
    lc: &Client,
    rc: &Client,
    tables: &[TablePlan],
    opts: &VerifyOptions,
) -> Result<Vec<Unit>, VerifyError> {
    let mut order: Vec<usize> = (0..tables.len())
        .filter(|i| tables[*i].comparable)
        .collect();
    order.sort_by_key(|i| std::cmp::Reverse(tables[*i].info.table_bytes));
    let load = if opts.mode == Mode::Checksums {
        let mut load = chunk::load_chunks(rc, &opts.right_name).await?;
        if load.is_empty() {
            load = chunk::load_chunks(lc, &opts.left_name).await?;
        }
        load
    } else {
        HashMap::new()
    };
    let mut units = Vec::new();
    for i in order {
        let t = &tables[i];
        match opts.mode {
            Mode::Counts => units.push(Unit::Count(i)),
            Mode::Sample => units.push(Unit::Sample(i)),
            Mode::Buckets => match choose_bucket_column(&t.info, opts.bucket_column.as_deref()) {
                Some(c) => units.push(Unit::Buckets(i, c)),
                None => units.push(Unit::Count(i)),
            },
            Mode::Checksums => {
                let lefts: Vec<Column> = t.columns.iter().map(|(l, _)| l.clone()).collect();
                let ranges = match load.get(&t.info.table) {
                    Some(r)
                        if r.iter().all(|k| {
                            k.column
                                .as_ref()
                                .is_some_and(|c| lefts.iter().any(|l| &l.name == c))
                        }) =>
                    {
                        r.clone()
                    }
                    _ => match columns::chunk_column(&t.key, &lefts) {
                        Some(col) => {
                            chunk::own_chunks(
                                lc,
                                &opts.left_name,
                                &t.info.table,
                                &col,
                                // Unknown estimate (never analyzed): about
                                // 100 bytes per row.
                                t.info.estimated_rows.or(Some(t.info.table_bytes / 100)),
                                opts.chunk_rows,
                            )
                            .await?
                        }
                        None => vec![KeyRange::whole()],
                    },
                };
                units.extend(ranges.into_iter().map(|r| Unit::Checksum(i, r)));
            }
        }
    }
    Ok(units)
}

/// Takes units until none is left, on its own pair of connections.
async fn worker(ctx: &Context) -> Result<Vec<UnitResult>, VerifyError> {
    let (ln, rn) = (ctx.opts.left_name.as_str(), ctx.opts.right_name.as_str());
    let (lc, rc) = tokio::try_join!(
        session::connect(&ctx.left, ln),
        session::connect(&ctx.right, rn)
    )?;
    let (lc, rc) = (Arc::new(lc), Arc::new(rc));
    let mut out = Vec::new();
    loop {
        if ctx.opts.cancel.is_cancelled() {
            return Err(VerifyError::Cancelled);
        }
        let unit = ctx.queue.lock().expect("verify queue poisoned").pop_front();
        let Some(unit) = unit else { break };
        let t = unit.table();
        let started = Instant::now();
        let mut result = tokio::select! {
            biased;
            _ = ctx.opts.cancel.cancelled() => return Err(VerifyError::Cancelled),
            r = run_unit(ctx, &lc, &rc, &unit) => r?,
        };
        result.table = t;
        result.started = Some(started);
        result.ended = Some(Instant::now());
        debug!(table = %ctx.tables[t].info.table, unit = ?unit, differences = result.differences.len(), "unit done");
        if let Some(tx) = &ctx.opts.progress {
            let _ = tx.send(VerifyEvent::UnitDone {
                table: ctx.tables[t].info.table.clone(),
                passed: result.differences.is_empty(),
            });
        }
        out.push(result);
    }
    Ok(out)
}

async fn run_unit(
    ctx: &Context,
    lc: &Arc<Client>,
    rc: &Arc<Client>,
    unit: &Unit,
) -> Result<UnitResult, VerifyError> {
    let (ln, rn) = (ctx.opts.left_name.as_str(), ctx.opts.right_name.as_str());
    let t = &ctx.tables[unit.table()];
    let table = &t.info.table;
    let cancel = &ctx.opts.cancel;
    let mut r = UnitResult::default();
    match unit {
        Unit::Count(_) => {
            let sql = format!("SELECT count(*)::int8 FROM ONLY {}", table.quoted());
            let what = format!("count the rows of {table}");
            let (l, rr) = tokio::try_join!(
                async {
                    lc.query_one(&sql, &[])
                        .await
                        .map_err(VerifyError::query(ln, what.clone()))
                },
                async {
                    rc.query_one(&sql, &[])
                        .await
                        .map_err(VerifyError::query(rn, what.clone()))
                },
            )?;
            let (l, rr) = (l.get::<_, i64>(0) as u64, rr.get::<_, i64>(0) as u64);
            r.rows_left = Some(l);
            r.rows_right = Some(rr);
            if l != rr {
                r.differences
                    .push(Difference::RowCount { left: l, right: rr });
            }
        }
        Unit::Checksum(_, range) => {
            let cond = range.condition();
            let lsql = checksum::copy_sql(table, &t.left_exprs(), &cond);
            let rsql = checksum::copy_sql(table, &t.right_exprs(), &cond);
            let (l, rr) = digest_both(ctx, lc, rc, table, lsql, rsql).await?;
            r.rows_left = Some(l.rows);
            r.rows_right = Some(rr.rows);
            if l != rr {
                let (found, note) = locate(ctx, lc, rc, t, range, l.rows.max(rr.rows)).await?;
                r.differences.push(Difference::Chunk {
                    range: range.clone(),
                    rows_left: l.rows,
                    rows_right: rr.rows,
                    missing: found.missing,
                    extra: found.extra,
                    changed: found.changed,
                    note,
                });
            }
        }
        Unit::Buckets(_, column) => {
            let (l, rr) = tokio::try_join!(
                buckets::buckets(lc, ln, table, column),
                buckets::buckets(rc, rn, table, column),
            )?;
            r.rows_left = Some(l.iter().map(|(_, n)| n).sum());
            r.rows_right = Some(rr.iter().map(|(_, n)| n).sum());
            r.buckets = buckets::side_by_side(&l, &rr);
            r.differences
                .extend(r.buckets.iter().filter(|b| b.left != b.right).map(|b| {
                    Difference::Bucket {
                        column: column.clone(),
                        bucket: b.bucket.clone(),
                        left: b.left,
                        right: b.right,
                    }
                }));
        }
        Unit::Sample(_) => {
            if t.key.is_empty() {
                // No key to sample by: compare the counts instead.
                return Box::pin(run_unit(ctx, lc, rc, &Unit::Count(unit.table()))).await;
            }
            let keys = sample::random_keys(
                lc,
                ln,
                table,
                &t.key,
                t.info.estimated_rows,
                ctx.opts.sample_size,
            )
            .await?;
            let mut missing = Keys::default();
            let mut changed = Keys::default();
            for cond in sample::key_conditions(&t.key, &keys) {
                let (left, right) = drill_sides(ctx, lc, rc, t);
                let found = checksum::drill_down(
                    table,
                    &cond,
                    left,
                    right,
                    t.integer_key,
                    ctx.opts.max_keys,
                    cancel,
                )
                .await?;
                merge_keys(&mut missing, found.missing, ctx.opts.max_keys);
                merge_keys(&mut changed, found.changed, ctx.opts.max_keys);
            }
            r.rows_left = Some(keys.len() as u64);
            r.rows_right = Some((keys.len() as u64).saturating_sub(missing.total));
            if !missing.is_empty() || !changed.is_empty() {
                r.differences.push(Difference::Sample { missing, changed });
            }
        }
    }
    Ok(r)
}

/// Digests one chunk on both sides at once, each side on its own task (so
/// the two streams are hashed on two threads).
async fn digest_both(
    ctx: &Context,
    lc: &Arc<Client>,
    rc: &Arc<Client>,
    table: &QualifiedTable,
    lsql: String,
    rsql: String,
) -> Result<(Digest, Digest), VerifyError> {
    let spawn = |client: &Arc<Client>, side: &str, sql: String| {
        let (client, side, table) = (Arc::clone(client), side.to_string(), table.clone());
        let cancel = ctx.opts.cancel.clone();
        tokio::spawn(
            async move { checksum::digest(&client, &side, &table, &sql, &cancel).await }
                .in_current_span(),
        )
    };
    let mut left = spawn(lc, &ctx.opts.left_name, lsql);
    let mut right = spawn(rc, &ctx.opts.right_name, rsql);
    let joined = |j: Result<Result<Digest, VerifyError>, tokio::task::JoinError>| {
        j.map_err(|e| VerifyError::Worker(e.to_string()))?
    };
    // The first side to fail stops the other at once.
    tokio::select! {
        l = &mut left => match joined(l) {
            Ok(l) => Ok((l, joined(right.await)?)),
            Err(e) => {
                right.abort();
                Err(e)
            }
        },
        r = &mut right => match joined(r) {
            Ok(r) => Ok((joined(left.await)?, r)),
            Err(e) => {
                left.abort();
                Err(e)
            }
        },
    }
}

/// The two sides of table `t` for a drill-down.
fn drill_sides<'a>(
    ctx: &'a Context,
    lc: &'a Client,
    rc: &'a Client,
    t: &'a TablePlan,
) -> (DrillSide<'a>, DrillSide<'a>) {
    (
        DrillSide {
            client: lc,
            side: &ctx.opts.left_name,
            key_exprs: t.key_left.iter().map(String::as_str).collect(),
            exprs: t.left_exprs(),
        },
        DrillSide {
            client: rc,
            side: &ctx.opts.right_name,
            key_exprs: t.key_right.iter().map(String::as_str).collect(),
            exprs: t.right_exprs(),
        },
    )
}

/// Sub-ranges a differing range is cut into at each narrowing step.
const NARROW_FANOUT: u64 = 16;

/// Names what differs in a differing chunk of `rows` rows (the larger
/// side's count).
///
/// A chunk of at most [`VerifyOptions::drill_down_rows`] rows is drilled
/// down directly. A larger chunk of an integer key is narrowed first: cut
/// into [`NARROW_FANOUT`] key ranges between both sides' smallest and
/// largest key in it, each digested on both sides, and only the differing
/// ones cut again until small enough — memory stays bounded and equal parts
/// are read once more at most. A larger chunk without an integer key is
/// reported without keys, with a note.
async fn locate(
    ctx: &Context,
    lc: &Arc<Client>,
    rc: &Arc<Client>,
    t: &TablePlan,
    range: &KeyRange,
    rows: u64,
) -> Result<(DrillDown, Option<String>), VerifyError> {
    let (ln, rn) = (ctx.opts.left_name.as_str(), ctx.opts.right_name.as_str());
    let table = &t.info.table;
    let cancel = &ctx.opts.cancel;
    let limit = ctx.opts.drill_down_rows.max(1);
    let mut leaves = Vec::new();
    let mut note = None;
    let mut todo = vec![(range.clone(), rows)];
    while let Some((r, n)) = todo.pop() {
        let column = match &r.column {
            Some(c) if n > limit => c.clone(),
            _ if n > limit => {
                note = Some(format!(
                    "not drilled down: more than {limit} rows and no integer key to narrow by"
                ));
                continue;
            }
            _ => {
                leaves.push(r);
                continue;
            }
        };
        let col = pgmig_core::quote_ident(&column);
        let sql = format!(
            "SELECT min({col})::int8, max({col})::int8 FROM ONLY {} WHERE {}",
            table.quoted(),
            r.condition()
        );
        let what = format!("read the key range of {table}");
        let (lb, rb) = tokio::try_join!(
            async {
                lc.query_one(&sql, &[])
                    .await
                    .map_err(VerifyError::query(ln, what.clone()))
            },
            async {
                rc.query_one(&sql, &[])
                    .await
                    .map_err(VerifyError::query(rn, what.clone()))
            },
        )?;
        let bound = |row: &tokio_postgres::Row, i: usize| row.get::<_, Option<i64>>(i);
        let min = bound(&lb, 0).into_iter().chain(bound(&rb, 0)).min();
        let max = bound(&lb, 1).into_iter().chain(bound(&rb, 1)).max();
        let (Some(min), Some(max)) = (min, max) else {
            continue;
        };
        if min == max {
            // One value of a composite key's leading column: no narrower
            // range exists.
            note = Some(format!(
                "not drilled down: more than {limit} rows with {column} = {min}"
            ));
            continue;
        }
        let mut parts = chunk::split_range(&column, min, max, NARROW_FANOUT);
        if let Some(first) = parts.first_mut() {
            first.lo = r.lo;
        }
        if let Some(last) = parts.last_mut() {
            last.hi = r.hi;
        }
        for part in parts.into_iter().rev() {
            let cond = part.condition();
            let lsql = checksum::copy_sql(table, &t.left_exprs(), &cond);
            let rsql = checksum::copy_sql(table, &t.right_exprs(), &cond);
            let (l, rr) = digest_both(ctx, lc, rc, table, lsql, rsql).await?;
            if l != rr {
                todo.push((part, l.rows.max(rr.rows)));
            }
        }
    }
    leaves.sort_by_key(|r| r.lo.unwrap_or(i64::MIN));
    let mut found = DrillDown::default();
    for leaf in leaves {
        let (left, right) = drill_sides(ctx, lc, rc, t);
        let part = checksum::drill_down(
            table,
            &leaf.condition(),
            left,
            right,
            t.integer_key,
            ctx.opts.max_keys,
            cancel,
        )
        .await?;
        merge_keys(&mut found.missing, part.missing, ctx.opts.max_keys);
        merge_keys(&mut found.extra, part.extra, ctx.opts.max_keys);
        merge_keys(&mut found.changed, part.changed, ctx.opts.max_keys);
    }
    Ok((found, note))
}

fn merge_keys(into: &mut Keys, more: Keys, limit: usize) {
    into.total += more.total;
    let room = limit.saturating_sub(into.first.len());
    into.first.extend(more.first.into_iter().take(room));
}

/// Per-table reports from the units' results.
fn assemble(
    ctx: &Context,
    results: Vec<UnitResult>,
    opts: &VerifyOptions,
    lv: ServerVersion,
    rv: ServerVersion,
    elapsed: Duration,
) -> VerifyReport {
    let mut by_table: HashMap<usize, Vec<UnitResult>> = HashMap::new();
    for r in results {
        by_table.entry(r.table).or_default().push(r);
    }
    let mut tables = Vec::with_capacity(ctx.tables.len());
    for (i, t) in ctx.tables.iter().enumerate() {
        let units = by_table.remove(&i).unwrap_or_default();
        let mut differences = t.differences.clone();
        let mut buckets = Vec::new();
        let mut rows_left: Option<u64> = None;
        let mut rows_right: Option<u64> = None;
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        let mut chunks = 0usize;
        let sorted = {
            let mut u = units;
            // Chunk differences in key order.
            u.sort_by_key(|r| r.started);
            u
        };
        for u in sorted {
            chunks += 1;
            if let Some(n) = u.rows_left {
                *rows_left.get_or_insert(0) += n;
            }
            if let Some(n) = u.rows_right {
                *rows_right.get_or_insert(0) += n;
            }
            first = first.min(u.started).or(u.started);
            last = last.max(u.ended);
            differences.extend(u.differences);
            buckets.extend(u.buckets);
        }
        differences.sort_by_key(|d| match d {
            Difference::Chunk { range, .. } => (1, range.lo.unwrap_or(i64::MIN)),
            _ => (0, 0),
        });
        let method = if !t.comparable {
            t.method.clone()
        } else {
            method_of(opts, t, chunks)
        };
        if opts.mode == Mode::Checksums
            && let (Some(l), Some(r)) = (rows_left, rows_right)
            && l != r
            && !differences
                .iter()
                .any(|d| matches!(d, Difference::RowCount { .. }))
        {
            differences.insert(0, Difference::RowCount { left: l, right: r });
        }
        let elapsed_ms = match (first, last) {
            (Some(a), Some(b)) => b.duration_since(a).as_millis() as u64,
            _ => 0,
        };
        tables.push(TableReport {
            table: t.info.table.clone(),
            passed: differences.is_empty(),
            rows_left,
            rows_right,
            elapsed_ms,
            method,
            differences,
            buckets,
        });
    }
    VerifyReport {
        mode: opts.mode,
        left: SideInfo {
            name: opts.left_name.clone(),
            version: lv.to_string(),
        },
        right: SideInfo {
            name: opts.right_name.clone(),
            version: rv.to_string(),
        },
        left_paused_at: opts.left_paused_at,
        passed: tables.iter().all(|t| t.passed),
        tables,
        elapsed_ms: elapsed.as_millis() as u64,
    }
}

/// How a table was compared, in words.
fn method_of(opts: &VerifyOptions, t: &TablePlan, units: usize) -> String {
    match opts.mode {
        Mode::Counts => "count(*)".into(),
        Mode::Buckets => match choose_bucket_column(&t.info, opts.bucket_column.as_deref()) {
            Some(c) => format!("rows per month of {c}"),
            None => "count(*) (no timestamp column)".into(),
        },
        Mode::Sample if t.key.is_empty() => "count(*) (no key to sample by)".into(),
        Mode::Sample => format!("{} random keys", opts.sample_size),
        Mode::Checksums if t.key.is_empty() => {
            "order-independent checksum of the whole table".into()
        }
        Mode::Checksums if t.integer_key => {
            format!("checksums of {units} key range(s) of {}", t.key[0])
        }
        Mode::Checksums if t.chunk_column.is_some() => format!(
            "checksums of {units} range(s) of {}, rows named by ({})",
            t.key[0],
            t.key.join(", ")
        ),
        Mode::Checksums => format!(
            "order-independent checksum, rows named by ({})",
            t.key.join(", ")
        ),
    }
}
