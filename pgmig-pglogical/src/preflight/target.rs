//! Checks of the target: reachable (and whether over TLS), a major version
//! at least the source's, privileges to restore into it, and empty — or
//! holding only pgmig's own state in schema `pgmig` (which migration that
//! state is of is reported too).

use pgmig_core::catalog::{self, TableInfo};
use pgmig_core::{Error, Result, ServerRole, ServerVersion, quote_ident};
use tokio_postgres::GenericClient;
use tracing::debug;

use super::finding::{Finding, ids, query_failed};
use super::privilege::RoleInfo;

const TARGET: ServerRole = ServerRole::Target;

/// How many table names a "target already holds data" blocker shows.
const SHOWN_TABLES: usize = 10;

/// Whether the role may create schemas in the connected database.
/// Identical on 9.6 to 18.
const CREATE_PRIVILEGE_SQL: &str = "SELECT current_database()::text, \
       has_database_privilege(current_user, current_database(), 'CREATE')";

/// This connection's TLS state. `pg_stat_ssl` exists from 9.5; the columns
/// read here kept their names through 18 (12 renamed `clientdn`, 14
/// dropped `compression`; neither is read).
const TLS_SQL: &str = "SELECT ssl, version::text, cipher::text \
     FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Whether pgmig's state schema exists.
const STATE_SCHEMA_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgmig')";

/// Checks the target: its major version against `source_version`, the
/// role's privileges (CREATE in the database; superuser or a managed
/// superuser role is noted), whether the connection uses TLS (information
/// only), that it holds no user tables outside pgmig's own schema
/// `pgmig`, and which migration pgmig's state there is of (`target.state`).
///
/// A query that fails becomes a blocker; a lost connection is the error.
#[tracing::instrument(name = "check_target", skip_all, fields(source_version = %source_version))]
pub async fn check_target(
    target: &impl GenericClient,
    source_version: ServerVersion,
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let version = match ServerVersion::query(target).await {
        Ok(v) => v,
        Err(e) => {
            out.push(query_failed(TARGET, ids::TARGET_VERSION, e)?);
            return Ok(out);
        }
    };
    out.push(version_finding(version, source_version));
    out.push(privileges_finding(target).await?);
    out.push(match tls(target).await {
        Ok(t) => tls_finding(t),
        Err(e) => query_failed(TARGET, ids::TARGET_TLS, e)?,
    });
    out.push(empty_finding(target, version).await?);
    out.push(match pgmig_core::state::load_migration(target).await {
        Ok(m) => state_finding(m.as_ref()),
        Err(e) => query_failed(TARGET, ids::TARGET_STATE, e)?,
    });
    debug!(findings = out.len(), "target checked");
    Ok(out)
}

/// Judges the versions; pure.
pub(crate) fn version_finding(target: ServerVersion, source: ServerVersion) -> Finding {
    let id = ids::TARGET_VERSION;
    if target.major() >= source.major() {
        Finding::ok(
            TARGET,
            id,
            format!("PostgreSQL {target} ≥ the source's {source}"),
        )
    } else {
        Finding::blocker(
            TARGET,
            id,
            format!(
                "the target runs PostgreSQL {target}, older than the source's {source}: a dump \
                 and data of a newer major do not restore into an older one"
            ),
        )
        .with_fix(format!(
            "use a target of PostgreSQL {} or newer",
            source.major()
        ))
    }
}

async fn privileges_finding(target: &impl GenericClient) -> Result<Finding> {
    let id = ids::TARGET_PRIVILEGES;
    let row = match target
        .query_one(CREATE_PRIVILEGE_SQL, &[])
        .await
        .map_err(Error::query(
            "read the CREATE privilege on the target database",
        )) {
        Ok(r) => r,
        Err(e) => return query_failed(TARGET, id, e),
    };
    let database: String = row.get(0);
    let may_create: bool = row.get(1);
    let role = match RoleInfo::query(target).await {
        Ok(r) => r,
        Err(e) => return query_failed(TARGET, id, e),
    };
    Ok(judge_target_privileges(&role, &database, may_create))
}

