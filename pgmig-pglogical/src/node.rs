//! The `pglogical` extension and the provider node on the source.
//!
//! pglogical keeps one *local node* per database (`pglogical.local_node`,
//! pointing at a row of `pglogical.node` and its interface in
//! `pglogical.node_interface`, whose `if_dsn` holds the DSN in plain text).
//! Replication sets belong to the local node: `pglogical.drop_node` drops
//! them with their table memberships, and also drops every `pglogical` slot
//! of the database whose name contains `pgl_` (which is why
//! [`crate::slot::SlotName`] refuses such names). `pglogical.create_node`
//! also creates the sets `default`, `default_insert_only` and `ddl_sql`.
//!
//! The DSN pgmig stores never contains a password: pglogical would keep it
//! readable in its catalog. The password belongs in a passfile on the source
//! host (`~/.pgpass` of the server's OS user, or the file `PGPASSFILE`
//! names).
//!
//! Each change is planned first and then executed, so `--dry-run` prints
//! exactly what a real run executes (see [`crate::statement`]).

use pgmig_core::config::{ConfigError, ConnConfig, redact_dsn};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{info, instrument, warn};

use crate::statement::{Statement, execute_all};

/// The extension's name.
pub const EXTENSION: &str = "pglogical";

/// The replication sets `pglogical.create_node` creates itself.
pub const DEFAULT_SETS: &[&str] = &["default", "default_insert_only", "ddl_sql"];

/// The longest node name, in bytes (a PostgreSQL `name`).
pub const MAX_NODE_NAME_BYTES: usize = 63;

/// What went wrong with the extension or the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The extension is not created in the database.
    #[error(
        "the pglogical extension is not installed in database {database}; run CREATE EXTENSION pglogical there (pglogical must also be in shared_preload_libraries)"
    )]
    ExtensionMissing {
        /// The database.
        database: String,
    },

    /// The server has no pglogical build at all.
    #[error(
        "the server has no pglogical extension available; install the pglogical package for its PostgreSQL version (e.g. postgresql-15-pglogical) and add pglogical to shared_preload_libraries"
    )]
    ExtensionUnavailable,

    /// A node name PostgreSQL would truncate or cannot store.
    #[error("invalid pglogical node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// The DSN carries a password. The message never contains it.
    #[error(
        "the DSN for pglogical node {node} contains a password, which pglogical would store in plain text in pglogical.node_interface; remove it from the DSN and put it in a passfile on the source host instead (~/.pgpass of the PostgreSQL server's OS user, or the file named by PGPASSFILE)"
    )]
    DsnHasPassword {
        /// The node.
        node: String,
    },

    /// The DSN does not parse (the message never quotes a password).
    #[error("invalid DSN for pglogical node {node}")]
    InvalidDsn {
        /// The node.
        node: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },

    /// The database is already a pglogical node under another name.
    #[error(
        "this database is already the pglogical node {existing}; pglogical allows one node per database, so node {wanted} cannot be created (use the name {existing}, or drop that node first)"
    )]
    OtherLocalNode {
        /// The node that exists.
        existing: String,
        /// The node asked for.
        wanted: String,
    },

    /// A node of that name exists but is not this database's local node
    /// (a remote node known through a subscription).
    #[error(
        "a pglogical node named {node} exists but is not this database's local node; choose another node name"
    )]
    NameTaken {
        /// The node.
        node: String,
    },

    /// The node exists with another DSN (both shown without password).
    #[error(
        "pglogical node {node} exists with DSN {found:?}, not {wanted:?}; pass recreate to drop and recreate it"
    )]
    DsnDiffers {
        /// The node.
        node: String,
        /// The DSN in pglogical's catalog, password masked.
        found: String,
        /// The DSN asked for.
        wanted: String,
    },

    /// Subscriptions or active pglogical slots use the node.
    #[error(
        "pglogical node {node} is in use ({}); it is not dropped or recreated", .users.join(", ")
    )]
    InUse {
        /// The node.
        node: String,
        /// What uses it: `subscription s1`, `active slot pgl_db_n_s1 (pid 42)`.
        users: Vec<String>,
    },

    /// Dropping the node would drop replication sets that are not empty
    /// pglogical defaults.
    #[error(
        "pglogical node {node} still holds replication sets {}; dropping the node would drop them, so remove them first", .sets.join(", ")
    )]
    HasSets {
        /// The node.
        node: String,
        /// The sets that would be lost.
        sets: Vec<String>,
    },

    /// A catalog read or a statement failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
}

