//! AWS DMS artifacts for phase II: for each slot of the plan, the source
//! endpoint that reads it with pglogical, table mappings with one selection
//! rule per table, CDC-only task settings with a LOB mode sized from the
//! source, the `CreateReplicationTask` input starting at the pause LSN P,
//! and a script with the `aws dms` commands that create, start and watch
//! the tasks.
//!
//! The pieces are pure functions of the plan, P, the endpoints and the
//! measured LOB sizes ([`generate`]); the only I/O is reading the source
//! ([`check_slots`], [`measure_lobs`]) and writing the files
//! ([`write_artifacts`]). No password is ever part of an artifact.
//!
//! With the `aws` feature, the `driver` module makes the same calls as the script
//! through the AWS SDK for Rust.
//!
//! This crate knows nothing of COPY or the CLI.

pub mod artifacts;
#[cfg(feature = "aws")]
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod identifier;
pub mod lob;
pub mod mapping;
pub mod script;
pub mod slot;
pub mod task;
pub mod task_settings;
pub mod writer;

pub use artifacts::{
    ArtifactOptions, Artifacts, LobChoice, LobDecision, SOURCE_PASSWORD_ENV, SlotArtifacts,
    TARGET_PASSWORD_ENV, TargetEndpoint, generate,
};
pub use endpoint::{Credentials, DmsSslMode, EndpointConn};
pub use error::{DmsError, Result};
pub use identifier::{DmsIdentifier, IdentifierError};
pub use lob::{LobMeasurement, LobMode, LobPolicy, measure_lobs};
pub use mapping::{SelectionStyle, TableMappings, escape_name};
pub use slot::{SlotState, check_slots};
pub use task_settings::{ErrorBehavior, TaskSettings};
pub use writer::write_artifacts;
