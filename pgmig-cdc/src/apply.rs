//! Applying source transactions to the target: each change becomes one
//! statement with text parameters cast to the target column types; a batch
//! of transactions and the slot's progress row commit in one target
//! transaction, so the target never holds one without the other.
//!
//! - INSERT: every column sent (generated columns are left to the target);
//! - UPDATE: the columns sent — an unchanged TOASTed column is absent from
//!   pglogical's new tuple and keeps its target value — found by the old key
//!   when the key changed, by the new row's key otherwise; it must match
//!   exactly one row;
//! - DELETE: by the old key; it must match exactly one row;
//! - TRUNCATE: consecutive truncates of one transaction in one statement.
//!
//! Statements are prepared once per shape and sent pipelined, a window at a
//! time, in source order.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use pgmig_core::locks::{describe_holders, lock_holders};
use pgmig_core::{Lsn, QualifiedTable, ServerVersion};
use pgmig_pglogical::{Change, ColumnValue, Message, Tuple};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};
use tracing::{debug, warn};

use crate::error::{CdcError, RowMismatch, ValueFailure};
use crate::progress::RECORD_PROGRESS_SQL;
use crate::table::{
    TargetColumn, TargetTable, delete_sql, insert_rows_sql, insert_sql, load_table, truncate_sql,
    update_sql,
};
use crate::value::text_value;
use crate::worker::Watchdog;

/// Statements sent at once, pipelined on the one connection.
///
/// Order is kept: tokio-postgres sends a statement when its future is first
/// polled, and `join_all` first polls its futures in the order given (in
/// place up to 30, through a FIFO `FuturesOrdered` beyond), so the server
/// runs them in source order; an error aborts the transaction and the rest
/// fail after it.
const WINDOW: usize = 200;

/// Statements built before they are sent: bounds the memory a large source
/// transaction takes while it streams in.
const FLUSH_OPS: usize = 2000;

/// One statement to run.
struct Op {
    sql: String,
    params: Vec<Option<String>>,
    /// For UPDATE and DELETE: must touch exactly one row.
    check: Option<RowCheck>,
    /// For a one-row INSERT: its table and columns (indexes into the
    /// table's), so that a run of them can become one multi-row INSERT.
    insert: Option<(Arc<TargetTable>, Vec<usize>)>,
    /// The tables it writes: named with the sessions holding locks on
    /// them when it waited longer than `lock_timeout`.
    tables: Vec<QualifiedTable>,
}

/// Most rows in one multi-row INSERT.
const MAX_INSERT_ROWS: usize = 100;
/// Most parameters in one multi-row INSERT.
const MAX_INSERT_PARAMS: usize = 20_000;

/// Turns runs of one-row INSERTs of the same shape into multi-row INSERTs,
/// keeping the order of everything. Runs are cut in pieces of the largest
/// size, then tens, then ones, so each shape needs at most three prepared
/// statements.
fn merge_inserts(ops: Vec<Op>) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    let mut run: Vec<Op> = Vec::new();
    for op in ops {
        let same = run
            .first()
            .is_some_and(|first| op.insert.is_some() && first.sql == op.sql);
        if !same {
            flush_run(&mut run, &mut out);
        }
        if op.insert.is_some() {
            run.push(op);
        } else {
            out.push(op);
        }
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<Op>, out: &mut Vec<Op>) {
    if run.len() <= 1 {
        out.append(run);
        return;
    }
    let Some((table, idx)) = run[0].insert.clone() else {
        out.append(run);
        return;
    };
    let columns: Vec<&TargetColumn> = idx.iter().map(|&i| &table.columns[i]).collect();
    let big = (MAX_INSERT_PARAMS / columns.len().max(1)).clamp(1, MAX_INSERT_ROWS);
    let mut rest = std::mem::take(run).into_iter().peekable();
    let mut left = rest.len();
    while left > 0 {
        let size = if left >= big {
            big
        } else if left >= 10 {
            10
        } else {
            1
        };
        let mut params = Vec::with_capacity(size * columns.len());
        for op in rest.by_ref().take(size) {
            params.extend(op.params);
        }
        out.push(Op {
            sql: insert_rows_sql(&table.table, &columns, size),
            params,
            check: None,
            insert: None,
            tables: vec![table.table.clone()],
        });
        left -= size;
    }
}

struct RowCheck {
    table: QualifiedTable,
    op: &'static str,
    key: String,
    lsn: Lsn,
}

