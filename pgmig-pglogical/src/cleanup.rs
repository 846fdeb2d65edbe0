//! `pgmig cleanup`: drops exactly what pgmig created — its logical slots,
//! their replication sets and the provider node on the source, then the
//! `pgmig` state schema in the target — and nothing else.
//!
//! What pgmig created is read from its records in the target
//! ([`crate::slot_state`]): a slot recorded with `created_by_pgmig` that
//! still is a logical `pglogical` slot of this database is pgmig's, and so
//! are its two sets (`<slot>` and `i<slot>`). A slot pgmig adopted (it
//! existed before setup), or one replaced since by another object of the
//! same name, is left alone with its sets. Sets of a planned slot that has
//! no record and does not exist were left by a setup interrupted before it
//! created the slot; they are pgmig's too.
//!
//! The provider node is pgmig's when it carries pgmig's node name
//! ([`crate::setup::DEFAULT_NODE_NAME`] unless setup was given another).
//! It is dropped only when nothing else uses it: no subscription, no
//! replication set other than pgmig's and pglogical's empty defaults, and
//! no `pglogical` slot of the database whose name contains `pgl_` — which
//! `pglogical.drop_node` would silently drop with the node. Otherwise it is
//! kept and the reasons are reported.
//!
//! The state schema goes last, after the source is clean: it holds the
//! records of what to drop, so a cleanup interrupted on the source can run
//! again. `DROP SCHEMA … CASCADE` would also drop objects outside the
//! schema that depend on it (a view over `pgmig.migration`); those are
//! refused up front instead.
//!
//! Nothing changes when any slot to drop is active (a CDC applier or a DMS
//! task consumes it), or when the target's records belong to another
//! source: [`plan_cleanup`] reports such blockers and [`run_cleanup`]
//! refuses them. Every run is planned first, so `--dry-run` prints exactly
//! the statements a real run executes; a second cleanup finds nothing.

use std::collections::BTreeSet;

use pgmig_core::{Lsn, ServerRole, ServerVersion, admin, state};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{info, instrument};

use crate::error::Error;
use crate::node::{self, NodeError, local_node, node_users, sets_lost_with_node};
use crate::replication_set::{find_sets, remove_sets_sql, slot_sets};
use crate::slot::{PLUGIN, RESERVED_INFIX, SlotError, SlotInfo, SlotName, SlotType, drop_slot_sql};
use crate::slot_state::{self, SlotRecord};
use crate::statement::{Statement, execute_all};

/// The statement that drops pgmig's state in the target.
pub const DROP_SCHEMA_SQL: &str = "DROP SCHEMA IF EXISTS pgmig CASCADE";

/// Lists objects outside schema `pgmig` that depend on an object inside it
/// (and that `DROP SCHEMA pgmig CASCADE` would therefore drop too), as
/// `pg_describe_object` texts. An object's schema is that of the relation
/// it belongs to for rules, defaults, constraints and triggers; any other
/// kind of dependent counts as outside.
pub const OUTSIDE_DEPENDENTS_SQL: &str = "WITH ours AS (\
       SELECT 'pg_class'::regclass AS classid, c.oid FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgmig' \
       UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t \
         JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'pgmig' \
       UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p \
         JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgmig'), \
     deps AS (\
       SELECT d.classid, d.objid, CASE d.classid \
         WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objid) \
         WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.objid) \
         WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid) \
         WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r \
           JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid) \
         WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a \
           JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid) \
         WHEN 'pg_constraint'::regclass THEN (SELECT coalesce(c.relnamespace, k.connamespace) \
           FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid WHERE k.oid = d.objid) \
         WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger g \
           JOIN pg_class c ON c.oid = g.tgrelid WHERE g.oid = d.objid) \
         END AS nsp \
       FROM pg_depend d JOIN ours o ON d.refclassid = o.classid AND d.refobjid = o.oid \
       WHERE d.deptype = 'n') \
     SELECT DISTINCT pg_describe_object(deps.classid, deps.objid, 0) FROM deps \
     WHERE deps.nsp IS DISTINCT FROM (SELECT oid FROM pg_namespace WHERE nspname = 'pgmig') \
     ORDER BY 1";

