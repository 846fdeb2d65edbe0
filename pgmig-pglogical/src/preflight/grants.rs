//! The least privilege each server needs, checked by name: for every
//! privilege the connected role lacks, which pgmig commands need it and the
//! exact `GRANT` / `ALTER ROLE` that gives it (with the RDS equivalent).
//!
//! Found by experiment on PostgreSQL 15 with pglogical 2.4 (see
//! `docs/privileges.md`):
//!
//! - **source**: no superuser is needed once the `pglogical` extension is
//!   installed. pglogical's functions (`create_node`,
//!   `create_replication_set`, `replication_set_add_table`, `drop_node`)
//!   check nothing beyond `USAGE` on schema `pglogical`; pgmig reads
//!   pglogical's catalog tables (`SELECT`); slots and their changes need
//!   `REPLICATION`; `pg_dump` (schema), `verify --against source` and
//!   `cutover` read every table and sequence (`SELECT`, and `BYPASSRLS` for
//!   tables with row-level security).
//! - **replica**: `EXECUTE` on the replay pause/resume functions (granted
//!   on the primary: the standby is read-only and the grant replicates),
//!   `SELECT` on every table and sequence, `BYPASSRLS` for tables with
//!   row-level security (the load reads with `row_security = off` and is
//!   refused rather than copy a subset).
//! - **target**: `CREATE` on the database and on the schemas the source's
//!   objects go into (owning the database gives both), and for `pgmig cdc`
//!   and `cutover` the right to set `session_replication_role` (15+:
//!   `GRANT SET ON PARAMETER`; before 15 only a superuser, or RDS's
//!   `rds_superuser`).
//!
//! Every check here only reads catalogs (`has_*_privilege`), so it runs as
//! the role being checked and changes nothing.

use pgmig_core::{Error, Major, Result, ServerRole, ServerVersion, quote_ident};
use tokio_postgres::GenericClient;

use super::finding::{Finding, Severity, ids, query_failed};
use super::privilege::{MANAGED_REPLICATION_ROLES, RoleInfo};

/// How many object names one missing privilege lists.
const SHOWN: usize = 5;

/// Schemas that are never the migration's.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pglogical', 'pgmig') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// The user tables, partitioned tables and sequences the connected role
/// cannot read as pgmig does: no `USAGE` on the schema, no `SELECT`, or
/// row-level security that applies to it (not a superuser nor `BYPASSRLS`,
/// and not the owner — or the table forces RLS on its owner too).
/// Identical on 9.6 to 18 (`relkind 'p'` simply matches nothing on 9.6).
fn unreadable_sql() -> String {
    format!(
        "WITH me AS (SELECT rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user) \
         SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT'), \
                (c.relkind IN ('r', 'p') AND c.relrowsecurity AND NOT me.bypass \
                 AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN me \
         WHERE c.relkind IN ('r', 'p', 'S') AND {SYSTEM_SCHEMAS} \
         ORDER BY 1, 2"
    )
}

/// `USAGE` on schema `pglogical`, and its tables and views the role cannot
/// `SELECT`; no row when the schema does not exist. 9.4+ (`FILTER`).
const PGLOGICAL_SQL: &str = "SELECT has_schema_privilege(n.oid, 'USAGE'), \
       COALESCE(array_agg(c.relname::text ORDER BY c.relname) \
          FILTER (WHERE c.oid IS NOT NULL AND NOT has_table_privilege(c.oid, 'SELECT')), '{}') \
     FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'v') \
     WHERE n.nspname = 'pglogical' GROUP BY n.oid";

/// What one privilege the role lacks means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    /// The privilege, named as PostgreSQL names it, with what it covers.
    pub(crate) privilege: String,
    /// The pgmig commands that fail without it.
    pub(crate) needed_by: &'static str,
    /// The statements that grant it.
    pub(crate) fix: String,
}