/// Why a run of statements failed.
enum OpFailure {
    /// The statement at this index gave up waiting for a lock.
    LockTimeout(usize, tokio_postgres::Error),
    /// Anything else.
    Other(CdcError),
}

/// Whether the server cancelled a statement because it waited longer than
/// `lock_timeout`.
fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

/// What one applied batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Source transactions recorded (with or without changes).
    pub transactions: u64,
    /// Row changes (and truncates) applied.
    pub changes: u64,
}

/// A row's key: its columns, their values as text, and the key as JSON
/// for messages.
type Key<'t> = (Vec<&'t TargetColumn>, Vec<Option<String>>, String);

/// Applies one slot's transactions to the target, on one connection.
pub(crate) struct Applier {
    slot: String,
    target: Client,
    version: ServerVersion,
    tables: HashMap<QualifiedTable, Arc<TargetTable>>,
    statements: HashMap<String, Statement>,
    /// Statements built but not sent yet.
    pending: Vec<Op>,
    /// Whether a target transaction is open.
    in_transaction: bool,
    /// The session's `lock_timeout`, for messages.
    lock_timeout: std::time::Duration,
    /// Told of every answer from the target.
    watchdog: Arc<Watchdog>,
}

impl Applier {
    /// An applier on `target`, a connection whose session already runs with
    /// `session_replication_role = replica` and `lock_timeout`; each answer
    /// from the target is told to `watchdog`.
    pub(crate) fn new(
        slot: &str,
        target: Client,
        version: ServerVersion,
        lock_timeout: std::time::Duration,
        watchdog: Arc<Watchdog>,
    ) -> Applier {
        Applier {
            slot: slot.to_owned(),
            target,
            version,
            tables: HashMap::new(),
            statements: HashMap::new(),
            pending: Vec::new(),
            in_transaction: false,
            lock_timeout,
            watchdog,
        }
    }

