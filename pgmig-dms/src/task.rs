//! The `CreateReplicationTask` input: a CDC-only task reading one slot from
//! its native start point P.

use pgmig_core::Lsn;
use serde::Serialize;

use crate::identifier::DmsIdentifier;

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The key, e.g. `pgmig:slot`.
    pub key: String,
    /// The value.
    pub value: String,
}

impl Tag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// `MigrationType`: pgmig's tasks are CDC only, the full load being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationType {
    /// Change data capture only.
    Cdc,
}

/// The input of `CreateReplicationTask` (`aws dms create-replication-task
/// --cli-input-json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateReplicationTaskInput {
    /// The task identifier, e.g. `pgmig-dms-slot-01`.
    pub replication_task_identifier: DmsIdentifier,
    /// The slot's source endpoint; a placeholder
    /// ([`endpoint_arn_placeholder`]) when the script creates it.
    pub source_endpoint_arn: String,
    /// The target endpoint; a placeholder when the script creates it.
    pub target_endpoint_arn: String,
    /// The replication instance.
    pub replication_instance_arn: String,
    /// Always `cdc`.
    pub migration_type: MigrationType,
    /// The table mappings, as a JSON string.
    pub table_mappings: String,
    /// The task settings, as a JSON string.
    pub replication_task_settings: String,
    /// P as PostgreSQL prints it (`35FE3/B63D4718`): the native start point
    /// in the slot.
    pub cdc_start_position: String,
    /// Tags naming pgmig, the slot and P.
    pub tags: Vec<Tag>,
}

/// What an endpoint ARN not known yet is written as in a
/// `CreateReplicationTask` input: the generated script always passes the
/// real one on the command line, which takes precedence over the file.
pub fn endpoint_arn_placeholder(endpoint: &DmsIdentifier) -> String {
    format!("<ARN of endpoint {endpoint}, set by dms.sh>")
}

/// P in the form DMS takes as a PostgreSQL `CdcStartPosition`.
pub fn cdc_start_position(p: Lsn) -> String {
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_position_is_the_lsn_text() {
        let p: Lsn = "35FE3/B63D4718".parse().unwrap();
        assert_eq!(cdc_start_position(p), "35FE3/B63D4718");
        assert_eq!(cdc_start_position(Lsn(0x1_0000_00D0)), "1/D0");
    }
}
