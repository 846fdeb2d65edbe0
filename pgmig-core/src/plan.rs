//! The migration plan: which tables each replication slot carries.
//!
//! Every later step reads the same plan: setup creates one slot and its two
//! replication sets per [`SlotGroup`], the snapshot verifies them, the load
//! copies their tables and CDC (or DMS) follows them. This is the minimal
//! model; the planner of the plan issue refines how tables are grouped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{TableInfo, TableKind};
use crate::ident::QualifiedTable;

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
}

/// One logical slot and the tables it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotGroup {
    /// The slot's name, e.g. `dms_slot_01`; its sets are named after it.
    pub slot: String,
    /// Its tables, largest first.
    pub tables: Vec<PlannedTable>,
}

/// Slot groups covering every table to migrate, each table exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The slots, in name order.
    pub slots: Vec<SlotGroup>,
}

/// The conventional name of slot `n` (1-based): `dms_slot_01`, `dms_slot_02`…
pub fn default_slot_name(n: usize) -> String {
    format!("dms_slot_{n:02}")
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
}

impl Plan {
    /// A simple plan: `slots` slots (at least one, at most one per table)
    /// named [`default_slot_name`], tables dealt out largest first to the
    /// slot with the fewest bytes so far. Partitioned parents hold no rows
    /// and are left out: their leaves are planned. Unlogged tables are left
    /// out too: neither a standby nor logical decoding can see their rows
    /// (`pgmig check` lists them). Deterministic for the same input.
    pub fn balanced(tables: &[TableInfo], slots: usize) -> Result<Plan, PlanError> {
        if slots == 0 {
            return Err(PlanError::NoSlots);
        }
        let mut planned: Vec<PlannedTable> = tables
            .iter()
            .filter(|t| t.kind != TableKind::PartitionedParent && !t.unlogged)
            .map(|t| PlannedTable {
                table: t.table.clone(),
                has_identity_index: t.has_identity_index(),
                bytes: t.table_bytes,
            })
            .collect();
        planned.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.table.cmp(&b.table)));
        let count = slots.min(planned.len()).max(1);
        let mut groups: Vec<SlotGroup> = (1..=count)
            .map(|n| SlotGroup {
                slot: default_slot_name(n),
                tables: Vec::new(),
            })
            .collect();
        let mut load = vec![0i64; count];
        for table in planned {
            let (i, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(i, bytes)| (**bytes, *i))
                .unwrap_or((0, &0));
            load[i] += table.bytes.max(1);
            groups[i].tables.push(table);
        }
        Ok(Plan { slots: groups })
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
    fn balances_largest_first_and_skips_parents() {
        let tables = vec![
            table("a", 100, true, TableKind::Table),
            table("b", 900, true, TableKind::Table),
            table("c", 500, false, TableKind::Table),
            table("d", 450, true, TableKind::PartitionLeaf),
            table("p", 0, true, TableKind::PartitionedParent),
        ];
        let plan = Plan::balanced(&tables, 2).unwrap();
        plan.validate().unwrap();
        let shape: Vec<(String, Vec<String>)> = plan
            .slots
            .iter()
            .map(|g| {
                (
                    g.slot.clone(),
                    g.tables.iter().map(|t| t.table.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("dms_slot_01".into(), vec!["b".into(), "a".into()]),
                ("dms_slot_02".into(), vec!["c".into(), "d".into()]),
            ]
        );
        assert_eq!(plan, Plan::balanced(&tables, 2).unwrap(), "deterministic");
        assert!(!plan.slot("dms_slot_02").unwrap().tables[0].has_identity_index);
    }

    #[test]
    fn never_more_slots_than_tables_and_never_zero() {
        let tables = vec![table("a", 1, true, TableKind::Table)];
        assert_eq!(Plan::balanced(&tables, 6).unwrap().slots.len(), 1);
        assert_eq!(Plan::balanced(&[], 6).unwrap().slots.len(), 1);
        assert_eq!(Plan::balanced(&tables, 0), Err(PlanError::NoSlots));
    }

    #[test]
    fn validation_finds_duplicates() {
        let t = PlannedTable {
            table: QualifiedTable::new("public", "x"),
            has_identity_index: true,
            bytes: 1,
        };
        let plan = Plan {
            slots: vec![
                SlotGroup {
                    slot: "dms_slot_01".into(),
                    tables: vec![t.clone()],
                },
                SlotGroup {
                    slot: "dms_slot_02".into(),
                    tables: vec![t],
                },
            ],
        };
        assert_eq!(
            plan.validate().unwrap_err().to_string(),
            "table public.x is planned in both dms_slot_01 and dms_slot_02"
        );
    }
}
