//! `pgmig check`: the preflight report over the three servers.

use pgmig_core::ServerRole;
use pgmig_pglogical::preflight::{CheckOptions, Endpoint, run_checks};

use super::common::{connect, print_json};
use crate::cli::GlobalArgs;
use crate::exit::Outcome;
use crate::settings::Settings;

/// Runs every check; exit 1 when any blocker is found.
pub async fn run(global: &GlobalArgs, slots: usize) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
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
    let report = run_checks(&source, replica_ep, target_ep, &opts).await?;
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
