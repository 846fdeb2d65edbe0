//! Logical replication slots with plugin `pglogical` on the source: their
//! validated names ([`SlotName`]), idempotent creation, listing with lag and
//! retained WAL, and dropping only what pgmig created.
//!
//! A slot keeps the source's WAL from `restart_lsn` on and hands out changes
//! from `confirmed_flush_lsn` on. pgmig records both at creation: the
//! snapshot later proves `confirmed_flush_lsn` ≤ P for every slot, because a
//! slot created after P would silently lose the transactions in between.
//!
//! Each change is planned first (a read-only look at `pg_replication_slots`
//! that decides which [`Statement`]s are still needed) and then executed, so
//! `--dry-run` prints exactly what a real run executes; the `*_sql`
//! functions give the statements without looking at a server.

use std::fmt;
use std::str::FromStr;

use pgmig_core::admin::WalFunctions;
use pgmig_core::error::{ErrorKind, kind_of_sqlstate};
use pgmig_core::{Lsn, Major, ServerVersion};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::PgLsn;
use tracing::{info, instrument, warn};

use crate::statement::{Statement, execute_all};

/// The output plugin of every slot pgmig creates.
pub const PLUGIN: &str = "pglogical";

/// The longest slot name pgmig accepts, in bytes: PostgreSQL allows 63, and
/// the insert/truncate replication set `i<slot>` needs one byte more.
pub const MAX_SLOT_NAME_BYTES: usize = 62;

/// The text no slot name may contain: `pglogical.drop_node` drops every
/// `pglogical` slot of the database whose name matches the unanchored
/// regular expression `pgl_.*`, i.e. that contains `pgl_` anywhere.
pub const RESERVED_INFIX: &str = "pgl_";

/// A replication slot name pgmig can use: 1 to [`MAX_SLOT_NAME_BYTES`]
/// lower-case ASCII letters, digits and underscores (PostgreSQL's rule, which
/// DMS shares), never containing [`RESERVED_INFIX`].
///
/// Parsed once at the edge; `Display` and serde use the name itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotName(String);

/// Why a string is not a usable slot name. Each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotNameError {
    /// The empty string.
    #[error(
        "a replication slot name cannot be empty; use 1 to {MAX_SLOT_NAME_BYTES} lower-case letters, digits and underscores, e.g. dms_slot_01"
    )]
    Empty,

    /// Longer than [`MAX_SLOT_NAME_BYTES`].
    #[error(
        "replication slot name {name:?} is {bytes} bytes long; at most {MAX_SLOT_NAME_BYTES} are allowed (PostgreSQL's limit is 63, and the insert/truncate replication set \"i\" + slot name needs one more)"
    )]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },

    /// A character other than `a`–`z`, `0`–`9` and `_`.
    #[error(
        "replication slot name {name:?} contains {character:?}; PostgreSQL (and DMS) allow only lower-case letters a-z, digits 0-9 and underscores"
    )]
    InvalidCharacter {
        /// The rejected name.
        name: String,
        /// The first character that is not allowed.
        character: char,
    },

    /// Contains [`RESERVED_INFIX`].
    #[error(
        "replication slot name {name:?} contains \"pgl_\", which pglogical reserves: pglogical.drop_node drops every pglogical slot whose name contains it"
    )]
    ReservedInfix {
        /// The rejected name.
        name: String,
    },
}

impl SlotName {
    /// Validates `name`; see the type's docs for the rules.
    pub fn new(name: impl Into<String>) -> Result<SlotName, SlotNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(SlotNameError::Empty);
        }
        if let Some(character) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(SlotNameError::InvalidCharacter { name, character });
        }
        if name.len() > MAX_SLOT_NAME_BYTES {
            let bytes = name.len();
            return Err(SlotNameError::TooLong { name, bytes });
        }
        if name.contains(RESERVED_INFIX) {
            return Err(SlotNameError::ReservedInfix { name });
        }
        Ok(SlotName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SlotName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for SlotName {
    type Err = SlotNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SlotName::new(s)
    }
}

impl TryFrom<String> for SlotName {
    type Error = SlotNameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        SlotName::new(value)
    }
}

impl TryFrom<&str> for SlotName {
    type Error = SlotNameError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        SlotName::new(value)
    }
}

