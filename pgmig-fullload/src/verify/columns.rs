//! What verification reads of each column: an expression whose text output
//! is the same for equal values on every major version, and different for
//! different values.
//!
//! Most types print exactly and identically everywhere once the session is
//! pinned (see `session`). The exceptions are the types printed through the
//! float output routine: `float4`, `float8` and the geometric types. 12+
//! prints the shortest digits that read back exactly, 10–11 print
//! `extra_float_digits`-many; for equal values the texts differ
//! (`0.1` against `0.10000000000000001`). Those columns are compared by their
//! binary send form instead (`float8send(x)`, `point_send(x)`…, and
//! `array_send(x)` for arrays of them), which is the IEEE bytes on every
//! version: exact, `-0` distinct from `0`.
//!
//! Decisions documented here:
//! - `numeric` keeps its display scale: `1.0` and `1.00` are different data
//!   (a correct copy keeps the scale; pg_dump and COPY do);
//! - NULL prints as `\N`, which no value prints as (a value `\N` prints as
//!   `\\N`), so NULL never equals `''` or the text `\N`;
//! - domains are compared as their base type (one level), arrays of domains
//!   over floats and floats inside composite types compare as text and can
//!   report a false difference between 10–11 and 12+ (never a false
//!   equality);
//! - generated columns are not compared (the target computes them).

use std::collections::HashMap;

use pgmig_core::catalog::TableInfo;
use pgmig_core::quote_ident;
use tokio_postgres::Client;

use super::VerifyError;

/// Built-in types whose text output goes through the float output routine.
const FLOAT_OUTPUT_TYPES: &[&str] = &[
    "float4", "float8", "point", "lseg", "box", "path", "polygon", "line", "circle",
];

/// The integer types a key range can be taken on.
const INTEGER_TYPES: &[&str] = &["int2", "int4", "int8"];

/// The type facts of each live column of a table: base type (domains
/// resolved one level), its send function, the array element's base type.
const COLUMN_TYPES_SQL: &str = "SELECT a.attname::text, bt.typname::text, \
       bt.typnamespace = 'pg_catalog'::regnamespace, bt.typsend::text, bt.typcategory = 'A', \
       et.typname::text, COALESCE(et.typnamespace = 'pg_catalog'::regnamespace, false) \
     FROM pg_attribute a \
     JOIN pg_type t ON t.oid = a.atttypid \
     JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     LEFT JOIN pg_type et0 ON bt.typcategory = 'A' AND et0.oid = bt.typelem \
     LEFT JOIN pg_type et ON et.oid = CASE WHEN et0.typtype = 'd' THEN et0.typbasetype ELSE et0.oid END \
     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// One compared column on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// The column's name.
    pub name: String,
    /// The SQL expression read for it.
    pub expr: String,
    /// Whether it is `int2`, `int4` or `int8` (a domain over one counts).
    pub integer: bool,
}

/// The expression for a column of base type `base` (in `pg_catalog` when
/// `builtin`), sent by `send`, an array of `elem` when `array`.
fn column_expr(
    quoted: &str,
    (base, builtin, send): (&str, bool, &str),
    (array, elem, elem_builtin): (bool, Option<&str>, bool),
) -> String {
    if builtin && FLOAT_OUTPUT_TYPES.contains(&base) {
        format!("{send}({quoted})")
    } else if array && elem_builtin && elem.is_some_and(|e| FLOAT_OUTPUT_TYPES.contains(&e)) {
        format!("array_send({quoted})")
    } else {
        quoted.to_string()
    }
}

/// The compared columns of `info` on the server `client` is connected to:
/// its copy columns (live, not generated), in `attnum` order.
pub(crate) async fn columns(
    client: &Client,
    side: &str,
    info: &TableInfo,
) -> Result<Vec<Column>, VerifyError> {
    let rows = client
        .query(COLUMN_TYPES_SQL, &[&info.table.quoted()])
        .await
        .map_err(VerifyError::query(
            side,
            format!("read the column types of {}", info.table),
        ))?;
    let mut facts = HashMap::new();
    for row in &rows {
        let name: String = row.get(0);
        let base: String = row.get(1);
        let builtin: bool = row.get(2);
        let send: String = row.get(3);
        let array: bool = row.get(4);
        let elem: Option<String> = row.get(5);
        let elem_builtin: bool = row.get(6);
        let quoted = quote_ident(&name);
        let expr = column_expr(
            &quoted,
            (&base, builtin, &send),
            (array, elem.as_deref(), elem_builtin),
        );
        let integer = builtin && INTEGER_TYPES.contains(&base.as_str());
        facts.insert(name, (expr, integer));
    }
    Ok(info
        .copy_columns()
        .filter_map(|c| {
            facts.get(&c.name).map(|(expr, integer)| Column {
                name: c.name.clone(),
                expr: expr.clone(),
                integer: *integer,
            })
        })
        .collect())
}

/// The key that names rows in a report: the primary key, else a non-partial
/// unique index on NOT NULL columns; empty when the table has neither.
pub(crate) fn row_key(info: &TableInfo) -> Vec<String> {
    if info.has_primary_key() {
        return info.primary_key.clone();
    }
    info.unique_indexes
        .iter()
        .filter(|u| !u.partial && !u.columns.is_empty())
        .find(|u| {
            u.columns.iter().all(|c| {
                info.columns
                    .iter()
                    .any(|col| &col.name == c && col.not_null && !col.generated)
            })
        })
        .map(|u| u.columns.clone())
        .unwrap_or_default()
}

/// The single integer column of [`row_key`], when the key is exactly one
/// integer column: what chunks are ranges of.
pub(crate) fn integer_key(key: &[String], columns: &[Column]) -> Option<String> {
    match key {
        [one] => columns
            .iter()
            .find(|c| &c.name == one && c.integer)
            .map(|c| c.name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_output_types_are_read_in_binary() {
        let cases = [
            (
                ("float8", true, "float8send"),
                (false, None, false),
                "float8send(\"x\")",
            ),
            (
                ("float4", true, "float4send"),
                (false, None, false),
                "float4send(\"x\")",
            ),
            (
                ("point", true, "point_send"),
                (false, None, false),
                "point_send(\"x\")",
            ),
            (
                ("_float8", true, "array_send"),
                (true, Some("float8"), true),
                "array_send(\"x\")",
            ),
            (
                ("numeric", true, "numeric_send"),
                (false, None, false),
                "\"x\"",
            ),
            (
                ("_int4", true, "array_send"),
                (true, Some("int4"), true),
                "\"x\"",
            ),
            (("text", true, "textsend"), (false, None, false), "\"x\""),
            // A user type that happens to be called float8 is not the built-in.
            (("float8", false, "my_send"), (false, None, false), "\"x\""),
        ];
        for (base, array, want) in cases {
            assert_eq!(
                column_expr("\"x\"", base, array),
                want,
                "{base:?} {array:?}"
            );
        }
    }
}