/// The installed version of the `pglogical` extension in the connected
/// database (`2.4.2`), or `None` when it is not created there.
pub async fn extension_version(
    client: &impl GenericClient,
) -> Result<Option<String>, pgmig_core::Error> {
    let row = client
        .query_opt(
            "SELECT extversion::text FROM pg_extension WHERE extname = $1",
            &[&EXTENSION],
        )
        .await
        .map_err(pgmig_core::Error::query(
            "read the pglogical extension version",
        ))?;
    Ok(row.map(|r| r.get(0)))
}

/// The pglogical version, or [`NodeError::ExtensionMissing`] naming the
/// database and the `CREATE EXTENSION` to run.
pub async fn require_extension(client: &impl GenericClient) -> Result<String, NodeError> {
    match extension_version(client).await? {
        Some(version) => Ok(version),
        None => Err(NodeError::ExtensionMissing {
            database: current_database(client).await?,
        }),
    }
}

async fn current_database(client: &impl GenericClient) -> Result<String, pgmig_core::Error> {
    let row = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(pgmig_core::Error::query("read the current database"))?;
    Ok(row.get(0))
}

/// The statements that create the extension when it is missing.
pub fn ensure_extension_sql() -> Vec<Statement> {
    vec![Statement::source(
        "create the pglogical extension",
        "CREATE EXTENSION IF NOT EXISTS pglogical",
    )]
}

/// What [`ensure_extension`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionPlan {
    /// The version installed now, if any.
    pub installed_version: Option<String>,
    /// What would run: empty when it is installed.
    pub statements: Vec<Statement>,
}

/// Plans [`ensure_extension`] without changing anything. Fails with
/// [`NodeError::ExtensionUnavailable`] when the server has no pglogical build.
pub async fn plan_ensure_extension(
    client: &impl GenericClient,
) -> Result<ExtensionPlan, NodeError> {
    let installed_version = extension_version(client).await?;
    if installed_version.is_some() {
        return Ok(ExtensionPlan {
            installed_version,
            statements: Vec::new(),
        });
    }
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = $1",
            &[&EXTENSION],
        )
        .await
        .map_err(pgmig_core::Error::query("look for the pglogical extension"))?;
    if available.is_none() {
        return Err(NodeError::ExtensionUnavailable);
    }
    Ok(ExtensionPlan {
        installed_version,
        statements: ensure_extension_sql(),
    })
}

/// What [`ensure_extension`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionResult {
    /// Whether this call created it.
    pub created: bool,
    /// The installed version.
    pub version: String,
}

/// Creates the `pglogical` extension in the connected database unless it is
/// there. This changes the source (a schema `pglogical` with its catalog
/// tables), so it is a step of its own, shown by `--dry-run`.
#[instrument(skip_all)]
pub async fn ensure_extension(client: &impl GenericClient) -> Result<ExtensionResult, NodeError> {
    let plan = plan_ensure_extension(client).await?;
    execute_all(client, &plan.statements).await?;
    let version = require_extension(client).await?;
    let created = !plan.statements.is_empty();
    if created {
        info!(%version, "created the pglogical extension");
    }
    Ok(ExtensionResult { created, version })
}

/// This database's pglogical node, as its catalogs hold it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// `pglogical.node.node_id`.
    pub node_id: u32,
    /// Its name.
    pub node_name: String,
    /// Its interface's DSN with any password masked (`********`).
    pub dsn: String,
    /// Whether the stored DSN contains a password.
    pub dsn_has_password: bool,
    #[serde(skip)]
    raw_dsn: String,
}

