//! `pgmig load`: the full load. All behaviour lives in `pgmig_fullload::load`;
//! this turns its events into a progress bar or JSON lines.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgmig_core::ServerRole;
use pgmig_fullload::load::{
    LoadEvent, LoadOptions, LoadPreview, LoadReport, ProgressFn, TaskKind, default_jobs, load,
    preview,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::common::{confirm_change, print_json};
use super::snapshot::interrupted;
use crate::cli::{GlobalArgs, LoadArgs};
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

/// Runs the load, or prints what it would run.
pub async fn run(global: &GlobalArgs, args: &LoadArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let replica = settings.conn(ServerRole::Replica)?;
    let target = settings.conn(ServerRole::Target)?;
    if args.jobs == Some(0) {
        return Err(UsageError("--jobs must be at least 1".into()).into());
    }
    let opts = LoadOptions {
        jobs: args.jobs.unwrap_or_else(default_jobs),
        chunk_bytes: args.chunk_size,
        format: args.format,
        restart: args.restart,
        maintenance_work_mem: args.maintenance_work_mem.clone(),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        stall_timeout: Duration::from_secs(args.stall_timeout),
    };
    if global.dry_run {
        let preview = preview(&replica, &target, &opts).await?;
        if global.json {
            print_json(&preview)?;
        } else {
            print_preview(&preview, opts.restart);
        }
        return Ok(Outcome::Success);
    }
    if opts.restart {
        confirm_change(
            global,
            "--restart empties every table the load filled on the target, drops the indexes it built \
             and plans the load again.",
            "the target",
        )?;
    }
    let (progress, bar) = reporter(global.json);
    let cancel = CancellationToken::new();
    let work = load(&replica, &target, &opts, progress, cancel.clone());
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        signal = interrupted() => {
            let signal = signal?;
            cancel.cancel();
            // Let the workers roll back and close their connections.
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut work).await;
            if let Some(bar) = &bar {
                bar.abandon();
            }
            anyhow::bail!(
                "interrupted by {signal}: the chunks in flight were rolled back, every committed chunk stays \
                 recorded; run `pgmig load` again to continue"
            );
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if global.json {
        #[derive(Serialize)]
        struct Result<'a> {
            event: &'static str,
            #[serde(flatten)]
            report: &'a LoadReport,
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
    match &report.missing_objects {
        Some(missing) if !missing.is_empty() => Err(CheckFailed(format!(
            "the load finished but {} index(es)/constraint(s) of the source are missing or invalid on the target: {}",
            missing.len(),
            missing.join("; ")
        ))
        .into()),
        _ => Ok(Outcome::Success),
    }
}

/// JSON lines on stdout with --json; a progress bar on a terminal; nothing
/// otherwise (-v logs each chunk).
fn reporter(json: bool) -> (Option<ProgressFn>, Option<ProgressBar>) {
    if json {
        let f: ProgressFn = Arc::new(|event: &LoadEvent| {
            if let Ok(line) = serde_json::to_string(event) {
                println!("{line}");
            }
        });
        return (Some(f), None);
    }
    if !std::io::stderr().is_terminal() {
        return (None, None);
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let b = bar.clone();
    let f: ProgressFn = Arc::new(move |event: &LoadEvent| match event {
        LoadEvent::Planned {
            table_bytes,
            done,
            tasks,
            ..
        } => {
            b.set_length((*table_bytes).max(0) as u64);
            b.set_message(format!("{done}/{tasks} tasks done"));
        }
        LoadEvent::ChunkStarted {
            table,
            chunk,
            chunks,
            ..
        } => b.set_message(format!("copying {table} {}/{chunks}", chunk + 1)),
        LoadEvent::ChunkDone {
            totals,
            table,
            chunk,
            rows,
            ..
        } => {
            b.set_position(totals.table_bytes_done.max(0) as u64);
            b.println(format!("  {table} chunk {}: {rows} rows", chunk + 1));
        }
        LoadEvent::TableStep {
            table,
            what,
            elapsed_ms,
            ..
        } => {
            b.println(format!(
                "  {table}: {what} ({:.1} s)",
                *elapsed_ms as f64 / 1000.0
            ));
        }
        LoadEvent::FinalStep { step, elapsed_ms } => {
            b.println(format!("  {step} ({:.1} s)", *elapsed_ms as f64 / 1000.0));
        }
        LoadEvent::Waiting { remaining } => b.set_message(format!(
            "waiting: {remaining} task(s) held by other loaders or not ready"
        )),
        _ => {}
    });
    (Some(f), Some(bar))
}

fn print_report(report: &LoadReport) {
    if report.already_done {
        println!(
            "the load at P = {} was already complete; nothing ran",
            report.pause_lsn
        );
    } else {
        println!(
            "load complete at P = {}: {} tables, {} rows, {} chunks, {} indexes, {} sequences in {:.1} s (data {:.1} s)",
            report.pause_lsn,
            report.tables.len(),
            report.rows,
            report.chunks,
            report.indexes,
            report.sequences,
            report.elapsed_ms as f64 / 1000.0,
            report.data_elapsed_ms as f64 / 1000.0,
        );
    }
    for t in &report.tables {
        println!(
            "  {:<40} {:>12} rows {:>4} chunk(s) {:<6} {} index(es)",
            t.table.to_string(),
            t.rows,
            t.chunks,
            t.format.sql(),
            t.indexes
        );
    }
    match &report.missing_objects {
        Some(m) if m.is_empty() => {
            println!("every index and constraint of the source's tables exists on the target")
        }
        Some(m) => {
            for o in m {
                println!("  missing on the target: {o}");
            }
        }
        None => {}
    }
}

fn print_preview(preview: &LoadPreview, restart: bool) {
    println!(
        "-- pgmig load at P = {}: {} task(s){}",
        preview.pause_lsn,
        preview.tasks.len(),
        if preview.existing {
            " from the plan already recorded in the target"
        } else if restart {
            " planned afresh (after --restart empties the loaded tables and drops the indexes the load built)"
        } else {
            " planned now"
        }
    );
    println!(
        "-- each task runs in one target transaction that claims its row in pgmig.load_task \
         (FOR UPDATE SKIP LOCKED) and marks it done"
    );
    for t in &preview.tasks {
        let table = t
            .task
            .table
            .as_ref()
            .map(|q| q.to_string())
            .unwrap_or_default();
        let what = match &t.task.kind {
            TaskKind::Copy {
                chunk,
                chunks,
                format,
                ..
            } => format!(
                "copy {table} chunk {}/{chunks} ({})",
                chunk + 1,
                format.sql()
            ),
            TaskKind::Index { .. } => format!("index on {table}"),
            TaskKind::FinishTable { .. } => format!("constraints and statistics of {table}"),
            TaskKind::PostData { .. } => "the rest of post-data".into(),
            TaskKind::Sequences => "sequences".into(),
        };
        println!(
            "\n-- task {}: {what}{}",
            t.task.id,
            if t.done { " (done)" } else { "" }
        );
        for (role, sql) in &t.statements {
            println!(
                "-- on the {role}:\n{};",
                sql.trim_end().trim_end_matches(';')
            );
        }
    }
}
