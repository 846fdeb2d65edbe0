//! The migration plan: which tables each replication slot carries.
//!
//! Every later step reads the same plan: setup creates one slot and its two
//! replication sets per [`SlotGroup`], the snapshot verifies them, the load
//! copies their tables and CDC (or DMS) follows them.
//!
//! [`Plan::build`] groups the tables (see [`planner`]); a plan the user
//! edited is checked against the live catalog by [`Plan::validate_against`];
//! [`Filters`] say which tables the migration covers.

mod filter;
pub mod planner;
mod stats;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{TableInfo, TableKind};
use crate::ident::QualifiedTable;

pub use filter::{Filters, ParsePatternError, TablePattern};
pub use stats::{WriteRates, write_rates};

/// One table as the plan knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTable {
    /// The table.
    pub table: QualifiedTable,
    /// Whether it has a replica-identity index — its primary key under the
    /// default `REPLICA IDENTITY`, or `REPLICA IDENTITY USING INDEX`. pglogical
    /// replicates UPDATE and DELETE only for such tables; without one only
    /// INSERT and TRUNCATE replicate and the table goes to the insert set only.
    pub has_identity_index: bool,
    /// Heap size with TOAST when planned, in bytes.
    pub bytes: i64,
    /// What the planner knew of the table (absent in plans written before
    /// the planner existed).
    #[serde(default, flatten)]
    pub facts: TableFacts,
}

/// Facts about a planned table, refreshed from the catalog each time the
/// plan is built or validated; informative only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableFacts {
    /// The planner's row estimate (`reltuples`), when analyzed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<i64>,
    /// Primary key columns; empty without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// Unique indexes other than the primary key, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique_indexes: Vec<String>,
    /// No primary key: only INSERT and TRUNCATE replicate unless a replica
    /// identity index exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_primary_key: bool,
    /// Rows written since the statistics were reset: `n_tup_ins + n_tup_upd
    /// + n_tup_del` from `pg_stat_user_tables`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub write_rate: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl TableFacts {
    /// The facts of `info`, with its write rate from `rates`.
    pub fn of(info: &TableInfo, rates: &WriteRates) -> TableFacts {
        TableFacts {
            estimated_rows: info.estimated_rows,
            primary_key: info.primary_key.clone(),
            unique_indexes: info.unique_indexes.iter().map(|i| i.name.clone()).collect(),
            no_primary_key: !info.has_primary_key(),
            write_rate: rates.get(&info.table).copied().unwrap_or(0),
        }
    }
}

impl PlannedTable {
    /// A table planned by hand: no facts beyond its identity index and size.
    pub fn new(table: QualifiedTable, has_identity_index: bool, bytes: i64) -> PlannedTable {
        PlannedTable {
            table,
            has_identity_index,
            bytes,
            facts: TableFacts::default(),
        }
    }

    /// The planned form of `info`.
    pub fn of(info: &TableInfo, rates: &WriteRates) -> PlannedTable {
        PlannedTable {
            table: info.table.clone(),
            has_identity_index: info.has_identity_index(),
            bytes: info.table_bytes,
            facts: TableFacts::of(info, rates),
        }
    }
}

/// Why the planner put tables together in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotRole {
    /// Chosen by hand, or by a planner that does not say.
    #[default]
    Unspecified,
    /// One large or busy table alone.
    Dedicated,
    /// Tables with a primary key and other unique indexes (the runbook's
    /// special case: those indexes are deferred).
    PrimaryKeyAndUnique,
    /// Tables without a replica-identity index (insert set only).
    NoPrimaryKey,
    /// The remaining tables, packed by size × write rate.
    Packed,
}

impl SlotRole {
    /// Whether this is [`SlotRole::Unspecified`].
    pub fn is_unspecified(&self) -> bool {
        *self == SlotRole::Unspecified
    }

    /// A short note for the printed plan.
    pub fn note(&self) -> &'static str {
        match self {
            SlotRole::Unspecified => "",
            SlotRole::Dedicated => "dedicated: large or busy",
            SlotRole::PrimaryKeyAndUnique => "primary key + unique indexes (deferred)",
            SlotRole::NoPrimaryKey => "no primary key: insert set only",
            SlotRole::Packed => "packed by size x write rate",
        }
    }
}

