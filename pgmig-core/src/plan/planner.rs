//! The planner: how tables are grouped into slots.
//!
//! The rules of the runbook, in order:
//!
//! 1. tables without a replica-identity index (no primary key) share one
//!    slot: only their INSERTs and TRUNCATEs replicate;
//! 2. tables with a primary key and other unique indexes share one slot:
//!    those indexes are deferred to after the load;
//! 3. of the rest, the largest and busiest tables — weight = size × write
//!    rate — get a slot each while one table outweighs a fair share of the
//!    slots left;
//! 4. the remaining tables are packed, heaviest first, into the lightest of
//!    the slots left.
//!
//! Never more slots than groups of tables; the same input gives the same
//! plan.

use super::{
    Filters, Plan, PlanError, PlannedTable, SlotGroup, SlotRole, WriteRates, default_slot_name,
    deferred_indexes, is_plannable,
};
use crate::catalog::TableInfo;

/// A table's weight: (bytes + 1) × (writes + 1), so an idle table still
/// counts by its size and an empty busy one by its writes.
pub fn weight(table: &TableInfo, rates: &WriteRates) -> u128 {
    let bytes = table.table_bytes.max(0) as u128;
    let writes = rates.get(&table.table).copied().unwrap_or(0).max(0) as u128;
    (bytes + 1) * (writes + 1)
}

