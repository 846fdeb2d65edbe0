//! The two pglogical replication sets of each slot, and their tables.
//!
//! For slot `dms_slot_01`: the set `dms_slot_01` replicates UPDATE and
//! DELETE only, the set `idms_slot_01` INSERT and TRUNCATE only — the names
//! DMS requires. Every planned table goes to both sets; a table without a
//! primary key only to the insert/truncate set (pglogical refuses it in a
//! set that replicates UPDATE or DELETE, so pgmig does not even try).
//!
//! pglogical's catalogs (2.4.2): `pglogical.replication_set (set_id,
//! set_nodeid, set_name, replicate_insert, replicate_update,
//! replicate_delete, replicate_truncate)` belongs to the local node;
//! `pglogical.replication_set_table (set_id, set_reloid regclass,
//! set_att_list, set_row_filter)` holds the members. Adding a member twice
//! fails on that table's primary key, so membership is read first.
//! `replication_set_add_table` takes a `SHARE ROW EXCLUSIVE` lock on the
//! table for its (short, autocommit) transaction: it waits for running
//! writes to that table and makes new ones wait behind it. On a busy source,
//! set `lock_timeout` on the session to bound that wait.
//!
//! Each change is planned first and then executed, so `--dry-run` prints
//! exactly what a real run executes (see [`crate::statement`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pgmig_core::QualifiedTable;
use pgmig_core::catalog::TableInfo;
use pgmig_core::plan::PlannedTable;
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{info, instrument};

use crate::node::{extension_version, local_node};
use crate::slot::SlotName;
use crate::statement::{Statement, execute_all};

/// The update/delete set of `slot`: the slot's own name (`dms_slot_01`).
pub fn update_delete_set_name(slot: &SlotName) -> String {
    slot.as_str().to_owned()
}

/// The insert/truncate set of `slot`: `i` + the slot's name (`idms_slot_01`).
pub fn insert_truncate_set_name(slot: &SlotName) -> String {
    format!("i{slot}")
}

/// What a replication set replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SetFlags {
    /// `replicate_insert`.
    pub insert: bool,
    /// `replicate_update`.
    pub update: bool,
    /// `replicate_delete`.
    pub delete: bool,
    /// `replicate_truncate`.
    pub truncate: bool,
}

impl SetFlags {
    /// UPDATE and DELETE only: the set named like the slot.
    pub const UPDATE_DELETE: SetFlags = SetFlags {
        insert: false,
        update: true,
        delete: true,
        truncate: false,
    };

    /// INSERT and TRUNCATE only: the `i<slot>` set.
    pub const INSERT_TRUNCATE: SetFlags = SetFlags {
        insert: true,
        update: false,
        delete: false,
        truncate: true,
    };
}

impl fmt::Display for SetFlags {
    /// `insert, truncate`; `nothing` when all are off.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.insert, "insert"),
            (self.update, "update"),
            (self.delete, "delete"),
            (self.truncate, "truncate"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// The two sets of a slot, as (name, flags): update/delete first.
pub fn slot_sets(slot: &SlotName) -> [(String, SetFlags); 2] {
    [
        (update_delete_set_name(slot), SetFlags::UPDATE_DELETE),
        (insert_truncate_set_name(slot), SetFlags::INSERT_TRUNCATE),
    ]
}

/// A table to put into a slot's sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SetTable {
    /// The table.
    pub table: QualifiedTable,
    /// Whether it has a replica-identity index (its primary key, or
    /// `REPLICA IDENTITY USING INDEX`): pglogical replicates UPDATE and
    /// DELETE only for such tables, so without one it goes to the
    /// insert/truncate set only.
    pub has_identity_index: bool,
}

impl SetTable {
    /// The sets of `slot` this table belongs in.
    pub fn set_names(&self, slot: &SlotName) -> Vec<String> {
        let mut sets = Vec::with_capacity(2);
        if self.has_identity_index {
            sets.push(update_delete_set_name(slot));
        }
        sets.push(insert_truncate_set_name(slot));
        sets
    }
}

impl From<&TableInfo> for SetTable {
    fn from(t: &TableInfo) -> Self {
        SetTable {
            table: t.table.clone(),
            has_identity_index: t.has_identity_index(),
        }
    }
}

impl From<&PlannedTable> for SetTable {
    fn from(t: &PlannedTable) -> Self {
        SetTable {
            table: t.table.clone(),
            has_identity_index: t.has_identity_index,
        }
    }
}

/// What went wrong with a replication set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// The database is not a pglogical node yet.
    #[error(
        "this database is not a pglogical node yet; run CREATE EXTENSION pglogical and create the provider node before the replication sets"
    )]
    NoNode,

    /// A set of that name exists with other flags.
    #[error(
        "replication set {set} exists and replicates {found}, but pgmig needs {expected}; remove it or choose another slot name"
    )]
    WrongFlags {
        /// The set.
        set: String,
        /// What pgmig needs.
        expected: SetFlags,
        /// What it replicates.
        found: SetFlags,
    },

    /// A set needed for adding tables does not exist.
    #[error("replication set {set} does not exist; create the slot's sets first")]
    SetMissing {
        /// The set.
        set: String,
    },

    /// A planned table does not exist on the source.
    #[error("table {table} does not exist on the source")]
    TableNotFound {
        /// The table.
        table: QualifiedTable,
    },

    /// A catalog read or a statement failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
}

