//! Planning a load: which tables, which chunks in which format, which
//! indexes to build per table, and what is left of post-data.

use std::collections::HashMap;

use pgmig_core::catalog::{TableInfo, list_sequences, list_tables};
use pgmig_core::ident::quote_ident;
use pgmig_core::state::MigrationRecord;
use pgmig_core::{QualifiedTable, ServerRole, ServerVersion};
use serde::Serialize;
use tokio_postgres::Client;

use super::LoadOptions;
use super::chunk::{Split, plan_chunks};
use super::error::LoadError;
use super::format::choose_formats;
use super::postdata::{index_work, split_post_data};
use super::state::{Task, TaskKind};
use crate::schema::stored_sections;

/// A load's plan: its tasks in order.
#[derive(Debug, Clone, Serialize)]
pub struct LoadPlan {
    /// Every task.
    pub tasks: Vec<Task>,
    /// Index and constraint entries moved out of post-data into per-table
    /// tasks.
    pub moved: Vec<String>,
}

/// The quoted column list a COPY names: the replica's live, non-generated
/// columns, checked against the target's; and whether every column has the
/// same type on both sides (binary COPY reads bytes by the target's type,
/// so a changed type must travel as text).
fn copy_columns(replica: &TableInfo, target: &TableInfo) -> Result<(String, bool), LoadError> {
    let mut cols = Vec::new();
    let mut same_types = true;
    for c in replica.copy_columns() {
        match target.columns.iter().find(|t| t.name == c.name) {
            None => {
                return Err(LoadError::ColumnMismatch {
                    table: replica.table.clone(),
                    column: c.name.clone(),
                    problem: "is missing",
                });
            }
            Some(t) if t.generated => {
                return Err(LoadError::ColumnMismatch {
                    table: replica.table.clone(),
                    column: c.name.clone(),
                    problem: "is a generated column",
                });
            }
            Some(t) => {
                same_types &= t.type_name == c.type_name;
                cols.push(quote_ident(&c.name))
            }
        }
    }
    Ok((format!("({})", cols.join(", ")), same_types))
}

