//! The slots as the source has them now: a DMS task can start at P from a
//! slot only if the slot still exists, decodes with pglogical and has not
//! confirmed anything past P (DMS refuses a start position older than the
//! slot's `confirmed_flush_lsn`, and the changes in between are gone).

use pgmig_core::Lsn;
use pgmig_core::error::Error as CoreError;
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

use crate::error::{DmsError, Result};

/// The query reading the slots named in `$1` (`text[]`); the same on 9.6+.
pub const SLOTS_SQL: &str = "SELECT slot_name::text, plugin::text, confirmed_flush_lsn, active \
     FROM pg_replication_slots WHERE slot_name::text = ANY($1::text[])";

/// A slot as the source has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotState {
    /// The slot name.
    pub name: String,
    /// Its output plugin.
    pub plugin: Option<String>,
    /// Its `confirmed_flush_lsn`.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// Whether a consumer is attached right now (a DMS task cannot attach
    /// while another consumer is).
    pub active: bool,
}

/// Reads `slots` on the source and checks that each can serve a CDC task
/// starting at `p`: it exists, its plugin is pglogical and its
/// `confirmed_flush_lsn` is at or before `p`.
pub async fn check_slots(
    client: &impl GenericClient,
    slots: &[&str],
    p: Lsn,
) -> Result<Vec<SlotState>> {
    let rows = client
        .query(SLOTS_SQL, &[&slots])
        .await
        .map_err(CoreError::query("read the replication slots"))?;
    let found: Vec<SlotState> = rows
        .iter()
        .map(|r| SlotState {
            name: r.get(0),
            plugin: r.get(1),
            confirmed_flush_lsn: r.get::<_, Option<PgLsn>>(2).map(Lsn::from),
            active: r.get(3),
        })
        .collect();
    let mut states = Vec::with_capacity(slots.len());
    for slot in slots {
        let Some(state) = found.iter().find(|s| s.name == *slot) else {
            return Err(DmsError::SlotMissing {
                slot: (*slot).to_owned(),
            });
        };
        check_slot(state, p)?;
        states.push(state.clone());
    }
    Ok(states)
}

/// Checks one slot's state against P (see [`check_slots`]).
pub fn check_slot(state: &SlotState, p: Lsn) -> Result<()> {
    let plugin = state.plugin.as_deref().unwrap_or("");
    if plugin != "pglogical" {
        return Err(DmsError::SlotPlugin {
            slot: state.name.clone(),
            plugin: plugin.to_owned(),
        });
    }
    if let Some(confirmed) = state.confirmed_flush_lsn
        && confirmed > p
    {
        return Err(DmsError::SlotPastStart {
            slot: state.name.clone(),
            confirmed_flush: confirmed,
            pause_lsn: p,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_past_p_or_of_another_plugin_is_refused() {
        let p = Lsn(1000);
        let state = |plugin: &str, confirmed| SlotState {
            name: "s".into(),
            plugin: Some(plugin.into()),
            confirmed_flush_lsn: Some(Lsn(confirmed)),
            active: false,
        };
        assert!(check_slot(&state("pglogical", 1000), p).is_ok());
        assert!(check_slot(&state("pglogical", 10), p).is_ok());
        let err = check_slot(&state("pglogical", 1001), p).unwrap_err();
        assert!(
            matches!(err, DmsError::SlotPastStart { .. }) && err.is_refusal(),
            "{err}"
        );
        let err = check_slot(&state("test_decoding", 10), p).unwrap_err();
        assert!(matches!(err, DmsError::SlotPlugin { .. }), "{err}");
    }
}
