//! What can stop a load.

use std::time::Duration;

use pgmig_core::{ErrorKind, Lsn, QualifiedTable, ServerRole};

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
        "the replica is no longer frozen at P = {p}: {state}; nothing of the chunk in flight was committed \
         and every chunk committed before is exact at P, but the rest can no longer be copied at P. \
         Either bring back a replica paused at exactly P (a standby restored with \
         recovery_target_lsn = '{p}', recovery_target_inclusive = off, recovery_target_action = 'pause'; \
         pgmig checks it) and run `pgmig load` again, or start over: `pgmig cleanup`, recreate the \
         target database, then `pgmig setup`, `snapshot`, `schema` and `load`"
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
    /// A chunk's COPY, or a short statement around it, made no progress
    /// for [`LoadOptions::stall_timeout`](super::LoadOptions::stall_timeout):
    /// the network or the server stalled. The chunk was rolled back (its
    /// transaction never commits without an answer).
    #[error(
        "{what}: no answer from the {role} for {} s (the network or the server stalled); pgmig gave up \
         instead of waiting forever. Nothing of the chunk in flight was committed and every committed \
         chunk stays: run `pgmig load` again once the {role} answers",
        after.as_secs()
    )]
    Stalled {
        /// What was being done, naming the table and chunk.
        what: String,
        /// The server that went silent.
        role: ServerRole,
        /// How long pgmig waited.
        after: Duration,
    },
    /// A statement waited `--lock-timeout` for a lock on a table that
    /// another session holds, and gave up.
    #[error(
        "{what} waited {} s (--lock-timeout) for a lock on {table} and gave up; blocking: {holders}. \
         End that session (or let it finish), then run `pgmig load` again; nothing of this step was \
         committed",
        waited.as_secs()
    )]
    LockTimeout {
        /// What was being done.
        what: String,
        /// The table whose lock it waited for.
        table: QualifiedTable,
        /// The lock timeout.
        waited: Duration,
        /// Who holds locks on the table, as [`pgmig_core::locks::describe_holders`] words it.
        holders: String,
        /// The driver's error (SQLSTATE 55P03).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A server ran out of disk space (SQLSTATE class 53: 53100).
    #[error(
        "{what} failed: the {role} is out of disk space; nothing of this step was committed and every \
         committed chunk stays. Free space (or grow the volume), then run `pgmig load` again"
    )]
    OutOfSpace {
        /// What was being done, naming the table and chunk.
        what: String,
        /// The server that is full.
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

    /// The kind of failure, as [`pgmig_core::Error::kind`] classifies it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Stalled { .. } => ErrorKind::Timeout,
            LoadError::LockTimeout { .. } => ErrorKind::LockOrCancel,
            LoadError::OutOfSpace { .. } => ErrorKind::Resources,
            LoadError::Step { source, .. } => match source.code() {
                Some(code) => pgmig_core::error::kind_of_sqlstate(code),
                None if source.is_closed() => ErrorKind::Connection,
                None => ErrorKind::Other,
            },
            LoadError::Core(core) => core.kind(),
            LoadError::Cancelled => ErrorKind::Other,
            _ => ErrorKind::Usage,
        }
    }

    pub(crate) fn step(
        what: impl Into<String>,
        role: ServerRole,
    ) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
        let what = what.into();
        move |source| LoadError::Step { what, role, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_names_the_server_the_bound_and_what_to_do() {
        let e = LoadError::Stalled {
            what: "copy chunk 3 of 9 of public.t".into(),
            role: ServerRole::Replica,
            after: Duration::from_secs(300),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("copy chunk 3 of 9 of public.t: no answer from the replica for 300 s"),
            "{text}"
        );
        assert!(text.contains("run `pgmig load` again"), "{text}");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(!e.is_refusal());
    }

    #[test]
    fn a_moved_replica_says_what_the_operator_does_next() {
        let e = LoadError::ReplicaMoved {
            p: Lsn::from(0x1_0000_0028),
            state: "replay resumed, replayed up to 1/60".into(),
        };
        let text = e.to_string();
        for part in [
            "no longer frozen at P = 1/28",
            "recovery_target_lsn = '1/28'",
            "`pgmig cleanup`",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(e.is_refusal());
    }
}
