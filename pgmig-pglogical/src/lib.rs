//! pglogical on the source: preflight of source settings, the extension, the
//! provider node, replication sets (insert/truncate set `i<slot>` and
//! update/delete set `<slot>`), logical slots with plugin `pglogical`, decoding
//! of the pglogical JSON protocol into typed messages, and verification of the
//! pause point P against every slot.
//!
//! Filled by the pglogical issue; this crate knows nothing of COPY or DMS.

pub mod preflight;

pub mod cleanup;
pub mod decoder;
pub mod error;
pub mod message;
pub mod node;
pub mod replication_set;
pub mod setup;
pub mod slot;
pub mod slot_state;
pub mod snapshot;
pub mod statement;

pub use decoder::{
    Batch, DecodeError, DecodeErrorKind, PartialTransaction, Transaction, TransactionError, decode,
    get_changes, group_transactions, peek_changes,
};
pub use error::{Error, Refusal};
pub use message::{
    Begin, Change, ColumnValue, Commit, Datum, Delete, Insert, Message, RawChange, Startup,
    Timestamp, Truncate, Tuple, Update,
};
pub use slot::{SlotName, SlotNameError};
pub use statement::Statement;