/// One existing set of the local node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetInfo {
    /// Its name.
    pub name: String,
    /// What it replicates.
    pub flags: SetFlags,
}

/// The sets among `names` that exist on the local node (none without the
/// extension or a node).
pub async fn find_sets(
    client: &impl GenericClient,
    names: &[String],
) -> Result<Vec<SetInfo>, pgmig_core::Error> {
    if extension_version(client).await?.is_none() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT s.set_name::text, s.replicate_insert, s.replicate_update, \
             s.replicate_delete, s.replicate_truncate \
             FROM pglogical.replication_set s \
             JOIN pglogical.local_node l ON l.node_id = s.set_nodeid \
             WHERE s.set_name::text = ANY($1::text[]) ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(pgmig_core::Error::query("read pglogical replication sets"))?;
    Ok(rows
        .iter()
        .map(|r| SetInfo {
            name: r.get(0),
            flags: SetFlags {
                insert: r.get(1),
                update: r.get(2),
                delete: r.get(3),
                truncate: r.get(4),
            },
        })
        .collect())
}

/// One table in one set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Membership {
    /// The set.
    pub set: String,
    /// The table.
    pub table: QualifiedTable,
}

/// A member as pglogical's catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    membership: Membership,
    /// A column list or a row filter is set.
    filtered: bool,
}

async fn members(
    client: &impl GenericClient,
    sets: &[String],
) -> Result<Vec<Member>, pgmig_core::Error> {
    if extension_version(client).await?.is_none() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT s.set_name::text, n.nspname::text, c.relname::text, \
             (r.set_att_list IS NOT NULL OR r.set_row_filter IS NOT NULL) \
             FROM pglogical.replication_set s \
             JOIN pglogical.local_node l ON l.node_id = s.set_nodeid \
             JOIN pglogical.replication_set_table r ON r.set_id = s.set_id \
             JOIN pg_class c ON c.oid = r.set_reloid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE s.set_name::text = ANY($1::text[]) ORDER BY 1, 2, 3",
            &[&sets],
        )
        .await
        .map_err(pgmig_core::Error::query(
            "read the tables of pglogical replication sets",
        ))?;
    Ok(rows
        .iter()
        .map(|r| Member {
            membership: Membership {
                set: r.get(0),
                table: QualifiedTable::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            },
            filtered: r.get(3),
        })
        .collect())
}

/// Which of `tables` do not exist (resolved by their quoted names).
async fn missing_tables(
    client: &impl GenericClient,
    tables: &[SetTable],
) -> Result<Vec<QualifiedTable>, pgmig_core::Error> {
    let names: Vec<String> = tables.iter().map(|t| t.table.quoted()).collect();
    let rows = client
        .query(
            "SELECT q.ord FROM unnest($1::text[]) WITH ORDINALITY AS q(name, ord) \
             WHERE to_regclass(q.name) IS NULL ORDER BY q.ord",
            &[&names],
        )
        .await
        .map_err(pgmig_core::Error::query("look up the planned tables"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let ord: i64 = r.get(0);
            usize::try_from(ord - 1)
                .ok()
                .and_then(|i| tables.get(i))
                .map(|t| t.table.clone())
        })
        .collect())
}

