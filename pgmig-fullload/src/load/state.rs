//! The load's state in the target's `pgmig` schema: one row per task (a
//! chunk to copy, an index to build, a table to finish, the final
//! post-data), claimed with `FOR UPDATE SKIP LOCKED` and marked done in the
//! same transaction as its work — so a crash at any moment leaves each task
//! either done with its data or not done without it, and several loaders
//! can share one load.
//!
//! A task is ready when every task of a lower phase is done: for the same
//! table in phases 2–3 (a table's indexes wait for its chunks only), for
//! every table in phase 4.

use pgmig_core::{Error, Lsn, QualifiedTable};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

use super::chunk::Split;
use super::options::CopyFormat;

/// The statements that create the load's tables; each is idempotent.
pub const SCHEMA_SQL: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS pgmig",
    "CREATE TABLE IF NOT EXISTS pgmig.load (\
       id int PRIMARY KEY CHECK (id = 1), \
       pause_lsn pg_lsn NOT NULL, \
       options jsonb NOT NULL, \
       planned_at timestamptz NOT NULL DEFAULT now(), \
       finished_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS pgmig.load_task (\
       id int PRIMARY KEY, \
       phase smallint NOT NULL, \
       kind text NOT NULL, \
       table_schema text, \
       table_name text, \
       chunk int, \
       chunks int, \
       split text, \
       key_column text, \
       lo bigint, \
       hi bigint, \
       format text, \
       columns text, \
       sql text, \
       drop_sql text, \
       weight bigint NOT NULL DEFAULT 0, \
       rows bigint, \
       bytes bigint, \
       worker text, \
       done_at timestamptz)",
];

/// Copy a chunk.
pub const PHASE_COPY: i16 = 1;
/// Build one index of a table whose chunks are all done.
pub const PHASE_INDEX: i16 = 2;
/// Attach a table's constraints to their indexes, then `ANALYZE` it.
pub const PHASE_FINISH_TABLE: i16 = 3;
/// The rest of post-data and the sequences, once every table is finished.
pub const PHASE_POST_DATA: i16 = 4;

/// What a task does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskKind {
    /// Copy one chunk of a table.
    Copy {
        /// Which rows.
        #[serde(flatten)]
        split: Split,
        /// The chunk's number, from 0.
        chunk: i32,
        /// How many chunks the table has.
        chunks: i32,
        /// The COPY format.
        format: CopyFormat,
        /// The quoted column list, `(a, "B", c)`.
        columns: String,
    },
    /// Build one index.
    Index {
        /// `CREATE [UNIQUE] INDEX …`.
        sql: String,
        /// How to undo it (`--restart`).
        drop_sql: String,
    },
    /// Attach constraints to their indexes and analyze the table.
    FinishTable {
        /// The statements, `;`-separated (may be empty).
        sql: String,
        /// How to undo them.
        drop_sql: String,
    },
    /// The rest of post-data.
    PostData {
        /// The script (plain SQL, no psql meta-commands).
        sql: String,
    },
    /// Set every sequence on the target to its value on the replica.
    Sequences,
}

impl TaskKind {
    /// The stored kind name.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Copy { .. } => "copy",
            TaskKind::Index { .. } => "index",
            TaskKind::FinishTable { .. } => "finish_table",
            TaskKind::PostData { .. } => "post_data",
            TaskKind::Sequences => "sequences",
        }
    }

    /// The task's phase.
    pub fn phase(&self) -> i16 {
        match self {
            TaskKind::Copy { .. } => PHASE_COPY,
            TaskKind::Index { .. } => PHASE_INDEX,
            TaskKind::FinishTable { .. } => PHASE_FINISH_TABLE,
            TaskKind::PostData { .. } | TaskKind::Sequences => PHASE_POST_DATA,
        }
    }
}

/// One unit of the load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Its id (its position in the plan).
    pub id: i32,
    /// The table it belongs to (none for the final tasks).
    pub table: Option<QualifiedTable>,
    /// What it does.
    #[serde(flatten)]
    pub kind: TaskKind,
    /// Bigger first within a phase (the table's size).
    pub weight: i64,
}

/// Serializes [`ensure_schema`] between loaders: two concurrent `CREATE
/// TABLE IF NOT EXISTS` of the same table can both pass the check and one
/// then fails on the catalog's unique index.
const SCHEMA_LOCK: i64 = 0x7067_6d69_675f_6c64; // "pgmig_ld"

