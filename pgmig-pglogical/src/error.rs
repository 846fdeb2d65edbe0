//! The error type of pgmig-pglogical.

use pgmig_core::{ErrorKind, Lsn, ServerRole};

use crate::decoder::{DecodeError, TransactionError};
use crate::message::RawChange;
use crate::node::NodeError;
use crate::replication_set::SetError;
use crate::slot::SlotError;

/// What went wrong in a pgmig-pglogical operation.
///
/// Variants carry pgmig's context (the slot, the LSN); the lower error is
/// the `source` and its text is not repeated here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pgmig-core call failed (queries, admin calls, LSN parsing).
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),

    /// A pgmig-core call about one slot failed.
    #[error("slot {slot:?}")]
    Slot {
        /// The slot.
        slot: String,
        /// What failed.
        #[source]
        source: pgmig_core::Error,
    },

    /// A statement reading a slot failed on the server (no such slot, slot
    /// in use, unknown replication set, connection lost…).
    #[error("{what} on slot {slot:?} failed")]
    Postgres {
        /// The slot.
        slot: String,
        /// The SQL function called, e.g. `pg_logical_slot_peek_changes`.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A row read from a slot is not a pglogical message pgmig can decode.
    #[error("slot {slot:?}: cannot decode the change at {lsn} (xid {xid})")]
    Decode {
        /// The slot.
        slot: String,
        /// The row's LSN.
        lsn: Lsn,
        /// The row's xid.
        xid: u32,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
        /// When the read consumed the rows (`get_changes`), all of them,
        /// undecoded, since the slot no longer holds them; empty for peeks.
        consumed: Vec<RawChange>,
    },

    /// Rows read from a slot do not form whole transactions.
    #[error("slot {slot:?}: changes out of transaction order")]
    Transaction {
        /// The slot.
        slot: String,
        /// What is out of order.
        #[source]
        source: TransactionError,
    },

    /// The server answered something pgmig cannot interpret.
    #[error("slot {slot:?}: {detail}")]
    Protocol {
        /// The slot.
        slot: String,
        /// What was odd.
        detail: String,
    },

    /// The call's arguments cannot work.
    #[error("slot {slot:?}: {detail}")]
    InvalidArgument {
        /// The slot.
        slot: String,
        /// What is wrong.
        detail: String,
    },

    /// A slot name is not usable.
    #[error(transparent)]
    SlotName(#[from] crate::slot::SlotNameError),

    /// Creating, reading or dropping a replication slot failed or was refused.
    #[error(transparent)]
    SlotObject(#[from] SlotError),

    /// The pglogical extension or node could not be set up.
    #[error(transparent)]
    Node(#[from] NodeError),

    /// A replication set could not be set up or verified.
    #[error(transparent)]
    ReplicationSet(#[from] SetError),

    /// A check of the correctness invariant failed: pgmig refuses to go on.
    #[error(transparent)]
    Refused(#[from] Refusal),

    /// A check failed after pgmig paused the replica, and resuming it failed
    /// too: the replica is left paused.
    #[error(
        "{original}; resuming the replica afterwards failed as well, so it is still PAUSED: \
         run `pgmig resume-replica` once it is reachable"
    )]
    ResumeAfterFailure {
        /// The failed check.
        original: Box<Error>,
        /// Why resuming failed.
        #[source]
        source: pgmig_core::Error,
    },
}

/// A refusal to proceed because the correctness invariant (DESIGN.md) could
/// not be proven; nothing was changed, or the change was undone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The replica is not in recovery.
    #[error(
        "the replica is not a standby (it is not in recovery): point --replica at the maintenance replica"
    )]
    ReplicaNotStandby,
    /// The replica streams from another cluster.
    #[error(
        "the replica is not a standby of this source: system identifier {replica} ≠ {source_id} (source); \
         point --replica at a physical standby of the source"
    )]
    ReplicaOfOtherSource {
        /// The source's system identifier.
        source_id: u64,
        /// The replica's.
        replica: u64,
    },
    /// The target is the source itself (same system identifier).
    #[error(
        "the target is the source itself (both have system identifier {system_identifier}): \
         --source and --target must name different servers"
    )]
    TargetIsSource {
        /// The shared system identifier.
        system_identifier: u64,
    },
    /// The plan names a table the source does not have.
    #[error(
        "the plan names table {table} (slot {slot}), which does not exist on the source: fix the plan"
    )]
    PlannedTableMissing {
        /// The table.
        table: String,
        /// Its slot in the plan.
        slot: String,
    },
    /// The target holds no migration.
    #[error("the target holds no migration state: run `pgmig setup` first")]
    NoMigration,
    /// The target's state belongs to another source.
    #[error(
        "the target's state belongs to a migration from system {recorded}, but --source is system \
         {source_id}: point --source and --target at the servers of this migration"
    )]
    StateOfOtherSource {
        /// The recorded source system identifier.
        recorded: u64,
        /// The connected source's.
        source_id: u64,
    },
    /// The replica now pauses at another LSN than the recorded P.
    #[error(
        "the migration is pinned at P = {recorded}, but the replica now pauses at {now}: data loaded \
         from {recorded} would not match; run `pgmig cleanup` to start over"
    )]
    PauseLsnChanged {
        /// The recorded P.
        recorded: Lsn,
        /// Where the replica paused now.
        now: Lsn,
    },
    /// A planned slot does not exist.
    #[error("slot {slot} does not exist on the source: run `pgmig setup` first")]
    SlotMissing {
        /// The slot.
        slot: String,
    },
    /// A planned slot has another output plugin.
    #[error("slot {slot} uses plugin {plugin}, not pglogical")]
    SlotWrongPlugin {
        /// The slot.
        slot: String,
        /// Its plugin.
        plugin: String,
    },
    /// A slot was created, or consumed, after P.
    #[error(
        "slot {slot} is newer than the snapshot: its confirmed_flush_lsn {confirmed_flush_lsn} is after \
         P = {pause_lsn}, so the changes in between would be lost; resume the replica \
         (`pgmig resume-replica`), let it replay past {confirmed_flush_lsn}, then take the snapshot again"
    )]
    SlotAfterPause {
        /// The slot.
        slot: String,
        /// Its confirmed flush LSN.
        confirmed_flush_lsn: Lsn,
        /// P.
        pause_lsn: Lsn,
    },
    /// Setup would change the source after P was recorded.
    #[error(
        "the migration is pinned at P = {pause_lsn}; setup would now change the source ({}), and what \
         it adds after P is not covered by the snapshot. Run `pgmig cleanup` to start over",
        changes.join(", ")
    )]
    SetupAfterSnapshot {
        /// P.
        pause_lsn: Lsn,
        /// What setup would do.
        changes: Vec<String>,
    },
    /// A slot is being consumed right now.
    #[error(
        "slot {slot} is in use by another session (pid {}): a consumer could move it past P; \
         stop that consumer first",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    SlotInUse {
        /// The slot.
        slot: String,
        /// The consuming backend.
        pid: Option<i32>,
    },
    /// The connected role lacks privileges the step needs; nothing was
    /// changed. `pgmig check` lists the same, with every other server's.
    #[error(
        "the {server} role lacks what `pgmig {step}` needs, so nothing was changed: {summary}\nfix: {fix}"
    )]
    MissingPrivileges {
        /// The server.
        server: ServerRole,
        /// The pgmig command.
        step: &'static str,
        /// Each missing privilege, named.
        summary: String,
        /// The statements that grant them.
        fix: String,
    },
    /// The paused replica's copy of pglogical's catalogs does not show the
    /// planned membership: it was not committed before P.
    #[error(
        "the replication sets of slot {slot} were not complete at P = {pause_lsn} (read on the paused \
         replica): {}; run `pgmig setup`, resume the replica, let it catch up, and take the snapshot again",
        problems.join("; ")
    )]
    MembershipAtPause {
        /// The slot.
        slot: String,
        /// P.
        pause_lsn: Lsn,
        /// What is missing or different.
        problems: Vec<String>,
    },
    /// The replica paused ahead of the source's current position.
    #[error(
        "the replica paused at {pause_lsn}, ahead of the source's current WAL position {source_lsn}: \
         it is not following this source's timeline; rebuild the maintenance replica from the source"
    )]
    ReplicaAhead {
        /// P.
        pause_lsn: Lsn,
        /// The source's current WAL LSN.
        source_lsn: Lsn,
    },
    /// A set lost a table or changed since setup.
    #[error("the replication sets of slot {slot} changed since setup: {}", problems.join("; "))]
    MembershipIncomplete {
        /// The slot.
        slot: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// Replay moved during the checks.
    #[error(
        "the replica's replay moved from P = {pause_lsn} to {now} during the checks: another session resumed it"
    )]
    ReplayMoved {
        /// P.
        pause_lsn: Lsn,
        /// Where replay is now.
        now: Lsn,
    },
}

