//! [`DmsError`]: what can go wrong while generating DMS artifacts.

use std::path::PathBuf;

use pgmig_core::Lsn;

use crate::identifier::IdentifierError;

/// A `Result` with [`DmsError`].
pub type Result<T, E = DmsError> = std::result::Result<T, E>;

/// Why DMS artifacts could not be generated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DmsError {
    /// A task or endpoint identifier DMS would refuse.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),

    /// A slot of the plan carries no table: its task would capture nothing.
    #[error("slot {slot} has no tables: a DMS task needs at least one")]
    EmptySlot {
        /// The slot.
        slot: String,
    },

    /// The plan has no slot at all.
    #[error("the plan has no slots")]
    NoSlots,

    /// An endpoint cannot be described to DMS.
    #[error("the {role} endpoint: {reason}")]
    Endpoint {
        /// `source` or `target`.
        role: &'static str,
        /// What is missing or wrong.
        reason: String,
    },

    /// A slot of the plan does not exist on the source.
    #[error("slot {slot} does not exist on the source")]
    SlotMissing {
        /// The slot.
        slot: String,
    },

    /// A slot has confirmed changes past P: DMS cannot start from P any more
    /// and the changes in between are lost to it.
    #[error(
        "slot {slot} has moved past P: its confirmed_flush_lsn {confirmed_flush} is after {pause_lsn}; \
         a CDC task can no longer start at P from it"
    )]
    SlotPastStart {
        /// The slot.
        slot: String,
        /// Its `confirmed_flush_lsn`.
        confirmed_flush: Lsn,
        /// P.
        pause_lsn: Lsn,
    },

    /// A slot exists with another output plugin than pglogical.
    #[error("slot {slot} uses plugin {plugin}, not pglogical")]
    SlotPlugin {
        /// The slot.
        slot: String,
        /// Its plugin.
        plugin: String,
    },

    /// Reading the source failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),

    /// A DMS API call failed (feature `aws`).
    #[error("DMS {operation}: {message}")]
    Api {
        /// The operation, e.g. `CreateReplicationTask`.
        operation: &'static str,
        /// What the SDK said, with its causes.
        message: String,
    },

    /// Writing an artifact failed.
    #[error("could not write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl DmsError {
    /// Whether this is a refusal of the source's state (a slot missing,
    /// moved past P or of another plugin) rather than bad input or a
    /// failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DmsError::SlotMissing { .. }
                | DmsError::SlotPastStart { .. }
                | DmsError::SlotPlugin { .. }
        )
    }

    /// Whether this is bad input or configuration (an identifier, an empty
    /// slot, an endpoint that cannot be described).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DmsError::Identifier(_)
                | DmsError::EmptySlot { .. }
                | DmsError::NoSlots
                | DmsError::Endpoint { .. }
        )
    }
}
