//! The three servers of a migration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which of the migration's servers a connection, a finding or an error is
/// about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// The production primary: read, and given pglogical objects, never user writes.
    Source,
    /// The maintenance replica: a physical standby of the source, paused at P during the load.
    Replica,
    /// The new primary that receives the schema, the data and the changes.
    Target,
}

impl ServerRole {
    /// The lower-case name used in messages, flags and config sections.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Source => "source",
            ServerRole::Replica => "replica",
            ServerRole::Target => "target",
        }
    }
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
