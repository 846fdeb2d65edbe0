//! What the applier needs to know about a target table: its columns with
//! their types (as `format_type` prints them, for the `$n::text::<type>`
//! casts) and value shapes, and the key that finds a row — the replica
//! identity index (the primary key under the default `REPLICA IDENTITY`),
//! the same columns pglogical sends as the old key on the source.
//!
//! The statements are built here, as pure functions, so they can be read
//! and tested without a server.

use pgmig_core::error::{Error, Result};
use pgmig_core::{Major, QualifiedTable, ServerVersion, quote_ident};
use tokio_postgres::GenericClient;

use crate::value::{ElementShape, ValueShape};

/// One live column of a target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The column name.
    pub name: String,
    /// The type as `format_type` prints it, e.g. `numeric(12,2)`.
    pub type_name: String,
    /// How its values are written in text.
    pub shape: ValueShape,
    /// A generated column: computed by the target, never written.
    pub generated: bool,
}

/// A target table as the applier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// The table.
    pub table: QualifiedTable,
    /// Live columns in `attnum` order.
    pub columns: Vec<TargetColumn>,
    /// The key columns in key order; empty when the table has no replica
    /// identity index (only INSERT and TRUNCATE are replicated then).
    pub key: Vec<String>,
}

impl TargetTable {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&TargetColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The query behind [`load_table`]: `$1` the quoted table name.
///
/// The key is the replica identity index: `indisreplident`, or the primary
/// key when the identity is the default.
pub fn table_sql(version: ServerVersion) -> String {
    let generated = if version.major() >= Major::V12 {
        "a.attgenerated <> ''"
    } else {
        "false"
    };
    format!(
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), {generated}, \
           CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0 THEN \
                CASE WHEN et.typtype = 'c' THEN 'array_composite' \
                     WHEN et.oid IN ('json'::regtype, 'jsonb'::regtype) THEN 'array_json' \
                     ELSE 'array' END \
                WHEN bt.typtype = 'c' THEN 'composite' \
                WHEN bt.oid IN ('json'::regtype, 'jsonb'::regtype) THEN 'json' \
                ELSE 'scalar' END, \
           k.pos \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
         LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem \
         LEFT JOIN LATERAL ( \
           SELECT pg_catalog.array_position(i.indkey::int2[], a.attnum) AS pos \
           FROM pg_catalog.pg_index i \
           WHERE i.indrelid = c.oid AND (i.indisreplident OR (i.indisprimary AND c.relreplident = 'd')) \
           ORDER BY i.indisreplident DESC LIMIT 1) k ON true \
         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum"
    )
}

/// Reads a target table's columns and key; `None` when it does not exist.
pub async fn load_table(
    client: &impl GenericClient,
    version: ServerVersion,
    table: &QualifiedTable,
) -> Result<Option<TargetTable>> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await
        .map_err(Error::query(format!("look for {table} on the target")))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let rows = client
        .query(&table_sql(version), &[&table.quoted()])
        .await
        .map_err(Error::query(format!(
            "read the columns of {table} on the target"
        )))?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut key: Vec<(i32, String)> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let shape = match row.get::<_, &str>(3) {
            "array_composite" => ValueShape::Array(ElementShape::Composite),
            "array_json" => ValueShape::Array(ElementShape::Json),
            "array" => ValueShape::Array(ElementShape::Scalar),
            "composite" => ValueShape::Composite,
            "json" => ValueShape::Json,
            _ => ValueShape::Scalar,
        };
        if let Some(pos) = row.get::<_, Option<i32>>(4) {
            key.push((pos, name.clone()));
        }
        columns.push(TargetColumn {
            name,
            type_name: row.get(1),
            shape,
            generated: row.get(2),
        });
    }
    key.sort();
    Ok(Some(TargetTable {
        table: table.clone(),
        columns,
        key: key.into_iter().map(|(_, n)| n).collect(),
    }))
}

fn param(n: usize, column: &TargetColumn) -> String {
    format!("${n}::text::{}", column.type_name)
}