/// The tables and sequences the role cannot read, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unreadable {
    /// Schemas without `USAGE` (they hold migrated relations).
    pub(crate) schemas: Vec<String>,
    /// Tables without `SELECT`, quoted `schema.table`.
    pub(crate) tables: Vec<String>,
    /// Sequences without `SELECT`, quoted `schema.sequence`.
    pub(crate) sequences: Vec<String>,
    /// Tables whose row-level security applies to the role.
    pub(crate) rls: Vec<String>,
}

impl Unreadable {
    /// Reads what the connected role cannot read.
    async fn query(client: &impl GenericClient) -> Result<Unreadable> {
        let rows = client
            .query(&unreadable_sql(), &[])
            .await
            .map_err(Error::query("read the role's privileges on the tables"))?;
        let mut out = Unreadable::default();
        for row in rows {
            let schema: String = row.get(0);
            let name = format!("{}.{}", quote_ident(&schema), quote_ident(row.get(1)));
            let kind: String = row.get(2);
            let usage: bool = row.get(3);
            let select: bool = row.get(4);
            let rls: bool = row.get(5);
            if !usage && !out.schemas.contains(&schema) {
                out.schemas.push(schema);
            }
            if !select {
                if kind == "S" {
                    out.sequences.push(name.clone());
                } else {
                    out.tables.push(name.clone());
                }
            }
            if rls {
                out.rls.push(name);
            }
        }
        Ok(out)
    }
}

/// `a, b, c (+2 more)`.
fn shown(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" (+{} more)", names.len() - SHOWN));
    }
    text
}

/// `GRANT pg_read_all_data` from 14, per-schema grants before.
fn read_all_fix(role: &str, version: ServerVersion, schemas: &[String], where_: &str) -> String {
    if version.major() >= Major::V14 {
        return format!("run {where_} as a superuser:\n  GRANT pg_read_all_data TO {role};");
    }
    if schemas.is_empty() {
        return format!(
            "run {where_} as a superuser, for each schema of the migration:\n  GRANT USAGE ON SCHEMA <schema> TO {role};\n  \
             GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO {role};\n  \
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO {role};"
        );
    }
    let mut text = format!("run {where_} as a superuser:");
    for s in schemas {
        let s = quote_ident(s);
        text.push_str(&format!(
            "\n  GRANT USAGE ON SCHEMA {s} TO {role};\n  GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {role};\n  \
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role};"
        ));
    }
    text
}

/// The schema of a quoted `schema.name` as read from the catalog.
fn schemas_of(unreadable: &Unreadable, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = unreadable.schemas.clone();
    for n in names {
        // Names were built with quote_ident: `"schema"."name"`.
        if let Some(schema) = n.strip_prefix('"').and_then(|rest| {
            rest.split_once("\".\"")
                .map(|(s, _)| s.replace("\"\"", "\""))
        }) && !out.contains(&schema)
        {
            out.push(schema);
        }
    }
    out
}

/// What reading every table and sequence (as the load, verify, schema or
/// cutover do) lacks; `needed_by` names those commands on this server,
/// `where_` where the grants must run.
pub(crate) fn judge_reading(
    role: &RoleInfo,
    version: ServerVersion,
    unreadable: &Unreadable,
    needed_by: &'static str,
    where_: &str,
) -> Vec<Missing> {
    let q = quote_ident(&role.name);
    let mut out = Vec::new();
    if role.superuser {
        return out;
    }
    let mut relations: Vec<String> = unreadable.tables.clone();
    relations.extend(unreadable.sequences.iter().cloned());
    if !unreadable.schemas.is_empty() || !relations.is_empty() {
        let mut what = Vec::new();
        if !unreadable.schemas.is_empty() {
            what.push(format!("USAGE on schema(s) {}", shown(&unreadable.schemas)));
        }
        if !unreadable.tables.is_empty() {
            what.push(format!(
                "SELECT on {} table(s): {}",
                unreadable.tables.len(),
                shown(&unreadable.tables)
            ));
        }
        if !unreadable.sequences.is_empty() {
            what.push(format!(
                "SELECT on {} sequence(s): {}",
                unreadable.sequences.len(),
                shown(&unreadable.sequences)
            ));
        }
        out.push(Missing {
            privilege: what.join("; "),
            needed_by,
            fix: read_all_fix(&q, version, &schemas_of(unreadable, &relations), where_),
        });
    }
    if !unreadable.rls.is_empty() {
        out.push(Missing {
            privilege: format!(
                "BYPASSRLS: row-level security applies to it on {} table(s): {} — pgmig reads with \
                 row_security = off and refuses rather than copy or compare a subset of the rows",
                unreadable.rls.len(),
                shown(&unreadable.rls)
            ),
            needed_by,
            fix: format!(
                "run {where_} as a superuser:\n  ALTER ROLE {q} WITH BYPASSRLS;\n\
                 (where BYPASSRLS cannot be granted, as on managed servers without a superuser: connect as the tables' owner, or \
                 ALTER TABLE … NO FORCE ROW LEVEL SECURITY and grant the owner role to {q})"
            ),
        });
    }
    out
}

