//! `pgmig setup`: extension, node, replication sets and slots on the source.

use pgmig_core::catalog::list_tables;
use pgmig_core::plan::{Plan, write_rates};
use pgmig_core::{ServerRole, admin};
use pgmig_core::{ServerVersion, state};
use pgmig_pglogical::Refusal;
use pgmig_pglogical::setup::{SetupOptions, plan_setup, run_setup};
use tokio_postgres::Client;

use super::common::{confirm, connect, print_dry_run, print_json};
use crate::cli::{GlobalArgs, SetupArgs};
use crate::exit::{Outcome, UsageError};
use crate::settings::Settings;

/// Refuses servers wired the wrong way before anything changes anywhere:
/// a source that is a standby; a replica (when configured) that is not a
/// standby or streams from another primary — which is also how source and
/// target swapped show; a target that is the source, that holds pgmig's
/// state of a migration from another source, or that holds user tables
/// while holding no pgmig state at all (an unrelated database, or the
/// source itself). The replica is checked only with `with_replica` (setup;
/// `schema` does not use it). Shared by `setup` and `schema`; reads only.
pub(crate) async fn refuse_wrong_wiring(
    settings: &Settings,
    source: &Client,
    target: &Client,
    with_replica: bool,
) -> anyhow::Result<()> {
    let source_id = admin::system_identifier(source).await?;
    if admin::is_in_recovery(source).await? {
        return Err(UsageError(format!(
            "the source (system {source_id}) is a standby, in recovery: point --source at the \
             production primary, not at a replica"
        ))
        .into());
    }
    let target_id = admin::system_identifier(target).await?;
    if with_replica && settings.has(ServerRole::Replica) {
        let replica = connect(settings, ServerRole::Replica).await?;
        if !admin::is_in_recovery(&replica).await? {
            return Err(pgmig_pglogical::Error::from(Refusal::ReplicaNotStandby).into());
        }
        let replica_id = admin::system_identifier(&replica).await?;
        if replica_id != source_id {
            let swapped = if replica_id == target_id {
                format!(
                    "; the target has the replica's system identifier: --source and --target look \
                     swapped (the source is system {replica_id})"
                )
            } else {
                String::new()
            };
            return Err(anyhow::Error::from(pgmig_pglogical::Error::from(
                Refusal::ReplicaOfOtherSource {
                    source_id,
                    replica: replica_id,
                },
            ))
            .context(format!("wrong wiring{swapped}")));
        }
    }
    if target_id == source_id {
        return Err(pgmig_pglogical::Error::from(Refusal::TargetIsSource {
            system_identifier: source_id,
        })
        .into());
    }
    if let Some(m) = state::load_migration(target).await? {
        return refuse_state_of_other_source(source, source_id, &m).await;
    }
    refuse_swapped(source, target).await?;
    let has_state: bool = target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgmig')",
            &[],
        )
        .await?
        .get(0);
    if !has_state {
        let version = ServerVersion::query(target).await?;
        let tables = list_tables(target, version).await?;
        if !tables.is_empty() {
            return Err(UsageError(format!(
                "the target already holds data: {} user table(s) ({}) and no pgmig state, so it is \
                 not this migration's target (an unrelated database, or --source and --target \
                 swapped); pgmig never overwrites existing data: point --target at an empty database",
                tables.len(),
                pgmig_pglogical::preflight::name_some_tables(&tables)
            ))
            .into());
        }
    }
    Ok(())
}

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
    refuse_wrong_wiring(&settings, &source, &target, true).await?;
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

/// Refuses a target whose recorded migration `m` is not from this source
/// (system identifier `source_id`) and database: another migration's target.
pub(crate) async fn refuse_state_of_other_source(
    source: &Client,
    source_id: u64,
    m: &state::MigrationRecord,
) -> anyhow::Result<()> {
    if m.source_system_identifier != source_id {
        return Err(pgmig_pglogical::Error::from(Refusal::StateOfOtherSource {
            recorded: m.source_system_identifier,
            source_id,
        })
        .into());
    }
    let database: String = source
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    if m.source_database != database {
        return Err(UsageError(format!(
            "the target's state belongs to a migration from database {:?}, but --source names \
             database {database:?} of the same server: point --source and --target at the \
             databases of this migration, or run `pgmig cleanup` against the target first",
            m.source_database
        ))
        .into());
    }
    Ok(())
}

/// Refuses source and target given the wrong way round: the target holds no
/// migration, but the server given as the source holds pgmig's state of a
/// migration *from* the one given as the target. Reads only.
pub(crate) async fn refuse_swapped(source: &Client, target: &Client) -> anyhow::Result<()> {
    if state::load_migration(target).await?.is_some() {
        return Ok(());
    }
    let target_id = admin::system_identifier(target).await?;
    if state::load_migration(source)
        .await?
        .is_some_and(|m| m.source_system_identifier == target_id)
    {
        return Err(UsageError(format!(
            "--source and --target are swapped: the server given as the source holds pgmig's \
             state of a migration from the one given as the target (system {target_id})"
        ))
        .into());
    }
    Ok(())
}
