//! Setting the target's sequences from the source at cutover. Logical
//! decoding carries no sequence values, so each sequence is read on the
//! source and set on the target — never moved backwards.

use pgmig_core::catalog::list_sequences;
use pgmig_core::error::{Error, Result};
use pgmig_core::{QualifiedTable, ServerVersion};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// What happened to one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceAction {
    /// Set to the source's position.
    Set,
    /// Already at or ahead of the source: left alone.
    AlreadyAhead,
    /// No such sequence on the target.
    MissingOnTarget,
}

/// One sequence at cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceSync {
    /// The sequence.
    pub sequence: QualifiedTable,
    /// The source's `last_value`.
    pub source_last_value: i64,
    /// The source's `is_called`.
    pub source_is_called: bool,
    /// The target's `last_value` before, when it exists.
    pub target_last_value: Option<i64>,
    /// What was done.
    pub action: SequenceAction,
}

/// Whether position `a` (`last_value`, `is_called`) is ahead of `b` for a
/// sequence counting in the direction of `increment`.
pub fn is_ahead(a: (i64, bool), b: (i64, bool), increment: i64) -> bool {
    if increment >= 0 {
        a > b
    } else {
        (-(a.0 as i128), a.1) > (-(b.0 as i128), b.1)
    }
}

/// Sets every source sequence on the target to the source's position,
/// unless the target's is already at or ahead of it.
pub async fn sync_sequences(
    source: &impl GenericClient,
    target: &impl GenericClient,
) -> Result<Vec<SequenceSync>> {
    let target_version = ServerVersion::query(target).await?;
    let mut out = Vec::new();
    for seq in list_sequences(source).await? {
        let name = seq.sequence.quoted();
        let exists: bool = target
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map_err(Error::query(format!(
                "look for sequence {name} on the target"
            )))?
            .get(0);
        if !exists {
            out.push(SequenceSync {
                sequence: seq.sequence,
                source_last_value: seq.last_value,
                source_is_called: seq.is_called,
                target_last_value: None,
                action: SequenceAction::MissingOnTarget,
            });
            continue;
        }
        let row = target
            .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
            .await
            .map_err(Error::query(format!("read sequence {name} on the target")))?;
        let current: (i64, bool) = (row.get(0), row.get(1));
        let increment: i64 = if target_version.major() >= pgmig_core::Major::V10 {
            target
                .query_one(
                    "SELECT seqincrement FROM pg_catalog.pg_sequence WHERE seqrelid = $1::text::regclass",
                    &[&name],
                )
                .await
                .map_err(Error::query(format!("read the increment of {name} on the target")))?
                .get(0)
        } else {
            target
                .query_one(&format!("SELECT increment_by FROM {name}"), &[])
                .await
                .map_err(Error::query(format!(
                    "read the increment of {name} on the target"
                )))?
                .get(0)
        };
        let wanted = (seq.last_value, seq.is_called);
        let action = if is_ahead(wanted, current, increment) {
            target
                .execute(
                    "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                    &[&name, &seq.last_value, &seq.is_called],
                )
                .await
                .map_err(Error::query(format!("set sequence {name} on the target")))?;
            SequenceAction::Set
        } else {
            SequenceAction::AlreadyAhead
        };
        out.push(SequenceSync {
            sequence: seq.sequence,
            source_last_value: seq.last_value,
            source_is_called: seq.is_called,
            target_last_value: Some(current.0),
            action,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_follows_the_direction() {
        assert!(is_ahead((10, true), (5, true), 1));
        assert!(is_ahead((5, true), (5, false), 1));
        assert!(!is_ahead((5, true), (5, true), 1));
        assert!(!is_ahead((4, true), (5, false), 1));
        assert!(is_ahead((-10, true), (-5, true), -1));
        assert!(!is_ahead((10, true), (5, true), -1));
        assert!(is_ahead((i64::MIN, true), (i64::MAX, true), -1));
    }
}
