//! `pgmig run`: all of phase I in order, resumable.
//!
//! Each step is the command of the same name, run in this process with the
//! same global options; every one of them is idempotent. A step that
//! succeeded is recorded in the target's `pgmig.step_log` as `run:<step>`
//! `done` and skipped by the next `pgmig run` — which matters for the
//! snapshot (a second pause would capture a new P after the load) and the
//! replica's resume. The run stops at the first step that fails and says
//! what to do next.

use clap::{Args, Parser};
use pgmig_core::{ServerRole, state};

use super::common::connect;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::exit::{Outcome, classify};
use crate::settings::Settings;

/// `pgmig run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many slots to spread the tables over when no plan is configured.
    #[arg(long, default_value_t = 6)]
    pub slots: usize,
    /// Load workers (default: the number of CPUs, at least 2).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// The load's chunk size.
    #[arg(long, value_name = "SIZE", default_value = "1GB")]
    pub chunk_size: String,
    /// Restore the schema without the source's owners.
    #[arg(long)]
    pub no_owner: bool,
    /// The verification after the load: counts, checksums, buckets or sample.
    #[arg(long, value_name = "MODE", default_value = "checksums")]
    pub verify_mode: String,
    /// Leave the replica paused at P at the end (default: resume it).
    #[arg(long)]
    pub keep_paused: bool,
}

/// One step: its name and its command line.
fn steps(args: &RunArgs) -> Vec<(&'static str, Vec<String>)> {
    let slots = args.slots.to_string();
    let mut schema = vec!["schema".to_string()];
    if args.no_owner {
        schema.push("--no-owner".into());
    }
    let mut load = vec![
        "load".to_string(),
        "--chunk-size".into(),
        args.chunk_size.clone(),
    ];
    if let Some(j) = args.jobs {
        load.extend(["--jobs".into(), j.to_string()]);
    }
    let mut steps = vec![
        (
            "check",
            vec!["check".into(), "--slots".into(), slots.clone()],
        ),
        ("setup", vec!["setup".into(), "--slots".into(), slots]),
        ("schema", schema),
        ("snapshot", vec!["snapshot".into()]),
        ("load", load),
        (
            "verify",
            vec![
                "verify".into(),
                "--mode".into(),
                args.verify_mode.clone(),
                "--against".into(),
                "replica".into(),
            ],
        ),
    ];
    if !args.keep_paused {
        steps.push(("resume-replica", vec!["resume-replica".into()]));
    }
    steps
}

/// The command of a step, parsed as if typed after `pgmig`.
fn command_of(line: &[String]) -> anyhow::Result<Command> {
    let argv = std::iter::once("pgmig".to_string()).chain(line.iter().cloned());
    Ok(Cli::try_parse_from(argv)?.command)
}

/// The steps `pgmig run` recorded as done in the target.
async fn done_steps(settings: &Settings) -> Vec<String> {
    let Ok(target) = connect(settings, ServerRole::Target).await else {
        return Vec::new();
    };
    if !state::table_exists(&target, "pgmig.step_log")
        .await
        .unwrap_or(false)
    {
        return Vec::new();
    }
    target
        .query(
            "SELECT DISTINCT substr(step, 5) FROM pgmig.step_log WHERE step LIKE 'run:%' AND status = 'done'",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .unwrap_or_default()
}

/// Records a step's status; false when the target has no step log yet
/// (before setup creates pgmig's state), or when the state there is not of
/// a migration from this source (a wrongly wired run writes nothing into
/// another migration's log).
async fn record(settings: &Settings, step: &str, status: &str, detail: Option<&str>) -> bool {
    let Ok(target) = connect(settings, ServerRole::Target).await else {
        return false;
    };
    if !state::table_exists(&target, "pgmig.step_log")
        .await
        .unwrap_or(false)
    {
        return false;
    }
    if !state_is_of_this_source(settings, &target).await {
        return false;
    }
    if let Err(e) = state::log_step(&target, &format!("run:{step}"), status, detail).await {
        eprintln!("note: could not record step {step} as {status} in the target: {e}");
        return false;
    }
    true
}

/// Whether the target's recorded migration is from the configured source
/// (its system identifier and database); false when either cannot be read.
async fn state_is_of_this_source(settings: &Settings, target: &tokio_postgres::Client) -> bool {
    let Ok(Some(m)) = state::load_migration(target).await else {
        return false;
    };
    let Ok(source) = connect(settings, ServerRole::Source).await else {
        return false;
    };
    let Ok(id) = pgmig_core::admin::system_identifier(&source).await else {
        return false;
    };
    let Ok(row) = source
        .query_one("SELECT current_database()::text", &[])
        .await
    else {
        return false;
    };
    m.source_system_identifier == id && m.source_database == row.get::<_, String>(0)
}

/// Runs phase I, or prints its statements.
pub async fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let steps = steps(args);
    // Validate every step's arguments before doing anything.
    let commands: Vec<(&str, Command)> = steps
        .iter()
        .map(|(name, line)| Ok((*name, command_of(line)?)))
        .collect::<anyhow::Result<_>>()?;
    if global.dry_run {
        return dry_run(global, commands, args.slots).await;
    }
    let done = done_steps(&settings).await;
    let total = commands.len();
    let mut unrecorded: Vec<&str> = Vec::new();
    for (i, (name, command)) in commands.into_iter().enumerate() {
        if done.iter().any(|d| d == name) {
            println!("== {}/{total} {name}: done earlier, skipped", i + 1);
            continue;
        }
        println!("\n== {}/{total} {name}", i + 1);
        let cli = Cli {
            global: global.clone(),
            command,
        };
        let result = Box::pin(super::run(&cli)).await;
        let failure = match &result {
            Ok(Outcome::Success) => None,
            Ok(other) => Some(format!("{name} ended with exit code {}", other.code())),
            Err(e) => Some(format!("{e:#}")),
        };
        match failure {
            None => {
                // Steps done before the step log existed (the check) are
                // recorded as soon as it does.
                unrecorded.push(name);
                let mut still = Vec::new();
                for step in unrecorded.drain(..) {
                    if !record(&settings, step, "done", None).await {
                        still.push(step);
                    }
                }
                unrecorded = still;
            }
            Some(why) => {
                let _ = record(&settings, name, "failed", Some(&why)).await;
                let paused = i >= 3 && name != "resume-replica";
                eprintln!(
                    "\npgmig run stopped at step {name}.{}\nFix the cause above, then run `pgmig run` again: \
                     the steps done are skipped and it continues with {name}.",
                    if paused {
                        " The replica may still be paused at P (see `pgmig status`); \
                         `pgmig resume-replica` resumes it, but then the load must start over"
                    } else {
                        ""
                    }
                );
                return match result {
                    Ok(outcome) => Ok(outcome),
                    Err(e) => {
                        let outcome = classify(&e);
                        eprintln!("error: {e:#}");
                        Ok(outcome)
                    }
                };
            }
        }
    }
    println!(
        "\nphase I complete: the target holds the data at P, verified.{}\nnext: phase II — `pgmig cdc` (or `pgmig dms generate`), then `pgmig cutover`",
        if args.keep_paused {
            " The replica stays paused at P (--keep-paused)."
        } else {
            ""
        }
    );
    Ok(Outcome::Success)
}

