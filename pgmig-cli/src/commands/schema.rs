//! `pgmig schema`: pre-data into the target now, post-data kept for after
//! the load. All behaviour lives in `pgmig_fullload::schema`.

use pgmig_core::{ServerRole, state};
use pgmig_fullload::schema::{
    PreDataAction, SchemaError, SchemaOptions, SchemaReport, transfer_schema,
};
use serde::Serialize;

use super::common::{connect, print_json};
use crate::cli::{GlobalArgs, SchemaArgs};
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

#[derive(Serialize)]
struct JsonReport<'a> {
    dry_run: bool,
    #[serde(flatten)]
    report: &'a SchemaReport,
}

/// Transfers the schema, or prints what it would apply.
pub async fn run(global: &GlobalArgs, args: &SchemaArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = settings.conn(ServerRole::Source)?;
    let target = settings.conn(ServerRole::Target)?;
    // Wrong wiring (the target of another source, the source itself, an
    // unrelated database) is refused before pg_dump runs or anything changes.
    super::setup::refuse_wrong_wiring(
        &settings,
        &connect(&settings, ServerRole::Source).await?,
        &connect(&settings, ServerRole::Target).await?,
        false,
    )
    .await?;
    // The filters as everywhere: the config file's plan, else the one
    // recorded in the target, plus the file's [filters].
    let recorded = match &settings.plan {
        Some(_) => None,
        None => state::load_migration(&connect(&settings, ServerRole::Target).await?)
            .await?
            .map(|m| m.plan),
    };
    let filters = settings.filters(settings.plan.as_ref().or(recorded.as_ref()), &[], &[]);
    let opts = SchemaOptions {
        no_owner: args.no_owner,
        with_pglogical: args.with_pglogical,
        with_globals: args.with_globals,
        dry_run: global.dry_run,
        pg_dump: args.pg_dump.clone(),
        filters,
    };
    let report = match transfer_schema(&source, &target, &opts).await {
        Ok(report) => report,
        Err(SchemaError::Core(e)) => return Err(e.into()),
        Err(e) if e.is_refusal() => return Err(CheckFailed(chain(&e)).into()),
        Err(e) if e.is_usage() => return Err(UsageError(chain(&e)).into()),
        Err(e) => return Err(e.into()),
    };
    if global.json {
        print_json(&JsonReport {
            dry_run: global.dry_run,
            report: &report,
        })?;
    } else if global.dry_run {
        print_dry_run(&report);
    } else {
        print_text(&report);
    }
    Ok(Outcome::Success)
}

/// The error and its causes on one line (the exit-code wrappers carry text).
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

fn print_dry_run(report: &SchemaReport) {
    println!(
        "-- pg_dump {} ({}); source {} → target {}",
        report.pg_dump_version, report.tools, report.source_version, report.target_version
    );
    if let Some(g) = &report.globals {
        println!("\n-- on the target: globals (roles)");
        println!("{}", g.sql.trim_end());
        for note in &g.left_out {
            println!("-- left out: {note}");
        }
    }
    match (&report.pre_data, &report.pre_data_sql) {
        (PreDataAction::AlreadyRestored, _) => {
            println!(
                "\n-- pre-data: the target already holds exactly this schema; nothing to apply"
            )
        }
        (_, Some(sql)) => {
            println!("\n-- on the target, in one transaction: pre-data");
            println!("{}", sql.trim_end());
        }
        _ => {}
    }
    print_deferred(report, "-- ");
    if let Some(sql) = &report.post_data_sql {
        println!("\n-- post-data SQL kept in pgmig.schema_section for after the load:");
        for line in sql.lines() {
            println!("-- | {line}");
        }
    }
    print_rebuilds(report);
}

fn print_text(report: &SchemaReport) {
    println!(
        "pg_dump {} ({}); source {} → target {}",
        report.pg_dump_version, report.tools, report.source_version, report.target_version
    );
    if let Some(g) = &report.globals {
        println!("globals: applied");
        for note in &g.left_out {
            println!("  left out: {note}");
        }
    }
    match report.pre_data {
        PreDataAction::Restored => println!(
            "pre-data: restored {} object(s) in one transaction",
            report.pre_data_objects.len()
        ),
        PreDataAction::AlreadyRestored => {
            println!("pre-data: already restored; nothing changed")
        }
        PreDataAction::WouldRestore => println!("pre-data: would be restored"),
    }
    print_deferred(report, "");
    print_rebuilds(report);
}

fn print_deferred(report: &SchemaReport, prefix: &str) {
    println!(
        "\n{prefix}deferred until after the load ({}), kept in pgmig.schema_section:",
        report.deferred.len()
    );
    for entry in &report.deferred {
        println!("{prefix}  {}", entry.describe());
    }
    for entry in &report.left_out {
        println!(
            "{prefix}left out (pass --with-pglogical to copy): {}",
            entry.describe()
        );
    }
    print_excluded(report, prefix);
}

fn print_excluded(report: &SchemaReport, prefix: &str) {
    if report.excluded_tables.is_empty() {
        return;
    }
    println!(
        "\n{prefix}tables left out by the filters ({}), with the partitions of a left-out parent:",
        report.excluded_tables.len()
    );
    for table in &report.excluded_tables {
        println!("{prefix}  {table}");
    }
}

fn print_rebuilds(report: &SchemaReport) {
    if report.unique_rebuilds.is_empty() {
        return;
    }
    println!(
        "\n-- tables with a primary key and other unique indexes (deferred by pgmig;\n\
         -- for DBAs doing it by hand: drop before the load, recreate after)"
    );
    println!("-- before the load:");
    for r in &report.unique_rebuilds {
        println!("{}", r.drop);
    }
    println!("-- after the load:");
    for r in &report.unique_rebuilds {
        println!("{}", r.recreate);
    }
}