fn create_set_statement(name: &str, flags: SetFlags) -> Statement {
    Statement::source(
        format!("create replication set {name} ({flags})"),
        format!(
            "SELECT pglogical.create_replication_set(set_name := $1, \
             replicate_insert := {}, replicate_update := {}, \
             replicate_delete := {}, replicate_truncate := {})",
            flags.insert, flags.update, flags.delete, flags.truncate
        ),
    )
    .bind(name)
}

fn add_table_statement(set: &str, table: &QualifiedTable) -> Statement {
    Statement::source(
        format!("add table {table} to replication set {set}"),
        "SELECT pglogical.replication_set_add_table(set_name := $1, \
         relation := $2::text::regclass, synchronize_data := false)",
    )
    .bind(set)
    .bind(table.quoted())
}

fn drop_set_statement(name: &str) -> Statement {
    Statement::source(
        format!("drop replication set {name}"),
        "SELECT pglogical.drop_replication_set(set_name := $1, ifexists := true)",
    )
    .bind(name)
}

/// The statements that create both sets of `slot` when neither exists.
pub fn ensure_sets_sql(slot: &SlotName) -> Vec<Statement> {
    slot_sets(slot)
        .iter()
        .map(|(name, flags)| create_set_statement(name, *flags))
        .collect()
}

/// What [`ensure_sets`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnsureSetsPlan {
    /// The slot.
    pub slot: SlotName,
    /// Its sets that exist already, with the right flags.
    pub existing: Vec<String>,
    /// Whether the database is not a pglogical node yet (a dry run of a
    /// whole setup plans past it; executing fails with [`SetError::NoNode`]).
    pub node_missing: bool,
    /// What would run: one statement per missing set.
    pub statements: Vec<Statement>,
}

/// Plans [`ensure_sets`] without changing anything; fails like it on a set
/// with the wrong flags.
pub async fn plan_ensure_sets(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<EnsureSetsPlan, SetError> {
    let wanted = slot_sets(slot);
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let node_missing = local_node(client).await?.is_none();
    let found = find_sets(client, &names).await?;
    let mut existing = Vec::new();
    let mut statements = Vec::new();
    for (name, flags) in &wanted {
        match found.iter().find(|s| &s.name == name) {
            Some(set) if set.flags == *flags => existing.push(name.clone()),
            Some(set) => {
                return Err(SetError::WrongFlags {
                    set: name.clone(),
                    expected: *flags,
                    found: set.flags,
                });
            }
            None => statements.push(create_set_statement(name, *flags)),
        }
    }
    Ok(EnsureSetsPlan {
        slot: slot.clone(),
        existing,
        node_missing,
        statements,
    })
}

/// What [`ensure_sets`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnsureSetsResult {
    /// The slot.
    pub slot: SlotName,
    /// The sets this call created.
    pub created: Vec<String>,
    /// The sets that existed with the right flags.
    pub existing: Vec<String>,
}

