//! Include and exclude filters on schemas and tables, applied the same way
//! by every step: plan, schema, setup, load, verify, DMS.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::TableInfo;
use crate::ident::{QualifiedTable, split_sql_name};

/// One pattern over `schema.table` names.
///
/// Spelled like SQL: unquoted parts fold to lower case and may use `*` (any
/// run of characters) and `?` (one character); quoted parts (`"Sales"`) match
/// exactly, wildcards included. `sales.*` is every table of schema `sales`,
/// `*.audit_*` every table starting with `audit_` in any schema, a bare
/// `users` means `public.users`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TablePattern {
    text: String,
    schema: Part,
    name: Part,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Part {
    /// A quoted part: compared exactly.
    Exact(String),
    /// An unquoted part, lower-cased: `*` and `?` are wildcards.
    Glob(String),
}

impl Part {
    fn matches(&self, value: &str) -> bool {
        match self {
            Part::Exact(exact) => exact == value,
            Part::Glob(glob) => glob_matches(
                &glob.chars().collect::<Vec<_>>(),
                &value.chars().collect::<Vec<_>>(),
            ),
        }
    }
}

/// Iterative wildcard match (`*`, `?`) with single-star backtracking.
fn glob_matches(pattern: &[char], value: &[char]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, v));
            p += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Why a string is not a [`TablePattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table pattern {input:?}: {reason}")]
pub struct ParsePatternError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The parts of a pattern: quoted parts match exactly, unquoted ones are
/// globs (the same SQL spelling as [`QualifiedTable`]'s).
fn split_parts(input: &str) -> Result<Vec<Part>, &'static str> {
    Ok(split_sql_name(input)?
        .into_iter()
        .map(|p| {
            if p.quoted {
                Part::Exact(p.text)
            } else {
                Part::Glob(p.text)
            }
        })
        .collect())
}

impl FromStr for TablePattern {
    type Err = ParsePatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParsePatternError {
            input: s.to_owned(),
            reason,
        };
        let mut parts = split_parts(s).map_err(fail)?;
        let (schema, name) = match parts.len() {
            1 => (Part::Exact("public".into()), parts.remove(0)),
            2 => {
                let name = parts.remove(1);
                (parts.remove(0), name)
            }
            _ => return Err(fail("more than two dotted parts; expected schema.table")),
        };
        Ok(TablePattern {
            text: s.trim().to_owned(),
            schema,
            name,
        })
    }
}

impl TablePattern {
    /// Whether `table` matches.
    pub fn matches(&self, table: &QualifiedTable) -> bool {
        self.schema.matches(&table.schema) && self.name.matches(&table.name)
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for TablePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TablePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which tables the migration covers: those matching any `include` pattern
/// (every table when there is none) and no `exclude` pattern.
///
/// Default: everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Tables to migrate; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<TablePattern>,
    /// Tables to leave out, even when included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<TablePattern>,
}

impl Filters {
    /// Whether `table` is migrated. The one rule every step uses.
    pub fn matches(&self, table: &QualifiedTable) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(table)))
            && !self.exclude.iter().any(|p| p.matches(table))
    }

    /// The rule for catalog tables: like [`Filters::matches`], except that a
    /// partition follows its root partitioned table — the filters name the
    /// tables people see, and a partition cannot be restored or loaded
    /// without its parent (nor its parent be complete without it).
    pub fn keeper<'a>(&'a self, all: &'a [TableInfo]) -> impl Fn(&TableInfo) -> bool + 'a {
        let by_name: HashMap<&QualifiedTable, &TableInfo> =
            all.iter().map(|t| (&t.table, t)).collect();
        move |table: &TableInfo| {
            let mut root = table;
            // Partition trees are shallow; the bound guards a corrupt catalog.
            for _ in 0..64 {
                match root.parent.as_ref().and_then(|p| by_name.get(p)) {
                    Some(parent) => root = parent,
                    None => break,
                }
            }
            self.matches(&root.table)
        }
    }

    /// Whether the filters select everything.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// These filters with more patterns added.
    pub fn extended(
        mut self,
        include: impl IntoIterator<Item = TablePattern>,
        exclude: impl IntoIterator<Item = TablePattern>,
    ) -> Filters {
        for p in include {
            if !self.include.contains(&p) {
                self.include.push(p);
            }
        }
        for p in exclude {
            if !self.exclude.contains(&p) {
                self.exclude.push(p);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(schema: &str, name: &str) -> QualifiedTable {
        QualifiedTable::new(schema, name)
    }

    fn info(schema: &str, name: &str, parent: Option<QualifiedTable>) -> TableInfo {
        use crate::catalog::{ReplicaIdentity, TableKind};
        TableInfo {
            oid: 0,
            table: t(schema, name),
            kind: if parent.is_some() {
                TableKind::PartitionLeaf
            } else {
                TableKind::PartitionedParent
            },
            parent,
            table_bytes: 0,
            total_bytes: 0,
            estimated_rows: None,
            primary_key: vec![],
            unique_indexes: vec![],
            replica_identity: ReplicaIdentity::Default,
            unlogged: false,
            columns: vec![],
            dropped_columns: 0,
        }
    }

    #[test]
    fn partitions_follow_their_root_table() {
        let all = vec![
            info("app", "events", None),
            info("app", "events_2024", Some(t("app", "events"))),
            info("archive", "events_2024_q1", Some(t("app", "events_2024"))),
        ];
        let pat = |s: &str| s.parse::<TablePattern>().unwrap();
        let cases: &[(Filters, bool)] = &[
            (Filters::default(), true),
            (Filters::default().extended([], [pat("app.events")]), false),
            (Filters::default().extended([pat("app.events")], []), true),
            // Naming only a partition decides nothing: its root table does.
            (Filters::default().extended([], [pat("archive.*")]), true),
            (Filters::default().extended([pat("archive.*")], []), false),
        ];
        for (filters, kept) in cases {
            let keep = filters.keeper(&all);
            for table in &all {
                assert_eq!(keep(table), *kept, "{filters:?} on {}", table.table);
            }
        }
    }

    #[test]
    fn patterns_match_like_sql_names() {
        let cases: &[(&str, QualifiedTable, bool)] = &[
            ("bench.*", t("bench", "events"), true),
            ("bench.*", t("public", "events"), false),
            ("*.audit_*", t("x", "audit_log"), true),
            ("*.audit_*", t("x", "audit"), false),
            ("users", t("public", "users"), true),
            ("users", t("bench", "users"), false),
            ("USERS", t("public", "users"), true),
            ("\"Sales\".\"Order Items\"", t("Sales", "Order Items"), true),
            ("\"Sales\".*", t("sales", "x"), false),
            ("sales.*", t("Sales", "x"), false),
            ("public.\"select\"", t("public", "select"), true),
            ("public.ev?nts", t("public", "events"), true),
            ("public.e*s*s", t("public", "eventss"), true),
            ("public.e*s*s", t("public", "events"), false),
            ("public.e*t*s", t("public", "events"), true),
            ("public.e*x", t("public", "events"), false),
            ("\"a*\".b", t("a*", "b"), true),
            ("\"a*\".b", t("ab", "b"), false),
        ];
        for (pattern, table, want) in cases {
            let p: TablePattern = pattern.parse().unwrap();
            assert_eq!(p.matches(table), *want, "{pattern} vs {table}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a.b.c", "\"x", "a..b", "my table"] {
            assert!(bad.parse::<TablePattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn include_then_exclude() {
        let f = Filters::default();
        assert!(f.matches(&t("a", "b")));
        let f = Filters {
            include: vec!["bench.*".parse().unwrap()],
            exclude: vec!["bench.audit_log".parse().unwrap()],
        };
        assert!(f.matches(&t("bench", "events")));
        assert!(!f.matches(&t("bench", "audit_log")));
        assert!(!f.matches(&t("public", "x")));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"include":["bench.*"],"exclude":["bench.audit_log"]}"#
        );
        assert_eq!(serde_json::from_str::<Filters>(&json).unwrap(), f);
    }
}