impl std::fmt::Debug for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeInfo")
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .field("dsn", &self.dsn)
            .field("dsn_has_password", &self.dsn_has_password)
            .finish()
    }
}

fn dsn_has_password(dsn: &str) -> bool {
    ConnConfig::parse(dsn).map_or_else(|_| redact_dsn(dsn) != dsn, |c| c.has_password())
}

/// The local node of the connected database, or `None` (also when the
/// extension is not installed).
pub async fn local_node(
    client: &impl GenericClient,
) -> Result<Option<NodeInfo>, pgmig_core::Error> {
    if extension_version(client).await?.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT n.node_id, n.node_name::text, i.if_dsn \
             FROM pglogical.local_node l \
             JOIN pglogical.node n ON n.node_id = l.node_id \
             JOIN pglogical.node_interface i ON i.if_id = l.node_local_interface",
            &[],
        )
        .await
        .map_err(pgmig_core::Error::query("read the local pglogical node"))?;
    Ok(row.map(|r| {
        let raw_dsn: String = r.get(2);
        NodeInfo {
            node_id: r.get(0),
            node_name: r.get(1),
            dsn: redact_dsn(&raw_dsn),
            dsn_has_password: dsn_has_password(&raw_dsn),
            raw_dsn,
        }
    }))
}

/// Whether a node (local or not) of that name exists.
async fn node_named(client: &impl GenericClient, name: &str) -> Result<bool, pgmig_core::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pglogical.node WHERE node_name = $1",
            &[&name],
        )
        .await
        .map_err(pgmig_core::Error::query(format!(
            "look up pglogical node {name}"
        )))?;
    Ok(row.is_some())
}

/// What uses node `node_id`: subscriptions of this database that name it as
/// origin or target, and active pglogical slots that pglogical's own
/// `drop_node` would refuse to drop (names containing `pgl_`).
pub async fn node_users(
    client: &impl GenericClient,
    node_id: u32,
) -> Result<Vec<String>, pgmig_core::Error> {
    let subs = client
        .query(
            "SELECT sub_name::text FROM pglogical.subscription \
             WHERE sub_origin = $1 OR sub_target = $1 ORDER BY sub_name",
            &[&node_id],
        )
        .await
        .map_err(pgmig_core::Error::query("read pglogical subscriptions"))?;
    let slots = client
        .query(
            "SELECT slot_name::text, active_pid FROM pg_replication_slots \
             WHERE plugin IN ('pglogical', 'pglogical_output') AND database = current_database() \
             AND slot_name ~ 'pgl_.*' AND active ORDER BY slot_name",
            &[],
        )
        .await
        .map_err(pgmig_core::Error::query("read active pglogical slots"))?;
    let mut users: Vec<String> = subs
        .iter()
        .map(|r| format!("subscription {}", r.get::<_, String>(0)))
        .collect();
    users.extend(slots.iter().map(|r| {
        let pid: Option<i32> = r.get(1);
        format!(
            "active slot {} (pid {})",
            r.get::<_, String>(0),
            pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        )
    }));
    Ok(users)
}

