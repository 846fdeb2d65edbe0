//! pgmig's own state, kept in the target's schema `pgmig` so that it cannot
//! be lost with a laptop: the migration (which source, the plan, the pause
//! LSN P) and a step log. Each step adds its own tables to the same schema
//! (pgmig-pglogical the slots it created, later the load chunks and CDC
//! progress). `pgmig cleanup` drops it; verification and DMS mappings never
//! include it.

use std::time::SystemTime;

use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;

use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::plan::Plan;

/// The schema that holds pgmig's state in the target.
pub const SCHEMA: &str = "pgmig";

/// The statements that create the state schema; each is idempotent.
pub const SCHEMA_SQL: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS pgmig",
    "CREATE TABLE IF NOT EXISTS pgmig.migration (\
       id int PRIMARY KEY CHECK (id = 1), \
       source_system_identifier numeric(20,0) NOT NULL, \
       source_database text NOT NULL, \
       plan jsonb NOT NULL, \
       pause_lsn pg_lsn, \
       paused_at timestamptz, \
       created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS pgmig.step_log (\
       id bigserial PRIMARY KEY, \
       step text NOT NULL, \
       status text NOT NULL, \
       detail text, \
       at timestamptz NOT NULL DEFAULT now())",
];

/// Records the migration: `$1` source system identifier, `$2` source
/// database, `$3` the plan as JSON (all text).
pub const RECORD_MIGRATION_SQL: &str = "INSERT INTO pgmig.migration (id, source_system_identifier, source_database, plan) \
     VALUES (1, $1::text::numeric, $2, $3::text::jsonb) \
     ON CONFLICT (id) DO UPDATE SET plan = EXCLUDED.plan";

/// The migration row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationRecord {
    /// The source cluster's system identifier.
    pub source_system_identifier: u64,
    /// The source database.
    pub source_database: String,
    /// The slot plan.
    pub plan: Plan,
    /// P, once the snapshot step has recorded it.
    pub pause_lsn: Option<Lsn>,
    /// When P was recorded.
    #[serde(skip)]
    pub paused_at: Option<SystemTime>,
}

/// Whether a relation exists (`to_regclass`), e.g. `pgmig.migration`.
pub async fn table_exists(client: &impl GenericClient, table: &str) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(Error::query("look for pgmig's state"))?;
    Ok(row.get(0))
}

/// Creates the state schema and tables when missing.
pub async fn ensure_schema(client: &impl GenericClient) -> Result<()> {
    for sql in SCHEMA_SQL {
        client
            .batch_execute(sql)
            .await
            .map_err(Error::query("create pgmig's state schema in the target"))?;
    }
    Ok(())
}

/// Reads the migration row, or `None` when the target holds no pgmig state.
pub async fn load_migration(client: &impl GenericClient) -> Result<Option<MigrationRecord>> {
    if !table_exists(client, "pgmig.migration").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT source_system_identifier::text, source_database, plan::text, pause_lsn, paused_at \
             FROM pgmig.migration WHERE id = 1",
            &[],
        )
        .await
        .map_err(Error::query("read the migration state"))?;
    let Some(row) = row else { return Ok(None) };
    let sysid: String = row.get(0);
    let plan: String = row.get(2);
    let corrupt = |detail: String| Error::Protocol {
        what: "read the migration state".into(),
        detail,
    };
    Ok(Some(MigrationRecord {
        source_system_identifier: sysid
            .parse()
            .map_err(|_| corrupt(format!("system identifier {sysid:?}")))?,
        source_database: row.get(1),
        plan: serde_json::from_str(&plan).map_err(|e| corrupt(format!("plan: {e}")))?,
        pause_lsn: row.get::<_, Option<PgLsn>>(3).map(Lsn::from),
        paused_at: row.get(4),
    }))
}

/// Records the migration's source and plan.
///
/// A target that already holds the state of a migration from another source
/// (another system identifier or database) is refused: that is a wiring
/// mistake. The plan may change until P is recorded, not after.
pub async fn init_migration(
    client: &impl GenericClient,
    source_system_identifier: u64,
    source_database: &str,
    plan: &Plan,
) -> Result<MigrationRecord> {
    ensure_schema(client).await?;
    let plan_json = serde_json::to_string(plan).map_err(|e| Error::Protocol {
        what: "serialize the plan".into(),
        detail: e.to_string(),
    })?;
    if let Some(existing) = load_migration(client).await? {
        if existing.source_system_identifier != source_system_identifier
            || existing.source_database != source_database
        {
            return Err(Error::State {
                detail: format!(
                    "the target already holds pgmig's state of a migration from database {:?} of \
                     system {}, not {:?} of system {}; point --target at the right server or run \
                     `pgmig cleanup` against it first",
                    existing.source_database,
                    existing.source_system_identifier,
                    source_database,
                    source_system_identifier
                ),
            });
        }
        if existing.plan == *plan {
            return Ok(existing);
        }
        if let Some(p) = existing.pause_lsn {
            return Err(Error::State {
                detail: format!(
                    "the plan cannot change after the snapshot at {p}; run `pgmig cleanup` to start over"
                ),
            });
        }
    }
    client
        .execute(
            RECORD_MIGRATION_SQL,
            &[
                &source_system_identifier.to_string(),
                &source_database,
                &plan_json,
            ],
        )
        .await
        .map_err(Error::query("record the migration"))?;
    load_migration(client)
        .await?
        .ok_or_else(|| Error::Protocol {
            what: "record the migration".into(),
            detail: "the row is missing after the insert".into(),
        })
}

/// Records P (`$1`) unless another P is recorded; one statement, so two
/// snapshots racing cannot both pin theirs.
pub const RECORD_PAUSE_LSN_SQL: &str = "UPDATE pgmig.migration SET pause_lsn = $1, \
       paused_at = CASE WHEN pause_lsn = $1 THEN paused_at ELSE now() END \
     WHERE id = 1 AND (pause_lsn IS NULL OR pause_lsn = $1)";

/// Records P. Refuses to replace a different P: data loaded at the old P
/// would not match (`pgmig cleanup` starts over).
///
/// One conditional statement: two snapshots racing cannot both pin their P.
pub async fn set_pause_lsn(client: &impl GenericClient, p: Lsn) -> Result<()> {
    let updated = client
        .execute(RECORD_PAUSE_LSN_SQL, &[&PgLsn::from(p)])
        .await
        .map_err(Error::query("record the pause LSN"))?;
    if updated == 1 {
        return Ok(());
    }
    match load_migration(client).await? {
        None => Err(Error::State {
            detail: "no migration is recorded in the target; run `pgmig setup` first".into(),
        }),
        Some(m) => Err(Error::State {
            detail: format!(
                "the migration is already pinned at P = {}; a new snapshot at {p} would not match the data \
                 loaded from it. Run `pgmig cleanup` to start over",
                m.pause_lsn.unwrap_or_default()
            ),
        }),
    }
}

/// Appends to the step log.
pub async fn log_step(
    client: &impl GenericClient,
    step: &str,
    status: &str,
    detail: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO pgmig.step_log (step, status, detail) VALUES ($1, $2, $3)",
            &[&step, &status, &detail],
        )
        .await
        .map_err(Error::query(format!("log step {step}")))?;
    Ok(())
}
