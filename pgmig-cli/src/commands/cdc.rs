//! `pgmig cdc` and `pgmig cutover`: the native applier and the cutover. All
//! behaviour lives in `pgmig_cdc` (and `pgmig_fullload::verify` for the
//! final comparison); this prints events, maps refusals to exit codes and
//! decides GO or NO-GO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use pgmig_cdc::cutover::{Pending, catch_up, pending_changes, sequences};
use pgmig_cdc::sequence::{SequenceAction, SequenceSync};
use pgmig_cdc::{CdcError, CdcEvent, CdcOptions, CdcReport, EventFn, run as run_cdc};
use pgmig_core::{Lsn, ServerRole, state};
use pgmig_fullload::verify::{Mode, VerifyOptions, VerifyReport, verify};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::common::{connect, print_dry_run, print_json};
use super::snapshot::interrupted;
use crate::cli::GlobalArgs;
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

/// `pgmig cdc` options.
#[derive(Debug, Args)]
pub struct CdcArgs {
    /// Stop once every slot has applied everything the source had committed;
    /// without it, follow the source until interrupted (SIGINT/SIGTERM).
    #[arg(long)]
    pub until_caught_up: bool,
    /// Rows read from a slot per batch; one batch is one target transaction.
    #[arg(long, default_value_t = 10_000, value_name = "ROWS")]
    pub batch: i64,
    /// Only this slot of the plan (repeatable; default: every slot).
    #[arg(long = "slot", value_name = "NAME")]
    pub slots: Vec<String>,
    /// Milliseconds a caught-up slot waits before reading again.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub poll_ms: u64,
    /// Seconds to keep reconnecting after losing the source or the target.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub reconnect_timeout: u64,
    /// Seconds a change waits for a lock held by another session on the
    /// target before the batch is rolled back and cdc stops, naming the
    /// sessions that hold it (0: no lock timeout; the wait is then bounded
    /// by --stall-timeout and --reconnect-timeout).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub lock_timeout: u64,
    /// Seconds without any answer from the source or the target (plus
    /// --lock-timeout) after which pgmig looks at its session from a second
    /// connection: a server still running pgmig's statement (a long slot
    /// advance or read, a large apply) is waited for; otherwise the
    /// connection counts as lost and is reopened. Catches a hung server or
    /// network that TCP does not report.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub stall_timeout: u64,
}

/// `pgmig cutover` options.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// How to compare source and target once caught up: counts or checksums.
    #[arg(long, default_value = "checksums", value_name = "MODE")]
    pub mode: Mode,
    /// Connection pairs verifying in parallel.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Rows read from a slot per batch while catching up.
    #[arg(long, default_value_t = 10_000, value_name = "ROWS")]
    pub batch: i64,
}

fn options(args: &CdcArgs) -> anyhow::Result<CdcOptions> {
    if args.batch < 1 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    if args.stall_timeout < 1 {
        return Err(UsageError("--stall-timeout must be at least 1 second".into()).into());
    }
    Ok(CdcOptions {
        until_caught_up: args.until_caught_up,
        batch_changes: args.batch,
        poll_interval: Duration::from_millis(args.poll_ms),
        reconnect_timeout: Duration::from_secs(args.reconnect_timeout),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        stall_timeout: Duration::from_secs(args.stall_timeout),
        slots: (!args.slots.is_empty()).then(|| args.slots.clone()),
        ..CdcOptions::default()
    })
}

/// Refusals and a target that differs from the source exit 1, an
/// unprepared migration 2, everything else 3.
fn classify(err: CdcError) -> anyhow::Error {
    match &err {
        CdcError::NotReady(_) => UsageError(err.to_string()).into(),
        CdcError::RowMismatch(_) => CheckFailed(err.to_string()).into(),
        e if e.is_refusal() => CheckFailed(err.to_string()).into(),
        _ => err.into(),
    }
}

/// JSON lines with --json; otherwise a line per start, reconnect and
/// catch-up, and at most one progress line per slot every 5 seconds.
fn reporter(json: bool) -> EventFn {
    if json {
        return Arc::new(|event: &CdcEvent| {
            if let Ok(line) = serde_json::to_string(event) {
                println!("{line}");
            }
        });
    }
    let last: Mutex<HashMap<String, Instant>> = Mutex::new(HashMap::new());
    Arc::new(move |event: &CdcEvent| match event {
        CdcEvent::Started {
            slot,
            applied_end_lsn,
        } => println!("{slot}: applying from {applied_end_lsn}"),
        CdcEvent::Applied {
            slot,
            applied_end_lsn,
            lag_bytes,
            ..
        } => {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last
                .get(slot)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due {
                last.insert(slot.clone(), Instant::now());
                println!(
                    "{slot}: applied up to {applied_end_lsn}, {lag_bytes} bytes behind the source"
                );
            }
        }
        CdcEvent::CaughtUp {
            slot,
            applied_end_lsn,
        } => println!("{slot}: caught up at {applied_end_lsn}"),
        CdcEvent::Reconnecting { slot, error } => {
            eprintln!("{slot}: connection lost ({error}); reconnecting")
        }
        _ => {}
    })
}

