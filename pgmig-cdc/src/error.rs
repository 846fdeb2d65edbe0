//! The error type of pgmig-cdc.

use pgmig_core::{ErrorKind, Lsn, QualifiedTable};

use crate::value::ValueError;

/// What went wrong while applying changes.
///
/// Refusals ([`CdcError::is_refusal`]) mean the invariant cannot be kept
/// (a slot created after P, a slot consumed by someone else); connection
/// losses ([`CdcError::is_transient`]) are retried by the applier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdcError {
    /// A pgmig-core call failed (connect, catalog, state).
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),

    /// Reading or decoding a slot failed.
    #[error(transparent)]
    Pglogical(#[from] pgmig_pglogical::Error),

    /// The target holds no migration, or no P yet.
    #[error("{0}")]
    NotReady(String),

    /// A slot's position is past what the target holds: applying from there
    /// would lose the changes in between.
    #[error(
        "slot {slot} is ahead of the target: its confirmed_flush_lsn {confirmed_flush} is after {start} \
         ({why}); the changes in between are not in the slot any more, so CDC from it would lose them"
    )]
    SlotAhead {
        /// The slot.
        slot: String,
        /// Its `confirmed_flush_lsn` on the source.
        confirmed_flush: Lsn,
        /// Where the target stands: P, or the last applied commit.
        start: Lsn,
        /// Why it cannot be: `created after P = …` or `consumed by another client`.
        why: String,
    },

    /// A planned slot does not exist on the source.
    #[error("slot {slot} of the plan does not exist on the source")]
    SlotMissing {
        /// The slot.
        slot: String,
    },

    /// Another applier holds the slot.
    #[error("another pgmig applier is applying slot {slot} to this target")]
    SlotBusy {
        /// The slot.
        slot: String,
    },

    /// Another `pgmig cdc` (or cutover) is starting on this target and
    /// holds the start lock for too long.
    #[error(
        "another `pgmig cdc` (or cutover) is starting on this target and did not finish taking its \
         slots within {waited_s:.0} s; stop it, or run again once it is up"
    )]
    RunBusy {
        /// How long this run waited.
        waited_s: f64,
    },

    /// The progress row moved under this applier: another applier committed.
    #[error(
        "the applied position of slot {slot} moved from {expected} while applying; another applier runs"
    )]
    ProgressMoved {
        /// The slot.
        slot: String,
        /// The position this applier started its transaction from.
        expected: Lsn,
    },

    /// A changed table does not exist on the target.
    #[error("slot {slot}: table {table} changed on the source does not exist on the target")]
    UnknownTable {
        /// The slot.
        slot: String,
        /// The table.
        table: QualifiedTable,
    },

    /// A column sent by the source does not exist on the target.
    #[error("slot {slot}: column {column:?} of {table} does not exist on the target")]
    UnknownColumn {
        /// The slot.
        slot: String,
        /// The table.
        table: QualifiedTable,
        /// The column.
        column: String,
    },

    /// An UPDATE or DELETE arrived for a table without a key on the target.
    #[error(
        "slot {slot}: {op} on {table}, which has no primary key or replica identity index on the target"
    )]
    NoKey {
        /// The slot.
        slot: String,
        /// The table.
        table: QualifiedTable,
        /// `update` or `delete`.
        op: &'static str,
    },

    /// A value could not be turned into text input for its column.
    #[error(transparent)]
    Value(Box<ValueFailure>),

    /// An UPDATE or DELETE found no row (or several) by its key: the target
    /// differs from the source.
    #[error(transparent)]
    RowMismatch(Box<RowMismatch>),

    /// A message the applier cannot apply (queued SQL, unknown actions).
    #[error("slot {slot}: cannot apply {what} (the change at {lsn})")]
    Unsupported {
        /// The slot.
        slot: String,
        /// What arrived.
        what: String,
        /// Where the change was written on the source.
        lsn: Lsn,
    },

    /// A statement failed on a server.
    #[error("slot {slot}: {what} failed")]
    Query {
        /// The slot.
        slot: String,
        /// What pgmig was doing.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A statement on the target waited longer than the lock timeout for a
    /// lock another session holds; its transaction was rolled back.
    #[error(
        "slot {slot}: gave up after waiting {waited_s:.0} s (--lock-timeout) for a lock on {tables} on \
         the target; held by {holders}. Nothing of the batch was applied: end that session (or wait for \
         it) and run `pgmig cdc` again"
    )]
    LockTimeout {
        /// The slot.
        slot: String,
        /// The tables the statement writes.
        tables: String,
        /// The `lock_timeout` in seconds.
        waited_s: f64,
        /// The sessions holding locks on them, one description per table.
        holders: String,
        /// The driver's error (`lock_not_available`).
        #[source]
        source: tokio_postgres::Error,
    },

    /// A server gave no answer for longer than the stall timeout: the
    /// connection is treated as lost (and retried).
    #[error(
        "{}no answer from the {server} for {idle_s:.0} s while {doing} (--stall-timeout); \
         treating the connection as lost",
        if .slot.is_empty() { String::new() } else { format!("slot {}: ", .slot) }
    )]
    Stalled {
        /// The slot (empty before the workers start).
        slot: String,
        /// `source` or `target`.
        server: &'static str,
        /// What the applier was waiting for.
        doing: &'static str,
        /// How long it waited.
        idle_s: f64,
    },

    /// A session of an earlier attempt of this applier did not end in
    /// time: it still holds the slot (source) or the slot's lock (target).
    /// Retried like a lost connection.
    #[error(
        "slot {slot}: the session of an earlier attempt on the {server} (pid {pid}) did not end within \
         {waited_s:.0} s{}",
        if *.sync_rep { "; its commit waits for a synchronous standby (wait_event SyncRep), which \
         pgmig does not cut short" } else { " of being terminated" }
    )]
    AbandonedSession {
        /// The slot.
        slot: String,
        /// `source` or `target`.
        server: &'static str,
        /// Its backend pid.
        pid: i32,
        /// How long this attempt waited.
        waited_s: f64,
        /// Whether it waits for a synchronous standby to confirm its commit.
        sync_rep: bool,
    },

    /// The applier was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A value that could not be turned into text input for its column.
