//! `pgmig setup`: the runbook's steps 1–4 on the source — the pglogical
//! extension, the provider node, per slot its two replication sets with
//! their tables and the logical slot — recorded in the target's state.
//!
//! Everything is idempotent: a second run finds what the first made and
//! changes nothing. [`plan_setup`] returns the exact statements a run would
//! execute now, for `--dry-run`, without changing anything.
//!
//! Before anything changes on the source, the wiring is checked: the target
//! is not the source itself, and it does not hold the state of a migration
//! from another source. After the sets are filled and verified from
//! pglogical's catalogs, the source's current WAL position is recorded with
//! each slot: the snapshot later proves that this position is ≤ P, i.e. that
//! every table was in its sets before P.

use pgmig_core::config::ConnConfig;
use pgmig_core::plan::Plan;
use pgmig_core::state;
use pgmig_core::{Lsn, ServerRole, ServerVersion, admin};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{Instrument, info, info_span};

use crate::error::{Error, Refusal};
use crate::node::{
    create_provider_node, ensure_extension, plan_create_provider_node, plan_ensure_extension,
};
use crate::replication_set::{
    SetTable, add_tables, ensure_sets, plan_add_tables, plan_ensure_sets, verify_membership,
};
use crate::slot::{PLUGIN, SlotName, create_logical_slot, plan_create_logical_slot};
use crate::slot_state::{self, RECORD_SLOT_SQL, SETS_VERIFIED_SQL, SLOT_TABLE_SQL, SlotRecord};
use crate::statement::Statement;

/// How long setup waits for a table lock on the source before failing
/// (a rerun continues where it stopped).
pub const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The provider node's default name.
pub const DEFAULT_NODE_NAME: &str = "pgmig_provider";

/// How setup names and reaches the provider node.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The node name; default [`DEFAULT_NODE_NAME`].
    pub node_name: String,
    /// The DSN stored in pglogical's catalog for subscribers to reach the
    /// source; it must not contain a password (use a passfile on the
    /// subscriber). Default: the source connection without its password.
    pub node_dsn: String,
    /// Drop and recreate a node whose DSN differs (only when no subscription
    /// uses it). Default: false.
    pub recreate_node: bool,
}

impl SetupOptions {
    /// Defaults for a source connection.
    pub fn for_source(source: &ConnConfig) -> SetupOptions {
        // Display leaves the password out; application_name is ours, not the subscriber's.
        let dsn = source
            .clone()
            .with_application_name("pglogical")
            .to_string();
        SetupOptions {
            node_name: DEFAULT_NODE_NAME.to_owned(),
            node_dsn: dsn,
            recreate_node: false,
        }
    }
}

/// What setup did for one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotSetup {
    /// The slot.
    pub slot: String,
    /// Whether the slot was created now (false: reused).
    pub created: bool,
    /// Sets created now.
    pub sets_created: Vec<String>,
    /// Table memberships added now.
    pub tables_added: usize,
    /// Tables the slot carries.
    pub tables: usize,
    /// The slot's `restart_lsn` as recorded.
    pub restart_lsn: Lsn,
    /// The slot's `confirmed_flush_lsn` as recorded.
    pub confirmed_flush_lsn: Lsn,
    /// The source position at which its sets were verified complete.
    pub sets_verified_lsn: Lsn,
}

/// What a setup run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupReport {
    /// Whether the extension was created now.
    pub extension_created: bool,
    /// Whether the node was created (or recreated) now.
    pub node_changed: bool,
    /// One entry per slot.
    pub slots: Vec<SlotSetup>,
}

fn set_tables(plan: &Plan, slot: &str) -> Vec<SetTable> {
    plan.slot(slot)
        .map(|g| g.tables.iter().map(SetTable::from).collect())
        .unwrap_or_default()
}

async fn source_database(source: &impl GenericClient) -> Result<String, Error> {
    Ok(source
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(pgmig_core::Error::query("read the source database name"))?
        .get(0))
}

/// Refuses a target that is the source itself.
async fn check_wiring(
    source: &impl GenericClient,
    target: &impl GenericClient,
) -> Result<u64, Error> {
    let source_sysid = admin::system_identifier(source).await?;
    let target_sysid = admin::system_identifier(target).await?;
    if source_sysid == target_sysid {
        return Err(Refusal::TargetIsSource {
            system_identifier: source_sysid,
        }
        .into());
    }
    Ok(source_sysid)
}

