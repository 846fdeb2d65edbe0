//! `pgmig verify`: compares the target with the replica at P or the source.
//! All behaviour lives in `pgmig_fullload::verify`; this picks the servers,
//! the tables and P, and prints the report.

use std::io::{IsTerminal, Write};

use clap::{Args, ValueEnum};
use pgmig_core::plan::TablePattern;
use pgmig_core::{QualifiedTable, ServerRole, state};
use pgmig_fullload::verify::{
    Mode, SESSION_SQL, TableReport, VerifyError, VerifyEvent, VerifyOptions, VerifyReport, verify,
};
use tokio_util::sync::CancellationToken;

use super::common::{connect, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

/// What to compare (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Exact row count per table.
    Counts,
    /// Per-chunk checksums of every row; differing chunks drilled down to keys.
    Checksums,
    /// Rows per month of a timestamp column, side by side.
    Buckets,
    /// Random keys compared row by row.
    Sample,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Counts => Mode::Counts,
            ModeArg::Checksums => Mode::Checksums,
            ModeArg::Buckets => Mode::Buckets,
            ModeArg::Sample => Mode::Sample,
        }
    }
}

/// Which server the target is compared with (`--against`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Against {
    /// The maintenance replica, which must still be paused at the recorded P
    /// (after the load).
    Replica,
    /// The source (at cutover, once writes have stopped).
    Source,
}

/// `pgmig verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// What to compare.
    #[arg(long, value_enum, default_value = "checksums")]
    pub mode: ModeArg,
    /// Compare the target with the replica at P (after the load) or with
    /// the source (at cutover, writes stopped).
    #[arg(long, value_enum, default_value = "replica")]
    pub against: Against,
    /// The timestamp column to count rows per month of (`--mode buckets`),
    /// in the tables that have it; other tables choose `created_at` and
    /// the like, else their first timestamp or date column.
    #[arg(long, value_name = "COLUMN")]
    pub bucket_column: Option<String>,
    /// Random keys per table (`--mode sample`).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub sample: usize,
    /// Connection pairs working in parallel.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Rows per checksum chunk when the load's chunks are not recorded.
    #[arg(long, value_name = "ROWS", default_value_t = 1_000_000)]
    pub chunk_rows: i64,
    /// Differing keys shown per kind and chunk.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_keys: usize,
    /// Verify only tables matching this pattern (repeatable), on top of the
    /// migration's filters.
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<TablePattern>,
    /// Leave out tables matching this pattern (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<TablePattern>,
}