#[derive(Debug, thiserror::Error)]
#[error("slot {slot}: column {column:?} of {table} in the change at {lsn}")]
pub struct ValueFailure {
    /// The slot.
    pub slot: String,
    /// The table.
    pub table: QualifiedTable,
    /// The column.
    pub column: String,
    /// Where the change was written on the source.
    pub lsn: Lsn,
    /// What is wrong.
    #[source]
    pub source: ValueError,
}

/// An UPDATE or DELETE that did not match exactly one target row.
#[derive(Debug, thiserror::Error)]
#[error(
    "slot {slot}: {op} on {table} with key {key} matched {rows} rows on the target, not 1 \
     (the change at {lsn}); the target differs from the source"
)]
pub struct RowMismatch {
    /// The slot.
    pub slot: String,
    /// The table.
    pub table: QualifiedTable,
    /// `update` or `delete`.
    pub op: &'static str,
    /// The key as JSON.
    pub key: String,
    /// Rows matched.
    pub rows: u64,
    /// Where the change was written on the source.
    pub lsn: Lsn,
}

impl CdcError {
    /// The kind of failure, from the SQLSTATE where there is one.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CdcError::Core(e) => e.kind(),
            CdcError::Pglogical(e) => e.kind(),
            CdcError::Query { source, .. } => driver_kind(source),
            CdcError::NotReady(_) | CdcError::SlotMissing { .. } => ErrorKind::Usage,
            CdcError::LockTimeout { .. } => ErrorKind::LockOrCancel,
            CdcError::Stalled { .. } | CdcError::AbandonedSession { .. } => ErrorKind::Connection,
            _ => ErrorKind::Other,
        }
    }

    /// Whether the applier should reconnect and try again: the connection
    /// to the source or the target was lost (a restart, a failover).
    ///
    /// A slot "active for PID …" counts too: after the applier was killed,
    /// the source may still be finishing the killed process's read.
    pub fn is_transient(&self) -> bool {
        if matches!(self.kind(), ErrorKind::Connection | ErrorKind::Retryable) {
            return true;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
                return pg.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    || matches!(
                        driver_kind(pg),
                        ErrorKind::Connection | ErrorKind::Retryable
                    );
            }
            cause = e.source();
        }
        false
    }

    /// Whether pgmig refused on purpose because the invariant cannot be
    /// kept (the CLI exits 1).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CdcError::SlotAhead { .. }
                | CdcError::SlotBusy { .. }
                | CdcError::RunBusy { .. }
                | CdcError::NotReady(_)
        )
    }
}

/// The kind of a driver error: SQLSTATE when the server sent one, a lost
/// connection when the socket closed or failed.
pub(crate) fn driver_kind(source: &tokio_postgres::Error) -> ErrorKind {
    match source.code() {
        Some(code) => pgmig_core::error::kind_of_sqlstate(code),
        None if source.is_closed()
            || std::error::Error::source(source).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            ErrorKind::Connection
        }
        None => ErrorKind::Other,
    }
}
