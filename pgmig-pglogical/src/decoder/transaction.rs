//! Assembling decoded rows into transactions.
//!
//! A batch from the SQL interface is a startup message followed by `B` …
//! `C` groups. [`group_transactions`] checks that shape and returns a
//! [`Batch`]. A transaction whose commit is not in the batch (which the SQL
//! interface does not produce with pglogical 2.4.2, but a truncated read
//! could) is kept as the batch's [`PartialTransaction`]: the only ways to
//! take the transactions out of a batch, [`Batch::into_parts`] and
//! [`Batch::into_complete`], hand it over too or refuse.

use pgmig_core::Lsn;

use crate::message::{Begin, Change, Message, Startup};

/// A committed transaction: its begin, its changes in order, and where its
/// commit record lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The transaction id.
    pub xid: u32,
    /// The begin message (first LSN, commit time…).
    pub begin: Begin,
    /// Where the commit record starts (the commit's `final_lsn`).
    pub commit_lsn: Lsn,
    /// Where the commit record ends (the commit's `end_lsn`). The
    /// transaction is already in a snapshot taken at P when this is ≤ P;
    /// CDC applies it only when this is > P.
    pub commit_end_lsn: Lsn,
    /// The rows between begin and commit. Empty for transactions that
    /// touched no replicated table (pglogical sends those too).
    pub changes: Vec<Change>,
}

/// A transaction whose commit was not in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialTransaction {
    /// The transaction id.
    pub xid: u32,
    /// The begin message.
    pub begin: Begin,
    /// The rows seen after the begin.
    pub changes: Vec<Change>,
}

/// A batch of rows grouped into transactions.
///
/// Its transactions come out only through [`Batch::into_parts`], which also
/// hands over the trailing [`PartialTransaction`], or
/// [`Batch::into_complete`], which fails when there is one: a caller cannot
/// drop an incomplete transaction by accident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use = "a batch holds transactions to apply, and maybe an incomplete one"]
pub struct Batch {
    startup: Option<Startup>,
    transactions: Vec<Transaction>,
    incomplete: Option<PartialTransaction>,
}

impl Batch {
    /// The startup message of the batch, if it had one.
    pub fn startup(&self) -> Option<&Startup> {
        self.startup.as_ref()
    }

    /// The committed transactions, in commit order.
    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }

    /// The trailing transaction whose commit was not in the batch.
    pub fn incomplete(&self) -> Option<&PartialTransaction> {
        self.incomplete.as_ref()
    }

    /// Whether every transaction of the batch committed within it.
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_none()
    }

    /// The end LSN of the last committed transaction, if any.
    pub fn last_commit_end_lsn(&self) -> Option<Lsn> {
        self.transactions.last().map(|t| t.commit_end_lsn)
    }

    /// The committed transactions and the incomplete one.
    pub fn into_parts(self) -> (Vec<Transaction>, Option<PartialTransaction>) {
        (self.transactions, self.incomplete)
    }

    /// The committed transactions; an error when the batch ends inside a
    /// transaction.
    pub fn into_complete(self) -> Result<Vec<Transaction>, TransactionError> {
        match self.incomplete {
            None => Ok(self.transactions),
            Some(partial) => Err(TransactionError::Incomplete {
                xid: partial.xid,
                first_lsn: partial.begin.first_lsn,
                changes: partial.changes.len(),
            }),
        }
    }
}

/// Rows that do not form `B` … `C` transactions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// A begin (or a startup message) arrived before the open transaction
    /// committed.
    #[error(
        "transaction {xid} (first LSN {first_lsn}) has no commit: a {next} message follows at {at}"
    )]
    BeginWithoutCommit {
        /// The open transaction.
        xid: u32,
        /// Its first LSN.
        first_lsn: Lsn,
        /// What came instead of the commit: `begin` or `startup`.
        next: &'static str,
        /// The row LSN of that message.
        at: Lsn,
    },

    /// A commit arrived outside a transaction.
    #[error("commit at {at} (xid {xid}) without a begin")]
    CommitWithoutBegin {
        /// The row LSN of the commit.
        at: Lsn,
        /// The row's xid.
        xid: u32,
    },

    /// A change arrived outside a transaction.
    #[error("{kind} message at {at} (xid {xid}) outside a transaction")]
    OutsideTransaction {
        /// The message kind ([`Message::kind`]).
        kind: &'static str,
        /// The row LSN.
        at: Lsn,
        /// The row's xid.
        xid: u32,
    },

    /// A row inside a transaction carries another xid.
    #[error("row at {at} carries xid {found} inside transaction {expected}")]
    XidMismatch {
        /// The open transaction's xid.
        expected: u32,
        /// The row's xid.
        found: u32,
        /// The row LSN.
        at: Lsn,
    },

    /// The batch ends inside a transaction ([`Batch::into_complete`]).
    #[error(
        "transaction {xid} (first LSN {first_lsn}, {changes} changes so far) did not commit within the batch"
    )]
    Incomplete {
        /// The open transaction.
        xid: u32,
        /// Its first LSN.
        first_lsn: Lsn,
        /// How many changes it had in the batch.
        changes: usize,
    },
}

/// Groups decoded rows into transactions; see the module docs.
///
/// Each begin's xid must match the xid of its rows. A startup message may
/// come between transactions (every call of the SQL interface starts with
/// one); the first is kept in the batch.
pub fn group_transactions<I>(changes: I) -> Result<Batch, TransactionError>
where
    I: IntoIterator<Item = Change>,
{
    let mut batch = Batch::default();
    let mut open: Option<PartialTransaction> = None;
    for change in changes {
        let Change { lsn, xid, message } = change;
        match (message, open.take()) {
            (Message::Startup(startup), None) => {
                batch.startup.get_or_insert(startup);
            }
            (Message::Begin(begin), None) => {
                if begin.xid != xid {
                    return Err(TransactionError::XidMismatch {
                        expected: begin.xid,
                        found: xid,
                        at: lsn,
                    });
                }
                open = Some(PartialTransaction {
                    xid,
                    begin,
                    changes: Vec::new(),
                });
            }
            (message @ (Message::Begin(_) | Message::Startup(_)), Some(tx)) => {
                return Err(TransactionError::BeginWithoutCommit {
                    xid: tx.xid,
                    first_lsn: tx.begin.first_lsn,
                    next: message.kind(),
                    at: lsn,
                });
            }
            (Message::Commit(_), None) => {
                return Err(TransactionError::CommitWithoutBegin { at: lsn, xid });
            }
            (message, None) => {
                return Err(TransactionError::OutsideTransaction {
                    kind: message.kind(),
                    at: lsn,
                    xid,
                });
            }
            (_, Some(tx)) if tx.xid != xid => {
                return Err(TransactionError::XidMismatch {
                    expected: tx.xid,
                    found: xid,
                    at: lsn,
                });
            }
            (Message::Commit(commit), Some(tx)) => {
                batch.transactions.push(Transaction {
                    xid: tx.xid,
                    begin: tx.begin,
                    commit_lsn: commit.final_lsn,
                    commit_end_lsn: commit.end_lsn,
                    changes: tx.changes,
                });
            }
            (message, Some(mut tx)) => {
                tx.changes.push(Change { lsn, xid, message });
                open = Some(tx);
            }
        }
    }
    batch.incomplete = open;
    Ok(batch)
}
