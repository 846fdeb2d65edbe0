//! Connection configuration: where a server is and how to reach it.
//!
//! A connection string — libpq `key=value` pairs or a `postgres://` URL —
//! is parsed once at the edge into a [`ConnConfig`], completed like libpq
//! from the `PG*` environment variables, its defaults and the passfile
//! ([`ConnConfig::resolve`]), and turned into a client
//! ([`ConnConfig::connect`]), a pool ([`ConnConfig::pool`]) or the
//! driver's config and TLS connector.
//!
//! A password never leaves this module in text meant for people: it is a
//! [`Secret`], `ConnConfig`'s `Display` and [`ConnConfig::redacted`] leave
//! it out, `Debug` masks it, parse errors never quote it, and
//! [`redact_dsn`] masks it in strings that did not parse.
//!
//! Differences from libpq, all deliberate: `allow` tries TLS first (as
//! `prefer`); `target_session_attrs` knows only `any`, `read-write` and
//! `read-only`; service files, GSSAPI/Kerberos, encrypted client keys,
//! CRLs and direct TLS negotiation are refused with a message naming the
//! keyword; an empty entry in a host list is refused; with several hosts,
//! one password (the first passfile match) is used for all of them.

mod conn_config;
mod connect;
mod conninfo;
mod env;
mod passfile;
mod redact;
mod secret;
mod session;
mod sslmode;
mod tls;
mod url;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use conn_config::ConnConfig;
pub use env::{ENV_VARS, Env, ProcessEnv};
pub use passfile::lookup_password;
pub use redact::redact_dsn;
pub use secret::{MASK, Secret};
pub use session::{ChannelBinding, LoadBalanceHosts, TargetSessionAttrs};
pub use sslmode::{ParseSslModeError, SslMode};

/// The port used when none is given.
pub const DEFAULT_PORT: u16 = 5432;

/// The Unix-socket directory libpq uses by default on Debian and Ubuntu.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// A connection string, environment variable, passfile or certificate file
/// could not be used.
///
/// No message quotes a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string is malformed, or its parts do not fit together.
    #[error("invalid connection string: {reason}")]
    Invalid {
        /// What is wrong, never quoting a password.
        reason: String,
    },

    /// A keyword that libpq does not know.
    #[error("invalid connection option {key:?}")]
    UnknownOption {
        /// The keyword as written.
        key: String,
    },

    /// A libpq keyword that pgmig does not support.
    #[error("connection option {key:?} is not supported: {reason}")]
    UnsupportedOption {
        /// The keyword (with its value when only some values are refused).
        key: String,
        /// Why, and what to use instead.
        reason: String,
    },

    /// A keyword with a value it cannot take.
    #[error("invalid value {value:?} for connection option {key:?}: expected {expected}")]
    InvalidValue {
        /// The keyword.
        key: String,
        /// The value as written (never a password: any password is valid).
        value: String,
        /// What the keyword takes.
        expected: String,
    },

    /// A `PG*` environment variable holds an invalid value.
    #[error("invalid environment variable {var}")]
    Env {
        /// The variable, e.g. `PGPORT`.
        var: String,
        /// What is wrong with its value.
        #[source]
        source: Box<ConfigError>,
    },

    /// No user name was given and none could be found.
    #[error("no user name to connect as: set user= in the connection string, PGUSER or USER")]
    MissingUser,

    /// A certificate or key file for TLS cannot be used.
    #[error("cannot use {what} {}: {reason}", path.display())]
    CertFile {
        /// Which file: `root certificate file`, `client certificate file`
        /// or `client key file`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The TLS configuration was refused by rustls.
    #[error("cannot set up TLS: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
}
