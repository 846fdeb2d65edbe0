//! The migration's include/exclude filters applied to the schema dump: every
//! user table the filters reject becomes one `pg_dump --exclude-table`
//! pattern that matches exactly that table.

use std::collections::BTreeSet;

use pgmig_core::QualifiedTable;
use pgmig_core::catalog::TableInfo;
use pgmig_core::plan::Filters;

/// The tables of `tables` to leave out of the dump, sorted: those the
/// filters reject, by the rule every step uses ([`Filters::keeper`]): a
/// partition follows its root partitioned table, so a table is dumped with
/// all of its partitions or not at all.
pub fn excluded_tables(tables: &[TableInfo], filters: &Filters) -> Vec<QualifiedTable> {
    let keep = filters.keeper(tables);
    let excluded: BTreeSet<QualifiedTable> = tables
        .iter()
        .filter(|t| !keep(t))
        .map(|t| t.table.clone())
        .collect();
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
