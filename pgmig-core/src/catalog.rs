//! Catalog introspection: the user tables, their columns, keys and indexes,
//! partitions, and the sequences with their values — what the planner, the
//! full load, the checks and verification need to know about the data.
//!
//! Each question is one small async function over [`GenericClient`], with its
//! version gates beside the SQL. System schemas, pglogical's, pgmig's own
//! (`pgmig`) and objects that belong to extensions are never listed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::ident::QualifiedTable;
use crate::version::{Major, ServerVersion};

/// Schemas that never hold user data to migrate.
pub const EXCLUDED_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "pglogical", "pgmig"];

/// What kind of relation a [`TableInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// An ordinary table that is not a partition.
    Table,
    /// A partitioned table (10+): holds no rows itself; its leaves do.
    PartitionedParent,
    /// A partition: an ordinary table attached to a partitioned parent.
    PartitionLeaf,
}

/// `relreplident`: what a table's UPDATE and DELETE carry as the old row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// The primary key (none when there is no primary key).
    Default,
    /// Nothing: UPDATE and DELETE cannot be replicated.
    Nothing,
    /// The whole old row.
    Full,
    /// The columns of a chosen unique index.
    Index,
}

/// A column of a table, in `attnum` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// The column's name.
    pub name: String,
    /// `attnum`: the position, counting dropped columns.
    pub attnum: i16,
    /// The type as `format_type` prints it, e.g. `numeric(12,2)`.
    pub type_name: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// A stored generated column (12+): computed by the target, never copied.
    pub generated: bool,
}

/// A unique index of a table other than its primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueIndex {
    /// The index name (in the table's schema).
    pub name: String,
    /// The indexed column names; empty for an expression index.
    pub columns: Vec<String>,
    /// Whether a `UNIQUE` constraint owns the index.
    pub is_constraint: bool,
    /// Whether it has a `WHERE` clause.
    pub partial: bool,
}

/// What pgmig knows about one user table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The table's oid on that server (not portable across servers).
    pub oid: u32,
    /// Its name.
    pub table: QualifiedTable,
    /// Ordinary table, partition or partitioned parent.
    pub kind: TableKind,
    /// The parent of a partition.
    pub parent: Option<QualifiedTable>,
    /// Heap size with TOAST, without indexes (`pg_table_size`); 0 when the
    /// table was dropped while the catalog was being read.
    pub table_bytes: i64,
    /// Size with indexes (`pg_total_relation_size`); 0 when the table was
    /// dropped while the catalog was being read.
    pub total_bytes: i64,
    /// `reltuples`; `None` when unknown: never vacuumed or analyzed (14+:
    /// `reltuples` is -1), or, before 14, `reltuples` and `relpages` both 0,
    /// which is also how an analyzed empty table looks there.
    pub estimated_rows: Option<i64>,
    /// Primary-key columns in key order; empty when there is no primary key.
    pub primary_key: Vec<String>,
    /// Unique indexes besides the primary key.
    pub unique_indexes: Vec<UniqueIndex>,
    /// What UPDATE and DELETE carry as the old row.
    pub replica_identity: ReplicaIdentity,
    /// `UNLOGGED`: not in WAL, so never seen by logical decoding or a standby.
    pub unlogged: bool,
    /// Live (non-dropped) columns in `attnum` order.
    pub columns: Vec<ColumnInfo>,
    /// How many dropped columns still occupy `attnum` slots.
    pub dropped_columns: i32,
}

impl TableInfo {
    /// Whether the table has a primary key.
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Whether the table has a replica-identity index: its primary key under
    /// the default `REPLICA IDENTITY`, or a `REPLICA IDENTITY USING INDEX`
    /// index. pglogical replicates UPDATE and DELETE only for such tables
    /// (`REPLICA IDENTITY FULL` or `NOTHING` tables are refused in an
    /// update/delete set even with a primary key).
    pub fn has_identity_index(&self) -> bool {
        match self.replica_identity {
            ReplicaIdentity::Default => self.has_primary_key(),
            ReplicaIdentity::Index => true,
            ReplicaIdentity::Full | ReplicaIdentity::Nothing => false,
        }
    }

