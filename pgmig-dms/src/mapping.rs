//! Table mappings (the task's `TableMappings` JSON): one selection rule per
//! table of a slot, names escaped so that each rule selects that table and
//! no other.
//!
//! In DMS names `%` matches any run of characters, `_` any one character and
//! `[…]` a set of characters; `[_]` is a literal underscore. A rule for
//! `public.order_items` written as is would also select `public.orderXitems`,
//! which another slot may carry — its changes would then be applied twice.

use pgmig_core::QualifiedTable;
use serde::Serialize;

/// How each table's selection rule is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionStyle {
    /// `rule-action: include` with the names escaped ([`escape_name`]), so the
    /// pattern matches exactly one table. The wildcard rules are documented
    /// for `include`, which makes this the default.
    #[default]
    Include,
    /// `rule-action: explicit` with the names exactly as in the catalog: the
    /// DMS guide says an explicit rule selects one table by its exact name,
    /// without wildcards.
    Explicit,
}

/// A table mapping document: `{"rules": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableMappings {
    /// The rules, in order.
    pub rules: Vec<SelectionRule>,
}

/// A selection rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SelectionRule {
    /// Always `selection`.
    pub rule_type: &'static str,
    /// A unique number, as a string.
    pub rule_id: String,
    /// A unique name.
    pub rule_name: String,
    /// Which schema and table.
    pub object_locator: ObjectLocator,
    /// `include` or `explicit`.
    pub rule_action: RuleAction,
}

/// The `object-locator` of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectLocator {
    /// The schema name or pattern.
    pub schema_name: String,
    /// The table name or pattern.
    pub table_name: String,
    /// Always `table`: views are not replicated by CDC.
    pub table_type: &'static str,
}

/// A selection rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Selects the tables the pattern matches.
    Include,
    /// Selects the one table named exactly.
    Explicit,
}

/// Escapes a catalog name for a DMS pattern, so that it matches only
/// itself: `_` becomes `[_]`, `%` becomes `[%]` and `[` becomes `[[]`.
///
/// Everything else is kept as it is: DMS names are case-sensitive and
/// unquoted (`Order Items`, not `"Order Items"`), and any Unicode is
/// written as is (JSON escapes what needs escaping).
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '_' | '%' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

impl TableMappings {
    /// One selection rule per table, numbered from 1 in the given order.
    pub fn for_tables<'a>(
        tables: impl IntoIterator<Item = &'a QualifiedTable>,
        style: SelectionStyle,
    ) -> TableMappings {
        let rules = tables
            .into_iter()
            .enumerate()
            .map(|(i, table)| {
                let n = i + 1;
                let (schema_name, table_name, rule_action) = match style {
                    SelectionStyle::Include => (
                        escape_name(&table.schema),
                        escape_name(&table.name),
                        RuleAction::Include,
                    ),
                    SelectionStyle::Explicit => (
                        table.schema.clone(),
                        table.name.clone(),
                        RuleAction::Explicit,
                    ),
                };
                SelectionRule {
                    rule_type: "selection",
                    rule_id: n.to_string(),
                    rule_name: format!("table-{n}"),
                    object_locator: ObjectLocator {
                        schema_name,
                        table_name,
                        table_type: "table",
                    },
                    rule_action,
                }
            })
            .collect();
        TableMappings { rules }
    }

    /// The document as the compact JSON string the API takes.
    pub fn to_json(&self) -> String {
        // A struct of strings: serializing it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_wildcards_and_keeps_everything_else() {
        let cases = [
            ("order_items", "order[_]items"),
            ("_", "[_]"),
            ("100%", "100[%]"),
            ("a[b]", "a[[]b]"),
            ("Order Items", "Order Items"),
            ("Select", "Select"),
            ("say \"hi\"", "say \"hi\""),
            ("it's", "it's"),
            ("données_été", "données[_]été"),
            ("表_1", "表[_]1"),
            ("", ""),
        ];
        for (name, escaped) in cases {
            assert_eq!(escape_name(name), escaped, "{name:?}");
        }
    }

    /// The DMS matcher as documented: `%`, `_`, `[set]`, `[a-d]`.
    fn dms_matches(pattern: &str, name: &str) -> bool {
        fn go(p: &[char], n: &[char]) -> bool {
            match p.first() {
                None => n.is_empty(),
                Some('%') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
                Some('_') => !n.is_empty() && go(&p[1..], &n[1..]),
                Some('[') => {
                    let Some(end) = p.iter().skip(2).position(|&c| c == ']').map(|e| e + 2) else {
                        return !n.is_empty() && n[0] == '[' && go(&p[1..], &n[1..]);
                    };
                    let set = &p[1..end];
                    let Some(&c) = n.first() else { return false };
                    let hit = if set.len() == 3 && set[1] == '-' {
                        set[0] <= c && c <= set[2]
                    } else {
                        set.contains(&c)
                    };
                    hit && go(&p[end + 1..], &n[1..])
                }
                Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
            }
        }
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        go(&p, &n)
    }

    #[test]
    fn an_escaped_name_matches_itself_only() {
        let names = [
            "order_items",
            "orderXitems",
            "order%items",
            "order[x]items",
            "orderx]items",
            "a_b_c",
            "aXbYc",
            "Order_Items",
            "x",
        ];
        for name in names {
            let pattern = escape_name(name);
            for other in names {
                assert_eq!(
                    dms_matches(&pattern, other),
                    name == other,
                    "{pattern:?} against {other:?}"
                );
            }
        }
        // Unescaped, `_` is a wildcard: the reason for escaping.
        assert!(dms_matches("order_items", "orderXitems"));
    }

    #[test]
    fn one_rule_per_table_with_unique_ids_and_names() {
        let tables = [
            QualifiedTable::new("public", "order_items"),
            QualifiedTable::new("Sales", "Order Items"),
        ];
        let m = TableMappings::for_tables(&tables, SelectionStyle::Include);
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"rules": [
                {"rule-type": "selection", "rule-id": "1", "rule-name": "table-1",
                 "object-locator": {"schema-name": "public", "table-name": "order[_]items", "table-type": "table"},
                 "rule-action": "include"},
                {"rule-type": "selection", "rule-id": "2", "rule-name": "table-2",
                 "object-locator": {"schema-name": "Sales", "table-name": "Order Items", "table-type": "table"},
                 "rule-action": "include"},
            ]})
        );
        let m = TableMappings::for_tables(&tables, SelectionStyle::Explicit);
        assert_eq!(m.rules[0].rule_action, RuleAction::Explicit);
        assert_eq!(m.rules[0].object_locator.table_name, "order_items");
    }
}