impl Serialize for SlotName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SlotName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SlotName::new(s).map_err(serde::de::Error::custom)
    }
}

/// What went wrong with a replication slot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// A slot of that name exists with another output plugin.
    #[error(
        "replication slot {slot} already exists with plugin {plugin}, but pgmig needs plugin pglogical; drop it or choose another slot name"
    )]
    OtherPlugin {
        /// The slot.
        slot: String,
        /// Its plugin.
        plugin: String,
    },

    /// A logical slot of that name exists in another database.
    #[error(
        "replication slot {slot} already exists in database {database}, not in {current}; slot names are cluster-wide, choose another slot name"
    )]
    OtherDatabase {
        /// The slot.
        slot: String,
        /// The database it belongs to.
        database: String,
        /// The database pgmig is connected to.
        current: String,
    },

    /// A physical slot of that name exists.
    #[error("replication slot {slot} already exists as a physical slot; choose another slot name")]
    Physical {
        /// The slot.
        slot: String,
    },

    /// A temporary slot of that name exists (it vanishes with its session).
    #[error(
        "replication slot {slot} already exists as a temporary slot of another session; choose another slot name"
    )]
    Temporary {
        /// The slot.
        slot: String,
    },

    /// The slot is in use and cannot be dropped.
    #[error(
        "replication slot {slot} is active (used by the backend with pid {}); stop its consumer first", pid_text(*.pid)
    )]
    Active {
        /// The slot.
        slot: String,
        /// The backend using it, when the server says.
        pid: Option<i32>,
    },

    /// pgmig refuses to drop a slot it did not create.
    #[error(
        "replication slot {slot} {reason}; pgmig drops only slots it created (force to drop it anyway)"
    )]
    NotOurs {
        /// The slot.
        slot: String,
        /// Why it is not pgmig's, e.g. `was not created by pgmig`.
        reason: String,
    },

    /// A catalog read or a statement failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
}

fn pid_text(pid: Option<i32>) -> String {
    pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

/// Physical or logical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotType {
    /// A logical slot: decodes changes of one database through a plugin.
    Logical,
    /// A physical slot: keeps WAL for a standby or `pg_receivewal`.
    Physical,
}

impl fmt::Display for SlotType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotType::Logical => "logical",
            SlotType::Physical => "physical",
        })
    }
}

/// One row of `pg_replication_slots`, with the distances pgmig computes from
/// the source's current WAL LSN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// The slot's name (any slot of the server, so not necessarily a
    /// [`SlotName`] pgmig would accept).
    pub name: String,
    /// The output plugin of a logical slot.
    pub plugin: Option<String>,
    /// Logical or physical.
    pub slot_type: SlotType,
    /// The database of a logical slot.
    pub database: Option<String>,
    /// Whether it belongs to the database this connection is in.
    pub in_current_database: bool,
    /// A temporary slot (10+; always false on 9.6).
    pub temporary: bool,
    /// Whether a consumer is connected.
    pub active: bool,
    /// The consumer's backend pid.
    pub active_pid: Option<i32>,
    /// The oldest WAL the slot keeps.
    pub restart_lsn: Option<Lsn>,
    /// Where the consumer has confirmed it is (logical slots).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `wal_status` (13+): `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL written since `confirmed_flush_lsn`: how far the consumer
    /// is behind. `None` on a standby or without a confirmed LSN.
    pub lag_bytes: Option<u64>,
    /// Bytes of WAL the slot holds back on the server (current LSN minus
    /// `restart_lsn`). `None` on a standby or without a restart LSN.
    pub retained_wal_bytes: Option<u64>,
}

/// The query behind [`list_slots`] for `version`, optionally filtered to one
/// slot name (`$1`).
///
/// Every column named here exists in `pg_replication_slots` from 9.6 on
/// (`confirmed_flush_lsn` arrived in 9.6, `active_pid` in 9.5) except
/// `temporary` (10) and `wal_status` (13), which are replaced by constants
/// on older servers.
fn slots_query(version: ServerVersion, one_slot: bool) -> String {
    let f = WalFunctions::for_major(version.major());
    let temporary = if version.major() >= Major::V10 {
        "temporary"
    } else {
        "false"
    };
    let wal_status = if version.major() >= Major::V13 {
        "wal_status"
    } else {
        "NULL::text"
    };
    let filter = if one_slot {
        " WHERE slot_name = $1"
    } else {
        ""
    };
    format!(
        "SELECT slot_name::text, plugin::text, slot_type, database::text, \
         coalesce(database = current_database(), false), {temporary}, active, active_pid, \
         restart_lsn, confirmed_flush_lsn, {wal_status}, \
         CASE WHEN pg_is_in_recovery() THEN NULL ELSE {}() END \
         FROM pg_catalog.pg_replication_slots{filter} ORDER BY slot_name",
        f.current_lsn
    )
}