/// The statements setup would run now, in order (source first, then the
/// target's state), changing nothing.
pub async fn plan_setup(
    source: &impl GenericClient,
    plan: &Plan,
    opts: &SetupOptions,
) -> Result<Vec<Statement>, Error> {
    plan.validate().map_err(|e| Error::InvalidArgument {
        slot: String::new(),
        detail: e.to_string(),
    })?;
    let mut out = plan_ensure_extension(source).await?.statements;
    out.extend(
        plan_create_provider_node(source, &opts.node_name, &opts.node_dsn, opts.recreate_node)
            .await?
            .statements,
    );
    for group in &plan.slots {
        let slot = SlotName::new(&group.slot)?;
        out.extend(plan_ensure_sets(source, &slot).await?.statements);
        let add = plan_add_tables(source, &slot, &set_tables(plan, &group.slot)).await?;
        if let Some(table) = add.missing_tables.first() {
            return Err(Refusal::PlannedTableMissing {
                table: table.to_string(),
                slot: group.slot.clone(),
            }
            .into());
        }
        out.extend(add.statements);
        out.extend(plan_create_logical_slot(source, &slot).await?.statements);
    }
    out.extend(
        state::SCHEMA_SQL
            .iter()
            .chain([&SLOT_TABLE_SQL])
            .map(|sql| Statement::new(ServerRole::Target, "create pgmig's state schema", *sql)),
    );
    // The target's records. Values only known while running are shown in <>.
    let sysid = admin::system_identifier(source).await?;
    let database = source_database(source).await?;
    let plan_json = serde_json::to_string(plan).map_err(|e| Error::InvalidArgument {
        slot: String::new(),
        detail: format!("the plan cannot be written as JSON: {e}"),
    })?;
    out.push(
        Statement::new(
            ServerRole::Target,
            "record the migration",
            state::RECORD_MIGRATION_SQL,
        )
        .bind(sysid.to_string())
        .bind(database)
        .bind(plan_json),
    );
    for group in &plan.slots {
        out.push(
            Statement::new(
                ServerRole::Target,
                format!("record slot {}", group.slot),
                RECORD_SLOT_SQL,
            )
            .bind(group.slot.clone())
            .bind(PLUGIN)
            .bind("<true when created now>")
            .bind("<its restart_lsn>")
            .bind("<its confirmed_flush_lsn>"),
        );
        out.push(
            Statement::new(
                ServerRole::Target,
                format!("record that the sets of {} are complete", group.slot),
                SETS_VERIFIED_SQL,
            )
            .bind(group.slot.clone())
            .bind("<the source's pg_current_wal_lsn() after the check>"),
        );
    }
    Ok(out)
}

/// The advisory lock one setup holds on the source database while it runs:
/// two setups started together take turns, and the second finds what the
/// first made instead of racing it to create the same objects.
const SETUP_LOCK_SQL: &str = "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('pgmig'), pg_catalog.hashtext('pgmig setup'))";
const SETUP_UNLOCK_SQL: &str = "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('pgmig'), pg_catalog.hashtext('pgmig setup'))";

/// How long a setup waits for another one running on the same source
/// database before failing (nothing changed then).
pub const SETUP_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs setup; see the module docs.
///
/// One setup at a time per source database: a second one waits (up to
/// [`SETUP_LOCK_WAIT`]) for the first to finish, then finds its work done.
pub async fn run_setup(
    source: &impl GenericClient,
    target: &impl GenericClient,
    plan: &Plan,
    opts: &SetupOptions,
) -> Result<SetupReport, Error> {
    async move {
        source
            .batch_execute(&format!(
                "SET lock_timeout = '{}ms'",
                SETUP_LOCK_WAIT.as_millis()
            ))
            .await
            .map_err(pgmig_core::Error::query("set lock_timeout on the source"))?;
        source.query_one(SETUP_LOCK_SQL, &[]).await.map_err(pgmig_core::Error::query(
            "wait for another `pgmig setup` running on this source database to finish (advisory lock)",
        ))?;
        let result = setup_locked(source, target, plan, opts).await;
        if let Err(e) = source.query_one(SETUP_UNLOCK_SQL, &[]).await {
            tracing::warn!(error = %e, "could not release the setup lock on the source (it ends with the session)");
        }
        result
    }
    .instrument(info_span!("setup", slots = plan.slots.len()))
    .await
}

