//! Which COPY format each table travels in.
//!
//! Binary COPY does less work per row, but a value's binary form is only as
//! portable as its type's send/receive functions: arrays carry their element
//! type's OID and composites the OIDs of their fields, which differ between
//! two servers for anything user-defined; extension types may lack binary
//! I/O or change it between versions. So a column is binary-safe between
//! servers of the same major when every type it is made of is built in (OID
//! below 16384), an enum (sent as its label) or a domain over such a type —
//! with arrays only of built-in elements and no user composite or range.
//! Between majors it must also be one of the built-in types whose binary
//! form has not changed (listed below). Everything else travels as text,
//! which every version reads back exactly with the session settings of
//! [`REPLICA_SESSION`].

use std::collections::HashMap;

use pgmig_core::Error;
use tokio_postgres::GenericClient;

use super::options::{CopyFormat, FormatChoice};

/// Built-in types whose binary form is the same in every supported major.
pub const PORTABLE_BUILTINS: &[&str] = &[
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
    "uuid",
    "json",
    "jsonb",
    "xml",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "bit",
    "varbit",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
];

/// Session settings on the replica for a text COPY that every version reads
/// back exactly: floats with all their digits (17 significant digits before
/// 12, the shortest exact form from 12), ISO dates, UTC, hex bytea.
/// `row_security = off` makes a table whose row-level security would hide
/// rows from the replica's role fail instead of being copied in part.
pub const REPLICA_SESSION: &str = "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'; \
     SET lc_monetary = 'C'; SET row_security = off";

/// Session settings on the target matching [`REPLICA_SESSION`] for input.
pub const TARGET_SESSION: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET lc_monetary = 'C'";

/// Server-side TCP keepalives for the load's sessions (ignored on Unix
/// sockets): a server whose pgmig went away without a word (a partition, a
/// crashed machine) notices within about two minutes and rolls back the
/// chunk, which releases the task for the next loader.
pub const KEEPALIVE_SESSION: &str =
    "SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 6";

/// Per table oid: (binary-safe within a major, binary-safe across majors),
/// over the columns that are copied (live, not generated).
pub fn binary_safety_sql() -> String {
    let portable = PORTABLE_BUILTINS
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH RECURSIVE walk(relid, typid, via_elem, depth) AS ( \
           SELECT a.attrelid, a.atttypid, false, 0 FROM pg_attribute a \
           WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
         UNION ALL \
           SELECT w.relid, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, \
                  t.typtype <> 'd', w.depth + 1 \
           FROM walk w JOIN pg_type t ON t.oid = w.typid \
           WHERE w.depth < 16 AND (t.typtype = 'd' OR (t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1)) \
         ) \
         SELECT w.relid, \
           bool_and(CASE WHEN t.typsend = 0 OR t.typreceive = 0 THEN false \
                         WHEN w.via_elem AND t.oid >= 16384 THEN false \
                         WHEN t.typtype IN ('d', 'e') THEN true \
                         WHEN t.oid >= 16384 THEN false \
                         ELSE t.typtype IN ('b', 'r') END), \
           bool_and(CASE WHEN t.typsend = 0 OR t.typreceive = 0 THEN false \
                         WHEN w.via_elem AND t.oid >= 16384 THEN false \
                         WHEN t.typtype IN ('d', 'e') THEN true \
                         WHEN t.oid >= 16384 THEN false \
                         WHEN t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1 THEN true \
                         ELSE t.typname IN ({portable}) END) \
         FROM walk w JOIN pg_type t ON t.oid = w.typid \
         GROUP BY w.relid"
    )
}

/// How each table (by oid on the replica) is to be copied.
pub async fn choose_formats(
    replica: &impl GenericClient,
    table_oids: &[u32],
    same_major: bool,
    choice: FormatChoice,
) -> Result<HashMap<u32, CopyFormat>, Error> {
    let mut out = HashMap::new();
    match choice {
        FormatChoice::Text | FormatChoice::Binary => {
            let f = if choice == FormatChoice::Text {
                CopyFormat::Text
            } else {
                CopyFormat::Binary
            };
            out.extend(table_oids.iter().map(|oid| (*oid, f)));
            return Ok(out);
        }
        FormatChoice::Auto => {}
    }
    let rows = replica
        .query(&binary_safety_sql(), &[&table_oids])
        .await
        .map_err(Error::query("read the column types"))?;
    for row in rows {
        let oid: u32 = row.get(0);
        let safe: bool = if same_major { row.get(1) } else { row.get(2) };
        out.insert(
            oid,
            if safe {
                CopyFormat::Binary
            } else {
                CopyFormat::Text
            },
        );
    }
    // A table without columns has no row above; either format works.
    for oid in table_oids {
        out.entry(*oid).or_insert(CopyFormat::Binary);
    }
    Ok(out)
}