fn print_report(report: &CdcReport) {
    println!(
        "cdc from P = {}: {} slot(s) in {:.1} s",
        report.pause_lsn,
        report.slots.len(),
        report.elapsed_ms as f64 / 1000.0
    );
    for s in &report.slots {
        println!(
            "  {:<24} {} -> {}  {:>8} transactions {:>10} changes{}{}",
            s.slot,
            s.start_lsn,
            s.applied_end_lsn,
            s.transactions,
            s.changes,
            if s.caught_up { "  caught up" } else { "" },
            if s.reconnects > 0 {
                format!("  ({} reconnects)", s.reconnects)
            } else {
                String::new()
            }
        );
    }
}

/// Runs the applier.
pub async fn run(global: &GlobalArgs, args: &CdcArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = settings.conn(ServerRole::Source)?;
    let target = settings.conn(ServerRole::Target)?;
    let opts = options(args)?;
    if global.dry_run {
        let (p, statements) = pgmig_cdc::dry_run::statements(&source, &target, &opts)
            .await
            .map_err(classify)?;
        if !global.json {
            println!("-- P = {p}; each slot repeats its read, apply and advance until stopped");
        }
        print_dry_run(&statements, global.json)?;
        return Ok(Outcome::Success);
    }
    refuse_other_source(&settings, opts.stall_timeout + opts.lock_timeout).await?;
    let cancel = CancellationToken::new();
    let work = run_cdc(
        &source,
        &target,
        &opts,
        Some(reporter(global.json)),
        cancel.clone(),
    );
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        signal = interrupted() => {
            let signal = signal?;
            cancel.cancel();
            let r = tokio::time::timeout(Duration::from_secs(30), &mut work).await;
            eprintln!("stopped by {signal}; every committed batch is recorded, run `pgmig cdc` again to continue");
            match r {
                Ok(r) => r,
                Err(_) => anyhow::bail!("interrupted by {signal}: the applier did not stop within 30 s"),
            }
        }
    };
    let report = result.map_err(classify)?;
    if global.json {
        #[derive(Serialize)]
        struct Result<'a> {
            event: &'static str,
            #[serde(flatten)]
            report: &'a CdcReport,
        }
        println!(
            "{}",
            serde_json::to_string(&Result {
                event: "result",
                report: &report
            })?
        );
    } else {
        print_report(&report);
    }
    Ok(Outcome::Success)
}

/// The cutover's verdict, as printed with --json.
#[derive(Serialize)]
struct Verdict {
    go: bool,
    reasons: Vec<String>,
    source_lsn: Lsn,
    cdc: CdcReport,
    sequences: Vec<SequenceSync>,
    pending: Vec<Pending>,
    verify: Option<VerifyReport>,
}