/// The SQL [`list_slots`] runs on a server of `version`.
pub fn list_slots_sql(version: ServerVersion) -> String {
    slots_query(version, false)
}

fn slot_info(row: &tokio_postgres::Row) -> Result<SlotInfo, pgmig_core::Error> {
    let slot_type: String = row.get(2);
    let slot_type = match slot_type.as_str() {
        "logical" => SlotType::Logical,
        "physical" => SlotType::Physical,
        other => {
            return Err(pgmig_core::Error::Protocol {
                what: "list replication slots".into(),
                detail: format!("unknown slot_type {other:?}"),
            });
        }
    };
    let lsn = |i: usize| row.get::<_, Option<PgLsn>>(i).map(Lsn::from);
    let restart_lsn = lsn(8);
    let confirmed_flush_lsn = lsn(9);
    let current = lsn(11);
    let distance = |from: Option<Lsn>| {
        current
            .zip(from)
            .map(|(c, f)| c.checked_distance(f).unwrap_or(0))
    };
    Ok(SlotInfo {
        name: row.get(0),
        plugin: row.get(1),
        slot_type,
        database: row.get(3),
        in_current_database: row.get(4),
        temporary: row.get(5),
        active: row.get(6),
        active_pid: row.get(7),
        restart_lsn,
        confirmed_flush_lsn,
        wal_status: row.get(10),
        lag_bytes: distance(confirmed_flush_lsn),
        retained_wal_bytes: distance(restart_lsn),
    })
}

/// Every replication slot of the server (all databases, both types), in name
/// order, with lag and retained WAL computed as [`Lsn`] distances from the
/// current WAL LSN (9.6: `pg_current_xlog_location()`).
pub async fn list_slots(
    client: &impl GenericClient,
    version: ServerVersion,
) -> Result<Vec<SlotInfo>, SlotError> {
    let rows = client
        .query(&slots_query(version, false), &[])
        .await
        .map_err(pgmig_core::Error::query("list replication slots"))?;
    Ok(rows.iter().map(slot_info).collect::<Result<_, _>>()?)
}

/// The statement [`find_slot`] runs (`$1` the slot name), for `--dry-run`.
pub fn find_slot_sql(version: ServerVersion) -> String {
    slots_query(version, true)
}

/// One slot by name, or `None`.
pub async fn find_slot(
    client: &impl GenericClient,
    version: ServerVersion,
    name: &str,
) -> Result<Option<SlotInfo>, SlotError> {
    let row = client
        .query_opt(&slots_query(version, true), &[&name])
        .await
        .map_err(pgmig_core::Error::query(format!(
            "read replication slot {name}"
        )))?;
    Ok(row.as_ref().map(slot_info).transpose()?)
}

/// Whether `existing` is a slot pgmig may use as `slot`: logical, plugin
/// `pglogical`, in this database, not temporary, and not active: a consumer
/// connected to it could advance it past the point pgmig pauses at.
fn check_reusable(slot: &SlotName, existing: &SlotInfo) -> Result<(), SlotError> {
    let name = slot.to_string();
    if existing.slot_type == SlotType::Physical {
        return Err(SlotError::Physical { slot: name });
    }
    if existing.plugin.as_deref() != Some(PLUGIN) {
        return Err(SlotError::OtherPlugin {
            slot: name,
            plugin: existing.plugin.clone().unwrap_or_default(),
        });
    }
    if !existing.in_current_database {
        return Err(SlotError::OtherDatabase {
            slot: name,
            database: existing.database.clone().unwrap_or_default(),
            current: String::new(),
        });
    }
    if existing.temporary {
        return Err(SlotError::Temporary { slot: name });
    }
    if existing.active {
        return Err(SlotError::Active {
            slot: name,
            pid: existing.active_pid,
        });
    }
    Ok(())
}