/// Removes psql's `\restrict` / `\unrestrict` lines: the script runs through
/// the driver, where any other backslash line is a syntax error (safe).
fn plain_sql(script: &str) -> String {
    script
        .lines()
        .filter(|l| !(l.starts_with("\\restrict ") || l.starts_with("\\unrestrict ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Plans the load of `migration`'s tables from the replica into the target.
pub async fn plan_load(
    replica: &Client,
    replica_version: ServerVersion,
    target: &Client,
    target_version: ServerVersion,
    migration: &MigrationRecord,
    opts: &LoadOptions,
) -> Result<LoadPlan, LoadError> {
    let replica_tables = list_tables(replica, replica_version).await?;
    let target_tables = list_tables(target, target_version).await?;
    let by_name = |tables: &[TableInfo]| -> HashMap<QualifiedTable, TableInfo> {
        tables
            .iter()
            .map(|t| (t.table.clone(), t.clone()))
            .collect()
    };
    let (on_replica, on_target) = (by_name(&replica_tables), by_name(&target_tables));
    let mut planned: Vec<(TableInfo, String)> = Vec::new();
    let mut retyped: std::collections::HashSet<u32> = std::collections::HashSet::new();
    for (_, pt) in migration.plan.tables() {
        let r = on_replica
            .get(&pt.table)
            .ok_or_else(|| LoadError::MissingTable {
                table: pt.table.clone(),
                role: ServerRole::Replica,
                hint: " (at P): the plan names a table the source did not have when the replica was paused",
            })?;
        let t = on_target
            .get(&pt.table)
            .ok_or_else(|| LoadError::MissingTable {
                table: pt.table.clone(),
                role: ServerRole::Target,
                hint: ": run `pgmig schema` first",
            })?;
        let (columns, same_types) = copy_columns(r, t)?;
        if !same_types {
            retyped.insert(r.oid);
        }
        planned.push((r.clone(), columns));
    }
    // Largest first.
    planned.sort_by(|a, b| {
        b.0.table_bytes
            .cmp(&a.0.table_bytes)
            .then_with(|| a.0.table.cmp(&b.0.table))
    });
    let oids: Vec<u32> = planned.iter().map(|(t, _)| t.oid).collect();
    let formats = choose_formats(
        replica,
        &oids,
        replica_version.major() == target_version.major(),
        opts.format,
    )
    .await?;

    let mut tasks = Vec::new();
    let mut next_id = 0;
    let mut push = |table: Option<QualifiedTable>, kind: TaskKind, weight: i64| {
        next_id += 1;
        tasks.push(Task {
            id: next_id,
            table,
            kind,
            weight,
        });
    };
    for (info, columns) in &planned {
        let splits = plan_chunks(replica, replica_version, info, opts.chunk_bytes.0).await?;
        let n = splits.len() as i32;
        for (i, split) in splits.into_iter().enumerate() {
            push(
                Some(info.table.clone()),
                TaskKind::Copy {
                    split,
                    chunk: i as i32,
                    chunks: n,
                    format: if retyped.contains(&info.oid) {
                        super::CopyFormat::Text
                    } else {
                        formats
                            .get(&info.oid)
                            .copied()
                            .unwrap_or(super::CopyFormat::Text)
                    },
                    columns: columns.clone(),
                },
                info.table_bytes,
            );
        }
    }

    let sections = stored_sections(target).await?;
    let post = sections.post_data.map(|s| s.sql).unwrap_or_default();
    let names: Vec<QualifiedTable> = planned.iter().map(|(t, _)| t.table.clone()).collect();
    let work = index_work(replica, &names).await?;
    let split = split_post_data(&post, work);
    let weights: HashMap<&QualifiedTable, i64> = planned
        .iter()
        .map(|(t, _)| (&t.table, t.table_bytes))
        .collect();
    for w in &split.work {
        let weight = weights.get(&w.table).copied().unwrap_or(0);
        for b in &w.builds {
            push(
                Some(w.table.clone()),
                TaskKind::Index {
                    sql: b.create_sql.clone(),
                    drop_sql: b.drop_sql.clone(),
                },
                weight,
            );
        }
    }
    let by_table: HashMap<&QualifiedTable, &super::postdata::TableIndexWork> =
        split.work.iter().map(|w| (&w.table, w)).collect();
    for (info, _) in &planned {
        let (sql, drop_sql) = match by_table.get(&info.table) {
            Some(w) => (
                w.constraints
                    .iter()
                    .map(|c| c.sql.trim_end_matches(';').to_string())
                    .collect::<Vec<_>>()
                    .join(";\n"),
                w.constraints
                    .iter()
                    .rev()
                    .map(|c| c.drop_sql.trim_end_matches(';').to_string())
                    .collect::<Vec<_>>()
                    .join(";\n"),
            ),
            None => (String::new(), String::new()),
        };
        push(
            Some(info.table.clone()),
            TaskKind::FinishTable { sql, drop_sql },
            info.table_bytes,
        );
    }
    push(
        None,
        TaskKind::PostData {
            sql: plain_sql(&split.remaining_script),
        },
        0,
    );
    if !list_sequences(replica).await?.is_empty() {
        push(None, TaskKind::Sequences, 0);
    }
    Ok(LoadPlan {
        tasks,
        moved: split.moved,
    })
}

/// The statements a task runs, per server, for `--dry-run`.
pub fn task_statements(task: &Task) -> Vec<(ServerRole, String)> {
    let table = task.table.as_ref().map(|t| t.quoted()).unwrap_or_default();
    match &task.kind {
        TaskKind::Copy {
            split,
            format,
            columns,
            chunk,
            chunks,
        } => {
            let (out, inn) = copy_sql(&table, columns, split, *format, *chunks == 1);
            let _ = chunk;
            vec![(ServerRole::Replica, out), (ServerRole::Target, inn)]
        }
        TaskKind::Index { sql, .. } => vec![(ServerRole::Target, sql.clone())],
        TaskKind::FinishTable { sql, .. } => {
            let mut v = Vec::new();
            if !sql.is_empty() {
                v.push((ServerRole::Target, sql.clone()));
            }
            v.push((ServerRole::Target, format!("ANALYZE {table}")));
            v
        }
        TaskKind::PostData { sql } => vec![(ServerRole::Target, sql.clone())],
        TaskKind::Sequences => vec![(
            ServerRole::Target,
            "SELECT setval(<sequence>, <last_value on the replica>, <is_called>) -- for every sequence".into(),
        )],
    }
}

/// The COPY statements of a chunk: (replica `TO STDOUT`, target `FROM STDIN`).
/// A whole-table chunk is frozen on the way in (after a `TRUNCATE` in the
/// same transaction).
pub fn copy_sql(
    table: &str,
    columns: &str,
    split: &Split,
    format: super::CopyFormat,
    whole: bool,
) -> (String, String) {
    let f = format.sql();
    // A table without columns: no list (`()` is a syntax error).
    let columns = if columns == "()" { "" } else { columns };
    let out = match split.condition() {
        None => format!("COPY {table} {columns} TO STDOUT (FORMAT {f})"),
        Some(cond) => {
            let cols = columns.trim_start_matches('(').trim_end_matches(')');
            format!("COPY (SELECT {cols} FROM ONLY {table} WHERE {cond}) TO STDOUT (FORMAT {f})")
        }
    };
    let freeze = if whole && matches!(split, Split::Whole) {
        ", FREEZE"
    } else {
        ""
    };
    let inn = format!("COPY {table} {columns} FROM STDIN (FORMAT {f}{freeze})");
    (out, inn)
}