/// Runs the cutover: catch up every slot to the source's current LSN, set
/// the sequences, verify source against target, check that nothing new
/// arrived meanwhile, and print GO (exit 0) or NO-GO with the reasons
/// (exit 1).
pub async fn cutover(global: &GlobalArgs, args: &CutoverArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = settings.conn(ServerRole::Source)?;
    let target = settings.conn(ServerRole::Target)?;
    if global.dry_run {
        println!(
            "-- would apply every slot up to the source's current LSN (pgmig cdc --until-caught-up), \
             set every target sequence from the source (never backwards), verify source against target \
             ({}), and check the slots for changes committed meanwhile",
            args.mode
        );
        return Ok(Outcome::Success);
    }
    let opts = CdcOptions {
        batch_changes: args.batch.max(1),
        ..CdcOptions::default()
    };
    refuse_other_source(&settings, opts.stall_timeout + opts.lock_timeout).await?;
    let say = |line: String| {
        if !global.json {
            println!("{line}");
        }
    };
    let cancel = CancellationToken::new();
    let caught = match catch_up(&source, &target, &opts, None, cancel.clone()).await {
        Ok(caught) => caught,
        Err(e @ CdcError::SlotBusy { .. }) => {
            return Err(CheckFailed(format!(
                "{e}: stop the running `pgmig cdc` (SIGTERM lets it finish its batch) and run the cutover again; \
                 the cutover applies the rest itself"
            ))
            .into());
        }
        Err(e) => return Err(classify(e)),
    };
    say(format!(
        "caught up: every slot applied everything committed before {}",
        caught.source_lsn
    ));
    let synced = sequences(&source, &target).await.map_err(classify)?;
    let set = synced
        .iter()
        .filter(|s| s.action == SequenceAction::Set)
        .count();
    say(format!(
        "sequences: {} set from the source, {} already at or ahead",
        set,
        synced.len() - set
    ));

    let record = state::load_migration(&connect(&settings, ServerRole::Target).await?).await?;
    let plan = settings
        .plan
        .clone()
        .or_else(|| record.as_ref().map(|r| r.plan.clone()));
    let opts_verify = VerifyOptions {
        mode: args.mode,
        jobs: args.jobs.max(1),
        tables: plan
            .as_ref()
            .map(|p| p.tables().map(|(_, t)| t.table.clone()).collect()),
        filters: settings.filters(plan.as_ref(), &[], &[]),
        left_name: ServerRole::Source.to_string(),
        right_name: ServerRole::Target.to_string(),
        cancel: cancel.clone(),
        ..VerifyOptions::default()
    };
    let report = verify(&source, &target, &opts_verify).await?;
    let pending = pending_changes(&source, &target, &opts)
        .await
        .map_err(classify)?;
    let resynced = sequences(&source, &target).await.map_err(classify)?;

    let mut reasons = Vec::new();
    for t in report.failed() {
        reasons.push(format!(
            "{} differs between source and target ({} vs {} rows)",
            t.table,
            t.rows_left.map_or("?".into(), |n| n.to_string()),
            t.rows_right.map_or("?".into(), |n| n.to_string()),
        ));
    }
    for p in pending.iter().filter(|p| p.changes > 0) {
        reasons.push(format!(
            "slot {}: {} change(s) in {} transaction(s) committed on the source after the catch-up: \
             writes have not stopped",
            p.slot, p.changes, p.transactions
        ));
    }
    for s in resynced.iter() {
        match s.action {
            SequenceAction::Set => reasons.push(format!(
                "sequence {} moved on the source during the cutover (now {})",
                s.sequence, s.source_last_value
            )),
            SequenceAction::MissingOnTarget => {
                reasons.push(format!("sequence {} is missing on the target", s.sequence))
            }
            SequenceAction::AlreadyAhead => {}
        }
    }
    let go = reasons.is_empty();
    if global.json {
        print_json(&Verdict {
            go,
            reasons,
            source_lsn: caught.source_lsn,
            cdc: caught.cdc,
            sequences: synced,
            pending,
            verify: Some(report),
        })?;
    } else {
        println!(
            "verify {}: {} table(s), {} differ",
            args.mode,
            report.tables.len(),
            report.failed().count()
        );
        if go {
            println!(
                "GO: the target holds everything the source committed; switch the application over"
            );
        } else {
            println!("NO-GO:");
            for r in &reasons {
                println!("  - {r}");
            }
        }
    }
    Ok(if go {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// Refuses a source that is not the one the target's migration records (a
/// wiring mistake: another server, or source and target swapped) before
/// any slot is read or anything is written. A target without a migration is
/// left to the step itself, which says to run `pgmig setup` first, and so
/// is a server that refuses the connection now (the step reports it, or
/// reconnects). The whole check, connects included, is bounded by `limit`:
/// a server that accepts but never answers fails it clearly, never skips
/// it.
async fn refuse_other_source(settings: &Settings, limit: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(limit, check_source(settings)).await {
        Ok(checked) => checked,
        Err(_) => Err(classify(CdcError::Stalled {
            slot: String::new(),
            server: "source or the target",
            doing: "checking that the source is the migration's",
            idle_s: limit.as_secs_f64(),
        })),
    }
}

async fn check_source(settings: &Settings) -> anyhow::Result<()> {
    use pgmig_pglogical::{Error, Refusal};
    // A server that refuses the connection now is left to the step: it
    // says so (or reconnects); the check runs whenever both answer.
    let (Ok(source), Ok(target)) = (
        connect(settings, ServerRole::Source).await,
        connect(settings, ServerRole::Target).await,
    ) else {
        return Ok(());
    };
    let source_id = pgmig_core::admin::system_identifier(&source).await?;
    if pgmig_core::admin::system_identifier(&target).await? == source_id {
        return Err(Error::from(Refusal::TargetIsSource {
            system_identifier: source_id,
        })
        .into());
    }
    let Some(m) = state::load_migration(&target).await? else {
        return super::setup::refuse_swapped(&source, &target).await;
    };
    super::setup::refuse_state_of_other_source(&source, source_id, &m).await
}