/// Creates the two sets of `slot` (see the module docs) unless they exist
/// with exactly those flags; a set of that name with other flags is an error
/// naming the set and the flags found. Needs the provider node.
#[instrument(skip_all, fields(slot = %slot))]
pub async fn ensure_sets(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<EnsureSetsResult, SetError> {
    let plan = plan_ensure_sets(client, slot).await?;
    if plan.node_missing {
        return Err(SetError::NoNode);
    }
    execute_all(client, &plan.statements).await?;
    let created: Vec<String> = plan
        .statements
        .iter()
        .map(|s| s.params[0].clone())
        .collect();
    for set in &created {
        info!(set = %set, "created replication set");
    }
    Ok(EnsureSetsResult {
        slot: slot.clone(),
        created,
        existing: plan.existing,
    })
}

/// The statements that put every table of `tables` into the sets of `slot`
/// it belongs in (see [`SetTable::set_names`]), as if none were a member.
pub fn add_tables_sql(slot: &SlotName, tables: &[SetTable]) -> Vec<Statement> {
    tables
        .iter()
        .flat_map(|t| {
            t.set_names(slot)
                .into_iter()
                .map(move |set| add_table_statement(&set, &t.table))
        })
        .collect()
}

/// What [`add_tables`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddTablesPlan {
    /// The slot.
    pub slot: SlotName,
    /// Memberships that exist already (skipped).
    pub already: Vec<Membership>,
    /// Memberships still to add, in statement order.
    pub to_add: Vec<Membership>,
    /// Sets of the slot that do not exist yet (a dry run of a whole setup
    /// plans past them; executing fails with [`SetError::SetMissing`]).
    pub missing_sets: Vec<String>,
    /// Planned tables that do not exist on the source (executing fails with
    /// [`SetError::TableNotFound`]).
    pub missing_tables: Vec<QualifiedTable>,
    /// What would run: one statement per membership to add.
    pub statements: Vec<Statement>,
}

/// Plans [`add_tables`] without changing anything.
pub async fn plan_add_tables(
    client: &impl GenericClient,
    slot: &SlotName,
    tables: &[SetTable],
) -> Result<AddTablesPlan, SetError> {
    let names: Vec<String> = slot_sets(slot).iter().map(|(n, _)| n.clone()).collect();
    let found: BTreeSet<String> = find_sets(client, &names)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let missing_sets = names
        .iter()
        .filter(|n| !found.contains(*n))
        .cloned()
        .collect();
    let current: BTreeSet<Membership> = members(client, &names)
        .await?
        .into_iter()
        .map(|m| m.membership)
        .collect();
    let missing_tables = missing_tables(client, tables).await?;
    let mut already = Vec::new();
    let mut to_add = Vec::new();
    let mut statements = Vec::new();
    let mut seen = BTreeSet::new();
    for t in tables {
        for set in t.set_names(slot) {
            let m = Membership {
                set,
                table: t.table.clone(),
            };
            if !seen.insert(m.clone()) {
                continue;
            }
            if current.contains(&m) {
                already.push(m);
            } else {
                statements.push(add_table_statement(&m.set, &m.table));
                to_add.push(m);
            }
        }
    }
    Ok(AddTablesPlan {
        slot: slot.clone(),
        already,
        to_add,
        missing_sets,
        missing_tables,
        statements,
    })
}

/// What [`add_tables`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddTablesResult {
    /// The slot.
    pub slot: SlotName,
    /// Memberships this call added.
    pub added: Vec<Membership>,
    /// Memberships that existed already.
    pub already: Vec<Membership>,
}

/// Puts each table into the sets of `slot` it belongs in: a table with a
/// primary key into both, one without only into the insert/truncate set.
/// Tables already in a set are skipped; data is not synchronized (the full
/// load copies it). Nothing runs when a set or a table is missing. Each
/// addition briefly locks its table against writes (see the module docs).
#[instrument(skip_all, fields(slot = %slot, tables = tables.len()))]
pub async fn add_tables(
    client: &impl GenericClient,
    slot: &SlotName,
    tables: &[SetTable],
) -> Result<AddTablesResult, SetError> {
    let plan = plan_add_tables(client, slot, tables).await?;
    if let Some(set) = plan.missing_sets.first() {
        return Err(SetError::SetMissing { set: set.clone() });
    }
    if let Some(table) = plan.missing_tables.first() {
        return Err(SetError::TableNotFound {
            table: table.clone(),
        });
    }
    execute_all(client, &plan.statements).await?;
    info!(
        added = plan.to_add.len(),
        already = plan.already.len(),
        "tables in replication sets"
    );
    Ok(AddTablesResult {
        slot: slot.clone(),
        added: plan.to_add,
        already: plan.already,
    })
}