/// The sets of node `node_id` that dropping the node would lose: every set
/// except pglogical's empty defaults.
pub async fn sets_lost_with_node(
    client: &impl GenericClient,
    node_id: u32,
) -> Result<Vec<String>, pgmig_core::Error> {
    let defaults: Vec<String> = DEFAULT_SETS.iter().map(|s| (*s).to_owned()).collect();
    let rows = client
        .query(
            "SELECT s.set_name::text FROM pglogical.replication_set s \
             WHERE s.set_nodeid = $1 AND (NOT s.set_name::text = ANY($2::text[]) \
               OR EXISTS (SELECT 1 FROM pglogical.replication_set_table t WHERE t.set_id = s.set_id) \
               OR EXISTS (SELECT 1 FROM pglogical.replication_set_seq q WHERE q.set_id = s.set_id)) \
             ORDER BY 1",
            &[&node_id, &defaults],
        )
        .await
        .map_err(pgmig_core::Error::query("read the node's replication sets"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn validate_node_name(name: &str) -> Result<(), NodeError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NODE_NAME_BYTES {
        "it is longer than 63 bytes, and PostgreSQL would truncate it"
    } else if name.contains('\0') {
        "it contains a NUL character"
    } else {
        return Ok(());
    };
    Err(NodeError::InvalidNodeName {
        name: name.to_owned(),
        reason,
    })
}

/// Refuses a DSN with a password, or one that does not parse.
fn check_dsn(node_name: &str, dsn: &str) -> Result<(), NodeError> {
    let config = ConnConfig::parse(dsn).map_err(|source| NodeError::InvalidDsn {
        node: node_name.to_owned(),
        source,
    })?;
    if config.has_password() {
        return Err(NodeError::DsnHasPassword {
            node: node_name.to_owned(),
        });
    }
    Ok(())
}

fn create_node_statement(node_name: &str, dsn: &str) -> Statement {
    Statement::source(
        format!("create pglogical node {node_name}"),
        "SELECT pglogical.create_node(node_name := $1, dsn := $2)",
    )
    .bind(node_name)
    .bind(dsn)
}

fn drop_node_statement(node_name: &str) -> Statement {
    Statement::source(
        format!("drop pglogical node {node_name}"),
        "SELECT pglogical.drop_node(node_name := $1, ifexists := true)",
    )
    .bind(node_name)
}

/// The statements that create the provider node when it does not exist.
/// Refuses a DSN with a password (the message never contains it).
pub fn create_provider_node_sql(node_name: &str, dsn: &str) -> Result<Vec<Statement>, NodeError> {
    validate_node_name(node_name)?;
    check_dsn(node_name, dsn)?;
    Ok(vec![create_node_statement(node_name, dsn)])
}

/// The statements that drop the node when it exists.
pub fn drop_node_sql(node_name: &str) -> Vec<Statement> {
    vec![drop_node_statement(node_name)]
}

/// What [`create_provider_node`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// The node did not exist and was created.
    Created,
    /// The node existed with the same DSN and was kept.
    Existing,
    /// The node existed with another DSN and was dropped and created again.
    Recreated,
}

/// What [`create_provider_node`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// The node asked for.
    pub node_name: String,
    /// The database's local node now, if any.
    pub existing: Option<NodeInfo>,
    /// What the statements achieve.
    pub outcome: NodeOutcome,
    /// Whether the extension is missing (a dry run of a whole setup plans
    /// past it; executing fails with [`NodeError::ExtensionMissing`]).
    pub extension_missing: bool,
    /// What would run: empty when the node is kept.
    pub statements: Vec<Statement>,
}

/// Plans [`create_provider_node`] without changing anything; fails like it,
/// except that a missing extension is reported in the plan.
pub async fn plan_create_provider_node(
    client: &impl GenericClient,
    node_name: &str,
    dsn: &str,
    recreate: bool,
) -> Result<NodePlan, NodeError> {
    let create = create_provider_node_sql(node_name, dsn)?;
    let plan = |existing, outcome, extension_missing, statements| NodePlan {
        node_name: node_name.to_owned(),
        existing,
        outcome,
        extension_missing,
        statements,
    };
    if extension_version(client).await?.is_none() {
        return Ok(plan(None, NodeOutcome::Created, true, create));
    }
    let Some(existing) = local_node(client).await? else {
        if node_named(client, node_name).await? {
            return Err(NodeError::NameTaken {
                node: node_name.to_owned(),
            });
        }
        return Ok(plan(None, NodeOutcome::Created, false, create));
    };
    if existing.node_name != node_name {
        return Err(NodeError::OtherLocalNode {
            existing: existing.node_name,
            wanted: node_name.to_owned(),
        });
    }
    if existing.raw_dsn == dsn {
        return Ok(plan(
            Some(existing),
            NodeOutcome::Existing,
            false,
            Vec::new(),
        ));
    }
    if !recreate {
        return Err(NodeError::DsnDiffers {
            node: node_name.to_owned(),
            found: existing.dsn,
            wanted: dsn.to_owned(),
        });
    }
    check_droppable(client, &existing).await?;
    let mut statements = drop_node_sql(node_name);
    statements.extend(create);
    Ok(plan(
        Some(existing),
        NodeOutcome::Recreated,
        false,
        statements,
    ))
}

