//! The replication slots already on the source: every slot pgmig did not
//! create is listed, and an active one is a loud warning — someone else
//! may be using logical replication, and dropping or reusing their slot
//! would break them.

use pgmig_core::ident::quote_literal;
use pgmig_core::{Lsn, Major, Result, ServerRole, ServerVersion, admin};
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;
use tracing::warn;

use super::finding::{Finding, human_bytes, ids, query_failed};

const SOURCE: ServerRole = ServerRole::Source;

/// A row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRow {
    pub(crate) name: String,
    /// `physical` or `logical`.
    pub(crate) slot_type: String,
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) active: bool,
    pub(crate) active_pid: Option<i32>,
    /// A session-bound slot (10+).
    pub(crate) temporary: bool,
    /// `reserved`, `extended`, `unreserved`, `lost` (13+).
    pub(crate) wal_status: Option<String>,
    pub(crate) restart_lsn: Option<Lsn>,
}

/// The slot listing for `major`: `temporary` exists from 10, `wal_status`
/// from 13; older servers get constants in their place.
pub(crate) fn slots_sql(major: Major) -> String {
    let temporary = if major >= Major::V10 {
        "temporary"
    } else {
        "false"
    };
    let wal_status = if major >= Major::V13 {
        "wal_status::text"
    } else {
        "NULL::text"
    };
    format!(
        "SELECT slot_name::text, slot_type::text, plugin::text, database::text, active, \
           active_pid, {temporary}, {wal_status}, restart_lsn \
         FROM pg_replication_slots ORDER BY slot_name"
    )
}

async fn list_slots(client: &impl GenericClient, version: ServerVersion) -> Result<Vec<SlotRow>> {
    let rows = client
        .query(&slots_sql(version.major()), &[])
        .await
        .map_err(pgmig_core::Error::query("list the replication slots"))?;
    Ok(rows
        .iter()
        .map(|r| SlotRow {
            name: r.get(0),
            slot_type: r.get(1),
            plugin: r.get(2),
            database: r.get(3),
            active: r.get(4),
            active_pid: r.get(5),
            temporary: r.get(6),
            wal_status: r.get(7),
            restart_lsn: r.get::<_, Option<PgLsn>>(8).map(Lsn::from),
        })
        .collect())
}

/// Lists the replication slots on the source that are not in
/// `pgmig_slot_names`: each one is a warning, and an *active* one says
/// loudly that someone else may be using logical replication (slot, pid,
/// plugin). Inactive slots are shown with the WAL they hold back. When
/// there are none, one Ok finding says so.
///
/// A query that fails becomes a blocker; a lost connection is the error.
#[tracing::instrument(name = "check_existing_slots", skip_all, fields(pgmig_slots = pgmig_slot_names.len()))]
pub async fn check_existing_slots(
    source: &impl GenericClient,
    pgmig_slot_names: &[String],
) -> Result<Vec<Finding>> {
    let id = ids::SOURCE_EXISTING_SLOTS;
    let version = match ServerVersion::query(source).await {
        Ok(v) => v,
        Err(e) => return Ok(vec![query_failed(SOURCE, id, e)?]),
    };
    let slots = match list_slots(source, version).await {
        Ok(s) => s,
        Err(e) => return Ok(vec![query_failed(SOURCE, id, e)?]),
    };
    // Only for showing retained WAL: a standby source has no current LSN.
    let head = admin::current_wal_lsn(source, version).await.ok();
    Ok(judge_slots(&slots, pgmig_slot_names, head))
}