/// How pgmig handles a failed slot statement, from its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotFailure {
    /// A slot of that name already exists (created concurrently).
    AlreadyExists,
    /// The slot does not exist (dropped concurrently).
    Gone,
    /// The slot is in use by a backend.
    InUse,
    /// Anything else: passed on.
    Other,
}

/// Classifies through [`kind_of_sqlstate`], pgmig's one SQLSTATE mapping;
/// only "object in use", which has no [`ErrorKind`], is matched here.
fn slot_failure(code: Option<&SqlState>) -> SlotFailure {
    match code {
        None => SlotFailure::Other,
        Some(code) if *code == SqlState::OBJECT_IN_USE => SlotFailure::InUse,
        Some(code) => match kind_of_sqlstate(code) {
            ErrorKind::DuplicateObject => SlotFailure::AlreadyExists,
            ErrorKind::UndefinedObject => SlotFailure::Gone,
            _ => SlotFailure::Other,
        },
    }
}

/// The statements that create `slot` when it does not exist yet.
///
/// The function's output columns are `(slot_name, xlog_position)` on 9.6 and
/// `(slot_name, lsn)` from 10 on, so the statement names them itself with a
/// column alias list and runs unchanged on every version.
pub fn create_logical_slot_sql(slot: &SlotName) -> Vec<Statement> {
    vec![
        Statement::source(
            format!("create replication slot {slot}"),
            format!(
                "SELECT s.lsn FROM pg_catalog.pg_create_logical_replication_slot($1, '{PLUGIN}') \
                 AS s(slot_name, lsn)"
            ),
        )
        .bind(slot.as_str()),
    ]
}

/// What [`create_logical_slot`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateSlotPlan {
    /// The slot.
    pub slot: SlotName,
    /// The slot found under that name, reusable (otherwise planning fails).
    pub existing: Option<SlotInfo>,
    /// What would run: empty when the slot is reused.
    pub statements: Vec<Statement>,
}