/// Each step's dry run in order; the load and the verification depend on P,
/// which only the snapshot records, so they are described instead.
async fn dry_run(
    global: &GlobalArgs,
    commands: Vec<(&str, Command)>,
    slots: usize,
) -> anyhow::Result<Outcome> {
    for (name, command) in commands {
        println!("\n-- ===== step {name} =====");
        match name {
            "load" => {
                println!(
                    "-- the load's statements depend on P, recorded by the snapshot: after `pgmig snapshot`, \
                     `pgmig load --dry-run` prints each of them. Per chunk, on the replica:\n\
                     --   COPY (SELECT <columns> FROM ONLY <table> WHERE <key range>) TO STDOUT (FORMAT binary|text)\n\
                     -- and on the target, in one transaction with the chunk's record in pgmig.load_task:\n\
                     --   [TRUNCATE ONLY <table>;] COPY <table> (<columns>) FROM STDIN (FORMAT binary|text[, FREEZE])\n\
                     -- then per table its CREATE [UNIQUE] INDEX statements, ALTER TABLE … ADD CONSTRAINT … USING INDEX, \
                     ANALYZE; then the rest of post-data and setval() for every sequence."
                );
                continue;
            }
            "verify" => {
                println!(
                    "-- read-only: per chunk, the same checksum query on the replica (paused at P) and the target"
                );
                continue;
            }
            _ => {}
        }
        let cli = Cli {
            global: global.clone(),
            command,
        };
        match Box::pin(super::run(&cli)).await {
            Ok(Outcome::Success) => {}
            Ok(other) => println!(
                "-- (step {name} would stop the run here: exit {})",
                other.code()
            ),
            Err(e) if name == "snapshot" => {
                // Before setup there is no recorded plan: show the snapshot
                // of the plan setup would record.
                if let Err(e2) = snapshot_preview(global, slots).await {
                    println!("-- (step {name} cannot be previewed yet: {e:#}; {e2:#})");
                }
            }
            Err(e) => println!("-- (step {name} cannot be previewed yet: {e:#})"),
        }
    }
    Ok(Outcome::Success)
}

/// The snapshot's statements for the plan that setup would record.
async fn snapshot_preview(global: &GlobalArgs, slots: usize) -> anyhow::Result<()> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
    let replica = connect(&settings, ServerRole::Replica).await?;
    let plan = match &settings.plan {
        Some(plan) => plan.clone(),
        None => {
            let version = pgmig_core::ServerVersion::query(&source).await?;
            let tables = pgmig_core::catalog::list_tables(&source, version).await?;
            let rates = pgmig_core::plan::write_rates(&source).await?;
            pgmig_core::plan::Plan::build(&tables, &rates, slots, &settings.file_filters)?
        }
    };
    let rv = pgmig_core::ServerVersion::query(&replica).await?;
    let statements = pgmig_pglogical::snapshot::snapshot_sql(rv, &plan)?;
    super::common::print_dry_run(&statements, global.json)
}
