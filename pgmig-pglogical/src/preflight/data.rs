//! Checks of the source's data that logical replication cannot carry as
//! is: tables without a primary key, tables with a primary key *and* other
//! unique indexes, unlogged tables and large objects. Each table is its own
//! finding, named, so the list can be worked through.

use pgmig_core::catalog::{self, TableInfo, TableKind};
use pgmig_core::ident::display_ident;
use pgmig_core::{Error, Result, ServerRole, ServerVersion};
use tokio_postgres::GenericClient;
use tracing::debug;

use super::finding::{Finding, ids, query_failed};

const SOURCE: ServerRole = ServerRole::Source;

/// How many large objects the database holds. `pg_largeobject_metadata`
/// (9.0+) is readable by every role, unlike `pg_largeobject`.
const LARGE_OBJECTS_SQL: &str = "SELECT count(*) FROM pg_largeobject_metadata";

/// `names` joined with `, `, each quoted where SQL needs it.
fn idents(names: &[String]) -> String {
    names
        .iter()
        .map(|n| display_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the source's data: tables without a primary key (their UPDATE
/// and DELETE cannot replicate), tables with a primary key and other unique
/// indexes (named with the indexes: the runbook's special case), unlogged
/// tables (never in WAL) and large objects (not carried by logical
/// decoding). Each problem table is its own warning; when a check finds
/// nothing, one Ok finding says so.
///
/// Partitioned parents hold no rows and are judged through their leaves.
/// A query that fails becomes a blocker; a lost connection is the error.
#[tracing::instrument(name = "check_data", skip_all)]
pub async fn check_data(source: &impl GenericClient) -> Result<Vec<Finding>> {
    let table_ids = [
        ids::DATA_PRIMARY_KEY,
        ids::DATA_UNIQUE_INDEXES,
        ids::DATA_UNLOGGED,
    ];
    let mut out = Vec::new();
    let tables = match ServerVersion::query(source).await {
        Ok(version) => catalog::list_tables(source, version).await,
        Err(e) => Err(e),
    };
    match tables {
        Ok(tables) => out.extend(judge_tables(&tables)),
        Err(e) => {
            let first = query_failed(SOURCE, table_ids[0], e)?;
            out.extend(table_ids.iter().map(|id| Finding {
                check: id,
                ..first.clone()
            }));
        }
    }
    let large_objects = source
        .query_one(LARGE_OBJECTS_SQL, &[])
        .await
        .map_err(Error::query("count the large objects"));
    out.push(match large_objects {
        Ok(row) => large_objects_finding(row.get(0)),
        Err(e) => query_failed(SOURCE, ids::DATA_LARGE_OBJECTS, e)?,
    });
    debug!(findings = out.len(), "data checked");
    Ok(out)
}

/// Judges the table list; pure.
pub(crate) fn judge_tables(tables: &[TableInfo]) -> Vec<Finding> {
    let with_rows: Vec<&TableInfo> = tables
        .iter()
        .filter(|t| t.kind != TableKind::PartitionedParent)
        .collect();
    let mut out = Vec::new();

    let no_pk: Vec<Finding> = with_rows
        .iter()
        .filter(|t| !t.has_identity_index())
        .map(|t| {
            let why = if t.has_primary_key() {
                format!(
                    "{} has a primary key but REPLICA IDENTITY {:?}: pglogical replicates UPDATE and \
                     DELETE only through a replica-identity index, so only INSERT and TRUNCATE reach \
                     the target",
                    t.table, t.replica_identity
                )
            } else {
                format!(
                    "{} has no primary key: its UPDATE and DELETE cannot replicate (INSERT and \
                     TRUNCATE do)",
                    t.table
                )
            };
            Finding::warn(SOURCE, ids::DATA_PRIMARY_KEY, why)
            .with_fix(format!(
                "add a primary key before setup (ALTER TABLE {} ADD PRIMARY KEY (…)), or accept \
                 that only inserts reach the target and reload it at cutover",
                t.table.quoted()
            ))
        })
        .collect();
    if no_pk.is_empty() {
        let summary = match with_rows.len() {
            0 => "no user tables".to_owned(),
            1 => "the only table has a primary key (replica-identity index)".to_owned(),
            n => format!("all {n} tables have a primary key (replica-identity index)"),
        };
        out.push(Finding::ok(SOURCE, ids::DATA_PRIMARY_KEY, summary));
    }
    out.extend(no_pk);

    let unique: Vec<Finding> = with_rows
        .iter()
        .filter(|t| t.has_primary_key() && !t.unique_indexes.is_empty())
        .map(|t| {
            let indexes: Vec<String> = t
                .unique_indexes
                .iter()
                .map(|i| {
                    // Names quoted where SQL needs it, so a name holding a
                    // comma, a parenthesis or a quote reads unambiguously.
                    if i.columns.is_empty() {
                        format!("{} (expression)", display_ident(&i.name))
                    } else {
                        format!("{} ({})", display_ident(&i.name), idents(&i.columns))
                    }
                })
                .collect();
            Finding::warn(
                SOURCE,
                ids::DATA_UNIQUE_INDEXES,
                format!(
                    "{} has a primary key ({}) and unique index{} {}",
                    t.table,
                    idents(&t.primary_key),
                    if indexes.len() == 1 { "" } else { "es" },
                    indexes.join(", ")
                ),
            )
            .with_fix(
                "the runbook's special case: changes applied in commit order can collide on \
                 these indexes while the key differs; pgmig load builds them after the copy — \
                 review them before CDC",
            )
        })
        .collect();
    if unique.is_empty() {
        out.push(Finding::ok(
            SOURCE,
            ids::DATA_UNIQUE_INDEXES,
            "no table has unique indexes besides its primary key",
        ));
    }
    out.extend(unique);

    let unlogged: Vec<Finding> = with_rows
        .iter()
        .filter(|t| t.unlogged)
        .map(|t| {
            Finding::warn(
                SOURCE,
                ids::DATA_UNLOGGED,
                format!(
                    "{} is unlogged: its rows are not in WAL, so neither the replica nor logical \
                     decoding carries them",
                    t.table
                ),
            )
            .with_fix(format!(
                "make it logged before setup (ALTER TABLE {} SET LOGGED; rewrites the table), or \
                 copy it separately at cutover",
                t.table.quoted()
            ))
        })
        .collect();
    if unlogged.is_empty() {
        out.push(Finding::ok(
            SOURCE,
            ids::DATA_UNLOGGED,
            "no unlogged tables",
        ));
    }
    out.extend(unlogged);
    out
}

/// Judges the large object count; pure.
pub(crate) fn large_objects_finding(count: i64) -> Finding {
    let id = ids::DATA_LARGE_OBJECTS;
    if count <= 0 {
        return Finding::ok(SOURCE, id, "no large objects");
    }
    Finding::warn(
        SOURCE,
        id,
        format!(
            "{count} large object{} (pg_largeobject): logical decoding does not carry them",
            if count == 1 { "" } else { "s" }
        ),
    )
    .with_fix(
        "copy them separately at cutover (pg_dump --large-objects --data-only, or lo_export / \
         lo_import), or move them into bytea columns before the migration",
    )
}

#[cfg(test)]
mod tests {
    use pgmig_core::QualifiedTable;
    use pgmig_core::catalog::{ReplicaIdentity, UniqueIndex};

    use super::*;
    use crate::preflight::finding::Severity;

    fn table(
        name: &str,
        pk: &[&str],
        unique: &[&str],
        unlogged: bool,
        kind: TableKind,
    ) -> TableInfo {
        TableInfo {
            oid: 1,
            table: QualifiedTable::new("public", name),
            kind,
            parent: None,
            table_bytes: 0,
            total_bytes: 0,
            estimated_rows: None,
            primary_key: pk.iter().map(|c| (*c).to_owned()).collect(),
            unique_indexes: unique
                .iter()
                .map(|n| UniqueIndex {
                    name: (*n).to_owned(),
                    columns: vec!["email".into()],
                    is_constraint: false,
                    partial: false,
                })
                .collect(),
            replica_identity: ReplicaIdentity::Default,
            unlogged,
            columns: Vec::new(),
            dropped_columns: 0,
        }
    }

    #[test]
    fn hostile_names_are_quoted_in_findings() {
        let t = table(
            "Order \"Items\"",
            &["Id", "a, b"],
            &["uniq's (x)"],
            false,
            TableKind::Table,
        );
        let found = judge_tables(&[t]);
        let unique: Vec<&Finding> = found
            .iter()
            .filter(|f| f.check == ids::DATA_UNIQUE_INDEXES)
            .collect();
        assert_eq!(
            unique[0].summary,
            r#"public."Order ""Items""" has a primary key ("Id", "a, b") and unique index "uniq's (x)" (email)"#
        );
    }

    #[test]
    fn each_problem_table_is_named() {
        let tables = [
            table("fine", &["id"], &[], false, TableKind::Table),
            table("audit", &[], &[], false, TableKind::Table),
            table(
                "users",
                &["id"],
                &["users_email_key"],
                false,
                TableKind::Table,
            ),
            table("scratch", &["k"], &[], true, TableKind::Table),
            table("measure", &[], &[], false, TableKind::PartitionedParent),
        ];
        let found = judge_tables(&tables);
        let of = |id: &str| -> Vec<&Finding> { found.iter().filter(|f| f.check == id).collect() };
        let no_pk = of(ids::DATA_PRIMARY_KEY);
        assert_eq!(no_pk.len(), 1, "the partitioned parent is skipped");
        assert!(
            no_pk[0]
                .summary
                .starts_with("public.audit has no primary key")
        );
        let unique = of(ids::DATA_UNIQUE_INDEXES);
        assert_eq!(
            unique[0].summary,
            "public.users has a primary key (id) and unique index users_email_key (email)"
        );
        let unlogged = of(ids::DATA_UNLOGGED);
        assert!(
            unlogged[0]
                .summary
                .starts_with("public.scratch is unlogged")
        );
        assert!(found.iter().all(|f| f.severity == Severity::Warn));

        let clean = judge_tables(&tables[..1]);
        assert_eq!(clean.len(), 3);
        assert!(clean.iter().all(|f| f.severity == Severity::Ok));
    }

    #[test]
    fn large_objects_warn() {
        assert_eq!(large_objects_finding(0).severity, Severity::Ok);
        let some = large_objects_finding(3);
        assert_eq!(some.severity, Severity::Warn);
        assert!(some.summary.starts_with("3 large objects"));
    }
}
