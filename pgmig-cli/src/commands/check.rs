//! `pgmig check`: the preflight report over the three servers.

use pgmig_core::catalog::list_tables;
use pgmig_core::{ServerRole, ServerVersion, admin, state};
use pgmig_pglogical::preflight::{CheckOptions, Endpoint, Finding, Severity, ids, run_checks};
use tokio_postgres::Client;

use super::common::{connect, print_json};
use crate::cli::GlobalArgs;
use crate::exit::Outcome;
use crate::settings::Settings;

/// Runs every check; exit 1 when any blocker is found.
pub async fn run(global: &GlobalArgs, slots: usize) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
    // An edited plan naming a table the source does not have (or a table
    // twice, or a bad slot name) is a configuration error, like in `setup`.
    if let Some(plan) = &settings.plan {
        let mut plan = plan.clone();
        plan.filters = settings.filters(Some(&plan), &[], &[]);
        let version = ServerVersion::query(&source).await?;
        plan.validate_against(&list_tables(&source, version).await?)?;
    }
    let replica = if settings.has(ServerRole::Replica) {
        Some(connect(&settings, ServerRole::Replica).await)
    } else {
        None
    };
    let target = if settings.has(ServerRole::Target) {
        Some(connect(&settings, ServerRole::Target).await)
    } else {
        None
    };
    // Slots pgmig recorded in the target are its own; the rest are listed.
    let own: Vec<String> = match &target {
        Some(Ok(t)) => pgmig_pglogical::slot_state::slots(t)
            .await
            .map(|slots| slots.into_iter().map(|s| s.name).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let planned = settings
        .plan
        .as_ref()
        .map(|p| p.slots.len())
        .unwrap_or(slots);
    let replica_ep = match &replica {
        Some(Ok(c)) => Endpoint::Connected(c),
        Some(Err(e)) => Endpoint::Unreachable(e.as_ref()),
        None => Endpoint::NotConfigured,
    };
    let target_ep = match &target {
        Some(Ok(c)) => Endpoint::Connected(c),
        Some(Err(e)) => Endpoint::Unreachable(e.as_ref()),
        None => Endpoint::NotConfigured,
    };
    let opts = CheckOptions::new(planned).pgmig_slot_names(own);
    let mut report = run_checks(&source, replica_ep, target_ep, &opts).await?;
    // The library reports which migration the target's state is of; only
    // here, with the source at hand, can it be judged.
    if let Some(Ok(t)) = &target {
        let judged = state_finding(&source, t).await?;
        match report
            .findings
            .iter_mut()
            .find(|f| f.check == ids::TARGET_STATE)
        {
            Some(f) if judged.severity == Severity::Blocker => *f = judged,
            Some(_) => {}
            None => report.push(judged),
        }
    }
    if global.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.has_blockers() {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}

/// Whether pgmig's state in the target, if any, is of a migration from this
/// source: a target holding another migration's state is the wrong one.
async fn state_finding(source: &Client, target: &Client) -> anyhow::Result<Finding> {
    let id = ids::TARGET_STATE;
    let Some(m) = state::load_migration(target).await? else {
        return Ok(Finding::ok(
            ServerRole::Target,
            id,
            "no migration recorded yet",
        ));
    };
    let source_id = admin::system_identifier(source).await?;
    let database: String = source
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    Ok(
        if m.source_system_identifier == source_id && m.source_database == database {
            Finding::ok(
                ServerRole::Target,
                id,
                format!("holds the state of this migration (from database {database:?})"),
            )
        } else {
            Finding::blocker(
                ServerRole::Target,
                id,
                format!(
                    "the target holds pgmig's state of another migration: from database {:?} of \
                     system {}, not {database:?} of system {source_id}",
                    m.source_database, m.source_system_identifier
                ),
            )
            .with_fix(
                "point --target at this migration's target (and --source at its source), or run \
                 `pgmig cleanup` against that target to drop the other migration's state",
            )
        },
    )
}