/// Refuses to drop a node in use or holding sets that would be lost.
async fn check_droppable(client: &impl GenericClient, node: &NodeInfo) -> Result<(), NodeError> {
    let users = node_users(client, node.node_id).await?;
    if !users.is_empty() {
        return Err(NodeError::InUse {
            node: node.node_name.clone(),
            users,
        });
    }
    let sets = sets_lost_with_node(client, node.node_id).await?;
    if !sets.is_empty() {
        return Err(NodeError::HasSets {
            node: node.node_name.clone(),
            sets,
        });
    }
    Ok(())
}

/// What [`create_provider_node`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeResult {
    /// The node.
    pub node_name: String,
    /// Its `node_id`.
    pub node_id: u32,
    /// Its DSN, password masked (pgmig never stores one).
    pub dsn: String,
    /// Created, existing or recreated.
    pub outcome: NodeOutcome,
}

/// Makes the connected database the pglogical provider node `node_name`
/// with `dsn`.
///
/// A DSN with a password is refused (see the module docs). An existing
/// local node of that name and DSN is kept. With another DSN it is an
/// error, unless `recreate`: then the node is dropped and created again —
/// only when no subscription or active pglogical slot uses it and it holds
/// no replication sets besides pglogical's empty defaults (dropping it would
/// drop them). Another node name on this database, or the extension
/// missing, is an error naming what to do.
#[instrument(skip_all, fields(node = %node_name, recreate))]
pub async fn create_provider_node(
    client: &impl GenericClient,
    node_name: &str,
    dsn: &str,
    recreate: bool,
) -> Result<NodeResult, NodeError> {
    let plan = plan_create_provider_node(client, node_name, dsn, recreate).await?;
    if plan.extension_missing {
        require_extension(client).await?;
    }
    execute_all(client, &plan.statements).await?;
    let node = local_node(client)
        .await?
        .filter(|n| n.node_name == node_name)
        .ok_or_else(|| pgmig_core::Error::Protocol {
            what: format!("read pglogical node {node_name}"),
            detail: "the node is not this database's local node after creating it".into(),
        })?;
    match plan.outcome {
        NodeOutcome::Created => {
            info!(node_id = node.node_id, dsn = %node.dsn, "created pglogical node")
        }
        NodeOutcome::Existing => info!(node_id = node.node_id, "reusing existing pglogical node"),
        NodeOutcome::Recreated => {
            warn!(node_id = node.node_id, dsn = %node.dsn, "recreated pglogical node with a new dsn")
        }
    }
    Ok(NodeResult {
        node_name: node.node_name,
        node_id: node.node_id,
        dsn: node.dsn,
        outcome: plan.outcome,
    })
}

/// What [`drop_node_if_exists`] would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropNodePlan {
    /// The node.
    pub node_name: String,
    /// The database's local node, if it is the one named.
    pub existing: Option<NodeInfo>,
    /// What would run: empty when there is no such node.
    pub statements: Vec<Statement>,
}