/// Looks at the source and plans [`create_logical_slot`] without changing
/// anything. Fails like it when a slot of that name is not reusable.
pub async fn plan_create_logical_slot(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<CreateSlotPlan, SlotError> {
    let version = ServerVersion::query(client).await?;
    let existing = find_slot(client, version, slot.as_str()).await?;
    if let Some(existing) = &existing {
        match check_reusable(slot, existing) {
            Ok(()) => {}
            Err(SlotError::OtherDatabase { slot, database, .. }) => {
                let current = current_database(client).await?;
                return Err(SlotError::OtherDatabase {
                    slot,
                    database,
                    current,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let statements = if existing.is_some() {
        Vec::new()
    } else {
        create_logical_slot_sql(slot)
    };
    Ok(CreateSlotPlan {
        slot: slot.clone(),
        existing,
        statements,
    })
}

/// The name of the database `client` is connected to.
async fn current_database(client: &impl GenericClient) -> Result<String, pgmig_core::Error> {
    let row = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(pgmig_core::Error::query("read the current database"))?;
    Ok(row.get(0))
}

/// What [`create_logical_slot`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateSlotResult {
    /// The slot.
    pub slot: SlotName,
    /// Whether this call created it (false: an existing slot was reused).
    pub created: bool,
    /// Its `restart_lsn` right after creation (or now, when reused).
    pub restart_lsn: Lsn,
    /// Its `confirmed_flush_lsn` right after creation (or now, when reused):
    /// the first changes it hands out commit after this LSN.
    pub confirmed_flush_lsn: Lsn,
}

/// Creates the logical slot `slot` with plugin `pglogical` in the connected
/// database, or reuses it when it already exists there with that plugin.
///
/// A slot of that name that is physical, temporary, in another database, of
/// another plugin or active (a consumer is connected) is an error naming it.
/// Creation waits until the transactions running at that moment have
/// finished (PostgreSQL needs a consistent point), and cannot run inside a
/// transaction that has written.
/// The LSNs are read back from `pg_replication_slots`.
#[instrument(skip_all, fields(slot = %slot))]
pub async fn create_logical_slot(
    client: &impl GenericClient,
    slot: &SlotName,
) -> Result<CreateSlotResult, SlotError> {
    let plan = plan_create_logical_slot(client, slot).await?;
    let mut created = false;
    if !plan.statements.is_empty() {
        match execute_all(client, &plan.statements).await {
            Ok(()) => created = true,
            // Created by someone else between the plan and now: check it like any existing slot.
            Err(e) if slot_failure(e.sqlstate()) == SlotFailure::AlreadyExists => {
                warn!("slot appeared while creating it; checking it");
                let again = plan_create_logical_slot(client, slot).await?;
                if !again.statements.is_empty() {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let version = ServerVersion::query(client).await?;
    let info = find_slot(client, version, slot.as_str())
        .await?
        .ok_or_else(|| pgmig_core::Error::Protocol {
            what: format!("read replication slot {slot}"),
            detail: "the slot is gone right after creating it".into(),
        })?;
    let (Some(restart_lsn), Some(confirmed_flush_lsn)) =
        (info.restart_lsn, info.confirmed_flush_lsn)
    else {
        return Err(pgmig_core::Error::Protocol {
            what: format!("read replication slot {slot}"),
            detail: "restart_lsn or confirmed_flush_lsn is NULL".into(),
        }
        .into());
    };
    if created {
        info!(%restart_lsn, %confirmed_flush_lsn, "created replication slot");
    } else {
        info!(%restart_lsn, %confirmed_flush_lsn, "reusing existing replication slot");
    }
    Ok(CreateSlotResult {
        slot: slot.clone(),
        created,
        restart_lsn,
        confirmed_flush_lsn,
    })
}

/// The statements that drop `slot` when it exists.
pub fn drop_slot_sql(slot: &SlotName) -> Vec<Statement> {
    vec![
        Statement::source(
            format!("drop replication slot {slot}"),
            "SELECT pg_drop_replication_slot($1)",
        )
        .bind(slot.as_str()),
    ]
}

/// What [`drop_slot_if_exists`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropSlotPlan {
    /// The slot.
    pub slot: SlotName,
    /// The slot found under that name.
    pub existing: Option<SlotInfo>,
    /// What would run: empty when there is no such slot.
    pub statements: Vec<Statement>,
}

/// Plans [`drop_slot_if_exists`] without changing anything; fails like it.
pub async fn plan_drop_slot(
    client: &impl GenericClient,
    slot: &SlotName,
    force: bool,
    created_by_pgmig: bool,
) -> Result<DropSlotPlan, SlotError> {
    let version = ServerVersion::query(client).await?;
    let existing = find_slot(client, version, slot.as_str()).await?;
    let Some(info) = &existing else {
        return Ok(DropSlotPlan {
            slot: slot.clone(),
            existing,
            statements: Vec::new(),
        });
    };
    if info.active {
        return Err(SlotError::Active {
            slot: slot.to_string(),
            pid: info.active_pid,
        });
    }
    if !force {
        let reason = if !created_by_pgmig {
            Some("was not created by pgmig".to_owned())
        } else {
            // Recorded as pgmig's, but someone replaced it with another slot.
            match check_reusable(slot, info) {
                Ok(()) => None,
                Err(SlotError::OtherPlugin { plugin, .. }) => {
                    Some(format!("uses plugin {plugin}, not {PLUGIN}"))
                }
                Err(SlotError::Physical { .. }) => Some("is a physical slot".to_owned()),
                Err(SlotError::OtherDatabase { database, .. }) => {
                    Some(format!("belongs to database {database}"))
                }
                Err(SlotError::Temporary { .. }) => Some("is a temporary slot".to_owned()),
                Err(other) => return Err(other),
            }
        };
        if let Some(reason) = reason {
            return Err(SlotError::NotOurs {
                slot: slot.to_string(),
                reason,
            });
        }
    }
    Ok(DropSlotPlan {
        slot: slot.clone(),
        existing,
        statements: drop_slot_sql(slot),
    })
}

/// What [`drop_slot_if_exists`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropSlotResult {
    /// The slot.
    pub slot: SlotName,
    /// Whether it was dropped (false: there was no such slot).
    pub dropped: bool,
}

/// Drops `slot` if it exists.
///
/// Only a slot pgmig created (`created_by_pgmig`, from pgmig's state) that
/// still looks like one (logical, plugin `pglogical`, this database) is
/// dropped; any other needs `force`. An active slot is never dropped: the
/// error names the pid of the backend using it.
#[instrument(skip_all, fields(slot = %slot, force, created_by_pgmig))]
pub async fn drop_slot_if_exists(
    client: &impl GenericClient,
    slot: &SlotName,
    force: bool,
    created_by_pgmig: bool,
) -> Result<DropSlotResult, SlotError> {
    let plan = plan_drop_slot(client, slot, force, created_by_pgmig).await?;
    if plan.statements.is_empty() {
        info!("replication slot does not exist; nothing to drop");
        return Ok(DropSlotResult {
            slot: slot.clone(),
            dropped: false,
        });
    }
    match execute_all(client, &plan.statements).await {
        Ok(()) => {
            info!("dropped replication slot");
            Ok(DropSlotResult {
                slot: slot.clone(),
                dropped: true,
            })
        }
        Err(e) => match slot_failure(e.sqlstate()) {
            // Dropped by someone else between the plan and now.
            SlotFailure::Gone => Ok(DropSlotResult {
                slot: slot.clone(),
                dropped: false,
            }),
            // A consumer connected between the plan and now.
            SlotFailure::InUse => Err(SlotError::Active {
                slot: slot.to_string(),
                pid: None,
            }),
            SlotFailure::AlreadyExists | SlotFailure::Other => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&SlotNameError) -> bool;

    #[test]
    fn slot_name_rules() {
        let ok = ["dms_slot_01", "a", "_", "0", "slot_9_x", &"a".repeat(62)];
        for name in ok {
            assert_eq!(SlotName::new(name).unwrap().as_str(), name);
        }
        let cases: [(&str, Check); 10] = [
            ("", |e| matches!(e, SlotNameError::Empty)),
            ("Dms_slot", |e| {
                matches!(e, SlotNameError::InvalidCharacter { character: 'D', .. })
            }),
            ("dms-slot", |e| {
                matches!(e, SlotNameError::InvalidCharacter { character: '-', .. })
            }),
            ("dms slot", |e| {
                matches!(e, SlotNameError::InvalidCharacter { character: ' ', .. })
            }),
            ("slot$", |e| {
                matches!(e, SlotNameError::InvalidCharacter { character: '$', .. })
            }),
            ("größe", |e| {
                matches!(
                    e,
                    SlotNameError::InvalidCharacter {
                        character: 'ö', ..
                    }
                )
            }),
            (&"a".repeat(63), |e| {
                matches!(e, SlotNameError::TooLong { bytes: 63, .. })
            }),
            ("pgl_x", |e| {
                matches!(e, SlotNameError::ReservedInfix { .. })
            }),
            ("my_pgl_slot", |e| {
                matches!(e, SlotNameError::ReservedInfix { .. })
            }),
            ("x\"y", |e| {
                matches!(e, SlotNameError::InvalidCharacter { character: '"', .. })
            }),
        ];
        for (name, check) in cases {
            let err = SlotName::new(name).unwrap_err();
            assert!(check(&err), "{name:?}: {err}");
        }
    }

    #[test]
    fn slot_name_errors_name_the_rule() {
        let msg = SlotName::new("Dms").unwrap_err().to_string();
        assert!(msg.contains("lower-case letters"), "{msg}");
        let msg = SlotName::new("a".repeat(70)).unwrap_err().to_string();
        assert!(msg.contains("at most 62"), "{msg}");
        let msg = SlotName::new("").unwrap_err().to_string();
        assert!(msg.contains("cannot be empty"), "{msg}");
    }

    #[test]
    fn slot_name_serde_validates() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error as DeError, StrDeserializer};
        let de: StrDeserializer<'_, DeError> = "dms_slot_01".into_deserializer();
        assert_eq!(SlotName::deserialize(de).unwrap().as_str(), "dms_slot_01");
        let de: StrDeserializer<'_, DeError> = "Bad".into_deserializer();
        assert!(SlotName::deserialize(de).is_err());
        assert_eq!(
            "dms_slot_02".parse::<SlotName>().unwrap().to_string(),
            "dms_slot_02"
        );
    }

    #[test]
    fn slot_queries_per_version() {
        let v96 = ServerVersion::from(Major::V9_6);
        let q = list_slots_sql(v96);
        assert!(q.contains("pg_current_xlog_location()"), "{q}");
        assert!(q.contains(", false, active"), "{q}");
        assert!(q.contains("NULL::text"), "{q}");
        let v12 = ServerVersion::from(Major::V12);
        let q = list_slots_sql(v12);
        assert!(q.contains("pg_current_wal_lsn()"), "{q}");
        assert!(q.contains("temporary"), "{q}");
        assert!(!q.contains("wal_status"), "{q}");
        let q = list_slots_sql(ServerVersion::from(Major::V15));
        assert!(q.contains("wal_status"), "{q}");
    }

    #[test]
    fn slot_query_on_9_6_names_only_its_columns() {
        let v96 = ServerVersion::from(Major::V9_6);
        assert_eq!(
            list_slots_sql(v96),
            "SELECT slot_name::text, plugin::text, slot_type, database::text, \
             coalesce(database = current_database(), false), false, active, active_pid, \
             restart_lsn, confirmed_flush_lsn, NULL::text, \
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_xlog_location() END \
             FROM pg_catalog.pg_replication_slots ORDER BY slot_name"
        );
        let one = slots_query(v96, true);
        assert!(
            one.ends_with(
                "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 ORDER BY slot_name"
            ),
            "{one}"
        );
        for q in [list_slots_sql(v96), one] {
            for newer in ["temporary", "wal_status", "pg_current_wal_lsn"] {
                assert!(!q.contains(newer), "{newer} is not on 9.6: {q}");
            }
        }
    }

    #[test]
    fn create_and_drop_sql() {
        let slot = SlotName::new("dms_slot_01").unwrap();
        let create = create_logical_slot_sql(&slot);
        assert_eq!(create.len(), 1);
        // The same text on 9.6, whose output column is xlog_position: the
        // alias list renames the columns by position.
        assert_eq!(
            create[0].to_string(),
            "SELECT s.lsn FROM pg_catalog.pg_create_logical_replication_slot('dms_slot_01', 'pglogical') \
             AS s(slot_name, lsn)"
        );
        assert!(!create[0].sql.contains("xlog_position"));
        assert_eq!(
            drop_slot_sql(&slot)[0].to_string(),
            "SELECT pg_drop_replication_slot('dms_slot_01')"
        );
    }

    fn ours(slot: &str) -> SlotInfo {
        SlotInfo {
            name: slot.to_owned(),
            plugin: Some(PLUGIN.to_owned()),
            slot_type: SlotType::Logical,
            database: Some("app".to_owned()),
            in_current_database: true,
            temporary: false,
            active: false,
            active_pid: None,
            restart_lsn: Some(Lsn(0x100)),
            confirmed_flush_lsn: Some(Lsn(0x200)),
            wal_status: None,
            lag_bytes: None,
            retained_wal_bytes: None,
        }
    }

    #[test]
    fn an_active_slot_is_not_reused() {
        let slot = SlotName::new("dms_slot_01").unwrap();
        check_reusable(&slot, &ours("dms_slot_01")).unwrap();
        let busy = SlotInfo {
            active: true,
            active_pid: Some(4242),
            ..ours("dms_slot_01")
        };
        let err = check_reusable(&slot, &busy).unwrap_err();
        assert!(
            matches!(&err, SlotError::Active { slot, pid: Some(4242) } if slot == "dms_slot_01"),
            "{err}"
        );
        assert!(err.to_string().contains("4242"), "{err}");
        // Another plugin is the more useful message, even when active.
        let other = SlotInfo {
            plugin: Some("test_decoding".to_owned()),
            ..busy
        };
        assert!(matches!(
            check_reusable(&slot, &other),
            Err(SlotError::OtherPlugin { .. })
        ));
    }

    #[test]
    fn slot_failures_follow_the_shared_sqlstate_mapping() {
        let cases = [
            (Some(SqlState::DUPLICATE_OBJECT), SlotFailure::AlreadyExists),
            (Some(SqlState::UNDEFINED_OBJECT), SlotFailure::Gone),
            (Some(SqlState::OBJECT_IN_USE), SlotFailure::InUse),
            (Some(SqlState::INSUFFICIENT_PRIVILEGE), SlotFailure::Other),
            (
                Some(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
                SlotFailure::Other,
            ),
            (None, SlotFailure::Other),
        ];
        for (code, failure) in cases {
            assert_eq!(slot_failure(code.as_ref()), failure, "{code:?}");
        }
    }
}