/// An index or constraint built after the load instead of before it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeferredIndex {
    /// Its table.
    pub table: QualifiedTable,
    /// The index name (in the table's schema); for a constraint, the name
    /// of the constraint and of its index.
    pub name: String,
    /// Whether a `UNIQUE` constraint owns the index.
    #[serde(default)]
    pub is_constraint: bool,
}

/// One logical slot and the tables it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotGroup {
    /// The slot's name, e.g. `dms_slot_01`; its sets are named after it.
    pub slot: String,
    /// Its tables, largest first.
    pub tables: Vec<PlannedTable>,
    /// Why these tables are together.
    #[serde(default, skip_serializing_if = "SlotRole::is_unspecified")]
    pub role: SlotRole,
}

/// Slot groups covering every table to migrate, each table exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The slots, in name order.
    pub slots: Vec<SlotGroup>,
    /// Which tables the migration covers.
    #[serde(default, skip_serializing_if = "Filters::is_empty")]
    pub filters: Filters,
    /// Unique indexes and constraints to build after the load: for every
    /// table with a primary key, its other unique indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<DeferredIndex>,
}

/// The conventional name of slot `n` (1-based): `dms_slot_01`, `dms_slot_02`…
pub fn default_slot_name(n: usize) -> String {
    format!("dms_slot_{n:02}")
}

impl SlotGroup {
    /// A slot carrying `tables`, grouped by hand.
    pub fn new(slot: impl Into<String>, tables: Vec<PlannedTable>) -> SlotGroup {
        SlotGroup {
            slot: slot.into(),
            tables,
            role: SlotRole::default(),
        }
    }

    /// Its tables' total heap size, row estimate and write rate.
    pub fn totals(&self) -> (i64, i64, i64) {
        self.tables.iter().fold((0, 0, 0), |(b, r, w), t| {
            (
                b.saturating_add(t.bytes),
                r.saturating_add(t.facts.estimated_rows.unwrap_or(0)),
                w.saturating_add(t.facts.write_rate),
            )
        })
    }
}

/// The unique indexes to defer: for every table with a primary key, its
/// other unique indexes (the runbook's special case), sorted.
pub fn deferred_indexes<'a>(tables: impl IntoIterator<Item = &'a TableInfo>) -> Vec<DeferredIndex> {
    let mut deferred: Vec<DeferredIndex> = tables
        .into_iter()
        .filter(|t| t.has_primary_key())
        .flat_map(|t| {
            t.unique_indexes.iter().map(|i| DeferredIndex {
                table: t.table.clone(),
                name: i.name.clone(),
                is_constraint: i.is_constraint,
            })
        })
        .collect();
    deferred.sort();
    deferred
}

/// Why a plan cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The same table is planned twice.
    #[error("table {table} is planned in both {first} and {second}")]
    DuplicateTable {
        /// The table.
        table: QualifiedTable,
        /// The first slot that has it.
        first: String,
        /// The second.
        second: String,
    },
    /// The same slot name appears twice.
    #[error("slot {0} is planned twice")]
    DuplicateSlot(String),
    /// A slot count of zero.
    #[error("a plan needs at least one slot")]
    NoSlots,
    /// A slot name PostgreSQL or pglogical would refuse.
    #[error("invalid slot name {slot:?}: {reason}")]
    InvalidSlotName {
        /// The name.
        slot: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A planned table the catalog does not have.
    #[error("table {table} in slot {slot} does not exist in the source")]
    UnknownTable {
        /// The table.
        table: QualifiedTable,
        /// Its slot.
        slot: String,
    },
    /// A planned table that cannot be migrated as planned.
    #[error("table {table} in slot {slot} cannot be planned: {reason}")]
    UnplannableTable {
        /// The table.
        table: QualifiedTable,
        /// Its slot.
        slot: String,
        /// Why.
        reason: &'static str,
    },
    /// Tables the filters select that no slot carries.
    #[error("{} not in any slot: {}", if .0.len() == 1 { "table is" } else { "tables are" }, list(.0))]
    MissingTables(Vec<QualifiedTable>),
}