/// `INSERT INTO t ("a", "b") VALUES ($1::text::T1, $2::text::T2)`.
pub fn insert_sql(table: &QualifiedTable, columns: &[&TargetColumn]) -> String {
    insert_rows_sql(table, columns, 1)
}

/// An INSERT of `rows` rows: `VALUES (…), (…)`, the parameters row after
/// row.
pub fn insert_rows_sql(table: &QualifiedTable, columns: &[&TargetColumn], rows: usize) -> String {
    let names = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let values = (0..rows)
        .map(|r| {
            let row = columns
                .iter()
                .enumerate()
                .map(|(i, c)| param(r * columns.len() + i + 1, c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {} ({names}) VALUES {values}", table.quoted())
}

fn key_condition(first: usize, key: &[&TargetColumn]) -> String {
    key.iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", quote_ident(&c.name), param(first + i, c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `UPDATE t SET "a" = $1::text::T, … WHERE "k" = $n::text::K AND …`: the
/// set columns' parameters first, then the key's.
pub fn update_sql(table: &QualifiedTable, set: &[&TargetColumn], key: &[&TargetColumn]) -> String {
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", quote_ident(&c.name), param(i + 1, c)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE ONLY {} SET {assignments} WHERE {}",
        table.quoted(),
        key_condition(set.len() + 1, key)
    )
}

/// `DELETE FROM ONLY t WHERE "k" = $1::text::K AND …`.
pub fn delete_sql(table: &QualifiedTable, key: &[&TargetColumn]) -> String {
    format!(
        "DELETE FROM ONLY {} WHERE {}",
        table.quoted(),
        key_condition(1, key)
    )
}

/// `TRUNCATE ONLY a, b`: tables truncated together on the source are
/// truncated in one statement, or foreign keys between them refuse it.
pub fn truncate_sql(tables: &[QualifiedTable]) -> String {
    format!(
        "TRUNCATE ONLY {}",
        tables
            .iter()
            .map(QualifiedTable::quoted)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_name: &str) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            type_name: type_name.into(),
            shape: ValueShape::Scalar,
            generated: false,
        }
    }

    #[test]
    fn statements_cast_text_to_the_column_type() {
        let t = QualifiedTable::new("Weird", "Order Items");
        let id = col("id", "bigint");
        let note = col("Note", "character varying(20)");
        let amount = col("amount", "numeric(12,2)");
        assert_eq!(
            insert_sql(&t, &[&id, &note, &amount]),
            r#"INSERT INTO "Weird"."Order Items" ("id", "Note", "amount") VALUES ($1::text::bigint, $2::text::character varying(20), $3::text::numeric(12,2))"#
        );
        assert_eq!(
            insert_rows_sql(&t, &[&id, &note], 2),
            r#"INSERT INTO "Weird"."Order Items" ("id", "Note") VALUES ($1::text::bigint, $2::text::character varying(20)), ($3::text::bigint, $4::text::character varying(20))"#
        );
        assert_eq!(
            update_sql(&t, &[&note, &amount], &[&id]),
            r#"UPDATE ONLY "Weird"."Order Items" SET "Note" = $1::text::character varying(20), "amount" = $2::text::numeric(12,2) WHERE "id" = $3::text::bigint"#
        );
        assert_eq!(
            delete_sql(&t, &[&id, &note]),
            r#"DELETE FROM ONLY "Weird"."Order Items" WHERE "id" = $1::text::bigint AND "Note" = $2::text::character varying(20)"#
        );
        assert_eq!(
            truncate_sql(&[t.clone(), QualifiedTable::new("public", "nopk")]),
            r#"TRUNCATE ONLY "Weird"."Order Items", "public"."nopk""#
        );
    }

    #[test]
    fn generated_columns_are_gated_by_version() {
        let v11 = ServerVersion::from_num(110_000).unwrap();
        let v15 = ServerVersion::from_num(150_000).unwrap();
        assert!(table_sql(v11).contains(", false, "));
        assert!(table_sql(v15).contains("a.attgenerated <> ''"));
    }
}