/// Creates the load's tables (idempotent, safe to race with other loaders).
pub async fn ensure_schema(client: &impl GenericClient) -> Result<(), Error> {
    let mut sql = format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); ");
    for statement in SCHEMA_SQL {
        sql.push_str(statement);
        sql.push_str("; ");
    }
    sql.push_str("COMMIT");
    if let Err(e) = client.batch_execute(&sql).await {
        // Leave the session usable: the failed statement aborted the block.
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::query("create the load's state tables")(e));
    }
    Ok(())
}

/// The P the recorded load was planned at, if a load was planned.
pub async fn planned_at(client: &impl GenericClient) -> Result<Option<Lsn>, Error> {
    if !pgmig_core::state::table_exists(client, "pgmig.load").await? {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT pause_lsn FROM pgmig.load WHERE id = 1", &[])
        .await
        .map_err(Error::query("read the load state"))?;
    Ok(row.map(|r| Lsn::from(r.get::<_, PgLsn>(0))))
}

/// Records a planned load and its tasks (in the caller's transaction).
pub async fn insert_plan(
    client: &impl GenericClient,
    p: Lsn,
    options_json: &str,
    tasks: &[Task],
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO pgmig.load (id, pause_lsn, options) VALUES (1, $1, $2::text::jsonb)",
            &[&PgLsn::from(u64::from(p)), &options_json],
        )
        .await
        .map_err(Error::query("record the load plan"))?;
    let insert = client
        .prepare(
            "INSERT INTO pgmig.load_task (id, phase, kind, table_schema, table_name, chunk, chunks, split, \
             key_column, lo, hi, format, columns, sql, drop_sql, weight) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .await
        .map_err(Error::query("record the load plan"))?;
    for t in tasks {
        let (schema, name) = match &t.table {
            Some(q) => (Some(q.schema.as_str()), Some(q.name.as_str())),
            None => (None, None),
        };
        let mut chunk = None;
        let mut chunks = None;
        let mut split_kind = None;
        let mut key_column = None;
        let mut lo = None;
        let mut hi = None;
        let mut format = None;
        let mut columns = None;
        let mut sql = None;
        let mut drop_sql = None;
        match &t.kind {
            TaskKind::Copy {
                split,
                chunk: c,
                chunks: n,
                format: f,
                columns: cols,
            } => {
                chunk = Some(*c);
                chunks = Some(*n);
                split_kind = Some(split.kind());
                format = Some(f.sql());
                columns = Some(cols.as_str());
                match split {
                    Split::Whole => {}
                    Split::Key {
                        column,
                        lo: l,
                        hi: h,
                    } => {
                        key_column = Some(column.as_str());
                        lo = *l;
                        hi = *h;
                    }
                    Split::Pages { lo: l, hi: h } => {
                        lo = Some(*l);
                        hi = *h;
                    }
                }
            }
            TaskKind::Index {
                sql: s,
                drop_sql: d,
            }
            | TaskKind::FinishTable {
                sql: s,
                drop_sql: d,
            } => {
                sql = Some(s.as_str());
                drop_sql = Some(d.as_str());
            }
            TaskKind::PostData { sql: s } => sql = Some(s.as_str()),
            TaskKind::Sequences => {}
        }
        client
            .execute(
                &insert,
                &[
                    &t.id,
                    &t.kind.phase(),
                    &t.kind.name(),
                    &schema,
                    &name,
                    &chunk,
                    &chunks,
                    &split_kind,
                    &key_column,
                    &lo,
                    &hi,
                    &format,
                    &columns,
                    &sql,
                    &drop_sql,
                    &t.weight,
                ],
            )
            .await
            .map_err(Error::query("record the load plan"))?;
    }
    Ok(())
}

const TASK_COLUMNS: &str = "t.id, t.kind, t.table_schema, t.table_name, t.chunk, t.chunks, t.split, \
     t.key_column, t.lo, t.hi, t.format, t.columns, t.sql, t.drop_sql, t.weight";

/// Claims the next ready task, locking its row until the caller's
/// transaction ends. Finishing tables comes before starting new copies, so
/// index builds overlap the copy of other tables; within a phase, bigger
/// tables first.
pub const CLAIM_SQL: &str = "SELECT t.id, t.kind, t.table_schema, t.table_name, t.chunk, t.chunks, t.split, \
     t.key_column, t.lo, t.hi, t.format, t.columns, t.sql, t.drop_sql, t.weight \
     FROM pgmig.load_task t \
     WHERE t.done_at IS NULL \
       AND NOT EXISTS (SELECT 1 FROM pgmig.load_task d WHERE d.done_at IS NULL AND d.phase < t.phase \
             AND (t.phase = 4 OR (d.table_schema = t.table_schema AND d.table_name = t.table_name))) \
     ORDER BY t.phase DESC, t.weight DESC, t.id \
     LIMIT 1 FOR UPDATE OF t SKIP LOCKED";

/// Marks a claimed task done (in the transaction that did its work).
pub const DONE_SQL: &str = "UPDATE pgmig.load_task SET done_at = clock_timestamp(), rows = $2, bytes = $3, worker = $4 \
     WHERE id = $1 AND done_at IS NULL";

fn task_of_row(row: &tokio_postgres::Row) -> Result<Task, Error> {
    let corrupt = |detail: String| Error::Protocol {
        what: "read a load task".into(),
        detail,
    };
    let id: i32 = row.get(0);
    let kind: String = row.get(1);
    let table = match (
        row.get::<_, Option<String>>(2),
        row.get::<_, Option<String>>(3),
    ) {
        (Some(s), Some(n)) => Some(QualifiedTable::new(s, n)),
        _ => None,
    };
    let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
    let kind = match kind.as_str() {
        "copy" => {
            let split = match text(6).as_str() {
                "whole" => Split::Whole,
                "key" => Split::Key {
                    column: text(7),
                    lo: row.get(8),
                    hi: row.get(9),
                },
                "pages" => Split::Pages {
                    lo: row.get::<_, Option<i64>>(8).unwrap_or(0),
                    hi: row.get(9),
                },
                other => return Err(corrupt(format!("task {id}: split {other:?}"))),
            };
            TaskKind::Copy {
                split,
                chunk: row.get::<_, Option<i32>>(4).unwrap_or(0),
                chunks: row.get::<_, Option<i32>>(5).unwrap_or(1),
                format: if text(10) == "binary" {
                    CopyFormat::Binary
                } else {
                    CopyFormat::Text
                },
                columns: text(11),
            }
        }
        "index" => TaskKind::Index {
            sql: text(12),
            drop_sql: text(13),
        },
        "finish_table" => TaskKind::FinishTable {
            sql: text(12),
            drop_sql: text(13),
        },
        "post_data" => TaskKind::PostData { sql: text(12) },
        "sequences" => TaskKind::Sequences,
        other => return Err(corrupt(format!("task {id}: kind {other:?}"))),
    };
    Ok(Task {
        id,
        table,
        kind,
        weight: row.get(14),
    })
}

/// Claims the next ready task (see [`CLAIM_SQL`]).
pub async fn claim(client: &impl GenericClient) -> Result<Option<Task>, Error> {
    let row = client
        .query_opt(CLAIM_SQL, &[])
        .await
        .map_err(Error::query("claim a load task"))?;
    row.as_ref().map(task_of_row).transpose()
}

/// Every task with whether it is done and its figures.
pub async fn all_tasks(client: &impl GenericClient) -> Result<Vec<(Task, TaskFigures)>, Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {TASK_COLUMNS}, t.done_at IS NOT NULL, t.rows, t.bytes FROM pgmig.load_task t ORDER BY t.id"
            ),
            &[],
        )
        .await
        .map_err(Error::query("read the load tasks"))?;
    rows.iter()
        .map(|r| {
            Ok((
                task_of_row(r)?,
                TaskFigures {
                    done: r.get(15),
                    rows: r.get::<_, Option<i64>>(16).unwrap_or(0),
                    bytes: r.get::<_, Option<i64>>(17).unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// What a done task recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskFigures {
    /// Whether it is done.
    pub done: bool,
    /// Rows copied (copy tasks).
    pub rows: i64,
    /// Bytes streamed (copy tasks).
    pub bytes: i64,
}

/// How many tasks are not done yet.
pub async fn remaining(client: &impl GenericClient) -> Result<i64, Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pgmig.load_task WHERE done_at IS NULL",
            &[],
        )
        .await
        .map_err(Error::query("count the remaining load tasks"))?;
    Ok(row.get(0))
}