/// Judges the target role; pure.
pub(crate) fn judge_target_privileges(
    role: &RoleInfo,
    database: &str,
    may_create: bool,
) -> Finding {
    let id = ids::TARGET_PRIVILEGES;
    let name = &role.name;
    if !may_create {
        return Finding::blocker(
            TARGET,
            id,
            format!(
                "role {name} may not create schemas in database {database} (no CREATE privilege): \
                 neither the schema nor pgmig's state can be restored"
            ),
        )
        .with_fix(format!(
            "run as the database owner or an administrator:\n  GRANT CREATE ON DATABASE {} TO {};",
            quote_ident(database),
            quote_ident(name)
        ));
    }
    let note = if role.superuser {
        "a superuser".to_owned()
    } else if let Some(group) = role.managed_superuser() {
        format!("a member of {group}")
    } else {
        "not a superuser: restored objects will belong to it, and extensions or objects of \
         other owners may need a superuser"
            .to_owned()
    };
    Finding::ok(
        TARGET,
        id,
        format!("role {name} may create schemas in database {database}; {note}"),
    )
}

/// `(ssl, version, cipher)`; `None` when the row is not visible.
type TlsState = Option<(bool, Option<String>, Option<String>)>;

async fn tls(target: &impl GenericClient) -> Result<TlsState> {
    let row = target
        .query_opt(TLS_SQL, &[])
        .await
        .map_err(Error::query("read pg_stat_ssl"))?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// Judges the TLS state; always Ok — it is information for the DBA (a
/// server that requires TLS refuses the connection before this).
pub(crate) fn tls_finding(state: TlsState) -> Finding {
    let id = ids::TARGET_TLS;
    let summary = match state {
        Some((true, version, cipher)) => format!(
            "TLS in use ({}, {})",
            version.as_deref().unwrap_or("unknown version"),
            cipher.as_deref().unwrap_or("unknown cipher")
        ),
        Some((false, _, _)) => "the connection is not encrypted (no TLS)".to_owned(),
        None => "TLS state unknown (no pg_stat_ssl row for this connection)".to_owned(),
    };
    Finding::ok(TARGET, id, summary)
}

async fn empty_finding(target: &impl GenericClient, version: ServerVersion) -> Result<Finding> {
    let id = ids::TARGET_EMPTY;
    let tables = match catalog::list_tables(target, version).await {
        Ok(t) => t,
        Err(e) => return query_failed(TARGET, id, e),
    };
    let state = match target
        .query_one(STATE_SCHEMA_SQL, &[])
        .await
        .map_err(Error::query("look for pgmig's state schema"))
    {
        Ok(r) => r.get::<_, bool>(0),
        Err(e) => return query_failed(TARGET, id, e),
    };
    Ok(judge_empty(&tables, state))
}

/// Says which migration pgmig's state in the target belongs to; pure. Only
/// a caller that also knows the source can judge whether it is this one
/// (`pgmig check` makes it a blocker when it is not).
pub(crate) fn state_finding(m: Option<&pgmig_core::state::MigrationRecord>) -> Finding {
    let id = ids::TARGET_STATE;
    match m {
        None => Finding::ok(TARGET, id, "no migration recorded yet"),
        Some(m) => Finding::ok(
            TARGET,
            id,
            format!(
                "holds pgmig's state of the migration from database {:?} of system {}{}",
                m.source_database,
                m.source_system_identifier,
                m.pause_lsn
                    .map(|p| format!(", P = {p}"))
                    .unwrap_or_default()
            ),
        ),
    }
}

/// The first tables of `tables` by name, and how many more: `a.t, b.u and
/// 3 more` — for messages about a target that already holds data.
pub fn name_some_tables(tables: &[TableInfo]) -> String {
    let mut names: Vec<String> = tables
        .iter()
        .take(SHOWN_TABLES)
        .map(|t| t.table.to_string())
        .collect();
    if tables.len() > SHOWN_TABLES {
        names.push(format!("and {} more", tables.len() - SHOWN_TABLES));
    }
    names.join(", ")
}

/// Judges the target's tables (already without schemas `pgmig`,
/// `pglogical` and the system's); pure.
pub(crate) fn judge_empty(tables: &[TableInfo], has_state_schema: bool) -> Finding {
    let id = ids::TARGET_EMPTY;
    if tables.is_empty() {
        let summary = if has_state_schema {
            "no user tables; holds pgmig's own state (schema pgmig) only"
        } else {
            "empty: no user tables"
        };
        return Finding::ok(TARGET, id, summary);
    }
    Finding::blocker(
        TARGET,
        id,
        format!(
            "target already holds data: {} user table{} ({})",
            tables.len(),
            if tables.len() == 1 { "" } else { "s" },
            name_some_tables(tables)
        ),
    )
    .with_fix(
        "load into an empty database (pgmig never overwrites existing data): create a fresh \
         one, or drop these tables if they are leftovers",
    )
}

#[cfg(test)]
mod tests {
    use pgmig_core::Major;

    use super::*;
    use crate::preflight::finding::Severity;

    #[test]
    fn target_major_must_not_be_older() {
        let v = |m| ServerVersion::from(m);
        let cases = [
            (Major::V16, Major::V15, Severity::Ok),
            (Major::V15, Major::V15, Severity::Ok),
            (Major::V12, Major::V15, Severity::Blocker),
            (Major::V10, Major::V9_6, Severity::Ok),
        ];
        for (target, source, severity) in cases {
            assert_eq!(
                version_finding(v(target), v(source)).severity,
                severity,
                "{target} vs {source}"
            );
        }
        let older = version_finding(
            ServerVersion::from_num(120_022).unwrap(),
            ServerVersion::from_num(150_004).unwrap(),
        );
        assert!(older.summary.contains("12.22"), "{}", older.summary);
        assert!(older.summary.contains("15.4"), "{}", older.summary);
        assert_eq!(
            older.fix.as_deref(),
            Some("use a target of PostgreSQL 15 or newer")
        );
    }

    #[test]
    fn privileges_and_tls() {
        let role = RoleInfo {
            name: "Loader".into(),
            superuser: false,
            replication: false,
            memberships: vec!["rds_superuser".into()],
        };
        let ok = judge_target_privileges(&role, "app", true);
        assert_eq!(ok.severity, Severity::Ok);
        assert!(ok.summary.contains("rds_superuser"));
        let no = judge_target_privileges(&role, "app", false);
        assert_eq!(no.severity, Severity::Blocker);
        assert!(
            no.fix
                .unwrap()
                .contains(r#"GRANT CREATE ON DATABASE "app" TO "Loader";"#)
        );

        let tls = tls_finding(Some((
            true,
            Some("TLSv1.3".into()),
            Some("TLS_AES_256_GCM_SHA384".into()),
        )));
        assert_eq!(tls.summary, "TLS in use (TLSv1.3, TLS_AES_256_GCM_SHA384)");
        assert_eq!(
            tls_finding(Some((false, None, None))).severity,
            Severity::Ok
        );
    }

    #[test]
    fn an_empty_target_may_hold_pgmig_state() {
        assert_eq!(judge_empty(&[], false).severity, Severity::Ok);
        assert!(judge_empty(&[], true).summary.contains("pgmig's own state"));
    }

    #[test]
    fn the_state_names_its_migration() {
        assert_eq!(state_finding(None).summary, "no migration recorded yet");
        let m = pgmig_core::state::MigrationRecord {
            source_system_identifier: 7,
            source_database: "app's".into(),
            plan: pgmig_core::plan::Plan::default(),
            pause_lsn: Some(pgmig_core::Lsn(0x1_0000_0010)),
            paused_at: None,
        };
        let f = state_finding(Some(&m));
        assert_eq!(f.severity, Severity::Ok);
        assert_eq!(
            f.summary,
            "holds pgmig's state of the migration from database \"app's\" of system 7, P = 1/10"
        );
    }
}