/// A difference between a slot's sets in pglogical's catalogs and the plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MembershipProblem {
    /// A set of the slot does not exist.
    SetMissing {
        /// The set.
        set: String,
    },
    /// A set replicates other actions than it must.
    WrongFlags {
        /// The set.
        set: String,
        /// What it must replicate.
        expected: String,
        /// What it replicates.
        found: String,
    },
    /// A planned table does not exist on the source.
    TableNotFound {
        /// The table.
        table: QualifiedTable,
    },
    /// A planned table is not in a set it belongs in.
    NotMember {
        /// The set.
        set: String,
        /// The table.
        table: QualifiedTable,
    },
    /// A set holds a table the plan does not put there (its changes would
    /// flow to CDC without the full load having copied it).
    Unexpected {
        /// The set.
        set: String,
        /// The table.
        table: QualifiedTable,
    },
    /// A member has a column list or a row filter: not all changes flow.
    Filtered {
        /// The set.
        set: String,
        /// The table.
        table: QualifiedTable,
    },
}

impl fmt::Display for MembershipProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipProblem::SetMissing { set } => {
                write!(f, "replication set {set} does not exist")
            }
            MembershipProblem::WrongFlags {
                set,
                expected,
                found,
            } => write!(
                f,
                "replication set {set} replicates {found}, not {expected}"
            ),
            MembershipProblem::TableNotFound { table } => {
                write!(f, "table {table} does not exist")
            }
            MembershipProblem::NotMember { set, table } => {
                write!(f, "table {table} is not in replication set {set}")
            }
            MembershipProblem::Unexpected { set, table } => {
                write!(
                    f,
                    "replication set {set} holds table {table}, which is not planned there"
                )
            }
            MembershipProblem::Filtered { set, table } => write!(
                f,
                "table {table} is in replication set {set} with a column list or row filter"
            ),
        }
    }
}

/// Compares the sets of `slot` in pglogical's catalogs with `expected`;
/// an empty list means they match exactly: both sets exist with the right
/// flags, each table is in the sets it belongs in, unfiltered, and no set
/// holds anything else.
pub async fn verify_membership(
    client: &impl GenericClient,
    slot: &SlotName,
    expected: &[SetTable],
) -> Result<Vec<MembershipProblem>, SetError> {
    let wanted = slot_sets(slot);
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let found = find_sets(client, &names).await?;
    let mut problems = Vec::new();
    for (name, flags) in &wanted {
        match found.iter().find(|s| &s.name == name) {
            None => problems.push(MembershipProblem::SetMissing { set: name.clone() }),
            Some(set) if set.flags != *flags => problems.push(MembershipProblem::WrongFlags {
                set: name.clone(),
                expected: flags.to_string(),
                found: set.flags.to_string(),
            }),
            Some(_) => {}
        }
    }
    let missing: BTreeSet<QualifiedTable> = missing_tables(client, expected)
        .await?
        .into_iter()
        .collect();
    problems.extend(
        missing
            .iter()
            .map(|table| MembershipProblem::TableNotFound {
                table: table.clone(),
            }),
    );
    let actual: BTreeMap<Membership, bool> = members(client, &names)
        .await?
        .into_iter()
        .map(|m| (m.membership, m.filtered))
        .collect();
    let mut planned = BTreeSet::new();
    for t in expected.iter().filter(|t| !missing.contains(&t.table)) {
        for set in t.set_names(slot) {
            planned.insert(Membership {
                set,
                table: t.table.clone(),
            });
        }
    }
    for m in &planned {
        let exists = found.iter().any(|s| s.name == m.set);
        match actual.get(m) {
            None if exists => problems.push(MembershipProblem::NotMember {
                set: m.set.clone(),
                table: m.table.clone(),
            }),
            Some(true) => problems.push(MembershipProblem::Filtered {
                set: m.set.clone(),
                table: m.table.clone(),
            }),
            _ => {}
        }
    }
    for m in actual.keys().filter(|m| !planned.contains(*m)) {
        problems.push(MembershipProblem::Unexpected {
            set: m.set.clone(),
            table: m.table.clone(),
        });
    }
    Ok(problems)
}

/// The statements that drop both sets of `slot` (with their memberships).
pub fn remove_sets_sql(slot: &SlotName) -> Vec<Statement> {
    slot_sets(slot)
        .iter()
        .map(|(name, _)| drop_set_statement(name))
        .collect()
}

