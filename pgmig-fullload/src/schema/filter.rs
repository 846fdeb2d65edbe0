//! The migration's include/exclude filters applied to the schema dump: every
//! user table the filters reject becomes one `pg_dump --exclude-table`
//! pattern that matches exactly that table.

use std::collections::BTreeSet;

use pgmig_core::QualifiedTable;
use pgmig_core::catalog::{TableInfo, TableKind};
use pgmig_core::plan::Filters;

/// The tables of `tables` to leave out of the dump, sorted: those `filters`
/// reject, plus every partition (at any depth) of a rejected partitioned
/// parent — a partition cannot be restored without its parent
/// (`CREATE TABLE … PARTITION OF` names it). A rejected partition of a kept
/// parent is simply left out; the parent is restored without it.
pub fn excluded_tables(tables: &[TableInfo], filters: &Filters) -> Vec<QualifiedTable> {
    let mut excluded: BTreeSet<QualifiedTable> = tables
        .iter()
        .filter(|t| !filters.matches(&t.table))
        .map(|t| t.table.clone())
        .collect();
    let parents: BTreeSet<&QualifiedTable> = tables
        .iter()
        .filter(|t| t.kind == TableKind::PartitionedParent)
        .map(|t| &t.table)
        .collect();
    loop {
        let more: Vec<QualifiedTable> = tables
            .iter()
            .filter(|t| !excluded.contains(&t.table))
            .filter(|t| {
                t.parent
                    .as_ref()
                    .is_some_and(|p| parents.contains(p) && excluded.contains(p))
            })
            .map(|t| t.table.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        excluded.extend(more);
    }
    excluded.into_iter().collect()
}

/// A `pg_dump` table pattern matching exactly `table`: both parts in double
/// quotes (inside which `*`, `?` and `.` are literal), embedded double
/// quotes doubled.
pub fn dump_pattern(table: &QualifiedTable) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", quote(&table.schema), quote(&table.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_one_table() {
        assert_eq!(
            dump_pattern(&QualifiedTable::new("public", "users")),
            r#""public"."users""#
        );
        assert_eq!(
            dump_pattern(&QualifiedTable::new("Sa\"les", "a.b*?")),
            r#""Sa""les"."a.b*?""#
        );
    }
}
