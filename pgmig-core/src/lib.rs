//! Core types shared by every pgmig crate: the [`Lsn`] newtype, ordered
//! [`ServerVersion`]s and the version-aware admin calls that depend on them
//! (pause and resume WAL replay, replay and receive LSNs, system identifier),
//! connection configuration (libpq key=value strings and `postgres://` URLs,
//! `PG*` environment variables, passfile, TLS, pools — a password is never
//! printed), identifier quoting, catalog introspection and the shared
//! [`Error`] type.
//!
//! This crate knows nothing of pglogical, COPY, DMS or the CLI.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod error;
pub mod ident;
pub mod locks;
pub mod lsn;
pub mod plan;
pub mod role;
pub mod state;
pub mod version;

pub use error::{Error, ErrorKind, Result};
pub use ident::{QualifiedTable, quote_ident};
pub use lsn::{Lsn, ParseLsnError};
pub use role::ServerRole;
pub use version::{Major, ServerVersion};