/// What cleanup found wrong before changing anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanupError {
    /// The target is the source itself.
    #[error(
        "the target is the source itself (both have system identifier {system_identifier}): \
         --source and --target must name different servers; nothing was dropped"
    )]
    TargetIsSource {
        /// The shared system identifier.
        system_identifier: u64,
    },

    /// The target's records belong to a migration from another source.
    #[error(
        "the target's pgmig state records a migration from database {recorded_database:?} of system \
         {recorded_system}, but --source is database {source_database:?} of system {source_system}: \
         point --source and --target at the servers of this migration; nothing was dropped"
    )]
    OtherSource {
        /// The recorded system identifier.
        recorded_system: u64,
        /// The recorded database.
        recorded_database: String,
        /// The connected source's system identifier.
        source_system: u64,
        /// The connected source's database.
        source_database: String,
    },

    /// Something pgmig would drop is in use, or dropping it would take
    /// other objects along.
    #[error("cleanup refused, nothing was dropped: {}", .blockers.join("; "))]
    Blocked {
        /// Each reason, with what to do about it.
        blockers: Vec<String>,
    },

    /// A catalog read or a statement failed.
    #[error(transparent)]
    Pglogical(#[from] Error),
}

impl From<pgmig_core::Error> for CleanupError {
    fn from(e: pgmig_core::Error) -> Self {
        CleanupError::Pglogical(Error::Core(e))
    }
}

impl From<SlotError> for CleanupError {
    fn from(e: SlotError) -> Self {
        CleanupError::Pglogical(Error::SlotObject(e))
    }
}

impl From<NodeError> for CleanupError {
    fn from(e: NodeError) -> Self {
        CleanupError::Pglogical(Error::Node(e))
    }
}

/// How cleanup names the node that is pgmig's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupOptions {
    /// The provider node's name, as given to setup; default
    /// [`crate::setup::DEFAULT_NODE_NAME`].
    pub node_name: String,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions {
            node_name: crate::setup::DEFAULT_NODE_NAME.to_owned(),
        }
    }
}

/// The kind of an object cleanup looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A logical replication slot on the source.
    Slot,
    /// A pglogical replication set on the source.
    ReplicationSet,
    /// The pglogical provider node on the source.
    Node,
    /// The `pgmig` state schema in the target.
    Schema,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Slot => "replication slot",
            ObjectKind::ReplicationSet => "replication set",
            ObjectKind::Node => "pglogical node",
            ObjectKind::Schema => "schema",
        })
    }
}

/// What cleanup does with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// pgmig's, and dropped (or to be dropped).
    Drop,
    /// Left alone; the reason says why.
    Keep,
    /// pgmig's, but already gone.
    Absent,
}

/// One object cleanup looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The server it lives on.
    pub server: ServerRole,
    /// What it is.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// What cleanup does with it.
    pub action: Action,
    /// Why it is kept, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Item {
    fn new(server: ServerRole, kind: ObjectKind, name: impl Into<String>, action: Action) -> Item {
        Item {
            server,
            kind,
            name: name.into(),
            action,
            reason: None,
        }
    }

    fn because(mut self, reason: impl Into<String>) -> Item {
        self.reason = Some(reason.into());
        self
    }
}

/// What cleanup would do now (or did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanupPlan {
    /// Every object looked at, in the order they are dropped.
    pub items: Vec<Item>,
    /// The statements, source first, then the target: empty when there is
    /// nothing left to drop.
    pub statements: Vec<Statement>,
    /// Why cleanup must not run now (active slots, dependents outside the
    /// schema); empty when it may.
    pub blockers: Vec<String>,
    /// P, when the target recorded one: the replica may still be paused
    /// there.
    pub pause_lsn: Option<Lsn>,
    /// Slots of the source that are not pgmig's (left alone), by name.
    pub other_slots: Vec<String>,
}

