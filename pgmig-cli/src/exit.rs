//! Exit codes of the CLI contract, and the errors that choose them.

use std::process::ExitCode;

use pgmig_core::ErrorKind;

/// How a command ended; each maps to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed or data differ.
    CheckFailed,
    /// Exit 2: bad usage or configuration.
    Usage,
    /// Exit 3: connection, SQL or I/O failure.
    RuntimeFailure,
}

impl Outcome {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::CheckFailed => 1,
            Outcome::Usage => 2,
            Outcome::RuntimeFailure => 3,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}

/// Bad usage or configuration found by the CLI itself (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A check that failed on purpose (exit 1): the message says what and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The exit outcome of an error: usage errors and pgmig's own usage kinds
/// (malformed input, a call on the wrong kind of server, a wiring mistake)
/// exit 2, refused checks exit 1, everything else 3.
pub fn classify(err: &anyhow::Error) -> Outcome {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return Outcome::Usage;
        }
        if cause.is::<CheckFailed>() {
            return Outcome::CheckFailed;
        }
        if let Some(core) = cause.downcast_ref::<pgmig_core::Error>() {
            return match core.kind() {
                ErrorKind::Usage => Outcome::Usage,
                _ => Outcome::RuntimeFailure,
            };
        }
        if let Some(pgl) = cause.downcast_ref::<pgmig_pglogical::Error>() {
            return if pgl.is_refusal() {
                Outcome::CheckFailed
            } else if pgl.kind() == ErrorKind::Usage {
                Outcome::Usage
            } else {
                Outcome::RuntimeFailure
            };
        }
        if let Some(load) = cause.downcast_ref::<pgmig_fullload::load::LoadError>() {
            use pgmig_fullload::load::LoadError;
            match load {
                LoadError::WrongReplica { .. } => return Outcome::Usage,
                e if e.is_refusal() => return Outcome::CheckFailed,
                LoadError::Core(core) if core.kind() == ErrorKind::Usage => return Outcome::Usage,
                _ => return Outcome::RuntimeFailure,
            }
        }
        if cause.is::<pgmig_core::plan::PlanError>() {
            return Outcome::Usage;
        }
    }
    Outcome::RuntimeFailure
}