fn list(tables: &[QualifiedTable]) -> String {
    tables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest slot name PostgreSQL accepts (`NAMEDATALEN - 1`); pglogical's
/// own limit, checked again when setting up.
pub const MAX_SLOT_NAME_BYTES: usize = 62;

/// Checks a slot name the way PostgreSQL and pglogical do: lower-case ASCII
/// letters, digits and `_`, at most [`MAX_SLOT_NAME_BYTES`] bytes, never
/// containing `pgl_` (pglogical's own prefix). It must also stay usable by
/// DMS, whose task identifiers allow no `_`: the DMS artifacts spell `_` as
/// `-`, so the name starts with a letter, has no `__` and does not end with
/// `_` (DMS refuses a leading digit, `--` and a trailing `-`).
pub fn check_slot_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("only lower-case letters, digits and _ are allowed");
    }
    if name.len() > MAX_SLOT_NAME_BYTES {
        return Err("longer than 62 bytes");
    }
    if name.contains("pgl_") {
        return Err("contains pgl_, which pglogical reserves");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a letter (DMS task identifiers do)");
    }
    if name.contains("__") || name.ends_with('_') {
        return Err("no __ and no trailing _ (DMS task identifiers spell _ as -)");
    }
    Ok(())
}

/// Whether `table` is a candidate for a plan at all: partitioned parents hold
/// no rows (their leaves are planned) and unlogged tables are invisible to a
/// standby and to logical decoding.
pub fn is_plannable(table: &TableInfo) -> bool {
    table.kind != TableKind::PartitionedParent && !table.unlogged
}

impl Plan {
    /// A plan of these slots, without filters or deferred indexes (a plan
    /// written by hand or by another tool; [`Plan::validate`]-style checks
    /// still apply where it is used).
    pub fn from_slots(slots: Vec<SlotGroup>) -> Plan {
        Plan {
            slots,
            ..Plan::default()
        }
    }

    /// Plans `tables` over at most `slots` slots with the rules of
    /// [`planner`], keeping only what `filters` select (partitioned parents
    /// and unlogged tables are never planned). Deterministic for the same
    /// input.
    pub fn build(
        tables: &[TableInfo],
        rates: &WriteRates,
        slots: usize,
        filters: &Filters,
    ) -> Result<Plan, PlanError> {
        planner::build(tables, rates, slots, filters)
    }

    /// Checks a plan (typically edited by hand) against the live catalog:
    /// [`Plan::validate`], valid slot names, no unknown, excluded, partitioned
    /// parent or unlogged table, and every table its filters select in
    /// exactly one slot.
    pub fn validate_against(&self, tables: &[TableInfo]) -> Result<(), PlanError> {
        self.validate()?;
        for group in &self.slots {
            check_slot_name(&group.slot).map_err(|reason| PlanError::InvalidSlotName {
                slot: group.slot.clone(),
                reason,
            })?;
        }
        let by_name: BTreeMap<&QualifiedTable, &TableInfo> =
            tables.iter().map(|t| (&t.table, t)).collect();
        let keep = self.filters.keeper(tables);
        for (group, planned) in self.tables() {
            let unplannable = |reason| PlanError::UnplannableTable {
                table: planned.table.clone(),
                slot: group.slot.clone(),
                reason,
            };
            let Some(info) = by_name.get(&planned.table) else {
                return Err(PlanError::UnknownTable {
                    table: planned.table.clone(),
                    slot: group.slot.clone(),
                });
            };
            if info.kind == TableKind::PartitionedParent {
                return Err(unplannable(
                    "a partitioned table holds no rows; plan its partitions",
                ));
            }
            if info.unlogged {
                return Err(unplannable(
                    "unlogged: neither the replica nor logical decoding sees its rows",
                ));
            }
            if !keep(info) {
                return Err(unplannable("the plan's filters exclude it"));
            }
        }
        let planned: BTreeSet<&QualifiedTable> = self.tables().map(|(_, t)| &t.table).collect();
        let missing: Vec<QualifiedTable> = tables
            .iter()
            .filter(|t| is_plannable(t) && keep(t))
            .filter(|t| !planned.contains(&t.table))
            .map(|t| t.table.clone())
            .collect();
        if !missing.is_empty() {
            return Err(PlanError::MissingTables(missing));
        }
        Ok(())
    }

    /// This plan with its table facts, identity flags and deferred indexes
    /// refreshed from the catalog; the grouping is kept as it is. Tables
    /// the catalog lacks keep their old facts.
    pub fn refreshed(&self, tables: &[TableInfo], rates: &WriteRates) -> Plan {
        let by_name: BTreeMap<&QualifiedTable, &TableInfo> =
            tables.iter().map(|t| (&t.table, t)).collect();
        let mut plan = self.clone();
        for group in &mut plan.slots {
            for planned in &mut group.tables {
                if let Some(info) = by_name.get(&planned.table) {
                    *planned = PlannedTable::of(info, rates);
                }
            }
        }
        plan.deferred = deferred_indexes(
            plan.tables()
                .filter_map(|(_, t)| by_name.get(&t.table).copied()),
        );
        plan
    }

