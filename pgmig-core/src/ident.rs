//! SQL identifiers: one quoting helper for every name pgmig puts into SQL,
//! and [`QualifiedTable`], a schema-qualified relation name parsed once.
//!
//! Names that reach SQL are always quoted with [`quote_ident`] (a table
//! called `Order Items` or `user` is then just a table); values are always
//! bound as parameters. [`QualifiedTable`]'s `Display` quotes only where
//! PostgreSQL would need it, so messages read like `psql`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Quotes an identifier for SQL: wraps it in double quotes and doubles the
/// double quotes inside (`My "T"` → `"My ""T"""`). Always quotes, so the
/// name's case and spelling are kept exactly.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string as an SQL literal (`it's` → `'it''s'`), for the rare SQL
/// that cannot take parameters (utility statements, SQL printed for DBAs).
/// Backslashes are doubled and the `E''` form used when present, so the
/// result is right whatever `standard_conforming_strings` says.
pub fn quote_literal(value: &str) -> String {
    let escaped = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

/// Keywords that PostgreSQL does not accept unquoted as a table or schema
/// name (the "reserved" and "reserved (can be function or type)" kinds).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// Whether `name` must be quoted to be read back as itself.
pub fn needs_quoting(name: &str) -> bool {
    let mut chars = name.chars();
    let simple = match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        }
        _ => false,
    };
    !simple || RESERVED.binary_search(&name).is_ok()
}

/// Quotes `name` only where PostgreSQL needs it; for display, not for SQL.
pub fn display_ident(name: &str) -> String {
    if needs_quoting(name) {
        quote_ident(name)
    } else {
        name.to_owned()
    }
}

/// A schema-qualified table (or sequence, view…) name, as stored in the
/// catalog: exact case, no quotes.
///
/// `Display` and serde use the SQL spelling with minimal quoting
/// (`public.users`, `"Sales"."Order Items"`); [`QualifiedTable::quoted`] gives
/// the fully quoted form for SQL. `FromStr` reads SQL spelling: unquoted parts
/// fold to lower case, quoted parts are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedTable {
    /// The schema (namespace) name.
    pub schema: String,
    /// The relation name.
    pub name: String,
}

impl QualifiedTable {
    /// A name from its two catalog parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedTable {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The fully quoted form for SQL: `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for QualifiedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

/// Why a string is not a qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {input:?}: {reason}")]
pub struct ParseTableError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// One dotted part of a name in SQL spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePart {
    /// The part: as written inside double quotes, or folded to lower case
    /// (A–Z only, as PostgreSQL does) when unquoted.
    pub text: String,
    /// Whether it was written in double quotes.
    pub quoted: bool,
}

/// Splits a dotted name in SQL spelling (`schema.table`, either part quoted,
/// `""` inside quotes for a quote) into its parts. Unquoted parts fold A–Z
/// to lower case and may not hold quotes or spaces. The shared reader of
/// [`QualifiedTable`] and the plan's table patterns.
pub fn split_sql_name(input: &str) -> Result<Vec<NamePart>, &'static str> {
    let mut parts = Vec::new();
    let mut chars = input.trim().chars().peekable();
    loop {
        let mut text = String::new();
        let quoted = match chars.peek() {
            None => return Err("empty name"),
            Some('"') => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted identifier"),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            text.push('"');
                        }
                        Some('"') => break,
                        Some(c) => text.push(c),
                    }
                }
                if text.is_empty() {
                    return Err("empty quoted identifier");
                }
                true
            }
            Some(_) => {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if c == '"' || c.is_whitespace() {
                        return Err("unquoted name with a quote or a space; quote the whole part");
                    }
                    // PostgreSQL folds only A–Z in unquoted names.
                    text.push(c.to_ascii_lowercase());
                    chars.next();
                }
                if text.is_empty() {
                    return Err("empty name part");
                }
                false
            }
        };
        parts.push(NamePart { text, quoted });
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err("unexpected character after a quoted identifier"),
        }
    }
}

impl FromStr for QualifiedTable {
    type Err = ParseTableError;

    /// Reads `schema.table`, either part quoted; a bare `table` means schema
    /// `public`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseTableError {
            input: s.to_owned(),
            reason,
        };
        let mut parts: Vec<String> = split_sql_name(s)
            .map_err(fail)?
            .into_iter()
            .map(|p| p.text)
            .collect();
        match parts.len() {
            1 => Ok(QualifiedTable::new("public", parts.remove(0))),
            2 => {
                let name = parts.remove(1);
                Ok(QualifiedTable::new(parts.remove(0), name))
            }
            _ => Err(fail("more than two dotted parts; expected schema.table")),
        }
    }
}

impl Serialize for QualifiedTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QualifiedTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserved_list_is_sorted_for_binary_search() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn quoting() {
        let cases = [
            ("users", "\"users\"", "users"),
            ("Users", "\"Users\"", "\"Users\""),
            ("user", "\"user\"", "\"user\""),
            ("order items", "\"order items\"", "\"order items\""),
            ("a\"b", "\"a\"\"b\"", "\"a\"\"b\""),
            ("größe", "\"größe\"", "\"größe\""),
            ("_x1$", "\"_x1$\"", "_x1$"),
            ("1x", "\"1x\"", "\"1x\""),
            ("", "\"\"", "\"\""),
        ];
        for (name, sql, shown) in cases {
            assert_eq!(quote_ident(name), sql, "{name}");
            assert_eq!(display_ident(name), shown, "{name}");
        }
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }

    #[test]
    fn parses_sql_spelling() {
        let cases = [
            ("users", ("public", "users")),
            ("Bench.Events", ("bench", "events")),
            ("Ärger.Größe", ("Ärger", "größe")),
            ("\"Sales\".\"Order Items\"", ("Sales", "Order Items")),
            ("s.\"a\"\"b\"", ("s", "a\"b")),
            ("\"a.b\".c", ("a.b", "c")),
            ("  public.\"user\" ", ("public", "user")),
        ];
        for (input, (schema, name)) in cases {
            assert_eq!(
                input.parse::<QualifiedTable>(),
                Ok(QualifiedTable::new(schema, name)),
                "{input}"
            );
        }
        for bad in ["", "a.", ".a", "a.b.c", "\"a", "\"\".x", "a b", "\"a\"x"] {
            assert!(bad.parse::<QualifiedTable>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_and_quoted() {
        let t = QualifiedTable::new("Sales", "order");
        assert_eq!(t.to_string(), "\"Sales\".\"order\"");
        assert_eq!(t.quoted(), "\"Sales\".\"order\"");
        let t = QualifiedTable::new("bench", "events");
        assert_eq!(t.to_string(), "bench.events");
        assert_eq!(t.quoted(), "\"bench\".\"events\"");
    }

    proptest! {
        #[test]
        fn display_round_trips(schema in "\\PC{1,20}", name in "\\PC{1,20}") {
            let t = QualifiedTable::new(schema, name);
            prop_assert_eq!(t.to_string().parse::<QualifiedTable>(), Ok(t.clone()));
            prop_assert_eq!(t.quoted().parse::<QualifiedTable>(), Ok(t));
        }

        #[test]
        fn parser_never_panics(s in ".*") {
            let _ = s.parse::<QualifiedTable>();
        }
    }
}
