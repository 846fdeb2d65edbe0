//! The error type shared by pgmig's library crates, and the one place where
//! SQLSTATEs are mapped to the kinds of failure pgmig reacts to.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::config::ConfigError;
use crate::lsn::ParseLsnError;
use crate::version::ServerVersion;

/// A `Result` whose error is pgmig's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a pgmig-core operation.
///
/// Each variant carries pgmig's context (which call, which LSN, which
/// server); the lower error is kept as the `source` and its text is not
/// repeated in ours, so printing the whole chain reads once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A connection string, URL, environment variable or passfile was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// An LSN could not be parsed.
    #[error(transparent)]
    Lsn(#[from] ParseLsnError),

    /// Connecting to a server failed (network, authentication, TLS).
    #[error("could not connect to {target}")]
    Connect {
        /// The server, as a redacted connection string (never a password).
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A statement failed on the server.
    #[error("{what} failed")]
    Query {
        /// What pgmig was doing, e.g. `pause WAL replay`.
        what: String,
        /// The driver's error; see [`Error::kind`] for its SQLSTATE class.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A replica-only call was made on a server that is not in recovery.
    #[error("{what} needs a standby, but this server is a primary (not in recovery)")]
    NotAStandby {
        /// The call that was attempted.
        what: String,
    },

    /// A primary-only call was made on a standby.
    #[error("{what} needs a primary, but this server is a standby (in recovery)")]
    NotAPrimary {
        /// The call that was attempted.
        what: String,
    },

    /// The server is older than the feature needs.
    #[error("{what} needs PostgreSQL {needed} or newer, the server runs {found}")]
    Unsupported {
        /// The feature.
        what: String,
        /// The oldest major that has it, e.g. `11`.
        needed: String,
        /// The server's version.
        found: ServerVersion,
    },

    /// A server returned something pgmig cannot interpret.
    #[error("unexpected answer from the server for {what}: {detail}")]
    Protocol {
        /// The question asked.
        what: String,
        /// What was odd about the answer.
        detail: String,
    },

    /// pgmig's recorded state in the target does not allow the step (a
    /// migration of another source, a different P, no migration yet).
    #[error("{detail}")]
    State {
        /// What is wrong and what to do.
        detail: String,
    },

    /// A blocking admin call did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// The call that timed out.
        what: String,
        /// How long pgmig waited.
        after: Duration,
    },
}

/// The kinds of failure pgmig reacts to differently, derived from SQLSTATE
/// classes in [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input: connection string, LSN, a call on the wrong kind of server.
    Usage,
    /// The connection was lost or refused (SQLSTATE class 08, 57P0x, I/O).
    Connection,
    /// Authentication failed (class 28).
    Authentication,
    /// The role lacks a privilege (42501).
    Privilege,
    /// A named object does not exist (42704, 42P01, 42883, 3F000, 3D000).
    UndefinedObject,
    /// An object of that name already exists (42710, 42P07, 42P06, 42P04).
    DuplicateObject,
    /// A lock could not be taken in time, or a statement was cancelled (55P03, 57014).
    LockOrCancel,
    /// Serialization failure or deadlock; retrying the transaction may succeed (40001, 40P01).
    Retryable,
    /// The server ran out of disk, memory or connections (class 53).
    Resources,
    /// The server is too old, or the feature is unavailable (0A000, missing function).
    Unsupported,
    /// A wait ran past its limit.
    Timeout,
    /// Anything else.
    Other,
}

impl Error {
    /// Classifies the error. SQLSTATEs are mapped here and nowhere else.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_)
            | Error::Lsn(_)
            | Error::NotAStandby { .. }
            | Error::NotAPrimary { .. }
            | Error::State { .. } => ErrorKind::Usage,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Protocol { .. } => ErrorKind::Other,
            Error::Connect { source, .. } => match source.code() {
                Some(code) if code.code().starts_with("28") => ErrorKind::Authentication,
                Some(code) => kind_of_sqlstate(code),
                None => ErrorKind::Connection,
            },
            Error::Query { source, .. } => match source.code() {
                Some(code) => kind_of_sqlstate(code),
                None if source.is_closed() || is_io(source) => ErrorKind::Connection,
                None => ErrorKind::Other,
            },
        }
    }

    /// The SQLSTATE the server sent, if the error came from a server.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            Error::Connect { source, .. } | Error::Query { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Wraps a driver error with what pgmig was doing.
    pub fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let what = what.into();
        move |source| Error::Query { what, source }
    }
}

fn is_io(err: &tokio_postgres::Error) -> bool {
    std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>())
}

/// Maps a SQLSTATE to our kinds: by exact code first, then by class.
pub fn kind_of_sqlstate(code: &SqlState) -> ErrorKind {
    let c = code.code();
    match c {
        "42501" => ErrorKind::Privilege,
        "42704" | "42P01" | "42883" | "3F000" | "3D000" | "42703" => ErrorKind::UndefinedObject,
        "42710" | "42P07" | "42P06" | "42P04" => ErrorKind::DuplicateObject,
        "55P03" | "57014" => ErrorKind::LockOrCancel,
        "40001" | "40P01" => ErrorKind::Retryable,
        "0A000" => ErrorKind::Unsupported,
        _ => match &c[..2] {
            "08" | "57" => ErrorKind::Connection,
            "28" => ErrorKind::Authentication,
            "53" => ErrorKind::Resources,
            "40" => ErrorKind::Retryable,
            _ => ErrorKind::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        let cases = [
            (SqlState::INSUFFICIENT_PRIVILEGE, ErrorKind::Privilege),
            (SqlState::UNDEFINED_TABLE, ErrorKind::UndefinedObject),
            (SqlState::UNDEFINED_FUNCTION, ErrorKind::UndefinedObject),
            (SqlState::DUPLICATE_OBJECT, ErrorKind::DuplicateObject),
            (SqlState::LOCK_NOT_AVAILABLE, ErrorKind::LockOrCancel),
            (SqlState::QUERY_CANCELED, ErrorKind::LockOrCancel),
            (SqlState::T_R_SERIALIZATION_FAILURE, ErrorKind::Retryable),
            (SqlState::T_R_DEADLOCK_DETECTED, ErrorKind::Retryable),
            (SqlState::DISK_FULL, ErrorKind::Resources),
            (SqlState::TOO_MANY_CONNECTIONS, ErrorKind::Resources),
            (SqlState::ADMIN_SHUTDOWN, ErrorKind::Connection),
            (SqlState::CONNECTION_FAILURE, ErrorKind::Connection),
            (SqlState::INVALID_PASSWORD, ErrorKind::Authentication),
            (SqlState::FEATURE_NOT_SUPPORTED, ErrorKind::Unsupported),
            (SqlState::SYNTAX_ERROR, ErrorKind::Other),
        ];
        for (state, kind) in cases {
            assert_eq!(kind_of_sqlstate(&state), kind, "{}", state.code());
        }
    }
}
