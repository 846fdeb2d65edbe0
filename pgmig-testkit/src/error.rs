//! The lab's error type.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running a lab cluster.
///
/// `Debug` prints the message followed by its whole source chain, so that
/// `.unwrap()` in a test shows the command, its output and the server log
/// rather than an escaped struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A server build (or extension) the test needs is not installed here.
    ///
    /// Without `CI=true` callers may skip the test; under CI the lab panics
    /// instead of returning this (see [`crate::Lab::require_major`]).
    #[error("{what} unavailable: {} not found (set {env_var}, or run `{install}`)", path.display())]
    Unavailable {
        /// What is missing, e.g. `PostgreSQL 10 server binaries`.
        what: String,
        /// The file that was looked for.
        path: PathBuf,
        /// The environment variable that points the lab at another location.
        env_var: String,
        /// The command that installs it.
        install: String,
    },
    /// An external command (initdb, pg_ctl, pg_basebackup, ...) failed.
    #[error(
        "command failed ({status}): {command}\n--- command output ---\n{output}\n--- tail of {} ---\n{log_tail}",
        log.display()
    )]
    Command {
        /// The command line, as run.
        command: String,
        /// Its exit status, or why it could not run.
        status: String,
        /// Its stderr (and stdout, when it printed something there).
        output: String,
        /// The server log of the cluster it was run for.
        log: PathBuf,
        /// The last lines of that server log.
        log_tail: String,
    },
    /// A file-system operation failed.
    #[error("{context}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to or querying a lab server failed.
    #[error("{context}")]
    Postgres {
        /// What the lab was doing (cluster, database, statement).
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}\n--- server log tail ---\n{log_tail}")]
    Timeout {
        /// What was awaited, with the last value seen.
        what: String,
        /// How long the lab waited.
        waited: Duration,
        /// The last lines of the relevant server log.
        log_tail: String,
    },
    /// Text that should have been an LSN (`X/Y`, hexadecimal halves) was not.
    #[error("invalid LSN {text:?}: expected X/Y with 32-bit hexadecimal halves")]
    InvalidLsn {
        /// The offending text.
        text: String,
    },
    /// A query answered something the lab did not expect.
    #[error("unexpected answer to {context}: {detail}")]
    Unexpected {
        /// The query or question.
        context: String,
        /// What came back.
        detail: String,
    },
    /// The lab could not prepare its environment (user, directories, binaries).
    #[error("lab setup failed: {0}")]
    Setup(String),
}

impl fmt::Debug for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            write!(f, "\n  caused by: {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn pg(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        LabError::Postgres {
            context: context.into(),
            source,
        }
    }

    /// Whether this is [`LabError::Unavailable`] (a skippable condition).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LabError::Unavailable { .. })
    }
}