/// Runs the verification: exit 0 when every table matches, 1 on any
/// difference (or a replica that is not frozen at P).
pub async fn run(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let left_role = match args.against {
        Against::Replica => ServerRole::Replica,
        Against::Source => ServerRole::Source,
    };
    let left = settings.conn(left_role)?;
    let right = settings.conn(ServerRole::Target)?;
    let record = state::load_migration(&connect(&settings, ServerRole::Target).await?).await?;
    // No state in the target, but the source holds a migration from the
    // target: the two are swapped.
    if record.is_none() && !global.dry_run && settings.has(ServerRole::Source) {
        super::setup::refuse_swapped(
            &connect(&settings, ServerRole::Source).await?,
            &connect(&settings, ServerRole::Target).await?,
        )
        .await?;
    }
    let plan = settings
        .plan
        .clone()
        .or_else(|| record.as_ref().map(|r| r.plan.clone()));
    let left_paused_at = match args.against {
        Against::Source => None,
        Against::Replica => match record.as_ref().and_then(|r| r.pause_lsn) {
            Some(p) => Some(p),
            None => {
                return Err(UsageError(
                    "the target records no pause LSN P: run `pgmig snapshot` (and the load) first; \
                     at cutover compare with --against source"
                        .into(),
                )
                .into());
            }
        },
    };
    // The side compared must be the migration's source or its standby: a
    // server of another cluster would only show differences (or a replay
    // position that is not P) and hide the wiring mistake.
    if let Some(r) = &record
        && !global.dry_run
    {
        let side = connect(&settings, left_role).await?;
        let found = pgmig_core::admin::system_identifier(&side).await?;
        if found != r.source_system_identifier {
            let refusal = match args.against {
                Against::Replica => pgmig_pglogical::Refusal::ReplicaOfOtherSource {
                    source_id: r.source_system_identifier,
                    replica: found,
                },
                Against::Source => pgmig_pglogical::Refusal::StateOfOtherSource {
                    recorded: r.source_system_identifier,
                    source_id: found,
                },
            };
            return Err(pgmig_pglogical::Error::from(refusal).into());
        }
    }
    let tables: Option<Vec<QualifiedTable>> = plan
        .as_ref()
        .map(|p| p.tables().map(|(_, t)| t.table.clone()).collect());
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = VerifyOptions {
        mode: args.mode.into(),
        jobs: args.jobs,
        tables,
        filters: settings.filters(plan.as_ref(), &args.include, &args.exclude),
        bucket_column: args.bucket_column.clone(),
        sample_size: args.sample,
        left_paused_at,
        chunk_rows: args.chunk_rows,
        max_keys: args.max_keys,
        left_name: left_role.to_string(),
        right_name: ServerRole::Target.to_string(),
        cancel: cancel.clone(),
        progress: Some(tx),
        ..VerifyOptions::default()
    };
    if global.dry_run {
        print_dry_run(&opts, global.json)?;
        return Ok(Outcome::Success);
    }

    let progress = tokio::spawn(show_progress(
        rx,
        !global.json && std::io::stderr().is_terminal(),
    ));
    let interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let result = verify(&left, &right, &opts).await;
    interrupt.abort();
    drop(opts);
    let _ = progress.await;
    let report = match result {
        Ok(report) => report,
        Err(e @ VerifyError::NotFrozen { .. }) => return Err(CheckFailed(e.to_string()).into()),
        Err(e) if e.is_usage() => return Err(UsageError(chain(&e)).into()),
        Err(e) => return Err(e.into()),
    };
    if global.json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(if report.passed {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// The error and its causes on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}

/// `--dry-run`: verification only reads; says what it would read and how.
fn print_dry_run(opts: &VerifyOptions, json: bool) -> anyhow::Result<()> {
    let tables: Vec<String> = opts
        .tables
        .as_ref()
        .map(|t| t.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    if json {
        #[derive(serde::Serialize)]
        struct DryRun<'a> {
            dry_run: bool,
            mode: Mode,
            left: &'a str,
            right: &'a str,
            left_paused_at: Option<String>,
            session_sql: &'a str,
            tables: Vec<String>,
        }
        return print_json(&DryRun {
            dry_run: true,
            mode: opts.mode,
            left: &opts.left_name,
            right: &opts.right_name,
            left_paused_at: opts.left_paused_at.map(|p| p.to_string()),
            session_sql: SESSION_SQL,
            tables,
        });
    }
    println!(
        "-- verify {}: {} against {}; read-only (SELECT and COPY … TO STDOUT), nothing is changed",
        opts.mode, opts.left_name, opts.right_name
    );
    if let Some(p) = opts.left_paused_at {
        println!(
            "-- the {} must be paused at P = {p} before and after reading",
            opts.left_name
        );
    }
    println!("-- on every connection to both servers:");
    for stmt in SESSION_SQL.split("; ") {
        println!("{};", stmt.trim_end_matches(';'));
    }
    if tables.is_empty() {
        println!("-- tables: every user table of the {}", opts.left_name);
    } else {
        println!("-- tables (the plan's): {}", tables.join(", "));
    }
    Ok(())
}

/// Shows how many units are done, on a terminal.
async fn show_progress(mut rx: tokio::sync::mpsc::UnboundedReceiver<VerifyEvent>, show: bool) {
    let mut total = 0usize;
    let mut done = 0usize;
    let mut failed = 0usize;
    while let Some(event) = rx.recv().await {
        match event {
            VerifyEvent::Planned { units, .. } => total = units,
            VerifyEvent::UnitDone { passed, .. } => {
                done += 1;
                failed += usize::from(!passed);
            }
            _ => {}
        }
        if show {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\rverified {done}/{total} ({failed} differing)");
            let _ = err.flush();
        }
    }
    if show && total > 0 {
        eprintln!();
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn rows(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

fn print_text(report: &VerifyReport) {
    let (l, r) = (&report.left.name, &report.right.name);
    let at = report
        .left_paused_at
        .map(|p| format!(", paused at P = {p}"))
        .unwrap_or_default();
    println!(
        "verify {}: {l} ({}{at}) against {r} ({})",
        report.mode, report.left.version, report.right.version
    );
    let width = report
        .tables
        .iter()
        .map(|t| t.table.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let lh = format!("rows ({l})");
    let rh = format!("rows ({r})");
    println!(
        "{:<width$}  result  {lh:>14}  {rh:>14}  {:>7}  method",
        "table", "time"
    );
    for t in &report.tables {
        print_table(t, width, l, r);
    }
    let failed = report.failed().count();
    println!(
        "{} table(s): {} passed, {failed} failed ({})",
        report.tables.len(),
        report.tables.len() - failed,
        seconds(report.elapsed_ms)
    );
}

fn print_table(t: &TableReport, width: usize, l: &str, r: &str) {
    println!(
        "{:<width$}  {:<6}  {:>14}  {:>14}  {:>7}  {}",
        t.table.to_string(),
        if t.passed { "pass" } else { "FAIL" },
        rows(t.rows_left),
        rows(t.rows_right),
        seconds(t.elapsed_ms),
        t.method
    );
    for d in &t.differences {
        println!("    {}", d.describe(l, r));
    }
    if !t.buckets.is_empty() {
        println!("    {:<8}  {l:>12}  {r:>12}", "month");
        for b in &t.buckets {
            let mark = if b.left == b.right {
                ""
            } else {
                "  <- differs"
            };
            println!("    {:<8}  {:>12}  {:>12}{mark}", b.bucket, b.left, b.right);
        }
    }
}