impl CleanupPlan {
    /// Whether nothing is left to drop.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

/// Whether `info` still is the slot pgmig created as `name`: a logical,
/// permanent `pglogical` slot of the connected database. `Err` says what it
/// is instead.
fn still_ours(info: &SlotInfo) -> Result<(), String> {
    if info.slot_type != SlotType::Logical {
        return Err("it is now a physical slot, not the one pgmig created".into());
    }
    if info.plugin.as_deref() != Some(PLUGIN) {
        return Err(format!(
            "it now uses plugin {}, not {PLUGIN}: not the slot pgmig created",
            info.plugin.as_deref().unwrap_or("none")
        ));
    }
    if !info.in_current_database {
        return Err(format!(
            "it now belongs to database {}: not the slot pgmig created",
            info.database.as_deref().unwrap_or("?")
        ));
    }
    if info.temporary {
        return Err("it is now a temporary slot: not the slot pgmig created".into());
    }
    Ok(())
}

/// The verdict on one recorded slot: its item, and a blocker when it is
/// pgmig's but in use.
fn slot_verdict(record: &SlotRecord, info: Option<&SlotInfo>) -> (Item, Option<String>) {
    let item = |action| Item::new(ServerRole::Source, ObjectKind::Slot, &record.name, action);
    if !record.created_by_pgmig {
        return (
            item(Action::Keep).because(
                "it existed before pgmig's setup, which adopted it; pgmig drops only slots it created",
            ),
            None,
        );
    }
    let Some(info) = info else {
        return (item(Action::Absent), None);
    };
    if let Err(reason) = still_ours(info) {
        return (item(Action::Keep).because(reason), None);
    }
    if info.active {
        let pid = info
            .active_pid
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        return (
            item(Action::Drop),
            Some(format!(
                "replication slot {} is active (consumed by the backend with pid {pid}: a `pgmig cdc` \
                 or a DMS task); stop its consumer, then run cleanup again",
                record.name
            )),
        );
    }
    (item(Action::Drop), None)
}

/// The `pglogical` slots of the connected database that
/// `pglogical.drop_node` would drop with the node: its query is
/// `slot_name ~ 'pgl_.*'` (unanchored) on plugins `pglogical` and
/// `pglogical_output`.
fn drop_node_victims(slots: &[SlotInfo]) -> Vec<&SlotInfo> {
    slots
        .iter()
        .filter(|s| {
            s.in_current_database
                && matches!(s.plugin.as_deref(), Some("pglogical" | "pglogical_output"))
                && s.name.contains(RESERVED_INFIX)
        })
        .collect()
}

/// Looks at both servers and plans the cleanup without changing anything.
///
/// Fails with [`CleanupError::TargetIsSource`] or
/// [`CleanupError::OtherSource`] when the target's records are not about
/// this source; other problems are reported as
/// [`CleanupPlan::blockers`].
pub async fn plan_cleanup(
    source: &impl GenericClient,
    target: &impl GenericClient,
    opts: &CleanupOptions,
) -> Result<CleanupPlan, CleanupError> {
    let migration = state::load_migration(target).await?;
    let records = slot_state::slots(target).await?;
    let schema_exists = target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&state::SCHEMA],
        )
        .await
        .map_err(pgmig_core::Error::query("look for the pgmig schema"))?
        .get::<_, bool>(0);

    // Wiring: the records must be about this source.
    if schema_exists {
        let source_sysid = admin::system_identifier(source).await?;
        let target_sysid = admin::system_identifier(target).await?;
        if source_sysid == target_sysid {
            return Err(CleanupError::TargetIsSource {
                system_identifier: source_sysid,
            });
        }
        if let Some(m) = &migration {
            let database: String = source
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(pgmig_core::Error::query("read the source database name"))?
                .get(0);
            if m.source_system_identifier != source_sysid || m.source_database != database {
                return Err(CleanupError::OtherSource {
                    recorded_system: m.source_system_identifier,
                    recorded_database: m.source_database.clone(),
                    source_system: source_sysid,
                    source_database: database,
                });
            }
        }
    }

    let version = ServerVersion::query(source).await?;
    let slots = crate::slot::list_slots(source, version).await?;
    let mut items = Vec::new();
    let mut blockers = Vec::new();
    let mut statements = Vec::new();

    // Slots first: once they are gone nothing can consume them.
    let mut ours = BTreeSet::new();
    let mut set_owners: Vec<SlotName> = Vec::new();
    for record in &records {
        let info = slots.iter().find(|s| s.name == record.name);
        let (item, blocker) = slot_verdict(record, info);
        blockers.extend(blocker);
        let keeps_sets = item.action == Action::Keep;
        if item.action == Action::Drop
            && let Ok(name) = SlotName::new(&record.name)
        {
            statements.extend(drop_slot_sql(&name));
        }
        ours.insert(record.name.clone());
        items.push(item);
        if !keeps_sets && let Ok(name) = SlotName::new(&record.name) {
            set_owners.push(name);
        }
    }
    // Planned slots without a record: setup stopped after their sets.
    if let Some(m) = &migration {
        for group in &m.plan.slots {
            if records.iter().any(|r| r.name == group.slot) {
                continue;
            }
            let Ok(name) = SlotName::new(&group.slot) else {
                continue;
            };
            if slots.iter().any(|s| s.name == group.slot) {
                items.push(
                    Item::new(
                        ServerRole::Source,
                        ObjectKind::Slot,
                        &group.slot,
                        Action::Keep,
                    )
                    .because("pgmig has no record of creating it; its sets are left alone too"),
                );
            } else {
                set_owners.push(name);
            }
        }
    }

    // Then their sets (pglogical drops the table memberships with them;
    // the tables stay).
    let mut dropped_sets = Vec::new();
    for slot in &set_owners {
        let names: Vec<String> = slot_sets(slot).iter().map(|(n, _)| n.clone()).collect();
        let found = find_sets(source, &names).await?;
        for st in remove_sets_sql(slot) {
            let set = st.params[0].clone();
            if found.iter().any(|s| s.name == set) {
                items.push(Item::new(
                    ServerRole::Source,
                    ObjectKind::ReplicationSet,
                    &set,
                    Action::Drop,
                ));
                statements.push(st);
                dropped_sets.push(set);
            } else {
                items.push(Item::new(
                    ServerRole::Source,
                    ObjectKind::ReplicationSet,
                    &set,
                    Action::Absent,
                ));
            }
        }
    }

    // Then the node, only when nothing else needs it.
    if let Some(node) = local_node(source).await? {
        let item = |action| {
            Item::new(
                ServerRole::Source,
                ObjectKind::Node,
                &node.node_name,
                action,
            )
        };
        if node.node_name != opts.node_name {
            items.push(item(Action::Keep).because(format!(
                "it is not pgmig's node {} (pass --node-name when setup used another name)",
                opts.node_name
            )));
        } else {
            let mut reasons = node_users(source, node.node_id).await?;
            let sets: Vec<String> = sets_lost_with_node(source, node.node_id)
                .await?
                .into_iter()
                .filter(|s| !dropped_sets.contains(s))
                .collect();
            if !sets.is_empty() {
                reasons.push(format!("it holds replication sets {}", sets.join(", ")));
            }
            let victims: Vec<String> = drop_node_victims(&slots)
                .iter()
                .filter(|s| !s.active)
                .map(|s| s.name.clone())
                .collect();
            if !victims.is_empty() {
                reasons.push(format!(
                    "pglogical.drop_node would also drop slot(s) {} (every pglogical slot whose name contains \"pgl_\")",
                    victims.join(", ")
                ));
            }
            if reasons.is_empty() {
                statements.extend(node::drop_node_sql(&opts.node_name));
                items.push(item(Action::Drop));
            } else {
                items.push(
                    item(Action::Keep).because(format!("still in use: {}", reasons.join("; "))),
                );
            }
        }
    } else if node::extension_version(source).await?.is_some() || schema_exists {
        items.push(Item::new(
            ServerRole::Source,
            ObjectKind::Node,
            &opts.node_name,
            Action::Absent,
        ));
    }

    // Last, the target's records.
    if schema_exists {
        let rows =
            target
                .query(OUTSIDE_DEPENDENTS_SQL, &[])
                .await
                .map_err(pgmig_core::Error::query(
                    "look for objects that depend on the pgmig schema",
                ))?;
        let outside: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if !outside.is_empty() {
            blockers.push(format!(
                "objects outside schema pgmig in the target depend on it and DROP SCHEMA pgmig CASCADE \
                 would drop them too: {}; drop or change them first",
                outside.join(", ")
            ));
        }
        items.push(Item::new(
            ServerRole::Target,
            ObjectKind::Schema,
            state::SCHEMA,
            Action::Drop,
        ));
        statements.push(Statement::new(
            ServerRole::Target,
            "drop pgmig's state schema in the target (the records of what pgmig created, load and CDC progress)",
            DROP_SCHEMA_SQL,
        ));
    } else {
        items.push(Item::new(
            ServerRole::Target,
            ObjectKind::Schema,
            state::SCHEMA,
            Action::Absent,
        ));
    }

    let other_slots = slots
        .iter()
        .filter(|s| !ours.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    Ok(CleanupPlan {
        items,
        statements,
        blockers,
        pause_lsn: migration.and_then(|m| m.pause_lsn),
        other_slots,
    })
}

