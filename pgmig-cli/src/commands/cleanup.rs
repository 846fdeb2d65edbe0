//! `pgmig cleanup`: drops exactly what pgmig created — its slots, their
//! replication sets and the provider node on the source, then the `pgmig`
//! schema in the target — after asking (`--yes` for automation).
//! `--dry-run` prints every statement per server and changes nothing.
//!
//! What is pgmig's comes from its records in the target (see
//! [`pgmig_pglogical::cleanup`]); anything else — another slot, another
//! set, another node, the pglogical extension — is left alone. Exit 1 when
//! something blocks the cleanup (an active slot, objects outside the schema
//! depending on it); nothing is dropped then. Exit 2 when the target's
//! records belong to another source, 3 when a server is unreachable. A
//! paused maintenance replica stays paused: cleanup says so, `pgmig
//! resume-replica` resumes it. The pglogical extension stays on the source
//! (other users may need it). A second cleanup finds nothing and says so.

use clap::Args;
use pgmig_core::{ServerRole, ServerVersion, admin};
use pgmig_pglogical::cleanup::{
    Action, CleanupError, CleanupOptions, CleanupPlan, ObjectKind, plan_cleanup, run_cleanup,
};
use pgmig_pglogical::statement::Statement;
use serde::Serialize;

use super::common::{confirm_change, connect, print_dry_run, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

/// `pgmig cleanup` options.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The name of pgmig's pglogical node, as given to `pgmig setup
    /// --node-name` (default: pgmig_provider). A node of another name is
    /// never dropped.
    #[arg(long)]
    pub node_name: Option<String>,
}

#[derive(Serialize)]
struct DryRun<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a CleanupPlan,
    replica_paused_at: Option<String>,
}

#[derive(Serialize)]
struct Done<'a> {
    dropped: usize,
    #[serde(flatten)]
    plan: &'a CleanupPlan,
    replica_paused_at: Option<String>,
}

/// Turns the library's refusals into the CLI's exit codes.
fn classify(err: CleanupError) -> anyhow::Error {
    match err {
        CleanupError::Blocked { .. } => CheckFailed(err.to_string()).into(),
        CleanupError::TargetIsSource { .. } | CleanupError::OtherSource { .. } => {
            UsageError(err.to_string()).into()
        }
        CleanupError::Pglogical(e) => e.into(),
        other => anyhow::Error::from(other),
    }
}

/// Where the replica is paused, when it is configured, reachable and
/// paused; never fails the cleanup.
async fn replica_paused_at(settings: &Settings) -> Option<String> {
    if !settings.has(ServerRole::Replica) {
        return None;
    }
    let replica = connect(settings, ServerRole::Replica).await.ok()?;
    let version = ServerVersion::query(&replica).await.ok()?;
    if !admin::is_replay_paused(&replica, version).await.ok()? {
        return None;
    }
    let lsn = admin::last_replay_lsn(&replica, version).await.ok()?;
    Some(lsn.to_string())
}

fn print_items(plan: &CleanupPlan, done: bool) {
    for item in &plan.items {
        let verb = match (item.action, done) {
            (Action::Drop, true) => "dropped",
            (Action::Drop, false) => "drop",
            (Action::Absent, _) => "already gone",
            (Action::Keep, _) => "kept",
        };
        let reason = item
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!(
            "{:<8} {} {}: {verb}{reason}",
            item.server, item.kind, item.name
        );
    }
}

fn summary(statements: &[Statement]) -> String {
    let mut text = String::from("pgmig cleanup will drop:");
    for st in statements {
        text.push_str(&format!("\n  - on the {}: {}", st.role, st.what));
    }
    text
}

/// Runs `pgmig cleanup`.
pub async fn run(global: &GlobalArgs, args: &CleanupArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
    let target = connect(&settings, ServerRole::Target).await?;
    // Swapped, the "target" holds no state and cleanup would find nothing
    // to drop while the real slots stay: say so instead.
    super::setup::refuse_swapped(&source, &target).await?;
    let mut opts = CleanupOptions::default();
    if let Some(name) = &args.node_name {
        opts.node_name = name.clone();
    }
    let plan = plan_cleanup(&source, &target, &opts)
        .await
        .map_err(classify)?;
    let paused = replica_paused_at(&settings).await;

    if global.dry_run {
        if global.json {
            print_json(&DryRun {
                dry_run: true,
                plan: &plan,
                replica_paused_at: paused.clone(),
            })?;
        } else {
            for item in plan.items.iter().filter(|i| i.action == Action::Keep) {
                println!(
                    "-- kept: {} {} on the {}: {}",
                    item.kind,
                    item.name,
                    item.server,
                    item.reason.as_deref().unwrap_or("not pgmig's")
                );
            }
            if plan.is_empty() {
                println!("-- nothing to clean up: nothing pgmig created is left");
            } else {
                print_dry_run(&plan.statements, false)?;
            }
            for b in &plan.blockers {
                println!("-- BLOCKED: {b}");
            }
        }
        if let Some(lsn) = &paused {
            eprintln!(
                "warning: the replica is paused (replay at {lsn}); cleanup leaves it so: resume it with `pgmig resume-replica`"
            );
        }
        return Ok(Outcome::Success);
    }

    if !plan.blockers.is_empty() {
        return Err(classify(CleanupError::Blocked {
            blockers: plan.blockers,
        }));
    }
    let dropped = if plan.is_empty() {
        0
    } else {
        let changes_source = plan.statements.iter().any(|s| s.role == ServerRole::Source);
        let server = if changes_source {
            "the source"
        } else {
            "the target"
        };
        confirm_change(global, &summary(&plan.statements), server)?;
        let done = run_cleanup(&source, &target, &opts)
            .await
            .map_err(|e| match e {
                CleanupError::Pglogical(inner) => anyhow::Error::from(inner).context(
                    "cleanup stopped; what was dropped is gone, run `pgmig cleanup` again for the rest",
                ),
                other => classify(other),
            })?;
        let n = done.statements.len();
        if global.json {
            print_json(&Done {
                dropped: n,
                plan: &done,
                replica_paused_at: paused.clone(),
            })?;
        } else {
            print_items(&done, true);
        }
        n
    };
    if dropped == 0 {
        if global.json {
            print_json(&Done {
                dropped: 0,
                plan: &plan,
                replica_paused_at: paused.clone(),
            })?;
        } else {
            print_items(&plan, false);
            println!("nothing to clean up: nothing pgmig created is left");
        }
    } else if !global.json {
        println!("cleanup done: {dropped} object(s) dropped");
        if plan
            .items
            .iter()
            .any(|i| i.kind == ObjectKind::Node && i.action == Action::Drop)
        {
            println!(
                "note: the pglogical extension stays on the source; DROP EXTENSION pglogical once nothing else uses it"
            );
        }
    }
    if !global.json && !plan.other_slots.is_empty() {
        println!(
            "left alone (not pgmig's): slot(s) {}",
            plan.other_slots.join(", ")
        );
    }
    if let Some(lsn) = &paused {
        eprintln!(
            "warning: the replica is still paused (replay at {lsn}); cleanup leaves it so: resume it with `pgmig resume-replica`"
        );
    }
    Ok(Outcome::Success)
}