/// What [`remove_sets_if_exist`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoveSetsPlan {
    /// The slot.
    pub slot: SlotName,
    /// What would run: one statement per existing set.
    pub statements: Vec<Statement>,
}

/// Plans [`remove_sets_if_exist`] without changing anything.
pub async fn plan_remove_sets(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<RemoveSetsPlan, SetError> {
    let names: Vec<String> = slot_sets(slot).iter().map(|(n, _)| n.clone()).collect();
    let found = find_sets(client, &names).await?;
    let statements = names
        .iter()
        .filter(|n| found.iter().any(|s| &s.name == *n))
        .map(|n| drop_set_statement(n))
        .collect();
    Ok(RemoveSetsPlan {
        slot: slot.clone(),
        statements,
    })
}

/// What [`remove_sets_if_exist`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoveSetsResult {
    /// The slot.
    pub slot: SlotName,
    /// The sets dropped (with their table memberships; the tables stay).
    pub dropped: Vec<String>,
}

/// Drops the two sets of `slot` where they exist; nothing else.
#[instrument(skip_all, fields(slot = %slot))]
pub async fn remove_sets_if_exist(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<RemoveSetsResult, SetError> {
    let plan = plan_remove_sets(client, slot).await?;
    execute_all(client, &plan.statements).await?;
    let dropped: Vec<String> = plan
        .statements
        .iter()
        .map(|s| s.params[0].clone())
        .collect();
    for set in &dropped {
        info!(set = %set, "dropped replication set");
    }
    Ok(RemoveSetsResult {
        slot: slot.clone(),
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> SlotName {
        SlotName::new("dms_slot_01").unwrap()
    }

    #[test]
    fn set_names() {
        assert_eq!(update_delete_set_name(&slot()), "dms_slot_01");
        assert_eq!(insert_truncate_set_name(&slot()), "idms_slot_01");
        let longest = SlotName::new("a".repeat(62)).unwrap();
        assert_eq!(insert_truncate_set_name(&longest).len(), 63);
    }

    #[test]
    fn flags_display() {
        assert_eq!(SetFlags::UPDATE_DELETE.to_string(), "update, delete");
        assert_eq!(SetFlags::INSERT_TRUNCATE.to_string(), "insert, truncate");
    }

    #[test]
    fn ensure_sets_sql_has_exact_flags() {
        let sql: Vec<String> = ensure_sets_sql(&slot())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            sql,
            [
                "SELECT pglogical.create_replication_set(set_name := 'dms_slot_01', replicate_insert := false, replicate_update := true, replicate_delete := true, replicate_truncate := false)",
                "SELECT pglogical.create_replication_set(set_name := 'idms_slot_01', replicate_insert := true, replicate_update := false, replicate_delete := false, replicate_truncate := true)",
            ]
        );
    }

    #[test]
    fn tables_without_key_go_to_the_insert_set_only() {
        let tables = [
            SetTable {
                table: QualifiedTable::new("Sales", "Order Items"),
                has_identity_index: true,
            },
            SetTable {
                table: QualifiedTable::new("public", "log"),
                has_identity_index: false,
            },
        ];
        let sql: Vec<String> = add_tables_sql(&slot(), &tables)
            .iter()
            .map(ToString::to_string)
            .collect();
        let add = |set: &str, rel: &str| {
            format!(
                "SELECT pglogical.replication_set_add_table(set_name := '{set}', relation := '{rel}'::text::regclass, synchronize_data := false)"
            )
        };
        assert_eq!(
            sql,
            [
                add("dms_slot_01", "\"Sales\".\"Order Items\""),
                add("idms_slot_01", "\"Sales\".\"Order Items\""),
                add("idms_slot_01", "\"public\".\"log\""),
            ]
        );
    }

    #[test]
    fn remove_sets_sql_drops_both() {
        let sql: Vec<String> = remove_sets_sql(&slot())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            sql,
            [
                "SELECT pglogical.drop_replication_set(set_name := 'dms_slot_01', ifexists := true)",
                "SELECT pglogical.drop_replication_set(set_name := 'idms_slot_01', ifexists := true)",
            ]
        );
    }
}