    fn query_error(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> CdcError {
        let slot = self.slot.clone();
        let what = what.into();
        move |source| CdcError::Query { slot, what, source }
    }

    async fn table(&mut self, table: &QualifiedTable) -> Result<Arc<TargetTable>, CdcError> {
        if let Some(t) = self.tables.get(table) {
            return Ok(t.clone());
        }
        let t = load_table(&self.target, self.version, table)
            .await?
            .ok_or_else(|| CdcError::UnknownTable {
                slot: self.slot.clone(),
                table: table.clone(),
            })?;
        let t = Arc::new(t);
        self.tables.insert(table.clone(), t.clone());
        Ok(t)
    }

    /// Adds changes of one source transaction to the target transaction,
    /// which begins with the first of them; statements are sent once
    /// [`FLUSH_OPS`] are waiting. A run of TRUNCATEs must not be split
    /// between two calls. Returns how many row changes (and truncates) the
    /// changes held.
    pub(crate) async fn add(&mut self, changes: &[Change]) -> Result<u64, CdcError> {
        if !self.in_transaction {
            self.target
                .batch_execute("BEGIN")
                .await
                .map_err(self.query_error("begin a target transaction"))?;
            self.in_transaction = true;
        }
        let mut ops = std::mem::take(&mut self.pending);
        let counted = self.ops_of(changes, &mut ops).await;
        self.pending = ops;
        let counted = counted?;
        if self.pending.len() >= FLUSH_OPS {
            self.flush().await?;
        }
        Ok(counted)
    }

    /// Sends the waiting statements and checks their row counts.
    async fn flush(&mut self) -> Result<(), CdcError> {
        let ops = merge_inserts(std::mem::take(&mut self.pending));
        for op in &ops {
            if !self.statements.contains_key(&op.sql) {
                // Preparing takes the table's lock too: it may wait for it.
                let stmt = match self.target.prepare(&op.sql).await {
                    Ok(stmt) => stmt,
                    Err(e) if is_lock_timeout(&e) => {
                        return Err(self.lock_timeout(&op.tables, e).await);
                    }
                    Err(e) => return Err(self.query_error(format!("prepare {}", op.sql))(e)),
                };
                self.statements.insert(op.sql.clone(), stmt);
                self.watchdog.touch();
            }
        }
        match self.run_ops(&ops).await {
            Err(OpFailure::LockTimeout(i, e)) => Err(self.lock_timeout(&ops[i].tables, e).await),
            Err(OpFailure::Other(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// The error for a statement that gave up waiting for a lock on
    /// `tables`: the transaction is rolled back, then the sessions holding
    /// locks on them are named.
    async fn lock_timeout(
        &mut self,
        tables: &[QualifiedTable],
        source: tokio_postgres::Error,
    ) -> CdcError {
        self.rollback().await;
        let mut holders = Vec::new();
        for table in tables {
            let named = match lock_holders(&self.target, table).await {
                Ok(found) => describe_holders(&found),
                Err(e) => format!("the sessions could not be listed ({e})"),
            };
            holders.push(format!("{table}: {named}"));
        }
        CdcError::LockTimeout {
            slot: self.slot.clone(),
            tables: tables
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            waited_s: self.lock_timeout.as_secs_f64(),
            holders: holders.join("; "),
            source,
        }
    }

    /// Moves the progress row from `from` to `to` and commits the target
    /// transaction (beginning one when no change was added: the source
    /// transactions held none for this slot).
    pub(crate) async fn commit(
        &mut self,
        from: Lsn,
        to: Lsn,
        commit_time: Option<String>,
        applied: Applied,
    ) -> Result<(), CdcError> {
        if !self.in_transaction {
            self.target
                .batch_execute("BEGIN")
                .await
                .map_err(self.query_error("begin a target transaction"))?;
            self.in_transaction = true;
        }
        self.flush().await?;
        let moved = self
            .target
            .execute(
                RECORD_PROGRESS_SQL,
                &[
                    &self.slot,
                    &tokio_postgres::types::PgLsn::from(from),
                    &tokio_postgres::types::PgLsn::from(to),
                    &commit_time,
                    &(applied.transactions as i64),
                    &(applied.changes as i64),
                ],
            )
            .await
            .map_err(self.query_error("record the applied position"))?;
        if moved != 1 {
            return Err(CdcError::ProgressMoved {
                slot: self.slot.clone(),
                expected: from,
            });
        }
        self.target
            .batch_execute("COMMIT")
            .await
            .map_err(self.query_error("commit the applied transactions"))?;
        self.in_transaction = false;
        debug!(slot = %self.slot, from = %from, to = %to, transactions = applied.transactions,
            changes = applied.changes, "applied");
        Ok(())
    }

    /// Rolls the target transaction back, if one is open (best effort: a
    /// lost connection rolls it back anyway).
    pub(crate) async fn rollback(&mut self) {
        self.pending.clear();
        if self.in_transaction {
            let _ = self.target.batch_execute("ROLLBACK").await;
            self.in_transaction = false;
        }
    }

    async fn run_ops(&self, ops: &[Op]) -> Result<(), OpFailure> {
        for (w, window) in ops.chunks(WINDOW).enumerate() {
            let offset = w * WINDOW;
            let results = join_all(window.iter().map(|op| {
                let stmt = &self.statements[&op.sql];
                async move {
                    let params: Vec<&(dyn ToSql + Sync)> =
                        op.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                    self.target.execute(stmt, &params).await
                }
            }))
            .await;
            // A window answered: a long transaction going on is no stall.
            self.watchdog.touch();
            for (i, (op, result)) in window.iter().zip(results).enumerate() {
                let rows = match result {
                    Ok(rows) => rows,
                    Err(e) if is_lock_timeout(&e) => {
                        return Err(OpFailure::LockTimeout(offset + i, e));
                    }
                    Err(e) => {
                        return Err(OpFailure::Other(self
                            .query_error(format!("apply {}", op.sql))(
                            e
                        )));
                    }
                };
                if let Some(check) = &op.check
                    && rows != 1
                {
                    return Err(OpFailure::Other(CdcError::RowMismatch(Box::new(
                        RowMismatch {
                            slot: self.slot.clone(),
                            table: check.table.clone(),
                            op: check.op,
                            key: check.key.clone(),
                            rows,
                            lsn: check.lsn,
                        },
                    ))));
                }
            }
        }
        Ok(())
    }

    /// The statements of `changes` (of one source transaction), appended to
    /// `ops`; how many row changes and truncates they hold.
    async fn ops_of(&mut self, changes: &[Change], ops: &mut Vec<Op>) -> Result<u64, CdcError> {
        let mut counted = 0;
        let mut truncating: Vec<QualifiedTable> = Vec::new();
        for change in changes {
            let at = change.lsn;
            if !matches!(change.message, Message::Truncate(_)) && !truncating.is_empty() {
                let tables = std::mem::take(&mut truncating);
                ops.push(Op {
                    sql: truncate_sql(&tables),
                    params: Vec::new(),
                    check: None,
                    insert: None,
                    tables,
                });
            }
            match &change.message {
                Message::Insert(m) => {
                    let table = self.table(&m.relation).await?;
                    ops.push(self.insert_op(&table, &m.new_tuple, at)?);
                    counted += 1;
                }
                Message::Update(m) => {
                    let table = self.table(&m.relation).await?;
                    ops.push(self.update_op(&table, m.identifying_tuple(), &m.new_tuple, at)?);
                    counted += 1;
                }
                Message::Delete(m) => {
                    let table = self.table(&m.relation).await?;
                    ops.push(self.delete_op(&table, &m.old_tuple, at)?);
                    counted += 1;
                }
                Message::Truncate(m) => {
                    let table = self.table(&m.relation).await?;
                    if !truncating.contains(&table.table) {
                        truncating.push(table.table.clone());
                    }
                    counted += 1;
                }
                Message::SequenceSync(m) => {
                    debug!(slot = %self.slot, sequence = %m.sequence, "sequence sync skipped: cutover sets sequences");
                }
                Message::Queued(m) => {
                    warn!(slot = %self.slot, message_type = %m.message_type, lsn = %at,
                        "skipped a pglogical queue message of unknown type");
                }
                Message::QueuedSql(m) => {
                    return Err(CdcError::Unsupported {
                        slot: self.slot.clone(),
                        what: format!("SQL queued by pglogical.replicate_ddl_command: {}", m.sql),
                        lsn: at,
                    });
                }
                other => {
                    return Err(CdcError::Unsupported {
                        slot: self.slot.clone(),
                        what: format!("a {} message", other.kind()),
                        lsn: at,
                    });
                }
            }
        }
        if !truncating.is_empty() {
            ops.push(Op {
                sql: truncate_sql(&truncating),
                params: Vec::new(),
                check: None,
                insert: None,
                tables: truncating,
            });
        }
        Ok(counted)
    }

    fn column<'t>(&self, table: &'t TargetTable, name: &str) -> Result<&'t TargetColumn, CdcError> {
        table.column(name).ok_or_else(|| CdcError::UnknownColumn {
            slot: self.slot.clone(),
            table: table.table.clone(),
            column: name.to_owned(),
        })
    }

    fn text(
        &self,
        table: &TargetTable,
        column: &TargetColumn,
        value: Option<&pgmig_pglogical::Datum>,
        at: Lsn,
    ) -> Result<Option<String>, CdcError> {
        value
            .map(|d| text_value(d, column.shape))
            .transpose()
            .map_err(|source| {
                CdcError::Value(Box::new(ValueFailure {
                    slot: self.slot.clone(),
                    table: table.table.clone(),
                    column: column.name.clone(),
                    lsn: at,
                    source,
                }))
            })
    }

    fn insert_op(&self, table: &Arc<TargetTable>, tuple: &Tuple, at: Lsn) -> Result<Op, CdcError> {
        let mut columns = Vec::with_capacity(tuple.len());
        let mut idx = Vec::with_capacity(tuple.len());
        let mut params = Vec::with_capacity(tuple.len());
        for (name, value) in tuple.iter() {
            let column = self.column(table, name)?;
            if column.generated {
                continue;
            }
            params.push(self.text(table, column, value, at)?);
            columns.push(column);
            idx.push(
                table
                    .columns
                    .iter()
                    .position(|c| c.name == column.name)
                    .unwrap_or_default(),
            );
        }
        Ok(Op {
            sql: insert_sql(&table.table, &columns),
            params,
            check: None,
            insert: Some((table.clone(), idx)),
            tables: vec![table.table.clone()],
        })
    }

    /// The key columns and their values in `tuple`.
    fn key_of<'t>(
        &self,
        table: &'t TargetTable,
        tuple: &Tuple,
        op: &'static str,
        at: Lsn,
    ) -> Result<Key<'t>, CdcError> {
        if table.key.is_empty() {
            return Err(CdcError::NoKey {
                slot: self.slot.clone(),
                table: table.table.clone(),
                op,
            });
        }
        let mut columns = Vec::with_capacity(table.key.len());
        let mut params = Vec::with_capacity(table.key.len());
        let mut key = Tuple::new();
        for name in &table.key {
            let column = self.column(table, name)?;
            let ColumnValue::Value(datum) = tuple.get(name) else {
                return Err(CdcError::Unsupported {
                    slot: self.slot.clone(),
                    what: format!(
                        "{op} on {} without a value for key column {name:?}",
                        table.table
                    ),
                    lsn: at,
                });
            };
            params.push(self.text(table, column, Some(datum), at)?);
            columns.push(column);
            key.push(name.clone(), Some(datum.clone()));
        }
        Ok((columns, params, key.to_json()))
    }

    fn update_op(
        &self,
        table: &TargetTable,
        identifying: &Tuple,
        new_tuple: &Tuple,
        at: Lsn,
    ) -> Result<Op, CdcError> {
        let (key_columns, key_params, key) = self.key_of(table, identifying, "update", at)?;
        let mut set = Vec::with_capacity(new_tuple.len());
        let mut params = Vec::with_capacity(new_tuple.len() + key_params.len());
        for (name, value) in new_tuple.iter() {
            let column = self.column(table, name)?;
            if column.generated {
                continue;
            }
            params.push(self.text(table, column, value, at)?);
            set.push(column);
        }
        params.extend(key_params);
        Ok(Op {
            sql: update_sql(&table.table, &set, &key_columns),
            params,
            insert: None,
            tables: vec![table.table.clone()],
            check: Some(RowCheck {
                table: table.table.clone(),
                op: "update",
                key,
                lsn: at,
            }),
        })
    }

    fn delete_op(&self, table: &TargetTable, old: &Tuple, at: Lsn) -> Result<Op, CdcError> {
        let (key_columns, params, key) = self.key_of(table, old, "delete", at)?;
        Ok(Op {
            sql: delete_sql(&table.table, &key_columns),
            params,
            insert: None,
            tables: vec![table.table.clone()],
            check: Some(RowCheck {
                table: table.table.clone(),
                op: "delete",
                key,
                lsn: at,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ValueShape;

    fn insert(table: &Arc<TargetTable>, v: &str) -> Op {
        let columns: Vec<&TargetColumn> = table.columns.iter().collect();
        Op {
            sql: insert_sql(&table.table, &columns),
            params: vec![Some(v.to_owned())],
            check: None,
            insert: Some((table.clone(), vec![0])),
            tables: vec![table.table.clone()],
        }
    }

    fn other(sql: &str) -> Op {
        Op {
            sql: sql.to_owned(),
            params: Vec::new(),
            check: None,
            insert: None,
            tables: Vec::new(),
        }
    }

    #[test]
    fn runs_of_inserts_merge_in_order() {
        let table = |name: &str| {
            Arc::new(TargetTable {
                table: QualifiedTable::new("public", name),
                columns: vec![TargetColumn {
                    name: "id".into(),
                    type_name: "int".into(),
                    shape: ValueShape::Scalar,
                    generated: false,
                }],
                key: vec!["id".into()],
            })
        };
        let (a, b) = (table("a"), table("b"));
        let mut ops: Vec<Op> = (0..123).map(|i| insert(&a, &i.to_string())).collect();
        ops.push(other("UPDATE a"));
        ops.push(insert(&a, "x"));
        ops.push(insert(&b, "y"));
        ops.push(insert(&b, "z"));
        let merged = merge_inserts(ops);
        let shape: Vec<(usize, &str)> = merged
            .iter()
            .map(|o| {
                (
                    o.params.len(),
                    &o.sql[..o.sql.find(" (").unwrap_or(o.sql.len())],
                )
            })
            .collect();
        let (ins_a, ins_b) = (r#"INSERT INTO "public"."a""#, r#"INSERT INTO "public"."b""#);
        assert_eq!(
            shape,
            vec![
                (100, ins_a),
                (10, ins_a),
                (10, ins_a),
                (1, ins_a),
                (1, ins_a),
                (1, ins_a),
                (0, "UPDATE a"),
                (1, ins_a),
                (1, ins_b),
                (1, ins_b),
            ]
        );
        let params: Vec<String> = merged[..6]
            .iter()
            .flat_map(|o| o.params.iter().map(|p| p.clone().unwrap()))
            .collect();
        assert_eq!(params, (0..123).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(merged[1].sql.ends_with("($9::text::int), ($10::text::int)"));
    }
}