/// Plans [`drop_node_if_exists`] without changing anything; fails like it.
pub async fn plan_drop_node(
    client: &impl GenericClient,
    node_name: &str,
) -> Result<DropNodePlan, NodeError> {
    validate_node_name(node_name)?;
    let plan = |existing, statements| DropNodePlan {
        node_name: node_name.to_owned(),
        existing,
        statements,
    };
    if extension_version(client).await?.is_none() {
        return Ok(plan(None, Vec::new()));
    }
    match local_node(client).await? {
        Some(node) if node.node_name == node_name => {
            check_droppable(client, &node).await?;
            Ok(plan(Some(node), drop_node_sql(node_name)))
        }
        _ if node_named(client, node_name).await? => Err(NodeError::NameTaken {
            node: node_name.to_owned(),
        }),
        _ => Ok(plan(None, Vec::new())),
    }
}

/// What [`drop_node_if_exists`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropNodeResult {
    /// The node.
    pub node_name: String,
    /// Whether it was dropped (false: no such node, or no extension).
    pub dropped: bool,
}

/// Drops this database's local node `node_name` if it exists.
///
/// Refuses when a subscription or an active pglogical slot uses it, or when
/// it still holds replication sets other than pglogical's empty defaults
/// (remove pgmig's sets first with
/// [`crate::replication_set::remove_sets_if_exist`]). A node of that name
/// that is not the local node is an error, not dropped.
#[instrument(skip_all, fields(node = %node_name))]
pub async fn drop_node_if_exists(
    client: &impl GenericClient,
    node_name: &str,
) -> Result<DropNodeResult, NodeError> {
    let plan = plan_drop_node(client, node_name).await?;
    execute_all(client, &plan.statements).await?;
    let dropped = !plan.statements.is_empty();
    if dropped {
        info!("dropped pglogical node");
    } else {
        info!("pglogical node does not exist; nothing to drop");
    }
    Ok(DropNodeResult {
        node_name: node_name.to_owned(),
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr3t-Pw";

    #[test]
    fn password_dsns_are_refused_without_showing_the_password() {
        let dsns = [
            format!("host=src port=5432 dbname=app user=postgres password={PW}"),
            format!("host=src dbname=app password='{PW} x'"),
            format!("postgres://postgres:{PW}@src:5432/app"),
            format!("postgresql://postgres@src/app?password={PW}"),
        ];
        for dsn in dsns {
            let err = create_provider_node_sql("provider", &dsn).unwrap_err();
            assert!(
                matches!(err, NodeError::DsnHasPassword { .. }),
                "{dsn}: {err}"
            );
            let msg = err.to_string();
            assert!(!msg.contains(PW), "{msg}");
            assert!(
                msg.contains("passfile") && msg.contains("PGPASSFILE"),
                "{msg}"
            );
        }
    }

    #[test]
    fn bad_dsns_never_quote_the_password() {
        let dsn = format!("host=src password='{PW}");
        let err = create_provider_node_sql("provider", &dsn).unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!chain.contains(PW), "{chain}");
    }

    #[test]
    fn create_node_sql_shows_values() {
        let sql =
            create_provider_node_sql("provider", "host=src port=5432 dbname=app user=postgres")
                .unwrap();
        assert_eq!(
            sql[0].to_string(),
            "SELECT pglogical.create_node(node_name := 'provider', dsn := 'host=src port=5432 dbname=app user=postgres')"
        );
        assert_eq!(
            drop_node_sql("provider")[0].to_string(),
            "SELECT pglogical.drop_node(node_name := 'provider', ifexists := true)"
        );
        assert_eq!(
            ensure_extension_sql()[0].to_string(),
            "CREATE EXTENSION IF NOT EXISTS pglogical"
        );
    }

    #[test]
    fn node_names_are_checked() {
        assert!(create_provider_node_sql("", "host=x").is_err());
        assert!(create_provider_node_sql(&"n".repeat(64), "host=x").is_err());
        assert!(create_provider_node_sql(&"n".repeat(63), "host=x").is_ok());
    }

    #[test]
    fn stored_password_detection() {
        assert!(dsn_has_password("host=x password=y"));
        assert!(dsn_has_password("postgres://u:p@h/db"));
        assert!(!dsn_has_password("host=x user=y"));
    }
}