    /// The columns a COPY must name: live and not generated, in `attnum`
    /// order.
    pub fn copy_columns(&self) -> impl Iterator<Item = &ColumnInfo> {
        self.columns.iter().filter(|c| !c.generated)
    }
}

/// A sequence and its current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    /// Its name.
    pub sequence: QualifiedTable,
    /// The column that owns it (`OWNED BY`, `serial`, identity), if any.
    pub owned_by: Option<(QualifiedTable, String)>,
    /// `last_value`.
    pub last_value: i64,
    /// `is_called`: whether `last_value` was handed out already.
    pub is_called: bool,
}

/// The SQL filter shared by the table and sequence listings: user schemas
/// only, nothing that belongs to an extension.
fn user_relation_filter() -> String {
    let schemas = EXCLUDED_SCHEMAS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "n.nspname NOT IN ({schemas}) AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
         AND d.objid = c.oid AND d.deptype = 'e')"
    )
}

/// The table-listing query for `major`.
pub fn tables_sql(major: Major) -> String {
    // relkind 'p' and relispartition exist from 10; attgenerated from 12.
    let is_partition = if major >= Major::V10 {
        "c.relispartition"
    } else {
        "false"
    };
    let generated = if major >= Major::V12 {
        "a.attgenerated = 's'"
    } else {
        "false"
    };
    let parent_schema = if major >= Major::V10 {
        "(SELECT pn.nspname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition LIMIT 1)"
    } else {
        "NULL::name"
    };
    let parent_name = if major >= Major::V10 {
        "(SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         WHERE i.inhrelid = c.oid AND c.relispartition LIMIT 1)"
    } else {
        "NULL::name"
    };
    // 14+ marks a never-analyzed table with reltuples -1; before 14 it has
    // reltuples 0 and relpages 0, which becomes -1 ("unknown") here too.
    let reltuples = if major >= Major::V14 {
        "c.reltuples::float8"
    } else {
        "CASE WHEN c.reltuples = 0 AND c.relpages = 0 THEN -1 ELSE c.reltuples END::float8"
    };
    format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, {is_partition}, \
           {parent_schema}::text, {parent_name}::text, \
           COALESCE(pg_table_size(c.oid), 0), COALESCE(pg_total_relation_size(c.oid), 0), {reltuples}, \
           c.relreplident::text, c.relpersistence = 'u', \
           COALESCE((SELECT array_agg(a.attname::text ORDER BY k.ord) \
              FROM pg_index x, unnest(x.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a \
              WHERE x.indrelid = c.oid AND x.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum), \
              '{{}}'::text[]), \
           COALESCE((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'::text[]), \
           COALESCE((SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'::int2[]), \
           COALESCE((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'::text[]), \
           COALESCE((SELECT array_agg(a.attnotnull ORDER BY a.attnum) FROM pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'::bool[]), \
           COALESCE((SELECT array_agg({generated} ORDER BY a.attnum) FROM pg_attribute a \
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'::bool[]), \
           (SELECT count(*)::int4 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attisdropped) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ({kinds}) AND {filter} \
         ORDER BY n.nspname, c.relname",
        kinds = table_kinds(major),
        filter = user_relation_filter(),
    )
}

/// The `relkind`s [`tables_sql`] lists: `'p'` exists from 10.
fn table_kinds(major: Major) -> &'static str {
    if major >= Major::V10 {
        "'r', 'p'"
    } else {
        "'r'"
    }
}

/// The query listing the unique, non-primary indexes of the tables
/// [`tables_sql`] lists (same relkinds, same schema filter), with their
/// table's oid, ordered by table and index name.
pub fn unique_indexes_sql(major: Major) -> String {
    format!(
        "SELECT x.indrelid, i.relname::text, \
           COALESCE((SELECT array_agg(a.attname::text ORDER BY k.ord) \
              FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a \
              ON a.attrelid = x.indrelid AND a.attnum = k.attnum WHERE k.attnum > 0), '{{}}'::text[]), \
           EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = x.indexrelid AND co.contype = 'u'), \
           x.indpred IS NOT NULL, 0 = ANY (x.indkey::int2[]) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE x.indisunique AND NOT x.indisprimary AND c.relkind IN ({kinds}) AND {filter} \
         ORDER BY x.indrelid, i.relname",
        kinds = table_kinds(major),
        filter = user_relation_filter(),
    )
}

/// Groups unique indexes by their table's oid, keeping their order.
fn group_by_table(
    indexes: impl IntoIterator<Item = (u32, UniqueIndex)>,
) -> HashMap<u32, Vec<UniqueIndex>> {
    let mut by_table: HashMap<u32, Vec<UniqueIndex>> = HashMap::new();
    for (table, index) in indexes {
        by_table.entry(table).or_default().push(index);
    }
    by_table
}

/// `reltuples` as read by [`tables_sql`] (negative: unknown).
fn estimated_rows(reltuples: f64) -> Option<i64> {
    (reltuples >= 0.0).then_some(reltuples as i64)
}

fn replica_identity(code: &str) -> ReplicaIdentity {
    match code {
        "n" => ReplicaIdentity::Nothing,
        "f" => ReplicaIdentity::Full,
        "i" => ReplicaIdentity::Index,
        _ => ReplicaIdentity::Default,
    }
}

/// Lists the user tables — ordinary tables, partitioned parents and their
/// leaves — with keys, unique indexes, columns and sizes, ordered by schema
/// and name.
pub async fn list_tables(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<Vec<TableInfo>> {
    let rows = client
        .query(&tables_sql(version.major()), &[])
        .await
        .map_err(Error::query("list the user tables"))?;
    let index_rows = client
        .query(&unique_indexes_sql(version.major()), &[])
        .await
        .map_err(Error::query("list the unique indexes"))?;
    let mut unique_indexes = group_by_table(index_rows.iter().map(|r| {
        let index = UniqueIndex {
            name: r.get(1),
            columns: if r.get::<_, bool>(5) {
                Vec::new()
            } else {
                r.get(2)
            },
            is_constraint: r.get(3),
            partial: r.get(4),
        };
        (r.get::<_, u32>(0), index)
    }));

    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let oid: u32 = row.get(0);
        let relkind: String = row.get(3);
        let is_partition: bool = row.get(4);
        let kind = match (relkind.as_str(), is_partition) {
            ("p", _) => TableKind::PartitionedParent,
            (_, true) => TableKind::PartitionLeaf,
            _ => TableKind::Table,
        };
        let parent_schema: Option<String> = row.get(5);
        let parent_name: Option<String> = row.get(6);
        let reltuples: f64 = row.get(9);
        let names: Vec<String> = row.get(13);
        let attnums: Vec<i16> = row.get(14);
        let types: Vec<String> = row.get(15);
        let not_null: Vec<bool> = row.get(16);
        let generated: Vec<bool> = row.get(17);
        let columns = names
            .into_iter()
            .zip(attnums)
            .zip(types)
            .zip(not_null.into_iter().zip(generated))
            .map(
                |(((name, attnum), type_name), (not_null, generated))| ColumnInfo {
                    name,
                    attnum,
                    type_name,
                    not_null,
                    generated,
                },
            )
            .collect();
        let unique_indexes = unique_indexes.remove(&oid).unwrap_or_default();
        tables.push(TableInfo {
            oid,
            table: QualifiedTable::new(row.get::<_, String>(1), row.get::<_, String>(2)),
            kind,
            parent: parent_schema
                .zip(parent_name)
                .map(|(s, n)| QualifiedTable::new(s, n)),
            table_bytes: row.get(7),
            total_bytes: row.get(8),
            estimated_rows: estimated_rows(reltuples),
            primary_key: row.get(12),
            unique_indexes,
            replica_identity: replica_identity(&row.get::<_, String>(10)),
            unlogged: row.get(11),
            columns,
            dropped_columns: row.get(18),
        });
    }
    Ok(tables)
}

/// The sequence-listing query (identical on every supported version).
const SEQUENCES_SQL: &str = "SELECT n.nspname::text, c.relname::text, \
       tn.nspname::text, t.relname::text, a.attname::text \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid \
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
     LEFT JOIN pg_class t ON t.oid = d.refobjid \
     LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace \
     LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
     WHERE c.relkind = 'S' AND ";

/// Lists the user sequences with their owning column and current value.
///
/// The value is read from each sequence itself (`SELECT last_value,
/// is_called FROM seq`), which works on every version and on a standby.
pub async fn list_sequences(client: &impl GenericClient) -> Result<Vec<SequenceInfo>> {
    let sql = format!("{SEQUENCES_SQL}{} ORDER BY 1, 2", user_relation_filter());
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(Error::query("list the sequences"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let sequence = QualifiedTable::new(row.get::<_, String>(0), row.get::<_, String>(1));
        let owner_schema: Option<String> = row.get(2);
        let owner_table: Option<String> = row.get(3);
        let owner_column: Option<String> = row.get(4);
        let owned_by = match (owner_schema, owner_table, owner_column) {
            (Some(s), Some(t), Some(c)) => Some((QualifiedTable::new(s, t), c)),
            _ => None,
        };
        let value = client
            .query_one(
                &format!("SELECT last_value, is_called FROM {}", sequence.quoted()),
                &[],
            )
            .await
            .map_err(Error::query(format!("read sequence {sequence}")))?;
        out.push(SequenceInfo {
            sequence,
            owned_by,
            last_value: value.get(0),
            is_called: value.get(1),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sql_gates_features_by_version() {
        let old = tables_sql(Major::V9_6);
        assert!(old.contains("c.relkind IN ('r')"));
        assert!(!old.contains("relispartition"));
        assert!(!old.contains("attgenerated"));
        let v10 = tables_sql(Major::V10);
        assert!(v10.contains("c.relkind IN ('r', 'p')"));
        assert!(v10.contains("c.relispartition"));
        assert!(!v10.contains("attgenerated"));
        let v12 = tables_sql(Major::V12);
        assert!(v12.contains("a.attgenerated = 's'"));
    }

    #[test]
    fn sizes_of_a_table_dropped_meanwhile_are_zero_not_null() {
        for major in [Major::V9_6, Major::V15] {
            let sql = tables_sql(major);
            assert!(sql.contains("COALESCE(pg_table_size(c.oid), 0)"), "{sql}");
            assert!(
                sql.contains("COALESCE(pg_total_relation_size(c.oid), 0)"),
                "{sql}"
            );
        }
    }

    #[test]
    fn never_analyzed_is_unknown_on_every_version() {
        let old = tables_sql(Major::V13);
        assert!(
            old.contains(
                "CASE WHEN c.reltuples = 0 AND c.relpages = 0 THEN -1 ELSE c.reltuples END::float8"
            ),
            "{old}"
        );
        assert!(tables_sql(Major::V9_6).contains("c.relpages = 0"));
        let new = tables_sql(Major::V14);
        assert!(new.contains(", c.reltuples::float8,"), "{new}");
        assert!(!new.contains("relpages"), "{new}");
        assert_eq!(estimated_rows(-1.0), None);
        assert_eq!(estimated_rows(0.0), Some(0));
        assert_eq!(estimated_rows(1234.0), Some(1234));
    }

    #[test]
    fn unique_indexes_are_read_for_user_tables_only() {
        let sql = unique_indexes_sql(Major::V15);
        assert!(sql.contains(&user_relation_filter()), "{sql}");
        assert!(
            sql.contains("JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"),
            "{sql}"
        );
        assert!(sql.contains("c.relkind IN ('r', 'p')"), "{sql}");
        assert!(unique_indexes_sql(Major::V9_6).contains("c.relkind IN ('r')"));
    }

    #[test]
    fn unique_indexes_are_grouped_by_table_in_order() {
        let index = |name: &str| UniqueIndex {
            name: name.to_owned(),
            columns: vec!["a".to_owned()],
            is_constraint: false,
            partial: false,
        };
        let mut grouped = group_by_table([
            (10, index("a_key")),
            (10, index("b_key")),
            (20, index("c_key")),
        ]);
        assert_eq!(
            grouped.remove(&10).unwrap(),
            [index("a_key"), index("b_key")]
        );
        assert_eq!(grouped.remove(&20).unwrap(), [index("c_key")]);
        assert!(grouped.is_empty());
    }

    #[test]
    fn pgmig_and_pglogical_are_never_user_data() {
        let filter = user_relation_filter();
        for schema in [
            "'pgmig'",
            "'pglogical'",
            "'pg_catalog'",
            "'information_schema'",
        ] {
            assert!(filter.contains(schema), "{schema}");
        }
        assert!(filter.contains("deptype = 'e'"));
    }
}
