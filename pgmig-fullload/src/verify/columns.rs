//! What verification reads of each column: an expression whose binary COPY
//! form is the same for equal values on every major version, and different
//! for different values.
//!
//! Rows are read with `COPY … TO STDOUT (FORMAT binary)`: the servers skip
//! the text output routines (the larger part of a COPY's cost for
//! timestamps and numerics), and the values of most built-in types arrive
//! in their send format, which is independent of every session setting and
//! has not changed across the supported majors: integers, `numeric` (digits
//! and display scale), `timestamp[tz]`/`date`/`time[tz]`/`interval` as
//! integers, `float4`/`float8` and the geometric types as IEEE bytes (their
//! *text* differs between 10–11 and 12+ for equal values), `text`-like types
//! and `json` as bytes, `jsonb` as version byte plus canonical text, `bytea`,
//! `uuid`, `inet`, `bit`, `money`, `pg_lsn`. Every other column is read as
//! its text (`col::text`) under the session `session` pins: arrays (their
//! send form carries a has-nulls flag that can differ for equal arrays, and
//! element type OIDs), enums, composite, range, extension and user types,
//! and `reg*` types (OIDs in binary, names in text). Arrays of floats are
//! read as their dimensions plus each element's send bytes.
//!
//! Decisions documented here:
//! - `numeric` keeps its display scale: `1.0` and `1.00` are different data
//!   (a correct copy keeps the scale; pg_dump and COPY do);
//! - NULL is a field of length -1, distinct from every value, so NULL never
//!   equals `''`;
//! - date and time types are read as text when either server stores them
//!   as floats (a 9.6 built with `--disable-integer-datetimes`);
//! - domains are compared as their base type (one level); floats inside a
//!   composite value compare as text and can report a false difference
//!   between 10–11 and 12+ (never a false equality);
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

/// Built-in types read in their binary send form: stable on 9.6–17 and
/// free of OIDs and session settings.
const BINARY_TYPES: &[&str] = &[
    "bool",
    "bytea",
    "char",
    "name",
    "int2",
    "int4",
    "int8",
    "oid",
    "text",
    "varchar",
    "bpchar",
    "float4",
    "float8",
    "numeric",
    "money",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "bit",
    "varbit",
    "uuid",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "json",
    "jsonb",
    "point",
    "lseg",
    "box",
    "path",
    "polygon",
    "line",
    "circle",
    "pg_lsn",
];

/// Date and time types: binary only where both servers store them as
/// integers (always from 10; a 9.6 built with `--disable-integer-datetimes`
/// sends floats).
const DATETIME_TYPES: &[&str] = &[
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
];

/// Whether the server stores date and time types as integers
/// (`integer_datetimes`).
pub(crate) async fn integer_datetimes(client: &Client, side: &str) -> Result<bool, VerifyError> {
    let row = client
        .query_one("SELECT current_setting('integer_datetimes') = 'on'", &[])
        .await
        .map_err(VerifyError::query(side, "read integer_datetimes"))?;
    Ok(row.get(0))
}

/// The integer types a key range can be taken on.
const INTEGER_TYPES: &[&str] = &["int2", "int4", "int8"];

/// The type facts of each live column of a table: base type (domains
/// resolved one level), its send function, the array element's base type.
const COLUMN_TYPES_SQL: &str = "SELECT a.attname::text, bt.typname::text, \
       bt.typnamespace = 'pg_catalog'::regnamespace, et.typsend::text, bt.typcategory = 'A', \
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
    /// Its type as read: base type and, for an array, element type.
    pub type_key: String,
}

impl Column {
    /// The column read as its text: what two sides whose types differ
    /// (`integer` widened to `bigint`, say) can still compare.
    pub(crate) fn as_text(&self) -> Column {
        Column {
            expr: format!("{}::text", quote_ident(&self.name)),
            ..self.clone()
        }
    }
}

/// The expression for a column of base type `base` (in `pg_catalog` when
/// `builtin`), an array of `elem` (sent by `elem_send`) when `array`.
fn column_expr(
    quoted: &str,
    (base, builtin, binary_times): (&str, bool, bool),
    (array, elem, elem_builtin, elem_send): (bool, Option<&str>, bool, &str),
) -> String {
    if array && elem_builtin && elem.is_some_and(|e| FLOAT_OUTPUT_TYPES.contains(&e)) {
        // Dimensions, then each element's bytes in storage order (N: NULL).
        format!(
            "CASE WHEN {quoted} IS NULL THEN NULL ELSE COALESCE(array_dims({quoted}), '') || ':' || \
             array_to_string(ARRAY(SELECT COALESCE(encode({elem_send}(e), 'hex'), 'N') \
             FROM unnest({quoted}) WITH ORDINALITY u(e, i) ORDER BY i), ',') END"
        )
    } else if builtin
        && !array
        && BINARY_TYPES.contains(&base)
        && (binary_times || !DATETIME_TYPES.contains(&base))
    {
        quoted.to_string()
    } else {
        format!("{quoted}::text")
    }
}