/// Plans the cleanup and runs it: the source's statements in order, then
/// the target's. Refuses ([`CleanupError::Blocked`]) without changing
/// anything when the plan has blockers. Returns the plan that ran.
#[instrument(skip_all, fields(node = %opts.node_name))]
pub async fn run_cleanup(
    source: &impl GenericClient,
    target: &impl GenericClient,
    opts: &CleanupOptions,
) -> Result<CleanupPlan, CleanupError> {
    let plan = plan_cleanup(source, target, opts).await?;
    if !plan.blockers.is_empty() {
        return Err(CleanupError::Blocked {
            blockers: plan.blockers,
        });
    }
    for st in &plan.statements {
        let client_is_source = st.role == ServerRole::Source;
        if client_is_source {
            execute_all(source, std::slice::from_ref(st)).await?;
        } else {
            execute_all(target, std::slice::from_ref(st)).await?;
        }
        info!(server = %st.role, what = %st.what, "cleanup step done");
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> SlotInfo {
        SlotInfo {
            name: name.to_owned(),
            plugin: Some(PLUGIN.to_owned()),
            slot_type: SlotType::Logical,
            database: Some("app".to_owned()),
            in_current_database: true,
            temporary: false,
            active: false,
            active_pid: None,
            restart_lsn: Some(Lsn(0x100)),
            confirmed_flush_lsn: Some(Lsn(0x200)),
            wal_status: None,
            lag_bytes: None,
            retained_wal_bytes: None,
        }
    }

    fn record(name: &str, created_by_pgmig: bool) -> SlotRecord {
        SlotRecord {
            name: name.to_owned(),
            plugin: PLUGIN.to_owned(),
            created_by_pgmig,
            restart_lsn: Lsn(0x100),
            confirmed_flush_lsn: Lsn(0x200),
            sets_verified_lsn: None,
        }
    }

    #[test]
    fn only_pgmigs_own_idle_slots_are_dropped() {
        let r = record("dms_slot_01", true);
        let (item, blocker) = slot_verdict(&r, Some(&info("dms_slot_01")));
        assert_eq!((item.action, blocker), (Action::Drop, None));

        let (item, _) = slot_verdict(&r, None);
        assert_eq!(item.action, Action::Absent);

        let (item, blocker) =
            slot_verdict(&record("dms_slot_01", false), Some(&info("dms_slot_01")));
        assert_eq!(item.action, Action::Keep);
        assert!(item.reason.unwrap().contains("adopted"));
        assert!(blocker.is_none());

        let replaced = SlotInfo {
            plugin: Some("test_decoding".into()),
            ..info("dms_slot_01")
        };
        let (item, _) = slot_verdict(&r, Some(&replaced));
        assert_eq!(item.action, Action::Keep);
        assert!(item.reason.unwrap().contains("test_decoding"));

        for other in [
            SlotInfo {
                in_current_database: false,
                database: Some("other".into()),
                ..info("dms_slot_01")
            },
            SlotInfo {
                temporary: true,
                ..info("dms_slot_01")
            },
            SlotInfo {
                slot_type: SlotType::Physical,
                plugin: None,
                ..info("dms_slot_01")
            },
        ] {
            assert_eq!(slot_verdict(&r, Some(&other)).0.action, Action::Keep);
        }
    }

    #[test]
    fn an_active_slot_blocks_the_cleanup() {
        let busy = SlotInfo {
            active: true,
            active_pid: Some(4242),
            ..info("dms_slot_01")
        };
        let (item, blocker) = slot_verdict(&record("dms_slot_01", true), Some(&busy));
        assert_eq!(item.action, Action::Drop);
        let blocker = blocker.unwrap();
        assert!(
            blocker.contains("dms_slot_01") && blocker.contains("4242") && blocker.contains("stop"),
            "{blocker}"
        );
    }

    #[test]
    fn drop_node_victims_follow_pglogicals_pattern() {
        let slots = [
            info("dms_slot_01"),
            info("pgl_app_provider_sub"),
            info("keep_pgl_x"),
            SlotInfo {
                plugin: Some("pglogical_output".into()),
                ..info("pgl_old")
            },
            SlotInfo {
                plugin: Some("test_decoding".into()),
                ..info("pgl_td")
            },
            SlotInfo {
                in_current_database: false,
                ..info("pgl_elsewhere")
            },
            info("pglx"),
        ];
        let names: Vec<&str> = drop_node_victims(&slots)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["pgl_app_provider_sub", "keep_pgl_x", "pgl_old"]);
    }

    #[test]
    fn drop_schema_statement() {
        assert_eq!(DROP_SCHEMA_SQL, "DROP SCHEMA IF EXISTS pgmig CASCADE");
        assert!(OUTSIDE_DEPENDENTS_SQL.contains("pg_depend"));
    }
}
