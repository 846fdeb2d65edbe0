//! `pgmig setup`: extension, node, replication sets and slots on the source.

use pgmig_core::ServerRole;
use pgmig_core::catalog::list_tables;
use pgmig_core::plan::{Plan, write_rates};
use pgmig_core::{ServerVersion, state};
use pgmig_pglogical::setup::{SetupOptions, plan_setup, run_setup};

use super::common::{confirm, connect, print_dry_run, print_json};
use crate::cli::{GlobalArgs, SetupArgs};
use crate::exit::Outcome;
use crate::settings::Settings;

/// The plan to set up: the config file's, else the one recorded in the
/// target, else one built from the source's tables (and the config file's
/// filters) over `--slots`.
async fn choose_plan(
    settings: &Settings,
    source: &tokio_postgres::Client,
    target: Option<&tokio_postgres::Client>,
    slots: usize,
) -> anyhow::Result<Plan> {
    let given = |plan: Plan, from: &str| {
        if plan.slots.len() != slots {
            eprintln!(
                "note: using the plan {from} ({} slot(s)); --slots {slots} applies only when there is none",
                plan.slots.len()
            );
        }
        plan
    };
    if let Some(plan) = &settings.plan {
        // An edited plan is checked against the live catalog before anything
        // changes on the source (unknown tables, bad slot names…).
        let mut plan = plan.clone();
        plan.filters = settings.filters(Some(&plan), &[], &[]);
        let version = ServerVersion::query(source).await?;
        plan.validate_against(&list_tables(source, version).await?)?;
        return Ok(given(plan, "of the config file"));
    }
    if let Some(target) = target
        && let Some(m) = state::load_migration(target).await?
    {
        return Ok(given(m.plan, "recorded in the target"));
    }
    let version = ServerVersion::query(source).await?;
    let tables = list_tables(source, version).await?;
    let rates = write_rates(source).await?;
    Ok(Plan::build(&tables, &rates, slots, &settings.file_filters)?)
}

/// Sets up the source, or prints what it would run.
pub async fn run(global: &GlobalArgs, args: &SetupArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source_conn = settings.conn(ServerRole::Source)?;
    let source = connect(&settings, ServerRole::Source).await?;
    let mut opts = SetupOptions::for_source(&settings.written_conn(ServerRole::Source)?);
    if let Some(name) = &args.node_name {
        opts.node_name = name.clone();
    }
    if let Some(dsn) = &args.node_dsn {
        opts.node_dsn = dsn.clone();
    }
    opts.recreate_node = args.recreate_node;

    if global.dry_run {
        // The target is optional here: without it, the plan comes from the
        // config file or the source's tables.
        let target = if settings.has(ServerRole::Target) {
            Some(connect(&settings, ServerRole::Target).await?)
        } else {
            None
        };
        let plan = choose_plan(&settings, &source, target.as_ref(), args.slots).await?;
        let statements = plan_setup(&source, &plan, &opts).await?;
        print_dry_run(&statements, global.json)?;
        return Ok(Outcome::Success);
    }

    let target = connect(&settings, ServerRole::Target).await?;
    let plan = choose_plan(&settings, &source, Some(&target), args.slots).await?;
    let statements = plan_setup(&source, &plan, &opts).await?;
    let source_changes = statements
        .iter()
        .filter(|s| s.role == ServerRole::Source)
        .count();
    if source_changes > 0 {
        let mut summary = format!(
            "pgmig setup will run {source_changes} statement(s) on the source ({}):",
            source_conn.redacted()
        );
        for st in statements.iter().filter(|s| s.role == ServerRole::Source) {
            summary.push_str(&format!("\n  - {}", st.what));
        }
        confirm(global, &summary)?;
    }
    let report = run_setup(&source, &target, &plan, &opts).await?;
    if global.json {
        print_json(&report)?;
    } else {
        println!(
            "extension: {}; node {}: {}",
            if report.extension_created {
                "created"
            } else {
                "present"
            },
            opts.node_name,
            if report.node_changed {
                "created"
            } else {
                "present"
            }
        );
        println!(
            "{:<16} {:>7} {:>7} {:>14} {:>14} {:>14}",
            "SLOT", "STATE", "TABLES", "RESTART", "CONFIRMED", "SETS AT"
        );
        for s in &report.slots {
            println!(
                "{:<16} {:>7} {:>7} {:>14} {:>14} {:>14}",
                s.slot,
                if s.created { "created" } else { "reused" },
                s.tables,
                s.restart_lsn.to_string(),
                s.confirmed_flush_lsn.to_string(),
                s.sets_verified_lsn.to_string()
            );
        }
        println!("next: pgmig snapshot");
    }
    Ok(Outcome::Success)
}