    /// Checks that no table and no slot name is planned twice.
    pub fn validate(&self) -> Result<(), PlanError> {
        let mut slots = BTreeSet::new();
        let mut seen: Vec<(&QualifiedTable, &str)> = Vec::new();
        for group in &self.slots {
            if !slots.insert(group.slot.as_str()) {
                return Err(PlanError::DuplicateSlot(group.slot.clone()));
            }
            for t in &group.tables {
                if let Some((_, first)) = seen.iter().find(|(seen, _)| **seen == t.table) {
                    return Err(PlanError::DuplicateTable {
                        table: t.table.clone(),
                        first: (*first).to_owned(),
                        second: group.slot.clone(),
                    });
                }
                seen.push((&t.table, &group.slot));
            }
        }
        if self.slots.is_empty() {
            return Err(PlanError::NoSlots);
        }
        Ok(())
    }

    /// Every planned table, slot by slot.
    pub fn tables(&self) -> impl Iterator<Item = (&SlotGroup, &PlannedTable)> {
        self.slots
            .iter()
            .flat_map(|g| g.tables.iter().map(move |t| (g, t)))
    }

    /// The group of the slot named `slot`.
    pub fn slot(&self, slot: &str) -> Option<&SlotGroup> {
        self.slots.iter().find(|g| g.slot == slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ReplicaIdentity;

    fn table(name: &str, bytes: i64, pk: bool, kind: TableKind) -> TableInfo {
        TableInfo {
            oid: 0,
            table: QualifiedTable::new("public", name),
            kind,
            parent: None,
            table_bytes: bytes,
            total_bytes: bytes,
            estimated_rows: None,
            primary_key: if pk { vec!["id".into()] } else { vec![] },
            unique_indexes: vec![],
            replica_identity: ReplicaIdentity::Default,
            unlogged: false,
            columns: vec![],
            dropped_columns: 0,
        }
    }

    #[test]
    fn plans_every_table_once_and_skips_parents() {
        let tables = vec![
            table("a", 100, true, TableKind::Table),
            table("b", 900, true, TableKind::Table),
            table("c", 500, false, TableKind::Table),
            table("d", 450, true, TableKind::PartitionLeaf),
            table("p", 0, true, TableKind::PartitionedParent),
        ];
        let build = |tables: &[TableInfo]| {
            Plan::build(tables, &WriteRates::new(), 2, &Filters::default()).unwrap()
        };
        let plan = build(&tables);
        plan.validate().unwrap();
        let mut names: Vec<&str> = plan.tables().map(|(_, t)| t.table.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let mut reversed = tables.clone();
        reversed.reverse();
        assert_eq!(plan, build(&reversed), "deterministic");
        let (group, c) = plan.tables().find(|(_, t)| t.table.name == "c").unwrap();
        assert!(!c.has_identity_index);
        assert_eq!(group.role, SlotRole::NoPrimaryKey);
    }

    #[test]
    fn never_more_slots_than_tables_and_never_zero() {
        let tables = vec![table("a", 1, true, TableKind::Table)];
        let build = |tables: &[TableInfo], n| {
            Plan::build(tables, &WriteRates::new(), n, &Filters::default())
        };
        assert_eq!(build(&tables, 6).unwrap().slots.len(), 1);
        assert_eq!(build(&[], 6).unwrap().slots.len(), 1);
        assert_eq!(build(&tables, 0), Err(PlanError::NoSlots));
    }

    #[test]
    fn slot_names_valid_for_postgres_pglogical_and_dms() {
        for ok in ["dms_slot_01", "a", "slot9", &"s".repeat(62)] {
            assert_eq!(check_slot_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Dms_slot",
            "dms-slot",
            "my slot",
            "x_pgl_y",
            "1slot",
            "_slot",
            "a__b",
            "slot_",
            &"s".repeat(63),
        ] {
            assert!(check_slot_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validation_finds_duplicates() {
        let t = PlannedTable {
            table: QualifiedTable::new("public", "x"),
            has_identity_index: true,
            bytes: 1,
            facts: TableFacts::default(),
        };
        let plan = Plan {
            slots: vec![
                SlotGroup {
                    slot: "dms_slot_01".into(),
                    tables: vec![t.clone()],
                    role: SlotRole::Unspecified,
                },
                SlotGroup {
                    slot: "dms_slot_02".into(),
                    tables: vec![t],
                    role: SlotRole::Unspecified,
                },
            ],
            ..Plan::default()
        };
        assert_eq!(
            plan.validate().unwrap_err().to_string(),
            "table public.x is planned in both dms_slot_01 and dms_slot_02"
        );
    }

    // -----------------------------------------------------------------
    // Fuzzing (issue 9, item 8): the plan as read back from a file or the
    // target's state (serde, any format), then validated. Never a panic;
    // a refused plan names what is wrong.

    use proptest::prelude::*;

    fn catalog_table() -> impl Strategy<Value = TableInfo> {
        (
            prop_oneof![Just("public"), Just("Sales"), Just("a b"), Just("é\"x")],
            "[a-c]{1,2}|[a-zA-Z0-9 _.\"*?-]{1,8}",
            prop_oneof![
                Just(TableKind::Table),
                Just(TableKind::PartitionLeaf),
                Just(TableKind::PartitionedParent)
            ],
            any::<bool>(),
            any::<bool>(),
            any::<i64>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(schema, name, kind, pk, unlogged, bytes, rows)| {
                let mut t = table(&name, bytes, pk, kind);
                t.table = QualifiedTable::new(schema, name);
                t.unlogged = unlogged;
                t.estimated_rows = rows;
                t
            })
    }

    /// A catalog without two tables of the same name.
    fn catalog() -> impl Strategy<Value = Vec<TableInfo>> {
        proptest::collection::vec(catalog_table(), 0..12).prop_map(|mut v| {
            let mut seen = BTreeSet::new();
            v.retain(|t| seen.insert(t.table.clone()));
            v
        })
    }

    fn filters() -> impl Strategy<Value = Filters> {
        let pattern = proptest::sample::select(vec![
            "public.*",
            "Sales.*",
            "\"Sales\".*",
            "*.a",
            "*.?b",
            "a",
            "\"a b\".*",
            "*.*",
        ]);
        (
            proptest::collection::vec(pattern.clone(), 0..2),
            proptest::collection::vec(pattern, 0..2),
        )
            .prop_map(|(i, e)| {
                let parse = |v: Vec<&str>| v.into_iter().map(|p| p.parse().unwrap()).collect();
                Filters {
                    include: parse(i),
                    exclude: parse(e),
                }
            })
    }

    /// Text edits of a serialized plan: cut, insert, replace.
    fn text_edit() -> impl Strategy<Value = (proptest::sample::Index, usize, String)> {
        (
            any::<proptest::sample::Index>(),
            0_usize..8,
            "[^\\\\]{0,4}|[\\[\\]{}\",:0-9a-z_.]{1,4}|\"(slots|tables|table|slot|bytes|filters|deferred|include|exclude|role)\"",
        )
    }

    fn floor(s: &str, at: usize) -> usize {
        let mut at = at.min(s.len());
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// A plan read back: validating it never panics, and an error is one
    /// of the typed kinds with a message.
    fn check_read_plan(plan: &Plan, tables: &[TableInfo]) {
        match plan.validate_against(tables) {
            Ok(()) => {
                // Then every table the filters keep is planned exactly once.
                let keep = plan.filters.keeper(tables);
                let planned: Vec<&QualifiedTable> = plan.tables().map(|(_, t)| &t.table).collect();
                for t in tables.iter().filter(|t| is_plannable(t) && keep(t)) {
                    assert_eq!(
                        planned.iter().filter(|p| ***p == t.table).count(),
                        1,
                        "{}",
                        t.table
                    );
                }
                let _ = plan.refreshed(tables, &WriteRates::new());
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        for group in &plan.slots {
            let _ = group.totals();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// A plan the planner builds is valid against its catalog, and
        /// survives the trip through JSON.
        #[test]
        fn fuzz_built_plans_validate_and_round_trip(tables in catalog(), slots in 0_usize..8, filters in filters()) {
            match Plan::build(&tables, &WriteRates::new(), slots, &filters) {
                Ok(plan) => {
                    prop_assert_eq!(plan.validate_against(&tables), Ok(()));
                    let json = serde_json::to_string(&plan).unwrap();
                    prop_assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
                }
                Err(e) => prop_assert_eq!(e, PlanError::NoSlots),
            }
        }

        /// A serialized plan with its text damaged: reading it fails with a
        /// message or gives a plan whose validation does not panic.
        #[test]
        fn fuzz_mutated_plan_text(
            tables in catalog(),
            slots in 1_usize..5,
            filters in filters(),
            edits in proptest::collection::vec(text_edit(), 1..4),
            pretty in any::<bool>(),
        ) {
            let plan = Plan::build(&tables, &WriteRates::new(), slots, &filters).unwrap();
            let mut text = if pretty {
                serde_json::to_string_pretty(&plan).unwrap()
            } else {
                serde_json::to_string(&plan).unwrap()
            };
            for (at, len, insert) in &edits {
                let start = floor(&text, at.index(text.len() + 1));
                let end = floor(&text, start + len).max(start);
                text.replace_range(start..end, insert);
            }
            match serde_json::from_str::<Plan>(&text) {
                Ok(read) => check_read_plan(&read, &tables),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// Arbitrary text and arbitrary JSON-ish text never panic the reader.
        #[test]
        fn fuzz_arbitrary_plan_text(
            s in any::<String>(),
            j in "[\\[\\]{}\",:0-9a-z_. ]{0,60}",
        ) {
            let _ = serde_json::from_str::<Plan>(&s);
            if let Ok(plan) = serde_json::from_str::<Plan>(&format!("{{\"slots\":{j}}}")) {
                check_read_plan(&plan, &[]);
            }
            let _ = serde_json::from_value::<QualifiedTable>(serde_json::Value::String(s.clone()));
            let _ = serde_json::from_value::<TablePattern>(serde_json::Value::String(s));
        }

        /// Hand edits of a valid plan: each refusal names its culprit.
        #[test]
        fn fuzz_edited_plans_name_the_problem(
            tables in catalog(),
            slots in 1_usize..5,
            edit in 0_u8..6,
            pick in any::<proptest::sample::Index>(),
            bad_name in "[A-Z -]{1,4}|[a-z]{1,3}__[a-z]|pgl_[a-z]{1,3}|[0-9][a-z]{0,3}|[a-z]{63,70}",
            unknown in "zz[a-z]{1,5}",
        ) {
            let plan = Plan::build(&tables, &WriteRates::new(), slots, &Filters::default()).unwrap();
            let planned: Vec<(usize, usize)> = plan
                .slots
                .iter()
                .enumerate()
                .flat_map(|(g, group)| (0..group.tables.len()).map(move |t| (g, t)))
                .collect();
            let mut edited = plan.clone();
            let shown = match edit {
                // A table planned twice.
                0 if !planned.is_empty() => {
                    let (g, t) = *pick.get(&planned);
                    let copy = edited.slots[g].tables[t].clone();
                    let other = (g + 1) % edited.slots.len();
                    edited.slots[other].tables.push(copy.clone());
                    copy.table.to_string()
                }
                // A table removed: it is missing.
                1 if !planned.is_empty() => {
                    let (g, t) = *pick.get(&planned);
                    edited.slots[g].tables.remove(t).table.to_string()
                }
                // A slot renamed to something PostgreSQL, pglogical or DMS refuses.
                2 => {
                    let g = pick.index(edited.slots.len());
                    edited.slots[g].slot = bad_name.clone();
                    format!("{bad_name:?}")
                }
                // A table the source does not have.
                3 => {
                    let g = pick.index(edited.slots.len());
                    let t = QualifiedTable::new("public", unknown.clone());
                    edited.slots[g].tables.push(PlannedTable {
                        table: t.clone(),
                        has_identity_index: true,
                        bytes: 0,
                        facts: TableFacts::default(),
                    });
                    t.to_string()
                }
                // A slot name used twice.
                4 if edited.slots.len() > 1 => {
                    let name = edited.slots[0].slot.clone();
                    edited.slots[1].slot = name.clone();
                    name
                }
                // No slot at all.
                _ => {
                    edited.slots.clear();
                    "at least one slot".to_owned()
                }
            };
            let err = edited.validate_against(&tables);
            match err {
                Ok(()) => prop_assert!(false, "edit {} accepted: {:?}", edit, edited),
                Err(e) => prop_assert!(
                    e.to_string().contains(&shown),
                    "edit {}: {:?} does not name {:?}",
                    edit,
                    e.to_string(),
                    shown
                ),
            }
        }
    }
}