/// Judges the slot list; pure, so every case is unit-tested.
pub(crate) fn judge_slots(
    slots: &[SlotRow],
    pgmig_slot_names: &[String],
    head: Option<Lsn>,
) -> Vec<Finding> {
    let id = ids::SOURCE_EXISTING_SLOTS;
    let (ours, foreign): (Vec<&SlotRow>, Vec<&SlotRow>) = slots
        .iter()
        .partition(|s| pgmig_slot_names.contains(&s.name));
    if foreign.is_empty() {
        return vec![Finding::ok(
            SOURCE,
            id,
            format!(
                "no replication slots besides pgmig's ({} of pgmig's present)",
                ours.len()
            ),
        )];
    }
    foreign
        .into_iter()
        .map(|s| {
            let plugin = s.plugin.as_deref().unwrap_or("none");
            let pid = s
                .active_pid
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            let mut notes = Vec::new();
            if s.temporary {
                notes.push("temporary".to_owned());
            }
            if let Some(db) = &s.database {
                notes.push(format!("database {db}"));
            }
            if let Some(status) = &s.wal_status {
                notes.push(format!("wal_status {status}"));
            }
            if let (Some(head), Some(restart)) = (head, s.restart_lsn)
                && let Some(bytes) = head.checked_distance(restart)
            {
                notes.push(format!("retains {} of WAL", human_bytes(bytes)));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            if s.active {
                warn!(slot = %s.name, pid = %pid, plugin, kind = %s.slot_type, "active replication slot not created by pgmig");
                let summary = if s.slot_type == "logical" {
                    format!(
                        "ACTIVE: someone else may be using logical replication: slot {}, pid {pid}, plugin {plugin}{notes}",
                        s.name
                    )
                } else {
                    format!(
                        "ACTIVE: physical slot {} is in use by pid {pid} (a standby or a backup streams through it){notes}",
                        s.name
                    )
                };
                Finding::warn(SOURCE, id, summary).with_fix(format!(
                    "find out who consumes it before migrating (SELECT * FROM pg_stat_replication WHERE pid = {pid}); \
                     pgmig never drops or reuses a slot it did not create, but it counts against \
                     max_replication_slots and max_wal_senders"
                ))
            } else {
                Finding::warn(
                    SOURCE,
                    id,
                    format!(
                        "slot {} ({}, plugin {plugin}) exists and is inactive{notes}",
                        s.name, s.slot_type
                    ),
                )
                .with_fix(format!(
                    "an abandoned slot holds back WAL until the disk fills; if nobody uses it:\n  \
                     SELECT pg_drop_replication_slot({});",
                    quote_literal(&s.name)
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::finding::Severity;

    #[test]
    fn slot_sql_is_gated_per_version() {
        for major in Major::ALL {
            let sql = slots_sql(major);
            assert!(sql.contains("active_pid"), "{major}");
            assert_eq!(sql.contains(", temporary,"), major >= Major::V10, "{major}");
            assert_eq!(
                sql.contains("wal_status::text"),
                major >= Major::V13,
                "{major}"
            );
        }
        assert!(slots_sql(Major::V9_6).contains("false, NULL::text"));
    }

    fn slot(name: &str, kind: &str, active: bool) -> SlotRow {
        SlotRow {
            name: name.into(),
            slot_type: kind.into(),
            plugin: (kind == "logical").then(|| "test_decoding".into()),
            database: (kind == "logical").then(|| "app".into()),
            active,
            active_pid: active.then_some(4242),
            temporary: false,
            wal_status: Some("reserved".into()),
            restart_lsn: Some(Lsn(0x1000)),
        }
    }

    #[test]
    fn only_foreign_slots_are_listed() {
        let ours = vec!["dms_slot_01".to_owned()];
        let none = judge_slots(&[slot("dms_slot_01", "logical", true)], &ours, None);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].severity, Severity::Ok);
        assert!(none[0].summary.contains("1 of pgmig's present"));

        let found = judge_slots(
            &[
                slot("dms_slot_01", "logical", false),
                slot("debezium", "logical", true),
                slot("standby1", "physical", true),
                slot("old", "logical", false),
            ],
            &ours,
            Some(Lsn(0x1000 + 3 * 1024 * 1024)),
        );
        assert_eq!(found.len(), 3);
        assert!(found.iter().all(|f| f.severity == Severity::Warn));
        assert_eq!(
            found[0].summary,
            "ACTIVE: someone else may be using logical replication: slot debezium, pid 4242, \
             plugin test_decoding (database app, wal_status reserved, retains 3.0 MiB of WAL)"
        );
        assert!(
            found[1]
                .summary
                .starts_with("ACTIVE: physical slot standby1 is in use by pid 4242")
        );
        assert!(
            found[2]
                .summary
                .contains("slot old (logical, plugin test_decoding) exists and is inactive")
        );
        assert!(
            found[2]
                .fix
                .as_deref()
                .unwrap()
                .contains("pg_drop_replication_slot('old')")
        );
    }
}