/// [`run_setup`] once it holds the setup lock.
async fn setup_locked(
    source: &impl GenericClient,
    target: &impl GenericClient,
    plan: &Plan,
    opts: &SetupOptions,
) -> Result<SetupReport, Error> {
    // Wiring and validation first: nothing changes when they fail.
    let source_sysid = check_wiring(source, target).await?;
    crate::preflight::require_privileges_for_setup(source).await?;
    let statements = plan_setup(source, plan, opts).await?;
    let database = source_database(source).await?;
    let migration = state::init_migration(target, source_sysid, &database, plan).await?;
    if let Some(p) = migration.pause_lsn {
        let changes: Vec<String> = statements
            .iter()
            .filter(|s| s.role == ServerRole::Source)
            .map(|s| s.what.clone())
            .collect();
        if !changes.is_empty() {
            return Err(Refusal::SetupAfterSnapshot {
                pause_lsn: p,
                changes,
            }
            .into());
        }
    }
    // Adding a table to a set locks it against writes: never queue behind
    // a long transaction on production for long (a rerun continues).
    source
        .batch_execute(&format!(
            "SET lock_timeout = '{}ms'",
            LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(pgmig_core::Error::query("set lock_timeout on the source"))?;

    let extension = ensure_extension(source).await?;
    let node =
        create_provider_node(source, &opts.node_name, &opts.node_dsn, opts.recreate_node).await?;
    let version = ServerVersion::query(source).await?;
    let mut slots = Vec::with_capacity(plan.slots.len());
    for group in &plan.slots {
        let slot = SlotName::new(&group.slot)?;
        let tables = set_tables(plan, &group.slot);
        let sets = ensure_sets(source, &slot).await?;
        let added = add_tables(source, &slot, &tables).await?;
        // Record the slot as pgmig's *before* creating it, so a crash in
        // between cannot leave a slot pgmig made but does not own.
        if !plan_create_logical_slot(source, &slot)
            .await?
            .statements
            .is_empty()
        {
            slot_state::record_slot(
                target,
                &SlotRecord {
                    name: group.slot.clone(),
                    plugin: PLUGIN.to_owned(),
                    created_by_pgmig: true,
                    restart_lsn: Lsn::INVALID,
                    confirmed_flush_lsn: Lsn::INVALID,
                    sets_verified_lsn: None,
                },
            )
            .await?;
        }
        let created = create_logical_slot(source, &slot).await?;
        slot_state::record_slot(
            target,
            &SlotRecord {
                name: group.slot.clone(),
                plugin: PLUGIN.to_owned(),
                created_by_pgmig: created.created,
                restart_lsn: created.restart_lsn,
                confirmed_flush_lsn: created.confirmed_flush_lsn,
                sets_verified_lsn: None,
            },
        )
        .await?;
        let placeholder = slot_state::slots(target)
            .await?
            .iter()
            .any(|r| r.name == group.slot && r.restart_lsn.is_invalid());
        if created.created || placeholder {
            slot_state::update_slot_lsns(
                target,
                &group.slot,
                created.restart_lsn,
                created.confirmed_flush_lsn,
            )
            .await?;
        }
        let problems = verify_membership(source, &slot, &tables).await?;
        if !problems.is_empty() {
            return Err(Refusal::MembershipIncomplete {
                slot: group.slot.clone(),
                problems: problems.iter().map(ToString::to_string).collect(),
            }
            .into());
        }
        // The memberships just verified are committed: any position read
        // now is at or after their commit. When this run added nothing,
        // the earlier (smaller) verified position still holds.
        let earlier = slot_state::slots(target)
            .await?
            .into_iter()
            .find(|r| r.name == group.slot)
            .and_then(|r| r.sets_verified_lsn);
        let verified = match earlier {
            Some(lsn) if sets.created.is_empty() && added.added.is_empty() => lsn,
            _ => {
                let now = admin::current_wal_lsn(source, version).await?;
                slot_state::set_sets_verified(target, &group.slot, now).await?;
                now
            }
        };
        let recorded = slot_state::slots(target)
            .await?
            .into_iter()
            .find(|r| r.name == group.slot)
            .ok_or_else(|| Error::Protocol {
                slot: group.slot.clone(),
                detail: "the slot record is missing from the target's state".into(),
            })?;
        info!(slot = %slot, created = created.created, tables = tables.len(), %verified, "slot set up");
        slots.push(SlotSetup {
            slot: group.slot.clone(),
            created: created.created,
            sets_created: sets.created,
            tables_added: added.added.len(),
            tables: tables.len(),
            restart_lsn: recorded.restart_lsn,
            confirmed_flush_lsn: recorded.confirmed_flush_lsn,
            sets_verified_lsn: verified,
        });
    }
    state::log_step(target, "setup", "done", None).await?;
    Ok(SetupReport {
        extension_created: extension.created,
        node_changed: !matches!(node.outcome, crate::node::NodeOutcome::Existing),
        slots,
    })
}