impl Error {
    /// Classifies the error with pgmig-core's kinds (SQLSTATEs mapped by
    /// [`pgmig_core::error::kind_of_sqlstate`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(e) | Error::Slot { source: e, .. } => e.kind(),
            Error::Postgres { source, .. } => match source.code() {
                Some(code) => pgmig_core::error::kind_of_sqlstate(code),
                None if source.is_closed() => ErrorKind::Connection,
                None => ErrorKind::Other,
            },
            Error::InvalidArgument { .. } | Error::Refused(_) | Error::SlotName(_) => {
                ErrorKind::Usage
            }
            Error::SlotObject(SlotError::Core(e))
            | Error::Node(NodeError::Core(e))
            | Error::ReplicationSet(SetError::Core(e)) => e.kind(),
            Error::SlotObject(_) | Error::Node(_) | Error::ReplicationSet(_) => ErrorKind::Usage,
            Error::ResumeAfterFailure { original, .. } => original.kind(),
            Error::Decode { .. } | Error::Transaction { .. } | Error::Protocol { .. } => {
                ErrorKind::Other
            }
        }
    }

    /// Whether pgmig refused on purpose (the invariant could not be proven):
    /// the CLI exits 1 for these, 3 for failures.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Refused(r) => !r.is_wiring(),
            Error::ResumeAfterFailure { original, .. } => original.is_refusal(),
            _ => false,
        }
    }

    /// The slot the error is about, when it is about one.
    pub fn slot(&self) -> Option<&str> {
        match self {
            Error::Core(_)
            | Error::SlotObject(_)
            | Error::SlotName(_)
            | Error::Node(_)
            | Error::ReplicationSet(_)
            | Error::Refused(_)
            | Error::ResumeAfterFailure { .. } => None,
            Error::Slot { slot, .. }
            | Error::Postgres { slot, .. }
            | Error::Decode { slot, .. }
            | Error::Transaction { slot, .. }
            | Error::Protocol { slot, .. }
            | Error::InvalidArgument { slot, .. } => Some(slot),
        }
    }
}

impl Refusal {
    /// Whether the refusal is a wiring or configuration mistake (the wrong
    /// server given, setup not run: exit 2), rather than the invariant not
    /// holding on correctly wired servers (exit 1).
    pub fn is_wiring(&self) -> bool {
        matches!(
            self,
            Refusal::ReplicaNotStandby
                | Refusal::ReplicaOfOtherSource { .. }
                | Refusal::TargetIsSource { .. }
                | Refusal::StateOfOtherSource { .. }
                | Refusal::NoMigration
                | Refusal::PlannedTableMissing { .. }
        )
    }
}