/// The expression that names a row's key column in reports: its text.
pub(crate) fn key_expr(column: &str) -> String {
    format!("{}::text", quote_ident(column))
}

/// The compared columns of `info` on the server `client` is connected to:
/// its copy columns (live, not generated), in `attnum` order. Date and time
/// types are read in binary only when `binary_times` (both sides store them
/// as integers).
pub(crate) async fn columns(
    client: &Client,
    side: &str,
    info: &TableInfo,
    binary_times: bool,
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
        let elem_send: Option<String> = row.get(3);
        let array: bool = row.get(4);
        let elem: Option<String> = row.get(5);
        let elem_builtin: bool = row.get(6);
        let quoted = quote_ident(&name);
        let expr = column_expr(
            &quoted,
            (&base, builtin, binary_times),
            (
                array,
                elem.as_deref(),
                elem_builtin,
                elem_send.as_deref().unwrap_or("-"),
            ),
        );
        let integer = builtin && INTEGER_TYPES.contains(&base.as_str());
        let type_key = format!(
            "{base}{}{}",
            if builtin { "" } else { "(user)" },
            elem.as_deref()
                .map(|e| format!("[{e}]"))
                .unwrap_or_default()
        );
        facts.insert(name, (expr, integer, type_key));
    }
    Ok(info
        .copy_columns()
        .filter_map(|c| {
            facts.get(&c.name).map(|(expr, integer, type_key)| Column {
                name: c.name.clone(),
                expr: expr.clone(),
                integer: *integer,
                type_key: type_key.clone(),
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

/// The column chunks are ranges of: the key's first column when it is an
/// integer (for a composite key, ranges of its leading column still split
/// the rows exactly).
pub(crate) fn chunk_column(key: &[String], columns: &[Column]) -> Option<String> {
    let first = key.first()?;
    columns
        .iter()
        .find(|c| &c.name == first && c.integer)
        .map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_leading_integer_key_column() {
        let col = |name: &str, integer: bool| Column {
            name: name.into(),
            expr: quote_ident(name),
            integer,
            type_key: String::new(),
        };
        let cols = [col("tenant", true), col("id", true), col("code", false)];
        let key = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(integer_key(&key(&["id"]), &cols).as_deref(), Some("id"));
        assert_eq!(integer_key(&key(&["tenant", "id"]), &cols), None);
        assert_eq!(
            chunk_column(&key(&["tenant", "code"]), &cols).as_deref(),
            Some("tenant")
        );
        assert_eq!(chunk_column(&key(&["code", "id"]), &cols), None);
        assert_eq!(chunk_column(&[], &cols), None);
    }

    #[test]
    fn portable_builtins_are_read_in_binary_everything_else_as_text() {
        let plain = (false, None, false, "-");
        let cases = [
            (("float8", true), plain, "\"x\""),
            (("timestamptz", true), plain, "\"x\""),
            (("numeric", true), plain, "\"x\""),
            (("point", true), plain, "\"x\""),
            (("regclass", true), plain, "\"x\"::text"),
            (
                ("_int4", true),
                (true, Some("int4"), true, "int4send"),
                "\"x\"::text",
            ),
            (("mood", false), plain, "\"x\"::text"),
            // A user type that happens to be called float8 is not the built-in.
            (("float8", false), plain, "\"x\"::text"),
        ];
        for ((base, builtin), array, want) in cases {
            assert_eq!(
                column_expr("\"x\"", (base, builtin, true), array),
                want,
                "{base:?} {array:?}"
            );
        }
        // Float timestamps (a 9.6 build option): read as text.
        assert_eq!(
            column_expr("\"x\"", ("timestamptz", true, false), plain),
            "\"x\"::text"
        );
        assert_eq!(column_expr("\"x\"", ("int8", true, false), plain), "\"x\"");
        let floats = column_expr(
            "\"x\"",
            ("_float8", true, true),
            (true, Some("float8"), true, "float8send"),
        );
        assert!(
            floats.starts_with(
                "CASE WHEN \"x\" IS NULL THEN NULL ELSE COALESCE(array_dims(\"x\"), '')"
            ),
            "{floats}"
        );
        assert!(floats.contains("encode(float8send(e), 'hex')"), "{floats}");
    }
}