/// The finding of one server from what its role lacks; `what_ok` describes
/// a role that lacks nothing.
fn finding_of(
    server: ServerRole,
    id: &'static str,
    role: &RoleInfo,
    missing: &[Missing],
    what_ok: &str,
) -> Finding {
    let name = &role.name;
    if missing.is_empty() {
        let who = if role.superuser {
            "a superuser".to_owned()
        } else {
            format!("not a superuser, {what_ok}")
        };
        return Finding::ok(server, id, format!("role {name} is {who}"));
    }
    let lacks = missing
        .iter()
        .map(|m| format!("{} (needed by {})", m.privilege, m.needed_by))
        .collect::<Vec<_>>()
        .join("; ");
    let fix = missing
        .iter()
        .map(|m| m.fix.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Finding::blocker(
        server,
        id,
        format!("role {name} is not a superuser and lacks {lacks}"),
    )
    .with_fix(fix)
}

/// What the source role lacks; pure.
///
/// `pglogical` is `None` when the schema does not exist (the extension
/// finding covers that), else `(usage, unreadable pglogical tables)`.
pub(crate) fn judge_source(
    role: &RoleInfo,
    version: ServerVersion,
    pglogical: Option<(bool, Vec<String>)>,
    unreadable: &Unreadable,
) -> Vec<Missing> {
    if role.superuser {
        return Vec::new();
    }
    let q = quote_ident(&role.name);
    let mut out = Vec::new();
    if !role.can_replicate() {
        out.push(Missing {
            privilege: "the REPLICATION privilege (create, read and drop logical slots)".to_owned(),
            needed_by: "setup, snapshot, cdc, cutover, cleanup",
            fix: format!(
                "run as a superuser:\n  ALTER ROLE {q} WITH REPLICATION;\non RDS instead:\n  GRANT {} TO {q};",
                MANAGED_REPLICATION_ROLES[0]
            ),
        });
    }
    if let Some((usage, tables)) = pglogical {
        if !usage {
            out.push(Missing {
                privilege: "USAGE on schema pglogical (call pglogical.create_node and the \
                            replication-set functions)"
                    .to_owned(),
                needed_by: "setup, cleanup",
                fix: format!("run as a superuser:\n  GRANT USAGE ON SCHEMA pglogical TO {q};"),
            });
        }
        if !tables.is_empty() {
            out.push(Missing {
                privilege: format!(
                    "SELECT on pglogical's tables ({}: pgmig reads the node, sets and their \
                     tables)",
                    shown(&tables)
                ),
                needed_by: "setup, snapshot, status, cleanup",
                fix: format!(
                    "run as a superuser:\n  GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO {q};"
                ),
            });
        }
    }
    out.extend(judge_reading(
        role,
        version,
        unreadable,
        "schema (pg_dump locks and reads every table), verify --against source, cutover, \
         dms generate (measures LOB sizes)",
        "on the source",
    ));
    out
}

/// The `source.privileges` finding: a superuser, or a role with exactly
/// the grants pgmig needs on the source (see the module docs).
pub(crate) async fn source_finding(client: &impl GenericClient) -> Result<Finding> {
    const SOURCE: ServerRole = ServerRole::Source;
    let id = ids::SOURCE_PRIVILEGES;
    let read = async {
        let role = RoleInfo::query(client).await?;
        let version = ServerVersion::query(client).await?;
        let pglogical = client
            .query_opt(PGLOGICAL_SQL, &[])
            .await
            .map_err(Error::query(
                "read the role's privileges on schema pglogical",
            ))?
            .map(|r| (r.get::<_, bool>(0), r.get::<_, Vec<String>>(1)));
        let unreadable = Unreadable::query(client).await?;
        Ok::<_, Error>((role, version, pglogical, unreadable))
    };
    let (role, version, pglogical, unreadable) = match read.await {
        Ok(r) => r,
        Err(e) => return query_failed(SOURCE, id, e),
    };
    let missing = judge_source(&role, version, pglogical, &unreadable);
    let ok = if let Some(group) = role.managed_superuser() {
        format!("a member of {group}, with every grant pgmig needs on the source")
    } else {
        "with every grant pgmig needs on the source".to_owned()
    };
    let finding = finding_of(SOURCE, id, &role, &missing, &ok);
    let q = quote_ident(&role.name);
    Ok(match finding.fix.clone() {
        Some(fix) => finding.with_fix(format!(
            "{fix}\non RDS, where the master user runs these: the pglogical extension is created by \
             a member of rds_superuser (GRANT rds_superuser TO {q};), who then owns its schema"
        )),
        None => finding,
    })
}

/// Refuses when the source role lacks a privilege `pgmig setup` needs.
pub(crate) async fn require_for_setup(
    client: &impl GenericClient,
) -> std::result::Result<(), crate::Error> {
    let role = RoleInfo::query(client).await?;
    if role.superuser {
        return Ok(());
    }
    let version = ServerVersion::query(client).await?;
    let pglogical = client
        .query_opt(PGLOGICAL_SQL, &[])
        .await
        .map_err(Error::query(
            "read the role's privileges on schema pglogical",
        ))?
        .map(|r| (r.get::<_, bool>(0), r.get::<_, Vec<String>>(1)));
    let missing: Vec<Missing> = judge_source(&role, version, pglogical, &Unreadable::default())
        .into_iter()
        .filter(|m| m.needed_by.contains("setup"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(crate::error::Refusal::MissingPrivileges {
        server: ServerRole::Source,
        step: "setup",
        summary: format!(
            "role {} lacks {}",
            role.name,
            missing
                .iter()
                .map(|m| m.privilege.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        fix: missing
            .iter()
            .map(|m| m.fix.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    }
    .into())
}

/// The replay control functions of this version.
fn replay_functions(version: ServerVersion) -> [&'static str; 2] {
    if version.major() >= Major::V10 {
        [
            "pg_catalog.pg_wal_replay_pause()",
            "pg_catalog.pg_wal_replay_resume()",
        ]
    } else {
        [
            "pg_catalog.pg_xlog_replay_pause()",
            "pg_catalog.pg_xlog_replay_resume()",
        ]
    }
}

/// What the replica role lacks; pure. `replay` is whether it may execute
/// the pause and resume functions.
pub(crate) fn judge_replica(
    role: &RoleInfo,
    version: ServerVersion,
    replay: bool,
    unreadable: &Unreadable,
) -> Vec<Missing> {
    if role.superuser {
        return Vec::new();
    }
    let q = quote_ident(&role.name);
    let mut out = Vec::new();
    if !replay {
        let [pause, resume] = replay_functions(version);
        out.push(Missing {
            privilege: format!("EXECUTE on {pause} and {resume}"),
            needed_by: "snapshot, resume-replica (and load, verify when they pause it again)",
            fix: format!(
                "run on the source primary as a superuser (the standby is read-only; the grant \
                 replicates to it):\n  GRANT EXECUTE ON FUNCTION {pause}, {resume} TO {q};"
            ),
        });
    }
    out.extend(judge_reading(
        role,
        version,
        unreadable,
        "load, verify",
        "on the source primary (the standby is read-only; it replicates)",
    ));
    out
}

/// The `replica.privileges` finding: a superuser, or a role that may pause
/// and resume replay and read every table and sequence, bypassing
/// row-level security where a table has it.
pub(crate) async fn replica_finding(client: &impl GenericClient) -> Result<Finding> {
    const REPLICA: ServerRole = ServerRole::Replica;
    let id = ids::REPLICA_PRIVILEGES;
    let read = async {
        let role = RoleInfo::query(client).await?;
        let version = ServerVersion::query(client).await?;
        let [pause, resume] = replay_functions(version);
        let replay: bool = client
            .query_one(
                "SELECT has_function_privilege($1, 'EXECUTE') AND has_function_privilege($2, 'EXECUTE')",
                &[&pause, &resume],
            )
            .await
            .map_err(Error::query("read the role's privilege on the replay functions"))?
            .get(0);
        let unreadable = Unreadable::query(client).await?;
        Ok::<_, Error>((role, version, replay, unreadable))
    };
    let (role, version, replay, unreadable) = match read.await {
        Ok(r) => r,
        Err(e) => return query_failed(REPLICA, id, e),
    };
    let missing = judge_replica(&role, version, replay, &unreadable);
    Ok(finding_of(
        REPLICA,
        id,
        &role,
        &missing,
        "it may pause and resume replay and read every table",
    ))
}

/// Whether the target role may set `session_replication_role`: a
/// superuser; on 15+ `GRANT SET ON PARAMETER`; before 15 a member of a
/// managed superuser role (RDS lets `rds_superuser` set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicationRole {
    /// It may.
    Settable,
    /// Only through a managed superuser role (not provable from here).
    Managed(&'static str),
    /// It may not.
    Denied,
}

/// What the target role lacks; pure. `schemas_denied` are the source's
/// schemas that exist on the target without `CREATE` for the role.
pub(crate) fn judge_target(
    role: &RoleInfo,
    version: ServerVersion,
    database: &str,
    schemas_denied: &[String],
    replication_role: ReplicationRole,
) -> (Vec<Missing>, Vec<Missing>) {
    let q = quote_ident(&role.name);
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    if role.superuser {
        return (blockers, warnings);
    }
    if !schemas_denied.is_empty() {
        let grants = schemas_denied
            .iter()
            .map(|s| format!("  GRANT CREATE ON SCHEMA {} TO {q};", quote_ident(s)))
            .collect::<Vec<_>>()
            .join("\n");
        blockers.push(Missing {
            privilege: format!(
                "CREATE on schema(s) {} (they exist on the target; the source's objects go into them)",
                shown(schemas_denied)
            ),
            needed_by: "schema, load",
            fix: format!(
                "run on the target as the database owner or a superuser:\n  ALTER DATABASE {} OWNER TO {q};  \
                 -- simplest: the owner may create in public (15+)\nor:\n{grants}",
                quote_ident(database)
            ),
        });
    }
    if replication_role == ReplicationRole::Denied {
        let fix = if version.major() >= Major::V15 {
            format!(
                "run on the target as a superuser:\n  GRANT SET ON PARAMETER session_replication_role TO {q};"
            )
        } else {
            format!(
                "before PostgreSQL 15 only a superuser may set it: run pgmig cdc as a superuser \
                 (ALTER ROLE {q} WITH SUPERUSER;), or on RDS as a member of rds_superuser \
                 (GRANT rds_superuser TO {q};)"
            )
        };
        warnings.push(Missing {
            privilege: "SET on parameter session_replication_role (the applier sets it to \
                        replica so target triggers and foreign keys do not fire twice)"
                .to_owned(),
            needed_by: "cdc, cutover (not DMS)",
            fix,
        });
    }
    (blockers, warnings)
}

/// The source's schemas that hold objects (relations, functions, types):
/// the restore creates into those that already exist on the target.
const SOURCE_SCHEMAS_SQL: &str = "SELECT n.nspname::text FROM pg_namespace n \
     WHERE (EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid) \
        OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = n.oid) \
        OR EXISTS (SELECT 1 FROM pg_type t WHERE t.typnamespace = n.oid)) AND ";

/// The extra `target.privileges` findings: `CREATE` on the source's schemas
/// that already exist on the target (a blocker: the schema restore fails
/// without it), and whether the role may set `session_replication_role`
/// (a warning: only `pgmig cdc` and `cutover` need it).
pub(crate) async fn target_findings(
    target: &impl GenericClient,
    source: &impl GenericClient,
) -> Result<Vec<Finding>> {
    const TARGET: ServerRole = ServerRole::Target;
    let id = ids::TARGET_PRIVILEGES;
    let read = async {
        let role = RoleInfo::query(target).await?;
        let version = ServerVersion::query(target).await?;
        let schemas: Vec<String> = source
            .query(&format!("{SOURCE_SCHEMAS_SQL}{SYSTEM_SCHEMAS}"), &[])
            .await
            .map_err(Error::query("list the source's schemas"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let row = target
            .query_one(
                "SELECT current_database()::text, COALESCE((SELECT array_agg(n.nspname::text ORDER BY n.nspname) \
                   FROM pg_namespace n WHERE n.nspname = ANY($1::text[]) \
                   AND NOT has_schema_privilege(n.oid, 'CREATE')), '{}'::text[])",
                &[&schemas],
            )
            .await
            .map_err(Error::query("read the role's CREATE privilege on the target's schemas"))?;
        let (database, denied): (String, Vec<String>) = (row.get(0), row.get(1));
        let replication_role = if role.superuser {
            ReplicationRole::Settable
        } else if version.major() >= Major::V15 {
            let may: bool = target
                .query_one(
                    "SELECT has_parameter_privilege('session_replication_role', 'SET')",
                    &[],
                )
                .await
                .map_err(Error::query(
                    "read the role's privilege on session_replication_role",
                ))?
                .get(0);
            if may {
                ReplicationRole::Settable
            } else {
                ReplicationRole::Denied
            }
        } else if let Some(group) = role.managed_superuser() {
            ReplicationRole::Managed(group)
        } else {
            ReplicationRole::Denied
        };
        Ok::<_, Error>((role, version, database, denied, replication_role))
    };
    let (role, version, database, denied, replication_role) = match read.await {
        Ok(r) => r,
        Err(e) => return Ok(vec![query_failed(TARGET, id, e)?]),
    };
    let (blockers, warnings) = judge_target(&role, version, &database, &denied, replication_role);
    let mut out = Vec::new();
    if !blockers.is_empty() {
        out.push(finding_of(TARGET, id, &role, &blockers, ""));
    }
    if let Some(w) = warnings.first() {
        out.push(
            Finding::warn(
                TARGET,
                id,
                format!(
                    "role {} lacks {} (needed by {})",
                    role.name, w.privilege, w.needed_by
                ),
            )
            .with_fix(w.fix.clone()),
        );
    } else if blockers.is_empty() {
        let how = match replication_role {
            ReplicationRole::Managed(group) => {
                format!("may set session_replication_role as a member of {group}")
            }
            _ => "may set session_replication_role".to_owned(),
        };
        out.push(Finding::ok(
            TARGET,
            id,
            format!(
                "role {} may create in the source's schemas on the target and {how}",
                role.name
            ),
        ));
    }
    Ok(out)
}

/// Folds `extra` findings into the first finding of `findings` with the
/// same check id, so each check id keeps one finding: the worst severity,
/// the summaries of what is wrong (or of everything when all is well), and
/// every fix. Findings with no counterpart are appended.
pub(crate) fn merge_into(findings: &mut Vec<Finding>, extra: Vec<Finding>) {
    for add in extra {
        let Some(base) = findings.iter_mut().find(|f| f.check == add.check) else {
            findings.push(add);
            continue;
        };
        let severity = base.severity.max(add.severity);
        let summaries: Vec<&str> = [&*base, &add]
            .into_iter()
            .filter(|f| severity == Severity::Ok || f.severity != Severity::Ok)
            .map(|f| f.summary.as_str())
            .collect();
        let summary = summaries.join("; ");
        let fix = match (base.fix.take(), add.fix) {
            (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
            (a, b) => a.or(b),
        };
        base.severity = severity;
        base.summary = summary;
        base.fix = fix;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(superuser: bool, replication: bool) -> RoleInfo {
        RoleInfo {
            name: "mig".to_owned(),
            superuser,
            replication,
            memberships: Vec::new(),
        }
    }

    fn v(num: u32) -> ServerVersion {
        ServerVersion::from_num(num).unwrap()
    }

    #[test]
    fn a_superuser_lacks_nothing() {
        let all = Unreadable {
            schemas: vec!["app".into()],
            tables: vec!["\"app\".\"t\"".into()],
            sequences: vec![],
            rls: vec!["\"app\".\"t\"".into()],
        };
        let su = role(true, false);
        assert!(judge_source(&su, v(150_000), Some((false, vec!["node".into()])), &all).is_empty());
        assert!(judge_replica(&su, v(150_000), false, &all).is_empty());
        let (b, w) = judge_target(
            &su,
            v(150_000),
            "t",
            &["public".into()],
            ReplicationRole::Denied,
        );
        assert!(b.is_empty() && w.is_empty());
    }

    #[test]
    fn source_names_each_missing_privilege_with_its_grant() {
        let unreadable = Unreadable {
            schemas: vec![],
            tables: vec!["\"public\".\"t1\"".into()],
            sequences: vec!["\"public\".\"s\"".into()],
            rls: vec!["\"public\".\"secret\"".into()],
        };
        let r = role(false, false);
        let missing = judge_source(
            &r,
            v(150_000),
            Some((false, vec!["node".into()])),
            &unreadable,
        );
        let fixes: Vec<&str> = missing.iter().map(|m| m.fix.as_str()).collect();
        let expect = [
            "ALTER ROLE \"mig\" WITH REPLICATION;",
            "GRANT USAGE ON SCHEMA pglogical TO \"mig\";",
            "GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO \"mig\";",
            "GRANT pg_read_all_data TO \"mig\";",
            "ALTER ROLE \"mig\" WITH BYPASSRLS;",
        ];
        assert_eq!(missing.len(), expect.len(), "{missing:#?}");
        for (fix, want) in fixes.iter().zip(expect) {
            assert!(fix.contains(want), "{fix} lacks {want}");
        }
        assert!(missing[0].fix.contains("GRANT rds_replication TO \"mig\";"));
        assert!(
            missing[3]
                .privilege
                .contains("SELECT on 1 table(s): \"public\".\"t1\"")
        );
        assert!(missing[3].privilege.contains("SELECT on 1 sequence(s)"));

        // With every grant: nothing missing; a member of rds_replication replicates.
        let mut ok = role(false, false);
        ok.memberships = vec!["rds_replication".into()];
        assert!(
            judge_source(
                &ok,
                v(150_000),
                Some((true, vec![])),
                &Unreadable::default()
            )
            .is_empty()
        );
        // No pglogical schema: the extension finding speaks for it.
        assert_eq!(
            judge_source(&role(false, true), v(150_000), None, &Unreadable::default()),
            vec![]
        );
    }

    #[test]
    fn reading_before_14_grants_per_schema() {
        let unreadable = Unreadable {
            schemas: vec!["odd\"name".into()],
            tables: vec!["\"odd\"\"name\".\"t\"".into(), "\"public\".\"u\"".into()],
            ..Unreadable::default()
        };
        let m = judge_reading(&role(false, true), v(130_000), &unreadable, "load", "here");
        assert_eq!(m.len(), 1);
        assert!(
            m[0].fix
                .contains("GRANT USAGE ON SCHEMA \"odd\"\"name\" TO \"mig\";"),
            "{}",
            m[0].fix
        );
        assert!(
            m[0].fix
                .contains("GRANT SELECT ON ALL TABLES IN SCHEMA \"public\" TO \"mig\";"),
            "{}",
            m[0].fix
        );
        assert!(!m[0].fix.contains("pg_read_all_data"));
    }

    #[test]
    fn replica_grants_run_on_the_primary_with_the_versions_function_names() {
        let m = judge_replica(
            &role(false, false),
            v(150_000),
            false,
            &Unreadable::default(),
        );
        assert_eq!(m.len(), 1);
        assert!(m[0].fix.contains("on the source primary"));
        assert!(m[0].fix.contains(
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_wal_replay_pause(), pg_catalog.pg_wal_replay_resume() TO \"mig\";"
        ));
        let old = judge_replica(
            &role(false, false),
            v(90_600),
            false,
            &Unreadable::default(),
        );
        assert!(old[0].fix.contains("pg_xlog_replay_pause()"));
        assert!(
            judge_replica(
                &role(false, false),
                v(150_000),
                true,
                &Unreadable::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn target_schemas_and_session_replication_role() {
        let r = role(false, false);
        let (b, w) = judge_target(
            &r,
            v(150_000),
            "app",
            &["public".into()],
            ReplicationRole::Denied,
        );
        assert_eq!(b.len(), 1);
        assert!(
            b[0].fix
                .contains("ALTER DATABASE \"app\" OWNER TO \"mig\";")
        );
        assert!(
            b[0].fix
                .contains("GRANT CREATE ON SCHEMA \"public\" TO \"mig\";")
        );
        assert!(
            w[0].fix
                .contains("GRANT SET ON PARAMETER session_replication_role TO \"mig\";")
        );
        let (_, w14) = judge_target(&r, v(140_000), "app", &[], ReplicationRole::Denied);
        assert!(w14[0].fix.contains("only a superuser"), "{}", w14[0].fix);
        let (b, w) = judge_target(
            &r,
            v(140_000),
            "app",
            &[],
            ReplicationRole::Managed("rds_superuser"),
        );
        assert!(b.is_empty() && w.is_empty());
    }

    #[test]
    fn merged_findings_keep_one_per_check_and_the_worst() {
        let t = ServerRole::Target;
        let id = ids::TARGET_PRIVILEGES;
        let mut all = vec![Finding::ok(t, id, "may create schemas")];
        merge_into(&mut all, vec![Finding::ok(t, id, "may set it")]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].summary, "may create schemas; may set it");
        merge_into(
            &mut all,
            vec![Finding::warn(t, id, "lacks SET").with_fix("GRANT SET")],
        );
        assert_eq!(all[0].severity, Severity::Warn);
        assert_eq!(all[0].summary, "lacks SET");
        assert_eq!(all[0].fix.as_deref(), Some("GRANT SET"));
        merge_into(
            &mut all,
            vec![Finding::blocker(t, id, "lacks CREATE").with_fix("GRANT CREATE")],
        );
        assert_eq!(all[0].severity, Severity::Blocker);
        assert_eq!(all[0].summary, "lacks SET; lacks CREATE");
        assert_eq!(all[0].fix.as_deref(), Some("GRANT SET\nGRANT CREATE"));
        merge_into(&mut all, vec![Finding::ok(t, ids::TARGET_TLS, "tls")]);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn findings_read_as_one_line_per_server() {
        let r = role(false, true);
        let missing = judge_replica(&r, v(150_000), false, &Unreadable::default());
        let f = finding_of(
            ServerRole::Replica,
            ids::REPLICA_PRIVILEGES,
            &r,
            &missing,
            "fine",
        );
        assert_eq!(f.severity, Severity::Blocker);
        assert!(
            f.summary
                .starts_with("role mig is not a superuser and lacks EXECUTE on")
        );
        assert!(f.summary.contains("(needed by snapshot, resume-replica"));
        let ok = finding_of(
            ServerRole::Replica,
            ids::REPLICA_PRIVILEGES,
            &r,
            &[],
            "fine",
        );
        assert_eq!(ok.severity, Severity::Ok);
        assert_eq!(ok.summary, "role mig is not a superuser, fine");
    }
}