/// See [`Plan::build`].
pub(super) fn build(
    tables: &[TableInfo],
    rates: &WriteRates,
    slots: usize,
    filters: &Filters,
) -> Result<Plan, PlanError> {
    if slots == 0 {
        return Err(PlanError::NoSlots);
    }
    let keep = filters.keeper(tables);
    let mut candidates: Vec<&TableInfo> = tables
        .iter()
        .filter(|t| is_plannable(t) && keep(t))
        .collect();
    candidates.sort_by(|a, b| a.table.cmp(&b.table));
    let deferred = deferred_indexes(candidates.iter().copied());

    let (mut pk_unique, mut no_pk, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for t in &candidates {
        if !t.has_identity_index() {
            no_pk.push(*t);
        } else if t.has_primary_key() && !t.unique_indexes.is_empty() {
            pk_unique.push(*t);
        } else {
            rest.push(*t);
        }
    }
    // Heaviest first, ties by name (candidates are name-sorted, the sort is stable).
    rest.sort_by_key(|t| std::cmp::Reverse(weight(t, rates)));

    let mut special: Vec<(SlotRole, Vec<&TableInfo>)> = [
        (SlotRole::PrimaryKeyAndUnique, pk_unique),
        (SlotRole::NoPrimaryKey, no_pk),
    ]
    .into_iter()
    .filter(|(_, t)| !t.is_empty())
    .collect();

    let mut groups: Vec<(SlotRole, Vec<&TableInfo>)> = Vec::new();
    if candidates.is_empty() {
        groups.push((SlotRole::Unspecified, Vec::new()));
    } else if slots == 1 {
        groups.push((SlotRole::Packed, candidates.clone()));
    } else if slots <= special.len() {
        // Two slots, both special groups present: the rest joins the lighter.
        for t in rest {
            let load = |g: &Vec<&TableInfo>| g.iter().map(|t| weight(t, rates)).sum::<u128>();
            let i = (0..special.len())
                .min_by_key(|i| (load(&special[*i].1), *i))
                .unwrap_or(0);
            special[i].0 = SlotRole::Packed;
            special[i].1.push(t);
        }
        groups.extend(special);
    } else {
        let mut left = (slots - special.len()).min(rest.len());
        let mut remaining: u128 = rest.iter().map(|t| weight(t, rates)).sum();
        let mut rest = rest.into_iter().peekable();
        while left > 1 {
            let Some(next) = rest.peek() else { break };
            let w = weight(next, rates);
            if w.saturating_mul(left as u128) < remaining {
                break;
            }
            groups.push((SlotRole::Dedicated, vec![*next]));
            remaining -= w;
            left -= 1;
            rest.next();
        }
        let rest: Vec<&TableInfo> = rest.collect();
        let bins = left.min(rest.len());
        let mut packed: Vec<(u128, Vec<&TableInfo>)> = vec![(0, Vec::new()); bins];
        for t in rest {
            let i = (0..bins).min_by_key(|i| (packed[*i].0, *i)).unwrap_or(0);
            packed[i].0 += weight(t, rates);
            packed[i].1.push(t);
        }
        groups.extend(packed.into_iter().map(|(_, t)| (SlotRole::Packed, t)));
        groups.extend(special);
    }

    let slots = groups
        .into_iter()
        .enumerate()
        .map(|(i, (role, tables))| {
            let mut tables: Vec<PlannedTable> = tables
                .into_iter()
                .map(|t| PlannedTable::of(t, rates))
                .collect();
            tables.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.table.cmp(&b.table)));
            SlotGroup {
                slot: default_slot_name(i + 1),
                tables,
                role,
            }
        })
        .collect();
    Ok(Plan {
        slots,
        filters: filters.clone(),
        deferred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QualifiedTable;
    use crate::catalog::{ReplicaIdentity, TableKind, UniqueIndex};

    fn table(name: &str, bytes: i64, pk: bool, unique: &[&str]) -> TableInfo {
        TableInfo {
            oid: 0,
            table: QualifiedTable::new("public", name),
            kind: TableKind::Table,
            parent: None,
            table_bytes: bytes,
            total_bytes: bytes,
            estimated_rows: Some(bytes / 100),
            primary_key: if pk { vec!["id".into()] } else { vec![] },
            unique_indexes: unique
                .iter()
                .map(|n| UniqueIndex {
                    name: (*n).into(),
                    columns: vec!["x".into()],
                    is_constraint: true,
                    partial: false,
                })
                .collect(),
            replica_identity: ReplicaIdentity::Default,
            unlogged: false,
            columns: vec![],
            dropped_columns: 0,
        }
    }

    fn shape(plan: &Plan) -> Vec<(SlotRole, Vec<String>)> {
        plan.slots
            .iter()
            .map(|g| {
                (
                    g.role,
                    g.tables.iter().map(|t| t.table.name.clone()).collect(),
                )
            })
            .collect()
    }

    fn workload() -> Vec<TableInfo> {
        vec![
            table("events", 1_000_000, true, &[]),
            table("orders", 400_000, true, &[]),
            table("users", 50_000, true, &["users_email_key"]),
            table("audit", 80_000, false, &[]),
            table("a", 1_000, true, &[]),
            table("b", 2_000, true, &[]),
            table("c", 3_000, true, &[]),
        ]
    }

    #[test]
    fn rules_of_the_runbook() {
        let plan = Plan::build(&workload(), &WriteRates::new(), 6, &Filters::default()).unwrap();
        plan.validate().unwrap();
        assert_eq!(
            shape(&plan),
            vec![
                (SlotRole::Dedicated, vec!["events".into()]),
                (SlotRole::Dedicated, vec!["orders".into()]),
                (SlotRole::Packed, vec!["c".into()]),
                (SlotRole::Packed, vec!["b".into(), "a".into()]),
                (SlotRole::PrimaryKeyAndUnique, vec!["users".into()]),
                (SlotRole::NoPrimaryKey, vec!["audit".into()]),
            ]
        );
        assert_eq!(plan.slots[5].slot, "dms_slot_06");
        assert_eq!(plan.deferred.len(), 1);
        assert_eq!(plan.deferred[0].name, "users_email_key");
        assert!(plan.slots[5].tables[0].facts.no_primary_key);
        assert!(!plan.slots[5].tables[0].has_identity_index);
        let mut reversed = workload();
        reversed.reverse();
        assert_eq!(
            plan,
            Plan::build(&reversed, &WriteRates::new(), 6, &Filters::default()).unwrap(),
            "deterministic whatever the input order"
        );
    }

    #[test]
    fn busy_small_table_gets_its_own_slot() {
        let mut rates = WriteRates::new();
        rates.insert(QualifiedTable::new("public", "a"), 10_000_000);
        let plan = Plan::build(&workload(), &rates, 4, &Filters::default()).unwrap();
        assert_eq!(
            shape(&plan),
            vec![
                (SlotRole::Dedicated, vec!["a".into()]),
                (
                    SlotRole::Packed,
                    vec!["events".into(), "orders".into(), "c".into(), "b".into()]
                ),
                (SlotRole::PrimaryKeyAndUnique, vec!["users".into()]),
                (SlotRole::NoPrimaryKey, vec!["audit".into()]),
            ]
        );
        assert_eq!(plan.slots[0].tables[0].facts.write_rate, 10_000_000);
    }

    #[test]
    fn few_slots_and_few_tables() {
        let one = Plan::build(&workload(), &WriteRates::new(), 1, &Filters::default()).unwrap();
        assert_eq!(one.slots.len(), 1);
        assert_eq!(one.slots[0].tables.len(), 7);
        let two = Plan::build(&workload(), &WriteRates::new(), 2, &Filters::default()).unwrap();
        assert_eq!(two.slots.len(), 2);
        two.validate().unwrap();
        assert_eq!(two.tables().count(), 7);
        let small = vec![table("a", 1, true, &[]), table("b", 1, false, &[])];
        let plan = Plan::build(&small, &WriteRates::new(), 6, &Filters::default()).unwrap();
        assert_eq!(plan.slots.len(), 2, "never more slots than needed");
        let empty = Plan::build(&[], &WriteRates::new(), 6, &Filters::default()).unwrap();
        assert_eq!(empty.slots.len(), 1);
        assert_eq!(
            Plan::build(&small, &WriteRates::new(), 0, &Filters::default()),
            Err(PlanError::NoSlots)
        );
    }

    #[test]
    fn filters_and_unplannable_tables() {
        let mut tables = workload();
        let mut parent = table("parent", 0, true, &[]);
        parent.kind = TableKind::PartitionedParent;
        let mut scratch = table("scratch", 10, true, &[]);
        scratch.unlogged = true;
        tables.push(parent);
        tables.push(scratch);
        let filters = Filters {
            include: vec![],
            exclude: vec![
                "public.events".parse().unwrap(),
                "public.?".parse().unwrap(),
            ],
        };
        let plan = Plan::build(&tables, &WriteRates::new(), 6, &filters).unwrap();
        let names: Vec<String> = plan.tables().map(|(_, t)| t.table.name.clone()).collect();
        assert_eq!(names, vec!["orders", "users", "audit"]);
        plan.validate_against(&tables).unwrap();
    }

    #[test]
    fn edited_plans_are_checked_against_the_catalog() {
        let tables = workload();
        let plan = Plan::build(&tables, &WriteRates::new(), 6, &Filters::default()).unwrap();
        plan.validate_against(&tables).unwrap();

        let mut unknown = plan.clone();
        unknown.slots[0].tables[0].table = QualifiedTable::new("public", "gone");
        assert_eq!(
            unknown.validate_against(&tables).unwrap_err().to_string(),
            "table public.gone in slot dms_slot_01 does not exist in the source"
        );

        let mut missing = plan.clone();
        missing.slots[0].tables.clear();
        assert_eq!(
            missing.validate_against(&tables).unwrap_err().to_string(),
            "table is not in any slot: public.events"
        );

        let mut bad = plan.clone();
        bad.slots[0].slot = "pgl_x".into();
        assert!(matches!(
            bad.validate_against(&tables),
            Err(PlanError::InvalidSlotName { .. })
        ));
        bad.slots[0].slot = "Slot-1".into();
        assert!(matches!(
            bad.validate_against(&tables),
            Err(PlanError::InvalidSlotName { .. })
        ));

        let mut excluded = plan.clone();
        excluded
            .filters
            .exclude
            .push("public.events".parse().unwrap());
        assert!(matches!(
            excluded.validate_against(&tables),
            Err(PlanError::UnplannableTable { .. })
        ));
    }

    #[test]
    fn plans_round_trip_and_old_json_still_reads() {
        let plan = Plan::build(&workload(), &WriteRates::new(), 6, &Filters::default()).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        let old = r#"{"slots":[{"slot":"dms_slot_01","tables":[{"table":"public.x","has_identity_index":true,"bytes":8}]}]}"#;
        let old: Plan = serde_json::from_str(old).unwrap();
        assert_eq!(old.slots[0].tables[0].facts, Default::default());
        assert_eq!(old.slots[0].role, SlotRole::Unspecified);
    }
}
