//! What can stop a load.

use pgmig_core::{Lsn, QualifiedTable, ServerRole};

/// Why a load stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The target holds no pause LSN: the snapshot step has not run.
    #[error(
        "the target holds no pause LSN P: run `pgmig snapshot` first (it pauses the replica and records P)"
    )]
    NoSnapshot,
    /// The replica is not a standby of the migration's source.
    #[error(
        "the replica (system {found}) is not a standby of the migration's source (system {expected}): \
         point --replica at the maintenance replica of the source"
    )]
    WrongReplica {
        /// The recorded source system identifier.
        expected: u64,
        /// The replica's.
        found: u64,
    },
    /// The replica's replay is not where the load needs it: not paused, or
    /// not at P. The chunk in flight was rolled back.
    #[error(
        "the replica is no longer frozen at P = {p}: {state}; nothing of the chunk in flight was committed. \
         The data copied so far is exact at P, but the rest can no longer be: pause the replica at a new \
         point with `pgmig snapshot` only after `pgmig load --restart` (or recreate the replica at P)"
    )]
    ReplicaMoved {
        /// The recorded P.
        p: Lsn,
        /// What was found instead.
        state: String,
    },
    /// The load state in the target belongs to another P.
    #[error(
        "the target's load state was planned at P = {planned} but the recorded P is now {p}: \
         the data loaded so far is from another point; run `pgmig load --restart`"
    )]
    OtherSnapshot {
        /// P when the load was planned.
        planned: Lsn,
        /// P now.
        p: Lsn,
    },
    /// A planned table is missing on one side.
    #[error("table {table} does not exist on the {role}{hint}")]
    MissingTable {
        /// The table.
        table: QualifiedTable,
        /// Where it is missing.
        role: ServerRole,
        /// What to do.
        hint: &'static str,
    },
    /// A column to copy is missing on the target, or generated there.
    #[error(
        "table {table}: column {column:?} {problem} on the target; the target's schema differs from the source's (run `pgmig schema` into an empty database)"
    )]
    ColumnMismatch {
        /// The table.
        table: QualifiedTable,
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A table to load already holds rows on the target that pgmig did not
    /// load.
    #[error(
        "table {table} on the target already holds rows that pgmig did not load; load into empty tables \
         (or run `pgmig load --restart` to empty them)"
    )]
    TargetNotEmpty {
        /// The table.
        table: QualifiedTable,
    },
    /// `--restart` after the final post-data step committed.
    #[error(
        "the load already finished, post-data (foreign keys, triggers …) included; --restart cannot undo \
         that: recreate the target database and run `pgmig schema` and `pgmig load` again"
    )]
    RestartAfterPostData,
    /// A COPY, index build or post-data step failed.
    #[error("{what} failed on the {role}")]
    Step {
        /// What was being done, naming the table and chunk.
        what: String,
        /// The server that reported it.
        role: ServerRole,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The load was cancelled; every chunk in flight was rolled back.
    #[error(
        "the load was cancelled; chunks in flight were rolled back, run `pgmig load` again to continue"
    )]
    Cancelled,
    /// A connection, catalog or state call failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
}

impl LoadError {
    /// Whether the error is a refusal to act on servers in an unexpected
    /// state (exit 1 in the CLI) rather than a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LoadError::NoSnapshot
                | LoadError::WrongReplica { .. }
                | LoadError::ReplicaMoved { .. }
                | LoadError::OtherSnapshot { .. }
                | LoadError::MissingTable { .. }
                | LoadError::ColumnMismatch { .. }
                | LoadError::TargetNotEmpty { .. }
                | LoadError::RestartAfterPostData
        )
    }

    pub(crate) fn step(
        what: impl Into<String>,
        role: ServerRole,
    ) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
        let what = what.into();
        move |source| LoadError::Step { what, role, source }
    }
}
