//! Connection configuration (stub: being filled in).

/// A connection string, environment variable or passfile could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string is malformed.
    #[error("invalid connection string: {reason}")]
    Invalid {
        /// What is wrong, never quoting a password.
        reason: String,
    },
}
